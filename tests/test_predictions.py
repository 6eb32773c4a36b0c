"""record_prediction: the policy that turns ML scores into work orders and alerts."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone, translation

from cmms import predictions
from cmms.models import FailurePrediction, WorkOrder
from cmms.predictions import choose_operator, record_prediction
from notifications.models import InAppNotification, MessageLog
from tests.factories import make_user
from tests.support.cmms import make_asset, make_operator

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_broker")]
MODE = "Sobrecalentamiento de motor"



@pytest.fixture
def asset():
    return make_asset(code="CAM-AB01", name="Camión <A&B>_01", site="Mina Norte")


@pytest.fixture
def operator():
    return make_operator(telegram=100001, first_name="Ana", last_name="Rojas")


def predict(asset, risk="HIGH", mode=MODE, probability=0.8, **kw):
    return record_prediction(asset=asset, failure_mode=mode, probability=probability, risk_level=risk, **kw)


def telegram_alerts():
    return MessageLog.objects.filter(channel_type="TELEGRAM", message_type="prediction_high_risk")


def test_low_risk_is_recorded_and_nothing_else(asset, operator, no_broker):
    prediction = predict(asset, risk="LOW", probability=0.1)
    assert prediction.pk and prediction.work_order is None
    assert (prediction.action, prediction.alerted) == ("RECORDED", False)
    assert WorkOrder.objects.count() == MessageLog.objects.count() == InAppNotification.objects.count() == 0
    assert no_broker == []


def test_high_risk_opens_an_assigned_work_order_and_queues_one_alert_with_buttons(asset, operator):
    prediction = predict(asset, risk="HIGH", time_to_failure_hours=36, model_version="engine-v3")
    order = prediction.work_order
    assert (prediction.action, prediction.alerted) == ("CREATED", True)
    assert order.number == f"OT-{order.pk:05d}"
    assert (order.status, order.assignee, order.priority, order.source) == ("ASSIGNED", operator, "high", "PREDICTION")
    assert (order.failure_mode, order.risk_level) == (MODE, "HIGH")
    alert = telegram_alerts().get()
    assert (alert.user, alert.status, alert.priority, alert.recipient) == (operator, "QUEUED", "high", "100001")
    assert alert.idempotency_key == f"prediction:{order.pk}:alert:1"
    assert (alert.related_object_type, alert.related_object_id) == ("work_order", str(order.pk))
    from cmms.offers import find

    assert [a["text"] for a in alert.payload["actions"]] == ["✅ Aceptar", "❌ Rechazar"]
    offers = [find(a["callback_data"]) for a in alert.payload["actions"]]
    assert [(o.work_order_id, o.decision, o.assignment_seq) for o in offers] == [(order.pk, "accept", 1),
                                                                                 (order.pk, "reject", 1)]
    assert alert.payload["link"] == f"http://127.0.0.1:8000/admin/cmms/workorder/{order.pk}/change/"
    assert InAppNotification.objects.filter(user=operator).count() == 1


def test_the_alert_is_in_spanish_with_the_asset_name_untouched(asset, operator, settings):
    settings.SITE_URL = "https://cmms.example.com"
    with translation.override("en"):  # e.g. an ML client sending Accept-Language: en
        order = predict(asset, risk="CRITICAL", probability=0.93, time_to_failure_hours=30).work_order
    alert = telegram_alerts().get()
    assert alert.title == "Riesgo CRÍTICO de falla: Camión <A&B>_01"
    assert f"Orden de trabajo {order.number} · Camión <A&B>_01 (CAM-AB01)" in alert.body
    assert f"Modo de falla: {MODE}" in alert.body
    assert "Riesgo: CRÍTICO (probabilidad 93 %)" in alert.body
    assert "Tiempo estimado hasta la falla: 30 h" in alert.body
    assert "Asignada a: Ana Rojas" in alert.body
    assert alert.payload["link"] == f"https://cmms.example.com/admin/cmms/workorder/{order.pk}/change/"
    assert order.title == f"Falla predicha: {MODE}"


@pytest.mark.parametrize("risk, priority", [("MEDIUM", "normal"), ("HIGH", "high"), ("CRITICAL", "critical")])
def test_risk_sets_the_message_and_work_order_priority(asset, operator, risk, priority):
    order = predict(asset, risk=risk).work_order
    assert order.priority == priority
    assert telegram_alerts().get().priority == priority


def test_due_date_is_the_response_time_or_the_predicted_time_to_failure_if_sooner(asset, operator):
    before = timezone.now()
    slow = predict(asset, risk="HIGH", mode="a").work_order
    soon = predict(asset, risk="HIGH", mode="b", time_to_failure_hours=2).work_order
    assert timedelta(hours=24) <= slow.due_at - before < timedelta(hours=24, minutes=1)
    assert timedelta(hours=2) <= soon.due_at - before < timedelta(hours=2, minutes=1)


def test_repeat_within_cooldown_updates_the_order_without_a_new_alert(asset, operator, no_broker):
    first = predict(asset, risk="HIGH")
    again = predict(asset, risk="HIGH", probability=0.82)
    lower = predict(asset, risk="MEDIUM", probability=0.5)
    assert again.work_order == lower.work_order == first.work_order
    assert [again.action, lower.action] == ["UPDATED", "UPDATED"]
    assert not again.alerted and not lower.alerted
    assert WorkOrder.objects.count() == 1
    assert WorkOrder.objects.get().risk_level == "HIGH"  # never lowered by a later, milder score
    assert telegram_alerts().count() == 1 and InAppNotification.objects.count() == 1
    assert FailurePrediction.objects.count() == 3


def test_rising_risk_escalates_at_once_with_a_new_alert(asset, operator):
    first = predict(asset, risk="MEDIUM", probability=0.5)
    escalated = predict(asset, risk="CRITICAL", probability=0.95, time_to_failure_hours=3)
    order = escalated.work_order
    assert order == first.work_order and escalated.action == "ESCALATED" and escalated.alerted
    assert (order.risk_level, order.priority) == ("CRITICAL", "critical")
    assert order.due_at < first.work_order.due_at
    alert = telegram_alerts().order_by("-id").first()
    assert (alert.priority, alert.idempotency_key) == ("critical", f"prediction:{order.pk}:alert:2")
    assert alert.title == "Riesgo escalado a CRÍTICO: Camión <A&B>_01"
    assert "El riesgo subió de MEDIO a CRÍTICO." in alert.body
    assert telegram_alerts().count() == 2 and InAppNotification.objects.count() == 2


def test_same_risk_after_the_cooldown_alerts_again(asset, operator, settings):
    first = predict(asset, risk="HIGH")
    settings.CMMS = {**settings.CMMS, "PREDICTION_ALERT_COOLDOWN_S": 3600}
    WorkOrder.objects.filter(pk=first.work_order.pk).update(last_alert_at=timezone.now() - timedelta(minutes=61))
    again = predict(asset, risk="HIGH")
    assert (again.action, again.alerted) == ("REALERTED", True)
    assert "El modelo sigue prediciendo esta falla." in telegram_alerts().order_by("-id").first().body
    assert telegram_alerts().count() == 2


def test_other_failure_modes_and_closed_orders_get_their_own_work_order(asset, operator):
    first = predict(asset, mode="Desgaste de frenos").work_order
    other = predict(asset, mode="Fuga hidráulica").work_order
    assert first != other
    first.accept()
    first.start()
    first.complete()
    after_done = predict(asset, mode="Desgaste de frenos")
    assert after_done.action == "CREATED" and after_done.work_order not in (first, other)


def test_a_retried_ml_call_with_the_same_external_id_is_recorded_once(asset, operator):
    first = predict(asset, external_id="run-42/CAM-AB01")
    retry = predict(asset, external_id="run-42/CAM-AB01")
    assert retry.pk == first.pk and retry.duplicate and not first.duplicate
    assert FailurePrediction.objects.count() == 1 and telegram_alerts().count() == 1


def test_the_alert_leaves_only_after_commit(asset, operator, no_broker, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic():
            predict(asset)
            assert no_broker == []
        assert no_broker == []  # the outer (test) transaction has not committed yet
    in_app = MessageLog.objects.get(channel_type="IN_APP")
    assert sorted(no_broker) == sorted([(telegram_alerts().get().pk, "TELEGRAM"), (in_app.pk, "IN_APP")])


def test_an_error_after_the_work_order_was_created_leaves_nothing_behind(asset, operator, monkeypatch, no_broker,
                                                                         django_capture_on_commit_callbacks):
    def broken_router(*args, **kwargs):
        assert WorkOrder.objects.count() == 1  # the order exists inside the transaction...
        raise RuntimeError("router exploded")

    monkeypatch.setattr("notifications.message_router.MessageRouter.send_to_user", broken_router)
    with django_capture_on_commit_callbacks(execute=True) as callbacks, pytest.raises(RuntimeError):
        predict(asset)
    # ...and nothing survives the rollback: no prediction, order, message or inbox entry.
    assert FailurePrediction.objects.count() == WorkOrder.objects.count() == 0
    assert MessageLog.objects.count() == InAppNotification.objects.count() == 0
    assert callbacks == [] and no_broker == []


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"risk": "SEVERE"}, "risk_level"),
        ({"probability": 1.5}, "probability"),
        ({"probability": "high"}, "probability"),
        ({"mode": "  "}, "failure_mode"),
        ({"time_to_failure": timedelta(hours=-1)}, "time_to_failure"),
        ({"time_to_failure_hours": 1e20}, "time_to_failure"),
        ({"time_to_failure_hours": "soon"}, "time_to_failure"),
    ],
)
def test_bad_input_raises_a_validation_error_and_writes_nothing(asset, operator, kwargs, field):
    with pytest.raises(ValidationError) as error:
        predict(asset, **kwargs)
    assert field in error.value.message_dict
    assert FailurePrediction.objects.count() == WorkOrder.objects.count() == 0


def test_unknown_asset_code_is_a_validation_error(operator):
    with pytest.raises(ValidationError, match="NOPE-1"):
        predict("NOPE-1")


def test_the_asset_can_be_given_by_code(asset, operator):
    assert predict("CAM-AB01").asset == asset


def test_the_database_allows_one_open_prediction_order_per_asset_and_failure_mode(asset):
    WorkOrder.objects.create(asset=asset, title="a", source="PREDICTION", failure_mode=MODE)
    WorkOrder.objects.create(asset=asset, title="manual", source="MANUAL")  # other sources are not limited
    with pytest.raises(IntegrityError), transaction.atomic():
        WorkOrder.objects.create(asset=asset, title="b", source="PREDICTION", failure_mode=MODE)


# -- assignment rule ------------------------------------------------------------


def test_the_site_operator_holding_fewest_open_orders_is_chosen_ties_by_id(asset):
    busy = make_operator(site="Mina Norte")
    free_a = make_operator(site="Mina Norte")
    free_b = make_operator(site="Mina Norte")
    make_operator(site="Planta Sur")  # idle, but at another site
    make_operator(site="Mina Norte", is_active=False)
    make_user(role="TECHNICIAN", site="Mina Norte")
    other_asset = make_asset(site="Mina Norte")
    WorkOrder.objects.create(asset=other_asset, title="x", assignee=busy, status="IN_PROGRESS")
    WorkOrder.objects.create(asset=other_asset, title="done", assignee=free_a, status="DONE")  # not held
    assert choose_operator(asset) == free_a
    predict(asset, mode="a")
    assert choose_operator(asset) == free_b
    predict(asset, mode="b")
    assert WorkOrder.objects.get(failure_mode="b").assignee == free_b
    assert choose_operator(asset) == busy  # one order each now: the lowest id wins


def test_without_an_operator_at_the_site_any_active_operator_is_chosen(asset):
    elsewhere = make_operator(site="Planta Sur")
    assert choose_operator(asset) == elsewhere


def test_without_any_operator_the_order_stays_open_and_site_supervisors_are_alerted(asset):
    supervisor = make_user(role="SUPERVISOR", site="Mina Norte", telegram=100021)
    make_user(role="SUPERVISOR", site="Planta Sur", telegram=100022)
    prediction = predict(asset, risk="CRITICAL")
    order = prediction.work_order
    assert (order.status, order.assignee) == ("OPEN", None)
    alert = telegram_alerts().get()
    assert alert.user == supervisor and "actions" not in alert.payload
    assert "No hay operadores disponibles" in alert.body
    # No in-app preference: the inbox entry is made anyway, exactly once.
    assert InAppNotification.objects.filter(user=supervisor).count() == 1


def test_a_user_without_an_in_app_preference_still_gets_one_inbox_entry(asset):
    operator = make_operator(telegram=100001, in_app=False)
    predict(asset)
    note = InAppNotification.objects.get(user=operator)
    assert note.message_log is None and note.related_object_id == str(WorkOrder.objects.get().pk)


def test_an_in_app_preference_opted_out_of_predictions_is_respected(asset):
    operator = make_operator(telegram=100001, in_app=True)
    operator.channel_preferences.filter(channel_type="IN_APP").update(notify_predictions=False)
    predict(asset)
    assert InAppNotification.objects.filter(user=operator).count() == 0


def test_a_rejected_order_is_reassigned_to_someone_else_on_the_next_alert(asset, settings):
    first_op = make_operator()
    second_op = make_operator()
    order = predict(asset, risk="MEDIUM").work_order
    assert order.assignee == first_op
    order.reject("sin repuestos")
    escalated = predict(asset, risk="HIGH").work_order
    assert (escalated.status, escalated.assignee) == ("ASSIGNED", second_op)
    assert telegram_alerts().count() == 0  # these operators have no Telegram; the inbox has both alerts
    assert InAppNotification.objects.filter(user=second_op).count() == 1


def test_cooldown_setting_is_read_at_call_time(settings):
    settings.CMMS = {**settings.CMMS, "PREDICTION_ALERT_COOLDOWN_S": 5}
    assert predictions.cooldown() == timedelta(seconds=5)


@pytest.mark.django_db(transaction=True)
def test_concurrent_predictions_for_one_asset_open_one_order_and_send_one_alert(no_broker):
    """Eight ML calls at the same instant: the asset lock serializes them, so
    the first opens the order and the others update it."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    from django.db import connection

    asset = make_asset()
    make_operator(telegram=100001)
    barrier = Barrier(8)

    def call(i):
        try:
            barrier.wait(timeout=10)
            return predict(asset, probability=0.8 + i / 100).action
        finally:
            connection.close()

    with ThreadPoolExecutor(8) as pool:
        actions = sorted(pool.map(call, range(8)))
    assert actions == ["CREATED"] + ["UPDATED"] * 7
    assert WorkOrder.objects.count() == 1 and FailurePrediction.objects.count() == 8
    assert telegram_alerts().count() == 1
    assert sorted(channel for _pk, channel in no_broker) == ["IN_APP", "TELEGRAM"]  # one alert, on each channel
