"""Delivery states move only forward, whatever order receipts arrive in."""

import pytest

from notifications import delivery_states
from notifications.models import MessageLog, MessageStatus
from tests.factories import make_user

pytestmark = pytest.mark.django_db
S = MessageStatus


def make_log(status, provider_id="SM1"):
    return MessageLog.objects.create(
        user=make_user(), channel_type="SMS", recipient="+56987654321", message_type="announcement",
        body="x", status=status, provider_message_id=provider_id,
    )


@pytest.mark.parametrize(
    "current, new, moves",
    [
        (S.SENT, S.DELIVERED, True),
        (S.SENT, S.READ, True),
        (S.DELIVERED, S.READ, True),
        (S.READ, S.DELIVERED, False),
        (S.DELIVERED, S.SENT, False),
        (S.SENDING, S.SENT, True),
        (S.SENT, S.UNDELIVERED, True),
        (S.DELIVERED, S.UNDELIVERED, False),
        (S.UNDELIVERED, S.DELIVERED, False),
        (S.FAILED, S.READ, False),
        (S.SKIPPED, S.SENT, False),
    ],
)
def test_a_receipt_moves_a_row_only_forward(current, new, moves):
    log = make_log(current)
    assert delivery_states.advance(MessageLog.objects.filter(pk=log.pk), new) == int(moves)
    log.refresh_from_db()
    assert log.status == (new if moves else current)


def test_receipts_out_of_order_end_in_the_furthest_state_with_each_time_kept():
    log = make_log(S.SENT)
    rows = MessageLog.objects.filter(pk=log.pk)
    delivery_states.advance(rows, S.READ)
    delivery_states.advance(rows, S.DELIVERED)  # late
    delivery_states.advance(rows, S.SENT)  # later still
    log.refresh_from_db()
    assert log.status == S.READ
    assert log.read_at is not None
    assert log.delivered_at is not None  # read implies delivered


def test_an_undelivered_receipt_records_its_reason_and_failure_time():
    log = make_log(S.SENT)
    delivery_states.advance(MessageLog.objects.filter(pk=log.pk), S.UNDELIVERED, error="30003 Unreachable handset")
    log.refresh_from_db()
    assert (log.status, log.last_error) == (S.UNDELIVERED, "30003 Unreachable handset")
    assert log.failed_at is not None


def test_a_receipt_for_an_unknown_provider_id_reports_no_match():
    make_log(S.SENT, provider_id="SM-known")
    assert delivery_states.advance_by_provider_id("SMS", "SM-other", S.DELIVERED) == (False, 0)
    assert delivery_states.advance_by_provider_id("SMS", "SM-known", S.DELIVERED) == (True, 1)


def test_a_state_no_receipt_may_set_is_refused():
    with pytest.raises(ValueError):
        delivery_states.advance(MessageLog.objects.none(), S.QUEUED)
