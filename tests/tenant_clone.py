"""Tenants for tests that need one of their own, built by replaying real provisioning.

``provision_tenant`` runs the whole tenant migration history through Alembic for every
tenant, and the suite creates hundreds of them as fixtures. ``clone_tenant`` does what it
does in the same transaction, only faster: once per process, one tenant is provisioned
for real (in a transaction that is then rolled back) while every statement it sends for
its schema is recorded (CREATE SCHEMA, the tables, indexes, types, functions and
triggers of the tenant migrations, Alembic's version table and its row); each clone
adds its row to ``platform.tenants`` and sends those statements, with the schema name
changed, in the caller's transaction. ``check_clone`` compares a clone's catalog with a
schema built by ``provision_tenant``.

Tests of provisioning and of the migrations themselves call ``provision_tenant`` (or the
API and CLI) and never this.
"""

from __future__ import annotations

import functools
import secrets
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from recova.tenants.models import Tenant, TenantStatus
from recova.tenants.services import provision_tenant
from recova.tenants.slugs import schema_name_for

#: The template's slug: distinctive, so its schema name appears in nothing but its DDL.
TEMPLATE_SLUG = "zzclonetemplate"
TEMPLATE_SCHEMA = schema_name_for(TEMPLATE_SLUG)

Statement = tuple[str, Any]


@functools.cache
def _recorded(url: str) -> tuple[Statement, ...]:
    """What provisioning sends to build a tenant schema (provisioned, then rolled back)."""
    engine = create_engine(url, poolclass=NullPool)
    recorded: list[Statement] = []
    started = False

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        nonlocal started
        started = started or statement.startswith(f'CREATE SCHEMA "{TEMPLATE_SCHEMA}"')
        if started and not statement.lstrip().upper().startswith("SELECT"):
            recorded.append((statement, parameters))

    try:
        with engine.connect() as connection:
            event.listen(connection, "before_cursor_execute", record)
            with Session(bind=connection) as session:
                provision_tenant(
                    session,
                    slug=TEMPLATE_SLUG,
                    name="Clone template",
                    jurisdiction="CN",
                    timezone="Asia/Shanghai",
                    currency="CNY",
                )
                session.rollback()
    finally:
        engine.dispose()
    assert recorded, "provisioning sent no schema statements"
    assert recorded[0][0] == f'CREATE SCHEMA "{TEMPLATE_SCHEMA}"', recorded[0]
    strays = [s for s, _ in recorded if TEMPLATE_SCHEMA not in s]
    assert not strays, f"provisioning statements that name no schema: {strays[:3]}"
    return tuple(recorded)


def _renamed(value: Any, schema: str) -> Any:
    if isinstance(value, str):
        return value.replace(TEMPLATE_SCHEMA, schema)
    if isinstance(value, dict):
        return {key: _renamed(item, schema) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_renamed(item, schema) for item in value)
    return value


def record_provisioning(engine: Engine) -> None:
    """Record the template for ``engine``'s database now (the app fixture does, before
    any test runs in a rolled-back transaction, where a connection of its own is refused)."""
    _recorded(engine.url.render_as_string(hide_password=False))


def replay_schema(connection: Connection, schema: str) -> None:
    """Build ``schema`` as provisioning would, in ``connection``'s transaction."""
    url = connection.engine.url.render_as_string(hide_password=False)
    cursor = connection.connection.cursor()
    try:
        for statement, parameters in _recorded(url):
            cursor.execute(_renamed(statement, schema), _renamed(parameters, schema))
    finally:
        cursor.close()


def clone_tenant(
    session: Session,
    *,
    slug: str,
    name: str,
    jurisdiction: str,
    timezone: str,
    currency: str,
    settings: dict[str, Any] | None = None,
) -> Tenant:
    """``provision_tenant`` for fixtures: the tenant row and its schema, in the session's
    transaction, without the checks of input a test fixture never gets wrong."""
    tenant = Tenant(
        slug=slug,
        name=name,
        schema_name=schema_name_for(slug),
        status=TenantStatus.ACTIVE,
        jurisdiction=jurisdiction,
        timezone=timezone,
        currency=currency,
        settings=settings or {},
    )
    session.add(tenant)
    session.flush()
    replay_schema(session.connection(), tenant.schema_name)
    return tenant


CATALOG = text(
    """
    SELECT 'relation', concat_ws(':', c.relname, c.relkind, c.relpersistence)
      FROM pg_class c WHERE c.relnamespace = to_regnamespace(:schema)
    UNION ALL
    SELECT 'column', concat_ws(':', c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
                               a.attnotnull, pg_get_expr(d.adbin, d.adrelid))
      FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
      LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE c.relnamespace = to_regnamespace(:schema) AND a.attnum > 0 AND NOT a.attisdropped
    UNION ALL
    SELECT 'constraint', concat_ws(':', conname, pg_get_constraintdef(oid))
      FROM pg_constraint WHERE connamespace = to_regnamespace(:schema)
    UNION ALL
    SELECT 'index', indexdef FROM pg_indexes WHERE schemaname = :schema
    UNION ALL
    SELECT 'trigger', concat_ws(':', t.tgname, pg_get_triggerdef(t.oid))
      FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
     WHERE c.relnamespace = to_regnamespace(:schema) AND NOT t.tgisinternal
    UNION ALL
    SELECT 'function', concat_ws(':', p.proname, pg_get_functiondef(p.oid))
      FROM pg_proc p WHERE p.pronamespace = to_regnamespace(:schema)
    UNION ALL
    SELECT 'type', concat_ws(':', t.typname, t.typtype,
             (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
                FROM pg_enum e WHERE e.enumtypid = t.oid))
      FROM pg_type t WHERE t.typnamespace = to_regnamespace(:schema)
    UNION ALL
    SELECT 'privilege', concat_ws(':', c.relname, c.relacl)
      FROM pg_class c WHERE c.relnamespace = to_regnamespace(:schema)
    UNION ALL
    SELECT 'sequence', concat_ws(':', sequencename, data_type, start_value, increment_by)
      FROM pg_sequences WHERE schemaname = :schema
    """
)


def catalog(connection: Connection, schema: str) -> list[tuple[str, str]]:
    """Everything of a schema's catalog a clone must share with a provisioned schema, with
    the schema's own name taken out."""
    rows = connection.execute(CATALOG, {"schema": schema}).all()
    version = connection.exec_driver_sql(
        f'SELECT version_num FROM "{schema}".alembic_version'
    ).scalars()
    named = [(kind, value.replace(schema, "<schema>")) for kind, value in rows]
    return sorted(named + [("version", v) for v in version])


def check_clone(session: Session) -> None:
    """A clone's catalog equals that of a tenant provisioned for real (both rolled back)."""
    tag = secrets.token_hex(4)
    real = provision_tenant(
        session,
        slug=f"zzreal{tag}",
        name="Real",
        jurisdiction="CN",
        timezone="Asia/Shanghai",
        currency="CNY",
    )
    cloned = clone_tenant(
        session,
        slug=f"zzclone{tag}",
        name="Clone",
        jurisdiction="CN",
        timezone="Asia/Shanghai",
        currency="CNY",
    )
    connection = session.connection()
    expected = catalog(connection, real.schema_name)
    got = catalog(connection, cloned.schema_name)
    assert expected, "the provisioned schema has no catalog entries"
    assert got == expected, sorted(set(got) ^ set(expected))[:20]
