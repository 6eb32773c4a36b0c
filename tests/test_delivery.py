"""Delivery policy: what each outcome does to the MessageLog row.

The channel is a stub (the Telegram adapter has its own tests against HTTP);
the rate limiter is the real one on the private Redis.
"""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from notifications.channels import ChannelError
from notifications.models import MessageLog, UserChannelPreference
from tests.factories import make_user
from workers import delivery

pytestmark = pytest.mark.django_db


class StubChannel:
    """Answers with the queued outcomes (an id or an exception), then "ok-<n>"."""

    def __init__(self):
        self.outcomes = []
        self.sent = []

    def send(self, address, message):
        self.sent.append(address)
        outcome = self.outcomes.pop(0) if self.outcomes else f"ok-{len(self.sent)}"
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


@pytest.fixture
def channel(monkeypatch, limiter):
    stub = StubChannel()
    monkeypatch.setattr("workers.channels.get", lambda channel_type: stub)
    monkeypatch.setattr("workers.channels.account_id", lambda channel_type: "777")
    return stub


@pytest.fixture
def countdowns(monkeypatch):
    """Retries scheduled on the broker: (message id, delay)."""
    scheduled = []
    monkeypatch.setattr(delivery, "schedule_retry", lambda log, delay: scheduled.append((log.pk, delay)))
    return scheduled


def queued(chat="42", **fields):
    user = make_user(telegram=chat)
    now = timezone.now()
    return MessageLog.objects.create(
        user=user, channel_type="TELEGRAM", recipient=chat, message_type="announcement", body="Hola",
        next_attempt_at=now, published_at=now, **fields,
    )


def reload(log):
    return MessageLog.objects.get(pk=log.pk)


def test_it_sends_and_records_the_provider_id(channel):
    log = queued()
    assert delivery.deliver(log.pk) == "sent"
    log = reload(log)
    assert (log.status, log.attempts, log.provider_message_id) == ("SENT", 1, "ok-1")
    assert log.lease_expires_at is None and log.sent_at is not None


def test_a_second_task_for_the_same_row_sends_nothing(channel):
    log = queued()
    assert delivery.deliver(log.pk) == "sent"
    assert delivery.deliver(log.pk) == "not-claimed"
    assert channel.sent == ["42"]


def test_a_row_claimed_by_another_worker_is_left_alone(channel):
    log = queued(status="SENDING", attempts=1, lease_expires_at=timezone.now() + timedelta(seconds=60))
    assert delivery.deliver(log.pk) == "not-claimed"
    assert channel.sent == []


def test_a_retry_not_due_yet_is_not_claimed(channel):
    log = queued(status="RETRYING", attempts=1)
    MessageLog.objects.filter(pk=log.pk).update(next_attempt_at=timezone.now() + timedelta(seconds=30))
    assert delivery.deliver(log.pk) == "not-claimed"


def test_a_busy_chat_puts_the_row_back_without_counting_an_attempt(channel, countdowns, limiter):
    first, second = queued(chat="42"), queued(chat="42")
    limiter.note_retry_after("TELEGRAM", "42", 90, "777")  # a long wait for this chat
    assert delivery.deliver(first.pk) == "deferred"
    first = reload(first)
    assert (first.status, first.attempts) == ("QUEUED", 0)
    assert "90.0 s" in first.last_error  # why it waits, for the operator
    assert first.next_attempt_at >= timezone.now() + timedelta(seconds=89)
    assert first.published_at is None and countdowns == []  # past COUNTDOWN_MAX_S: in the database, for the relay
    assert channel.sent == []
    assert second.status == "QUEUED"


def test_a_short_rate_limit_wait_is_a_countdown(channel, countdowns, limiter, settings):
    settings.RATE_LIMITS = {"TELEGRAM": {**settings.RATE_LIMITS["TELEGRAM"],
                                         "recipient": {"limit": 1, "period_s": 1, "burst": 1, "max_sleep_s": 0}}}
    log, other = queued(chat="42"), queued(chat="42")
    assert delivery.deliver(log.pk) == "sent"
    assert delivery.deliver(other.pk) == "deferred"
    other = reload(other)
    assert other.status == "QUEUED" and other.attempts == 0 and other.published_at is not None
    assert [pk for pk, _delay in countdowns] == [other.pk] and countdowns[0][1] <= 1.5


def test_redis_down_fails_closed_the_row_waits_and_nothing_is_sent(channel, countdowns, settings, limiter):
    from tests.support.processes import free_port

    settings.RATE_LIMIT = {**settings.RATE_LIMIT, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    limiter.reset()
    log = queued()
    assert delivery.deliver(log.pk) == "deferred"
    log = reload(log)
    assert (log.status, log.attempts) == ("QUEUED", 0)
    assert "Redis" in log.last_error and "no disponible" in log.last_error
    assert channel.sent == []
    assert log.next_attempt_at > timezone.now() + timedelta(seconds=4)


def test_a_429_blocks_the_chat_for_every_worker_and_costs_no_attempt(channel, countdowns, limiter):
    log = queued(chat="42")
    channel.outcomes = [ChannelError("Telegram 429: Too Many Requests: retry after 7", retry_after=7, code=429)]
    assert delivery.deliver(log.pk) == "deferred"
    log = reload(log)
    assert (log.status, log.attempts) == ("QUEUED", 0)
    assert "429" in log.last_error
    assert log.next_attempt_at >= timezone.now() + timedelta(seconds=6.5)
    blocked, scope = limiter.blocked_for(limiter.scopes_for("TELEGRAM", "42", "777"))
    assert scope == "recipient" and 6 < blocked <= 7
    assert limiter.blocked_for(limiter.scopes_for("TELEGRAM", "43", "777"))[0] == 0


def test_a_timeout_is_retried_and_flagged_as_a_possible_duplicate(channel, countdowns):
    log = queued()
    channel.outcomes = [ChannelError("Telegram: no answer within 10 s", maybe_delivered=True)]
    assert delivery.deliver(log.pk) == "retrying"
    log = reload(log)
    assert (log.status, log.attempts, log.possible_duplicate) == ("RETRYING", 1, True)
    assert [pk for pk, _ in countdowns] == [log.pk]
    MessageLog.objects.filter(pk=log.pk).update(next_attempt_at=timezone.now())
    assert delivery.deliver(log.pk) == "sent"
    log = reload(log)
    assert (log.status, log.attempts, log.possible_duplicate) == ("SENT", 2, True)


def test_a_permanent_error_fails_after_exactly_one_attempt_and_marks_the_address(channel, countdowns):
    log = queued()
    channel.outcomes = [ChannelError("Telegram 403: Forbidden: bot was blocked by the user", unreachable=True)]
    assert delivery.deliver(log.pk) == "failed"
    log = reload(log)
    assert (log.status, log.attempts) == ("FAILED", 1)
    assert "blocked" in log.last_error and countdowns == []
    pref = UserChannelPreference.objects.get(user=log.user)
    assert not pref.is_reachable and "blocked" in pref.unreachable_reason


def test_exhausted_retries_end_failed_with_the_last_error(channel, countdowns, settings):
    settings.DELIVERY = {**settings.DELIVERY, "MAX_ATTEMPTS": 3}
    settings.RATE_LIMITS = {}  # three sends to one chat in a row: not what this is about
    log = queued()
    channel.outcomes = [ChannelError(f"Telegram: HTTP 502 (#{i})", code=502) for i in range(3)]
    for expected in ("retrying", "retrying", "failed"):
        MessageLog.objects.filter(pk=log.pk).update(next_attempt_at=timezone.now())
        assert delivery.deliver(log.pk) == expected
    log = reload(log)
    assert (log.status, log.attempts) == ("FAILED", 3)
    assert "3 intentos" in log.last_error and "#2" in log.last_error  # operators read Spanish by default
    assert log.failed_at is not None


def test_a_retry_longer_than_half_the_visibility_timeout_waits_in_the_database(channel, countdowns, settings):
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {**settings.CELERY_BROKER_TRANSPORT_OPTIONS, "visibility_timeout": 10}
    settings.DELIVERY = {**settings.DELIVERY, "BACKOFF_BASE_S": 20}
    log = queued()
    channel.outcomes = [ChannelError("Telegram: HTTP 502", code=502)]
    assert delivery.deliver(log.pk) == "retrying"
    log = reload(log)
    # An ETA task held past the visibility timeout is handed to a second worker.
    assert countdowns == [] and log.published_at is None
    assert log.next_attempt_at >= timezone.now() + timedelta(seconds=9)


def test_backoff_grows_and_obeys_retry_after(settings):
    settings.DELIVERY = {**settings.DELIVERY, "BACKOFF_BASE_S": 2.0, "BACKOFF_MAX_S": 300.0}
    delay = delivery.retry_delay(1)
    assert delay >= 1 and delay <= 2
    assert 8 <= delivery.retry_delay(4) <= 16
    assert 150 <= delivery.retry_delay(20) <= 300
    assert 42 <= delivery.retry_delay(1, retry_after=42) <= 42.5


def test_delivering_never_writes_the_channel_statistics_row(channel):
    """No hot row: workers leave ChannelConfig alone; statistics are derived."""
    logs = [queued(chat=str(40 + i)) for i in range(3)]
    with CaptureQueriesContext(connection) as queries:
        for log in logs:
            delivery.deliver(log.pk)
    assert not [q["sql"] for q in queries if "channelconfig" in q["sql"].lower()]


def test_a_lease_shorter_than_one_attempt_is_reported_by_the_system_checks(settings):
    from workers.checks import lease_outlasts_an_attempt

    assert lease_outlasts_an_attempt() == []  # the defaults
    settings.DELIVERY = {**settings.DELIVERY, "LEASE_S": 5}
    (warning,) = lease_outlasts_an_attempt()
    assert warning.id == "workers.W001" and "DELIVERY_LEASE_S" in warning.msg
