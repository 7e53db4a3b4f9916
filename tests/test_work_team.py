"""The agency manager's team today: each collector's day (attempts through the gate,
promises, money credited by billing's rule) summed over the tenants the agency serves,
and the agency's book per tenant and bucket; only the manager's own agency, never a
collector."""

from __future__ import annotations

import datetime as dt
import re
import secrets
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from rq.job import Job
from rq.serializers import JSONSerializer
from sqlalchemy import text

from recova.billing.services import create_agency_contract
from recova.platform.agencies.models import Agency
from recova.platform.allocation.models import Assignment, CollectorProfile, Placement
from recova.platform.auth.models import Role
from recova.platform.auth.services import create_user
from recova.platform.cases.models import Case
from recova.platform.compliance.gate import Actor
from recova.platform.kernel.db import scoped_schema
from recova.platform.kernel.extension import platform
from recova.platform.kernel.jobs import qualified_job_id
from recova.platform.reports.team import book_key, load_agency_book, refresh_agency_book
from recova.platform.work import promises
from recova.tenants.models import Tenant, tenant_today
from tests.compliance_support import Debt, Lender, lender_for, zone_where_it_is
from tests.support import PASSWORD, login

EN = {"Accept-Language": "en"}
ZH = {"Accept-Language": "zh-CN"}


@pytest.fixture
def cn(app, shared_lender_cn, rolled_back) -> Lender:  # type: ignore[no-untyped-def]
    return lender_for(app, "CN", shared_lender_cn, rolled_back)


@pytest.fixture
def us(app, shared_lender_us, rolled_back) -> Lender:  # type: ignore[no-untyped-def]
    return lender_for(app, "US", shared_lender_us, rolled_back)


def add_collector(lender: Lender, agency: int, name: str) -> int:
    """Another collector of agency ``agency`` (an index), with a profile; their id."""
    with platform(lender.app).db.session() as session:
        found = session.get(Agency, lender.agency_ids[agency])
        user = create_user(
            session,
            email=f"c-{secrets.token_hex(3)}@agency.test",
            full_name=name,
            password=PASSWORD,
            role=Role.COLLECTOR,
            agency=found,
        )
        session.add(
            CollectorProfile(
                user_id=user.id, languages=[], regions=[], max_cases=40, is_active=True
            )
        )
        session.commit()
        return user.id


def sql(lender: Lender, statement: str, **params: Any) -> list[Any]:
    """Run SQL in the lender's schema (named ``{s}``)."""
    with lender.scope() as session:
        result = session.execute(text(statement.replace("{s}", scoped_schema(session))), params)
        return list(result.all()) if result.returns_rows else []


def hand_over(lender: Lender, debt: Debt, collector_id: int, at: dt.datetime) -> None:
    """End the case's open assignment at ``at`` and give it to ``collector_id`` from then."""
    sql(
        lender,
        "UPDATE {s}.assignments SET ended_at = :at, end_reason = 'test'"
        " WHERE ended_at IS NULL AND placement_id IN"
        " (SELECT id FROM {s}.placements WHERE case_id = :c AND recalled_on IS NULL)",
        at=at,
        c=debt.case_id,
    )
    sql(
        lender,
        "INSERT INTO {s}.assignments (placement_id, collector_id, reason, assigned_at)"
        " SELECT id, :who, 'reassigned', :at FROM {s}.placements"
        " WHERE case_id = :c AND recalled_on IS NULL",
        who=collector_id,
        at=at,
        c=debt.case_id,
    )


def pay(
    lender: Lender, debt: Debt, amount: str, at: dt.datetime, *, reverses: int | None = None
) -> int:
    [(payment_id,)] = sql(
        lender,
        "INSERT INTO {s}.payments (external_id, account_id, kind, amount, currency, paid_at,"
        " paid_to, reverses_id) SELECT :ext, account_id, :kind, :amount, a.currency, :at,"
        " 'tenant', :rev FROM {s}.cases c JOIN {s}.accounts a ON a.id = c.account_id"
        " WHERE c.id = :c RETURNING id",
        ext=f"P-{secrets.token_hex(6)}",
        kind="reversal" if reverses else "payment",
        amount=Decimal(amount),
        at=at,
        rev=reverses,
        c=debt.case_id,
    )
    return int(payment_id)


def judged_promise(lender: Lender, debt: Debt, by: int, due: dt.date, status: str) -> None:
    sql(
        lender,
        "INSERT INTO {s}.promises (case_id, amount, currency, due_date, status, paid_amount,"
        " created_by, created_at, evaluated_at) VALUES (:c, 100, 'CNY', :due, :status, 0,"
        " :by, now() - interval '60 days', now())",
        c=debt.case_id,
        due=due,
        status=status,
        by=f"user:{by}",
    )


def promise_today(lender: Lender, debt: Debt, by: int, amount: str) -> None:
    with lender.scope() as session:
        case = session.get(Case, debt.case_id)
        assert case is not None
        today = tenant_today(lender.tenant().timezone)
        promises.create_promise(
            session,
            case=case,
            amount=Decimal(amount),
            due_date=today + dt.timedelta(days=5),
            actor=f"user:{by}",
            today=today,
        )


def place_with(
    lender: Lender, debt: Debt, agency_id: int, collector_id: int, currency: str
) -> None:
    """Place an unplaced debt of ``lender`` with another lender's agency and assign it."""
    with lender.scope() as session:
        placement = Placement(
            case_id=debt.case_id,
            agency_id=agency_id,
            started_on=dt.date(2026, 1, 1),
            ends_on=dt.date(2099, 1, 1),
            grace_days=0,
            balance_at_placement=Decimal("5000.00"),
            currency=currency,
        )
        session.add(placement)
        session.flush()  # the assignment names it
        session.add(
            Assignment(
                placement_id=placement.id,
                collector_id=collector_id,
                reason="override",
                assigned_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1),
            )
        )


def contract(app: Any, tenant_id: int, agency_id: int) -> None:
    with platform(app).db.session() as session:
        tenant = session.get(Tenant, tenant_id)
        agency = session.get(Agency, agency_id)
        assert tenant is not None
        assert agency is not None
        create_agency_contract(session, tenant=tenant, agency=agency, starts_on=dt.date(2020, 1, 1))
        session.commit()


def cell(page: str, row_id: str, figure: str) -> str:
    """The text of one figure's cell in a row (tags stripped, spaces squeezed)."""
    row = re.search(rf'<tr id="{row_id}"[^>]*>(.*?)</tr>', page, re.S)
    assert row is not None, row_id
    found = re.search(rf'data-figure="{figure}">(.*?)</td>', row.group(1), re.S)
    assert found is not None, (row_id, figure)
    return " ".join(re.sub(r"<[^>]+>", " ", found.group(1)).split())


@dataclass
class Day:
    c0: int
    c1: int
    blocked_rule_c0: str
    blocked_rule_c1: str


@pytest.fixture
def day(cn: Lender, us: Lender) -> Day:
    """Agency 0 of the CN lender, with collectors c0 (the lender's) and c1, has one day:

    - c0: debt 1 called twice (no answer, then the debtor in person) with a promise of
      300.00; debt 2 called at the debtor's 3 a.m. (blocked); two promises judged in the
      last 30 days (one kept, one broken) and one kept long before (outside the window);
      100.50 paid on debt 1, 40.00 on debt 2 less a 15.25 reversal, 5.00 on debt 3
      after it came back to c0; 50.00 USD on a US debt c0 holds for the same agency.
    - c1: debt 5 called (no answer); a call to debt 3's relative (blocked: the debtor
      is reachable); 10.00 paid on debt 3 while c1 held it.
    - agency 1: debt 4, 999.00 paid, and nothing of it on agency 0's page.
    """
    c0 = cn.collector_ids[0]
    c1 = add_collector(cn, 0, "Collector Second")
    now = dt.datetime.now(dt.UTC)
    callable_now = zone_where_it_is(12)
    debt1 = cn.debt(timezone=callable_now)
    debt2 = cn.debt(timezone=zone_where_it_is(3))
    debt3 = cn.debt(timezone=callable_now)
    debt4 = cn.debt(timezone=callable_now, placed_with=1)
    debt5 = cn.debt(timezone=callable_now)
    hand_over(cn, debt5, c1, now - dt.timedelta(minutes=2))
    hand_over(cn, debt3, c1, now - dt.timedelta(minutes=2))
    agency = cn.agency_ids[0]
    as_c0 = Actor(kind="agency", agency_id=agency, user_id=c0, collector=True)
    as_c1 = Actor(kind="agency", agency_id=agency, user_id=c1, collector=True)
    cn.attempt(debt1, now, actor=as_c0, result="no_answer")
    cn.attempt(debt1, now + dt.timedelta(seconds=1), actor=as_c0, result="connected")
    blocked0 = cn.attempt(debt2, now, actor=as_c0)
    cn.attempt(debt5, now, actor=as_c1, result="no_answer")
    blocked1 = cn.attempt(debt3, now, actor=as_c1, contact_id=debt3.third_parties[0])
    assert blocked0.status == "blocked"
    assert blocked1.status == "blocked"
    assert blocked0.blocked_rule != blocked1.blocked_rule
    promise_today(cn, debt1, c0, "300.00")
    today = tenant_today("Asia/Shanghai")
    judged_promise(cn, debt2, c0, today - dt.timedelta(days=5), "kept")
    judged_promise(cn, debt2, c0, today - dt.timedelta(days=10), "broken")
    judged_promise(cn, debt2, c0, today - dt.timedelta(days=40), "kept")
    judged_promise(cn, debt5, c1, today - dt.timedelta(days=3), "partly_kept")
    pay(cn, debt1, "100.50", now + dt.timedelta(seconds=1))
    original = pay(cn, debt2, "40.00", now + dt.timedelta(seconds=1))
    pay(cn, debt2, "15.25", now + dt.timedelta(seconds=2), reverses=original)
    pay(cn, debt3, "10.00", now + dt.timedelta(seconds=1))
    hand_over(cn, debt3, c0, now + dt.timedelta(seconds=2))
    pay(cn, debt3, "5.00", now + dt.timedelta(seconds=3))
    pay(cn, debt4, "999.00", now + dt.timedelta(seconds=1))
    # The US lender contracts agency 0 too; c0 holds one of its debts.
    contract(cn.app, us.id, agency)
    debt_us = us.debt(placed_with=None)
    place_with(us, debt_us, agency, c0, "USD")
    pay(us, debt_us, "50.00", now + dt.timedelta(seconds=1))
    return Day(c0, c1, blocked0.blocked_rule or "", blocked1.blocked_rule or "")


def test_each_collectors_day_as_the_data_says(cn: Lender, us: Lender, day: Day) -> None:
    manager = login(cn.app, cn.manager_emails[0])
    response = manager.client.get("/work/team", headers=EN)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    c0, c1 = f"collector-{day.c0}", f"collector-{day.c1}"
    # Debts 1, 2, 3 with c0 in CN and one in the US; debt 5 with c1.
    assert cell(page, c0, "assigned").startswith("4 of ")
    assert cell(page, c1, "assigned") == "1 of 40"
    assert cell(page, c0, "worked") == "1"  # a blocked call works nothing
    assert cell(page, c1, "worked") == "1"
    assert cell(page, c0, "attempts") == "2"
    assert cell(page, c1, "attempts") == "1"
    assert cell(page, c0, "rpc") == "1 50.0%"
    assert cell(page, c1, "rpc") == "0 0.0%"
    assert cell(page, c0, "promises") == "1 CN¥300.00"
    assert cell(page, c1, "promises") == "0 —"
    assert cell(page, c0, "kept") == "50.0% 1 of 2"
    assert cell(page, c1, "kept") == "0.0% 0 of 1"  # partly kept is not kept
    # 100.50 + 40.00 - 15.25 + 5.00 in CNY; the US debt's dollars apart, never added.
    assert cell(page, c0, "collected") == "CN¥130.25 $50.00"
    assert cell(page, c1, "collected") == "CN¥10.00"
    assert cell(page, "team-total", "collected") == "CN¥140.25 $50.00"
    assert cell(page, c0, "blocked").startswith("1 ")
    assert f'data-rule="{day.blocked_rule_c0}"' in page
    assert f'data-rule="{day.blocked_rule_c1}"' in page
    assert "Outside the contact window" in cell(page, c0, "blocked")
    assert cell(page, "team-total", "attempts") == "3"
    assert cell(page, "team-total", "assigned") == "5"
    # Agency 1's collector and money are not here.
    assert f"collector-{cn.collector_ids[1]}" not in page
    assert "999.00" not in page
    # Both tenants, each on its own day.
    assert f'data-tenant="{cn.slug}"' in page
    assert f'data-tenant="{us.slug}"' in page


def test_the_book_per_tenant_and_bucket_from_its_snapshot(cn: Lender, us: Lender, day: Day) -> None:
    objects = platform(cn.app)
    agency = cn.agency_ids[0]
    for lender in (cn, us):
        objects.redis.delete(book_key(objects, tenant_id=lender.id, agency_id=agency))
    manager = login(cn.app, cn.manager_emails[0])
    first = manager.client.get("/work/team", headers=EN).get_data(as_text=True)
    # No snapshot yet: each tenant's panel says so, htmx polls, and a refresh is queued.
    assert f'id="book-{cn.slug}-computing"' in first
    assert 'hx-get="/work/team/book"' in first
    queued = Job.fetch(
        qualified_job_id(objects.settings.queue_prefix, f"team-book-{cn.id}-{agency}"),
        connection=objects.redis,
        serializer=JSONSerializer,
    )
    assert queued.kwargs == {"tenant_id": cn.id, "agency_id": agency}
    try:
        for lender in (cn, us):
            assert refresh_agency_book(objects, tenant_id=lender.id, agency_id=agency) is not None
        panel = manager.client.get("/work/team/book", headers=EN).get_data(as_text=True)
        assert "hx-get" not in panel  # every tenant's figures are there: the polling stops
        book = re.search(rf'<table id="book-{cn.slug}".*?</table>', panel, re.S)
        assert book is not None
        table = book.group(0)
        # Four active placements of 5,000.00 each; 140.25 credited to them today.
        total = re.search(r'<tr class="total" data-total="CNY">(.*?)</tr>', table, re.S)
        assert total is not None
        figures = " ".join(re.sub(r"<[^>]+>", " ", total.group(1)).split())
        assert figures == "All buckets 4 CN¥20,000.00 CN¥20,000.00 CN¥140.25 0.70%"
        assert "No bucket yet" in table  # cases never segmented by an allocation run
        us_book = re.search(rf'<table id="book-{us.slug}".*?</table>', panel, re.S)
        assert us_book is not None
        assert "$50.00" in us_book.group(0)
        assert "CN¥" not in us_book.group(0)
        # The snapshot keeps every digit: what the page shows is what was computed.
        stored = load_agency_book(objects, tenant_id=cn.id, agency_id=agency)
        assert stored is not None
        assert [line.recovered for line in stored.totals] == [Decimal("140.25")]
        # Another agency's manager reads only their own agency's snapshot.
        other = login(cn.app, cn.manager_emails[1])
        theirs = other.client.get("/work/team/book", headers=EN).get_data(as_text=True)
        assert "140.25" not in theirs
    finally:
        for lender in (cn, us):
            objects.redis.delete(book_key(objects, tenant_id=lender.id, agency_id=agency))


def test_another_agencys_manager_sees_none_of_it(cn: Lender, day: Day) -> None:
    other = login(cn.app, cn.manager_emails[1])
    page = other.client.get("/work/team", headers=EN).get_data(as_text=True)
    assert f"collector-{day.c0}" not in page
    assert f"collector-{day.c1}" not in page
    assert f"collector-{cn.collector_ids[1]}" in page
    assert cell(page, f"collector-{cn.collector_ids[1]}", "collected") == "CN¥999.00"
    assert "130.25" not in page
    assert "140.25" not in page


def test_a_collector_is_refused_the_page(cn: Lender) -> None:
    collector = login(cn.app, cn.collector_emails[0])
    assert collector.client.get("/work/team").status_code == 403
    assert collector.client.get("/work/assignment").status_code == 403


def test_a_tenant_without_a_contract_is_not_on_the_page(cn: Lender, us: Lender) -> None:
    manager = login(cn.app, cn.manager_emails[0])
    page = manager.client.get("/work/team", headers=EN).get_data(as_text=True)
    assert f'data-tenant="{cn.slug}"' in page
    assert us.slug not in page


def test_the_page_in_chinese(cn: Lender, day: Day) -> None:
    manager = login(cn.app, cn.manager_emails[0])
    response = manager.client.get("/work/team", headers=ZH)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "今日团队" in page
    assert "催收员" in page
    assert "回收率" in page
    assert "Team today" not in page
    assert "¥130.25" in page
