"""Hourly roll-ups: counted per hour of creation, recounted while recent,
backfilled across gaps, and never double-counted."""

from datetime import timedelta

import pytest
from django.db.models import Sum
from django.utils import timezone

from notifications import stats
from notifications.models import MessageLog, MessageStatsHour

pytestmark = pytest.mark.django_db


def make_log(status, ago):
    return MessageLog.objects.create(channel_type="TELEGRAM", recipient="1", message_type="announcement", body="x",
                                     status=status, created_at=timezone.now() - ago)


def total(**filters):
    return MessageStatsHour.objects.filter(**filters).aggregate(n=Sum("count"))["n"] or 0


def test_rows_are_counted_per_hour_channel_and_status():
    make_log("SENT", timedelta(minutes=1))
    make_log("SENT", timedelta(minutes=2))
    make_log("FAILED", timedelta(minutes=3))
    stats.rollup()
    assert total(status="SENT") == 2
    assert total(status="FAILED") == 1


def test_a_recent_status_change_is_recounted_not_added_twice():
    row = make_log("SENT", timedelta(minutes=5))
    stats.rollup()
    MessageLog.objects.filter(pk=row.pk).update(status="DELIVERED")
    stats.rollup()
    assert (total(status="SENT"), total(status="DELIVERED")) == (0, 1)


def test_backfill_counts_old_history_across_gaps_once():
    make_log("SENT", timedelta(days=2))
    make_log("SENT", timedelta(days=40))  # a 38-day gap, wider than one backfill window
    make_log("READ", timedelta(days=90))
    stats.backfill()
    stats.backfill()
    assert total() == 3


def test_each_beat_run_backfills_one_window_further_back():
    make_log("SENT", timedelta(days=1))
    make_log("SENT", timedelta(days=30))
    stats.rollup()
    assert total() == 1  # the recent hours, plus the window before: day 1
    stats.rollup()
    assert total() == 2
