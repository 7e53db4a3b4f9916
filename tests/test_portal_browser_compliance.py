"""The compliance pages in a real browser, in both languages: an admin tightens the policy
(a loosening is refused beside its rule first) and simulates a day call and a late call."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from tests.browser import BROWSER, screenshot, sign_in, wait_for
from tests.compliance_support import Lender, make_lender
from tests.support import PASSWORD

pytestmark = BROWSER

SAVED = {"zh-CN": "合规策略已保存", "en": "The policy was saved and binds from now."}
LOOSENS = {"zh-CN": "会放宽", "en": "would loosen"}
BLOCKED = {"zh-CN": "不在可联系时段内", "en": "Outside the contact window"}


def _set(driver: WebDriver, element_id: str, value: str) -> None:
    """Set an input's value as typed (time inputs read keys by the browser's locale)."""
    element = driver.find_element(By.ID, element_id)
    driver.execute_script("arguments[0].value = arguments[1]", element, value)


@pytest.mark.parametrize("browser", ["zh-CN", "en"], indirect=True)
def test_an_admin_tightens_the_policy_and_simulates_a_late_call(
    app, served: str, browser: WebDriver, request: pytest.FixtureRequest
) -> None:
    language = request.node.callspec.params["browser"]
    cn: Lender = make_lender(app, "CN")
    debt = cn.debt(timezone="Asia/Shanghai")
    sign_in(browser, served, cn.admin_email, PASSWORD)
    browser.get(f"{served}/portal/{cn.slug}/compliance")
    wait_for(browser, "#rules-table")

    _set(browser, "window_end", "23:00")
    browser.find_element(By.CSS_SELECTOR, "#save-policy").click()
    error = wait_for(browser, "#window_end-error")
    assert LOOSENS[language] in error.text
    assert browser.find_element(By.ID, "window_end").get_attribute("value") == "23:00"

    _set(browser, "window_end", "21:00")
    _set(browser, "max_connected_calls_per_day", "2")
    browser.find_element(By.CSS_SELECTOR, "#save-policy").click()
    assert SAVED[language] in wait_for(browser, "p.flash").text
    in_force = browser.find_element(By.CSS_SELECTOR, 'tr[data-rule="window_end"] td[data-in-force]')
    assert in_force.text == "21:00"
    screenshot(browser, f"compliance-{language}")

    browser.get(f"{served}/portal/{cn.slug}/compliance/simulate")
    wait_for(browser, "#schedule-rows")
    for n, at in enumerate(("2026-12-21T10:00", "2026-12-21T23:00")):
        browser.find_element(By.ID, f"rows-{n}-case_id").send_keys(str(debt.case_id))
        browser.find_element(By.ID, f"rows-{n}-contact_id").send_keys(str(debt.phones[0]))
        Select(browser.find_element(By.ID, f"rows-{n}-channel")).select_by_value("call_out")
        _set(browser, f"rows-{n}-at", at)
    browser.find_element(By.CSS_SELECTOR, "button[value=rows]").click()
    wait_for(browser, "#verdict-table")
    rows = browser.find_elements(By.CSS_SELECTOR, "#verdict-table tbody tr")
    assert [r.get_attribute("data-verdict") for r in rows] == ["allowed", "blocked"]
    assert BLOCKED[language] in rows[1].text
    screenshot(browser, f"compliance-simulate-{language}")
