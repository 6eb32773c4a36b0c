"""What the relay and the delivery policy ask of the broker (workers/broker.py),
for Redis and for RabbitMQ: the settings each gets, how long a task may wait
unacknowledged, queue depths, and the marker that tells a broker that lost
its data. The RabbitMQ tests run on a private node (TEST_BROKER=rabbitmq);
the Redis side of the marker is tested in tests/test_outbox.py."""

import pytest

from tests.conftest import point_broker_at, rabbitmq_server
from workers import broker, delivery, outbox

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"


def test_amqp_gets_publisher_confirms_and_socket_timeouts_and_none_of_redis_options(settings):
    options = broker.transport_options(AMQP_URL)
    assert options["confirm_publish"] is True
    assert 0 < options["read_timeout"] <= 10 and 0 < options["write_timeout"] <= 10
    assert not {"visibility_timeout", "socket_timeout", "socket_connect_timeout", "health_check_interval"} & set(options)
    assert "confirm_publish" not in broker.transport_options("redis://127.0.0.1:6379/0")
    assert broker.is_amqp("pyamqp://h//") and broker.is_amqp("amqps://h//") and not broker.is_amqp("redis://h")


def test_every_queue_is_durable_and_every_task_persistent(settings):
    from celery_app import app

    names = {settings.CELERY_DEFAULT_QUEUE_NAME, settings.INBOUND_QUEUE_NAME, *settings.NOTIFICATION_QUEUES.values()}
    queues = {q.name: q for q in app.conf.task_queues}
    assert set(queues) == names
    for name, queue in queues.items():
        assert queue.durable and not queue.auto_delete and queue.exchange.durable, name
        assert (queue.exchange.name, queue.routing_key) == (name, name)
    assert settings.CELERY_TASK_DEFAULT_DELIVERY_MODE == "persistent"


def test_countdowns_stay_under_half_the_rabbitmq_consumer_timeout(settings):
    """RabbitMQ closes the channel of a worker holding an unacknowledged task
    past consumer_timeout and redelivers it; an ETA retry waits unacknowledged."""
    settings.DELIVERY = {**settings.DELIVERY, "COUNTDOWN_MAX_S": 60.0}
    settings.CELERY_BROKER_URL = AMQP_URL
    settings.RABBITMQ_CONSUMER_TIMEOUT_S = 30.0
    assert delivery.countdown_max() == 15.0
    settings.RABBITMQ_CONSUMER_TIMEOUT_S = 1800.0  # RabbitMQ's default: the setting's own bound applies
    assert delivery.countdown_max() == 60.0


def test_countdowns_stay_under_half_the_redis_visibility_timeout(settings):
    settings.DELIVERY = {**settings.DELIVERY, "COUNTDOWN_MAX_S": 60.0}
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/0"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {**settings.REDIS_BROKER_TRANSPORT_OPTIONS, "visibility_timeout": 10}
    settings.RABBITMQ_CONSUMER_TIMEOUT_S = 4.0  # not Redis' business
    assert delivery.countdown_max() == 5.0


@pytest.fixture
def rabbit(broker_server):
    """A private RabbitMQ node of this test's own, this process's broker."""
    server = rabbitmq_server()
    point_broker_at(server.url)
    yield server
    server.close()
    point_broker_at(broker_server.url)


def publish(queue, n=1):
    from celery import current_app

    with current_app.connection_for_write() as conn:
        producer = conn.Producer()
        for i in range(n):
            producer.publish({"n": i}, exchange="", routing_key=queue, serializer="json", delivery_mode="persistent",
                             declare=[durable(queue)])


def durable(name):
    from celery_app import durable_queue

    return durable_queue(name)


@pytest.mark.rabbitmq
def test_queue_depth_counts_the_ready_messages_of_a_rabbitmq_queue_without_the_management_plugin(rabbit):
    publish("telegram", 3)
    assert outbox.queue_backlog("telegram") == 3
    assert outbox.queue_backlog("never-declared") == 0  # RabbitMQ answers NOT_FOUND (and closes that channel)
    assert outbox.queue_backlog("telegram") == 3  # the next question still gets an answer
    rabbit.stop()
    assert outbox.queue_backlog("telegram") is None  # cannot tell: the relay does not take it for empty


@pytest.mark.rabbitmq
def test_the_dashboard_reads_every_queue_over_one_rabbitmq_connection(rabbit, monkeypatch):
    from cmms import dashboard
    from workers import broker

    opened = []
    connect = broker._connection
    monkeypatch.setattr(broker, "_connection", lambda: opened.append(1) or connect())
    publish("telegram", 2)
    publish("email", 1)
    depths = {q["name"]: q["depth"] for q in dashboard.queues()}
    assert len(opened) == 1  # not one AMQP connection (a TCP and AMQP handshake) per queue
    assert (depths["telegram"], depths["email"], depths["sms"]) == (2, 1, 0)  # sms: never declared
    rabbit.stop()
    assert set(q["depth"] for q in dashboard.queues()) == {None}  # cannot tell, for every queue


@pytest.mark.rabbitmq
def test_the_rabbitmq_marker_tells_a_restart_that_kept_the_queues_from_a_node_rebuilt_empty(rabbit):
    assert outbox.broker_lost_its_data() is not None  # a fresh broker: the first run sets the marker
    assert outbox.broker_lost_its_data() is None
    publish("telegram")  # a persistent task in a durable queue

    rabbit.stop()  # a clean restart keeps both
    rabbit.start()
    assert outbox.broker_lost_its_data() is None
    assert outbox.queue_backlog("telegram") == 1

    rabbit.kill()  # kill -9 too: both were on disk
    rabbit.start()
    assert outbox.broker_lost_its_data() is None
    assert outbox.queue_backlog("telegram") == 1

    rabbit.stop()  # rebuilt empty: the queues and the marker are gone together
    rabbit.wipe()
    rabbit.start()
    assert outbox.queue_backlog("telegram") == 0
    assert outbox.broker_lost_its_data() is not None
    assert outbox.broker_lost_its_data() is None  # reported once


@pytest.mark.rabbitmq
def test_the_rabbitmq_marker_cannot_be_read_while_the_broker_is_down_and_reports_no_loss(rabbit):
    outbox.broker_lost_its_data()
    rabbit.stop()
    assert outbox.broker_lost_its_data() is None  # unknown: asked again on the next run
    rabbit.start()
    assert outbox.broker_lost_its_data() is None


@pytest.mark.rabbitmq
@pytest.mark.bench
@pytest.mark.timeout(600)
def test_the_pipeline_bench_runs_on_a_private_rabbitmq_node_with_the_limiter_on_redis(tmp_path):
    """``python -m bench --broker rabbitmq`` (docs/benchmarks.md, "RabbitMQ as
    the broker"): the producers and workers publish to the bench's own node,
    and the pipeline scenario writes its keys."""
    import json
    import os
    import subprocess
    import sys

    from tests.support.processes import ROOT

    results = tmp_path / "latest.json"
    env = {**os.environ, "CMMS_VAR_DIR": str(tmp_path)}
    args = [sys.executable, "-m", "bench", "--size", "tiny", "--scenarios", "pipeline", "--broker", "rabbitmq",
            "--json", str(results)]
    if env.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
        args += ["--db-name", "cmms_bench_smoke_amqp"]
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=560, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "broker rabbitmq :" in proc.stdout
    run = json.loads(results.read_text())
    assert run["machine"]["broker"] == "amqp"
    assert run["scenarios"]["pipeline"]["error"] is None
    written = run["results"]
    assert written["pipeline_msgs_per_s"]["value"] > 0
    assert 0 < written["pipeline_over_raw_http"]["value"] < 5
