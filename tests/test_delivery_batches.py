"""One delivery task, many rows: claimed and loaded in one UPDATE ... RETURNING,
each row then sent and recorded on its own terms, the successes written in
bulk. The channel is a stub (as in test_delivery.py); the rate limiter is the
real one on the private Redis; the database is the real one (SQLite or
PostgreSQL), so the bulk UPDATE's SQL runs on both."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from notifications import dispatch
from notifications.channels import ChannelError
from notifications.models import MessageLog
from tests.test_delivery import StubChannel, queued, reload
from tests.test_ratelimit import limits, script_runs
from workers import delivery, liveness

pytestmark = pytest.mark.django_db


@pytest.fixture
def channel(monkeypatch, limiter):
    stub = StubChannel()
    monkeypatch.setattr("workers.channels.get", lambda channel_type: stub)
    monkeypatch.setattr("workers.channels.account_id", lambda channel_type: "777")
    monkeypatch.setattr(delivery, "schedule_retry", lambda log, delay: None)
    return stub


def test_every_row_of_a_batch_is_sent_once_with_its_own_provider_id_and_time(channel):
    logs = [queued(chat=str(100 + i)) for i in range(30)]
    outcomes = delivery.deliver_batch([log.pk for log in logs])
    assert set(outcomes.values()) == {"sent"}
    rows = [reload(log) for log in logs]
    assert [(r.status, r.attempts, r.provider_message_id) for r in rows] == [
        ("SENT", 1, f"ok-{i + 1}") for i in range(30)]
    assert all(r.sent_at and r.lease_expires_at is None and r.claimed_by == "" for r in rows)
    assert [r.sent_at for r in rows] == sorted(r.sent_at for r in rows)  # each its own time
    assert channel.sent == [str(100 + i) for i in range(30)]


def test_a_batch_costs_a_fixed_number_of_queries_not_some_per_row(channel):
    few = [queued(chat=str(200 + i)) for i in range(2)]
    many = [queued(chat=str(300 + i)) for i in range(20)]
    with CaptureQueriesContext(connection) as small:
        delivery.deliver_batch([log.pk for log in few])
    delivery.SuccessRecorder.FLUSH_AFTER_S, saved = 60.0, delivery.SuccessRecorder.FLUSH_AFTER_S
    try:
        with CaptureQueriesContext(connection) as large:
            delivery.deliver_batch([log.pk for log in many])
    finally:
        delivery.SuccessRecorder.FLUSH_AFTER_S = saved
    assert len(large) <= len(small) + 1  # the 20 successes are one UPDATE (at most FLUSH_EVERY = 25 each)
    assert MessageLog.objects.filter(status="SENT").count() == 22


def test_rows_another_process_holds_or_not_due_or_done_are_left_alone(channel):
    now = timezone.now()
    free = queued(chat="1")
    elsewhere = queued(chat="2", status="SENDING", claimed_by="other-host:1", attempts=1,
                       lease_expires_at=now + timedelta(seconds=60))
    later = queued(chat="3", status="RETRYING")
    MessageLog.objects.filter(pk=later.pk).update(next_attempt_at=now + timedelta(seconds=60))
    done = queued(chat="4", status="SENT")
    outcomes = delivery.deliver_batch([free.pk, elsewhere.pk, later.pk, done.pk])
    assert outcomes == {free.pk: "sent", elsewhere.pk: "not-claimed", later.pk: "not-claimed",
                        done.pk: "not-claimed"}
    assert channel.sent == ["1"]
    assert reload(elsewhere).claimed_by == "other-host:1" and reload(later).status == "RETRYING"


def test_a_claim_of_this_process_left_by_a_lost_answer_is_taken_back_without_a_new_attempt(channel):
    stranded = queued(chat="5", status="SENDING", claimed_by=liveness.worker_id(), attempts=1,
                      lease_expires_at=timezone.now() + timedelta(seconds=120))
    fresh = queued(chat="6")
    assert delivery.deliver_batch([stranded.pk, fresh.pk]) == {stranded.pk: "sent", fresh.pk: "sent"}
    assert (reload(stranded).attempts, reload(fresh).attempts) == (1, 1)


def test_the_claim_loads_the_rows_it_claims_in_one_statement_as_the_orm_would(channel):
    now = timezone.now()
    first = queued(chat="7", title="OT-1", payload={"actions": [{"text": "Ver", "callback_data": "v:1"}]},
                   priority="high", related_object_type="work_order", related_object_id="1")
    retrying = queued(chat="8", status="RETRYING", attempts=2, chunks_sent=1, provider_message_id="9",
                      last_error="timeout")
    MessageLog.objects.filter(pk=retrying.pk).update(next_attempt_at=now - timedelta(seconds=1))
    taken = queued(chat="9", status="SENDING", claimed_by="other-host:1", attempts=1,
                   lease_expires_at=now + timedelta(seconds=60))
    asked = [retrying.pk, taken.pk, first.pk, retrying.pk]
    with CaptureQueriesContext(connection) as queries:
        claimed = delivery.claim_batch(asked)
    assert len(queries) == 1 and "RETURNING" in queries[0]["sql"]
    assert [log.pk for log in claimed] == [retrying.pk, first.pk]  # in the order asked, each once
    for log in claimed:
        stored = reload(log)
        assert stored.status == "SENDING" and stored.claimed_by == liveness.worker_id()
        # Every field as a QuerySet would load it (types and time zones included).
        for field in MessageLog._meta.concrete_fields:
            assert getattr(log, field.attname) == getattr(stored, field.attname), field.name
        assert not log._state.adding and log._state.db == "default"
    assert (claimed[0].attempts, claimed[1].attempts) == (3, 1)
    assert claimed[1].payload == {"actions": [{"text": "Ver", "callback_data": "v:1"}]}
    assert claimed[0].lease_expires_at > now and claimed[0].updated_at.tzinfo is not None
    assert reload(taken).claimed_by == "other-host:1"
    # Claimed again by this process (an answer lost): taken back, no new attempt.
    assert [(log.pk, log.attempts) for log in delivery.claim_batch([first.pk])] == [(first.pk, 1)]


def test_each_row_keeps_its_own_outcome_inside_one_batch(channel):
    ok, refused, throttled, later_ok = (queued(chat=str(400 + i)) for i in range(4))
    channel.outcomes = ["a", ChannelError("Bad Request: chat not found", code=400, permanent=True),
                        ChannelError("Too Many Requests", code=429, retry_after=3), "d"]
    outcomes = delivery.deliver_batch([ok.pk, refused.pk, throttled.pk, later_ok.pk])
    assert outcomes == {ok.pk: "sent", refused.pk: "failed", throttled.pk: "deferred", later_ok.pk: "sent"}
    assert reload(refused).status == "FAILED" and "chat not found" in reload(refused).last_error
    assert reload(throttled).status == "QUEUED" and reload(throttled).attempts == 0  # a 429 is no attempt
    assert (reload(ok).provider_message_id, reload(later_ok).provider_message_id) == ("a", "d")


def test_a_database_error_mid_batch_still_records_the_sends_made_before_it(channel):
    from django.db import OperationalError

    logs = [queued(chat=str(500 + i)) for i in range(3)]
    # The third send meets the database gone (a limiter-free stand-in for any
    # query failing before the provider call): the task raises and retries.
    channel.outcomes = ["a", "b", OperationalError("server closed the connection unexpectedly")]
    delivery.SuccessRecorder.FLUSH_AFTER_S, saved = 60.0, delivery.SuccessRecorder.FLUSH_AFTER_S
    try:
        with pytest.raises(OperationalError):
            delivery.deliver_batch([log.pk for log in logs])
    finally:
        delivery.SuccessRecorder.FLUSH_AFTER_S = saved
    assert [reload(log).status for log in logs] == ["SENT", "SENT", "SENDING"]
    # The task's retry takes the third back (same process) and sends only it.
    assert delivery.deliver_batch([log.pk for log in logs]) == {
        logs[0].pk: "not-claimed", logs[1].pk: "not-claimed", logs[2].pk: "sent"}
    assert channel.sent == ["500", "501", "502", "502"]
    assert reload(logs[2]).attempts == 1


def test_a_publish_is_spread_over_enough_tasks_and_each_task_is_bounded(settings):
    settings.DELIVERY = {**settings.DELIVERY, "BATCH_MAX": 50, "BATCH_SPREAD": 32}
    small = dispatch.batches([(i, "TELEGRAM") for i in range(10)])
    assert [len(ids) for _q, ids in small] == [1] * 10  # ten threads, not one
    large = dispatch.batches([(i, "TELEGRAM") for i in range(2000)])
    assert len(large) == 40 and {len(ids) for _q, ids in large} == {50}
    mixed = dispatch.batches([(1, "TELEGRAM"), (2, "EMAIL"), (3, "TELEGRAM")])
    assert sorted((q, ids) for q, ids in mixed) == sorted([
        (dispatch.queue_for("TELEGRAM"), [1]), (dispatch.queue_for("TELEGRAM"), [3]),
        (dispatch.queue_for("EMAIL"), [2])])
    assert sum(len(ids) for _q, ids in large) == 2000 and sorted(i for _q, ids in large for i in ids) == list(
        range(2000))


def test_a_row_retried_by_a_batch_can_be_delivered_again_while_the_batch_still_runs(channel):
    """A retry's countdown task may come back to this process before the rest
    of its batch is done: the row is no longer held, so it is sent."""
    deferred, slow = queued(chat="601"), queued(chat="602")
    seen = {}

    class SendsTheDeferredOneMeanwhile(StubChannel):
        def send(self, address, message):
            if address == "602":  # the batch's second row: the first is RETRYING
                MessageLog.objects.filter(pk=deferred.pk).update(next_attempt_at=timezone.now())
                seen["meanwhile"] = delivery.deliver(deferred.pk)
            return super().send(address, message)

    stub = SendsTheDeferredOneMeanwhile()
    stub.outcomes = [ChannelError("Bad Gateway", code=502)]
    from workers import channels

    channels.get = lambda channel_type: stub  # monkeypatched back by the fixture
    assert delivery.deliver_batch([deferred.pk, slow.pk]) == {deferred.pk: "retrying", slow.pk: "sent"}
    assert seen["meanwhile"] == "sent"
    assert reload(deferred).status == "SENT" and stub.sent == ["601", "601", "602"]


@pytest.fixture
def out_of_reach(settings):
    """A bot whose own limit no worker reaches (a chat still takes about 1/s)."""
    settings.RATE_LIMITS = limits(account=(1_000_000, 1, 1, 5), recipient=(1, 1, 2, 0.5), group=None)


def test_where_no_limit_is_within_reach_a_batch_takes_its_places_in_a_few_round_trips(
        channel, out_of_reach, redis_server):
    logs = [queued(chat=str(400 + i)) for i in range(30)]
    before = script_runs(redis_server)
    outcomes = delivery.deliver_batch([log.pk for log in logs])
    assert set(outcomes.values()) == {"sent"}
    assert channel.sent == [str(400 + i) for i in range(30)]
    assert script_runs(redis_server) - before <= 4  # one per message before places were taken ahead


def test_a_429_mid_batch_drops_the_places_taken_ahead_so_no_row_is_sent_into_the_block(
        channel, out_of_reach, settings):
    settings.RATE_LIMIT = {**settings.RATE_LIMIT, "RETRY_AFTER_SCOPE": "account"}  # the whole bot waits
    logs = [queued(chat=str(500 + i)) for i in range(10)]
    channel.outcomes = ["a", "b", "c", ChannelError("Telegram 429: Too Many Requests: retry after 30",
                                                    retry_after=30, code=429)]
    outcomes = delivery.deliver_batch([log.pk for log in logs])
    assert channel.sent == ["500", "501", "502", "503"]
    assert [outcomes[log.pk] for log in logs] == ["sent"] * 3 + ["deferred"] * 7
    assert all(reload(log).next_attempt_at >= timezone.now() + timedelta(seconds=25) for log in logs[3:])
