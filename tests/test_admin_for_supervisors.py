"""The admin as a supervisor reads it: sentences, labels, short durations,
buttons instead of JSON, statistics as of the moment the page opens."""

from datetime import timedelta

import pytest
from django.utils import timezone

from notifications.admin import message_sentence, short_duration
from notifications.models import ChannelConfig, MessageLog, MessageStatus
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def make_log(**fields):
    defaults = {"channel_type": "TELEGRAM", "recipient": "100001", "message_type": "prediction_high_risk",
                "title": "Riesgo alto: Camión 001", "body": "Sobrecalentamiento", "status": MessageStatus.FAILED,
                "last_error": "Telegram 403: Forbidden: bot was blocked by the user"}
    return MessageLog.objects.create(**{**defaults, **fields})


@pytest.mark.parametrize("seconds, text", [
    (0, "0 s"), (12, "12 s"), (250, "4 min 10 s"), (3 * 3600 + 300, "3 h 5 min"), (2 * 86400 + 16 * 3600 + 59, "2 d 16 h"),
    (86400, "1 d"),
])
def test_durations_read_as_the_two_largest_units(seconds, text):
    assert short_duration(timedelta(seconds=seconds)) == text


def test_the_message_list_shows_title_type_label_status_channel_recipient_and_error(admin_client):
    user = make_user(first_name="Ana", last_name="Rojas")
    make_log(user=user)
    page = admin_client.get("/admin/notifications/messagelog/").content.decode()
    assert "Riesgo alto: Camión 001" in page and "⚠️ Predicción de alto riesgo" in page
    assert "Fallido" in page and "Ana Rojas" in page and "bot was blocked by the user" in page
    assert "prediction_high_risk" not in page.split('id="changelist-filter"')[0]  # the key only in filter URLs


def test_the_change_page_title_is_a_sentence_and_buttons_read_as_buttons(admin_client):
    user = make_user(first_name="Ana", last_name="Rojas")
    now = timezone.now()
    log = make_log(user=user, status=MessageStatus.SENT, created_at=now - timedelta(days=2, hours=16), sent_at=now,
                   payload={"actions": [{"text": "✅ Aceptar", "callback_data": "accept_wo_1"}],
                            "link": "http://127.0.0.1:8100/admin/cmms/workorder/1/change/"})
    page = admin_client.get(f"/admin/notifications/messagelog/{log.pk}/change/").content.decode()
    assert "<title>«Riesgo alto: Camión 001» para Ana Rojas por Telegram: Enviado |" in page
    assert "<h1>«Riesgo alto: Camión 001» para Ana Rojas por Telegram: Enviado</h1>" in page
    assert f"#{log.pk} TELEGRAM" not in page and "[SENT]" not in page
    assert "Botones:" in page and "✅ Aceptar</span>" in page and '"callback_data"' not in page
    assert '<a href="http://127.0.0.1:8100/admin/cmms/workorder/1/change/"' in page
    assert "2 d 16 h" in page


def test_message_sentence_in_english():
    from django.utils import translation

    log = MessageLog(channel_type="TELEGRAM", recipient="42", message_type="announcement", title="Aviso",
                     status=MessageStatus.QUEUED)
    with translation.override("en"):
        assert message_sentence(log) == "«Aviso» to 42 via Telegram: Queued"


def test_channel_statistics_are_current_when_the_page_opens(admin_client):
    config = ChannelConfig.objects.get(channel_type="TELEGRAM")
    ChannelConfig.objects.filter(pk=config.pk).update(messages_sent=0, messages_failed=0, stats_updated_at=None)
    make_log(status=MessageStatus.SENT, sent_at=timezone.now())
    make_log(status=MessageStatus.DELIVERED, sent_at=timezone.now())  # delivered was sent first
    make_log()
    page = admin_client.get("/admin/notifications/channelconfig/").content.decode()
    row = page[page.index(">Telegram<"):]
    row = row[:row.index("</tr>")]
    assert '<td class="field-live_sent">2</td>' in row and '<td class="field-live_failed">1</td>' in row


def test_channel_settings_field_says_what_it_accepts_and_refuses_a_list(admin_client):
    config = ChannelConfig.objects.get(channel_type="TELEGRAM")
    url = f"/admin/notifications/channelconfig/{config.pk}/change/"
    page = admin_client.get(url).content.decode()
    assert "Un objeto JSON con opciones de este canal" in page and "TELEGRAM_BOT_TOKEN" in page
    answer = admin_client.post(url, {"channel_type": "TELEGRAM", "is_enabled": "on", "settings": "[1, 2]"})
    assert answer.status_code == 200 and "debe ser un objeto JSON" in answer.content.decode()


@pytest.mark.parametrize("language, expected, foreign", [
    ("es", ["Registros de mensajes", "Resultados de Celery", "resultados de tareas", "Mensaje", "Último error"],
     ["Message logs", "Celery Results", "Task results", "Last error"]),
    ("en", ["Message logs", "Celery Results", "Task results", "Message", "Last error"],
     ["Registros de mensajes", "Resultados de Celery", "Último error", "Fallido"]),
])
def test_admin_pages_speak_one_language(admin_client, language, expected, foreign):
    from django.utils import translation

    make_log()
    # LocaleMiddleware activates the request's language in this thread and
    # leaves it active: the override puts the previous one back afterwards.
    with translation.override(None):
        pages = "".join(admin_client.get(url, HTTP_ACCEPT_LANGUAGE=language).content.decode() for url in (
            "/admin/", "/admin/notifications/messagelog/")).lower()
    for text in expected:
        assert text.lower() in pages, text
    for text in foreign:
        assert text.lower() not in pages, text
