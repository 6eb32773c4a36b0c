"""The seed's central story on real parts: a prediction opens a work order,
assigns an operator, files the in-app notification, and a real Celery worker
delivers the Spanish alert to the Telegram sandbox. The producer never waits
for Telegram or for Redis."""

import time

import pytest

from cmms.predictions import record_prediction
from notifications.models import InAppNotification, MessageLog
from tests.conftest import _configure_broker, wait_for_status, worker_env
from tests.support.cmms import make_asset, make_operator
from tests.support.processes import RedisServer, Worker, wait_for

MODE = "Sobrecalentamiento de motor"


def use_broker(url):
    """Point this process's producers at ``url``. kombu keeps closed pools in
    a process-wide registry, so it is emptied too."""
    from kombu import pools

    _configure_broker(url)
    pools.reset()


def predict(asset, risk="CRITICAL"):
    return record_prediction(asset=asset, failure_mode=MODE, probability=0.91, risk_level=risk,
                             time_to_failure_hours=12, model_version="engine-v3")


def telegram_log():
    return MessageLog.objects.get(channel_type="TELEGRAM")


@pytest.mark.e2e
def test_a_prediction_reaches_the_operator_on_telegram_in_spanish(e2e):
    asset = make_asset(code="CAM-AB01", name="Camión <A&B>_01")
    operator = make_operator(telegram=100001, first_name="Ana", last_name="Rojas")
    order = predict(asset).work_order

    wait_for_status([telegram_log().pk])
    log = telegram_log()
    [message] = e2e.messages(chat_id=100001)
    assert log.provider_message_id == str(message["message_id"])
    lines = message["text"].splitlines()
    assert lines[0] == "⚠️ Riesgo CRÍTICO de falla: Camión <A&B>_01"
    assert f"Orden de trabajo {order.number} · Camión <A&B>_01 (CAM-AB01)" in lines
    assert f"Modo de falla: {MODE}" in lines and "Asignada a: Ana Rojas" in lines
    assert "&lt;" not in message["text"] and "&amp;" not in message["text"]  # escaped once, shown as typed
    [buttons] = message["reply_markup"]["inline_keyboard"]
    from cmms.models import WorkOrderOffer

    offers = {o.token: (o.work_order_id, o.decision, o.assignment_seq) for o in WorkOrderOffer.objects.all()}
    assert [b["text"] for b in buttons] == ["✅ Aceptar", "❌ Rechazar"]
    # Opaque tokens of stored offers, not the order's id.
    assert [offers[b["callback_data"]] for b in buttons] == [(order.pk, "accept", 1), (order.pk, "reject", 1)]
    assert InAppNotification.objects.filter(user=operator, related_object_id=str(order.pk)).count() == 1
    order.refresh_from_db()
    assert (order.status, order.assignee) == ("ASSIGNED", operator)


@pytest.mark.e2e
def test_the_worker_runs_the_overdue_reminder_task_from_the_default_queue(e2e):
    from datetime import timedelta

    from django.utils import timezone

    from cmms.tasks import send_overdue_reminders
    from tests.support.cmms import make_work_order

    operator = make_operator(telegram=100003)
    order = make_work_order(due_at=timezone.now() - timedelta(hours=1))
    order.assign(operator, notify=False)
    send_overdue_reminders.delay()  # what beat publishes, routed to the default queue
    log = wait_for(lambda: MessageLog.objects.filter(message_type="work_order_overdue").first(), timeout=15,
                   message="the overdue reminder")
    wait_for_status([log.pk])
    [message] = e2e.messages(chat_id=100003)
    assert f"Orden de trabajo vencida: {order.number}" in message["text"]


@pytest.mark.e2e
def test_a_slow_telegram_api_does_not_slow_record_prediction(e2e):
    e2e.configure(latency_ms=10_000)
    # A chat no other test reads: the slow call may finish after this test.
    make_operator(telegram=990001)
    predict(make_asset())

    # record_prediction has returned, and the message is not delivered yet.
    assert telegram_log().status in ("QUEUED", "SENDING")
    # The worker is the one waiting: it holds the message inside the 10 s call.
    wait_for_status([telegram_log().pk], statuses=("SENDING",), timeout=10)
    assert e2e.messages(chat_id=990001) == []
    e2e.configure(latency_ms=0)


@pytest.mark.e2e
@pytest.mark.fault
def test_with_redis_down_record_prediction_returns_and_the_alert_arrives_once_redis_is_back(e2e, redis_server):
    # Its own Redis and worker: stopping the session's Redis would break the other tests.
    redis = RedisServer().start()
    worker = Worker(worker_env(redis.url, e2e.url, DELIVERY_RELAY_UNPUBLISHED_AFTER_S=1), concurrency=2,
                    extra_args=["-Q", "default,telegram,inapp"]).start()
    try:
        use_broker(redis.url)
        make_operator(telegram=100002)
        asset = make_asset()
        redis.stop()

        started = time.monotonic()
        prediction = predict(asset)  # no exception for the ML caller
        elapsed = time.monotonic() - started
        assert elapsed < 2.0, f"record_prediction took {elapsed:.2f} s with Redis down"
        log = telegram_log()
        assert prediction.alerted and (log.status, log.published_at) == ("QUEUED", None)

        redis.start()  # same port
        use_broker(redis.url)
        # What beat does every few seconds: the relay publishes rows left QUEUED.
        from workers.tasks import relay_outbox

        wait_for(lambda: time.monotonic() - started > 1.1, timeout=5, message="the relay's grace period")
        relay_outbox.apply_async(queue="default")
        wait_for_status([log.pk], timeout=30)
        [message] = e2e.messages(chat_id=100002)
        assert prediction.work_order.number in message["text"]
    finally:
        worker.stop()
        redis.close()
        use_broker(redis_server.url)
