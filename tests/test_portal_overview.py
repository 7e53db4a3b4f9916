"""The portal's overview: its figures are what the book holds, in both languages, and only
the tenant's own admins and analysts may open it."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from flask import Flask

from recova.platform.kernel.extension import platform
from recova.platform.kernel.jobs import job_queue, qualified_job_id
from recova.platform.reports import snapshot as snapshots
from recova.platform.reports.jobs import overview_job_id, refresh_overview_job
from recova.platform.reports.overview import Overview, book_overview
from recova.platform.reports.snapshot import (
    STALE_AFTER,
    Snapshot,
    dump_snapshot,
    load_snapshot,
    parse_snapshot,
    refresh_overview,
    snapshot_key,
    store_snapshot,
)
from recova.platform.web.portal import overview as overview_page
from recova.tenants.scope import tenant_scope
from tests.billing_support import Ledger
from tests.support import World, anonymous, login

D = Decimal
#: A Wednesday: the week began on Monday the 18th; the roll rates look back to April 20th.
TODAY = dt.date(2026, 5, 20)


def on(month: int, day: int) -> dt.date:
    return dt.date(2026, month, day)


class Book:
    """A small tenant whose every figure on the overview is known."""

    def __init__(self, app: Flask) -> None:
        self.ledger = ledger = Ledger(app, cases=10)
        self.app = app
        self.cases = c = dict(enumerate(ledger.case_ids, start=1))
        self.agency0, self.agency1 = ledger.agency(0), ledger.agency(1)
        # Days past due and balances (M0 0, M1 1-30, M2 31-60, M3 61-90, M4 91-180, M6+).
        for n, dpd, balance in (
            (1, 10, "1000.50"),
            (2, 45, "2000"),
            (3, 0, "300"),
            (4, 200, "400.25"),
            (5, 40, "111"),
            (6, 70, "222"),
            (7, 5, "333"),
            (8, 50, "800"),
            (9, 50, "900"),
            (10, 95, "500"),
        ):
            ledger.sql(
                "UPDATE {s}.accounts SET days_past_due = :dpd, outstanding_principal = :b,"
                " outstanding_interest = 0, outstanding_fees = 0, outstanding_penalties = 0"
                " WHERE id = :account",
                dpd=dpd,
                b=D(balance),
                account=ledger.accounts[c[n]],
            )
        # Placements (1,000.00 each): March has two, April one.
        ledger.place(c[1], self.agency0, on(3, 5), days=60, grace_days=10)
        ledger.place(c[2], self.agency1, on(3, 20), days=60)
        ledger.place(c[3], self.agency0, on(4, 10), days=60)
        ledger.pay(c[1], "100.00", on(3, 10))
        april = ledger.pay(c[1], "200.00", on(4, 15))
        ledger.reverse(april, "50.00", on(5, 2))  # credited to agency 0, counted in May
        ledger.pay(c[2], "300.00", on(5, 10))
        ledger.pay(c[3], "400.00", on(5, 18))
        ledger.pay(c[4], "70.00", on(5, 5))  # never placed: the tenant's own money
        # After case 1's placement ended (May 4th) but in its grace period (to May 14th).
        ledger.pay(c[1], "25.00", on(5, 12))
        # Bucket history: 5 stays in M2, 6 rolls M2 -> M3, 7 is new in May, 8 was in M2
        # and was paid in May, 9 was paid before April 20th (not in the book then).
        for n, bucket, since in (
            (5, "M2", on(4, 1)),
            (6, "M3", on(5, 1)),
            (7, "M1", on(5, 3)),
            (8, "M2", on(4, 1)),
            (9, "M2", on(3, 1)),
        ):
            ledger.sql(
                "INSERT INTO {s}.case_segments (case_id, bucket, bucket_since)"
                " VALUES (:case, :bucket, :since)",
                case=c[n],
                bucket=bucket,
                since=since,
            )
        for n, day, was, now in (
            (5, on(4, 1), "M1", "M2"),
            (6, on(4, 1), "M1", "M2"),
            (6, on(5, 1), "M2", "M3"),
            (7, on(5, 3), None, "M1"),
            (8, on(4, 1), "M1", "M2"),
            (9, on(3, 1), None, "M2"),
        ):
            ledger.sql(
                "INSERT INTO {s}.bucket_transitions (case_id, as_of, from_bucket, to_bucket)"
                " VALUES (:case, :day, :was, :now)",
                case=c[n],
                day=day,
                was=was,
                now=now,
            )
        for n, closed_on in ((8, on(5, 5)), (9, on(4, 1))):
            ledger.sql(
                "UPDATE {s}.cases SET status = 'paid', closed_at = :at WHERE id = :case",
                at=dt.datetime.combine(closed_on, dt.time(4), tzinfo=dt.UTC),
                case=c[n],
            )
        # Promises: two due today (one kept), one superseded; broken this week and last.
        for n, amount, due, status, evaluated in (
            (1, "500.00", TODAY, "pending", None),
            (2, "200.00", TODAY, "kept", on(5, 19)),
            (3, "900.00", TODAY, "superseded", on(5, 19)),
            (4, "150.00", on(5, 10), "broken", on(5, 18)),
            (5, "80.00", on(5, 8), "broken", on(5, 15)),
        ):
            ledger.sql(
                "INSERT INTO {s}.promises (case_id, amount, currency, due_date, status,"
                " paid_amount, created_by, evaluated_at)"
                " VALUES (:case, :amount, 'CNY', :due, :status, 0, 'test', :evaluated)",
                case=c[n],
                amount=D(amount),
                due=due,
                status=status,
                evaluated=None
                if evaluated is None
                else dt.datetime.combine(evaluated, dt.time(2), tzinfo=dt.UTC),
            )
        self.slug = ledger.tenant.slug
        self.tenant_id = ledger.tenant.id
        self.admin_email = ledger.tenant.admin_email

    def overview(self, today: dt.date = TODAY) -> Overview:
        with tenant_scope(self.slug, db=platform(self.app).db) as session:
            return book_overview(session, today=today, timezone="Asia/Shanghai", currency="CNY")


@pytest.fixture
def book(app: Flask, rolled_back: object) -> Book:
    return Book(app)


@pytest.fixture
def on_today(monkeypatch: pytest.MonkeyPatch) -> None:
    """The page's and the refresh's today is ``TODAY``."""
    monkeypatch.setattr(overview_page, "tenant_today", lambda zone: TODAY)
    monkeypatch.setattr(snapshots, "tenant_today", lambda zone: TODAY)


@pytest.fixture
def refreshed(book: Book, on_today: None) -> Snapshot:
    """The refresh job has run for the book's tenant (as the worker would)."""
    return refresh_overview(platform(book.app), book.tenant_id)


def queued_refreshes(app: Flask, tenant_id: int) -> list[str]:
    """The ids of the overview refreshes waiting on the queue for ``tenant_id``."""
    objects = platform(app)
    queue = job_queue(
        objects.redis, refresh_overview_job.queue, prefix=objects.settings.queue_prefix
    )
    wanted = qualified_job_id(objects.settings.queue_prefix, overview_job_id(tenant_id))
    return [job_id for job_id in queue.get_job_ids() if job_id == wanted]


def forget(app: Flask, tenant_id: int) -> None:
    """No snapshot and no refresh queued for ``tenant_id``."""
    objects = platform(app)
    objects.redis.delete(snapshot_key(objects, tenant_id))
    queue = job_queue(
        objects.redis, refresh_overview_job.queue, prefix=objects.settings.queue_prefix
    )
    wanted = qualified_job_id(objects.settings.queue_prefix, overview_job_id(tenant_id))
    if wanted is not None:
        queue.remove(wanted)
        objects.redis.delete(f"rq:job:{wanted}")


def test_open_inventory_is_the_open_cases_by_bucket_with_their_balance(book: Book) -> None:
    figures = book.overview()

    assert [(line.bucket, line.cases, line.balance) for line in figures.inventory] == [
        ("M0", 1, D("300")),
        ("M1", 2, D("1333.50")),
        ("M2", 2, D("2111")),
        ("M3", 1, D("222")),
        ("M4", 1, D("500")),
        ("M6+", 1, D("400.25")),
    ]
    assert figures.open_cases == 8
    assert figures.open_balance == {"CNY": D("4866.75")}
    assert all(isinstance(line.balance, Decimal) for line in figures.inventory)


def test_recovered_is_payments_minus_reversals_by_month(book: Book) -> None:
    (recovered,) = book.overview().recovered

    assert recovered.currency == "CNY"
    assert recovered.this_month == D("745.00")  # 300 + 400 + 70 + 25 - 50
    assert recovered.last_month == D("200.00")
    assert recovered.last_month_to_date == D("200.00")  # April 1st to 20th


def test_recoveries_by_agency_follow_the_ledgers_attribution(book: Book) -> None:
    rows = {
        (r.agency_id, r.currency): (r.this_month, r.last_month) for r in book.overview().by_agency
    }

    assert rows == {
        # 400 (case 3) + 25 (case 1, in grace) - 50 (reversal of April's payment)
        (book.agency0, "CNY"): (D("375.00"), D("200.00")),
        (book.agency1, "CNY"): (D("300.00"), D("0")),
        (None, "CNY"): (D("70.00"), D("0")),
    }
    assert book.overview().by_agency[-1].agency_id is None  # the tenant's own money last


def test_promises_due_today_and_broken_this_week(book: Book) -> None:
    promises = book.overview().promises

    assert promises.due_today == 2  # the superseded one is not due
    assert promises.due_today_amounts == {"CNY": D("700.00")}
    assert promises.kept_today == 1
    assert promises.broken_this_week == 1  # the one judged on Friday the 15th was last week
    assert promises.broken_amounts == {"CNY": D("150.00")}


def test_the_liquidation_curve_cumulates_recoveries_over_the_placed_balance(book: Book) -> None:
    curves = {curve.month: curve for curve in book.overview().curves}

    assert sorted(curves) == [on(3, 1), on(4, 1)]
    march, april = curves[on(3, 1)], curves[on(4, 1)]
    assert (march.placements, march.placed) == (2, D("2000"))
    assert [(p.age, p.recovered, p.cumulative) for p in march.points] == [
        (0, D("100.00"), D("100.00")),
        (1, D("200.00"), D("300.00")),
        (2, D("275.00"), D("575.00")),  # 300 + 25 - 50
    ]
    assert [p.ratio for p in march.points] == [D("0.05"), D("0.15"), D("0.2875")]
    assert [(p.age, p.cumulative, p.ratio) for p in april.points] == [
        (0, D("0"), D("0")),
        (1, D("400.00"), D("0.4")),
    ]


def test_roll_rates_say_where_each_buckets_cases_went(book: Book) -> None:
    figures = book.overview()

    assert figures.roll_since == on(4, 20)
    (m2,) = figures.roll_rates
    assert m2.from_bucket == "M2"
    assert m2.cases == 3  # 5, 6 and 8; 7 was not seen yet, 9 had left
    assert m2.counts == {"M2": 1, "M3": 1, None: 1}
    assert m2.rate("M3") == D(1) / D(3)


def _page(caller, slug: str, language: str) -> str:  # type: ignore[no-untyped-def]
    response = caller.client.get(f"/portal/{slug}/", headers={"Accept-Language": language})
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_the_page_shows_the_figures_and_charts_in_english(book: Book, refreshed: Snapshot) -> None:
    page = _page(login(book.app, book.admin_email), book.slug, "en")

    assert 'data-figure="open-cases">8<' in page
    assert 'data-figure="recovered-CNY">CN¥745.00<' in page
    assert 'data-figure="promises-due">2<' in page
    assert 'data-figure="promises-broken">1<' in page
    assert "Liquidation curve" in page
    assert "Roll rates" in page
    assert "Recoveries by agency" in page
    for chart in ("chart-liquidation", "chart-roll", "chart-agencies"):
        figure = page.split(f'id="{chart}"', 1)[1].split("</figure>", 1)[0]
        assert "<svg" in figure
        assert "<script" not in figure
    assert "Mar 2026" in page  # a placement month's line
    assert '<details class="data">' in page
    assert "CN¥2,111.00" in page  # M2's balance in the table


def test_the_page_speaks_chinese(book: Book, refreshed: Snapshot) -> None:
    page = _page(login(book.app, book.admin_email), book.slug, "zh-CN,zh;q=0.9")

    for label in ("概览", "账龄", "回款", "承诺还款", "滚动率", "委外机构"):
        assert label in page, label
    assert "2026年3月" in page
    assert "¥745.00" in page
    figure = page.split('id="chart-liquidation"', 1)[1].split("</figure>", 1)[0]
    assert "距委案月数" in figure  # the axis title is translated inside the SVG


def test_an_empty_tenant_renders(world: World) -> None:
    refresh_overview(platform(world.app), world.a.id)
    for language in ("en", "zh-CN"):
        page = _page(login(world.app, world.a.admin_email), world.a.slug, language)
        assert 'data-figure="promises-due">0<' in page
        assert 'id="chart-liquidation"' in page


def test_the_analyst_reads_but_cannot_post(world: World) -> None:
    refresh_overview(platform(world.app), world.a.id)
    analyst = login(world.app, world.a.analyst_email)
    page = _page(analyst, world.a.slug, "en")
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    assert token is not None

    refused = analyst.client.post(f"/portal/{world.a.slug}/", data={"csrf_token": token.group(1)})

    # The overview only reads: no method changes anything through it.
    assert refused.status_code in (403, 405)
    # The same page again, but for the CSRF tokens: they carry the second they were signed.
    assert _without_tokens(_page(analyst, world.a.slug, "en")) == _without_tokens(page)


def _without_tokens(page: str) -> str:
    return re.sub(r'(name="csrf[-_]token" (?:value|content)=)"[^"]*"', r"\1", page)


@pytest.mark.parametrize("who", ["manager_email", "collector_email"])
def test_agency_staff_are_refused(world: World, who: str) -> None:
    caller = login(world.app, getattr(world, who))

    assert caller.client.get(f"/portal/{world.a.slug}/").status_code == 403


def test_another_tenants_admin_finds_nothing(world: World) -> None:
    caller = login(world.app, world.b.admin_email)

    assert caller.client.get(f"/portal/{world.a.slug}/").status_code == 404


def test_another_tenants_ids_are_not_taken(world: World) -> None:
    """The overview names no object in its address: a query string naming B's cases or
    agencies changes nothing of what A's admin sees."""
    refresh_overview(platform(world.app), world.a.id)
    caller = login(world.app, world.a.admin_email)
    plain = _page(caller, world.a.slug, "en")
    response = caller.client.get(
        f"/portal/{world.a.slug}/?case_id={world.b.case_ids[-1]}&agency_id={world.agency_b_id}",
        headers={"Accept-Language": "en"},
    )

    assert response.status_code == 200
    assert _strip_tokens(response.get_data(as_text=True)) == _strip_tokens(plain)


def _strip_tokens(page: str) -> str:
    page = re.sub(r'(name="csrf_token"[^>]*value=|name="csrf-token" content=)"[^"]+"', "", page)
    page = re.sub(r'name="next" value="[^"]*"', "", page)
    return re.sub(r"chart-[0-9a-f-]{36}", "chart", page)


def test_anonymous_is_sent_to_sign_in(world: World) -> None:
    response = anonymous(world.app).client.get(f"/portal/{world.a.slug}/")

    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


# --- the snapshot --------------------------------------------------------------------------


def test_the_snapshot_round_trips_exactly(book: Book, on_today: None) -> None:
    computed = refresh_overview(platform(book.app), book.tenant_id)

    loaded = load_snapshot(platform(book.app), book.tenant_id)

    assert loaded == computed
    assert loaded.book == book.overview()  # the same figures as the queries, unchanged
    assert parse_snapshot(dump_snapshot(computed)) == computed
    assert loaded.book.today == TODAY
    (m2,) = loaded.book.roll_rates
    assert m2.counts == {"M2": 1, "M3": 1, None: 1}  # the None key survives JSON
    march = loaded.book.curves[0]
    assert [p.ratio for p in march.points] == [D("0.05"), D("0.15"), D("0.2875")]
    assert all(isinstance(line.balance, Decimal) for line in loaded.book.inventory)
    # Every digit kept, the exponent too: the same strings, not only equal numbers.
    assert [str(r.this_month) for r in loaded.book.recovered] == [
        str(r.this_month) for r in computed.book.recovered
    ]


def test_the_refresh_job_stores_the_snapshot(book: Book, on_today: None) -> None:
    forget(book.app, book.tenant_id)
    with book.app.app_context():
        refresh_overview_job(tenant_id=book.tenant_id)

    stored = load_snapshot(platform(book.app), book.tenant_id)
    assert stored is not None
    assert stored.book == book.overview()


def test_without_a_snapshot_the_page_says_it_is_computing_and_queues_one_refresh(
    book: Book, on_today: None
) -> None:
    forget(book.app, book.tenant_id)
    admin = login(book.app, book.admin_email)

    first = _page(admin, book.slug, "en")
    second = _page(admin, book.slug, "en")

    for page in (first, second):
        assert "The figures are being computed; this page refreshes by itself" in page
        assert 'id="overview-computing"' in page
        assert 'hx-trigger="every 3s"' in page
        assert 'http-equiv="refresh"' in page
        assert "data-figure" not in page
    assert queued_refreshes(book.app, book.tenant_id) == [
        qualified_job_id(platform(book.app).settings.queue_prefix, overview_job_id(book.tenant_id))
    ]  # two requests, one job
    status = admin.client.get(f"/portal/{book.slug}/overview/status")
    assert status.status_code == 200
    assert "HX-Refresh" not in status.headers
    assert 'id="overview-computing"' in status.get_data(as_text=True)

    refresh_overview(platform(book.app), book.tenant_id)  # the worker runs it

    ready = admin.client.get(f"/portal/{book.slug}/overview/status")
    assert ready.status_code == 200
    assert ready.headers["HX-Refresh"] == "true"
    assert 'data-figure="open-cases">8<' in _page(admin, book.slug, "en")
    forget(book.app, book.tenant_id)


def test_a_stale_snapshot_is_shown_with_its_time_and_a_refresh_is_queued(
    book: Book, refreshed: Snapshot
) -> None:
    objects = platform(book.app)
    old = dt.datetime(2026, 5, 20, 1, 30, tzinfo=dt.UTC)  # 09:30 in Shanghai
    store_snapshot(objects, book.tenant_id, Snapshot(book=refreshed.book, computed_at=old))
    assert queued_refreshes(book.app, book.tenant_id) == []

    page = _page(login(book.app, book.admin_email), book.slug, "en")

    assert 'data-figure="open-cases">8<' in page  # the old figures, at once
    assert "Figures as of May 20, 2026, 9:30:00" in page
    assert "a refresh is queued" in page
    assert len(queued_refreshes(book.app, book.tenant_id)) == 1
    forget(book.app, book.tenant_id)


def test_a_snapshot_of_an_earlier_day_is_stale_even_if_recent() -> None:
    now = dt.datetime(2026, 5, 20, 1, 0, tzinfo=dt.UTC)
    figures = Snapshot(book=_empty_book(TODAY - dt.timedelta(days=1)), computed_at=now)
    fresh = Snapshot(book=_empty_book(TODAY), computed_at=now)

    assert figures.is_stale(now=now, today=TODAY)
    assert not fresh.is_stale(now=now + STALE_AFTER, today=TODAY)
    assert fresh.is_stale(now=now + STALE_AFTER + dt.timedelta(seconds=1), today=TODAY)


def _empty_book(today: dt.date) -> Overview:
    return Overview(
        today=today,
        currency="CNY",
        buckets=["M0"],
        inventory=[],
        recovered=[],
        promises=snapshots.PromiseFigures(0, {}, 0, 0, {}),
        curves=[],
        roll_since=today - dt.timedelta(days=30),
        roll_rates=[],
        by_agency=[],
    )


def test_a_fresh_snapshot_queues_nothing(book: Book, refreshed: Snapshot) -> None:
    page = _page(login(book.app, book.admin_email), book.slug, "en")

    assert "Figures as of" in page
    assert "a refresh is queued" not in page
    assert 'id="refresh-overview"' in page  # the admin's button
    assert queued_refreshes(book.app, book.tenant_id) == []
    forget(book.app, book.tenant_id)


def _token(page: str) -> str:
    found = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    assert found is not None
    return found.group(1)


def test_the_admin_refreshes_now(book: Book, refreshed: Snapshot) -> None:
    admin = login(book.app, book.admin_email)
    token = _token(_page(admin, book.slug, "en"))

    response = admin.client.post(
        f"/portal/{book.slug}/overview/refresh",
        data={"csrf_token": token},
        headers={"Accept-Language": "en"},
    )

    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/portal/{book.slug}/")
    assert len(queued_refreshes(book.app, book.tenant_id)) == 1
    followed = admin.client.get(response.headers["Location"], headers={"Accept-Language": "en"})
    assert "The figures are being refreshed" in followed.get_data(as_text=True)
    forget(book.app, book.tenant_id)


def test_the_analyst_may_not_refresh_now(world: World) -> None:
    forget(world.app, world.a.id)
    refresh_overview(platform(world.app), world.a.id)
    analyst = login(world.app, world.a.analyst_email)
    page = _page(analyst, world.a.slug, "en")
    assert 'id="refresh-overview"' not in page  # no button for a reader

    refused = analyst.client.post(
        f"/portal/{world.a.slug}/overview/refresh", data={"csrf_token": _token(page)}
    )

    assert refused.status_code == 403
    assert queued_refreshes(world.app, world.a.id) == []
    forget(world.app, world.a.id)


@pytest.mark.parametrize("path", ["overview/status", "overview/refresh"])
def test_the_new_routes_keep_other_tenants_and_agency_staff_out(world: World, path: str) -> None:
    other = login(world.app, world.b.admin_email)
    collector = login(world.app, world.collector_email)
    ask = (
        (lambda c: c.client.get(f"/portal/{world.a.slug}/{path}"))
        if path.endswith("status")
        else (lambda c: c.client.post(f"/portal/{world.a.slug}/{path}", headers=c.headers))
    )

    assert ask(other).status_code == 404
    assert ask(collector).status_code == 403
    response = ask(anonymous(world.app))
    # Sent to sign in (a page), or refused without a session (a change; the walk test
    # checks it with a valid token too).
    assert response.status_code in ((302,) if path.endswith("status") else (400, 401))
    assert queued_refreshes(world.app, world.a.id) == []
