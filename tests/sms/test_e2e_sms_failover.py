"""Failover to SMS on real parts: a critical message to a blocked Telegram
chat fails at once, the failover scan (what beat's ``channel-failover``
runs) sends it again by SMS through the Twilio sandbox, and the delivery
receipt comes back to the copy, which points at the failed row."""

import pytest

from notifications import failover
from notifications.message_router import MessageRouter
from notifications.models import MessageLog, UserChannelPreference
from tests.conftest import wait_for_status
from tests.sms.test_e2e_sms import sms, sms_worker  # noqa: F401 - fixtures
from tests.support.cmms import make_operator
from tests.support.processes import wait_for

pytestmark = pytest.mark.e2e
PHONE = "+56987650015"


def test_a_blocked_telegram_chat_fails_over_to_sms_and_the_copy_is_delivered(sms, sandbox):  # noqa: F811
    user = make_operator(telegram=100515, in_app=False)
    UserChannelPreference.objects.create(user=user, channel_type="SMS", channel_user_id=PHONE, failover_rank=1,
                                         failover_only=True)
    sandbox.set_chat(100515, state="blocked")
    result = MessageRouter().send_to_user(user, "Falla inminente", "Camión 15: presión de aceite baja",
                                          priority="critical", message_type="critical_alert")
    assert set(result) == {"TELEGRAM"}  # SMS only when Telegram fails
    telegram = MessageLog.objects.get(pk=result.message_ids["TELEGRAM"])
    wait_for_status([telegram.pk], statuses=("FAILED",))

    wait_for(lambda: failover.run()["resent"] or telegram.failovers.exists(), timeout=10, message="the failover")
    copy = telegram.failovers.get()
    assert (copy.channel_type, copy.recipient) == ("SMS", PHONE)
    wait_for_status([copy.pk], statuses=("DELIVERED",))
    [message] = sms.messages(to=PHONE)
    assert "Camión 15: presión de aceite baja" in message["body"]
    assert failover.run()["resent"] == 0  # delivered: the chain ends here
