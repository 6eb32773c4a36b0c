"""A retry that waits longer than the broker's visibility timeout.

Redis hands an unacknowledged task to another consumer once the visibility
timeout has passed, and an ETA (countdown) task waits unacknowledged in the
worker: a countdown longer than the visibility timeout would run twice. So
countdowns are kept under half of it, and longer waits live in the database
(next_attempt_at) until the relay publishes the row. The worker here runs
with a 2 s visibility timeout and the provider asks for 5 s.
"""

import pytest
from django.db import transaction

from notifications.message_router import MessageRouter
from notifications.models import MessageLog
from tests.support.broadcasts import wait_expanded

from .conftest import operators
from .stack import wait_until_done

pytestmark = [
    pytest.mark.fault,
    pytest.mark.django_db(transaction=True),
    pytest.mark.redis_broker("Redis' visibility timeout; RabbitMQ redelivers only when the channel closes "
                             "(consumer_timeout, checked once a minute): the countdown bound is "
                             "tests/test_broker.py::test_countdowns_stay_under_half_the_rabbitmq_consumer_timeout"),
]


def test_a_retry_after_longer_than_the_visibility_timeout_is_sent_once(make_stack, sandbox):
    stack = make_stack(CELERY_VISIBILITY_TIMEOUT=2)
    stack.worker(concurrency=8)
    stack.worker(concurrency=8)  # a second consumer that would pick up a redelivered task
    stack.start_relay(every_s=0.5)
    _throttled, *others = operators(6)
    sandbox.configure(force_429={"scope": 10_000, "retry_after": 5})
    with transaction.atomic():
        MessageRouter().broadcast_to_role("OPERATOR", "Aviso", "Simulacro de evacuación a las 11:00")
    wait_expanded()
    rows = MessageLog.objects.all()
    wait_until_done(rows.values_list("pk", flat=True), timeout=45)

    log = rows.get(recipient="10000")
    stats = sandbox.stats()
    assert stats["force_429_rejections"] == 1
    assert len(sandbox.messages(chat_id=10_000)) == 1  # delivered once, though two workers held it
    assert (log.status, log.attempts, log.possible_duplicate) == ("SENT", 1, False)  # a 429 costs no attempt
    assert (log.sent_at - log.created_at).total_seconds() >= 5  # retry_after was obeyed
    assert len(sandbox.messages()) == len(others) + 1
