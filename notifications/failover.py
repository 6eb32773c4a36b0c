"""Channel failover for high and critical messages.

A high or critical MessageLog row is decided once (``failover_checked_at``,
claimed with a conditional update):

- it failed for good (FAILED, UNDELIVERED, or SKIPPED by routing: a blocked
  bot's address is marked unreachable and later messages are skipped), or it
  was SENT on a channel that must confirm delivery
  (``ESCALATION["FAILOVER_CONFIRM_S"]``) and no receipt came in time: the
  same message goes out on the user's next channel by ``failover_rank`` that
  this message has not used yet, as a new row whose ``failover_of`` points
  at this one (the operator follows the chain in the admin);
- it was confirmed (DELIVERED, READ, or SENT on a channel without receipts):
  nothing to do.

Rows still on their way (QUEUED, SENDING, RETRYING, HELD) wait for the next
scan. Beat runs ``run`` every few seconds (``workers.run_channel_failover``).
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from . import dispatch
from .channels import registry
from .models import ChannelConfig, MessageLog, MessageStatus, UserChannelPreference

logger = logging.getLogger(__name__)
PRIORITIES = ("high", "critical")
S = MessageStatus


def cfg(name):
    return settings.ESCALATION[name]


def run(now=None, batch=500):
    now = now or timezone.now()
    confirm = cfg("FAILOVER_CONFIRM_S")
    pending = MessageLog.objects.filter(failover_checked_at__isnull=True, priority__in=PRIORITIES)
    too_old = pending.filter(created_at__lt=now - timedelta(seconds=cfg("FAILOVER_MAX_AGE_S"))).update(
        failover_checked_at=now)
    confirmed = pending.filter(
        Q(status__in=[S.DELIVERED, S.READ]) | Q(status=S.SENT) & ~Q(channel_type__in=list(confirm))
        | Q(status=S.SKIPPED, digest__isnull=False)
    ).update(failover_checked_at=now)
    unconfirmed = Q(pk__in=[])
    for channel, seconds in confirm.items():
        unconfirmed |= Q(channel_type=channel, status=S.SENT, sent_at__lte=now - timedelta(seconds=seconds))
    failing = list(
        pending.filter(Q(status__in=[S.FAILED, S.UNDELIVERED]) | Q(status=S.SKIPPED, digest__isnull=True) | unconfirmed)
        .filter(user__isnull=False).order_by("created_at").values_list("pk", flat=True)[:batch]
    )
    resent = 0
    for pk in failing:
        resent += 1 if fail_over(pk, now) else 0
    return {"confirmed": confirmed, "failing": len(failing), "resent": resent, "expired": too_old}


def fail_over(message_id, now=None):
    """Send ``message_id`` again on the next channel; returns the new row or None."""
    now = now or timezone.now()
    with transaction.atomic():
        if not MessageLog.objects.filter(pk=message_id, failover_checked_at__isnull=True).update(
                failover_checked_at=now):
            return None
        log = MessageLog.objects.get(pk=message_id)
        pref = next_preference(log)
        if pref is None:
            logger.info("Message %s (%s) failed and its user has no other channel to fail over to.",
                        log.pk, log.channel_type)
            return None
        return _resend(log, pref, now)


def message_family(log):
    """Every row of the same message for the same user: the rows the router
    wrote together and the failovers that followed them."""
    root = log
    while root.failover_of_id:
        root = MessageLog.objects.get(pk=root.failover_of_id)
    family = set(MessageLog.objects.filter(user_id=root.user_id, created_at=root.created_at, body=root.body)
                 .values_list("pk", flat=True)) | {root.pk}
    frontier = set(family)
    while frontier:
        frontier = set(MessageLog.objects.filter(failover_of__in=frontier).values_list("pk", flat=True)) - family
        family |= frontier
    return family


def next_preference(log):
    used = set(MessageLog.objects.filter(pk__in=message_family(log)).values_list("channel_type", flat=True))
    switched_off = set(ChannelConfig.objects.filter(is_enabled=False).values_list("channel_type", flat=True))
    candidates = (
        UserChannelPreference.objects.filter(user_id=log.user_id, is_enabled=True, is_reachable=True,
                                             failover_rank__isnull=False)
        .exclude(channel_type__in=used | switched_off).order_by("failover_rank", "channel_type")
    )
    for pref in candidates:
        if registry.is_registered(pref.channel_type):
            return pref
    return None


def _resend(log, pref, now):
    spec = registry.get(pref.channel_type)
    status, reason, address = S.QUEUED, "", pref.channel_user_id.strip()
    try:
        address = spec.normalize_address(pref.channel_user_id)
    except registry.InvalidAddress as exc:
        status, reason = S.SKIPPED, str(exc)
    else:
        if spec.delivered_on_write:
            status = S.SENT
    copy = MessageLog.objects.create(
        user_id=log.user_id, channel_type=pref.channel_type, recipient=address, message_type=log.message_type,
        title=log.title, body=log.body, priority=log.priority, payload=log.payload, status=status,
        last_error=reason or _("Failover from %(channel)s (message #%(id)d): %(why)s") % {
            "channel": log.channel_type, "id": log.pk, "why": _why(log)},
        related_object_type=log.related_object_type, related_object_id=log.related_object_id,
        idempotency_key=f"failover:{log.pk}", failover_of=log, created_at=now, updated_at=now,
        next_attempt_at=now, sent_at=now if status == S.SENT else None,
    )
    if status != S.SKIPPED and spec.on_write:
        spec.on_write([copy])  # the in-app inbox stores its entry, as the router does
    if status == S.QUEUED:
        dispatch.publish_on_commit([(copy.pk, copy.channel_type)])
    logger.info("Message %s failed over from %s to %s as %s.", log.pk, log.channel_type, copy.channel_type, copy.pk)
    return copy


def _why(log):
    if log.status == S.SENT:
        return _("no delivery confirmation in time")
    return log.get_status_display().lower()
