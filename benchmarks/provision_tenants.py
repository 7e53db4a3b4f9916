"""How long provisioning one tenant takes: row, schema and the whole tenant migration.

Each tenant is provisioned with ``recova.tenants.services.provision_tenant`` in its own
session and committed, as ``POST /api/v1/platform/tenants`` does. The baseline, measured
in the same run and interleaved with it, creates the same tables in a fresh schema
without Alembic: ``CREATE SCHEMA`` plus ``Base.metadata.create_all`` restricted to the
tenant tables on a connection whose ``schema_translate_map`` points at the new schema,
also one transaction per schema.

    .venv/bin/python benchmarks/provision_tenants.py [--small] [--tenants N]
"""

from __future__ import annotations

import time

from _common import (
    bench_environment,
    describe_machine,
    heading,
    mean,
    parser,
    percentile,
    verdict,
)
from sqlalchemy import Connection, Table, text

import recova.platform.entry.all_models  # noqa: F401 - registers every table on Base.metadata
from recova.platform.kernel.db import TENANT_PLACEHOLDER, Base, Database
from recova.tenants.migrate import migrate_shared
from recova.tenants.services import provision_tenant

GOAL_MS = 150.0
BASELINE_PREFIX = "bench_baseline_"
TENANT_TABLES: list[Table] = [
    t for t in Base.metadata.sorted_tables if t.schema == TENANT_PLACEHOLDER
]


def provision_with_recova(database: Database, slug: str) -> float:
    """Provision one tenant the way the API does; returns seconds, commit included."""
    started = time.perf_counter()
    session = database.session()
    try:
        provision_tenant(
            session,
            slug=slug,
            name=f"Bench {slug}",
            jurisdiction="CN",
            timezone="Asia/Shanghai",
            currency="CNY",
        )
        session.commit()
    finally:
        session.close()
    return time.perf_counter() - started


def create_with_metadata(database: Database, schema: str) -> float:
    """The baseline: CREATE SCHEMA + create_all of the tenant tables, one transaction."""
    started = time.perf_counter()
    with database.engine.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        scoped = connection.execution_options(schema_translate_map={TENANT_PLACEHOLDER: schema})
        # Table by table: a metadata-wide create_all would also emit the shared schema's
        # enum types. Each table creates the enum types its columns use.
        for table in TENANT_TABLES:
            table.create(scoped, checkfirst=False)
    return time.perf_counter() - started


def catalog_shape(connection: Connection, schema: str) -> set[tuple[str, str]]:
    """The relations and types a schema holds, by name and kind."""
    rows = connection.execute(
        text(
            "SELECT c.relname, c.relkind::text FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = :schema"
            " UNION ALL SELECT t.typname, 'type' FROM pg_type t"
            " JOIN pg_namespace n ON n.oid = t.typnamespace"
            " WHERE n.nspname = :schema AND t.typtype = 'e'"
        ),
        {"schema": schema},
    )
    return {(name, kind) for name, kind in rows}


def report(label: str, unit: str, seconds: list[float]) -> tuple[float, float]:
    ms = [s * 1000 for s in seconds]
    average, p95 = mean(ms), percentile(ms, 95)
    print(f"{label}")
    print(f"  mean {average:7.1f} ms/{unit}   p95 {p95:7.1f} ms/{unit}   max {max(ms):7.1f} ms")
    return average, p95


def main() -> None:
    args_parser = parser(__doc__.splitlines()[0])
    args_parser.add_argument("--tenants", type=int, help="how many tenants (default 200; 20 small)")
    args = args_parser.parse_args()
    count = args.tenants or (20 if args.small else 200)

    with bench_environment("provision") as settings:
        assert settings.database_url is not None
        database = Database(settings.database_url)
        try:
            migrate_shared(database.engine)
            heading(
                "provision_tenants",
                tenants=f"{count} measured (+1 warm-up of each kind, not counted)",
                machine=describe_machine(database.engine),
            )
            # Warm-up: the first call parses the migration scripts and fills caches.
            cold_recova = provision_with_recova(database, "warmup")
            cold_baseline = create_with_metadata(database, BASELINE_PREFIX + "warmup")

            recova_times: list[float] = []
            baseline_times: list[float] = []
            # Interleaved, alternating which goes first, so both see the same catalog size
            # (it grows with every schema) and the same background noise.
            for n in range(count):
                slug, schema = f"bench-{n:05d}", f"{BASELINE_PREFIX}{n:05d}"
                if n % 2 == 0:
                    recova_times.append(provision_with_recova(database, slug))
                    baseline_times.append(create_with_metadata(database, schema))
                else:
                    baseline_times.append(create_with_metadata(database, schema))
                    recova_times.append(provision_with_recova(database, slug))

            with database.engine.connect() as connection:
                recova_shape = catalog_shape(connection, "tenant_bench_00000")
                baseline_shape = catalog_shape(connection, BASELINE_PREFIX + "00000")
                tenants = connection.execute(text("SELECT count(*) FROM platform.tenants")).scalar()
            assert tenants == count + 1, tenants
            extra = sorted(recova_shape - baseline_shape)
            missing = sorted(baseline_shape - recova_shape)
            assert not missing, f"recova schemas lack {missing}"

            r_mean, r_p95 = report(
                "recova provision_tenant (validation + tenant row + CREATE SCHEMA"
                " + Alembic upgrade to head), own session + commit:",
                "tenant",
                recova_times,
            )
            b_mean, b_p95 = report(
                "baseline CREATE SCHEMA + the tenant tables of Base.metadata (Table.create)"
                " via schema_translate_map, own transaction + commit:",
                "schema",
                baseline_times,
            )
            print(
                f"  warm-up (first call in the process): recova {cold_recova * 1000:.1f} ms,"
                f" baseline {cold_baseline * 1000:.1f} ms"
            )
            print(
                "  recova schemas hold the same relations and types as the baseline's, plus "
                + ", ".join(f"{name} ({kind})" for name, kind in extra)
            )
            print(f"ratio recova/baseline: mean {r_mean / b_mean:.2f}x   p95 {r_p95 / b_p95:.2f}x")
            print(
                f"goal: <= {GOAL_MS:.0f} ms per tenant, including migrations"
                f" -> mean {r_mean:.1f} ms: {verdict(r_mean <= GOAL_MS)},"
                f" p95 {r_p95:.1f} ms: {verdict(r_p95 <= GOAL_MS)}"
            )
        finally:
            database.dispose()


if __name__ == "__main__":
    main()
