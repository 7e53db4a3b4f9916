"""Giving placed cases to an agency's collectors, and each collector's work queue.

``assign_cases`` is set-based per skill class, never per case:

1. Open assignments of collectors who can no longer work them (profile or login
   deactivated, moved to another agency) end with ``collector_inactive``; their cases are
   assigned again below with reason ``reassigned``.
2. Each agency's collectors are locked for the step (an advisory lock per agency), so two
   tenants' runs cannot both fill the same collector's last free slots.
3. A collector's room is their maximum minus their open cases in *every* tenant (the
   shared ``collector_workloads``, kept by each tenant's step).
4. Unassigned active placements are grouped into skill classes (agency, and language and
   region when any of the agency's collectors lists them). Within a class, cases ranked
   by score are matched to collector slots ranked by workload: collector c's k-th free
   slot ranks by (open cases + k, open balance), so the class fills the least-loaded
   collectors first and round-robins once they are level. A collector who lists
   languages only gets cases in those languages (or of unknown language); likewise
   regions. Classes are filled most constrained first (fewest eligible collectors), so
   generalists' room is not spent on cases a specialist could take. Cases no collector
   may take stay unassigned and are counted.

Overrides by a manager stand until the collector is deactivated; the step only fills
placements that have no open assignment.
"""

from __future__ import annotations

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from recova.platform.allocation.context import ASSIGN_LOCK, RunContext
from recova.platform.allocation.models import (
    Assignment,
    CollectorProfile,
    CollectorWorkload,
    Placement,
)
from recova.platform.auth.models import Membership, Role, User
from recova.platform.kernel.db import table_sql, utcnow
from recova.platform.kernel.errors import DomainError

PROFILES = table_sql(CollectorProfile)
USERS = table_sql(User)
MEMBERSHIPS = table_sql(Membership)
WORKLOADS = table_sql(CollectorWorkload)

ELIGIBLE_COLLECTOR = """
    p.is_active AND u.is_active AND m.role = 'collector'
"""


def assign_cases(ctx: RunContext) -> dict[str, int]:
    """Assign every unassigned active placement to a collector of its agency."""
    s = ctx.s
    ended = ctx.rowcount(
        f"""UPDATE {s}.assignments x
            SET ended_at = now(), end_reason = 'collector_inactive'
            FROM {s}.placements pl
            WHERE pl.id = x.placement_id AND x.ended_at IS NULL AND NOT EXISTS (
                SELECT 1 FROM {PROFILES} p
                JOIN {USERS} u ON u.id = p.user_id
                JOIN {MEMBERSHIPS} m ON m.user_id = p.user_id
                WHERE p.user_id = x.collector_id AND m.agency_id = pl.agency_id
                  AND {ELIGIBLE_COLLECTOR})"""
    )
    agencies = [
        row[0]
        for row in ctx.execute(
            f"SELECT DISTINCT agency_id FROM {s}.placements WHERE recalled_on IS NULL"
            " ORDER BY agency_id"
        ).fetchall()
    ]
    for agency_id in agencies:  # in id order, so two runs never wait on each other in a cycle
        ctx.execute(
            "SELECT pg_advisory_xact_lock(%(ns)s, %(agency)s)", ns=ASSIGN_LOCK, agency=agency_id
        )
    ctx.execute(
        # The unassigned placements first, so a day with few of them reads few cases,
        # debtors and scores; "reassigned" is one hashed set of the placements whose
        # collector was deactivated (ended assignments have no index to probe per case).
        f"""CREATE TEMP TABLE alloc_pending ON COMMIT DROP AS
            WITH open AS MATERIALIZED (
                SELECT pl.id, pl.agency_id, pl.case_id, pl.balance_at_placement
                FROM {s}.placements pl
                WHERE pl.recalled_on IS NULL AND NOT EXISTS (
                    SELECT 1 FROM {s}.assignments x
                    WHERE x.placement_id = pl.id AND x.ended_at IS NULL)
            )
            SELECT pl.id AS placement_id, pl.agency_id, pl.case_id, pl.balance_at_placement
                   AS balance, coalesce(sc.score, 0) AS score, d.language, d.region,
                   r.placement_id IS NOT NULL AS reassigned
            FROM open pl
            JOIN {s}.cases c ON c.id = pl.case_id
            JOIN {s}.debtors d ON d.id = c.debtor_id
            LEFT JOIN {s}.case_scores sc ON sc.case_id = pl.case_id
            LEFT JOIN (
                SELECT DISTINCT o.placement_id FROM {s}.assignments o
                WHERE o.end_reason = 'collector_inactive'
            ) r ON r.placement_id = pl.id"""
    )
    # Each class's statement picks its agency's cases; the matches go to alloc_matched.
    ctx.execute("CREATE INDEX ON alloc_pending (agency_id)")
    ctx.execute("ANALYZE alloc_pending")  # temp tables have no statistics until analysed
    pending = int(ctx.execute("SELECT count(*) FROM alloc_pending").fetchone()[0])
    assigned = 0
    if pending:
        _load_collectors(ctx)
        ctx.execute(
            """CREATE TEMP TABLE alloc_matched (
                   placement_id int, collector_id int, reassigned bool, balance numeric
               ) ON COMMIT DROP"""
        )
        _match_by_class(ctx)
        assigned = ctx.rowcount(
            f"""INSERT INTO {s}.assignments (placement_id, collector_id, reason, assigned_at)
                SELECT placement_id, collector_id,
                       CASE WHEN reassigned THEN 'reassigned' ELSE 'auto' END, now()
                FROM alloc_matched
                ORDER BY placement_id
                ON CONFLICT DO NOTHING"""
        )
    refresh_workloads(ctx)
    return {
        "assignments_ended": ended,
        "assigned": assigned,
        "unassigned": pending - assigned,
    }


def _load_collectors(ctx: RunContext) -> None:
    s = ctx.s
    ctx.execute(
        f"""CREATE TEMP TABLE alloc_collectors ON COMMIT DROP AS
            SELECT p.user_id AS collector_id, m.agency_id, p.languages, p.regions,
                   coalesce(here.cases, 0) AS load, coalesce(here.balance, 0) AS balance_load,
                   p.max_cases - coalesce(here.cases, 0) - coalesce(elsewhere.cases, 0)
                       AS free
            FROM {PROFILES} p
            JOIN {USERS} u ON u.id = p.user_id
            JOIN {MEMBERSHIPS} m ON m.user_id = p.user_id
            LEFT JOIN (
                SELECT x.collector_id, count(*) AS cases,
                       sum(pl.balance_at_placement) AS balance
                FROM {s}.assignments x JOIN {s}.placements pl ON pl.id = x.placement_id
                WHERE x.ended_at IS NULL GROUP BY x.collector_id
            ) here ON here.collector_id = p.user_id
            LEFT JOIN (
                SELECT user_id, sum(open_cases) AS cases FROM {WORKLOADS}
                WHERE tenant_id <> %(tenant_id)s GROUP BY user_id
            ) elsewhere ON elsewhere.user_id = p.user_id
            WHERE {ELIGIBLE_COLLECTOR}
              AND m.agency_id IN (SELECT DISTINCT agency_id FROM alloc_pending)"""
    )
    # Whether an agency's collectors list languages or regions at all: if none does, that
    # skill does not split its cases into classes.
    ctx.execute(
        """CREATE TEMP TABLE alloc_agency_skills ON COMMIT DROP AS
           SELECT agency_id, bool_or(cardinality(languages) > 0) AS by_language,
                  bool_or(cardinality(regions) > 0) AS by_region
           FROM alloc_collectors GROUP BY agency_id"""
    )


def _match_by_class(ctx: RunContext) -> None:
    # The most constrained classes go first (fewest collectors may take them), so a
    # generalist's room is not used up by cases a specialist could have taken.
    classes = ctx.execute(
        """SELECT k.agency_id, k.language, k.region, k.n
           FROM (
               SELECT p.agency_id,
                      CASE WHEN s.by_language THEN p.language END AS language,
                      CASE WHEN s.by_region THEN p.region END AS region,
                      count(*) AS n
               FROM alloc_pending p JOIN alloc_agency_skills s ON s.agency_id = p.agency_id
               GROUP BY 1, 2, 3
           ) k
           ORDER BY (
               SELECT count(*) FROM alloc_collectors c
               WHERE c.agency_id = k.agency_id
                 AND (cardinality(c.languages) = 0 OR k.language IS NULL
                      OR k.language = ANY(c.languages))
                 AND (cardinality(c.regions) = 0 OR k.region IS NULL
                      OR k.region = ANY(c.regions))
           ), k.agency_id, k.language NULLS LAST, k.region NULLS LAST"""
    ).fetchall()
    for agency_id, language, region, n in classes:
        level = _fill_level(ctx, agency_id, language, region, int(n))
        ctx.execute(
            """WITH cases AS (
                   SELECT p.placement_id, p.balance, p.reassigned,
                          row_number() OVER (ORDER BY p.score DESC, p.case_id) AS rn
                   FROM alloc_pending p JOIN alloc_agency_skills k ON k.agency_id = p.agency_id
                   WHERE p.agency_id = %(agency)s
                     AND (NOT k.by_language OR p.language IS NOT DISTINCT FROM %(language)s)
                     AND (NOT k.by_region OR p.region IS NOT DISTINCT FROM %(region)s)
               ), slots AS (
                   SELECT c.collector_id,
                          row_number() OVER (ORDER BY c.load + k, c.balance_load,
                                                      c.collector_id) AS rn
                   FROM alloc_collectors c
                   -- only the slots up to the class's fill level can rank within n
                   CROSS JOIN LATERAL generate_series(
                       1, least(c.free, %(n)s, %(level)s::bigint - c.load)) AS k
                   WHERE c.agency_id = %(agency)s AND c.free > 0
                     AND (cardinality(c.languages) = 0 OR %(language)s::text IS NULL
                          OR %(language)s::text = ANY(c.languages))
                     AND (cardinality(c.regions) = 0 OR %(region)s::text IS NULL
                          OR %(region)s::text = ANY(c.regions))
               ), matched AS (
                   -- the classes split the pending cases: each case is matched at most once
                   INSERT INTO alloc_matched (placement_id, collector_id, reassigned, balance)
                   SELECT cases.placement_id, s.collector_id, cases.reassigned, cases.balance
                   FROM cases JOIN slots s USING (rn)
                   RETURNING collector_id, balance
               )
               UPDATE alloc_collectors c
               SET load = c.load + m.cases, free = c.free - m.cases,
                   balance_load = c.balance_load + m.balance
               FROM (SELECT collector_id, count(*) AS cases, sum(balance) AS balance
                     FROM matched GROUP BY collector_id) m
               WHERE c.collector_id = m.collector_id""",
            agency=agency_id,
            language=language,
            region=region,
            n=int(n),
            level=level,
        )


def _fill_level(
    ctx: RunContext, agency_id: int, language: str | None, region: str | None, n: int
) -> int | None:
    """The lowest slot rank (open cases + k) a class of ``n`` cases fills up to.

    Collector c's k-th free slot ranks by ``load + k``; the class's n best slots are all at
    or below the smallest level L with n slots at or below it, so slots above L need not be
    generated (nor sorted). None (no bound) when the collectors have fewer than n slots.
    """
    rows = ctx.execute(
        """SELECT c.load, least(c.free, %(n)s) FROM alloc_collectors c
           WHERE c.agency_id = %(agency)s AND c.free > 0
             AND (cardinality(c.languages) = 0 OR %(language)s::text IS NULL
                  OR %(language)s::text = ANY(c.languages))
             AND (cardinality(c.regions) = 0 OR %(region)s::text IS NULL
                  OR %(region)s::text = ANY(c.regions))""",
        agency=agency_id,
        language=language,
        region=region,
        n=n,
    ).fetchall()
    slots = [(int(load), int(free)) for load, free in rows]

    def filled(level: int) -> int:
        return sum(min(free, max(0, level - load)) for load, free in slots)

    if not slots or filled(max(load + free for load, free in slots)) < n:
        return None
    low, high = min(load for load, _ in slots), max(load + free for load, free in slots)
    while low < high:  # filled() grows with the level: the smallest level with n slots
        middle = (low + high) // 2
        if filled(middle) >= n:
            high = middle
        else:
            low = middle + 1
    return low


def refresh_workloads(ctx: RunContext) -> None:
    """Bring this tenant's rows of ``collector_workloads`` in line with its assignments."""
    s = ctx.s
    ctx.execute(
        f"""INSERT INTO {WORKLOADS} AS w (user_id, tenant_id, open_cases)
            SELECT collector_id, %(tenant_id)s, count(*) FROM {s}.assignments
            WHERE ended_at IS NULL GROUP BY collector_id
            ON CONFLICT (user_id, tenant_id) DO UPDATE SET open_cases = EXCLUDED.open_cases
            WHERE w.open_cases <> EXCLUDED.open_cases"""
    )
    ctx.execute(
        f"""DELETE FROM {WORKLOADS} w
            WHERE w.tenant_id = %(tenant_id)s AND NOT EXISTS (
                SELECT 1 FROM {s}.assignments x
                WHERE x.collector_id = w.user_id AND x.ended_at IS NULL)"""
    )


# --- managers: profiles and overrides ------------------------------------------------------


class AssignmentError(DomainError, ValueError):
    """An assignment request that cannot be carried out (409)."""

    status = 409


def collector_of_agency(session: Session, *, user_id: int, agency_id: int) -> User | None:
    """The user if they are a collector of ``agency_id``, else None."""
    return session.scalar(
        select(User)
        .join(Membership, Membership.user_id == User.id)
        .where(
            User.id == user_id,
            Membership.agency_id == agency_id,
            Membership.role == Role.COLLECTOR,
        )
    )


def profile_for(session: Session, user_id: int) -> CollectorProfile:
    """The collector's profile, created with the defaults if they have none yet."""
    profile = session.get(CollectorProfile, user_id)
    if profile is None:
        profile = CollectorProfile(
            user_id=user_id, languages=[], regions=[], max_cases=200, is_active=True
        )
        session.add(profile)
    return profile


def open_cases_everywhere(session: Session, user_id: int, *, tenant_id: int) -> int:
    """A collector's open assignments: this tenant's counted live, the others' as kept."""
    here = session.scalar(
        select(func.count())
        .select_from(Assignment)
        .where(Assignment.collector_id == user_id, Assignment.ended_at.is_(None))
    )
    elsewhere = session.scalar(
        select(func.coalesce(func.sum(CollectorWorkload.open_cases), 0)).where(
            CollectorWorkload.user_id == user_id, CollectorWorkload.tenant_id != tenant_id
        )
    )
    return int(here or 0) + int(elsewhere or 0)


def override_assignment(
    session: Session,
    placement: Placement,
    *,
    collector_id: int,
    tenant_id: int,
    by_user: int,
) -> Assignment:
    """A manager gives a placed case to a collector of the placement's agency."""
    if placement.recalled_on is not None:
        raise AssignmentError("the placement was recalled; it cannot be assigned")
    collector = collector_of_agency(session, user_id=collector_id, agency_id=placement.agency_id)
    profile = session.get(CollectorProfile, collector_id) if collector is not None else None
    if collector is None or profile is None or not (collector.is_active and profile.is_active):
        raise AssignmentError(f"no active collector {collector_id} in this agency")
    # Serialise with the assignment step and other overrides of this agency's collectors.
    session.execute(
        text("SELECT pg_advisory_xact_lock(:ns, :agency)"),
        {"ns": ASSIGN_LOCK, "agency": placement.agency_id},
    )
    current = session.scalar(
        select(Assignment)
        .where(Assignment.placement_id == placement.id, Assignment.ended_at.is_(None))
        .with_for_update()
    )
    if current is not None and current.collector_id == collector_id:
        return current
    if open_cases_everywhere(session, collector_id, tenant_id=tenant_id) >= profile.max_cases:
        raise AssignmentError(f"collector {collector_id} already has their maximum of cases")
    now = utcnow()
    if current is not None:
        current.ended_at = now
        current.end_reason = "override"
        session.flush()  # the one-open-assignment index must see the old one end first
    assignment = Assignment(
        placement_id=placement.id,
        collector_id=collector_id,
        reason="override",
        assigned_by=by_user,
        assigned_at=now,
        next_action_at=current.next_action_at if current is not None else None,
    )
    session.add(assignment)
    session.flush()  # the caller answers with it
    _recount(session, tenant_id, [collector_id, *([current.collector_id] if current else [])])
    return assignment


def _recount(session: Session, tenant_id: int, user_ids: list[int]) -> None:
    for user_id in set(user_ids):
        count = session.scalar(
            select(func.count())
            .select_from(Assignment)
            .where(Assignment.collector_id == user_id, Assignment.ended_at.is_(None))
        )
        session.execute(
            text(
                f"INSERT INTO {WORKLOADS} (user_id, tenant_id, open_cases)"
                " VALUES (:u, :t, :n) ON CONFLICT (user_id, tenant_id)"
                " DO UPDATE SET open_cases = EXCLUDED.open_cases"
            ),
            {"u": user_id, "t": tenant_id, "n": int(count or 0)},
        )
