"""The interactive API docs render their operations in a real browser.

Headless Chromium from Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs
both) opens ``/api/v1/docs`` served by the app on a free local port. Selenium is given the
driver's path, so Selenium Manager never looks for or downloads one. Without Chromium the
test is skipped on a developer's machine and fails in CI, which always installs it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.serving import make_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

pytestmark = pytest.mark.slow


@pytest.fixture
def served(app: Flask) -> Iterator[str]:
    """The app on 127.0.0.1 at a free port, in a background thread."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="docs-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        if os.environ.get("CI"):
            pytest.fail(f"CI installs chromium and chromium-driver; {CHROMIUM} is missing")
        pytest.skip(f"{CHROMIUM} or {CHROMEDRIVER} is not installed (apt-get install chromium)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

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
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_the_docs_page_renders_the_operations(served: str, browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{served}/api/v1/docs")

    def settled(driver) -> bool:  # type: ignore[no-untyped-def]
        text = driver.find_element(By.TAG_NAME, "body").text
        return bool(driver.find_elements(By.CSS_SELECTOR, ".opblock")) or (
            "Unable to render" in text
        )

    try:
        WebDriverWait(browser, 60).until(settled)
        page = browser.find_element(By.TAG_NAME, "body").text
        operations = browser.find_elements(By.CSS_SELECTOR, ".opblock")
        assert "Unable to render" not in page
        assert len(operations) > 100
        assert browser.find_elements(By.CSS_SELECTOR, ".opblock-tag"), "no tag sections"
        assert "/api/v1/ingestion/files" in page
    except Exception:
        shot = tmp_path / "docs.png"
        browser.save_screenshot(str(shot))
        print(f"screenshot of the docs page: {shot}")
        raise
