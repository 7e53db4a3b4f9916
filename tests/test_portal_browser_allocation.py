"""In a real browser: a tenant admin opens a draft strategy, dry-runs it, reads its figures
and activates it, in Chinese and in English."""

from __future__ import annotations

from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from tests import test_portal_allocation as portal_allocation
from tests.browser import BROWSER, screenshot, sign_in, wait_for
from tests.support import PASSWORD

pytestmark = BROWSER

DRAFT = {"zh-CN": "草稿", "en": "Draft"}
ACTIVE = {"zh-CN": "启用", "en": "Active"}
BY_AGENCY = {"zh-CN": "按委外机构", "en": "By agency"}


@pytest.mark.parametrize("browser", ["zh-CN", "en"], indirect=True)
def test_an_admin_activates_a_strategy_after_a_dry_run(
    app: Any, served: str, browser: WebDriver
) -> None:
    book = portal_allocation.Book(app)
    sign_in(browser, served, book.tenant.admin_email, PASSWORD)
    browser.get(f"{served}{book.url()}")
    wait_for(browser, "#strategies")
    lang = browser.find_element(By.TAG_NAME, "html").get_attribute("lang") or ""
    language = "zh-CN" if lang.startswith("zh") else "en"
    screenshot(browser, f"allocation-{language}")

    browser.get(f"{served}{book.version_url(2, '/edit')}")
    wait_for(browser, "#policy-form")
    screenshot(browser, f"allocation-edit-{language}")

    browser.get(f"{served}{book.version_url(2)}")
    assert wait_for(browser, "#version-state").text == DRAFT[language]
    wait_for(browser, "#dry-run").click()
    placed = wait_for(browser, "#dry-placed", timeout=60)
    assert placed.text == "40"
    table = wait_for(browser, "#dry-by-agency_id")
    counts = {
        row.get_attribute("data-key"): row.find_elements(By.TAG_NAME, "td")[1].text
        for row in table.find_elements(By.CSS_SELECTOR, "tbody tr")
    }
    assert counts == {str(book.a): "20", str(book.b): "20"}
    assert BY_AGENCY[language] in browser.page_source
    screenshot(browser, f"allocation-dry-run-{language}")

    wait_for(browser, "#activate").click()
    WebDriverWait(browser, 10).until(expected_conditions.alert_is_present())
    browser.switch_to.alert.accept()
    WebDriverWait(browser, 20).until(
        lambda driver: driver.find_element(By.ID, "version-state").text == ACTIVE[language]
    )
    assert wait_for(browser, "p.flash").is_displayed()
    assert not browser.find_elements(By.ID, "activate")
    assert [(v, active) for v, active, _ in book.versions()] == [(1, False), (2, True)]
