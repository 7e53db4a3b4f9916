"""The portal's agencies: every scorecard figure is what the book holds, month by month, an
idle agency shows zeros, and only the tenant's own admins and analysts may open the pages
of agencies it contracts with."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from flask import Flask

from recova.platform.kernel.extension import platform
from recova.platform.reports.agencies import Scorecard, agency_placements, agency_scorecards
from recova.platform.reports.overview import recoveries_by_agency
from recova.platform.web.portal import agencies as agencies_page
from recova.tenants.scope import tenant_scope
from tests.allocation_support import make_agencies
from tests.billing_support import Ledger
from tests.support import World, anonymous, login

D = Decimal
TODAY = dt.date(2026, 5, 20)
MAY, APRIL = dt.date(2026, 5, 1), dt.date(2026, 4, 1)
ZONE = "Asia/Shanghai"


def on(month: int, day: int, hour: int = 4) -> dt.datetime:
    """Noon in Shanghai (04:00 UTC) on that day of 2026."""
    return dt.datetime(2026, month, day, hour, tzinfo=dt.UTC)


class Book:
    """Three contracted agencies (the third idle) and one the tenant never contracted."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.ledger = ledger = Ledger(app, agencies=3, cases=10)
        self.slug = ledger.tenant.slug
        self.admin_email = ledger.tenant.admin_email
        self.c = c = dict(enumerate(ledger.case_ids, start=1))
        self.a0, self.a1, self.idle = (ledger.agency(n) for n in range(3))
        self.stranger = make_agencies(app, 1, collectors=0).ids[0]
        # Placements of 1,000.00 each.
        ledger.place(c[1], self.a0, dt.date(2026, 3, 5), days=60, grace_days=10)  # to May 4th
        ledger.place(c[3], self.a0, dt.date(2026, 4, 10), days=60)
        ledger.place(c[5], self.a0, dt.date(2026, 5, 3), days=60)
        self.recalled = ledger.place(
            c[6], self.a0, dt.date(2026, 5, 8), days=60, recalled_on=dt.date(2026, 5, 15)
        )
        ledger.place(c[2], self.a1, dt.date(2026, 3, 20), days=60)  # to May 19th
        ledger.place(c[7], self.a1, dt.date(2026, 2, 1), days=30, grace_days=10)  # to Mar 13
        # Payments: only the ledger's attribution says whose they are.
        ledger.pay(c[1], "100.00", on(3, 10))
        april = ledger.pay(c[1], "200.00", on(4, 15))
        ledger.reverse(april, "50.00", on(5, 2))  # agency 0's, counted in May
        ledger.pay(c[1], "25.00", on(5, 12))  # after its end, in its grace period
        ledger.pay(c[3], "400.00", on(5, 18))
        ledger.pay(c[6], "60.00", on(5, 20))  # after its recall, in grace
        ledger.pay(c[3], "10.00", dt.datetime(2026, 5, 31, 15, 30, tzinfo=dt.UTC))  # 23:30
        ledger.pay(c[3], "5.00", dt.datetime(2026, 5, 31, 16, 30, tzinfo=dt.UTC))  # June
        ledger.pay(c[2], "300.00", on(5, 10))
        ledger.pay(c[4], "70.00", on(5, 5))  # never placed: the tenant's own
        # Contact attempts.
        for case, agency, status, result, third, at, rule in (
            (1, self.a0, "completed", "connected", False, on(5, 2), None),
            (3, self.a0, "completed", "connected", False, on(5, 6), None),
            (3, self.a0, "completed", "connected", True, on(5, 7), None),
            (5, self.a0, "completed", "no_answer", False, on(5, 8), None),
            (5, self.a0, "pending", None, False, on(5, 9), None),
            (5, self.a0, "blocked", None, False, on(5, 9), "cn.quiet_hours"),
            (6, self.a0, "blocked", None, False, on(5, 10), "cn.quiet_hours"),
            (6, self.a0, "blocked", None, False, on(5, 11), "flag.dispute"),
            (3, self.a0, "completed", "connected", False, on(4, 20), None),  # April
            (3, None, "completed", "connected", False, on(5, 12), None),  # tenant staff
            (2, self.a1, "completed", "refused", False, on(5, 12), None),
        ):
            ledger.sql(
                "INSERT INTO {s}.contact_attempts (case_id, debtor_id, third_party, channel,"
                " status, attempted_at, actor_kind, agency_id, pack_version, local_timezone,"
                " blocked_rule, result, completed_at)"
                " SELECT id, debtor_id, :third, 'call_out', :status, :at,"
                " CASE WHEN CAST(:agency AS int) IS NULL THEN 'tenant' ELSE 'agency' END,"
                " :agency, 'cn-2025', :zone, :rule, :result,"
                " :completed"
                " FROM {s}.cases WHERE id = :case",
                case=c[case],
                agency=agency,
                status=status,
                result=result,
                third=third,
                at=at,
                rule=rule,
                zone=ZONE,
                completed=at if status == "completed" else None,
            )
        # Promises: made on (created), judged on (evaluated).
        for case, made, status, judged in (
            (3, on(5, 1), "kept", on(5, 12)),
            (1, on(4, 20), "broken", on(5, 3)),  # made while agency 0 held it
            (5, on(5, 4), "partly_kept", on(5, 15)),
            (2, on(5, 2), "kept", on(5, 10)),
            (4, on(5, 1), "kept", on(5, 10)),  # never placed
            (3, on(5, 5), "pending", None),
            (1, on(5, 10), "broken", on(5, 18)),  # made in grace: nobody held the case
            (3, on(4, 12), "kept", on(4, 28)),  # April
        ):
            ledger.sql(
                "INSERT INTO {s}.promises (case_id, amount, currency, due_date, status,"
                " paid_amount, created_by, evaluated_at, created_at)"
                " VALUES (:case, 100, 'CNY', CAST(:made AS date) + 5, :status, 0, 'test',"
                " :judged, :made)",
                case=c[case],
                made=made,
                status=status,
                judged=judged,
            )
        for case, opened, status in (
            (5, on(5, 6), "open"),
            (2, on(4, 25), "rejected"),
            (4, on(5, 7), "open"),  # never placed
        ):
            ledger.sql(
                "INSERT INTO {s}.disputes (case_id, grounds, status, opened_by, created_at)"
                " VALUES (:case, 'amount_wrong', :status, 'test', :at)",
                case=c[case],
                status=status,
                at=opened,
            )

    def cards(self, month: dt.date) -> dict[int, Scorecard]:
        with tenant_scope(self.slug, db=platform(self.app).db) as session:
            return agency_scorecards(
                session, agency_ids=[self.a0, self.a1, self.idle], month=month, timezone=ZONE
            )


@pytest.fixture
def book(app: Flask, rolled_back: object) -> Book:
    return Book(app)


@pytest.fixture
def on_today(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agencies_page, "tenant_today", lambda zone: TODAY)


def test_placements_the_book_worked_and_recalls(book: Book) -> None:
    cards = book.cards(MAY)
    a0, a1 = cards[book.a0], cards[book.a1]

    assert (a0.placed_cases, a0.placed_balance) == (2, {"CNY": D("2000")})
    # Case 1 ended on May 4th, credited to the 14th; case 6 was recalled in May.
    assert (a0.worked_cases, a0.worked_balance) == (4, {"CNY": D("4000")})
    assert a0.recalls == 1
    assert (a1.placed_cases, a1.worked_cases, a1.worked_balance) == (0, 1, {"CNY": D("1000")})
    assert a1.placed_balance == {}
    assert a1.recalls == 0


def test_recovered_follows_the_billing_attribution(book: Book) -> None:
    cards = book.cards(MAY)

    # -50 (reversal of April's) + 25 (grace) + 400 + 60 (after the recall) + 10 (23:30 on
    # May 31st, Shanghai); the 5.00 at 00:30 on June 1st is June's.
    assert cards[book.a0].recovered == {"CNY": D("445.00")}
    assert cards[book.a1].recovered == {"CNY": D("300.00")}
    assert cards[book.a0].liquidation("CNY") == D("445.00") / D("4000")
    assert cards[book.a1].liquidation("CNY") == D("0.3")


def test_the_same_money_as_the_overviews_recoveries_by_agency(book: Book) -> None:
    with tenant_scope(book.slug, db=platform(book.app).db) as session:
        rows = recoveries_by_agency(session, today=dt.date(2026, 6, 10), timezone=ZONE)
    last_month = {row.agency_id: row.last_month for row in rows}
    cards = book.cards(MAY)

    assert last_month[book.a0] == cards[book.a0].recovered["CNY"]
    assert last_month[book.a1] == cards[book.a1].recovered["CNY"]


def test_right_party_contacts_promises_blocks_and_disputes(book: Book) -> None:
    a0, a1 = book.cards(MAY)[book.a0], book.cards(MAY)[book.a1]

    # Five attempts made (blocked ones never were); two reached the debtor in person.
    assert (a0.attempts, a0.right_party_contacts, a0.right_party_rate) == (5, 2, D("0.4"))
    assert (a1.attempts, a1.right_party_contacts, a1.right_party_rate) == (1, 0, D(0))
    # Kept, broken and partly kept were judged in May; only the full one is kept.
    assert (a0.promises_judged, a0.promises_kept) == (3, 1)
    assert a0.kept_rate == D(1) / D(3)
    assert (a1.promises_judged, a1.promises_kept, a1.kept_rate) == (1, 1, D(1))
    assert a0.blocked_by_rule == {"cn.quiet_hours": 2, "flag.dispute": 1}
    assert a0.blocked == 3
    assert a1.blocked_by_rule == {}
    assert (a0.disputes_opened, a1.disputes_opened) == (1, 0)


def test_another_month_has_its_own_figures(book: Book) -> None:
    a0, a1 = book.cards(APRIL)[book.a0], book.cards(APRIL)[book.a1]

    assert (a0.placed_cases, a0.worked_cases, a0.recalls) == (1, 2, 0)
    assert a0.recovered == {"CNY": D("200.00")}
    assert (a0.attempts, a0.right_party_contacts) == (1, 1)
    assert (a0.promises_judged, a0.promises_kept) == (1, 1)
    assert a0.blocked == 0
    assert (a1.worked_cases, a1.recovered, a1.disputes_opened) == (1, {}, 1)


def test_an_idle_agency_has_zeros_not_errors(book: Book) -> None:
    idle = book.cards(MAY)[book.idle]

    assert (idle.placed_cases, idle.worked_cases, idle.recalls) == (0, 0, 0)
    assert idle.recovered == {}
    assert idle.liquidation("CNY") is None
    assert (idle.attempts, idle.right_party_rate, idle.kept_rate) == (0, None, None)
    assert (idle.blocked, idle.disputes_opened) == (0, 0)


def test_placements_and_recalls_page_by_keyset(book: Book) -> None:
    with tenant_scope(book.slug, db=platform(book.app).db) as session:
        first = agency_placements(session, agency_id=book.a0, month=MAY, recalled=False, limit=1)
        day, _, ident = (first.next_after or "").partition(".")
        second = agency_placements(
            session,
            agency_id=book.a0,
            month=MAY,
            recalled=False,
            after=(dt.date.fromisoformat(day), int(ident)),
            limit=1,
        )
        recalls = agency_placements(session, agency_id=book.a0, month=MAY, recalled=True)

    assert [row.case_id for row in first.rows] == [book.c[6]]  # latest first
    assert [row.case_id for row in second.rows] == [book.c[5]]
    assert second.next_after is None
    assert [(row.id, row.recall_reason) for row in recalls.rows] == [(book.recalled, "tenant")]


def _get(caller, path: str, language: str = "en") -> str:  # type: ignore[no-untyped-def]
    response = caller.client.get(path, headers={"Accept-Language": language})
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def _cell(page: str, agency: int, figure: str) -> str:
    row = page.split(f'<tr data-agency="{agency}">', 1)[1].split("</tr>", 1)[0]
    cell = row.split(f'data-figure="{figure}">', 1)[1].split("</td>", 1)[0]
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", cell)).strip()


def test_the_comparison_shows_each_agencys_month(book: Book, on_today: None) -> None:
    admin = login(book.app, book.admin_email)
    page = _get(admin, f"/portal/{book.slug}/agencies?month=2026-05")

    assert _cell(page, book.a0, "placed") == "2 CN¥2,000.00"
    assert _cell(page, book.a0, "worked") == "4 CN¥4,000.00"
    assert _cell(page, book.a0, "recovered") == "CN¥445.00"
    assert _cell(page, book.a0, "liquidation") == "11.12%"  # 11.125%, rounded half to even
    assert _cell(page, book.a0, "rpc") == "40.0% 2 of 5"
    assert _cell(page, book.a0, "kept") == "33.3% 1 of 3"
    assert _cell(page, book.a0, "blocked") == "3"
    assert _cell(page, book.a0, "disputes") == "1"
    assert _cell(page, book.a0, "recalls") == "1"
    assert _cell(page, book.idle, "recovered") == "CN¥0.00"
    assert _cell(page, book.idle, "rpc") == "— 0 of 0"
    assert f'data-agency="{book.stranger}"' not in page
    assert 'value="2026-05" selected' in page

    april = _get(admin, f"/portal/{book.slug}/agencies?month=2026-04")
    assert _cell(april, book.a0, "recovered") == "CN¥200.00"
    assert 'value="2026-04" selected' in april


def test_the_agency_page_in_chinese(book: Book, on_today: None) -> None:
    admin = login(book.app, book.admin_email)
    page = _get(admin, f"/portal/{book.slug}/agencies/{book.a0}?month=2026-05", "zh-CN,zh;q=0.9")

    assert "2026年5月" in page
    assert "¥445.00" in page
    assert 'data-rule="cn.quiet_hours"' in page
    assert f'data-placement="{book.recalled}"' in page
    for label in ("委外机构", "回款", "承诺还款"):
        assert label in page, label
    recalls = _get(admin, f"/portal/{book.slug}/agencies/{book.a0}?month=2026-05&list=recalled")
    assert f'data-placement="{book.recalled}"' in recalls
    assert recalls.count("data-placement=") == 1


def test_an_agency_the_tenant_never_contracted_is_not_found(book: Book) -> None:
    admin = login(book.app, book.admin_email)

    response = admin.client.get(f"/portal/{book.slug}/agencies/{book.stranger}")

    assert response.status_code == 404


# --- access and isolation ------------------------------------------------------------------


def _paths(world: World) -> list[str]:
    return [
        f"/portal/{world.a.slug}/agencies",
        f"/portal/{world.a.slug}/agencies/{world.agency_a_id}",
    ]


def test_the_admin_and_the_analyst_read_every_page(world: World) -> None:
    for email in (world.a.admin_email, world.a.analyst_email):
        caller = login(world.app, email)
        for path in _paths(world):
            for language in ("en", "zh-CN"):
                page = _get(caller, path, language)
                assert "Agency for A" in page


def test_the_analysts_posts_are_refused_and_change_nothing(world: World) -> None:
    analyst = login(world.app, world.a.analyst_email)
    for path in _paths(world):
        before = _get(analyst, path)
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', before)
        assert token is not None

        refused = analyst.client.post(path, data={"csrf_token": token.group(1)})

        assert refused.status_code in (403, 405)  # the pages only read
        assert _get(analyst, path).count("data-agency=") == before.count("data-agency=")


@pytest.mark.parametrize("who", ["manager_email", "collector_email"])
def test_agency_staff_are_refused(world: World, who: str) -> None:
    caller = login(world.app, getattr(world, who))
    for path in _paths(world):
        assert caller.client.get(path).status_code == 403


def test_another_tenants_admin_finds_nothing(world: World) -> None:
    caller = login(world.app, world.b.admin_email)
    for path in _paths(world):
        assert caller.client.get(path).status_code == 404


def test_another_tenants_agency_is_not_found(world: World) -> None:
    """B's agency holds no contract with A: A's admin cannot open it, nor see it listed."""
    caller = login(world.app, world.a.admin_email)

    response = caller.client.get(f"/portal/{world.a.slug}/agencies/{world.agency_b_id}")
    listing = _get(caller, f"/portal/{world.a.slug}/agencies")

    assert response.status_code == 404
    assert f'data-agency="{world.agency_b_id}"' not in listing
    assert f'data-agency="{world.agency_a_id}"' in listing


def test_anonymous_is_sent_to_sign_in(world: World) -> None:
    for path in _paths(world):
        response = anonymous(world.app).client.get(path)
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/login")
