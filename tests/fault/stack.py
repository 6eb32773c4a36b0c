"""A private delivery stack for end-to-end and fault tests: its own
redis-server (rate limiter and, by default, broker), worker processes started
on demand with short env overrides, the session's Telegram sandbox, and an
optional relay ticker that runs ``workers.relay_outbox`` through the real
broker and a real worker, as beat would.

Own Redis, so that no other worker of the session (the shared
``celery_worker``) consumes these tasks: the tests count processes and kills.
With TEST_BROKER=rabbitmq the stack's broker is a RabbitMQ node of its own
(``stack.broker``; ``stack.redis`` stays the limiter's Redis).
"""

import threading
import time
from contextlib import contextmanager

from django.db import connection

from tests.conftest import TEST_BROKER, point_broker_at, rabbitmq_server, worker_env
from tests.support.processes import RedisServer, Worker, wait_for


class Stack:
    def __init__(self, redis_server, sandbox, broker=None, **env):
        self.redis = redis_server
        self.broker = broker or redis_server
        self.sandbox = sandbox
        self.env = env
        self.workers = []
        self._ticker = None
        self._ticking = threading.Event()

    def worker_env(self, **env):
        return worker_env(self.redis.url, self.sandbox.url, broker_url=self.broker.url, **{**self.env, **env})

    def worker(self, concurrency=32, wait=True, pool="threads", **env):
        started = Worker(self.worker_env(**env), pool=pool, concurrency=concurrency).start(wait=wait)
        self.workers.append(started)
        return started

    def start_relay(self, every_s=1.0):
        """Send relay_outbox to the default queue every ``every_s`` (as beat
        would); a send that fails while Redis is down is skipped."""
        from workers.tasks import relay_outbox

        def tick():
            while not self._ticking.wait(every_s):
                try:
                    relay_outbox.apply_async(queue="default", expires=every_s * 5)
                except Exception:  # noqa: BLE001 - the broker is down: beat would miss this tick too
                    pass

        self._ticker = threading.Thread(target=tick, name="relay-ticker", daemon=True)
        self._ticker.start()

    def stop(self):
        self._ticking.set()
        if self._ticker:
            self._ticker.join(5)
        for w in self.workers:
            w.kill(hard=True)
            w.stop()
            print(f"worker {w.name} log: {w.log_path}")  # shown when the test fails


@contextmanager
def private_stack(session_redis, sandbox, persistent=False, broker=None, **env):
    """``broker``: "redis" or "rabbitmq" (default TEST_BROKER). ``persistent``
    is the Redis broker's AOF; a RabbitMQ broker always keeps its durable
    queues and persistent tasks across a restart."""
    broker = broker or TEST_BROKER
    server = RedisServer(persistent=persistent).start()
    rabbit = None
    try:
        rabbit = rabbitmq_server() if broker == "rabbitmq" else None
        stack = Stack(server, sandbox, broker=rabbit, **env)
        point_broker_at(stack.broker.url)
        try:
            yield stack
        finally:
            stack.stop()
    finally:
        if rabbit:
            rabbit.close()
        server.close()
        point_broker_at(session_redis.url)


def wait_until_done(ids, timeout, statuses=("SENT",), interval=0.25):
    """Wait until every row in ``ids`` has one of ``statuses``; returns the
    seconds it took. On timeout, the error says what is left where."""
    from notifications.models import MessageLog

    start = time.monotonic()
    ids = list(ids)

    def done():
        left = MessageLog.objects.filter(pk__in=ids).exclude(status__in=statuses).count()
        return left == 0

    try:
        wait_for(done, timeout=timeout, interval=interval, message=f"{len(ids)} messages to reach {statuses}")
    except TimeoutError:
        from django.db.models import Count

        left = dict(
            MessageLog.objects.filter(pk__in=ids).values_list("status").annotate(n=Count("pk")).order_by()
        )
        raise TimeoutError(f"after {timeout} s, statuses are {left}") from None
    finally:
        connection.close()
    return time.monotonic() - start


def received_rate(messages):
    """Messages per second between the first and the last the sandbox received."""
    times = sorted(m["received_at"] for m in messages)
    if len(times) < 2:
        return float("inf")
    return (len(times) - 1) / (times[-1] - times[0])
