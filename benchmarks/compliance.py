"""Compliance gate: latency at 50 concurrent checks on mixed debtors, with real history.

A CN tenant holds ``--debtors`` debtors (default 10,000; ``--small``: 2,000), each with
an own phone, a registered third party and one placed case, and ``--attempts`` past
contact attempts (default 100,000; ``--small``: 20,000) over the ten days before the
checks. Four debtors in five carry an address region; the rest are placed by their
phone's region (the gate decrypts the number in memory).

``--threads`` threads (default 50), each with its own connection, run ``--checks``
checks each on random debtors: 70% calls to the own phone, 20% texts, 10% calls to the
third party. Three figures, each per call from the client's side:

(a) baseline: a bare indexed SELECT round trip on the attempts table (one debtor's
    latest attempt), same threads, same connections;
(b) the gate check: per-debtor advisory lock, case/debtor/contact load, the policy in
    force, all counts in one statement, the decision; rolled back (nothing recorded);
(c) a full attempt through ``attempt_contact``: (b) plus recording the attempt, the
    audit event (the tenant's chain lock) and the commit.

Goal: p99 of (b) <= 20 ms at 50 concurrent checks.

Each figure also prints its throughput. With ``--threads`` calls always in flight, the
mean latency is threads / throughput (Little's law), so the goal needs the harness to
complete more than 50 / 20 ms = 2,500 calls a second; the bare SELECT's figures in the
same run show what this machine's two cores allow for one round trip through the driver,
its tail included.

    .venv/bin/python benchmarks/compliance.py [--small] [--debtors N] [--attempts N]
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
import zoneinfo
from collections.abc import Callable
from typing import Any

from _common import bench_environment, describe_machine, heading, parser, percentile, verdict
from sqlalchemy import text
from sqlalchemy.orm import Session

from recova.platform.compliance.gate import Actor, attempt_contact, check_contact
from recova.platform.contact.models import Channel
from recova.platform.entry.app import create_app
from recova.platform.kernel.crypto import mask
from recova.platform.kernel.db import Database
from recova.platform.kernel.extension import Platform, platform
from recova.tenants.migrate import migrate_shared
from recova.tenants.models import Tenant
from recova.tenants.scope import tenant_scope
from recova.tenants.services import provision_tenant

GOAL_P99_MS = 20.0
AGENCY_ID = 1
REGIONS = ["北京", "上海", "广东", "浙江", "江苏", "四川", "湖北", "山东"]
#: Checks run at 14:00 in Shanghai: inside the window, so every rule is evaluated.
AT = dt.datetime(2026, 11, 25, 14, 0, tzinfo=zoneinfo.ZoneInfo("Asia/Shanghai"))


def seed(objects: Platform, schema: str, debtors: int, attempts: int) -> None:
    """Debtors, contacts, accounts, cases, placements and attempts, in bulk."""
    s = f'"{schema}"'
    cipher = objects.cipher
    with objects.db.engine.begin() as connection:
        connection.execute(
            text(
                f"""INSERT INTO {s}.debtors (external_id, full_name, region, do_not_contact)
                    SELECT 'D-' || n, 'Debtor ' || n,
                           CASE WHEN n % 5 = 0 THEN NULL
                                ELSE (CAST(:regions AS text[]))[1 + n % 8] END, false
                    FROM generate_series(1, :n) AS n"""
            ),
            {"n": debtors, "regions": REGIONS},
        )
        connection.execute(
            text(
                f"""INSERT INTO {s}.accounts (external_id, debtor_id, currency,
                        original_principal, outstanding_principal, outstanding_interest,
                        outstanding_fees, outstanding_penalties, due_date, days_past_due,
                        source_row)
                    SELECT 'L-' || id, id, 'CNY', 5000, 5000, 0, 0, 0, DATE '2026-08-01', 100,
                           '{{}}'::jsonb FROM {s}.debtors"""
            )
        )
        connection.execute(
            text(
                f"""INSERT INTO {s}.cases (account_id, debtor_id, status, flags, broken_promises)
                    SELECT id, debtor_id, 'placed',
                           CASE WHEN id % 50 = 0 THEN ARRAY['dispute']::varchar[]
                                ELSE '{{}}'::varchar[] END, 0
                    FROM {s}.accounts"""
            )
        )
        connection.execute(
            text(
                f"""INSERT INTO {s}.placements (case_id, agency_id, started_on, ends_on,
                        grace_days, balance_at_placement, currency)
                    SELECT id, :agency, DATE '2026-01-01', DATE '2099-01-01', 0, 5000, 'CNY'
                    FROM {s}.cases"""
            ),
            {"agency": AGENCY_ID},
        )
    rows = []
    for n in range(1, debtors + 1):
        for relation, number in (("self", f"+86138{n:08d}"), ("spouse", f"+86139{n:08d}")):
            rows.append(
                (
                    n,
                    "phone",
                    relation,
                    cipher.encrypt(number, context="contact.phone"),
                    cipher.blind_index(number, context="contact.phone"),
                    mask(number, keep_start=6),
                    False,
                )
            )
    raw = objects.db.engine.raw_connection()
    try:
        cursor = raw.cursor()
        columns = "debtor_id, kind, relation, value_ciphertext, value_index, value_masked"
        with cursor.copy(f"COPY {s}.contacts ({columns}, do_not_contact) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        # History: attempts over the ten days before the checks, mostly calls, most of
        # them unanswered, to the own phone (1 in 20 to the third party).
        cursor.execute(
            f"""INSERT INTO {s}.contact_attempts (case_id, debtor_id, contact_id, third_party,
                    channel, status, attempted_at, actor_kind, agency_id, user_id,
                    pack_version, local_timezone, result, completed_at)
                SELECT c.id, c.debtor_id, k.id, k.relation <> 'self',
                       CASE WHEN g.n %% 5 = 0 THEN 'sms' ELSE 'call_out' END,
                       'completed', g.at, 'agency', {AGENCY_ID}, 1, 'CN-2026',
                       'Asia/Shanghai',
                       (ARRAY['no_answer','no_answer','busy','connected','no_answer',
                              'delivered','failed'])[1 + g.n %% 7], g.at
                FROM (SELECT n, 1 + (n::bigint * 7919) %% %(debtors)s AS debtor,
                             %(at)s - make_interval(secs => (n::bigint * 104729) %% 864000)
                               AS at
                      FROM generate_series(1, %(attempts)s) AS n) g
                JOIN {s}.cases c ON c.debtor_id = g.debtor
                JOIN {s}.contacts k ON k.debtor_id = g.debtor
                     AND k.relation = CASE WHEN g.n %% 20 = 0 THEN 'spouse' ELSE 'self' END""",
            {"debtors": debtors, "attempts": attempts, "at": AT},
        )
        raw.commit()
    finally:
        raw.close()
    with objects.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        for table in ("debtors", "contacts", "accounts", "cases", "placements", "contact_attempts"):
            c.execute(text(f"VACUUM ANALYZE {s}.{table}"))


def targets(
    db: Database, schema: str, count: int, seed_value: int
) -> list[tuple[int, int, Channel]]:
    """``count`` random (case, contact, channel) picks over mixed debtors."""
    with db.engine.connect() as connection:
        rows = connection.execute(
            text(
                f'SELECT c.id, k.id, k.relation FROM "{schema}".cases c'
                f' JOIN "{schema}".contacts k ON k.debtor_id = c.debtor_id'
            )
        ).all()
    own = [(case, contact) for case, contact, relation in rows if relation == "self"]
    third = [(case, contact) for case, contact, relation in rows if relation != "self"]
    rng = random.Random(seed_value)
    picks = []
    for _ in range(count):
        roll = rng.random()
        if roll < 0.7:
            picks.append((*rng.choice(own), Channel.CALL_OUT))
        elif roll < 0.9:
            picks.append((*rng.choice(own), Channel.SMS))
        else:
            picks.append((*rng.choice(third), Channel.CALL_OUT))
    return picks


def concurrently(
    db: Database, tenant: Tenant, threads: int, each: int, work: Callable[..., None]
) -> tuple[list[float], float]:
    """Run ``work(session, pick)`` ``each`` times in each of ``threads`` threads, each on
    its own connection, all starting together; returns every call's seconds and the wall
    time from the start line to the last call's end."""
    picks = targets(db, tenant.schema_name, threads * each, 7)
    barrier = threading.Barrier(threads)
    timings: list[float] = []
    guard = threading.Lock()
    failures: list[BaseException] = []
    started_at: list[float] = []

    def run(worker: int) -> None:
        mine: list[float] = []
        try:
            with db.session() as warm:  # check the connection out before the start line
                warm.execute(text("SELECT 1"))
            barrier.wait()
            with guard:
                started_at.append(time.perf_counter())
            for n in range(each):
                pick = picks[worker * each + n]
                started = time.perf_counter()
                work(pick)
                mine.append(time.perf_counter() - started)
        except BaseException as exc:  # reported after the join
            failures.append(exc)
        with guard:
            timings.extend(mine)

    workers = [threading.Thread(target=run, args=(w,)) for w in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    wall = time.perf_counter() - min(started_at)
    if failures:
        raise SystemExit(f"{len(failures)} workers failed: {failures[0]!r}")
    return timings, wall


def report(label: str, measured: tuple[list[float], float]) -> tuple[float, float]:
    timings, wall = measured
    p50 = percentile(timings, 50) * 1000
    p99 = percentile(timings, 99) * 1000
    print(
        f"{label}: {len(timings):,} calls, p50 {p50:.2f} ms, p99 {p99:.2f} ms,"
        f" {len(timings) / wall:,.0f} calls/s"
    )
    return p50, p99


def main() -> None:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument("--debtors", type=int, default=None)
    arguments.add_argument("--attempts", type=int, default=None)
    arguments.add_argument("--threads", type=int, default=50)
    arguments.add_argument("--checks", type=int, default=None, help="checks per thread")
    options = arguments.parse_args()
    debtors = options.debtors or (2_000 if options.small else 10_000)
    history = options.attempts or (20_000 if options.small else 100_000)
    each = options.checks or (10 if options.small else 40)
    with bench_environment("compliance") as settings:
        app = create_app(settings)
        objects = platform(app)
        migrate_shared(objects.db.engine)
        with objects.db.session() as session:
            tenant = provision_tenant(
                session,
                slug="gate",
                name="Gate",
                jurisdiction="CN",
                timezone="Asia/Shanghai",
                currency="CNY",
            )
            session.commit()
            session.expunge(tenant)
        heading(
            "compliance gate: latency at concurrent checks on mixed debtors",
            machine=describe_machine(objects.db.engine),
            threads=options.threads,
            checks_per_thread=each,
            debtors=f"{debtors:,}",
            past_attempts=f"{history:,}",
        )
        started = time.perf_counter()
        seed(objects, tenant.schema_name, debtors, history)
        print(f"set-up: seeded in {time.perf_counter() - started:.1f} s (not timed)")
        db = Database(settings.database_url or "", pool_size=options.threads, max_overflow=0)
        s = f'"{tenant.schema_name}"'
        baseline = text(
            f"SELECT id FROM {s}.contact_attempts WHERE debtor_id = :d AND status <> 'blocked'"
            " ORDER BY attempted_at DESC LIMIT 1"
        )

        def bare(pick: tuple[int, int, Channel]) -> None:
            with db.engine.connect() as connection:
                connection.execute(baseline, {"d": pick[0]}).first()

        def check(pick: tuple[int, int, Channel]) -> None:
            with tenant_scope(tenant, db=db) as session:
                _check(session, objects, tenant, pick)
                session.rollback()

        def attempt(pick: tuple[int, int, Channel]) -> None:
            case_id, contact_id, channel = pick
            with tenant_scope(tenant, db=db) as session:
                made = attempt_contact(
                    session,
                    objects,
                    tenant=tenant,
                    case_id=case_id,
                    contact_id=contact_id,
                    channel=channel,
                    actor=Actor(kind="agency", agency_id=AGENCY_ID, user_id=1),
                    at=AT,
                )
                assert made is not None

        _, base_p99 = report("baseline, bare indexed SELECT", concurrently(
            db, tenant, options.threads, each, bare))  # fmt: skip
        gate_p50, gate_p99 = report("gate check (decision, nothing recorded)", concurrently(
            db, tenant, options.threads, each, check))  # fmt: skip
        _, full_p99 = report("full attempt (gate + record + audit event + commit)", concurrently(
            db, tenant, options.threads, each, attempt))  # fmt: skip
        with db.engine.connect() as connection:
            statuses = dict(
                connection.execute(
                    text(
                        f"SELECT status, count(*) FROM {s}.contact_attempts"
                        " WHERE attempted_at = :at GROUP BY status"
                    ),
                    {"at": AT},
                ).all()
            )
        print(f"full attempts recorded: {statuses}")
        print(f"ratio gate p99 / baseline p99: {gate_p99 / base_p99:.1f}x;"
              f" full attempt p99 / baseline p99: {full_p99 / base_p99:.1f}x")  # fmt: skip
        print(f"Little's law: {options.threads} in flight at a mean under {GOAL_P99_MS:.0f} ms"
              f" needs more than {options.threads / GOAL_P99_MS * 1000:,.0f} calls/s")  # fmt: skip
        print(f"goal gate p99 <= {GOAL_P99_MS:.0f} ms at {options.threads} concurrent checks:"
              f" {verdict(gate_p99 <= GOAL_P99_MS)} (p50 {gate_p50:.2f} ms)")  # fmt: skip
        db.dispose()
        objects.db.dispose()


def _check(session: Session, objects: Platform, tenant: Tenant, pick: Any) -> None:
    case_id, contact_id, channel = pick
    decision = check_contact(
        session,
        objects.cipher,
        tenant=tenant,
        case_id=case_id,
        contact_id=contact_id,
        channel=channel,
        agency_id=AGENCY_ID,
        at=AT,
    )
    assert decision is not None


if __name__ == "__main__":
    main()
