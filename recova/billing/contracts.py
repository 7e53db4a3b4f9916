"""Agency contracts: which agency may work which tenant's cases, and for what period."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import CheckConstraint, Date, ForeignKey, Index, and_, or_, select
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from recova.platform.agencies.models import Agency
from recova.platform.db import SHARED_SCHEMA, SharedModel, Timestamped
from recova.tenants.models import Tenant


class AgencyContract(Timestamped, SharedModel):
    """A tenant ↔ agency contract, active from ``starts_on`` up to (not including) ``ends_on``."""

    __tablename__ = "agency_contracts"
    __table_args__ = (
        CheckConstraint("ends_on IS NULL OR ends_on > starts_on", name="period_ordered"),
        Index("ix_agency_contracts_tenant_agency", "tenant_id", "agency_id"),
        {"schema": SHARED_SCHEMA},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey(f"{SHARED_SCHEMA}.tenants.id"))
    agency_id: Mapped[int] = mapped_column(ForeignKey(f"{SHARED_SCHEMA}.agencies.id"))
    starts_on: Mapped[dt.date] = mapped_column(Date)
    ends_on: Mapped[dt.date | None] = mapped_column(Date)

    tenant: Mapped[Tenant] = relationship()
    agency: Mapped[Agency] = relationship()


def active_contract_condition(day: dt.date):  # type: ignore[no-untyped-def]
    """SQL condition: the contract covers ``day``."""
    return and_(
        AgencyContract.starts_on <= day,
        or_(AgencyContract.ends_on.is_(None), AgencyContract.ends_on > day),
    )


def agency_has_active_contract(
    session: Session, *, agency_id: int, tenant_id: int, day: dt.date
) -> bool:
    """Whether the agency may reach the tenant's data on ``day``."""
    found = session.execute(
        select(AgencyContract.id)
        .where(
            AgencyContract.agency_id == agency_id,
            AgencyContract.tenant_id == tenant_id,
            active_contract_condition(day),
        )
        .limit(1)
    ).first()
    return found is not None
