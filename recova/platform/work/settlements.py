"""Settlements: a discounted full-and-final offer, approved by who may give that discount.

The discount is the share of the balance the debtor would not pay, in percent. Who may
approve it:

- a **collector** up to the agency's limit (``Agency.collector_discount_limit``, set by
  its manager), never above the contract's;
- an **agency manager** up to the contract's limit
  (``AgencyContract.settlement_discount_limit``, set by the tenant);
- above that, the **tenant** (a tenant admin, or the tenant's systems).

A case not placed with an agency has no agency limits: only the tenant approves its
discounts. The level an offer needs is fixed when it is made (``required_level``); an
offer its maker may approve is approved at once, any other waits for someone whose level
covers it. Discounts are compared exactly (``(balance - amount) * 100 <= limit *
balance``); the stored percentage is rounded up to the cent, for display only.

An approved offer is **paid** when the account's payments from the day of the offer (net
of reversals) reach its amount by the end of its expiry date; the case is then settled
and leaves collection, even if meanwhile its placement ended (recalled) or a dispute or
legal hold stopped it (on hold, released): the full-and-final payment agreed while the
case was worked extinguishes the debt. Offers are made only on a case being worked. An
offer still open after its expiry date **expires** (the daily job, after one last look at
the payments).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from recova.platform.agencies.contracts import AgencyContract, active_contract_condition
from recova.platform.agencies.models import Agency
from recova.platform.allocation.models import Placement
from recova.platform.allocation.services import tenants_served
from recova.platform.auth.models import Role
from recova.platform.auth.principal import Principal
from recova.platform.cases.models import Account, Case, CaseStatus
from recova.platform.kernel.db import utcnow
from recova.platform.webhooks.events import emit_event
from recova.platform.work.errors import NotPermitted, WorkConflict, WorkInvalid
from recova.platform.work.events import note_event
from recova.platform.work.lifecycle import (
    WORKED,
    Actor,
    actor_label,
    can_transition,
    lock_case,
    lock_for_evaluation,
    open_hold,
    transition,
)
from recova.platform.work.models import ApprovalLevel, Settlement, SettlementStatus
from recova.platform.work.money import day_started, money, paid_between, start_of_day
from recova.platform.work.settings import current_settings
from recova.tenants.scope import tenant_scope

OPEN = (SettlementStatus.PENDING_APPROVAL, SettlementStatus.APPROVED)
_RANK = {ApprovalLevel.COLLECTOR: 1, ApprovalLevel.MANAGER: 2, ApprovalLevel.TENANT: 3}


@dataclass(frozen=True)
class Limits:
    """The discount limits, in percent, that apply to one case's agency."""

    agency_id: int | None
    collector: Decimal
    manager: Decimal


def level_of(principal: Principal) -> ApprovalLevel:
    """The approval level a caller acts at."""
    if principal.role is Role.COLLECTOR:
        return ApprovalLevel.COLLECTOR
    if principal.role is Role.AGENCY_MANAGER:
        return ApprovalLevel.MANAGER
    return ApprovalLevel.TENANT  # tenant admins, platform admins, the tenant's API clients


def covers(level: ApprovalLevel, required: ApprovalLevel) -> bool:
    """Whether ``level`` may approve what ``required`` asks for."""
    return _RANK[level] >= _RANK[required]


def limits_for(session: Session, *, case_id: int, tenant_id: int, day: dt.date) -> Limits:
    """The limits of the agency holding the case today (none: only the tenant approves)."""
    agency_id = session.scalar(
        select(Placement.agency_id).where(
            Placement.case_id == case_id, Placement.recalled_on.is_(None)
        )
    )
    if agency_id is None:
        return Limits(None, Decimal(0), Decimal(0))
    contract_limit = session.scalar(
        select(AgencyContract.settlement_discount_limit)
        .where(
            AgencyContract.tenant_id == tenant_id,
            AgencyContract.agency_id == agency_id,
            active_contract_condition(day),
        )
        .order_by(AgencyContract.starts_on.desc())
        .limit(1)
    )
    if contract_limit is None:
        return Limits(agency_id, Decimal(0), Decimal(0))
    agency_limit = session.scalar(
        select(Agency.collector_discount_limit).where(Agency.id == agency_id)
    )
    return Limits(agency_id, min(agency_limit or Decimal(0), contract_limit), contract_limit)


def _within(balance: Decimal, amount: Decimal, limit: Decimal) -> bool:
    return (balance - amount) * 100 <= limit * balance


def required_level(balance: Decimal, amount: Decimal, limits: Limits) -> ApprovalLevel:
    """The lowest level whose limit covers the discount of ``amount`` on ``balance``."""
    if limits.agency_id is not None:
        if _within(balance, amount, limits.collector):
            return ApprovalLevel.COLLECTOR
        if _within(balance, amount, limits.manager):
            return ApprovalLevel.MANAGER
    return ApprovalLevel.TENANT


@dataclass(frozen=True)
class OfferLevel:
    """Who would have to approve an offer of ``amount`` on the case's balance, and why."""

    balance: Decimal
    amount: Decimal
    currency: str
    #: The discount in percent, rounded up to the cent as the stored offer shows it.
    discount_percent: Decimal
    required: ApprovalLevel
    limits: Limits


def discount_percent(balance: Decimal, amount: Decimal) -> Decimal:
    """The discount of ``amount`` on ``balance`` in percent, rounded up to the cent (for
    display; levels compare exactly)."""
    return ((balance - amount) * 100 / balance).quantize(Decimal("0.01"), rounding=ROUND_CEILING)


def amount_for_discount(balance: Decimal, percent: Decimal, currency: str) -> Decimal:
    """The amount that settles ``balance`` with a discount of ``percent``, in the
    currency's minor unit, rounded up: the discount given is never above the one asked."""
    minor_unit = money(Decimal(1), currency)  # 1.00: quantising to it keeps its places
    return (balance * (100 - percent) / 100).quantize(minor_unit, rounding=ROUND_CEILING)


def approval_level(
    session: Session, *, case: Case, amount: Decimal, tenant_id: int, today: dt.date
) -> OfferLevel:
    """The level an offer of ``amount`` on the case would need if made now (read-only:
    the rule ``offer_settlement`` applies, for showing before the offer is made).

    Refuses (``WorkInvalid``) an amount the offer itself would refuse.
    """
    account = session.get(Account, case.account_id)
    assert account is not None
    balance = account.outstanding_total
    amount = money(amount, account.currency)
    if amount <= 0 or amount > balance:
        raise WorkInvalid(f"the settled amount must be above 0 and at most the balance {balance}")
    limits = limits_for(session, case_id=case.id, tenant_id=tenant_id, day=today)
    return OfferLevel(
        balance=balance,
        amount=amount,
        currency=account.currency,
        discount_percent=discount_percent(balance, amount),
        required=required_level(balance, amount, limits),
        limits=limits,
    )


def offer_settlement(
    session: Session,
    *,
    case: Case,
    amount: Decimal,
    expires_on: dt.date,
    actor: Actor,
    level: ApprovalLevel,
    tenant_id: int,
    today: dt.date,
    note: str | None = None,
) -> Settlement:
    """Make a settlement offer; approved at once if ``level`` covers its discount.

    ``note`` is why it is asked for, kept for whoever approves it.

    Only on a case being worked: a recalled or held case may still settle (an offer made
    before is paid), but a new one is not negotiated while no agency holds it or a dispute
    or legal hold stops it. The case is locked first (and read afresh), so two offers at
    once are made one after the other, the second seeing the first.
    """
    lock_case(session, case.id)
    if case.status not in WORKED:
        raise WorkConflict(
            f"case {case.id} is {case.status.value}; offers are made on a case being worked"
        )
    settings = current_settings(session)
    if expires_on < today:
        raise WorkInvalid("an offer cannot expire in the past")
    if expires_on > today + dt.timedelta(days=settings.settlement_max_days):
        raise WorkInvalid(f"an offer may stay open at most {settings.settlement_max_days} days")
    account = session.get(Account, case.account_id)
    assert account is not None
    balance = account.outstanding_total
    amount = money(amount, account.currency)
    if amount <= 0 or amount > balance:
        raise WorkInvalid(f"the settled amount must be above 0 and at most the balance {balance}")
    existing = session.scalar(
        select(Settlement.id).where(Settlement.case_id == case.id, Settlement.status.in_(OPEN))
    )
    if existing is not None:
        raise WorkConflict(f"case {case.id} already has an open settlement offer ({existing})")
    limits = limits_for(session, case_id=case.id, tenant_id=tenant_id, day=today)
    needed = required_level(balance, amount, limits)
    approved = covers(level, needed)
    now = utcnow()
    settlement = Settlement(
        case_id=case.id,
        currency=account.currency,
        balance=balance,
        amount=amount,
        discount_percent=discount_percent(balance, amount),
        required_level=needed,
        agency_id=limits.agency_id,
        status=SettlementStatus.APPROVED if approved else SettlementStatus.PENDING_APPROVAL,
        expires_on=expires_on,
        paid_amount=Decimal(0),
        requested_by=actor_label(actor),
        request_note=note,
        decided_by=actor_label(actor) if approved else None,
        decided_at=now if approved else None,
        created_at=now,
    )
    session.add(settlement)
    session.flush()  # the caller answers with the new id
    note_event(
        session,
        action="settlement.offered",
        actor=actor,
        subject=("case", case.id),
        data={
            "settlement_id": settlement.id,
            "amount": amount,
            "balance": balance,
            "currency": settlement.currency,
            "discount_percent": settlement.discount_percent,
            "required_level": needed.value,
            "offered_at_level": level.value,
            "agency_id": limits.agency_id,
            "collector_limit": limits.collector,
            "manager_limit": limits.manager,
            "status": settlement.status.value,
            "expires_on": expires_on,
        },
    )
    emit_event(
        session,
        "settlement.requested",
        {
            "settlement_id": settlement.id,
            "case_id": case.id,
            "status": settlement.status.value,
            "amount": amount,
            "balance": balance,
            "currency": settlement.currency,
            "discount_percent": settlement.discount_percent,
            "required_level": needed.value,
            "expires_on": expires_on,
        },
    )
    return settlement


def decide_settlement(
    session: Session,
    *,
    settlement: Settlement,
    approve: bool,
    actor: Actor,
    level: ApprovalLevel,
    note: str | None,
    today: dt.date,
) -> Settlement:
    """Approve or reject an offer waiting for approval, at a level that covers it.

    The offer is re-read under the case lock: of two decisions at once, the second sees
    the first's and is refused, rather than both passing the pending check. Agency staff
    decide only offers made under their own agency: one priced by another agency's limits
    (the case moved agencies since) is refused.
    """
    lock_for_evaluation(session, settlement.case_id, settlement)
    if (
        isinstance(actor, Principal)
        and actor.is_agency_user
        and settlement.agency_id != actor.agency_id
    ):
        raise WorkConflict(f"settlement {settlement.id} was offered under another agency")
    if settlement.status is not SettlementStatus.PENDING_APPROVAL:
        raise WorkConflict(
            f"settlement {settlement.id} is {settlement.status.value}, not pending approval"
        )
    if settlement.expires_on < today:
        raise WorkConflict(f"settlement {settlement.id} expired on {settlement.expires_on}")
    if not covers(level, settlement.required_level):
        raise NotPermitted(
            f"a discount of {settlement.discount_percent}% needs {settlement.required_level.value}"
            f" approval; you approve at {level.value} level"
        )
    settlement.status = SettlementStatus.APPROVED if approve else SettlementStatus.REJECTED
    settlement.decided_by = actor_label(actor)
    settlement.decided_at = utcnow()
    settlement.decision_note = note
    if not approve:
        settlement.ended_at = settlement.decided_at
    note_event(
        session,
        action="settlement.decided",
        actor=actor,
        subject=("case", settlement.case_id),
        data={
            "settlement_id": settlement.id,
            "approved": approve,
            "level": level.value,
            "required_level": settlement.required_level.value,
            "discount_percent": settlement.discount_percent,
        },
    )
    emit_event(
        session,
        "settlement.decided",
        {
            "settlement_id": settlement.id,
            "case_id": settlement.case_id,
            "status": settlement.status.value,
            "approved": approve,
            "level": level.value,
        },
    )
    return settlement


def evaluate_settlement(
    session: Session, settlement: Settlement, *, timezone: str, actor: Actor
) -> bool:
    """Settle the case if the approved offer's amount was paid in time; True if it was."""
    lock_for_evaluation(session, settlement.case_id, settlement)
    if settlement.status is not SettlementStatus.APPROVED:
        return False
    case = session.get(Case, settlement.case_id)
    assert case is not None
    settlement.paid_amount = paid_between(
        session,
        account_id=case.account_id,
        currency=settlement.currency,
        since=day_started(settlement.created_at, timezone),
        until=start_of_day(settlement.expires_on + dt.timedelta(days=1), timezone),
    )
    if settlement.paid_amount < settlement.amount:
        return False
    settlement.status = SettlementStatus.PAID
    settlement.ended_at = utcnow()
    note_event(
        session,
        action="settlement.paid",
        actor=actor,
        subject=("case", case.id),
        data={
            "settlement_id": settlement.id,
            "amount": settlement.amount,
            "paid_amount": settlement.paid_amount,
            "currency": settlement.currency,
        },
    )
    if can_transition(case.status, CaseStatus.SETTLED):
        reason = f"settlement {settlement.id} paid"
        hold = open_hold(session, case.id) if case.status is CaseStatus.ON_HOLD else None
        if hold is not None:
            reason += f" in full and final; releases the {hold.reason.value} hold"
        transition(
            session,
            case=case,
            to=CaseStatus.SETTLED,
            actor=actor,
            reason=reason,
            close_reason="settled",
        )
    return True


def expire_settlements(
    session: Session, *, today: dt.date, timezone: str, actor: Actor
) -> dict[str, int]:
    """Close every open offer past its expiry date (paid ones as paid); counts."""
    open_offers = session.scalars(
        select(Settlement)
        .where(Settlement.status.in_(OPEN), Settlement.expires_on < today)
        .order_by(Settlement.id)
    ).all()
    counts = {"paid": 0, "expired": 0}
    for settlement in open_offers:
        if evaluate_settlement(session, settlement, timezone=timezone, actor=actor):
            counts["paid"] += 1
            continue
        if settlement.status not in OPEN:
            continue  # decided meanwhile (rejected while this job waited for the case)
        settlement.status = SettlementStatus.EXPIRED
        settlement.ended_at = utcnow()
        note_event(
            session,
            action="settlement.expired",
            actor=actor,
            subject=("case", settlement.case_id),
            data={
                "settlement_id": settlement.id,
                "expires_on": settlement.expires_on,
                "paid_amount": settlement.paid_amount,
            },
        )
        counts["expired"] += 1
    return counts


# --- the limits ----------------------------------------------------------------------------


def set_contract_limit(
    session: Session, contract: AgencyContract, *, limit: Decimal, actor: Actor
) -> AgencyContract:
    """Set the discount the agency's managers may approve on the contract's tenant's cases;
    the change is noted for the tenant's audit chain."""
    before = contract.settlement_discount_limit
    contract.settlement_discount_limit = limit
    note_event(
        session,
        action="config.changed",
        actor=actor,
        subject=("agency_contract", contract.id),
        data={
            "agency_id": contract.agency_id,
            "changed": {"settlement_discount_limit": [before, contract.settlement_discount_limit]},
        },
    )
    return contract


def agency_limits(session: Session, agency: Agency) -> dict[str, Any]:
    """The discount the agency's collectors may approve, and each served tenant's cap (the
    limit of its latest contract with the agency), by tenant slug."""
    limits = {}
    for tenant in tenants_served(session, agency.id):
        found = session.scalar(
            select(AgencyContract.settlement_discount_limit)
            .where(AgencyContract.agency_id == agency.id, AgencyContract.tenant_id == tenant.id)
            .order_by(AgencyContract.starts_on.desc())
            .limit(1)
        )
        limits[tenant.slug] = found
    return {
        "agency_id": agency.id,
        "collector_discount_limit": agency.collector_discount_limit,
        "contract_limits": limits,
    }


def set_collector_limit(
    session: Session, agency: Agency, *, limit: Decimal, actor: Actor
) -> Agency:
    """Set the discount the agency's collectors may approve (each tenant's contract limit
    still caps it there).

    The limit binds in every tenant the agency serves, so each of their audit chains
    records a change. Those appends commit just before the caller's session does (each
    chain is its own schema, so no one transaction spans them): a chain may show a change
    whose own commit then failed, never a change it does not show.
    """
    before = agency.collector_discount_limit
    if before != limit:
        for tenant in tenants_served(session, agency.id):
            with tenant_scope(tenant.id) as scoped:
                note_event(
                    scoped,
                    action="config.changed",
                    actor=actor,
                    subject=("agency", agency.id),
                    data={"changed": {"collector_discount_limit": [before, limit]}},
                )
    agency.collector_discount_limit = limit
    return agency
