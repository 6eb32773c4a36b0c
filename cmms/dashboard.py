"""What the operations dashboard and /metrics show: one snapshot of the
dispatcher, computed from the database and the broker at request time.

Every query is bounded: by an index on (channel_type, status), on
created_at or sent_at ranges, or by a LIMIT. With a million MessageLog rows
the whole snapshot stays well under a second on PostgreSQL (bench:
``dashboard_1m_ms``). Counts over a window use ``created_at`` (indexed), so
the 30-day chart reads 30 days of rows, never the whole table.
"""

import math
from collections import defaultdict
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, F, Sum
from django.db.models.functions import TruncDay
from django.utils import timezone

from notifications import delivery_states
from notifications.channels import registry
from notifications.models import (
    ChannelConfig,
    ChannelType,
    InboundEvent,
    MessageLog,
    MessageStatsHour,
    MessageStatus,
    UserChannelPreference,
)

from .models import WorkOrder, WorkOrderStatus

S = MessageStatus
OUTCOMES = {S.SENT: "sent", S.DELIVERED: "sent", S.READ: "sent", S.FAILED: "failed", S.UNDELIVERED: "failed",
            S.SKIPPED: "skipped"}
BACKLOG = (S.QUEUED, S.RETRYING, S.SENDING)
# Percentiles over the newest sends of each channel and window: enough for a
# stable p95, and bounded however busy the channel is.
LATENCY_SAMPLE = 2_000
# Dead letters are counted up to this many ("10000+"): a bounded count.
COUNT_CAP = 10_000
TOP = 10


def channel_table(now):
    """Per channel: current backlog (all time: few rows, by the status index),
    outcomes of the last 24 h, last use, enabled and configured."""
    day = now - timedelta(hours=24)
    rows = {c: {"channel": c, "label": ChannelType(c).label, **{s.lower(): 0 for s in S.values}}
            for c in ChannelType.values}
    for r in (MessageLog.objects.filter(status__in=BACKLOG).values("channel_type", "status")
              .annotate(n=Count("pk")).order_by()):
        rows.setdefault(r["channel_type"], {"channel": r["channel_type"]})[r["status"].lower()] = r["n"]
    for r in (MessageLog.objects.filter(created_at__gte=day).exclude(status__in=BACKLOG)
              .values("channel_type", "status").annotate(n=Count("pk")).order_by()):
        rows.setdefault(r["channel_type"], {"channel": r["channel_type"]})[r["status"].lower()] = r["n"]
    configs = {c.channel_type: c for c in ChannelConfig.objects.all()}
    last_used = {c: _newest_sent(c) for c in rows}
    for channel, row in rows.items():
        config = configs.get(channel)
        row["enabled"] = config.is_enabled if config else True
        row["registered"] = registry.is_registered(channel)
        row["configured"] = _configured(channel)
        row["last_used"] = last_used.get(channel)
        row["details"] = (config.settings or {}) if config else {}
    return [rows[c] for c in sorted(rows)]


def _newest_sent(channel):
    """One backward step on the (channel_type, sent_at) index."""
    return (MessageLog.objects.filter(channel_type=channel, sent_at__isnull=False).order_by("-sent_at")
            .values_list("sent_at", flat=True).first())


def _configured(channel):
    if not registry.is_registered(channel):
        return False
    spec = registry.get(channel)
    if spec.build is None:
        return True
    try:
        return bool(spec.account_secret())
    except Exception:  # noqa: BLE001 - a broken secret store reads as "not configured"
        return False


def chart(now, unit):
    """Messages per hour (24 h) or per day (30 d), by channel and outcome:
    ``{"buckets": [datetime...], "series": {(channel, outcome): [n...]}}``.
    Read from the hourly roll-ups (notifications.stats, kept by beat every
    minute), so 30 days cost a few thousand rows, not a table scan."""
    if unit == "hour":
        start = (now - timedelta(hours=23)).replace(minute=0, second=0, microsecond=0)
        step = timedelta(hours=1)
    else:
        local = timezone.localtime(now)
        start = (local - timedelta(days=29)).replace(hour=0, minute=0, second=0, microsecond=0)
        step = timedelta(days=1)
    buckets = []
    at = start
    while at <= now:
        buckets.append(at)
        at += step
    index = {_bucket_key(b, unit): i for i, b in enumerate(buckets)}
    series = defaultdict(lambda: [0] * len(buckets))
    rows = MessageStatsHour.objects.filter(hour__gte=start).exclude(status__in=BACKLOG)
    if unit == "day":  # summed into local days by the database: 30 x channels x states rows
        rows = rows.annotate(bucket=TruncDay("hour")).values("bucket", "channel_type", "status")
    else:
        rows = rows.annotate(bucket=F("hour")).values("bucket", "channel_type", "status")
    for r in rows.annotate(n=Sum("count")).order_by():
        i = index.get(_bucket_key(r["bucket"], unit))
        if i is not None:
            series[(r["channel_type"], OUTCOMES.get(r["status"], "other"))][i] += r["n"]
    return {"unit": unit, "buckets": buckets, "series": dict(series)}


def _bucket_key(moment, unit):
    local = timezone.localtime(moment) if timezone.is_aware(moment) else moment
    return (local.year, local.month, local.day, local.hour if unit == "hour" else 0)


def percentile(sorted_values, p):
    """Nearest-rank percentile of an ascending list (None when empty)."""
    if not sorted_values:
        return None
    rank = max(math.ceil(p / 100 * len(sorted_values)), 1)
    return sorted_values[rank - 1]


def latencies(now):
    """Creation to SENT, p50 and p95 in seconds, per channel, over the last
    hour and day (the newest LATENCY_SAMPLE sends of each window, read
    through the (channel_type, sent_at) index)."""
    out = {}
    for channel in ChannelType.values:
        for window, delta in (("hour", timedelta(hours=1)), ("day", timedelta(days=1))):
            rows = (MessageLog.objects.filter(channel_type=channel, sent_at__gte=now - delta)
                    .filter(status__in=delivery_states.ACCEPTED).order_by("-sent_at")
                    .values_list("created_at", "sent_at")[:LATENCY_SAMPLE])
            vals = sorted(max((sent - created).total_seconds(), 0.0) for created, sent in rows)
            if vals:
                out.setdefault(channel, {})[window] = {"p50": percentile(vals, 50), "p95": percentile(vals, 95),
                                                       "n": len(vals)}
    return out


def failure_reasons(now, days=7):
    """The most frequent errors of messages that failed in the last ``days``."""
    return list(
        MessageLog.objects.filter(status__in=(S.FAILED, S.UNDELIVERED), failed_at__gte=now - timedelta(days=days))
        .values("channel_type", "last_error").annotate(n=Count("pk")).order_by("-n")[:TOP]
    )


def unreachable(limit=50):
    return list(UserChannelPreference.objects.filter(is_reachable=False).select_related("user")
                .order_by("-unreachable_since")[:limit])


def dead_letters(limit=20):
    rows = MessageLog.objects.filter(status=S.FAILED)
    count = rows.order_by()[:COUNT_CAP + 1].count()
    return {"count": count, "capped": count > COUNT_CAP, "count_shown": min(count, COUNT_CAP),
            "latest": list(rows.select_related("user").order_by("-failed_at")[:limit])}


def waiting_orders(now, limit=20):
    """Assigned and not yet accepted, oldest assignment first, with the time
    since the last alert (or the assignment)."""
    orders = list(WorkOrder.objects.filter(status=WorkOrderStatus.ASSIGNED).select_related("asset", "assignee")
                  .order_by("assigned_at", "pk")[:limit])
    for order in orders:
        since = order.last_alert_at or order.assigned_at or order.created_at
        order.waiting = now - since
    return orders


def queues():
    """Tasks waiting per Celery queue (None: the broker cannot tell)."""
    from workers.outbox import queue_backlogs

    names = [settings.CELERY_DEFAULT_QUEUE_NAME, settings.INBOUND_QUEUE_NAME,
             *sorted(set(settings.NOTIFICATION_QUEUES.values()))]
    depths = queue_backlogs(names)  # one broker connection for them all
    return [{"name": name, "depth": depths[name]} for name in names]


def liveness(now):
    """Beat is alive when it sent the relay recently; a worker is alive when
    it ran the relay recently (its result is in the result backend)."""
    from django_celery_beat.models import PeriodicTask
    from django_celery_results.models import TaskResult

    beat_at = PeriodicTask.objects.filter(name="relay-outbox").values_list("last_run_at", flat=True).first()
    worker_at = (TaskResult.objects.filter(task_name="workers.relay_outbox").order_by("-date_done")
                 .values_list("date_done", flat=True).first())
    limit = timedelta(seconds=settings.DASHBOARD_ALIVE_WITHIN_S)
    return {
        "beat": {"at": beat_at, "age": now - beat_at if beat_at else None, "alive": bool(beat_at and now - beat_at <= limit)},
        "worker": {"at": worker_at, "age": now - worker_at if worker_at else None,
                   "alive": bool(worker_at and now - worker_at <= limit)},
    }


def backlog_age(now):
    """Age of the oldest message still waiting to be sent, and how many the
    relay still has to publish."""
    firsts = [MessageLog.objects.filter(status=status).order_by("created_at").values_list("created_at", flat=True)
              .first() for status in (S.QUEUED, S.RETRYING)]  # one step each on the (status, created_at) index
    oldest = min((f for f in firsts if f), default=None)
    unpublished = MessageLog.objects.filter(status__in=(S.QUEUED, S.RETRYING), published_at__isnull=True).count()
    return {"oldest_s": (now - oldest).total_seconds() if oldest else 0.0, "unpublished": unpublished}


def inbound_counts():
    return dict(InboundEvent.objects.values("status").annotate(n=Count("pk")).order_by().values_list("status", "n"))


def snapshot(now=None):
    now = now or timezone.now()
    return {
        "now": now,
        "channels": channel_table(now),
        "hourly": chart(now, "hour"),
        "daily": chart(now, "day"),
        "latencies": latencies(now),
        "failures": failure_reasons(now),
        "unreachable": unreachable(),
        "dead_letters": dead_letters(),
        "waiting_orders": waiting_orders(now),
        "queues": queues(),
        "liveness": liveness(now),
        "backlog": backlog_age(now),
    }
