"""Running the two Alembic histories: the shared schema, and every tenant schema.

``migrate_all`` upgrades the shared schema first, then every tenant schema in parallel,
each in its own transaction and connection, and reports one result per tenant, so one
failing tenant never blocks the others and a re-run converges. Deciding what to do is
one bulk query over all version tables, so a run with nothing to apply opens no Alembic
context at all.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.pool import NullPool

from recova.platform.kernel.config import Settings
from recova.platform.kernel.db import SHARED_SCHEMA, TENANT_PLACEHOLDER, Base, quote_identifier
from recova.platform.kernel.embedded import with_embedded_services
from recova.tenants.slugs import SCHEMA_PATTERN, schema_name_for

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
VERSION_TABLE = "alembic_version"
_local = threading.local()
# Alembic installs the running context as module globals (``alembic.context``, ``alembic.op``),
# so two migrations running at once in one process would drive each other's connections.
# Every programmatic run holds this lock; tenants still get their own connection and
# transaction, but their DDL runs one at a time within a process.
_alembic_lock = threading.Lock()


@cache
def script_directory(history: str) -> ScriptDirectory:
    """The parsed revision scripts of ``history`` (``shared`` or ``tenant``), loaded once."""
    return ScriptDirectory.from_config(alembic_config(history))


def alembic_config(history: str) -> Config:
    """An Alembic ``Config`` for one history, as the CLI would build it."""
    config = Config(str(MIGRATIONS_DIR / "alembic.ini"), ini_section=history)
    config.set_main_option("script_location", str(MIGRATIONS_DIR / history))
    return config


def head(history: str) -> str:
    """The single head revision of a history (Alembic raises if there are several)."""
    revision = script_directory(history).get_current_head()
    if revision is None:
        raise RuntimeError(f"the {history} migration history is empty")
    return revision


def current_tenant_schema() -> str:
    """The real schema a tenant migration is running in, for raw SQL in revision scripts."""
    schema = getattr(_local, "tenant_schema", None)
    if schema is None:
        raise RuntimeError("not inside a tenant migration")
    return schema


# --- Alembic environments (called from migrations/*/env.py) ---------------------------


def _include_schema(schema: str) -> Callable[..., bool]:
    def include_object(obj: Any, name: str, type_: str, reflected: bool, compare_to: Any) -> bool:
        table = obj if type_ == "table" else getattr(obj, "table", None)
        if table is None or getattr(table, "schema", None) is None:
            return True
        return table.schema == schema

    return include_object


def _connection_from_cli(context: Any) -> Connection:
    settings = with_embedded_services(Settings.from_env())
    assert settings.database_url is not None
    engine = create_engine(settings.database_url, hide_parameters=True)
    return engine.connect()


def run_shared_environment(context: Any) -> None:
    """Env body for the shared history: the ``platform`` schema and its version table."""

    connection = context.config.attributes.get("connection") or _connection_from_cli(context)
    connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {quote_identifier(SHARED_SCHEMA)}"))
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table_schema=SHARED_SCHEMA,
        include_schemas=True,
        include_object=_include_schema(SHARED_SCHEMA),
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    if "connection" not in context.config.attributes:
        connection.commit()


def run_tenant_environment(context: Any) -> None:
    """Env body for the tenant history, run inside one tenant's schema."""

    attributes = context.config.attributes
    schema = attributes.get("tenant_schema")
    connection = attributes.get("connection")
    if schema is None:
        slug = context.get_x_argument(as_dictionary=True).get("tenant")
        if not slug:
            raise RuntimeError("name the tenant: alembic -n tenant -x tenant=SLUG ...")
        schema = schema_name_for(slug)
    own_connection = connection is None
    if own_connection:
        connection = _connection_from_cli(context)
    # Execution options change a Connection in place: restore the caller's map afterwards,
    # since provisioning runs on the request's own connection.
    previous_map = connection.get_execution_options().get("schema_translate_map")
    connection.execution_options(schema_translate_map={TENANT_PLACEHOLDER: schema})
    _local.tenant_schema = schema
    try:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            version_table_schema=schema,
            include_schemas=True,
            include_object=_include_schema(TENANT_PLACEHOLDER),
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        if own_connection:
            connection.commit()
    finally:
        _local.tenant_schema = None
        connection.execution_options(schema_translate_map=previous_map)


# --- programmatic upgrades --------------------------------------------------------------


def _run(
    history: str,
    connection: Connection,
    destination: str,
    *,
    downgrade: bool = False,
    **attributes: Any,
) -> None:
    config = alembic_config(history)
    config.attributes["connection"] = connection
    config.attributes.update(attributes)
    script = script_directory(history)
    env = run_shared_environment if history == "shared" else run_tenant_environment

    def step(rev: Any, context: Any) -> Any:
        if downgrade:
            return script._downgrade_revs(destination, rev)
        return script._upgrade_revs(destination, rev)

    with (
        _alembic_lock,
        EnvironmentContext(config, script, fn=step, destination_rev=destination) as context,
    ):
        env(context)


def upgrade_shared(connection: Connection) -> None:
    """Bring the shared schema to head on ``connection`` (the caller commits)."""
    _run("shared", connection, "head")


def upgrade_tenant_schema(connection: Connection, schema_name: str, to: str = "head") -> None:
    """Bring one tenant schema to ``to`` on ``connection`` (the caller commits)."""
    _run("tenant", connection, to, tenant_schema=schema_name)


def downgrade_tenant_schema(connection: Connection, schema_name: str, to: str = "base") -> None:
    """Take one tenant schema down to ``to`` (used for repairs and by the tests)."""
    _run("tenant", connection, to, downgrade=True, tenant_schema=schema_name)


def tenant_versions(connection: Connection, schema_names: Iterable[str]) -> dict[str, str | None]:
    """Each schema's tenant-history version, read in bulk (None: no version table or empty)."""
    wanted = list(schema_names)
    if not wanted:
        return {}
    with_tables = set(
        connection.execute(
            text(
                "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE c.relname = :table AND c.relkind = 'r' AND n.nspname = ANY(:schemas)"
            ),
            {"table": VERSION_TABLE, "schemas": wanted},
        ).scalars()
    )
    versions: dict[str, str | None] = dict.fromkeys(wanted)
    ordered = sorted(with_tables)
    chunk = 500  # keeps each statement a reasonable size
    for start in range(0, len(ordered), chunk):
        part = ordered[start : start + chunk]
        union = " UNION ALL ".join(_version_select(schema) for schema in part)
        for schema, version in connection.execute(text(union)):
            versions[schema] = version
    return versions


def _version_select(schema: str) -> str:
    """One branch of the bulk version query; the schema name is checked, then quoted."""
    literal = _literal(schema)
    table = f"{quote_identifier(schema)}.{VERSION_TABLE}"
    return f"SELECT {literal} AS schema_name, version_num FROM {table}"  # noqa: S608


def _literal(schema: str) -> str:
    if not SCHEMA_PATTERN.fullmatch(schema):
        raise ValueError(f"unsafe schema name {schema!r}")
    return f"'{schema}'"


@dataclass(frozen=True)
class TenantMigrationResult:
    """What ``migrate`` did to one tenant schema."""

    slug: str
    schema_name: str
    before: str | None
    after: str | None
    ok: bool
    error: str | None = None
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return self.before != self.after


@dataclass(frozen=True)
class MigrationReport:
    """The outcome of one ``migrate`` run."""

    shared_head: str
    tenant_head: str
    results: list[TenantMigrationResult]

    @property
    def failed(self) -> list[TenantMigrationResult]:
        return [r for r in self.results if not r.ok]

    @property
    def upgraded(self) -> list[TenantMigrationResult]:
        return [r for r in self.results if r.ok and r.changed]


def migrate_shared(engine: Engine) -> None:
    """Upgrade the shared schema to head, serialised across processes by an advisory lock."""
    with engine.begin() as connection:
        connection.execute(text("SELECT pg_advisory_xact_lock(hashtext('recova:migrate:shared'))"))
        upgrade_shared(connection)


def migrate_all(
    engine: Engine, *, slugs: list[str] | None = None, jobs: int = 4
) -> MigrationReport:
    """Upgrade the shared schema, then every (or the named) tenant schema, in parallel.

    Tenants that are behind are upgraded by ``jobs`` worker processes, each with its own
    connection and one transaction per tenant. Processes, not threads: Alembic keeps the
    running migration in module globals, so one process runs one migration at a time.
    """
    migrate_shared(engine)
    tenant_head = head("tenant")
    with engine.connect() as connection:
        query = f"SELECT slug, schema_name FROM {SHARED_SCHEMA}.tenants"  # noqa: S608 - constant
        params: dict[str, Any] = {}
        if slugs:
            query += " WHERE slug = ANY(:slugs)"
            params["slugs"] = slugs
        tenants = list(connection.execute(text(query + " ORDER BY slug"), params))
        versions = tenant_versions(connection, [schema for _, schema in tenants])
    results: list[TenantMigrationResult] = []
    known = {slug for slug, _ in tenants}
    for missing in sorted(set(slugs or ()) - known):
        results.append(
            TenantMigrationResult(missing, "", None, None, False, error="no such tenant")
        )
    behind: list[tuple[str, str, str | None]] = []
    for slug, schema in tenants:
        if versions[schema] == tenant_head:
            results.append(TenantMigrationResult(slug, schema, tenant_head, tenant_head, True))
        else:
            behind.append((slug, schema, versions[schema]))

    workers = min(max(1, jobs), len(behind))
    if workers > 1:
        url = engine.url.render_as_string(hide_password=False)
        with ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_migration_worker,
            initargs=(url,),
        ) as pool:
            results.extend(pool.map(_upgrade_in_worker, behind))
    else:
        results.extend(_upgrade_tenant(engine, *item) for item in behind)
    results.sort(key=lambda r: r.slug)
    return MigrationReport(head("shared"), tenant_head, results)


def _upgrade_tenant(
    engine: Engine, slug: str, schema: str, before: str | None
) -> TenantMigrationResult:
    """Upgrade one tenant schema in its own transaction; report instead of raising."""
    started = time.perf_counter()
    try:
        with engine.connect() as connection, connection.begin():
            connection.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                {"key": f"recova:migrate:{schema}"},
            )
            upgrade_tenant_schema(connection, schema)
    except Exception as exc:  # reported per tenant; the others go on
        return TenantMigrationResult(
            slug,
            schema,
            before,
            before,
            False,
            error=f"{type(exc).__name__}: {exc}".splitlines()[0],
            seconds=time.perf_counter() - started,
        )
    return TenantMigrationResult(
        slug, schema, before, head("tenant"), True, seconds=time.perf_counter() - started
    )


_worker_engine: Engine | None = None


def _start_migration_worker(url: str) -> None:
    global _worker_engine  # noqa: PLW0603 - one engine per migration worker process
    _worker_engine = create_engine(url, poolclass=NullPool, hide_parameters=True)


def _upgrade_in_worker(item: tuple[str, str, str | None]) -> TenantMigrationResult:
    assert _worker_engine is not None
    return _upgrade_tenant(_worker_engine, *item)
