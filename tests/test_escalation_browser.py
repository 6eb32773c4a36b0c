"""The escalation dry run in a real browser (headless Chromium): an admin
asks who a HIGH order on an asset would reach on Sunday at 03:00, and reads
the steps, the channels, the wait for the shift and the warning."""

from datetime import time

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from cmms.models import Role, ShiftPattern, ShiftWindow
from notifications.models import UserChannelPreference
from tests.factories import make_user
from tests.support.browser import browser, log_in, save_screenshot  # noqa: F401 - fixture
from tests.support.cmms import make_asset, make_operator
from tests.test_escalation import make_policy

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("no_broker")]


def test_an_admin_runs_the_escalation_dry_run_and_sees_who_is_reached_and_the_warnings(live_server, browser):  # noqa: F811
    admin = make_user(role=Role.ADMIN, username="jefa", is_staff=True, is_superuser=True)
    admin.set_password("clave-segura-1")
    admin.save()
    asset = make_asset(code="PAL-01", name="Pala <A&B>", site="Mina Norte")
    make_operator(telegram=1601, first_name="Ana", last_name="Rojas")
    boss = make_user(role=Role.SUPERVISOR, site="Mina Norte", first_name="Eva", last_name="Soto")
    UserChannelPreference.objects.filter(user=boss).delete()
    make_policy(priority="high", steps=(("NOTIFY_ASSIGNEE", "TELEGRAM"), ("NOTIFY_SUPERVISORS", "")), wait_s=600)
    pattern = ShiftPattern.objects.create(name="Diurno", site="Mina Norte")
    for day in range(5):
        ShiftWindow.objects.create(pattern=pattern, weekday=day, starts=time(8), ends=time(20))

    log_in(browser, live_server.url, "jefa", "clave-segura-1", next_path="/admin/cmms/escalationpolicy/dry-run/")
    wait = WebDriverWait(browser, 20)
    wait.until(lambda d: d.find_elements(By.NAME, "priority"))
    Select(browser.find_element(By.NAME, "priority")).select_by_value("high")
    Select(browser.find_element(By.NAME, "asset")).select_by_visible_text(str(asset))
    browser.execute_script("arguments[0].value = '2026-11-29T03:00'", browser.find_element(By.NAME, "at"))
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()

    rows = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#dry-run tbody tr"))
    cells = [[c.text for c in row.find_elements(By.TAG_NAME, "td")] for row in rows]
    assert len(cells) == 3
    assert cells[0][2] == "Ana Rojas" and cells[0][3] == "IN_APP; TELEGRAM (espera hasta lun 30/11 08:00)"
    assert "fuera de turno" in cells[0][4]
    assert cells[2][2] == "Eva Soto" and cells[2][3] == "sin canal utilizable"
    assert "Nadie aquí tiene un canal vinculado" in cells[2][4]
    save_screenshot(browser, "escalation-dry-run.png")
