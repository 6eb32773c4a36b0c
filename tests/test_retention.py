"""Retention purges old rows in a final state, in batches, and never a
message still waiting or in flight."""

from datetime import timedelta

import pytest
from django.utils import timezone

from notifications import retention
from notifications.models import InAppNotification, MessageLog
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def make_log(status, days_ago):
    return MessageLog.objects.create(channel_type="TELEGRAM", recipient="1", message_type="announcement", body="x",
                                     status=status, created_at=timezone.now() - timedelta(days=days_ago))


def test_old_final_rows_go_in_batches_and_waiting_or_recent_rows_stay():
    old = [make_log(s, 200) for s in ("SENT", "DELIVERED", "READ", "FAILED", "UNDELIVERED", "SKIPPED", "SENT")]
    waiting = [make_log(s, 200) for s in ("QUEUED", "RETRYING", "SENDING")]
    recent = make_log("SENT", 10)
    assert retention.purge(days=180, batch=3) == len(old)
    left = set(MessageLog.objects.values_list("pk", flat=True))
    assert left == {r.pk for r in waiting} | {recent.pk}


def test_zero_days_keeps_everything():
    make_log("SENT", 1000)
    assert retention.purge(days=0) == 0
    assert MessageLog.objects.count() == 1


def test_the_inbox_keeps_its_notification_when_the_log_row_goes():
    user = make_user()
    row = make_log("SENT", 365)
    InAppNotification.objects.create(user=user, message_log=row, message_type="announcement", body="x")
    retention.purge(days=180)
    assert InAppNotification.objects.get().message_log is None
