"""Reminders from celery beat: preventive maintenance and overdue work orders,
each sent once a day per order or plan, however often beat fires."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from cmms import reminders, tasks
from notifications.models import MessageLog
from tests.factories import make_user
from tests.support.cmms import make_asset, make_operator, make_plan, make_work_order

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_broker")]



@pytest.fixture
def technician():
    return make_user(role="TECHNICIAN", site="Mina Norte", telegram=100011, first_name="Jorge")


@pytest.fixture
def supervisor():
    return make_user(role="SUPERVISOR", site="Mina Norte", telegram=100021)


def logs(message_type, **filters):
    return MessageLog.objects.filter(channel_type="TELEGRAM", message_type=message_type, **filters)


# -- preventive maintenance -------------------------------------------------------


def test_a_plan_due_within_the_window_reminds_its_technician_in_spanish(technician, settings):
    settings.CMMS = {**settings.CMMS, "REMINDER_DAYS_BEFORE": 3}
    asset = make_asset(code="CAM-AB01", name="Camión <A&B>_01")
    plan = make_plan(asset=asset, technician=technician, due_in_days=1)
    assert reminders.send_preventive_reminders() == 1
    log = logs("maintenance_reminder").get()
    assert log.user == technician
    assert log.title == "Mantenimiento preventivo próximo: Camión <A&B>_01"
    assert "Tarea: Cambio de aceite y filtros" in log.body and "(mañana)" in log.body
    assert "Se repite cada 14 días." in log.body
    today = timezone.localdate()
    assert log.idempotency_key == f"reminder:plan:{plan.pk}:{today.isoformat()}"
    assert (log.related_object_type, log.related_object_id) == ("maintenance_plan", str(plan.pk))


def test_the_same_plan_is_reminded_once_a_day_even_when_beat_fires_twice(technician, no_broker,
                                                                         django_capture_on_commit_callbacks):
    make_plan(technician=technician, due_in_days=0)
    with django_capture_on_commit_callbacks(execute=True):
        tasks.send_preventive_reminders.apply()
    with django_capture_on_commit_callbacks(execute=True):
        tasks.send_preventive_reminders.apply()  # beat fired again, or a second beat is running
    assert logs("maintenance_reminder").count() == 1
    assert len(no_broker) == 1
    tomorrow = timezone.localdate() + timedelta(days=1)
    reminders.send_preventive_reminders(today=tomorrow)  # the next day it reminds again (now overdue)
    assert logs("maintenance_reminder").count() == 2
    assert "1 día de atraso" in logs("maintenance_reminder").order_by("-id").first().body


def test_plans_outside_the_window_inactive_or_without_technician_are_skipped(technician, settings):
    settings.CMMS = {**settings.CMMS, "REMINDER_DAYS_BEFORE": 3}
    make_plan(technician=technician, due_in_days=4)
    make_plan(technician=technician, due_in_days=1, is_active=False)
    make_plan(technician=None, due_in_days=1)
    make_plan(technician=make_user(role="TECHNICIAN", is_active=False, telegram=5), due_in_days=1)
    assert reminders.send_preventive_reminders() == 0
    assert MessageLog.objects.count() == 0


def test_a_plan_can_ask_for_an_earlier_reminder(technician, settings):
    settings.CMMS = {**settings.CMMS, "REMINDER_DAYS_BEFORE": 1}
    make_plan(technician=technician, due_in_days=7, remind_days_before=7)
    make_plan(technician=technician, due_in_days=7)
    assert reminders.send_preventive_reminders() == 1
    assert "(en 7 días)" in logs("maintenance_reminder").get().body


def test_marking_a_plan_done_moves_its_due_date_one_interval_on(technician):
    plan = make_plan(technician=technician, due_in_days=0, interval_days=30)
    plan.mark_done()
    assert plan.next_due_date == timezone.localdate() + timedelta(days=30)
    assert reminders.send_preventive_reminders() == 0


# -- overdue work orders ------------------------------------------------------------


def overdue_order(hours, assignee=None, **fields):
    order = make_work_order(asset=make_asset(site="Mina Norte"), due_at=timezone.now() - timedelta(hours=hours),
                            **fields)
    if assignee:
        order.assign(assignee, notify=False)
    return order


def test_an_overdue_order_reminds_its_assignee_once_a_day(supervisor, no_broker, django_capture_on_commit_callbacks):
    operator = make_operator(telegram=100001)
    order = overdue_order(2, assignee=operator)
    make_work_order(due_at=timezone.now() + timedelta(hours=1)).assign(make_operator(telegram=5), notify=False)
    with django_capture_on_commit_callbacks(execute=True):
        first = tasks.send_overdue_reminders.apply().get()
    with django_capture_on_commit_callbacks(execute=True):
        tasks.send_overdue_reminders.apply()
    assert first == {"assignees": 1, "supervisors": 0}
    log = logs("work_order_overdue").get()
    assert log.user == operator and log.title == f"Orden de trabajo vencida: {order.number}"
    assert "Estado: Asignada" in log.body
    assert log.idempotency_key == f"reminder:overdue:{order.pk}:{timezone.localdate().isoformat()}"
    assert sorted(channel for _pk, channel in no_broker) == ["IN_APP", "TELEGRAM"]  # once, on each channel
    assert logs("work_order_overdue_escalation").count() == 0


def test_after_the_escalation_delay_the_site_supervisor_is_told_once_a_day(supervisor, settings):
    settings.CMMS = {**settings.CMMS, "OVERDUE_ESCALATE_AFTER_H": 24}
    make_user(role="SUPERVISOR", site="Planta Sur", telegram=100022)
    operator = make_operator(telegram=100001, first_name="Ana", last_name="Rojas")
    order = overdue_order(30, assignee=operator)
    overdue_order(3, assignee=make_operator(telegram=100002))  # overdue, not long enough to escalate
    for _ in range(2):
        assert reminders.send_overdue_reminders() == {"assignees": 2, "supervisors": 1}
    log = logs("work_order_overdue_escalation").get()
    assert log.user == supervisor
    assert log.title == f"Orden de trabajo vencida requiere atención: {order.number}"
    assert "(30 h de atraso)" in log.body and "Asignada a: Ana Rojas" in log.body
    assert logs("work_order_overdue").count() == 2


def test_an_overdue_order_nobody_holds_goes_straight_to_supervisors(supervisor):
    order = overdue_order(1)
    rejected = overdue_order(1, assignee=make_operator(telegram=100001))
    rejected.reject("sin herramientas")
    assert reminders.send_overdue_reminders() == {"assignees": 0, "supervisors": 2}
    assert logs("work_order_overdue_escalation", user=supervisor).count() == 2
    assert "No tiene a nadie asignado." in logs("work_order_overdue_escalation").get(related_object_id=order.pk).body


def test_closed_orders_are_not_reminded(supervisor):
    order = overdue_order(48, assignee=make_operator(telegram=100001))
    order.cancel()
    assert reminders.send_overdue_reminders() == {"assignees": 0, "supervisors": 0}


def test_default_schedules_are_installed_for_the_default_queue():
    reminder_tasks = ("cmms.send_preventive_reminders", "cmms.send_overdue_reminders")
    schedules = {t.name: t for t in PeriodicTask.objects.filter(task__in=reminder_tasks)}
    assert set(schedules) == {"preventive-maintenance-reminders", "overdue-work-order-reminders"}
    assert {t.task for t in schedules.values()} == {"cmms.send_preventive_reminders", "cmms.send_overdue_reminders"}
    assert all(t.queue == "default" and t.enabled and t.crontab for t in schedules.values())
