"""In a real browser, in Chinese and in English: a collector works three cases from the
queue (a no-answer call and on to the next case, a call the contact window blocks, a
promise to pay), and a manager moves 50 cases by a filter and approves a settlement.

The gate reads the real clock, so the debtors' zones are chosen from it: a zone where it
is about noon now for those who may be called, about three at night for the one who may
not (``zone_where_it_is``). The README's pictures of the queue and of the case screen in
the middle of a call are taken here, at 1280x800.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy import select

from recova.platform.agencies.contracts import AgencyContract
from recova.platform.cases.models import Case
from recova.platform.kernel.extension import platform
from recova.platform.work import settlements
from recova.platform.work.models import ApprovalLevel, Promise, Settlement
from recova.tenants.models import tenant_today
from recova.tenants.scope import tenant_scope
from tests.browser import BROWSER, screenshot, sign_in, wait_for
from tests.compliance_support import Lender, make_lender, zone_where_it_is
from tests.support import PASSWORD
from tests.work_support import WorkWorld, work_world

pytestmark = BROWSER

WIDTH, HEIGHT = 1280, 800
NOON, NIGHT = 12, 3
QUEUE = {"zh-CN": "我的队列", "en": "My queue"}
BLOCKED = {"zh-CN": "被合规校验拦截", "en": "Not called: the compliance gate blocked it"}
PROMISED = {"zh-CN": "已记录承诺还款", "en": "Promise to pay recorded"}
MOVED = {"zh-CN": "将 50 个案件调给", "en": "50 cases moved to"}
APPROVED = {"zh-CN": "已批准", "en": "approved"}
ASSIGNMENT = {"zh-CN": "派案调整", "en": "Assignment"}
#: The top bar's language buttons.
LOCALES = {"zh-CN": "zh_CN", "en": "en"}


def _viewport(driver: WebDriver) -> None:
    """Make the page's viewport (not the window) 1280x800."""
    driver.set_window_size(WIDTH, HEIGHT)
    inner = driver.execute_script("return [window.innerWidth, window.innerHeight]")
    driver.set_window_size(WIDTH + WIDTH - inner[0], HEIGHT + HEIGHT - inner[1])
    assert driver.execute_script("return [window.innerWidth, window.innerHeight]") == [
        WIDTH,
        HEIGHT,
    ]


def _language(driver: WebDriver) -> str:
    return "zh-CN" if wait_for(driver, "html").get_attribute("lang") == "zh-CN" else "en"


def _press(driver: WebDriver, key: str) -> None:
    """One keystroke where the page has the focus (recova.js reads it from the document)."""
    driver.switch_to.active_element.send_keys(key)


def _on_case(driver: WebDriver, lender: Lender, case_id: int) -> None:
    """Wait until the browser shows that case's screen."""
    path = f"/work/{lender.slug}/cases/{case_id}"
    WebDriverWait(driver, 20).until(lambda d: d.current_url.split("?")[0].endswith(path))
    wait_for(driver, "#case-screen")


def _in_view(driver: WebDriver, element: WebElement) -> bool:
    """Whether the element is wholly inside the viewport, without scrolling."""
    return bool(
        driver.execute_script(
            "const r = arguments[0].getBoundingClientRect();"
            " return window.scrollY === 0 && r.top >= 0 && r.left >= 0"
            " && r.bottom <= window.innerHeight && r.right <= window.innerWidth;",
            element,
        )
    )


def _case_of(driver: WebDriver) -> int:
    found = re.search(r"/cases/(\d+)", driver.current_url)
    assert found is not None, driver.current_url
    return int(found.group(1))


def _set_date(driver: WebDriver, field: WebElement, day: dt.date) -> None:
    """Choose a day in a date field (typing one depends on the browser's own locale)."""
    driver.execute_script(
        "arguments[0].value = arguments[1];"
        " arguments[0].dispatchEvent(new Event('input', {bubbles: true}));"
        " arguments[0].dispatchEvent(new Event('change', {bubbles: true}));",
        field,
        day.isoformat(),
    )


def _flash(driver: WebDriver, text: str) -> str:
    """The page's message that says ``text`` (an earlier page's may still be shown)."""

    def shown(d: WebDriver) -> str | None:
        for flash in d.find_elements(By.CSS_SELECTOR, "p.flash"):
            if text in flash.text:
                return str(flash.text)
        return None

    return str(WebDriverWait(driver, 20).until(shown))


@pytest.mark.parametrize("browser", ["zh-CN", "en"], indirect=True)
def test_a_collector_works_three_cases(app: Any, served: str, browser: WebDriver) -> None:
    lender = make_lender(app, "CN")
    callable_ = [lender.debt(timezone=zone_where_it_is(NOON)) for _n in range(2)]
    night = lender.debt(timezone=zone_where_it_is(NIGHT))
    _viewport(browser)
    sign_in(browser, served, lender.collector_emails[0], PASSWORD)
    browser.get(f"{served}/work/")
    language = _language(browser)
    assert wait_for(browser, "h1").text == QUEUE[language]
    rows = browser.find_elements(By.CSS_SELECTOR, "#queue tr[data-testid=queue-row]")
    by_case = {int(str(r.get_attribute("data-case"))): r for r in rows}
    assert set(by_case) == {callable_[0].case_id, callable_[1].case_id, night.case_id}
    # The callable cases come first; the night one is last, with its rule and next time.
    assert int(str(rows[-1].get_attribute("data-case"))) == night.case_id
    verdict = by_case[night.case_id].find_element(By.CSS_SELECTOR, "[data-rule]")
    assert verdict.get_attribute("data-rule") == "contact_window"
    assert "08:00" in by_case[night.case_id].text  # the debtor's time it opens
    assert wait_for(browser, "#count-callable").text.endswith("2")
    if language == "en":
        screenshot(browser, "workspace-queue")

    # (a) Next case, then the call loop by keyboard: c calls the first contact point, 1
    # saves "No answer" and, as ticked, opens the next case.
    _press(browser, "n")
    WebDriverWait(browser, 20).until(lambda d: "/cases/" in d.current_url)
    wait_for(browser, "#case-screen")
    first = _case_of(browser)
    assert first in {d.case_id for d in callable_}
    debt = next(d for d in callable_ if d.case_id == first)
    other = next(d for d in callable_ if d.case_id != first)
    actions = 0
    _press(browser, "c")
    actions += 1
    outcome = wait_for(browser, "#outcome")
    no_answer = wait_for(browser, "#code-NO_ANSWER")
    assert browser.switch_to.active_element == no_answer
    for element in (outcome, no_answer, browser.find_element(By.ID, "next-case")):
        assert _in_view(browser, element), element.get_attribute("id")
    if language == "en":
        screenshot(browser, "workspace-case-screen")
    _press(browser, "1")
    actions += 1
    _on_case(browser, lender, other.case_id)
    assert actions <= 3
    [done] = lender.attempts(debt)
    assert (done.status, done.result, done.contact_id) == ("completed", "no_answer", debt.phones[0])

    # (c) On the next case, a promise to pay: p opens the form with the cursor in the amount.
    _press(browser, "p")
    amount = wait_for(browser, "#promise-amount")
    assert browser.switch_to.active_element == amount
    amount.send_keys("1200")
    due = tenant_today(lender.tenant().timezone) + dt.timedelta(days=3)
    _set_date(browser, browser.find_element(By.ID, "promise-due_date"), due)
    browser.find_element(By.ID, "promise-submit").click()
    _flash(browser, PROMISED[language])
    with lender.scope() as session:
        [promise] = session.scalars(select(Promise).where(Promise.case_id == other.case_id))
        assert (promise.amount, promise.due_date) == (Decimal("1200.00"), due)

    # (b) The night case, from the queue: Call says why not and when; nothing is counted.
    browser.get(f"{served}/work/")
    wait_for(browser, f"#row-{lender.slug}-{night.case_id} a").click()
    _on_case(browser, lender, night.case_id)
    [point] = [
        p
        for p in browser.find_elements(By.CSS_SELECTOR, "[data-testid=contact-point]")
        if p.get_attribute("id") == f"contact-{night.phones[0]}"
    ]
    assert point.get_attribute("data-verdict") == "blocked"
    _press(browser, "c")
    blocked = wait_for(browser, "#call-blocked")
    assert BLOCKED[language] in blocked.text
    reason = blocked.find_element(By.CSS_SELECTOR, ".reason").text
    assert "08:00-22:00" in reason, reason  # the rule in words: the CN pack's window
    opens = blocked.find_element(By.CSS_SELECTOR, "[data-testid=next-debtor]").text
    assert re.search(r"\b0?8:00\b", opens), opens  # the window opens, on the debtor's clock
    assert blocked.find_element(By.CSS_SELECTOR, "[data-testid=next-mine]").text
    assert not browser.find_elements(By.ID, "outcome")
    [stopped] = lender.attempts(night)  # the one attempt, blocked: none pending, none counted
    assert stopped.status == "blocked"
    assert str(stopped.blocked_rule).endswith("contact_window")


# --- the manager ---------------------------------------------------------------------------


def _team(app: Any) -> WorkWorld:
    """The work world with agency A's first collector holding exactly 50 cases, and the
    limits that send a 20% discount to the manager (collectors 10%, the contract 30%)."""
    world = work_world(app, cases=200)
    a0, a1 = world.agencies.collectors[world.agency]
    surplus = len(world.cases_of(a0)) - 50
    giver, taker = (a0, a1) if surplus > 0 else (a1, a0)
    world.tenant.sql(
        "UPDATE {s}.assignments SET collector_id = :taker WHERE id IN (SELECT id FROM"
        " {s}.assignments WHERE collector_id = :giver AND ended_at IS NULL ORDER BY id LIMIT :n)",
        taker=taker,
        giver=giver,
        n=abs(surplus),
    )
    assert len(world.cases_of(a0)) == 50
    with tenant_scope(world.tenant.slug, db=platform(app).db) as session:
        for agency_id in world.agencies.ids:
            contract = session.get(AgencyContract, world.contract_id(agency_id))
            assert contract is not None
            settlements.set_contract_limit(session, contract, limit=Decimal(30), actor="job:test")
    world.tenant.sql(
        "UPDATE platform.agencies SET collector_discount_limit = 10 WHERE id = ANY(:ids)",
        ids=world.agencies.ids,
    )
    return world


def _offer(
    world: WorkWorld, case_id: int, discount: str, level: ApprovalLevel = ApprovalLevel.MANAGER
) -> int:
    """A collector's offer of ``discount`` percent off, waiting for ``level``."""
    with tenant_scope(world.tenant.slug, db=platform(world.app).db) as session:
        case = session.get(Case, case_id)
        assert case is not None
        today = tenant_today(world.tenant.timezone)
        made = settlements.offer_settlement(
            session,
            case=case,
            amount=settlements.amount_for_discount(
                world.balance(case_id), Decimal(discount), "CNY"
            ),
            expires_on=today + dt.timedelta(days=5),
            actor=f"user:{world.collector}",
            level=ApprovalLevel.COLLECTOR,
            tenant_id=world.tenant.id,
            today=today,
        )
        assert made.required_level == level
        return made.id


def _select(driver: WebDriver, css: str, value: str) -> None:
    Select(driver.find_element(By.CSS_SELECTOR, css)).select_by_value(value)


@pytest.mark.parametrize("language", ["zh-CN", "en"])
def test_a_manager_moves_fifty_cases_and_approves_a_settlement(
    app: Any, served: str, browser: WebDriver, language: str
) -> None:
    world = _team(app)
    a0, a1 = world.agencies.collectors[world.agency]
    held = len(world.cases_of(a1))
    offer_id = _offer(world, world.cases_of(a1)[0], "20")
    _viewport(browser)
    sign_in(browser, served, world.agencies.managers[world.agency], PASSWORD)
    # The language is chosen with the top bar's buttons.
    browser.get(f"{served}/work/assignment")
    wait_for(browser, f"form.lang button[value={LOCALES[language]}]").click()
    WebDriverWait(browser, 20).until(lambda d: _language(d) == language)
    assert wait_for(browser, "h1").text == ASSIGNMENT[language]

    # Every case collector 0 holds, to collector 1: previewed, then confirmed.
    _select(browser, "#tenant", world.tenant.slug)
    _select(browser, "#target", str(a1))
    _select(browser, "#current", str(a0))
    browser.find_element(By.ID, "preview-move").click()
    count = wait_for(browser, "#preview-count")
    assert count.get_attribute("data-cases") == "50"
    assert "50" in count.text
    assert "50" in browser.find_element(By.ID, "confirm-move").text
    browser.find_element(By.ID, "confirm-move").click()
    _flash(browser, MOVED[language])
    assert world.cases_of(a0) == []
    assert len(world.cases_of(a1)) == held + 50
    [(ended,)] = world.tenant.sql(
        "SELECT count(*) FROM {s}.assignments WHERE collector_id = :c"
        " AND end_reason = 'reassigned'",
        c=a0,
    )
    assert ended == 50

    # The settlement waiting for the manager, approved.
    browser.get(f"{served}/work/approvals")
    row = wait_for(browser, f"#settlement-{world.tenant.slug}-{offer_id}")
    assert "20.00%" in row.text
    row.find_element(By.CSS_SELECTOR, "button[value=approve]").click()
    _flash(browser, APPROVED[language])
    assert not browser.find_elements(By.ID, f"settlement-{world.tenant.slug}-{offer_id}")
    with tenant_scope(world.tenant.slug, db=platform(app).db) as session:
        decided = session.get(Settlement, offer_id)
        assert decided is not None
        assert decided.status.value == "approved"
