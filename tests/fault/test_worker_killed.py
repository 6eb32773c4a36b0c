"""kill -9 of a worker (the whole process group: the parent and, with the
prefork pool, its children) in the middle of a 500-message broadcast, then a
new worker.

Expected: every message ends SENT, none is lost, and the sandbox received
duplicates only for sends that were in flight at the kill (rows SENDING
then); those rows are flagged possible_duplicate.
"""

from collections import Counter

import pytest
from django.db import transaction

from notifications.message_router import MessageRouter
from notifications.models import MessageLog
from tests.support.broadcasts import wait_expanded
from tests.support.processes import living_processes_in_group, wait_for

from .conftest import operators
from .stack import wait_until_done

pytestmark = [pytest.mark.fault, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize(("pool", "concurrency"), [("threads", 32), ("prefork", 4)])
def test_kill_9_mid_broadcast_loses_nothing_and_duplicates_only_sends_in_flight(make_stack, sandbox, pool, concurrency):
    stack = make_stack()
    first = stack.worker(concurrency=concurrency, pool=pool)
    stack.start_relay()
    operators(500)
    with transaction.atomic():
        MessageRouter().broadcast_to_role("OPERATOR", "Parada de planta", "Parada general el sábado a las 6:00")
    wait_expanded()
    ids = list(MessageLog.objects.values_list("pk", flat=True))
    assert len(ids) == 500

    wait_for(lambda: len(sandbox.messages()) >= 150, timeout=30, message="the broadcast to be under way")
    first.kill(hard=True)
    # parent and pool children are all gone (SIGKILL lands within moments)
    wait_for(lambda: not living_processes_in_group(first.pid), timeout=5, message="the killed group to exit")
    in_flight = MessageLog.objects.filter(status="SENDING").count()
    received_at_kill = len(sandbox.messages())

    stack.worker(concurrency=concurrency, pool=pool)
    took = wait_until_done(ids, timeout=120)

    per_chat = Counter(m["chat_id"] for m in sandbox.messages())
    duplicates = {chat: n - 1 for chat, n in per_chat.items() if n > 1}
    print(f"\n{pool} -c {concurrency}: kill -9 after {received_at_kill} of 500 received: {in_flight} row(s) SENDING at the kill, "
          f"{sum(duplicates.values())} duplicate(s); all SENT {took:.1f} s after the restart")
    assert len(per_chat) == 500  # none lost
    assert sum(duplicates.values()) <= in_flight
    flagged = set(MessageLog.objects.filter(possible_duplicate=True).values_list("recipient", flat=True))
    assert {str(chat) for chat in duplicates} <= flagged
