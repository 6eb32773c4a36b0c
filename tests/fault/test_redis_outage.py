"""Redis (broker and rate limiter) stops for 10 s in the middle of a
broadcast while producers keep calling the router, then comes back empty
(no persistence: the queued tasks are gone).

Expected: no producer call blocks more than 2 s or raises; the rows wait in
the database; the workers consume again within 30 s of Redis' return; the
relay notices the broker lost its data and publishes every waiting row, so
every message is delivered.
"""

import threading
import time

import pytest
from django.db import connection, transaction

from notifications.message_router import MessageRouter
from notifications.models import MessageLog
from tests.support.broadcasts import wait_expanded
from tests.support.processes import wait_for

from .conftest import operators
from .stack import wait_until_done

pytestmark = [
    pytest.mark.fault,
    pytest.mark.django_db(transaction=True),
    pytest.mark.redis_broker("Redis as the broker comes back empty; RabbitMQ's counterparts: "
                             "tests/fault/test_broker_restart.py (a restart, and a node rebuilt empty)"),
]

OUTAGE_S = 10


class Producers:
    """Threads calling the router in a loop, timing every call."""

    def __init__(self, users, threads=3, pause_s=0.25):
        self.users, self.pause_s = users, pause_s
        self.durations, self.errors = [], []
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(threads)]

    def run(self, n):
        try:
            i = 0
            while not self.stopping.is_set():
                user = self.users[(n + i * len(self.threads)) % len(self.users)]
                start = time.monotonic()
                try:
                    with transaction.atomic():
                        MessageRouter().send_to_user(user, "Alerta", f"Vibración alta ({n}-{i})",
                                                     message_type="prediction_high_risk", priority="high")
                except Exception as exc:  # noqa: BLE001 - the assertion shows it
                    self.errors.append(repr(exc))
                self.durations.append(time.monotonic() - start)
                i += 1
                time.sleep(self.pause_s)
        finally:
            connection.close()

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        for t in self.threads:
            t.join()


def test_redis_down_10s_mid_broadcast_producers_never_block_and_everything_is_delivered(make_stack, sandbox):
    stack = make_stack(persistent=False)
    stack.worker(concurrency=16)
    stack.start_relay()
    users = operators(200)
    with transaction.atomic():
        MessageRouter().broadcast_to_role("OPERATOR", "Turno de noche", "Cambio de turno a las 22:00")
    wait_expanded()

    with Producers(users) as producers:
        wait_for(lambda: len(sandbox.messages()) >= 60, timeout=30, message="the broadcast to be under way")
        stack.redis.stop()
        time.sleep(OUTAGE_S)
        stack.redis.start()  # same port, empty: the queues are gone
        back = time.time()
        wait_for(lambda: any(m["received_at"] > back for m in sandbox.messages()), timeout=30, interval=0.1,
                 message="workers to consume again within 30 s")
        first_after = min(m["received_at"] for m in sandbox.messages() if m["received_at"] > back)
        time.sleep(2)

    ids = list(MessageLog.objects.values_list("pk", flat=True))
    took = wait_until_done(ids, timeout=90)
    received = {m["chat_id"] for m in sandbox.messages()}
    print(f"\nRedis down {OUTAGE_S} s: {len(producers.durations)} producer calls, slowest "
          f"{max(producers.durations):.3f} s, errors {len(producers.errors)}; first delivery "
          f"{first_after - back:.1f} s after Redis returned; all {len(ids)} SENT {took:.1f} s after the producers stopped")
    assert producers.errors == []
    assert max(producers.durations) < 2.0
    assert first_after - back < 30
    assert MessageLog.objects.filter(status="SENT").count() == len(ids)
    assert len(received) == 200  # every chat (the producers wrote to the same chats)
    assert len(sandbox.messages()) >= len(ids)
