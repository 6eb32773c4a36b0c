"""Hourly roll-ups of MessageLog (model MessageStatsHour), kept by beat.

``rollup()`` recounts the hours from ROLLUP_RECENT_HOURS ago to now (rows
still change status there: sent, then delivered, then read) and, when older
rows were never counted (a first deploy, an import), the BACKFILL_DAYS
before the oldest counted hour; each is one GROUP BY over a ``created_at``
range (indexed), replacing those hours' rows in one transaction. A status
change older than the recent window is not recounted: the dashboard's
history and /metrics' totals can lag such late receipts, never the backlog
(read live).
"""

from datetime import UTC, timedelta

from django.db import transaction
from django.db.models import Count, Max, Min
from django.db.models.functions import TruncHour
from django.utils import timezone

from .models import MessageLog, MessageStatsHour

ROLLUP_RECENT_HOURS = 3
BACKFILL_DAYS = 7


def floor_hour(moment):
    return moment.replace(minute=0, second=0, microsecond=0)


def recount(start, end):
    """Replace the roll-up rows of the hours in [start, end)."""
    rows = (MessageLog.objects.filter(created_at__gte=start, created_at__lt=end)
            .annotate(h=TruncHour("created_at", tzinfo=UTC)).values("h", "channel_type", "status")
            .annotate(n=Count("pk")).order_by())
    stats = [MessageStatsHour(hour=r["h"], channel_type=r["channel_type"], status=r["status"], count=r["n"])
             for r in rows]
    with transaction.atomic():
        MessageStatsHour.objects.filter(hour__gte=start, hour__lt=end).delete()
        MessageStatsHour.objects.bulk_create(stats, batch_size=1000)
    return len(stats)


def rollup(now=None):
    """Recount the recent hours and backfill older uncounted ones (one
    BACKFILL_DAYS window per run); returns the number of roll-up rows written."""
    now = now or timezone.now()
    recent = floor_hour(now - timedelta(hours=ROLLUP_RECENT_HOURS))
    written = recount(recent, now + timedelta(hours=1))
    return written + (_backfill_step(recent) or 0)


def _backfill_step(recent):
    """Count the BACKFILL_DAYS that end with the newest uncounted hour older
    than every counted one (gaps without rows are skipped); None when none."""
    oldest_counted = MessageStatsHour.objects.filter(hour__lt=recent).aggregate(m=Min("hour"))["m"] or recent
    newest_uncounted = MessageLog.objects.filter(created_at__lt=oldest_counted).aggregate(m=Max("created_at"))["m"]
    if newest_uncounted is None:
        return None
    end = min(floor_hour(newest_uncounted) + timedelta(hours=1), oldest_counted)
    # The window holds newest_uncounted, so it writes at least one row and
    # the next step starts further back: the loop in backfill() ends.
    return recount(end - timedelta(days=BACKFILL_DAYS), end)


def backfill(now=None):
    """Roll up the whole history now (bench, first deploy)."""
    now = now or timezone.now()
    recent = floor_hour(now - timedelta(hours=ROLLUP_RECENT_HOURS))
    total = recount(recent, now + timedelta(hours=1))
    while True:
        step = _backfill_step(recent)
        if step is None:
            return total
        total += step
