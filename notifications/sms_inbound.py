"""What a worker does with Twilio's inbound events (recorded by
notifications.sms_webhooks): delivery receipts move MessageLog rows, and an
inbound SMS is an opt-out keyword, a command (``ACEPTAR OT-00042``, handled
by whoever registered one: ``cmms``) or gets a short help reply.

The delivery-state mapping (docs/channels.md, "SMS (Twilio)"):
``sent`` -> SENT, ``delivered`` -> DELIVERED, ``undelivered`` -> UNDELIVERED,
``failed`` -> FAILED (both with the error code and its meaning);
``queued``, ``accepted``, ``scheduled``, ``sending`` say nothing new.
"""

import logging

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import override

from . import delivery_states, inbound
from .channels.sms import DELIVERY_ERRORS
from .models import ChannelType, InboundEvent, MessageLog, MessageStatus, Priority, UserChannelPreference

logger = logging.getLogger(__name__)
PROVIDER = ChannelType.SMS
REPLY_TYPE = "sms_reply"

STATUS_STATES = {
    "sent": MessageStatus.SENT,
    "delivered": MessageStatus.DELIVERED,
    "undelivered": MessageStatus.UNDELIVERED,
    "failed": MessageStatus.FAILED,
}
# Carriers' and Twilio's default keywords (channel-apis.md, "Twilio inbound and opt-out").
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "BAJA"})
START_WORDS = frozenset({"START", "YES", "UNSTOP", "ALTA"})
HELP_WORDS = frozenset({"HELP", "INFO", "AYUDA"})

_commands = []


def register_command(handler):
    """``handler(user, text) -> reply or None``: a command an SMS can carry
    (cmms registers ACEPTAR/RECHAZAR). None: not this handler's command."""
    if handler not in _commands:
        _commands.append(handler)


def handle(event):
    if event.kind == "status":
        return apply_status(event.payload)
    return handle_message(event)


def apply_status(params):
    sid, status = params.get("MessageSid", ""), str(params.get("MessageStatus", "")).lower()
    state = STATUS_STATES.get(status)
    if state is None:
        raise inbound.Ignore(f"Twilio status {status!r} is not a delivery state we record.")
    error = ""
    code = str(params.get("ErrorCode") or "")
    if state in (MessageStatus.UNDELIVERED, MessageStatus.FAILED):
        meaning = DELIVERY_ERRORS.get(code, "no reason given" if not code else "see twilio.com/docs/api/errors")
        error = f"Twilio {code or '-'}: {meaning}"
    matched, moved = delivery_states.advance_by_provider_id(PROVIDER, sid, state, error=error)
    if not matched:
        raise inbound.RetryLater(f"No SMS with id {sid} recorded yet.")
    if not moved:
        return f"{sid}: {status} (no change, the row is already further on)"
    return f"{sid}: {state}"


def handle_message(event):
    params = event.payload
    sender = params.get("From", "")
    text = " ".join(str(params.get("Body", "")).split())
    prefs = list(UserChannelPreference.objects.filter(channel_type=PROVIDER, channel_user_id=sender)
                 .select_related("user"))
    user = prefs[0].user if prefs else None
    if user is not None:
        InboundEvent.objects.filter(pk=event.pk).update(user=user)
    keyword = text.split(" ", 1)[0].upper() if text else ""
    if keyword in STOP_WORDS:
        # Recorded even for a number we do not know: carriers require it, and
        # Twilio refuses our sends to it (21610) until START anyway.
        UserChannelPreference.objects.filter(channel_type=PROVIDER, channel_user_id=sender,
                                             opted_out_at__isnull=True).update(opted_out_at=timezone.now())
        return f"Opt-out ({keyword}) recorded for {sender}."
    if keyword in START_WORDS:
        n = UserChannelPreference.objects.filter(channel_type=PROVIDER, channel_user_id=sender,
                                                 opted_out_at__isnull=False).update(opted_out_at=None)
        return f"Opt-in ({keyword}) recorded for {sender} ({n} preference(s))."
    if user is None:
        raise inbound.Ignore(f"SMS from {sender}, a number no user has: not answered.")
    if keyword not in HELP_WORDS:
        for command in _commands:
            reply = command(user, text)
            if reply is not None:
                send_reply(event, user, sender, reply)
                return f"Command {keyword}: {reply}"[:255]
    send_reply(event, user, sender, help_text())
    return "Help sent."


def help_text():
    from django.conf import settings

    with override(settings.LANGUAGE_CODE):
        return _("CMMS: reply ACEPTAR OT-00042 or RECHAZAR OT-00042 to act on a work order; "
                 "STOP to stop SMS, START to get them again.")


def send_reply(event, user, to, text):
    """The reply is a MessageLog row like any message (the outbox publishes
    it), once per inbound event even when the event is processed again."""
    from . import dispatch

    now = timezone.now()
    row = MessageLog(user=user, channel_type=PROVIDER, recipient=to, message_type=REPLY_TYPE, body=text,
                     priority=Priority.CRITICAL, created_at=now, updated_at=now, next_attempt_at=now,
                     related_object_type="inbound_event", related_object_id=str(event.pk),
                     idempotency_key=f"sms-reply:{event.pk}")
    try:
        with transaction.atomic():
            row.save(force_insert=True)
    except IntegrityError:
        return None
    dispatch.publish_on_commit([(row.pk, row.channel_type)])
    return row
