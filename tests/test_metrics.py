"""/metrics: Prometheus text that prometheus-client's own parser reads,
derived from the database at scrape time, and closed to strangers."""

from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from notifications import inbound, stats
from notifications.models import MessageLog

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_broker", "quiet_counters")]


@pytest.fixture
def quiet_counters(monkeypatch):
    monkeypatch.setattr("workers.outbox.queue_backlogs", lambda names: {n: 7 if n == "sms" else 0 for n in names})
    monkeypatch.setattr("workers.metrics.read", lambda name: {"TELEGRAM": 4} if name == "provider_429" else {})


def scrape(client, **headers):
    return client.get("/metrics", REMOTE_ADDR=headers.pop("addr", "127.0.0.1"), **headers)


def samples(response):
    out = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def make_log(status, channel="TELEGRAM", latency_s=None, created_ago=timedelta(minutes=1), attempts=1):
    created = timezone.now() - created_ago
    return MessageLog.objects.create(
        channel_type=channel, recipient="1", message_type="announcement", body="x", status=status,
        created_at=created, attempts=attempts,
        sent_at=created + timedelta(seconds=latency_s) if latency_s is not None else None,
    )


def test_counts_latency_queues_and_counters_parse_with_prometheus_client(client):
    make_log("SENT", latency_s=0.2)
    make_log("SENT", latency_s=3)
    make_log("FAILED", attempts=6)
    make_log("QUEUED", created_ago=timedelta(minutes=10), attempts=0)
    stats.rollup()
    response = scrape(client)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    s = samples(response)
    assert s[("cmms_messages", (("channel", "TELEGRAM"), ("status", "SENT")))] == 2
    assert s[("cmms_messages", (("channel", "TELEGRAM"), ("status", "FAILED")))] == 1
    assert s[("cmms_message_attempts_last_day", (("channel", "TELEGRAM"),))] == 8
    assert s[("cmms_delivery_latency_seconds_bucket", (("channel", "TELEGRAM"), ("le", "0.25")))] == 1
    assert s[("cmms_delivery_latency_seconds_bucket", (("channel", "TELEGRAM"), ("le", "+Inf")))] == 2
    assert s[("cmms_queue_depth", (("queue", "sms"),))] == 7
    assert s[("cmms_provider_429_total", (("channel", "TELEGRAM"),))] == 4
    assert s[("cmms_relay_backlog", ())] == 1
    assert s[("cmms_oldest_queued_message_age_seconds", ())] >= 600


def test_inbound_events_are_counted_by_provider_and_state(client):
    inbound.record("TELEGRAM", 1, {}, publish=False)
    inbound.record("TELEGRAM", 2, {}, publish=False)
    s = samples(scrape(client))
    assert s[("cmms_inbound_events", (("provider", "TELEGRAM"), ("status", "RECEIVED")))] == 2


def test_without_a_token_only_loopback_clients_are_answered(client):
    assert scrape(client, addr="10.1.2.3").status_code == 401
    assert scrape(client, addr="::1").status_code == 200


def test_with_a_token_only_the_bearer_is_answered_even_from_loopback(client, settings):
    settings.METRICS_TOKEN = "s3cret-token"
    assert scrape(client).status_code == 401
    assert scrape(client, HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    ok = scrape(client, addr="10.1.2.3", HTTP_AUTHORIZATION="Bearer s3cret-token")
    assert ok.status_code == 200
    assert b"s3cret-token" not in ok.content


def test_worker_counters_add_up_in_redis_across_processes(limiter, monkeypatch):
    monkeypatch.undo()  # the real Redis counters, not the fixture's answer
    from workers import metrics

    limiter.client().delete(f"{metrics.PREFIX}:provider_429")
    metrics.incr("provider_429", "TELEGRAM")
    metrics.incr("provider_429", "TELEGRAM", 2)
    metrics.incr("provider_429", "SMS")
    assert metrics.read("provider_429") == {"TELEGRAM": 3, "SMS": 1}
