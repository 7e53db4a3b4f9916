"""Billing over the API: contract versions and their validation, the ledger, invoice
preview, issue, payment and void, exports, agency statements, agency payouts."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from tests.billing_support import MONTH, Ledger, day
from tests.support import Caller, login
from tests.transactions import private_copy, shared

D = Decimal
FEB = dt.date(2026, 2, 1)


@pytest.fixture(scope="module")
def shared_ledger(app) -> Ledger:  # type: ignore[no-untyped-def]
    """The module's ledger on this worker, only ever changed inside rolled-back tests."""
    ledger = Ledger(app, cases=4)
    ledger.set_payout(ledger.agency(0), share="40")
    return shared(ledger, ledger.tenant.slug)


@pytest.fixture
def ledger(app, shared_ledger, rolled_back) -> Ledger:  # type: ignore[no-untyped-def]
    if rolled_back is not None:
        return private_copy(shared_ledger, app)
    ledger = Ledger(app, cases=4)
    ledger.set_payout(ledger.agency(0), share="40")
    return ledger


def admin(ledger: Ledger) -> Caller:
    return login(ledger.app, ledger.tenant.admin_email)


def billed(ledger: Ledger) -> None:
    """Payments in February and March on cases placed with both agencies."""
    for n, case in enumerate(ledger.case_ids):
        ledger.place(case, ledger.agency(n % 2), FEB, days=90)
        ledger.pay(case, "200.00", day(5, FEB))
        ledger.pay(case, "100.00", day(6, MONTH))


TERMS = {"currency": "CNY", "effective_from": "2020-01-01", "rates": {"M2": "12", "*": "10"}}


def test_contract_versions_are_numbered_and_listed(ledger: Ledger) -> None:
    caller = admin(ledger)
    first = caller.post("/api/v1/billing/contract-versions", TERMS)
    second = caller.post(
        "/api/v1/billing/contract-versions",
        {
            **TERMS,
            "effective_from": "2026-01-01",
            "minimum_fee": "500.00",
            "vat_rate": 6,
            "tiers": [
                {"from": "0", "to": "1000", "factor": "1"},
                {"from": "1000", "to": None, "factor": "0.5"},
            ],
        },
    )

    assert first.status_code == 201, first.json
    assert second.status_code == 201, second.json
    assert (first.json["version"], second.json["version"]) == (1, 2)
    assert D(second.json["minimum_fee"]) == D("500.00")
    assert second.json["rounding"] == "half_even"
    listed = caller.get("/api/v1/billing/contract-versions?currency=CNY")
    assert [v["version"] for v in listed.json] == [2, 1]
    assert caller.get(f"/api/v1/billing/contract-versions/{first.json['id']}").json["rates"] == {
        "M2": "12",
        "*": "10",
    }
    duplicate = caller.post("/api/v1/billing/contract-versions", TERMS)
    assert duplicate.status_code == 422
    assert "effective_from" in duplicate.json["errors"]["json"]


@pytest.mark.parametrize(
    ("tiers", "message"),
    [
        (
            [{"from": "0", "to": "100", "factor": "1"}, {"from": "150", "to": None, "factor": "1"}],
            "gap",
        ),
        (
            [{"from": "0", "to": "100", "factor": "1"}, {"from": "90", "to": None, "factor": "1"}],
            "overlap",
        ),
        ([{"from": "10", "to": None, "factor": "1"}], "must start at 0"),
        ([{"from": "0", "to": "100", "factor": "1"}], "must be open"),
        (
            [{"from": "0", "to": None, "factor": "1"}, {"from": "0", "to": None, "factor": "1"}],
            "only the last tier may be open",
        ),
        (
            [{"from": "0", "to": "0", "factor": "1"}, {"from": "0", "to": None, "factor": "1"}],
            "above 'from'",
        ),
    ],
)
def test_tiers_that_leave_a_gap_or_overlap_are_refused(
    ledger: Ledger, tiers: list[dict[str, str | None]], message: str
) -> None:
    response = admin(ledger).post("/api/v1/billing/contract-versions", {**TERMS, "tiers": tiers})
    assert response.status_code == 422
    assert message in response.json["errors"]["json"]["tiers"]


def test_other_invalid_terms_name_their_field(ledger: Ledger) -> None:
    caller = admin(ledger)
    for change, field in (
        ({"rates": {"M1": "8"}}, "rates"),  # M2, M3 ... left without a rate and no '*'
        ({"rates": {"*": "120"}}, "rates"),
        ({"currency": "XXZ"}, "currency"),
        ({"minimum_fee": "10.001"}, "minimum_fee"),
        ({"vat_rate": "-1"}, "vat_rate"),
    ):
        response = caller.post("/api/v1/billing/contract-versions", {**TERMS, **change})
        assert response.status_code == 422, (change, response.json)
        assert field in response.json["errors"]["json"], (change, response.json)
    bad_mode = caller.post("/api/v1/billing/contract-versions", {**TERMS, "rounding": "bankers"})
    assert bad_mode.status_code == 422


def test_a_version_may_not_reprice_what_is_on_the_ledger(ledger: Ledger) -> None:
    ledger.version()
    billed(ledger)
    ledger.close()
    response = admin(ledger).post(
        "/api/v1/billing/contract-versions", {**TERMS, "effective_from": "2026-03-01"}
    )
    assert response.status_code == 422
    assert "already on the ledger" in response.json["errors"]["json"]["effective_from"]


def test_invoice_lifecycle_and_exports(ledger: Ledger) -> None:
    ledger.version(rates={"*": "10"}, vat_rate="6")
    billed(ledger)
    caller = admin(ledger)

    preview = caller.post("/api/v1/billing/invoices/preview", {"month": "2026-02"})
    assert preview.status_code == 200, preview.json
    (previewed,) = preview.json["invoices"]
    assert previewed["number"] is None
    assert previewed["commission_total"] == "80.0000"
    assert ledger.lines() == []  # nothing written
    assert ledger.invoices() == []

    ledger.close(FEB)
    ledger.close(MONTH)
    listed = caller.get("/api/v1/billing/invoices").json
    assert [(i["number"], i["period"]) for i in listed] == [(2, "2026-03-01"), (1, "2026-02-01")]
    feb_id, march_id = listed[1]["id"], listed[0]["id"]
    feb = caller.get(f"/api/v1/billing/invoices/{feb_id}").json
    assert feb["total"] == "84.8000"
    assert {a["agency_id"] for a in feb["summary"]["by_agency"]} == set(ledger.agencies.ids)

    ledger_page = caller.get("/api/v1/billing/ledger?month=2026-02&kind=commission")
    assert len(ledger_page.json) == 4
    assert all(line["commission"] == "20.0000" for line in ledger_page.json)
    agency_lines = caller.get(f"/api/v1/billing/ledger?agency_id={ledger.agency(0)}")
    assert {line["agency_id"] for line in agency_lines.json} == {ledger.agency(0)}

    issued = caller.post(f"/api/v1/billing/invoices/{feb_id}/issue")
    assert issued.status_code == 200, issued.json
    assert issued.json["status"] == "issued"
    assert caller.post(f"/api/v1/billing/invoices/{feb_id}/issue").status_code == 409
    paid = caller.post(f"/api/v1/billing/invoices/{feb_id}/mark-paid", {"paid_on": "2026-04-10"})
    assert paid.json["status"] == "paid"
    assert paid.json["paid_on"] == "2026-04-10"
    refused = caller.post(f"/api/v1/billing/invoices/{feb_id}/void", {"reason": "late"})
    assert refused.status_code == 409
    voided = caller.post(f"/api/v1/billing/invoices/{march_id}/void", {"reason": "wrong rate"})
    assert voided.json["status"] == "void"
    assert voided.json["void_reason"] == "wrong rate"
    assert caller.post(f"/api/v1/billing/invoices/{march_id}/void", {}).status_code == 422

    csv_response = caller.get(f"/api/v1/billing/invoices/{feb_id}/export.csv")
    assert csv_response.status_code == 200
    assert csv_response.mimetype == "text/csv"
    rows = csv_response.get_data(as_text=True).splitlines()
    assert rows[0].startswith("line,kind,payment,reverses_payment,paid_on")
    assert len(rows) == 5
    assert ",20.00," in rows[1]
    pdf = caller.get(f"/api/v1/billing/invoices/{feb_id}/export.pdf")
    assert pdf.mimetype == "application/pdf"
    assert pdf.data.startswith(b"%PDF-")
    assert caller.get(f"/api/v1/billing/invoices/{feb_id}/export.pdf").data == pdf.data


@pytest.mark.real_commits  # the outbox publishes jobs on a connection of its own
def test_closes_are_queued_as_jobs(ledger: Ledger) -> None:
    response = admin(ledger).post("/api/v1/billing/closes", {"month": "2026-03"})
    assert response.status_code == 202, response.json
    assert response.json["queue"] == "billing"
    assert response.json["job_id"].endswith(f"billing-close-{ledger.tenant.id}-2026-03")
    future = admin(ledger).post("/api/v1/billing/closes", {"month": "2099-01"})
    assert future.status_code == 422
    assert admin(ledger).post("/api/v1/billing/closes", {"month": "2026-3"}).status_code == 422


def test_agencies_see_only_their_own_statements(ledger: Ledger) -> None:
    ledger.version(rates={"*": "10"})
    billed(ledger)
    ledger.close(FEB)
    tenant_view = admin(ledger).get("/api/v1/billing/statements?month=2026-02").json
    assert {s["agency_id"] for s in tenant_view} == set(ledger.agencies.ids)
    own = next(s for s in tenant_view if s["agency_id"] == ledger.agency(0))
    other = next(s for s in tenant_view if s["agency_id"] == ledger.agency(1))
    assert own["agency_total"] == "16.0000"  # 40% of 2 x 20.00

    manager = login(ledger.app, ledger.agencies.managers[ledger.agency(0)])
    base = f"/api/v1/tenants/{ledger.tenant.slug}/billing/statements"
    seen = manager.get(base).json
    assert [s["id"] for s in seen] == [own["id"]]
    assert manager.get(f"{base}/{own['id']}").status_code == 200
    assert manager.get(f"{base}/{other['id']}").status_code == 404
    assert manager.get(f"{base}/{other['id']}/export.pdf").status_code == 404
    statement_csv = manager.get(f"{base}/{own['id']}/export.csv")
    assert statement_csv.status_code == 200
    assert len(statement_csv.get_data(as_text=True).splitlines()) == 3
    assert manager.get(f"{base}/{own['id']}/export.pdf").data.startswith(b"%PDF-")
    # The manager reaches no other billing route.
    assert manager.get(f"/api/v1/tenants/{ledger.tenant.slug}/billing/invoices").status_code == 403


def test_an_agency_manager_sees_the_agencys_statements_across_tenants(
    app,  # type: ignore[no-untyped-def]
    ledger: Ledger,
) -> None:
    second = Ledger(app, agencies=ledger.agencies, cases=2)
    second.set_payout(second.agency(0), share="50")
    for book in (ledger, second):
        book.version(rates={"*": "10"})
    billed(ledger)
    for case in second.case_ids:
        second.place(case, second.agency(0), FEB, days=90)
        second.pay(case, "500.00", day(5, FEB))
    ledger.close(FEB)
    second.close(FEB)

    manager = login(app, ledger.agencies.managers[ledger.agency(0)])
    rows = manager.get("/api/v1/agency/statements?month=2026-02").json
    assert {(r["tenant"], r["agency_total"]) for r in rows} == {
        (ledger.tenant.slug, "16.0000"),  # 40% of 2 x 20.00
        (second.tenant.slug, "50.0000"),  # 50% of 2 x 50.00
    }
    for row in rows:  # each statement, with its exports, under its own tenant
        assert row["invoice_status"] == "draft"
        base = f"/api/v1/tenants/{row['tenant']}/billing/statements/{row['id']}"
        assert manager.get(base).json["agency_total"] == row["agency_total"]
        assert manager.get(f"{base}/export.pdf").data.startswith(b"%PDF-")
    narrowed = manager.get(f"/api/v1/agency/statements?tenant={second.tenant.slug}").json
    assert [r["tenant"] for r in narrowed] == [second.tenant.slug]
    assert manager.get("/api/v1/agency/statements?month=2026-03").json == []
    assert manager.get("/api/v1/agency/statements?month=2026-3").status_code == 422

    # The other agency worked only for the first tenant: it sees that one, never ours.
    other = login(app, ledger.agencies.managers[ledger.agency(1)])
    theirs = other.get("/api/v1/agency/statements").json
    # (its contract pays it no share: a statement of its lines, for nothing)
    assert [(r["tenant"], r["agency_total"]) for r in theirs] == [(ledger.tenant.slug, "0.0000")]
    assert {r["id"] for r in theirs}.isdisjoint(
        {r["id"] for r in rows if r["tenant"] == ledger.tenant.slug}
    )

    # A void invoice takes its statements with it; tenant staff have no agency view.
    invoice = second.invoices()[0]["id"]
    voided = login(app, second.tenant.admin_email).post(
        f"/api/v1/billing/invoices/{invoice}/void", {"reason": "wrong month"}
    )
    assert voided.status_code == 200, voided.json
    after = manager.get("/api/v1/agency/statements").json
    assert {r["tenant"] for r in after} == {ledger.tenant.slug}
    assert admin(ledger).get("/api/v1/agency/statements").status_code == 403


def test_platform_admin_sets_an_agency_payout(app, world) -> None:  # type: ignore[no-untyped-def]
    root = login(app, world.platform_admin_email)
    path = f"/api/v1/platform/contracts/{world.contract_a_id}"
    shared = root.patch(path, {"payout": {"mode": "share", "share": "35"}})
    assert shared.status_code == 200, shared.json
    assert shared.json["payout"] == {"mode": "share", "share": "35", "rates": None}
    own = root.patch(path, {"payout": {"mode": "rates", "rates": {"M1": "4", "*": "6"}}})
    assert own.json["payout"] == {"mode": "rates", "share": None, "rates": {"M1": "4", "*": "6"}}
    assert root.patch(path, {"payout": {"mode": "share", "share": "150"}}).status_code == 422
    assert root.patch(path, {"payout": {"mode": "rates"}}).status_code == 422
    assert root.patch(path, {}).status_code == 422
