"""E-mail channel: an HTML and a plain-text part per message over SMTP, with
attachments (the work order's PDF) gathered by ``prepare`` in the worker.

The adapter only talks SMTP (smtplib) and renders templates; the worker
decides what an error means. One connection per adapter, and the worker
keeps one adapter per thread (workers/channels.py), so a thread reuses its
connection across messages and reopens it when the server has closed it.

Replies (RFC 5321): 4xx and dropped connections are transient; 5xx are
final with the server's text; a 550/551/553 to RCPT means the mailbox does
not exist (the address is marked unreachable); a 5.7.x to RCPT ("relaying
denied") and authentication or TLS failures are our configuration.
"""

import email.charset
import email.policy
import re
import smtplib
import socket
import ssl
from email import encoders
from email.header import Header
from email.mime.application import MIMEApplication
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formatdate, make_msgid, parseaddr

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.template.loader import render_to_string, select_template
from django.utils.translation import gettext as _

from ..redaction import redact, register_secret
from .base import Channel, ChannelError, ConfigurationError
from .registry import ChannelSpec, InvalidAddress, register

TEMPLATE_DIR = "notifications/email"
# Assignment and prediction e-mails carry the work order as a PDF.
DOCUMENT_MESSAGE_TYPES = {"work_order_assigned", "prediction_high_risk"}
# Non-urgent bulk notices carry List-Unsubscribe (RFC 8058): broadcasts and
# reminders a user can turn off; an assignment or a critical alert cannot.
UNSUBSCRIBE_CATEGORIES = {"reminders", "alerts"}
UNSUBSCRIBE_PRIORITIES = {"low", "normal"}
PRIORITY_COLORS = {"low": "#6b7280", "normal": "#2563eb", "high": "#d97706", "critical": "#dc2626"}

_QP = email.charset.Charset("utf-8")
_QP.body_encoding = email.charset.QP
# No folding of our own headers (a List-Unsubscribe URL is one long word; RFC
# 5322 allows 998 characters); the Subject folds itself as an encoded word.
_WIRE = email.policy.compat32.clone(linesep="\r\n", max_line_length=998)
_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")
_MAILBOX_UNKNOWN = (550, 551, 553)


def _error(text, kind, cls=ChannelError, **flags):
    """A ChannelError tagged with what happened (``kind``), so that
    ``test_email`` can explain it: refused, timeout, tls, auth, relay,
    recipient, sender, rejected, temporary, disconnected."""
    exc = cls(redact(text), **flags)
    exc.kind = kind
    return exc


def _reply_text(resp):
    if isinstance(resp, bytes):
        resp = resp.decode("utf-8", "replace")
    return " ".join(str(resp).split())[:500]


def classify(code, resp, stage):
    """The ChannelError for an SMTP reply ``code`` to ``stage`` (MAIL, RCPT, DATA)."""
    text = _reply_text(resp)
    message = f"SMTP {code} {text} ({stage})".replace("  ", " ")
    enhanced = _ENHANCED.match(text)
    policy = bool(enhanced and enhanced.group(2) == "7") or "relay" in text.lower()
    if 400 <= code < 500:
        return _error(message, "temporary", code=code)
    if stage == "RCPT":
        if policy:
            return _error(message, "relay", ConfigurationError, code=code)
        if code in _MAILBOX_UNKNOWN:
            return _error(message, "recipient", unreachable=True, code=code)
        return _error(message, "rejected", permanent=True, code=code)
    if stage == "MAIL":
        if code == 530 or (policy and "auth" in text.lower()):
            return _error(message, "auth", ConfigurationError, code=code)
        # Our envelope sender was refused: DEFAULT_FROM_EMAIL, not the recipient.
        return _error(message, "sender", ConfigurationError, code=code)
    return _error(message, "rejected", permanent=True, code=code)


# -- rendering --------------------------------------------------------------------
def _context(message):
    from ..models import Priority

    extra = message.context or {}
    return {
        "title": message.title,
        "body": message.body,
        "emoji": message.emoji,
        "subject": subject(message),
        "priority": message.priority,
        "priority_label": Priority(message.priority).label if message.priority in Priority.values else "",
        "priority_color": PRIORITY_COLORS.get(message.priority, PRIORITY_COLORS["normal"]),
        "link": message.link,
        "link_label": message.link_label or message.link,
        "attachments": [a.filename for a in message.attachments],
        "unsubscribe_url": extra.get("unsubscribe_url", ""),
        "message_type": message.message_type or extra.get("message_type", ""),
    }


def subject(message):
    text = " ".join(p for p in (message.emoji, message.title) if p) or message.body.split("\n", 1)[0]
    return " ".join(text.split())[:250]  # no header injection through a newline in a title


def render(message):
    """(subject, text, html) from the message type's templates (a type
    without its own falls back to ``message.*``), in the default language."""
    from django.conf import settings
    from django.utils import translation

    message_type = message.message_type or (message.context or {}).get("message_type", "")
    names = [f"{TEMPLATE_DIR}/{message_type}.{{ext}}"] if message_type else []
    names.append(f"{TEMPLATE_DIR}/message.{{ext}}")
    with translation.override(settings.LANGUAGE_CODE):
        context = _context(message)
        html = select_template([n.format(ext="html") for n in names]).render(context)
        text = render_to_string(f"{TEMPLATE_DIR}/message.txt", context)
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(line.rstrip() for line in text.strip().splitlines())) + "\n"
    return context["subject"], text, html


def compose(message, address, from_email, message_id=None):
    """The MIME message: multipart/alternative (text, HTML), inside
    multipart/mixed when there are attachments. Built with email.mime
    (compat32): the modern EmailMessage API took 15 ms per message, five
    times the rest of the worker's work for one e-mail."""
    subject_line, text, html = render(message)
    mime = MIMEMultipart("alternative")
    # Quoted-printable: 7-bit transfer, so no server needs 8BITMIME for a Spanish accent.
    mime.attach(MIMEText(text, "plain", _QP))
    mime.attach(MIMEText(html, "html", _QP))
    if message.attachments:
        mixed = MIMEMultipart("mixed")
        mixed.attach(mime)
        for attachment in message.attachments:
            maintype, _slash, subtype = attachment.mimetype.partition("/")
            part = MIMEApplication(attachment.content, subtype or "octet-stream") if maintype == "application" \
                else MIMEBase(maintype, subtype or "octet-stream")
            if maintype != "application":
                part.set_payload(attachment.content)
                encoders.encode_base64(part)
            part.add_header("Content-Disposition", "attachment", filename=attachment.filename)
            mixed.attach(part)
        mime = mixed
    # Encoded words of at most 75 characters (RFC 2047), folded onto continuation lines.
    mime["Subject"] = Header(subject_line, "utf-8", maxlinelen=75).encode(linesep="\r\n")
    mime["From"] = from_email
    mime["To"] = address
    mime["Date"] = formatdate(localtime=True)
    mime["Message-ID"] = message_id or make_msgid(domain=_domain(from_email))
    # RFC 3834: an automatic notice; autoresponders must not answer it.
    mime["Auto-Submitted"] = "auto-generated"
    mime["X-Auto-Response-Suppress"] = "All"
    if message.priority in ("high", "critical"):
        mime["Importance"] = "high"
    unsubscribe = (message.context or {}).get("unsubscribe_url")
    if unsubscribe:
        mime["List-Unsubscribe"] = f"<{unsubscribe}>"
        mime["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    return mime


def as_bytes(mime):
    """CRLF line ends: smtplib sends bytes as they are."""
    return mime.as_bytes(policy=_WIRE)


def _domain(from_email):
    address = parseaddr(from_email)[1]
    return address.rpartition("@")[2] or "localhost"


# -- the adapter --------------------------------------------------------------------
class EmailChannel(Channel):
    channel_type = "EMAIL"

    def __init__(self, host, port, username="", password="", use_tls=False, use_ssl=False, timeout=10.0,
                 from_email="CMMS <cmms@localhost>"):
        register_secret(password)
        self.host, self.port = host, int(port)
        self.username = username
        self._password = password
        self.use_tls, self.use_ssl = use_tls, use_ssl
        self.timeout = float(timeout)
        self.from_email = from_email
        self.envelope_from = parseaddr(from_email)[1]
        if not self.envelope_from:
            raise ConfigurationError(f"DEFAULT_FROM_EMAIL={from_email!r} has no address.")
        self._conn = None

    def __repr__(self):
        user = f"{self.username}:***@" if self.username else ""
        return f"<EmailChannel smtp://{user}{self.host}:{self.port}>"

    def send(self, address, message):
        """Send ``message`` to ``address``; returns its Message-ID."""
        mime = compose(message, address, self.from_email, (message.context or {}).get("message_id"))
        data = as_bytes(mime)
        for attempt in range(2):
            reused = self._conn is not None
            conn = self._connection()
            try:
                self._transaction(conn, address, data)
                return mime["Message-ID"]
            except _Stale as exc:
                self.close()
                # The server closed an idle connection before taking anything: open a new one once.
                if reused and attempt == 0:
                    continue
                raise _error(f"SMTP: {self.host}:{self.port} closed the connection ({exc})", "disconnected") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def check(self):
        """Connect, log in and say NOOP: the configuration works (test_email)."""
        conn = self._connection()
        try:
            conn.noop()
        except (smtplib.SMTPException, OSError) as exc:
            self.close()
            raise _error(f"SMTP: NOOP failed ({exc})", "disconnected") from None

    def close(self):
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.quit()
            except (smtplib.SMTPException, OSError):
                conn.close()

    # -- SMTP -------------------------------------------------------------------
    def _connection(self):
        if self._conn is None:
            self._conn = self._open()
        return self._conn

    def _open(self):
        where = f"{self.host}:{self.port}"
        context = ssl.create_default_context()
        conn = None
        try:
            if self.use_ssl:
                conn = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
            else:
                conn = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            conn.ehlo()
            if self.use_tls:
                conn.starttls(context=context)
                conn.ehlo()
            if self.username:
                conn.login(self.username, self._password)
            return conn
        except Exception as exc:  # noqa: BLE001 - every failure to connect becomes a ChannelError
            if conn is not None:
                conn.close()
            raise self._connect_error(exc, where) from None

    def _connect_error(self, exc, where):
        if isinstance(exc, ConnectionRefusedError):
            return _error(f"SMTP: connection refused by {where} (is the server running? check EMAIL_URL)",
                          "refused")
        if isinstance(exc, (socket.timeout, TimeoutError)) or "timed out" in str(exc):
            return _error(f"SMTP: {where} did not answer within {self.timeout:g} s (EMAIL_TIMEOUT)", "timeout")
        if isinstance(exc, ssl.SSLCertVerificationError):
            return _error(f"SMTP: the TLS certificate of {where} is not valid ({exc.verify_message})", "tls",
                          ConfigurationError)
        if isinstance(exc, ssl.SSLError):
            return _error(f"SMTP: TLS handshake with {where} failed ({exc.reason or exc}); the port may expect "
                          "plain SMTP or STARTTLS (smtp:// or smtp+tls://) instead of implicit TLS", "tls",
                          ConfigurationError)
        if isinstance(exc, smtplib.SMTPNotSupportedError) and "STARTTLS" in str(exc).upper():
            return _error(f"SMTP: {where} does not offer STARTTLS; use smtp:// or smtps:// (port 465)", "tls",
                          ConfigurationError)
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return _error(f"SMTP: {where} does not offer AUTH here (it may require STARTTLS first)", "auth",
                          ConfigurationError)
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            return _error(f"SMTP {exc.smtp_code} {_reply_text(exc.smtp_error)}: login refused by {where} "
                          "(check the user and password in EMAIL_URL)", "auth", ConfigurationError,
                          code=exc.smtp_code)
        if isinstance(exc, smtplib.SMTPResponseException):
            return _error(f"SMTP {exc.smtp_code} {_reply_text(exc.smtp_error)} from {where} on connect",
                          "temporary" if exc.smtp_code < 500 else "rejected",
                          ChannelError if exc.smtp_code < 500 else ConfigurationError, code=exc.smtp_code)
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            return _error(f"SMTP: {where} closed the connection before greeting ({exc})", "disconnected")
        if isinstance(exc, OSError):
            return _error(f"SMTP: cannot connect to {where} ({type(exc).__name__}: {exc})", "refused")
        return _error(f"SMTP: {type(exc).__name__}: {exc}", "disconnected")

    def _transaction(self, conn, address, data):
        try:
            code, resp = conn.mail(self.envelope_from)
        except smtplib.SMTPServerDisconnected as exc:
            raise _Stale(str(exc)) from None
        except OSError as exc:
            raise _Stale(f"{type(exc).__name__}: {exc}") from None
        try:
            if code != 250:
                raise classify(code, resp, "MAIL")
            code, resp = conn.rcpt(address)
            if code not in (250, 251):
                raise classify(code, resp, "RCPT")
            code, resp = conn.data(data)
            if code != 250:
                raise classify(code, resp, "DATA")
        except smtplib.SMTPDataError as exc:  # the reply to DATA itself was not 354
            self._after_refusal(exc.smtp_code)
            raise classify(exc.smtp_code, exc.smtp_error, "DATA") from None
        except ChannelError as exc:
            self._after_refusal(exc.code)
            raise
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self.close()
            timed_out = "timed out" in str(exc) or isinstance(exc, TimeoutError)
            what = f"no answer within {self.timeout:g} s" if timed_out else f"connection lost ({exc})"
            # Once the message body left, the server may have taken it.
            raise _error(f"SMTP: {what} during the transaction", "timeout" if timed_out else "disconnected",
                         maybe_delivered=True) from None

    def _after_refusal(self, code):
        """A refused transaction leaves the connection usable after RSET;
        421 means the server is closing it."""
        if code == 421:
            self.close()
            return
        try:
            self._conn.rset()
        except (smtplib.SMTPException, OSError, AttributeError):
            self.close()


class _Stale(Exception):
    """The connection was dead before this message's first command."""


# -- registration ---------------------------------------------------------------
def normalize_email(address):
    """A valid address with its domain lower-cased (the local part is the
    mailbox owner's business, RFC 5321 2.4)."""
    value = str(address or "").strip()
    try:
        validate_email(value)
    except ValidationError:
        raise InvalidAddress(_("Invalid e-mail address %(address)r.") % {"address": str(address or "")}) from None
    local, _at, domain = value.rpartition("@")
    try:
        domain = domain.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise InvalidAddress(_("Invalid e-mail address %(address)r.") % {"address": value}) from None
    return f"{local}@{domain}"


def _account():
    from django.conf import settings

    return f"{settings.EMAIL_HOST_USER}@{settings.EMAIL_HOST}:{settings.EMAIL_PORT}"


def _build():
    from django.conf import settings

    return EmailChannel(
        host=settings.EMAIL_HOST, port=settings.EMAIL_PORT, username=settings.EMAIL_HOST_USER,
        password=settings.EMAIL_HOST_PASSWORD, use_tls=settings.EMAIL_USE_TLS, use_ssl=settings.EMAIL_USE_SSL,
        timeout=settings.EMAIL_TIMEOUT, from_email=settings.DEFAULT_FROM_EMAIL,
    )


def unsubscribe_url(user_id, category):
    from django.conf import settings
    from django.core import signing
    from django.urls import reverse

    token = signing.dumps([user_id, category], salt=UNSUBSCRIBE_SALT, compress=True)
    return settings.SITE_URL + reverse("email-unsubscribe", args=[token])


UNSUBSCRIBE_SALT = "notifications.email.unsubscribe"


def prepare(log, outgoing):
    """In the worker, before the send: the message type for the templates, a
    Message-ID that stays the same across retries, the unsubscribe link for
    bulk notices, and the work order's PDF for assignments and predictions."""
    from django.conf import settings

    from .. import documents, message_types

    try:
        category = message_types.get(log.message_type).category
    except message_types.UnknownMessageType:
        category = ""
    outgoing.context.update({
        "message_type": log.message_type,
        "message_id": f"<cmms.{log.pk}.{int(log.created_at.timestamp())}@{_domain(settings.DEFAULT_FROM_EMAIL)}>",
    })
    if category in UNSUBSCRIBE_CATEGORIES and log.priority in UNSUBSCRIBE_PRIORITIES and log.user_id:
        outgoing.context["unsubscribe_url"] = unsubscribe_url(log.user_id, category)
    if log.message_type in DOCUMENT_MESSAGE_TYPES:
        document = documents.build(log.related_object_type, log.related_object_id)
        if document is not None:
            outgoing.attachments.append(document)
    return outgoing


register(
    ChannelSpec(
        channel_type="EMAIL",
        build=_build,
        normalize_address=normalize_email,
        account_secret=_account,
        prepare=prepare,
    )
)
