"""The portal's approvals: offers above the agencies' limits and open disputes, decided by
the tenant's admin with a reason; the analyst reads, agency staff and other tenants don't."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any

import pytest

from recova.platform.agencies.contracts import AgencyContract
from recova.platform.cases.models import Case
from recova.platform.kernel.extension import platform
from recova.platform.work import approvals, settlements
from recova.platform.work.models import ApprovalLevel, Dispute, Settlement
from recova.tenants.models import tenant_today
from recova.tenants.scope import tenant_scope
from tests.support import Caller, World, anonymous, login
from tests.work_support import seed_world_work, work_world

TOKEN = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def token_of(page: str) -> str:
    found = TOKEN.search(page)
    assert found is not None
    return found.group(1)


def row(world: World, table: str, row_id: int) -> dict[str, Any]:
    with tenant_scope(world.a.slug, db=platform(world.app).db) as session:
        model = Settlement if table == "settlements" else Dispute
        found = session.get(model, row_id)
        assert found is not None
        return {
            "status": found.status.value,
            "note": getattr(found, "decision_note", None)
            or getattr(found, "resolution_note", None),
        }


@pytest.fixture
def seeded(world: World) -> World:
    """A's pending settlement (case 1, unplaced: only the tenant approves it) and open
    dispute (case 3); B holds more of each, so B's ids 2 and 3 do not exist in A."""
    seed_world_work(world)
    return world


def a_ids(world: World) -> tuple[int, int]:
    with tenant_scope(world.a.slug, db=platform(world.app).db) as session:
        [settlement] = approvals.waiting_settlements(session, today=dt.date.today())
        [dispute] = approvals.open_disputes(session, now=dt.datetime.now(dt.UTC))
        return settlement.id, dispute.id


def approvals_url(world: World) -> str:
    return f"/portal/{world.a.slug}/approvals"


def post(caller: Caller, url: str, page_url: str, **data: str) -> Any:
    page = caller.client.get(page_url).get_data(as_text=True)
    return caller.client.post(url, data={"csrf_token": token_of(page), **data})


def test_the_page_lists_the_waiting_offer_and_open_dispute_with_counts(seeded: World) -> None:
    settlement_id, dispute_id = a_ids(seeded)
    admin = login(seeded.app, seeded.a.admin_email)
    response = admin.client.get(approvals_url(seeded), headers={"Accept-Language": "en"})
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Settlements waiting: 1" in page
    assert "Disputes open: 1" in page
    assert f'id="settlement-{settlement_id}"' in page
    assert f'id="dispute-{dispute_id}"' in page
    # Amount against balance, and the discount: 500 of case 1's 1,000.00 is 50%.
    assert "¥500.00" in page or "CN¥500.00" in page
    assert "1,000.00" in page
    assert "50.00%" in page
    assert "Not placed" in page  # the case is with no agency: only the tenant approves
    assert "job:walk" in page  # who asked, as recorded
    assert "L-1" in page
    assert "L-3" in page
    # Until the case page exists, the row shows the case id without a link.
    assert "Case " in page
    assert "B_MARK" not in page
    assert "bmark" not in page


def test_approving_an_offer_approves_it_and_empties_the_queue(seeded: World) -> None:
    settlement_id, _ = a_ids(seeded)
    admin = login(seeded.app, seeded.a.admin_email)
    url = f"{approvals_url(seeded)}/settlements/{settlement_id}"
    prefix = f"settlement-{settlement_id}"
    response = post(admin, url, approvals_url(seeded), **{f"{prefix}-decision": "approve"})
    assert response.status_code == 302
    assert row(seeded, "settlements", settlement_id)["status"] == "approved"
    page = admin.client.get(approvals_url(seeded), headers={"Accept-Language": "en"})
    text = page.get_data(as_text=True)
    assert f"Settlement offer {settlement_id} approved." in text
    assert "Settlements waiting: 0" in text
    assert f'id="settlement-{settlement_id}"' not in text


def test_refusing_needs_a_reason_and_keeps_the_input(seeded: World) -> None:
    settlement_id, _ = a_ids(seeded)
    admin = login(seeded.app, seeded.a.admin_email)
    url = f"{approvals_url(seeded)}/settlements/{settlement_id}"
    prefix = f"settlement-{settlement_id}"
    empty = post(
        admin, url, approvals_url(seeded), **{f"{prefix}-decision": "refuse", f"{prefix}-note": " "}
    )
    assert empty.status_code == 422
    page = empty.get_data(as_text=True)
    assert f'id="{prefix}-note-error"' in page
    assert row(seeded, "settlements", settlement_id)["status"] == "pending_approval"

    too_long = "x" * 501
    kept = post(
        admin,
        url,
        approvals_url(seeded),
        **{f"{prefix}-decision": "refuse", f"{prefix}-note": too_long},
    )
    assert kept.status_code == 422
    assert too_long in kept.get_data(as_text=True)  # the input stays in the form

    refused = post(
        admin,
        url,
        approvals_url(seeded),
        **{f"{prefix}-decision": "refuse", f"{prefix}-note": "discount too deep for this bucket"},
    )
    assert refused.status_code == 302
    assert row(seeded, "settlements", settlement_id) == {
        "status": "rejected",
        "note": "discount too deep for this bucket",
    }


def test_a_decided_offer_is_refused_by_the_service_on_the_page(seeded: World) -> None:
    settlement_id, _ = a_ids(seeded)
    admin = login(seeded.app, seeded.a.admin_email)
    url = f"{approvals_url(seeded)}/settlements/{settlement_id}"
    prefix = f"settlement-{settlement_id}"
    token = token_of(admin.client.get(approvals_url(seeded)).get_data(as_text=True))
    first = admin.client.post(url, data={"csrf_token": token, f"{prefix}-decision": "approve"})
    assert first.status_code == 302
    again = admin.client.post(
        url,
        data={"csrf_token": token, f"{prefix}-decision": "refuse", f"{prefix}-note": "late"},
        headers={"Accept-Language": "en"},
    )
    assert again.status_code == 422
    page = again.get_data(as_text=True)
    assert "This could not be done" in page
    assert "not pending approval" in page
    assert row(seeded, "settlements", settlement_id)["status"] == "approved"


def test_resolving_a_dispute_needs_a_reason_to_reject(seeded: World) -> None:
    _, dispute_id = a_ids(seeded)
    admin = login(seeded.app, seeded.a.admin_email)
    url = f"{approvals_url(seeded)}/disputes/{dispute_id}"
    prefix = f"dispute-{dispute_id}"
    empty = post(admin, url, approvals_url(seeded), **{f"{prefix}-outcome": "rejected"})
    assert empty.status_code == 422
    assert f'id="{prefix}-note-error"' in empty.get_data(as_text=True)
    assert row(seeded, "disputes", dispute_id)["status"] == "open"
    done = post(
        admin,
        url,
        approvals_url(seeded),
        **{f"{prefix}-outcome": "rejected", f"{prefix}-note": "loan agreement signed"},
    )
    assert done.status_code == 302
    assert row(seeded, "disputes", dispute_id) == {
        "status": "rejected",
        "note": "loan agreement signed",
    }


def test_the_analyst_reads_but_every_decision_is_refused(seeded: World) -> None:
    settlement_id, dispute_id = a_ids(seeded)
    analyst = login(seeded.app, seeded.a.analyst_email)
    page = analyst.client.get(approvals_url(seeded))
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert f'id="settlement-{settlement_id}"' in text
    assert "/settlements/" not in text  # no decision forms for a reader
    token = token_of(text)
    prefix = f"settlement-{settlement_id}"
    refused = analyst.client.post(
        f"{approvals_url(seeded)}/settlements/{settlement_id}",
        data={"csrf_token": token, f"{prefix}-decision": "approve"},
    )
    assert refused.status_code == 403
    refused = analyst.client.post(
        f"{approvals_url(seeded)}/disputes/{dispute_id}",
        data={
            "csrf_token": token,
            f"dispute-{dispute_id}-outcome": "upheld",
            f"dispute-{dispute_id}-note": "x",
        },
    )
    assert refused.status_code == 403
    assert row(seeded, "settlements", settlement_id)["status"] == "pending_approval"
    assert row(seeded, "disputes", dispute_id)["status"] == "open"


@pytest.mark.parametrize("who", ["manager_email", "collector_email"])
def test_agency_staff_are_refused(seeded: World, who: str) -> None:
    settlement_id, dispute_id = a_ids(seeded)
    staff = login(seeded.app, getattr(seeded, who))
    assert staff.client.get(approvals_url(seeded)).status_code in (403, 404)
    for path in (f"/settlements/{settlement_id}", f"/disputes/{dispute_id}"):
        response = staff.post(f"{approvals_url(seeded)}{path}")
        assert response.status_code in (403, 404)
    assert row(seeded, "settlements", settlement_id)["status"] == "pending_approval"


def test_another_tenants_admin_finds_nothing(seeded: World) -> None:
    settlement_id, dispute_id = a_ids(seeded)
    other = login(seeded.app, seeded.b.admin_email)
    assert other.client.get(approvals_url(seeded)).status_code == 404
    for path in (f"/settlements/{settlement_id}", f"/disputes/{dispute_id}"):
        assert other.post(f"{approvals_url(seeded)}{path}").status_code == 404
    assert row(seeded, "settlements", settlement_id)["status"] == "pending_approval"


def test_another_tenants_ids_are_not_taken(seeded: World) -> None:
    admin = login(seeded.app, seeded.a.admin_email)
    token = token_of(admin.client.get(approvals_url(seeded)).get_data(as_text=True))
    # B's settlement and dispute 3 exist; A has only one of each.
    for path, data in (
        ("/settlements/3", {"settlement-3-decision": "approve"}),
        ("/disputes/3", {"dispute-3-outcome": "upheld", "dispute-3-note": "x"}),
    ):
        response = admin.client.post(
            f"{approvals_url(seeded)}{path}", data={"csrf_token": token, **data}
        )
        assert response.status_code == 404
    with tenant_scope(seeded.b.slug, db=platform(seeded.app).db) as session:
        assert session.get(Settlement, 3).status.value == "pending_approval"  # type: ignore[union-attr]
        assert session.get(Dispute, 3).status.value == "open"  # type: ignore[union-attr]


def test_anonymous_is_sent_to_sign_in(seeded: World) -> None:
    response = anonymous(seeded.app).client.get(approvals_url(seeded))
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]
    posted = anonymous(seeded.app).client.post(f"{approvals_url(seeded)}/settlements/1")
    assert posted.status_code in (400, 401)


def test_only_offers_above_the_agency_limits_wait_for_the_tenant(app: Any) -> None:
    world = work_world(app, cases=8)
    [small_case, big_case] = world.cases_of(world.collector)[:2]
    with tenant_scope(world.tenant.slug, db=platform(app).db) as session:
        today = tenant_today(session.info["tenant"].timezone)
        contract = session.get(AgencyContract, world.contract_id(world.agency))
        assert contract is not None
        settlements.set_contract_limit(session, contract, limit=Decimal(30), actor="job:test")
        small = settlements.offer_settlement(
            session,
            case=session.get(Case, small_case),  # type: ignore[arg-type]
            amount=(world.balance(small_case) * Decimal("0.9")).quantize(Decimal("0.01")),
            expires_on=today + dt.timedelta(days=3),
            actor="job:test",
            level=ApprovalLevel.MANAGER,
            tenant_id=world.tenant.id,
            today=today,
        )
        big = settlements.offer_settlement(
            session,
            case=session.get(Case, big_case),  # type: ignore[arg-type]
            amount=Decimal("1.00"),
            expires_on=today + dt.timedelta(days=2),
            actor=f"user:{world.tenant_admin_id}",
            level=ApprovalLevel.COLLECTOR,
            tenant_id=world.tenant.id,
            today=today,
        )
        assert small.status.value == "approved"
        assert big.required_level is ApprovalLevel.TENANT
        waiting = approvals.waiting_settlements(session, today=today)
        assert [item.id for item in waiting] == [big.id]
        [item] = waiting
        assert item.agency_name is not None  # the agency that holds the case
        assert item.requester_name is not None  # who asked, by name
        assert approvals.count_waiting_settlements(session) == 1
