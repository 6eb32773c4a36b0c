"""Publishing delivery tasks, bounded in time.

The MessageLog row is the outbox: it is committed first, then published. A
publish that fails (broker down) is logged and left to the relay
(workers.tasks.relay_outbox), so a producer never blocks on Redis and never
loses a message because of it.

Why a deadline of our own: Celery's publish retry policy and the Redis
socket timeout bound each step, but not their sum, and a hung Redis (a
stopped process, a full network buffer) accepts the connection and never
answers. So a producer hands the publish to a small thread pool and waits at
most DELIVERY["PUBLISH_TIMEOUT_S"]; a publish that finishes later is harmless
(the claim makes a second task for a row a no-op).
"""

import logging
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from django.conf import settings
from django.db import transaction
from django.utils import timezone

logger = logging.getLogger(__name__)

# Above this many delivery tasks (each a batch, see batches()), the producer
# publishes a few fan-out tasks and a worker publishes the delivery tasks: a
# producer never pays more than this many publishes (~1 ms each).
FANOUT_THRESHOLD_TASKS = 40
FANOUT_CHUNK = 2000
# Publishing threads shared by a process's producers; few, since each waits on
# one Redis: when all are stuck on a hung broker, callers still time out.
PUBLISH_THREADS = 8

_broker_down_until = 0.0
_executor = None
_executor_lock = threading.Lock()


def queue_for(channel_type):
    return settings.NOTIFICATION_QUEUES.get(channel_type, settings.CELERY_DEFAULT_QUEUE_NAME)


def publish(messages, *, fanout=True, timeout="default"):
    """Publish delivery tasks for ``messages``: (id, channel_type) pairs.

    Returns the number published; never raises for a broker problem, and
    never waits longer than ``timeout`` seconds (producers: the setting;
    ``None`` inside workers, where the relay and fan-out tasks run).
    """
    from .models import MessageLog

    messages = list(messages)
    if not messages:
        return 0
    if timeout == "default":
        timeout = settings.DELIVERY["PUBLISH_TIMEOUT_S"]
    if time.monotonic() < _broker_down_until:
        logger.warning("Broker marked down: %d message(s) stay QUEUED for the relay.", len(messages))
        return 0
    published, error = [], None
    try:
        if timeout is None:
            _send(messages, fanout, published)
        else:
            _pool().submit(_send, messages, fanout, published).result(timeout=timeout)
    except FutureTimeout:
        error = f"no answer from the broker within {timeout:g} s"
    except Exception as exc:  # noqa: BLE001 - kombu/redis raise several types; all mean "not published"
        error = f"{type(exc).__name__}: {exc}"
    if error:
        _trip_breaker()
        logger.warning(
            "Could not publish %d of %d message(s) (%s); they stay QUEUED and the relay will publish them.",
            len(messages) - len(published), len(messages), error,
        )
    done = [pk for pk in list(published) if pk is not None]
    if done:
        MessageLog.objects.filter(pk__in=done).update(published_at=timezone.now())
    return len(messages) if fanout and _fans_out(messages) and not error else len(done)


def publish_on_commit(messages, using=None):
    """Publish ``messages`` once the current transaction commits (at once
    without one). Every call in one transaction joins one publish: a
    producer that calls send_to_user 500 times in a transaction makes one
    bounded publish of batches, not 500 publishes of one message each."""
    messages = list(messages)
    if not messages:
        return
    conn = transaction.get_connection(using)
    pending = getattr(conn, "_cmms_pending_publish", None)
    # Joined only at the same savepoint level (what a savepoint's rollback
    # discards stays exact) and while it is the last callback, in order.
    if not conn.in_atomic_block or pending is None or pending.ran or not conn.run_on_commit or (
            conn.run_on_commit[-1][1] is not pending.callback
            or conn.run_on_commit[-1][0] != set(conn.savepoint_ids)):
        pending = conn._cmms_pending_publish = _PendingPublish()
        pending.messages.extend(messages)
        transaction.on_commit(pending.callback, using=using)  # runs at once outside a transaction
        return
    pending.messages.extend(messages)


class _PendingPublish:
    """The messages of one transaction's publish."""

    def __init__(self):
        self.messages = []
        self.ran = False

        def callback():
            self.ran = True
            messages, self.messages = self.messages, []
            publish(messages)

        self.callback = callback


def send(messages):
    """Publish the delivery tasks of (id, channel_type) pairs now, inline
    (inside workers: the relay, fan-out tasks); returns the ids published
    before the broker failed, if it did. Marks nothing."""
    published = []
    try:
        _send(list(messages), False, published)
    except Exception as exc:  # noqa: BLE001 - as above
        logger.warning("Published %d of %d message(s), then: %s: %s", len(published), len(messages),
                       type(exc).__name__, exc)
    return published


def batches(messages):
    """[(queue, [ids])]: one delivery task per batch of one queue's messages.
    A publish is spread over as many as DELIVERY["BATCH_SPREAD"] tasks (so
    that as many worker threads send in parallel, each at the provider's
    latency), each carrying at most DELIVERY["BATCH_MAX"] ids (one task's
    claim, load and record serve them all): 10 messages are 10 tasks, 120 are
    30 tasks of 4, 2,000 are 40 tasks of 50."""
    by_queue = {}
    for message_id, channel_type in messages:
        by_queue.setdefault(queue_for(channel_type), []).append(message_id)
    most, spread = max(1, settings.DELIVERY["BATCH_MAX"]), max(1, settings.DELIVERY["BATCH_SPREAD"])
    result = []
    for queue, ids in by_queue.items():
        size = max(1, min(most, math.ceil(len(ids) / spread)))
        result.extend((queue, ids[start : start + size]) for start in range(0, len(ids), size))
    return result


def _fans_out(messages):
    return len(messages) > FANOUT_THRESHOLD_TASKS and len(batches(messages)) > FANOUT_THRESHOLD_TASKS


def _send(messages, fanout, published):
    """Runs in the publishing thread (or inline): appends each id published.
    Fan-out chunks are marked published by the worker that expands them."""
    from workers.tasks import deliver_messages, publish_messages

    if fanout and _fans_out(messages):
        for start in range(0, len(messages), FANOUT_CHUNK):
            chunk = messages[start : start + FANOUT_CHUNK]
            publish_messages.apply_async(args=[[[i, c] for i, c in chunk]], queue=settings.CELERY_DEFAULT_QUEUE_NAME)
        return
    for queue, ids in batches(messages):
        deliver_messages.apply_async(args=[ids], queue=queue)
        published.extend(ids)


def run_bounded(publish_fn, what="task"):
    """Run one publish (a callable) in the publishing pool and wait at most
    DELIVERY["PUBLISH_TIMEOUT_S"]; True when it finished. A broker problem is
    logged and trips the breaker, never raised: the caller's row stays for
    its relay."""
    if time.monotonic() < _broker_down_until:
        logger.warning("Broker marked down: %s stays for the relay.", what)
        return False
    timeout = settings.DELIVERY["PUBLISH_TIMEOUT_S"]
    try:
        _pool().submit(publish_fn).result(timeout=timeout)
        return True
    except FutureTimeout:
        error = f"no answer from the broker within {timeout:g} s"
    except Exception as exc:  # noqa: BLE001 - kombu/redis raise several types; all mean "not published"
        error = f"{type(exc).__name__}: {exc}"
    _trip_breaker()
    logger.warning("Could not publish %s (%s); the relay will.", what, error)
    return False


def _pool():
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=PUBLISH_THREADS, thread_name_prefix="cmms-publish")
        return _executor


def _trip_breaker():
    global _broker_down_until
    _broker_down_until = time.monotonic() + settings.DELIVERY["PUBLISH_BREAKER_S"]


def reset_breaker():
    global _broker_down_until
    _broker_down_until = 0.0
