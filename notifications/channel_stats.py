"""Channel statistics computed live from MessageLog, for pages and commands
that must show the current numbers (ChannelConfig's stored counters are
refreshed by a beat task and can be up to its interval old).

Two grouped queries, each served by an index: (channel_type, status) for the
counts, (channel_type, sent_at) for the last use.
"""

from django.db.models import Count, Max

from .delivery_states import ACCEPTED
from .models import MessageLog, MessageStatus

# Counted as sent: accepted by the provider (SENT, DELIVERED, READ), as the
# beat task counts them (workers.outbox.refresh_channel_stats).
NOT_DELIVERED = (MessageStatus.FAILED, MessageStatus.UNDELIVERED)


def live_stats():
    """{channel_type: {"sent": n, "failed": n, "last_used": datetime | None}}."""
    stats = {}
    for row in (
        MessageLog.objects.filter(status__in=(*ACCEPTED, *NOT_DELIVERED))
        .values("channel_type", "status")
        .annotate(n=Count("pk"))
        .order_by()
    ):
        entry = stats.setdefault(row["channel_type"], {"sent": 0, "failed": 0, "last_used": None})
        entry["sent" if row["status"] in ACCEPTED else "failed"] += row["n"]
    for channel_type, last in (
        MessageLog.objects.filter(sent_at__isnull=False)
        .values("channel_type")
        .annotate(last=Max("sent_at"))
        .order_by()
        .values_list("channel_type", "last")
    ):
        stats.setdefault(channel_type, {"sent": 0, "failed": 0, "last_used": None})["last_used"] = last
    return stats


def empty():
    return {"sent": 0, "failed": 0, "last_used": None}
