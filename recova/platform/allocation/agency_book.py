"""An agency's book in one tenant: its placements, active or recalled, a page at a time,
and the counts its manager watches (active now, recalled this month, ending within a week).

Each function reads one tenant's schema (its validated name, quoted) with every value
bound, so a page across tenants runs one query per tenant and names the tenant of every
row. Pages are keyset pages on the placements' agency indexes (tenant migration 0017):
active placements by end date, soonest first; recalled ones by recall date, newest first;
``id`` breaks ties, so a page is the same however big the book.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from recova.platform.auth.models import User
from recova.platform.kernel.db import quote_identifier
from recova.tenants.models import Tenant

PAGE_SIZE = 50
#: "Ending soon" is an active placement whose end date is at most this many days away
#: (or already past, the run not having recalled it yet).
ENDING_WITHIN_DAYS = 7


@dataclass(frozen=True)
class PlacementCounts:
    """How many of the agency's placements in one tenant are active, were recalled this
    month (the tenant's calendar), and end within ``ENDING_WITHIN_DAYS``."""

    active: int
    recalled_this_month: int
    ending_soon: int


@dataclass(frozen=True)
class PlacementKey:
    """Where a page of placements continues: after this (date, id)."""

    on: dt.date
    id: int

    def token(self) -> str:
        return f"{self.on.isoformat()}.{self.id}"

    @classmethod
    def parse(cls, token: str | None) -> PlacementKey | None:
        """The key a page link carries, or None for the first page (and for garbage)."""
        if not token:
            return None
        day, _, number = token.partition(".")
        try:
            return cls(dt.date.fromisoformat(day), int(number))
        except ValueError:
            return None


@dataclass(frozen=True)
class PlacementRow:
    """One placement of the agency, with its case's account and its collector now."""

    id: int
    case_id: int
    account_external_id: str
    segment: str | None
    started_on: dt.date
    ends_on: dt.date
    recalled_on: dt.date | None
    recall_reason: str | None
    balance_at_placement: Decimal
    currency: str
    collector_id: int | None
    collector_name: str | None


@dataclass(frozen=True)
class PlacementPage:
    rows: list[PlacementRow]
    #: The key of the next page, None on the last.
    next_key: PlacementKey | None


def placement_counts(
    session: Session, tenant: Tenant, *, agency_id: int, today: dt.date
) -> PlacementCounts:
    """The agency's counts in ``tenant`` on ``today`` (the tenant's date), in one query."""
    s = quote_identifier(tenant.schema_name)
    month = today.replace(day=1)
    next_month = (month + dt.timedelta(days=32)).replace(day=1)
    row = session.execute(
        text(
            f"""SELECT
                  (SELECT count(*) FROM {s}.placements
                   WHERE agency_id = :agency_id AND recalled_on IS NULL) AS active,
                  (SELECT count(*) FROM {s}.placements
                   WHERE agency_id = :agency_id AND recalled_on IS NOT NULL
                     AND recalled_on >= :month AND recalled_on < :next_month) AS recalled,
                  (SELECT count(*) FROM {s}.placements
                   WHERE agency_id = :agency_id AND recalled_on IS NULL
                     AND ends_on <= :soon) AS ending"""
        ),
        {
            "agency_id": agency_id,
            "month": month,
            "next_month": next_month,
            "soon": today + dt.timedelta(days=ENDING_WITHIN_DAYS),
        },
    ).one()
    return PlacementCounts(
        active=int(row.active), recalled_this_month=int(row.recalled), ending_soon=int(row.ending)
    )


def agency_placements(
    session: Session,
    tenant: Tenant,
    *,
    agency_id: int,
    recalled: bool,
    after: PlacementKey | None = None,
    limit: int = PAGE_SIZE,
) -> PlacementPage:
    """One page of the agency's placements in ``tenant``: active ones (``recalled``
    False) by end date, soonest first, with the collector each is assigned to now; or
    recalled ones by recall date, newest first."""
    s = quote_identifier(tenant.schema_name)
    if recalled:
        where = "pl.recalled_on IS NOT NULL"
        keyset = "AND (pl.recalled_on, pl.id) < (:on, :id)" if after else ""
        order = "pl.recalled_on DESC, pl.id DESC"
    else:
        where = "pl.recalled_on IS NULL"
        keyset = "AND (pl.ends_on, pl.id) > (:on, :id)" if after else ""
        order = "pl.ends_on, pl.id"
    rows = session.execute(
        text(
            f"""SELECT pl.id, pl.case_id, a.external_id AS account_external_id, pl.segment,
                       pl.started_on, pl.ends_on, pl.recalled_on, pl.recall_reason,
                       pl.balance_at_placement, pl.currency, x.collector_id
                FROM {s}.placements pl
                JOIN {s}.cases c ON c.id = pl.case_id
                JOIN {s}.accounts a ON a.id = c.account_id
                LEFT JOIN {s}.assignments x ON x.placement_id = pl.id AND x.ended_at IS NULL
                WHERE pl.agency_id = :agency_id AND {where} {keyset}
                ORDER BY {order}
                LIMIT :limit"""
        ),
        {
            "agency_id": agency_id,
            "on": after.on if after else None,
            "id": after.id if after else None,
            "limit": limit + 1,
        },
    ).all()
    more = len(rows) > limit
    rows = rows[:limit]
    collector_ids = {row.collector_id for row in rows if row.collector_id is not None}
    names: dict[int, str] = {}
    if collector_ids:
        found = session.execute(select(User.id, User.full_name).where(User.id.in_(collector_ids)))
        names = {row.id: row.full_name for row in found}
    page = [
        PlacementRow(
            id=row.id,
            case_id=row.case_id,
            account_external_id=row.account_external_id,
            segment=row.segment,
            started_on=row.started_on,
            ends_on=row.ends_on,
            recalled_on=row.recalled_on,
            recall_reason=row.recall_reason,
            balance_at_placement=row.balance_at_placement,
            currency=row.currency,
            collector_id=row.collector_id,
            collector_name=names.get(row.collector_id),
        )
        for row in rows
    ]
    next_key = None
    if more and page:
        last = page[-1]
        on = last.recalled_on if recalled and last.recalled_on is not None else last.ends_on
        next_key = PlacementKey(on, last.id)
    return PlacementPage(rows=page, next_key=next_key)
