"""Real-browser tests: the app on a local port and headless Chromium driving it.

Chromium and its driver come from Debian's ``chromium`` and ``chromium-driver`` (``.ci/run``
installs both); Selenium is given the driver's path, so Selenium Manager never looks for
or downloads one. Without Chromium a test is skipped on a developer's machine and fails in
CI, which always installs it.

``tests/conftest.py`` loads this module as a plugin, so every test can ask for the
fixtures by name. ``served`` runs the app in a thread, so the server's requests commit on
connections of their own: browser tests are ``real_commits`` (a module of them says
``pytestmark = BROWSER``). When a test fails, the page it was on is saved as
``test-screenshots/<test name>.png`` at the top of the checkout (not committed), and the
path is printed. ``screenshot(driver, name)`` saves a picture on purpose (the README's,
under ``docs/screenshots``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait
from werkzeug.serving import make_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ROOT = Path(__file__).resolve().parent.parent
FAILURE_SHOTS = ROOT / "test-screenshots"
DOC_SHOTS = ROOT / "docs" / "screenshots"
#: The marks of every browser test module.
BROWSER = [pytest.mark.slow, pytest.mark.real_commits]


@pytest.fixture
def served(app: Flask) -> Iterator[str]:
    """The app on 127.0.0.1 at a free port, in a background thread."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="browser-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


@pytest.fixture
def browser(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[WebDriver]:
    """Headless Chromium, 1280x1024; its page is saved as a screenshot if the test fails."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        if os.environ.get("CI"):
            pytest.fail(f"CI installs chromium and chromium-driver; {CHROMIUM} is missing")
        pytest.skip(f"{CHROMIUM} or {CHROMEDRIVER} is not installed (apt-get install chromium)")
    monkeypatch.setenv("SE_AVOID_STATS", "true")  # Selenium Manager sends no usage stats
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1280,1024",
    ):
        options.add_argument(argument)
    language = getattr(request, "param", None)
    if isinstance(language, str):
        options.add_experimental_option("prefs", {"intl.accept_languages": language})
        options.add_argument(f"--lang={language}")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            FAILURE_SHOTS.mkdir(exist_ok=True)
            shot = FAILURE_SHOTS / f"{request.node.name}.png"
            driver.save_screenshot(str(shot))
            print(f"screenshot of the page when the test failed: {shot}")
        driver.quit()


def screenshot(driver: WebDriver, name: str) -> Path:
    """Save the page as ``docs/screenshots/<name>.png`` (the README shows some)."""
    DOC_SHOTS.mkdir(parents=True, exist_ok=True)
    path = DOC_SHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def sign_in(driver: WebDriver, served: str, email: str, password: str) -> None:
    """Sign in through the page as a person would, and wait for the next page."""
    driver.get(f"{served}/login")
    driver.find_element(By.ID, "email").send_keys(email)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "main button[type=submit]").click()
    WebDriverWait(driver, 20).until(expected_conditions.url_changes(f"{served}/login"))


def wait_for(driver: WebDriver, css: str, timeout: float = 20) -> Any:
    """The first element matching ``css`` once it is visible."""
    return WebDriverWait(driver, timeout).until(
        expected_conditions.visibility_of_element_located((By.CSS_SELECTOR, css))
    )
