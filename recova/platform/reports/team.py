"""The figures of the agency manager's team page: each collector's day, and the agency's
book in every tenant it serves.

**Today** is each tenant's own calendar day: a tenant's rows count from midnight to
midnight in its time zone, and a collector's figures are the sums of their day in every
tenant (money per currency, never added across currencies). Per collector:

- **Assigned**: their open assignments now.
- **Worked today**: distinct cases they made an attempt on (one the gate let through) or
  made a promise on today.
- **Attempts**: attempts the gate let through today (pending or completed; a blocked
  attempt was never made); **right-party contacts** among them: completed, result
  ``connected``, not with a third party (the rule of ``reports.agencies``).
- **Promises made** today, with their amount.
- **Kept rate**: of their promises due in the ``KEPT_WINDOW_DAYS`` days before today and
  already judged (kept, partly kept, broken; those still in their grace period wait),
  the share kept in full.
- **Collected today**: payments minus reversals dated today, credited to the agency's
  placements by the ledger's rule (``reports.overview.credited_sql``, as billing and the
  agencies' scorecards attribute them), each to the collector whose assignment of that
  placement was open when the money came in (a reversal: when its original came in).
  Money credited to the agency with no collector of it assigned at that moment (a late
  payment in a recall's grace period, a collector since moved) is shown apart.
- **Blocked attempts by rule**: their attempts the gate refused today.

Per tenant and bucket (the case's bucket now), the agency's active placements: cases,
balance now and at placement, money credited to them since they started, and
**liquidation** = that money ÷ their balance at placement (per currency). That reads the
agency's whole book in the tenant (about a second at a million cases), so the page never
runs it: ``refresh_agency_book`` (the body of
``recova.platform.reports.jobs.refresh_agency_book_job``) computes it and keeps it in
Redis per tenant and agency, with the instant it was computed; the page reads one key
per tenant and asks for a refresh once it is ``BOOK_STALE_AFTER`` old or of an earlier
day. Redis is a cache here: a lost snapshot only means a recompute.

Each tenant is read by its own statements on its own schema (quoted, every value bound),
set-based over every collector at once (``GROUP BY``), never one query per collector: a
collector's day is index ranges of one day (attempts by agency and time, tenant
migration 0014; blocked ones, 0013; promises by creator and due date and assignments by
placement, 0018), and the book is the agency's active placements only.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from recova.platform.agencies.contracts import agency_has_active_contract
from recova.platform.allocation.segmentation import DEFAULT_BUCKETS
from recova.platform.allocation.services import agency_collectors
from recova.platform.kernel.db import quote_identifier
from recova.platform.kernel.extension import Platform
from recova.platform.reports.overview import credited_sql, start_of
from recova.tenants.models import Tenant, TenantStatus, tenant_today

ZERO = Decimal(0)
#: The kept rate reads the promises due in this many days before today.
KEPT_WINDOW_DAYS = 30
#: A book snapshot older than this is shown with its time while a refresh is queued.
BOOK_STALE_AFTER = dt.timedelta(minutes=15)
#: How long Redis keeps a book snapshot nobody refreshes (a contract ended, say).
BOOK_KEEP_FOR = dt.timedelta(days=2)
#: Bumped when the stored shape changes: an older snapshot is then treated as missing.
BOOK_VERSION = 1
BOOK_WORK_MEM = "128MB"


def _add(into: dict[str, Decimal], currency: str, amount: Decimal | None) -> None:
    if amount is not None:
        into[currency] = into.get(currency, ZERO) + amount


@dataclass
class CollectorDay:
    """One collector's day, summed over every tenant the agency serves."""

    user_id: int
    full_name: str
    email: str
    is_active: bool
    max_cases: int
    assigned: int = 0
    worked: int = 0
    attempts: int = 0
    right_party: int = 0
    promises_made: int = 0
    promised: dict[str, Decimal] = field(default_factory=dict)
    promises_judged: int = 0
    promises_kept: int = 0
    collected: dict[str, Decimal] = field(default_factory=dict)
    blocked_by_rule: dict[str, int] = field(default_factory=dict)

    @property
    def kept_rate(self) -> Decimal | None:
        return Decimal(self.promises_kept) / self.promises_judged if self.promises_judged else None

    @property
    def right_party_rate(self) -> Decimal | None:
        return Decimal(self.right_party) / self.attempts if self.attempts else None

    @property
    def blocked(self) -> int:
        return sum(self.blocked_by_rule.values())

    def add(self, other: CollectorDay) -> None:
        """Add another collector's figures to these (the team's total)."""
        self.assigned += other.assigned
        self.worked += other.worked
        self.attempts += other.attempts
        self.right_party += other.right_party
        self.promises_made += other.promises_made
        self.promises_judged += other.promises_judged
        self.promises_kept += other.promises_kept
        for currency, amount in other.promised.items():
            _add(self.promised, currency, amount)
        for currency, amount in other.collected.items():
            _add(self.collected, currency, amount)
        for rule, count in other.blocked_by_rule.items():
            self.blocked_by_rule[rule] = self.blocked_by_rule.get(rule, 0) + count


@dataclass(frozen=True)
class TenantDay:
    """A tenant the agency serves, and the day its figures are of."""

    slug: str
    name: str
    timezone: str
    today: dt.date


@dataclass
class BookLine:
    """The agency's active placements in one tenant, bucket and currency."""

    tenant: str
    bucket: str | None
    currency: str
    cases: int = 0
    balance: Decimal = ZERO
    placed_balance: Decimal = ZERO
    recovered: Decimal = ZERO

    @property
    def liquidation(self) -> Decimal | None:
        return self.recovered / self.placed_balance if self.placed_balance else None


@dataclass(frozen=True)
class BookSnapshot:
    """The agency's book in one tenant as computed at ``computed_at`` (UTC) on ``today``
    (the tenant's date), its lines by bucket and currency in the tenant's bucket order."""

    tenant_id: int
    agency_id: int
    today: dt.date
    computed_at: dt.datetime
    lines: list[BookLine]

    def is_stale(self, *, now: dt.datetime, today: dt.date) -> bool:
        """Older than ``BOOK_STALE_AFTER``, or computed on an earlier day of the tenant's."""
        return self.today < today or now - self.computed_at > BOOK_STALE_AFTER

    @property
    def totals(self) -> list[BookLine]:
        """The book in all buckets, one line per currency."""
        totals: dict[str, BookLine] = {}
        for line in self.lines:
            total = totals.setdefault(line.currency, BookLine(line.tenant, None, line.currency))
            total.cases += line.cases
            total.balance += line.balance
            total.placed_balance += line.placed_balance
            total.recovered += line.recovered
        return [totals[currency] for currency in sorted(totals)]


@dataclass
class TeamToday:
    """Each collector's day, and the tenants it is of."""

    tenants: list[TenantDay]
    collectors: list[CollectorDay]
    #: Collected today for the agency with no collector of it assigned when it came in.
    unattributed: dict[str, Decimal]

    @property
    def total(self) -> CollectorDay:
        """The whole team's figures (the money without a collector included)."""
        total = CollectorDay(user_id=0, full_name="", email="", is_active=True, max_cases=0)
        for collector in self.collectors:
            total.add(collector)
        for currency, amount in self.unattributed.items():
            _add(total.collected, currency, amount)
        return total


def _rows(session: Session, sql: str, params: dict[str, Any]) -> list[Any]:
    return list(session.connection().exec_driver_sql(sql, params).all())


def team_today(session: Session, *, agency_id: int, tenants: list[Tenant]) -> TeamToday:
    """Each collector's day in every tenant of ``tenants`` (those the agency serves:
    ``allocation.services.tenants_served``), one statement per tenant."""
    profiles = agency_collectors(session, agency_id)
    collectors = {
        row["user_id"]: CollectorDay(
            user_id=row["user_id"],
            full_name=row["full_name"],
            email=row["email"],
            is_active=row["is_active"],
            max_cases=row["max_cases"],
        )
        for row in profiles
    }
    unattributed: dict[str, Decimal] = {}
    days: list[TenantDay] = []
    for tenant in tenants:
        today = tenant_today(tenant.timezone)
        days.append(TenantDay(tenant.slug, tenant.name, tenant.timezone, today))
        _collector_figures(
            session,
            s=quote_identifier(tenant.schema_name),
            tenant=tenant,
            today=today,
            agency_id=agency_id,
            collectors=collectors,
            unattributed=unattributed,
        )
    ordered = sorted(collectors.values(), key=lambda c: (c.full_name.casefold(), c.user_id))
    return TeamToday(days, ordered, unattributed)


def _collector_figures(
    session: Session,
    *,
    s: str,
    tenant: Tenant,
    today: dt.date,
    agency_id: int,
    collectors: dict[int, CollectorDay],
    unattributed: dict[str, Decimal],
) -> None:
    """Every per-collector figure of one tenant's day, in one statement."""
    ids = sorted(collectors)
    params: dict[str, Any] = {
        "agency": agency_id,
        "ids": ids,
        "labels": [f"user:{user_id}" for user_id in ids],
        "since": start_of(today, tenant.timezone),
        "until": start_of(today + dt.timedelta(days=1), tenant.timezone),
        "today": today,
        "window_from": today - dt.timedelta(days=KEPT_WINDOW_DAYS),
        "tz": tenant.timezone,
    }
    # A promise is due on the day it is made or later (``promises.create_promise``), so
    # today's are a range of the creator's index from today's date on.
    today_promises = f"""FROM {s}.promises
            WHERE created_by = ANY(%(labels)s) AND due_date >= %(today)s
              AND created_at >= %(since)s AND created_at < %(until)s"""
    creator = "substr(created_by, 6)::int"  # 'user:<id>'
    rows = _rows(
        session,
        f"""WITH {credited_sql(s, until=True)},
            -- Today's attempts the gate let through, read once for two figures.
            attempted AS MATERIALIZED (
                SELECT user_id, case_id, status, result, third_party
                FROM {s}.contact_attempts
                WHERE agency_id = %(agency)s AND status <> 'blocked'
                  AND attempted_at >= %(since)s AND attempted_at < %(until)s
                  AND user_id = ANY(%(ids)s)
            )
            SELECT 'assigned' AS figure, collector_id AS user_id, '' AS key,
                   count(*) AS n, 0::bigint AS m, NULL::numeric AS amount
            FROM {s}.assignments
            WHERE ended_at IS NULL AND collector_id = ANY(%(ids)s)
            GROUP BY collector_id
            UNION ALL
            SELECT 'attempts', user_id, '', count(*),
                   count(*) FILTER (WHERE status = 'completed' AND result = 'connected'
                                    AND NOT third_party), NULL
            FROM attempted
            GROUP BY user_id
            UNION ALL
            SELECT 'blocked', user_id, blocked_rule, count(*), 0, NULL
            FROM {s}.contact_attempts
            WHERE status = 'blocked' AND attempted_at >= %(since)s
              AND attempted_at < %(until)s AND agency_id = %(agency)s
              AND user_id = ANY(%(ids)s)
            GROUP BY user_id, blocked_rule
            UNION ALL
            SELECT 'worked', who, '', count(DISTINCT case_id), 0, NULL
            FROM (SELECT user_id AS who, case_id FROM attempted
                  UNION ALL
                  SELECT {creator}, case_id {today_promises}) worked
            GROUP BY who
            UNION ALL
            SELECT 'promised', {creator}, currency, count(*), 0, sum(amount)
            {today_promises}
            GROUP BY created_by, currency
            UNION ALL
            SELECT 'kept', {creator}, '', count(*), count(*) FILTER (WHERE status = 'kept'),
                   NULL
            FROM {s}.promises
            WHERE created_by = ANY(%(labels)s) AND due_date >= %(window_from)s
              AND due_date < %(today)s AND status IN ('kept', 'partly_kept', 'broken')
            GROUP BY created_by
            UNION ALL
            SELECT 'collected', holder.collector_id, credited.currency, count(*), 0,
                   sum(credited.amount)
            FROM credited
            JOIN {s}.payments r ON r.id = credited.id
            LEFT JOIN {s}.payments o ON o.id = r.reverses_id
            LEFT JOIN LATERAL (
                SELECT x.collector_id FROM {s}.assignments x
                WHERE x.placement_id = credited.placement_id
                  AND x.assigned_at <= coalesce(o.paid_at, r.paid_at)
                  AND (x.ended_at IS NULL OR x.ended_at > coalesce(o.paid_at, r.paid_at))
                ORDER BY x.assigned_at DESC, x.id DESC
                LIMIT 1
            ) holder ON true
            WHERE credited.agency_id = %(agency)s
            GROUP BY holder.collector_id, credited.currency""",
        params,
    )
    for row in rows:
        collector = collectors.get(row.user_id) if row.user_id is not None else None
        if row.figure == "collected":
            _add(collector.collected if collector else unattributed, row.key, row.amount)
            continue
        if collector is None:
            continue
        if row.figure == "assigned":
            collector.assigned += int(row.n)
        elif row.figure == "attempts":
            collector.attempts += int(row.n)
            collector.right_party += int(row.m)
        elif row.figure == "blocked":
            rule = str(row.key)
            collector.blocked_by_rule[rule] = collector.blocked_by_rule.get(rule, 0) + int(row.n)
        elif row.figure == "worked":
            collector.worked += int(row.n)
        elif row.figure == "promised":
            collector.promises_made += int(row.n)
            _add(collector.promised, row.key, row.amount)
        elif row.figure == "kept":
            collector.promises_judged += int(row.n)
            collector.promises_kept += int(row.m)


def bucket_names(session: Session, tenant: Tenant) -> list[str]:
    """The tenant's days-past-due buckets by name, in its order (the defaults until set)."""
    s = quote_identifier(tenant.schema_name)
    rows = _rows(session, f"SELECT buckets FROM {s}.allocation_settings WHERE id = 1", {})
    buckets = rows[0].buckets if rows else DEFAULT_BUCKETS
    return [bucket["name"] for bucket in buckets]


def agency_book(session: Session, *, tenant: Tenant, agency_id: int) -> list[BookLine]:
    """The agency's active placements in one tenant by bucket and currency, with the money
    credited to them since they started, in one statement (the agency's whole book there:
    the page reads it from ``refresh_agency_book``'s snapshot)."""
    s = quote_identifier(tenant.schema_name)
    rows = _rows(
        session,
        f"""WITH book AS MATERIALIZED (
                SELECT pl.id, pl.currency, pl.balance_at_placement, pl.started_on,
                       c.account_id, seg.bucket,
                       a.outstanding_principal + a.outstanding_interest + a.outstanding_fees
                       + a.outstanding_penalties AS balance
                FROM {s}.placements pl
                JOIN {s}.cases c ON c.id = pl.case_id
                JOIN {s}.accounts a ON a.id = c.account_id
                LEFT JOIN {s}.case_segments seg ON seg.case_id = pl.case_id
                WHERE pl.agency_id = %(agency)s AND pl.recalled_on IS NULL
            ), {
            credited_sql(
                s,
                accounts="book",
                since="(SELECT (min(started_on)::timestamp AT TIME ZONE %(tz)s::text) FROM book)",
            )
        }
            SELECT 'book' AS figure, bucket, currency, count(*) AS cases,
                   sum(balance) AS balance, sum(balance_at_placement) AS placed
            FROM book
            GROUP BY bucket, currency
            UNION ALL
            SELECT 'recovered', b.bucket, credited.currency, 0, sum(credited.amount), 0
            FROM credited JOIN book b ON b.id = credited.placement_id
            GROUP BY b.bucket, credited.currency""",
        {"agency": agency_id, "tz": tenant.timezone},
    )
    lines: dict[tuple[str | None, str], BookLine] = {}
    for row in rows:
        line = lines.setdefault(
            (row.bucket, row.currency), BookLine(tenant.slug, row.bucket, row.currency)
        )
        if row.figure == "book":
            line.cases = int(row.cases)
            line.balance = row.balance
            line.placed_balance = row.placed
        else:
            line.recovered = row.balance
    order = {name: n for n, name in enumerate(bucket_names(session, tenant))} if lines else {}
    return sorted(
        lines.values(),
        key=lambda line: (
            line.bucket is None,
            order.get(line.bucket or "", len(order)),
            line.bucket or "",
            line.currency,
        ),
    )


# --- the book's snapshot -------------------------------------------------------------------


def book_key(objects: Platform, *, tenant_id: int, agency_id: int) -> str:
    return f"{objects.settings.queue_prefix}recova:team-book:{tenant_id}:{agency_id}"


def refresh_agency_book(
    objects: Platform, *, tenant_id: int, agency_id: int
) -> BookSnapshot | None:
    """Compute the agency's book in the tenant and store it (idempotent); None, and
    nothing stored, when the agency no longer serves the tenant."""
    with objects.db.session() as session:
        tenant = session.get(Tenant, tenant_id)
        if tenant is None or tenant.status != TenantStatus.ACTIVE:
            return None
        today = tenant_today(tenant.timezone)
        if not agency_has_active_contract(
            session, agency_id=agency_id, tenant_id=tenant_id, day=today
        ):
            return None
        # The book's sorts and hashes (a hundred thousand placements) fit in memory.
        session.execute(text(f"SET LOCAL work_mem = '{BOOK_WORK_MEM}'"))
        lines = agency_book(session, tenant=tenant, agency_id=agency_id)
        session.rollback()  # read only
    snapshot = BookSnapshot(tenant_id, agency_id, today, dt.datetime.now(dt.UTC), lines)
    objects.redis.set(
        book_key(objects, tenant_id=tenant_id, agency_id=agency_id),
        dump_book(snapshot),
        ex=int(BOOK_KEEP_FOR.total_seconds()),
    )
    return snapshot


def load_agency_book(objects: Platform, *, tenant_id: int, agency_id: int) -> BookSnapshot | None:
    """The stored snapshot of the agency's book in the tenant (one GET), or None."""
    raw: bytes | None = objects.redis.get(  # type: ignore[assignment]
        book_key(objects, tenant_id=tenant_id, agency_id=agency_id)
    )
    return None if raw is None else parse_book(raw)


def dump_book(snapshot: BookSnapshot) -> str:
    """The snapshot as JSON: every amount a Decimal string, every date ISO."""
    return json.dumps(
        {
            "version": BOOK_VERSION,
            "tenant_id": snapshot.tenant_id,
            "agency_id": snapshot.agency_id,
            "today": snapshot.today.isoformat(),
            "computed_at": snapshot.computed_at.isoformat(),
            "lines": [
                [
                    line.tenant,
                    line.bucket,
                    line.currency,
                    line.cases,
                    str(line.balance),
                    str(line.placed_balance),
                    str(line.recovered),
                ]
                for line in snapshot.lines
            ],
        }
    )


def parse_book(raw: str | bytes) -> BookSnapshot | None:
    """The snapshot ``dump_book`` wrote; None for one of another version."""
    data = json.loads(raw)
    if data.get("version") != BOOK_VERSION:
        return None
    return BookSnapshot(
        tenant_id=data["tenant_id"],
        agency_id=data["agency_id"],
        today=dt.date.fromisoformat(data["today"]),
        computed_at=dt.datetime.fromisoformat(data["computed_at"]),
        lines=[
            BookLine(
                tenant,
                bucket,
                currency,
                cases,
                Decimal(balance),
                Decimal(placed),
                Decimal(recovered),
            )
            for tenant, bucket, currency, cases, balance, placed, recovered in data["lines"]
        ],
    )
