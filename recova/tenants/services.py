"""Provisioning, listing and disabling tenants.

Provisioning is one transaction on the caller's session: the tenant row, ``CREATE
SCHEMA`` and the whole tenant migration history either all commit or all roll back
(PostgreSQL DDL is transactional), so a failure halfway leaves no row and no schema.
"""

from __future__ import annotations

import re
import zoneinfo
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from recova.platform.kernel.db import quote_identifier, utcnow
from recova.platform.kernel.errors import DomainError
from recova.tenants.migrate import upgrade_tenant_schema
from recova.tenants.models import Jurisdiction, Tenant, TenantStatus
from recova.tenants.slugs import UnsafeSlugError, schema_name_for, validate_slug

CURRENCY_PATTERN = re.compile(r"[A-Z]{3}")


class TenantError(DomainError, ValueError):
    """A tenant request that cannot be carried out; ``field`` names the input at fault (422)."""

    def __init__(self, message: str, *, field: str = "slug") -> None:
        super().__init__(message)
        self.field = field

    @property
    def error_details(self) -> dict[str, Any] | None:
        return {"json": {self.field: [str(self)]}}


class TenantConflict(TenantError):
    """The slug or schema is already taken (409, no details)."""

    status = 409

    @property
    def error_details(self) -> dict[str, Any] | None:
        return None


def provision_tenant(
    session: Session,
    *,
    slug: str,
    name: str,
    jurisdiction: str,
    timezone: str,
    currency: str,
    settings: dict[str, Any] | None = None,
) -> Tenant:
    """Create a tenant, its schema and its tables, in the session's transaction."""
    # Validate before querying: a hostile slug (NUL, lone surrogate) is no valid query
    # parameter. One unsafe only by its case is looked up, to name the tenant it clashes with.
    try:
        schema = schema_name_for(slug)
    except UnsafeSlugError as exc:
        if slug != slug.lower() and _is_safe_slug(slug.lower()):
            _refuse_clash(session, slug)
        raise TenantError(str(exc)) from exc
    _refuse_clash(session, slug)
    try:
        jurisdiction_value = Jurisdiction(jurisdiction)
    except ValueError as exc:
        choices = ", ".join(j.value for j in Jurisdiction)
        raise TenantError(
            f"jurisdiction {jurisdiction!r} is not one of {choices}", field="jurisdiction"
        ) from exc
    if timezone not in zoneinfo.available_timezones():
        raise TenantError(f"timezone {timezone!r} is not an IANA time zone", field="timezone")
    if not CURRENCY_PATTERN.fullmatch(currency):
        raise TenantError(
            f"currency {currency!r} must be a three-letter ISO 4217 code", field="currency"
        )

    connection = session.connection()
    exists = connection.execute(
        text("SELECT 1 FROM pg_namespace WHERE nspname = :schema"), {"schema": schema}
    ).first()
    if exists:
        raise TenantConflict(f"schema {schema} already exists without a tenant; remove it first")
    tenant = Tenant(
        slug=slug,
        name=name,
        schema_name=schema,
        status=TenantStatus.ACTIVE,
        jurisdiction=jurisdiction_value,
        timezone=timezone,
        currency=currency,
        settings=settings or {},
    )
    session.add(tenant)
    session.flush()  # the unique constraints on slug and schema must hold before any DDL
    connection.execute(text(f"CREATE SCHEMA {quote_identifier(schema)}"))
    upgrade_tenant_schema(connection, schema)
    return tenant


def _refuse_clash(session: Session, slug: str) -> None:
    clash = session.scalar(select(Tenant.slug).where(func.lower(Tenant.slug) == slug.lower()))
    if clash is not None:
        if clash == slug:
            raise TenantConflict(f"tenant {slug!r} already exists")
        raise TenantConflict(f"slug {slug!r} differs only in case from existing tenant {clash!r}")


def _is_safe_slug(slug: str) -> bool:
    try:
        validate_slug(slug)
    except UnsafeSlugError:
        return False
    return True


def list_tenants(session: Session) -> list[Tenant]:
    """Every tenant, by slug."""
    return list(session.scalars(select(Tenant).order_by(Tenant.slug)))


def tenants_after(session: Session, *, after: str | None = None, limit: int = 50) -> list[Tenant]:
    """Up to ``limit`` tenants by slug, after the slug ``after`` (keyset paging)."""
    query = select(Tenant).order_by(Tenant.slug).limit(limit)
    if after is not None:
        query = query.where(Tenant.slug > after)
    return list(session.scalars(query))


def get_tenant(session: Session, slug: str) -> Tenant | None:
    """The tenant with this exact slug, if any."""
    return session.scalar(select(Tenant).where(Tenant.slug == slug))


def set_tenant_status(session: Session, tenant: Tenant, status: TenantStatus) -> Tenant:
    """Disable or re-enable a tenant; a disabled tenant's principals are refused."""
    if tenant.status != status:
        tenant.status = status
        tenant.disabled_at = utcnow() if status == TenantStatus.DISABLED else None
    return tenant


def update_tenant(
    session: Session, tenant: Tenant, *, name: str | None = None, status: TenantStatus | None = None
) -> Tenant:
    """Rename a tenant, and disable or re-enable it (``set_tenant_status``); ``None``
    leaves that part as it is."""
    if name is not None:
        tenant.name = name
    if status is not None:
        set_tenant_status(session, tenant, status)
    return tenant
