"""WhatsApp: the adapter against the sandbox over HTTP, the window and
template decision, reply-button ids, the webhook view and status handling."""

import hashlib
import hmac
import json
from datetime import timedelta

import pytest
from django.utils import timezone

from notifications import inbound
from notifications import whatsapp as wa
from notifications.channels import ChannelError, ConfigurationError, OutgoingMessage, SkipDelivery
from notifications.channels.whatsapp import WhatsAppChannel, button_title, classify, unique_titles
from notifications.models import (
    ChannelType,
    InboundEvent,
    MessageLog,
    MessageStatus,
    UserChannelPreference,
    WhatsAppTemplate,
)
from sandbox import whatsapp as wsb
from tests.factories import make_user

PHONE = "+56987650001"
TEMPLATE = {"name": "cmms_aviso", "language": "es", "parameters": ["OT-1", "Camión <A&B>"]}


@pytest.fixture
def sandbox(whatsapp_sandbox):
    whatsapp_sandbox.reset(config=True)
    return whatsapp_sandbox


@pytest.fixture
def channel(sandbox):
    return WhatsAppChannel(wsb.DEFAULT_TOKEN, wsb.DEFAULT_PHONE_NUMBER_ID, sandbox.api_url, timeout=5)


def session(buttons=(), template=None, **fields):
    message = OutgoingMessage(title=fields.pop("title", "Nueva OT"), body=fields.pop("body", "Camión <A&B>_01"),
                              emoji="📋", **fields)
    message.extras["whatsapp"] = {"mode": "session", "buttons": list(buttons), "template": template}
    return message


# -- the adapter against the sandbox ---------------------------------------------------
def test_inside_the_window_buttons_go_as_an_interactive_message_with_the_text_as_typed(sandbox, channel):
    sandbox.open_window(PHONE)
    wamid = channel.send(PHONE, session([{"id": "a", "title": "✅ Aceptar"}, {"id": "b", "title": "❌ Rechazar"}]))
    (sent,) = sandbox.sent(PHONE)
    assert sent["id"] == wamid and sent["type"] == "interactive" and sent["to"] == PHONE[1:]
    assert sent["text"] == "📋 *Nueva OT*\n\nCamión <A&B>_01"
    assert [b["title"] for b in sent["buttons"]] == ["✅ Aceptar", "❌ Rechazar"]


def test_a_text_longer_than_an_interactive_body_goes_first_and_the_buttons_follow(sandbox, channel):
    sandbox.open_window(PHONE)
    ids = channel.send(PHONE, session([{"id": "a", "title": "OK"}], body="palabra " * 300)).split(",")
    sent = sandbox.sent(PHONE)
    assert [m["type"] for m in sent] == ["text", "interactive"] and [m["id"] for m in sent] == ids
    assert sent[0]["text"].endswith("palabra") and sent[1]["text"] == "📋 Nueva OT"


def test_a_free_form_message_refused_with_131047_falls_back_to_the_template_in_the_same_attempt(sandbox, channel):
    sandbox.configure(reengagement="sync")
    wamid = channel.send(PHONE, session([{"id": "a", "title": "OK"}], template=TEMPLATE))
    (sent,) = sandbox.sent(PHONE)
    assert sent["type"] == "template" and sent["id"] == wamid and sent["text"] == "OT-1: Camión <A&B>"


def test_131047_without_a_template_is_a_permanent_error(sandbox, channel):
    sandbox.configure(reengagement="sync")
    with pytest.raises(ChannelError) as exc:
        channel.send(PHONE, session())
    assert exc.value.code == 131047 and exc.value.permanent and not exc.value.unreachable


def test_a_wrong_token_is_a_configuration_error_and_the_token_never_shows(sandbox):
    bad = WhatsAppChannel("EAAG-wrong-token-123456", wsb.DEFAULT_PHONE_NUMBER_ID, sandbox.api_url)
    with pytest.raises(ConfigurationError) as exc:
        bad.send(PHONE, session())
    assert exc.value.code == 190 and "EAAG-wrong-token-123456" not in str(exc.value) + repr(bad)


@pytest.mark.parametrize("code, retry_after, scope", [(130429, 2.0, "account"), (131056, 6.0, "recipient")])
def test_throughput_and_pair_rate_errors_are_retried_after_a_wait_on_their_own_scope(sandbox, channel, code,
                                                                                      retry_after, scope):
    sandbox.open_window(PHONE)
    sandbox.fail_next(PHONE[1:], code)
    with pytest.raises(ChannelError) as exc:
        channel.send(PHONE, session())
    assert (exc.value.code, exc.value.retry_after, exc.value.scope, exc.value.permanent) == (
        code, retry_after, scope, False)


def test_undeliverable_marks_the_address_and_a_server_error_is_retried(sandbox, channel):
    sandbox.open_window(PHONE)
    sandbox.fail_next(PHONE[1:], 131026)
    sandbox.fail_next(PHONE[1:], 131000)
    with pytest.raises(ChannelError) as first:
        channel.send(PHONE, session())
    with pytest.raises(ChannelError) as second:
        channel.send(PHONE, session())
    assert first.value.unreachable and first.value.permanent
    assert second.value.code == 131000 and not second.value.permanent


def test_a_template_whose_parameters_do_not_match_what_meta_approved_is_a_configuration_error(sandbox, channel):
    message = OutgoingMessage(title="t", body="b")
    message.extras["whatsapp"] = {"mode": "template", "template": {**TEMPLATE, "parameters": ["solo uno"]}}
    with pytest.raises(ConfigurationError) as exc:
        channel.send(PHONE, message)
    assert exc.value.code == 132000


def test_the_sandbox_refuses_what_meta_refuses(sandbox):
    def send(body):
        return sandbox.handle_send(wsb.DEFAULT_PHONE_NUMBER_ID, f"Bearer {wsb.DEFAULT_TOKEN}",
                                   {"messaging_product": "whatsapp", "to": PHONE[1:], **body})

    sandbox.open_window(PHONE)
    buttons = [{"type": "reply", "reply": {"id": str(i), "title": "t" * 21 if i == 0 else f"b{i}"}} for i in range(4)]
    interactive = {"type": "button", "body": {"text": "x"}, "action": {"buttons": buttons[:1]}}
    assert send({"type": "interactive", "interactive": interactive})[1]["error"]["code"] == 131009
    interactive["action"]["buttons"] = buttons[1:] + [buttons[1]]
    assert send({"type": "interactive", "interactive": interactive})[1]["error"]["code"] == 131009
    params = [{"type": "text", "text": "dos\nlíneas"}, {"type": "text", "text": "b"}]
    template = {"name": "cmms_aviso", "language": {"code": "es"}, "components": [{"type": "body",
                                                                                 "parameters": params}]}
    assert send({"type": "template", "template": template})[1]["error"]["code"] == 132018
    template["language"]["code"] = "en_US"
    assert send({"type": "template", "template": template})[1]["error"]["code"] == 132001


# -- button titles ---------------------------------------------------------------------
@pytest.mark.parametrize("title, expected", [
    ("✅ Aceptar", "✅ Aceptar"),
    ("✅ Aceptar y revisar el equipo ya", "✅ Aceptar y revisar…"),
    ("Reprogramar mantenimiento preventivo", "Reprogramar…"),
    ("👍🏽👍🏽👍🏽👍🏽👍🏽👍🏽👍🏽👍🏽👍🏽👍🏽👍🏽", "👍🏽👍🏽👍🏽👍🏽👍🏽👍🏽👍🏽👍🏽👍🏽…"),
])
def test_button_titles_are_cut_to_20_characters_at_words_and_never_inside_a_character(title, expected):
    assert button_title(title) == expected and len(expected) <= 20


def test_titles_that_become_equal_when_cut_are_made_unique():
    titles = unique_titles([button_title("Reprogramar para mañana"), button_title("Reprogramar para el lunes")])
    assert len(set(titles)) == 2 and all(len(t) <= 20 for t in titles)


def test_graph_api_error_codes_map_to_the_channel_contract():
    assert isinstance(classify(401, {"code": 190, "message": "expired"}), ConfigurationError)
    assert classify(500, {}).permanent is False
    assert classify(400, {"code": 131051, "message": "unsupported"}).permanent is True


# -- the window and templates ------------------------------------------------------------
def _log(user, message_type="work_order_assigned", **fields):
    return MessageLog.objects.create(user=user, channel_type=ChannelType.WHATSAPP, recipient=PHONE,
                                     message_type=message_type, title="OT-7", body="Cambio de aceite", **fields)


def _user(window_opened_at=None):
    user = make_user()
    UserChannelPreference.objects.create(user=user, channel_type=ChannelType.WHATSAPP, channel_user_id=PHONE,
                                         window_opened_at=window_opened_at)
    return user


@pytest.mark.django_db
def test_inside_the_window_prepare_chooses_text_with_signed_buttons():
    log = _log(_user(timezone.now() - timedelta(hours=23)), payload={"actions": [
        {"text": "✅ Aceptar", "callback_data": "wo:accept:1"}]})
    message = wa.prepare(log, OutgoingMessage(title=log.title, body=log.body, actions=log.payload["actions"]))
    plan = message.extras["whatsapp"]
    assert plan["mode"] == "session" and plan["buttons"][0]["title"] == "✅ Aceptar"
    assert wa.resolve_reply(plan["buttons"][0]["id"]) == (log, log.payload["actions"][0])


@pytest.mark.django_db
def test_outside_the_window_prepare_fills_the_template_parameters_in_order():
    WhatsAppTemplate.objects.create(message_type="work_order_assigned", name="cmms_orden_asignada",
                                    language="es_CL", parameters=["number", "asset", "title"])
    log = _log(_user(timezone.now() - timedelta(hours=25)),
               payload={"context": {"number": "OT-00007", "asset": "Camión\n<A&B>   01"}})
    plan = wa.prepare(log, OutgoingMessage(title=log.title, body=log.body)).extras["whatsapp"]
    assert plan == {"mode": "template", "template": {
        "name": "cmms_orden_asignada", "language": "es_CL", "parameters": ["OT-00007", "Camión <A&B> 01", "OT-7"],
        "buttons": []}}


@pytest.mark.django_db
def test_outside_the_window_without_a_template_prepare_skips_with_the_reason():
    log = _log(_user(None))
    with pytest.raises(SkipDelivery, match="work_order_assigned"):
        wa.prepare(log, OutgoingMessage(title=log.title, body=log.body))


@pytest.mark.django_db
def test_a_forged_or_altered_reply_id_resolves_to_nothing():
    log = _log(_user(), payload={"actions": [{"text": "✅", "callback_data": "wo:accept:1"}]})
    genuine = wa.reply_id(log.pk, 0)
    assert wa.resolve_reply(genuine) is not None
    assert wa.resolve_reply(genuine.replace(f".{log.pk}.", f".{log.pk + 1}.")) is None
    assert wa.resolve_reply(f"wa1.{log.pk}.0.{'0' * 20}") is None
    assert wa.resolve_reply("wo:accept:1") is None


# -- the webhook view ------------------------------------------------------------------
def _signed(client, body, secret=wsb.DEFAULT_APP_SECRET):
    raw = json.dumps(body).encode()
    signature = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return client.post("/whatsapp/webhook/", raw, content_type="application/json", HTTP_X_HUB_SIGNATURE_256=signature)


def _statuses(*pairs):
    return {"entry": [{"changes": [{"value": {"statuses": [
        {"id": wamid, "status": state, "timestamp": "1796000000", "recipient_id": PHONE[1:]}
        for wamid, state in pairs]}}]}]}


@pytest.fixture
def webhook_settings(settings, no_broker, monkeypatch):
    settings.WHATSAPP_APP_SECRET = wsb.DEFAULT_APP_SECRET
    settings.WHATSAPP_VERIFY_TOKEN = "verify-me"
    monkeypatch.setattr(inbound, "publish_event", lambda *a, **k: None)
    return settings


@pytest.mark.django_db
def test_the_verification_handshake_echoes_the_challenge_only_for_our_verify_token(client, webhook_settings):
    ok = client.get("/whatsapp/webhook/", {"hub.mode": "subscribe", "hub.verify_token": "verify-me",
                                           "hub.challenge": "1158201444"})
    wrong = client.get("/whatsapp/webhook/", {"hub.mode": "subscribe", "hub.verify_token": "guess",
                                              "hub.challenge": "1"})
    assert (ok.status_code, ok.content) == (200, b"1158201444") and wrong.status_code == 403


@pytest.mark.django_db
def test_a_post_with_a_forged_or_missing_signature_is_refused_and_records_nothing(client, webhook_settings):
    body = _statuses(("wamid.X", "delivered"))
    assert _signed(client, body, secret="not-the-app-secret").status_code == 403
    assert client.post("/whatsapp/webhook/", body, content_type="application/json").status_code == 403
    assert not InboundEvent.objects.exists()


@pytest.mark.django_db
def test_without_an_app_secret_every_post_is_refused(client, webhook_settings):
    webhook_settings.WHATSAPP_APP_SECRET = ""
    assert _signed(client, _statuses(("wamid.X", "sent")), secret="").status_code == 403


@pytest.mark.django_db
def test_a_signed_post_records_each_status_once_however_often_it_comes(client, webhook_settings):
    body = _statuses(("wamid.A", "sent"), ("wamid.A", "delivered"))
    assert _signed(client, body).status_code == 200
    assert _signed(client, body).status_code == 200
    assert sorted(InboundEvent.objects.values_list("event_id", flat=True)) == [
        "status:wamid.A:delivered", "status:wamid.A:sent"]


# -- statuses --------------------------------------------------------------------------
def _event(wamid, state, n=[0], **extra):  # noqa: B006 - a counter for unique event ids
    n[0] += 1
    event, _ = inbound.record("WHATSAPP", f"t{n[0]}", {"id": wamid, "status": state, "timestamp": "1796000000",
                                                      **extra}, kind="status", publish=False)
    return event


@pytest.mark.django_db
def test_a_status_for_a_send_not_recorded_yet_is_retried_later():
    with pytest.raises(inbound.RetryLater):
        wa.apply_status(_event("wamid.unknown", "delivered"))


@pytest.mark.django_db
def test_undeliverable_in_a_status_marks_the_address_unreachable():
    log = _log(_user(), status=MessageStatus.SENT, provider_message_id="wamid.U")
    wa.apply_status(_event("wamid.U", "failed", errors=[{"code": 131026, "message": "Message undeliverable"}]))
    log.refresh_from_db()
    pref = UserChannelPreference.objects.get(user=log.user)
    assert log.status == MessageStatus.UNDELIVERED and "131026" in log.last_error
    assert not pref.is_reachable and "131026" in pref.unreachable_reason


# -- the delivery policy with the real limiter and the sandbox -----------------------------
@pytest.fixture
def delivering(sandbox, limiter, settings):
    from workers import channels

    settings.WHATSAPP_API_URL = sandbox.api_url
    settings.WHATSAPP_ACCESS_TOKEN = wsb.DEFAULT_TOKEN
    settings.WHATSAPP_PHONE_NUMBER_ID = wsb.DEFAULT_PHONE_NUMBER_ID
    channels.reset()
    yield sandbox
    channels.reset()


def _queued(phone):
    user = make_user()
    UserChannelPreference.objects.create(user=user, channel_type=ChannelType.WHATSAPP, channel_user_id=phone,
                                         window_opened_at=timezone.now())
    return MessageLog.objects.create(user=user, channel_type=ChannelType.WHATSAPP, recipient=phone,
                                     message_type="announcement", title="Aviso", body="Corte de energía")


@pytest.mark.django_db
def test_a_pair_rate_error_defers_that_recipient_without_counting_an_attempt_and_others_go_on(delivering, limiter):
    from workers import channels, delivery

    busy, other = _queued("+56987650011"), _queued("+56987650012")
    for log in (busy, other):
        delivering.open_window(log.recipient)
    delivering.fail_next(busy.recipient.lstrip("+"), 131056)
    assert delivery.deliver(busy.pk) == "deferred"
    assert delivery.deliver(other.pk) == "sent"
    busy.refresh_from_db()
    assert busy.status == MessageStatus.QUEUED and busy.attempts == 0 and "131056" in busy.last_error
    assert busy.next_attempt_at > timezone.now() + timedelta(seconds=5)
    account = channels.account_id("WHATSAPP")
    waits = {phone: limiter.blocked_for(limiter.scopes_for("WHATSAPP", phone, account))[0]
             for phone in (busy.recipient, other.recipient)}
    assert waits[busy.recipient] > 5 and waits[other.recipient] == 0


@pytest.mark.django_db
def test_undeliverable_at_send_time_fails_the_message_and_marks_the_address(delivering):
    from workers import delivery

    log = _queued("+56987650013")
    delivering.open_window(log.recipient)
    delivering.fail_next(log.recipient.lstrip("+"), 131026)
    assert delivery.deliver(log.pk) == "failed"
    pref = UserChannelPreference.objects.get(user=log.user)
    assert not pref.is_reachable and "131026" in pref.unreachable_reason


@pytest.mark.django_db
def test_an_expired_token_is_retried_and_never_marks_the_address(delivering):
    from workers import delivery

    log = _queued("+56987650014")
    delivering.fail_next(log.recipient.lstrip("+"), 190)
    assert delivery.deliver(log.pk) == "retrying"
    log.refresh_from_db()
    assert log.status == MessageStatus.RETRYING and "WHATSAPP_ACCESS_TOKEN" in log.last_error
    assert UserChannelPreference.objects.get(user=log.user).is_reachable


@pytest.mark.django_db
def test_outside_the_window_without_template_the_worker_records_skipped_without_calling_meta(delivering):
    from workers import delivery

    log = _queued("+56987650015")
    UserChannelPreference.objects.filter(user=log.user).update(window_opened_at=None)
    assert delivery.deliver(log.pk) == "skipped"
    log.refresh_from_db()
    assert log.status == MessageStatus.SKIPPED and "24" in log.last_error and delivering.sent() == []


@pytest.mark.django_db
def test_a_131047_status_without_a_template_to_fall_back_to_resends_nothing(no_broker):
    log = _log(_user(timezone.now()), status=MessageStatus.SENT, provider_message_id="wamid.R")
    outcome = wa.apply_status(_event("wamid.R", "failed", errors=[{"code": 131047, "message": "Re-engagement"}]))
    assert "no template" in outcome and MessageLog.objects.count() == 1
    assert MessageLog.objects.get(pk=log.pk).status == MessageStatus.UNDELIVERED
    assert UserChannelPreference.objects.get(user=log.user).window_opened_at is None


# -- button presses (cmms.whatsapp), without the worker -----------------------------------
def _press(phone, reply, n=[0]):  # noqa: B006 - a counter for unique event ids
    n[0] += 1
    message = {"from": phone.lstrip("+"), "id": f"wamid.P{n[0]}", "timestamp": "1796000000", "type": "interactive",
               "interactive": {"type": "button_reply", "button_reply": {"id": reply, "title": "✅ Aceptar"}}}
    event, _ = inbound.record("WHATSAPP", f"message:{message['id']}", message, kind="interactive",
                              sender=message["from"], publish=False)
    return event


def _offer(user, phone):
    from tests.support.cmms import make_work_order

    order = make_work_order()
    order.assign(user)
    log = MessageLog.objects.get(user=user, channel_type=ChannelType.WHATSAPP, related_object_id=str(order.pk))
    return order, wa.reply_id(log.pk, 0)


@pytest.mark.django_db
def test_a_press_from_another_number_with_a_genuine_button_id_changes_nothing(no_broker):
    from cmms import whatsapp as handler
    from cmms.models import WorkOrderStatus

    assignee, intruder = _user(timezone.now()), make_user(role="SUPERVISOR")
    UserChannelPreference.objects.create(user=intruder, channel_type=ChannelType.WHATSAPP,
                                         channel_user_id="+56987650099")
    order, reply = _offer(assignee, PHONE)
    outcome = handler.handle(_press("+56987650099", reply))
    order.refresh_from_db()
    assert "otro número" in outcome and order.status == WorkOrderStatus.ASSIGNED


@pytest.mark.django_db
def test_a_press_on_an_offer_made_before_a_reassignment_is_refused_as_stale(no_broker):
    from cmms import whatsapp as handler
    from cmms.models import WorkOrderStatus

    user = _user(timezone.now())
    order, old_reply = _offer(user, PHONE)
    order.assign(make_user())
    order.assign(user)  # the same person again: a new offer, the old button is stale
    outcome = handler.handle(_press(PHONE, old_reply))
    order.refresh_from_db()
    assert "ya no está vigente" in outcome and order.status == WorkOrderStatus.ASSIGNED


@pytest.mark.django_db
def test_a_message_from_a_number_nobody_has_is_ignored():
    from cmms import whatsapp as handler

    with pytest.raises(inbound.Ignore):
        handler.handle(_press("+56987650098", "wa1.1.0.00000000000000000000"))


@pytest.mark.django_db
def test_templates_are_editable_in_the_admin(admin_client):
    assert admin_client.get("/admin/notifications/whatsapptemplate/add/").status_code == 200
    answer = admin_client.post("/admin/notifications/whatsapptemplate/add/", {
        "message_type": "critical_alert", "name": "cmms_alerta", "language": "es_CL",
        "parameters": '["title", "body"]', "quick_reply_buttons": 0, "is_active": "on"})
    assert answer.status_code == 302
    assert WhatsAppTemplate.objects.get(message_type="critical_alert").parameters == ["title", "body"]


@pytest.mark.django_db
def test_a_131047_status_handled_twice_resends_the_template_only_once(no_broker, django_capture_on_commit_callbacks):
    WhatsAppTemplate.objects.create(message_type="work_order_assigned", name="cmms_aviso", parameters=["title"])
    log = _log(_user(timezone.now()), status=MessageStatus.SENT, provider_message_id="wamid.T")
    failed = {"errors": [{"code": 131047, "message": "Re-engagement message"}]}
    with django_capture_on_commit_callbacks(execute=True):
        first = wa.apply_status(_event("wamid.T", "failed", **failed))
    MessageLog.objects.filter(pk=log.pk).update(status=MessageStatus.SENT)  # the handler runs again (a retry)
    with django_capture_on_commit_callbacks(execute=True):
        second = wa.apply_status(_event("wamid.T", "failed", **failed))
    copy = MessageLog.objects.get(idempotency_key=f"wa-131047:{log.pk}")
    assert "resent as template" in first and "already resent" in second
    assert copy.payload["whatsapp"] == {"force_template": True, "fallback_of": log.pk}
    assert no_broker == [(copy.pk, "WHATSAPP")]
