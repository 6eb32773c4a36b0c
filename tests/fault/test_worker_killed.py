"""kill -9 of a worker (the whole process group: parent and pool) in the
middle of a 500-message broadcast, then a new worker.

Expected: every message ends SENT, none is lost, and the sandbox received
duplicates only for sends that were in flight at the kill (rows SENDING
then); those rows are flagged possible_duplicate.
"""

from collections import Counter

import pytest
from django.db import transaction

from notifications.message_router import MessageRouter
from notifications.models import MessageLog
from tests.support.processes import wait_for

from .conftest import operators
from .stack import wait_until_done

pytestmark = [pytest.mark.fault, pytest.mark.django_db(transaction=True)]


def test_kill_9_mid_broadcast_loses_nothing_and_duplicates_only_sends_in_flight(make_stack, sandbox):
    stack = make_stack()
    first = stack.worker(concurrency=32)
    stack.start_relay()
    operators(500)
    with transaction.atomic():
        MessageRouter().broadcast_to_role("OPERATOR", "Parada de planta", "Parada general el sábado a las 6:00")
    ids = list(MessageLog.objects.values_list("pk", flat=True))
    assert len(ids) == 500

    wait_for(lambda: len(sandbox.messages()) >= 150, timeout=30, message="the broadcast to be under way")
    first.kill(hard=True)
    in_flight = MessageLog.objects.filter(status="SENDING").count()
    received_at_kill = len(sandbox.messages())

    stack.worker(concurrency=32)
    took = wait_until_done(ids, timeout=90)

    per_chat = Counter(m["chat_id"] for m in sandbox.messages())
    duplicates = {chat: n - 1 for chat, n in per_chat.items() if n > 1}
    print(f"\nkill -9 after {received_at_kill} of 500 received: {in_flight} row(s) SENDING at the kill, "
          f"{sum(duplicates.values())} duplicate(s); all SENT {took:.1f} s after the restart")
    assert len(per_chat) == 500  # none lost
    assert sum(duplicates.values()) <= in_flight
    flagged = set(MessageLog.objects.filter(possible_duplicate=True).values_list("recipient", flat=True))
    assert {str(chat) for chat in duplicates} <= flagged
