"""The shared rate limiter end to end: two worker processes with 32 threads
each, against the sandbox enforcing Telegram's flood limits (30/s per bot,
1/s per chat with a small burst, 20/min per group) at 200 ms latency.

The rates are measured on the sandbox's received_at timestamps. These are
the issue's acceptance criteria: a 600-chat broadcast at >= 95% of 30/s with
no 429; 20 messages to one chat at about 1/s with no 429; a 429 from outside
(force_429) obeyed for its scope by every process.
"""

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction

from notifications.message_router import MessageRouter
from notifications.models import ChannelType, MessageLog, UserChannelPreference
from tests.fault.stack import private_stack, received_rate, wait_until_done
from tests.support.broadcasts import wait_expanded
from tests.support.processes import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

LATENCY_MS = 200


@pytest.fixture
def stack(request, redis_server, sandbox):
    """Two workers; ``indirect`` parametrization passes extra worker env."""
    sandbox.configure(latency_ms=LATENCY_MS)
    with private_stack(redis_server, sandbox, TELEGRAM_TIMEOUT_S=5, **getattr(request, "param", {})) as stack:
        for _ in range(2):
            stack.worker(concurrency=32, wait=False)
        for w in stack.workers:
            wait_ready(w)
        yield stack


def wait_ready(worker):
    from tests.support.processes import wait_for

    wait_for(worker._ready, timeout=60, interval=0.1, message=f"worker {worker.name} ready")


def operators(n, first_chat=10_000):
    User = get_user_model()
    users = User.objects.bulk_create(
        [User(username=f"op{first_chat + i}", role="OPERATOR") for i in range(n)], batch_size=500
    )
    UserChannelPreference.objects.bulk_create(
        [UserChannelPreference(user=u, channel_type=ChannelType.TELEGRAM, channel_user_id=str(first_chat + i))
         for i, u in enumerate(users)],
        batch_size=500,
    )
    return users


def flood_429s(sandbox):
    stats = sandbox.stats()
    return stats["rate_limited"] - stats["force_429_rejections"]


def test_a_broadcast_to_600_chats_is_paced_at_the_bot_limit_without_429(stack, sandbox):
    operators(600)
    with transaction.atomic():
        MessageRouter().broadcast_to_role("OPERATOR", "Mantenimiento programado", "Mañana de 8:00 a 12:00")
    wait_expanded()
    ids = list(MessageLog.objects.values_list("pk", flat=True))
    wait_until_done(ids, timeout=90)
    received = sandbox.messages()
    rate = received_rate(received)
    print(f"\n600-chat broadcast: {rate:.2f} msg/s = {rate / 30:.1%} of 30/s; "
          f"429s: {flood_429s(sandbox)}; requests: {sandbox.stats()['requests']}")
    assert len(received) == 600 and len({m["chat_id"] for m in received}) == 600
    assert flood_429s(sandbox) == 0
    # Paced at the limit, not above it and not far below. The 95% acceptance
    # figure is measured by `make bench` (ratelimit_efficiency) on a quiet
    # machine; here the suite may share two cores with other work, so the
    # floor only catches a limiter that is grossly conservative.
    assert 0.8 * 30 <= rate <= 1.05 * 30


def test_twenty_messages_to_one_chat_go_at_about_one_per_second_without_429(stack, sandbox):
    (user,) = operators(1, first_chat=4242)
    with transaction.atomic():
        for i in range(20):
            MessageRouter().send_to_user(user, "OT", f"Mensaje {i}", message_type="work_order_assigned")
    ids = list(MessageLog.objects.values_list("pk", flat=True))
    wait_until_done(ids, timeout=60)
    received = sandbox.messages(chat_id=4242)
    rate = received_rate(received)
    rows = MessageLog.objects.filter(pk__in=ids)
    print(f"\n20 messages to one chat: {rate:.2f} msg/s; 429s: {flood_429s(sandbox)}; "
          f"attempts per message: {sorted({r.attempts for r in rows})}")
    assert len(received) == 20
    assert flood_429s(sandbox) == 0
    assert 0.7 <= rate <= 1.15  # 1/s, plus the first two allowed back to back
    assert all(r.attempts == 1 for r in rows)  # waiting for the pace is not an attempt


def test_a_429_for_the_whole_bot_stops_every_process_until_retry_after(stack, sandbox):
    operators(300)
    with transaction.atomic():
        MessageRouter().broadcast_to_role("OPERATOR", "Aviso", "Corte de energía en planta 2")
    wait_expanded()
    ids = list(MessageLog.objects.values_list("pk", flat=True))
    from tests.support.processes import wait_for

    wait_for(lambda: len(sandbox.messages()) >= 60, timeout=30, message="the broadcast to be under way")
    # The bot is shared with another system, which spent the quota.
    sandbox.configure(force_429={"scope": "bot", "retry_after": 4})
    wait_until_done(ids, timeout=90)
    stats = sandbox.stats()
    during = sorted(stats["requests_while_force_429"])
    print(f"\nforce_429 bot-wide for 4 s: {len(during)} request(s) arrived during the block, "
          f"spread over {during[-1] - during[0]:.3f} s after the first 429" if during else "\nno request in the block")
    assert during, "the block did not hit the broadcast"
    # Requests already on the wire when the first 429 came back still arrive
    # (200 ms latency); nothing sent after the workers learned of it.
    assert during[-1] - during[0] <= LATENCY_MS / 1000 + 0.3
    assert flood_429s(sandbox) == 0
    assert len(sandbox.messages()) == 300


@pytest.mark.parametrize("stack", [{"RATE_LIMIT_RETRY_AFTER_SCOPE": "auto"}], indirect=True)
def test_with_the_auto_scope_a_429_for_one_chat_holds_that_chat_only(stack, sandbox):
    users = operators(40)
    busy = users[0]
    sandbox.configure(force_429={"scope": 10_000, "retry_after": 5})
    with transaction.atomic():
        for i in range(3):
            MessageRouter().send_to_user(busy, "OT", f"Orden {i}", message_type="work_order_assigned")
        MessageRouter().broadcast_to_role("OPERATOR", "Aviso", "Reunión de seguridad a las 9:00")
    wait_expanded()
    ids = list(MessageLog.objects.values_list("pk", flat=True))
    wait_until_done(ids, timeout=60)
    stats = sandbox.stats()
    others = [m for m in sandbox.messages() if m["chat_id"] != 10_000]
    busy_received = sandbox.messages(chat_id=10_000)
    print(f"\nforce_429 on one chat for 5 s: {stats['force_429_rejections']} rejection(s); "
          f"other chats done {max(m['received_at'] for m in others) - min(m['received_at'] for m in others):.1f} s "
          f"after their first")
    # The first try (two, if both of the chat's burst went at once), then it waited out retry_after.
    rejections = stats["force_429_rejections"]
    assert rejections >= 1 and rejections <= 2
    assert len(busy_received) == 4  # 3 orders and the broadcast
    assert max(m["received_at"] for m in others) < min(m["received_at"] for m in busy_received)
    assert flood_429s(sandbox) == 0


def test_by_default_a_429_for_one_chat_pauses_the_bot_and_nothing_is_sent_inside_it(stack, sandbox):
    """Telegram does not say which limit a 429 is for, so by default it pauses
    every chat (never a request inside a bot-wide wait). What that costs when
    the 429 was one chat's: the other chats wait out its retry_after too."""
    users = operators(40)
    sandbox.configure(force_429={"scope": 10_000, "retry_after": 3})
    with transaction.atomic():
        MessageRouter().send_to_user(users[0], "OT", "Orden 1", message_type="work_order_assigned")
    wait_for(lambda: sandbox.stats()["force_429_rejections"] >= 1, timeout=20, message="the chat's 429")
    with transaction.atomic():
        MessageRouter().broadcast_to_role("OPERATOR", "Aviso", "Reunión de seguridad a las 9:00")
    wait_expanded()
    wait_until_done(MessageLog.objects.values_list("pk", flat=True), timeout=60)
    stats = sandbox.stats()
    first_429 = min(stats["requests_while_force_429"])
    others = sorted(m["received_at"] for m in sandbox.messages() if m["chat_id"] != 10_000)
    print(f"\ndefault scope, 3 s 429 on one chat: the other chats' first message "
          f"{others[0] - first_429:.1f} s after it (the cost), {stats['force_429_rejections']} rejection(s)")
    assert stats["force_429_rejections"] == 1  # no request to any chat inside the wait
    assert others[0] - first_429 >= 2.5  # every chat waited (retry_after 3 s, whole seconds)
    assert len({m["chat_id"] for m in sandbox.messages()}) == 40
