"""Provisioning tenants: hostile slugs are refused, success is complete, failure leaves nothing.

Everything runs against the real database: provisioning is DDL plus the tenant migration
history, committed for real, so each test works under its own unique slugs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event, text

from recova.platform.auth.models import Role
from recova.platform.auth.services import create_user
from recova.platform.kernel.db import Database
from recova.platform.kernel.extension import platform
from recova.tenants.migrate import head, tenant_versions
from recova.tenants.services import TenantConflict, TenantError, provision_tenant
from tests.support import PASSWORD, Caller, World, bearer, login, unique

TENANTS = "/api/v1/platform/tenants"
TENANT_TABLES = {"debtors", "contacts", "accounts", "cases", "alembic_version"}
MAX_SLUG = 63 - len("tenant_")  # the longest slug whose schema name PostgreSQL keeps whole

HOSTILE_SLUGS = [
    pytest.param("acme'x", "contains a quote or statement character", id="single-quote"),
    pytest.param('acme"x', "contains a quote or statement character", id="double-quote"),
    pytest.param("a'; drop schema platform cascade; --", "contains a quote", id="injection"),
    pytest.param("acme;x", "contains a quote or statement character", id="semicolon"),
    pytest.param("acme\\x", "contains a quote or statement character", id="backslash"),
    pytest.param("acme\x00x", "contains a quote or statement character", id="nul"),
    pytest.param("pg_catalog", "starts with pg_, reserved by PostgreSQL", id="pg_catalog"),
    pytest.param("pg-x", "starts with pg_, reserved by PostgreSQL", id="pg-hyphen"),
    pytest.param("PG_toast", "starts with pg_, reserved by PostgreSQL", id="pg-upper"),
    pytest.param("a" * (MAX_SLUG + 1), "gives a schema name of 64 bytes", id="too-long"),
    pytest.param("a" + "é" * 28, "gives a schema name of 64 bytes", id="too-many-bytes"),
    pytest.param("NoSuchTenantUpper", "must be lowercase", id="uppercase"),
    pytest.param("acme corp", "may hold only lowercase letters", id="space"),
    pytest.param("acme\n", "may hold only lowercase letters", id="newline"),
    pytest.param("acmé", "may hold only lowercase letters", id="unicode-letter"),
    pytest.param("租户", "may hold only lowercase letters", id="unicode-cjk"),
    pytest.param("acme\ud800", "may hold only lowercase letters", id="lone-surrogate"),
    pytest.param("acme_x", "may hold only lowercase letters", id="underscore"),
    pytest.param("1acme", "must start with a letter", id="leading-digit"),
    pytest.param("acme--x", "single hyphens", id="double-hyphen"),
    pytest.param("acme-", "single hyphens", id="trailing-hyphen"),
    pytest.param("", "slug is empty", id="empty"),
]


def tenant_fields(slug: str, **overrides: Any) -> dict[str, Any]:
    fields = {
        "slug": slug,
        "name": f"Tenant {slug}",
        "jurisdiction": "CN",
        "timezone": "Asia/Shanghai",
        "currency": "CNY",
    }
    fields.update(overrides)
    return fields


def provision(db: Database, slug: str, **overrides: Any) -> str:
    """Provision and commit a tenant; returns its schema name."""
    with db.session() as session:
        tenant = provision_tenant(session, **tenant_fields(slug, **overrides))
        session.commit()
        return tenant.schema_name


def schema_exists(db: Database, schema: str) -> bool:
    with db.engine.connect() as connection:
        return (
            connection.execute(
                text("SELECT 1 FROM pg_namespace WHERE nspname = :schema"), {"schema": schema}
            ).first()
            is not None
        )


def schema_tables(db: Database, schema: str) -> set[str]:
    with db.engine.connect() as connection:
        return set(
            connection.execute(
                text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s"),
                {"s": schema},
            ).scalars()
        )


def tenant_row(db: Database, slug: str) -> Any:
    with db.engine.connect() as connection:
        return connection.execute(
            text("SELECT slug, schema_name, status FROM platform.tenants WHERE slug = :slug"),
            {"slug": slug},
        ).first()


def tenant_count(db: Database) -> int:
    with db.engine.connect() as connection:
        return connection.execute(text("SELECT count(*) FROM platform.tenants")).scalar_one()


@pytest.fixture(scope="module")
def root(app: Flask) -> Caller:
    """A platform admin logged in through the portal."""
    email = f"{unique('root')}@platform.test"
    with platform(app).db.session() as session:
        create_user(
            session, email=email, full_name="Root", password=PASSWORD, role=Role.PLATFORM_ADMIN
        )
        session.commit()
    return login(app, email)


@pytest.fixture(scope="module")
def existing(app: Flask) -> str:
    """One tenant provisioned up front, for the duplicate and case-clash checks."""
    slug = unique("acme")
    provision(platform(app).db, slug)
    return slug


# --- hostile slugs -------------------------------------------------------------------------


@pytest.mark.parametrize(("slug", "reason"), HOSTILE_SLUGS)
def test_service_refuses_hostile_slug(db: Database, slug: str, reason: str) -> None:
    before = tenant_count(db)
    session = db.session()
    try:
        with pytest.raises(TenantError, match=re.escape(reason)):
            provision_tenant(session, **tenant_fields(slug))
    finally:
        session.rollback()
        session.close()
    assert tenant_count(db) == before


@pytest.mark.parametrize(("slug", "reason"), HOSTILE_SLUGS)
def test_api_refuses_hostile_slug(db: Database, root: Caller, slug: str, reason: str) -> None:
    before = tenant_count(db)
    response = root.post(TENANTS, json=tenant_fields(slug))
    assert response.status_code == 422, response.get_data(as_text=True)
    body = response.json
    if "\x00" in slug or "\ud800" in slug:
        # The request schema refuses characters no text column can hold, naming the field.
        assert "unpaired surrogate" in body["errors"]["json"]["slug"][0] or (
            "NUL" in body["errors"]["json"]["slug"][0]
        )
    elif slug:
        assert reason in body["message"]
        assert reason in body["errors"]["json"]["slug"][0]
    else:  # refused by the request schema before the service sees it
        assert "slug" in body["errors"]["json"]
    assert tenant_count(db) == before


def test_case_only_duplicate_is_a_conflict(db: Database, existing: str) -> None:
    shouting = existing.capitalize()
    session = db.session()
    try:
        with pytest.raises(TenantConflict, match="differs only in case") as caught:
            provision_tenant(session, **tenant_fields(shouting))
    finally:
        session.rollback()
        session.close()
    assert repr(existing) in str(caught.value)
    assert tenant_row(db, shouting) is None


def test_api_case_only_duplicate_is_409(root: Caller, existing: str) -> None:
    response = root.post(TENANTS, json=tenant_fields(existing.upper()))
    assert response.status_code == 409, response.get_data(as_text=True)
    assert "differs only in case" in response.json["message"]
    assert repr(existing) in response.json["message"]


def test_slug_at_the_identifier_limit_is_accepted(db: Database) -> None:
    slug = unique("edge").ljust(MAX_SLUG, "x")
    schema = provision(db, slug)
    assert len(schema.encode()) == 63
    assert schema == f"tenant_{slug}"
    assert schema_exists(db, schema)  # kept whole, not truncated by PostgreSQL
    assert schema_tables(db, schema) >= TENANT_TABLES


# --- success -------------------------------------------------------------------------------


def test_api_provisions_row_schema_tables_and_version(db: Database, root: Caller) -> None:
    slug = f"{unique('new')}-lender"
    response = root.post(
        TENANTS,
        json=tenant_fields(slug, jurisdiction="US", timezone="America/Chicago", currency="USD"),
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    schema = "tenant_" + slug.replace("-", "_")
    assert response.json["slug"] == slug
    assert response.json["schema_name"] == schema
    assert response.json["status"] == "active"
    assert response.json["jurisdiction"] == "US"

    assert tenant_row(db, slug) == (slug, schema, "active")
    assert schema_exists(db, schema)
    assert schema_tables(db, schema) >= TENANT_TABLES
    with db.engine.connect() as connection:
        assert tenant_versions(connection, [schema]) == {schema: head("tenant")}

    listed = root.get(f"{TENANTS}/{slug}")
    assert listed.status_code == 200
    assert listed.json["schema_name"] == schema


# --- failure halfway -----------------------------------------------------------------------


@dataclass
class InjectedFailure:
    """A listener on the app's engine that fails ``CREATE TABLE <schema>.cases``."""

    db: Database
    slug: str
    seen: list[str] = field(default_factory=list)
    armed: bool = False

    @property
    def schema(self) -> str:
        return f"tenant_{self.slug}"

    def __call__(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.seen.append(statement)
        if re.search(rf'CREATE TABLE\s+"?{self.schema}"?\."?cases"?\s*\(', statement):
            raise RuntimeError("injected failure creating the cases table")

    def arm(self) -> None:
        event.listen(self.db.engine, "before_cursor_execute", self)
        self.armed = True

    def disarm(self) -> None:
        if self.armed:
            event.remove(self.db.engine, "before_cursor_execute", self)
            self.armed = False


@pytest.fixture
def injected(db: Database) -> Iterator[InjectedFailure]:
    failure = InjectedFailure(db, unique("half"))
    failure.arm()
    try:
        yield failure
    finally:
        failure.disarm()


def test_failure_halfway_leaves_nothing_behind(db: Database, injected: InjectedFailure) -> None:
    slug, schema = injected.slug, injected.schema
    session = db.session()
    try:
        with pytest.raises(RuntimeError, match="injected failure"):
            provision_tenant(session, **tenant_fields(slug))
    finally:
        session.rollback()
        session.close()

    # The run really was halfway: the row, the schema and earlier tables had been created.
    seen = injected.seen
    assert any("INSERT INTO platform.tenants" in s for s in seen)
    assert any(f'CREATE SCHEMA "{schema}"' in s for s in seen)
    assert any(re.search(rf'CREATE TABLE\s+"?{schema}"?\."?debtors"?', s) for s in seen)

    assert tenant_row(db, slug) is None
    assert not schema_exists(db, schema)
    assert schema_tables(db, schema) == set()

    injected.disarm()
    assert provision(db, slug) == schema
    assert tenant_row(db, slug) == (slug, schema, "active")
    assert schema_tables(db, schema) >= TENANT_TABLES
    with db.engine.connect() as connection:
        assert tenant_versions(connection, [schema]) == {schema: head("tenant")}


# --- other refusals ------------------------------------------------------------------------


def test_api_duplicate_slug_is_409(root: Caller, existing: str) -> None:
    response = root.post(TENANTS, json=tenant_fields(existing))
    assert response.status_code == 409, response.get_data(as_text=True)
    assert response.json["message"] == f"tenant {existing!r} already exists"


@pytest.mark.parametrize(
    ("overrides", "field", "reason"),
    [
        pytest.param({"jurisdiction": "UK"}, "jurisdiction", None, id="jurisdiction"),
        pytest.param({"jurisdiction": "cn"}, "jurisdiction", None, id="jurisdiction-case"),
        pytest.param(
            {"timezone": "Mars/Olympus_Mons"},
            "timezone",
            "not an IANA time zone",
            id="timezone",
        ),
        pytest.param({"timezone": ""}, "timezone", "not an IANA time zone", id="timezone-empty"),
        pytest.param({"currency": "cny"}, "currency", "three-letter ISO 4217", id="currency-case"),
        pytest.param(
            {"currency": "1X2"}, "currency", "three-letter ISO 4217", id="currency-digits"
        ),
        pytest.param({"currency": "CNYX"}, "currency", None, id="currency-length"),
        pytest.param({"colour": "red"}, "colour", None, id="unknown-field"),
        pytest.param({"schema_name": "platform"}, "schema_name", None, id="schema-name-field"),
    ],
)
def test_api_refuses_invalid_fields(
    db: Database, root: Caller, overrides: dict[str, Any], field: str | None, reason: str | None
) -> None:
    slug = unique("bad")
    response = root.post(TENANTS, json=tenant_fields(slug, **overrides))
    assert response.status_code == 422, response.get_data(as_text=True)
    if field is not None:
        assert set(response.json["errors"]["json"]) == {field}
    if reason is not None:
        assert reason in response.json["message"]
    assert tenant_row(db, slug) is None
    assert not schema_exists(db, f"tenant_{slug}")


def test_api_missing_fields_are_422(root: Caller) -> None:
    response = root.post(TENANTS, json={"slug": unique("bare")})
    assert response.status_code == 422
    assert {"name", "jurisdiction", "timezone", "currency"} <= set(response.json["errors"]["json"])


def test_only_platform_admins_provision(world: World) -> None:
    admin = login(world.app, world.a.admin_email)
    response = admin.post(TENANTS, json=tenant_fields(unique("sneaky")))
    assert response.status_code == 403
    client = bearer(world.app, world.a.client_id, world.a.client_secret)
    assert client.post(TENANTS, json=tenant_fields(unique("sneaky"))).status_code == 403


# --- disabling -----------------------------------------------------------------------------


def test_disabling_a_tenant_refuses_its_users_and_clients(world: World) -> None:
    app = world.app
    admin_a = login(app, world.a.admin_email)
    analyst_a = login(app, world.a.analyst_email)
    client_a = bearer(app, world.a.client_id, world.a.client_secret)
    admin_b = login(app, world.b.admin_email)
    client_b = bearer(app, world.b.client_id, world.b.client_secret)
    for caller in (admin_a, analyst_a, client_a, admin_b, client_b):
        assert caller.get("/api/v1/profile").status_code == 200, caller.label

    root = login(app, world.platform_admin_email)
    response = root.patch(f"{TENANTS}/{world.a.slug}", json={"status": "disabled"})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.json["status"] == "disabled"
    assert response.json["disabled_at"] is not None

    for caller in (admin_a, analyst_a, client_a):
        assert caller.get("/api/v1/profile").status_code == 401, caller.label
        assert caller.get("/api/v1/cases").status_code == 401, caller.label
    for caller in (admin_b, client_b):  # the other tenant is untouched
        assert caller.get("/api/v1/profile").status_code == 200, caller.label

    response = root.patch(f"{TENANTS}/{world.a.slug}", json={"status": "active"})
    assert response.status_code == 200
    assert response.json["disabled_at"] is None
    assert admin_a.get("/api/v1/profile").status_code == 200
    assert client_a.get("/api/v1/profile").status_code == 200


def test_patch_unknown_tenant_is_404_and_bad_status_422(root: Caller, existing: str) -> None:
    missing = root.patch(f"{TENANTS}/{unique('ghost')}", json={"status": "disabled"})
    assert missing.status_code == 404
    response = root.patch(f"{TENANTS}/{existing}", json={"status": "deleted"})
    assert response.status_code == 422
    assert "status" in response.json["errors"]["json"]
