"""The figures of the portal's agencies page: a scorecard per agency and month, each figure
one SQL aggregate over every agency shown at once.

The month is ``[first, next)`` on the tenant's calendar. Per agency:

- **New placements**: placements that started in the month, and their balance at placement.
- **Book worked**: placements the agency held at some time in the month, its grace period
  after a recall included (the days a payment would be credited to it: from ``started_on``
  up to the placement's *reach*, ``PLACEMENT_REACH``), and their balance at placement.
- **Recalls**: placements recalled in the month.
- **Recovered**: money credited to the agency's placements in the month, payments minus
  reversals, each on its own date: the ledger's attribution, through the same SQL as the
  overview's recoveries by agency (``recova.platform.reports.overview.credited_sql``).
- **Liquidation**: recovered ÷ the balance of the book worked (per currency).
- **Right-party contact rate**: the agency's attempts in the month whose outcome is a
  right-party contact (completed, result ``connected``, the debtor not a third party: the
  rule of ``recova.platform.reports.experiments``) ÷ its attempts the gate let through
  (pending and completed; blocked attempts were never made).
- **Promise kept rate**: promises judged in the month (kept, partly kept, broken) that were
  made while the agency held the case; kept ÷ judged (a partly kept promise is not kept).
- **Blocked attempts by rule**: the agency's attempts the gate blocked in the month.
- **Disputes opened** in the month on cases the agency held that day.

A promise or dispute belongs to the agency whose placement held the case on the day it
was made (``started_on <= day < recalled_on or ends_on``). Money stays ``Decimal`` and is
never summed across currencies.

Speed: every statement reads an index range of the month (tenant migration 0014 adds the
agency-led ones: placements by agency and start, by agency and reach, by agency and
recall; attempts by agency and time; judged promises and disputes by time; blocked
attempts use 0013's), driven by the agencies shown, never the whole book.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from recova.platform.agencies.contracts import AgencyContract
from recova.platform.agencies.models import Agency
from recova.platform.kernel.db import scoped_schema
from recova.platform.reports.overview import add_months, credited_sql, start_of

ZERO = Decimal(0)
#: The day (exclusive) up to which a placement's payments credit its agency: the end of its
#: grace period, or of the placement itself if later. Tenant migration 0014 indexes this
#: very expression (``ix_placements_agency_reach``): keep the two identical.
PLACEMENT_REACH = (
    "greatest(coalesce(grace_until, ends_on + grace_days), coalesce(recalled_on, ends_on))"
)
#: Placements listed on one page of an agency.
PAGE_SIZE = 50
#: Months the month selector offers (the current one included).
MONTHS_OFFERED = 24


@dataclass(frozen=True)
class ContractedAgency:
    """An agency the tenant holds (or held) a contract with, and its contracts, newest first."""

    agency: Agency
    contracts: list[AgencyContract]
    #: The contract covering today, if any.
    active: AgencyContract | None


@dataclass
class Scorecard:
    """One agency's figures for one month; an agency without activity holds zeros."""

    agency_id: int
    placed_cases: int = 0
    placed_balance: dict[str, Decimal] = field(default_factory=dict)
    worked_cases: int = 0
    worked_balance: dict[str, Decimal] = field(default_factory=dict)
    recalls: int = 0
    recovered: dict[str, Decimal] = field(default_factory=dict)
    attempts: int = 0
    right_party_contacts: int = 0
    promises_judged: int = 0
    promises_kept: int = 0
    blocked_by_rule: dict[str, int] = field(default_factory=dict)
    disputes_opened: int = 0

    @property
    def currencies(self) -> list[str]:
        """Every currency the card has money in, sorted."""
        return sorted({*self.placed_balance, *self.worked_balance, *self.recovered})

    def liquidation(self, currency: str) -> Decimal | None:
        """Recovered ÷ balance worked in ``currency`` (None without a balance worked)."""
        worked = self.worked_balance.get(currency, ZERO)
        return self.recovered.get(currency, ZERO) / worked if worked else None

    @property
    def right_party_rate(self) -> Decimal | None:
        return Decimal(self.right_party_contacts) / self.attempts if self.attempts else None

    @property
    def kept_rate(self) -> Decimal | None:
        return Decimal(self.promises_kept) / self.promises_judged if self.promises_judged else None

    @property
    def blocked(self) -> int:
        return sum(self.blocked_by_rule.values())


@dataclass(frozen=True)
class PlacementRow:
    id: int
    case_id: int
    account_external_id: str
    started_on: dt.date
    ends_on: dt.date
    recalled_on: dt.date | None
    recall_reason: str | None
    grace_until: dt.date | None
    balance_at_placement: Decimal
    currency: str


@dataclass(frozen=True)
class PlacementPage:
    rows: list[PlacementRow]
    #: The keyset of the next page (``"<date>.<id>"``), None on the last page.
    next_after: str | None


def _rows(session: Session, sql: str, params: dict[str, Any]) -> list[Any]:
    return list(session.connection().exec_driver_sql(sql, params).all())


def contracted_agencies(
    session: Session, *, tenant_id: int, today: dt.date
) -> list[ContractedAgency]:
    """The agencies holding or having held a contract with the tenant, by name."""
    contracts = session.scalars(
        select(AgencyContract)
        .where(AgencyContract.tenant_id == tenant_id)
        .order_by(AgencyContract.agency_id, AgencyContract.starts_on.desc())
    ).all()
    by_agency: dict[int, list[AgencyContract]] = {}
    for contract in contracts:
        by_agency.setdefault(contract.agency_id, []).append(contract)
    agencies = session.scalars(select(Agency).where(Agency.id.in_(by_agency))).all()
    found = []
    for agency in agencies:
        held = by_agency[agency.id]
        active = next(
            (c for c in held if c.starts_on <= today and (c.ends_on is None or c.ends_on > today)),
            None,
        )
        found.append(ContractedAgency(agency, held, active))
    return sorted(found, key=lambda row: (row.agency.name.casefold(), row.agency.id))


def contracted_agency(
    session: Session, *, tenant_id: int, agency_id: int, today: dt.date
) -> ContractedAgency | None:
    """One agency of ``contracted_agencies`` (None: the tenant never contracted it)."""
    contracts = list(
        session.scalars(
            select(AgencyContract)
            .where(AgencyContract.tenant_id == tenant_id, AgencyContract.agency_id == agency_id)
            .order_by(AgencyContract.starts_on.desc())
        )
    )
    if not contracts:
        return None
    agency = session.get(Agency, agency_id)
    if agency is None:
        return None
    active = next(
        (c for c in contracts if c.starts_on <= today and (c.ends_on is None or c.ends_on > today)),
        None,
    )
    return ContractedAgency(agency, contracts, active)


def agency_scorecards(
    session: Session, *, agency_ids: list[int], month: dt.date, timezone: str
) -> dict[int, Scorecard]:
    """Every figure of the month starting ``month`` for each of ``agency_ids``."""
    first = month.replace(day=1)
    following = add_months(first, 1)
    params: dict[str, Any] = {
        "ids": list(agency_ids),
        "first": first,
        "next": following,
        "since": start_of(first, timezone),
        "until": start_of(following, timezone),
        "tz": timezone,
    }
    cards = {agency_id: Scorecard(agency_id) for agency_id in agency_ids}
    if not agency_ids:
        return cards
    _placements(session, cards, params)
    _recovered(session, cards, params)
    _attempts(session, cards, params)
    _blocked(session, cards, params)
    _promises(session, cards, params)
    _disputes(session, cards, params)
    return cards


def _placements(session: Session, cards: dict[int, Scorecard], params: dict[str, Any]) -> None:
    """New placements, the book worked and recalls: one statement, three index ranges."""
    s = scoped_schema(session)
    rows = _rows(
        session,
        f"""SELECT 'placed' AS figure, agency_id, currency, count(*) AS cases,
                   sum(balance_at_placement) AS balance
            FROM {s}.placements
            WHERE agency_id = ANY(%(ids)s) AND started_on >= %(first)s
              AND started_on < %(next)s
            GROUP BY agency_id, currency
            UNION ALL
            SELECT 'worked', agency_id, currency, count(*), sum(balance_at_placement)
            FROM {s}.placements
            WHERE agency_id = ANY(%(ids)s) AND {PLACEMENT_REACH} > %(first)s
              AND started_on < %(next)s
            GROUP BY agency_id, currency
            UNION ALL
            SELECT 'recalled', agency_id, '', count(*), 0
            FROM {s}.placements
            WHERE agency_id = ANY(%(ids)s) AND recalled_on >= %(first)s
              AND recalled_on < %(next)s
            GROUP BY agency_id""",
        params,
    )
    for row in rows:
        card = cards[row.agency_id]
        if row.figure == "placed":
            card.placed_cases += int(row.cases)
            card.placed_balance[row.currency] = row.balance
        elif row.figure == "worked":
            card.worked_cases += int(row.cases)
            card.worked_balance[row.currency] = row.balance
        else:
            card.recalls = int(row.cases)


def _recovered(session: Session, cards: dict[int, Scorecard], params: dict[str, Any]) -> None:
    """Money credited to each agency's placements in the month, by the ledger's rule."""
    s = scoped_schema(session)
    rows = _rows(
        session,
        f"""WITH {credited_sql(s, until=True)}
            SELECT agency_id, currency, sum(amount) AS amount
            FROM credited
            WHERE agency_id = ANY(%(ids)s)
            GROUP BY agency_id, currency""",
        params,
    )
    for row in rows:
        cards[row.agency_id].recovered[row.currency] = row.amount


def _attempts(session: Session, cards: dict[int, Scorecard], params: dict[str, Any]) -> None:
    """Attempts the gate let through, and those that reached the debtor in person."""
    s = scoped_schema(session)
    rows = _rows(
        session,
        f"""SELECT agency_id, count(*) AS attempts,
                   count(*) FILTER (WHERE status = 'completed' AND result = 'connected'
                                    AND NOT third_party) AS right_party
            FROM {s}.contact_attempts
            WHERE agency_id = ANY(%(ids)s) AND status <> 'blocked'
              AND attempted_at >= %(since)s AND attempted_at < %(until)s
            GROUP BY agency_id""",
        params,
    )
    for row in rows:
        card = cards[row.agency_id]
        card.attempts, card.right_party_contacts = int(row.attempts), int(row.right_party)


def _blocked(session: Session, cards: dict[int, Scorecard], params: dict[str, Any]) -> None:
    s = scoped_schema(session)
    rows = _rows(
        session,
        f"""SELECT agency_id, blocked_rule, count(*) AS blocked
            FROM {s}.contact_attempts
            WHERE status = 'blocked' AND attempted_at >= %(since)s
              AND attempted_at < %(until)s AND agency_id = ANY(%(ids)s)
            GROUP BY agency_id, blocked_rule
            ORDER BY agency_id, count(*) DESC, blocked_rule""",
        params,
    )
    for row in rows:
        cards[row.agency_id].blocked_by_rule[row.blocked_rule] = int(row.blocked)


def _holder_sql(s: str, case: str, at: str) -> str:
    """SQL of the agency whose placement held case ``case`` on the tenant date of ``at``."""
    day = f"({at} AT TIME ZONE %(tz)s::text)::date"
    return f"""(SELECT pl.agency_id FROM {s}.placements pl
                WHERE pl.case_id = {case} AND pl.started_on <= {day}
                  AND coalesce(pl.recalled_on, pl.ends_on) > {day}
                ORDER BY pl.started_on DESC, pl.id DESC LIMIT 1)"""


def _promises(session: Session, cards: dict[int, Scorecard], params: dict[str, Any]) -> None:
    """Promises judged in the month, by the agency that held the case when it was made."""
    s = scoped_schema(session)
    rows = _rows(
        session,
        f"""SELECT holder AS agency_id, count(*) AS judged,
                   count(*) FILTER (WHERE status = 'kept') AS kept
            FROM (SELECT p.status, {_holder_sql(s, "p.case_id", "p.created_at")} AS holder
                  FROM {s}.promises p
                  WHERE p.status IN ('kept', 'partly_kept', 'broken')
                    AND p.evaluated_at >= %(since)s AND p.evaluated_at < %(until)s
                  OFFSET 0) judged  -- once per promise: not inlined into WHERE and SELECT
            WHERE holder = ANY(%(ids)s)
            GROUP BY holder""",
        params,
    )
    for row in rows:
        card = cards[row.agency_id]
        card.promises_judged, card.promises_kept = int(row.judged), int(row.kept)


def _disputes(session: Session, cards: dict[int, Scorecard], params: dict[str, Any]) -> None:
    """Disputes opened in the month, by the agency that held the case that day."""
    s = scoped_schema(session)
    rows = _rows(
        session,
        f"""SELECT holder AS agency_id, count(*) AS opened
            FROM (SELECT {_holder_sql(s, "d.case_id", "d.created_at")} AS holder
                  FROM {s}.disputes d
                  WHERE d.created_at >= %(since)s AND d.created_at < %(until)s
                  OFFSET 0) opened  -- once per dispute: not inlined into WHERE and SELECT
            WHERE holder = ANY(%(ids)s)
            GROUP BY holder""",
        params,
    )
    for row in rows:
        cards[row.agency_id].disputes_opened = int(row.opened)


def parse_after(value: str | None) -> tuple[dt.date, int] | None:
    """A keyset ``"<date>.<id>"`` from a URL (None when absent or not one)."""
    if not value or "." not in value:
        return None
    day, _, ident = value.partition(".")
    try:
        return dt.date.fromisoformat(day), int(ident)
    except ValueError:
        return None


def agency_placements(
    session: Session,
    *,
    agency_id: int,
    month: dt.date,
    recalled: bool,
    after: tuple[dt.date, int] | None = None,
    limit: int = PAGE_SIZE,
) -> PlacementPage:
    """The agency's placements that started in the month (``recalled``: that were recalled
    in it), latest first, one keyset page after ``after``."""
    s = scoped_schema(session)
    first = month.replace(day=1)
    key = "recalled_on" if recalled else "started_on"
    params: dict[str, Any] = {
        "agency": agency_id,
        "first": first,
        "next": add_months(first, 1),
        "limit": limit + 1,
    }
    keyset = ""
    if after is not None:
        keyset = f"AND (pl.{key}, pl.id) < (%(after_day)s, %(after_id)s)"
        params.update(after_day=after[0], after_id=after[1])
    rows = _rows(
        session,
        f"""SELECT pl.id, pl.case_id, a.external_id AS account_external_id, pl.started_on,
                   pl.ends_on, pl.recalled_on, pl.recall_reason, pl.grace_until,
                   pl.balance_at_placement, pl.currency
            FROM {s}.placements pl
            JOIN {s}.cases c ON c.id = pl.case_id
            JOIN {s}.accounts a ON a.id = c.account_id
            WHERE pl.agency_id = %(agency)s AND pl.{key} >= %(first)s AND pl.{key} < %(next)s
              {keyset}
            ORDER BY pl.{key} DESC, pl.id DESC
            LIMIT %(limit)s""",
        params,
    )
    shown = [PlacementRow(**row._asdict()) for row in rows[:limit]]
    next_after = None
    if len(rows) > limit:
        last = shown[-1]
        day = last.recalled_on if recalled else last.started_on
        next_after = f"{day.isoformat()}.{last.id}" if day is not None else None
    return PlacementPage(shown, next_after)


def months_offered(today: dt.date, count: int = MONTHS_OFFERED) -> list[dt.date]:
    """The months the selector offers, the current one first."""
    current = today.replace(day=1)
    return [add_months(current, -n) for n in range(count)]
