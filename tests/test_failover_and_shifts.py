"""Channel failover for high and critical messages, and off-shift holds
with their digest."""

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from cmms import shifts
from cmms.models import ShiftPattern, ShiftWindow
from notifications import failover
from notifications.channels import registry
from notifications.message_router import MessageRouter
from notifications.models import InAppNotification, MessageLog, UserChannelPreference
from tests.factories import make_user

SANTIAGO = ZoneInfo("America/Santiago")


@pytest.fixture
def fake_sms():
    """A registered SMS channel for routing and failover (the real adapter is
    another issue's); nothing here sends."""
    registry._load()
    previous = registry._specs.get("SMS")
    registry.register(registry.ChannelSpec(channel_type="SMS", build=lambda: object()))
    yield
    if previous is None:
        registry._specs.pop("SMS", None)
    else:
        registry._specs["SMS"] = previous


def backup(user, channel, rank, address="", only=True):
    return UserChannelPreference.objects.create(user=user, channel_type=channel, channel_user_id=address,
                                                failover_rank=rank, failover_only=only)


def send(user, priority="critical"):
    return MessageRouter().send_to_user(user, "Falla inminente", "Camión 7: presión de aceite", priority=priority,
                                        message_type="critical_alert", related_object_type="work_order",
                                        related_object_id="7")


# -- failover ---------------------------------------------------------------------
def test_a_failover_only_channel_is_not_used_by_normal_routing(db, no_broker):
    user = make_user(telegram=3001)
    backup(user, "IN_APP", 1)
    assert set(send(user)) == {"TELEGRAM"}


def test_a_critical_message_that_failed_on_telegram_goes_out_on_the_next_channel_linked_to_it(db, no_broker):
    user = make_user(telegram=3002)
    backup(user, "IN_APP", 1)
    log = MessageLog.objects.get(pk=send(user).message_ids["TELEGRAM"])
    MessageLog.objects.filter(pk=log.pk).update(status="FAILED", last_error="Forbidden: bot was blocked by the user")
    assert failover.run()["resent"] == 1
    [copy] = log.failovers.all()
    # In-app is a queued delivery (the push); its inbox row exists at once.
    assert (copy.channel_type, copy.status, copy.body) == ("IN_APP", "QUEUED", log.body)
    assert InAppNotification.objects.filter(message_log=copy, user=user).count() == 1
    assert "TELEGRAM" in copy.last_error
    assert failover.run()["resent"] == 0  # decided once
    assert MessageLog.objects.filter(failover_of=log).count() == 1


def test_a_message_skipped_because_the_chat_is_unreachable_fails_over_too(db, no_broker):
    user = make_user(telegram=3003)
    backup(user, "IN_APP", 1)
    UserChannelPreference.objects.filter(user=user, channel_type="TELEGRAM").update(
        is_reachable=False, unreachable_reason="bot was blocked by the user")
    log = MessageLog.objects.get(pk=send(user).message_ids["TELEGRAM"])
    assert log.status == "SKIPPED"
    failover.run()
    assert log.failovers.get().channel_type == "IN_APP"


def test_a_normal_message_that_failed_does_not_fail_over(db, no_broker):
    user = make_user(telegram=3004)
    backup(user, "IN_APP", 1)
    log = MessageLog.objects.get(pk=send(user, priority="normal").message_ids["TELEGRAM"])
    MessageLog.objects.filter(pk=log.pk).update(status="FAILED")
    assert failover.run()["resent"] == 0


def test_no_delivery_receipt_in_time_fails_over_in_rank_order_and_the_chain_continues(
        db, no_broker, fake_sms, settings, django_capture_on_commit_callbacks):
    settings.ESCALATION = {**settings.ESCALATION, "FAILOVER_CONFIRM_S": {"SMS": 60}}
    user = make_user()
    UserChannelPreference.objects.create(user=user, channel_type="SMS", channel_user_id="+56911111111")
    backup(user, "IN_APP", 2)
    backup(user, "TELEGRAM", 1, address="3005")
    log = MessageLog.objects.get(pk=send(user).message_ids["SMS"])
    MessageLog.objects.filter(pk=log.pk).update(status="SENT", sent_at=timezone.now() - timedelta(seconds=30))
    assert failover.run()["resent"] == 0  # still within its confirmation time
    MessageLog.objects.filter(pk=log.pk).update(sent_at=timezone.now() - timedelta(seconds=61))
    with django_capture_on_commit_callbacks(execute=True):
        failover.run()
    telegram = log.failovers.get()
    assert telegram.channel_type == "TELEGRAM" and telegram.status == "QUEUED"
    assert no_broker[-1] == (telegram.pk, "TELEGRAM")
    MessageLog.objects.filter(pk=telegram.pk).update(status="FAILED")
    failover.run()
    assert telegram.failovers.get().channel_type == "IN_APP"
    MessageLog.objects.filter(failover_of=telegram).update(status="FAILED")
    assert failover.run()["resent"] == 0  # every channel tried


def test_a_delivered_message_is_marked_checked_and_never_fails_over(db, no_broker, fake_sms, settings):
    settings.ESCALATION = {**settings.ESCALATION, "FAILOVER_CONFIRM_S": {"SMS": 60}}
    user = make_user()
    UserChannelPreference.objects.create(user=user, channel_type="SMS", channel_user_id="+56911111112")
    backup(user, "IN_APP", 1)
    log = MessageLog.objects.get(pk=send(user).message_ids["SMS"])
    MessageLog.objects.filter(pk=log.pk).update(status="DELIVERED", sent_at=timezone.now() - timedelta(hours=1))
    assert failover.run()["confirmed"] == 1
    log.refresh_from_db()
    assert log.failover_checked_at is not None and not log.failovers.exists()


# -- shifts -------------------------------------------------------------------------
def weekday_pattern(user=None, site="", override="critical"):
    pattern = ShiftPattern.objects.create(name="Diurno", user=user, site=site, time_zone="America/Santiago",
                                          override_priority=override)
    for day in range(5):
        ShiftWindow.objects.create(pattern=pattern, weekday=day, starts=time(8), ends=time(20))
    return pattern


def local(*args):
    return datetime(*args, tzinfo=SANTIAGO)


def test_next_shift_start_follows_the_weekly_pattern_in_its_time_zone(db):
    pattern = weekday_pattern(site="Mina Norte")
    sunday_3am = local(2026, 11, 29, 3, 0)
    assert shifts.next_shift_start(pattern, sunday_3am) == local(2026, 11, 30, 8, 0)
    assert shifts.next_shift_start(pattern, local(2026, 11, 30, 10, 0)) is None
    assert shifts.next_shift_start(pattern, local(2026, 11, 30, 20, 0)) == local(2026, 12, 1, 8, 0)


def test_a_night_shift_runs_past_midnight(db):
    pattern = ShiftPattern.objects.create(name="Noche", site="Mina Sur")
    ShiftWindow.objects.create(pattern=pattern, weekday=0, starts=time(22), ends=time(6))
    assert shifts.next_shift_start(pattern, local(2026, 12, 1, 5, 0)) is None  # Tuesday 05:00, Monday's night
    assert shifts.next_shift_start(pattern, local(2026, 12, 1, 7, 0)) == local(2026, 12, 7, 22, 0)


def test_off_shift_a_normal_reminder_is_held_until_the_shift_and_a_critical_alert_goes_at_once(
        db, no_broker, monkeypatch, django_capture_on_commit_callbacks):
    user = make_user(telegram=3101, site="Mina Norte", in_app=True)
    weekday_pattern(site="Mina Norte")
    sunday_3am = local(2026, 11, 29, 3, 0)
    monkeypatch.setattr("notifications.message_router.timezone.now", lambda: sunday_3am)
    with django_capture_on_commit_callbacks(execute=True):
        reminder = MessageRouter().send_to_user(user, "Mantención", "Cambio de filtro", priority="normal")
    held = MessageLog.objects.get(pk=reminder.message_ids["TELEGRAM"])
    assert (held.status, held.next_attempt_at) == ("HELD", local(2026, 11, 30, 8, 0))
    # The inbox wakes nobody: it is delivered (pushed) at once, never held.
    assert MessageLog.objects.get(pk=reminder.message_ids["IN_APP"]).status == "QUEUED"
    assert no_broker == [(reminder.message_ids["IN_APP"], "IN_APP")]
    with django_capture_on_commit_callbacks(execute=True):
        alert = MessageRouter().send_to_user(user, "Falla", "Presión de aceite", priority="critical")
    assert MessageLog.objects.get(pk=alert.message_ids["TELEGRAM"]).status == "QUEUED"
    assert (alert.message_ids["TELEGRAM"], "TELEGRAM") in no_broker


def test_a_users_own_pattern_wins_over_the_sites(db):
    user = make_user(site="Mina Norte")
    weekday_pattern(site="Mina Norte")
    own = ShiftPattern.objects.create(name="Fin de semana", user=user)
    ShiftWindow.objects.create(pattern=own, weekday=6, starts=time(0), ends=time(23, 59))
    assert shifts.on_shift(user, local(2026, 11, 29, 3, 0))
    assert not shifts.on_shift(user, local(2026, 11, 30, 10, 0))


def test_what_was_held_goes_out_as_one_digest_per_user_and_channel_when_the_shift_starts(
        db, no_broker, django_capture_on_commit_callbacks):
    user = make_user(telegram=3102, site="Mina Norte")
    other = make_user(telegram=3103, site="Mina Norte")
    weekday_pattern(site="Mina Norte")
    off = timezone.now()
    start = off + timedelta(hours=1)
    for n, who in enumerate((user, user, user, other)):
        MessageLog.objects.create(user=who, channel_type="TELEGRAM", recipient=str(3102 + (who == other)),
                                  message_type="maintenance_reminder", title=f"Aviso {n}", body="...",
                                  status="HELD", next_attempt_at=start)
    assert shifts.release_held_messages(now=off)["released"] == 0
    with django_capture_on_commit_callbacks(execute=True):
        assert shifts.release_held_messages(now=start) == {"released": 4, "digests": 1}
    digest = MessageLog.objects.get(message_type="off_shift_digest")
    assert digest.user == user and digest.title == "3 avisos mientras estabas fuera de turno"
    assert digest.body.splitlines() == ["• Aviso 0", "• Aviso 1", "• Aviso 2"]
    assert set(digest.digested.values_list("status", flat=True)) == {"SKIPPED"}
    alone = MessageLog.objects.get(user=other)
    assert alone.status == "QUEUED"  # one message goes out as it was
    assert sorted(no_broker) == sorted([(digest.pk, "TELEGRAM"), (alone.pk, "TELEGRAM")])
    assert shifts.release_held_messages(now=start) == {"released": 0, "digests": 0}


def test_the_on_shift_page_lists_who_is_on_shift_now(admin_client, db):
    on = make_user(site="Mina Norte", first_name="Ana", last_name="Día")
    always = make_user(site="Mina Sur", first_name="Luis", last_name="Siempre")
    pattern = ShiftPattern.objects.create(name="Nunca ahora", user=on)
    now = timezone.localtime(timezone.now(), SANTIAGO)
    ShiftWindow.objects.create(pattern=pattern, weekday=(now.weekday() + 3) % 7, starts=time(8), ends=time(9))
    page = admin_client.get("/admin/cmms/shiftpattern/on-shift/").content.decode()
    assert "Ana Día" in page and "Luis Siempre" in page and str(always) in page
    assert page.count('class="off-shift"') == 1
