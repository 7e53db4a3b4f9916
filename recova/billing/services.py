"""Creating and ending agency contracts, and the agency's payout on them."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import or_, select, text
from sqlalchemy.orm import Session

from recova.billing.terms import TermsError, validate_rates
from recova.platform.agencies.contracts import AgencyContract
from recova.platform.agencies.models import Agency
from recova.platform.kernel.errors import DomainError
from recova.tenants.models import Tenant


class ContractError(DomainError, ValueError):
    """A contract request that cannot be carried out (422)."""


class ContractConflict(ContractError):
    """The pair already has a contract overlapping the requested period (409)."""

    status = 409


class PayoutError(TermsError):
    """An agency payout that cannot be used (422, the errors under ``payout``)."""

    @property
    def error_message(self) -> str:
        return "invalid payout"

    @property
    def error_details(self) -> dict[str, Any]:
        return {"json": {"payout": self.errors}}


def create_agency_contract(
    session: Session,
    *,
    tenant: Tenant,
    agency: Agency,
    starts_on: dt.date,
    ends_on: dt.date | None = None,
    placement_days: int = 60,
    grace_days: int = 10,
) -> AgencyContract:
    """Contract ``agency`` to ``tenant`` for a period that overlaps no other of the pair's."""
    if ends_on is not None and ends_on <= starts_on:
        raise ContractError("ends_on must be after starts_on")
    _refuse_overlap(session, tenant.id, agency.id, starts_on, ends_on)
    if placement_days < 1 or grace_days < 0:
        raise ContractError("placement_days must be >= 1 and grace_days >= 0")
    contract = AgencyContract(
        tenant_id=tenant.id,
        agency_id=agency.id,
        starts_on=starts_on,
        ends_on=ends_on,
        placement_days=placement_days,
        grace_days=grace_days,
    )
    contract.tenant = tenant
    contract.agency = agency
    session.add(contract)
    session.flush()  # callers return the new id
    return contract


def set_agency_payout(
    contract: AgencyContract,
    *,
    mode: str,
    share: Decimal | str | None = None,
    rates: dict[str, Any] | None = None,
) -> AgencyContract:
    """The agency's payout: ``share`` percent of each line's commission (mode ``share``), or
    its own percent of the money by bucket at placement (mode ``rates``)."""

    if mode == "share":
        try:
            percent = Decimal(str(share))
        except (InvalidOperation, ValueError):
            percent = Decimal(-1)
        if share is None or not Decimal(0) <= percent <= Decimal(100) or rates is not None:
            raise PayoutError({"share": "a percentage from 0 to 100 (and no rates)"})
        contract.payout_mode, contract.payout_share, contract.payout_rates = "share", percent, None
    elif mode == "rates":
        if share is not None:
            raise PayoutError({"share": "not with mode rates"})
        try:
            contract.payout_rates = validate_rates(rates, field="rates")
        except TermsError as exc:
            raise PayoutError(exc.errors) from None
        contract.payout_mode, contract.payout_share = "rates", Decimal(0)
    else:
        raise PayoutError({"mode": "share or rates"})
    return contract


def end_agency_contract(
    session: Session, contract: AgencyContract, ends_on: dt.date
) -> AgencyContract:
    """Move a contract's end to ``ends_on`` (exclusive), never onto another contract."""
    if ends_on <= contract.starts_on:
        raise ContractError("ends_on must be after the contract's starts_on")
    _refuse_overlap(
        session,
        contract.tenant_id,
        contract.agency_id,
        contract.starts_on,
        ends_on,
        excluding=contract.id,
    )
    contract.ends_on = ends_on
    return contract


def _refuse_overlap(
    session: Session,
    tenant_id: int,
    agency_id: int,
    starts_on: dt.date,
    ends_on: dt.date | None,
    *,
    excluding: int | None = None,
) -> None:
    # Serialise changes to one pair's contracts, so two requests cannot both pass the
    # check and then overlap; the lock ends with the transaction.
    session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
        {"key": f"recova:contracts:{tenant_id}:{agency_id}"},
    )
    overlap = session.scalar(
        select(AgencyContract.id).where(
            AgencyContract.tenant_id == tenant_id,
            AgencyContract.agency_id == agency_id,
            AgencyContract.id != (excluding or 0),
            or_(AgencyContract.ends_on.is_(None), AgencyContract.ends_on > starts_on),
            *([AgencyContract.starts_on < ends_on] if ends_on is not None else []),
        )
    )
    if overlap is not None:
        raise ContractConflict(
            f"the agency already has a contract with this tenant overlapping that period"
            f" (contract {overlap})"
        )
