"""The outbox relay: MessageLog rows are the source of truth, the broker only
a fast path. Run by beat every few seconds (and safe to run concurrently)."""

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Max, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from notifications import dispatch
from notifications.models import ChannelConfig, MessageLog, MessageStatus

logger = logging.getLogger(__name__)


def relay(now=None):
    now = now or timezone.now()
    cfg = settings.DELIVERY
    reclaimed = reclaim_expired_leases(now)
    due = (
        MessageLog.objects.filter(status__in=(MessageStatus.QUEUED, MessageStatus.RETRYING))
        .filter(
            Q(published_at__isnull=True, next_attempt_at__lte=now - timedelta(seconds=cfg["RELAY_UNPUBLISHED_AFTER_S"]))
            | Q(published_at__isnull=False, next_attempt_at__lte=now - timedelta(seconds=cfg["RELAY_REPUBLISH_AFTER_S"]))
        )
        .order_by("next_attempt_at")
        .values_list("pk", "channel_type")[: cfg["RELAY_BATCH"]]
    )
    due = list(due)
    published = dispatch.publish(due, fanout=False) if due else 0
    if due or reclaimed:
        logger.info("Relay: %d due, %d published, %d lease(s) reclaimed", len(due), published, reclaimed)
    return {"due": len(due), "published": published, "reclaimed": reclaimed}


def reclaim_expired_leases(now):
    """A row SENDING past its lease belongs to a worker that died mid-send. The
    provider may have received it, so it is flagged as a possible duplicate."""
    expired = MessageLog.objects.filter(status=MessageStatus.SENDING, lease_expires_at__lt=now)
    reason = _("The worker stopped during the attempt (lease expired); retrying.")
    out_of_attempts = expired.filter(attempts__gte=settings.DELIVERY["MAX_ATTEMPTS"]).update(
        status=MessageStatus.FAILED, failed_at=now, last_error=reason, lease_expires_at=None,
        possible_duplicate=True, updated_at=now,
    )
    retried = expired.update(
        status=MessageStatus.RETRYING, next_attempt_at=now, published_at=None, last_error=reason,
        lease_expires_at=None, possible_duplicate=True, updated_at=now,
    )
    return out_of_attempts + retried


def refresh_channel_stats():
    """Counters derived from MessageLog in one aggregate query, instead of a
    shared row that every worker increments."""
    now = timezone.now()
    stats = MessageLog.objects.values("channel_type").annotate(
        sent=Count("pk", filter=Q(status=MessageStatus.SENT)),
        failed=Count("pk", filter=Q(status=MessageStatus.FAILED)),
        last=Max("sent_at"),
    ).order_by()
    for row in stats:
        ChannelConfig.objects.update_or_create(
            channel_type=row["channel_type"],
            defaults={
                "messages_sent": row["sent"],
                "messages_failed": row["failed"],
                "last_used_at": row["last"],
                "stats_updated_at": now,
            },
        )
    return {row["channel_type"]: {"sent": row["sent"], "failed": row["failed"]} for row in stats}
