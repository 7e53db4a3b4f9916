"""The ``recova`` command against a database of its own: tenants create, list, disable; keys.

Each test gets an empty database on the test server (dropped at the end) and runs the
real command through click's ``CliRunner`` with the environment a deployment would set.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from click.testing import Result
from sqlalchemy import create_engine, text

from recova.tenants.migrate import head, tenant_versions
from tests.support import recova


def create(env: dict[str, str], slug: str, **options: str) -> Result:
    values = {
        "name": f"Tenant {slug}",
        "jurisdiction": "CN",
        "timezone": "Asia/Shanghai",
        "currency": "CNY",
    }
    values.update(options)
    args = ["tenants", "create", slug]
    for option, value in values.items():
        args += [f"--{option}", value]
    return recova(env, *args)


def query(database_url: str, sql: str, **params: Any) -> list[Any]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(text(sql), params))
    finally:
        engine.dispose()


def assert_clean_error(result: Result, message: str) -> None:
    """A refused command: non-zero exit, click's one-line error, no traceback."""
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert f"Error: {message}" in result.output
    assert "Traceback" not in result.output


def test_create_list_disable(cli_env: dict[str, str], fresh_database: str) -> None:
    created = create(cli_env, "north-bank", name="North Bank")
    assert created.exit_code == 0, created.output
    assert created.output.strip() == "created tenant north-bank in schema tenant_north_bank"

    second = create(
        cli_env, "westlend", jurisdiction="US", timezone="America/Denver", currency="USD"
    )
    assert second.exit_code == 0, second.output

    rows = query(
        fresh_database,
        "SELECT slug, schema_name, status::text FROM platform.tenants ORDER BY slug",
    )
    assert [tuple(row) for row in rows] == [
        ("north-bank", "tenant_north_bank", "active"),
        ("westlend", "tenant_westlend", "active"),
    ]
    engine = create_engine(fresh_database)
    try:
        with engine.connect() as connection:
            versions = tenant_versions(connection, ["tenant_north_bank", "tenant_westlend"])
    finally:
        engine.dispose()
    assert set(versions.values()) == {head("tenant")}

    listed = recova(cli_env, "tenants", "list")
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert lines[-1] == "2 tenants"
    north = next(line for line in lines if line.startswith("north-bank "))
    assert north.split() == [
        "north-bank",
        "tenant_north_bank",
        "active",
        "CN",
        "CNY",
        "Asia/Shanghai",
    ]
    west = next(line for line in lines if line.startswith("westlend "))
    assert west.split() == ["westlend", "tenant_westlend", "active", "US", "USD", "America/Denver"]

    disabled = recova(cli_env, "tenants", "disable", "north-bank")
    assert disabled.exit_code == 0, disabled.output
    assert disabled.output.strip() == "disabled tenant north-bank"
    [row] = query(
        fresh_database,
        "SELECT status::text, disabled_at IS NOT NULL FROM platform.tenants WHERE slug = :s",
        s="north-bank",
    )
    assert tuple(row) == ("disabled", True)

    relisted = recova(cli_env, "tenants", "list")
    assert relisted.exit_code == 0
    statuses = {line.split()[0]: line.split()[2] for line in relisted.output.splitlines()[:-1]}
    assert statuses == {"north-bank": "disabled", "westlend": "active"}


@pytest.mark.parametrize(
    ("slug", "message"),
    [
        pytest.param("x'; drop schema platform cascade; --", "contains a quote", id="quote"),
        pytest.param('acme"', "contains a quote", id="double-quote"),
        pytest.param("pg_catalog", "starts with pg_", id="pg-prefix"),
        pytest.param("Acme", "must be lowercase", id="uppercase"),
        pytest.param("acme bank", "may hold only lowercase letters", id="space"),
        pytest.param("a" * 57, "gives a schema name of 64 bytes", id="too-long"),
    ],
)
def test_create_refuses_hostile_slug_cleanly(
    cli_env: dict[str, str], fresh_database: str, slug: str, message: str
) -> None:
    result = create(cli_env, slug)
    assert_clean_error(result, f"slug {slug!r}")
    assert message in result.output
    assert query(fresh_database, "SELECT count(*) FROM platform.tenants")[0][0] == 0
    schemas = query(fresh_database, "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'tenant%'")
    assert schemas == []


def test_create_refuses_duplicates_and_bad_fields_cleanly(cli_env: dict[str, str]) -> None:
    assert create(cli_env, "acme").exit_code == 0
    assert_clean_error(create(cli_env, "acme"), "tenant 'acme' already exists")
    assert_clean_error(
        create(cli_env, "ACME"), "slug 'ACME' differs only in case from existing tenant 'acme'"
    )
    assert_clean_error(
        create(cli_env, "zeta", timezone="Mars/Olympus"), "timezone 'Mars/Olympus' is not an IANA"
    )
    assert_clean_error(create(cli_env, "zeta", currency="yen"), "currency 'yen' must be")
    bad_choice = create(cli_env, "zeta", jurisdiction="UK")
    assert bad_choice.exit_code == 2  # click's usage error, before any database work
    assert "'UK' is not one of 'CN', 'US'" in bad_choice.output
    listed = recova(cli_env, "tenants", "list")
    assert listed.output.splitlines()[-1] == "1 tenants"


def test_disable_unknown_tenant_is_a_clean_error(cli_env: dict[str, str]) -> None:
    assert create(cli_env, "acme").exit_code == 0
    assert_clean_error(recova(cli_env, "tenants", "disable", "nobody"), "no tenant 'nobody'")


def test_keys_prints_two_fresh_variables() -> None:
    first = recova({}, "keys")
    second = recova({}, "keys")
    assert first.exit_code == 0, first.output
    values = dict(line.split("=", 1) for line in first.output.splitlines())
    assert set(values) == {"SECRET_KEY", "RECOVA_DATA_KEY"}
    assert len(first.output.splitlines()) == 2
    assert len(values["SECRET_KEY"]) >= 32
    assert len(base64.urlsafe_b64decode(values["RECOVA_DATA_KEY"])) == 32
    assert first.output != second.output
