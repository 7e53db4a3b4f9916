"""How long ``migrate_all`` takes when every tenant schema is already at head.

Set-up (not timed): one tenant is provisioned with ``provision_tenant``; the statements
that provisioning sent for its schema (CREATE SCHEMA, the tables, indexes and enum types
of the tenant migrations, Alembic's version table and its row) are recorded and replayed
for every other tenant, with the schema name changed, next to a real row in
``platform.tenants``. So every tenant has a real row and a real schema with its own
``alembic_version`` at head, as if each had been provisioned, only faster to set up.

Timed: ``migrate_all(engine, jobs=2)`` with nothing to apply. Baseline, in the same run:
the naive check of opening an Alembic ``MigrationContext`` per schema and reading its
current revision, over a sample of schemas, extrapolated to all of them.

    .venv/bin/python benchmarks/migrate_noop.py [--small] [--tenants N]
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from _common import bench_environment, describe_machine, heading, parser, verdict
from alembic.migration import MigrationContext
from sqlalchemy import Connection, Engine, event, insert, text

import recova.platform.entry.all_models  # noqa: F401 - registers every table on Base.metadata
from recova.platform.kernel.db import Database
from recova.tenants.migrate import head, migrate_all, migrate_shared
from recova.tenants.models import Tenant, TenantStatus
from recova.tenants.services import provision_tenant

GOAL_SECONDS = 10.0
GOAL_TENANTS = 1000
TEMPLATE_SLUG = "clonetemplate"
TEMPLATE_SCHEMA = "tenant_clonetemplate"
BATCH = 50  # cloned tenants per set-up transaction
REPEATS = 3


def provision_template(database: Database) -> list[str]:
    """Provision one tenant for real; return the statements that built its schema."""
    recorded: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        # Every schema-building statement is parameterless; the parameterised ones are
        # the tenant row and Alembic's catalog lookups, which a clone does not need.
        if not parameters and statement.lstrip().upper().startswith(("CREATE", "INSERT")):
            recorded.append(statement)

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
    assert all(TEMPLATE_SCHEMA in statement for statement in recorded)
    return recorded


def clone_tenants(engine: Engine, statements: list[str], slugs: list[str]) -> None:
    """Create a tenant row and a schema built by ``statements`` for every slug."""
    script = ";\n".join(statements)
    for start in range(0, len(slugs), BATCH):
        part = slugs[start : start + BATCH]
        with engine.begin() as connection:
            connection.execute(
                insert(Tenant),
                [
                    {
                        "slug": slug,
                        "name": f"Bench {slug}",
                        "schema_name": f"tenant_{slug}",
                        "status": TenantStatus.ACTIVE,
                        "jurisdiction": "CN",
                        "timezone": "Asia/Shanghai",
                        "currency": "CNY",
                        "settings": {},
                    }
                    for slug in part
                ],
            )
            # Without parameters psycopg sends the whole script in one round trip.
            with connection.connection.cursor() as cursor:
                for slug in part:
                    cursor.execute(script.replace(TEMPLATE_SCHEMA, f"tenant_{slug}"))


def check_setup(connection: Connection, count: int, tenant_head: str) -> None:
    """Every tenant row has a schema whose own version table holds exactly the head."""
    rows = connection.execute(
        text(
            "SELECT count(*) FROM platform.tenants t JOIN pg_namespace n"
            " ON n.nspname = t.schema_name JOIN pg_class c ON c.relnamespace = n.oid"
            " AND c.relname = 'alembic_version' AND c.relkind = 'r'"
        )
    ).scalar()
    assert rows == count, f"{rows} tenants with a version table, expected {count}"
    shapes = connection.execute(
        text(
            "SELECT DISTINCT count(*) FROM platform.tenants t JOIN pg_namespace n"
            " ON n.nspname = t.schema_name JOIN pg_class c ON c.relnamespace = n.oid"
            " GROUP BY t.id"
        )
    ).scalars()
    relations = list(shapes)
    assert len(relations) == 1, f"schemas differ in their number of relations: {relations}"
    schemas = connection.execute(text("SELECT schema_name FROM platform.tenants")).scalars()
    union = " UNION ALL ".join(
        f'SELECT version_num FROM "{schema}".alembic_version' for schema in schemas
    )
    versions = connection.execute(text(union)).scalars().all()
    assert len(versions) == count, len(versions)
    assert set(versions) == {tenant_head}, set(versions)


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
    with database.engine.connect() as connection:
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
