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

The agency's side (``agency_settlements``), across every tenant it serves, one query per
tenant schema: the offers waiting for its manager (above the collectors' limit, within
the contract's), and those it passed to the tenant (above the contract's), each only on
a case placed with the agency now, as every agency route reaches cases.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import ColumnElement, and_, func, select, text
from sqlalchemy.orm import Session

from recova.platform.agencies.models import Agency
from recova.platform.auth.models import User
from recova.platform.cases.display import name_for_caller
from recova.platform.cases.models import Account, Case
from recova.platform.kernel.db import quote_identifier
from recova.platform.work.models import (
    ApprovalLevel,
    Dispute,
    DisputeStatus,
    Settlement,
    SettlementStatus,
)
from recova.tenants.models import Tenant, tenant_today

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


# --- the agency's side ---------------------------------------------------------------------

#: How long an offer passed to the tenant stays listed once it is no longer waiting.
PASSED_LISTED_DAYS = 30


@dataclass(frozen=True)
class AgencySettlement:
    """One offer made under the agency, in one of the tenants it serves."""

    tenant_slug: str
    tenant_name: str
    tenant_timezone: str
    id: int
    case_id: int
    account_external_id: str
    #: Masked as the caller may see it (agency staff: ``Z**** S**``).
    debtor_name: str
    currency: str
    amount: Decimal
    balance: Decimal
    discount_percent: Decimal
    required_level: ApprovalLevel
    status: SettlementStatus
    requested_by: str
    requester_name: str | None
    request_note: str | None
    requested_at: dt.datetime
    expires_on: dt.date
    expired: bool
    decided_by: str | None
    decider_name: str | None
    decided_at: dt.datetime | None
    decision_note: str | None


@dataclass(frozen=True)
class AgencySettlements:
    """A list of the agency's offers (at most ``limit`` per tenant) and how many there are
    in all, per tenant slug."""

    items: list[AgencySettlement]
    totals: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.totals.values())


def _agency_settlements_sql(schema: str, *, passed: bool) -> str:
    """The offers of one tenant's schema (quoted) made under ``:agency_id`` on cases
    placed with it now: waiting for its manager, or (``passed``) the tenant's."""
    if passed:
        which = f"""s.required_level = '{ApprovalLevel.TENANT.value}'
                    AND (s.status = '{SettlementStatus.PENDING_APPROVAL.value}'
                         OR s.created_at >= :since)"""
        order = "s.created_at DESC, s.id DESC"
    else:
        which = f"""s.required_level = '{ApprovalLevel.MANAGER.value}'
                    AND s.status = '{SettlementStatus.PENDING_APPROVAL.value}'"""
        order = "s.expires_on, s.id"
    return f"""SELECT s.id, s.case_id, a.external_id AS account_external_id,
                      d.full_name AS debtor_name, s.currency, s.amount, s.balance,
                      s.discount_percent, s.required_level, s.status, s.requested_by,
                      s.request_note, s.created_at, s.expires_on, s.decided_by,
                      s.decided_at, s.decision_note, count(*) OVER () AS total
               FROM {schema}.settlements s
               JOIN {schema}.cases c ON c.id = s.case_id
               JOIN {schema}.accounts a ON a.id = c.account_id
               JOIN {schema}.debtors d ON d.id = c.debtor_id
               WHERE s.agency_id = :agency_id AND {which}
                 AND EXISTS (SELECT 1 FROM {schema}.placements pl
                             WHERE pl.case_id = s.case_id AND pl.agency_id = :agency_id
                               AND pl.recalled_on IS NULL)
               ORDER BY {order}
               LIMIT :limit"""  # noqa: S608 - a quoted schema and constants; values bound


def agency_settlements(
    session: Session,
    tenants: list[Tenant],
    *,
    agency_id: int,
    passed: bool = False,
    now: dt.datetime,
    limit: int = 100,
) -> AgencySettlements:
    """The agency's offers waiting for its manager (soonest to expire first), or, with
    ``passed``, those above its contracts' limits passed to the tenant (newest first:
    every one still waiting, and the others made in the last ``PASSED_LISTED_DAYS``).

    One query per tenant's schema, at most ``limit`` rows each; each row names its
    tenant, and only cases placed with the agency now are listed.
    """
    items: list[AgencySettlement] = []
    totals: dict[str, int] = {}
    rows_by_tenant = []
    for tenant in tenants:
        rows = (
            session.execute(
                text(_agency_settlements_sql(quote_identifier(tenant.schema_name), passed=passed)),
                {
                    "agency_id": agency_id,
                    "since": now - dt.timedelta(days=PASSED_LISTED_DAYS),
                    "limit": limit,
                },
            )
            .mappings()
            .all()
        )
        totals[tenant.slug] = int(rows[0]["total"]) if rows else 0
        rows_by_tenant.append((tenant, rows))
    labels = {
        label
        for _, rows in rows_by_tenant
        for row in rows
        for label in (row["requested_by"], row["decided_by"])
        if label
    }
    names = staff_names(session, labels)
    for tenant, rows in rows_by_tenant:
        today = tenant_today(tenant.timezone)
        items.extend(
            AgencySettlement(
                tenant_slug=tenant.slug,
                tenant_name=tenant.name,
                tenant_timezone=tenant.timezone,
                id=row["id"],
                case_id=row["case_id"],
                account_external_id=row["account_external_id"],
                debtor_name=name_for_caller(row["debtor_name"]),
                currency=row["currency"],
                amount=row["amount"],
                balance=row["balance"],
                discount_percent=row["discount_percent"],
                required_level=ApprovalLevel(row["required_level"]),
                status=SettlementStatus(row["status"]),
                requested_by=row["requested_by"],
                requester_name=names.get(row["requested_by"]),
                request_note=row["request_note"],
                requested_at=row["created_at"],
                expires_on=row["expires_on"],
                expired=row["expires_on"] < today,
                decided_by=row["decided_by"],
                decider_name=names.get(row["decided_by"] or ""),
                decided_at=row["decided_at"],
                decision_note=row["decision_note"],
            )
            for row in rows
        )
    if not passed:
        items.sort(key=lambda item: (item.expires_on, item.tenant_slug, item.id))
    else:
        items.sort(key=lambda item: item.requested_at, reverse=True)
    return AgencySettlements(items=items, totals=totals)
