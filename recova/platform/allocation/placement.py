"""Placing cases with agencies, recalling them, and which placement a payment credits.

Placing (``place_cases``) is one pass of set-based SQL over every unplaced open case:

1. *Candidates*: open cases without an active placement, not flagged (dispute,
   bankruptcy, deceased, cease-contact) and not on hold (a legal hold), with a balance,
   in a segment the policy covers (by name, else ``"*"``).
2. *Arms*: champion/challenger segments draw an arm from ``md5(seed:case)``, a
   reproducible uniform draw; the arm is recorded per (version, case) in
   ``strategy_arms``, and holdout (control) cases stay unplaced.
3. *Classes*: cases are grouped by (their segment, arm, agencies that already had the
   case); a ``"*"`` policy still splits each segment it covers on its own.
   Within a class, the agencies that may take the case (named by the arm, under an
   active contract, not had before) split the class by their shares, renormalised: the
   class is ranked by a seeded hash and the k-th of n cases goes to the agency whose
   cumulative-share interval holds k/n. Each agency's count therefore differs from its
   exact share by less than one case per class, and a case can never return to an agency
   that had it (also a unique constraint). Fresh cases form one class per (segment, arm),
   so a percentage split is exact to within one case per segment.
4. *Capacity*: per agency, the targeted cases are ranked by score and cut off where the
   agency's active cases or active balance would pass its limit. Cases over the limit wait
   for the next run (counted as ``held_for_capacity``) rather than spill to another agency,
   which would quietly break the tenant's split.
5. Placements are inserted with the contract's placement period and grace days.

Recalling (``recall_placements``) ends placements whose period expired (on their end
date), whose case closed, got flagged or went on hold, or whose agency lost its contract or was
suspended; their open assignments end with them. A recalled case is placed again by the
same run's place step, never with an agency that had it.

Crediting (``placement_credited_for``): a payment made within a recalled placement's
grace period credits that placement's agency, even if the case is already with another
agency; otherwise it credits the placement active on the payment's date (tenant calendar).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from recova.platform.agencies.contracts import contracted_agencies_sql
from recova.platform.allocation.context import (
    RunContext,
    balance_expression,
    open_case_condition,
)
from recova.platform.allocation.models import Assignment, Placement
from recova.platform.allocation.strategies import PolicyRow
from recova.platform.cases.models import Case, CaseStatus
from recova.platform.kernel.db import utcnow
from recova.platform.kernel.errors import DomainError
from recova.platform.webhooks.events import bulk_events_sql, emit_event

#: Statuses a recall moves back to ``recalled`` (work in progress with the old agency).
WORKED_STATUSES = ("placed", "in_progress", "promised", "on_plan")


def load_contracts(ctx: RunContext) -> dict[int, tuple[int, int]]:
    """Fill ``alloc_contracts`` with the agencies the tenant may place with on the run date;
    returns {agency id: (placement days, grace days)}."""
    ctx.execute(
        """CREATE TEMP TABLE IF NOT EXISTS alloc_contracts (
               agency_id int PRIMARY KEY, placement_days int, grace_days int
           ) ON COMMIT DROP"""
    )
    ctx.execute("TRUNCATE alloc_contracts")
    contracted = contracted_agencies_sql(tenant_id="%(tenant_id)s", day="%(as_of)s::date")
    ctx.execute(f"INSERT INTO alloc_contracts {contracted}")
    rows = ctx.execute("SELECT agency_id, placement_days, grace_days FROM alloc_contracts")
    return {int(a): (int(p), int(g)) for a, p, g in rows.fetchall()}


def recall_placements(ctx: RunContext) -> dict[str, int]:
    """Recall expired placements and those that may no longer run; counts by reason."""
    s = ctx.s
    load_contracts(ctx)
    statuses = ", ".join(f"'{status}'" for status in WORKED_STATUSES)
    rows = ctx.execute(
        f"""WITH due AS (
                SELECT p.id,
                       CASE WHEN NOT ({open_case_condition()}) THEN 'case_closed'
                            WHEN cardinality(c.flags) > 0 THEN 'excluded_flag'
                            WHEN c.status = 'on_hold' THEN 'on_hold'
                            WHEN ct.agency_id IS NULL THEN 'agency_unavailable'
                            WHEN p.ends_on <= %(as_of)s::date THEN 'expired'
                       END AS reason
                FROM {s}.placements p
                JOIN {s}.cases c ON c.id = p.case_id
                JOIN {s}.accounts a ON a.id = c.account_id
                LEFT JOIN alloc_contracts ct ON ct.agency_id = p.agency_id
                WHERE p.recalled_on IS NULL
            ), recalled AS (
                UPDATE {s}.placements p
                SET recall_reason = due.reason,
                    -- an expiry takes effect on the end date even if the run is late
                    recalled_on = CASE WHEN due.reason = 'expired' THEN p.ends_on
                                       ELSE %(as_of)s::date END,
                    grace_until = CASE WHEN due.reason = 'expired' THEN p.ends_on
                                       ELSE %(as_of)s::date END + p.grace_days
                FROM due WHERE due.id = p.id AND due.reason IS NOT NULL
                RETURNING p.id, p.case_id, p.agency_id, p.recall_reason, p.recalled_on
            ), events AS ({
            bulk_events_sql(
                schema=ctx.schema,
                tenant_id=ctx.tenant_id,
                event_type="case.recalled",
                rows_sql=RECALLED_EVENT_ROWS,
            )
        }), ended AS (
                UPDATE {s}.assignments x SET ended_at = now(), end_reason = 'recalled'
                FROM recalled r WHERE x.placement_id = r.id AND x.ended_at IS NULL
                RETURNING x.id
            ), moved AS (
                UPDATE {s}.cases c SET status = 'recalled'
                FROM recalled r
                WHERE c.id = r.case_id AND r.recall_reason <> 'case_closed'
                  AND c.status IN ({statuses})
                RETURNING c.id
            )
            SELECT recall_reason, count(*), (SELECT count(*) FROM ended)
            FROM recalled GROUP BY recall_reason"""
    ).fetchall()
    counts = {f"recalled_{reason}": int(n) for reason, n, _ in rows}
    counts["recalled"] = sum(counts.values())
    counts["assignments_ended"] = int(rows[0][2]) if rows else 0
    return counts


def place_cases(
    ctx: RunContext, version_id: int | None, rows: list[PolicyRow], capacity: dict[str, Any]
) -> dict[str, Any]:
    """Place every unplaced open case by the resolved policy; counts (and dry-run lines)."""
    s = ctx.s
    contracts = load_contracts(ctx)
    if version_id is None or not rows:
        return {"placed": 0, "lines": []}
    ctx.execute(
        """CREATE TEMP TABLE alloc_policy (
               segment text, arm text, arm_low numeric, arm_high numeric, holdout bool,
               agency_id int, share numeric, seed text
           ) ON COMMIT DROP"""
    )
    ctx.cur.executemany(
        "INSERT INTO alloc_policy VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        [
            (r.segment, r.arm, r.arm_low, r.arm_high, r.holdout, r.agency_id, r.share, r.seed)
            for r in rows
        ],
    )
    ctx.execute(
        """CREATE TEMP TABLE alloc_policy_segments ON COMMIT DROP AS
           SELECT DISTINCT segment, seed, bool_or(arm IS NOT NULL) AS has_arms
           FROM alloc_policy GROUP BY segment, seed"""
    )
    # Capacity ranks cases by score; without limits the score is not read at all.
    limits = [
        (int(agency_id), spec.get("max_cases"), spec.get("max_balance"))
        for agency_id, spec in capacity.items()
        if int(agency_id) in contracts
    ]
    score = "coalesce(sc.score, 0)" if limits else "0::numeric"
    scores_join = f"LEFT JOIN {s}.case_scores sc ON sc.case_id = c.id" if limits else ""
    # 2. Arms: a recorded arm stands; otherwise the seeded draw picks one and is recorded.
    # Each segment's distinct (arm, holdout) with the arm's interval; the draw is hashed
    # once per case and the case joined to the arm whose interval holds it.
    ctx.execute(
        """CREATE TEMP TABLE alloc_arm_choice ON COMMIT DROP AS
           SELECT DISTINCT segment, arm, holdout, arm_low, arm_high FROM alloc_policy"""
    )
    # 1 and 2 in one pass: the candidates, the agencies that already had each (looked up
    # per candidate, so a day with few candidates does not read every placement), their
    # arm and their order draw.
    ctx.execute(
        f"""CREATE TEMP TABLE alloc_armed ON COMMIT DROP AS
            WITH cand AS MATERIALIZED (
                SELECT c.id AS case_id, cs.segment, ps.segment AS policy_segment, ps.seed,
                       ps.has_arms, {balance_expression()} AS balance, a.currency,
                       {score} AS score,
                       CASE WHEN ps.has_arms
                            THEN ('x' || substr(md5(ps.seed || ':arm:' || c.id), 1, 8))
                                 ::bit(32)::bigint::numeric / 4294967296
                       END AS arm_draw
                FROM {s}.cases c
                JOIN {s}.accounts a ON a.id = c.account_id
                JOIN {s}.case_segments cs ON cs.case_id = c.id
                -- the policy's own entry for the segment, else its "*" entry: two joins
                -- to a few rows (hashed), not a test per case the planner cannot estimate
                LEFT JOIN alloc_policy_segments exact ON exact.segment = cs.segment
                LEFT JOIN alloc_policy_segments star
                  ON star.segment = '*' AND exact.segment IS NULL
                CROSS JOIN LATERAL (
                    SELECT CASE WHEN exact.segment IS NOT NULL THEN exact.segment
                                ELSE star.segment END AS segment,
                           CASE WHEN exact.segment IS NOT NULL THEN exact.seed
                                ELSE star.seed END AS seed,
                           CASE WHEN exact.segment IS NOT NULL THEN exact.has_arms
                                ELSE star.has_arms END AS has_arms
                ) ps
                {scores_join}
                -- flags = '{{}}' rather than cardinality(flags) = 0: the same test, but
                -- the planner can estimate it (from the column's statistics)
                WHERE {open_case_condition()} AND c.flags = '{{}}'::varchar[]
                  AND c.status <> 'on_hold'
                  AND {balance_expression()} > 0
                  AND (exact.segment IS NOT NULL OR star.segment IS NOT NULL)
                  AND NOT EXISTS (
                      SELECT 1 FROM {s}.placements p
                      WHERE p.case_id = c.id AND p.recalled_on IS NULL)
            )
            SELECT c.case_id, c.segment, c.policy_segment, c.seed, c.has_arms, c.balance,
                   c.currency, c.score, coalesce(h.had, '{{}}'::int[]) AS had, c.arm_draw,
                   arm.arm, arm.holdout, md5(c.seed || ':order:' || c.case_id) AS order_draw
            FROM cand c
            LEFT JOIN LATERAL (
                SELECT array_agg(p.agency_id ORDER BY p.agency_id) AS had
                FROM {s}.placements p WHERE p.case_id = c.case_id
            ) h ON true
            LEFT JOIN {s}.strategy_arms rec
              ON rec.strategy_version_id = %(version)s AND rec.case_id = c.case_id
            JOIN alloc_arm_choice arm
              ON arm.segment = c.policy_segment
             AND CASE WHEN rec.arm IS NOT NULL THEN arm.arm = rec.arm
                      WHEN NOT c.has_arms THEN true
                      ELSE c.arm_draw >= arm.arm_low AND c.arm_draw < arm.arm_high
                 END""",
        version=version_id,
    )
    ctx.execute("ANALYZE alloc_armed")  # temp tables have no statistics until analysed
    if any(r.arm is not None for r in rows):  # only champion/challenger draws an arm
        ctx.execute(
            f"""INSERT INTO {s}.strategy_arms
                    (strategy_version_id, case_id, arm, holdout, assigned_on)
                SELECT %(version)s, case_id, arm, holdout, %(as_of)s::date
                FROM alloc_armed WHERE arm IS NOT NULL
                ON CONFLICT DO NOTHING""",
            version=version_id,
        )
    # 3. Each class's agency intervals, then each case's agency by its rank in its class.
    ctx.execute(
        """CREATE TEMP TABLE alloc_share ON COMMIT DROP AS
           SELECT k.segment, k.arm, k.had, p.agency_id, k.n,
                  sum(p.share) OVER w - p.share AS low, sum(p.share) OVER w AS high,
                  sum(p.share) OVER (PARTITION BY k.segment, k.arm, k.had) AS total
           FROM (SELECT segment, policy_segment, arm, had, count(*) AS n FROM alloc_armed
                 WHERE NOT holdout GROUP BY segment, policy_segment, arm, had) k
           JOIN alloc_policy p ON p.segment = k.policy_segment
                AND p.arm IS NOT DISTINCT FROM k.arm AND NOT p.holdout AND p.share > 0
           JOIN alloc_contracts ct ON ct.agency_id = p.agency_id
           WHERE NOT (p.agency_id = ANY(k.had))
           WINDOW w AS (PARTITION BY k.segment, k.arm, k.had ORDER BY p.agency_id
                        ROWS UNBOUNDED PRECEDING)"""
    )
    # The k-th of n cases goes to the agency with n*low/total < k <= n*high/total: as
    # whole ranks, div(n*low, total) < k <= div(n*high, total) (exact integer division).
    ctx.execute(
        """CREATE TEMP TABLE alloc_share_ranks ON COMMIT DROP AS
           SELECT segment, arm, had, agency_id,
                  div(n * low, total)::bigint AS rn_after, div(n * high, total)::bigint AS rn_last
           FROM alloc_share"""
    )
    ctx.execute("ANALYZE alloc_share_ranks")  # a few rows: the join below hashes them
    ctx.execute(
        """CREATE TEMP TABLE alloc_target ON COMMIT DROP AS
           SELECT r.case_id, r.segment, r.policy_segment, r.arm, r.balance, r.currency,
                  r.score, sh.agency_id
           FROM (
               -- only the columns used on: the sort below carries every one of them
               SELECT a.case_id, a.segment, a.policy_segment, a.arm, a.had, a.balance,
                      a.currency, a.score,
                      -- byte-wise: the same classes, and a sort that can use short keys
                      row_number() OVER (PARTITION BY segment COLLATE "C", arm COLLATE "C", had
                                         ORDER BY order_draw COLLATE "C", case_id) AS rn
               FROM alloc_armed a WHERE NOT a.holdout
           ) r
           LEFT JOIN alloc_share_ranks sh
             -- the class (segment and arm not distinct, the same agencies had) as hashable
             -- equalities, so it is found by hash
             ON coalesce(sh.segment, '') = coalesce(r.segment, '')
            AND (sh.segment IS NULL) = (r.segment IS NULL)
            AND coalesce(sh.arm, '') = coalesce(r.arm, '')
            AND (sh.arm IS NULL) = (r.arm IS NULL)
            AND sh.had = r.had
            AND r.rn > sh.rn_after AND r.rn <= sh.rn_last
           -- stored in case order, so the writes below find their input already sorted
           ORDER BY r.case_id"""
    )
    # 4. Capacity: the best-scored cases fill an agency's room first.
    final = "alloc_final"
    if limits:
        ctx.execute(
            f"""CREATE TEMP TABLE alloc_capacity ON COMMIT DROP AS
                SELECT l.agency_id, l.max_cases, l.max_balance,
                       coalesce(cur.cases, 0) AS cases, coalesce(cur.balance, 0) AS balance
                FROM unnest(%(ids)s::int[], %(cases)s::int[], %(balances)s::numeric[])
                     AS l(agency_id, max_cases, max_balance)
                LEFT JOIN (
                    SELECT agency_id, count(*) AS cases, sum(balance_at_placement) AS balance
                    FROM {s}.placements WHERE recalled_on IS NULL GROUP BY agency_id
                ) cur ON cur.agency_id = l.agency_id""",
            ids=[limit[0] for limit in limits],
            cases=[limit[1] for limit in limits],
            balances=[Decimal(limit[2]) if limit[2] is not None else None for limit in limits],
        )
        ctx.execute(
            """CREATE TEMP TABLE alloc_final ON COMMIT DROP AS
               SELECT t.*, (cap.agency_id IS NULL
                            OR ((cap.max_cases IS NULL OR cap.cases + t.k <= cap.max_cases)
                                AND (cap.max_balance IS NULL
                                     OR cap.balance + t.cum_balance <= cap.max_balance)))
                           AS fits
               FROM (
                   SELECT t.*,
                          row_number() OVER w AS k,
                          sum(t.balance) OVER (w ROWS UNBOUNDED PRECEDING) AS cum_balance
                   FROM alloc_target t WHERE t.agency_id IS NOT NULL
                   WINDOW w AS (PARTITION BY t.agency_id ORDER BY t.score DESC, t.case_id)
               ) t
               LEFT JOIN alloc_capacity cap ON cap.agency_id = t.agency_id"""
        )
        ctx.execute("ANALYZE alloc_final")
    else:  # every targeted case fits: read the targets as they are, no copy
        final = "(SELECT t.*, true AS fits FROM alloc_target t WHERE t.agency_id IS NOT NULL)"
    lines = _outcome_lines(ctx, bool(limits), any(r.holdout for r in rows))
    placed = 0
    if not ctx.dry_run:
        # 5. The placements. ON CONFLICT: a tenant recall or a rival run got there first.
        # Each new placement is a case.placed event, in the same statement (written only if
        # an endpoint of the tenant subscribes to it).
        placed_events = bulk_events_sql(
            schema=ctx.schema,
            tenant_id=ctx.tenant_id,
            event_type="case.placed",
            rows_sql=PLACED_EVENT_ROWS,
        )
        placed = ctx.execute(
            f"""WITH placed AS (INSERT INTO {s}.placements (
                    case_id, agency_id, strategy_version_id, segment, arm, started_on,
                    ends_on, grace_days, balance_at_placement, currency, allocation_run_id)
                SELECT f.case_id, f.agency_id, %(version)s, f.segment, f.arm, %(as_of)s::date,
                       %(as_of)s::date + ct.placement_days, ct.grace_days, f.balance,
                       f.currency, %(run_id)s
                FROM {final} f JOIN alloc_contracts ct ON ct.agency_id = f.agency_id
                WHERE f.fits
                -- in case order: the indexes on case_id and the checks against cases
                -- then walk their pages in order instead of at random
                ORDER BY f.case_id
                ON CONFLICT DO NOTHING
                RETURNING id, case_id, agency_id, started_on, ends_on),
            events AS ({placed_events})
            SELECT count(*) FROM placed""",
            version=version_id,
        ).fetchone()[0]
        ctx.execute(
            f"""UPDATE {s}.cases c SET status = 'placed'
                FROM (SELECT f.case_id FROM {final} f WHERE f.fits ORDER BY f.case_id) f
                WHERE c.id = f.case_id AND c.status IN ('new', 'recalled')"""
        )
        if placed:  # the recall and assign steps plan by these statistics
            ctx.execute(f"ANALYZE {s}.placements")
    else:
        placed = sum(line["cases"] for line in lines if line["outcome"] == "placed")
    counts: dict[str, Any] = {"placed": placed, "lines": lines}
    for outcome in ("holdout", "held_for_capacity", "no_agency"):
        counts[outcome] = sum(line["cases"] for line in lines if line["outcome"] == outcome)
    return counts


def _outcome_lines(ctx: RunContext, limits: bool, holdouts: bool) -> list[dict[str, Any]]:
    """What the pass decided, by (segment, arm, agency, outcome): the dry-run report.

    Without capacity limits every targeted case is placed, so one pass over the targets
    tells placed from no agency; holdouts are looked for only if the policy has them.
    """
    if limits:
        parts = [
            """SELECT segment, arm, agency_id, balance,
                      CASE WHEN fits THEN 'placed' ELSE 'held_for_capacity' END AS outcome
               FROM alloc_final""",
            """SELECT segment, arm, NULL, balance, 'no_agency'
               FROM alloc_target WHERE agency_id IS NULL""",
        ]
    else:
        parts = [
            """SELECT segment, arm, agency_id, balance,
                      CASE WHEN agency_id IS NULL THEN 'no_agency' ELSE 'placed' END AS outcome
               FROM alloc_target"""
        ]
    if holdouts:
        parts.append("SELECT segment, arm, NULL, balance, 'holdout' FROM alloc_armed WHERE holdout")
    ctx.execute(
        f"""SELECT segment, arm, agency_id, outcome, count(*), sum(balance) FROM (
               {" UNION ALL ".join(parts)}
           ) x
           GROUP BY segment, arm, agency_id, outcome
           ORDER BY segment, arm NULLS FIRST, agency_id NULLS LAST, outcome"""
    )
    return [
        {
            "segment": segment,
            "arm": arm,
            "agency_id": agency_id,
            "outcome": outcome,
            "cases": int(cases),
            "balance": Decimal(balance),
        }
        for segment, arm, agency_id, outcome, cases, balance in ctx.cur.fetchall()
    ]


# --- one placement at a time: the tenant's recall, flags, the credit rule ------------------


#: The data of the ``case.placed`` events of the rows a placing statement returned.
PLACED_EVENT_ROWS = """SELECT jsonb_build_object(
        'placement_id', placed.id, 'case_id', placed.case_id, 'agency_id', placed.agency_id,
        'status', 'placed', 'started_on', placed.started_on, 'ends_on', placed.ends_on) AS data
    FROM placed ORDER BY placed.case_id"""
#: The data of the ``case.recalled`` events of the placements a recall returned.
RECALLED_EVENT_ROWS = """SELECT jsonb_build_object(
        'placement_id', recalled.id, 'case_id', recalled.case_id,
        'agency_id', recalled.agency_id, 'status', 'recalled',
        'recall', recalled.recall_reason, 'recalled_on', recalled.recalled_on) AS data
    FROM recalled ORDER BY recalled.case_id"""


def recall_placement(
    session: Session, placement: Placement, *, reason: str, on: dt.date
) -> Placement:
    """End an active placement on ``on`` (the tenant asked); the next run places it again."""
    if placement.recalled_on is not None:
        raise PlacementError(f"placement {placement.id} was already recalled")
    placement.recalled_on = max(on, placement.started_on)
    placement.recall_reason = reason
    placement.grace_until = placement.recalled_on + dt.timedelta(days=placement.grace_days)
    session.execute(
        update(Assignment)
        .where(Assignment.placement_id == placement.id, Assignment.ended_at.is_(None))
        .values(ended_at=utcnow(), end_reason="recalled")
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(Case)
        .where(Case.id == placement.case_id, Case.status.in_(WORKED_STATUSES))
        .values(status=CaseStatus.RECALLED)
        .execution_options(synchronize_session=False)
    )
    session.flush()  # the caller answers with the recalled placement
    session.expire(placement, ["assignments"])
    emit_event(
        session,
        "case.recalled",
        {
            "placement_id": placement.id,
            "case_id": placement.case_id,
            "agency_id": placement.agency_id,
            "status": "recalled",
            "recall": reason,
            "recalled_on": placement.recalled_on,
        },
    )
    return placement


class PlacementError(DomainError, ValueError):
    """A placement request that cannot be carried out (409)."""

    status = 409


def set_case_flags(
    session: Session, case: Case, flags: list[str], *, today: dt.date
) -> Placement | None:
    """Set a case's flags; a flagged case placed with an agency is recalled at once.

    Returns the placement it recalled, if any.
    """
    case.flags = sorted(set(flags))
    if not case.flags:
        return None
    active = session.scalar(
        select(Placement).where(Placement.case_id == case.id, Placement.recalled_on.is_(None))
    )
    if active is None:
        return None
    return recall_placement(session, active, reason="excluded_flag", on=today)


def placement_credited_for(
    session: Session, *, case_id: int, paid_at: dt.datetime, timezone: str
) -> Placement | None:
    """The placement (and so the agency) a payment on ``case_id`` at ``paid_at`` credits.

    The payment's date is taken on the tenant's calendar. A recalled placement whose grace
    period covers the date wins (the late payment is the old agency's work); otherwise the
    placement active on that date; None when the case was with no agency.
    """
    day = paid_at.astimezone(zoneinfo.ZoneInfo(timezone)).date()
    # An expired placement the daily run has not recalled yet ends on its end date all the
    # same, with the grace period the recall will give it.
    ended_on = func.coalesce(Placement.recalled_on, Placement.ends_on)
    grace_until = func.coalesce(Placement.grace_until, Placement.ends_on + Placement.grace_days)
    in_grace = session.scalar(
        select(Placement)
        .where(Placement.case_id == case_id, ended_on <= day, grace_until > day)
        .order_by(ended_on.desc(), Placement.id.desc())
        .limit(1)
    )
    if in_grace is not None:
        return in_grace
    return session.scalar(
        select(Placement)
        .where(Placement.case_id == case_id, Placement.started_on <= day, ended_on > day)
        .order_by(Placement.started_on.desc(), Placement.id.desc())
        .limit(1)
    )
