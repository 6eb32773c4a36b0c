"""What the newcomer reads from the commands and the router: token errors
named for what happened, inactive users skipped, one language at a time."""

import re
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone, translation

from notifications import message_types
from notifications.exceptions import RoutingError
from notifications.message_router import MessageRouter
from notifications.models import ChannelConfig, MessageLog, MessageStatus
from tests.factories import make_user
from tests.support.processes import free_port

pytestmark = pytest.mark.django_db


def run(*args):
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def error_of(*args):
    with pytest.raises(CommandError) as info:
        run(*args)
    return str(info.value)


# -- item 4: token errors say what happened ------------------------------------


def test_a_malformed_token_is_refused_before_any_network_call(sandbox):
    message = error_of("setup_telegram_bot", "--token", "not-a-token")
    assert "no es un token de bot" in message
    assert sandbox.stats()["requests"] == 0
    assert not ChannelConfig.objects.filter(secret_encrypted__gt="").exists()


def test_an_unreachable_api_is_reported_as_unreachable_not_as_a_rejected_token(settings, sandbox):
    settings.TELEGRAM_API_URL = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    message = error_of("setup_telegram_bot", "--token", "777777:another-sandbox-token")
    assert message.startswith("No se pudo contactar a Telegram en http://127.0.0.1:")
    assert "rechaz" not in message and "el token no se verificó" in message


def test_rejected_token_and_missing_token_are_different_messages(sandbox, settings):
    sandbox.configure(revoked_tokens=["777777:another-sandbox-token"])
    rejected = error_of("setup_telegram_bot", "--token", "777777:another-sandbox-token")
    assert rejected.startswith("Telegram rechazó el token («Unauthorized»)")
    settings.TELEGRAM_BOT_TOKEN = ""
    _out, err = run("setup_telegram_bot")
    assert err.strip().startswith("No hay token configurado") and "rechaz" not in err
    with pytest.raises(CommandError, match="No hay token de Telegram configurado"):
        run("test_telegram_bot", "--chat-id", "100001")


def test_status_shows_local_time_to_the_second_and_exits_0_even_with_a_problem(sandbox, settings):
    sent_at = timezone.now().replace(microsecond=123456)
    MessageLog.objects.create(channel_type="TELEGRAM", recipient="1", message_type="announcement", body="x",
                              status=MessageStatus.SENT, sent_at=sent_at)
    out, err = run("setup_telegram_bot")
    local = timezone.localtime(sent_at).strftime("%Y-%m-%d %H:%M:%S")
    assert f"último uso: {local} -03" in out or f"último uso: {local} -04" in out, out
    assert "123456" not in out and "Mensajes enviados: 1," in out and err == ""
    settings.TELEGRAM_BOT_TOKEN = ""
    out, err = run("setup_telegram_bot")  # a report: no exception, so exit status 0
    assert "Origen del token: ninguno" in out and err
    with pytest.raises(CommandError) as info:
        run("setup_telegram_bot", "--check")
    assert info.value.returncode == 1


def test_status_names_the_sandbox_of_make_run_as_the_token_origin(sandbox, settings):
    settings.TELEGRAM_BOT_TOKEN_ORIGIN = "make run"
    out, _err = run("setup_telegram_bot")
    assert "Origen del token: el sandbox local iniciado por make run (var/run.env)" in out


# -- item 5: inactive users get nothing ------------------------------------------


def test_send_to_an_inactive_user_records_skipped_with_the_reason_on_every_channel(no_broker):
    user = make_user(telegram=555, in_app=True, is_active=False)
    result = MessageRouter().send_to_user(user=user, title="OT", message="Cambio de filtro")
    assert result == {"TELEGRAM": False, "IN_APP": False}
    logs = list(MessageLog.objects.filter(user=user))
    assert len(logs) == 2 and {log.status for log in logs} == {MessageStatus.SKIPPED}
    assert all("está inactivo" in log.last_error for log in logs)
    assert no_broker == [] and not user.in_app_notifications.exists()


def test_an_active_user_still_gets_the_message(no_broker):
    user = make_user(telegram=556)
    assert MessageRouter().send_to_user(user=user, title="OT", message="x") == {"TELEGRAM": True}


# -- item 6: one language at a time -----------------------------------------------

# Words that give away the other language in a sentence of ours.
ENGLISH = re.compile(r"\b(the|is|was|not|could|sent|failed|user|created|nothing|found|queued|work order)\b", re.I)
SPANISH = re.compile(r"\b(el|la|los|usuario|enviado|fallidos|creados|creada|nada|está|canal|habilitado|alerta|orden)\b",
                     re.I)


def outputs_in(language, sandbox, settings):
    """Every command output and error a newcomer meets in the first hour."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    texts = []
    with translation.override(language):
        texts += run("bootstrap_demo")[0].splitlines()[:4]
        texts += run("simulate_predictions", "--count", "2", "--seed", "1", "--min-risk", "HIGH")[0].splitlines()
        texts.append(run("setup_telegram_bot")[0])
        texts.append(run("test_telegram_bot", "--username", "operador1")[0])
        sandbox.configure(strict_chats=True)
        texts.append(error_of("test_telegram_bot", "--chat-id", "999999999").split("\n")[1])
        texts.append(error_of("setup_telegram_bot", "--token", "not-a-token"))
        sandbox.configure(revoked_tokens=["777777:another-sandbox-token"])
        texts.append(error_of("setup_telegram_bot", "--token", "777777:another-sandbox-token"))
        for bad in ({"message_type": "no_such_type"}, {"message": ""}, {"priority": "urgente"}):
            with pytest.raises(RoutingError) as info:
                MessageRouter().send_to_user(**{"user": make_user(), "title": "t", "message": "m", **bad})
            texts.append(str(info.value))
        with pytest.raises(message_types.UnknownMessageType) as info:
            message_types.get("nope")
        texts.append(str(info.value).split(" Known types")[0].split(" Tipos conocidos")[0])
    return texts


def test_command_output_and_errors_are_all_spanish_by_default(sandbox, settings, transactional_db):
    for text in outputs_in("es", sandbox, settings):
        # «...» quotes the provider's own words (the Bot API speaks English).
        assert not ENGLISH.search(re.sub(r"«[^»]*»", "", text)), f"English in a Spanish message: {text!r}"


def test_command_output_and_errors_are_all_english_when_chosen(sandbox, settings, transactional_db):
    for text in outputs_in("en", sandbox, settings):
        assert not SPANISH.search(text.replace("Mina Norte", "")), f"Spanish in an English message: {text!r}"


def test_bootstrap_demo_says_what_it_created_in_groups(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.DEBUG = True  # the demo's known passwords, as under make run (DJANGO_DEBUG=1)
    out, _err = run("bootstrap_demo")
    assert "Usuarios creados: admin, operador1, operador2" in out
    assert re.search(r"^Activos creados: CAM-001, ", out, re.M)
    assert re.search(r"^Planes de mantenimiento creados: CAM-001: ", out, re.M)
    again, _err = run("bootstrap_demo")
    assert "Nada que crear" in again and "creados" not in again
    assert "operador1 / demo1234  (OPERATOR, chat de Telegram 100001, SMS +56987650001)" in again
    assert "tecnico1 / demo1234  (TECHNICIAN, chat de Telegram 100011)\n" in again

