"""Shared fixtures: a private Redis, the Telegram sandbox, a real Celery worker.

End-to-end tests use ``transactional_db`` (the worker is another process and
only sees committed rows) and the session's worker, pointed at the test
database, the private Redis and the sandbox.

One switch picks the session's broker: ``TEST_BROKER=redis`` (the default:
the private Redis is the broker too) or ``TEST_BROKER=rabbitmq`` (a private
RabbitMQ node, tests/support/processes.py ``RabbitMQServer``; the private
Redis stays the rate limiter's, the heartbeats' and the channel layer's).
A test that starts a Redis of its own uses it as its broker, as before.
Tests about Redis as the broker are marked ``redis_broker`` and skipped
under RabbitMQ (each names its RabbitMQ counterpart); tests that need
RabbitMQ are marked ``rabbitmq`` and skipped under Redis.
"""

import os
import shutil

import pytest
import redis as redis_lib

from tests.support.processes import RabbitMQServer, RedisServer, Worker, rabbitmq_server_binary, wait_for

SANDBOX_TOKEN = "100000:sandbox-token-not-secret"
TEST_BROKER = (os.environ.get("TEST_BROKER") or "redis").strip().lower()
BROKERS = ("redis", "rabbitmq")
# The session's Redis and its broker (the same URL unless TEST_BROKER=rabbitmq).
SESSION = {"redis_url": None, "broker_url": None, "broker": None}


def pytest_configure(config):
    if TEST_BROKER not in BROKERS:
        raise pytest.UsageError(f"TEST_BROKER={TEST_BROKER!r}: use one of {', '.join(BROKERS)}.")


def pytest_report_header(config):
    return f"broker: {TEST_BROKER} (TEST_BROKER)"


def pytest_collection_modifyitems(config, items):
    """Never a silent skip: the reason names the broker and where the
    counterpart test is."""
    for item in items:
        if TEST_BROKER == "rabbitmq":
            marker = item.get_closest_marker("redis_broker")
            if marker:
                why = marker.kwargs.get("reason") or (marker.args[0] if marker.args else "")
                item.add_marker(pytest.mark.skip(reason=f"about Redis as the broker, TEST_BROKER=rabbitmq: {why}"))
        elif item.get_closest_marker("rabbitmq"):
            item.add_marker(pytest.mark.skip(
                reason="needs RabbitMQ as the broker: run with TEST_BROKER=rabbitmq (the third pass of .ci/run)"))


def broker_for(redis_url):
    """The broker that goes with ``redis_url``: the session's broker for the
    session's Redis, else that Redis itself (a test's own Redis is its broker)."""
    if redis_url and redis_url == SESSION["redis_url"] and SESSION["broker_url"]:
        return SESSION["broker_url"]
    return redis_url


def _configure_broker(url):
    """Point this process's producers at broker ``url`` (a Redis URL also
    becomes REDIS_URL; the session's Redis means the session's broker)."""
    from django.conf import settings

    from celery_app import app
    from notifications import dispatch
    from workers import broker

    redis_url, url = url, broker_for(url)
    if not broker.is_amqp(redis_url):
        settings.REDIS_URL = redis_url
    settings.CELERY_BROKER_URL = url
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = broker.transport_options(url)
    app.conf.broker_url = url
    app.conf.broker_transport_options = broker.transport_options(url)
    if app._pool is not None:
        app._pool.force_close_all()
    app._pool = None
    app.amqp._producer_pool = None
    dispatch.reset_breaker()


def rabbitmq_server(**kwargs):
    """A started private RabbitMQ node, or a clear failure when there is none."""
    if not rabbitmq_server_binary():
        pytest.fail("TEST_BROKER=rabbitmq needs rabbitmq-server (apt-get install rabbitmq-server).")
    return RabbitMQServer(**kwargs).start()


@pytest.fixture(scope="session")
def redis_server():
    """A private redis-server on a free port; falls back to REDIS_URL only
    when the binary is missing. With TEST_BROKER=rabbitmq a private RabbitMQ
    node is started beside it as the session's broker (``broker_server``)."""
    if shutil.which("redis-server"):
        server = RedisServer().start()
        cleanup = server.close
    else:
        url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
        try:
            redis_lib.Redis.from_url(url, socket_connect_timeout=1).ping()
        except redis_lib.RedisError:
            pytest.fail(f"Redis is required: install redis-server or start Redis at REDIS_URL ({url}).")
        server = type("ExternalRedis", (), {"url": url, "port": None})()
        cleanup = None
    try:
        rabbit = rabbitmq_server() if TEST_BROKER == "rabbitmq" else None
    except BaseException:
        if cleanup:
            cleanup()
        raise
    SESSION.update(redis_url=server.url, broker_url=rabbit.url if rabbit else server.url)
    SESSION["broker"] = rabbit or server
    _configure_broker(server.url)
    yield server
    if rabbit:
        rabbit.close()
    if cleanup:
        cleanup()


@pytest.fixture(scope="session")
def broker_server(redis_server):
    """The session's broker: the private Redis, or with TEST_BROKER=rabbitmq
    the private RabbitMQ node (``.url``)."""
    return SESSION["broker"]


@pytest.fixture(scope="session")
def telegram_sandbox():
    from sandbox import TelegramSandbox

    server = TelegramSandbox(port=0).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def whatsapp_sandbox():
    from sandbox.whatsapp import WhatsAppSandbox

    server = WhatsAppSandbox(port=0).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def smtp_sandbox():
    from sandbox.smtp import SmtpSandbox

    server = SmtpSandbox(page_port=0).start()
    yield server
    server.stop()


@pytest.fixture
def smtp(smtp_sandbox, settings):
    """The session's SMTP capture server, emptied, and this process's
    e-mail settings pointed at it."""
    smtp_sandbox.reset()
    settings.EMAIL_HOST, settings.EMAIL_PORT = smtp_sandbox.host, smtp_sandbox.port
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    from workers import channels

    channels.reset()
    yield smtp_sandbox
    channels.reset()


def pointed_at(server, settings):
    """Empty ``server`` (a Telegram sandbox, in this process or its own),
    restore its default config and point this process's settings at it; a
    generator for a fixture to yield from."""
    from workers import channels

    server.reset(config=True)
    settings.TELEGRAM_API_URL = server.url
    settings.TELEGRAM_BOT_TOKEN = SANDBOX_TOKEN
    channels.reset()
    yield server
    channels.reset()


@pytest.fixture
def sandbox(telegram_sandbox, settings):
    """The session's sandbox, emptied and with default config, and this
    process's settings pointed at it (for commands that send directly)."""
    yield from pointed_at(telegram_sandbox, settings)


@pytest.fixture
def no_broker(monkeypatch):
    """For unit tests of routing and policy: record what would be published
    instead of talking to a broker. Returns the list of (id, channel) pairs."""
    published = []
    monkeypatch.setattr("notifications.dispatch.publish", lambda rows, **kw: published.extend(rows) or len(rows))
    return published


def database_url():
    """The URL of the database the tests run on (the test database)."""
    from django.db import connection

    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{os.path.abspath(s['NAME'])}"
    auth = s["USER"] or ""
    if s["PASSWORD"]:
        auth += f":{s['PASSWORD']}"
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def whatsapp_env(whatsapp_sandbox):
    from sandbox import whatsapp

    return {
        "WHATSAPP_API_URL": whatsapp_sandbox.api_url,
        "WHATSAPP_ACCESS_TOKEN": whatsapp.DEFAULT_TOKEN,
        "WHATSAPP_PHONE_NUMBER_ID": whatsapp.DEFAULT_PHONE_NUMBER_ID,
        "WHATSAPP_APP_SECRET": whatsapp.DEFAULT_APP_SECRET,
    }


def worker_env(redis_url, sandbox_url, broker_url=None, **extra):
    """The environment of a worker (or beat, poller, ASGI server) on the test
    database, Redis ``redis_url`` and ``broker_url`` (by default the broker
    that goes with that Redis, see ``broker_for``)."""
    env = {
        "DATABASE_URL": database_url(),
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": broker_url or broker_for(redis_url),
        "TELEGRAM_API_URL": sandbox_url,
        "TELEGRAM_BOT_TOKEN": SANDBOX_TOKEN,
        "DJANGO_SETTINGS_MODULE": "cmms.settings",
        "DJANGO_DEBUG": "1",
        "PYTHONUNBUFFERED": "1",
    }
    env.update({k: str(v) for k, v in extra.items()})
    return env


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker, redis_server, telegram_sandbox, whatsapp_sandbox,
                  smtp_sandbox):
    """One real worker for the session, consuming every queue."""
    env = worker_env(redis_server.url, telegram_sandbox.url, **whatsapp_env(whatsapp_sandbox),
                     EMAIL_URL=smtp_sandbox.url, EMAIL_TIMEOUT=2)
    worker = Worker(env, concurrency=8).start()
    yield worker
    worker.stop()


@pytest.fixture(scope="session")
def asgi_server(django_db_setup, redis_server, telegram_sandbox):
    """The app served by uvicorn (HTTP and the inbox's WebSocket), on the test
    database and the private Redis as its channel layer."""
    from tests.support.asgi import AsgiServer

    server = AsgiServer(worker_env(redis_server.url, telegram_sandbox.url)).start()
    yield server
    server.stop()


@pytest.fixture
def e2e(celery_worker, sandbox, transactional_db):
    """Everything an end-to-end test needs; returns the sandbox."""
    from notifications import dispatch

    dispatch.reset_breaker()
    return sandbox


def wait_for_status(message_ids, statuses=("SENT",), timeout=30):
    from notifications.models import MessageLog

    ids = list(message_ids)

    def done():
        rows = list(MessageLog.objects.filter(pk__in=ids).values_list("status", flat=True))
        return len(rows) == len(ids) and all(s in statuses for s in rows)

    wait_for(done, timeout=timeout, interval=0.1, message=f"messages {ids[:5]}... to reach {statuses}")


@pytest.fixture
def limiter(redis_server, settings):
    """The shared rate limiter pointed at the private Redis, with no state
    left from another test. Its mechanics are tested at the published limits
    with the "auto" 429 scope and no departure log; the defaults (a margin
    under the limits, the log, a 429 blocking the bot) have their own tests
    in test_ratelimit.py."""
    from workers import ratelimit

    settings.RATE_LIMIT = {**settings.RATE_LIMIT, "REDIS_URL": redis_server.url, "MARGIN": 1.0,
                           "RETRY_AFTER_SCOPE": "auto", "WINDOW": {}}
    ratelimit.reset()
    client = redis_lib.Redis.from_url(redis_server.url)
    for key in client.scan_iter(f"{ratelimit.KEY_PREFIX}:*"):
        client.delete(key)
    client.close()
    yield ratelimit
    ratelimit.reset()


def point_broker_at(url):
    """Point this process's producers at another broker (a test's own Redis or
    RabbitMQ; the session's Redis means the session's broker), dropping pooled
    connections and the producer pool built on them."""
    from kombu import pools

    from celery_app import app

    _configure_broker(url)
    pools.reset()  # kombu keeps the closed pools in a process-wide registry
    app.amqp._producer_pool = None


@pytest.fixture(autouse=True)
def in_memory_channel_layer(settings):
    """Pushes made in this process (a mark-read, an inline delivery) go to an
    in-memory channel layer, never to a Redis the test did not start; the
    WebSocket tests point it at their private Redis."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
