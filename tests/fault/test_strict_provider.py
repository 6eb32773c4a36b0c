"""Against a strict Telegram stand-in: a sliding 30-messages-in-any-second
window (a 429 blocks the bot for its retry_after), 1/s per chat, arrival
jitter, an absurd retry_after. Real workers and Redis; what the sandbox
received and what MessageLog says."""

from collections import Counter

import pytest
from django.db import transaction

from notifications.channels import OutgoingMessage
from notifications.channels.telegram import render
from notifications.message_router import MessageRouter
from notifications.models import MessageLog
from tests.support.broadcasts import wait_expanded
from tests.support.processes import wait_for
from tests.support.sandbox_process import SandboxProcess

from .conftest import operators
from .stack import received_rate, wait_until_done

pytestmark = [pytest.mark.fault, pytest.mark.django_db(transaction=True)]
# The chat's burst is the one RATE_LIMIT_TELEGRAM_RECIPIENT_BURST assumes (2).
STRICT = {"bot_rate": 30, "bot_burst": 30, "bot_window_s": 1.0, "chat_rate": 1, "chat_burst": 2}
TELEGRAM_PACE = {"RATE_LIMIT_TELEGRAM_ACCOUNT": "30/s", "RATE_LIMIT_TELEGRAM_ACCOUNT_MAX_SLEEP_S": 5}


@pytest.fixture(scope="module")
def provider():
    """The sandbox in a process of its own, as a provider is: in the test's
    process its threads would share the GIL and the garbage collector's pauses
    with the test and Django, and check a request's arrival up to 0.2 s after
    it came (measured), a jitter beyond the 0-100 ms these tests configure."""
    server = SandboxProcess(limits=True).start()
    yield server
    server.stop()


@pytest.fixture
def sandbox(provider, settings):
    """This module's provider, emptied and with default config (as the
    session's ``sandbox`` fixture), and this process's settings pointed at it."""
    from tests.conftest import pointed_at

    yield from pointed_at(provider, settings)


LONG_BODY = "\n\n".join(f"Paso {i}: " + ("revisar el rodamiento, el sello y la carcasa " * 30) for i in range(1, 22))


def test_a_broadcast_at_200_ms_with_jitter_gets_no_429_from_a_sliding_window(make_stack, sandbox):
    sandbox.configure(latency_ms=150, latency_jitter_ms=100, **STRICT)  # 200 ms ± 50 ms
    stack = make_stack(**TELEGRAM_PACE)
    stack.worker(concurrency=32)
    stack.worker(concurrency=32)
    operators(300)
    with transaction.atomic():
        MessageRouter().broadcast_to_role("OPERATOR", "Inspección", "Inspección de seguridad el lunes")
    wait_expanded()
    wait_until_done(MessageLog.objects.values_list("pk", flat=True), timeout=120)
    stats = sandbox.stats()
    rate = received_rate(sandbox.messages())
    print(f"\nsliding window 30/s, 200±50 ms: {rate:.1f} msg/s ({rate / 30:.2f} of the limit), "
          f"429s: {stats['responses_by_status'].get('429', 0)}, inside retry_after: {stats['requests_inside_retry_after']}")
    assert stats["responses_by_status"].get("429", 0) == 0
    assert stats["requests_inside_retry_after"] == 0
    assert len({m["chat_id"] for m in sandbox.messages()}) == 300


def test_a_long_message_reaches_the_chat_once_per_chunk_and_does_not_hold_up_the_chat(make_stack, sandbox):
    sandbox.configure(**STRICT)
    stack = make_stack(**TELEGRAM_PACE)
    stack.worker(concurrency=8)
    stack.start_relay()
    (user,) = operators(1)
    chunks = render(OutgoingMessage(title="Procedimiento", body=LONG_BODY, emoji="📢"))
    assert len(chunks) >= 5
    with transaction.atomic():
        long = MessageRouter().send_to_user(user, "Procedimiento", LONG_BODY).message_ids["TELEGRAM"]
        short = MessageRouter().send_to_user(user, "OT-7", "Orden asignada").message_ids["TELEGRAM"]
    took = wait_until_done([long, short], timeout=60)

    texts = [m["text"] for m in sandbox.messages()]
    counts = Counter(texts)
    print(f"\n{len(chunks)}-chunk message and a short one to one chat: {len(texts)} messages in {took:.1f} s, "
          f"429s: {sandbox.stats()['responses_by_status'].get('429', 0)}")
    assert len(texts) == len(chunks) + 1 and set(counts.values()) == {1}  # each chunk exactly once
    row = MessageLog.objects.get(pk=long)
    assert (row.attempts, row.chunks_sent, row.last_error) == (1, len(chunks), "")
    assert sandbox.stats()["responses_by_status"].get("429", 0) == 0  # paced at the chat's 1/s


def test_an_absurd_retry_after_is_capped_and_everything_goes_out_after_the_cap(make_stack, sandbox):
    stack = make_stack(DELIVERY_RETRY_AFTER_MAX_S=3)
    worker = stack.worker(concurrency=8)
    stack.start_relay()
    operators(20)
    # Long enough that the first sends meet it however loaded the machine is.
    sandbox.configure(force_429={"scope": "bot", "retry_after": 1, "duration_s": 5, "answer_retry_after": 1e12})
    with transaction.atomic():
        MessageRouter().broadcast_to_role("OPERATOR", "Aviso", "Corte de agua")
    wait_expanded()
    ids = list(MessageLog.objects.values_list("pk", flat=True))
    # The row that met the answer says it was absurd; the rows held back by
    # the bot-wide block say what they wait for.
    wait_for(lambda: MessageLog.objects.filter(last_error__contains="absurdo").exists(), timeout=20,
             message="a row to say the wait was absurd")
    waiting = MessageLog.objects.filter(last_error__contains="absurdo").first()
    print(f"\nwhile blocked: {waiting.status} attempts={waiting.attempts}: {waiting.last_error}")
    assert "1000000000000 s" in waiting.last_error and "DELIVERY_RETRY_AFTER_MAX_S" in waiting.last_error
    assert waiting.attempts == 0
    wait_until_done(ids, timeout=60)
    assert "OverflowError" not in worker.log()
    assert not MessageLog.objects.exclude(last_error="").exists()  # SENT rows keep no stale error
    assert len({m["chat_id"] for m in sandbox.messages()}) == 20


def test_a_dripping_provider_does_not_hold_the_workers_and_nothing_is_lost(make_stack, sandbox):
    stack = make_stack(TELEGRAM_TOTAL_TIMEOUT_S=2)
    stack.worker(concurrency=4)
    stack.start_relay()
    sandbox.configure(answer_drip_s=1.0)  # one byte a second: each read is in time, the answer takes minutes
    operators(8)
    with transaction.atomic():
        MessageRouter().broadcast_to_role("OPERATOR", "Aviso", "Corte de agua")
    wait_expanded()
    ids = list(MessageLog.objects.values_list("pk", flat=True))
    # Every thread is freed at the deadline: all 8 rows get an attempt cut
    # short with 4 threads, which a per-read timeout would hold for minutes.
    wait_for(lambda: MessageLog.objects.filter(last_error__contains="respuesta completa").count() >= 8,
             timeout=30, message="every row to have an attempt cut at the deadline")
    sandbox.configure(answer_drip_s=0.0)
    wait_until_done(ids, timeout=60)
    per_chat = Counter(m["chat_id"] for m in sandbox.messages())
    flagged = set(MessageLog.objects.filter(possible_duplicate=True).values_list("recipient", flat=True))
    assert len(per_chat) == 8 and {str(c) for c, n in per_chat.items() if n > 1} <= flagged
