"""Producers publish after commit, bounded in time, whatever the broker does.

Each test has its own broker (a redis-server, or with TEST_BROKER=rabbitmq a
RabbitMQ node), which it stops (refuses connections) or SIGSTOPs (accepts
them and never answers). The guarantee measured here is the issue's: a
producer call never blocks more than 2 s and never raises; the rows stay
QUEUED for the relay, which publishes them once the broker is back.
"""

import threading
import time

import pytest
from django.db import connection, transaction

from notifications import dispatch
from notifications.message_router import MessageRouter
from notifications.models import MessageLog
from tests.conftest import TEST_BROKER, point_broker_at, rabbitmq_server
from tests.factories import make_user
from tests.support.processes import RedisServer
from workers import broker as brokers
from workers import outbox

PRODUCER_BUDGET_S = 2.0

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def broker(redis_server, settings):
    server = rabbitmq_server() if TEST_BROKER == "rabbitmq" else RedisServer().start()
    point_broker_at(server.url)
    settings.DELIVERY = {**settings.DELIVERY, "RELAY_UNPUBLISHED_AFTER_S": 0}
    yield server
    if server.proc:
        server.resume()
    server.close()
    point_broker_at(redis_server.url)


def queue_length(server, queue="telegram"):
    """Tasks waiting in ``queue`` of the test's broker (LLEN on Redis, a
    passive queue_declare on RabbitMQ: workers.broker)."""
    depth = brokers.queue_depth(queue)
    assert depth is not None, "the broker did not answer"
    return depth


def produce(user, n=1):
    """One producer call as application code makes it: in a transaction."""
    start = time.monotonic()
    with transaction.atomic():
        for i in range(n):
            MessageRouter().send_to_user(user, "OT-1", f"Orden asignada {i}", message_type="work_order_assigned")
    return time.monotonic() - start


def test_a_healthy_broker_gets_the_task_and_the_row_is_marked_published(broker):
    user = make_user(telegram=42)
    produce(user)
    log = MessageLog.objects.get()
    assert log.status == "QUEUED" and log.published_at is not None
    assert queue_length(broker) == 1


def test_broker_stopped_the_producer_returns_at_once_and_the_relay_publishes_later(broker):
    user = make_user(telegram=42)
    broker.stop()
    assert produce(user) < PRODUCER_BUDGET_S
    log = MessageLog.objects.get()
    assert log.status == "QUEUED" and log.published_at is None
    broker.start()
    dispatch.reset_breaker()
    assert outbox.relay()["published"] == 1
    assert queue_length(broker) == 1


def test_broker_hung_the_producer_gives_up_within_the_budget_and_the_relay_publishes_later(broker):
    user = make_user(telegram=42)
    broker.hang()
    assert produce(user) < PRODUCER_BUDGET_S
    assert MessageLog.objects.get().published_at is None
    assert produce(user) < 0.5  # the breaker: the next call does not wait again
    broker.resume()
    dispatch.reset_breaker()
    assert outbox.relay()["published"] == 2
    # The publish the producer gave up on may still land once the broker
    # answers (Redis: it was in the socket's buffer): harmless, the claim has one winner.
    assert queue_length(broker) in (2, 3)


@pytest.mark.parametrize("fault", ["stopped", "hung"])
def test_a_burst_of_producers_during_an_outage_never_blocks_nor_raises(broker, fault):
    users = [make_user(telegram=100 + i) for i in range(12)]
    if fault == "stopped":
        broker.stop()
    else:
        broker.hang()
    durations, errors = [], []

    def producer(user):
        try:
            for _ in range(3):
                durations.append(produce(user))
        except Exception as exc:  # noqa: BLE001 - the assertion below shows it
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=producer, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(durations) == 36 and max(durations) < PRODUCER_BUDGET_S
    assert MessageLog.objects.filter(status="QUEUED").count() == 36


def waiting_tasks(queue="telegram"):
    """(task name, args) of every task waiting in ``queue`` of the test's
    broker, taken off it (Redis or RabbitMQ alike, through kombu)."""
    from celery import current_app

    from celery_app import durable_queue

    tasks = []
    with current_app.connection_for_write() as conn:
        bound = durable_queue(queue)(conn.default_channel)
        while (message := bound.get(no_ack=True)) is not None:
            args, _kwargs, _embed = message.decode()
            tasks.append((message.headers["task"], args))
    return tasks


def test_a_broadcast_publishes_one_expansion_task_then_batches_of_messages_not_one_task_per_message(broker):
    """The call writes one RoleBroadcast and publishes its expansion task
    after commit; the expansion (the worker's task, run here) publishes each
    batch of rows as a few delivery tasks."""
    from notifications import role_broadcasts

    for i in range(120):
        make_user(telegram=1000 + i)
    with transaction.atomic():
        stats = MessageRouter().broadcast_to_role("OPERATOR", "Aviso", "Mantenimiento general mañana")
    assert stats == {"total": 120, "success": 120, "failed": 0}
    assert queue_length(broker, "default") == 1 and queue_length(broker) == 0 and not MessageLog.objects.exists()
    role_broadcasts.expand(stats.broadcast_id)
    tasks = waiting_tasks("telegram")
    batches = [args[0] for _name, args in tasks]
    assert {name for name, _args in tasks} == {"workers.deliver_messages"}
    # Each expansion batch is published over up to 32 tasks (BATCH_SPREAD): the
    # first 100 users (ROLE_BROADCAST_FIRST_BATCH_USERS) as 25 tasks of 4, the
    # other 20 as 20 tasks of 1.
    assert sorted(len(b) for b in batches) == [1] * 20 + [4] * 25
    assert sorted(pk for batch in batches for pk in batch) == sorted(
        MessageLog.objects.values_list("pk", flat=True))


def test_a_publish_of_more_tasks_than_a_producer_should_make_goes_through_fanout_tasks(broker):
    from notifications import dispatch

    pairs = [(pk, "TELEGRAM") for pk in range(1, 2101)]  # 2,100 messages: 42 batches of 50
    assert dispatch.publish(pairs) == 2100
    assert queue_length(broker, "default") == 2 and queue_length(broker) == 0  # chunks of 2,000 ids


def test_many_producer_calls_in_one_transaction_make_one_publish_of_batches(broker):
    users = [make_user(telegram=3000 + i) for i in range(100)]
    with transaction.atomic():
        for user in users:
            MessageRouter().send_to_user(user, "OT-7", "Orden asignada", message_type="work_order_assigned")
        assert queue_length(broker) == 0  # nothing before the commit
    # 100 messages spread over up to 32 tasks (DELIVERY_BATCH_SPREAD): 25 tasks of 4, not 100 of 1.
    assert queue_length(broker) == 25
    assert MessageLog.objects.filter(published_at__isnull=True).count() == 0


def test_a_rolled_back_savepoint_drops_its_messages_and_keeps_the_others(broker):
    kept, dropped = make_user(telegram=3201), make_user(telegram=3202)
    with transaction.atomic():
        MessageRouter().send_to_user(kept, "OT-8", "Orden asignada", message_type="work_order_assigned")
        try:
            with transaction.atomic():
                MessageRouter().send_to_user(dropped, "OT-9", "Orden asignada", message_type="work_order_assigned")
                raise RuntimeError("the producer changed its mind")
        except RuntimeError:
            pass
        MessageRouter().send_to_user(kept, "OT-10", "Orden asignada", message_type="work_order_assigned")
    assert MessageLog.objects.filter(user=kept, published_at__isnull=False).count() == 2
    assert not MessageLog.objects.filter(user=dropped).exists()
    assert queue_length(broker) == 2


def test_a_rolled_back_transaction_publishes_nothing_and_the_next_one_publishes_its_own(broker):
    user = make_user(telegram=3301)
    with pytest.raises(RuntimeError), transaction.atomic():
        MessageRouter().send_to_user(user, "OT-11", "Orden asignada", message_type="work_order_assigned")
        raise RuntimeError("rolled back")
    assert queue_length(broker) == 0
    with transaction.atomic():
        MessageRouter().send_to_user(user, "OT-12", "Orden asignada", message_type="work_order_assigned")
    assert queue_length(broker) == 1 and MessageLog.objects.get().body == "Orden asignada"


def test_outside_a_transaction_a_producer_call_publishes_at_once(broker):
    from notifications import dispatch

    dispatch.publish_on_commit([(1, "TELEGRAM"), (2, "TELEGRAM")])  # autocommit: no transaction to wait for
    assert queue_length(broker) == 2
