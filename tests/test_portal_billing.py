"""The portal's billing pages: contract versions, the month-close preview and the close,
invoices and their transitions and refusals, PDF and CSV downloads, the ledger with its
filters and keyset pages, agency statements; and who may open and change each of them."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from recova.billing.exports import export_file_name
from recova.billing.invoices import close_month
from recova.billing.models import ContractVersion, Invoice
from recova.billing.terms import create_contract_version
from recova.platform.kernel.extension import platform
from recova.platform.web.portal import billing as billing_pages
from recova.tenants.models import tenant_today
from recova.tenants.scope import tenant_scope
from tests.billing_support import MONTH, Ledger, day, seed_world_billing
from tests.isolation_jobs import run_all_jobs
from tests.support import Caller, World, anonymous, login
from tests.transactions import private_copy, shared

D = Decimal
FEB = dt.date(2026, 2, 1)
CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


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


def base(slug: str) -> str:
    return f"/portal/{slug}/billing"


def billed(ledger: Ledger) -> list[int]:
    """Payments in February and March on cases placed with both agencies; their ids."""
    payments = []
    for n, case in enumerate(ledger.case_ids):
        ledger.place(case, ledger.agency(n % 2), FEB, days=90)
        payments.append(ledger.pay(case, "200.00", day(5, FEB)))
        ledger.pay(case, "100.00", day(6, MONTH))
    return payments


def html(response: Any) -> str:
    return str(response.get_data(as_text=True))


def token(caller: Caller, path: str) -> str:
    page = caller.client.get(path)
    assert page.status_code == 200, html(page)
    found = CSRF.search(html(page))
    assert found is not None
    return found.group(1)


def post(caller: Caller, path: str, form: dict[str, str] | None = None, *, page: str) -> Any:
    """POST a form as the browser would: the CSRF token read from ``page``."""
    data = {"csrf_token": token(caller, page), **(form or {})}
    return caller.client.post(path, data=data)


def invoice_ids(ledger: Ledger) -> dict[dt.date, int]:
    return {invoice["period"]: invoice["id"] for invoice in ledger.invoices()}


# --- the month close -------------------------------------------------------------------------


def test_the_preview_shows_the_close_and_changes_nothing(ledger: Ledger) -> None:
    ledger.version(rates={"*": "10"}, vat_rate="6", minimum_fee="100.00")
    payments = billed(ledger)
    ledger.close(dt.date(2026, 1, 1))  # a January close: February's lines stay unwritten
    ledger.reverse(payments[0], "50.00", day(20, FEB))
    before = (ledger.lines(), ledger.invoices())

    page = admin(ledger).client.get(f"{base(ledger.tenant.slug)}/close?month=2026-02")

    text = html(page)
    assert page.status_code == 200, text
    assert "Preview: nothing was changed." in text
    row = re.search(r'<tr data-currency="CNY">(.*?)</tr>', text, re.S)
    assert row is not None
    cells = row.group(1)
    # 4 x 200.00 at 10% = 80.00; the reversal of 50.00 claws back 5.00: 75.00;
    # minimum 100.00 tops up 25.00; VAT 6% of 100.00 = 6.00; total 106.00.
    assert re.search(r'data-figure="commission">\s*CN¥80\.00', cells)
    assert re.search(r'data-figure="clawbacks">\s*-CN¥5\.00', cells)
    assert "CN¥25.00" in cells
    assert "CN¥6.00" in cells
    assert re.search(r'data-figure="total"><strong>CN¥106\.00', cells)
    assert "A new draft" in cells
    assert (ledger.lines(), ledger.invoices()) == before  # nothing written


def test_a_month_that_has_not_begun_is_not_previewed(ledger: Ledger) -> None:
    page = admin(ledger).client.get(f"{base(ledger.tenant.slug)}/close?month=2099-01")
    assert page.status_code == 422
    assert "field-error" in html(page)
    assert ledger.invoices() == []


@pytest.mark.real_commits  # the close is a job published from the outbox after the commit
def test_closing_a_month_queues_the_close_that_writes_its_lines(ledger: Ledger) -> None:
    ledger.version(rates={"*": "10"})
    billed(ledger)
    caller = admin(ledger)
    page = f"{base(ledger.tenant.slug)}/close"

    response = post(caller, page, {"month": "2026-02"}, page=page)

    assert response.status_code == 302
    assert ledger.lines() == []  # queued, not yet run
    run_all_jobs(ledger.app)
    lines = ledger.lines()
    assert len(lines) == 4
    assert {line["period"] for line in lines} == {FEB}
    (invoice,) = ledger.invoices()
    listed = html(caller.client.get(response.headers["Location"]))
    assert "is queued" in listed
    assert f'data-invoice="{invoice["id"]}"' in listed
    assert "CN¥80.00" in listed


# --- invoices --------------------------------------------------------------------------------


def test_invoices_are_listed_with_status_totals_and_dates(ledger: Ledger) -> None:
    ledger.version(rates={"*": "10"}, vat_rate="6")
    billed(ledger)
    ledger.close(FEB)
    ledger.close(MONTH)
    caller = admin(ledger)

    text = html(caller.client.get(f"{base(ledger.tenant.slug)}/"))

    numbers = re.findall(r">#(\d+)</a>", text)
    assert numbers == ["2", "1"]
    assert "2026-02" in text
    assert "2026-03" in text
    assert "CN¥84.80" in text  # February: 80.00 + 6% VAT
    drafts_only = html(caller.client.get(f"{base(ledger.tenant.slug)}/?status=paid"))
    assert "#1" not in drafts_only
    assert "No invoices yet" in drafts_only


def test_issue_mark_paid_and_void_with_the_services_refusals(ledger: Ledger) -> None:
    ledger.version(rates={"*": "10"}, vat_rate="6")
    billed(ledger)
    ledger.close(FEB)
    ledger.close(MONTH)
    ids = invoice_ids(ledger)
    caller = admin(ledger)
    feb = f"{base(ledger.tenant.slug)}/invoices/{ids[FEB]}"
    march = f"{base(ledger.tenant.slug)}/invoices/{ids[MONTH]}"

    page = html(caller.client.get(feb))
    assert "CN¥84.80" in page
    assert "CN¥80.00" in page
    assert 'data-line="' in page  # its lines are listed

    issued = post(caller, f"{feb}/issue", page=feb)
    assert issued.status_code == 302
    assert 'data-status="issued"' in html(caller.client.get(feb))
    again = post(caller, f"{feb}/issue", page=feb)
    assert again.status_code == 409
    assert "is issued, not a draft" in html(again)

    paid = post(caller, f"{feb}/paid", {"paid_on": "2026-04-10"}, page=feb)
    assert paid.status_code == 302
    refused = post(caller, f"{feb}/void", {"reason": "late"}, page=feb)
    assert refused.status_code == 409
    assert "it cannot be voided" in html(refused)
    assert "is paid; only issued is paid" in html(post(caller, f"{feb}/paid", page=feb))

    no_reason = post(caller, f"{march}/void", {"reason": "  "}, page=march)
    assert no_reason.status_code == 422
    assert 'class="field-error"' in html(no_reason)
    assert "Say why the invoice is voided." in html(no_reason)
    voided = post(caller, f"{march}/void", {"reason": "wrong rate"}, page=march)
    assert voided.status_code == 302
    assert "wrong rate" in html(caller.client.get(march))

    states = {i["period"]: (i["status"], i["paid_on"], i["void_reason"]) for i in ledger.invoices()}
    assert states == {
        FEB: ("paid", dt.date(2026, 4, 10), None),
        MONTH: ("void", None, "wrong rate"),
    }


def test_an_invoice_of_a_month_not_ended_is_not_issued(ledger: Ledger) -> None:
    ledger.version(rates={"*": "10"}, minimum_fee="10.00")
    this_month = tenant_today("Asia/Shanghai").replace(day=1)
    ledger.close(this_month)
    (invoice,) = ledger.invoices()
    caller = admin(ledger)
    path = f"{base(ledger.tenant.slug)}/invoices/{invoice['id']}"

    refused = post(caller, f"{path}/issue", page=path)

    assert refused.status_code == 409
    assert "has not ended" in html(refused)
    assert ledger.invoices()[0]["status"] == "draft"


def test_pdf_and_csv_downloads_are_the_api_exports(ledger: Ledger) -> None:
    ledger.version(rates={"*": "10"})
    payments = billed(ledger)
    ledger.sql(
        "UPDATE {s}.payments SET external_id = '=HYPERLINK(\"http://x.test\")' WHERE id = :id",
        id=payments[0],
    )
    ledger.close(FEB)
    (invoice,) = ledger.invoices()
    caller = admin(ledger)
    path = f"{base(ledger.tenant.slug)}/invoices/{invoice['id']}"
    page = html(caller.client.get(path))
    assert f"{path}/export.pdf" in page
    assert f"{path}/export.csv" in page
    with tenant_scope(ledger.tenant.slug, db=ledger.db) as session:
        found = session.get(Invoice, invoice["id"])
        assert found is not None
        pdf_name = export_file_name(ledger.tenant.slug, found, "pdf")
        csv_name = export_file_name(ledger.tenant.slug, found, "csv")

    pdf = caller.client.get(f"{path}/export.pdf")
    csv = caller.client.get(f"{path}/export.csv")

    assert pdf.status_code == 200
    assert pdf.mimetype == "application/pdf"
    assert pdf.data.startswith(b"%PDF")
    assert pdf.headers["Content-Disposition"] == f'attachment; filename="{pdf_name}"'
    api = f"/api/v1/tenants/{ledger.tenant.slug}/billing/invoices/{invoice['id']}"
    assert pdf.data == caller.client.get(f"{api}/export.pdf").data
    assert csv.mimetype == "text/csv"
    assert csv.headers["Content-Disposition"] == f'attachment; filename="{csv_name}"'
    rows = html(csv).splitlines()
    assert rows[0].startswith("line,kind,payment")
    assert len(rows) == 5
    assert "'=HYPERLINK" in html(csv)  # the shared writer defuses the formula
    assert ",=HYPERLINK" not in html(csv)
    assert csv.data == caller.client.get(f"{api}/export.csv").data


# --- the ledger ------------------------------------------------------------------------------


def line_ids(text: str) -> list[int]:
    return [int(n) for n in re.findall(r'data-line="(\d+)"', text)]


def test_the_ledger_filters_by_month_agency_and_kind(ledger: Ledger) -> None:
    ledger.version(rates={"*": "10"})
    payments = billed(ledger)
    ledger.close(FEB)
    ledger.reverse(payments[1], "20.00", day(9, MONTH))
    ledger.close(MONTH)
    lines = ledger.lines()
    caller = admin(ledger)
    path = f"{base(ledger.tenant.slug)}/ledger"

    everything = html(caller.client.get(path))
    march = html(caller.client.get(f"{path}?month=2026-03"))
    agency = html(caller.client.get(f"{path}?agency={ledger.agency(0)}"))
    clawbacks = html(caller.client.get(f"{path}?kind=clawback"))
    combined = html(caller.client.get(f"{path}?month=2026-02&agency={ledger.agency(1)}"))

    assert line_ids(everything) == [line["id"] for line in lines]
    assert line_ids(march) == [line["id"] for line in lines if line["period"] == MONTH]
    assert line_ids(agency) == [
        line["id"] for line in lines if line["agency_id"] == ledger.agency(0)
    ]
    (clawback,) = [line for line in lines if line["kind"] == "clawback"]
    assert line_ids(clawbacks) == [clawback["id"]]
    assert "-CN¥2.00" in clawbacks
    assert line_ids(combined) == [
        line["id"]
        for line in lines
        if line["period"] == FEB and line["agency_id"] == ledger.agency(1)
    ]
    bad = caller.client.get(f"{path}?kind=refund&month=1999")
    assert bad.status_code == 422


def test_the_ledger_pages_by_keyset(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(billing_pages, "PAGE_SIZE", 3)
    ledger.version(rates={"*": "10"})
    billed(ledger)
    ledger.close(FEB)
    ledger.close(MONTH)
    ids = [line["id"] for line in ledger.lines()]
    assert len(ids) == 8
    caller = admin(ledger)
    path = f"{base(ledger.tenant.slug)}/ledger"

    first = html(caller.client.get(path))
    second = html(caller.client.get(f"{path}?after={ids[2]}"))
    last = html(caller.client.get(f"{path}?after={ids[5]}"))
    back = html(caller.client.get(f"{path}?before={ids[6]}"))

    assert line_ids(first) == ids[:3]
    assert f"after={ids[2]}" in first
    assert 'rel="prev"' not in first
    assert line_ids(second) == ids[3:6]
    assert f"before={ids[3]}" in second
    assert f"after={ids[5]}" in second
    assert line_ids(last) == ids[6:]
    assert 'rel="next"' not in last
    assert line_ids(back) == ids[3:6]


# --- contract versions -----------------------------------------------------------------------


def test_a_contract_version_is_added_from_the_form(ledger: Ledger) -> None:
    caller = admin(ledger)
    path = f"{base(ledger.tenant.slug)}/contract-versions/new"
    form = {
        "currency": "cny",
        "effective_from": "2025-01-01",
        "rates": "M2: 12\n*: 10",
        "tiers": "0, 1000, 1\n1000, , 0.5",
        "minimum_fee": "500.00",
        "vat_rate": "6",
        "rounding": "half_up",
    }

    added = post(caller, path, form, page=path)

    assert added.status_code == 302, html(added)
    listed = html(caller.client.get(f"{base(ledger.tenant.slug)}/contract-versions"))
    assert "M2: 12%" in listed
    assert "any other: 10%" in listed
    assert "CN¥500.00" in listed
    assert "6%" in listed
    assert "Half up" in listed
    assert "from CN¥1,000.00: \u00d70.5" in listed


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"tiers": "0, 100, 1\n150, , 1"}, "tiers", "leaving a gap"),
        ({"tiers": "0, 100"}, "tiers", "separated by commas"),
        ({"rates": "M1: 8"}, "rates", "no rate for bucket"),
        ({"rates": "M1 eight"}, "rates", "a colon and a percentage"),
        ({"rates": "*: 120"}, "rates", "a percentage from 0 to 100"),
        ({"currency": "XXZ"}, "currency", "ISO 4217"),
        ({"minimum_fee": "10.001"}, "minimum_fee", "decimal places"),
        ({"vat_rate": "-1"}, "vat_rate", "a percentage from 0 to 100"),
        ({"effective_from": ""}, "effective_from", "required"),
    ],
)
def test_an_invalid_version_is_refused_beside_its_field_keeping_the_input(
    ledger: Ledger, change: dict[str, str], field: str, message: str
) -> None:
    caller = admin(ledger)
    path = f"{base(ledger.tenant.slug)}/contract-versions/new"
    form = {"currency": "CNY", "effective_from": "2025-01-01", "rates": "*: 10", **change}

    refused = post(caller, path, form, page=path)

    text = html(refused)
    assert refused.status_code == 422
    error = re.search(rf'<p class="field-error" id="{field}-error">([^<]*)</p>', text)
    assert error is not None, text
    assert message in error.group(1)
    assert 'value="2025-01-01"' in text or field == "effective_from"
    assert "*: 10" in text or field == "rates"
    with tenant_scope(ledger.tenant.slug, db=ledger.db) as session:
        assert session.execute(select(ContractVersion.id)).first() is None


def test_a_version_may_not_reprice_the_ledger(ledger: Ledger) -> None:
    ledger.version()
    billed(ledger)
    ledger.close()
    caller = admin(ledger)
    path = f"{base(ledger.tenant.slug)}/contract-versions/new"

    refused = post(
        caller,
        path,
        {"currency": "CNY", "effective_from": "2026-03-01", "rates": "*: 5"},
        page=path,
    )

    assert refused.status_code == 422
    assert "already on the" in html(refused)


# --- agency statements -----------------------------------------------------------------------


def test_agency_statements_per_month_and_their_downloads(ledger: Ledger) -> None:
    ledger.version(rates={"*": "10"})
    billed(ledger)
    ledger.close(FEB)
    caller = admin(ledger)
    path = f"{base(ledger.tenant.slug)}/statements"

    text = html(caller.client.get(f"{path}?month=2026-02"))

    ids = [int(n) for n in re.findall(r'data-statement="(\d+)"', text)]
    assert len(ids) == 2
    assert "CN¥16.00" in text  # 40% of 2 x 20.00 for the first agency
    pdf = caller.client.get(f"{path}/{ids[0]}/export.pdf")
    assert pdf.mimetype == "application/pdf"
    assert pdf.data.startswith(b"%PDF")
    csv = caller.client.get(f"{path}/{ids[0]}/export.csv")
    assert csv.mimetype == "text/csv"
    assert len(html(csv).splitlines()) == 3
    assert "No agency statements yet" in html(caller.client.get(f"{path}?month=2026-01"))


# --- who may open and change what ------------------------------------------------------------


def bill_tenant_a(world: World) -> int:
    """A's contract version with a minimum fee and its closed last month: invoice 1."""
    db = platform(world.app).db
    with tenant_scope(world.a.slug, db=db) as session:
        create_contract_version(
            session,
            tenant_id=world.a.id,
            data={
                "currency": "CNY",
                "effective_from": dt.date(2021, 1, 1),
                "rates": {"*": "9"},
                "minimum_fee": "100.00",
            },
        )
        last_month = (tenant_today("Asia/Shanghai").replace(day=1) - dt.timedelta(days=1)).replace(
            day=1
        )
    (invoice,) = close_month(db, tenant=world.a.id, month=last_month).invoices
    return int(invoice["id"])


@pytest.fixture
def billing_world(world: World) -> tuple[World, int]:
    seed_world_billing(world)
    return world, bill_tenant_a(world)


def page_paths(slug: str, invoice_id: int, statement_id: int = 1) -> list[str]:
    root = base(slug)
    return [
        f"{root}/",
        f"{root}/contract-versions",
        f"{root}/contract-versions/new",
        f"{root}/close",
        f"{root}/ledger",
        f"{root}/statements",
        f"{root}/invoices/{invoice_id}",
        f"{root}/invoices/{invoice_id}/export.pdf",
        f"{root}/invoices/{invoice_id}/export.csv",
    ]


def write_paths(slug: str, invoice_id: int) -> list[tuple[str, dict[str, str]]]:
    root = base(slug)
    return [
        (f"{root}/invoices/{invoice_id}/issue", {}),
        (f"{root}/invoices/{invoice_id}/paid", {"paid_on": "2026-01-01"}),
        (f"{root}/invoices/{invoice_id}/void", {"reason": "test"}),
        (f"{root}/close", {"month": "2026-01"}),
        (
            f"{root}/contract-versions/new",
            {"currency": "CNY", "effective_from": "2030-01-01", "rates": "*: 5"},
        ),
    ]


def test_admins_and_analysts_read_every_page(billing_world: tuple[World, int]) -> None:
    world, invoice_id = billing_world
    for email in (world.a.admin_email, world.a.analyst_email):
        caller = login(world.app, email)
        for path in page_paths(world.a.slug, invoice_id):
            response = caller.client.get(path)
            assert response.status_code == 200, (email, path, response.status_code)


def test_only_admins_see_the_change_buttons(billing_world: tuple[World, int]) -> None:
    world, invoice_id = billing_world
    path = f"{base(world.a.slug)}/invoices/{invoice_id}"
    assert "/issue" in html(login(world.app, world.a.admin_email).client.get(path))
    analyst = login(world.app, world.a.analyst_email)
    assert "/issue" not in html(analyst.client.get(path))
    assert "close-form" not in html(analyst.client.get(f"{base(world.a.slug)}/close"))


def test_an_analysts_changes_are_refused_and_change_nothing(
    billing_world: tuple[World, int],
) -> None:
    world, invoice_id = billing_world
    analyst = login(world.app, world.a.analyst_email)
    db = platform(world.app).db

    def state() -> Any:
        with tenant_scope(world.a.slug, db=db) as session:
            return (
                session.execute(select(Invoice.id, Invoice.status)).all(),
                session.execute(select(ContractVersion.id)).all(),
            )

    before = state()
    page = f"{base(world.a.slug)}/invoices/{invoice_id}"
    for path, form in write_paths(world.a.slug, invoice_id):
        response = post(analyst, path, form, page=page)
        assert response.status_code == 403, (path, response.status_code)
    assert state() == before


def test_agency_staff_are_refused(billing_world: tuple[World, int]) -> None:
    world, invoice_id = billing_world
    for email in (world.manager_email, world.collector_email):
        caller = login(world.app, email)
        for path in page_paths(world.a.slug, invoice_id):
            assert caller.client.get(path).status_code == 403, (email, path)
        for path, form in write_paths(world.a.slug, invoice_id):
            assert caller.client.post(path, data=form).status_code in (400, 403), (email, path)
    assert [i.status for i in _invoices(world)] == ["draft"]


def _invoices(world: World) -> list[Invoice]:
    with tenant_scope(world.a.slug, db=platform(world.app).db) as session:
        found = list(session.scalars(select(Invoice)))
        session.expunge_all()
        return found


def test_another_tenants_admin_finds_nothing_on_this_slug(
    billing_world: tuple[World, int],
) -> None:
    world, invoice_id = billing_world
    outsider = login(world.app, world.b.admin_email)
    for path in page_paths(world.a.slug, invoice_id):
        assert outsider.client.get(path).status_code == 404, path
    for path, form in write_paths(world.a.slug, invoice_id):
        assert outsider.client.post(path, data=form).status_code in (400, 404), path


def test_another_tenants_ids_are_not_found(billing_world: tuple[World, int]) -> None:
    world, _own = billing_world
    caller = login(world.app, world.a.admin_email)
    root = base(world.a.slug)
    hostile_invoice = world.hostile_ids["invoice_id"]
    hostile_statement = world.hostile_ids["statement_id"]
    for path in (
        f"{root}/invoices/{hostile_invoice}",
        f"{root}/invoices/{hostile_invoice}/export.pdf",
        f"{root}/invoices/{hostile_invoice}/export.csv",
        f"{root}/statements/{hostile_statement}/export.pdf",
        f"{root}/statements/{hostile_statement}/export.csv",
    ):
        assert caller.client.get(path).status_code == 404, path
    page = f"{root}/"
    for action, form in (("issue", {}), ("paid", {}), ("void", {"reason": "x"})):
        response = post(caller, f"{root}/invoices/{hostile_invoice}/{action}", form, page=page)
        assert response.status_code == 404, action


def test_anonymous_visitors_are_sent_to_sign_in(billing_world: tuple[World, int]) -> None:
    world, invoice_id = billing_world
    visitor = anonymous(world.app)
    for path in page_paths(world.a.slug, invoice_id):
        response = visitor.client.get(path)
        assert response.status_code == 302, path
        assert "/login" in response.headers["Location"]
