"""Agency contracts: which agency may work which tenant's cases, for what period, and what
the agency is paid: a share of the platform's commission, or its own rate schedule.

The contract rule lives here and only here: an agency reaches a tenant on a day only
under a contract covering that day (``starts_on <= day < ends_on``, open-ended without an
end). The ORM condition (``active_contract_condition``) serves requests, tenancy and work;
its SQL twin (``contracted_agencies_sql``) serves the set-based allocation run; billing
reads the contracts' payout terms through ``table_sql(AgencyContract)``.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import (
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    and_,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, Session, contains_eager, mapped_column, relationship

from recova.platform.agencies.models import Agency
from recova.platform.kernel.db import SHARED_SCHEMA, SharedModel, Timestamped, table_sql
from recova.tenants.models import Tenant, TenantStatus


class AgencyContract(Timestamped, SharedModel):
    """A tenant ↔ agency contract, active from ``starts_on`` up to (not including) ``ends_on``."""

    __tablename__ = "agency_contracts"
    __table_args__ = (
        CheckConstraint("ends_on IS NULL OR ends_on > starts_on", name="period_ordered"),
        CheckConstraint("placement_days > 0", name="placement_days_positive"),
        CheckConstraint("grace_days >= 0", name="grace_days_not_negative"),
        CheckConstraint(
            "settlement_discount_limit BETWEEN 0 AND 100", name="settlement_limit_percent"
        ),
        CheckConstraint("payout_mode IN ('share', 'rates')", name="payout_mode_known"),
        CheckConstraint("payout_share >= 0 AND payout_share <= 100", name="payout_share_percent"),
        CheckConstraint(
            "(payout_mode = 'rates') = (payout_rates IS NOT NULL)", name="payout_rates_with_mode"
        ),
        Index("ix_agency_contracts_tenant_agency", "tenant_id", "agency_id"),
        {"schema": SHARED_SCHEMA},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey(f"{SHARED_SCHEMA}.tenants.id"))
    agency_id: Mapped[int] = mapped_column(ForeignKey(f"{SHARED_SCHEMA}.agencies.id"))
    starts_on: Mapped[dt.date] = mapped_column(Date)
    ends_on: Mapped[dt.date | None] = mapped_column(Date)
    #: How long a case placed under this contract stays with the agency.
    placement_days: Mapped[int] = mapped_column(Integer, default=60, server_default="60")
    #: Days after a recall during which the case's payments still credit the agency.
    grace_days: Mapped[int] = mapped_column(Integer, default=10, server_default="10")
    #: The largest settlement discount (percent of the balance) the agency's managers may
    #: approve for this tenant; anything above needs the tenant. Set by the tenant.
    settlement_discount_limit: Mapped[Decimal] = mapped_column(
        Numeric(5, 2), default=Decimal(0), server_default="0"
    )
    #: ``share``: the agency gets ``payout_share`` percent of each line's commission;
    #: ``rates``: its own percent of the money by bucket at placement (``payout_rates``).
    payout_mode: Mapped[str] = mapped_column(String(8), default="share", server_default="share")
    payout_share: Mapped[Decimal] = mapped_column(
        Numeric(7, 4), default=Decimal(0), server_default="0"
    )
    payout_rates: Mapped[dict[str, str] | None] = mapped_column(JSONB(none_as_null=True))

    tenant: Mapped[Tenant] = relationship()
    agency: Mapped[Agency] = relationship()


def active_contract_condition(day: dt.date):  # type: ignore[no-untyped-def]
    """SQL condition: the contract covers ``day``."""
    return and_(
        AgencyContract.starts_on <= day,
        or_(AgencyContract.ends_on.is_(None), AgencyContract.ends_on > day),
    )


def active_contract_sql(alias: str, day: str) -> str:
    """SQL: the contract ``alias`` covers the date expression ``day`` (the ORM rule's twin)."""
    return f"{alias}.starts_on <= {day} AND ({alias}.ends_on IS NULL OR {alias}.ends_on > {day})"


def contracted_agencies_sql(*, tenant_id: str, day: str) -> str:
    """SQL: one row per active agency holding a contract with the tenant on ``day``, with
    that contract's ``agency_id, placement_days, grace_days``. ``tenant_id`` and ``day``
    are SQL expressions (bound parameters). Should two contracts of a pair overlap a date
    (refused at creation), the latest start wins."""
    return f"""SELECT DISTINCT ON (ct.agency_id) ct.agency_id, ct.placement_days, ct.grace_days
           FROM {table_sql(AgencyContract)} ct
           JOIN {table_sql(Agency)} ag ON ag.id = ct.agency_id AND ag.status = 'active'
           WHERE ct.tenant_id = {tenant_id} AND {active_contract_sql("ct", day)}
           ORDER BY ct.agency_id, ct.starts_on DESC"""  # noqa: S608 - names from the models


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


def contracted_tenants(session: Session, agency_id: int) -> list[Tenant]:
    """Active tenants the agency holds or held a contract with, by slug."""
    return list(
        session.scalars(
            select(Tenant)
            .join(AgencyContract, AgencyContract.tenant_id == Tenant.id)
            .where(AgencyContract.agency_id == agency_id, Tenant.status == TenantStatus.ACTIVE)
            .distinct()
            .order_by(Tenant.slug)
        )
    )


def agency_contracts(session: Session, agency_id: int, *, limit: int = 200) -> list[AgencyContract]:
    """The agency's contracts (up to ``limit``) with their tenants, by tenant, newest first."""
    return list(
        session.scalars(
            select(AgencyContract)
            .join(Tenant, Tenant.id == AgencyContract.tenant_id)
            .options(contains_eager(AgencyContract.tenant))
            .where(AgencyContract.agency_id == agency_id)
            .order_by(Tenant.slug, AgencyContract.starts_on.desc())
            .limit(limit)
        )
    )
