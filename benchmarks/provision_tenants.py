"""How long provisioning one tenant takes: row, schema and the whole tenant migration.

Each tenant is provisioned with ``recova.tenants.services.provision_tenant`` in its own
session and committed, as ``POST /api/v1/platform/tenants`` does. The baseline, measured
in the same run and interleaved with it, creates the same tables in a fresh schema
without Alembic: ``CREATE SCHEMA``, then the enum types, tables and indexes of the tenant
tables of ``Base.metadata`` on a connection whose ``schema_translate_map`` points at the
new schema, also one transaction per schema.

    .venv/bin/python benchmarks/provision_tenants.py [--small] [--tenants N]
"""

from __future__ import annotations

import time

from _common import (
    bench_environment,
    describe_machine,
    heading,
    import_all_models,
    mean,
    parser,
    percentile,
    verdict,
)
from sqlalchemy import Connection, Enum, Table, text
from sqlalchemy.schema import CreateIndex, CreateTable

from recova.platform.kernel.db import TENANT_PLACEHOLDER, Base, Database
from recova.tenants.migrate import migrate_shared
from recova.tenants.services import provision_tenant

import_all_models()  # the baseline creates every tenant table of Base.metadata

GOAL_MS = 150.0
BASELINE_PREFIX = "bench_baseline_"
TENANT_TABLES: list[Table] = [
    t for t in Base.metadata.sorted_tables if t.schema == TENANT_PLACEHOLDER
]


def _tenant_enum_types() -> list[Enum]:
    """The named enum types the tenant tables use, each once (by name), in table order.

    Several models declare their own ``Enum`` object for one type (``feed_kind`` is on
    two tables), so ``Table.create`` table by table would create such a type twice."""
    seen: dict[str, Enum] = {}
    for table in TENANT_TABLES:
        for column in table.columns:
            if isinstance(column.type, Enum) and column.type.native_enum:
                assert column.type.name is not None, (table.name, column.name)
                seen.setdefault(column.type.name, column.type)
    return list(seen.values())


TENANT_ENUM_TYPES = _tenant_enum_types()


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
    """The baseline: CREATE SCHEMA + the tenant tables' DDL, one transaction."""
    started = time.perf_counter()
    with database.engine.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        scoped = connection.execution_options(schema_translate_map={TENANT_PLACEHOLDER: schema})
        # What Table.create emits, without its per-table enum events: a metadata-wide
        # create_all would also emit the shared schema's enum types, and table by table
        # an enum type two tables use would be created twice. So each type once, then
        # every table with its indexes; no catalog look-ups (checkfirst) on either side.
        for enum_type in TENANT_ENUM_TYPES:
            enum_type.create(scoped, checkfirst=False)
        for table in TENANT_TABLES:
            scoped.execute(CreateTable(table))
            for index in sorted(table.indexes, key=lambda i: str(i.name)):
                scoped.execute(CreateIndex(index))
    return time.perf_counter() - started


def catalog_shape(connection: Connection, schema: str) -> set[tuple[str, str]]:
    """The relations and types a schema holds, by name and kind; indexes by what they
    index (table, uniqueness, method and keys), since a model may name one differently
    from the migration that creates it."""
    rows = connection.execute(
        text(
            "SELECT c.relname::text, c.relkind::text FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = :schema AND c.relkind <> 'i'"
            " UNION ALL SELECT t.typname::text, 'type' FROM pg_type t"
            " JOIN pg_namespace n ON n.oid = t.typnamespace"
            " WHERE n.nspname = :schema AND t.typtype = 'e'"
            # A partial index's predicate names the schema (a cast to its enum type).
            " UNION ALL SELECT tc.relname || CASE WHEN x.indisunique THEN ' unique' ELSE '' END"
            " || replace(substring(pg_get_indexdef(x.indexrelid) from ' USING .*$'),"
            " quote_ident(n.nspname) || '.', ''), 'index'"
            " FROM pg_index x JOIN pg_class tc ON tc.oid = x.indrelid"
            " JOIN pg_namespace n ON n.oid = tc.relnamespace WHERE n.nspname = :schema"
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
                "baseline CREATE SCHEMA + the tenant tables of Base.metadata (their enum"
                " types, tables and indexes) via schema_translate_map, own transaction"
                " + commit:",
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
