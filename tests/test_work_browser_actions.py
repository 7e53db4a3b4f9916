"""In a real browser: the case screen's actions by keyboard, with their live parts (the
settlement's approval level as the amount is typed, the plan's schedule before saving),
in Chinese and in English."""

from __future__ import annotations

import datetime as dt
import os
from decimal import Decimal
from typing import Any

import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy import select

from recova.platform.agencies.contracts import AgencyContract
from recova.platform.agencies.models import Agency
from recova.platform.work.models import PaymentPlan
from tests.browser import BROWSER, sign_in, wait_for
from tests.compliance_support import make_lender
from tests.support import PASSWORD

pytestmark = BROWSER

SAVED = {"zh-CN": "已约定还款计划", "en": "Payment plan agreed"}


def _limits(lender: Any) -> None:
    with lender.objects.db.session() as session:
        agency = session.get(Agency, lender.agency_ids[0])
        assert agency is not None
        agency.collector_discount_limit = Decimal(10)
        for contract in session.scalars(
            select(AgencyContract).where(AgencyContract.agency_id == lender.agency_ids[0])
        ):
            contract.settlement_discount_limit = Decimal(30)
        session.commit()


def _level(browser: WebDriver, expected: str) -> str:
    def shown(driver: WebDriver) -> str | None:
        found = driver.find_elements(By.CSS_SELECTOR, "#settlement-level-answer")
        if found and found[0].get_attribute("data-level") == expected:
            return str(found[0].text)
        return None

    # htmx swaps the answer in as the amount is typed: an element read may be replaced.
    wait = WebDriverWait(browser, 20, ignored_exceptions=[StaleElementReferenceException])
    return str(wait.until(shown))


@pytest.mark.parametrize("browser", ["zh-CN", "en"], indirect=True)
def test_a_collector_checks_an_offer_and_saves_a_plan(
    app: Any, served: str, browser: WebDriver
) -> None:
    lender = make_lender(app, "CN")
    _limits(lender)
    debt = lender.debt()
    browser.set_window_size(1280, 800)
    sign_in(browser, served, lender.collector_emails[0], PASSWORD)
    browser.get(f"{served}/work/{lender.slug}/cases/{debt.case_id}")
    language = "zh-CN" if wait_for(browser, "html").get_attribute("lang") == "zh-CN" else "en"

    # s opens the settlement, the cursor in its amount; the level follows the typing.
    browser.find_element(By.TAG_NAME, "body").send_keys("s")
    amount = wait_for(browser, "#settlement-amount")
    assert browser.switch_to.active_element == amount
    amount.send_keys("3000")
    assert "40.00%" in _level(browser, "tenant")
    amount.send_keys(Keys.BACKSPACE * 4 + "4600")
    assert "8.00%" in _level(browser, "collector")
    amount.send_keys(Keys.BACKSPACE * 4 + "4000")
    assert "20.00%" in _level(browser, "manager")
    if os.environ.get("RECOVA_SHOTS"):
        browser.save_screenshot(f"{os.environ['RECOVA_SHOTS']}/settlement-{language}.png")

    # l opens the plan calculator; the schedule shows before anything is saved.
    amount.send_keys(Keys.ESCAPE)
    browser.find_element(By.TAG_NAME, "body").click()
    browser.find_element(By.TAG_NAME, "body").send_keys("l")
    count = wait_for(browser, "#plan-count")
    count.clear()
    count.send_keys("3")
    browser.find_element(By.ID, "plan-preview").click()
    wait_for(browser, "#plan-save")
    assert browser.current_url.endswith(f"/cases/{debt.case_id}")  # swapped in, no new page
    cells = browser.find_elements(By.CSS_SELECTOR, "#plan-schedule-table tbody td[data-amount]")
    shown = [Decimal(str(c.get_attribute("data-amount"))) for c in cells]
    assert shown == [Decimal("1666.66"), Decimal("1666.66"), Decimal("1666.68")]
    # A customised first instalment: the others share the rest.
    browser.find_element(By.ID, "plan-amounts-0").send_keys("2000")
    browser.find_element(By.ID, "plan-preview").click()

    def rebalanced(driver: WebDriver) -> list[Decimal] | None:
        found = driver.find_elements(By.CSS_SELECTOR, "#plan-schedule-table tbody td[data-amount]")
        try:
            amounts = [Decimal(str(c.get_attribute("data-amount"))) for c in found]
        except StaleElementReferenceException:  # htmx swapped the table in meanwhile
            return None
        return amounts if amounts and amounts[0] == Decimal("2000.00") else None

    assert WebDriverWait(browser, 20).until(rebalanced) == [
        Decimal("2000.00"),
        Decimal("1500.00"),
        Decimal("1500.00"),
    ]
    if os.environ.get("RECOVA_SHOTS"):
        browser.save_screenshot(f"{os.environ['RECOVA_SHOTS']}/plan-{language}.png")
    browser.find_element(By.ID, "plan-save").click()
    assert SAVED[language] in wait_for(browser, "p.flash").text
    with lender.scope() as session:
        [plan] = session.scalars(select(PaymentPlan).where(PaymentPlan.case_id == debt.case_id))
        assert [i.amount for i in plan.instalments] == [
            Decimal("2000.00"),
            Decimal("1500.00"),
            Decimal("1500.00"),
        ]
        assert plan.instalments[0].due_date >= dt.date.today() - dt.timedelta(days=1)
