"""The sandbox's chat page in a real browser: a person types a message and
presses an inline button as the chat's user, and sees the bot's edit."""

import time

import pytest
import requests

from tests.conftest import SANDBOX_TOKEN
from tests.support.browser import browser  # noqa: F401 - fixture
from tests.support.processes import wait_for

pytestmark = pytest.mark.e2e


def test_a_person_types_presses_a_button_and_sees_the_edit(sandbox, browser):  # noqa: F811
    from selenium.webdriver.common.by import By

    bot = sandbox.bot_url(SANDBOX_TOKEN)
    markup = {"inline_keyboard": [[{"text": "✅ Aceptar", "callback_data": "offer-token-1"}]]}
    sent = requests.post(f"{bot}/sendMessage", json={"chat_id": 4300, "text": "OT-00042 asignada",
                                                     "reply_markup": markup}, timeout=5).json()["result"]
    browser.get(f"{sandbox.url}/chat/4300")
    box = browser.find_element(By.CSS_SELECTOR, "#say input[name=text]")
    box.send_keys("/ordenes")
    browser.find_element(By.CSS_SELECTOR, "#say button:not([type])").click()
    wait_for(lambda: any(u.get("message", {}).get("text") == "/ordenes" for u in sandbox.updates()),
             message="the typed message as an update")

    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    def press():
        # The page reloads itself after the typed message: the button may be
        # gone for a moment, or replaced between finding and clicking it.
        try:
            browser.find_element(By.CSS_SELECTOR, "button.press[data-callback='offer-token-1']").click()
        except (NoSuchElementException, StaleElementReferenceException):
            return False
        return True

    wait_for(press, message="the button on the reloaded page")
    query = wait_for(lambda: next((u["callback_query"] for u in sandbox.updates() if "callback_query" in u), None),
                     message="the press as a callback query")
    assert (query["data"], query["message"]["message_id"], query["from"]["id"]) == ("offer-token-1",
                                                                                     sent["message_id"], 4300)

    requests.post(f"{bot}/editMessageText", json={"chat_id": 4300, "message_id": sent["message_id"],
                                                  "text": "OT-00042 asignada\n\n✅ Aceptada por Ana, 10:42"}, timeout=5)
    time.sleep(0.1)
    browser.get(f"{sandbox.url}/chat/4300")
    page = browser.find_element(By.TAG_NAME, "body").text
    assert "✅ Aceptada por Ana, 10:42" in page
    assert not browser.find_elements(By.CSS_SELECTOR, "button.press")  # the edit removed the button
