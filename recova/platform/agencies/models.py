"""Agencies, in the shared schema: they work cases of several tenants."""

from __future__ import annotations

import enum
from decimal import Decimal

from sqlalchemy import Enum, Numeric, String
from sqlalchemy.orm import Mapped, mapped_column

from recova.platform.kernel.db import SHARED_SCHEMA, SharedModel, Timestamped


class AgencyStatus(enum.StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


class Agency(Timestamped, SharedModel):
    """A collection agency whose staff work the cases placed with it."""

    __tablename__ = "agencies"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(56), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[AgencyStatus] = mapped_column(
        Enum(
            AgencyStatus,
            name="agency_status",
            schema=SHARED_SCHEMA,
            values_callable=lambda e: [m.value for m in e],
        ),
        default=AgencyStatus.ACTIVE,
    )
    #: The largest settlement discount (percent of the balance) the agency lets its
    #: collectors approve; set by its manager, never above its contracts' limits.
    collector_discount_limit: Mapped[Decimal] = mapped_column(
        Numeric(5, 2), default=Decimal(0), server_default="0"
    )
