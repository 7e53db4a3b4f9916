"""How long ``migrate_all`` takes when every tenant schema is already at head.

Set-up (not timed): one tenant is provisioned with ``provision_tenant``; the statements
that provisioning sent for its schema (every one naming the schema except reads: CREATE
SCHEMA, the enum types, tables, indexes, trigger functions and triggers of the tenant
migrations, their ALTERs, Alembic's version table, its row and its updates) are recorded
as the server received them (psycopg's own rendering, ``ClientCursor.mogrify``) and
replayed verbatim, without parameters, for every other tenant, with the schema name
changed, next to a real row in ``platform.tenants``, one transaction per tenant. So every
tenant has a real row and a real schema with its own ``alembic_version`` at head, as if
each had been provisioned, only faster to set up; the script checks that every schema
matches the template's in the catalog (relations, columns, constraints, indexes,
triggers, function bodies, enum labels) and that a cloned trigger function runs.

Timed: ``migrate_all(engine, jobs=2)`` with nothing to apply. Baseline, in the same run:
the naive check of opening an Alembic ``MigrationContext`` per schema and reading its
current revision, over a sample of schemas, extrapolated to all of them.

    .venv/bin/python benchmarks/migrate_noop.py [--small] [--tenants N] [--sample N]
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from _common import bench_environment, describe_machine, heading, import_all_models, parser, verdict
from alembic.migration import MigrationContext
from sqlalchemy import Connection, Engine, event, insert, text
from sqlalchemy.exc import DBAPIError

from recova.platform.kernel.db import Database
from recova.tenants.migrate import head, migrate_all, migrate_shared
from recova.tenants.models import Tenant, TenantStatus
from recova.tenants.services import provision_tenant

import_all_models()  # every table on Base.metadata, as the app has them

GOAL_SECONDS = 10.0
GOAL_TENANTS = 1000
TEMPLATE_SLUG = "clonetemplate"
TEMPLATE_SCHEMA = "tenant_clonetemplate"
REPEATS = 3
CLONE_JOBS = 2  # connections cloning the template at once (set-up only)


def provision_template(database: Database) -> list[str]:
    """Provision one tenant for real; return the statements that built its schema, each
    exactly as the server received it."""
    recorded: list[str] = []
    elsewhere: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *rest: Any) -> None:
        _context, many = rest
        # Reads (Alembic's catalog look-ups, a data migration's SELECT) change nothing.
        if statement.lstrip().upper().startswith("SELECT"):
            return
        if TEMPLATE_SCHEMA not in statement:
            elsewhere.append(statement)
            return
        assert not many, statement
        # ``statement`` is SQLAlchemy's text for a pyformat driver: every literal ``%``
        # doubled (``%%``), as in the PL/pgSQL bodies' ``RAISE ... '%'`` and
        # ``format('%I')``; psycopg turns ``%%`` back into ``%`` (and binds parameters)
        # when it is given parameters, which SQLAlchemy always passes (``{}`` here).
        # Replayed verbatim without parameters, the doubled ``%%`` would reach the
        # server. So record what psycopg itself makes of the statement and its parameters.
        recorded.append(psycopg.ClientCursor(cursor.connection).mogrify(statement, parameters))

    event.listen(database.engine, "before_cursor_execute", record)
    session = database.session()
    try:
        provision_tenant(
            session,
            slug=TEMPLATE_SLUG,
            name="Clone template",
            jurisdiction="CN",
            timezone="Asia/Shanghai",
            currency="CNY",
        )
        session.commit()
    finally:
        session.close()
        event.remove(database.engine, "before_cursor_execute", record)
    assert recorded, "provisioning sent no schema statements"
    assert recorded[0] == f'CREATE SCHEMA "{TEMPLATE_SCHEMA}"', recorded[0]
    # The tenant row is the only write outside the schema; a clone writes its own.
    assert len(elsewhere) == 1, elsewhere
    assert elsewhere[0].startswith("INSERT INTO platform.tenants "), elsewhere[0]
    return recorded


def clone_tenants(engine: Engine, statements: list[str], slugs: list[str]) -> None:
    """Create a tenant row and a schema built by ``statements`` for every slug, one
    transaction each, as provisioning does (a schema takes some 660 locks until its
    commit, and the server's lock table, ``max_locks_per_transaction`` 64 x 100
    connections by default, holds only a few thousand for every session together), on
    ``CLONE_JOBS`` connections at once: the server's DDL work is what takes the time."""
    script = ";\n".join(statements)

    def clone(part: list[str]) -> None:
        with engine.connect() as connection:
            for slug in part:
                with connection.begin():
                    connection.execute(
                        insert(Tenant),
                        {
                            "slug": slug,
                            "name": f"Bench {slug}",
                            "schema_name": f"tenant_{slug}",
                            "status": TenantStatus.ACTIVE,
                            "jurisdiction": "CN",
                            "timezone": "Asia/Shanghai",
                            "currency": "CNY",
                            "settings": {},
                        },
                    )
                    # No parameters: psycopg sends the text as it is (no ``%``
                    # processing), the whole script in one round trip (simple protocol).
                    with connection.connection.cursor() as cursor:
                        cursor.execute(script.replace(TEMPLATE_SCHEMA, f"tenant_{slug}"))

    with ThreadPoolExecutor(CLONE_JOBS) as pool:
        # list(): a clone's exception is raised here.
        list(pool.map(clone, [slugs[job::CLONE_JOBS] for job in range(CLONE_JOBS)]))


# Everything a schema holds, one line per object, with the schema's own name blanked out:
# relations, columns and their types, constraints, indexes, triggers, functions (their
# bodies), enum types and their labels. Equal digests, equal schemas.
SCHEMA_DIGESTS = """
SELECT n.nspname, md5(string_agg(replace(o.item, n.nspname, '@'), chr(10) ORDER BY o.item))
FROM platform.tenants t JOIN pg_namespace n ON n.nspname = t.schema_name
JOIN (
    SELECT c.relnamespace AS ns, 'relation ' || c.relname || ' ' || c.relkind::text AS item
    FROM pg_class c
    UNION ALL
    SELECT c.relnamespace, 'column ' || c.relname || '.' || a.attname || ' '
        || format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull
        THEN ' not null' ELSE '' END || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE a.attnum > 0 AND NOT a.attisdropped
    UNION ALL
    SELECT connamespace, 'constraint ' || conname || ' ' || pg_get_constraintdef(oid)
    FROM pg_constraint
    UNION ALL
    SELECT c.relnamespace, 'index ' || pg_get_indexdef(x.indexrelid)
    FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid
    UNION ALL
    SELECT c.relnamespace, 'trigger ' || pg_get_triggerdef(g.oid)
    FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid WHERE NOT g.tgisinternal
    UNION ALL
    SELECT pronamespace, 'function ' || proname || ' ' || prosrc FROM pg_proc
    UNION ALL
    SELECT y.typnamespace, 'enum ' || y.typname || ' ' || string_agg(e.enumlabel, ','
        ORDER BY e.enumsortorder)
    FROM pg_type y JOIN pg_enum e ON e.enumtypid = y.oid GROUP BY y.typnamespace, y.typname
) o ON o.ns = n.oid
GROUP BY n.nspname
"""


def check_setup(connection: Connection, count: int, tenant_head: str) -> None:
    """Every tenant row has a schema identical to the template's (by the catalog), whose
    own version table holds exactly the head, and the cloned trigger functions work."""
    digests: dict[str, str] = dict(connection.execute(text(SCHEMA_DIGESTS)).all())
    assert len(digests) == count, f"{len(digests)} tenant schemas, expected {count}"
    template = digests[TEMPLATE_SCHEMA]
    differing = sorted(schema for schema, digest in digests.items() if digest != template)
    assert not differing, f"{len(differing)} schemas differ from the template: {differing[:3]}"
    union = " UNION ALL ".join(
        f'SELECT version_num FROM "{schema}".alembic_version' for schema in digests
    )
    versions = connection.execute(text(union)).scalars().all()
    assert len(versions) == count, len(versions)
    assert set(versions) == {tenant_head}, set(versions)
    # A cloned PL/pgSQL function, run: its RAISE formats the operation into the message.
    clone = max(digests)
    try:
        with connection.begin_nested():
            connection.execute(text(f'TRUNCATE "{clone}".audit_events'))
    except DBAPIError as exc:
        message = str(exc.orig)
    else:
        message = "TRUNCATE went through"
    assert "audit events are append-only: TRUNCATE refused" in message, message


def naive_current_revisions(engine: Engine, schemas: list[str]) -> dict[str, str | None]:
    """One Alembic context per schema, as a per-tenant loop would do it."""
    revisions: dict[str, str | None] = {}
    with engine.connect() as connection:
        for schema in schemas:
            context = MigrationContext.configure(connection, opts={"version_table_schema": schema})
            revisions[schema] = context.get_current_revision()
    return revisions


def timed_migrate_all(engine: Engine, count: int, tenant_head: str) -> float:
    started = time.perf_counter()
    report = migrate_all(engine, jobs=2)
    seconds = time.perf_counter() - started
    assert len(report.results) == count, len(report.results)
    assert not report.failed, report.failed[:3]
    assert not report.upgraded, report.upgraded[:3]
    assert all(r.after == tenant_head for r in report.results)
    return seconds


def set_up(database: Database, count: int, tenant_head: str) -> list[str]:
    """``count`` tenants at head (one provisioned, the rest cloned); their schema names."""
    started = time.perf_counter()
    statements = provision_template(database)
    clone_tenants(database.engine, statements, [f"bench{n:05d}" for n in range(count - 1)])
    with database.engine.begin() as connection:  # committed: ANALYZE's statistics stay
        check_setup(connection, count, tenant_head)
        connection.execute(text("ANALYZE pg_catalog.pg_class, pg_catalog.pg_namespace"))
        schemas = connection.execute(
            text("SELECT schema_name FROM platform.tenants ORDER BY slug")
        ).scalars()
        result = list(schemas)
    print(f"set-up (not timed): {time.perf_counter() - started:.1f} s")
    return result


def measure(
    engine: Engine, schemas: list[str], sample_size: int, tenant_head: str
) -> tuple[list[float], list[float]]:
    """Seconds of each ``migrate_all`` run, and of each extrapolated naive run."""
    count = len(schemas)
    step = count / sample_size
    sample = [schemas[int(i * step)] for i in range(sample_size)]  # spread over all
    # Warm-up of both, then alternate, so neither gets the colder caches.
    timed_migrate_all(engine, count, tenant_head)
    naive_current_revisions(engine, sample[:5])
    ours: list[float] = []
    naive: list[float] = []
    for _ in range(REPEATS):
        ours.append(timed_migrate_all(engine, count, tenant_head))
        began = time.perf_counter()
        revisions = naive_current_revisions(engine, sample)
        naive.append((time.perf_counter() - began) * count / sample_size)
        assert set(revisions.values()) == {tenant_head}, set(revisions.values())
    return ours, naive


def report(count: int, sample_size: int, ours: list[float], naive: list[float]) -> None:
    best, median = min(ours), statistics.median(ours)
    naive_median = statistics.median(naive)
    runs = ", ".join(f"{s:.3f}" for s in ours)
    print(f"recova migrate_all(engine, jobs=2), nothing to apply, {count} schemas:")
    print(f"  median {median:.3f} s   best {best:.3f} s   ({REPEATS} runs: {runs} s)")
    print(
        "baseline: one Alembic MigrationContext per schema reading its current revision,"
        f" {sample_size} schemas timed, extrapolated to {count}:"
    )
    print(f"  median {naive_median:.3f} s   ({naive_median / count * 1000:.2f} ms per schema)")
    print(f"speed-up baseline/recova: {naive_median / median:.1f}x (medians)")
    scaled = median * GOAL_TENANTS / count
    note = "" if count == GOAL_TENANTS else f" (scaled linearly to {GOAL_TENANTS})"
    print(
        f"goal: <= {GOAL_SECONDS:.0f} s for {GOAL_TENANTS:,} schemas on 2 cores"
        f" -> {scaled:.3f} s{note}: {verdict(scaled <= GOAL_SECONDS)}"
    )
    print(
        "reference (not measured here): django-tenants report: ~12 minutes for"
        " ~900 tenants with nothing to apply"
    )


def main() -> None:
    args_parser = parser(__doc__.splitlines()[0])
    args_parser.add_argument("--tenants", type=int, help="how many tenants (default 1000)")
    args_parser.add_argument(
        "--sample", type=int, help="schemas the naive baseline reads (default 100)"
    )
    args = args_parser.parse_args()
    count = args.tenants or (100 if args.small else GOAL_TENANTS)
    sample_size = min(count, args.sample or (20 if args.small else 100))

    with bench_environment("migrate") as settings:
        assert settings.database_url is not None
        database = Database(settings.database_url)
        try:
            migrate_shared(database.engine)
            tenant_head = head("tenant")
            heading(
                "migrate_noop",
                tenants=f"{count} schemas at tenant head {tenant_head}",
                machine=describe_machine(database.engine),
            )
            schemas = set_up(database, count, tenant_head)
            ours, naive = measure(database.engine, schemas, sample_size, tenant_head)
            report(count, sample_size, ours, naive)
        finally:
            database.dispose()


if __name__ == "__main__":
    main()
