"""The daily allocation run, and the services the API and the CLI call.

``run_allocation`` runs the five steps for one tenant and date, in order: **segment**
(buckets and transitions), **score** (scores, then segments by the tenant's rules, which
may test the score), **recall** (expired or no longer placeable), **place** and
**assign**. Each step is one transaction that also records the step as done on the run's
row (``allocation_runs``, one per date), so:

- *Resume*: a worker killed mid-run leaves the finished steps committed and the current
  one rolled back; the next attempt skips the finished steps and redoes the rest.
- *Idempotent*: every statement writes only what differs from the stored state, and every
  input is taken as of the run date (payments up to it, placements started before it), so
  running a completed date again changes nothing unless the data changed.
- *One at a time*: the run holds a session-level advisory lock on the tenant for its whole
  duration on its own connection; a second run waits, then finds nothing to do. A killed
  worker's connection closes and the lock goes with it.

A dry run does the same work in one transaction that is rolled back, and reports what
the place step would have done: cases and balance by segment, arm, agency and outcome.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from recova.platform.agencies.contracts import agency_has_active_contract, contracted_tenants
from recova.platform.agencies.models import Agency
from recova.platform.allocation import assignment, placement, scoring, segmentation
from recova.platform.allocation.context import ALLOCATE_LOCK, RunContext
from recova.platform.allocation.models import (
    AllocationSettings,
    Assignment,
    CollectorProfile,
    Placement,
    SegmentRule,
    StrategyVersion,
)
from recova.platform.allocation.strategies import resolve_policy
from recova.platform.audit import record_event
from recova.platform.auth.models import Membership, Role, User
from recova.platform.cases.models import Account, Case
from recova.platform.compliance.queue import contactable_sql, verdict_sql
from recova.platform.kernel.db import Database, ScopedConnection, quote_identifier
from recova.tenants.models import Tenant, TenantStatus, tenant_today
from recova.tenants.scope import tenant_scope

log = logging.getLogger(__name__)

STEPS = ("segment", "score", "recall", "place", "assign")
#: Sorts and hashes of a million-case tenant fit in memory at this size (the place step's
#: ranking sort of a million candidates needs over 128MB).
STEP_WORK_MEM = "256MB"


@dataclass
class RunConfig:
    """What a run reads from the tenant's settings before it starts (plain values)."""

    buckets: list[dict[str, Any]]
    scorer: str
    scorer_options: dict[str, Any]
    rules: list[SegmentRule]
    version_id: int | None
    policy: dict[str, Any] | None


@dataclass
class AllocationResult:
    """What a run (or a dry run) did."""

    tenant: str
    as_of: dt.date
    dry_run: bool
    run_id: int | None = None
    status: str = "completed"
    steps_run: list[str] = field(default_factory=list)
    counts: dict[str, dict[str, Any]] = field(default_factory=dict)
    lines: list[dict[str, Any]] = field(default_factory=list)
    strategy_version_id: int | None = None


ProgressCallback = Callable[[str, int, int], None]


def run_allocation(
    db: Database,
    *,
    tenant: Tenant | int | str,
    as_of: dt.date | None = None,
    dry_run: bool = False,
    strategy_version_id: int | None = None,
    requested_by: int | None = None,
    job_id: str | None = None,
    on_progress: ProgressCallback | None = None,
) -> AllocationResult:
    """Segment, score, recall, place and assign one tenant's cases as of a date."""
    found = _tenant(db, tenant)
    as_of = as_of or tenant_today(found.timezone)
    config = _read_config(db, found, as_of, strategy_version_id)
    result = AllocationResult(
        tenant=found.slug,
        as_of=as_of,
        dry_run=dry_run,
        strategy_version_id=config.version_id,
    )
    with tenant_scope(found, db=db, pinned=True) as session:
        raw = ScopedConnection(session)
        ctx = RunContext(
            cur=raw.cursor(),
            schema=found.schema_name,
            tenant_id=found.id,
            timezone=found.timezone,
            currency=found.currency,
            as_of=as_of,
            dry_run=dry_run,
            strategy_version_id=config.version_id,
        )
        if dry_run:
            _dry_run(raw, ctx, config, result)
        else:
            _locked_run(
                raw,
                ctx,
                config,
                result,
                requested_by=requested_by,
                job_id=job_id,
                on_progress=on_progress,
            )
    if not dry_run:
        _audit_run(db, found, result, requested_by)
    return result


def _audit_run(
    db: Database, tenant: Tenant, result: AllocationResult, requested_by: int | None
) -> None:
    """One chain event per completed run, with every step's counts.

    The run moves cases in bulk (one set-based statement per step), so the chain records
    the run and its counts; the placements and assignments tables keep each case's
    history. Appended just after the run's last commit: a crash in between loses this
    summary, never the run.
    """

    with tenant_scope(tenant, db=db) as session:
        record_event(
            session,
            action="allocation.completed",
            actor=f"user:{requested_by}" if requested_by else "job:allocation",
            subject=("allocation_run", result.run_id),
            data={"as_of": result.as_of, "steps_run": result.steps_run, "counts": result.counts},
        )


def _tenant(db: Database, tenant: Tenant | int | str) -> Tenant:
    if isinstance(tenant, Tenant):
        return tenant
    with db.session() as session:
        statement = select(Tenant).where(
            Tenant.id == tenant if isinstance(tenant, int) else Tenant.slug == tenant
        )
        found = session.scalar(statement)
    if found is None:
        raise LookupError(f"no tenant {tenant!r}")
    if found.status != TenantStatus.ACTIVE:
        raise LookupError(f"tenant {found.slug} is disabled")
    return found


def _read_config(db: Database, tenant: Tenant, as_of: dt.date, version_id: int | None) -> RunConfig:
    with tenant_scope(tenant, db=db) as session:
        settings = session.get(AllocationSettings, 1)
        rules = segmentation.ordered_rules(session)
        session.expunge_all()
        if version_id is not None:
            version = session.get(StrategyVersion, version_id)
            if version is None:
                raise LookupError(f"no strategy version {version_id}")
        else:
            version = session.scalar(
                select(StrategyVersion).where(
                    StrategyVersion.is_active, StrategyVersion.effective_from <= as_of
                )
            )
        return RunConfig(
            buckets=settings.buckets if settings else segmentation.DEFAULT_BUCKETS,
            scorer=settings.scorer if settings else scoring.DEFAULT_SCORER,
            scorer_options=settings.scorer_options if settings else {},
            rules=rules,
            version_id=version.id if version is not None else None,
            policy=version.policy if version is not None else None,
        )


def _run_step(ctx: RunContext, config: RunConfig, step: str) -> dict[str, Any]:
    ctx.execute(f"SET LOCAL work_mem = '{STEP_WORK_MEM}'")
    if step == "segment":
        return segmentation.segment_cases(ctx, config.buckets)
    if step == "score":
        scorer = scoring.scorer_by_name(config.scorer)
        counts = scoring.score_cases(ctx, scorer, config.scorer_options)
        counts["segments_changed"] = segmentation.name_segments(ctx, config.rules)
        return counts
    if step == "recall":
        return placement.recall_placements(ctx)
    if step == "place":
        if config.policy is None or config.version_id is None:
            placement.load_contracts(ctx)
            return {"placed": 0, "no_active_strategy": 1}
        rows = resolve_policy(ctx, config.version_id, config.policy)
        counts = placement.place_cases(ctx, config.version_id, rows, config.policy["capacity"])
        if "performance_shares" in ctx.details:
            counts["performance_shares"] = ctx.details["performance_shares"]
        return counts
    if step == "assign":
        return assignment.assign_cases(ctx)
    raise ValueError(f"unknown step {step!r}")


def _dry_run(
    raw: ScopedConnection, ctx: RunContext, config: RunConfig, result: AllocationResult
) -> None:
    try:
        for step in STEPS[:-1]:  # assignment follows placement; a dry run stops before it
            counts = _run_step(ctx, config, step)
            lines = counts.pop("lines", None)
            if lines is not None:
                result.lines = lines
            result.counts[step] = counts
            result.steps_run.append(step)
    finally:
        raw.rollback()


def _locked_run(
    raw: ScopedConnection,
    ctx: RunContext,
    config: RunConfig,
    result: AllocationResult,
    *,
    requested_by: int | None,
    job_id: str | None,
    on_progress: ProgressCallback | None,
) -> None:
    cur = ctx.cur
    cur.execute("SELECT pg_advisory_lock(%s, %s)", (ALLOCATE_LOCK, ctx.tenant_id))
    raw.commit()
    try:
        cur.execute(
            f"""INSERT INTO {ctx.s}.allocation_runs AS r
                    (as_of, status, steps_done, counts, attempts, job_id, requested_by,
                     started_at)
                VALUES (%(as_of)s, 'running', '{{}}', '{{}}', 1, %(job_id)s, %(by)s, now())
                ON CONFLICT (as_of) DO UPDATE
                SET status = 'running', attempts = r.attempts + 1, job_id = EXCLUDED.job_id,
                    requested_by = EXCLUDED.requested_by, started_at = now(),
                    finished_at = NULL, message = NULL,
                    steps_done = CASE WHEN r.status = 'completed' THEN '{{}}'::varchar[]
                                      ELSE r.steps_done END
                RETURNING id, steps_done, counts""",
            {"as_of": ctx.as_of, "job_id": job_id, "by": requested_by},
        )
        run_id, steps_done, counts = cur.fetchone()
        raw.commit()
        ctx.run_id = run_id
        result.run_id = run_id
        result.counts = dict(counts)
        try:
            for index, step in enumerate(STEPS, start=1):
                if step in steps_done:
                    continue
                cur.execute(
                    f"UPDATE {ctx.s}.allocation_runs SET step = %s WHERE id = %s", (step, run_id)
                )
                step_counts = _run_step(ctx, config, step)
                step_counts.pop("lines", None)
                result.counts[step] = step_counts
                cur.execute(
                    f"""UPDATE {ctx.s}.allocation_runs
                        SET steps_done = array_append(steps_done, %s), counts = %s::jsonb
                        WHERE id = %s""",
                    (step, json.dumps(result.counts, default=str), run_id),
                )
                raw.commit()  # the step and its checkpoint, together
                result.steps_run.append(step)
                if on_progress is not None:
                    on_progress(step, index, len(STEPS))
        except Exception as exc:
            raw.rollback()
            cur.execute(
                f"""UPDATE {ctx.s}.allocation_runs SET status = 'failed', message = %s
                    WHERE id = %s""",
                (f"{type(exc).__name__}: {exc}"[:1000], run_id),
            )
            raw.commit()
            raise
        cur.execute(
            f"""UPDATE {ctx.s}.allocation_runs
                SET status = 'completed', step = NULL, finished_at = now() WHERE id = %s""",
            (run_id,),
        )
        raw.commit()
    finally:
        try:
            raw.rollback()
            cur.execute("SELECT pg_advisory_unlock(%s, %s)", (ALLOCATE_LOCK, ctx.tenant_id))
            raw.commit()
        except Exception:  # a broken connection took the lock with it; never pool it
            log.warning("could not release the allocation lock; dropping the connection")
            raw.invalidate()
            raw.rollback()


def run_assignment(db: Database, *, tenant: Tenant | int | str) -> dict[str, int]:
    """Only the assign step (after a collector is deactivated), under the tenant's lock."""
    found = _tenant(db, tenant)
    with tenant_scope(found, db=db) as session:
        raw = ScopedConnection(session)
        cur = raw.cursor()
        # Transaction-level: the step is one transaction; a daily run holding the session
        # lock makes this wait, and its own assign step will have done the work.
        cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", (ALLOCATE_LOCK, found.id))
        ctx = RunContext(
            cur=cur,
            schema=found.schema_name,
            tenant_id=found.id,
            timezone=found.timezone,
            currency=found.currency,
            as_of=tenant_today(found.timezone),
        )
        counts = assignment.assign_cases(ctx)
        raw.commit()
        return counts


# --- summaries -----------------------------------------------------------------------------


@dataclass(frozen=True)
class AllocationSummary:
    """Where a tenant's open cases stand: placed by agency, assigned, unplaced."""

    open_cases: int
    placed_by_agency: dict[str, int]
    assigned: int

    @property
    def placed(self) -> int:
        return sum(self.placed_by_agency.values())

    def line(self) -> str:
        """One line for the CLI and the demo."""
        agencies = ", ".join(f"{slug} {n}" for slug, n in sorted(self.placed_by_agency.items()))
        return (
            f"{self.open_cases} open cases, {self.placed} placed"
            f" ({agencies or 'no agency'}), {self.assigned} assigned to collectors"
        )


def allocation_summary(session: Session) -> AllocationSummary:
    """The tenant's current allocation state (``session`` bound to the tenant)."""

    open_cases = session.scalar(
        select(func.count())
        .select_from(Case)
        .join(Account, Account.id == Case.account_id)
        .where(Case.status.not_in(["closed", "paid", "settled"]), Account.withdrawn_at.is_(None))
    )
    rows = session.execute(
        select(Placement.agency_id, func.count())
        .where(Placement.recalled_on.is_(None))
        .group_by(Placement.agency_id)
    ).all()
    slugs = dict(
        session.execute(
            select(Agency.id, Agency.slug).where(Agency.id.in_([r[0] for r in rows]))
        ).all()
    )
    assigned = session.scalar(
        select(func.count()).select_from(Assignment).where(Assignment.ended_at.is_(None))
    )
    return AllocationSummary(
        open_cases=int(open_cases or 0),
        placed_by_agency={slugs.get(a, str(a)): int(n) for a, n in rows},
        assigned=int(assigned or 0),
    )


# --- settings ------------------------------------------------------------------------------


def save_settings(
    session: Session,
    *,
    buckets: list[dict[str, Any]],
    scorer: str,
    scorer_options: dict[str, Any],
) -> AllocationSettings:
    """Validate and store the tenant's buckets and scorer."""
    clean_buckets = segmentation.validate_buckets(buckets)
    chosen = scoring.scorer_by_name(scorer)
    clean_options = chosen.validate_options(scorer_options)
    settings = session.get(AllocationSettings, 1)
    if settings is None:
        settings = AllocationSettings(id=1)
        session.add(settings)
    settings.buckets = clean_buckets
    settings.scorer = chosen.name
    settings.scorer_options = clean_options
    session.flush()  # the caller answers with the stored row
    return settings


def current_settings(session: Session) -> dict[str, Any]:
    """The tenant's settings, defaults filled in."""
    settings = session.get(AllocationSettings, 1)
    return {
        "buckets": settings.buckets if settings else segmentation.DEFAULT_BUCKETS,
        "scorer": settings.scorer if settings else scoring.DEFAULT_SCORER,
        "scorer_options": settings.scorer_options if settings else {},
    }


def create_segment_rule(
    session: Session, *, name: str, priority: int, conditions: dict[str, Any]
) -> SegmentRule:
    """Add a named segment rule (conditions validated)."""
    clean = segmentation.validate_conditions(conditions)
    if session.scalar(select(SegmentRule.id).where(SegmentRule.name == name)):
        raise segmentation.SegmentationError(f"a segment rule named {name!r} already exists")
    rule = SegmentRule(name=name, priority=priority, conditions=clean)
    session.add(rule)
    session.flush()  # the caller answers with the new id
    return rule


# --- collectors ----------------------------------------------------------------------------


def agency_collectors(session: Session, agency_id: int) -> list[dict[str, Any]]:
    """Every collector login of an agency with their profile (defaults if none saved)."""
    rows = session.execute(
        select(User, CollectorProfile)
        .join(Membership, Membership.user_id == User.id)
        .outerjoin(CollectorProfile, CollectorProfile.user_id == User.id)
        .where(Membership.agency_id == agency_id, Membership.role == Role.COLLECTOR)
        .order_by(User.id)
    ).all()
    return [_collector_view(user, profile) for user, profile in rows]


def _collector_view(user: User, profile: CollectorProfile | None) -> dict[str, Any]:
    return {
        "user_id": user.id,
        "email": user.email,
        "full_name": user.full_name,
        "languages": profile.languages if profile else [],
        "regions": profile.regions if profile else [],
        "max_cases": profile.max_cases if profile else 200,
        "is_active": bool(user.is_active and (profile.is_active if profile else True)),
    }


def update_collector(
    session: Session, user: User, changes: dict[str, Any]
) -> tuple[dict[str, Any], bool]:
    """Change a collector's skills, maximum or active flag; True if they were deactivated."""
    profile = assignment.profile_for(session, user.id)
    was_active = profile.is_active
    for key in ("languages", "regions"):
        if key in changes:
            profile.__setattr__(key, sorted(set(changes[key])))
    if "max_cases" in changes:
        profile.max_cases = changes["max_cases"]
    if "is_active" in changes:
        profile.is_active = changes["is_active"]
    session.flush()  # the answer shows the stored profile
    return _collector_view(user, profile), was_active and not profile.is_active


def tenants_served(session: Session, agency_id: int) -> list[Tenant]:
    """Active tenants the agency holds a contract with today (each tenant's calendar)."""
    return [
        tenant
        for tenant in contracted_tenants(session, agency_id)
        if agency_has_active_contract(
            session, agency_id=agency_id, tenant_id=tenant.id, day=tenant_today(tenant.timezone)
        )
    ]


def portfolio_sql(
    tenants: list[Tenant],
    *,
    agency_id: int,
    collector_id: int | None = None,
    assigned_only: bool = False,
    contactable: dict[int, Any] | None = None,
    with_debtor: bool = False,
    verdicts: dict[int, Any] | None = None,
) -> tuple[str, dict[str, Any]]:
    """One UNION ALL over the served tenants' schemas: the agency's active placements (or
    one collector's queue), newest first or in queue order. Schemas are validated names,
    always quoted; every value is bound.

    ``contactable`` (tenant id to ``QueueRules``) hides the cases the compliance gate
    would block now (see ``recova.platform.compliance.queue``). ``with_debtor`` adds what
    working the case needs: the debtor's id and name (the schema masks it) and the ids of
    the contact points not marked do-not-contact, the debtor's own first.

    ``verdicts`` (tenant id to ``QueueRules``; instead of ``contactable``) keeps every
    case and says what the work queue shows and sorts by: the gate's verdict now
    (``recova.platform.compliance.queue.verdict_sql``), the account's current
    ``balance``, the debtor's name, ``promise_due`` (an open promise falls due today on
    the tenant's calendar) and ``callback_due`` (the assignment's next action is due).
    """

    if verdicts is not None and contactable is not None:
        raise ValueError("portfolio_sql: verdicts and contactable exclude each other")
    params: dict[str, Any] = {"agency_id": agency_id, "collector_id": collector_id}
    parts = []
    join = "JOIN" if collector_id is not None or assigned_only else "LEFT JOIN"
    for n, tenant in enumerate(tenants):
        s = quote_identifier(tenant.schema_name)
        params[f"t{n}"] = tenant.slug
        mine = "AND x.collector_id = :collector_id" if collector_id is not None else ""
        gate_joins = gate_conditions = debtor_columns = ""
        if with_debtor:
            debtor_columns = f""", c.debtor_id, wd.full_name AS debtor_name,
                       ARRAY(SELECT k.id FROM {s}.contacts k
                             WHERE k.debtor_id = c.debtor_id AND NOT k.do_not_contact
                             ORDER BY k.relation <> 'self', k.id) AS contact_ids"""
            gate_joins = f"JOIN {s}.debtors wd ON wd.id = c.debtor_id"
        if contactable is not None:
            joins, conditions, gate_params = contactable_sql(n, s, contactable[tenant.id])
            gate_joins = f"{gate_joins} {joins}"
            gate_conditions = f"AND {conditions}"
            params.update(gate_params)
        if verdicts is not None:
            joins, columns, verdict_params = verdict_sql(n, s, verdicts[tenant.id])
            gate_joins = f"{gate_joins} {joins}"
            params.update(verdict_params)
            debtor_columns += f""", {columns},
                       (a.outstanding_principal + a.outstanding_interest + a.outstanding_fees
                        + a.outstanding_penalties) AS balance,
                       EXISTS (SELECT 1 FROM {s}.promises pr
                               WHERE pr.case_id = c.id AND pr.status = 'pending'
                                 AND pr.due_date
                                     = (now() AT TIME ZONE CAST(:cz_tz{n} AS text))::date
                       ) AS promise_due,
                       coalesce(x.next_action_at <= now(), false) AS callback_due"""
            if not with_debtor:
                debtor_columns += f", c.debtor_id, cz_d{n}.full_name AS debtor_name"
        parts.append(
            f"""SELECT CAST(:t{n} AS text) AS tenant, pl.id AS placement_id, pl.case_id,
                       pl.segment, pl.started_on, pl.ends_on, pl.balance_at_placement,
                       pl.currency, x.collector_id, x.id AS assignment_id,
                       x.next_action_at, sc.score, sc.components,
                       a.external_id AS account_external_id, a.days_past_due{debtor_columns}
                FROM {s}.placements pl
                JOIN {s}.cases c ON c.id = pl.case_id
                JOIN {s}.accounts a ON a.id = c.account_id
                {join} {s}.assignments x ON x.placement_id = pl.id AND x.ended_at IS NULL
                     {mine}
                LEFT JOIN {s}.case_scores sc ON sc.case_id = pl.case_id
                {gate_joins}
                WHERE pl.recalled_on IS NULL AND pl.agency_id = :agency_id {gate_conditions}"""
        )
    if not parts:
        parts.append(
            "SELECT NULL::text AS tenant, NULL::int AS placement_id, NULL::int AS case_id,"
            " NULL::text AS segment, NULL::date AS started_on, NULL::date AS ends_on,"
            " NULL::numeric AS balance_at_placement, NULL::text AS currency,"
            " NULL::int AS collector_id, NULL::int AS assignment_id,"
            " NULL::timestamptz AS next_action_at, NULL::numeric AS score,"
            " NULL::jsonb AS components, NULL::text AS account_external_id,"
            " NULL::int AS days_past_due"
            + (
                ", NULL::int AS debtor_id, NULL::text AS debtor_name, NULL::int[] AS contact_ids"
                if with_debtor
                else ""
            )
            + (
                ", NULL::text AS debtor_timezone, NULL::varchar[] AS case_flags,"
                " NULL::text AS blocked_rule, NULL::timestamptz AS next_allowed_at,"
                " NULL::numeric AS balance, NULL::boolean AS promise_due,"
                " NULL::boolean AS callback_due"
                + ("" if with_debtor else ", NULL::int AS debtor_id, NULL::text AS debtor_name")
                if verdicts is not None
                else ""
            )
            + " WHERE false"
        )
    return " UNION ALL ".join(parts), params
