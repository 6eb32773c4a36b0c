"""SMS end to end: a real Celery worker sends through the Twilio sandbox over
HTTP, the sandbox posts signed status callbacks and inbound SMS to a live
Django server, and the worker applies them.

This module runs its own Redis and worker (configured for Twilio, with
SITE_URL at the live server), so the session's worker never takes an SMS task.
"""

import pytest
import requests

from cmms.models import WorkOrderStatus
from cmms.predictions import record_prediction
from notifications.models import InboundEvent, MessageLog, UserChannelPreference
from sandbox.twilio import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, DEFAULT_FROM, sign
from tests.conftest import point_broker_at, wait_for_status, worker_env
from tests.support.cmms import make_asset, make_operator
from tests.support.processes import RedisServer, Worker, wait_for

pytestmark = pytest.mark.e2e
PHONE = "+56987654321"


@pytest.fixture(scope="module")
def sms_worker(django_db_setup, django_db_blocker, redis_server, telegram_sandbox, twilio_server, live_server):
    redis = RedisServer().start()
    point_broker_at(redis.url)
    env = worker_env(redis.url, telegram_sandbox.url, TWILIO_API_URL=twilio_server.url,
                     TWILIO_ACCOUNT_SID=DEFAULT_ACCOUNT_SID, TWILIO_AUTH_TOKEN=DEFAULT_AUTH_TOKEN,
                     TWILIO_FROM_NUMBER=DEFAULT_FROM, SITE_URL=live_server.url, RATE_LIMIT_SMS_ACCOUNT="20/s",
                     DELIVERY_BACKOFF_BASE_S="0.5")
    worker = Worker(env, concurrency=4).start()
    yield worker
    worker.stop()
    redis.close()
    point_broker_at(redis_server.url)


@pytest.fixture
def sms(sms_worker, twilio, sandbox, live_server, settings, transactional_db):
    """The Twilio sandbox (callbacks quick, inbound to the live server) and this
    process's settings as the live server must see them."""
    settings.SITE_URL = live_server.url
    twilio.configure(callback_delay_s=0.05, delivered_delay_s=0.05, inbound_url=f"{live_server.url}/sms/twilio/inbound/")
    return twilio


def operator(phone=PHONE, telegram=100001):
    user = make_operator(telegram=telegram, first_name="Ana", last_name="Rojas")
    UserChannelPreference.objects.create(user=user, channel_type="SMS", channel_user_id=phone)
    return user


def predict(asset, risk):
    return record_prediction(asset=asset, failure_mode="Sobrecalentamiento de motor", probability=0.91,
                             risk_level=risk, time_to_failure_hours=12, model_version="engine-v3")


def sms_log():
    return MessageLog.objects.get(channel_type="SMS", message_type="prediction_high_risk")


def test_a_critical_prediction_reaches_the_operator_by_telegram_and_sms_and_is_delivered(sms, sandbox):
    user = operator()
    order = predict(make_asset(code="CAM-07", name="Camión 07"), "CRITICAL").work_order
    wait_for_status([sms_log().pk], statuses=("DELIVERED",))
    telegram = MessageLog.objects.get(channel_type="TELEGRAM", user=user)
    wait_for_status([telegram.pk])
    [text] = sandbox.messages(chat_id=100001)
    [message] = sms.messages(to=PHONE)
    lines = message["body"].splitlines()
    assert lines[0] == "ALERTA CMMS: Riesgo CRÍTICO de falla: Camión 07"
    assert lines[1] == f"Orden de trabajo {order.number} · Camión 07 (CAM-07)"
    assert lines[2] == f"Responda ACEPTAR {order.number} o RECHAZAR {order.number}"
    assert "Camión 07" in text["text"]
    log = sms_log()
    assert log.provider_message_id == message["sid"] and log.recipient == PHONE
    assert log.payload["delivery"] == {"segments": message["num_segments"], "encoding": "UCS-2",
                                       "price": message["price"], "price_unit": "USD"}
    assert log.sent_at <= log.delivered_at
    assert [c["params"]["MessageStatus"] for c in sms.callbacks()] == ["sent", "delivered"]
    assert all(c["answer"] == 204 for c in sms.callbacks())


def test_the_auth_token_never_reaches_the_log_or_the_rows(sms, sms_worker):
    sms.configure(auth_ok=False)  # Twilio refuses the credentials: a configuration error is recorded
    operator(telegram=None)
    predict(make_asset(), "CRITICAL")
    wait_for(lambda: sms_log().last_error, timeout=20, message="the configuration error")
    log = sms_log()
    assert log.status == "RETRYING" and "TWILIO_AUTH_TOKEN" in log.last_error
    rows = list(MessageLog.objects.values_list("last_error", "payload")) + list(InboundEvent.objects.values_list(
        "error", "payload"))
    assert DEFAULT_AUTH_TOKEN not in repr(rows) and DEFAULT_AUTH_TOKEN not in sms_worker.log()


def test_a_normal_prediction_does_not_go_by_sms(sms, sandbox):
    user = operator()
    predict(make_asset(), "MEDIUM")
    telegram = MessageLog.objects.get(channel_type="TELEGRAM", user=user)
    wait_for_status([telegram.pk])
    assert not MessageLog.objects.filter(channel_type="SMS").exists()
    assert sms.messages() == []


def test_21211_fails_the_message_and_marks_the_number_unreachable(sms):
    sms.set_number(PHONE, "invalid")
    user = operator(telegram=None)
    predict(make_asset(), "CRITICAL")
    wait_for_status([sms_log().pk], statuses=("FAILED",))
    assert sms_log().last_error.startswith("Twilio 21211: ") and sms_log().attempts == 1
    pref = UserChannelPreference.objects.get(user=user, channel_type="SMS")
    assert pref.is_reachable is False and "21211" in pref.unreachable_reason


def test_21610_fails_the_message_records_the_opt_out_and_later_alerts_skip_the_number(sms):
    sms.set_number(PHONE, "stopped")
    user = operator(telegram=None)
    predict(make_asset(), "CRITICAL")
    wait_for_status([sms_log().pk], statuses=("FAILED",))
    assert sms_log().last_error.startswith("Twilio 21610: ")
    pref = UserChannelPreference.objects.get(user=user, channel_type="SMS")
    assert pref.opted_out_at is not None and pref.is_reachable is True
    predict(make_asset(), "CRITICAL")
    later = MessageLog.objects.filter(channel_type="SMS").order_by("-pk").first()
    assert later.status == "SKIPPED" and "STOP" in later.last_error


def test_20429_is_retried_with_backoff_and_then_sent(sms):
    sms.configure(force_429=1)
    operator(telegram=None)
    predict(make_asset(), "CRITICAL")
    wait_for_status([sms_log().pk], statuses=("DELIVERED",))
    assert sms.stats()["errors_by_code"] == {"20429": 1}
    assert sms_log().attempts == 2 and len(sms.messages(to=PHONE)) == 1


def test_out_of_order_and_repeated_callbacks_end_delivered(sms):
    sms.configure(callback_order="reversed", callback_repeat=2)
    operator(telegram=None)
    predict(make_asset(), "CRITICAL")
    wait_for(lambda: len(sms.callbacks()) == 4, timeout=20, message="four callbacks")
    wait_for(lambda: InboundEvent.objects.filter(provider="SMS", status__in=("RECEIVED", "PROCESSING")).count() == 0
             and InboundEvent.objects.filter(provider="SMS").count() == 2, timeout=20, message="receipts processed")
    assert [c["params"]["MessageStatus"] for c in sms.callbacks()] == ["delivered", "delivered", "sent", "sent"]
    assert sms_log().status == "DELIVERED"


def test_undelivered_receipt_records_the_reason(sms):
    sms.set_number(PHONE, "undelivered")
    operator(telegram=None)
    predict(make_asset(), "CRITICAL")
    wait_for_status([sms_log().pk], statuses=("UNDELIVERED",))
    assert sms_log().last_error == "Twilio 30003: unreachable destination handset"


def test_a_forged_or_altered_callback_is_refused_with_403_and_changes_nothing(sms, live_server):
    operator(telegram=None)
    predict(make_asset(), "CRITICAL")
    wait_for_status([sms_log().pk], statuses=("DELIVERED",))
    events = InboundEvent.objects.count()
    url = f"{live_server.url}/sms/twilio/status/"
    genuine = {"MessageSid": sms_log().provider_message_id, "MessageStatus": "delivered", "To": PHONE}
    signature = sign(DEFAULT_AUTH_TOKEN, url, genuine)
    altered = {**genuine, "MessageStatus": "undelivered", "ErrorCode": "30003"}
    forged = requests.post(url, data=altered, headers={"X-Twilio-Signature": sign("not-the-token", url, altered)})
    replayed = requests.post(url, data=altered, headers={"X-Twilio-Signature": signature})
    assert (forged.status_code, replayed.status_code) == (403, 403)
    assert InboundEvent.objects.count() == events and sms_log().status == "DELIVERED"


def test_stop_from_the_phone_opts_the_number_out(sms):
    user = operator(telegram=None)
    answer = sms.send_inbound(PHONE, "STOP")
    assert answer["answer"] == 200
    wait_for(lambda: UserChannelPreference.objects.get(user=user, channel_type="SMS").opted_out_at, timeout=20,
             message="the opt-out")
    predict(make_asset(), "CRITICAL")
    assert sms_log().status == "SKIPPED"
    assert sms.messages(to=PHONE)[0]["direction"] == "inbound" and len(sms.messages(to=PHONE)) == 1


def test_aceptar_from_the_phone_accepts_the_order_and_answers_by_sms(sms):
    user = operator(telegram=None)
    order = predict(make_asset(), "CRITICAL").work_order
    wait_for_status([sms_log().pk], statuses=("DELIVERED",))
    sms.send_inbound(PHONE, f"ACEPTAR {order.number}")
    reply = wait_for(lambda: MessageLog.objects.filter(message_type="sms_reply", status="DELIVERED").first(),
                     timeout=20, message="the reply")
    order.refresh_from_db()
    assert (order.status, order.decided_by, order.decided_via) == (WorkOrderStatus.ACCEPTED, user, "SMS")
    assert sms.messages(to=PHONE)[-1]["body"] == reply.body == f"✅ Orden de trabajo {order.number} aceptada por Ana Rojas."
