"""The Twilio sandbox's phone page in a real browser: a person sees what a
phone received and sends an SMS from it, and the product gets it signed."""

import urllib.parse

import pytest

from notifications import twilio_signature
from sandbox.twilio import DEFAULT_AUTH_TOKEN, DEFAULT_FROM
from tests.sms.test_twilio_sandbox import send
from tests.support.browser import browser  # noqa: F401 - fixture
from tests.support.processes import wait_for

pytestmark = pytest.mark.e2e
TO = "+56987654321"


def test_a_person_reads_a_phones_messages_and_sends_an_sms_from_the_page(twilio, receiver, browser):  # noqa: F811
    from selenium.webdriver.common.by import By

    url, received = receiver
    twilio.configure(inbound_url=f"{url}/sms/twilio/inbound/")
    send(twilio, Body="ALERTA CMMS: Camión <A&B>_01")
    browser.get(f"{twilio.url}/")
    browser.find_element(By.LINK_TEXT, TO).click()
    assert browser.current_url.endswith(f"/phone/{urllib.parse.quote(TO)}")
    assert "ALERTA CMMS: Camión <A&B>_01" in browser.find_element(By.TAG_NAME, "table").text
    box = browser.find_element(By.NAME, "body")
    box.send_keys("ACEPTAR OT-00042")
    box.submit()
    wait_for(lambda: "ACEPTAR OT-00042" in browser.find_element(By.TAG_NAME, "table").text, timeout=10,
             message="the sent SMS on the page")
    [(path, params, signature)] = received
    assert (params["From"], params["To"], params["Body"]) == (TO, DEFAULT_FROM, "ACEPTAR OT-00042")
    assert twilio_signature.is_valid(DEFAULT_AUTH_TOKEN, url + path, params, signature)
