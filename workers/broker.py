"""What the dispatcher asks of its broker, for Redis and for RabbitMQ.

Redis is the default broker; RabbitMQ is supported with
``CELERY_BROKER_URL=amqp://...`` (docs/scaling.md, "Brokers: Redis or
RabbitMQ"). Three things the outbox relay and the delivery policy need differ
between them, and live here:

- how long a worker may hold an unacknowledged task (an ETA retry waits
  unacknowledged in the worker): Redis hands it to another worker after the
  visibility timeout; RabbitMQ closes the worker's channel after its
  ``consumer_timeout`` (and redelivers everything the channel held);
- how many tasks wait in a queue: a passive ``queue_declare`` answers both
  (kombu emulates it on Redis with LLEN; RabbitMQ counts the ready
  messages), with no management plugin;
- whether the broker lost its data (the queued tasks are gone, so every
  waiting row must be published again): a marker kept next to the queues.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

logger = logging.getLogger(__name__)

AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")
# Redis: a key beside the queues. RabbitMQ: a durable queue holding one
# persistent message, never consumed.
MARKER = "cmms:outbox:broker-marker"
AMQP_MARKER_QUEUE = "cmms.outbox.broker-marker"


def is_amqp(url=None):
    url = settings.CELERY_BROKER_URL if url is None else url
    return url.partition("://")[0].lower() in AMQP_SCHEMES


def transport_options(url=None):
    """The broker transport options for ``url``'s kind of broker (settings
    picks them once from CELERY_BROKER_URL; a process that changes brokers at
    run time, like the test suite, asks again)."""
    return dict(settings.AMQP_BROKER_TRANSPORT_OPTIONS if is_amqp(url) else settings.REDIS_BROKER_TRANSPORT_OPTIONS)


def unacked_hold_limit_s():
    """How long a task may stay unacknowledged in a worker before the broker
    takes it back: Redis' visibility timeout, RabbitMQ's consumer_timeout."""
    if is_amqp():
        return float(settings.RABBITMQ_CONSUMER_TIMEOUT_S)
    return float(settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout", 3600))


def _connection():
    from celery import current_app

    return current_app.connection_for_write(transport_options=transport_options())


def _not_found(exc):
    return getattr(exc, "code", None) == 404 or "NOT_FOUND" in str(exc)


def queue_depth(queue):
    """Tasks waiting in a broker queue (not counting those a worker holds);
    0 for a queue the broker never declared, None when the broker cannot tell."""
    return queue_depths([queue])[queue]


def queue_depths(queues):
    """``{queue: depth}`` as queue_depth, over one broker connection (the
    dashboard and the metrics ask for every queue at once)."""
    depths = dict.fromkeys(queues)
    try:
        with _connection() as conn:
            for queue in depths:
                # A channel of its own: on RabbitMQ a passive declare of a missing
                # queue closes the channel it ran on.
                channel = conn.channel()
                try:
                    depths[queue] = channel.queue_declare(queue=queue, passive=True).message_count
                except conn.channel_errors as exc:
                    if not _not_found(exc):
                        raise
                    depths[queue] = 0  # never declared on this broker (or it lost its data): empty
                finally:
                    _close_quietly(channel)
    except Exception as exc:  # noqa: BLE001 - any broker error means "unknown"
        logger.warning("Relay: cannot read the length of queues %s (%s)", ", ".join(depths), exc)
        return dict.fromkeys(queues)
    return depths


def lost_its_data():
    """When the broker lost its queues, a time at or before the loss (else
    None); None too when the broker cannot be asked (it is down: the next run
    asks again). The marker is set again at once, so a loss is reported once.

    On a fresh broker the first run finds no marker either and reports a
    loss: every waiting row gets a second task, which is harmless (the claim
    has one winner)."""
    try:
        if is_amqp():
            return _amqp_lost_its_data()
        return _redis_lost_its_data()
    except Exception as exc:  # noqa: BLE001 - any broker error: cannot tell now
        logger.warning("Relay: cannot check the broker marker (%s)", exc)
        return None


def _redis_lost_its_data():
    """A marker key lives next to the queues: if Redis comes back without it,
    it came back without the queued tasks too (with persistence, AOF, both
    survive a restart and nothing is republished). Redis' uptime says since
    when the current data set exists."""
    import redis

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=2, socket_connect_timeout=1)
    try:
        if not client.set(MARKER, timezone.now().isoformat(), nx=True):
            return None
        uptime = int(client.info("server").get("uptime_in_seconds", 0))
    finally:
        client.close()
    return timezone.now() - timedelta(seconds=uptime + 1)


def _amqp_lost_its_data():
    """A durable queue holding one persistent message, published like the
    tasks (the same delivery mode, with a publisher confirm) and never
    consumed. A clean restart or a crash keeps both, like the queued tasks;
    a node rebuilt empty, a failover to a node without the queues, a deleted
    vhost or a purge of every queue loses it with them. RabbitMQ has no
    uptime to read over AMQP: the loss is dated now (the relay publishes
    every waiting row again, whatever its date)."""
    from kombu import Producer, Queue

    queue = Queue(AMQP_MARKER_QUEUE, durable=True, auto_delete=False)
    with _connection() as conn:
        channel = conn.channel()
        try:
            try:
                if channel.queue_declare(queue=AMQP_MARKER_QUEUE, passive=True).message_count > 0:
                    return None
            except conn.channel_errors as exc:
                if not _not_found(exc):
                    raise
                _close_quietly(channel)
                channel = conn.channel()  # the failed passive declare closed the first one
            lost_at = timezone.now()
            queue(channel).declare()
            Producer(channel).publish(
                {"set_at": lost_at.isoformat()}, exchange="", routing_key=AMQP_MARKER_QUEUE, serializer="json",
                delivery_mode=settings.CELERY_TASK_DEFAULT_DELIVERY_MODE,
            )
        finally:
            _close_quietly(channel)
    return lost_at - timedelta(seconds=1)


def _close_quietly(channel):
    try:
        channel.close()
    except Exception:  # noqa: BLE001 - closing a channel the broker already closed
        pass
