"""The collector's work queue across every tenant the agency serves: what to call now.

One statement reads the queue: a ``UNION ALL`` with one part per served tenant, each on
its own schema (quoted) with that tenant's rules in force now bound as values
(``allocation.services.portfolio_sql`` with ``verdicts``), every row naming its tenant.
Each row carries the compliance verdict for a call now (``compliance.queue.verdict_sql``:
flags, do-not-contact, the debtor's local window, the call caps) and, when blocked, the
rule and the time the block lifts; the gate still decides each attempt.

Priority, first to last:

1. an open promise of the case falls due today (the tenant's calendar);
2. a callback is due (``assignments.next_action_at`` has passed);
3. callable now, by score;
4. callable now but with a callback scheduled later (by its time): called back then;
5. blocked, by the time a call is next allowed (never-lifting blocks last).

Within the first two, cases callable now come first. The counts (assigned, callable now,
promises due today, callbacks due, the next time a blocked case becomes callable) come
from the same statement, over the whole queue, so a page costs one round trip. A
collector holds some two thousand cases: the parts start from the open assignments of
one collector (``ix_assignments_open_collector``), and each row's counts and promise are
index probes, so the statement reads those rows and no others, however large the book.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from recova.platform.allocation.segmentation import DEFAULT_BUCKETS
from recova.platform.allocation.services import portfolio_sql
from recova.platform.cases.browse import bucket_of
from recova.platform.compliance.localtime import zone
from recova.platform.compliance.queue import rules_now
from recova.platform.kernel.db import quote_identifier, utcnow
from recova.tenants.models import Tenant

PAGE_SIZE = 50
#: Most assigned cases a manager's queue reads across every collector at once: each case
#: costs its verdict, so a large agency's managers choose a collector instead.
AGENCY_QUEUE_LIMIT = 5000

#: The queue's order (see the module docstring); ``tier`` is computed beside it.
_TIER = """CASE WHEN promise_due THEN 0 WHEN callback_due THEN 1
                WHEN blocked_rule IS NULL AND coalesce(next_action_at, now()) <= now() THEN 2
                WHEN blocked_rule IS NULL THEN 3 ELSE 4 END"""
_ORDER = """tier, blocked_rule IS NOT NULL,
    CASE WHEN blocked_rule IS NOT NULL THEN next_allowed_at
         WHEN tier = 3 THEN next_action_at END ASC NULLS LAST,
    score DESC NULLS LAST, tenant, case_id"""


@dataclass(frozen=True)
class QueueRow:
    """One case of the queue, with its tenant and its verdict for a call now."""

    tenant: Tenant
    case_id: int
    collector_id: int
    account_external_id: str
    #: The stored name: the page shows it as the caller may see it (``name_for_caller``).
    debtor_name: str
    bucket: str
    balance: Decimal
    currency: str
    days_past_due: int
    debtor_timezone: str
    score: Decimal | None
    promise_due: bool
    callback_due: bool
    next_action_at: dt.datetime | None
    #: None when a call is allowed now, else a rule of ``compliance.queue``.
    blocked_rule: str | None
    flags: tuple[str, ...]
    #: When a call is next allowed (None: now, or only when someone lifts the block).
    next_allowed_at: dt.datetime | None

    @property
    def callable(self) -> bool:
        return self.blocked_rule is None

    def debtor_local(self, now: dt.datetime) -> dt.datetime:
        """``now`` on the debtor's clock."""
        return now.astimezone(zone(self.debtor_timezone))


@dataclass(frozen=True)
class QueueCounts:
    """The whole queue's figures (every page, the ``callable_only`` filter aside)."""

    assigned: int = 0
    callable_now: int = 0
    promises_due: int = 0
    callbacks_due: int = 0
    #: The earliest time a case blocked now becomes callable (None: none will by itself),
    #: and the zone of that case's tenant (the case screen's zone for it).
    next_callable_at: dt.datetime | None = None
    next_callable_zone: str | None = None


@dataclass(frozen=True)
class QueuePage:
    rows: list[QueueRow]
    counts: QueueCounts
    page: int
    has_next: bool


def read_queue(
    session: Session,
    *,
    tenants: Sequence[Tenant],
    agency_id: int,
    collector_id: int | None,
    callable_only: bool = False,
    page: int = 1,
    page_size: int = PAGE_SIZE,
) -> QueuePage:
    """One page of the queue of ``collector_id`` (None: every collector of the agency) in
    ``tenants`` (served by the agency), in priority order, with the queue's counts."""
    page = max(page, 1)
    found, counts = _query(
        session,
        tenants=tenants,
        agency_id=agency_id,
        collector_id=collector_id,
        callable_only=callable_only,
        limit=page_size + 1,
        offset=(page - 1) * page_size,
    )
    return QueuePage(
        rows=found[:page_size], counts=counts, page=page, has_next=len(found) > page_size
    )


def next_case(
    session: Session,
    *,
    tenants: Sequence[Tenant],
    agency_id: int,
    collector_id: int | None,
    leaving: tuple[str, int] | None = None,
) -> tuple[QueueRow | None, QueueCounts]:
    """The highest-priority case that may be called now (a promise or callback due comes
    first, if callable), or None; and the queue's counts (when the next case becomes
    callable, if none is now).

    ``leaving`` (tenant slug, case id) is the case the collector is moving on from: a
    no-answer leaves it callable and as high in the queue as before, so the next case is
    the best other one, and that case again only when no other may be called now."""
    found, counts = _query(
        session,
        tenants=tenants,
        agency_id=agency_id,
        collector_id=collector_id,
        callable_only=True,
        limit=1 if leaving is None else 2,
        offset=0,
    )
    others = [row for row in found if (row.tenant.slug, row.case_id) != leaving]
    chosen = others or found
    return (chosen[0] if chosen else None), counts


def queue_statement(
    session: Session,
    *,
    tenants: Sequence[Tenant],
    agency_id: int,
    collector_id: int | None,
) -> tuple[str, dict[str, Any]]:
    """The queue's statement and values (the tenants' rules in force now read first):
    the counts as one row, joined to the page (``:callable_only``, ``:limit``,
    ``:offset`` still to bind). Also what a benchmark times."""
    now = utcnow()
    verdicts = {t.id: rules_now(session, t, now) for t in tenants}
    sql, params = portfolio_sql(
        list(tenants),
        agency_id=agency_id,
        collector_id=collector_id,
        assigned_only=True,
        verdicts=verdicts,
    )
    # The queue once (a CTE read twice is materialised), its counts as one row, and the
    # page joined to it, so an empty page still brings the counts.
    statement = f"""WITH q AS ({sql}),
        counts AS (
            SELECT count(*) AS n_assigned,
                   count(*) FILTER (WHERE blocked_rule IS NULL) AS n_callable,
                   count(*) FILTER (WHERE promise_due) AS n_promises,
                   count(*) FILTER (WHERE callback_due) AS n_callbacks,
                   min(next_allowed_at) AS next_callable_at,
                   (array_agg(tenant ORDER BY next_allowed_at)
                        FILTER (WHERE next_allowed_at IS NOT NULL))[1] AS next_callable_tenant
            FROM q),
        tiered AS (SELECT q.*, {_TIER} AS tier FROM q
                   WHERE NOT CAST(:callable_only AS boolean) OR blocked_rule IS NULL),
        paged AS (SELECT tiered.*, row_number() OVER (ORDER BY {_ORDER}) AS position
                  FROM tiered ORDER BY {_ORDER} LIMIT :limit OFFSET :offset)
        SELECT counts.*, paged.* FROM counts LEFT JOIN paged ON true
        ORDER BY paged.position"""  # noqa: S608 (quoted schema names; every value is bound)
    return statement, params


def _query(
    session: Session,
    *,
    tenants: Sequence[Tenant],
    agency_id: int,
    collector_id: int | None,
    callable_only: bool,
    limit: int,
    offset: int,
) -> tuple[list[QueueRow], QueueCounts]:
    served = list(tenants)
    sql, params = queue_statement(
        session, tenants=served, agency_id=agency_id, collector_id=collector_id
    )
    statement = text(sql)
    bound = {**params, "callable_only": callable_only, "limit": limit, "offset": offset}
    fetched = list(session.execute(statement, bound).mappings())
    head = fetched[0]
    by_slug = {t.slug: t for t in served}
    first_lift = by_slug.get(head["next_callable_tenant"])
    counts = QueueCounts(
        assigned=int(head["n_assigned"]),
        callable_now=int(head["n_callable"]),
        promises_due=int(head["n_promises"]),
        callbacks_due=int(head["n_callbacks"]),
        next_callable_at=head["next_callable_at"],
        next_callable_zone=first_lift.timezone if first_lift is not None else None,
    )
    found = [r for r in fetched if r["case_id"] is not None]
    buckets = _buckets(session, [by_slug[s] for s in dict.fromkeys(r["tenant"] for r in found)])
    return [_row(r, by_slug[r["tenant"]], buckets[r["tenant"]]) for r in found], counts


def _row(found: Any, tenant: Tenant, buckets: list[dict[str, Any]]) -> QueueRow:
    return QueueRow(
        tenant=tenant,
        case_id=found["case_id"],
        collector_id=found["collector_id"],
        account_external_id=found["account_external_id"],
        debtor_name=found["debtor_name"],
        bucket=bucket_of(found["days_past_due"], buckets),
        balance=Decimal(found["balance"]),
        currency=found["currency"],
        days_past_due=found["days_past_due"],
        debtor_timezone=found["debtor_timezone"],
        score=found["score"],
        promise_due=found["promise_due"],
        callback_due=found["callback_due"],
        next_action_at=found["next_action_at"],
        blocked_rule=found["blocked_rule"],
        flags=tuple(found["case_flags"] or ()),
        next_allowed_at=found["next_allowed_at"],
    )


def _buckets(session: Session, tenants: list[Tenant]) -> dict[str, list[dict[str, Any]]]:
    """Each tenant's buckets (the default table until it saves its own), one statement."""
    if not tenants:
        return {}
    parts = [
        f"SELECT CAST(:t{n} AS text) AS tenant, buckets"  # noqa: S608 (a quoted schema name)
        f" FROM {quote_identifier(t.schema_name)}.allocation_settings WHERE id = 1"
        for n, t in enumerate(tenants)
    ]
    params = {f"t{n}": t.slug for n, t in enumerate(tenants)}
    found = session.execute(text(" UNION ALL ".join(parts)), params)
    saved: dict[str, list[dict[str, Any]] | None] = {row.tenant: row.buckets for row in found}
    return {t.slug: saved.get(t.slug) or DEFAULT_BUCKETS for t in tenants}


def agency_queue_fits(
    session: Session, *, tenants: Sequence[Tenant], agency_id: int, limit: int | None = None
) -> bool:
    """Whether the agency holds at most ``limit`` (``AGENCY_QUEUE_LIMIT``) assigned cases
    in ``tenants`` (read no further than one more), so its whole queue may be read at once."""
    limit = AGENCY_QUEUE_LIMIT if limit is None else limit
    if not tenants:
        return True
    sql, params = portfolio_sql(list(tenants), agency_id=agency_id, assigned_only=True)
    counted = session.scalar(
        text(f"SELECT count(*) FROM (SELECT 1 FROM ({sql}) q LIMIT :most) AS held"),  # noqa: S608
        {**params, "most": limit + 1},
    )
    return int(counted or 0) <= limit


def shared_timezone(tenants: Sequence[Tenant]) -> str | None:
    """The zone every one of ``tenants`` keeps, if they share one (an agency working for
    lenders of one country): a row's times are shown in its tenant's zone, as on the case
    screen, so then the page has one."""
    zones = {t.timezone for t in tenants}
    return zones.pop() if len(zones) == 1 else None
