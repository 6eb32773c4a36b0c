"""End to end: work order -> router -> Redis -> real Celery worker -> WhatsApp
sandbox over HTTP -> signed webhooks -> this process's web server
(/whatsapp/webhook/) -> inbound events -> the worker again."""

from datetime import timedelta

import pytest
from django.utils import timezone

from cmms.models import WorkOrder, WorkOrderStatus
from notifications.models import (
    ChannelType,
    InboundEvent,
    MessageLog,
    MessageStatus,
    UserChannelPreference,
    WhatsAppTemplate,
)
from sandbox import whatsapp as wsb
from tests.conftest import wait_for_status
from tests.support.cmms import make_operator, make_work_order
from tests.support.processes import wait_for

pytestmark = pytest.mark.e2e
_phones = iter(range(56987600001, 56987699999))


@pytest.fixture
def wa(e2e, whatsapp_sandbox, live_server, settings):
    """The WhatsApp sandbox, emptied, posting its webhooks to this process's web server."""
    whatsapp_sandbox.reset(config=True)
    whatsapp_sandbox.configure(webhook_url=f"{live_server.url}/whatsapp/webhook/", status_delay_s=0.05)
    settings.WHATSAPP_APP_SECRET = wsb.DEFAULT_APP_SECRET
    return whatsapp_sandbox


def technician(window=True, sandbox=None):
    """An operator on WhatsApp only; ``window``: they wrote to us an hour ago
    (and so the sandbox, like Meta, lets free-form messages through)."""
    phone = f"+{next(_phones)}"
    user = make_operator(in_app=False)
    opened = timezone.now() - timedelta(hours=1) if window else None
    UserChannelPreference.objects.create(user=user, channel_type=ChannelType.WHATSAPP, channel_user_id=phone,
                                         window_opened_at=opened)
    if window and sandbox:
        sandbox.open_window(phone)
    return user, phone


def assign(user):
    order = make_work_order()
    order.assign(user)
    log = MessageLog.objects.get(user=user, channel_type=ChannelType.WHATSAPP, related_object_id=str(order.pk))
    return order, log


def template_mapping(**fields):
    return WhatsAppTemplate.objects.create(**{
        "message_type": "work_order_assigned", "name": "cmms_orden_asignada", "language": "es",
        "parameters": ["number", "title", "asset_name", "due_at"], "quick_reply_buttons": 2, **fields})


def order_status(order):
    return WorkOrder.objects.filter(pk=order.pk).values_list("status", flat=True).first()


def test_inside_the_window_the_assignment_comes_with_buttons_and_pressing_accept_accepts_the_order(wa):
    user, phone = technician(sandbox=wa)
    order, log = assign(user)
    wait_for_status([log.pk], ("SENT", "DELIVERED", "READ"))
    (offer,) = wa.sent(phone)
    assert offer["type"] == "interactive" and order.number in offer["text"]
    assert [b["title"] for b in offer["buttons"]] == ["✅ Aceptar", "❌ Rechazar"]
    wa.user_message(phone, button_id=offer["buttons"][0]["id"])
    wait_for(lambda: order_status(order) == WorkOrderStatus.ACCEPTED, timeout=30, message="the order accepted")
    order.refresh_from_db()
    assert order.decided_by == user and order.decided_via == "WHATSAPP"
    wait_for(lambda: len(wa.sent(phone)) == 2, timeout=30, message="the confirmation")
    assert order.number in wa.sent(phone)[1]["text"] and "aceptada" in wa.sent(phone)[1]["text"]
    wait_for_status([log.pk], ("DELIVERED", "READ"))


def test_outside_the_window_the_template_goes_and_its_quick_reply_accepts_too(wa):
    template_mapping()
    user, phone = technician(window=False)
    order, log = assign(user)
    wait_for_status([log.pk], ("SENT", "DELIVERED"))
    (offer,) = wa.sent(phone)
    assert offer["type"] == "template" and offer["template"]["name"] == "cmms_orden_asignada"
    assert offer["template"]["parameters"][:2] == [order.number, order.title]
    wa.user_message(phone, button_id=offer["buttons"][0]["id"])
    wait_for(lambda: order_status(order) == WorkOrderStatus.ACCEPTED, timeout=30, message="the order accepted")


def test_a_131047_status_after_a_free_form_send_resends_the_template_once(wa):
    template_mapping()
    user, phone = technician(window=True)  # we think the window is open; Meta (the sandbox) does not
    _order, log = assign(user)
    wait_for_status([log.pk], ("UNDELIVERED",))
    wait_for(lambda: [m["type"] for m in wa.sent(phone)] == ["interactive", "template"], timeout=30,
             message="the template after the 131047")
    copy = MessageLog.objects.get(idempotency_key=f"wa-131047:{log.pk}")
    wait_for_status([copy.pk], ("SENT", "DELIVERED"))
    posted = len(wa.webhooks())
    wa.post_status(wa.sent(phone)[0]["id"], "failed", code=131047)  # Meta says it again
    wait_for(lambda: [w["status"] for w in wa.webhooks()[posted:]][-1:] == [200], timeout=30,
             message="the repeated status accepted")
    assert [m["type"] for m in wa.sent(phone)] == ["interactive", "template"]
    assert MessageLog.objects.filter(user=user).count() == 2
    assert UserChannelPreference.objects.get(user=user, channel_type="WHATSAPP").window_opened_at is None
    assert "131047" in MessageLog.objects.get(pk=log.pk).last_error


def test_a_131047_answer_falls_back_to_the_template_in_the_same_attempt(wa):
    template_mapping()
    wa.configure(reengagement="sync")
    user, phone = technician(window=True)
    _order, log = assign(user)
    wait_for_status([log.pk], ("SENT", "DELIVERED"))
    (offer,) = wa.sent(phone)
    assert offer["type"] == "template" and MessageLog.objects.get(pk=log.pk).provider_message_id == offer["id"]
    assert MessageLog.objects.get(pk=log.pk).attempts == 1


def test_a_webhook_signed_with_another_secret_is_refused_and_the_press_does_nothing(wa):
    user, phone = technician(sandbox=wa)
    order, log = assign(user)
    wait_for_status([log.pk], ("SENT", "DELIVERED"))
    wa.configure(app_secret="forged-secret")
    wa.user_message(phone, button_id=wa.sent(phone)[0]["buttons"][0]["id"])
    wait_for(lambda: any(w["status"] == 403 for w in wa.webhooks()), timeout=30, message="a refused webhook")
    assert order_status(order) == WorkOrderStatus.ASSIGNED
    assert not InboundEvent.objects.filter(kind="interactive").exists()


@pytest.mark.parametrize("order_of_receipts", [("delivered", "read"), ("read", "delivered")])
def test_read_and_delivered_in_either_order_end_read(wa, order_of_receipts):
    wa.configure(deliver=False)
    user, _phone = technician(sandbox=wa)
    _order, log = assign(user)
    wait_for_status([log.pk], ("SENT",))
    wamid = MessageLog.objects.get(pk=log.pk).provider_message_id
    for state in order_of_receipts:
        wa.post_status(wamid, state)
    wait_for_status([log.pk], ("READ",))
    wait_for(lambda: InboundEvent.objects.filter(kind="status", status="PROCESSED").count() >= 3, timeout=30,
             message="every receipt processed")
    row = MessageLog.objects.get(pk=log.pk)
    assert row.status == MessageStatus.READ and row.delivered_at is not None and row.read_at is not None


def test_a_user_who_never_wrote_and_a_type_without_template_is_skipped_with_the_reason(wa):
    user, phone = technician(window=False)
    _order, log = assign(user)
    wait_for_status([log.pk], ("SKIPPED",))
    assert "24" in MessageLog.objects.get(pk=log.pk).last_error
    assert "work_order_assigned" in MessageLog.objects.get(pk=log.pk).last_error
    assert wa.sent(phone) == []


def test_a_text_from_the_user_opens_the_window_and_gets_the_help_reply(wa):
    user, phone = technician(window=False)
    wa.user_message(phone, text="hola")
    wait_for(lambda: len(wa.sent(phone)) == 1, timeout=30, message="the help reply")
    assert wa.sent(phone)[0]["type"] == "text" and "24" in wa.sent(phone)[0]["text"]
    assert UserChannelPreference.objects.get(user=user, channel_type="WHATSAPP").window_opened_at is not None
