"""The agency manager's placements (counts per tenant, keyset pages of one tenant's active
or recalled placements) and monthly statements across the tenants the agency serves, with
the API's PDF and CSV; collectors are refused, another agency and a tenant without
contract see nothing."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask

from recova.platform.allocation import agency_book
from tests.allocation_support import AllocTenant, make_tenant, seed_cases
from tests.billing_support import Ledger, day
from tests.support import Caller, anonymous
from tests.transactions import private_copy, shared
from tests.work_support import WorkWorld, work_world

EN = {"Accept-Language": "en"}
ZH = {"Accept-Language": "zh-CN"}
FEB = dt.date(2026, 2, 1)
ROW = re.compile(r'<tr id="placement-(\d+)" data-testid="placement" data-case="(\d+)">')


@dataclass
class Books:
    """The work world (agencies 0 and 1 split its cases), a billing tenant both agencies
    serve with February closed (agency 0 paid 40% of the commission), and a tenant only
    agency 1 serves, holding a stray placement of agency 0's."""

    world: WorkWorld
    ledger: Ledger
    stranger: AllocTenant


def build_books(app: Flask) -> Books:
    world = work_world(app, cases=16)
    ledger = Ledger(app, agencies=world.agencies, cases=4)
    ledger.set_payout(ledger.agency(0), share="40")
    ledger.version(rates={"*": "10"})
    for n, case in enumerate(ledger.case_ids):
        ledger.place(case, ledger.agency(n % 2), FEB, days=90, recalled_on=dt.date(2026, 4, 1))
        ledger.pay(case, "200.00", day(5, FEB))
    ledger.close(FEB)
    stranger = make_tenant(app, world.agencies, contracted=[world.agencies.ids[1]])
    [case_id] = seed_cases(stranger, 1, as_of=world.today)
    stranger.sql(
        "INSERT INTO {s}.placements (case_id, agency_id, started_on, ends_on, grace_days,"
        " balance_at_placement, currency) VALUES (:c, :a, :d, :d + 30, 10, 1000, 'CNY')",
        c=case_id,
        a=world.agency,
        d=world.today,
    )
    return Books(world=world, ledger=ledger, stranger=stranger)


@pytest.fixture(scope="module")
def shared_books(app: Flask) -> Books:
    books = build_books(app)
    return shared(  # type: ignore[no-any-return]
        books, books.world.tenant.slug, books.ledger.tenant.slug, books.stranger.slug
    )


@pytest.fixture
def books(app: Flask, shared_books: Books, rolled_back: Any) -> Books:
    if rolled_back is None:
        return build_books(app)
    return private_copy(shared_books, app)  # type: ignore[no-any-return]


def get(caller: Caller, path: str, headers: dict[str, str] = EN, status: int = 200) -> str:
    response = caller.client.get(path, headers=headers)
    assert response.status_code == status, response.get_data(as_text=True)
    return str(response.get_data(as_text=True))


def section(page: str, start: str, end: str) -> str:
    at = page.index(start)
    return page[at : page.index(end, at)]


def listed(page: str) -> list[int]:
    """The case ids of the placements a page lists, in order."""
    return [int(case) for _, case in ROW.findall(page)]


def agency_placements(world: WorkWorld, agency_id: int, *, recalled: bool) -> list[Any]:
    return world.tenant.sql(
        "SELECT case_id, ends_on, recalled_on FROM {s}.placements WHERE agency_id = :a"
        f" AND recalled_on IS {'NOT ' if recalled else ''}NULL",
        a=agency_id,
    )


# --- placements ------------------------------------------------------------------------------


def test_counts_per_tenant_and_the_active_placements_by_end_date(books: Books) -> None:
    world = books.world
    mine = world.cases_of_agency(world.agency)
    # One ends in three days, one was recalled today, one this month's first day... of
    # the tenant's calendar; one recalled last month does not count.
    world.tenant.sql(
        "UPDATE {s}.placements SET ends_on = :d WHERE case_id = :c",
        d=world.today + dt.timedelta(days=3),
        c=mine[0],
    )
    world.tenant.sql(
        "UPDATE {s}.placements SET recalled_on = :d, recall_reason = 'case_closed'"
        " WHERE case_id = :c",
        d=world.today,
        c=mine[1],
    )
    world.tenant.sql(
        "UPDATE {s}.placements SET started_on = :s, recalled_on = :d, recall_reason = 'expired'"
        " WHERE case_id = :c",
        s=world.today.replace(day=1) - dt.timedelta(days=40),
        d=world.today.replace(day=1) - dt.timedelta(days=1),
        c=mine[2],
    )
    manager = world.manager()
    page = get(manager, f"/work/placements?tenant={world.tenant.slug}")
    counts = section(page, f'id="counts-{world.tenant.slug}"', "</tr>")
    active = len(mine) - 2
    assert f'data-count="active"><a href="/work/placements?tenant={world.tenant.slug}' in counts
    assert f">{active}</a>" in section(counts, 'data-count="active"', "</td>")
    assert ">1</a>" in section(counts, 'data-count="recalled"', "</td>")
    assert ">1</span>" in section(counts, 'data-count="ending"', "</td>")
    # The billing tenant: agency 0's two placements there were recalled in April 2026.
    ledger_counts = section(page, f'id="counts-{books.ledger.tenant.slug}"', "</tr>")
    assert ">0</a>" in section(ledger_counts, 'data-count="active"', "</td>")
    assert ">0</a>" in section(ledger_counts, 'data-count="recalled"', "</td>")
    ledger_recalled = get(
        manager, f"/work/placements?tenant={books.ledger.tenant.slug}&state=recalled"
    )
    assert listed(ledger_recalled) == sorted(books.ledger.case_ids[0::2], reverse=True)

    rows = listed(page)
    expected = sorted(
        (ends_on, case_id)
        for case_id, ends_on, _ in agency_placements(world, world.agency, recalled=False)
    )
    assert rows == [case_id for _, case_id in expected]
    assert rows[0] == mine[0]  # the soonest to end first
    theirs = set(world.cases_of_agency(world.agencies.ids[1]))
    assert not theirs & set(rows)
    first = section(page, f'data-case="{mine[0]}"', "</tr>")
    assert "Collector 0-" in first  # assigned now, by name
    assert "L-" in first  # the account's reference
    # Tenant counts never include the tenant agency 0 has no contract with.
    assert books.stranger.slug not in page


def test_recalled_placements_with_their_date_and_reason(books: Books) -> None:
    world = books.world
    mine = world.cases_of_agency(world.agency)
    world.tenant.sql(
        "UPDATE {s}.placements SET recalled_on = :d, recall_reason = 'case_closed'"
        " WHERE case_id = :c",
        d=world.today,
        c=mine[1],
    )
    page = get(world.manager(), f"/work/placements?tenant={world.tenant.slug}&state=recalled")
    assert listed(page) == [mine[1]]
    row = section(page, f'data-case="{mine[1]}"', "</tr>")
    assert "The case closed" in row
    zh = get(world.manager(), f"/work/placements?tenant={world.tenant.slug}&state=recalled", ZH)
    assert "The case closed" not in zh
    assert "Balance at placement" not in zh


def test_placements_page_by_keyset(books: Books, monkeypatch: pytest.MonkeyPatch) -> None:
    world = books.world
    monkeypatch.setattr(agency_book, "PAGE_SIZE", 3)
    manager = world.manager()
    expected = [
        case_id
        for _, case_id in sorted(
            (ends_on, case_id)
            for case_id, ends_on, _ in agency_placements(world, world.agency, recalled=False)
        )
    ]
    assert len(expected) > 6
    seen: list[int] = []
    path = f"/work/placements?tenant={world.tenant.slug}&state=active"
    pages = 0
    while True:
        page = get(manager, path)
        rows = listed(page)
        assert 0 < len(rows) <= 3
        seen.extend(rows)
        pages += 1
        found = re.search(r'id="next-page" href="([^"]+)"', page)
        if found is None:
            break
        assert 'id="first-page"' in page or pages == 1
        path = found.group(1).replace("&amp;", "&")
    assert seen == expected
    assert pages == -(-len(expected) // 3)
    # A token that is not one starts from the first page.
    assert (
        listed(get(manager, f"/work/placements?tenant={world.tenant.slug}&after=x.y"))[:3]
        == (expected[:3])
    )


def test_another_agency_sees_its_own_and_a_stranger_tenant_is_404(books: Books) -> None:
    world = books.world
    other = world.manager(world.agencies.ids[1])
    page = get(other, f"/work/placements?tenant={world.tenant.slug}")
    assert set(listed(page)) == set(world.cases_of_agency(world.agencies.ids[1]))
    # Agency 1 serves the stranger tenant; agency 0 does not, whatever its rows there say.
    assert books.stranger.slug in page
    get(world.manager(), f"/work/placements?tenant={books.stranger.slug}", status=404)
    get(world.manager(), "/work/placements?tenant=no-such-tenant", status=404)


# --- statements ------------------------------------------------------------------------------


def statement_ids(books: Books) -> dict[int, int]:
    """Each agency's statement id of February in the billing tenant."""
    rows = books.ledger.sql("SELECT agency_id, id FROM {s}.agency_statements")
    return {int(agency): int(statement) for agency, statement in rows}


def test_statements_across_tenants_with_downloads(books: Books) -> None:
    world, ledger = books.world, books.ledger
    ids = statement_ids(books)
    own = ids[world.agency]
    manager = world.manager()
    page = get(manager, "/work/statements")
    row = section(page, f'id="statement-{ledger.tenant.slug}-{own}"', "</tr>")
    assert "2026-02" in row
    assert ledger.tenant.slug.replace("alloc-", "Alloc ") in row  # the tenant's name
    assert "CNY" in row
    assert "400.00" in row  # recovered: 2 x 200.00
    assert "40.00" in row  # commission: 10%
    assert "16.00" in row  # agency 0's share: 40% of 40.00
    assert "Draft" in row
    assert f'id="statement-{ledger.tenant.slug}-{ids[world.agencies.ids[1]]}"' not in page
    assert books.stranger.slug not in page

    base = f"/work/{ledger.tenant.slug}/statements/{own}"
    pdf = manager.client.get(f"{base}/export.pdf")
    assert pdf.status_code == 200
    assert pdf.mimetype == "application/pdf"
    assert pdf.data.startswith(b"%PDF")
    assert f"statement-{own}-2026-02-CNY.pdf" in pdf.headers["Content-Disposition"]
    csv = manager.client.get(f"{base}/export.csv")
    assert csv.status_code == 200
    assert csv.mimetype == "text/csv"
    lines = csv.get_data(as_text=True).splitlines()
    assert lines[0].startswith("line,kind,payment,reverses_payment,paid_on")
    assert len(lines) == 3  # agency 0's two lines
    assert f'href="{base}/export.pdf"' in row
    assert f'href="{base}/export.csv"' in row


def test_statement_filters(books: Books) -> None:
    world, ledger = books.world, books.ledger
    own = statement_ids(books)[world.agency]
    manager = world.manager()
    marker = f'id="statement-{ledger.tenant.slug}-{own}"'
    assert marker in get(manager, "/work/statements?month=2026-02")
    assert marker not in get(manager, "/work/statements?month=2026-03")
    assert marker in get(manager, f"/work/statements?tenant={ledger.tenant.slug}")
    assert marker not in get(manager, f"/work/statements?tenant={world.tenant.slug}")
    bad = get(manager, "/work/statements?month=2026-3", status=422)
    assert "Give the month as YYYY-MM." in bad
    get(manager, f"/work/statements?tenant={books.stranger.slug}", status=404)


def test_another_agencys_statement_is_404(books: Books) -> None:
    world, ledger = books.world, books.ledger
    ids = statement_ids(books)
    theirs = ids[world.agencies.ids[1]]
    manager = world.manager()
    for kind in ("pdf", "csv"):
        path = f"/work/{ledger.tenant.slug}/statements/{theirs}/export.{kind}"
        assert manager.client.get(path).status_code == 404
        # Under a tenant the agency does not serve, even its own id is 404.
        stray = f"/work/{books.stranger.slug}/statements/{ids[world.agency]}/export.{kind}"
        assert manager.client.get(stray).status_code == 404
    other = world.manager(world.agencies.ids[1])
    page = get(other, "/work/statements")
    assert f'id="statement-{ledger.tenant.slug}-{theirs}"' in page
    assert f'id="statement-{ledger.tenant.slug}-{ids[world.agency]}"' not in page
    path = f"/work/{ledger.tenant.slug}/statements/{ids[world.agency]}/export.pdf"
    assert other.client.get(path).status_code == 404


def test_a_void_invoice_takes_its_statements_with_it(books: Books) -> None:
    world, ledger = books.world, books.ledger
    own = statement_ids(books)[world.agency]
    ledger.sql("UPDATE {s}.invoices SET status = 'void', void_reason = 'wrong month'")
    manager = world.manager()
    assert f'-{own}"' not in get(manager, "/work/statements")
    path = f"/work/{ledger.tenant.slug}/statements/{own}/export.csv"
    assert manager.client.get(path).status_code == 404


def test_statements_in_chinese(books: Books) -> None:
    world = books.world
    page = get(world.manager(), "/work/statements", ZH)
    assert "<h1>" in page
    for english in ("Owed to your agency", "All tenants", "Money recovered", "Draft"):
        assert english not in page
    assert "草稿" in page


# --- who may open them ------------------------------------------------------------------------


def test_collectors_are_refused_and_anonymous_sent_to_sign_in(books: Books) -> None:
    world, ledger = books.world, books.ledger
    own = statement_ids(books)[world.agency]
    collector = world.collector_caller()
    for path in (
        "/work/placements",
        f"/work/placements?tenant={world.tenant.slug}",
        "/work/statements",
        f"/work/{ledger.tenant.slug}/statements/{own}/export.pdf",
        f"/work/{ledger.tenant.slug}/statements/{own}/export.csv",
    ):
        assert collector.client.get(path).status_code == 403, path
        response = anonymous(world.app).client.get(path)
        assert response.status_code == 302, path
        assert "/login" in response.headers["Location"]


def test_without_a_filter_the_first_served_tenant_shows_in_chinese(books: Books) -> None:
    world, ledger = books.world, books.ledger
    first = min(world.tenant.slug, ledger.tenant.slug)
    page = get(world.manager(), "/work/placements", ZH)
    heading = section(page, 'id="placements-head"', "</h2>")
    assert first.replace("alloc-", "Alloc ") in heading
    assert "Active" not in heading
    for english in ("Balance at placement", "Recalled this month", "Ending within"):
        assert english not in page
