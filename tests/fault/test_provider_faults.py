"""Faults on the producer's and the provider's side, with a real worker and
the sandbox counting what it received."""

import time
from collections import Counter

import pytest
from django.db import transaction

from notifications.message_router import MessageRouter
from notifications.models import MessageLog, UserChannelPreference
from tests.support.broadcasts import wait_expanded

from .conftest import operators
from .stack import wait_until_done

pytestmark = [pytest.mark.fault, pytest.mark.django_db(transaction=True)]


def test_a_rolled_back_producer_transaction_sends_nothing(make_stack, sandbox):
    stack = make_stack()
    stack.worker(concurrency=4)
    stack.start_relay()
    rolled_back, committed = operators(2)
    with pytest.raises(RuntimeError), transaction.atomic():
        MessageRouter().send_to_user(rolled_back, "OT-1", "Orden asignada", message_type="work_order_assigned")
        raise RuntimeError("the work order could not be saved")
    # A message committed afterwards is the marker that the worker and the
    # relay (which runs every second here) had every chance to send the first.
    with transaction.atomic():
        result = MessageRouter().send_to_user(committed, "OT-2", "Orden asignada", message_type="work_order_assigned")
    wait_until_done(result.message_ids.values(), timeout=30)
    time.sleep(2)  # two more relay runs
    assert [m["chat_id"] for m in sandbox.messages()] == [10_001]
    assert MessageLog.objects.count() == 1


def test_502s_and_timeouts_on_20_percent_of_calls_end_sent_with_every_attempt_recorded(make_stack, sandbox):
    sandbox.configure(fail_rate=0.1, timeout_rate=0.1, timeout_delay_s=2.0, seed=20261125)
    stack = make_stack(TELEGRAM_TIMEOUT_S=0.8)
    stack.worker(concurrency=16)
    stack.start_relay()
    operators(150)
    with transaction.atomic():
        MessageRouter().broadcast_to_role("OPERATOR", "Inspección", "Inspección de seguridad el lunes")
    wait_expanded()
    rows = MessageLog.objects.all()
    wait_until_done(rows.values_list("pk", flat=True), timeout=90)

    stats = sandbox.stats()
    per_chat = Counter(m["chat_id"] for m in sandbox.messages())
    attempts = sum(r.attempts for r in rows)
    flagged = {int(r.recipient) for r in rows if r.possible_duplicate}
    print(f"\n502: {stats['failures_injected']}, timeouts: {stats['timeouts_injected']}, attempts: {attempts} "
          f"for {rows.count()} messages, max per message {max(r.attempts for r in rows)}, "
          f"flagged possible_duplicate: {len(flagged)}, delivered twice: {sum(n > 1 for n in per_chat.values())}")
    assert stats["failures_injected"] > 0 and stats["timeouts_injected"] > 0
    # One attempt per message plus one per injected fault: all recorded.
    assert attempts == rows.count() + stats["failures_injected"] + stats["timeouts_injected"]
    assert max(r.attempts for r in rows) <= 10  # within the retry budget (DELIVERY_MAX_ATTEMPTS)
    # A timed-out call was delivered: the retry duplicates it, and the row says so.
    assert len(per_chat) == 150
    assert sum(n - 1 for n in per_chat.values()) == stats["timeouts_injected"]
    assert {chat for chat, n in per_chat.items() if n > 1} <= flagged
    assert all(r.last_error == "" for r in rows)  # SENT: no stale error from an earlier attempt


def test_permanent_errors_take_exactly_one_attempt_each(make_stack, sandbox):
    stack = make_stack()
    stack.worker(concurrency=8)
    users = operators(30)
    dead = {10_000: "blocked", 10_001: "deactivated", 10_002: "not_found", 10_003: "kicked", 10_004: "blocked"}
    for chat, state in dead.items():
        sandbox.set_chat(chat, state=state)
    with transaction.atomic():
        MessageRouter().broadcast_to_role("OPERATOR", "Aviso", "Nuevo procedimiento de bloqueo y etiquetado")
    wait_expanded()
    rows = MessageLog.objects.all()
    wait_until_done(rows.values_list("pk", flat=True), timeout=30, statuses=("SENT", "FAILED"))

    failed = rows.filter(status="FAILED")
    assert sorted(int(r.recipient) for r in failed) == sorted(dead)
    assert {r.attempts for r in failed} == {1}
    assert all(r.last_error.startswith("Telegram 4") for r in failed)
    statuses = sandbox.stats()["responses_by_status"]
    assert statuses.get("403", 0) + statuses.get("400", 0) == len(dead)  # one call each, never retried
    assert rows.filter(status="SENT").count() == len(users) - len(dead)
    unreachable = UserChannelPreference.objects.filter(is_reachable=False)
    assert sorted(int(p.channel_user_id) for p in unreachable) == sorted(dead)
