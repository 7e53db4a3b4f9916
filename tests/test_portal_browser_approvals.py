"""In a real browser: a tenant admin approves a settlement above the agency's limits, in
Chinese and in English."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from recova.platform.cases.models import Case
from recova.platform.kernel.extension import platform
from recova.platform.work import settlements
from recova.platform.work.models import ApprovalLevel, Settlement
from recova.tenants.models import tenant_today
from recova.tenants.scope import tenant_scope
from tests.browser import BROWSER, screenshot, sign_in, wait_for
from tests.support import PASSWORD
from tests.work_support import work_world

pytestmark = BROWSER

HEADINGS = {"zh-CN": "审批", "en": "Approvals"}
APPROVED = {"zh-CN": "已批准", "en": "approved"}


@pytest.mark.parametrize("browser", ["zh-CN", "en"], indirect=True)
def test_an_admin_approves_a_settlement(app: Any, served: str, browser: WebDriver) -> None:
    world = work_world(app, cases=6)
    case_id = world.cases_of(world.collector)[0]
    with tenant_scope(world.tenant.slug, db=platform(app).db) as session:
        today = tenant_today(session.info["tenant"].timezone)
        case = session.get(Case, case_id)
        assert case is not None
        offer = settlements.offer_settlement(
            session,
            case=case,
            amount=(world.balance(case_id) * Decimal("0.6")).quantize(Decimal("0.01")),
            expires_on=today + dt.timedelta(days=5),
            actor=f"user:{world.tenant_admin_id}",
            level=ApprovalLevel.COLLECTOR,
            tenant_id=world.tenant.id,
            today=today,
        )
        session.commit()
        offer_id = offer.id
    sign_in(browser, served, world.tenant.admin_email, PASSWORD)
    browser.get(f"{served}/portal/{world.tenant.slug}/approvals")
    heading = wait_for(browser, "h1").text
    language = "zh-CN" if heading == HEADINGS["zh-CN"] else "en"
    assert heading == HEADINGS[language]
    row = wait_for(browser, f"#settlement-{offer_id}")
    assert "40.00%" in row.text
    screenshot(browser, f"approvals-{language}")
    row.find_element(By.CSS_SELECTOR, "button[value=approve]").click()
    flash = wait_for(browser, "p.flash")
    assert APPROVED[language] in flash.text
    assert not browser.find_elements(By.ID, f"settlement-{offer_id}")
    with tenant_scope(world.tenant.slug, db=platform(app).db) as session:
        decided = session.get(Settlement, offer_id)
        assert decided is not None
        assert decided.status.value == "approved"
