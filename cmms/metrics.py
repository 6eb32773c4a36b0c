"""``/metrics`` in Prometheus text format (prometheus-client).

Every value is derived at scrape time from the database and Redis, the
state all worker processes and machines share, so numbers add up across
any number of workers without the client's multiprocess mode (which needs a
shared directory on one host and cannot add up across machines). Counters
that are not in the database (429s, rate-limit waits) are Redis counters
incremented by the workers (``workers.metrics.incr``).

Access: with METRICS_TOKEN set, only ``Authorization: Bearer <token>``
(compared in constant time; 401 otherwise); without it, loopback clients only.
"""

import hmac
import ipaddress
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Sum
from django.http import HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeHistogramMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from notifications import delivery_states
from notifications.models import ChannelType, InboundEvent, MessageLog, MessageStatsHour

from . import dashboard

LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class DispatcherCollector:
    def collect(self):
        now = timezone.now()
        yield self._messages()

        attempts = GaugeMetricFamily("cmms_message_attempts_last_day",
                                     "Provider attempts of the messages created in the last 24 h.", labels=["channel"])
        for r in (MessageLog.objects.filter(created_at__gte=now - timedelta(days=1)).values("channel_type")
                  .annotate(n=Sum("attempts")).order_by()):
            attempts.add_metric([r["channel_type"]], r["n"] or 0)
        yield attempts

        yield self._latency(now)

        from workers import metrics as worker_metrics

        for name, help_text in (("provider_429", "HTTP 429 answers from providers."),
                                ("ratelimit_waits", "Messages put back to wait for the shared rate limiter.")):
            counter = CounterMetricFamily(f"cmms_{name}", help_text, labels=["channel"])
            for channel, value in worker_metrics.read(name).items():
                counter.add_metric([channel], value)
            yield counter

        depth = GaugeMetricFamily("cmms_queue_depth", "Tasks waiting in each Celery queue.", labels=["queue"])
        for q in dashboard.queues():
            if q["depth"] is not None:
                depth.add_metric([q["name"]], q["depth"])
        yield depth

        backlog = dashboard.backlog_age(now)
        yield GaugeMetricFamily("cmms_relay_backlog", "Waiting messages not yet published to the broker.",
                                value=backlog["unpublished"])
        yield GaugeMetricFamily("cmms_oldest_queued_message_age_seconds",
                                "Age of the oldest message waiting to be sent.", value=backlog["oldest_s"])

        inbound = GaugeMetricFamily("cmms_inbound_events", "Inbound events (updates, presses, receipts) by state.",
                                    labels=["provider", "status"])
        for r in InboundEvent.objects.values("provider", "status").annotate(n=Count("pk")).order_by():
            inbound.add_metric([r["provider"], r["status"]], r["n"])
        yield inbound

    def _messages(self):
        """Rows per channel and state: the backlog live (few rows, by the
        status index), final states from the hourly roll-ups (which also
        keep counting rows that retention deleted)."""
        family = GaugeMetricFamily("cmms_messages", "Messages by channel and delivery state.",
                                   labels=["channel", "status"])
        totals = {}
        for r in (MessageLog.objects.filter(status__in=dashboard.BACKLOG).values("channel_type", "status")
                  .annotate(n=Count("pk")).order_by()):
            totals[(r["channel_type"], r["status"])] = r["n"]
        for r in (MessageStatsHour.objects.exclude(status__in=dashboard.BACKLOG).values("channel_type", "status")
                  .annotate(n=Sum("count")).order_by()):
            totals[(r["channel_type"], r["status"])] = r["n"]
        for (channel, status), n in sorted(totals.items()):
            family.add_metric([channel, status], n)
        return family

    def _latency(self, now):
        """Creation to SENT of the messages sent in the last hour, as a gauge
        histogram (a window, not an ever-growing counter)."""
        family = GaugeHistogramMetricFamily("cmms_delivery_latency_seconds",
                                            "Creation to SENT, messages sent in the last hour.", labels=["channel"])
        for channel in ChannelType.values:
            vals = [max((sent - created).total_seconds(), 0.0) for created, sent in
                    MessageLog.objects.filter(channel_type=channel, sent_at__gte=now - timedelta(hours=1),
                                              status__in=delivery_states.ACCEPTED)
                    .order_by("-sent_at").values_list("created_at", "sent_at")[:dashboard.LATENCY_SAMPLE]]
            if not vals:
                continue
            buckets = [(str(b), sum(1 for v in vals if v <= b)) for b in LATENCY_BUCKETS] + [("+Inf", len(vals))]
            family.add_metric([channel], buckets, gsum_value=sum(vals))
        return family


def _allowed(request):
    token = settings.METRICS_TOKEN
    if token:
        header = request.headers.get("Authorization", "")
        given = header[7:] if header.startswith("Bearer ") else ""
        return hmac.compare_digest(given.encode(), token.encode())
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False


@never_cache
def metrics_view(request):
    if not _allowed(request):
        response = HttpResponse("401 Unauthorized\n", status=401, content_type="text/plain")
        if settings.METRICS_TOKEN:
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DispatcherCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
