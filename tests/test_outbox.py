"""The outbox relay and the channel statistics, on the database and the
session's real broker (the private Redis, or with TEST_BROKER=rabbitmq the
private RabbitMQ node: the broker marker and the queue lengths live there)."""

import threading
from datetime import timedelta

import pytest
import redis
from django.db import connection
from django.utils import timezone

from notifications.channels import ChannelError
from notifications.models import ChannelConfig, MessageLog
from tests.factories import make_user
from tests.support.processes import RedisServer
from workers import delivery, outbox

REDIS_MARKER = "the Redis marker key and uptime; RabbitMQ's marker queue: tests/test_broker.py"


def purge(queue):
    from celery import current_app

    with current_app.connection_for_write() as conn:
        channel = conn.channel()
        try:
            channel.queue_declare(queue=queue, durable=True, auto_delete=False)
            channel.queue_purge(queue)
        finally:
            channel.close()


def enqueue(queue, body):
    """A message waiting in ``queue`` of the session's broker."""
    from celery import current_app

    with current_app.connection_for_write() as conn:
        conn.Producer().publish(body, exchange="", routing_key=queue, serializer="json")


@pytest.fixture
def published(monkeypatch, broker_server, settings):
    """What the relay publishes (ids), recorded instead of sent; the broker
    marker is in place, as on a broker that kept its data."""
    sent = []

    def send(rows):
        rows = list(rows)
        sent.extend(pk for pk, _channel in rows)
        return [pk for pk, _channel in rows]

    monkeypatch.setattr("notifications.dispatch.send", send)
    outbox.broker_lost_its_data()  # sets the marker if it is not there
    purge("telegram")  # an empty queue: a waiting row's task is not in it
    return sent


def row(seconds_ago=0, published_ago=None, status="QUEUED", recipient="42", **fields):
    now = timezone.now()
    user = fields.pop("user", None) or make_user(telegram=recipient)
    return MessageLog.objects.create(
        user=user, channel_type="TELEGRAM", recipient=recipient, message_type="announcement", body="Hola", status=status,
        created_at=now - timedelta(seconds=seconds_ago), next_attempt_at=now - timedelta(seconds=seconds_ago),
        published_at=None if published_ago is None else now - timedelta(seconds=published_ago), **fields,
    )


@pytest.mark.django_db
def test_relay_publishes_a_row_whose_publish_was_lost_and_leaves_a_fresh_one_to_its_producer(published):
    lost, fresh = row(seconds_ago=60), row(seconds_ago=0)
    assert outbox.relay()["published"] == 1
    assert published == [lost.pk]
    assert fresh.pk not in published


@pytest.mark.django_db
def test_relay_republishes_a_row_the_broker_lost_once_not_on_every_run(published, settings):
    stale = row(seconds_ago=2000, published_ago=settings.DELIVERY["RELAY_REPUBLISH_AFTER_S"] + 1)
    waiting = row(seconds_ago=2000, published_ago=10)  # published recently: still in the queue
    outbox.relay()
    outbox.relay()
    assert published == [stale.pk]
    assert waiting.pk not in published


@pytest.mark.django_db
def test_a_backlog_in_the_queue_holds_off_republishing_until_much_later(published, settings):
    enqueue("telegram", "a task ahead in the queue")
    republish_after = settings.DELIVERY["RELAY_REPUBLISH_AFTER_S"]
    in_backlog = row(seconds_ago=5000, published_ago=republish_after + 1)
    forgotten = row(seconds_ago=5000, published_ago=settings.DELIVERY["RELAY_REPUBLISH_BACKLOG_AFTER_S"] + 1)
    outbox.relay()
    assert published == [forgotten.pk]
    assert in_backlog.pk not in published


@pytest.mark.django_db
def test_a_retry_waiting_in_the_database_is_published_once_due(published):
    later = row(status="RETRYING", attempts=1)
    MessageLog.objects.filter(pk=later.pk).update(next_attempt_at=timezone.now() + timedelta(minutes=5))
    due = row(seconds_ago=30, status="RETRYING", attempts=1)
    outbox.relay()
    assert published == [due.pk]


@pytest.mark.django_db
def test_relay_reclaims_an_expired_lease_flags_a_possible_duplicate_and_publishes_it(published):
    now = timezone.now()
    dead = row(seconds_ago=300, published_ago=300, status="SENDING", attempts=1,
               lease_expires_at=now - timedelta(seconds=1))
    alive = row(seconds_ago=300, published_ago=300, status="SENDING", attempts=1,
                lease_expires_at=now + timedelta(seconds=60))
    result = outbox.relay()
    assert result["reclaimed"] == 1 and published == [dead.pk]
    dead, alive = MessageLog.objects.get(pk=dead.pk), MessageLog.objects.get(pk=alive.pk)
    assert (dead.status, dead.possible_duplicate, dead.lease_expires_at) == ("RETRYING", True, None)
    assert "venció la reserva" in dead.last_error  # "lease expired", in the operators' language
    assert alive.status == "SENDING"


@pytest.mark.django_db
def test_an_expired_lease_out_of_attempts_ends_failed(published, settings):
    dead = row(status="SENDING", attempts=settings.DELIVERY["MAX_ATTEMPTS"],
               lease_expires_at=timezone.now() - timedelta(seconds=1))
    outbox.relay()
    dead = MessageLog.objects.get(pk=dead.pk)
    assert (dead.status, dead.possible_duplicate) == ("FAILED", True)
    assert published == []


@pytest.mark.redis_broker(REDIS_MARKER)
@pytest.mark.django_db
def test_relay_publishes_every_waiting_row_again_when_the_broker_lost_its_data(published, redis_server, monkeypatch):
    in_queue = row(seconds_ago=20, published_ago=15)
    after_restart = row(seconds_ago=2, published_ago=2)  # published to the new, empty broker: in it
    retry_later = row(status="RETRYING", attempts=1, published_ago=15)
    MessageLog.objects.filter(pk=retry_later.pk).update(next_attempt_at=timezone.now() + timedelta(minutes=5))
    sent = row(status="SENT", published_ago=15)
    assert outbox.relay()["published"] == 0  # marker present: the queue still holds them

    redis.Redis.from_url(redis_server.url).delete(outbox.BROKER_MARKER_KEY)  # what a restart without AOF does
    monkeypatch.setattr(redis.Redis, "info", lambda self, section=None: {"uptime_in_seconds": 5})
    result = outbox.relay()
    # Every waiting row, also one published after the restart: it may have gone
    # in the moment the data was lost, and a second task for it is harmless.
    assert result["broker_reset"] == 3 and sorted(published) == sorted([in_queue.pk, after_restart.pk])
    assert MessageLog.objects.get(pk=retry_later.pk).published_at is None  # published by the relay once due
    assert sent.pk not in published
    assert outbox.relay()["published"] == 0  # marker back: no second republish


@pytest.mark.redis_broker(REDIS_MARKER)
@pytest.mark.parametrize(("persistent", "republished"), [(True, False), (False, True)])
@pytest.mark.django_db
def test_the_broker_marker_tells_a_restart_that_lost_the_queues_from_one_that_kept_them(
    monkeypatch, settings, persistent, republished
):
    server = RedisServer(persistent=persistent).start()
    try:
        settings.CELERY_BROKER_URL = server.url
        assert outbox.broker_lost_its_data()  # a fresh broker: the first run sets the marker
        assert outbox.broker_lost_its_data() is None
        server.stop()
        server.start()
        assert (outbox.broker_lost_its_data() is not None) is republished
    finally:
        server.close()


@pytest.mark.django_db
def test_channel_stats_are_derived_from_the_message_log(published):
    user = make_user(telegram=42)
    row(user=user, status="SENT", sent_at=timezone.now() - timedelta(minutes=5))
    last = timezone.now()
    row(user=user, status="SENT", sent_at=last)
    row(user=user, status="FAILED")
    row(user=user, status="QUEUED")
    ChannelConfig.objects.filter(channel_type="EMAIL").update(messages_sent=99)
    assert outbox.refresh_channel_stats() == {"TELEGRAM": {"sent": 2, "failed": 1}}
    telegram = ChannelConfig.objects.get(channel_type="TELEGRAM")
    assert (telegram.messages_sent, telegram.messages_failed, telegram.last_used_at) == (2, 1, last)
    assert ChannelConfig.objects.get(channel_type="EMAIL").messages_sent == 0


class Outcomes:
    """A channel that fails permanently for chats ending in 7, else sends."""

    def send(self, address, message):
        if address.endswith("7"):
            raise ChannelError("Telegram 403: Forbidden: bot was blocked by the user", unreachable=True)
        return "1"


@pytest.mark.django_db(transaction=True)
def test_channel_stats_stay_exact_while_many_workers_deliver_at_once(monkeypatch, limiter, settings):
    """Workers never touch ChannelConfig, so they do not queue on one row lock;
    a refresh in the middle of it all and one after are both consistent."""
    settings.RATE_LIMITS = {}  # pace is not what this test is about
    monkeypatch.setattr("workers.channels.get", lambda channel_type: Outcomes())
    monkeypatch.setattr("workers.channels.account_id", lambda channel_type: "777")
    ids = [row(user=make_user(telegram=1000 + i), recipient=str(1000 + i)).pk for i in range(120)]
    todo = list(ids)
    lock = threading.Lock()
    errors = []

    def worker():
        try:
            while True:
                with lock:
                    if not todo:
                        return
                    pk = todo.pop()
                delivery.deliver(pk)
        except Exception as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        mid = outbox.refresh_channel_stats().get("TELEGRAM", {"sent": 0, "failed": 0})
        assert mid["sent"] + mid["failed"] <= len(ids)
    for t in threads:
        t.join()
    assert errors == []
    failed = sum(1 for i in range(120) if str(1000 + i).endswith("7"))
    assert outbox.refresh_channel_stats()["TELEGRAM"] == {"sent": 120 - failed, "failed": failed}
    stats = ChannelConfig.objects.get(channel_type="TELEGRAM")
    assert (stats.messages_sent, stats.messages_failed) == (120 - failed, failed)


@pytest.mark.django_db(transaction=True)
def test_relay_runs_at_the_same_time_publish_each_row_once(published):
    """Relay tasks pile up while workers are down, then run at once."""
    lost = [row(seconds_ago=60, recipient=str(100 + i)).pk for i in range(200)]
    done = []

    def run():
        try:
            done.append(outbox.relay()["published"])
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(published) == sorted(lost) and sum(done) == 200


@pytest.mark.django_db
def test_rows_the_broker_refused_part_way_are_left_for_the_next_run(published, monkeypatch):
    rows = [row(seconds_ago=60, recipient=str(100 + i)) for i in range(4)]
    monkeypatch.setattr("notifications.dispatch.send", lambda due: [pk for pk, _c in due][:1])
    assert outbox.relay()["published"] == 1
    assert MessageLog.objects.filter(published_at__isnull=True).count() == 3
    monkeypatch.setattr("notifications.dispatch.send", lambda due: [pk for pk, _c in due])
    assert outbox.relay()["published"] == 3
    assert {r.pk for r in rows} == set(MessageLog.objects.filter(published_at__isnull=False).values_list("pk", flat=True))


@pytest.mark.django_db
def test_relay_retries_at_once_the_rows_of_a_worker_whose_heartbeat_stopped(published, limiter, settings):
    from workers import liveness

    ttl = settings.DELIVERY["WORKER_HEARTBEAT_TTL_S"]
    now = timezone.now()
    lease = now + timedelta(seconds=100)  # far from expiring: only the heartbeat can tell
    live_id = liveness.worker_id()
    liveness.beat()
    held_by_dead = row(status="SENDING", attempts=1, lease_expires_at=lease, claimed_by="host:999999")
    held_by_live = row(status="SENDING", attempts=1, lease_expires_at=lease, claimed_by=live_id)
    just_claimed = row(status="SENDING", attempts=1, lease_expires_at=lease, claimed_by="host:888888")
    # Published 30 s ago, not yet claimed: its task may have been in the dead
    # worker's prefetch, so it gets a second one.
    prefetched = row(seconds_ago=30, published_ago=30)
    old = now - timedelta(seconds=ttl + 1)
    MessageLog.objects.filter(pk__in=[held_by_dead.pk, held_by_live.pk]).update(updated_at=old)

    result = outbox.relay()

    assert result["reclaimed"] == 1 and sorted(published) == sorted([held_by_dead.pk, prefetched.pk])
    dead = MessageLog.objects.get(pk=held_by_dead.pk)
    assert (dead.status, dead.possible_duplicate, dead.claimed_by) == ("RETRYING", True, "")
    assert "latido" in dead.last_error
    # A live worker's slow send keeps its row; a claim younger than the TTL too
    # (its worker may not have written its first heartbeat yet).
    assert MessageLog.objects.get(pk=held_by_live.pk).status == "SENDING"
    assert MessageLog.objects.get(pk=just_claimed.pk).status == "SENDING"


@pytest.mark.django_db
def test_without_heartbeats_readable_only_the_lease_reclaims(published, settings, monkeypatch):
    from workers import liveness

    monkeypatch.setattr(liveness, "alive", lambda ids: None)  # Redis cannot tell
    old = timezone.now() - timedelta(seconds=60)
    held = row(status="SENDING", attempts=1, lease_expires_at=timezone.now() + timedelta(seconds=60),
               claimed_by="host:999999")
    MessageLog.objects.filter(pk=held.pk).update(updated_at=old)
    assert outbox.relay()["reclaimed"] == 0
    assert MessageLog.objects.get(pk=held.pk).status == "SENDING"
