"""The outbox relay: MessageLog rows are the source of truth, the broker only
a fast path. Run by beat every few seconds, and safe to run concurrently:
each run takes its rows with SELECT ... FOR UPDATE SKIP LOCKED (and a task
published twice would be harmless anyway: the claim has one winner).

What it catches:

- a row left QUEUED/RETRYING and never published (the producer's publish
  was lost, the broker was down, or the wait was too long for a countdown);
- a row published a while ago and still waiting while its queue is empty
  (the task was lost: a worker killed with it prefetched), or published
  very long ago even with a backlog in the queue;
- a broker that lost its data (Redis restarted without persistence, a
  failover to an empty replica, FLUSHALL; a RabbitMQ node rebuilt empty): a
  marker it should hold is gone (workers.broker), so every waiting row is
  published again at once instead of after RELAY_REPUBLISH_AFTER_S;
- a row SENDING past its lease, or held by a worker process whose heartbeat
  stopped (workers.liveness): its worker died mid-attempt.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Max, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from notifications import delivery_states, dispatch
from notifications.models import ChannelConfig, MessageLog, MessageStatus

from . import broker, liveness

logger = logging.getLogger(__name__)
WAITING = (MessageStatus.QUEUED, MessageStatus.RETRYING)
BROKER_MARKER_KEY = broker.MARKER


def relay(now=None):
    now = now or timezone.now()
    cfg = settings.DELIVERY
    lost_since = broker_lost_its_data()
    broker_reset = forget_lost_publishes(lost_since) if lost_since else []
    reclaimed, worker_died = reclaim_expired_leases(now)
    waiting = MessageLog.objects.filter(status__in=WAITING)
    stale = Q(published_at__lte=now - timedelta(seconds=cfg["RELAY_REPUBLISH_AFTER_S"]), next_attempt_at__lte=now)
    stale_channels = list(waiting.filter(stale).values_list("channel_type", flat=True).distinct().order_by())
    backlogs = queue_backlogs({dispatch.queue_for(channel) for channel in stale_channels}) if stale_channels else {}
    idle = [channel for channel in stale_channels if backlogs[dispatch.queue_for(channel)] == 0]
    due = waiting.filter(
        # Never published: give the producer's own publish a moment first.
        Q(published_at__isnull=True, next_attempt_at__lte=now - timedelta(seconds=cfg["RELAY_UNPUBLISHED_AFTER_S"]))
        | Q(published_at__isnull=True, pk__in=reclaimed)
        # The broker lost its data: every waiting row that is due, at once.
        | Q(published_at__isnull=True, pk__in=broker_reset, next_attempt_at__lte=now)
        # Published a while ago, due, still waiting, and its queue is empty: lost.
        | (stale & Q(channel_type__in=idle))
        # Published long ago: lost even though the queue has a backlog.
        | Q(
            published_at__lte=now - timedelta(seconds=cfg["RELAY_REPUBLISH_BACKLOG_AFTER_S"]),
            next_attempt_at__lte=now,
        )
        # A worker died: the tasks it had taken from the queue but not started
        # are gone with it, and nothing says which. Every due row published
        # before its death gets a second task (harmless: the claim has one winner).
        | (Q(published_at__lte=now - timedelta(seconds=cfg["WORKER_HEARTBEAT_TTL_S"]), next_attempt_at__lte=now)
           if worker_died else Q(pk__in=[]))
    )
    rows = take(due, now, cfg["RELAY_BATCH"])
    published = dispatch.send(rows) if rows else []
    if len(published) < len(rows):  # the broker failed part way: the next run retries the rest
        MessageLog.objects.filter(pk__in={pk for pk, _c in rows} - set(published)).update(published_at=None)
    if rows or reclaimed or broker_reset:
        logger.info(
            "Relay: %d due, %d published, %d lease(s) reclaimed, %d reset after a broker data loss",
            len(rows), len(published), len(reclaimed), len(broker_reset),
        )
    return {"due": len(rows), "published": len(published), "reclaimed": len(reclaimed),
            "broker_reset": len(broker_reset)}


def take(due, now, batch):
    """Mark the due rows published before publishing them, in one short
    transaction that skips rows another relay run holds: relay runs that piled
    up while workers were down, then run at once, publish each row once."""
    with transaction.atomic():
        due = due.select_for_update(skip_locked=True).order_by("next_attempt_at")
        rows = list(due.values_list("pk", "channel_type")[:batch])
        if rows:
            MessageLog.objects.filter(pk__in=[pk for pk, _c in rows]).update(published_at=now)
    return rows


def queue_backlog(queue):
    """Tasks waiting in a broker queue (not counting those a worker holds);
    None when the broker cannot tell. Redis and RabbitMQ alike (workers.broker)."""
    return broker.queue_depth(queue)


def queue_backlogs(queues):
    """``{queue: backlog}`` for several queues over one broker connection."""
    return broker.queue_depths(queues)


def broker_lost_its_data():
    """When the broker lost its queues, a time at or before the loss (else
    None): a marker kept next to the queues is gone (workers.broker: a Redis
    key, or on RabbitMQ a durable queue with one persistent message)."""
    return broker.lost_its_data()


def forget_lost_publishes(lost_since):
    """The broker lost its data: mark every waiting row unpublished so this run
    publishes it again. Not only those published before the broker's uptime:
    a task published in the moment before the data went may be gone too, and
    a second task for a row whose first survived is harmless (the claim has
    one winner). Rows SENDING are held by a worker and left alone."""
    waiting = MessageLog.objects.filter(status__in=WAITING, published_at__isnull=False)
    ids = list(waiting.values_list("pk", flat=True).order_by("next_attempt_at")[: settings.DELIVERY["RELAY_BATCH"]])
    waiting.update(published_at=None)
    if ids:
        logger.warning("Relay: the broker lost its data; %d waiting message(s) will be published again.", len(ids))
    return ids


def dead_claimants(now):
    """A filter for rows SENDING whose worker process stopped its heartbeat
    (workers.liveness), or None; claims younger than the heartbeat's TTL are
    left alone."""
    ttl = settings.DELIVERY["WORKER_HEARTBEAT_TTL_S"]
    if ttl <= 0:
        return None
    held = MessageLog.objects.filter(
        status=MessageStatus.SENDING, updated_at__lt=now - timedelta(seconds=ttl), lease_expires_at__gte=now
    ).exclude(claimed_by="")
    claimants = set(held.values_list("claimed_by", flat=True).distinct().order_by()[:1000])
    if not claimants:
        return None
    living = liveness.alive(claimants)
    if living is None:
        return None
    dead = claimants - living
    return Q(pk__in=held.filter(claimed_by__in=dead).values("pk")) if dead else None


def reclaim_expired_leases(now):
    """A row SENDING past its lease, or held by a worker whose heartbeat
    stopped, belongs to a worker that died mid-attempt. The provider may have
    received it, so it is flagged as a possible duplicate. Returns the ids
    handed out again, and whether a worker was found dead by its heartbeat."""
    stopped = Q(lease_expires_at__lt=now)
    dead = dead_claimants(now)
    if dead is not None:
        stopped |= dead
    expired = MessageLog.objects.filter(stopped, status=MessageStatus.SENDING)
    reason = _("The worker stopped during the attempt (lease expired or heartbeat lost).")
    expired.filter(attempts__gte=settings.DELIVERY["MAX_ATTEMPTS"]).update(
        status=MessageStatus.FAILED, failed_at=now, last_error=reason, lease_expires_at=None, claimed_by="",
        possible_duplicate=True, updated_at=now,
    )
    ids = list(expired.values_list("pk", flat=True)[: settings.DELIVERY["RELAY_BATCH"]])
    if not ids:
        return [], False
    # The status and lease are checked again: a slow worker may finish meanwhile.
    MessageLog.objects.filter(stopped, pk__in=ids, status=MessageStatus.SENDING).update(
        status=MessageStatus.RETRYING, next_attempt_at=now, published_at=None, last_error=reason,
        lease_expires_at=None, claimed_by="", possible_duplicate=True, updated_at=now,
    )
    return ids, dead is not None


def refresh_channel_stats():
    """Counters derived from MessageLog, instead of a shared row that every
    worker increments (which would serialize them on one row lock).

    Two grouped queries served by indexes: (channel_type, status) for the
    counts, (channel_type, sent_at) for the last use."""
    now = timezone.now()
    counts = {}
    for row in (
        MessageLog.objects.filter(status__in=(*delivery_states.ACCEPTED, MessageStatus.FAILED, MessageStatus.UNDELIVERED))
        .values("channel_type", "status")
        .annotate(n=Count("pk"))
        .order_by()
    ):
        bucket = "sent" if row["status"] in delivery_states.ACCEPTED else "failed"
        channel_counts = counts.setdefault(row["channel_type"], {"sent": 0, "failed": 0})
        channel_counts[bucket] += row["n"]
    last_used = dict(
        MessageLog.objects.filter(sent_at__isnull=False)
        .values("channel_type")
        .annotate(last=Max("sent_at"))
        .order_by()
        .values_list("channel_type", "last")
    )
    for channel_type in set(counts) | set(last_used) | set(
        ChannelConfig.objects.values_list("channel_type", flat=True)
    ):
        stats = counts.get(channel_type, {"sent": 0, "failed": 0})
        ChannelConfig.objects.update_or_create(
            channel_type=channel_type,
            defaults={
                "messages_sent": stats["sent"],
                "messages_failed": stats["failed"],
                "last_used_at": last_used.get(channel_type),
                "stats_updated_at": now,
            },
        )
    return counts
