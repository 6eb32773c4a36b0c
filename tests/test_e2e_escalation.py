"""Escalation on real parts: celery beat (database scheduler) publishes the
scanner, a real worker runs the steps and delivers to the Telegram sandbox.
Waits are seconds; the assertions on time are generous (a loaded machine),
the ones on order and counts are exact."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from cmms import actions
from cmms.models import EscalationStep, Role
from cmms.predictions import record_prediction
from tests.conftest import point_broker_at, wait_for_status, worker_env
from tests.factories import make_user
from tests.support.cmms import make_asset, make_operator
from tests.support.processes import Beat, RedisServer, Worker, wait_for
from tests.test_escalation import make_policy

pytestmark = pytest.mark.e2e
WAIT_S = 3
# How late a step may run on a loaded, shared machine: beat ticks every second.
LATE_S = 20


def install_scanner_schedule(every=1):
    interval, _ = IntervalSchedule.objects.get_or_create(every=every, period="seconds")
    PeriodicTask.objects.update_or_create(name="escalation-steps", defaults={
        "task": "cmms.run_escalation_steps", "interval": interval, "queue": "default", "enabled": True})


def texts(sandbox, chat_id):
    return [m["text"] for m in sandbox.messages(chat_id=chat_id)]


def steps_done(order, count):
    return EscalationStep.objects.filter(work_order=order, status="DONE").count() >= count


@pytest.fixture
def beat(e2e, redis_server):
    install_scanner_schedule()
    process = Beat(worker_env(redis_server.url, e2e.url)).start()
    yield process
    process.stop()


def test_an_unaccepted_critical_prediction_escalates_in_order_and_on_time_until_it_is_accepted(e2e, beat):
    asset = make_asset(code="CAM-E15", name="Camión 15")
    first = make_operator(telegram=150001, first_name="Ana", last_name="Rojas")
    boss = make_user(role=Role.SUPERVISOR, site=asset.site, telegram=150002, first_name="Eva", last_name="Soto")
    second = make_operator(telegram=150003, first_name="Juan", last_name="Pérez")
    policy = make_policy(steps=(("NOTIFY_ASSIGNEE", "TELEGRAM"), ("NOTIFY_SUPERVISORS", ""), ("REASSIGN", ""),
                                ("NOTIFY_SUPERVISORS", "")), wait_s=WAIT_S)
    # The fourth step waits long enough that the acceptance below always comes first.
    policy.steps.filter(position=3).update(wait_s=60)

    order = record_prediction(asset=asset, failure_mode="Presión de aceite", probability=0.95,
                              risk_level="CRITICAL").work_order
    assert order.assignee == first
    wait_for(lambda: steps_done(order, 3), timeout=WAIT_S * 3 + LATE_S * 2, interval=0.2,
             message="three escalation steps")

    steps = list(EscalationStep.objects.filter(work_order=order).order_by("index"))
    assert [s.action for s in steps[:3]] == ["NOTIFY_ASSIGNEE", "NOTIFY_SUPERVISORS", "REASSIGN"]
    for step in steps[:3]:
        assert step.due_at <= step.ran_at <= step.due_at + timedelta(seconds=LATE_S), step
    assert steps[0].ran_at < steps[1].ran_at < steps[2].ran_at
    assert str(boss) in steps[1].outcome and "TELEGRAM" in steps[1].outcome
    wait_for(lambda: len(texts(e2e, 150003)) == 1, timeout=20, message="the new assignee's order")
    first_texts = texts(e2e, 150001)
    assert first_texts[1].startswith(f"⏰ Aún nadie acepta la {order.number}")
    [to_boss] = texts(e2e, 150002)
    assert order.number in to_boss
    order.refresh_from_db()
    assert order.assignee == second

    actions.decide(order.pk, second, actions.ACCEPT, via="TELEGRAM")
    accepted_at = timezone.now()
    # Those notified before hear who took it; the repeated step never runs.
    wait_for(lambda: any("tomada por Juan Pérez" in t for t in texts(e2e, 150002)), timeout=20,
             message="the follow-up to the supervisor")
    [fourth] = EscalationStep.objects.filter(work_order=order, index=3)
    assert fourth.status == "CANCELLED"
    wait_for(lambda: timezone.now() > accepted_at + timedelta(seconds=3), timeout=10, message="a few beat ticks")
    assert not EscalationStep.objects.filter(work_order=order, status="DONE", ran_at__gt=accepted_at).exists()
    assert len(texts(e2e, 150003)) == 1  # nothing after the acceptance to the one who accepted


@pytest.mark.fault
def test_killing_beat_and_the_worker_between_steps_loses_and_repeats_no_step(e2e, redis_server):
    redis = RedisServer().start()
    env = worker_env(redis.url, e2e.url)
    worker = Worker(env, concurrency=2, extra_args=["-Q", "default,telegram,inapp"]).start()
    install_scanner_schedule()
    beat = Beat(env).start()
    try:
        point_broker_at(redis.url)
        asset = make_asset()
        operator = make_operator(telegram=151001)
        make_user(role=Role.SUPERVISOR, site=asset.site, telegram=151002)
        policy = make_policy(steps=(("NOTIFY_ASSIGNEE", "TELEGRAM"), ("NOTIFY_SUPERVISORS", "")), wait_s=WAIT_S)
        # Time enough to see the first step's messages sent before the kill.
        policy.steps.filter(position=1).update(wait_s=10)
        from tests.support.cmms import make_work_order

        order = make_work_order(asset=asset, priority="critical")
        order.assign(operator)
        wait_for(lambda: steps_done(order, 1), timeout=WAIT_S + LATE_S, interval=0.2, message="the first step")
        # Delivery has its own recovery (the outbox relay); this test is about the steps.
        wait_for_status(EscalationStep.objects.get(work_order=order, index=0).message_ids, statuses=("SENT",))

        beat.kill()
        worker.kill()
        second = EscalationStep.objects.get(work_order=order, index=1)
        assert second.status == "PENDING"
        wait_for(lambda: timezone.now() > second.due_at + timedelta(seconds=2), timeout=20,
                 message="the second step to come due while nothing runs")
        second.refresh_from_db()
        assert second.status == "PENDING"

        worker = Worker(env, concurrency=2, extra_args=["-Q", "default,telegram,inapp"]).start()
        beat = Beat(env).start()
        wait_for(lambda: steps_done(order, 2), timeout=LATE_S * 2, interval=0.2, message="the second step")
        wait_for(lambda: len(texts(e2e, 151002)) >= 1, timeout=20, message="the supervisor's message")
        assert len(texts(e2e, 151002)) == 1
        assert len(texts(e2e, 151001)) == 2  # the assignment and one reminder
        assert EscalationStep.objects.filter(work_order=order).count() == 2
    finally:
        beat.stop()
        worker.stop()
        redis.close()
        point_broker_at(redis_server.url)


def test_a_blocked_telegram_chat_fails_over_to_the_next_channel_through_beat(e2e, redis_server):
    from notifications.models import InAppNotification, MessageLog, UserChannelPreference

    install_scanner_schedule()
    interval, _ = IntervalSchedule.objects.get_or_create(every=1, period="seconds")
    PeriodicTask.objects.update_or_create(name="channel-failover", defaults={
        "task": "cmms.run_channel_failover", "interval": interval, "queue": "default", "enabled": True})
    process = Beat(worker_env(redis_server.url, e2e.url)).start()
    try:
        user = make_operator(telegram=152001, in_app=False)
        UserChannelPreference.objects.create(user=user, channel_type="IN_APP", failover_rank=1, failover_only=True)
        e2e.set_chat(152001, state="blocked")
        from notifications.message_router import MessageRouter

        result = MessageRouter().send_to_user(user, "Falla inminente", "Camión 9: temperatura", priority="critical",
                                              message_type="critical_alert")
        assert set(result) == {"TELEGRAM"}
        telegram = MessageLog.objects.get(pk=result.message_ids["TELEGRAM"])
        copy = wait_for(lambda: telegram.failovers.first(), timeout=LATE_S, interval=0.2, message="the failover")
        # The copy is QUEUED when written, then delivered by the inapp queue's worker.
        wait_for(lambda: MessageLog.objects.get(pk=copy.pk).status != "QUEUED", timeout=LATE_S, interval=0.1,
                 message="the failover copy delivered")
        copy.refresh_from_db()
        telegram.refresh_from_db()
        assert telegram.status == "FAILED" and "blocked" in telegram.last_error
        assert (copy.channel_type, copy.status) == ("IN_APP", "SENT")
        assert InAppNotification.objects.get(user=user).message_log == copy
    finally:
        process.stop()


def test_off_shift_a_normal_reminder_waits_for_the_shift_and_a_critical_alert_goes_through(e2e, redis_server):
    from datetime import time

    from cmms.models import ShiftPattern, ShiftWindow
    from notifications.message_router import MessageRouter
    from notifications.models import MessageLog

    user = make_operator(telegram=153001, in_app=False)
    pattern = ShiftPattern.objects.create(name="Turno", user=user, time_zone="UTC")
    starts = (timezone.now() + timedelta(seconds=8)).replace(microsecond=0)
    # On shift from a few seconds from now until an hour later: off shift now.
    ShiftWindow.objects.create(pattern=pattern, weekday=starts.weekday(), starts=starts.time(),
                               ends=time((starts.hour + 1) % 24, starts.minute))
    interval, _ = IntervalSchedule.objects.get_or_create(every=1, period="seconds")
    PeriodicTask.objects.update_or_create(name="release-held-messages", defaults={
        "task": "cmms.release_held_messages", "interval": interval, "queue": "default", "enabled": True})
    router = MessageRouter()
    reminders = [router.send_to_user(user, f"Mantención {n}", "Cambio de filtro", priority="normal",
                                     message_type="maintenance_reminder").message_ids["TELEGRAM"] for n in (1, 2)]
    alert = router.send_to_user(user, "Falla", "Presión de aceite", priority="critical",
                                message_type="critical_alert").message_ids["TELEGRAM"]
    wait_for_status([alert])
    assert set(MessageLog.objects.filter(pk__in=reminders).values_list("status", flat=True)) == {"HELD"}
    assert len(e2e.messages(chat_id=153001)) == 1  # only the critical alert, at once
    process = Beat(worker_env(redis_server.url, e2e.url)).start()
    try:
        digest = wait_for(lambda: MessageLog.objects.filter(message_type="off_shift_digest").first(),
                          timeout=LATE_S, interval=0.2, message="the digest at the shift start")
        assert digest.created_at >= starts
        wait_for_status([digest.pk])
        texts_now = texts(e2e, 153001)
        assert len(texts_now) == 2 and "2 avisos mientras estabas fuera de turno" in texts_now[1]
    finally:
        process.stop()
