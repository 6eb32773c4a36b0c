"""The channel registry: the router and workers find channels there, and
address validation lives in the channel, not in the router."""

import pytest

from notifications.channels import registry
from notifications.message_router import MessageRouter
from notifications.models import ChannelType, MessageLog, UserChannelPreference
from notifications.phones import to_e164
from tests.factories import make_user
from workers import channels

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_broker")]


def test_telegram_and_in_app_are_registered_and_other_channels_are_not_yet():
    types = registry.channel_types()
    assert {"TELEGRAM", "IN_APP"} <= types
    # Every registered channel now has an adapter: in-app pushes through the channel layer.
    assert not registry.get("IN_APP").delivered_on_write
    assert not registry.get("TELEGRAM").delivered_on_write


def test_telegram_chat_id_is_normalized_or_refused_with_the_reason():
    assert registry.normalize_address("TELEGRAM", " 123456789 ") == "123456789"
    assert registry.normalize_address("TELEGRAM", "-1001234567890") == "-1001234567890"
    assert registry.normalize_address("TELEGRAM", "@canal_mina") == "@canal_mina"
    with pytest.raises(registry.InvalidAddress, match="chat_id"):
        registry.normalize_address("TELEGRAM", "12ab")


def test_router_records_an_invalid_address_as_skipped_with_the_channels_reason():
    user = make_user(telegram="not-a-chat")
    result = MessageRouter().send_to_user(user, "Orden", "Cambio de filtro", message_type="work_order_assigned")
    log = MessageLog.objects.get(pk=result.message_ids["TELEGRAM"])
    assert result == {"TELEGRAM": False}
    assert log.status == "SKIPPED"
    assert "not-a-chat" in log.last_error


def test_router_stores_the_normalized_address_as_recipient():
    user = make_user(telegram="  42  ")
    result = MessageRouter().send_to_user(user, "Orden", "Cambio de filtro", message_type="work_order_assigned")
    assert MessageLog.objects.get(pk=result.message_ids["TELEGRAM"]).recipient == "42"


def test_a_channel_without_an_adapter_is_skipped_not_queued():
    user = make_user()
    UserChannelPreference.objects.create(user=user, channel_type="FAX", channel_user_id="x")  # not a channel at all
    result = MessageRouter().send_to_user(user, "Orden", "Texto", message_type="work_order_assigned")
    assert result == {"FAX": False}


def test_workers_build_the_telegram_adapter_and_its_public_account_id_from_the_registry(settings):
    settings.TELEGRAM_BOT_TOKEN = "123456:secret-part"
    channels.reset()
    try:
        assert channels.get(ChannelType.TELEGRAM).channel_type == "TELEGRAM"
        assert channels.account_id(ChannelType.TELEGRAM) == "123456"
        assert channels.telegram_token() == "123456:secret-part"
    finally:
        channels.reset()


def test_in_app_builds_its_push_adapter_from_the_registry():
    assert channels.build("IN_APP").channel_type == "IN_APP"


def test_a_channel_type_nobody_registered_has_no_adapter_to_build():
    with pytest.raises(channels.ConfigurationError):
        channels.build("FAX")


@pytest.mark.parametrize(
    "typed, region, e164",
    [("9 8765 4321", "CL", "+56987654321"), ("+56 9 8765 4321", "US", "+56987654321"), ("(212) 555-0123", "US", "+12125550123")],
)
def test_phone_numbers_become_e164_in_the_default_region(typed, region, e164):
    assert to_e164(typed, region=region) == e164


@pytest.mark.parametrize("typed", ["", "12", "abc", "+56 1234"])
def test_invalid_phone_numbers_are_refused_with_a_reason(typed):
    with pytest.raises(registry.InvalidAddress):
        to_e164(typed, region="CL")
