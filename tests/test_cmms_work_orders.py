"""Work orders: numbers, the guarded lifecycle, and assignment notifications."""

import pytest
from django.db import transaction
from django.urls import reverse

from cmms.models import InvalidTransition, WorkOrder
from notifications.models import InAppNotification, MessageLog
from tests.factories import make_user
from tests.support.cmms import make_asset, make_operator, make_work_order

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_broker")]



@pytest.fixture
def order():
    return make_work_order(asset=make_asset(code="CAM-AB01", name="Camión <A&B>_01"), priority="high")


def telegram_logs(**filters):
    return MessageLog.objects.filter(channel_type="TELEGRAM", **filters).order_by("id")


def test_the_number_derives_from_the_primary_key(order):
    assert order.number == f"OT-{order.pk:05d}"
    assert WorkOrder.objects.get(pk=order.pk).number == order.number
    assert str(order) == f"{order.number} · Cambio de neumático"


def test_the_lifecycle_runs_open_assigned_accepted_in_progress_done(order):
    order.assign(make_operator())
    order.accept()
    order.start()
    order.complete()
    order.refresh_from_db()
    assert order.status == "DONE"
    assert order.assigned_at <= order.accepted_at <= order.started_at <= order.closed_at


@pytest.mark.parametrize("steps, forbidden", [
    ([], "accept"),
    ([], "start"),
    ([], "complete"),
    (["accept"], "complete"),
    (["accept", "start", "complete"], "cancel"),
    (["cancel"], "accept"),
])
def test_transitions_outside_the_lifecycle_are_refused(order, steps, forbidden):
    order.assign(make_operator())
    if not steps:  # back to an unassigned order for the first cases
        order = make_work_order()
    for step in steps:
        getattr(order, step)()
    status = order.status
    with pytest.raises(InvalidTransition):
        getattr(order, forbidden)()
    assert WorkOrder.objects.get(pk=order.pk).status == status


def test_a_stale_copy_cannot_overwrite_a_newer_status(order):
    order.assign(make_operator())
    stale = WorkOrder.objects.get(pk=order.pk)
    order.accept()
    with pytest.raises(InvalidTransition, match="cambió mientras tanto"):
        stale.reject("no")
    assert WorkOrder.objects.get(pk=order.pk).status == "ACCEPTED"


def test_assigning_notifies_the_assignee_in_spanish_with_accept_and_reject_buttons(order):
    operator = make_operator(telegram=100001)
    assert order.assign(operator) is True
    log = telegram_logs().get()
    assert (log.user, log.message_type, log.priority) == (operator, "work_order_assigned", "high")
    assert log.title == f"Nueva orden de trabajo: {order.number}"
    assert log.body.startswith(f"Se te ha asignado la {order.number} para Camión <A&B>_01 (CAM-AB01).")
    assert "Prioridad: Alta" in log.body
    actions = log.payload["actions"]
    assert [a["text"] for a in actions] == ["✅ Aceptar", "❌ Rechazar"]
    from cmms.offers import find

    offers = [find(a["callback_data"]) for a in actions]  # opaque tokens of stored offers
    assert [(o.work_order_id, o.decision, o.assignment_seq) for o in offers] == [
        (order.pk, "accept", order.assignment_seq), (order.pk, "reject", order.assignment_seq)]
    assert all(len(a["callback_data"].encode()) <= 64 for a in actions)
    assert log.idempotency_key == f"wo:{order.pk}:assigned:1"
    assert InAppNotification.objects.filter(user=operator).count() == 1


def test_reassigning_notifies_the_new_assignee_and_tells_the_previous_one(order):
    first = make_operator(telegram=100001)
    second = make_operator(telegram=100002, first_name="Luis", last_name="Muñoz")
    order.assign(first)
    order.accept()
    order.assign(second)
    new, old = telegram_logs(user=second).get(), telegram_logs(user=first).last()
    assert new.title == f"Orden de trabajo reasignada a ti: {order.number}"
    from cmms.offers import find

    offer = find(new.payload["actions"][0]["callback_data"])
    assert (offer.work_order_id, offer.decision, offer.assignment_seq) == (order.pk, "accept", 2)
    assert (old.message_type, old.title) == ("work_order_updated", f"Orden de trabajo reasignada: {order.number}")
    assert "fue reasignada a Luis Muñoz" in old.body and "actions" not in old.payload
    assert WorkOrder.objects.get(pk=order.pk).status == "ASSIGNED"


def test_assigning_the_current_holder_again_sends_nothing(order):
    operator = make_operator(telegram=100001)
    order.assign(operator)
    assert order.assign(operator) is False
    assert telegram_logs().count() == 1


def test_an_inactive_user_cannot_be_assigned(order):
    with pytest.raises(InvalidTransition):
        order.assign(make_operator(is_active=False))


def test_a_rolled_back_assignment_sends_nothing(order, no_broker, django_capture_on_commit_callbacks):
    operator = make_operator(telegram=100001)
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError), transaction.atomic():
        order.assign(operator)
        raise RuntimeError("caller failed after assigning")
    assert MessageLog.objects.count() == 0 and no_broker == []
    assert WorkOrder.objects.get(pk=order.pk).status == "OPEN"


def test_saving_a_work_order_sends_nothing_only_assign_does(order):
    make_operator(telegram=100001)
    order.title = "Cambio de neumático trasero"
    order.save()
    WorkOrder.objects.create(asset=order.asset, title="otra", assignee=make_operator(telegram=100003))
    assert MessageLog.objects.count() == 0


def test_choosing_an_assignee_in_admin_goes_through_assign_and_notifies(order, client):
    admin = make_user(role="ADMIN", is_staff=True, is_superuser=True)
    client.force_login(admin)
    operator = make_operator(telegram=100001)
    url = reverse("admin:cmms_workorder_change", args=[order.pk])
    response = client.post(url, {
        "asset": order.asset.pk, "title": order.title, "description": "", "priority": "high",
        "assignee": operator.pk, "due_at_0": "", "due_at_1": "", "maintenance_plan": "",
        "predictions-TOTAL_FORMS": "0", "predictions-INITIAL_FORMS": "0",
        "predictions-MIN_NUM_FORMS": "0", "predictions-MAX_NUM_FORMS": "0",
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    order.refresh_from_db()
    assert (order.status, order.assignee) == ("ASSIGNED", operator)
    assert telegram_logs(user=operator, message_type="work_order_assigned").count() == 1


def test_admin_pages_render(client, order):
    admin = make_user(role="ADMIN", is_staff=True, is_superuser=True)
    client.force_login(admin)
    for name in ("workorder", "asset", "failureprediction", "maintenanceplan", "mlclient"):
        assert client.get(reverse(f"admin:cmms_{name}_changelist")).status_code == 200
    assert client.get(reverse("admin:cmms_workorder_change", args=[order.pk])).status_code == 200
