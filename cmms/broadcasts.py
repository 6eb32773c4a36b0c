"""Broadcasts that ask for a confirmation: "18/25 confirmaron".

``send_broadcast`` records who it went to and sends each person the message
with a "Confirmar lectura" button (callback ``bc:ack:<id>``). ``confirm`` is
the one function every channel calls when someone confirms (the Telegram
button, a reply, the inbox); a repeat changes nothing. ``resend_missing``
sends it again to those who have not confirmed.
"""

import re

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from notifications.message_router import MessageRouter

from . import messages
from .models import Broadcast, BroadcastRecipient

CONFIRM_CALLBACK = "bc:ack:{pk}"


def _actions(broadcast):
    if not broadcast.ask_confirmation:
        return None
    with messages.default_language():
        return [{"text": _("✅ Confirm reading"), "callback_data": CONFIRM_CALLBACK.format(pk=broadcast.pk)}]


def _send(broadcast, users, key):
    router = MessageRouter()
    for user in users:
        router.send_to_user(user=user, title=broadcast.title, message=broadcast.body, message_type="announcement",
                            priority=broadcast.priority, related_object_type="broadcast",
                            related_object_id=str(broadcast.pk), actions=_actions(broadcast), idempotency_key=key)


def send_broadcast(role, title, message, sent_by=None, ask_confirmation=True, priority="normal"):
    broadcast = Broadcast(title=title, body=message, role=role, priority=priority,
                          ask_confirmation=ask_confirmation, sent_by=sent_by)
    return deliver(broadcast)


def deliver(broadcast):
    """Save ``broadcast`` and send it to every active user with its role."""
    users = list(get_user_model().objects.filter(role=broadcast.role, is_active=True).order_by("pk"))
    with transaction.atomic():
        broadcast.save()
        BroadcastRecipient.objects.bulk_create([BroadcastRecipient(broadcast=broadcast, user=u) for u in users])
        _send(broadcast, users, f"bc:{broadcast.pk}")
    return broadcast


def confirm(broadcast_id, user, via):
    """True when this was the person's first confirmation."""
    return bool(BroadcastRecipient.objects.filter(broadcast_id=broadcast_id, user=user, confirmed_at__isnull=True)
                .update(confirmed_at=timezone.now(), confirmed_via=str(via)[:20]))


def confirmation_id(data):
    """The broadcast id in a "Confirmar lectura" button's data, else None."""
    match = re.fullmatch(r"bc:ack:(\d{1,18})", str(data or ""))
    return int(match.group(1)) if match else None


def confirm_press(broadcast_id, user, via):
    """A person pressed "Confirmar lectura" (or replied): ``(recorded,
    answer)`` with the answer in the default language. Only a recipient of
    that broadcast can confirm it, and only for themselves, so data typed by
    hand can confirm nothing else."""
    with messages.default_language():
        if not BroadcastRecipient.objects.filter(broadcast_id=broadcast_id, user=user).exists():
            return False, _("This notice was not sent to you; nothing was recorded.")
        if confirm(broadcast_id, user, via):
            return True, _("✅ Reading confirmed. Thank you.")
        return False, _("You had already confirmed this notice.")


def summary(broadcast):
    """{'confirmed': 18, 'total': 25, 'missing': [users], 'text': '18/25 confirmaron'}"""
    rows = list(BroadcastRecipient.objects.filter(broadcast=broadcast).select_related("user"))
    confirmed = sum(1 for r in rows if r.confirmed_at)
    with messages.default_language():
        text = _("%(confirmed)d/%(total)d confirmed") % {"confirmed": confirmed, "total": len(rows)}
    return {"confirmed": confirmed, "total": len(rows), "missing": [r.user for r in rows if not r.confirmed_at],
            "text": text}


def resend_missing(broadcast):
    """Send again to those who have not confirmed; returns how many."""
    with transaction.atomic():
        locked = Broadcast.objects.select_for_update().get(pk=broadcast.pk)
        Broadcast.objects.filter(pk=locked.pk).update(resends=locked.resends + 1)
        missing = [r.user for r in BroadcastRecipient.objects.filter(broadcast=locked, confirmed_at__isnull=True)
                   .select_related("user") if r.user.is_active]
        _send(locked, missing, f"bc:{locked.pk}:resend:{locked.resends + 1}")
    return len(missing)
