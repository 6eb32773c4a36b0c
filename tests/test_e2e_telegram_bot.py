"""The interactive bot end to end, in both ways Telegram delivers updates:
the sandbox posts to the real webhook view (a live Django server), or
``run_telegram_bot`` polls it; a real Celery worker runs the handler, acts
on the work order and answers through the sandbox's Bot API over HTTP."""

import io

import pytest
from django.core.management import call_command

from cmms.models import WorkOrder
from cmms.predictions import record_prediction
from notifications.models import InboundEvent, TelegramLinkToken, UserChannelPreference
from tests.conftest import wait_for_status, worker_env
from tests.support.cmms import make_asset, make_operator
from tests.support.processes import TelegramPoller, wait_for

pytestmark = pytest.mark.e2e
SECRET = "e2e-webhook-secret_0123456789"


@pytest.fixture(params=["webhook", "polling"])
def bot(request, e2e, settings, redis_server):
    """The sandbox, with updates reaching the app by webhook or by polling."""
    settings.TELEGRAM_WEBHOOK_SECRET = SECRET
    if request.param == "webhook":
        live_server = request.getfixturevalue("live_server")
        call_command("setup_telegram_bot", webhook_url=f"{live_server.url}/telegram/webhook/", stdout=io.StringIO())
        yield e2e
        return
    poller = TelegramPoller(worker_env(redis_server.url, e2e.url)).start()
    yield e2e
    assert poller.terminate() == 0, poller.log()[-2000:]


def alert(chat_id, **operator):
    """A real record_prediction assigns the order to a linked operator; returns (order, message)."""
    operator = make_operator(telegram=chat_id, **operator)
    result = record_prediction(asset=make_asset(), failure_mode="Sobrecalentamiento", probability=0.9,
                               risk_level="HIGH", time_to_failure_hours=12)
    order = result.work_order
    from notifications.models import MessageLog

    wait_for_status(MessageLog.objects.filter(channel_type="TELEGRAM", user=operator).values_list("pk", flat=True))
    return order, operator


def last_message(sandbox, chat_id):
    return sandbox.messages(chat_id=chat_id)[-1]


def press(sandbox, chat_id, message, button=0, presser=None):
    data = message["reply_markup"]["inline_keyboard"][0][button]["callback_data"]
    sender = {"id": presser, "first_name": "Otro"} if presser else None
    update = sandbox.inject_callback(chat_id, message["message_id"], data, sender=sender)
    return update


def answer_to(sandbox, update, timeout=30):
    query_id = update["callback_query"]["id"]
    return wait_for(lambda: next((a for a in sandbox.callback_answers() if a["callback_query_id"] == query_id
                                  and a["ok"]), None), timeout=timeout, message=f"an answer to {query_id}")


def processed(update, timeout=30):
    def done():
        event = InboundEvent.objects.filter(provider="TELEGRAM", event_id=str(update["update_id"])).first()
        return event if event and event.status in ("PROCESSED", "IGNORED", "FAILED") else None

    return wait_for(done, timeout=timeout, interval=0.1, message=f"update {update['update_id']} processed")


def test_deep_link_links_the_chat_once_and_the_token_is_never_stored(bot):
    user = make_operator(telegram=None, first_name="Juan", last_name="Pérez", username="jperez")
    out = io.StringIO()
    call_command("telegram_link", username="jperez", stdout=out)
    link = out.getvalue().strip().splitlines()[-1]
    assert link.startswith("https://t.me/cmms_sandbox_bot?start=")
    token = link.split("start=", 1)[1]

    event = processed(bot.inject_message(700001, f"/start {token}"))
    assert event.status == "PROCESSED" and event.user == user
    pref = UserChannelPreference.objects.get(user=user, channel_type="TELEGRAM")
    assert (pref.channel_user_id, pref.is_enabled, pref.is_reachable) == ("700001", True, True)
    assert "Juan Pérez" in last_message(bot, 700001)["text"] and "vinculado" in last_message(bot, 700001)["text"]
    assert token not in str(event.payload) and token not in TelegramLinkToken.objects.get().token_hash

    again = processed(bot.inject_message(700002, f"/start {token}"))
    assert "ya se usó" in last_message(bot, 700002)["text"]
    assert not UserChannelPreference.objects.filter(channel_user_id="700002").exists()
    assert again.user is None


def test_accept_from_a_prediction_alert_edits_the_message_and_records_who_when_and_how(bot):
    order, operator = alert(700010, first_name="Ana", last_name="Rojas")
    message = last_message(bot, 700010)
    update = press(bot, 700010, message, button=0)
    answer = answer_to(bot, update)
    assert f"{order.number} aceptada por Ana Rojas" in answer["text"]
    order.refresh_from_db()
    assert (order.status, order.decided_by, order.decided_via) == ("ACCEPTED", operator, "TELEGRAM")
    edited = wait_for(lambda: (m := last_message(bot, 700010))["edited"] and m, message="the alert edited")
    assert edited["reply_markup"] is None
    assert edited["text"].splitlines()[-1].startswith("✅ Aceptada por Ana Rojas, ")


def test_reject_reassigns_and_the_next_operator_gets_live_buttons(bot):
    order, _first = alert(700020)
    second = make_operator(telegram=700021)
    update = press(bot, 700020, last_message(bot, 700020), button=1)
    assert "rechazada" in answer_to(bot, update)["text"]
    order.refresh_from_db()
    assert order.assignee == second and order.status == "ASSIGNED" and order.assignment_seq == 2
    wait_for(lambda: bot.messages(chat_id=700021), message="the new assignee's alert")
    new_offer = last_message(bot, 700021)
    assert len(new_offer["reply_markup"]["inline_keyboard"][0]) == 2
    assert wait_for(lambda: last_message(bot, 700020)["edited"], message="the first alert edited")
    assert last_message(bot, 700020)["reply_markup"] is None

    # The first operator's old button (now stale) changes nothing; the new one works.
    stale = bot.inject_callback(700020, new_offer["message_id"], new_offer["reply_markup"]["inline_keyboard"][0][0][
        "callback_data"])
    assert "no está asignada a usted" in answer_to(bot, stale)["text"]
    accept = press(bot, 700021, new_offer, button=0)
    answer_to(bot, accept)
    order.refresh_from_db()
    assert (order.status, order.decided_by) == ("ACCEPTED", second)


def test_refused_presses_are_answered_and_change_nothing(bot):
    order, operator = alert(700030)
    other = make_operator(telegram=700031)
    message = last_message(bot, 700030)
    by_other = press(bot, 700030, message, presser=700031)
    by_stranger = press(bot, 700030, message, presser=700039)
    forged = bot.inject_callback(700030, message["message_id"], f"wo:accept:{order.pk}")
    assert "no está asignada a usted" in answer_to(bot, by_other)["text"]
    assert "no está vinculado" in answer_to(bot, by_stranger)["text"]
    assert "no es válido" in answer_to(bot, forged)["text"]
    for update in (by_other, by_stranger, forged):
        assert processed(update).status == "PROCESSED"
    order.refresh_from_db()
    assert (order.status, order.assignee, order.decided_by) == ("ASSIGNED", operator, None)
    assert other.pk != operator.pk


def test_a_double_press_makes_one_transition_and_the_order_that_moved_on_refuses(bot):
    order, _operator = alert(700040)
    message = last_message(bot, 700040)
    first, second = press(bot, 700040, message), press(bot, 700040, message)
    answers = sorted(answer_to(bot, u)["text"] for u in (first, second))
    assert any("aceptada" in a for a in answers) and any("Usted ya aceptó" in a for a in answers)
    order.refresh_from_db()
    assert order.status == "ACCEPTED"
    WorkOrder.objects.get(pk=order.pk).cancel()
    late = press(bot, 700040, message, button=1)
    assert "ahora está cancelada" in answer_to(bot, late)["text"]
    assert WorkOrder.objects.get(pk=order.pk).status == "CANCELLED"


def test_commands_list_my_orders_and_mute_until_later(bot):
    order, operator = alert(700050)
    processed(bot.inject_message(700050, "/ordenes"))
    listing = last_message(bot, 700050)
    assert order.number in listing["text"]
    assert [b["text"] for b in listing["reply_markup"]["inline_keyboard"][0]] == [
        f"✅ Aceptar {order.number}", f"❌ Rechazar {order.number}"]
    processed(bot.inject_message(700050, "/silencio 2h"))
    pref = UserChannelPreference.objects.get(user=operator, channel_type="TELEGRAM")
    assert pref.muted_until is not None and "Silenciado hasta" in last_message(bot, 700050)["text"]
    processed(bot.inject_message(700050, "hola"))
    assert "/ordenes" in last_message(bot, 700050)["text"]
    processed(bot.inject_message(700059, "/ordenes"))
    assert "no está vinculado" in last_message(bot, 700059)["text"]


@pytest.mark.parametrize("bot", ["webhook"], indirect=True)
def test_a_webhook_call_without_the_secret_is_refused_and_not_recorded(bot, live_server):
    import requests

    url = f"{live_server.url}/telegram/webhook/"
    body = {"update_id": 990001, "message": {"chat": {"id": 1}, "text": "/ayuda"}}
    assert requests.post(url, json=body, timeout=5).status_code == 403
    wrong = {"X-Telegram-Bot-Api-Secret-Token": SECRET[:-1] + "x"}
    assert requests.post(url, json=body, headers=wrong, timeout=5).status_code == 403
    assert not InboundEvent.objects.filter(event_id="990001").exists()
    right = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
    assert requests.post(url, json=body, headers=right, timeout=5).status_code == 200
    assert requests.post(url, json=body, headers=right, timeout=5).status_code == 200  # Telegram's retry
    assert InboundEvent.objects.filter(event_id="990001").count() == 1


def test_a_restart_of_the_poller_in_a_burst_loses_nothing_and_applies_nothing_twice(e2e, redis_server):
    e2e.configure(limits_enabled=False)  # 60 replies in a few seconds: the flood limits are not under test
    poller = TelegramPoller(worker_env(redis_server.url, e2e.url), poll_timeout=1).start()
    sent = []
    try:
        for i in range(60):
            sent.append(e2e.inject_message(700100 + i, "/ayuda")["update_id"])
            if i == 20:
                assert poller.terminate() == 0
                assert "Stopped; next offset" in poller.log()
            if i == 35:
                poller.start()
        events = InboundEvent.objects.filter(provider="TELEGRAM", event_id__in=[str(u) for u in sent])
        wait_for(lambda: events.count() >= len(sent), timeout=30, message="every update recorded")
    finally:
        assert poller.terminate() == 0
    assert sorted(int(e) for e in events.values_list("event_id", flat=True)) == sorted(sent)
    wait_for(lambda: all(e.status != "RECEIVED" and e.status != "PROCESSING" for e in events.all()), timeout=60,
             message="every update processed")
    replies = [m for m in e2e.messages() if m["chat_id"] in range(700100, 700160)]
    assert len(replies) == len(sent)  # one answer per update: none lost, none twice
    # Telegram still holds the last batch (confirmed only by the next poll), but the
    # durable offset starts the next run past it.
    from notifications.telegram_polling import load_offset

    assert load_offset() == max(sent) + 1


def test_a_user_blocking_the_bot_marks_the_chat_unreachable(bot):
    _order, operator = alert(700060)
    processed(bot.block_bot(700060))
    pref = UserChannelPreference.objects.get(user=operator, channel_type="TELEGRAM")
    assert not pref.is_reachable and "blocked" in pref.unreachable_reason
