"""kill -9 of the worker expanding a broadcast, mid-expansion, then a new
worker and the broadcast relay (as beat runs it).

Expected: the expansion finishes, and every recipient has exactly one row per
channel (none left out, none twice): each batch wrote its rows and moved the
record's cursor in one transaction, and the batch the killed worker was
writing was rolled back with its connection. Every in-app row has exactly one
inbox entry, and every queued row is published (by the new worker or, for a
batch committed just before the kill, by the outbox relay).
"""

import threading
from collections import Counter

import pytest
from django.db import transaction

from notifications.message_router import MessageRouter
from notifications.models import InAppNotification, MessageLog, RoleBroadcast, UserChannelPreference
from tests.support.processes import Worker, living_processes_in_group, wait_for

from .conftest import operators

pytestmark = [pytest.mark.fault, pytest.mark.django_db(transaction=True)]
USERS, BATCH = 4000, 25


def expansion_worker(stack, pool):
    """A worker on the default queue only: it expands, and no delivery competes."""
    worker = Worker(stack.worker_env(), queues=["default"], pool=pool, concurrency=4).start()
    stack.workers.append(worker)  # killed and its log shown at the end
    return worker


class BroadcastRelay:
    """Sends workers.relay_role_broadcasts every ``every_s``, as beat would."""

    def __init__(self, every_s=0.5):
        self.every_s, self.stopped = every_s, threading.Event()
        self.thread = threading.Thread(target=self.run, name="broadcast-relay", daemon=True)

    def run(self):
        from workers.tasks import relay_role_broadcasts

        while not self.stopped.wait(self.every_s):
            relay_role_broadcasts.apply_async(queue="default", expires=self.every_s * 5)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        self.thread.join(5)


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_kill_9_mid_expansion_leaves_no_recipient_out_and_none_twice(make_stack, pool):
    stack = make_stack(ROLE_BROADCAST_BATCH_USERS=BATCH, ROLE_BROADCAST_STALLED_AFTER_S=2,
                       ROLE_BROADCAST_UNPUBLISHED_AFTER_S=1)
    stack.start_relay()  # the outbox relay: rows committed but not published at the kill
    users = operators(USERS)
    in_app = users[::3]
    UserChannelPreference.objects.bulk_create(
        [UserChannelPreference(user=u, channel_type="IN_APP") for u in in_app], batch_size=500)
    first = expansion_worker(stack, pool)
    with transaction.atomic():
        stats = MessageRouter().broadcast_to_role("OPERATOR", "Parada de planta", "Parada general el sábado a las 6:00")
    assert stats == {"total": USERS, "success": USERS, "failed": 0}
    record = RoleBroadcast.objects.filter(pk=stats.broadcast_id)

    wait_for(lambda: record.values_list("users_expanded", flat=True).get() >= 4 * BATCH, timeout=60, interval=0.005,
             message="the expansion to be under way")
    first.kill(hard=True)
    wait_for(lambda: not living_processes_in_group(first.pid), timeout=5, message="the killed group to exit")
    at_kill = record.values_list("users_expanded", "rows_written").get()
    assert at_kill[0] < USERS, "the expansion finished before the kill: nothing was proven"
    assert MessageLog.objects.count() == at_kill[1]  # only committed batches left rows

    with BroadcastRelay():
        expansion_worker(stack, pool)
        wait_for(lambda: record.filter(expanded_at__isnull=False).exists(), timeout=90, interval=0.1,
                 message="the relay and a new worker to finish the expansion")
        wait_for(lambda: not MessageLog.objects.filter(status="QUEUED", published_at__isnull=True).exists(),
                 timeout=30, interval=0.1, message="every queued row to be published")

    per_pair = Counter(MessageLog.objects.values_list("user_id", "channel_type"))
    expected = {(u.pk, "TELEGRAM") for u in users} | {(u.pk, "IN_APP") for u in in_app}
    print(f"\n{pool}: kill -9 after {at_kill[0]} of {USERS} users ({at_kill[1]} rows); "
          f"{sum(per_pair.values())} rows after the restart")
    assert set(per_pair) == expected  # none left out
    assert set(per_pair.values()) == {1}  # none twice
    inbox = Counter(InAppNotification.objects.values_list("message_log_id", flat=True))
    assert len(inbox) == len(in_app) and set(inbox.values()) == {1}
    done = record.get()
    assert (done.users_expanded, done.rows_written) == (USERS, len(expected))
