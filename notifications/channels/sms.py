"""SMS through Twilio's Messages API: a short text per message type, the
segments it costs, and errors mapped to the channel contract.

Only talks HTTP (one ``requests.Session``): POST
``/2010-04-01/Accounts/<sid>/Messages.json``, form-encoded, HTTP Basic with the
account SID and auth token (shared reference: channel-apis.md, Twilio). The
delivery receipts come later, through ``POST /sms/twilio/status/``
(notifications.sms_webhooks).

Our own code rather than the ``twilio`` package: one form POST and its error
envelope are all we use, and a plain Session keeps the one-HTTP-seam rule
(and the tests against the sandbox) the same as Telegram's.
"""

import math
import re

import requests
from django.conf import settings
from django.template import TemplateDoesNotExist
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.translation import gettext as _

from ..redaction import redact, register_secret
from .base import Channel, ChannelError, ConfigurationError
from .registry import ChannelSpec, register

MAX_BODY = 1600  # characters Twilio accepts in one Body
CONNECT_TIMEOUT_S = 3.05
TEMPLATE_DIR = "notifications/sms"

# GSM 03.38: the basic set (one septet each) and the extension table (an
# escape plus one septet: two each). Anything else makes the message UCS-2.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")

# A work order reference in the text the SMS summarizes (OT-00042): the
# reply keywords name it, since an SMS has no buttons.
_REFERENCE = re.compile(r"\b[A-Z]{1,5}-\d{3,}\b")


def segments(text):
    """``(encoding, count)`` as Twilio counts them: GSM-7 160 septets in one
    segment, 153 per segment when concatenated; UCS-2 70 UTF-16 units, 67 when
    concatenated. One emoji or accent outside GSM-7 makes all of it UCS-2."""
    if all(ch in GSM7_BASIC or ch in GSM7_EXTENDED for ch in text):
        units = sum(2 if ch in GSM7_EXTENDED else 1 for ch in text)
        return "GSM-7", 1 if units <= 160 else math.ceil(units / 153)
    units = len(text.encode("utf-16-le")) // 2
    return "UCS-2", 1 if units <= 70 else math.ceil(units / 67)


def render(message):
    """The SMS text for an OutgoingMessage: the message type's template under
    ``notifications/sms/<type>.txt`` (else ``default.txt``) with the title,
    the body's first line (the order and the asset), the link and, when the
    message offers accept/reject, the reply keywords."""
    lines = [line.strip() for line in message.body.splitlines() if line.strip()]
    summary = lines[0] if lines else ""
    found = _REFERENCE.search(f"{message.title}\n{summary}")
    context = {
        "emoji": message.emoji,
        "title": message.title,
        "body": message.body,
        "summary": summary if summary != message.title else "",
        "link": message.link,
        "reference": found.group(0) if found and message.actions else "",
    }
    names = [f"{TEMPLATE_DIR}/{message.message_type}.txt"] if message.message_type else []
    try:
        # In the recipients' language, whatever a request or task activated.
        with translation.override(settings.LANGUAGE_CODE):
            text = render_to_string(names + [f"{TEMPLATE_DIR}/default.txt"], context)
    except TemplateDoesNotExist:  # pragma: no cover - default.txt ships with the app
        text = "\n".join(p for p in (message.title, summary, message.link) if p)
    text = "\n".join(line.strip() for line in text.strip().splitlines() if line.strip())
    return text[:MAX_BODY]


class SentMessage(str):
    """The provider's message id, with what the send cost in ``details``
    (segments, encoding, price): workers store it in MessageLog.payload['delivery']."""

    def __new__(cls, provider_id, details):
        value = super().__new__(cls, provider_id)
        value.details = details
        return value


# Twilio error codes the contract cares about (twilio.com/docs/api/errors).
INVALID_NUMBER = 21211
OPTED_OUT = 21610
TOO_MANY_REQUESTS = 20429
_UNREACHABLE = {
    INVALID_NUMBER: "invalid 'To' phone number",
    21614: "'To' number is not a valid mobile number",
    21612: "the 'To' number cannot be reached from this 'From' number",
}
# Meanings of the delivery error codes status callbacks carry.
DELIVERY_ERRORS = {
    "30001": "queue overflow",
    "30002": "account suspended",
    "30003": "unreachable destination handset",
    "30004": "message blocked",
    "30005": "unknown destination handset",
    "30006": "landline or unreachable carrier",
    "30007": "carrier filtering (spam)",
    "30008": "unknown error",
    "21610": "the recipient replied STOP",
}


class TwilioSmsChannel(Channel):
    channel_type = "SMS"

    def __init__(self, account_sid, auth_token, from_number="", messaging_service_sid="",
                 api_url="https://api.twilio.com", status_callback="", timeout=10.0, session=None):
        if not account_sid or not auth_token:
            raise ConfigurationError(_("SMS is not configured: set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN."))
        if not from_number and not messaging_service_sid:
            raise ConfigurationError(_("SMS is not configured: set TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID."))
        register_secret(auth_token)
        self.account_sid = account_sid
        self._auth = (account_sid, auth_token)
        self.from_number = from_number
        self.messaging_service_sid = messaging_service_sid
        self.api_url = api_url.rstrip("/")
        self.status_callback = status_callback
        self.timeout = timeout
        self.session = session or requests.Session()
        self.session.headers.setdefault("User-Agent", "cmms-omnichannel-bot")

    def __repr__(self):
        return f"<TwilioSmsChannel {self.api_url} {self.account_sid}:***>"

    @property
    def messages_url(self):
        return f"{self.api_url}/2010-04-01/Accounts/{self.account_sid}/Messages.json"

    def send(self, address, message):
        """Send the SMS rendering of ``message`` to E.164 ``address``; returns
        a SentMessage (the Message SID, with segments and price)."""
        return self.send_text(address, render(message))

    def send_text(self, address, text):
        form = {"To": address, "Body": text}
        if self.messaging_service_sid:
            form["MessagingServiceSid"] = self.messaging_service_sid
        else:
            form["From"] = self.from_number
        if self.status_callback:
            form["StatusCallback"] = self.status_callback
        try:
            response = self.session.post(self.messages_url, data=form, auth=self._auth,
                                         timeout=(CONNECT_TIMEOUT_S, self.timeout))
        except requests.exceptions.ConnectTimeout as exc:
            raise ChannelError(f"Twilio: connection timed out ({redact(exc)})") from None
        except requests.exceptions.ReadTimeout:
            raise ChannelError(
                f"Twilio: no answer within {self.timeout:g} s (the message may have been sent)", maybe_delivered=True
            ) from None
        except requests.exceptions.RequestException as exc:
            raise ChannelError(f"Twilio: connection failed ({type(exc).__name__}: {redact(exc)})") from None
        data = self._json(response)
        encoding, counted = segments(text)
        details = {"segments": counted, "encoding": encoding}
        if data.get("num_segments") not in (None, ""):
            details["segments"] = int(data["num_segments"])
        if data.get("price") not in (None, ""):
            details["price"] = str(data["price"])
            details["price_unit"] = str(data.get("price_unit") or "")
        return SentMessage(str(data["sid"]), details)

    def _json(self, response):
        status = response.status_code
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict) or (not data.get("code") and not data.get("sid")):
            if status >= 500:
                raise ChannelError(f"Twilio: HTTP {status} from the server", code=status)
            raise ConfigurationError(
                f"Twilio: unexpected HTTP {status} without an API answer; check TWILIO_API_URL", code=status
            )
        if 200 <= status < 300 and data.get("sid"):
            return data
        code = int(data.get("code") or status)
        text = f"Twilio {code}: {redact(data.get('message') or f'HTTP {status}')}"
        if status == 401 or code in (20003, 20404):
            raise ConfigurationError(
                f"{text} — check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN", code=code
            )
        if code == OPTED_OUT:
            raise ChannelError(text, opted_out=True, code=code)
        if code in _UNREACHABLE:
            raise ChannelError(text, unreachable=True, code=code)
        if code == TOO_MANY_REQUESTS or status == 429:
            retry_after = response.headers.get("Retry-After")
            raise ChannelError(text, retry_after=float(retry_after) if retry_after else None, code=code)
        if status >= 500:
            raise ChannelError(text, code=code)
        raise ChannelError(text, permanent=True, code=code)


# -- registration ---------------------------------------------------------------
def normalize_number(address):
    from ..phones import to_e164

    return to_e164(address)


def _token():
    from django.conf import settings

    from ..channel_secrets import channel_secret

    return channel_secret("SMS", settings.TWILIO_AUTH_TOKEN)


def _sender(_secret=""):
    """The sending number (or messaging service): rate limits count per
    sender, since a long code sends about one segment a second."""
    from django.conf import settings

    return settings.TWILIO_FROM_NUMBER or settings.TWILIO_MESSAGING_SERVICE_SID


def status_callback_url():
    from django.conf import settings
    from django.urls import reverse

    return settings.SITE_URL + reverse("sms-twilio-status")


def _build():
    from django.conf import settings

    return TwilioSmsChannel(
        account_sid=settings.TWILIO_ACCOUNT_SID,
        auth_token=_token(),
        from_number=settings.TWILIO_FROM_NUMBER,
        messaging_service_sid=settings.TWILIO_MESSAGING_SERVICE_SID,
        api_url=settings.TWILIO_API_URL,
        status_callback=status_callback_url(),
        timeout=settings.TWILIO_TIMEOUT_S,
    )


register(
    ChannelSpec(
        channel_type="SMS",
        build=_build,
        normalize_address=normalize_number,
        requests_needed=lambda message: segments(render(message))[1],
        account_secret=_token,
        account_id_from_secret=_sender,
    )
)
