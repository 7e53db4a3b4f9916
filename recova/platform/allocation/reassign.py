"""An agency manager moving placed cases to one of their collectors: one case, or every
case a filter matches, in one tenant at a time.

The same filter (``CaseFilter``: bucket, current collector or none, case status, or one
case by id or account number) drives the preview and the move, both over the agency's
active placements in one tenant, so their counts agree unless the book changed in
between; the move then says how many actually moved. A case already with the target
stays as it is and is counted apart.

The move is set-based: one statement per tenant ends the open assignments of the chosen
placements (``end_reason`` ``reassigned``) and opens new ones to the target on the same
placements (``reason`` ``reassigned``, as the assignment step does after a
deactivation), keeping each case's next action; 50 or 50,000 cases alike. It runs under
the agency's assignment lock (``ASSIGN_LOCK``, shared with the assignment step and the
API's overrides), updates the collectors' workloads and appends one event to the
tenant's audit chain, all in the caller's transaction. The assignments table keeps each
case's history.

Capacity: a move that would take the target past their maximum of open cases (every
tenant counted) is **refused unless the manager confirms it** (``allow_over_capacity``);
the preview says by how much it would go over. An inactive collector, or one who is not
a collector of the agency, never receives cases.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from recova.platform.allocation.assignment import USERS, WORKLOADS, collector_of_agency
from recova.platform.allocation.context import ASSIGN_LOCK
from recova.platform.allocation.models import CollectorProfile
from recova.platform.audit import record_event
from recova.platform.auth.models import User
from recova.platform.auth.principal import Principal
from recova.platform.kernel.db import quote_identifier, utcnow
from recova.platform.kernel.errors import DomainError
from recova.tenants.models import Tenant

#: ``CaseFilter.collector``: the cases no collector holds now.
UNASSIGNED = "none"


class ReassignmentRefused(DomainError, ValueError):
    """A move that may not be made; ``field`` names the input it is about."""

    status = 422

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class CaseFilter:
    """Which of the agency's active placements in a tenant move."""

    bucket: str | None = None
    #: The current collector's id, ``UNASSIGNED`` for cases with none, None for any.
    collector: int | str | None = None
    status: str | None = None
    #: One case, by its id or its account's external id (the other filters then ignored).
    case_id: int | None = None
    account_external_id: str | None = None

    @property
    def one_case(self) -> bool:
        return self.case_id is not None or self.account_external_id is not None

    def described(self) -> dict[str, Any]:
        """The filter as the audit chain keeps it (no account number: it may look like
        a phone number, and the case id says the same)."""
        if self.one_case:
            return {"one_case": True}
        return {
            "bucket": self.bucket,
            "collector": self.collector,
            "status": self.status,
        }


@dataclass
class MovePreview:
    """What a move with this filter would do now."""

    cases: int = 0
    balance: dict[str, Decimal] = field(default_factory=dict)
    #: Cases moving from each current collector (None: unassigned now).
    from_collectors: dict[int | None, int] = field(default_factory=dict)
    #: Cases the filter matches that are with the target already (they stay).
    staying: int = 0
    #: The one case's id, when the filter names one case and it was found.
    case_id: int | None = None
    target_open: int = 0
    target_max: int = 0

    @property
    def target_after(self) -> int:
        return self.target_open + self.cases

    @property
    def over_by(self) -> int:
        """How far past their maximum the move would take the target (0: within it)."""
        return max(0, self.target_after - self.target_max)


@dataclass(frozen=True)
class MoveResult:
    moved: int
    from_collectors: dict[int | None, int]
    target_open: int
    over_capacity: bool
    case_id: int | None


@dataclass(frozen=True)
class Receiver:
    """The collector cases move to."""

    user: User
    max_cases: int


def receiving_collector(session: Session, *, agency_id: int, user_id: int) -> Receiver:
    """The collector ``user_id`` if they may receive the agency's cases, else refused."""
    user = collector_of_agency(session, user_id=user_id, agency_id=agency_id)
    if user is None:
        raise ReassignmentRefused(f"no collector {user_id} in your agency", field="target")
    profile = session.get(CollectorProfile, user_id)
    active = user.is_active and (profile.is_active if profile is not None else True)
    if not active:
        raise ReassignmentRefused(
            f"{user.full_name} is inactive and cannot receive cases", field="target"
        )
    return Receiver(user, profile.max_cases if profile is not None else 200)


def open_cases(session: Session, *, tenant: Tenant, user_id: int) -> int:
    """A collector's open assignments in every tenant: ``tenant`` counted live, the others
    as their assignment steps last kept them (``collector_workloads``)."""
    s = quote_identifier(tenant.schema_name)
    found = session.execute(
        text(
            f"""SELECT (SELECT count(*) FROM {s}.assignments
                        WHERE collector_id = :user AND ended_at IS NULL)
                     + (SELECT coalesce(sum(open_cases), 0) FROM {WORKLOADS}
                        WHERE user_id = :user AND tenant_id <> :tenant)"""
        ),
        {"user": user_id, "tenant": tenant.id},
    ).scalar_one()
    return int(found)


def _chosen_sql(s: str, filters: CaseFilter) -> tuple[str, dict[str, Any]]:
    """The agency's active placements in the tenant the filter picks, with their open
    assignment (if any) and balance; ``%(agency)s`` is bound by the caller."""
    conditions = ["pl.agency_id = %(agency)s", "pl.recalled_on IS NULL"]
    params: dict[str, Any] = {}
    segments = ""
    if filters.one_case:
        if filters.case_id is not None:
            conditions.append("c.id = %(case_id)s")
            params["case_id"] = filters.case_id
        if filters.account_external_id is not None:
            conditions.append("a.external_id = %(account)s")
            params["account"] = filters.account_external_id
    else:
        if filters.bucket is not None:
            segments = f"JOIN {s}.case_segments seg ON seg.case_id = pl.case_id"
            conditions.append("seg.bucket = %(bucket)s")
            params["bucket"] = filters.bucket
        if filters.collector == UNASSIGNED:
            conditions.append("x.id IS NULL")
        elif filters.collector is not None:
            conditions.append("x.collector_id = %(from_collector)s")
            params["from_collector"] = int(filters.collector)
        if filters.status is not None:
            conditions.append("c.status::text = %(status)s")
            params["status"] = filters.status
    sql = f"""SELECT pl.id AS placement_id, pl.case_id, pl.currency, x.id AS assignment_id,
                     x.collector_id, x.next_action_at,
                     a.outstanding_principal + a.outstanding_interest + a.outstanding_fees
                     + a.outstanding_penalties AS balance
              FROM {s}.placements pl
              JOIN {s}.cases c ON c.id = pl.case_id
              JOIN {s}.accounts a ON a.id = c.account_id
              {segments}
              LEFT JOIN {s}.assignments x ON x.placement_id = pl.id AND x.ended_at IS NULL
              WHERE {" AND ".join(conditions)}"""
    return sql, params


def preview_move(
    session: Session, *, tenant: Tenant, agency_id: int, target: Receiver, filters: CaseFilter
) -> MovePreview:
    """How many cases (and what balance) a move would take to ``target`` now, from whom,
    and where it leaves the target against their maximum."""
    s = quote_identifier(tenant.schema_name)
    chosen, params = _chosen_sql(s, filters)
    rows = session.connection().exec_driver_sql(
        f"""SELECT collector_id, currency, count(*) AS cases, sum(balance) AS balance,
                   min(case_id) AS case_id
            FROM ({chosen}) chosen
            GROUP BY collector_id, currency""",
        {**params, "agency": agency_id},
    )
    preview = MovePreview(
        target_open=open_cases(session, tenant=tenant, user_id=target.user.id),
        target_max=target.max_cases,
    )
    for row in rows:
        if filters.one_case:
            preview.case_id = row.case_id
        if row.collector_id == target.user.id:
            preview.staying += int(row.cases)
            continue
        preview.cases += int(row.cases)
        preview.balance[row.currency] = preview.balance.get(row.currency, Decimal(0)) + (
            row.balance
        )
        key = row.collector_id
        preview.from_collectors[key] = preview.from_collectors.get(key, 0) + int(row.cases)
    return preview


def move_cases(
    session: Session,
    *,
    tenant: Tenant,
    agency_id: int,
    target: Receiver,
    filters: CaseFilter,
    actor: Principal,
    allow_over_capacity: bool = False,
    previewed: int | None = None,
) -> MoveResult:
    """Move every case the filter matches now to ``target``, in one statement, audited.

    ``session`` must be bound to ``tenant`` (the audit event goes to its chain). Refused
    (nothing changed, the caller rolls back) when it would take the target past their
    maximum without ``allow_over_capacity``.
    """
    if session.info.get("tenant_schema") != tenant.schema_name:
        raise RuntimeError("move_cases needs the session bound to the tenant it moves in")
    s = quote_identifier(tenant.schema_name)
    # Serialise with the assignment step, overrides and other moves of this agency.
    session.execute(
        text("SELECT pg_advisory_xact_lock(:ns, :agency)"), {"ns": ASSIGN_LOCK, "agency": agency_id}
    )
    before = open_cases(session, tenant=tenant, user_id=target.user.id)
    chosen, params = _chosen_sql(s, filters)
    now = utcnow()
    # A refusal below undoes the statement: nothing is left changed for the caller.
    savepoint = session.begin_nested()
    # The new assignments are sorted before they are inserted, so every old one of the
    # same placements has ended first (one open assignment per placement, a unique index).
    rows = (
        session.connection()
        .exec_driver_sql(
            f"""WITH chosen AS MATERIALIZED (
                SELECT * FROM ({chosen}) picked
                WHERE collector_id IS DISTINCT FROM %(target)s
            ), ended AS (
                UPDATE {s}.assignments x SET ended_at = %(now)s, end_reason = 'reassigned'
                FROM chosen
                WHERE x.id = chosen.assignment_id AND x.ended_at IS NULL
                RETURNING x.placement_id, x.next_action_at
            ), opened AS (
                INSERT INTO {s}.assignments
                    (placement_id, collector_id, reason, assigned_by, assigned_at, next_action_at)
                SELECT placement_id, %(target)s, 'reassigned', %(by)s, %(now)s, next_action_at
                FROM (SELECT placement_id, next_action_at FROM ended
                      UNION ALL
                      SELECT placement_id, NULL FROM chosen WHERE assignment_id IS NULL) moving
                ORDER BY placement_id
                RETURNING placement_id
            )
            SELECT chosen.collector_id, count(*) AS cases, min(chosen.case_id) AS case_id
            FROM chosen JOIN opened USING (placement_id)
            GROUP BY chosen.collector_id""",
            {
                **params,
                "agency": agency_id,
                "target": target.user.id,
                "by": actor.subject_id,
                "now": now,
            },
        )
        .all()
    )
    from_collectors = {row.collector_id: int(row.cases) for row in rows}
    moved = sum(from_collectors.values())
    after = before + moved
    over = after > target.max_cases
    if moved and over and not allow_over_capacity:
        savepoint.rollback()
        raise ReassignmentRefused(
            f"the move takes {target.user.full_name} to {after} open cases, past their"
            f" maximum of {target.max_cases}",
            field="over_capacity",
        )
    savepoint.commit()
    case_id = rows[0].case_id if filters.one_case and rows else None
    if moved:
        _refresh_workloads(session, s, tenant, [target.user.id, *from_collectors])
        record_event(
            session,
            action="assignment.moved",
            actor=actor,
            subject=("case", case_id) if case_id is not None else ("collector", target.user.id),
            data={
                "to_collector": target.user.id,
                "moved": moved,
                "from_collectors": {
                    str(key) if key is not None else UNASSIGNED: n
                    for key, n in sorted(from_collectors.items(), key=lambda kv: kv[0] or 0)
                },
                "filter": filters.described(),
                "previewed": previewed,
                "over_capacity": over,
            },
        )
    return MoveResult(moved, from_collectors, after, over, case_id)


def _refresh_workloads(session: Session, s: str, tenant: Tenant, ids: list[int | None]) -> None:
    """This tenant's open-case counts of the collectors a move touched (others' untouched)."""
    users = sorted({user_id for user_id in ids if user_id is not None})
    session.connection().exec_driver_sql(
        f"""INSERT INTO {WORKLOADS} AS w (user_id, tenant_id, open_cases)
            SELECT u.id, %(tenant)s, coalesce(n.cases, 0)
            FROM {USERS} u
            LEFT JOIN (SELECT collector_id, count(*) AS cases FROM {s}.assignments
                       WHERE ended_at IS NULL AND collector_id = ANY(%(ids)s)
                       GROUP BY collector_id) n ON n.collector_id = u.id
            WHERE u.id = ANY(%(ids)s)
            ON CONFLICT (user_id, tenant_id) DO UPDATE SET open_cases = EXCLUDED.open_cases
            WHERE w.open_cases <> EXCLUDED.open_cases""",
        {"tenant": tenant.id, "ids": users},
    )


def open_cases_by_collector(
    session: Session, *, tenants: list[Tenant], user_ids: list[int]
) -> dict[int, int]:
    """The collectors' open assignments now, summed over ``tenants`` (one query each,
    an index-only count per collector on the open assignments' index)."""
    counts: dict[int, int] = {}
    if not user_ids:
        return counts
    for tenant in tenants:
        s = quote_identifier(tenant.schema_name)
        rows = session.connection().exec_driver_sql(
            f"""SELECT collector_id, count(*) AS cases FROM {s}.assignments
                WHERE ended_at IS NULL AND collector_id = ANY(%(ids)s)
                GROUP BY collector_id""",
            {"ids": sorted(user_ids)},
        )
        for row in rows:
            counts[row.collector_id] = counts.get(row.collector_id, 0) + int(row.cases)
    return counts
