"""WhatsApp policy that needs the database: the 24-hour window, the template
mapping, reply-button ids, delivery statuses and the bot's own replies.

The adapter (``channels/whatsapp.py``) only talks HTTP; the worker calls
``prepare`` (the channel's registry hook) right before each attempt, so the
choice between free text and the template is made with the window as it is
when the message leaves, not when it was queued: a user may write (opening
the window) or fall silent (closing it) while a message waits for a retry.

Work-order decisions are not here (``notifications`` does not import
``cmms``): ``cmms.whatsapp`` handles inbound messages and calls the helpers
below.
"""

import hashlib
import hmac
import logging
import re
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from . import delivery_states, dispatch, inbound
from .channels import SkipDelivery
from .channels.registry import InvalidAddress
from .channels.whatsapp import REENGAGEMENT_REQUIRED, UNDELIVERABLE, classify
from .models import ChannelType, MessageLog, MessageStatus, UserChannelPreference, WhatsAppTemplate
from .phones import to_e164

logger = logging.getLogger(__name__)
WHATSAPP = ChannelType.WHATSAPP
REPLY_PREFIX = "wa1"
_REPLY_ID = re.compile(r"^wa1\.(\d{1,18})\.(\d)\.([0-9a-f]{20})$")
STATUS_STATES = {
    "sent": MessageStatus.SENT,
    "delivered": MessageStatus.DELIVERED,
    "read": MessageStatus.READ,
    "failed": MessageStatus.UNDELIVERED,
}


# -- the window -------------------------------------------------------------------
def window_open(pref, now=None):
    if pref is None or pref.window_opened_at is None:
        return False
    now = now or timezone.now()
    return now - pref.window_opened_at < timedelta(seconds=settings.WHATSAPP_WINDOW_S)


def open_window(pref, at):
    """A message from the user opens (or extends) the window; only forward,
    since webhooks arrive out of order."""
    UserChannelPreference.objects.filter(pk=pref.pk).exclude(window_opened_at__gte=at).update(
        window_opened_at=at, updated_at=timezone.now())


def close_window(user_id):
    """Meta said the window is closed (131047): forget it until the user writes."""
    UserChannelPreference.objects.filter(user_id=user_id, channel_type=WHATSAPP).update(window_opened_at=None)


def preference_for_phone(phone):
    """The WhatsApp preference whose number is ``phone`` (any spelling), or None."""
    try:
        e164 = to_e164(phone if str(phone).startswith("+") else f"+{phone}")
    except InvalidAddress:
        return None
    prefs = UserChannelPreference.objects.filter(channel_type=WHATSAPP).select_related("user")
    exact = prefs.filter(channel_user_id=e164).first()
    if exact:
        return exact
    for pref in prefs.exclude(channel_user_id=""):  # numbers typed as "9 8765 4321"
        try:
            if to_e164(pref.channel_user_id) == e164:
                return pref
        except InvalidAddress:
            continue
    return None


# -- what to send -------------------------------------------------------------------
def prepare(log, message):
    """The registry's prepare hook: free text with buttons inside the window,
    the template outside it, SkipDelivery when outside without a template."""
    pref = UserChannelPreference.objects.filter(user_id=log.user_id, channel_type=WHATSAPP).first()
    options = (log.payload or {}).get("whatsapp") or {}
    template, problem = template_for(log, message)
    if window_open(pref) and not options.get("force_template"):
        buttons = [{"id": reply_id(log.pk, i), "title": a["text"]} for i, a in enumerate(message.actions[:3])]
        message.extras["whatsapp"] = {"mode": "session", "buttons": buttons, "template": template}
        return message
    if template is None:
        raise SkipDelivery(problem)
    message.extras["whatsapp"] = {"mode": "template", "template": template}
    return message


def template_for(log, message):
    """(the template to send, None) or (None, why there is none)."""
    mapping = WhatsAppTemplate.objects.filter(message_type=log.message_type, is_active=True).first()
    if mapping is None:
        return None, _(
            "Outside WhatsApp's 24-hour window (the user has not written in the last 24 hours) and message type "
            "%(type)s has no approved template: add one under Omnichannel Bot > WhatsApp templates."
        ) % {"type": log.message_type}
    fields = message_fields(log)
    values, missing = [], []
    for name in mapping.parameters or []:
        value = fields.get(str(name))
        if value is None:
            missing.append(str(name))
        values.append(template_text(value))
    if missing:
        return None, _("WhatsApp template %(name)s needs %(fields)s, which this message does not have.") % {
            "name": mapping.name, "fields": ", ".join(missing)}
    buttons = [reply_id(log.pk, i) for i in range(min(mapping.quick_reply_buttons, len(message.actions)))]
    return {"name": mapping.name, "language": mapping.language, "parameters": values, "buttons": buttons}, ""


def message_fields(log):
    payload = log.payload or {}
    fields = {"title": log.title, "body": log.body, "link": payload.get("link", "")}
    fields.update({str(k): v for k, v in (payload.get("context") or {}).items()})
    return fields


def template_text(value):
    """Meta refuses a parameter with a newline, a tab or more than four
    spaces in a row (132018), or an empty one."""
    text = " ".join(str(value if value is not None else "").split())
    return text[:1000] or "-"


# -- reply-button ids ---------------------------------------------------------------
def _signature(log_pk, index):
    key = hashlib.sha256(f"whatsapp-reply:{settings.SECRET_KEY}".encode()).digest()
    return hmac.new(key, f"{log_pk}.{index}".encode(), hashlib.sha256).hexdigest()[:20]


def reply_id(log_pk, index):
    """An opaque, unforgeable id for button ``index`` of message ``log_pk``:
    it names what was offered, and only we can make one."""
    return f"{REPLY_PREFIX}.{log_pk}.{index}.{_signature(log_pk, index)}"


def resolve_reply(value):
    """(MessageLog, action) for a pressed button's id, or None when it is not
    one of ours (forged, mangled, or its message is gone)."""
    match = _REPLY_ID.match(str(value or ""))
    if not match:
        return None
    log_pk, index, signature = int(match[1]), int(match[2]), match[3]
    if not hmac.compare_digest(signature, _signature(log_pk, index)):
        return None
    log = MessageLog.objects.filter(pk=log_pk, channel_type=WHATSAPP).first()
    actions = ((log.payload or {}).get("actions") or []) if log else []
    if index >= len(actions):
        return None
    return log, actions[index]


# -- statuses -----------------------------------------------------------------------
def apply_status(event):
    """A status webhook entry: move the row forward; a failure with 131047
    resends the message as its template once; 131026 marks the address."""
    status = event.payload
    state = STATUS_STATES.get(status.get("status"))
    if state is None:
        raise inbound.Ignore(f"Status {status.get('status')!r} is not a delivery state.")
    at = timestamp(status.get("timestamp"))
    error = (status.get("errors") or [{}])[0]
    reason = str(classify(0, error)) if error else ""
    matched, moved = delivery_states.advance_by_provider_id(WHATSAPP, status.get("id", ""), state, at=at,
                                                            error=reason)
    if not matched:
        raise inbound.RetryLater(f"No WhatsApp message {status.get('id')} recorded yet.")
    if state != MessageStatus.UNDELIVERED or not moved:
        return f"{status.get('id')}: {state}" + ("" if moved else " (no change)")
    log = MessageLog.objects.filter(channel_type=WHATSAPP, provider_message_id=status["id"]).first()
    code = int(error.get("code") or 0)
    if code == UNDELIVERABLE:
        UserChannelPreference.objects.filter(user_id=log.user_id, channel_type=WHATSAPP,
                                             channel_user_id=log.recipient).update(
            is_reachable=False, unreachable_reason=reason[:255], unreachable_since=timezone.now())
        return f"{status['id']}: UNDELIVERED, address marked unreachable"
    if code == REENGAGEMENT_REQUIRED:
        return resend_as_template(log)
    return f"{status['id']}: UNDELIVERED ({reason[:120]})"


def resend_as_template(log):
    """Meta reported 131047 after accepting a free-form message: the window
    had closed. Send the message again as its template, once (a unique
    idempotency key makes a repeated webhook harmless)."""
    close_window(log.user_id)
    if (log.payload or {}).get("whatsapp", {}).get("force_template"):
        return f"#{log.pk}: 131047 for a template; not resent"
    if not WhatsAppTemplate.objects.filter(message_type=log.message_type, is_active=True).exists():
        return f"#{log.pk}: 131047 and message type {log.message_type} has no template; not resent"
    payload = dict(log.payload or {})
    payload["whatsapp"] = {"force_template": True, "fallback_of": log.pk}
    now = timezone.now()
    try:
        with transaction.atomic():
            copy = MessageLog.objects.create(
                user_id=log.user_id, channel_type=WHATSAPP, recipient=log.recipient, message_type=log.message_type,
                title=log.title, body=log.body, priority=log.priority, payload=payload,
                related_object_type=log.related_object_type, related_object_id=log.related_object_id,
                idempotency_key=f"wa-131047:{log.pk}", created_at=now, updated_at=now, next_attempt_at=now)
    except IntegrityError:
        return f"#{log.pk}: already resent as a template"
    MessageLog.objects.filter(pk=log.pk).update(
        last_error=_("%(error)s Resent as its template in message #%(copy)d.") % {
            "error": log.last_error, "copy": copy.pk})
    dispatch.publish_on_commit([(copy.pk, WHATSAPP)])
    return f"#{log.pk}: 131047, resent as template in #{copy.pk}"


def timestamp(value):
    try:
        return datetime.fromtimestamp(int(value), tz=UTC)
    except (TypeError, ValueError, OverflowError):
        return timezone.now()


# -- the bot's replies --------------------------------------------------------------
def reply(pref, text):
    """A free-form answer to someone who just wrote (their window is open),
    sent through the worker like every message."""
    now = timezone.now()
    row = MessageLog.objects.create(
        user_id=pref.user_id, channel_type=WHATSAPP, recipient=to_e164(pref.channel_user_id),
        message_type="bot_reply", body=text, created_at=now, updated_at=now, next_attempt_at=now)
    dispatch.publish_on_commit([(row.pk, WHATSAPP)])
    return row


# -- webhook payloads ---------------------------------------------------------------
def events_from_webhook(body):
    """[(event_id, kind, sender, payload)] for each status and message in a
    webhook body. A status's id is its wamid and state (one message has a
    sent, a delivered and a read status); a message's, its own wamid."""
    events = []
    for entry in body.get("entry") or []:
        for change in entry.get("changes") or []:
            value = change.get("value") or {}
            for status in value.get("statuses") or []:
                events.append((f"status:{status.get('id')}:{status.get('status')}", "status",
                               str(status.get("recipient_id", "")), status))
            for message in value.get("messages") or []:
                events.append((f"message:{message.get('id')}", str(message.get("type", "message")),
                               str(message.get("from", "")), message))
    return events
