"""The full daily allocation run over a million open cases, against a round-robin UPDATE.

(a) Recova: ``run_allocation`` for one tenant with 1,000,000 open cases (``--small``:
    50,000), 10 agencies under contract, 500 collectors with profiles and an active
    strategy splitting every segment evenly across the agencies: segment (buckets and
    transitions), score (six components, stored with the score), recall, place and
    assign, each step one transaction with its checkpoint.
(b) The baseline, in the same run: one ``UPDATE ... FROM`` that hands the same cases to
    the same collectors round-robin, on a plain copy of the case ids without indexes.

(c) The write floor, in the same run: the rows the run stored (bucket transitions, case
    segments, scores with their components, placements, assignments), copied table by
    table with one ``INSERT ... SELECT`` each into empty tables made ``LIKE ... INCLUDING
    ALL`` plus the originals' foreign keys (so their keys, indexes, checks and reference
    checks), and the run's change of every case's status, as one ``UPDATE`` of a copy of
    the cases table: a lower bound on storing what the run produces, before any of it is
    computed.

Set-up is bulk SQL (``INSERT ... SELECT generate_series``), not ingestion: debtors with a
language and a region, accounts with a due date 1-400 days back and a balance, one own
phone contact for four debtors in five, and the open cases.

    .venv/bin/python benchmarks/allocate.py [--small] [--cases N]
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from _common import bench_environment, copy_into_twin, describe_machine, heading, parser, verdict
from sqlalchemy import Engine, text

from recova.platform.allocation.services import allocation_summary, run_allocation
from recova.platform.allocation.strategies import create_strategy
from recova.platform.entry.app import create_app
from recova.platform.kernel.extension import platform
from recova.tenants.migrate import migrate_shared
from recova.tenants.scope import tenant_scope
from recova.tenants.services import provision_tenant

GOAL_SECONDS = 30.0
AGENCIES = 10
COLLECTORS = 500
AS_OF = dt.date(2031, 3, 1)


def seed_platform(engine: Engine, tenant_id: int) -> list[int]:
    """Agencies with contracts, and collectors with memberships and profiles, in bulk."""
    with engine.begin() as connection:
        agency_ids = list(
            connection.execute(
                text(
                    "INSERT INTO platform.agencies (slug, name, status)"
                    " SELECT 'bench-agency-' || n, 'Agency ' || n, 'active'"
                    " FROM generate_series(1, :n) n RETURNING id"
                ),
                {"n": AGENCIES},
            ).scalars()
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
                   SELECT id,
                          CASE WHEN (k / :agencies) % 5 = 0 THEN '{en}'::varchar[]
                               ELSE '{zh}' END,
                          '{}', :max_cases, true
                   FROM numbered"""
            ),
            {"n": COLLECTORS, "agencies": AGENCIES, "max_cases": 2_500},
        )
    return agency_ids


def seed_cases(engine: Engine, schema: str, count: int, *, as_of: dt.date = AS_OF) -> None:
    """Debtors, phone contacts, accounts (due 1-400 days before ``as_of``) and open cases
    with INSERT ... SELECT."""
    s = f'"{schema}"'
    with engine.begin() as connection:
        connection.execute(
            text(
                f"""INSERT INTO {s}.debtors (id, external_id, full_name, language, region)
                    SELECT n, 'D-' || n, 'Debtor ' || n,
                           CASE WHEN n % 5 = 0 THEN 'en' ELSE 'zh' END,
                           'R' || (n % 30)
                    FROM generate_series(1, :n) n"""
            ),
            {"n": count},
        )
        connection.execute(
            text(
                f"""INSERT INTO {s}.contacts (debtor_id, kind, relation, value_ciphertext,
                                              value_index, value_masked)
                    SELECT n, 'phone', 'self', '\\x00'::bytea,
                           decode(md5(n::text) || md5(n::text), 'hex'), '138****0000'
                    FROM generate_series(1, :n) n WHERE n % 5 <> 0"""
            ),
            {"n": count},
        )
        connection.execute(
            text(
                f"""INSERT INTO {s}.accounts (id, external_id, debtor_id, product, currency,
                        original_principal, outstanding_principal, outstanding_interest,
                        outstanding_fees, outstanding_penalties, due_date, days_past_due,
                        source_row)
                    SELECT n, 'L-' || n, n, CASE WHEN n % 3 = 0 THEN 'card' ELSE 'cash' END,
                           'CNY', b, b, round(b * 0.05, 2), 0, 0,
                           CAST(:as_of AS date) - (1 + (n::bigint * 7919) % 400)::int,
                           (1 + (n::bigint * 7919) % 400)::int, '{{}}'::jsonb
                    FROM (SELECT n, (100 + (n::bigint * 104729) % 49900)::numeric(20, 4) AS b
                          FROM generate_series(1, :n) n) g"""
            ),
            {"n": count, "as_of": as_of},
        )
        connection.execute(
            text(
                f"""INSERT INTO {s}.cases (id, account_id, debtor_id, status, flags,
                                           broken_promises)
                    SELECT n, n, n, 'new', '{{}}', (n % 7 = 0)::int
                    FROM generate_series(1, :n) n"""
            ),
            {"n": count},
        )
        for table in ("debtors", "accounts", "cases"):
            connection.execute(
                text(f"SELECT setval(pg_get_serial_sequence('{s}.{table}', 'id'), :n)"),
                {"n": count},
            )
    with engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT")
        connection.execute(text("VACUUM ANALYZE"))


def baseline_round_robin(engine: Engine, schema: str) -> float:
    """Time one UPDATE ... FROM giving every case a collector round-robin."""
    with engine.begin() as connection:
        connection.execute(
            text(
                f"CREATE TABLE public.bench_assign AS SELECT id AS case_id,"
                f' NULL::int AS collector_id FROM "{schema}".cases'
            )
        )
        connection.execute(
            text(
                "CREATE TABLE public.bench_collectors AS SELECT user_id,"
                " row_number() OVER (ORDER BY user_id) - 1 AS k"
                " FROM platform.collector_profiles"
            )
        )
        connection.execute(text("ANALYZE public.bench_assign"))
        connection.execute(text("ANALYZE public.bench_collectors"))
    started = time.perf_counter()
    with engine.begin() as connection:
        connection.execute(
            text(
                """UPDATE public.bench_assign b SET collector_id = c.user_id
                   FROM (SELECT case_id, row_number() OVER (ORDER BY case_id) AS rn
                         FROM public.bench_assign) r
                   JOIN public.bench_collectors c
                     ON c.k = r.rn % (SELECT count(*) FROM public.bench_collectors)
                   WHERE b.case_id = r.case_id"""
            )
        )
    return time.perf_counter() - started


#: What a first daily run stores, row for row with the open cases.
WRITTEN_TABLES = ("bucket_transitions", "case_segments", "case_scores", "placements", "assignments")


def write_floor(engine: Engine, schema: str) -> dict[str, tuple[int, float]]:
    """Each written table's rows copied into an empty twin with the same keys, indexes,
    checks and foreign keys, and every case's status changed on a copy of the cases:
    step -> (rows, seconds)."""
    floor = {table: copy_into_twin(engine, schema, table) for table in WRITTEN_TABLES}
    with engine.begin() as connection:
        connection.execute(
            text(f'CREATE TABLE public.bench_floor_cases (LIKE "{schema}".cases INCLUDING ALL)')
        )
        connection.execute(
            text(f'INSERT INTO public.bench_floor_cases SELECT * FROM "{schema}".cases')
        )
        connection.execute(text("UPDATE public.bench_floor_cases SET status = 'new'"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE public.bench_floor_cases"))
    started = time.perf_counter()
    with engine.begin() as connection:
        rows = connection.execute(
            text("UPDATE public.bench_floor_cases SET status = 'placed'")
        ).rowcount
    floor["cases (status)"] = (rows, time.perf_counter() - started)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE public.bench_floor_cases"))
    return floor


def even_strategy(objects: Any, tenant_id: int, agency_ids: list[int]) -> None:
    """The active strategy: every segment split evenly across the agencies."""
    share = f"{100 / AGENCIES:.4f}"
    with tenant_scope("bench", db=objects.db) as scoped:
        create_strategy(
            scoped,
            tenant_id=tenant_id,
            name="even",
            policy={
                "segments": {
                    "*": {
                        "mode": "split",
                        "agencies": [{"agency_id": a, "share": share} for a in agency_ids],
                    }
                }
            },
            effective_from=dt.date(2020, 1, 1),
            activate=True,
        )


def report_floor(floor: dict[str, tuple[int, float]], run_seconds: float, goal: float) -> None:
    total = sum(seconds for _, seconds in floor.values())
    print(
        "write floor, the rows the run stored copied into empty twins:"
        f" {total:.1f} s ({total / run_seconds:.0%} of the run, {total / goal:.0%} of the goal)"
    )
    for table, (rows, seconds) in floor.items():
        print(f"  {table:<18} {rows:>9,} rows {seconds:6.1f} s")


def main() -> None:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument("--cases", type=int, default=None)
    options = arguments.parse_args()
    count = options.cases or (50_000 if options.small else 1_000_000)
    with bench_environment("allocate") as settings:
        app = create_app(settings)
        objects = platform(app)
        engine = objects.db.engine
        migrate_shared(engine)
        with objects.db.session() as session:
            tenant = provision_tenant(
                session,
                slug="bench",
                name="Bench",
                jurisdiction="CN",
                timezone="Asia/Shanghai",
                currency="CNY",
            )
            session.commit()
            tenant_id, schema = tenant.id, tenant.schema_name
        heading(
            "allocate: the full daily run against a round-robin UPDATE",
            machine=describe_machine(engine),
            open_cases=f"{count:,}",
            agencies=AGENCIES,
            collectors=COLLECTORS,
        )
        started = time.perf_counter()
        agency_ids = seed_platform(engine, tenant_id)
        seed_cases(engine, schema, count)
        even_strategy(objects, tenant_id, agency_ids)
        print(f"set-up (bulk SQL, not timed): {time.perf_counter() - started:.1f} s")

        steps: dict[str, float] = {}
        last = [time.perf_counter()]

        def lap(step: str, done: int, total: int) -> None:
            now = time.perf_counter()
            steps[step] = now - last[0]
            last[0] = now

        started = time.perf_counter()
        result = run_allocation(objects.db, tenant="bench", as_of=AS_OF, on_progress=lap)
        recova_seconds = time.perf_counter() - started
        with tenant_scope("bench", db=objects.db) as scoped:
            summary = allocation_summary(scoped)
        if summary.placed != count or summary.assigned != count:
            raise SystemExit(f"the run did not place and assign every case: {summary.line()}")
        started = time.perf_counter()
        again = run_allocation(objects.db, tenant="bench", as_of=AS_OF)
        rerun_seconds = time.perf_counter() - started
        if again.counts["place"]["placed"] or again.counts["assign"]["assigned"]:
            raise SystemExit(f"the second run changed something: {again.counts}")

        floor = write_floor(engine, schema)
        baseline = baseline_round_robin(engine, schema)
        print(f"result: {summary.line()}")
        for step, seconds in steps.items():
            print(f"  {step:<8} {seconds:6.1f} s  {result.counts.get(step, {})}")
        print(f"full daily run (segment, score, recall, place, assign): {recova_seconds:.1f} s")
        print(f"second run, same day (changes nothing): {rerun_seconds:.1f} s")
        print(f"baseline, one round-robin UPDATE ... FROM: {baseline:.1f} s")
        print(f"ratio: {recova_seconds / baseline:.1f}x the baseline")
        report_floor(floor, recova_seconds, GOAL_SECONDS * count / 1_000_000)
        goal = GOAL_SECONDS * count / 1_000_000
        met = verdict(recova_seconds <= goal)
        print(f"goal <= {goal:.0f} s for {count:,} cases on 2 cores: {met}")
        objects.db.dispose()


if __name__ == "__main__":
    main()
