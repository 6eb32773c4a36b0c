"""A real browser for web-page tests: Debian's chromium and chromedriver,
driven headless by Selenium. Installed with apt-get when missing (as root,
with the package registry reachable); otherwise the test fails saying what
is missing, never skips silently."""

import shutil
import subprocess
import tempfile

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1366,900")


def ensure_chromium():
    if shutil.which("chromium") and shutil.which("chromedriver"):
        return
    if shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "chromium", "chromium-driver"],
                       check=False, capture_output=True, env={"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                       timeout=600)
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.fail("Browser tests need Debian's chromium and chromium-driver: apt-get install chromium chromium-driver")


def start_chrome(language="es"):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    ensure_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"intl.accept_languages": language})
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='cmms-chrome-')}")
    service = Service(executable_path=shutil.which("chromedriver") or CHROMEDRIVER)
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(30)
    # A click that submits a form or reloads the page returns before the next
    # page is there: finding an element waits for it (up to 5 s) instead of
    # failing at once (NoSuchElement seen in CI right after a submit).
    driver.implicitly_wait(5)
    return driver


@pytest.fixture
def browser():
    driver = start_chrome()
    yield driver
    driver.quit()


def log_in(driver, base_url, username, password, next_path="/"):
    from selenium.webdriver.common.by import By

    driver.get(f"{base_url}/accounts/login/?next={next_path}")
    driver.find_element(By.NAME, "username").send_keys(username)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()


def save_screenshot(driver, name):
    """Screenshots go to var/screenshots/ (ignored by git) so a test run
    leaves the checkout clean; UPDATE_SCREENSHOTS=1 writes the ones docs/
    shows (docs/screenshots/)."""
    import os
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    folder = root / ("docs" if os.environ.get("UPDATE_SCREENSHOTS") == "1" else "var") / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(folder / name))
    return folder / name
