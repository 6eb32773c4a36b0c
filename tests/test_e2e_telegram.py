"""End to end: router -> Redis -> real Celery worker -> Telegram sandbox over HTTP."""

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from notifications.message_router import MessageRouter
from notifications.models import ChannelConfig, MessageLog, UserChannelPreference
from tests.conftest import SANDBOX_TOKEN, wait_for_status
from tests.factories import make_user
from tests.support.broadcasts import wait_expanded

pytestmark = pytest.mark.e2e
NASTY = "Camión <A&B>_01 * [x] (y) # ñandú «ok» & <b>no es negrita</b>"


def visible(text):
    """What a Telegram client shows for an HTML-mode text (our tags removed)."""
    import html
    import re

    return html.unescape(re.sub(r"</?(b|a)( [^>]*)?>", "", text))


def test_message_reaches_the_chat_and_the_log_says_sent_with_telegram_message_id(e2e):
    user = make_user(telegram=555001)
    result = MessageRouter().send_to_user(
        user=user, title="Nueva Orden de Trabajo", message="Se te ha asignado la OT-12345 para el Camión 001",
        message_type="work_order_assigned", priority="high", related_object_type="work_order", related_object_id="42",
    )
    assert result == {"TELEGRAM": True}
    wait_for_status(result.message_ids.values())
    log = MessageLog.objects.get(pk=result.message_ids["TELEGRAM"])
    (received,) = e2e.messages(chat_id=555001)
    assert str(received["message_id"]) == log.provider_message_id
    assert received["parse_mode"] == "HTML"
    assert visible(received["raw_text"]) == "📋 Nueva Orden de Trabajo\n\nSe te ha asignado la OT-12345 para el Camión 001"
    assert log.attempts == 1 and log.sent_at is not None


def test_special_characters_and_accents_arrive_exactly_as_written(e2e):
    user = make_user(telegram=555002)
    result = MessageRouter().send_to_user(user=user, title=NASTY, message=NASTY, message_type="critical_alert")
    wait_for_status(result.message_ids.values())
    (received,) = e2e.messages(chat_id=555002)
    assert visible(received["raw_text"]) == f"🚨 {NASTY}\n\n{NASTY}"


def test_a_5000_character_message_is_split_and_fully_delivered(e2e):
    user = make_user(telegram=555003)
    body = " ".join(f"línea{i:04d} <&>" for i in range(500))[:5000]
    result = MessageRouter().send_to_user(user=user, title="Informe", message=body)
    wait_for_status(result.message_ids.values())
    received = e2e.messages(chat_id=555003)
    assert len(received) == 2
    log = MessageLog.objects.get(pk=result.message_ids["TELEGRAM"])
    assert log.provider_message_id == ",".join(str(m["message_id"]) for m in received)
    joined = " ".join(visible(m["raw_text"]) for m in received).replace("📢 Informe\n\n", "", 1)
    assert joined.split() == body.split()


def test_actions_become_inline_buttons(e2e):
    user = make_user(telegram=555004)
    result = MessageRouter().send_notification(user, {
        "title": "Nueva OT", "message": "OT-12345 asignada", "type": "work_order_assigned",
        "actions": [{"text": "✅ Aceptar", "callback_data": "accept_wo_12345"},
                    {"text": "❌ Rechazar", "callback_data": "reject_wo_12345"}],
    })
    wait_for_status(result.message_ids.values())
    (received,) = e2e.messages(chat_id=555004)
    buttons = received["reply_markup"]["inline_keyboard"][0]
    assert [b["callback_data"] for b in buttons] == ["accept_wo_12345", "reject_wo_12345"]


def test_blocked_bot_fails_at_once_and_marks_the_preference_unreachable(e2e):
    user = make_user(telegram=555005)
    e2e.set_chat(555005, state="blocked")
    result = MessageRouter().send_to_user(user=user, title="t", message="m")
    wait_for_status(result.message_ids.values(), statuses=("FAILED",))
    log = MessageLog.objects.get(pk=result.message_ids["TELEGRAM"])
    assert log.attempts == 1 and "blocked" in log.last_error
    pref = UserChannelPreference.objects.get(user=user)
    assert not pref.is_reachable and "blocked" in pref.unreachable_reason
    assert MessageRouter().send_to_user(user=user, title="t", message="again") == {"TELEGRAM": False}


def test_group_migration_is_followed_and_the_new_chat_id_stored(e2e):
    user = make_user(telegram=-555006)
    e2e.set_chat(-555006, state="migrated", migrate_to_chat_id=-1005550060)
    result = MessageRouter().send_to_user(user=user, title="t", message="grupo")
    wait_for_status(result.message_ids.values())
    assert len(e2e.messages(chat_id=-1005550060)) == 1
    assert UserChannelPreference.objects.get(user=user).channel_user_id == "-1005550060"
    assert MessageLog.objects.get(pk=result.message_ids["TELEGRAM"]).recipient == "-1005550060"


def test_revoked_token_is_reported_as_configuration_error_without_leaking_it(e2e):
    e2e.configure(revoked_tokens=[SANDBOX_TOKEN])
    user = make_user(telegram=555007)
    result = MessageRouter().send_to_user(user=user, title="t", message="m")
    wait_for_status(result.message_ids.values(), statuses=("RETRYING",))
    log = MessageLog.objects.get(pk=result.message_ids["TELEGRAM"])
    assert "TELEGRAM_BOT_TOKEN" in log.last_error and "Unauthorized" in log.last_error
    assert SANDBOX_TOKEN not in log.last_error and "sandbox-token" not in log.last_error
    assert UserChannelPreference.objects.get(user=user).is_reachable


def test_broadcast_reaches_every_reachable_operator(e2e):
    for chat in (555101, 555102, 555103):
        make_user(role="OPERATOR", telegram=chat)
    make_user(role="OPERATOR")
    stats = MessageRouter().broadcast_to_role(role_name="OPERATOR", title="Mantenimiento Programado",
                                              message="Mañana habrá mantenimiento general de 8:00 a 12:00")
    wait_expanded()
    assert stats == {"total": 4, "success": 3, "failed": 1}
    wait_for_status(MessageLog.objects.values_list("pk", flat=True))
    # Each operator's chat got it once (a slow call of an earlier test may still land in another chat).
    assert [len(e2e.messages(chat_id=chat)) for chat in (555101, 555102, 555103)] == [1, 1, 1]


def test_test_telegram_bot_sends_directly_and_explains_chat_not_found(sandbox, transactional_db, capsys):
    make_user(username="operador1", telegram=555201)
    call_command("test_telegram_bot", "--username", "operador1")
    assert len(sandbox.messages(chat_id=555201)) == 1
    assert MessageLog.objects.get().status == "SENT"
    sandbox.set_chat(555202, state="not_found")
    with pytest.raises(CommandError, match="/start"):
        call_command("test_telegram_bot", "--chat-id", "555202")


def test_setup_telegram_bot_validates_stores_encrypted_and_reports_status(sandbox, transactional_db, settings, capsys):
    settings.TELEGRAM_BOT_TOKEN = ""
    token = "777777:another-sandbox-token"
    call_command("setup_telegram_bot", "--token", token, "--enable")
    out = capsys.readouterr().out
    assert "@cmms_sandbox_bot" in out and token not in out
    stored = ChannelConfig.objects.get(channel_type="TELEGRAM").secret_encrypted
    assert stored and token not in stored
    call_command("setup_telegram_bot")
    assert "@cmms_sandbox_bot" in capsys.readouterr().out
    sandbox.configure(revoked_tokens=[token])
    with pytest.raises(CommandError, match="Unauthorized"):
        call_command("setup_telegram_bot", "--token", token)
