"""WhatsApp Business Cloud API channel (Meta Graph API).

Only talks HTTP. What to send is decided before: the prepare hook
(``notifications.whatsapp.prepare``, which reads the 24-hour window and the
template mapping) puts ``extras["whatsapp"]`` on the OutgoingMessage:

    {"mode": "session", "buttons": [{"id", "title"}], "template": {...} | None}
    {"mode": "template", "template": {"name", "language", "parameters", "buttons"}}

Inside the window a message goes as text (interactive reply buttons when it
has actions); outside it, as its approved template. Error 131047 (the window
closed meanwhile) answered to a session message falls back to the template
once, in the same attempt.
"""

import unicodedata

import requests

from ..redaction import redact, register_secret
from . import text as text_utils
from .base import Channel, ChannelError, ConfigurationError
from .registry import ChannelSpec, register

MAX_TEXT = 4096
MAX_INTERACTIVE_BODY = 1024
MAX_BUTTONS = 3
MAX_BUTTON_TITLE = 20
CONNECT_TIMEOUT_S = 3.05
# One user takes about one message per 6 s (Meta's "pair rate").
PAIR_RATE_RETRY_S = 6.0
THROUGHPUT_RETRY_S = 2.0

REENGAGEMENT_REQUIRED = 131047
UNDELIVERABLE = 131026
PAIR_RATE = 131056
THROUGHPUT = 130429
# Meta's transient errors: "something went wrong", "service unavailable".
_TRANSIENT = {1, 2, 131000, 131016, 133004}


def split_text(text, limit):
    """Chunks of at most ``limit`` characters, cut at paragraph, line or word boundaries."""
    return text_utils.split_text(text, limit, strip_leading="\n ")


def _joins_previous(char):
    """A character that belongs to the one before it (accents, emoji
    variation selectors, skin tones, zero-width joiners)."""
    return (unicodedata.combining(char) or char in "\u200d\ufe0e\ufe0f" or "\U0001f3fb" <= char <= "\U0001f3ff")


def button_title(text, limit=MAX_BUTTON_TITLE):
    """A reply button's title in at most ``limit`` characters: whole words
    when possible, never half a character cluster, an ellipsis when cut."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    cut = limit - 1
    while cut > 0 and _joins_previous(text[cut]):
        cut -= 1
    head = text[:cut]
    space = head.rfind(" ")
    if text[cut] != " " and space >= limit // 2:  # do not end on half a word
        head = head[:space]
    while head and text[len(head) - 1] == "\u200d":
        head = head[:-1]
    return head.rstrip() + "…"


def unique_titles(titles):
    """Meta refuses two buttons with the same title."""
    seen, result = set(), []
    for title in titles:
        candidate, n = title, 2
        while candidate in seen:
            suffix = f" {n}"
            candidate = button_title(title, MAX_BUTTON_TITLE - len(suffix)) + suffix
            n += 1
        seen.add(candidate)
        result.append(candidate)
    return result


def render_text(message):
    """WhatsApp text: the emoji and title in *bold*, the body, the link (WhatsApp makes URLs clickable)."""
    head = " ".join(p for p in (message.emoji, f"*{message.title.strip()}*" if message.title.strip() else "") if p)
    text = f"{head}\n\n{message.body}" if head else message.body
    if message.link:
        text += f"\n\n→ {message.link_label}: {message.link}" if message.link_label else f"\n\n→ {message.link}"
    return text.strip()


def session_payloads(address, message, buttons):
    """The Cloud API bodies for a message inside the window: text chunks,
    the last one interactive with reply buttons when there are any."""
    text = render_text(message)
    buttons = buttons[:MAX_BUTTONS]
    if not buttons:
        return [_text(address, chunk) for chunk in split_text(text, MAX_TEXT)]
    if len(text) <= MAX_INTERACTIVE_BODY:
        head, prompt = [], text
    else:  # the text goes first; the buttons follow under the title
        head = [_text(address, chunk) for chunk in split_text(text, MAX_TEXT)]
        prompt = (" ".join(p for p in (message.emoji, message.title) if p) or "…")[:MAX_INTERACTIVE_BODY]
    titles = unique_titles([button_title(b["title"]) for b in buttons])
    interactive = {
        "type": "button",
        "body": {"text": prompt},
        "action": {"buttons": [{"type": "reply", "reply": {"id": b["id"][:256], "title": t}}
                               for b, t in zip(buttons, titles, strict=True)]},
    }
    return head + [_envelope(address, "interactive", interactive)]


def template_payload(address, template):
    components = []
    if template.get("parameters"):
        components.append({"type": "body", "parameters": [{"type": "text", "text": v}
                                                          for v in template["parameters"]]})
    for index, payload in enumerate(template.get("buttons") or []):
        components.append({"type": "button", "sub_type": "quick_reply", "index": str(index),
                           "parameters": [{"type": "payload", "payload": payload}]})
    body = {"name": template["name"], "language": {"code": template["language"]}}
    if components:
        body["components"] = components
    return _envelope(address, "template", body)


def _envelope(address, kind, content):
    return {"messaging_product": "whatsapp", "recipient_type": "individual", "to": address.lstrip("+"),
            "type": kind, kind: content}


def _text(address, body):
    return _envelope(address, "text", {"body": body, "preview_url": False})


class WhatsAppChannel(Channel):
    channel_type = "WHATSAPP"

    def __init__(self, token, phone_number_id, api_url="https://graph.facebook.com/v21.0", timeout=10.0,
                 session=None):
        if not token or not phone_number_id:
            raise ConfigurationError(
                "WhatsApp is not configured: set WHATSAPP_ACCESS_TOKEN and WHATSAPP_PHONE_NUMBER_ID.")
        register_secret(token)
        self._token = token
        self.url = f"{api_url.rstrip('/')}/{phone_number_id}/messages"
        self.timeout = timeout
        self.session = session or requests.Session()
        self.session.headers.update({"Authorization": f"Bearer {token}", "User-Agent": "cmms-omnichannel-bot"})

    def __repr__(self):
        return f"<WhatsAppChannel {self.url} token=***>"

    def send(self, address, message):
        """Send to E.164 ``address``; returns the wamid (comma-separated when
        the text took several messages)."""
        plan = message.extras.get("whatsapp") or {"mode": "session", "buttons": []}
        if plan["mode"] == "template":
            return self.post(template_payload(address, plan["template"]))
        ids = []
        try:
            for body in session_payloads(address, message, plan.get("buttons") or []):
                ids.append(self.post(body))
        except ChannelError as exc:
            # The window closed since we last heard from the user: the
            # approved template is the only thing Meta lets through now.
            if exc.code != REENGAGEMENT_REQUIRED or ids or not plan.get("template"):
                raise
            ids.append(self.post(template_payload(address, plan["template"])))
        return ",".join(ids)

    def post(self, body):
        try:
            response = self.session.post(self.url, json=body, timeout=(CONNECT_TIMEOUT_S, self.timeout))
        except requests.exceptions.ConnectTimeout as exc:
            raise ChannelError(f"WhatsApp: connection timed out ({redact(exc)})") from None
        except requests.exceptions.ReadTimeout:
            raise ChannelError(
                f"WhatsApp: no answer within {self.timeout:g} s (the message may have been delivered)",
                maybe_delivered=True) from None
        except requests.exceptions.RequestException as exc:
            raise ChannelError(f"WhatsApp: connection failed ({type(exc).__name__}: {redact(exc)})") from None
        return self._result(response)

    def _result(self, response):
        status = response.status_code
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            if status >= 500:
                raise ChannelError(f"WhatsApp: HTTP {status} from the server", code=status)
            raise ConfigurationError(
                f"WhatsApp: unexpected HTTP {status} without a Graph API answer; check WHATSAPP_API_URL", code=status)
        if 200 <= status < 300 and data.get("messages"):
            return str(data["messages"][0]["id"])
        error = data.get("error") if isinstance(data.get("error"), dict) else {}
        raise classify(status, error)


def classify(status, error):
    """The ChannelError for a Graph API error (also used for the errors a
    status webhook reports)."""
    code = int(error.get("code") or status or 0)
    details = (error.get("error_data") or {}).get("details") or ""
    text = redact(f"WhatsApp {code}: {error.get('message') or f'HTTP {status}'}" + (f" ({details})" if details else ""))
    if code == 190 or status == 401 or code in (10, 200):
        return ConfigurationError(f"{text} — the access token is wrong, expired or lacks permission; "
                                  "check WHATSAPP_ACCESS_TOKEN", code=code)
    if code == THROUGHPUT:
        return ChannelError(text, retry_after=THROUGHPUT_RETRY_S, code=code, scope="account")
    if code == PAIR_RATE:
        return ChannelError(text, retry_after=PAIR_RATE_RETRY_S, code=code, scope="recipient")
    if code == UNDELIVERABLE:
        return ChannelError(text, unreachable=True, code=code)
    if code == REENGAGEMENT_REQUIRED:
        return ChannelError(text, permanent=True, code=code)
    if 132000 <= code < 133000:  # the template mapping does not match what Meta approved
        return ConfigurationError(f"{text} — check the WhatsApp template mapping in the admin", code=code)
    if status >= 500 or code in _TRANSIENT:
        return ChannelError(text, code=code)
    return ChannelError(text, permanent=True, code=code)


# -- registration ---------------------------------------------------------------
def normalize_phone(address):
    from ..phones import to_e164

    return to_e164(address)


def _token():
    from django.conf import settings

    from ..channel_secrets import channel_secret

    return channel_secret("WHATSAPP", settings.WHATSAPP_ACCESS_TOKEN)


def _build():
    from django.conf import settings

    return WhatsAppChannel(token=_token(), phone_number_id=settings.WHATSAPP_PHONE_NUMBER_ID,
                           api_url=settings.WHATSAPP_API_URL, timeout=settings.WHATSAPP_TIMEOUT_S)


def _phone_number_id(_secret):
    from django.conf import settings

    return settings.WHATSAPP_PHONE_NUMBER_ID


def _requests_needed(message):
    plan = message.extras.get("whatsapp") or {}
    if plan.get("mode") == "template":
        return 1
    return len(session_payloads("0", message, plan.get("buttons") or []))


def _prepare(log, message):
    from .. import whatsapp

    return whatsapp.prepare(log, message)


register(
    ChannelSpec(
        channel_type="WHATSAPP",
        build=_build,
        normalize_address=normalize_phone,
        requests_needed=_requests_needed,
        account_secret=_token,
        account_id_from_secret=_phone_number_id,
        prepare=_prepare,
    )
)
