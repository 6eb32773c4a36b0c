"""A real browser (Debian's headless Chromium, driven by selenium) opens what
a supervisor and a newcomer look at: the MessageLog list in the admin at
1366 px, and the Telegram sandbox's chat page at a phone's width.

The browser is tests/support/browser.py's (Debian's chromium and
chromedriver, installed with apt-get when missing); screenshots go to
docs/screenshots/, which the README shows.
"""

import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from notifications.channels import OutgoingMessage
from notifications.channels.telegram import TelegramChannel
from notifications.models import MessageLog, MessageStatus
from tests.conftest import SANDBOX_TOKEN
from tests.factories import make_user
from tests.support.browser import save_screenshot, start_chrome

pytestmark = pytest.mark.e2e
EMOJI_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")  # every message starts with an emoji


def ensure_emoji_font():
    """Without it the screenshots show boxes for the type emoji; installed like chromium."""
    if EMOJI_FONT.exists():
        return
    if shutil.which("apt-get"):
        subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=300", "install", "-y", "--no-install-recommends",
                        "fonts-noto-color-emoji"], check=False, capture_output=True, timeout=600,
                       env={"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    if not EMOJI_FONT.exists():
        pytest.fail("The browser tests need an emoji font: apt-get install fonts-noto-color-emoji")


@pytest.fixture(scope="module")
def browser():
    ensure_emoji_font()
    driver = start_chrome(language="es-CL,es")  # a Chilean supervisor's browser; the admin follows Accept-Language
    yield driver
    driver.quit()


def screenshot(driver, name):
    save_screenshot(driver, name)


def admin_login(driver, live_server, next_path):
    """A superuser "jefa" signs in at 1366 px and lands on ``next_path``."""
    from django.contrib.auth import get_user_model
    from selenium.webdriver.common.by import By

    get_user_model().objects.create_superuser("jefa", "jefa@example.com", "clave-segura-1", role="ADMIN")
    driver.set_window_size(1366, 768)
    driver.get(f"{live_server.url}/admin/login/?next={next_path}")
    driver.find_element(By.NAME, "username").send_keys("jefa")
    driver.find_element(By.NAME, "password").send_keys("clave-segura-1")
    driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()


def no_horizontal_scroll(driver, css=None):
    """Neither the page nor the element (the admin's results table scrolls inside its own box) scrolls sideways."""
    page = driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    if css is None:
        return page
    return page and driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e.scrollWidth <= e.clientWidth", css)


def test_the_message_log_fits_1366_px_and_reads_as_a_supervisor_expects(browser, live_server, transactional_db):
    from selenium.webdriver.common.by import By

    ana = make_user(first_name="Ana", last_name="Rojas", username="operador1")
    now = timezone.now()
    rows = [
        ("prediction_high_risk", "Riesgo alto: Sobrecalentamiento de motor en Camión <A&B>_01 (probabilidad 87 %)",
         MessageStatus.FAILED, "Telegram 403: Forbidden: bot was blocked by the user — la dirección quedó marcada "
         "como inalcanzable y no se reintentará"),
        ("work_order_assigned", "Nueva Orden de Trabajo OT-2026-00042 asignada: cambio de filtro hidráulico",
         MessageStatus.SENT, ""),
        ("maintenance_reminder", "Mantenimiento preventivo mañana: Cargador frontal CF-07", MessageStatus.RETRYING,
         "Telegram 429: Too Many Requests: retry after 7"),
    ]
    for i, (mtype, title, status, error) in enumerate(rows):
        MessageLog.objects.create(user=ana, channel_type="TELEGRAM", recipient="100001", message_type=mtype,
                                  title=title, body="…", status=status, last_error=error,
                                  created_at=now - timedelta(minutes=i), sent_at=now if status == "SENT" else None)

    admin_login(browser, live_server, "/admin/notifications/messagelog/")
    table = browser.find_element(By.ID, "result_list")
    headers = [th.text.strip() for th in table.find_elements(By.CSS_SELECTOR, "thead th") if th.text.strip()]
    assert headers == ["CREADO", "MENSAJE", "ESTADO", "CANAL", "PARA", "ÚLTIMO ERROR"], headers
    text = table.text
    assert "Riesgo alto: Sobrecalentamiento de motor en Camión <A&B>_01" in text
    assert "⚠️ Predicción de alto riesgo" in text and "prediction_high_risk" not in text
    assert "Fallido" in text and "Enviado" in text and "Reintentando" in text
    assert "Ana Rojas" in text and "bot was blocked by the user" in text
    assert no_horizontal_scroll(browser, "#changelist .results"), "the MessageLog list scrolls sideways at 1366 px"
    last_error = table.find_element(By.CSS_SELECTOR, "tbody tr td.field-short_error")
    assert last_error.is_displayed() and last_error.rect["x"] + last_error.rect["width"] <= 1366
    screenshot(browser, "admin-messagelog-1366.png")
    assert "Registros de mensajes" in browser.title or "registro de mensaje" in browser.title.lower()


def test_the_sandbox_shows_an_alert_as_a_phone_would(browser, sandbox):
    from selenium.webdriver.common.by import By

    sandbox.set_chat(100001, first_name="Ana", last_name="Rojas")
    TelegramChannel(SANDBOX_TOKEN, sandbox.url).send("100001", OutgoingMessage(
        title="Riesgo alto: Camión <A&B>_01", emoji="⚠️",
        body="Sobrecalentamiento de motor\nProbabilidad: 87 %\nOT-2026-00042 asignada a Ana Rojas",
        link="http://127.0.0.1:8100/admin/cmms/workorder/42/change/", link_label="Abrir en el CMMS",
        actions=[{"text": "✅ Aceptar", "callback_data": "accept_42"}, {"text": "❌ Rechazar", "callback_data": "r_42"}],
    ))
    browser.set_window_size(430, 932)
    browser.get(f"{sandbox.url}/chat/100001")
    assert browser.title == "Sandbox de Telegram: Chat Ana Rojas · 100001"
    message = browser.find_element(By.CSS_SELECTOR, ".msg .text")
    assert message.find_element(By.TAG_NAME, "b").text == "Riesgo alto: Camión <A&B>_01"
    link = message.find_element(By.TAG_NAME, "a")
    assert link.text == "→ Abrir en el CMMS"
    assert link.get_attribute("href") == "http://127.0.0.1:8100/admin/cmms/workorder/42/change/"
    lines = message.text.splitlines()
    assert "Probabilidad: 87 %" in lines and "OT-2026-00042 asignada a Ana Rojas" in lines
    buttons = browser.find_elements(By.CSS_SELECTOR, ".msg .btn")
    assert [b.text for b in buttons] == ["✅ Aceptar", "❌ Rechazar"] and all(b.is_displayed() for b in buttons)
    raw = browser.find_element(By.CSS_SELECTOR, ".msg details pre")
    assert not raw.is_displayed()  # the text as sent is one click away, not in the way
    assert no_horizontal_scroll(browser)
    screenshot(browser, "sandbox-chat-phone.png")


def test_a_role_broadcast_shows_its_progress_in_the_admin_at_1366_px(browser, live_server, transactional_db,
                                                                      no_broker, monkeypatch):
    from selenium.webdriver.common.by import By

    from notifications import role_broadcasts
    from notifications.message_router import MessageRouter
    from notifications.models import RoleBroadcast

    monkeypatch.setattr(role_broadcasts, "publish_expansion", lambda pk: True)  # expanded by hand below
    users = [make_user(role="TECHNICIAN", telegram=200 + i) for i in range(8)]
    result = MessageRouter().broadcast_to_role("TECHNICIAN", "Corte de agua en la planta <Norte> & taller_2",
                                               "Mañana de 8:00 a 12:00")
    assert result["total"] == 8
    broadcast = RoleBroadcast.objects.get()
    role_broadcasts.expand_batch(broadcast.pk, batch_users=5)
    MessageLog.objects.filter(user__in=users[:3]).update(status=MessageStatus.SENT)
    MessageLog.objects.filter(user=users[3]).update(status=MessageStatus.FAILED, last_error="Telegram 403")

    admin_login(browser, live_server, "/admin/notifications/rolebroadcast/")
    table = browser.find_element(By.ID, "result_list")
    text = table.text
    assert "Corte de agua en la planta <Norte> & taller_2" in text  # escaped, not markup
    assert "5 de 8" in text and "Expandiéndose" in text and "Técnico" in text, text
    screenshot(browser, "admin-rolebroadcast-1366.png")
    assert no_horizontal_scroll(browser, "#changelist .results"), "the broadcast list scrolls sideways at 1366 px"
    filters = browser.find_element(By.ID, "changelist-filter").text
    assert "Técnico" in filters and "TECHNICIAN" not in filters  # the role as users read it
    assert "Expandiéndose" in filters and "Vacío" not in filters
    screenshot(browser, "admin-rolebroadcast-1366.png")

    table.find_element(By.CSS_SELECTOR, "tbody tr th a, tbody tr td a").click()
    heading = browser.find_element(By.CSS_SELECTOR, "#content h2").text
    assert heading == f"Difusión {broadcast.pk} a Técnico: Corte de agua en la planta <Norte> & taller_2", heading
    readonly = {row.get_attribute("class").split("field-")[-1].split()[0]: row.find_element(
        By.CSS_SELECTOR, "div.readonly").text for row in browser.find_elements(By.CSS_SELECTOR, "div.form-row")
        if "field-" in row.get_attribute("class") and row.find_elements(By.CSS_SELECTOR, "div.readonly")}
    assert (readonly["sent"], readonly["failed_messages"], readonly["waiting"], readonly["rows_queued"]) == \
        ("3", "1", "1", "5"), readonly
    assert readonly["type_name"] == "📢 Aviso" and readonly["role_label"] == "Técnico"  # no stored value shows
    link = browser.find_element(By.PARTIAL_LINK_TEXT, "Ver los mensajes de esta difusión")
    assert link.is_displayed()
    assert no_horizontal_scroll(browser)
    screenshot(browser, "admin-rolebroadcast-detail-1366.png")
    link.click()
    rows = browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    assert len(rows) == 5  # the messages of this broadcast, not every message
