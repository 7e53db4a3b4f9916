"""The two Alembic histories and ``migrate_all``: heads, fresh installs, partial failure.

Tests that count tenants get a database of their own on the same server (created here,
dropped at the end), so other tests' tenants never change what ``migrate_all`` sees.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.orm import Session

from recova.tenants.migrate import (
    MIGRATIONS_DIR,
    alembic_config,
    downgrade_tenant_schema,
    head,
    migrate_all,
    migrate_shared,
    tenant_versions,
    upgrade_tenant_schema,
)
from recova.tenants.services import provision_tenant
from tests.support import recova
from tests.tenant_clone import clone_tenant

TENANT_TABLES = {"debtors", "contacts", "accounts", "cases"}
SHARED_TABLES = {"tenants", "users", "agencies", "alembic_version"}


@pytest.fixture
def engine(fresh_database: str) -> Iterator[Engine]:
    created = create_engine(fresh_database)
    yield created
    created.dispose()


@pytest.fixture
def shared_at_head(engine: Engine) -> None:
    """The fresh database with its shared schema at head (tenants can be provisioned)."""
    migrate_shared(engine)


def provision_many(engine: Engine, slugs: list[str]) -> list[str]:
    """Provision each slug in its own transaction; returns the schema names.

    The first through ``provision_tenant``, the others with the statements it sent
    (``tests.tenant_clone``): the same rows and schemas at head, only made faster, for
    the tests here are about what ``migrate_all`` does with many tenants.
    """
    schemas = []
    for n, slug in enumerate(slugs):
        with Session(engine) as session:
            tenant = (provision_tenant if n == 0 else clone_tenant)(
                session,
                slug=slug,
                name=f"Tenant {slug}",
                jurisdiction="US",
                timezone="America/New_York",
                currency="USD",
            )
            session.commit()
            schemas.append(tenant.schema_name)
    return schemas


def slugs_for(count: int) -> list[str]:
    prefix = f"m{secrets.token_hex(3)}"
    return [f"{prefix}-{n:03d}" for n in range(count)]


def versions(engine: Engine, schemas: list[str]) -> dict[str, str | None]:
    with engine.connect() as connection:
        return tenant_versions(connection, schemas)


def tables_in(engine: Engine, schema: str) -> set[str]:
    return set(inspect(engine).get_table_names(schema=schema))


# --- histories -----------------------------------------------------------------------------


@pytest.mark.parametrize("history", ["shared", "tenant"])
def test_each_history_has_exactly_one_head(history: str) -> None:
    script = ScriptDirectory.from_config(alembic_config(history))
    heads = script.get_heads()
    assert len(heads) == 1, heads
    assert heads == [head(history)]
    assert Path(script.dir) == MIGRATIONS_DIR / history
    # Walking down from the head reaches a single base: no branch is left dangling.
    walked = list(script.walk_revisions())
    assert [r.revision for r in walked if r.down_revision is None] == [walked[-1].revision]


# --- upgrade from empty --------------------------------------------------------------------


def test_upgrade_from_empty_database(engine: Engine) -> None:
    report = migrate_all(engine)
    assert report.results == []
    assert report.shared_head == head("shared")
    assert report.tenant_head == head("tenant")
    with engine.connect() as connection:
        version = connection.execute(text("SELECT version_num FROM platform.alembic_version"))
        assert version.scalars().all() == [head("shared")]
    assert tables_in(engine, "platform") >= SHARED_TABLES

    [slug] = slugs_for(1)
    [schema] = provision_many(engine, [slug])
    assert tables_in(engine, schema) >= TENANT_TABLES | {"alembic_version"}
    assert versions(engine, [schema]) == {schema: head("tenant")}

    with engine.begin() as connection:
        downgrade_tenant_schema(connection, schema)
    assert versions(engine, [schema]) == {schema: None}
    assert tables_in(engine, schema) == {"alembic_version"}
    with engine.connect() as connection:
        types = connection.execute(
            text(
                "SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace"
                " WHERE n.nspname = :schema AND t.typtype = 'e'"
            ),
            {"schema": schema},
        )
        assert types.scalars().all() == []  # the enum types went down with the tables

    with engine.begin() as connection:
        upgrade_tenant_schema(connection, schema)
    assert versions(engine, [schema]) == {schema: head("tenant")}
    assert tables_in(engine, schema) >= TENANT_TABLES

    again = migrate_all(engine)
    assert [(r.slug, r.ok, r.changed) for r in again.results] == [(slug, True, False)]


# --- many tenants, one broken --------------------------------------------------------------


@pytest.mark.usefixtures("shared_at_head")
def test_migrate_all_isolates_a_broken_tenant_and_converges(engine: Engine) -> None:
    slugs = slugs_for(50)
    schemas = provision_many(engine, slugs)
    # One transaction per schema: dropping 50 schemas' tables at once would need more
    # locks than a default max_locks_per_transaction allows.
    for schema in schemas:
        with engine.begin() as connection:
            downgrade_tenant_schema(connection, schema)
    assert set(versions(engine, schemas).values()) == {None}

    broken_slug, broken_schema = slugs[17], schemas[17]
    with engine.begin() as connection:
        connection.execute(text(f'CREATE TABLE "{broken_schema}".debtors (id int)'))

    report = migrate_all(engine, jobs=4)
    assert len(report.results) == 50
    assert [r.slug for r in report.failed] == [broken_slug]
    [failure] = report.failed
    assert failure.schema_name == broken_schema
    assert failure.before is None
    assert failure.after is None
    assert failure.error is not None
    assert "DuplicateTable" in failure.error
    assert '"debtors" already exists' in failure.error
    assert sorted(r.slug for r in report.upgraded) == sorted(set(slugs) - {broken_slug})
    assert all(r.after == head("tenant") for r in report.upgraded)

    after_first = versions(engine, schemas)
    assert after_first.pop(broken_schema) is None
    assert set(after_first.values()) == {head("tenant")}
    # The failed tenant's transaction rolled back as a whole: only the conflicting table.
    assert tables_in(engine, broken_schema) == {"alembic_version", "debtors"}

    with engine.begin() as connection:
        connection.execute(text(f'DROP TABLE "{broken_schema}".debtors'))

    second = migrate_all(engine, jobs=4)
    assert second.failed == []
    assert [r.slug for r in second.upgraded] == [broken_slug]
    assert set(versions(engine, schemas).values()) == {head("tenant")}
    assert tables_in(engine, broken_schema) >= TENANT_TABLES

    third = migrate_all(engine, jobs=4)
    assert third.failed == []
    assert third.upgraded == []
    assert len(third.results) == 50
    assert all(r.ok and r.before == r.after == head("tenant") for r in third.results)


@pytest.mark.usefixtures("shared_at_head")
def test_migrate_all_limited_to_named_tenants(engine: Engine) -> None:
    slugs = slugs_for(3)
    schemas = provision_many(engine, slugs)
    with engine.begin() as connection:
        for schema in schemas:
            downgrade_tenant_schema(connection, schema)

    report = migrate_all(engine, slugs=[slugs[1]])
    assert [(r.slug, r.changed) for r in report.results] == [(slugs[1], True)]
    assert versions(engine, schemas) == {
        schemas[0]: None,
        schemas[1]: head("tenant"),
        schemas[2]: None,
    }


# --- nothing to apply is cheap -------------------------------------------------------------


class StatementCounter:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.statements: list[str] = []

    def __call__(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.statements.append(statement)

    def __enter__(self) -> StatementCounter:
        self.statements.clear()
        event.listen(self.engine, "before_cursor_execute", self)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self)


@pytest.mark.usefixtures("shared_at_head")
def test_noop_run_does_not_grow_with_tenants(engine: Engine) -> None:
    slugs = slugs_for(30)
    schemas = provision_many(engine, slugs[:10])
    counter = StatementCounter(engine)
    with counter:
        small = migrate_all(engine, jobs=4)
    with_ten = list(counter.statements)
    assert len(small.results) == 10
    assert small.upgraded == []

    schemas += provision_many(engine, slugs[10:])
    with counter:
        large = migrate_all(engine, jobs=4)
    with_thirty = list(counter.statements)
    assert len(large.results) == 30
    assert large.upgraded == []
    assert large.failed == []

    assert len(with_thirty) == len(with_ten), (with_ten, with_thirty)
    # Versions are read in bulk: one statement names every tenant's version table ...
    reads = [s for s in with_thirty if f'"{schemas[-1]}".alembic_version' in s]
    assert len(reads) == 1
    assert all(f'"{schema}".alembic_version' in reads[0] for schema in schemas)
    # ... and no tenant gets an Alembic context (which would lock, check or touch its schema).
    assert not [s for s in with_thirty if s is not reads[0] and "tenant_" in s]


# --- the CLI -------------------------------------------------------------------------------


@pytest.mark.usefixtures("shared_at_head")
def test_cli_migrate_reports_failures_and_exit_status(
    engine: Engine, cli_env: dict[str, str]
) -> None:
    slugs = slugs_for(3)
    schemas = provision_many(engine, slugs)
    with engine.begin() as connection:
        for schema in schemas:
            downgrade_tenant_schema(connection, schema)
        connection.execute(text(f'CREATE TABLE "{schemas[0]}".debtors (id int)'))
    tenant_head = head("tenant")

    limited = recova(cli_env, "migrate", "--tenant", slugs[1])
    assert limited.exit_code == 0, limited.output
    assert f"upgraded {slugs[1]}" in limited.output
    assert slugs[0] not in limited.output
    assert slugs[2] not in limited.output
    assert "1 upgraded, 0 already current, 0 failed, of 1 tenants" in limited.output
    assert versions(engine, schemas) == {
        schemas[0]: None,
        schemas[1]: tenant_head,
        schemas[2]: None,
    }

    typo = recova(cli_env, "migrate", "--tenant", slugs[1] + "-typo")
    assert typo.exit_code == 1, typo.output
    assert f"FAILED   {slugs[1]}-typo" in typo.output
    assert "no such tenant" in typo.output

    failing = recova(cli_env, "migrate", "--jobs", "2")
    assert failing.exit_code == 1, failing.output
    assert f"shared schema at {head('shared')}; tenant head {tenant_head}" in failing.output
    [failed_line] = [line for line in failing.output.splitlines() if "FAILED" in line]
    assert slugs[0] in failed_line
    assert '"debtors" already exists' in failed_line
    assert f"upgraded {slugs[2]}" in failing.output
    assert "1 upgraded, 1 already current, 1 failed, of 3 tenants" in failing.output
    assert "Traceback" not in failing.output

    with engine.begin() as connection:
        connection.execute(text(f'DROP TABLE "{schemas[0]}".debtors'))
    repaired = recova(cli_env, "migrate")
    assert repaired.exit_code == 0, repaired.output
    assert "FAILED" not in repaired.output
    assert "1 upgraded, 2 already current, 0 failed, of 3 tenants" in repaired.output
    assert set(versions(engine, schemas).values()) == {tenant_head}


def test_cli_migrate_on_an_empty_database(engine: Engine, cli_env: dict[str, str]) -> None:
    result = recova(cli_env, "migrate")
    assert result.exit_code == 0, result.output
    assert "0 upgraded, 0 already current, 0 failed, of 0 tenants" in result.output
    assert tables_in(engine, "platform") >= SHARED_TABLES
