"""Creating and ending agency contracts."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from recova.billing.contracts import AgencyContract
from recova.platform.agencies.models import Agency
from recova.tenants.models import Tenant


class ContractError(ValueError):
    """A contract request that cannot be carried out."""


class ContractConflict(ContractError):
    """The pair already has a contract overlapping the requested period."""


def create_agency_contract(
    session: Session,
    *,
    tenant: Tenant,
    agency: Agency,
    starts_on: dt.date,
    ends_on: dt.date | None = None,
) -> AgencyContract:
    """Contract ``agency`` to ``tenant`` for a period that overlaps no other of the pair's."""
    if ends_on is not None and ends_on <= starts_on:
        raise ContractError("ends_on must be after starts_on")
    overlap = session.scalar(
        select(AgencyContract.id).where(
            AgencyContract.tenant_id == tenant.id,
            AgencyContract.agency_id == agency.id,
            or_(AgencyContract.ends_on.is_(None), AgencyContract.ends_on > starts_on),
            *([AgencyContract.starts_on < ends_on] if ends_on is not None else []),
        )
    )
    if overlap is not None:
        raise ContractConflict(
            f"agency {agency.slug!r} already has a contract with {tenant.slug!r}"
            f" overlapping that period (contract {overlap})"
        )
    contract = AgencyContract(
        tenant_id=tenant.id, agency_id=agency.id, starts_on=starts_on, ends_on=ends_on
    )
    contract.tenant = tenant
    contract.agency = agency
    session.add(contract)
    session.flush()  # callers return the new id
    return contract


def end_agency_contract(contract: AgencyContract, ends_on: dt.date) -> AgencyContract:
    """End a contract on ``ends_on`` (exclusive)."""
    if ends_on <= contract.starts_on:
        raise ContractError("ends_on must be after the contract's starts_on")
    contract.ends_on = ends_on
    return contract


def contracts_covering(session: Session, *, tenant_id: int, day: dt.date) -> list[AgencyContract]:
    """The tenant's contracts active on ``day``."""
    return list(
        session.scalars(
            select(AgencyContract).where(
                AgencyContract.tenant_id == tenant_id,
                and_(
                    AgencyContract.starts_on <= day,
                    or_(AgencyContract.ends_on.is_(None), AgencyContract.ends_on > day),
                ),
            )
        )
    )
