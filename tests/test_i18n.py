"""Spanish by default, English available, through Django's i18n."""

import pytest
from django.apps import apps
from django.utils import translation

from notifications.exceptions import RoutingError
from notifications.message_router import MessageRouter
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def test_admin_section_and_errors_speak_spanish_by_default():
    assert str(apps.get_app_config("notifications").verbose_name) == "Bot Omnicanal"
    user = make_user(telegram=1)
    with pytest.raises(RoutingError, match="El mensaje está vacío"):
        MessageRouter().send_to_user(user=user, title="t", message="")


def test_english_is_available():
    with translation.override("en"):
        assert str(apps.get_app_config("notifications").verbose_name) == "Omnichannel Bot"
        user = make_user(telegram=1)
        with pytest.raises(RoutingError, match="The message is empty"):
            MessageRouter().send_to_user(user=user, title="t", message="")


def test_admin_pages_render_in_spanish(admin_client):
    page = admin_client.get("/admin/notifications/messagelog/").content.decode()
    assert "registros de mensajes" in page.lower()
