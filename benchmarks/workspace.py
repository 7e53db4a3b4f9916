"""The agency workspace at a million cases and 500 collectors, against the JSON API in the same run.

One collector, signed in through the login form, works their queue through Flask's test
client in this process; the API accepts the same session cookie (and its CSRF token), so
both sides pay the same authentication, tenant resolution and request hooks, and the
figures are the server's time without a network:

(a) *Next case*, ``POST /work/next`` (the decision only: its redirect to the case is not
    followed), against ``GET /api/v1/agency/queue?page_size=1`` (the API's first case of
    the same collector's queue, with its ``X-Pagination`` count);
(b) the case screen ``/work/bench/cases/<id>`` (balances, every contact point with the
    compliance gate's verdict now, the newest timeline entries, open promises and plans,
    the actions panel), against the API calls for its data, summed per screen:
    ``GET /api/v1/tenants/bench/cases/<id>`` + ``.../contacts`` + ``.../attempts?page_size=20``
    (the API has no verdicts and no timeline; its attempts list is the nearest), rotating
    over cases of the collector with a long history and ordinary ones;
(c) logging a call with its outcome (*no answer*): the screen's ``POST .../call`` then
    ``POST .../attempts/<id>/outcome``, against the API's ``POST .../cases/<id>/attempts``
    then ``POST .../attempts/<id>/outcome``, summed per call, each call on a fresh case of
    the collector not called in the last 24 hours (the call caps count per debtor and
    number and a policy may only tighten them, so the caps are kept clear by rotating).

Every debtor's time zone is set at set-up to an ``Etc/GMT±N`` zone whose clock reads about
12:00 now, so the contact window (08:00-22:00 local, CN pack) is open whatever the hour
of the run; a ``--reuse-database`` run resets it if the stored zone's clock has left
09:00-20:00.

Set-up is bulk SQL: two agencies under contract with 500 collectors (``--small``: 20) with
profiles, ``allocate.seed_cases`` (debtors, one own phone for four in five, accounts,
cases), then ``INSERT ... SELECT``: a second own phone for one debtor in three, an e-mail
for each, a third party for one in two; every case placed with one of the agencies and
assigned to one of its collectors by a hash of its id (about 2,000 each), scores,
statuses and flags, callbacks due and later, promises (due today for one case in 50),
payments, and call history (two calls on one case in two over the last 30 days, one call
today on one in 20, 150 on each long-history case); then ``VACUUM ANALYZE``.

    .venv/bin/python benchmarks/workspace.py [--small] [--cases N] [--collectors N]
                                             [--requests N] [--profile]
                                             [--keep | --reuse-database URL]
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
import secrets
import time
import zoneinfo
from collections.abc import Callable
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
from allocate import seed_cases
from portal import statement_log
from sqlalchemy import Engine, text

from recova.platform.auth.passwords import hash_password
from recova.platform.contact.services import outcome_codes
from recova.platform.entry.app import create_app
from recova.platform.kernel.extension import platform
from recova.tenants.migrate import migrate_shared, upgrade_tenant_schema
from recova.tenants.models import tenant_today
from recova.tenants.scope import tenant_scope
from recova.tenants.services import provision_tenant

GOAL_RATIO = 1.5
GOAL_SCREEN_P95_MS = 250.0
TIMEZONE = "Asia/Shanghai"
SLUG = "bench"
SCHEMA = f"tenant_{SLUG}"
AGENCIES = 2
#: Cases with a long history (150 calls more); the case screen visits some.
RICH_EVERY = 499
#: The screen's timeline shows this many entries; the API's attempts page matches it.
TIMELINE_PAGE = 20
#: Requests per side a slow measurement still gets when its time budget runs out.
MIN_REQUESTS = 10
WARM_UP = 3
#: The debtors' clock is set near this hour; a reused database is reset outside the range.
LOCAL_HOUR = 12
LOCAL_HOURS_OK = range(9, 20)


# --- the book ------------------------------------------------------------------------------


def noon_zone(now: dt.datetime | None = None) -> str:
    """An ``Etc/GMT±N`` zone whose clock reads between 12:00 and 13:00 at ``now``
    (``Etc`` signs are POSIX-inverted: ``Etc/GMT-8`` is UTC+8)."""
    now = now or dt.datetime.now(dt.UTC)
    offset = LOCAL_HOUR - now.hour  # -11 .. +12: every one exists
    if offset == 0:
        return "Etc/GMT"
    return f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


def seed_agencies(engine: Engine, tenant_id: int, collectors: int) -> None:
    """Two agencies under contract with the tenant; collectors with memberships (split
    evenly between them) and profiles."""
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO platform.agencies (slug, name, status)"
                " SELECT 'bench-agency-' || n, 'Agency ' || n, 'active'"
                " FROM generate_series(1, :n) n"
            ),
            {"n": AGENCIES},
        )
        connection.execute(
            text(
                "INSERT INTO platform.agency_contracts"
                " (tenant_id, agency_id, starts_on, placement_days, grace_days)"
                " SELECT :t, id, DATE '2020-01-01', 60, 10 FROM platform.agencies"
                " WHERE slug LIKE 'bench-agency-%'"
            ),
            {"t": tenant_id},
        )
        connection.execute(
            text(
                """WITH u AS (
                       INSERT INTO platform.users (email, full_name, password_hash, is_active,
                                                   failed_logins)
                       SELECT 'collector' || n || '@bench.test', 'Collector ' || n,
                              'not-a-login', true, 0
                       FROM generate_series(1, :n) n RETURNING id
                   ), numbered AS (
                       SELECT id, row_number() OVER (ORDER BY id) AS k FROM u
                   ), m AS (
                       INSERT INTO platform.memberships (user_id, role, agency_id)
                       SELECT numbered.id, 'collector', a.id FROM numbered
                       JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS j
                             FROM platform.agencies WHERE slug LIKE 'bench-agency-%') a
                         ON a.j = numbered.k % :agencies
                   )
                   INSERT INTO platform.collector_profiles
                       (user_id, languages, regions, max_cases, is_active)
                   SELECT id, '{zh}'::varchar[], '{}', 2500, true FROM numbered"""
            ),
            {"n": collectors, "agencies": AGENCIES},
        )


#: The agencies by rank and their collectors by rank within their agency (SQL).
_COLLECTORS = """
    SELECT m.user_id, ag.k, row_number() OVER (PARTITION BY m.agency_id ORDER BY m.user_id) - 1
           AS j
    FROM platform.memberships m
    JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS k
          FROM platform.agencies WHERE slug LIKE 'bench-agency-%%') ag ON ag.id = m.agency_id
    WHERE m.role = 'collector'"""


#: A case id hashed to a number from 0 to 2^32 - 1: the agency and collector it goes to, so
#: that no collector's cases share a residue of the id (``seed_cases`` gives debtors an own
#: phone, and ``seed_workspace`` extra contacts, by residues of the id).
_SPREAD = "(hashint4({}::int)::bigint + 2147483648)"


def seed_workspace(
    engine: Engine, schema: str, *, count: int, collectors: int, today: dt.date, zone: str
) -> None:
    """Contact points, placements and assignments of every case, scores, statuses,
    callbacks, promises, payments and call history."""
    s = f'"{schema}"'
    per_agency = collectors // AGENCIES
    params = {
        "n": count,
        "today": today,
        "zone": zone,
        "agencies": AGENCIES,
        "per_agency": per_agency,
        "rich": RICH_EVERY,
    }

    def index(prefix: str) -> str:
        return f"decode(md5('{prefix}' || n) || md5('{prefix}' || n), 'hex')"

    statements = [
        f"UPDATE {s}.debtors SET timezone = %(zone)s",
        # A second own phone for one debtor in three, an e-mail for each, a third party
        # (a relative or a colleague, named) for one in two.
        f"""INSERT INTO {s}.contacts (debtor_id, kind, relation, name, value_ciphertext,
                value_index, value_masked)
            SELECT n, 'phone'::{s}.contact_kind, 'self', NULL, '\\x00'::bytea, {index("p2-")},
                   '139****1111'
            FROM generate_series(1, %(n)s::int) n WHERE n %% 3 = 0
            UNION ALL
            SELECT n, 'email'::{s}.contact_kind, 'self', NULL, '\\x00'::bytea, {index("e-")},
                   'd***' || n %% 10 || '@example.com'
            FROM generate_series(1, %(n)s::int) n
            UNION ALL
            SELECT n, 'phone'::{s}.contact_kind,
                   (ARRAY['spouse', 'parent', 'colleague'])[1 + n %% 3], 'Relative ' || n,
                   '\\x00'::bytea, {index("t-")}, '137****2222'
            FROM generate_series(1, %(n)s::int) n WHERE n %% 2 = 0""",
        # Every case placed in the last 50 days with one of the agencies, for 60 days.
        f"""WITH ag AS (SELECT id, row_number() OVER (ORDER BY id) - 1 AS k
                        FROM platform.agencies WHERE slug LIKE 'bench-agency-%%')
            INSERT INTO {s}.placements (case_id, agency_id, segment, started_on, ends_on,
                grace_days, balance_at_placement, currency)
            SELECT c.id, ag.id, (ARRAY['prime', 'standard', 'subprime'])[1 + c.id %% 3],
                   %(today)s::date - (c.id %% 50), %(today)s::date - (c.id %% 50) + 60, 10,
                   a.outstanding_principal + a.outstanding_interest, 'CNY'
            FROM {s}.cases c JOIN {s}.accounts a ON a.id = c.account_id
            JOIN ag ON ag.k = {_SPREAD.format("c.id")} %% %(agencies)s""",
        # ... and assigned to one of its collectors: a callback due for one in 40, one
        # later today for another one in 40.
        f"""WITH col AS ({_COLLECTORS})
            INSERT INTO {s}.assignments (placement_id, collector_id, reason, assigned_at,
                next_action_at)
            SELECT pl.id, col.user_id, 'auto', pl.started_on::timestamptz,
                   CASE WHEN pl.case_id %% 40 = 1 THEN now() - interval '1 hour'
                        WHEN pl.case_id %% 40 = 2 THEN now() + interval '3 hours' END
            FROM {s}.placements pl
            JOIN col ON col.k = {_SPREAD.format("pl.case_id")} %% %(agencies)s
                    AND col.j = {_SPREAD.format("pl.case_id")} / %(agencies)s %% %(per_agency)s""",
        f"""INSERT INTO platform.collector_workloads (user_id, tenant_id, open_cases)
            SELECT x.collector_id, t.id, count(*)
            FROM {s}.assignments x CROSS JOIN platform.tenants t
            WHERE t.slug = 'bench' AND x.ended_at IS NULL GROUP BY x.collector_id, t.id""",
        f"""INSERT INTO {s}.case_scores (case_id, score, components, scorer, computed_on)
            SELECT id, ((id::bigint * 7919) %% 100000) / 1000.0,
                   jsonb_build_object('days_past_due', id %% 400, 'balance', id %% 1000),
                   'bench', %(today)s
            FROM {s}.cases""",
        f"""UPDATE {s}.cases SET
                status = CASE WHEN id %% 25 = 3 THEN 'promised'
                              WHEN id %% 4 = 1 THEN 'in_progress'
                              ELSE 'placed' END::{s}.case_status,
                flags = CASE WHEN id %% 200 = 0 THEN '{{dispute}}'
                             WHEN id %% 333 = 0 THEN '{{bankruptcy}}'
                             ELSE '{{}}' END::varchar[]""",
        # Promises: due today for one case in 50, later for one in 50, judged ones in the
        # past for one in 25; made by the case's collector.
        f"""INSERT INTO {s}.promises (case_id, amount, currency, due_date, status, paid_amount,
                created_by, evaluated_at)
            SELECT g.id, g.amount, 'CNY', g.due,
                   CASE WHEN g.due >= %(today)s THEN 'pending'
                        ELSE (ARRAY['kept', 'broken', 'partly_kept'])[1 + g.id %% 3] END
                   ::{s}.promise_status,
                   CASE WHEN g.due < %(today)s AND g.id %% 3 = 0 THEN g.amount ELSE 0 END,
                   'user:' || x.collector_id,
                   CASE WHEN g.due < %(today)s THEN (g.due + 3)::timestamptz END
            FROM (SELECT id, (100 + id %% 2000)::numeric AS amount,
                         CASE WHEN id %% 50 = 7 THEN %(today)s::date
                              WHEN id %% 50 = 17 THEN %(today)s::date + 1 + id %% 20
                              WHEN id %% 25 = 11 THEN %(today)s::date - 1 - id %% 30 END AS due
                  FROM {s}.cases) g
            JOIN {s}.placements pl ON pl.case_id = g.id AND pl.recalled_on IS NULL
            JOIN {s}.assignments x ON x.placement_id = pl.id AND x.ended_at IS NULL
            WHERE g.due IS NOT NULL""",
        f"""INSERT INTO {s}.payments (external_id, account_id, kind, amount, currency, paid_at,
                paid_to)
            SELECT 'P' || id, id, 'payment', 50 + id %% 500, 'CNY',
                   now() - (5 + id %% 35) * interval '1 day', 'agency'::{s}.paid_to
            FROM {s}.accounts WHERE id %% 10 = 4""",
        # Calls on the debtor's first own phone by the case's collector: two on one case in
        # two over the last 30 days (one in nine blocked), one today (two hours ago, the
        # debtors' clock reads about noon) on one in 20, and 150 on each long-history case.
        f"""INSERT INTO {s}.contact_attempts (case_id, debtor_id, contact_id, third_party,
                channel, status, attempted_at, actor_kind, agency_id, user_id, pack_version,
                local_timezone, blocked_rule, block_message, outcome_code_id, result, notes,
                recording_ref, completed_at)
            SELECT c.id, c.debtor_id, ph.id, false, 'call_out',
                   CASE WHEN g.blocked THEN 'blocked' ELSE 'completed' END, g.at, 'agency',
                   pl.agency_id, x.collector_id, 'CN-2026', %(zone)s,
                   CASE WHEN g.blocked THEN 'cn.unanswered_calls_per_number' END,
                   CASE WHEN g.blocked THEN 'This number has had 6 unanswered calls today' END,
                   CASE WHEN NOT g.blocked THEN oc.id END,
                   CASE WHEN NOT g.blocked THEN g.result END,
                   CASE WHEN g.result = 'connected' AND NOT g.blocked
                        THEN 'Promised to call back' END,
                   CASE WHEN g.result = 'connected' AND NOT g.blocked THEN 'rec-' || g.k END,
                   CASE WHEN NOT g.blocked THEN g.at + interval '1 minute' END
            FROM (SELECT k, case_id, at, k %% 9 = 0 AS blocked,
                         (ARRAY['no_answer', 'no_answer', 'busy', 'connected'])[1 + k %% 4]
                         AS result
                  FROM (SELECT n * 2 + j AS k, n AS case_id,
                               now() - (1 + (n::bigint * 7919 * j) %% 29) * interval '1 day'
                                     - (n %% 600) * interval '1 minute' AS at
                        FROM generate_series(2, %(n)s::int, 2) n, generate_series(0, 1) j
                        UNION ALL
                        SELECT 3 * n, n, now() - interval '2 hours'
                        FROM generate_series(5, %(n)s::int, 20) n
                        UNION ALL
                        SELECT 10000000 + n * 150 + j, n,
                               now() - (1 + j %% 60) * interval '1 day'
                                     - j * interval '7 minutes'
                        FROM generate_series(%(rich)s::int, %(n)s::int, %(rich)s::int) n,
                             generate_series(1, 150) j) t) g
            JOIN {s}.cases c ON c.id = g.case_id
            JOIN LATERAL (SELECT id FROM {s}.contacts k
                          WHERE k.debtor_id = c.debtor_id AND k.relation = 'self'
                            AND k.kind = 'phone' ORDER BY id LIMIT 1) ph ON true
            JOIN {s}.placements pl ON pl.case_id = c.id AND pl.recalled_on IS NULL
            JOIN {s}.assignments x ON x.placement_id = pl.id AND x.ended_at IS NULL
            LEFT JOIN {s}.outcome_codes oc ON oc.code = upper(g.result)""",
    ]
    with engine.begin() as connection:
        for statement in statements:
            connection.exec_driver_sql(statement, params)


def build(objects: Any, count: int, collectors: int) -> None:
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
    with tenant_scope(SLUG, db=objects.db) as session:
        outcome_codes(session)  # the tenant's default codes, which the history names
    today = tenant_today(TIMEZONE)
    started = time.perf_counter()
    seed_agencies(engine, tenant_id, collectors)
    seed_cases(engine, schema, count, as_of=today)
    seed_workspace(
        engine, schema, count=count, collectors=collectors, today=today, zone=noon_zone()
    )
    bulk = time.perf_counter() - started
    started = time.perf_counter()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE"))
    print(
        f"set-up (not timed): bulk SQL {bulk:.1f} s,"
        f" VACUUM ANALYZE {time.perf_counter() - started:.1f} s"
    )


def keep_window_open(engine: Engine) -> None:
    """A reused book: move the debtors' clock back to about noon if it has left the hours
    the benchmark relies on (the contact window must be open whatever the hour)."""
    with engine.connect() as connection:
        stored = connection.execute(
            text(f'SELECT timezone FROM "{SCHEMA}".debtors ORDER BY id LIMIT 1')
        ).scalar()
    if stored and dt.datetime.now(zoneinfo.ZoneInfo(stored)).hour in LOCAL_HOURS_OK:
        return
    started = time.perf_counter()
    with engine.begin() as connection:
        connection.execute(text(f'UPDATE "{SCHEMA}".debtors SET timezone = :z'), {"z": noon_zone()})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text(f'VACUUM ANALYZE "{SCHEMA}".debtors'))
    print(f"debtors' zone reset to {noon_zone()} ({time.perf_counter() - started:.1f} s)")


# --- the collector -------------------------------------------------------------------------


@dataclasses.dataclass
class Collector:
    user_id: int
    email: str
    client: Any
    csrf: str


def bench_collector(engine: Engine) -> tuple[int, str]:
    """The first collector of the first agency: their id and e-mail."""
    with engine.connect() as connection:
        row = connection.execute(
            text(
                f"""SELECT u.id, u.email FROM ({_COLLECTORS.replace("%%", "%")}) col
                    JOIN platform.users u ON u.id = col.user_id
                    WHERE col.k = 0 ORDER BY col.j LIMIT 1"""
            )
        ).one()
    return row[0], row[1]


def signed_in_collector(objects: Any, app: Any) -> Collector:
    """A test client signed in through the login form as the bench collector (a fresh
    password is set on each run), with the session's CSRF token."""
    engine = objects.db.engine
    user_id, email = bench_collector(engine)
    password = secrets.token_urlsafe(16)
    with engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE platform.users SET password_hash = :h, failed_logins = 0,"
                " locked_until = NULL WHERE id = :id"
            ),
            {"h": hash_password(password), "id": user_id},
        )
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page)
    assert token is not None, "no CSRF token on the login page"
    answer = client.post(
        "/login", data={"email": email, "password": password, "csrf_token": token.group(1)}
    )
    if answer.status_code != 302:
        raise SystemExit(f"signing in failed: {answer.status_code}")
    me = client.get("/api/v1/me")
    if me.status_code != 200 or not me.json or not me.json.get("csrf_token"):
        raise SystemExit(f"GET /api/v1/me answered {me.status_code}: {me.get_data()[:300]!r}")
    return Collector(user_id, email, client, me.json["csrf_token"])


def screen_cases(engine: Engine, collector_id: int, limit: int = 10) -> list[int]:
    """The collector's cases the screen rotates over: long histories and ordinary ones,
    alternating."""
    s = f'"{SCHEMA}"'
    mine = f"""SELECT pl.case_id FROM {s}.assignments x
               JOIN {s}.placements pl ON pl.id = x.placement_id AND pl.recalled_on IS NULL
               WHERE x.collector_id = :c AND x.ended_at IS NULL"""
    with engine.connect() as connection:
        rich = list(
            connection.execute(
                text(f"SELECT case_id FROM ({mine}) m WHERE case_id % :r = 0 ORDER BY 1 LIMIT :l"),
                {"c": collector_id, "r": RICH_EVERY, "l": limit},
            ).scalars()
        )
        ordinary = list(
            connection.execute(
                text(
                    f"""SELECT case_id FROM ({mine}) m WHERE case_id % :r <> 0
                        AND EXISTS (SELECT 1 FROM {s}.contact_attempts a
                                    WHERE a.case_id = m.case_id)
                        ORDER BY 1 LIMIT :l"""
                ),
                {"c": collector_id, "r": RICH_EVERY, "l": limit},
            ).scalars()
        )
    mixed = [case_id for pair in zip(rich, ordinary, strict=False) for case_id in pair]
    found = mixed or rich or ordinary
    if not found:
        raise SystemExit(f"collector {collector_id} has no cases")
    return found


def callable_cases(engine: Engine, collector_id: int, limit: int) -> list[tuple[int, int]]:
    """(case, own phone) of the collector's cases a call may go to now: open, unflagged,
    no call in the last 24 hours, no long history; the debtor's first own phone."""
    s = f'"{SCHEMA}"'
    with engine.connect() as connection:
        found = connection.execute(
            text(
                f"""SELECT c.id, ph.id FROM {s}.assignments x
                    JOIN {s}.placements pl ON pl.id = x.placement_id AND pl.recalled_on IS NULL
                    JOIN {s}.cases c ON c.id = pl.case_id
                    JOIN {s}.debtors d ON d.id = c.debtor_id
                    JOIN LATERAL (SELECT id FROM {s}.contacts k
                                  WHERE k.debtor_id = c.debtor_id AND k.relation = 'self'
                                    AND k.kind = 'phone' AND NOT k.do_not_contact
                                  ORDER BY id LIMIT 1) ph ON true
                    WHERE x.collector_id = :c AND x.ended_at IS NULL
                      AND cardinality(c.flags) = 0 AND c.id % :r <> 0
                      AND c.status IN ('placed', 'in_progress', 'promised')
                      AND NOT d.do_not_contact
                      AND NOT EXISTS (SELECT 1 FROM {s}.contact_attempts a
                                      WHERE a.debtor_id = c.debtor_id
                                        AND a.attempted_at > now() - interval '24 hours')
                    ORDER BY c.id LIMIT :l"""
            ),
            {"c": collector_id, "r": RICH_EVERY, "l": limit},
        ).all()
    return [(row[0], row[1]) for row in found]


def pending_attempt(engine: Engine, case_id: int) -> int:
    with engine.connect() as connection:
        found = connection.execute(
            text(
                f'SELECT max(id) FROM "{SCHEMA}".contact_attempts'
                " WHERE case_id = :c AND status = 'pending'"
            ),
            {"c": case_id},
        ).scalar()
    if found is None:
        raise SystemExit(f"the call on case {case_id} left no pending attempt")
    return int(found)


# --- requests ------------------------------------------------------------------------------


def timed(
    client: Any, method: str, path: str, expect: tuple[int, ...] = (200,), **kwargs: Any
) -> tuple[float, Any]:
    """Milliseconds to answer (in this process: the server's time, no network), and the
    answer; any status not in ``expect`` ends the run."""
    started = time.perf_counter()
    answer = client.open(path, method=method, **kwargs)
    body = answer.get_data()
    elapsed = (time.perf_counter() - started) * 1000
    if answer.status_code not in expect or (answer.status_code == 200 and not body):
        raise SystemExit(f"{method} {path} answered {answer.status_code}: {body[:400]!r}")
    return elapsed, answer


@dataclasses.dataclass
class Measurement:
    label: str
    api_label: str
    #: One request (or the pair of a call and its outcome) of each side, n-th round.
    page: Callable[[int], float]
    api: Callable[[int], float]
    screen: bool = False
    #: The requests a side sums, one by one (name: milliseconds), where it sums several.
    parts: dict[str, list[float]] = dataclasses.field(default_factory=dict)


def next_case(me: Collector) -> Measurement:
    def page(n: int) -> float:
        ms, answer = timed(
            me.client,
            "POST",
            "/work/next",
            (302, 303),
            data={"next-csrf_token": me.csrf, "next-tenant": "", "next-collector": ""},
        )
        if "/cases/" not in answer.headers.get("Location", ""):
            raise SystemExit(f"Next case went to {answer.headers.get('Location')!r}")
        return ms

    def api(n: int) -> float:
        ms, answer = timed(me.client, "GET", "/api/v1/agency/queue?page_size=1")
        if not answer.json:
            raise SystemExit("the API's queue is empty")
        return ms

    return Measurement("Next case", "GET /api/v1/agency/queue?page_size=1", page, api)


def case_screen(me: Collector, case_ids: list[int]) -> Measurement:
    def page(n: int) -> float:
        case_id = case_ids[n % len(case_ids)]
        return timed(me.client, "GET", f"/work/{SLUG}/cases/{case_id}")[0]

    parts: dict[str, list[float]] = {"API case": [], "contacts": [], "attempts": []}

    def api(n: int) -> float:
        case_id = case_ids[n % len(case_ids)]
        base = f"/api/v1/tenants/{SLUG}/cases/{case_id}"
        paths = (base, f"{base}/contacts", f"{base}/attempts?page_size={TIMELINE_PAGE}")
        for times, path in zip(parts.values(), paths, strict=True):
            times.append(timed(me.client, "GET", path)[0])
        return sum(times[-1] for times in parts.values())

    return Measurement(
        "case screen",
        "GET case + contacts + attempts (3 calls)",
        page,
        api,
        screen=True,
        parts=parts,
    )


def call_with_outcome(me: Collector, engine: Engine, targets: list[tuple[int, int]]) -> Measurement:
    """Each round takes two fresh (case, phone) pairs: one for the page, one for the API."""
    headers = {"X-CSRFToken": me.csrf}
    parts: dict[str, list[float]] = {
        "page call": [],
        "page outcome": [],
        "API attempt": [],
        "API outcome": [],
    }

    def page(n: int) -> float:
        case_id, contact_id = targets[2 * n]
        base = f"/work/{SLUG}/cases/{case_id}"
        call_ms, answer = timed(
            me.client,
            "POST",
            f"{base}/call",
            (303,),
            data={"csrf_token": me.csrf, "contact_id": contact_id, "channel": "call_out"},
        )
        if "blocked=" in answer.headers.get("Location", ""):
            raise SystemExit(f"the gate blocked the call on case {case_id}")
        attempt_id = pending_attempt(engine, case_id)
        outcome_ms, _ = timed(
            me.client,
            "POST",
            f"{base}/attempts/{attempt_id}/outcome",
            (303,),
            data={
                "outcome-csrf_token": me.csrf,
                "outcome-code": "NO_ANSWER",
                "outcome-and_next": "y",
            },
        )
        # A browser follows the redirect and the next screen shows the flash; here the
        # flashes would pile up in the cookie every later request carries.
        with me.client.session_transaction() as session:
            session.pop("_flashes", None)
        parts["page call"].append(call_ms)
        parts["page outcome"].append(outcome_ms)
        return call_ms + outcome_ms

    def api(n: int) -> float:
        case_id, contact_id = targets[2 * n + 1]
        base = f"/api/v1/tenants/{SLUG}/cases/{case_id}/attempts"
        call_ms, answer = timed(
            me.client,
            "POST",
            base,
            (201,),
            json={"contact_id": contact_id, "channel": "call_out"},
            headers=headers,
        )
        if answer.json["status"] != "pending":
            raise SystemExit(f"the gate blocked the API's call on case {case_id}: {answer.json}")
        outcome_ms, _ = timed(
            me.client,
            "POST",
            f"{base}/{answer.json['id']}/outcome",
            json={"code": "NO_ANSWER"},
            headers=headers,
        )
        parts["API attempt"].append(call_ms)
        parts["API outcome"].append(outcome_ms)
        return call_ms + outcome_ms

    return Measurement("call + outcome", "POST attempts + POST outcome", page, api, parts=parts)


def measure(m: Measurement, requests: int, *, budget_s: float, first: int = 0) -> dict[str, list]:
    """Page and API alternately, ``requests`` each (who goes first swaps every round), or
    fewer (at least ``MIN_REQUESTS``) once the pair has taken ``budget_s`` seconds; round
    numbers start at ``first`` (the warm-up's are below it)."""
    times: dict[str, list[float]] = {"page": [], "api": []}
    started = time.perf_counter()
    for n in range(requests):
        if n >= MIN_REQUESTS and time.perf_counter() - started > budget_s:
            break
        sides = [("page", m.page), ("api", m.api)]
        for side, run in sides if n % 2 == 0 else reversed(sides):
            times[side].append(run(first + n))
    return times


# --- where the time goes (--profile) -------------------------------------------------------


def profile(engine: Engine, label: str, request: Callable[[], Any], top: int = 3) -> None:
    """One request: its statements by time, and the plans of the slowest reads."""
    with statement_log(engine) as found:
        started = time.perf_counter()
        request()
        total = (time.perf_counter() - started) * 1000
    spent = sum(ms for ms, _, _ in found)
    print(f"-- {label}: {total:.1f} ms, {len(found)} statements, {spent:.1f} ms in SQL")
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


def profile_all(me: Collector, engine: Engine, case_id: int, target: tuple[int, int]) -> None:
    print("== where the time goes: one request of each page ==")
    profile(
        engine,
        "POST /work/next",
        lambda: timed(
            me.client, "POST", "/work/next", (302, 303), data={"next-csrf_token": me.csrf}
        ),
    )
    profile(
        engine,
        f"GET /work/{SLUG}/cases/{case_id}",
        lambda: timed(me.client, "GET", f"/work/{SLUG}/cases/{case_id}"),
    )
    called, contact_id = target
    base = f"/work/{SLUG}/cases/{called}"
    profile(
        engine,
        f"POST {base}/call",
        lambda: timed(
            me.client,
            "POST",
            f"{base}/call",
            (303,),
            data={"csrf_token": me.csrf, "contact_id": contact_id, "channel": "call_out"},
        ),
    )
    attempt_id = pending_attempt(engine, called)
    profile(
        engine,
        f"POST {base}/attempts/<id>/outcome",
        lambda: timed(
            me.client,
            "POST",
            f"{base}/attempts/{attempt_id}/outcome",
            (303,),
            data={"outcome-csrf_token": me.csrf, "outcome-code": "NO_ANSWER"},
        ),
    )


# --- the run -------------------------------------------------------------------------------


def report(m: Measurement, times: dict[str, list[float]]) -> None:
    page50, page95 = percentile(times["page"], 50), percentile(times["page"], 95)
    api50, api95 = percentile(times["api"], 50), percentile(times["api"], 95)
    ratio = page95 / api95
    met = ratio <= GOAL_RATIO and (not m.screen or page95 < GOAL_SCREEN_P95_MS)
    print(
        f"{m.label:<16}{len(times['page']):>5}{page50:>9.1f}{page95:>9.1f}{api50:>9.1f}"
        f"{api95:>9.1f}{ratio:>9.2f}  {verdict(met):<8} vs {m.api_label}"
    )
    if m.parts:
        split = ", ".join(
            f"{name} {percentile(times, 50):.1f}/{percentile(times, 95):.1f}"
            for name, times in m.parts.items()
        )
        print(f"{'':<16}  by request, p50/p95 ms: {split}")


def command_line() -> Any:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument("--cases", type=int, default=None, help="default 1,000,000")
    arguments.add_argument("--collectors", type=int, default=None, help="default 500")
    arguments.add_argument("--requests", type=int, default=None, help="per side and page")
    arguments.add_argument(
        "--profile", action="store_true", help="statements and plans of one request per page"
    )
    arguments.add_argument(
        "--keep", action="store_true", help="leave the database of a finished run"
    )
    arguments.add_argument(
        "--reuse-database", metavar="URL", help="measure a database a --keep run left"
    )
    return arguments.parse_args()


def book_sizes(engine: Engine, collector_id: int) -> tuple[int, int, int]:
    """Cases, collectors, and the collector's open assignments."""
    with engine.connect() as connection:
        return (
            connection.execute(text(f'SELECT count(*) FROM "{SCHEMA}".cases')).scalar_one(),
            connection.execute(
                text("SELECT count(*) FROM platform.collector_profiles")
            ).scalar_one(),
            connection.execute(
                text(
                    f'SELECT count(*) FROM "{SCHEMA}".assignments'
                    " WHERE collector_id = :c AND ended_at IS NULL"
                ),
                {"c": collector_id},
            ).scalar_one(),
        )


def run(objects: Any, me: Collector, *, requests: int, budget_s: float, profiled: bool) -> None:
    """Measure the three, print the figures (and with ``profiled`` the statements)."""
    engine = objects.db.engine
    cases, people, mine = book_sizes(engine, me.user_id)
    heading(
        "workspace: the collector's pages against the JSON API, server time in-process"
        " (Flask test client)",
        machine=describe_machine(engine),
        cases=f"{cases:,} in tenant '{SLUG}', {people:,} collectors in {AGENCIES} agencies",
        collector=f"{me.email}, {mine:,} cases assigned",
        requests=f"{requests} per side and page (fewer, at least {MIN_REQUESTS}, once a"
        f" page's pair has taken {budget_s:.0f} s) after {WARM_UP} warm-up each, page"
        " and API alternating, one signed-in collector session for both",
    )
    # The calls: warm-up and measured rounds take two cases each, the profile one more.
    targets = callable_cases(engine, me.user_id, 2 * (WARM_UP + requests) + 1)
    rounds = (len(targets) - 1) // 2 - WARM_UP
    if rounds < MIN_REQUESTS:
        raise SystemExit(f"only {len(targets)} of the collector's cases may be called now")
    screens = screen_cases(engine, me.user_id)
    measurements = [
        (next_case(me), requests),
        (case_screen(me, screens), requests),
        (call_with_outcome(me, engine, targets), min(requests, rounds)),
    ]
    results = []
    for m, n in measurements:
        for warm in range(WARM_UP):
            m.page(warm)
            m.api(warm)
        for warm_up_times in m.parts.values():
            warm_up_times.clear()
        results.append((m, measure(m, n, budget_s=budget_s, first=WARM_UP)))
    print(
        f"{'measured':<16}{'n':>5}{'p50 ms':>9}{'p95 ms':>9}{'API p50':>9}{'API p95':>9}"
        f"{'p95/p95':>9}  goal: p95 <= {GOAL_RATIO}x API"
        f" (and < {GOAL_SCREEN_P95_MS:.0f} ms for the case screen)"
    )
    for m, measured in results:
        report(m, measured)
    if profiled:
        profile_all(me, engine, screens[0], targets[-1])


def main() -> None:
    options = command_line()
    count = options.cases or (20_000 if options.small else 1_000_000)
    collectors = options.collectors or (20 if options.small else 500)
    environment: Callable[[], Any]
    if options.reuse_database:

        def environment() -> Any:
            return existing_environment("workspace", options.reuse_database)
    else:

        def environment() -> Any:
            return bench_environment("workspace", keep=options.keep)

    with environment() as base:
        # One collector sends hundreds of requests a minute: the rate limits out of the way.
        settings = dataclasses.replace(
            base, rate_limit_api="1000000/minute", rate_limit_writes="1000000/minute"
        )
        app = create_app(settings)
        # One line per request on stderr would be most of what the run prints.
        logging.getLogger("recova.request").setLevel(logging.WARNING)
        objects = platform(app)
        engine = objects.db.engine
        if options.reuse_database:
            with engine.begin() as connection:
                upgrade_tenant_schema(connection, SCHEMA)
            keep_window_open(engine)
        else:
            migrate_shared(engine)
            build(objects, count, collectors)
        run(
            objects,
            signed_in_collector(objects, app),
            requests=options.requests or (15 if options.small else 60),
            budget_s=8.0 if options.small else 90.0,
            profiled=options.profile,
        )
        objects.db.dispose()


if __name__ == "__main__":
    main()
