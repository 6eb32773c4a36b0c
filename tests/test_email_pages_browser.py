"""The pages an e-mail leads to, in a real browser (headless Chromium): the
unsubscribe link from a reminder, and the local SMTP capture page."""

import pytest

from notifications.channels.email import unsubscribe_url
from notifications.models import UserChannelPreference
from tests.factories import make_user
from tests.support.browser import browser  # noqa: F401 - fixture (a Spanish reader's Chromium)


@pytest.mark.e2e
def test_a_reader_turns_reminders_off_from_the_link_in_the_email(browser, live_server, settings):  # noqa: F811
    from selenium.webdriver.common.by import By

    settings.SITE_URL = live_server.url
    pref = UserChannelPreference.objects.create(user=make_user(), channel_type="EMAIL", channel_user_id="a@faena.cl")
    browser.get(unsubscribe_url(pref.user_id, "reminders"))
    assert "¿Dejar de recibir recordatorios de mantenimiento por correo?" in browser.page_source
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "es"
    pref.refresh_from_db()
    assert pref.notify_reminders  # opening the link changed nothing
    browser.find_element(By.ID, "confirm").click()
    assert browser.find_element(By.ID, "result").text == (
        "Listo: ya no recibirá recordatorios de mantenimiento por correo.")
    pref.refresh_from_db()
    assert not pref.notify_reminders and pref.notify_work_orders


@pytest.mark.e2e
def test_the_capture_page_shows_the_html_part_text_headers_and_the_attachment(browser, smtp):  # noqa: F811
    from selenium.webdriver.common.by import By

    from notifications.channels import Attachment, OutgoingMessage
    from notifications.channels.email import EmailChannel

    message = OutgoingMessage(title="Nueva orden de trabajo: OT-00042", body="Camión <A&B>_01 <script>x()</script>",
                              emoji="📋", link="http://127.0.0.1:8000/admin/", link_label="Abrir en el CMMS",
                              attachments=[Attachment("OT-00042.pdf", b"%PDF-1.4", "application/pdf")],
                              context={"message_type": "work_order_assigned"})
    EmailChannel(smtp.host, smtp.port).send("ana@faena.cl", message)
    [captured] = smtp.messages()
    browser.get(smtp.page_url)
    browser.find_element(By.LINK_TEXT, f"#{captured['id']}").click()
    assert browser.find_element(By.TAG_NAME, "h1").text == "📋 Nueva orden de trabajo: OT-00042"
    assert "Camión <A&B>_01 <script>x()</script>" in browser.find_element(By.TAG_NAME, "pre").text
    assert browser.find_element(By.LINK_TEXT, "OT-00042.pdf").get_attribute("href").endswith("/attachment/0")
    assert "Auto-Submitted" in browser.find_element(By.TAG_NAME, "table").text
    browser.switch_to.frame(browser.find_element(By.TAG_NAME, "iframe"))
    assert browser.find_element(By.LINK_TEXT, "Abrir en el CMMS").get_attribute("href") == "http://127.0.0.1:8000/admin/"
    assert "Camión <A&B>_01 <script>x()</script>" in browser.find_element(By.TAG_NAME, "body").text
