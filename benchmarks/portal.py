"""The tenant portal's pages on a book of a million cases, against the JSON API in the same run.

Four pages, each timed against the API call that returns (the nearest thing to) its data,
request by request in alternating order, through Flask's test client in this process with
one signed-in tenant admin session (the API accepts the same session, so both sides pay
the same authentication and tenant resolution):

(a) the overview ``/portal/bench/`` against ``GET /api/v1/allocation/roll-rates``: the API
    has no overview; the roll rates are the one overview figure it serves. The page reads
    the snapshot ``refresh_overview_job`` stores (refreshed once before timing, so warm);
    the cost of the figures moved to that job, whose time (``refresh_overview`` called
    directly: the queries and the Redis write) is printed beside it.
(b) the case list with two filters, ``/portal/bench/cases?status=placed&dpd_min=90``,
    against ``GET /api/v1/cases?status=placed&dpd_min=90&page_size=50`` (the same filters
    and page size; the API orders by id and counts the matches for ``X-Pagination``).
(c) a case page ``/portal/bench/cases/<id>`` against ``GET /api/v1/cases/<id>`` (case,
    account and debtor; the page adds contacts, placement, segment and the timeline),
    rotating over cases with a long history and ordinary ones.
(d) an ingestion run's page ``/portal/bench/files/runs/<id>`` (status, counts, progress,
    first page of row errors) against ``GET /api/v1/ingestion/runs/<id>`` (status, counts,
    progress; the API serves row errors only as an audited CSV export, not compared).

Set-up is bulk SQL (``allocate.seed_platform`` and ``allocate.seed_cases``, then
``INSERT ... SELECT`` for segments, bucket moves, placements with agencies, payments and
reversals, promises and contact attempts) plus one real ingestion run of a Chinese
portfolio CSV with rejected rows and warnings; then ``VACUUM ANALYZE``.

    .venv/bin/python benchmarks/portal.py [--small] [--cases N] [--requests N] [--profile]
                                          [--pages overview,list,case,run]
                                          [--keep | --reuse-database URL]
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import itertools
import logging
import re
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from _common import (
    bench_environment,
    describe_machine,
    existing_environment,
    heading,
    parser,
    percentile,
    verdict,
)
from allocate import seed_cases, seed_platform
from sqlalchemy import Engine, event, select, text

from recova.connectors.models import FeedKind, RunMode
from recova.connectors.services import ingest_local_file, save_mapping
from recova.platform.allocation.segmentation import bucket_case_sql, tenant_buckets
from recova.platform.auth.models import Role
from recova.platform.auth.services import create_user
from recova.platform.entry import demo_data
from recova.platform.entry.app import create_app
from recova.platform.kernel.extension import platform
from recova.platform.reports.snapshot import refresh_overview
from recova.tenants.migrate import migrate_shared, upgrade_tenant_schema
from recova.tenants.models import Tenant, tenant_today
from recova.tenants.scope import tenant_scope
from recova.tenants.services import provision_tenant

GOAL_RATIO = 1.5
GOAL_P95_MS = 300.0
TIMEZONE = "Asia/Shanghai"
SLUG = "bench"
#: Cases with a long history (150 contact attempts and more); the case page visits some.
RICH_EVERY = 1000
#: ``--pages`` names of the pages measured.
PAGES = {
    "overview": "overview",
    "list": "case list, 2 filters",
    "case": "case page",
    "run": "ingestion run page",
}
#: Requests per side a slow page still gets when its time budget runs out.
MIN_REQUESTS = 10


# --- the book ------------------------------------------------------------------------------


def seed_book(engine: Engine, schema: str, count: int, today: dt.date) -> None:
    """Segments, bucket moves, placements, statuses, payments, promises and attempts."""
    s = f'"{schema}"'
    with engine.connect() as connection:
        buckets = tenant_buckets_of(connection, schema)
    bucket, params = bucket_case_sql(buckets, "a.days_past_due")
    names = ["M0", *(b["name"] for b in buckets)]
    previous = " ".join(
        f"WHEN '{name}' THEN '{before}'" for before, name in itertools.pairwise(names)
    )
    params = {
        **params,
        "n": count,
        "today": today,
        "now": dt.datetime.now(dt.UTC),
        "rich": RICH_EVERY,
    }
    statements = [
        # One case in 20 not segmented yet: the overview buckets it by days past due.
        f"""INSERT INTO {s}.case_segments (case_id, bucket, bucket_since, segment)
            SELECT c.id, {bucket}, %(today)s::date - (c.id %% 90),
                   (ARRAY['prime', 'standard', 'subprime'])[1 + c.id %% 3]
            FROM {s}.cases c JOIN {s}.accounts a ON a.id = c.account_id
            WHERE c.id %% 20 <> 0""",
        f"""INSERT INTO {s}.bucket_transitions (case_id, as_of, from_bucket, to_bucket)
            SELECT case_id, bucket_since, CASE bucket {previous} END, bucket
            FROM {s}.case_segments""",
        # Nine cases in ten placed in the last 55 days (none of the paid ones); one in
        # three placed before with another agency, from 4 to 14 months ago, until expiry.
        f"""WITH ag AS (SELECT id, row_number() OVER (ORDER BY id) - 1 AS k
                        FROM platform.agencies WHERE slug LIKE 'bench-agency-%%')
            INSERT INTO {s}.placements (case_id, agency_id, segment, started_on, ends_on,
                grace_days, balance_at_placement, currency)
            SELECT c.id, ag.id, 'standard', %(today)s::date - (c.id %% 55),
                   %(today)s::date - (c.id %% 55) + 60, 10,
                   a.outstanding_principal + a.outstanding_interest, 'CNY'
            FROM {s}.cases c JOIN {s}.accounts a ON a.id = c.account_id
            JOIN ag ON ag.k = c.id %% 10
            WHERE c.id %% 10 <> 0 AND c.id %% 97 <> 0""",
        f"""WITH ag AS (SELECT id, row_number() OVER (ORDER BY id) - 1 AS k
                        FROM platform.agencies WHERE slug LIKE 'bench-agency-%%')
            INSERT INTO {s}.placements (case_id, agency_id, segment, started_on, ends_on,
                grace_days, recalled_on, recall_reason, grace_until, balance_at_placement,
                currency)
            SELECT c.id, ag.id, 'standard', start, start + 60, 10, start + 60, 'expired',
                   start + 70, a.outstanding_principal + a.outstanding_interest, 'CNY'
            FROM (SELECT id, account_id, %(today)s::date - 120 - (id %% 300) AS start
                  FROM {s}.cases WHERE id %% 3 = 0) c
            JOIN {s}.accounts a ON a.id = c.account_id
            JOIN ag ON ag.k = (c.id + 1) %% 10""",
        f"""UPDATE {s}.cases SET
                status = CASE WHEN id %% 97 = 0 THEN 'paid'
                              WHEN id %% 10 = 0 THEN 'new'
                              WHEN id %% 25 = 3 THEN 'promised'
                              WHEN id %% 4 = 1 THEN 'in_progress'
                              ELSE 'placed' END::{s}.case_status,
                closed_at = CASE WHEN id %% 97 = 0 THEN %(now)s - interval '20 days' END,
                flags = CASE WHEN id %% 200 = 0 THEN '{{dispute}}'
                             WHEN id %% 333 = 0 THEN '{{bankruptcy}}'
                             ELSE '{{}}' END::varchar[]""",
        # Payments over the last 13 months, three cases in ten paying; one in 20 reversed.
        f"""INSERT INTO {s}.payments (external_id, account_id, kind, amount, currency, paid_at,
                paid_to)
            SELECT 'P' || k, 1 + (k::bigint * 7919) %% %(n)s, 'payment',
                   10 + ((k::bigint * 104729) %% 99001) / 100.0, 'CNY',
                   %(now)s - ((k::bigint * 15485863) %% (400 * 86400)) * interval '1 second',
                   (ARRAY['tenant', 'agency', 'platform'])[1 + k %% 3]::{s}.paid_to
            FROM generate_series(1, %(n)s::int * 3 / 10) k""",
        f"""INSERT INTO {s}.payments (external_id, account_id, kind, amount, currency, paid_at,
                paid_to, reverses_id)
            SELECT 'R' || p.id, p.account_id, 'reversal', round(p.amount / 2, 2), 'CNY',
                   p.paid_at + interval '2 days', p.paid_to, p.id
            FROM {s}.payments p WHERE p.kind = 'payment' AND p.id %% 20 = 0""",
        # Promises due from 30 days ago to 30 days ahead: the past ones judged.
        f"""INSERT INTO {s}.promises (case_id, amount, currency, due_date, status, paid_amount,
                created_by, evaluated_at)
            SELECT case_id, amount, 'CNY', due,
                   CASE WHEN due >= %(today)s THEN 'pending'
                        ELSE (ARRAY['kept', 'broken', 'partly_kept'])[1 + k %% 3] END
                   ::{s}.promise_status,
                   CASE WHEN due < %(today)s AND k %% 3 = 0 THEN amount ELSE 0 END, 'bench',
                   CASE WHEN due < %(today)s THEN (due + 3)::timestamptz END
            FROM (SELECT k, 1 + (k::bigint * 7919) %% %(n)s AS case_id,
                         (100 + k %% 2000)::numeric AS amount,
                         %(today)s::date + (k %% 61) - 30 AS due
                  FROM generate_series(1, %(n)s::int / 5) k) g""",
        # Contact attempts over the last 60 days, one case in two (a few blocked), and 150
        # more on each long-history case.
        f"""INSERT INTO {s}.contact_attempts (case_id, debtor_id, contact_id, third_party,
                channel, status, attempted_at, actor_kind, pack_version, local_timezone,
                blocked_rule, block_message, result, completed_at)
            SELECT c.id, c.debtor_id, ct.id, false,
                   CASE WHEN k %% 4 = 0 THEN 'sms' ELSE 'call_out' END,
                   CASE WHEN k %% 9 = 0 THEN 'blocked' ELSE 'completed' END, at, 'tenant',
                   'cn-2026.1', 'Asia/Shanghai',
                   CASE WHEN k %% 9 = 0 THEN 'daily_attempts' END,
                   CASE WHEN k %% 9 = 0 THEN 'Too many attempts today' END,
                   CASE WHEN k %% 9 = 0 THEN NULL
                        ELSE (ARRAY['connected', 'no_answer', 'busy'])[1 + k %% 3] END,
                   CASE WHEN k %% 9 = 0 THEN NULL ELSE at + interval '2 minutes' END
            FROM (SELECT k, case_id,
                         %(now)s - ((k::bigint * 15485863) %% (60 * 86400)) * interval '1 second'
                         AS at
                  FROM (SELECT k, 1 + (k::bigint * 7919) %% %(n)s AS case_id
                        FROM generate_series(1, %(n)s::int / 2) k
                        UNION ALL
                        SELECT %(n)s + r * 1000 + j, r
                        FROM generate_series(%(rich)s::int, %(n)s::int, %(rich)s::int) r,
                             generate_series(1, 150) j) targets) g
            JOIN {s}.cases c ON c.id = g.case_id
            LEFT JOIN {s}.contacts ct ON ct.debtor_id = c.debtor_id AND ct.relation = 'self'""",
        f"""INSERT INTO {s}.case_transitions (case_id, from_status, to_status, reason, actor, at)
            SELECT case_id, 'new', 'placed', 'allocation', 'system', started_on::timestamptz
            FROM {s}.placements WHERE case_id %% %(rich)s = 0""",
    ]
    with engine.begin() as connection:
        for statement in statements:
            connection.exec_driver_sql(statement, params)


def tenant_buckets_of(connection: Any, schema: str) -> list[dict[str, Any]]:
    from sqlalchemy.orm import Session

    from recova.platform.kernel.db import TENANT_PLACEHOLDER

    scoped = connection.execution_options(schema_translate_map={TENANT_PLACEHOLDER: schema})
    with Session(bind=scoped) as session:
        return tenant_buckets(session)


def ingestion_run(objects: Any, folder: Path, rows: int) -> int:
    """One real delta run of a Chinese portfolio CSV with rejected rows and warnings."""
    with tenant_scope(SLUG, db=objects.db) as session:
        save_mapping(
            session, name="portfolio", kind=FeedKind.PORTFOLIO, **demo_data.CN_PORTFOLIO_MAPPING
        )
    clean, path = folder / "clean.csv", folder / "portfolio.csv"
    demo_data.write_cn_portfolio(clean, rows=rows)
    header = demo_data.CN_PORTFOLIO_HEADER
    principal, phone = header.index("应还本金"), header.index("紧急联系人电话")
    with (
        clean.open(encoding="gb18030", newline="") as source,
        path.open("w", encoding="gb18030", newline="") as target,
    ):
        writer = csv.writer(target)
        for n, row in enumerate(csv.reader(source)):
            if n and n % 8 == 0:
                row[principal] = "不详"  # rejected: not an amount
            elif n and n % 13 == 0:
                row[phone] = "12"  # a warning: the contact point is dropped
            writer.writerow(row)
    _, run_id = ingest_local_file(
        objects, tenant_slug=SLUG, path=path, mapping_name="portfolio", mode=RunMode.DELTA
    )
    return run_id


def build(objects: Any, count: int, ingest_rows: int, folder: Path) -> None:
    engine = objects.db.engine
    with objects.db.session() as session:
        tenant = provision_tenant(
            session,
            slug=SLUG,
            name="Bench lender",
            jurisdiction="CN",
            timezone=TIMEZONE,
            currency="CNY",
        )
        session.commit()
        tenant_id, schema = tenant.id, tenant.schema_name
    today = tenant_today(TIMEZONE)
    started = time.perf_counter()
    seed_platform(engine, tenant_id)
    seed_cases(engine, schema, count, as_of=today)
    seed_book(engine, schema, count, today)
    bulk = time.perf_counter() - started
    started = time.perf_counter()
    ingestion_run(objects, folder, ingest_rows)
    ingest = time.perf_counter() - started
    started = time.perf_counter()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE"))
    print(
        f"set-up (not timed): bulk SQL {bulk:.1f} s, ingestion of {ingest_rows:,} rows"
        f" {ingest:.1f} s, VACUUM ANALYZE {time.perf_counter() - started:.1f} s"
    )


# --- what is measured ----------------------------------------------------------------------


@dataclasses.dataclass
class Target:
    label: str
    page: str
    api: str
    api_label: str
    #: Case ids to rotate over (the case page); else the paths are fixed.
    case_ids: list[int] = dataclasses.field(default_factory=list)

    def paths(self, n: int) -> tuple[str, str]:
        if not self.case_ids:
            return self.page, self.api
        case_id = self.case_ids[n % len(self.case_ids)]
        return self.page.format(case_id), self.api.format(case_id)


def targets(engine: Engine, schema: str, *, has_run_page: bool) -> list[Target]:
    s = f'"{schema}"'
    with engine.connect() as connection:
        run_id = connection.execute(text(f"SELECT max(id) FROM {s}.ingestion_runs")).scalar()
        rich = list(
            connection.execute(
                text(f"SELECT id FROM {s}.cases WHERE id % :rich = 0 ORDER BY id LIMIT 10"),
                {"rich": RICH_EVERY},
            ).scalars()
        )
        ordinary = list(
            connection.execute(
                text(
                    f"SELECT DISTINCT case_id FROM {s}.contact_attempts"
                    " WHERE case_id % :rich <> 0 AND case_id % 7 = 1 ORDER BY case_id LIMIT 10"
                ),
                {"rich": RICH_EVERY},
            ).scalars()
        )
    mixed = [case_id for pair in zip(rich, ordinary, strict=False) for case_id in pair]
    found = [
        Target(
            "overview",
            f"/portal/{SLUG}/",
            "/api/v1/allocation/roll-rates",
            "GET /api/v1/allocation/roll-rates",
        ),
        Target(
            "case list, 2 filters",
            f"/portal/{SLUG}/cases?status=placed&dpd_min=90",
            "/api/v1/cases?status=placed&dpd_min=90&page_size=50",
            "GET /api/v1/cases?status=placed&dpd_min=90",
        ),
        Target(
            "case page",
            f"/portal/{SLUG}/cases/{{}}",
            "/api/v1/cases/{}",
            "GET /api/v1/cases/<id>",
            case_ids=mixed or rich or ordinary,
        ),
    ]
    if has_run_page and run_id is not None:
        found.append(
            Target(
                "ingestion run page",
                f"/portal/{SLUG}/files/runs/{run_id}",
                f"/api/v1/ingestion/runs/{run_id}",
                "GET /api/v1/ingestion/runs/<id>",
            )
        )
    return found


def signed_in_admin(objects: Any, app: Any) -> Any:
    """A test client signed in through the login form as a new tenant admin of ``bench``."""
    password = secrets.token_urlsafe(16)
    email = f"admin-{secrets.token_hex(4)}@bench.test"
    with objects.db.session() as session:
        tenant = session.scalar(select(Tenant).where(Tenant.slug == SLUG))
        create_user(
            session,
            email=email,
            full_name="Bench admin",
            password=password,
            role=Role.TENANT_ADMIN,
            tenant=tenant,
        )
        session.commit()
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page)
    assert token is not None, "no CSRF token on the login page"
    answer = client.post(
        "/login", data={"email": email, "password": password, "csrf_token": token.group(1)}
    )
    if answer.status_code != 302:
        raise SystemExit(f"signing in failed: {answer.status_code}")
    return client


def timed_get(client: Any, path: str) -> float:
    """Milliseconds to answer ``path`` (in this process: the server's time, no network)."""
    started = time.perf_counter()
    answer = client.get(path)
    body = answer.get_data()
    elapsed = (time.perf_counter() - started) * 1000
    if answer.status_code != 200 or not body:
        raise SystemExit(f"GET {path} answered {answer.status_code}: {body[:300]!r}")
    return elapsed


def measure(
    client: Any, target: Target, requests: int, *, budget_s: float, warm_up: int = 3
) -> dict[str, list]:
    """Page and API alternately, ``requests`` each (who goes first swaps every round), or
    fewer (at least ``MIN_REQUESTS``) once the pair has taken ``budget_s`` seconds."""
    times: dict[str, list[float]] = {"page": [], "api": []}
    for n in range(warm_up):
        for path in target.paths(n):
            timed_get(client, path)
    started = time.perf_counter()
    for n in range(requests):
        if n >= MIN_REQUESTS and time.perf_counter() - started > budget_s:
            break
        page, api = target.paths(n)
        order = (("page", page), ("api", api)) if n % 2 == 0 else (("api", api), ("page", page))
        for side, path in order:
            times[side].append(timed_get(client, path))
    return times


def refresh_job_ms(objects: Any, calls: int) -> list[float]:
    """``refresh_overview`` alone (the refresh job's body): the figures' SQL and the
    snapshot's write; the last call leaves the snapshot the page reads warm."""
    with objects.db.session() as session:
        tenant_id = session.scalar(select(Tenant.id).where(Tenant.slug == SLUG))
    found = []
    for _ in range(calls):
        started = time.perf_counter()
        refresh_overview(objects, tenant_id)
        found.append((time.perf_counter() - started) * 1000)
    return found


# --- where the time goes (--profile) -------------------------------------------------------


@contextmanager
def statement_log(engine: Engine) -> Iterator[list[tuple[float, str, Any]]]:
    """Every statement run on ``engine`` meanwhile: (milliseconds, SQL, parameters)."""
    found: list[tuple[float, str, Any]] = []

    def before(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        conn.info.setdefault("bench_started", []).append(time.perf_counter())

    def after(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        started = conn.info["bench_started"].pop()
        found.append(((time.perf_counter() - started) * 1000, statement, parameters))

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    try:
        yield found
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)


def profile(objects: Any, client: Any, target: Target, top: int = 3) -> None:
    """One request of the page: its statements by time, and the plans of the slowest."""
    engine = objects.db.engine
    path = target.paths(0)[0]
    with statement_log(engine) as found:
        total = timed_get(client, path)
    spent = sum(ms for ms, _, _ in found)
    print(
        f"-- {target.label}: {path} {total:.1f} ms, {len(found)} statements, {spent:.1f} ms in SQL"
    )
    for ms, statement, parameters in sorted(found, key=lambda item: -item[0])[:top]:
        print(f"   {ms:8.1f} ms  {' '.join(statement.split())[:600]}")
        if not statement.lstrip().upper().startswith(("SELECT", "WITH")):
            continue
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {statement}", parameters)
            for (line,) in cursor.fetchall():
                print(f"      {line}")
            raw.rollback()
        finally:
            raw.close()


# --- the run -------------------------------------------------------------------------------


def report(label: str, times: dict[str, list[float]], api_label: str) -> None:
    page50, page95 = percentile(times["page"], 50), percentile(times["page"], 95)
    api50, api95 = percentile(times["api"], 50), percentile(times["api"], 95)
    ratio = page95 / api95
    met = ratio <= GOAL_RATIO and page95 < GOAL_P95_MS
    print(
        f"{label:<22}{len(times['page']):>5}{page50:>9.1f}{page95:>9.1f}{api50:>9.1f}"
        f"{api95:>9.1f}{ratio:>9.2f}  {verdict(met):<8} vs {api_label}"
    )


def main() -> None:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument("--cases", type=int, default=None, help="default 1,000,000")
    arguments.add_argument("--requests", type=int, default=None, help="per side and page")
    arguments.add_argument(
        "--profile", action="store_true", help="statements and plans of one request per page"
    )
    arguments.add_argument(
        "--pages",
        default=",".join(PAGES),
        help=f"which pages to measure, comma-separated (default: {','.join(PAGES)})",
    )
    arguments.add_argument(
        "--keep", action="store_true", help="leave the database of a finished run"
    )
    arguments.add_argument(
        "--reuse-database", metavar="URL", help="measure a database a --keep run left"
    )
    options = arguments.parse_args()
    count = options.cases or (20_000 if options.small else 1_000_000)
    requests = options.requests or (15 if options.small else 60)
    budget_s = 8.0 if options.small else 90.0
    ingest_rows = 1_000 if options.small else 10_000
    environment: Callable[[], Any]
    if options.reuse_database:

        def environment() -> Any:
            return existing_environment("portal", options.reuse_database)
    else:

        def environment() -> Any:
            return bench_environment("portal", keep=options.keep)

    with environment() as settings, tempfile.TemporaryDirectory() as folder:
        app = create_app(settings)
        # One line per request on stderr would be most of what the run prints.
        logging.getLogger("recova.request").setLevel(logging.WARNING)
        objects = platform(app)
        engine = objects.db.engine
        if options.reuse_database:
            with engine.begin() as connection:
                upgrade_tenant_schema(connection, f"tenant_{SLUG}")
        else:
            migrate_shared(engine)
            build(objects, count, ingest_rows, Path(folder))
        schema = f"tenant_{SLUG}"
        with engine.connect() as connection:
            cases = connection.execute(text(f'SELECT count(*) FROM "{schema}".cases')).scalar()
        has_run_page = "portal.files_run" in app.view_functions
        heading(
            "portal: pages against the JSON API, server time in-process (Flask test client)",
            machine=describe_machine(engine),
            cases=f"{cases:,} in tenant '{SLUG}'",
            requests=f"{requests} per side and page (fewer, at least {MIN_REQUESTS}, once a"
            f" page's pair has taken {budget_s:.0f} s) after 3 warm-up each, page and API"
            " alternating, one signed-in tenant admin session for both",
        )
        client = signed_in_admin(objects, app)
        chosen = {PAGES[name] for name in options.pages.split(",") if name}
        found = [t for t in targets(engine, schema, has_run_page=has_run_page) if t.label in chosen]
        # Before timing the page: the refresh job's cost, and a warm snapshot for the page.
        refresh_calls = 3 if options.small else 2
        figures = refresh_job_ms(objects, refresh_calls) if "overview" in chosen else []
        results = [
            (target, measure(client, target, requests, budget_s=budget_s)) for target in found
        ]

        print(
            f"{'page':<22}{'n':>5}{'p50 ms':>9}{'p95 ms':>9}{'API p50':>9}{'API p95':>9}"
            f"{'p95/p95':>9}  goal: p95 <= {GOAL_RATIO}x API and < {GOAL_P95_MS:.0f} ms"
        )
        for target, times in results:
            report(target.label, times, target.api_label)
        if figures:
            print(
                f"overview refresh job (refresh_overview, {len(figures)} calls: the figures'"
                f" queries and the snapshot's write): p50 {percentile(figures, 50):.1f} ms,"
                f" max {max(figures):.1f} ms"
            )
        if not has_run_page:
            print("ingestion run page: portal.files_run does not exist yet; not measured")
        if options.profile:
            print("== where the time goes: one request per page ==")
            for target in found:
                profile(objects, client, target)
        objects.db.dispose()


if __name__ == "__main__":
    main()
