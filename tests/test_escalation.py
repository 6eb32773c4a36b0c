"""Escalation until someone acts: policies as data, durable steps claimed
once, and a run that ends the moment someone accepts or cancels the order."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from cmms import actions, escalation
from cmms.models import (
    Escalation,
    EscalationPolicy,
    EscalationPolicyStep,
    EscalationStep,
    Role,
    WorkOrderStatus,
)
from notifications.models import MessageLog
from tests.factories import make_user
from tests.support.cmms import make_asset, make_operator, make_work_order


def make_policy(priority="critical", steps=(("NOTIFY_ASSIGNEE", ""), ("NOTIFY_SUPERVISORS", ""), ("REASSIGN", "")),
                wait_s=0, repeat_last=0, site=""):
    EscalationPolicy.objects.filter(priority=priority, site=site).delete()  # the shipped default
    policy = EscalationPolicy.objects.create(name=f"{priority} {site}", priority=priority, site=site,
                                             repeat_last=repeat_last)
    for position, (action, channels) in enumerate(steps):
        EscalationPolicyStep.objects.create(policy=policy, position=position, action=action, channels=channels,
                                            wait_s=wait_s)
    return policy


@pytest.fixture
def crew(db):
    asset = make_asset(site="Mina Norte")
    first = make_operator(telegram=1001, first_name="Ana", last_name="Rojas")
    second = make_operator(telegram=1002, first_name="Juan", last_name="Pérez")
    boss = make_user(role=Role.SUPERVISOR, site="Mina Norte", telegram=1003, first_name="Eva", last_name="Soto")
    return {"asset": asset, "first": first, "second": second, "boss": boss}


def assigned_order(crew, priority="critical"):
    order = make_work_order(asset=crew["asset"], priority=priority)
    order.assign(crew["first"])
    return order


def scan_later(seconds=1):
    return escalation.run_due_steps(now=timezone.now() + timedelta(seconds=seconds))


def test_the_default_policies_ship_for_critical_and_high_with_waits_from_settings(db, settings):
    # Installed by the data migration (the test database is migrated).
    by_priority = {p.priority: p for p in EscalationPolicy.objects.filter(site="")}
    assert {"critical", "high"} <= set(by_priority)
    chain = escalation.build_chain(by_priority["critical"])
    assert [s["action"] for s in chain] == ["NOTIFY_ASSIGNEE", "NOTIFY_SUPERVISORS", "REASSIGN", "REASSIGN",
                                            "REASSIGN"]
    assert [s["wait_s"] for s in chain[:3]] == [600, 600, 1200]
    assert "SMS" in chain[0]["channels"]
    settings.ESCALATION = {**settings.ESCALATION, "DEFAULT_WAIT_S": {"critical": {"NOTIFY_ASSIGNEE": 3}}}
    assert escalation.build_chain(by_priority["critical"])[0]["wait_s"] == 3


def test_an_assignment_starts_a_run_with_the_first_step_due_after_its_wait(crew, no_broker):
    make_policy(wait_s=600)
    before = timezone.now()
    order = assigned_order(crew)
    run = Escalation.objects.get(work_order=order)
    [step] = EscalationStep.objects.filter(escalation=run)
    assert (run.status, step.index, step.action, step.status) == ("ACTIVE", 0, "NOTIFY_ASSIGNEE", "PENDING")
    assert before + timedelta(seconds=600) <= step.due_at <= timezone.now() + timedelta(seconds=600)
    assert escalation.run_due_steps() == {"due": 0, "ran": 0, "cancelled": 0, "taken": 0, "failed": 0}


def test_a_site_policy_wins_over_the_policy_for_every_site(crew):
    make_policy(wait_s=600)
    local = make_policy(wait_s=60, site="Mina Norte", steps=(("NOTIFY_SUPERVISORS", ""),))
    order = make_work_order(asset=crew["asset"], priority="critical")
    assert escalation.policy_for(order) == local


def test_unaccepted_steps_notify_the_assignee_then_the_supervisors_then_reassign_in_order(crew, no_broker):
    make_policy()
    order = assigned_order(crew)
    assert scan_later()["ran"] == 1
    reminder = MessageLog.objects.filter(message_type="work_order_escalation", user=crew["first"])
    assert reminder.count() == 2  # TELEGRAM and IN_APP, with the accept/reject buttons
    assert reminder.get(channel_type="TELEGRAM").payload["actions"][0]["text"] == "✅ Aceptar"
    assert scan_later()["ran"] == 1
    assert MessageLog.objects.filter(message_type="work_order_escalation", user=crew["boss"]).exists()
    assert scan_later()["ran"] == 1
    order.refresh_from_db()
    assert (order.status, order.assignee) == ("ASSIGNED", crew["second"])
    steps = list(EscalationStep.objects.filter(work_order=order).order_by("index"))
    assert [(s.action, s.status) for s in steps] == [("NOTIFY_ASSIGNEE", "DONE"), ("NOTIFY_SUPERVISORS", "DONE"),
                                                     ("REASSIGN", "DONE")]
    assert "Ana Rojas (IN_APP, TELEGRAM)" in steps[0].outcome
    assert "Juan Pérez" in steps[2].outcome and steps[2].message_ids
    run = Escalation.objects.get(work_order=order)
    assert run.status == "EXHAUSTED"  # the reassignment did not start a second run
    assert Escalation.objects.filter(work_order=order).count() == 1


def test_a_step_asking_for_a_channel_uses_it_even_when_kept_for_higher_priorities(crew, no_broker):
    from notifications.models import UserChannelPreference

    UserChannelPreference.objects.filter(user=crew["first"], channel_type="TELEGRAM").update(min_priority="critical")
    make_policy(priority="high", steps=(("NOTIFY_ASSIGNEE", "TELEGRAM"),))
    order = assigned_order(crew, priority="high")
    assert not MessageLog.objects.filter(user=crew["first"], channel_type="TELEGRAM").exists()
    scan_later()
    [log] = MessageLog.objects.filter(user=crew["first"], message_type="work_order_escalation")
    assert log.channel_type == "TELEGRAM" and log.related_object_id == str(order.pk)


def test_the_last_step_repeats_as_often_as_the_policy_says(crew, no_broker):
    make_policy(steps=(("NOTIFY_SUPERVISORS", ""),), repeat_last=2)
    assigned_order(crew)
    assert [scan_later()["ran"] for _ in range(4)] == [1, 1, 1, 0]
    assert MessageLog.objects.filter(user=crew["boss"], channel_type="TELEGRAM").count() == 3


def test_accepting_ends_the_run_records_the_time_to_acknowledge_and_tells_those_notified(crew, no_broker):
    make_policy()
    order = assigned_order(crew)
    scan_later()
    scan_later()  # the supervisor was notified
    result = actions.decide(order.pk, crew["first"], actions.ACCEPT, via="TELEGRAM")
    assert result.changed
    run = Escalation.objects.get(work_order=order)
    assert run.status == "STOPPED" and run.stopped_by == crew["first"] and run.acknowledged_s >= 0
    [pending] = EscalationStep.objects.filter(work_order=order, index=2)
    assert pending.status == "CANCELLED"
    assert scan_later(seconds=3600)["ran"] == 0
    [taken] = MessageLog.objects.filter(message_type="work_order_taken", channel_type="TELEGRAM")
    assert taken.user == crew["boss"]
    assert f"{order.number}" in taken.body and "Ana Rojas" in taken.body
    assert not MessageLog.objects.filter(message_type="work_order_taken", user=crew["first"]).exists()


def test_the_taken_signal_names_the_messages_to_edit_after_the_commit(crew, no_broker, django_capture_on_commit_callbacks):
    make_policy()
    order = assigned_order(crew)
    received = []
    escalation.work_order_taken.connect(lambda **kw: received.append(kw), weak=False, dispatch_uid="t")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            actions.decide(order.pk, crew["first"], actions.ACCEPT, via="IN_APP")
    finally:
        escalation.work_order_taken.disconnect(dispatch_uid="t")
    [event] = received
    assert event["work_order"].pk == order.pk and event["user"] == crew["first"]
    assigned = MessageLog.objects.filter(message_type="work_order_assigned", user=crew["first"])
    assert set(assigned.values_list("pk", flat=True)) <= set(event["message_ids"])


def test_cancelling_the_order_ends_the_run(crew, no_broker):
    make_policy()
    order = assigned_order(crew)
    order.cancel()
    assert Escalation.objects.get(work_order=order).status == "STOPPED"
    assert scan_later(3600)["ran"] == 0
    assert EscalationStep.objects.get(work_order=order).status == "CANCELLED"


def test_a_step_of_a_run_that_is_no_longer_active_does_nothing(crew, no_broker):
    make_policy()
    order = assigned_order(crew)
    # As if the acceptance had committed without cancelling the row.
    Escalation.objects.filter(work_order=order).update(status="STOPPED")
    assert scan_later()["cancelled"] == 1
    assert not MessageLog.objects.filter(message_type="work_order_escalation").exists()


def test_a_step_claimed_by_another_scanner_is_not_run_twice(crew, no_broker):
    make_policy()
    order = assigned_order(crew)
    step = EscalationStep.objects.get(work_order=order)
    assert escalation.run_step(step.pk, order.pk) == "ran"
    assert escalation.run_step(step.pk, order.pk) == "taken"
    assert MessageLog.objects.filter(message_type="work_order_escalation", channel_type="TELEGRAM").count() == 1


def test_a_rejection_keeps_the_run_going_for_the_next_assignee(crew, no_broker):
    make_policy()
    order = assigned_order(crew)
    actions.decide(order.pk, crew["first"], actions.REJECT, via="TELEGRAM", reason="sin repuestos")
    order.refresh_from_db()
    assert order.assignee == crew["second"]
    run = Escalation.objects.get(work_order=order)
    assert run.status == "ACTIVE"
    scan_later()
    assert MessageLog.objects.filter(message_type="work_order_escalation", user=crew["second"]).exists()


def test_an_order_without_a_policy_still_records_its_time_to_acknowledge(crew, no_broker):
    order = assigned_order(crew, priority="normal")
    actions.decide(order.pk, crew["first"], actions.ACCEPT, via="ADMIN")
    run = Escalation.objects.get(work_order=order)
    assert run.chain == [] and run.acknowledged_s is not None
    [row] = [r for r in escalation.time_to_acknowledge() if r["priority"] == "normal" and r["site"] == ""]
    assert row["count"] == 1 and row["p50_s"] == run.acknowledged_s


def test_time_to_acknowledge_gives_p50_and_p90_per_priority_and_site(crew):
    now = timezone.now()
    order = make_work_order(asset=crew["asset"], priority="critical")
    for seconds in (60, 120, 180, 240, 600):
        Escalation.objects.create(work_order=order, priority="critical", site="Mina Norte", status="STOPPED",
                                  started_at=now - timedelta(days=1), acknowledged_s=seconds)
    Escalation.objects.create(work_order=order, priority="critical", site="Mina Norte", status="STOPPED",
                              started_at=now - timedelta(days=40), acknowledged_s=9999)
    rows = {(r["priority"], r["site"]): r for r in escalation.time_to_acknowledge(now=now)}
    assert rows[("critical", "Mina Norte")]["count"] == 5
    assert rows[("critical", "Mina Norte")]["p50_s"] == 180
    assert rows[("critical", "")]["p90_s"] == pytest.approx(456)


@pytest.mark.django_db(transaction=True)
def test_acceptance_and_a_due_step_at_the_same_instant_never_run_the_step_after_the_acceptance(no_broker):
    """Both race from a barrier, many times: either the step ran first (and
    the acceptance came after it), or it saw the acceptance and did nothing."""
    asset = make_asset()
    crew = {"asset": asset, "first": make_operator(telegram=2001), "second": make_operator(telegram=2002),
            "boss": make_user(role=Role.SUPERVISOR, site=asset.site, telegram=2003)}
    make_policy(wait_s=0)
    outcomes = []
    for _round in range(12):
        order = assigned_order(crew)
        step = EscalationStep.objects.get(work_order=order, index=0)
        barrier = threading.Barrier(2)
        results = {}

        def accept(order=order, barrier=barrier, results=results):
            barrier.wait()
            try:
                results["accept"] = actions.decide(order.pk, crew["first"], actions.ACCEPT, via="TELEGRAM").changed
            finally:
                connection.close()

        def scan(order=order, step=step, barrier=barrier, results=results):
            barrier.wait()
            try:
                results["step"] = escalation.run_step(step.pk, order.pk)
            finally:
                connection.close()

        threads = [threading.Thread(target=accept), threading.Thread(target=scan)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        order.refresh_from_db()
        step.refresh_from_db()
        assert results["accept"] is True and order.status == WorkOrderStatus.ACCEPTED
        reminders = MessageLog.objects.filter(message_type="work_order_escalation", related_object_id=str(order.pk))
        if results["step"] == "ran":
            assert step.status == "DONE" and step.ran_at <= order.accepted_at
            assert all(r.created_at <= order.accepted_at for r in reminders)
        else:
            # The acceptance cancelled the row first ("taken": nothing left to
            # claim), or the step claimed it and saw the acceptance.
            assert results["step"] in ("taken", "cancelled") and step.status == "CANCELLED"
            assert not reminders.exists()
        assert not EscalationStep.objects.filter(work_order=order, status="PENDING").exists()
        outcomes.append(results["step"])
    assert set(outcomes) <= {"ran", "cancelled", "taken"}


def test_the_scanners_are_installed_as_beat_schedules_on_the_default_queue(db):
    from django_celery_beat.models import PeriodicTask

    tasks = {t.task: t for t in PeriodicTask.objects.filter(name__in=[
        "escalation-steps", "release-held-messages", "channel-failover"])}
    assert set(tasks) == {"cmms.run_escalation_steps", "cmms.release_held_messages", "cmms.run_channel_failover"}
    assert all(t.queue == "default" and t.enabled and t.interval.every <= 30 for t in tasks.values())


def test_the_work_order_page_shows_its_steps_and_exports_its_timeline_as_csv(crew, no_broker, admin_client):
    import csv
    import io

    make_policy()
    order = assigned_order(crew)
    scan_later()
    actions.decide(order.pk, crew["first"], actions.ACCEPT, via="TELEGRAM")
    page = admin_client.get(f"/admin/cmms/workorder/{order.pk}/change/").content.decode()
    assert "Avisar de nuevo al asignado" in page and "Ana Rojas" in page
    response = admin_client.get(f"/admin/cmms/workorder/{order.pk}/timeline.csv")
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == ["hora", "evento", "persona", "canal", "estado", "detalle"]
    events = [r[1] for r in rows[1:]]
    assert events[0] == "Orden de trabajo creada" or "creada" in events[0].lower()
    assert "Notificación en cola" in events and "Aceptada" in events
    assert any(e.startswith("Paso de escalamiento 1") for e in events)
    assert [r[0] for r in rows[1:]] == sorted(r[0] for r in rows[1:])
    accepted = next(r for r in rows if r[1] == "Aceptada")
    assert accepted[2] == "Ana Rojas" and accepted[3] == "TELEGRAM"


def test_the_dry_run_says_who_would_be_reached_when_and_how_and_warns_about_steps_reaching_nobody(crew, admin_client):
    from datetime import datetime, time
    from zoneinfo import ZoneInfo

    from cmms import dry_run
    from cmms.models import ShiftPattern, ShiftWindow

    make_policy(priority="high", steps=(("NOTIFY_ASSIGNEE", "TELEGRAM"), ("NOTIFY_SUPERVISORS", ""), ("REASSIGN", "")),
                wait_s=600)
    from notifications.models import UserChannelPreference

    UserChannelPreference.objects.filter(user=crew["boss"]).delete()  # the supervisor has no channel
    pattern = ShiftPattern.objects.create(name="Diurno", site="Mina Norte", override_priority="critical")
    for day in range(5):
        ShiftWindow.objects.create(pattern=pattern, weekday=day, starts=time(8), ends=time(20))
    sunday_3am = datetime(2026, 11, 29, 3, 0, tzinfo=ZoneInfo("America/Santiago"))

    steps = dry_run.simulate("high", crew["asset"], sunday_3am)
    assert [s.at - sunday_3am for s in steps] == [timedelta(0), timedelta(minutes=10), timedelta(minutes=20),
                                                  timedelta(minutes=30)]
    assert steps[0].people[0].user == crew["first"] and steps[0].people[0].channels == ["IN_APP", "TELEGRAM"]
    assert steps[0].people[0].held_until == datetime(2026, 11, 30, 8, 0, tzinfo=ZoneInfo("America/Santiago"))
    assert steps[1].people[0].channels == ["TELEGRAM"]  # the step names its channel
    assert steps[2].warnings == ["Nadie aquí tiene un canal vinculado que este mensaje pueda usar."]
    assert steps[3].people[0].user == crew["second"]
    assert steps[0].warnings == ["Todas las personas alcanzables están fuera de turno: el mensaje espera el próximo turno."]
    assert dry_run.simulate("critical", crew["asset"], sunday_3am)[0].people[0].held_until is None

    page = admin_client.get("/admin/cmms/escalationpolicy/dry-run/", {
        "priority": "high", "asset": crew["asset"].pk, "at": "2026-11-29 03:00"}).content.decode()
    assert "Ana Rojas" in page and "Juan Pérez" in page and "⚠️" in page


def test_a_broadcast_asks_for_a_confirmation_counts_them_and_resends_to_the_missing(db, no_broker):
    from cmms import broadcasts

    people = [make_operator(telegram=4000 + n) for n in range(3)]
    broadcast = broadcasts.send_broadcast("OPERATOR", "Simulacro", "Simulacro de evacuación a las 15:00")
    telegram = MessageLog.objects.filter(related_object_type="broadcast", channel_type="TELEGRAM")
    assert telegram.count() == 3
    assert telegram.first().payload["actions"] == [
        {"text": "✅ Confirmar lectura", "callback_data": f"bc:ack:{broadcast.pk}"}]
    assert broadcasts.confirm(broadcast.pk, people[0], via="TELEGRAM") is True
    assert broadcasts.confirm(broadcast.pk, people[0], via="TELEGRAM") is False  # a double press
    summary = broadcasts.summary(broadcast)
    assert summary["text"] == "1/3 confirmaron" and summary["missing"] == people[1:]
    assert broadcasts.resend_missing(broadcast) == 2
    assert set(telegram.values_list("user_id", flat=True).filter(idempotency_key__contains="resend")) == {
        p.pk for p in people[1:]}


def test_the_admin_sends_a_broadcast_and_shows_who_has_not_confirmed(db, no_broker, admin_client, admin_user):
    from cmms import broadcasts
    from cmms.models import Broadcast

    admin_user.role = "ADMIN"
    admin_user.save()
    first = make_operator(telegram=4101, first_name="Ana")
    make_operator(telegram=4102, first_name="Luis")
    response = admin_client.post("/admin/cmms/broadcast/add/", {
        "title": "Corte de energía", "body": "Mañana 08:00", "role": "OPERATOR", "priority": "normal",
        "ask_confirmation": "on"})
    assert response.status_code == 302
    broadcast = Broadcast.objects.get()
    broadcasts.confirm(broadcast.pk, first, via="IN_APP")
    page = admin_client.get("/admin/cmms/broadcast/").content.decode()
    assert "1/2 confirmaron" in page and "Luis" in page


def test_a_step_that_fails_records_the_error_and_the_run_goes_on_to_the_next_step(crew, no_broker, monkeypatch):
    make_policy()
    order = assigned_order(crew)

    def broken(order, run, step):
        raise RuntimeError("the assignment rule is broken")

    monkeypatch.setitem(escalation.ACTIONS, "NOTIFY_ASSIGNEE", broken)
    assert scan_later()["failed"] == 1
    first = EscalationStep.objects.get(work_order=order, index=0)
    assert first.status == "DONE" and "RuntimeError: the assignment rule is broken" in first.outcome
    assert not MessageLog.objects.filter(message_type="work_order_escalation").exists()  # rolled back
    assert scan_later()["ran"] == 1  # the supervisors' step, once
    assert EscalationStep.objects.get(work_order=order, index=1).status == "DONE"


def test_a_new_prediction_alert_restarts_an_escalation_that_ran_out(crew, no_broker):
    from cmms.predictions import record_prediction

    make_policy(steps=(("NOTIFY_SUPERVISORS", ""),))
    order = record_prediction(asset=crew["asset"], failure_mode="Fuga", probability=0.9, risk_level="CRITICAL").work_order
    scan_later()
    assert Escalation.objects.get(work_order=order).status == "EXHAUSTED"
    from cmms.models import WorkOrder

    WorkOrder.objects.filter(pk=order.pk).update(last_alert_at=timezone.now() - timedelta(days=1))
    record_prediction(asset=crew["asset"], failure_mode="Fuga", probability=0.9, risk_level="CRITICAL")
    assert list(Escalation.objects.filter(work_order=order).values_list("status", flat=True).order_by("id")) == [
        "EXHAUSTED", "ACTIVE"]
