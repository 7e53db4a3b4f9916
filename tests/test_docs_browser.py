"""The interactive API docs render their operations in a real browser.

Headless Chromium from Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs
both) opens ``/api/v1/docs`` served by the app on a free local port. Selenium is given the
driver's path, so Selenium Manager never looks for or downloads one. Without Chromium the
test is skipped on a developer's machine and fails in CI, which always installs it.
"""

from __future__ import annotations

from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser import BROWSER

pytestmark = BROWSER


def test_the_docs_page_renders_the_operations(served: str, browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
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
