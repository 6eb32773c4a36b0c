import pytest
from django.db import transaction

from notifications import role_broadcasts
from notifications.exceptions import RoutingError
from notifications.message_router import MessageRouter
from notifications.models import ChannelConfig, InAppNotification, MessageLog, UserChannelPreference
from tests.factories import make_user

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_broker")]



def send(user, **kw):
    args = {"title": "Nueva Orden de Trabajo", "message": "Se te ha asignado la OT-12345", "message_type": "work_order_assigned"}
    args.update(kw)
    return MessageRouter().send_to_user(user=user, **args)


def test_send_to_user_queues_one_row_per_enabled_channel_and_publishes_after_commit(
    no_broker, django_capture_on_commit_callbacks
):
    user = make_user(telegram=123456789)
    with django_capture_on_commit_callbacks(execute=True):
        result = send(user, priority="high", related_object_type="work_order", related_object_id="uuid-1")
        assert no_broker == []  # nothing leaves before commit
    assert result == {"TELEGRAM": True}
    log = MessageLog.objects.get(pk=result.message_ids["TELEGRAM"])
    assert (log.status, log.recipient, log.priority, log.related_object_id) == ("QUEUED", "123456789", "high", "uuid-1")
    assert no_broker == [(log.pk, "TELEGRAM")]


def test_rolled_back_transaction_publishes_nothing_and_leaves_no_row(no_broker, django_capture_on_commit_callbacks):
    user = make_user(telegram=1)
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        send(user)
        raise RuntimeError("producer failed")
    assert callbacks == [] and no_broker == []
    assert MessageLog.objects.count() == 0


def test_preference_flag_of_the_message_type_opts_the_user_out():
    user = make_user(telegram=1)
    UserChannelPreference.objects.filter(user=user).update(notify_predictions=False)
    assert send(user, message_type="prediction_high_risk") == {}
    assert send(user, message_type="work_order_assigned") == {"TELEGRAM": True}


def test_min_priority_keeps_low_priority_messages_off_a_channel():
    user = make_user(telegram=1)
    UserChannelPreference.objects.filter(user=user).update(min_priority="critical")
    assert send(user, priority="high") == {}
    assert send(user, priority="critical") == {"TELEGRAM": True}


def test_unreachable_address_is_recorded_as_skipped_with_the_reason(no_broker):
    user = make_user(telegram=1)
    UserChannelPreference.objects.filter(user=user).update(is_reachable=False, unreachable_reason="bot was blocked")
    result = send(user)
    assert result == {"TELEGRAM": False}
    log = MessageLog.objects.get(pk=result.message_ids["TELEGRAM"])
    assert log.status == "SKIPPED" and "bot was blocked" in log.last_error
    assert no_broker == []


def test_invalid_chat_id_is_skipped_not_sent():
    user = make_user(telegram="not-a-chat")
    result = send(user)
    assert result == {"TELEGRAM": False}
    assert "chat_id" in MessageLog.objects.get().last_error


def test_disabled_channel_config_skips_the_channel():
    user = make_user(telegram=1)
    ChannelConfig.objects.update_or_create(channel_type="TELEGRAM", defaults={"is_enabled": False})
    assert send(user) == {"TELEGRAM": False}


def test_in_app_channel_stores_the_inbox_entry_at_once_and_queues_its_push(
    no_broker, django_capture_on_commit_callbacks
):
    user = make_user(telegram=1, in_app=True)
    with django_capture_on_commit_callbacks(execute=True):
        result = send(user, link="http://cmms.example/ot/1")
    assert result == {"TELEGRAM": True, "IN_APP": True}
    note = InAppNotification.objects.get(user=user)
    assert note.message_log_id == result.message_ids["IN_APP"]
    assert note.link == "http://cmms.example/ot/1"
    # Readable now; SENT only once the delivery task on the inapp queue pushed it.
    assert MessageLog.objects.get(pk=result.message_ids["IN_APP"]).status == "QUEUED"
    assert (result.message_ids["IN_APP"], "IN_APP") in no_broker


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"user": None}, "usuario"),
        ({"message": ""}, "vacío"),
        ({"message": "   "}, "vacío"),
        ({"priority": "urgent"}, "Prioridad desconocida 'urgent'"),
        ({"message_type": "no_such_type"}, "no_such_type"),
        ({"title": "x" * 256}, "255"),
    ],
)
def test_bad_input_raises_a_clear_error_and_writes_nothing(kwargs, error):
    user = kwargs.pop("user", None) if "user" in kwargs else make_user(telegram=1)
    with pytest.raises(RoutingError, match=error):
        send(user, **kwargs)
    assert MessageLog.objects.count() == 0


def test_send_notification_turns_actions_into_buttons_and_rejects_callback_data_over_64_bytes():
    user = make_user(telegram=1)
    router = MessageRouter()
    data = {
        "title": "Nueva OT",
        "message": "OT-12345 asignada",
        "type": "work_order_assigned",
        "actions": [{"text": "✅ Aceptar", "callback_data": "accept_wo_12345"}, {"text": "❌ Rechazar", "callback_data": "reject_wo_12345"}],
    }
    result = router.send_notification(user, data)
    log = MessageLog.objects.get(pk=result.message_ids["TELEGRAM"])
    assert log.payload["actions"][1] == {"text": "❌ Rechazar", "callback_data": "reject_wo_12345"}
    data["actions"] = [{"text": "x", "callback_data": "ñ" * 33}]  # 66 bytes
    with pytest.raises(RoutingError, match="64"):
        router.send_notification(user, data)
    assert MessageLog.objects.count() == 1


def test_broadcast_to_role_counts_unreachable_users_as_failed():
    for chat in (1, 2, 3):
        make_user(role="OPERATOR", telegram=chat)
    make_user(role="OPERATOR")  # no channel at all
    blocked = make_user(role="OPERATOR", telegram=4)  # only a skipped channel
    UserChannelPreference.objects.filter(user=blocked).update(is_reachable=False, unreachable_reason="bot blocked")
    make_user(role="TECHNICIAN", telegram=9)
    make_user(role="OPERATOR", telegram=10, is_active=False)
    stats = MessageRouter().broadcast_to_role(role_name="OPERATOR", title="Mantenimiento", message="Mañana 8:00-12:00")
    assert stats == {"total": 5, "success": 3, "failed": 2}
    # The call writes one RoleBroadcast; its expansion (a worker's task) writes the rows.
    role_broadcasts.expand(stats.broadcast_id)
    assert MessageLog.objects.filter(status="QUEUED").count() == 3
    assert MessageLog.objects.filter(status="SKIPPED").get().user == blocked
    # A malformed chat id is found only at expansion: counted as reachable, written SKIPPED
    # (tests/test_role_broadcasts.py: test_an_invalid_address_counts_as_reachable_and_becomes_a_skipped_row).


def test_broadcast_to_unknown_role_raises_and_writes_nothing():
    make_user(role="OPERATOR", telegram=1)
    with pytest.raises(RoutingError, match="GERENTE"):
        MessageRouter().broadcast_to_role(role_name="GERENTE", title="t", message="m")
    assert MessageLog.objects.count() == 0


def test_same_idempotency_key_twice_gives_one_row_and_one_publish(no_broker, django_capture_on_commit_callbacks):
    user = make_user(telegram=1)
    with django_capture_on_commit_callbacks(execute=True):
        first = send(user, idempotency_key="wo-12345-assigned")
    with django_capture_on_commit_callbacks(execute=True):
        second = send(user, idempotency_key="wo-12345-assigned")
    assert first.message_ids == second.message_ids
    assert MessageLog.objects.count() == 1
    assert len(no_broker) == 1
