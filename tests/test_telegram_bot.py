"""The bot's pieces, one at a time: link tokens, what is stored of an update,
muting, durations, early callback answers and the poller's 409 message.
Telegram is the sandbox over HTTP; no worker is needed."""

from datetime import timedelta

import pytest
from django.utils import timezone

from cmms.telegram_bot import CallbackAnswer, parse_duration
from notifications.channels import ChannelError
from notifications.message_router import MessageRouter
from notifications.models import MessageLog, TelegramLinkToken, UserChannelPreference
from notifications.telegram_link import LinkRefused, consume, create_token, token_hash
from notifications.telegram_updates import without_secrets
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def test_a_link_token_is_stored_only_as_its_hash_and_links_once():
    user = make_user()
    token = create_token(user)
    stored = TelegramLinkToken.objects.get()
    assert stored.token_hash == token_hash(token) and token not in stored.token_hash
    assert consume(token_hash(token), 4242).user == user
    with pytest.raises(LinkRefused, match="ya se usó"):
        consume(token_hash(token), 4243)
    assert UserChannelPreference.objects.get(user=user).channel_user_id == "4242"


def test_an_expired_or_unknown_token_changes_nothing():
    user = make_user()
    token = create_token(user, now=timezone.now() - timedelta(hours=25))
    with pytest.raises(LinkRefused, match="venció"):
        consume(token_hash(token), 4244)
    with pytest.raises(LinkRefused, match="no es válido"):
        consume(token_hash("nunca-emitido"), 4244)
    assert not UserChannelPreference.objects.exists()
    assert TelegramLinkToken.objects.get().used_at is None


def test_linking_a_chat_another_user_had_moves_it_to_the_new_user():
    old = make_user(telegram=4245)
    new = make_user()
    linked = consume(token_hash(create_token(new)), 4245)
    assert linked.previous_user == old
    assert UserChannelPreference.objects.get(user=old).channel_user_id == ""


def test_the_stored_update_has_the_start_token_replaced_by_its_hash():
    update = {"update_id": 1, "message": {"chat": {"id": 5}, "text": "/start s3cr3t-t0ken", "entities": []}}
    stored = without_secrets(update)
    assert stored["message"]["text"] == f"/start hash:{token_hash('s3cr3t-t0ken')}"
    assert update["message"]["text"] == "/start s3cr3t-t0ken"  # the caller's copy is untouched


def test_a_muted_preference_gets_only_critical_messages(no_broker):
    user = make_user(telegram=4246)
    UserChannelPreference.objects.filter(user=user).update(muted_until=timezone.now() + timedelta(hours=2))
    assert MessageRouter().send_to_user(user, "t", "normal", priority="high") == {}
    assert MessageRouter().send_to_user(user, "t", "crítico", priority="critical") == {"TELEGRAM": True}
    UserChannelPreference.objects.filter(user=user).update(muted_until=timezone.now() - timedelta(seconds=1))
    assert MessageRouter().send_to_user(user, "t", "otra vez", priority="low") == {"TELEGRAM": True}
    assert MessageLog.objects.count() == 2


@pytest.mark.parametrize("text, expected", [
    ("2h", timedelta(hours=2)), ("30m", timedelta(minutes=30)), ("1d", timedelta(days=1)), ("3", timedelta(hours=3)),
    ("30d", timedelta(days=7)), ("0h", None), ("mañana", None), ("", None),
])
def test_mute_durations(text, expected):
    assert parse_duration(text) == expected


def test_slow_work_answers_the_press_in_time_and_sends_the_outcome_as_a_message(sandbox, settings):
    settings.TELEGRAM_CALLBACK_ANSWER_AFTER_S = 0.05
    sandbox.inject_message(4247, "hola")  # the chat exists
    query = sandbox.inject_callback(4247, 1, "x")["callback_query"]
    import time

    with CallbackAnswer(query, 4247) as answer:
        time.sleep(0.5)  # the decision takes longer than the answer may wait
        answer.say("✅ Orden aceptada")
    [answered] = sandbox.callback_answers()
    assert answered["ok"] and answered["text"] == "⏳ Procesando…"
    assert sandbox.messages(chat_id=4247)[-1]["text"] == "✅ Orden aceptada"


def test_a_failure_still_answers_the_press(sandbox):
    query = sandbox.inject_callback(4248, 1, "x")["callback_query"]
    with pytest.raises(RuntimeError), CallbackAnswer(query, 4248):
        raise RuntimeError("database down")
    [answered] = sandbox.callback_answers()
    assert answered["ok"] and "no se cambió nada" in answered["text"]


def test_the_poller_explains_a_409_when_a_webhook_is_set(sandbox, monkeypatch):
    from notifications.channels.telegram import TelegramChannel, set_webhook
    from notifications.telegram_polling import Poller
    from tests.conftest import SANDBOX_TOKEN

    bot = TelegramChannel(SANDBOX_TOKEN, sandbox.url, timeout=5)
    set_webhook(bot, "http://127.0.0.1:9/telegram/webhook/", "s", ["message"])
    said = []
    poller = Poller(bot, poll_timeout=1, say=said.append)
    monkeypatch.setattr("notifications.telegram_polling.CONFLICT_BACKOFF_S", 0)
    with pytest.raises(ChannelError) as caught:
        poller._poll(0)
    assert caught.value.code == 409
    poller._explain(caught.value, 1)
    assert "setup_telegram_bot --delete-webhook" in said[-1]


def test_setup_telegram_bot_sets_shows_and_deletes_the_webhook(sandbox, settings):
    import io

    from django.core.management import call_command
    from django.core.management.base import CommandError

    settings.TELEGRAM_WEBHOOK_SECRET = ""
    with pytest.raises(CommandError, match="TELEGRAM_WEBHOOK_SECRET"):
        call_command("setup_telegram_bot", webhook_url="http://127.0.0.1:9/telegram/webhook/")
    assert sandbox.webhook_info()["url"] == ""
    settings.TELEGRAM_WEBHOOK_SECRET = "s3cret"
    out = io.StringIO()
    call_command("setup_telegram_bot", webhook_url="http://127.0.0.1:9/telegram/webhook/", stdout=out)
    assert "Webhook: http://127.0.0.1:9/telegram/webhook/" in out.getvalue()
    assert sandbox.webhook_info()["allowed_updates"] == ["message", "callback_query", "my_chat_member"]
    assert sandbox.bot_commands()["default/-"][0] == {"command": "ordenes",
                                                      "description": "Mis órdenes de trabajo abiertas"}
    assert sandbox.bot_commands()["default/en"][0]["description"] == "My open work orders"
    call_command("setup_telegram_bot", delete_webhook=True, stdout=io.StringIO())
    out = io.StringIO()
    call_command("setup_telegram_bot", stdout=out)
    assert "Webhook: ninguno" in out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_the_poller_survives_bad_gateways_and_then_records_what_came(sandbox, monkeypatch):
    import threading

    from notifications.channels.telegram import TelegramChannel
    from notifications.models import InboundEvent
    from notifications.telegram_polling import Poller, load_offset
    from tests.conftest import SANDBOX_TOKEN
    from tests.support.processes import wait_for

    monkeypatch.setattr("notifications.telegram_polling.MAX_BACKOFF_S", 0.2)
    monkeypatch.setattr("notifications.inbound.publish_event", lambda pk, countdown=None: True)
    sandbox.configure(fail_rate=1.0)
    said = []
    poller = Poller(TelegramChannel(SANDBOX_TOKEN, sandbox.url, timeout=5), poll_timeout=1, say=said.append)
    thread = threading.Thread(target=poller.run)
    thread.start()
    try:
        wait_for(lambda: sum("502" in s for s in said) >= 2, message="two bad gateways explained")
        update = sandbox.inject_message(4250, "/ayuda")
        sandbox.configure(fail_rate=0)
        wait_for(lambda: InboundEvent.objects.filter(event_id=str(update["update_id"])).exists(),
                 message="the update recorded after the outage")
    finally:
        poller.stopping.set()
        thread.join(10)
    assert not thread.is_alive()
    assert load_offset() == update["update_id"] + 1


def _say(sandbox, chat_id, text):
    """A user's message, recorded as the webhook would and processed here (no worker)."""
    from notifications import inbound
    from notifications.telegram_updates import record_update

    event, _created = record_update(sandbox.inject_message(chat_id, text), publish=False)
    inbound.process(event.pk)
    event.refresh_from_db()
    return event, sandbox.messages(chat_id=chat_id)[-1]["text"]


def test_start_without_a_link_tells_an_unlinked_chat_its_id(sandbox):
    event, answer = _say(sandbox, 4260, "/start")
    assert "no está vinculado" in answer and "4260" in answer
    assert event.status == "PROCESSED" and event.user is None


def test_ot_shows_an_order_only_to_people_allowed_to_see_it(sandbox, no_broker):
    from tests.support.cmms import make_work_order

    operator = make_user(telegram=4261, first_name="Ana")
    make_user(telegram=4262)
    order = make_work_order(title="Cambio <de> filtro")
    order.assign(operator)
    _event, answer = _say(sandbox, 4261, f"/ot {order.number.lower()}")
    assert answer.startswith(f"📋 {order.number} · Cambio <de> filtro") and "Estado: Asignada" in answer
    _event, other = _say(sandbox, 4262, f"/ot {order.pk}")
    assert other == f"No encontré una orden de trabajo {order.number} que usted pueda ver."
    _event, missing = _say(sandbox, 4262, "/ot OT-99999")
    assert missing == "No encontré una orden de trabajo OT-99999 que usted pueda ver."  # the same answer


def test_desvincular_unlinks_the_chat_and_then_only_linking_is_offered(sandbox):
    user = make_user(telegram=4263)
    event, answer = _say(sandbox, 4263, "/desvincular")
    assert "ya no está vinculado" in answer and event.user == user
    pref = UserChannelPreference.objects.get(user=user)
    assert (pref.channel_user_id, pref.is_enabled) == ("", False)
    _event, answer = _say(sandbox, 4263, "/ordenes")
    assert "no está vinculado" in answer


def test_the_admin_action_shows_a_one_time_link(sandbox, client):
    from django.contrib.auth import get_user_model

    admin = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    user = make_user(username="tecnico9")
    client.force_login(admin)
    response = client.post("/admin/cmms/user/", {"action": "link_telegram", "_selected_action": [user.pk]},
                           follow=True)
    [message] = [str(m) for m in response.context["messages"]]
    assert "tecnico9" in message and "https://t.me/cmms_sandbox_bot?start=" in message
    token = message.split("start=", 1)[1].split('"', 1)[0]
    assert TelegramLinkToken.objects.get(user=user).token_hash == token_hash(token)


def test_edits_that_hit_a_flood_limit_are_retried_by_a_task(sandbox, no_broker, monkeypatch):
    from cmms import actions, tasks
    from cmms.telegram_bot import update_offer_messages
    from notifications.channels.base import OutgoingMessage
    from notifications.channels.telegram import TelegramChannel
    from tests.conftest import SANDBOX_TOKEN
    from tests.support.cmms import make_work_order

    operator = make_user(telegram=4270, first_name="Ana", last_name="Rojas")
    order = make_work_order()
    order.assign(operator)
    log = MessageLog.objects.get(user=operator)
    channel = TelegramChannel(SANDBOX_TOKEN, sandbox.url)
    sent_id = channel.send("4270", OutgoingMessage(title=log.title, body=log.body, actions=log.payload["actions"]))
    MessageLog.objects.filter(pk=log.pk).update(status="SENT", provider_message_id=sent_id)
    actions.decide(order.pk, operator, actions.ACCEPT, via="TELEGRAM", offered_seq=order.assignment_seq)
    scheduled = []
    monkeypatch.setattr("cmms.telegram_bot.schedule_edit_retry", lambda *args: scheduled.append(args) or True)

    sandbox.configure(force_429={"scope": 4270, "retry_after": 5})
    summary = update_offer_messages(order, order.assignment_seq)
    assert "Ediciones fallidas" in summary and "429" in summary
    assert scheduled == [(order.pk, order.assignment_seq, 2, 5.0)]
    assert not sandbox.messages(chat_id=4270)[-1]["edited"]

    sandbox.configure(force_429=None)
    assert "1 mensaje(s) editado(s)" in tasks.edit_offer_messages(order.pk, order.assignment_seq, 2)
    edited = sandbox.messages(chat_id=4270)[-1]
    assert edited["reply_markup"] is None and edited["text"].splitlines()[-1].startswith("✅ Aceptada por Ana Rojas")


def test_confirmar_lectura_on_a_broadcast_is_recorded_once_for_a_recipient_only(sandbox, no_broker):
    from cmms import broadcasts
    from cmms.telegram_bot import on_press
    from notifications import inbound

    make_user(role="OPERATOR", telegram=4301)  # a recipient
    make_user(role="SUPERVISOR", telegram=4302)  # linked, but not a recipient
    broadcast = broadcasts.send_broadcast("OPERATOR", "Simulacro", "Evacuación a las 15:00")

    def press(chat_id, update_id):
        sandbox.inject_message(chat_id, "hola")
        update = sandbox.inject_callback(chat_id, 1, f"bc:ack:{broadcast.pk}")
        event, _created = inbound.record("TELEGRAM", update_id, update, kind="callback_query", publish=False)
        return on_press(event, update["callback_query"])

    assert press(4301, 9001) == "✅ Lectura confirmada. Gracias."
    assert press(4301, 9002) == "Usted ya había confirmado este aviso."
    assert press(4302, 9003) == "Este aviso no le fue enviado; no se registró nada."
    assert broadcasts.summary(broadcast)["confirmed"] == 1
    assert [a["text"] for a in sandbox.callback_answers()][-3:] == [
        "✅ Lectura confirmada. Gracias.", "Usted ya había confirmado este aviso.",
        "Este aviso no le fue enviado; no se registró nada."]
