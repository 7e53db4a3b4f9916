"""The tenant registry: one row per lending platform, in the shared schema."""

from __future__ import annotations

import datetime as dt
import enum
import zoneinfo
from typing import Any

from sqlalchemy import CheckConstraint, DateTime, Enum, Index, String, func, literal_column
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from recova.platform.kernel.db import SHARED_SCHEMA, SharedModel, Timestamped


def tenant_today(timezone: str) -> dt.date:
    """Today on a tenant's calendar (contracts, runs and portfolios are dated by it)."""
    return dt.datetime.now(zoneinfo.ZoneInfo(timezone)).date()


class TenantStatus(enum.StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"


class Jurisdiction(enum.StrEnum):
    """Which compliance rule pack a tenant's collection work follows."""

    CN = "CN"
    US = "US"


class Tenant(Timestamped, SharedModel):
    """A lending platform whose borrower data lives in its own ``tenant_<slug>`` schema."""

    __tablename__ = "tenants"
    __table_args__ = (
        Index("uq_tenants_lower_slug", func.lower(literal_column("slug")), unique=True),
        CheckConstraint("schema_name ~ '^tenant_[a-z0-9_]+$'", name="schema_name_safe"),
        CheckConstraint("char_length(currency) = 3", name="currency_iso"),
        {"schema": SHARED_SCHEMA},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(56), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    schema_name: Mapped[str] = mapped_column(String(63), unique=True)
    status: Mapped[TenantStatus] = mapped_column(
        Enum(
            TenantStatus,
            name="tenant_status",
            schema=SHARED_SCHEMA,
            values_callable=lambda e: [m.value for m in e],
        ),
        default=TenantStatus.ACTIVE,
    )
    jurisdiction: Mapped[Jurisdiction] = mapped_column(
        Enum(
            Jurisdiction,
            name="jurisdiction",
            schema=SHARED_SCHEMA,
            values_callable=lambda e: [m.value for m in e],
        )
    )
    timezone: Mapped[str] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(3))
    settings: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    disabled_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
