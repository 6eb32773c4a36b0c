"""The SMS channel against the Twilio sandbox over HTTP: what it posts, what
a send costs, and how each Twilio error maps to the channel contract."""

import pytest

from notifications.channels import ChannelError, ConfigurationError, OutgoingMessage, registry
from notifications.channels.sms import TwilioSmsChannel, render, segments
from sandbox.twilio import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, DEFAULT_FROM

TO = "+56987654321"


def channel(twilio, token=DEFAULT_AUTH_TOKEN, **kw):
    return TwilioSmsChannel(DEFAULT_ACCOUNT_SID, token, from_number=DEFAULT_FROM, api_url=twilio.url,
                            status_callback="http://127.0.0.1:9/sms/twilio/status/", **kw)


def alert(**fields):
    fields.setdefault("title", "Riesgo CRÍTICO de falla: Camión 07")
    fields.setdefault("body", "Orden de trabajo OT-00042 · Camión 07 (CAM-007)\nModo de falla: Sobrecalentamiento\n"
                              "Riesgo: CRÍTICO (probabilidad 91 %)")
    fields.setdefault("link", "https://cmms.example.com/admin/cmms/workorder/42/change/")
    fields.setdefault("message_type", "prediction_high_risk")
    return OutgoingMessage(**fields)


@pytest.mark.parametrize(("text", "expected"), [
    ("a" * 160, ("GSM-7", 1)),
    ("a" * 161, ("GSM-7", 2)),
    ("a" * 306, ("GSM-7", 2)),
    ("a" * 307, ("GSM-7", 3)),
    ("€" * 80, ("GSM-7", 1)),  # an extension character costs two septets
    ("€" * 81, ("GSM-7", 2)),
    ("Camión" + "a" * 64, ("UCS-2", 1)),  # ó is not GSM-7: the whole text is UCS-2
    ("Camión" + "a" * 65, ("UCS-2", 2)),
    ("🚨" * 35, ("UCS-2", 1)),  # an emoji is two UTF-16 units
    ("🚨" * 36, ("UCS-2", 2)),
    ("ñandú é", ("UCS-2", 1)),
    ("ñandù é", ("GSM-7", 1)),
])
def test_segments_are_counted_as_twilio_counts_them(text, expected):
    assert segments(text) == expected


def test_an_alert_is_a_short_text_with_title_asset_link_and_reply_keywords():
    text = render(alert(actions=[{"text": "Aceptar", "callback_data": "wo:accept:42"}]))
    lines = text.splitlines()
    assert lines[0] == "ALERTA CMMS: Riesgo CRÍTICO de falla: Camión 07"
    assert lines[1] == "Orden de trabajo OT-00042 · Camión 07 (CAM-007)"
    assert lines[2] == "Responda ACEPTAR OT-00042 o RECHAZAR OT-00042"
    assert lines[3] == "https://cmms.example.com/admin/cmms/workorder/42/change/"
    assert "Modo de falla" not in text  # the long body stays on the richer channels


def test_without_buttons_no_reply_keywords_are_offered():
    assert "ACEPTAR" not in render(alert())


def test_a_type_without_its_own_template_uses_the_default_one():
    text = render(alert(message_type="work_order_overdue", title="Orden de trabajo vencida: OT-00042",
                        body="OT-00042 para Camión 07 (CAM-007) venció el 01/12/2026 10:00.\nCambio de neumático"))
    assert text.splitlines()[:2] == ["Orden de trabajo vencida: OT-00042",
                                     "OT-00042 para Camión 07 (CAM-007) venció el 01/12/2026 10:00."]


def test_a_send_posts_the_form_and_returns_the_sid_with_segments_and_price(twilio):
    sent = channel(twilio).send(TO, alert())
    [message] = twilio.messages(to=TO)
    assert str(sent) == message["sid"] and sent.startswith("SM")
    assert message["from"] == DEFAULT_FROM and message["body"] == render(alert())
    assert message["status_callback"] == "http://127.0.0.1:9/sms/twilio/status/"
    encoding, count = segments(message["body"])
    assert sent.details == {"segments": count, "encoding": encoding, "price": message["price"], "price_unit": "USD"}
    assert encoding == "UCS-2"  # "CRÍTICO", "Camión": accents still go, in UCS-2


def test_a_messaging_service_is_sent_instead_of_a_from_number(twilio):
    sms = TwilioSmsChannel(DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, messaging_service_sid="MG" + "1" * 32,
                           api_url=twilio.url)
    sms.send_text(TO, "hola")
    [message] = twilio.messages(to=TO)
    assert (message["from"], message["messaging_service_sid"]) == ("", "MG" + "1" * 32)


def test_21211_invalid_number_is_permanent_and_marks_the_address(twilio):
    twilio.set_number(TO, "invalid")
    with pytest.raises(ChannelError) as caught:
        channel(twilio).send_text(TO, "hola")
    assert (caught.value.code, caught.value.permanent, caught.value.unreachable) == (21211, True, True)


def test_21610_stop_is_permanent_and_an_opt_out_not_a_dead_address(twilio):
    twilio.set_number(TO, "stopped")
    with pytest.raises(ChannelError) as caught:
        channel(twilio).send_text(TO, "hola")
    assert (caught.value.code, caught.value.permanent, caught.value.opted_out, caught.value.unreachable) == (
        21610, True, True, False)


def test_20429_is_transient(twilio):
    twilio.configure(force_429=1)
    with pytest.raises(ChannelError) as caught:
        channel(twilio).send_text(TO, "hola")
    assert (caught.value.code, caught.value.permanent) == (20429, False)
    assert channel(twilio).send_text(TO, "hola").startswith("SM")  # the next one goes


def test_401_is_a_configuration_error_and_never_shows_the_token(twilio):
    with pytest.raises(ConfigurationError) as caught:
        channel(twilio, token="wrong-token-123456").send_text(TO, "hola")
    assert caught.value.code == 20003 and not caught.value.unreachable
    assert "wrong-token-123456" not in str(caught.value) and "wrong-token" not in repr(channel(twilio))


def test_a_5xx_is_transient(twilio):
    twilio.configure(force_500=1)
    with pytest.raises(ChannelError) as caught:
        channel(twilio).send_text(TO, "hola")
    assert (caught.value.code, caught.value.permanent, type(caught.value)) == (20500, False, ChannelError)
    assert twilio.messages() == []


def test_an_answer_that_is_not_twilios_is_a_configuration_error(twilio):
    sms = TwilioSmsChannel(DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, from_number=DEFAULT_FROM,
                           api_url=twilio.url + "/no-such-prefix")
    with pytest.raises(ConfigurationError) as caught:  # a wrong TWILIO_API_URL: the sandbox's own 404
        sms.send_text(TO, "hola")
    assert "TWILIO_API_URL" in str(caught.value)


def test_without_credentials_the_channel_refuses_to_build():
    with pytest.raises(ConfigurationError):
        TwilioSmsChannel("", "", from_number=DEFAULT_FROM)
    with pytest.raises(ConfigurationError):
        TwilioSmsChannel(DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN)


def test_numbers_are_normalized_to_e164_in_the_default_region(settings):
    settings.PHONE_DEFAULT_REGION = "CL"
    assert registry.normalize_address("SMS", "9 8765 4321") == "+56987654321"
    assert registry.normalize_address("SMS", "+56 9 8765 4321") == "+56987654321"
    with pytest.raises(registry.InvalidAddress):
        registry.normalize_address("SMS", "12")


def test_the_limiter_is_charged_one_token_per_segment():
    spec = registry.get("SMS")
    assert spec.requests_needed(alert()) == segments(render(alert()))[1]
    assert spec.requests_needed(alert(title="a" * 200, body="b" * 100, link="", message_type="announcement")) == 2
