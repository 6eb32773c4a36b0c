"""The inbox in a real browser (headless chromium) against the real stack:
uvicorn serving the app, a Celery worker delivering on the inapp queue, the
channel layer on a private Redis. A prediction recorded by the test shows up
without a reload, and reading it in one tab drops the badge in the other."""

from urllib.parse import urlparse

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from cmms.predictions import record_prediction
from notifications.models import InAppNotification, MessageLog
from tests.support import browser as chrome
from tests.support.browser import browser  # noqa: F401 - fixture
from tests.support.cmms import make_asset, make_operator

pytestmark = pytest.mark.e2e
WAIT_S = 20  # generous: the machine is shared; nothing here measures speed


def log_in(driver, server, username, password="clave-segura-123"):
    chrome.log_in(driver, server.url, username, password, next_path="/inbox/")
    WebDriverWait(driver, WAIT_S).until(lambda d: urlparse(d.current_url).path == "/inbox/")


def wait_live(driver):
    WebDriverWait(driver, WAIT_S).until(
        lambda d: d.execute_script("return document.documentElement.dataset.inboxLive") == "1")


def badge(driver):
    return driver.find_element(By.CSS_SELECTOR, "[data-unread-count]").text


@pytest.fixture
def operator():
    user = make_operator(first_name="Ana", last_name="Rojas", username="ana.rojas")
    user.set_password("clave-segura-123")
    user.save()
    return user


def test_a_prediction_appears_live_and_reading_it_drops_the_badge_in_another_tab(
    e2e, asgi_server, browser, operator  # noqa: F811
):
    driver = browser
    log_in(driver, asgi_server, "ana.rojas")
    assert "No hay notificaciones." in driver.page_source and badge(driver) == "0"
    wait_live(driver)
    driver.execute_script("window.__notReloaded = true;")

    order = record_prediction(asset=make_asset(code="CAM-77", name="Camión 77"), failure_mode="Falla de frenos",
                              probability=0.93, risk_level="CRITICAL", time_to_failure_hours=6).work_order
    note = InAppNotification.objects.get(user=operator)
    row = WebDriverWait(driver, WAIT_S).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, f'[data-note-id="{note.pk}"]'))[0]
    assert driver.execute_script("return window.__notReloaded === true")  # it came without a reload
    assert "Camión 77" in row.text and "⚠️" in row.text and "Crítica" in row.text
    assert "unread" in row.get_attribute("class") and badge(driver) == "1"
    link = row.find_element(By.CSS_SELECTOR, "a.note-link")
    assert link.text == "Abrir la orden de trabajo" and link.get_attribute("href").endswith(f"/{order.pk}/change/")
    assert MessageLog.objects.get(pk=note.message_log_id).status == "SENT"

    first_tab = driver.current_window_handle
    driver.switch_to.new_window("tab")
    driver.get(f"{asgi_server.url}/inbox/")
    wait_live(driver)
    second_tab = driver.current_window_handle
    assert badge(driver) == "1"

    driver.switch_to.window(first_tab)
    row.find_element(By.CSS_SELECTOR, "button.note-mark-read").click()
    WebDriverWait(driver, WAIT_S).until(lambda d: badge(d) == "0")
    driver.switch_to.window(second_tab)
    WebDriverWait(driver, WAIT_S).until(lambda d: badge(d) == "0")
    other_row = driver.find_element(By.CSS_SELECTOR, f'[data-note-id="{note.pk}"]')
    assert "unread" not in other_row.get_attribute("class")
    note.refresh_from_db()
    assert note.read_at is not None and MessageLog.objects.get(pk=note.message_log_id).status == "READ"


def test_after_a_server_restart_the_page_reconnects_and_shows_what_it_missed_once(
    e2e, redis_server, telegram_sandbox, browser, operator  # noqa: F811
):
    from notifications.message_router import MessageRouter
    from tests.conftest import wait_for_status, worker_env
    from tests.support.asgi import AsgiServer

    env = worker_env(redis_server.url, telegram_sandbox.url)
    server = AsgiServer(env).start()
    try:
        driver = browser
        log_in(driver, server, "ana.rojas")
        wait_live(driver)
        driver.execute_script("window.__notReloaded = true;")
        server.stop()
        WebDriverWait(driver, WAIT_S).until(
            lambda d: d.execute_script("return document.documentElement.dataset.inboxLive") == "0")

        # Delivered while no server holds the page's WebSocket: its push is lost.
        missed = MessageRouter().send_to_user(operator, "Mientras tanto", "OT-9 asignada").message_ids["IN_APP"]
        wait_for_status([missed], statuses=("SENT",))
        note = InAppNotification.objects.get(message_log_id=missed)

        server = AsgiServer(env, port=server.port).start()
        WebDriverWait(driver, WAIT_S * 2).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, f'[data-note-id="{note.pk}"]'))
        wait_live(driver)
        assert driver.execute_script("return window.__notReloaded === true")
        assert len(driver.find_elements(By.CSS_SELECTOR, f'[data-note-id="{note.pk}"]')) == 1
        assert badge(driver) == "1"
    finally:
        server.stop()


def test_with_the_websocket_blocked_the_inbox_still_works_by_reloading(e2e, asgi_server, browser, operator):  # noqa: F811
    from notifications.message_router import MessageRouter

    driver = browser
    # What a proxy that refuses WebSocket upgrades leaves a page with.
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {
        "source": "window.WebSocket = function () { throw new Error('blocked by the proxy'); };"})
    log_in(driver, asgi_server, "ana.rojas")
    MessageRouter().send_to_user(operator, "Sin WebSocket", "OT-5 asignada")
    note = InAppNotification.objects.get(user=operator)
    driver.refresh()
    row = driver.find_element(By.CSS_SELECTOR, f'[data-note-id="{note.pk}"]')
    assert badge(driver) == "1" and driver.execute_script("return document.documentElement.dataset.inboxLive") == "0"
    row.find_element(By.CSS_SELECTOR, "button.note-mark-read").click()
    WebDriverWait(driver, WAIT_S).until(lambda d: badge(d) == "0")
    driver.refresh()
    assert badge(driver) == "0"
    note.refresh_from_db()
    assert note.read_at is not None
