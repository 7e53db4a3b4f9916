"""The agencies pages in a real browser, in both languages: a tenant admin compares the
agencies for a month, picks another month, and opens one agency's scorecard (the
screenshots docs/screenshots/agencies-*.png are taken)."""

from __future__ import annotations

import pytest
from flask import Flask
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from recova.platform.web.portal import agencies as agencies_page
from tests.browser import BROWSER, screenshot, sign_in, wait_for
from tests.support import PASSWORD
from tests.test_portal_agencies import TODAY, Book

pytestmark = BROWSER


def _full_page(browser: WebDriver, name: str) -> None:
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, min(int(height) + 200, 5000))
    screenshot(browser, name)
    browser.set_window_size(1280, 900)


@pytest.mark.parametrize(
    ("browser", "lang", "labels"),
    [
        ("en", "en", ("Comparison for May 2026", "Contracts", "Right-party contact")),
        ("zh-CN", "zh-CN", ("2026年5月 对比", "合同", "本人有效联系")),
    ],
    indirect=["browser"],
)
def test_a_tenant_admin_compares_agencies_and_opens_one(
    app: Flask,
    served: str,
    browser: WebDriver,
    monkeypatch: pytest.MonkeyPatch,
    lang: str,
    labels: tuple[str, ...],
) -> None:
    monkeypatch.setattr(agencies_page, "tenant_today", lambda zone: TODAY)
    book = Book(app)

    sign_in(browser, served, book.admin_email, PASSWORD)
    browser.get(f"{served}/portal/{book.slug}/agencies")
    wait_for(browser, "#comparison")
    text = browser.find_element(By.TAG_NAME, "main").text
    for label in labels:
        assert label in text
    row = browser.find_element(By.CSS_SELECTOR, f'#comparison tr[data-agency="{book.a0}"]')
    assert "445.00" in row.find_element(By.CSS_SELECTOR, "[data-figure=recovered]").text
    _full_page(browser, f"agencies-{lang}")

    # Another month through the selector (a plain GET form).
    Select(browser.find_element(By.ID, "month")).select_by_value("2026-04")
    browser.find_element(By.CSS_SELECTOR, ".month-picker button[type=submit]").click()
    wait_for(browser, 'option[value="2026-04"][selected]')
    row = browser.find_element(By.CSS_SELECTOR, f'#comparison tr[data-agency="{book.a0}"]')
    assert "200.00" in row.find_element(By.CSS_SELECTOR, "[data-figure=recovered]").text

    row.find_element(By.TAG_NAME, "a").click()
    wait_for(browser, "#contract-periods")
    assert browser.find_elements(By.CSS_SELECTOR, "#placements tr[data-placement]")
    browser.get(f"{served}/portal/{book.slug}/agencies/{book.a0}?month=2026-05")
    wait_for(browser, "#blocked")
    _full_page(browser, f"agencies-detail-{lang}")
