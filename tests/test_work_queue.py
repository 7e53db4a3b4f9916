"""My queue and Next case: a collector's assigned cases across the agency's tenants, most
urgent first, each with its tenant, the debtor's masked name and local time, and whether
a call is allowed now; a manager's view by collector; Next case and the wrap-up guard."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from babel.dates import format_datetime
from sqlalchemy import select

from recova.billing.services import create_agency_contract
from recova.platform.agencies.models import Agency
from recova.platform.agencies.services import create_agency
from recova.platform.allocation.models import Assignment, CaseScore, Placement
from recova.platform.auth.models import Role, User
from recova.platform.auth.services import create_user
from recova.platform.cases.display import mask_name
from recova.platform.cases.models import Case, Debtor
from recova.platform.compliance.localtime import window_opens
from recova.platform.kernel.extension import platform
from recova.platform.work import promises, queue
from recova.tenants.models import Tenant, tenant_today
from recova.tenants.scope import tenant_scope
from tests.compliance_support import Debt, Lender, lender_for, zone_where_it_is
from tests.support import PASSWORD, Caller, World, login

ROW = re.compile(r'data-testid="queue-row" data-case="(\d+)" data-tenant="([^"]+)"')
EN = {"Accept-Language": "en"}
ZH = {"Accept-Language": "zh-CN"}
SHANGHAI = "Asia/Shanghai"


@dataclass
class Book:
    """Agency A of the world serves its tenant a and the lender's tenant (contract added);
    tenant b has no contract with A. Cases assigned to A's collector, by role in the test."""

    world: World
    lender: Lender
    collector_id: int
    colleague_id: int
    cases: dict[str, tuple[str, int]]  # name -> (tenant slug, case id)
    names: dict[str, str]  # name -> the debtor's stored full name
    night_zone: str

    def key(self, name: str) -> tuple[str, int]:
        return self.cases[name]


def user_id(world: World, email: str) -> int:
    with platform(world.app).db.session() as session:
        found = session.scalar(select(User.id).where(User.email == email))
        assert found is not None
        return found


def set_score(lender_or_slug: str, world: World, case_id: int, score: str) -> None:
    with tenant_scope(lender_or_slug, db=platform(world.app).db) as session:
        session.add(
            CaseScore(
                case_id=case_id,
                score=Decimal(score),
                components={},
                scorer="test",
                computed_on=dt.date.today(),
            )
        )


def place(world: World, slug: str, case_id: int, *, agency_id: int, collector_id: int) -> None:
    """Place one of the world's cases with an agency and assign it to a collector."""
    with tenant_scope(slug, db=platform(world.app).db) as session:
        case = session.get(Case, case_id)
        assert case is not None
        placement = Placement(
            case_id=case_id,
            agency_id=agency_id,
            started_on=dt.date(2026, 1, 1),
            ends_on=dt.date(2099, 1, 1),
            grace_days=0,
            balance_at_placement=Decimal("1.00"),
            currency="CNY",
        )
        session.add(placement)
        session.flush()  # the assignment names the placement
        session.add(
            Assignment(placement_id=placement.id, collector_id=collector_id, reason="override")
        )
        debtor = session.get(Debtor, case.debtor_id)
        assert debtor is not None
        debtor.timezone = zone_where_it_is(12)


def debtor_name(world: World, slug: str, case_id: int) -> str:
    with tenant_scope(slug, db=platform(world.app).db) as session:
        case = session.get(Case, case_id)
        assert case is not None
        return session.get(Debtor, case.debtor_id).full_name  # type: ignore[union-attr]


@pytest.fixture
def book(app: Any, world: World, shared_lender_cn: Lender, rolled_back: Any) -> Book:
    lender = lender_for(app, "CN", shared_lender_cn, rolled_back)
    db = platform(app).db
    with db.session() as session:
        tenant = session.get(Tenant, lender.id)
        agency = session.get(Agency, world.agency_a_id)
        assert tenant is not None
        assert agency is not None
        create_agency_contract(
            session, tenant=tenant, agency=agency, starts_on=dt.date.today() - dt.timedelta(days=3)
        )
        session.commit()
    collector_id = user_id(world, world.collector_email)
    colleague_id = user_id(world, world.colleague_email)
    # Index 2 of the lender's lists: agency A's collector; index 3: their colleague.
    lender.agency_ids += [world.agency_a_id, world.agency_a_id]
    lender.collector_ids += [collector_id, colleague_id]
    day, night = zone_where_it_is(12), zone_where_it_is(3)
    debts: dict[str, Debt] = {
        "promise": lender.debt(timezone=day, placed_with=2),
        "callback": lender.debt(timezone=day, placed_with=2),
        "high": lender.debt(timezone=day, placed_with=2),
        "low": lender.debt(timezone=day, placed_with=2),
        "night": lender.debt(timezone=night, placed_with=2),
        "dnc": lender.debt(timezone=day, placed_with=2),
        "colleague": lender.debt(timezone=night, placed_with=3),
        "other_agency": lender.debt(timezone=day, placed_with=0),
    }
    for name, score in (("high", "900"), ("low", "100"), ("night", "999"), ("dnc", "950")):
        set_score(lender.slug, world, debts[name].case_id, score)
    lender.set_debtor(debts["dnc"], do_not_contact=True)
    with lender.scope() as session:
        case = session.get(Case, debts["promise"].case_id)
        assert case is not None
        today = tenant_today(SHANGHAI)
        promises.create_promise(
            session, case=case, amount=Decimal(100), due_date=today, actor="job:test", today=today
        )
        callback = session.scalar(
            select(Assignment)
            .join(Placement, Placement.id == Assignment.placement_id)
            .where(
                Placement.case_id == debts["callback"].case_id,
                Placement.recalled_on.is_(None),
                Assignment.ended_at.is_(None),
            )
        )
        assert callback is not None
        callback.next_action_at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    # Tenant a (served): one case of the collector's; tenant b (no contract): one too.
    place(world, world.a.slug, world.a.case_ids[0], agency_id=world.agency_a_id,
          collector_id=collector_id)  # fmt: skip
    set_score(world.a.slug, world, world.a.case_ids[0], "500")
    place(world, world.b.slug, world.b.case_ids[0], agency_id=world.agency_a_id,
          collector_id=collector_id)  # fmt: skip
    cases = {name: (lender.slug, debt.case_id) for name, debt in debts.items()}
    cases["tenant_a"] = (world.a.slug, world.a.case_ids[0])
    cases["no_contract"] = (world.b.slug, world.b.case_ids[0])
    names = {name: debtor_name(world, slug, case_id) for name, (slug, case_id) in cases.items()}
    return Book(world, lender, collector_id, colleague_id, cases, names, night)


def rows(page: str) -> list[tuple[str, int]]:
    return [(slug, int(case_id)) for case_id, slug in ROW.findall(page)]


def row_html(page: str, key: tuple[str, int]) -> str:
    slug, case_id = key
    found = re.search(rf'<tr id="row-{re.escape(slug)}-{case_id}".*?</tr>', page, re.S)
    assert found is not None, key
    return found.group(0)


def queue_page(caller: Caller, query: str = "", headers: dict[str, str] = EN) -> Any:
    return caller.client.get(f"/work/{query}", headers=headers)


def case_url(key: tuple[str, int]) -> str:
    return f"/work/{key[0]}/cases/{key[1]}"


def test_a_collector_sees_their_own_cases_in_priority_order(book: Book) -> None:
    collector = login(book.world.app, book.world.collector_email)
    response = queue_page(collector)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    # Promise due today, callback due, callable by score (900, 500, 100), then the blocked:
    # the one with a next time (night) before the one only someone's action lifts (dnc).
    assert rows(page) == [
        book.key(name)
        for name in ("promise", "callback", "high", "tenant_a", "low", "night", "dnc")
    ]
    # Not a colleague's, not another agency's, not a tenant without a contract.
    for name in ("colleague", "other_agency", "no_contract"):
        assert book.key(name) not in rows(page)
    assert "Assigned: 7" in page
    assert "Callable now: 5" in page
    assert "Promises due today: 1" in page
    assert "Callbacks due: 1" in page


def test_rows_name_their_tenant_and_mask_the_debtor(book: Book) -> None:
    collector = login(book.world.app, book.world.collector_email)
    page = queue_page(collector).get_data(as_text=True)
    with platform(book.world.app).db.session() as session:
        tenant_names = {t.slug: t.name for t in session.scalars(select(Tenant))}
    for name in ("high", "tenant_a"):
        html = row_html(page, book.key(name))
        assert tenant_names[book.key(name)[0]] in html
        assert mask_name(book.names[name]) in html
        assert book.names[name] not in page
    high = row_html(page, book.key("high"))
    assert "CN¥5,000.00" in high or "¥5,000.00" in high  # the account's balance now
    assert 'data-rule="' not in high
    assert "Callable" in high
    assert "Promise due today" in row_html(page, book.key("promise"))
    assert "Callback due" in row_html(page, book.key("callback"))
    # The debtor's clock: noon in their zone.
    assert re.search(r">12:\d\d<", high)
    assert f'href="{case_url(book.key("high"))}"' in high


def test_the_verdict_names_the_rule_and_the_next_allowed_time(book: Book) -> None:
    collector = login(book.world.app, book.world.collector_email)
    page = queue_page(collector).get_data(as_text=True)
    night = row_html(page, book.key("night"))
    assert 'data-rule="contact_window"' in night
    assert "Outside calling hours" in night
    opens = window_opens(dt.datetime.now(dt.UTC), book.night_zone, dt.time(8), dt.time(22))
    shown = format_datetime(opens, "short", tzinfo=zoneinfo.ZoneInfo(SHANGHAI), locale="en")
    assert shown in night  # both tenants keep Shanghai time: the page's zone
    assert "08:00 debtor" in night
    dnc = row_html(page, book.key("dnc"))
    assert 'data-rule="do_not_contact"' in dnc
    assert "Do not contact" in dnc
    assert "from " not in dnc  # nothing lifts it by itself
    assert re.search(r">03:\d\d<", night)


def test_filters_by_tenant_and_callable_now(book: Book) -> None:
    collector = login(book.world.app, book.world.collector_email)
    only_a = queue_page(collector, f"?tenant={book.world.a.slug}").get_data(as_text=True)
    assert rows(only_a) == [book.key("tenant_a")]
    assert "Assigned: 1" in only_a
    callable_now = queue_page(collector, "?callable_only=y").get_data(as_text=True)
    assert rows(callable_now) == [
        book.key(name) for name in ("promise", "callback", "high", "tenant_a", "low")
    ]
    assert "Assigned: 7" in callable_now  # the counts are the whole queue's
    # A tenant the agency does not serve, and another collector's queue: 404.
    assert queue_page(collector, f"?tenant={book.world.b.slug}").status_code == 404
    assert queue_page(collector, f"?collector={book.colleague_id}").status_code == 404


def test_a_manager_sees_the_agency_by_collector(book: Book) -> None:
    manager = login(book.world.app, book.world.manager_email)
    page = queue_page(manager).get_data(as_text=True)
    shown = rows(page)
    assert book.key("colleague") in shown
    assert book.key("high") in shown
    assert book.key("other_agency") not in shown
    assert book.key("no_contract") not in shown
    assert "Colleague A" in row_html(page, book.key("colleague"))
    assert "Collector A" in row_html(page, book.key("high"))
    only = queue_page(manager, f"?collector={book.colleague_id}").get_data(as_text=True)
    assert rows(only) == [book.key("colleague")]
    foreign = book.lender.collector_ids[0]  # the lender's first agency's collector
    assert queue_page(manager, f"?collector={foreign}").status_code == 404
    assert queue_page(manager, "?collector=nobody").status_code == 404
    outsider = login(book.world.app, book.world.outsider_manager_email)
    assert book.key("high") not in rows(queue_page(outsider).get_data(as_text=True))


def test_a_large_agency_s_manager_chooses_a_collector(
    book: Book, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queue, "AGENCY_QUEUE_LIMIT", 7)  # A holds 8 assigned cases here
    manager = login(book.world.app, book.world.manager_email)
    page = queue_page(manager).get_data(as_text=True)
    assert 'id="choose-collector"' in page
    assert "more than 7 assigned cases" in page
    assert rows(page) == []
    chosen = queue_page(manager, f"?collector={book.colleague_id}").get_data(as_text=True)
    assert rows(chosen) == [book.key("colleague")]
    nothing = manager.client.post("/work/next", headers={**manager.headers, **EN})
    assert nothing.status_code == 200
    assert 'id="choose-collector"' in nothing.get_data(as_text=True)
    mine = manager.client.post(
        "/work/next", data={"next-collector": str(book.collector_id)}, headers=manager.headers
    )
    assert mine.headers["Location"].endswith(case_url(book.key("promise")))
    monkeypatch.setattr(queue, "AGENCY_QUEUE_LIMIT", 8)
    assert len(rows(queue_page(manager).get_data(as_text=True))) == 8  # all fit in one read


def test_next_case_opens_the_most_urgent_callable_case(book: Book) -> None:
    collector = login(book.world.app, book.world.collector_email)
    response = collector.client.post("/work/next", headers=collector.headers)
    assert response.status_code == 302
    assert response.headers["Location"].endswith(case_url(book.key("promise")))
    # The tenant filter rides along; a link (GET) chooses the same way.
    in_a = collector.client.post(
        "/work/next", data={"next-tenant": book.world.a.slug}, headers=collector.headers
    )
    assert in_a.headers["Location"].endswith(case_url(book.key("tenant_a")))
    linked = collector.client.get("/work/next")
    assert linked.headers["Location"].endswith(case_url(book.key("promise")))
    # A POST without the CSRF token is refused.
    assert collector.client.post("/work/next").status_code == 400


def test_next_case_moves_on_from_the_case_being_left(book: Book) -> None:
    collector = login(book.world.app, book.world.collector_email)
    promise, callback = book.key("promise"), book.key("callback")
    leaving = f"{promise[0]}:{promise[1]}"
    # From the screen of the top case (button or outcome), the next one is another case.
    moved = collector.client.post(
        "/work/next", data={"next-leaving": leaving}, headers=collector.headers
    )
    assert moved.headers["Location"].endswith(case_url(callback))
    linked = collector.client.get("/work/next", query_string={"leaving": leaving})
    assert linked.headers["Location"].endswith(case_url(callback))
    # The case left is opened again only when nothing else may be called now.
    only_in_a = book.key("tenant_a")
    alone = collector.client.get(
        "/work/next",
        query_string={"leaving": f"{only_in_a[0]}:{only_in_a[1]}", "tenant": only_in_a[0]},
    )
    assert alone.headers["Location"].endswith(case_url(only_in_a))
    # A malformed name is ignored.
    odd = collector.client.get("/work/next", query_string={"leaving": "x:y"})
    assert odd.headers["Location"].endswith(case_url(promise))


def test_next_case_refuses_while_a_wrap_up_is_owed(book: Book) -> None:
    collector = login(book.world.app, book.world.collector_email)
    owed = book.key("low")
    with collector.client.session_transaction() as session:
        session["wrap_up_due"] = {"tenant": owed[0], "case_id": owed[1], "attempt_id": 1}
    response = collector.client.post("/work/next", headers=collector.headers)
    assert response.status_code == 302
    assert response.headers["Location"].endswith(case_url(owed))
    page = queue_page(collector).get_data(as_text=True)
    assert f"Finish the wrap-up of case {owed[1]} first" in page


def test_next_case_with_nothing_callable_says_when(book: Book) -> None:
    colleague = login(book.world.app, book.world.colleague_email)
    response = colleague.client.post("/work/next", headers={**colleague.headers, **EN})
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "No case can be called now." in page
    opens = window_opens(dt.datetime.now(dt.UTC), book.night_zone, dt.time(8), dt.time(22))
    shown = format_datetime(opens, "short", tzinfo=zoneinfo.ZoneInfo(SHANGHAI), locale="en")
    assert f"The next one can be called at {shown}" in page
    assert rows(page) == [book.key("colleague")]


def test_the_queue_in_chinese(book: Book) -> None:
    collector = login(book.world.app, book.world.collector_email)
    page = queue_page(collector, headers=ZH).get_data(as_text=True)
    assert "我的队列" in page
    assert "下一案件" in page
    assert "可拨打" in page
    assert "不在可联系时段" in page
    assert "今日到期承诺还款" in page
    assert "Outside calling hours" not in page
    assert "Next case" not in page
    colleague = login(book.world.app, book.world.colleague_email)
    nothing = colleague.client.post("/work/next", headers={**colleague.headers, **ZH})
    assert "当前没有可拨打的案件" in nothing.get_data(as_text=True)


def test_an_agency_without_tenants_and_other_roles(book: Book) -> None:
    with platform(book.world.app).db.session() as session:
        agency = create_agency(session, slug="queue-idle", name="Idle agency")
        create_user(
            session,
            email="idle@queue.test",
            full_name="Idle",
            password=PASSWORD,
            role=Role.COLLECTOR,
            agency=agency,
        )
        session.commit()
    idle = login(book.world.app, "idle@queue.test")
    page = queue_page(idle)
    assert page.status_code == 200
    assert "No case is assigned to you now." in page.get_data(as_text=True)
    nothing = idle.client.post("/work/next", headers={**idle.headers, **EN})
    assert nothing.status_code == 200
    text = nothing.get_data(as_text=True)
    assert "No case can be called now." in text
    assert "The next one can be called" not in text
    admin = login(book.world.app, book.world.a.admin_email)
    assert admin.client.get("/work/").status_code == 403
    assert book.world.app.test_client().get("/work/").status_code == 302  # to sign in
