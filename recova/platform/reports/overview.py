"""The figures of the portal's overview: the book at a glance, each one SQL aggregate.

- **Open inventory by bucket**: cases in collection (not closed, paid or settled; account
  not withdrawn) by their days-past-due bucket, with their outstanding balance. The bucket
  is the one allocation's segmentation stored (``case_segments``); a case no run has
  segmented yet is bucketed by its account's ``days_past_due`` through the tenant's bucket
  table, the same table segmentation uses.
- **Recovered**: money paid minus reversals, each row on its own date (tenant calendar),
  this month to date, last month to the same day of the month, and all of last month.
- **Promises**: due today (any promise but one a plan superseded), and judged broken
  this week (Monday to today, tenant calendar).
- **Liquidation curve**: for each placement month of the last twelve, what was recovered
  on those placements (payments minus reversals credited to them, by the billing rule)
  month by month since placement, cumulated, divided by their balance at placement.
- **Roll rates**: where the cases of each bucket ``ROLL_DAYS`` days ago are today, from
  the bucket history segmentation keeps (``bucket_transitions``): a case's bucket on that
  day is its stored bucket if it has not moved since, else the bucket its first move after
  that day left. Cases that left collection since go to the *closed* column (``None``).
- **Recoveries by agency**: money credited to each agency's placements this month and
  last month (``None``: the tenant's own recoveries, with no agency).

Money credited to a placement follows the ledger's attribution
(``recova.billing.ledger``, ``placement_credited_for``): on the payment's date, a recalled
placement still in its grace period first, else the placement active then; a reversal is
credited where its original was, and counted on its own date. Money stays ``Decimal``;
ratios are ``Decimal`` too. Amounts are summed per currency: never across currencies.

Speed: the statements touch only the rows they report (payments by their ``paid_at``
index from the first month shown, transitions by their ``as_of`` index after the roll-rate
day, placements by case); the inventory and the roll rates read the open book once each.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from recova.platform.agencies.models import Agency
from recova.platform.allocation.context import (
    CLOSED_STATUSES,
    balance_expression,
    open_case_condition,
)
from recova.platform.allocation.segmentation import (
    CURRENT_BUCKET,
    bucket_case_sql,
    tenant_buckets,
)
from recova.platform.kernel.db import scoped_schema

#: How far back the roll rates look: where the cases of each bucket this many days ago are.
ROLL_DAYS = 30
#: Placement months the liquidation curve draws (the current one included).
CURVE_MONTHS = 12
ZERO = Decimal(0)


@dataclass(frozen=True)
class BucketLine:
    bucket: str
    currency: str
    cases: int
    balance: Decimal


@dataclass(frozen=True)
class Recovered:
    currency: str
    this_month: Decimal
    last_month_to_date: Decimal
    last_month: Decimal


@dataclass(frozen=True)
class PromiseFigures:
    due_today: int
    due_today_amounts: dict[str, Decimal]
    kept_today: int
    broken_this_week: int
    broken_amounts: dict[str, Decimal]


@dataclass(frozen=True)
class CurvePoint:
    age: int  # months since placement: 0 is the month of placement
    recovered: Decimal  # in that month
    cumulative: Decimal
    ratio: Decimal  # cumulative / placed


@dataclass(frozen=True)
class CurveLine:
    month: dt.date  # first day of the placement month
    placements: int
    placed: Decimal
    points: list[CurvePoint]


@dataclass(frozen=True)
class RollRow:
    from_bucket: str
    cases: int
    #: To-bucket (``None``: left collection) → cases.
    counts: dict[str | None, int]

    def rate(self, to_bucket: str | None) -> Decimal:
        return Decimal(self.counts.get(to_bucket, 0)) / Decimal(self.cases)


@dataclass(frozen=True)
class AgencyRecovery:
    agency_id: int | None
    name: str | None
    currency: str
    this_month: Decimal
    last_month: Decimal


@dataclass
class Overview:
    today: dt.date
    currency: str  # the tenant's currency: the charts are drawn in it
    buckets: list[str]  # in the tenant's order, current (M0) first
    inventory: list[BucketLine]
    recovered: list[Recovered]
    promises: PromiseFigures
    curves: list[CurveLine]
    roll_since: dt.date
    roll_rates: list[RollRow]
    by_agency: list[AgencyRecovery]
    open_cases: int = field(init=False)
    open_balance: dict[str, Decimal] = field(init=False)

    def __post_init__(self) -> None:
        self.open_cases = sum(line.cases for line in self.inventory)
        balance: dict[str, Decimal] = {}
        for line in self.inventory:
            balance[line.currency] = balance.get(line.currency, ZERO) + line.balance
        self.open_balance = balance


def month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def add_months(month: dt.date, months: int) -> dt.date:
    """The first day of the month ``months`` after (or before) ``month``'s."""
    index = month.year * 12 + month.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


def start_of(day: dt.date, timezone: str) -> dt.datetime:
    """The instant ``day`` begins on the tenant's calendar."""
    return dt.datetime.combine(day, dt.time(0), tzinfo=zoneinfo.ZoneInfo(timezone))


def _rows(session: Session, sql: str, params: dict[str, Any]) -> list[Any]:
    return list(session.connection().exec_driver_sql(sql, params).all())


def book_overview(session: Session, *, today: dt.date, timezone: str, currency: str) -> Overview:
    """Every figure of the overview of the tenant ``session`` is bound to, as of ``today``."""
    buckets = tenant_buckets(session)
    inventory = open_inventory(session, buckets)
    names = [CURRENT_BUCKET, *(bucket["name"] for bucket in buckets)]
    # A bucket renamed since a case was segmented still shows, after the tenant's own.
    for line in inventory:
        if line.bucket not in names:
            names.append(line.bucket)
    by_agency = recoveries_by_agency(session, today=today, timezone=timezone)
    roll_since = today - dt.timedelta(days=ROLL_DAYS)
    return Overview(
        today=today,
        currency=currency,
        buckets=names,
        inventory=sorted(inventory, key=lambda line: (names.index(line.bucket), line.currency)),
        recovered=recovered_totals(session, today=today, timezone=timezone),
        promises=promise_figures(session, today=today, timezone=timezone),
        curves=liquidation_curves(session, today=today, timezone=timezone, currency=currency),
        roll_since=roll_since,
        roll_rates=roll_rates(session, since=roll_since, timezone=timezone, order=names),
        by_agency=by_agency,
    )


def open_inventory(session: Session, buckets: list[dict[str, Any]]) -> list[BucketLine]:
    """Cases in collection and their outstanding balance, by bucket and currency."""
    s = scoped_schema(session)
    fallback, params = bucket_case_sql(buckets, "a.days_past_due")
    rows = _rows(
        session,
        f"""SELECT coalesce(cs.bucket, {fallback}) AS bucket, a.currency,
                   count(*) AS cases, sum({balance_expression()}) AS balance
            FROM {s}.cases c
            JOIN {s}.accounts a ON a.id = c.account_id
            LEFT JOIN {s}.case_segments cs ON cs.case_id = c.id
            WHERE {open_case_condition()}
            GROUP BY 1, 2""",
        params,
    )
    return [BucketLine(row.bucket, row.currency, int(row.cases), row.balance) for row in rows]


def credited_sql(
    s: str,
    *,
    originals_since: bool = False,
    until: bool = False,
    accounts: str | None = None,
    since: str = "%(since)s",
) -> str:
    """SQL of ``credited``: every payment row since ``%(since)s`` with the placement it
    credits (the ledger's rule), signed (a reversal negative) and dated on the tenant's
    calendar (``day``: its own date; a reversal is credited on its original's date).

    ``originals_since``: leave out reversals of payments before ``%(since)s`` too (they
    credit placements that started before it). ``until``: only rows before ``%(until)s``
    (a closed period, such as one month of the agencies' scorecards). ``accounts``: only
    the payments of the accounts in that relation (a CTE with an ``account_id`` column,
    such as one agency's book); ``since``: the SQL of the lower bound when it is not the
    bound ``%(since)s`` (an expression over that CTE)."""
    originals = f"AND coalesce(o.paid_at, r.paid_at) >= {since}" if originals_since else ""
    before = "AND r.paid_at < %(until)s" if until else ""
    of_accounts = f"AND r.account_id IN (SELECT account_id FROM {accounts})" if accounts else ""
    return f"""moves AS (
            SELECT r.id, r.account_id, r.currency,
                   CASE WHEN r.kind = 'payment' THEN r.amount ELSE -r.amount END AS amount,
                   (r.paid_at AT TIME ZONE %(tz)s::text)::date AS day,
                   (coalesce(o.paid_at, r.paid_at) AT TIME ZONE %(tz)s::text)::date AS credit_day
            FROM {s}.payments r
            LEFT JOIN {s}.payments o ON o.id = r.reverses_id
            WHERE r.paid_at >= {since} {before} {originals} {of_accounts}
        ), credited AS (
            SELECT DISTINCT ON (m.id) m.*, pl.id AS placement_id, pl.agency_id, pl.started_on
            FROM moves m
            LEFT JOIN {s}.cases c ON c.account_id = m.account_id
            LEFT JOIN {s}.placements pl ON pl.case_id = c.id AND pl.started_on <= m.credit_day
             AND (coalesce(pl.recalled_on, pl.ends_on) > m.credit_day
                  OR coalesce(pl.grace_until, pl.ends_on + pl.grace_days) > m.credit_day)
            ORDER BY m.id,
                     coalesce(pl.recalled_on, pl.ends_on) <= m.credit_day DESC,
                     CASE WHEN coalesce(pl.recalled_on, pl.ends_on) <= m.credit_day
                          THEN coalesce(pl.recalled_on, pl.ends_on) ELSE pl.started_on END DESC,
                     pl.id DESC
        )"""


def recoveries_by_agency(
    session: Session, *, today: dt.date, timezone: str
) -> list[AgencyRecovery]:
    """Money credited to each agency (None: the tenant's own) this month and last month."""
    s = scoped_schema(session)
    this_month = month_start(today)
    last_month = add_months(this_month, -1)
    since = start_of(last_month, timezone)
    rows = _rows(
        session,
        f"""WITH {credited_sql(s)}
            SELECT agency_id, currency,
                   coalesce(sum(amount) FILTER (WHERE day >= %(this_month)s), 0) AS this_month,
                   coalesce(sum(amount) FILTER (WHERE day < %(this_month)s), 0) AS last_month
            FROM credited
            GROUP BY agency_id, currency""",
        {"tz": timezone, "since": since, "this_month": this_month},
    )
    ids = {row.agency_id for row in rows if row.agency_id is not None}
    names = {
        row.id: row.name
        for row in session.execute(select(Agency.id, Agency.name).where(Agency.id.in_(ids)))
    }
    found = [
        AgencyRecovery(
            row.agency_id, names.get(row.agency_id), row.currency, row.this_month, row.last_month
        )
        for row in rows
    ]
    # The agencies by what they recovered this month; the tenant's own money last.
    return sorted(
        found,
        key=lambda r: (r.agency_id is None, r.currency, -r.this_month, -r.last_month, r.name or ""),
    )


def recovered_totals(session: Session, *, today: dt.date, timezone: str) -> list[Recovered]:
    """Money paid minus reversals this month, last month to the same day, and last month."""
    s = scoped_schema(session)
    this_month = month_start(today)
    last_month = add_months(this_month, -1)
    # The same day of last month (the 31st of a 30-day month is its end).
    same_day = min(last_month + dt.timedelta(days=today.day), this_month)
    rows = _rows(
        session,
        f"""SELECT currency,
                   coalesce(sum(signed) FILTER (WHERE paid_at >= %(this_month)s), 0) AS this_month,
                   coalesce(sum(signed) FILTER (WHERE paid_at < %(same_day)s), 0) AS to_date,
                   coalesce(sum(signed) FILTER (WHERE paid_at < %(this_month)s), 0) AS last_month
            FROM (SELECT currency, paid_at,
                         CASE WHEN kind = 'payment' THEN amount ELSE -amount END AS signed
                  FROM {s}.payments WHERE paid_at >= %(last_month)s) p
            GROUP BY currency ORDER BY currency""",
        {
            "this_month": start_of(this_month, timezone),
            "last_month": start_of(last_month, timezone),
            "same_day": start_of(same_day, timezone),
        },
    )
    return [Recovered(row.currency, row.this_month, row.to_date, row.last_month) for row in rows]


def promise_figures(session: Session, *, today: dt.date, timezone: str) -> PromiseFigures:
    """Promises due today (and how many of them are kept), and those broken this week."""
    s = scoped_schema(session)
    week = today - dt.timedelta(days=today.weekday())
    rows = _rows(
        session,
        f"""SELECT 'due' AS kind, currency, count(*) AS promises,
                   count(*) FILTER (WHERE status = 'kept') AS kept, sum(amount) AS amount
            FROM {s}.promises WHERE due_date = %(today)s AND status <> 'superseded'
            GROUP BY currency
            UNION ALL
            SELECT 'broken', currency, count(*), 0, sum(amount)
            FROM {s}.promises WHERE status = 'broken' AND evaluated_at >= %(week)s
            GROUP BY currency""",
        {"today": today, "week": start_of(week, timezone)},
    )
    due = [row for row in rows if row.kind == "due"]
    broken = [row for row in rows if row.kind == "broken"]
    return PromiseFigures(
        due_today=sum(int(row.promises) for row in due),
        due_today_amounts={row.currency: row.amount for row in due},
        kept_today=sum(int(row.kept) for row in due),
        broken_this_week=sum(int(row.promises) for row in broken),
        broken_amounts={row.currency: row.amount for row in broken},
    )


def liquidation_curves(
    session: Session, *, today: dt.date, timezone: str, currency: str
) -> list[CurveLine]:
    """Per placement month (last ``CURVE_MONTHS``, in ``currency``): cumulative money
    credited to its placements ÷ their balance at placement, by months since placement."""
    s = scoped_schema(session)
    this_month = month_start(today)
    first = add_months(this_month, -(CURVE_MONTHS - 1))
    since = start_of(first, timezone)
    rows = _rows(
        session,
        f"""WITH {credited_sql(s, originals_since=True)},
            placed AS (
                SELECT date_trunc('month', started_on)::date AS month,
                       count(*) AS placements, sum(balance_at_placement) AS placed
                FROM {s}.placements
                WHERE started_on >= %(first)s AND currency = %(currency)s
                GROUP BY 1
            ), recovered AS (
                SELECT date_trunc('month', started_on)::date AS month,
                       (extract(year FROM day) * 12 + extract(month FROM day)
                        - extract(year FROM started_on) * 12
                        - extract(month FROM started_on))::int AS age,
                       sum(amount) AS amount
                FROM credited
                WHERE started_on >= %(first)s AND currency = %(currency)s
                GROUP BY 1, 2
            )
            SELECT p.month, p.placements, p.placed, r.age, r.amount
            FROM placed p LEFT JOIN recovered r ON r.month = p.month
            ORDER BY p.month, r.age""",
        {
            "tz": timezone,
            "since": since,
            "first": first,
            "currency": currency,
        },
    )
    by_month: dict[dt.date, tuple[int, Decimal, dict[int, Decimal]]] = {}
    for row in rows:
        _, _, ages = by_month.setdefault(row.month, (int(row.placements), row.placed, {}))
        if row.age is not None:
            ages[row.age] = row.amount
    curves = []
    for month, (placements, placed, ages) in by_month.items():
        # Every month the placements have lived through, the quiet ones included.
        elapsed = (this_month.year - month.year) * 12 + this_month.month - month.month
        cumulative = ZERO
        points = []
        for age in range(elapsed + 1):
            recovered = ages.get(age, ZERO)
            cumulative += recovered
            ratio = cumulative / placed if placed else ZERO
            points.append(CurvePoint(age, recovered, cumulative, ratio))
        curves.append(CurveLine(month, placements, placed, points))
    return curves


def roll_rates(
    session: Session, *, since: dt.date, timezone: str, order: list[str]
) -> list[RollRow]:
    """Where the cases of each bucket on ``since`` are today (``None``: left collection).

    Only cases in collection on ``since`` count: a case that closed, was paid, settled or
    withdrawn before that day is left out; one that left since is counted as *closed*.
    """
    s = scoped_schema(session)
    closed = ", ".join(f"'{status}'" for status in CLOSED_STATUSES)
    left = f"(c.status IN ({closed}) OR a.withdrawn_at IS NOT NULL)"
    rows = _rows(
        session,
        f"""WITH moved AS (
                SELECT DISTINCT ON (t.case_id) t.case_id, t.from_bucket
                FROM {s}.bucket_transitions t
                WHERE t.as_of > %(since)s
                ORDER BY t.case_id, t.as_of
            )
            SELECT CASE WHEN cs.bucket_since <= %(since)s THEN cs.bucket
                        ELSE m.from_bucket END AS was,
                   CASE WHEN {left} THEN NULL ELSE cs.bucket END AS now,
                   count(*) AS cases
            FROM {s}.case_segments cs
            JOIN {s}.cases c ON c.id = cs.case_id
            JOIN {s}.accounts a ON a.id = c.account_id
            LEFT JOIN moved m ON m.case_id = cs.case_id
            WHERE (cs.bucket_since <= %(since)s OR m.from_bucket IS NOT NULL)
              AND NOT ({left} AND coalesce(least(c.closed_at, a.withdrawn_at), '-infinity')
                                  < %(since_at)s)
            GROUP BY 1, 2""",
        {"since": since, "since_at": start_of(since + dt.timedelta(days=1), timezone)},
    )
    table: dict[str, dict[str | None, int]] = {}
    for row in rows:
        table.setdefault(row.was, {})[row.now] = int(row.cases)

    def rank(name: str) -> tuple[int, str]:
        return (order.index(name), "") if name in order else (len(order), name)

    return [
        RollRow(was, sum(counts.values()), counts)
        for was, counts in sorted(table.items(), key=lambda item: rank(item[0]))
    ]
