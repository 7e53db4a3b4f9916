"""In a real browser: a tenant admin filters the case list, opens a case and reveals the
debtor's national id with a reason, in Chinese and in English."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from recova.platform.cases.models import Account, Case, Contact, ContactKind, Debtor
from recova.platform.contact.models import ContactAttempt
from recova.platform.kernel.db import utcnow
from recova.platform.kernel.extension import platform
from recova.platform.work import promises
from recova.tenants.models import tenant_today
from recova.tenants.scope import tenant_scope
from tests.browser import BROWSER, screenshot, sign_in, wait_for
from tests.support import PASSWORD
from tests.work_support import work_world

pytestmark = BROWSER

NATIONAL_ID = "11010519491231002X"
HEADINGS = {"zh-CN": "案件", "en": "Cases"}
REASONS = {
    "zh-CN": "债务人来电要求核实身份信息",
    "en": "The debtor called and asked to verify identity",
}


def prepare_case(app: Any, world: Any, case_id: int) -> str:
    """A case with a name, identifiers, balances and some history; its account id."""
    cipher = platform(app).cipher
    with tenant_scope(world.tenant.slug, db=platform(app).db) as session:
        today = tenant_today(session.info["tenant"].timezone)
        case = session.get(Case, case_id)
        assert case is not None
        account = session.get(Account, case.account_id)
        debtor = session.get(Debtor, case.debtor_id)
        assert account is not None
        assert debtor is not None
        debtor.full_name = "张三丰"
        debtor.national_id_ciphertext = cipher.encrypt(NATIONAL_ID, context="debtor.national_id")
        debtor.national_id_index = cipher.blind_index(NATIONAL_ID, context="debtor.national_id")
        debtor.national_id_masked = "1101********002X"
        account.outstanding_interest = Decimal("123.45")
        account.outstanding_fees = Decimal("30.00")
        account.outstanding_penalties = Decimal("8.20")
        phone = "+8613800138000"
        contact = Contact(
            debtor_id=debtor.id,
            kind=ContactKind.PHONE,
            relation="self",
            value_ciphertext=cipher.encrypt(phone, context="contact.phone"),
            value_index=cipher.blind_index(phone, context="contact.phone"),
            value_masked="+86138****8000",
        )
        session.add(contact)
        session.flush()
        session.add(
            ContactAttempt(
                case_id=case.id,
                debtor_id=debtor.id,
                contact_id=contact.id,
                channel="call_out",
                actor_kind="agency",
                agency_id=world.agency,
                pack_version="CN-2025",
                local_timezone="Asia/Shanghai",
                status="blocked",
                attempted_at=utcnow() - dt.timedelta(hours=2),
                blocked_rule="cn.quiet_hours",
                block_message="No contact from 22:00 to 08:00 debtor local time.",
            )
        )
        promises.create_promise(
            session,
            case=case,
            amount=Decimal("500.00"),
            due_date=today + dt.timedelta(days=7),
            actor="job:demo",
            today=today,
        )
        external_id = account.external_id
        session.commit()
    world.pay(case_id, "200.00")
    return external_id


@pytest.mark.parametrize("browser", ["zh-CN", "en"], indirect=True)
def test_an_admin_filters_opens_a_case_and_reveals_a_national_id(
    app: Any, served: str, browser: WebDriver
) -> None:
    world = work_world(app, cases=8)
    case_id = world.cases_of(world.collector)[0]
    external_id = prepare_case(app, world, case_id)

    sign_in(browser, served, world.tenant.admin_email, PASSWORD)
    browser.get(f"{served}/portal/{world.tenant.slug}/cases")
    heading = wait_for(browser, "h1").text
    language = "zh-CN" if heading == HEADINGS["zh-CN"] else "en"
    assert heading == HEADINGS[language]
    # Filter: the agency holding the case, sorted by balance.
    Select(browser.find_element(By.ID, "agency")).select_by_value(str(world.agency))
    Select(browser.find_element(By.ID, "sort")).select_by_value("balance_desc")
    browser.find_element(By.CSS_SELECTOR, ".case-filters button[type=submit]").click()
    wait_for(browser, "table.case-list")
    assert f"agency={world.agency}" in browser.current_url
    screenshot(browser, f"cases-{'zh' if language == 'zh-CN' else 'en'}")
    browser.find_element(By.LINK_TEXT, external_id).click()

    wait_for(browser, "ol.timeline")
    page = browser.find_element(By.TAG_NAME, "main").text
    assert NATIONAL_ID not in page
    assert "1101********002X" in page
    assert "cn.quiet_hours" in page
    national_id_row = browser.find_element(By.CSS_SELECTOR, "details.reveal")
    national_id_row.find_element(By.TAG_NAME, "summary").click()
    reason = wait_for(browser, "#reason-national_id")
    reason.send_keys(REASONS[language])
    national_id_row.find_element(By.CSS_SELECTOR, "button[type=submit]").click()

    revealed = wait_for(browser, "mark.revealed")
    assert revealed.text == NATIONAL_ID
    screenshot(browser, f"case-{'zh' if language == 'zh-CN' else 'en'}")
    # Opening the page again shows it masked.
    browser.get(browser.current_url.rsplit("/reveal", 1)[0])
    wait_for(browser, "ol.timeline")
    assert NATIONAL_ID not in browser.find_element(By.TAG_NAME, "main").text
