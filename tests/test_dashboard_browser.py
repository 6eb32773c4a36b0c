"""The dashboard in a real browser (headless Chromium): a supervisor logs in,
sees both charts drawn, and a message sent during the test shows up without
reloading the page."""

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from notifications.message_router import MessageRouter
from tests.factories import make_user
from tests.support.browser import browser, log_in, save_screenshot  # noqa: F401 - fixture

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("no_broker")]


def seed_history():
    """A day of traffic, so the charts (and the screenshot in docs/) show something."""
    from datetime import timedelta

    from django.utils import timezone

    from notifications.models import MessageLog

    now = timezone.now()
    rows = []
    for hour in range(24):
        for i in range(3 + hour % 5):
            created = now - timedelta(hours=hour, minutes=i)
            status = "FAILED" if i == 0 and hour % 6 == 0 else ("DELIVERED" if i % 2 else "SENT")
            rows.append(MessageLog(
                channel_type="TELEGRAM" if i % 3 else "IN_APP", recipient="1", message_type="announcement",
                body="x", status=status, created_at=created, sent_at=created + timedelta(seconds=0.4 + i / 10),
                last_error="Telegram 403: Forbidden: bot was blocked by the user" if status == "FAILED" else "",
                failed_at=created if status == "FAILED" else None,
            ))
    MessageLog.objects.bulk_create(rows)
    from notifications import stats

    stats.rollup()


def sent_count(driver, channel):
    cell = driver.find_element(By.CSS_SELECTOR, f'tr[data-channel="{channel}"] td[data-count="queued"]')
    return int(cell.text)


def test_a_supervisor_sees_the_charts_and_a_new_message_without_reloading(live_server, browser, settings):  # noqa: F811
    settings.DASHBOARD_REFRESH_S = 1
    supervisor = make_user(role="SUPERVISOR", username="supervisora")
    supervisor.set_password("clave-segura-1")
    supervisor.save()
    operator = make_user(telegram=100001)
    seed_history()
    log_in(browser, live_server.url, "supervisora", "clave-segura-1", next_path="/dashboard/")
    wait = WebDriverWait(browser, 20)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "svg.chart"))
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg.chart")) == 2
    assert "Panel del despachador" in browser.title
    before = sent_count(browser, "TELEGRAM")
    marker = browser.find_element(By.ID, "dashboard-body")
    browser.execute_script("arguments[0].dataset.sameDocument = 'yes'", marker)

    MessageRouter().send_to_user(operator, "Orden asignada", "Camión <A&B>_01", message_type="work_order_assigned")

    wait.until(lambda d: sent_count(d, "TELEGRAM") == before + 1)
    # The same document: refreshed in place, not reloaded.
    assert browser.find_element(By.ID, "dashboard-body").get_attribute("data-same-document") == "yes"
    save_screenshot(browser, "dashboard.png")


def test_an_operator_is_refused_in_the_browser_too(live_server, browser):  # noqa: F811
    operator = make_user(role="OPERATOR", username="operador9")
    operator.set_password("clave-segura-1")
    operator.save()
    log_in(browser, live_server.url, "operador9", "clave-segura-1", next_path="/dashboard/")
    # The login page's own URL carries ?next=/dashboard/: wait for the answer, not the address.
    WebDriverWait(browser, 20).until(lambda d: "/accounts/login/" not in d.current_url)
    assert "403" in browser.page_source or "Forbidden" in browser.page_source
