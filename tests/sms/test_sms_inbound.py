"""Twilio's webhooks: only signed requests are recorded, and what a worker
does with them (receipts move rows forward only; STOP/START; ACEPTAR and
RECHAZAR through cmms.actions.decide; anything else gets the help text)."""

import pytest
from django.test import Client
from django.utils import timezone

from cmms.models import WorkOrderStatus
from notifications import inbound, twilio_signature
from notifications.message_router import MessageRouter
from notifications.models import InboundEvent, MessageLog, UserChannelPreference
from sandbox.twilio import DEFAULT_AUTH_TOKEN, sign
from tests.support.cmms import make_operator, make_work_order

pytestmark = pytest.mark.django_db
SITE = "https://cmms.example.com"
STATUS_PATH = "/sms/twilio/status/"
INBOUND_PATH = "/sms/twilio/inbound/"
PHONE = "+56987654321"


@pytest.fixture(autouse=True)
def twilio_settings(settings, monkeypatch):
    settings.SITE_URL = SITE
    settings.TWILIO_AUTH_TOKEN = DEFAULT_AUTH_TOKEN
    settings.ALLOWED_HOSTS = ["cmms.example.com"]
    published = []
    monkeypatch.setattr(inbound, "publish_event", lambda pk, countdown=None: published.append(pk) or True)
    monkeypatch.setattr("notifications.dispatch.publish", lambda rows, **kw: len(rows))
    return published


def post(path, params, signature=None, url=None):
    signature = signature if signature is not None else sign(DEFAULT_AUTH_TOKEN, url or SITE + path, params)
    return Client(HTTP_HOST="cmms.example.com").post(path, params, HTTP_X_TWILIO_SIGNATURE=signature)


def status(sid, state, **extra):
    return {"MessageSid": sid, "MessageStatus": state, "AccountSid": "AC1", "To": PHONE, "From": "+15005550006",
            **extra}


def process_all():
    for pk in InboundEvent.objects.filter(status="RECEIVED").order_by("pk").values_list("pk", flat=True):
        inbound.process(pk)


def sms_log(sid="SM1", state="SENT"):
    return MessageLog.objects.create(channel_type="SMS", recipient=PHONE, message_type="critical_alert", body="x",
                                     status=state, provider_message_id=sid)


# -- the signature -------------------------------------------------------------------
def test_our_signature_matches_the_sandboxes_independent_one():
    params = {"MessageSid": "SM1", "Body": "ACEPTAR OT-00042 ñ", "From": PHONE}
    assert twilio_signature.compute("tok", SITE + INBOUND_PATH, params) == sign("tok", SITE + INBOUND_PATH, params)


def test_a_signed_status_callback_is_recorded_once_per_sid_and_status(twilio_settings):
    assert post(STATUS_PATH, status("SM1", "sent")).status_code == 204
    assert post(STATUS_PATH, status("SM1", "sent")).status_code == 204  # Twilio retried it
    assert post(STATUS_PATH, status("SM1", "delivered")).status_code == 204
    assert sorted(InboundEvent.objects.values_list("event_id", "kind", "sender")) == [
        ("SM1:delivered", "status", PHONE), ("SM1:sent", "status", PHONE)]


def test_a_forged_signature_is_refused_and_records_nothing():
    response = post(STATUS_PATH, status("SM1", "delivered"), signature="Zm9yZ2Vk")
    assert response.status_code == 403
    assert InboundEvent.objects.count() == 0


def test_a_replayed_callback_with_one_parameter_changed_is_refused():
    original = status("SM1", "delivered")
    signature = sign(DEFAULT_AUTH_TOKEN, SITE + STATUS_PATH, original)
    assert post(STATUS_PATH, {**original, "MessageStatus": "undelivered"}, signature=signature).status_code == 403
    assert post(STATUS_PATH, {**original, "ErrorCode": "30003"}, signature=signature).status_code == 403
    assert InboundEvent.objects.count() == 0


def test_a_callback_signed_for_another_url_is_refused():
    params = status("SM1", "delivered")
    assert post(STATUS_PATH, params, url="https://evil.example.com" + STATUS_PATH).status_code == 403


def test_without_a_signature_or_a_token_nothing_is_accepted(settings):
    assert post(STATUS_PATH, status("SM1", "sent"), signature="").status_code == 403
    settings.TWILIO_AUTH_TOKEN = ""
    assert post(STATUS_PATH, status("SM1", "sent"), signature="anything").status_code == 403
    assert InboundEvent.objects.count() == 0


def test_the_url_is_accepted_with_or_without_its_default_port():
    params = status("SM1", "sent")
    assert post(STATUS_PATH, params, url="https://cmms.example.com:443" + STATUS_PATH).status_code == 204


def test_get_is_not_allowed():
    assert Client(HTTP_HOST="cmms.example.com").get(STATUS_PATH).status_code == 405


# -- receipts ------------------------------------------------------------------------
def test_receipts_move_the_row_to_delivered_and_a_late_sent_changes_nothing():
    row = sms_log()
    post(STATUS_PATH, status("SM1", "delivered"))
    post(STATUS_PATH, status("SM1", "sent"))  # out of order
    process_all()
    row.refresh_from_db()
    assert row.status == "DELIVERED" and row.delivered_at is not None
    assert sorted(InboundEvent.objects.values_list("event_id", "status")) == [
        ("SM1:delivered", "PROCESSED"), ("SM1:sent", "PROCESSED")]


def test_undelivered_records_the_error_code_and_its_meaning():
    row = sms_log()
    post(STATUS_PATH, status("SM1", "undelivered", ErrorCode="30003"))
    process_all()
    row.refresh_from_db()
    assert row.status == "UNDELIVERED" and row.failed_at is not None
    assert row.last_error == "Twilio 30003: unreachable destination handset"


def test_a_failure_report_after_delivered_does_not_undo_the_delivery():
    row = sms_log(state="DELIVERED")
    post(STATUS_PATH, status("SM1", "failed", ErrorCode="30008"))
    process_all()
    row.refresh_from_db()
    assert row.status == "DELIVERED"


def test_a_receipt_before_the_send_is_recorded_waits_for_it():
    post(STATUS_PATH, status("SM9", "delivered"))
    event = InboundEvent.objects.get()
    assert inbound.process(event.pk)[0] == "RECEIVED"  # RetryLater: tried again, no attempt counted
    sms_log(sid="SM9")
    assert inbound.process(event.pk)[0] == "PROCESSED"
    assert MessageLog.objects.get().status == "DELIVERED"


def test_queued_and_sending_statuses_are_ignored_with_the_reason():
    sms_log()
    post(STATUS_PATH, status("SM1", "queued"))
    process_all()
    event = InboundEvent.objects.get()
    assert event.status == "IGNORED" and "queued" in event.outcome


# -- inbound SMS ---------------------------------------------------------------------
def operator_with_phone(**fields):
    user = make_operator(telegram=None, **fields)
    UserChannelPreference.objects.create(user=user, channel_type="SMS", channel_user_id=PHONE)
    return user


def inbound_sms(body, sid="SMin1", sender=PHONE):
    params = {"MessageSid": sid, "AccountSid": "AC1", "From": sender, "To": "+15005550006", "Body": body,
              "NumMedia": "0", "FromCity": ""}
    response = post(INBOUND_PATH, params)
    assert response.status_code == 200 and b"<Response>" in response.content
    process_all()
    return InboundEvent.objects.get(event_id=sid)


def replies():
    return list(MessageLog.objects.filter(message_type="sms_reply").values_list("recipient", "body"))


def test_stop_opts_the_number_out_and_routing_skips_it_with_the_reason():
    user = operator_with_phone()
    event = inbound_sms("STOP")
    pref = UserChannelPreference.objects.get(user=user, channel_type="SMS")
    assert pref.opted_out_at is not None and event.user == user and "Opt-out" in event.outcome
    result = MessageRouter().send_to_user(user, "Alerta", "Motor", message_type="critical_alert", priority="critical")
    assert result["SMS"] is False
    log = MessageLog.objects.get(pk=result.message_ids["SMS"])
    assert log.status == "SKIPPED" and log.last_error.startswith("El destinatario se dio de baja (STOP) el ")
    assert replies() == []  # the carrier confirms a STOP; we do not text back


def test_start_opts_the_number_in_again():
    user = operator_with_phone()
    UserChannelPreference.objects.filter(user=user).update(opted_out_at=timezone.now())
    inbound_sms("start", sid="SMin2")
    assert UserChannelPreference.objects.get(user=user, channel_type="SMS").opted_out_at is None


def test_aceptar_accepts_the_senders_order_through_the_domain_action():
    user = operator_with_phone(first_name="Ana", last_name="Rojas")
    order = make_work_order()
    order.assign(user, notify=False)
    event = inbound_sms(f"aceptar {order.number}")
    order.refresh_from_db()
    assert (order.status, order.decided_by, order.decided_via) == (WorkOrderStatus.ACCEPTED, user, "SMS")
    assert replies() == [(PHONE, f"✅ Orden de trabajo {order.number} aceptada por Ana Rojas.")]
    assert event.status == "PROCESSED"


def test_rechazar_an_order_of_someone_else_is_refused_and_changes_nothing():
    operator_with_phone()
    other = make_operator()
    order = make_work_order()
    order.assign(other, notify=False)
    inbound_sms(f"RECHAZAR {order.number} no puedo")
    order.refresh_from_db()
    assert order.status == WorkOrderStatus.ASSIGNED and order.assignee == other
    [(_to, text)] = replies()
    assert text.startswith(f"La orden de trabajo {order.number} no está asignada a usted")


def test_anything_else_gets_the_help_text_once_even_if_processed_again():
    operator_with_phone()
    event = inbound_sms("hola?")
    [(_to, text)] = replies()
    assert text.startswith("CMMS: responda ACEPTAR OT-00042 o RECHAZAR OT-00042")
    InboundEvent.objects.filter(pk=event.pk).update(status="RECEIVED")
    inbound.process(event.pk)
    assert len(replies()) == 1


def test_an_sms_from_an_unknown_number_is_ignored_and_not_answered():
    event = inbound_sms("ACEPTAR OT-00001", sender="+56911111111")
    assert event.status == "IGNORED" and replies() == []
