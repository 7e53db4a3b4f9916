"""What waits for the tenant's decision: settlement offers above the agencies' limits, and
open disputes with the date the tenant should have answered by.

Settlements: an offer whose discount is above what the agency's manager may approve
(``required_level`` is ``tenant``) waits for the tenant while it is ``pending_approval``;
offers a collector or manager may still decide are the agency's to decide, not listed here.
An offer past its expiry date is listed (flagged) until the daily job expires it: deciding
it is refused.

Disputes: the tenant answers a dispute within ``DISPUTE_RESPONSE_DAYS`` of its opening
(the 15 days consumer-complaint rules in CN give a financial institution to decide; a
US collector must verify before collecting again, so the same target keeps the queue
moving). The deadline orders the queue, soonest first, and an overdue dispute is flagged.

Both lists read a partial index (open settlements, open disputes), bounded by ``limit``,
with the total counted beside them: fast on a book of a million cases.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.orm import Session

from recova.platform.agencies.models import Agency
from recova.platform.auth.models import User
from recova.platform.cases.models import Account, Case
from recova.platform.work.models import (
    ApprovalLevel,
    Dispute,
    DisputeStatus,
    Settlement,
    SettlementStatus,
)

DISPUTE_RESPONSE_DAYS = 15


@dataclass(frozen=True)
class WaitingSettlement:
    """One offer waiting for the tenant, with who asked and the case's account."""

    id: int
    case_id: int
    account_external_id: str
    currency: str
    amount: Decimal
    balance: Decimal
    discount_percent: Decimal
    agency_name: str | None
    requested_by: str
    requester_name: str | None
    requested_at: dt.datetime
    expires_on: dt.date
    expired: bool


@dataclass(frozen=True)
class OpenDispute:
    """One open dispute with its answer-by date."""

    id: int
    case_id: int
    account_external_id: str
    grounds: str
    notes: str | None
    opened_by: str
    opener_name: str | None
    opened_at: dt.datetime
    deadline: dt.datetime
    overdue: bool


def _waiting_settlement_condition() -> ColumnElement[bool]:
    return and_(
        Settlement.status == SettlementStatus.PENDING_APPROVAL,
        Settlement.required_level == ApprovalLevel.TENANT,
    )


def count_waiting_settlements(session: Session) -> int:
    """How many offers wait for the tenant's decision."""
    return int(
        session.scalar(
            select(func.count()).select_from(Settlement).where(_waiting_settlement_condition())
        )
        or 0
    )


def staff_names(session: Session, labels: set[str]) -> dict[str, str]:
    """The full names of the staff behind ``user:<id>`` labels (others stay labels)."""
    ids = {int(label[5:]) for label in labels if label.startswith("user:") and label[5:].isdigit()}
    if not ids:
        return {}
    rows = session.execute(select(User.id, User.full_name).where(User.id.in_(ids)))
    return {f"user:{row.id}": row.full_name for row in rows}


def waiting_settlements(
    session: Session, *, today: dt.date, limit: int = 200
) -> list[WaitingSettlement]:
    """Offers waiting for the tenant, the soonest to expire first (at most ``limit``)."""
    rows = session.execute(
        select(
            Settlement,
            Account.external_id.label("account_external_id"),
            Agency.name.label("agency_name"),
        )
        .join(Case, Case.id == Settlement.case_id)
        .join(Account, Account.id == Case.account_id)
        .outerjoin(Agency, Agency.id == Settlement.agency_id)
        .where(_waiting_settlement_condition())
        .order_by(Settlement.expires_on, Settlement.id)
        .limit(limit)
    ).all()
    names = staff_names(session, {row.Settlement.requested_by for row in rows})
    return [
        WaitingSettlement(
            id=s.id,
            case_id=s.case_id,
            account_external_id=row.account_external_id,
            currency=s.currency,
            amount=s.amount,
            balance=s.balance,
            discount_percent=s.discount_percent,
            agency_name=row.agency_name,
            requested_by=s.requested_by,
            requester_name=names.get(s.requested_by),
            requested_at=s.created_at,
            expires_on=s.expires_on,
            expired=s.expires_on < today,
        )
        for row in rows
        for s in (row.Settlement,)
    ]


def count_open_disputes(session: Session) -> int:
    """How many disputes wait for the tenant's resolution."""
    return int(
        session.scalar(
            select(func.count()).select_from(Dispute).where(Dispute.status == DisputeStatus.OPEN)
        )
        or 0
    )


def open_disputes(session: Session, *, now: dt.datetime, limit: int = 200) -> list[OpenDispute]:
    """Open disputes, the soonest deadline first (at most ``limit``)."""
    answer_within = dt.timedelta(days=DISPUTE_RESPONSE_DAYS)
    rows = session.execute(
        select(Dispute, Account.external_id.label("account_external_id"))
        .join(Case, Case.id == Dispute.case_id)
        .join(Account, Account.id == Case.account_id)
        .where(Dispute.status == DisputeStatus.OPEN)
        .order_by(Dispute.created_at, Dispute.id)
        .limit(limit)
    ).all()
    names = staff_names(session, {row.Dispute.opened_by for row in rows})
    return [
        OpenDispute(
            id=d.id,
            case_id=d.case_id,
            account_external_id=row.account_external_id,
            grounds=d.grounds,
            notes=d.notes,
            opened_by=d.opened_by,
            opener_name=names.get(d.opened_by),
            opened_at=d.created_at,
            deadline=d.created_at + answer_within,
            overdue=d.created_at + answer_within < now,
        )
        for row in rows
        for d in (row.Dispute,)
    ]
