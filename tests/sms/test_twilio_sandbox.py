"""The Twilio sandbox is at least as strict as Twilio for what we use: auth,
form encoding, E.164, the error codes, the sender's pace, signed callbacks,
inbound SMS with STOP/START, and the phone pages."""

import signal
import subprocess
import sys
import urllib.parse

import pytest
import requests

from notifications import twilio_signature
from sandbox.twilio import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, DEFAULT_FROM
from tests.support.processes import ROOT, wait_for

AUTH = (DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN)
TO = "+56987654321"


def send(twilio, auth=AUTH, **form):
    data = {"To": TO, "From": DEFAULT_FROM, "Body": "hola", **form}
    return requests.post(twilio.messages_url, data={k: v for k, v in data.items() if v is not None}, auth=auth)


@pytest.mark.parametrize(("form", "auth", "status", "code"), [
    ({}, (DEFAULT_ACCOUNT_SID, "wrong"), 401, 20003),
    ({"To": None}, AUTH, 400, 21604),
    ({"To": "987654321"}, AUTH, 400, 21211),
    ({"To": "+0123"}, AUTH, 400, 21211),
    ({"From": None}, AUTH, 400, 21603),
    ({"From": "12345"}, AUTH, 400, 21212),
    ({"Body": ""}, AUTH, 400, 21602),
    ({"Body": "a" * 1601}, AUTH, 400, 21617),
    ({"StatusCallback": "ftp://x"}, AUTH, 400, 21609),
])
def test_bad_requests_get_twilios_error_codes(twilio, form, auth, status, code):
    response = send(twilio, auth=auth, **form)
    assert (response.status_code, response.json()["code"]) == (status, code)
    assert twilio.messages() == []


def test_only_form_encoded_parameters_are_accepted(twilio):
    response = requests.post(twilio.messages_url, json={"To": TO, "From": DEFAULT_FROM, "Body": "x"}, auth=AUTH)
    assert (response.status_code, response.json()["code"]) == (400, 20001)


def test_another_accounts_url_is_refused(twilio):
    url = twilio.messages_url.replace(DEFAULT_ACCOUNT_SID, "AC" + "9" * 32)
    assert requests.post(url, data={"To": TO, "From": DEFAULT_FROM, "Body": "x"}, auth=AUTH).status_code == 401


def test_a_sent_message_can_be_fetched(twilio):
    sid = send(twilio).json()["sid"]
    response = requests.get(twilio.messages_url.replace(".json", f"/{sid}.json"), auth=AUTH)
    assert response.json()["sid"] == sid and response.json()["status"] == "queued"


def test_the_sender_is_paced_in_segments_and_another_sender_is_not(twilio):
    twilio.configure(limits_enabled=True, sender_rate=1, sender_burst=1)
    assert send(twilio, Body="a" * 161).status_code == 201  # two segments
    refused = send(twilio)
    assert (refused.status_code, refused.json()["code"]) == (429, 20429)
    assert send(twilio, From="+15005550007").status_code == 201


def test_status_callbacks_are_signed_as_twilio_signs_them_and_come_in_order(twilio, receiver):
    url, received = receiver
    twilio.configure(callback_delay_s=0.01, delivered_delay_s=0.01)
    sid = send(twilio, StatusCallback=f"{url}/sms/twilio/status/?x=1").json()["sid"]
    wait_for(lambda: len(received) == 2, timeout=10, message="two callbacks")
    assert [p["MessageStatus"] for _path, p, _sig in received] == ["sent", "delivered"]
    for path, params, signature in received:
        assert params["MessageSid"] == sid and params["To"] == TO
        assert twilio_signature.is_valid(DEFAULT_AUTH_TOKEN, url + path, params, signature)
    assert [c["answer"] for c in twilio.callbacks()] == [204, 204]


def test_an_undelivered_number_ends_undelivered_with_30003(twilio, receiver):
    url, received = receiver
    twilio.configure(callback_delay_s=0.01, delivered_delay_s=0.01, callback_order="reversed")
    twilio.set_number(TO, "undelivered")
    send(twilio, StatusCallback=url)
    wait_for(lambda: len(received) == 2, timeout=10, message="two callbacks")
    assert [(p["MessageStatus"], p.get("ErrorCode")) for _u, p, _s in received] == [("undelivered", "30003"),
                                                                                    ("sent", None)]
    assert twilio.messages(to=TO)[0]["status"] == "undelivered"  # the furthest state, whatever the order


def test_stop_from_a_phone_makes_sends_to_it_fail_with_21610_until_start(twilio, receiver):
    url, received = receiver
    twilio.configure(inbound_url=f"{url}/in")
    assert twilio.send_inbound(TO, "stop")["answer"] == 204
    assert send(twilio).json()["code"] == 21610
    twilio.send_inbound(TO, "START")
    assert send(twilio).status_code == 201
    (path, params, signature), _start = received
    assert params["From"] == TO and params["Body"] == "stop"
    assert twilio_signature.is_valid(DEFAULT_AUTH_TOKEN, url + path, params, signature)


def test_the_phone_page_shows_messages_escaped_and_its_form_sends_an_sms(twilio, receiver):
    url, received = receiver
    twilio.configure(inbound_url=f"{url}/in")
    send(twilio, Body="Camión <A&B>_01")
    page = requests.get(f"{twilio.url}/phone/{urllib.parse.quote(TO)}").text
    assert "Camión &lt;A&amp;B&gt;_01" in page and "1 × UCS-2" in page
    assert urllib.parse.quote(TO) in requests.get(twilio.url + "/").text
    response = requests.post(f"{twilio.url}/_sandbox/inbound", data={"from": TO, "body": "ACEPTAR OT-00001"},
                             allow_redirects=False)
    assert response.status_code == 303 and response.headers["Location"] == f"/phone/{urllib.parse.quote(TO)}"
    assert received[0][1]["Body"] == "ACEPTAR OT-00001"
    assert "ACEPTAR OT-00001" in requests.get(f"{twilio.url}/phone/{urllib.parse.quote(TO)}").text


def test_unknown_options_are_refused(twilio):
    response = requests.post(f"{twilio.url}/_sandbox/config", json={"no_such": 1})
    assert response.status_code == 400 and "no_such" in response.json()["error"]


def test_python_m_sandbox_twilio_serves_until_sigterm():
    proc = subprocess.Popen([sys.executable, "-m", "sandbox.twilio", "--port", "0", "--quiet"], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("Twilio sandbox listening on http://127.0.0.1:")
        url = line.split()[4]
        assert requests.get(f"{url}/_sandbox/health", timeout=5).json() == {"ok": True}
    finally:
        proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
