"""The agency manager's approvals: offers above the collectors' limit and within the
contract's, approved or refused with a reason through the API's service; those above the
contract's listed as passed to the tenant; the collectors' own limit. Collectors are
refused, another agency and a tenant without contract see nothing."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask

from recova.platform.agencies.contracts import AgencyContract
from recova.platform.cases.display import mask_name
from recova.platform.cases.models import Case
from recova.platform.kernel.extension import platform
from recova.platform.work import settlements
from recova.platform.work.models import ApprovalLevel, Settlement
from recova.tenants.models import tenant_today
from recova.tenants.scope import tenant_scope
from tests.allocation_support import AllocTenant, make_tenant, seed_cases
from tests.support import Caller, anonymous
from tests.transactions import private_copy, shared
from tests.work_support import WorkWorld, work_world

TOKEN = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
EN = {"Accept-Language": "en"}
ZH = {"Accept-Language": "zh-CN"}


@dataclass
class Books:
    """The work world (agencies 0 and 1 both serve its tenant, limits 30% / 10% for agency
    0) and a tenant only agency 1 serves, holding a stray offer under agency 0."""

    world: WorkWorld
    stranger: AllocTenant
    stranger_settlement: int


def build_books(app: Flask) -> Books:
    world = work_world(app, cases=24)
    with tenant_scope(world.tenant.slug, db=platform(app).db) as session:
        for agency_id in world.agencies.ids:
            contract = session.get(AgencyContract, world.contract_id(agency_id))
            assert contract is not None
            settlements.set_contract_limit(session, contract, limit=Decimal(30), actor="job:test")
    world.tenant.sql(
        "UPDATE platform.agencies SET collector_discount_limit = 10 WHERE id = ANY(:ids)",
        ids=world.agencies.ids,
    )
    stranger = make_tenant(app, world.agencies, contracted=[world.agencies.ids[1]])
    [case_id] = seed_cases(stranger, 1, as_of=world.today)
    # Not possible through the services (agency 0 has no contract there): written as if
    # left over, so the page must not find it by its agency id alone.
    stranger.sql(
        "INSERT INTO {s}.placements (case_id, agency_id, started_on, ends_on, grace_days,"
        " balance_at_placement, currency) VALUES (:c, :a, :d, :d + 30, 10, 1000, 'CNY')",
        c=case_id,
        a=world.agency,
        d=world.today,
    )
    [(settlement_id,)] = stranger.sql(
        "INSERT INTO {s}.settlements (case_id, currency, balance, amount, discount_percent,"
        " required_level, agency_id, status, expires_on, paid_amount, requested_by)"
        " VALUES (:c, 'CNY', 1000, 800, 20, 'manager', :a, 'pending_approval', :d + 5, 0,"
        " 'job:stray') RETURNING id",
        c=case_id,
        a=world.agency,
        d=world.today,
    )
    return Books(world=world, stranger=stranger, stranger_settlement=int(settlement_id))


@pytest.fixture(scope="module")
def shared_books(app: Flask) -> Books:
    books = build_books(app)
    return shared(books, books.world.tenant.slug, books.stranger.slug)  # type: ignore[no-any-return]


@pytest.fixture
def books(app: Flask, shared_books: Books, rolled_back: Any) -> Books:
    if rolled_back is None:
        return build_books(app)
    return private_copy(shared_books, app)  # type: ignore[no-any-return]


def user_id(world: WorkWorld, email: str) -> int:
    [(value,)] = world.tenant.sql("SELECT id FROM platform.users WHERE email = :e", e=email)
    return int(value)


def offer(world: WorkWorld, case_id: int, discount: str, *, days: int = 5) -> int:
    """An offer of ``discount`` percent off the case's balance, made by its collector."""
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
            expires_on=today + dt.timedelta(days=days),
            actor=f"user:{world.collector}",
            level=ApprovalLevel.COLLECTOR,
            tenant_id=world.tenant.id,
            today=today,
        )
        return made.id


def stored(world: WorkWorld, settlement_id: int) -> dict[str, Any]:
    with tenant_scope(world.tenant.slug, db=platform(world.app).db) as session:
        found = session.get(Settlement, settlement_id)
        assert found is not None
        return {
            "status": found.status.value,
            "note": found.decision_note,
            "decided_by": found.decided_by,
        }


def token_of(page: str) -> str:
    found = TOKEN.search(page)
    assert found is not None
    return found.group(1)


def page_of(caller: Caller, headers: dict[str, str] = EN) -> str:
    response = caller.client.get("/work/approvals", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return str(response.get_data(as_text=True))


def decide(
    caller: Caller,
    world: WorkWorld,
    settlement_id: int,
    tenant_slug: str | None = None,
    **data: str,
) -> Any:
    slug = tenant_slug or world.tenant.slug
    token = token_of(caller.client.get("/work/approvals").get_data(as_text=True))
    prefix = f"s-{slug}-{settlement_id}"
    return caller.client.post(
        f"/work/{slug}/approvals/settlements/{settlement_id}",
        data={"csrf_token": token, **{f"{prefix}-{k}": v for k, v in data.items()}},
        headers=EN,
    )


def debtor_name(world: WorkWorld, case_id: int) -> str:
    [(name,)] = world.tenant.sql(
        "SELECT d.full_name FROM {s}.cases c JOIN {s}.debtors d ON d.id = c.debtor_id"
        " WHERE c.id = :c",
        c=case_id,
    )
    return str(name)


def test_offers_waiting_for_the_manager_and_those_passed_to_the_tenant(books: Books) -> None:
    world = books.world
    mine = world.cases_of(world.collector)
    theirs = world.cases_of(world.agencies.collectors[world.agencies.ids[1]][0])
    within_collector = offer(world, mine[0], "5")  # approved at once: never listed
    for_manager = offer(world, mine[1], "20")
    for_tenant = offer(world, mine[2], "40")
    other_agency = offer_for(world, theirs[0], "20", world.agencies.ids[1])
    assert stored(world, within_collector)["status"] == "approved"

    page = page_of(world.manager())
    assert "Waiting for you: 1" in page
    assert "Passed to the tenant: 1" in page
    row = section(page, f'id="settlement-{world.tenant.slug}-{for_manager}"', "</tr>")
    balance = world.balance(mine[1])
    amount = settlements.amount_for_discount(balance, Decimal(20), "CNY")
    assert f"Alloc {world.tenant.slug.split('-')[1]}" in row  # the tenant's name
    assert f"Case {mine[1]}" in row
    assert mask_name(debtor_name(world, mine[1])) in row
    assert debtor_name(world, mine[1]) not in page  # never in full
    assert f"{balance:,.2f}" in row
    assert f"{amount:,.2f}" in row
    assert "20.00%" in row
    assert "Collector 0-0" in row  # who asked, by name
    assert "Approve" in row
    assert "Refuse" in row
    passed = section(page, f'id="passed-{world.tenant.slug}-{for_tenant}"', "</tr>")
    assert "40.00%" in passed
    assert "Waiting for the tenant" in passed
    assert "/approvals/settlements/" not in passed  # read only
    assert f'-{within_collector}"' not in page
    assert f'-{other_agency}"' not in page  # another agency's offer
    assert "Payment plans need no approval" in page
    # The tenant agency 0 has no contract with: neither its name nor its stray offer.
    assert books.stranger.slug not in page
    assert "job:stray" not in page


def offer_for(world: WorkWorld, case_id: int, discount: str, agency_id: int) -> int:
    """An offer by a collector of ``agency_id`` (the case is placed with that agency)."""
    collector = world.agencies.collectors[agency_id][0]
    with tenant_scope(world.tenant.slug, db=platform(world.app).db) as session:
        case = session.get(Case, case_id)
        assert case is not None
        today = tenant_today(world.tenant.timezone)
        return settlements.offer_settlement(
            session,
            case=case,
            amount=settlements.amount_for_discount(
                world.balance(case_id), Decimal(discount), "CNY"
            ),
            expires_on=today + dt.timedelta(days=5),
            actor=f"user:{collector}",
            level=ApprovalLevel.COLLECTOR,
            tenant_id=world.tenant.id,
            today=today,
        ).id


def section(page: str, start: str, end: str) -> str:
    """The part of ``page`` from ``start`` to the next ``end``."""
    at = page.index(start)
    return page[at : page.index(end, at)]


def test_approving_stores_the_managers_decision(books: Books) -> None:
    world = books.world
    settlement_id = offer(world, world.cases_of(world.collector)[1], "20")
    manager = world.manager()
    response = decide(manager, world, settlement_id, decision="approve")
    assert response.status_code == 302, response.get_data(as_text=True)
    manager_id = user_id(world, world.agencies.managers[world.agency])
    assert stored(world, settlement_id) == {
        "status": "approved",
        "note": None,
        "decided_by": f"user:{manager_id}",
    }
    page = page_of(manager)
    assert f"Settlement offer {settlement_id} approved." in page
    assert "Waiting for you: 0" in page
    assert f'id="settlement-{world.tenant.slug}-{settlement_id}"' not in page


def test_refusing_needs_a_reason_and_keeps_the_input(books: Books) -> None:
    world = books.world
    settlement_id = offer(world, world.cases_of(world.collector)[1], "20")
    manager = world.manager()
    prefix = f"s-{world.tenant.slug}-{settlement_id}"
    empty = decide(manager, world, settlement_id, decision="refuse", note="  ")
    assert empty.status_code == 422
    text = empty.get_data(as_text=True)
    assert f'id="{prefix}-note-error"' in text
    assert "Give the reason for refusing." in text
    assert stored(world, settlement_id)["status"] == "pending_approval"

    too_long = "y" * 501
    kept = decide(manager, world, settlement_id, decision="refuse", note=too_long)
    assert kept.status_code == 422
    assert too_long in kept.get_data(as_text=True)

    refused = decide(manager, world, settlement_id, decision="refuse", note="debtor can pay more")
    assert refused.status_code == 302
    assert stored(world, settlement_id)["status"] == "rejected"
    assert stored(world, settlement_id)["note"] == "debtor can pay more"
    assert f"Settlement offer {settlement_id} refused." in page_of(manager)


def test_an_offer_above_the_agencys_limit_is_the_tenants(books: Books) -> None:
    world = books.world
    settlement_id = offer(world, world.cases_of(world.collector)[2], "40")
    manager = world.manager()
    response = decide(manager, world, settlement_id, decision="approve")
    assert response.status_code == 422
    text = response.get_data(as_text=True)
    assert "only the tenant may decide this offer" in text
    assert "needs tenant approval" in text
    assert stored(world, settlement_id)["status"] == "pending_approval"
    assert f'id="passed-{world.tenant.slug}-{settlement_id}"' in text  # still listed there

    # Once the tenant refused it, it stays on the list with what became of it.
    with tenant_scope(world.tenant.slug, db=platform(world.app).db) as session:
        found = session.get(Settlement, settlement_id)
        assert found is not None
        settlements.decide_settlement(
            session,
            settlement=found,
            approve=False,
            actor="job:tenant",
            level=ApprovalLevel.TENANT,
            note="too deep for M1",
            today=tenant_today(world.tenant.timezone),
        )
    passed = section(page_of(manager), f'id="passed-{world.tenant.slug}-{settlement_id}"', "</tr>")
    assert "Refused by the tenant" in passed
    assert "too deep for M1" in passed


def test_a_decided_or_expired_offer_is_refused_by_the_service(books: Books) -> None:
    world = books.world
    cases = world.cases_of(world.collector)
    settlement_id = offer(world, cases[1], "20")
    manager = world.manager()
    assert decide(manager, world, settlement_id, decision="approve").status_code == 302
    again = decide(manager, world, settlement_id, decision="refuse", note="late")
    assert again.status_code == 422
    text = again.get_data(as_text=True)
    assert "This could not be done" in text
    assert "not pending approval" in text
    assert stored(world, settlement_id)["status"] == "approved"

    expired = offer(world, cases[3], "20", days=0)
    world.tenant.sql(
        "UPDATE {s}.settlements SET expires_on = expires_on - 1 WHERE id = :id", id=expired
    )
    listed = page_of(manager)
    assert "Expired" in section(listed, f'id="settlement-{world.tenant.slug}-{expired}"', "</tr>")
    late = decide(manager, world, expired, decision="approve")
    assert late.status_code == 422
    assert "expired on" in late.get_data(as_text=True)
    assert stored(world, expired)["status"] == "pending_approval"


def test_collectors_are_refused_every_manager_page(books: Books) -> None:
    world = books.world
    settlement_id = offer(world, world.cases_of(world.collector)[1], "20")
    collector = world.collector_caller()
    assert collector.client.get("/work/approvals").status_code == 403
    for path in (
        f"/work/{world.tenant.slug}/approvals/settlements/{settlement_id}",
        "/work/approvals/collector-limit",
    ):
        response = collector.client.post(
            path,
            data={f"s-{world.tenant.slug}-{settlement_id}-decision": "approve", "limit": "90"},
            headers=collector.headers,
        )
        assert response.status_code == 403
    assert stored(world, settlement_id)["status"] == "pending_approval"
    [(limit,)] = world.tenant.sql(
        "SELECT collector_discount_limit FROM platform.agencies WHERE id = :a", a=world.agency
    )
    assert limit == Decimal(10)


def test_another_agency_and_a_tenant_without_contract_find_nothing(books: Books) -> None:
    world = books.world
    settlement_id = offer(world, world.cases_of(world.collector)[1], "20")
    other = world.manager(world.agencies.ids[1])
    page = page_of(other)
    assert f'-{settlement_id}"' not in page
    assert "Waiting for you: 0" in page
    assert decide(other, world, settlement_id, decision="approve").status_code == 404
    assert stored(world, settlement_id)["status"] == "pending_approval"

    manager = world.manager()
    stray = decide(
        manager,
        world,
        books.stranger_settlement,
        tenant_slug=books.stranger.slug,
        decision="approve",
    )
    assert stray.status_code == 404
    [(status,)] = books.stranger.sql(
        "SELECT status FROM {s}.settlements WHERE id = :id", id=books.stranger_settlement
    )
    assert status == "pending_approval"
    # Another tenant's id under this tenant's slug is not taken either.
    assert decide(manager, world, 999_999, decision="approve").status_code == 404


def test_anonymous_is_sent_to_sign_in(books: Books) -> None:
    response = anonymous(books.world.app).client.get("/work/approvals")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


def limit_of(world: WorkWorld) -> Decimal:
    [(limit,)] = world.tenant.sql(
        "SELECT collector_discount_limit FROM platform.agencies WHERE id = :a", a=world.agency
    )
    return Decimal(limit)


def set_limit(caller: Caller, value: str, headers: dict[str, str] = EN) -> Any:
    token = token_of(caller.client.get("/work/approvals").get_data(as_text=True))
    return caller.client.post(
        "/work/approvals/collector-limit",
        data={"csrf_token": token, "limit": value},
        headers=headers,
    )


def test_the_manager_sets_the_collectors_limit(books: Books) -> None:
    world = books.world
    manager = world.manager()
    page = page_of(manager)
    limits = section(page, 'id="limits"', "</table>")
    assert "30.00%" in limits  # the contract's cap: what the manager approves up to
    assert "10.00%" in limits  # what collectors approve there
    assert 'value="10.00"' in page

    saved = set_limit(manager, "12.5")
    assert saved.status_code == 302
    assert limit_of(world) == Decimal("12.50")
    after = page_of(manager)
    assert "Collectors now approve discounts up to 12.5%." in after
    assert "limit-capped" not in after

    # Above the contract's limit: kept, and capped there (the service caps, as the API).
    above = set_limit(manager, "45")
    assert above.status_code == 302
    assert limit_of(world) == Decimal(45)
    capped = page_of(manager)
    warning = section(capped, 'class="field-error limit-capped"', "</p>")
    assert "Above the contract limit of" in warning
    assert "30.00%" in warning
    assert "30.00%" in section(capped, 'id="limits"', "</table>").split("</td>")[-2]
    # A collector's offer at 35% now goes to the tenant, not to them.
    passed = offer(world, world.cases_of(world.collector)[4], "35")
    assert stored(world, passed)["status"] == "pending_approval"

    for bad in ("101", "-1", "abc", "1.234", ""):
        refused = set_limit(manager, bad)
        assert refused.status_code == 422, bad
        assert 'id="limit-error"' in refused.get_data(as_text=True)
        assert limit_of(world) == Decimal(45)


def test_the_page_in_chinese(books: Books) -> None:
    world = books.world
    settlement_id = offer(world, world.cases_of(world.collector)[1], "20")
    offer(world, world.cases_of(world.collector)[2], "40")
    page = page_of(world.manager(), ZH)
    assert "<h1>审批</h1>" in page
    assert "批准" in page
    assert "拒绝" in page
    assert f'id="settlement-{world.tenant.slug}-{settlement_id}"' in page
    for english in (
        "Settlement offers waiting for your decision",
        "Passed to the tenant",
        "Waiting for the tenant",
        "Payment plans need no approval",
        "Your collectors' settlement limit",
    ):
        assert english not in page
    refused = decide(world.manager(), world, settlement_id, decision="refuse")
    assert refused.status_code == 422
