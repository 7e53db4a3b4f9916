"""The actions on the collector's case screen: promise to pay, payment plan with its
calculator, settlement with its approval level shown before the offer, a template filled
for a contact point, a reveal with a reason; each refusal shown with 422 and nothing
stored; other collectors', agencies' and tenants' cases answer 404."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from recova.platform.agencies.contracts import AgencyContract
from recova.platform.agencies.models import Agency
from recova.platform.audit import events
from recova.platform.auth.models import Role
from recova.platform.auth.services import create_user
from recova.platform.cases.models import Case, Debtor
from recova.platform.contact.models import MessageTemplate
from recova.platform.contact.templates import save_template
from recova.platform.privacy.models import PersonalDataReveal
from recova.platform.work.models import (
    PaymentPlan,
    Promise,
    Settlement,
)
from recova.tenants.models import tenant_today
from tests.compliance_support import Debt, Lender, lender_for
from tests.support import PASSWORD, Caller, login

EN = {"Accept-Language": "en"}
ZH = {"Accept-Language": "zh-CN"}
HTMX = {"HX-Request": "true"}
BALANCE = Decimal("5000.00")  # every Lender debt's
ROW = re.compile(r'data-date="([\d-]+)">[^<]*</td>\s*<td class="num" data-amount="([\d.]+)"')


@pytest.fixture
def cn(app, shared_lender_cn, rolled_back) -> Lender:  # type: ignore[no-untyped-def]
    return lender_for(app, "CN", shared_lender_cn, rolled_back)


@pytest.fixture
def us(app, shared_lender_us, rolled_back) -> Lender:  # type: ignore[no-untyped-def]
    return lender_for(app, "US", shared_lender_us, rolled_back)


def today(lender: Lender) -> dt.date:
    return tenant_today("Asia/Shanghai" if lender.jurisdiction == "CN" else "America/New_York")


def path(lender: Lender, case_id: int, action: str = "") -> str:
    return f"/work/{lender.slug}/cases/{case_id}" + (f"/{action}" if action else "")


def collector(lender: Lender, agency: int = 0) -> Caller:
    return login(lender.app, lender.collector_emails[agency])


def post(
    caller: Caller, url: str, data: dict[str, Any], headers: dict[str, str] | None = None
) -> Any:
    return caller.client.post(url, data=data, headers={**caller.headers, **(headers or EN)})


def text(response: Any) -> str:
    return str(response.get_data(as_text=True))


def flashed(caller: Caller) -> list[str]:
    with caller.client.session_transaction() as session:
        return [message for _, message in session.get("_flashes", [])]


def stored(lender: Lender, model: Any, case_id: int) -> list[Any]:
    with lender.scope() as session:
        rows = list(
            session.scalars(select(model).where(model.case_id == case_id).order_by(model.id))
        )
        for row in rows:
            if isinstance(row, PaymentPlan):
                _ = row.instalments  # loaded before the session goes
        session.expunge_all()
        return rows


def set_discount_limits(lender: Lender, *, collector: str, contract: str) -> None:
    """The agency's own limit for its collectors and the tenant's cap on its contract."""
    with lender.objects.db.session() as session:
        agency = session.get(Agency, lender.agency_ids[0])
        assert agency is not None
        agency.collector_discount_limit = Decimal(collector)
        for found in session.scalars(
            select(AgencyContract).where(
                AgencyContract.tenant_id == lender.id,
                AgencyContract.agency_id == lender.agency_ids[0],
            )
        ):
            found.settlement_discount_limit = Decimal(contract)
        session.commit()


def case_status(lender: Lender, case_id: int) -> str:
    with lender.scope() as session:
        case = session.get(Case, case_id)
        assert case is not None
        return case.status.value


def field_error(page: str, field_id: str) -> str:
    found = re.search(rf'<p class="field-error" id="{field_id}-error">([^<]*)</p>', page)
    assert found is not None, f"no error beside {field_id}"
    return found.group(1)


# --- promise -----------------------------------------------------------------------------


def test_a_promise_is_recorded_and_the_case_is_promised(cn: Lender) -> None:
    debt = cn.debt()
    caller = collector(cn)
    due = today(cn) + dt.timedelta(days=5)
    response = post(
        caller,
        path(cn, debt.case_id, "promise"),
        {"promise-amount": "300.50", "promise-due_date": due.isoformat()},
    )
    assert response.status_code == 302
    assert response.headers["Location"].endswith(path(cn, debt.case_id))
    [promise] = stored(cn, Promise, debt.case_id)
    assert (promise.amount, promise.due_date, promise.status.value) == (
        Decimal("300.50"),
        due,
        "pending",
    )
    assert case_status(cn, debt.case_id) == "promised"
    [message] = flashed(caller)
    assert message.startswith("Promise to pay recorded: ")
    assert "300.50" in message


@pytest.mark.parametrize(
    ("days", "message"),
    [
        (-1, "The date cannot be in the past."),
        (91, "A promise is at most 90 days ahead; further out, agree a payment plan."),
    ],
)
def test_a_promise_in_the_past_or_beyond_the_limit_is_refused(
    cn: Lender, days: int, message: str
) -> None:
    debt = cn.debt()
    due = today(cn) + dt.timedelta(days=days)
    response = post(
        collector(cn),
        path(cn, debt.case_id, "promise"),
        {"promise-amount": "300", "promise-due_date": due.isoformat()},
    )
    assert response.status_code == 422
    page = text(response)
    assert field_error(page, "promise-due_date") == message.replace("'", "&#39;")
    assert 'value="300"' in page  # the input is kept
    assert 'id="case-line"' in page
    assert "Balance" in page
    assert f'href="{path(cn, debt.case_id)}"' in page  # back to the case
    assert stored(cn, Promise, debt.case_id) == []
    assert case_status(cn, debt.case_id) == "placed"


def test_a_promise_without_an_amount_is_refused_by_the_form(cn: Lender) -> None:
    debt = cn.debt()
    response = post(
        collector(cn),
        path(cn, debt.case_id, "promise"),
        {"promise-amount": "", "promise-due_date": today(cn).isoformat()},
    )
    assert response.status_code == 422
    assert field_error(text(response), "promise-amount") == "Enter the amount promised."
    assert stored(cn, Promise, debt.case_id) == []


def test_a_second_pending_promise_is_refused_above_the_form(cn: Lender) -> None:
    debt = cn.debt()
    caller = collector(cn)
    data = {
        "promise-amount": "100",
        "promise-due_date": (today(cn) + dt.timedelta(days=3)).isoformat(),
    }
    assert post(caller, path(cn, debt.case_id, "promise"), data).status_code == 302
    [first] = stored(cn, Promise, debt.case_id)
    again = post(caller, path(cn, debt.case_id, "promise"), data, headers=ZH)
    assert again.status_code == 422
    assert re.search(
        rf'<p class="form-error" role="alert">该案件已有待履约的承诺还款.{first.id}', text(again)
    )
    assert len(stored(cn, Promise, debt.case_id)) == 1


# --- plan --------------------------------------------------------------------------------


def plan_data(first: dt.date, count: int = 3, **more: str) -> dict[str, str]:
    return {
        "plan-count": str(count),
        "plan-frequency": "monthly",
        "plan-first_due": first.isoformat(),
        "plan-total": "",
        **more,
    }


def preview_rows(page: str) -> list[tuple[dt.date, Decimal]]:
    return [(dt.date.fromisoformat(d), Decimal(a)) for d, a in ROW.findall(page)]


def test_the_plan_preview_is_exact_and_is_what_is_saved(cn: Lender) -> None:
    debt = cn.debt()
    caller = collector(cn)
    first = dt.date(today(cn).year + 1, 1, 31)  # the month's end: February has no 31st
    url = path(cn, debt.case_id, "plan")

    preview = post(caller, url, plan_data(first), headers={**EN, **HTMX})
    assert preview.status_code == 200
    fragment = text(preview)
    assert "<html" not in fragment  # swapped into the panel
    rows = preview_rows(fragment)
    year = first.year
    assert rows == [
        (dt.date(year, 1, 31), Decimal("1666.66")),
        (dt.date(year, 2, 28), Decimal("1666.66")),
        (dt.date(year, 3, 31), Decimal("1666.68")),  # the last carries the remainder
    ]
    assert sum(amount for _, amount in rows) == BALANCE
    assert 'id="plan-total" data-amount="5000.00"' in fragment
    assert "Covers the whole balance" in fragment
    assert "Equal instalments" in fragment
    assert stored(cn, PaymentPlan, debt.case_id) == []  # a preview stores nothing

    saved = post(caller, url, {**plan_data(first), "plan-action": "save"})
    assert saved.status_code == 302
    [plan] = stored(cn, PaymentPlan, debt.case_id)
    assert [(i.due_date, i.amount) for i in plan.instalments] == rows
    assert plan.total_amount == BALANCE
    assert case_status(cn, debt.case_id) == "on_plan"
    [message] = flashed(caller)
    assert message.startswith("Payment plan agreed: 3 instalments")


def test_customised_amounts_leave_the_rest_to_the_blank_instalments(cn: Lender) -> None:
    debt = cn.debt()
    caller = collector(cn)
    first = today(cn) + dt.timedelta(days=3)
    data = plan_data(first, count=4, **{"plan-total": "4000", "plan-amounts-0": "1000.10"})
    page = text(post(caller, path(cn, debt.case_id, "plan"), data))  # the plan page, no htmx
    rows = preview_rows(page)
    assert [amount for _, amount in rows] == [
        Decimal("1000.10"),
        Decimal("999.96"),
        Decimal("999.96"),
        Decimal("999.98"),
    ]
    assert "Customised amounts" in page
    assert "Covers" in page
    assert "of the balance" in page
    assert 'name="plan-amounts-0"' in page
    assert 'value="1000.10"' in page
    saved = post(caller, path(cn, debt.case_id, "plan"), {**data, "plan-action": "save"})
    assert saved.status_code == 302
    [plan] = stored(cn, PaymentPlan, debt.case_id)
    assert [(i.due_date, i.amount) for i in plan.instalments] == rows
    assert plan.total_amount == Decimal("4000.00")


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"plan-count": "61"}, "plan-count", "A plan has between 1 and 60 instalments."),
        ({"plan-first_due": "2020-01-01"}, "plan-first_due", "cannot be due in the past"),
        ({"plan-total": "5000.01"}, "plan-total", "more than the balance"),
    ],
)
def test_a_plan_outside_the_limits_is_refused(
    cn: Lender, change: dict[str, str], field: str, message: str
) -> None:
    debt = cn.debt()
    caller = collector(cn)
    data = {**plan_data(today(cn) + dt.timedelta(days=3)), **change, "plan-action": "save"}
    response = post(caller, path(cn, debt.case_id, "plan"), data)
    assert response.status_code == 422
    page = text(response)
    assert message in field_error(page, field)
    assert 'id="plan-save"' not in page  # no schedule to save
    assert stored(cn, PaymentPlan, debt.case_id) == []
    assert case_status(cn, debt.case_id) == "placed"
    # The preview in the panel says the same, in the swapped fragment.
    swapped = post(
        caller,
        path(cn, debt.case_id, "plan"),
        {**data, "plan-action": "preview"},
        headers={**EN, **HTMX},
    )
    assert swapped.status_code == 200
    assert message in text(swapped)


# --- settlement ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "level", "words"),
    [
        ("4600", "collector", "Within your limit"),  # 8% <= 10%
        ("4500", "collector", "Within your limit"),  # exactly 10%
        ("4499.99", "manager", "Goes to your agency manager"),
        ("3500", "manager", "Goes to your agency manager"),  # 30%
        ("3000", "tenant", "Goes to the lender"),  # 40%
    ],
)
def test_the_settlement_level_is_shown_as_the_amount_is_typed(
    cn: Lender, amount: str, level: str, words: str
) -> None:
    set_discount_limits(cn, collector="10", contract="30")
    debt = cn.debt()
    response = collector(cn).client.get(
        path(cn, debt.case_id, "settlement/level") + f"?settlement-amount={amount}",
        headers={**EN, **HTMX},
    )
    assert response.status_code == 200
    fragment = text(response)
    assert f'data-level="{level}"' in fragment
    assert words in fragment
    assert stored(cn, Settlement, debt.case_id) == []


def test_the_level_of_a_discount_and_of_an_impossible_amount(cn: Lender) -> None:
    set_discount_limits(cn, collector="10", contract="30")
    debt = cn.debt()
    caller = collector(cn)
    url = path(cn, debt.case_id, "settlement/level")
    by_discount = text(caller.client.get(url + "?settlement-discount=20", headers=EN))
    assert 'data-level="manager"' in by_discount
    assert "20.00%" in by_discount
    too_much = text(caller.client.get(url + "?settlement-amount=6000", headers=EN))
    assert "at most the balance" in too_much
    nothing = text(caller.client.get(url, headers=EN))
    assert "You approve discounts up to 10.00%" in nothing


@pytest.mark.parametrize(
    ("data", "status", "level", "said"),
    [
        ({"settlement-amount": "4600"}, "approved", "collector", "Settlement approved"),
        ({"settlement-discount": "20"}, "pending_approval", "manager", "agency manager"),
        ({"settlement-amount": "3000"}, "pending_approval", "tenant", "to the lender"),
    ],
)
def test_an_offer_is_approved_or_sent_up_as_shown(
    cn: Lender, data: dict[str, str], status: str, level: str, said: str
) -> None:
    set_discount_limits(cn, collector="10", contract="30")
    debt = cn.debt()
    caller = collector(cn)
    expires = today(cn) + dt.timedelta(days=7)
    form = {
        **data,
        "settlement-expires_on": expires.isoformat(),
        "settlement-reason": "Lost his job; family pays once.",
    }
    response = post(caller, path(cn, debt.case_id, "settlement"), form)
    assert response.status_code == 302, text(response)
    [offer] = stored(cn, Settlement, debt.case_id)
    assert (offer.status.value, offer.required_level.value) == (status, level)
    assert offer.request_note == "Lost his job; family pays once."
    assert offer.expires_on == expires
    if "settlement-discount" in data:
        assert offer.amount == Decimal("4000.00")
    assert said in flashed(caller)[0]


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"settlement-reason": "  "}, "settlement-reason", "Say why"),
        ({"settlement-amount": "5000.01"}, "settlement-amount", "at most the balance"),
        ({"settlement-amount": ""}, "settlement-amount", "Enter the amount or the discount."),
        ({"settlement-expires_on": "2020-01-01"}, "settlement-expires_on", "in the past"),
    ],
)
def test_an_offer_refused_stores_nothing(
    cn: Lender, change: dict[str, str], field: str, message: str
) -> None:
    debt = cn.debt()
    form = {
        "settlement-amount": "4600",
        "settlement-expires_on": (today(cn) + dt.timedelta(days=7)).isoformat(),
        "settlement-reason": "A reason",
        **change,
    }
    response = post(collector(cn), path(cn, debt.case_id, "settlement"), form)
    assert response.status_code == 422
    assert message in field_error(text(response), field)
    assert stored(cn, Settlement, debt.case_id) == []


# --- template ------------------------------------------------------------------------------


def templates(lender: Lender) -> dict[str, int]:
    """A debtor template naming the debt, a clean third-party one, and a third-party one
    with a debt word (stored before the rule, so only rendering can refuse it)."""
    with lender.scope() as session:
        debtor = save_template(
            session,
            name="reminder",
            channel="sms",
            audience="debtor",
            body="Dear {debtor_name}, please pay {amount} {currency} to {company}.",
            actor="test",
        )
        third = save_template(
            session,
            name="call-back",
            channel="sms",
            audience="third_party",
            body="Please ask {debtor_name} to call {company}.",
            actor="test",
        )
        worded = MessageTemplate(
            name="old-relative",
            channel="sms",
            audience="third_party",
            body="Please tell {debtor_name} the loan is overdue.",
        )
        session.add(worded)
        session.flush()
        return {"debtor": debtor.id, "third": third.id, "worded": worded.id}


def debtor_name(lender: Lender, debt: Debt) -> str:
    with lender.scope() as session:
        debtor = session.get(Debtor, debt.debtor_id)
        assert debtor is not None
        return debtor.full_name


def test_a_template_is_shown_filled_for_the_contact_point(cn: Lender) -> None:
    debt = cn.debt()
    ids = templates(cn)
    caller = collector(cn)
    url = path(cn, debt.case_id, "template")
    response = post(
        caller,
        url,
        {"template-template_id": ids["debtor"], "template-contact_id": debt.phones[0]},
        headers={**EN, **HTMX},
    )
    assert response.status_code == 200
    fragment = text(response)
    assert "please pay 5,000.00 CNY to Lender" in fragment
    name = debtor_name(cn, debt)
    assert name not in fragment  # the screen shows the name as the masking policy says
    assert name[0] + "*****" in fragment
    third = post(
        caller,
        url,
        {"template-template_id": ids["third"], "template-contact_id": debt.third_parties[0]},
    )
    assert third.status_code == 200
    page = text(third)
    assert "Please ask" in page
    assert "Sending is an attempt" in page
    assert 'id="case-line"' in page


@pytest.mark.parametrize(
    ("template", "contact", "message"),
    [
        ("worded", "third", "tells a third party about the debt"),
        ("debtor", "third", "only a third-party template may go to them"),
    ],
)
def test_a_template_that_would_tell_a_third_party_of_the_debt_is_refused(
    cn: Lender, template: str, contact: str, message: str
) -> None:
    debt = cn.debt()
    ids = templates(cn)
    response = post(
        collector(cn),
        path(cn, debt.case_id, "template"),
        {"template-template_id": ids[template], "template-contact_id": debt.third_parties[0]},
    )
    assert response.status_code == 422
    page = text(response)
    assert message in field_error(page, "template-template_id")
    assert "overdue" not in page
    assert 'id="template-rendered"' not in page


def test_a_template_for_a_contact_point_of_another_debtor_is_refused(cn: Lender) -> None:
    debt, other = cn.debt(), cn.debt()
    ids = templates(cn)
    response = post(
        collector(cn),
        path(cn, debt.case_id, "template"),
        {"template-template_id": ids["debtor"], "template-contact_id": other.phones[0]},
    )
    assert response.status_code == 422
    assert "not on the case" in field_error(text(response), "template-contact_id")


# --- reveal ----------------------------------------------------------------------------------


def reveals(lender: Lender, debt: Debt) -> list[PersonalDataReveal]:
    with lender.scope() as session:
        rows = list(
            session.scalars(
                select(PersonalDataReveal).where(PersonalDataReveal.debtor_id == debt.debtor_id)
            )
        )
        session.expunge_all()
        return rows


@pytest.mark.parametrize("what", ["contact", "name"])
def test_a_reveal_shows_the_value_once_and_is_audited(cn: Lender, what: str) -> None:
    debt = cn.debt()
    choice = f"contact:{debt.phones[0]}" if what == "contact" else "name"
    reason = "Debtor asked to confirm the number on file"
    response = post(
        collector(cn),
        path(cn, debt.case_id, "reveal"),
        {"reveal-what": choice, "reveal-reason": reason},
    )
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    page = text(response)
    value = "+8613812345678" if what == "contact" else debtor_name(cn, debt)
    assert f'data-testid="revealed-value" aria-live="polite">{value}</mark>' in page
    [row] = reveals(cn, debt)
    assert (row.field, row.contact_id, row.reason) == (
        what,
        debt.phones[0] if what == "contact" else None,
        reason,
    )
    with cn.scope() as session:
        [event] = [
            e
            for e in events(session, action="personal_data.revealed")
            if f'"reveal_id": {row.id}' in e.data or f'"reveal_id":{row.id}' in e.data
        ]
        assert reason not in event.data  # the chain holds a digest of the reason only


@pytest.mark.parametrize(
    ("reason", "message"),
    [("", "State why you need to see it."), ("short", "Between 10 and 500 characters.")],
)
def test_a_reveal_without_a_reason_is_refused(cn: Lender, reason: str, message: str) -> None:
    debt = cn.debt()
    response = post(
        collector(cn),
        path(cn, debt.case_id, "reveal"),
        {"reveal-what": f"contact:{debt.phones[0]}", "reveal-reason": reason},
    )
    assert response.status_code == 422
    assert response.headers["Cache-Control"] == "no-store"
    page = text(response)
    assert field_error(page, "reveal-reason") == message
    assert "+8613812345678" not in page
    assert reveals(cn, debt) == []


def test_a_reveal_of_a_number_quoted_in_the_reason_is_refused(cn: Lender) -> None:
    debt = cn.debt()
    response = post(
        collector(cn),
        path(cn, debt.case_id, "reveal"),
        {"reveal-what": "name", "reveal-reason": "he said 13812345678 is his new number"},
    )
    assert response.status_code == 422
    assert "must not quote" in field_error(text(response), "reveal-reason")
    assert reveals(cn, debt) == []


def test_a_contact_point_of_another_debtor_cannot_be_revealed(cn: Lender) -> None:
    debt, other = cn.debt(), cn.debt()
    response = post(
        collector(cn),
        path(cn, debt.case_id, "reveal"),
        {"reveal-what": f"contact:{other.phones[0]}", "reveal-reason": "Confirm the number"},
    )
    assert response.status_code == 422  # not one of the case's choices
    assert field_error(text(response), "reveal-what") == "Choose what to reveal."
    assert reveals(cn, other) == []


# --- the panel and languages ---------------------------------------------------------------


def test_the_panel_shows_the_limits_and_shortcuts(cn: Lender) -> None:
    set_discount_limits(cn, collector="10", contract="30")
    debt = cn.debt()
    templates(cn)
    response = collector(cn).client.get(path(cn, debt.case_id), headers=EN)
    assert response.status_code == 200
    page = text(response)
    for key, action in zip(
        "plstr", ("promise", "plan", "settlement", "template", "reveal"), strict=True
    ):
        assert re.search(
            rf'<summary data-key="{key}" id="action-{action}-open"[^>]*><kbd>{key}</kbd>', page
        ), action
    assert "at most 90 days ahead" in page
    assert "1 to 60" in page
    assert "You approve discounts up to 10.00%; up to 30.00% goes to your agency manager" in page
    assert 'hx-trigger="keyup changed delay:300ms, change"' in page
    assert "reminder · SMS" in page
    assert "old-relative · SMS · third party" in page


def test_the_panel_and_a_focused_page_in_chinese(cn: Lender) -> None:
    debt = cn.debt()
    caller = collector(cn)
    panel = text(caller.client.get(path(cn, debt.case_id), headers=ZH))
    for words in ("承诺还款", "还款计划", "减免结清", "消息模板", "查看明文", "预览还款计划"):
        assert words in panel, words
    refused = post(
        caller,
        path(cn, debt.case_id, "promise"),
        {"promise-amount": "300", "promise-due_date": "2020-01-01"},
        headers=ZH,
    )
    assert refused.status_code == 422
    page = text(refused)
    assert field_error(page, "promise-due_date") == "日期不能早于今天。"
    assert "返回案件" in page
    assert "余额" in page


# --- isolation -------------------------------------------------------------------------------


ACTIONS = ("promise", "plan", "settlement", "template", "reveal")


def assert_all_404(caller: Caller, slug_path: str) -> None:
    for action in ACTIONS:
        assert post(caller, f"{slug_path}/{action}", {}).status_code == 404, action
    assert caller.client.get(f"{slug_path}/settlement/level?settlement-amount=1").status_code == 404


def test_another_collectors_agencys_or_tenants_case_is_404(cn: Lender, us: Lender) -> None:
    caller = collector(cn)
    # Another agency's case (placed with agency 1).
    theirs = cn.debt(placed_with=1)
    assert_all_404(caller, path(cn, theirs.case_id))
    # Another collector's case in the same agency.
    with cn.objects.db.session() as session:
        agency = session.get(Agency, cn.agency_ids[0])
        assert agency is not None
        colleague = create_user(
            session,
            email=f"colleague-{cn.slug}@agency.test",
            full_name="Colleague",
            password=PASSWORD,
            role=Role.COLLECTOR,
            agency=agency,
        )
        session.commit()
        colleague_id = colleague.id
    colleagues = cn.debt()
    cn.collector_ids.append(colleague_id)
    cn.assign(colleagues, len(cn.collector_ids) - 1)
    assert_all_404(caller, path(cn, colleagues.case_id))
    # A case placed but assigned to nobody.
    assert_all_404(caller, path(cn, cn.debt(assigned=False).case_id))
    # Another tenant's case: the slug of a tenant the agency holds no contract with, and
    # that tenant's case id under this tenant's slug.
    elsewhere = us.debt()
    assert_all_404(caller, path(us, elsewhere.case_id))
    with cn.scope() as session:
        highest = session.scalar(select(func.max(Case.id))) or 0
    assert_all_404(caller, path(cn, highest + 1000))
    # Nothing was stored on any of them.
    for debt in (theirs, colleagues):
        assert stored(cn, Promise, debt.case_id) == []
        assert stored(cn, Settlement, debt.case_id) == []
    # The collector's own case still works.
    own = cn.debt()
    assert post(caller, path(cn, own.case_id, "promise"), {}).status_code == 422
