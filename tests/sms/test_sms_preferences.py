"""SMS preferences: E.164 numbers refused in Spanish where they are typed,
and only critical messages by default however the preference is created."""

import pytest

from notifications.message_router import MessageRouter
from notifications.models import MessageLog, UserChannelPreference
from tests.factories import make_user

pytestmark = pytest.mark.django_db
ADD_URL = "/admin/notifications/userchannelpreference/add/"


def form(user, **fields):
    data = {"user": user.pk, "channel_type": "SMS", "is_enabled": "on", "channel_user_id": "9 8765 4321",
            "notify_work_orders": "on", "notify_predictions": "on", "notify_reminders": "on", "notify_alerts": "on",
            "min_priority": "", "is_reachable": "on"}
    data.update(fields)
    return data


def test_an_sms_preference_created_in_the_orm_gets_critical():
    pref = UserChannelPreference.objects.create(user=make_user(), channel_type="SMS", channel_user_id="+56987654321")
    pref.refresh_from_db()
    assert pref.min_priority == "critical"


def test_an_explicit_minimum_priority_is_kept_and_other_channels_keep_low():
    user = make_user()
    sms = UserChannelPreference.objects.create(user=user, channel_type="SMS", min_priority="high")
    telegram = UserChannelPreference.objects.create(user=user, channel_type="TELEGRAM", channel_user_id="5")
    assert (sms.min_priority, telegram.min_priority) == ("high", "low")
    sms.min_priority = "low"  # a later change by the user stands
    sms.save()
    sms.refresh_from_db()
    assert sms.min_priority == "low"


def test_the_default_is_a_setting(settings):
    settings.CHANNEL_DEFAULT_MIN_PRIORITY = {"SMS": "high"}
    assert UserChannelPreference.objects.create(user=make_user(), channel_type="SMS").min_priority == "high"


def test_a_normal_message_does_not_go_by_sms_and_a_critical_one_does(no_broker):
    user = make_user(telegram=100001)
    UserChannelPreference.objects.create(user=user, channel_type="SMS", channel_user_id="+56987654321")
    normal = MessageRouter().send_to_user(user, "Aviso", "Cambio de turno", priority="normal")
    critical = MessageRouter().send_to_user(user, "Alerta", "Motor", message_type="critical_alert")
    assert dict(normal) == {"TELEGRAM": True}
    assert dict(critical) == {"TELEGRAM": True, "SMS": True}
    assert MessageLog.objects.get(pk=critical.message_ids["SMS"]).recipient == "+56987654321"


def test_a_preference_with_an_invalid_number_is_skipped_with_the_reason(no_broker):
    user = make_user()
    UserChannelPreference.objects.create(user=user, channel_type="SMS", channel_user_id="12345")
    result = MessageRouter().send_to_user(user, "Alerta", "Motor", message_type="critical_alert")
    log = MessageLog.objects.get(pk=result.message_ids["SMS"])
    assert log.status == "SKIPPED" and "no es un número de teléfono válido" in log.last_error


def test_the_admin_stores_the_number_in_e164_with_the_channel_default(admin_client):
    user = make_user()
    response = admin_client.post(ADD_URL, form(user))
    assert response.status_code == 302, response.content.decode()[:2000]
    pref = UserChannelPreference.objects.get(user=user)
    assert (pref.channel_user_id, pref.min_priority) == ("+56987654321", "critical")


def test_the_admin_keeps_a_chosen_minimum_priority(admin_client):
    user = make_user()
    admin_client.post(ADD_URL, form(user, min_priority="low"))
    assert UserChannelPreference.objects.get(user=user).min_priority == "low"


def test_the_admin_refuses_an_invalid_number_with_a_spanish_message(admin_client):
    user = make_user()
    response = admin_client.post(ADD_URL, form(user, channel_user_id="12345"), HTTP_ACCEPT_LANGUAGE="es")
    assert response.status_code == 200
    assert "no es un número de teléfono válido (región por defecto CL)" in response.content.decode()
    assert not UserChannelPreference.objects.filter(user=user).exists()


def test_the_admin_add_form_starts_with_the_channel_default(admin_client):
    html = admin_client.get(ADD_URL).content.decode()
    assert '<option value="" selected>---------</option>' in html


def test_the_demo_gives_sms_phones_the_critical_default():
    import io

    from django.core.management import call_command

    call_command("bootstrap_demo", stdout=io.StringIO())
    prefs = UserChannelPreference.objects.filter(channel_type="SMS")
    assert prefs.count() == 3 and set(prefs.values_list("min_priority", flat=True)) == {"critical"}


def test_a_number_saved_through_the_orm_is_stored_in_e164_and_an_invalid_one_as_typed():
    user = make_user()
    good = UserChannelPreference.objects.create(user=user, channel_type="SMS", channel_user_id="9 8765 4321")
    bad = UserChannelPreference.objects.create(user=make_user(), channel_type="SMS", channel_user_id="12345")
    assert (good.channel_user_id, bad.channel_user_id) == ("+56987654321", "12345")
