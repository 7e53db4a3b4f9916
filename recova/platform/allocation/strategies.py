"""Placement strategies and their versions: validating a policy and resolving it to shares.

A strategy has versions; a version's policy is immutable once saved (a change is a new
version), so every placement can name the exact policy that made it. At most one version
in the tenant is active (a partial unique index), and the daily run places by it from
its ``effective_from`` date.

Resolving a policy for a run turns every segment's mode into the same shape: arms (one
``default`` arm outside champion/challenger), each with a share of the segment's cases
and, unless it is a held-out control arm, agency shares. Performance weighting becomes
agency shares here too, from each agency's recovery rate on its recent placements.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from marshmallow import ValidationError
from sqlalchemy import Select, select, update
from sqlalchemy.orm import Session, selectinload

from recova.platform.agencies.contracts import AgencyContract, active_contract_condition
from recova.platform.agencies.models import Agency, AgencyStatus
from recova.platform.allocation.context import RunContext, local_date
from recova.platform.allocation.models import PlacementStrategy, StrategyVersion
from recova.platform.allocation.schemas import PolicySchema
from recova.platform.kernel.errors import DomainError

HUNDRED = Decimal(100)
SHARE_PLACES = Decimal("0.0001")
DEFAULT_WINDOW_DAYS = 90
DEFAULT_MIN_SHARE = Decimal(10)
DEFAULT_MIN_PLACEMENTS = 20
DEFAULT_ARM = "default"


class PolicyError(DomainError, ValueError):
    """A policy that cannot be saved; ``errors`` says where, as marshmallow would (422, the
    errors under ``policy``)."""

    def __init__(self, errors: dict[str, Any]) -> None:
        super().__init__("invalid placement policy")
        self.errors = errors

    @property
    def error_details(self) -> dict[str, Any]:
        return {"json": {"policy": self.errors}}


class StrategyError(DomainError, ValueError):
    """A strategy request that conflicts with the saved strategies (409)."""

    status = 409


def validate_policy(
    session: Session, policy: dict[str, Any], *, tenant_id: int, on: dt.date
) -> tuple[dict[str, Any], list[str]]:
    """Check a policy; returns it normalised (JSON-safe) and warnings that do not block it.

    Blocking: the schema, shares adding up to 100, an agency twice in a list, unknown
    agencies. Warnings: agencies without a contract with the tenant on ``on`` (their share
    is skipped until one starts), capacity for agencies the policy never names.
    """
    try:
        loaded = PolicySchema().load(policy)
    except ValidationError as exc:
        raise PolicyError(exc.normalized_messages()) from exc  # type: ignore[arg-type]
    errors: dict[str, Any] = {}
    named: set[int] = set()
    for segment, spec in loaded["segments"].items():
        problems = _segment_problems(spec, named)
        if problems:
            errors.setdefault("segments", {})[segment] = problems
    capacity_ids = {int(key) for key in loaded["capacity"]}
    known = set(session.scalars(select(Agency.id).where(Agency.id.in_(named | capacity_ids))))
    for missing in sorted((named | capacity_ids) - known):
        errors.setdefault("agencies", []).append(f"no agency {missing}")
    if errors:
        raise PolicyError(errors)
    contracted = contracted_agencies(session, tenant_id=tenant_id, on=on)
    warnings = [
        f"agency {agency_id} has no active contract with the tenant on {on}; it gets no cases"
        " until one starts"
        for agency_id in sorted(named - set(contracted))
    ]
    warnings += [
        f"capacity is set for agency {agency_id}, which no segment names"
        for agency_id in sorted(capacity_ids - named)
    ]
    return PolicySchema().dump(loaded), warnings


def _segment_problems(spec: dict[str, Any], named: set[int]) -> list[str]:  # noqa: PLR0912 - one check per rule reads better than helpers
    mode = spec["mode"]
    problems = []
    if mode == "champion_challenger":
        if spec.get("agencies"):
            problems.append("champion_challenger takes agencies per arm, not per segment")
        arms = spec.get("arms") or []
        if len(arms) < 2:
            problems.append("champion_challenger needs at least two arms")
        if "seed" not in spec:
            problems.append("champion_challenger needs a seed, so the split is reproducible")
        if sum((arm["share"] for arm in arms), Decimal(0)) != HUNDRED:
            problems.append("arm shares must add up to 100")
        if len({arm["name"] for arm in arms}) != len(arms):
            problems.append("arm names must be unique")
        for arm in arms:
            if arm["holdout"]:
                if arm["agencies"]:
                    problems.append(f"arm {arm['name']}: a holdout arm places with no agency")
                continue
            problems += [f"arm {arm['name']}: {p}" for p in _share_problems(arm["agencies"])]
            named.update(a["agency_id"] for a in arm["agencies"])
    else:
        if spec.get("arms"):
            problems.append(f"{mode} takes no arms")
        agencies = spec.get("agencies") or []
        if mode == "split":
            problems += _share_problems(agencies)
        else:
            if not agencies:
                problems.append("name at least one agency")
            if any("share" in a for a in agencies):
                problems.append("performance weighting computes the shares; give none")
            if len({a["agency_id"] for a in agencies}) != len(agencies):
                problems.append("an agency is named twice")
            min_share = spec.get("min_share", DEFAULT_MIN_SHARE)
            if min_share * len(agencies) > HUNDRED:
                problems.append("min_share times the number of agencies exceeds 100")
        named.update(a["agency_id"] for a in agencies)
    return problems


def _share_problems(agencies: list[dict[str, Any]]) -> list[str]:
    problems = []
    if not agencies:
        problems.append("name at least one agency")
    if any("share" not in a for a in agencies):
        problems.append("every agency needs a share")
    elif sum((a["share"] for a in agencies), Decimal(0)) != HUNDRED:
        problems.append("agency shares must add up to 100")
    if len({a["agency_id"] for a in agencies}) != len(agencies):
        problems.append("an agency is named twice")
    return problems


def contracted_agencies(session: Session, *, tenant_id: int, on: dt.date) -> dict[int, Any]:
    """Active agencies under an active contract with the tenant on ``on``, by id."""
    rows = session.execute(
        select(AgencyContract)
        .join(Agency, Agency.id == AgencyContract.agency_id)
        .where(
            AgencyContract.tenant_id == tenant_id,
            Agency.status == AgencyStatus.ACTIVE,
            active_contract_condition(on),
        )
    ).scalars()
    return {contract.agency_id: contract for contract in rows}


# --- saving strategies ---------------------------------------------------------------------


def create_strategy(
    session: Session,
    *,
    tenant_id: int,
    name: str,
    policy: dict[str, Any],
    description: str | None = None,
    effective_from: dt.date,
    activate: bool = False,
    created_by: int | None = None,
) -> PlacementStrategy:
    """Create a strategy with its first version (validated), optionally active."""
    if session.scalar(select(PlacementStrategy.id).where(PlacementStrategy.name == name)):
        raise StrategyError(f"a strategy named {name!r} already exists")
    strategy = PlacementStrategy(name=name, description=description)
    session.add(strategy)
    session.flush()  # the version refers to the new id
    add_version(
        session,
        strategy,
        tenant_id=tenant_id,
        policy=policy,
        effective_from=effective_from,
        activate=activate,
        created_by=created_by,
    )
    return strategy


def add_version(
    session: Session,
    strategy: PlacementStrategy,
    *,
    tenant_id: int,
    policy: dict[str, Any],
    effective_from: dt.date,
    activate: bool = False,
    created_by: int | None = None,
) -> StrategyVersion:
    """Save a new version of ``strategy`` (validated); optionally make it the active one."""
    clean, _warnings = validate_policy(session, policy, tenant_id=tenant_id, on=effective_from)
    latest = max((v.version for v in strategy.versions), default=0)
    version = StrategyVersion(
        strategy_id=strategy.id,
        version=latest + 1,
        policy=clean,
        effective_from=effective_from,
        is_active=False,
        created_by=created_by,
    )
    strategy.versions.append(version)
    session.flush()  # activation refers to the new id
    if activate:
        activate_version(session, version)
    return version


def activate_version(session: Session, version: StrategyVersion) -> StrategyVersion:
    """Make ``version`` the tenant's one active strategy version."""
    session.execute(
        update(StrategyVersion)
        .where(StrategyVersion.is_active, StrategyVersion.id != version.id)
        .values(is_active=False)
        .execution_options(synchronize_session="fetch")
    )
    session.flush()  # the partial unique index must see the old one off first
    version.is_active = True
    session.flush()  # surface a concurrent activation as a unique violation here
    return version


def strategy_statement(strategy_id: int) -> Select[PlacementStrategy]:
    """One strategy with its versions loaded."""
    return (
        select(PlacementStrategy)
        .options(selectinload(PlacementStrategy.versions))
        .where(PlacementStrategy.id == strategy_id)
    )


# --- resolving a policy for a run ----------------------------------------------------------


@dataclass(frozen=True)
class PolicyRow:
    """One agency's share of one arm of one segment (``agency_id`` None: holdout arm)."""

    segment: str
    arm: str | None
    arm_low: Decimal  # the arm's interval of the [0, 1) draw
    arm_high: Decimal
    holdout: bool
    agency_id: int | None
    share: Decimal
    seed: str


def resolve_policy(ctx: RunContext, version_id: int, policy: dict[str, Any]) -> list[PolicyRow]:
    """Every (segment, arm, agency) share of a policy, performance weights computed now."""
    rows: list[PolicyRow] = []
    default_seed = policy.get("seed") or f"strategy-version-{version_id}"
    for segment, spec in policy["segments"].items():
        seed = spec.get("seed") or default_seed
        mode = spec["mode"]
        if mode == "champion_challenger":
            low = Decimal(0)
            for arm in spec["arms"]:
                high = low + Decimal(arm["share"]) / HUNDRED
                if arm["holdout"]:
                    rows.append(
                        PolicyRow(segment, arm["name"], low, high, True, None, Decimal(0), seed)
                    )
                for agency in arm["agencies"]:
                    rows.append(
                        PolicyRow(
                            segment,
                            arm["name"],
                            low,
                            high,
                            False,
                            agency["agency_id"],
                            Decimal(agency["share"]),
                            seed,
                        )
                    )
                low = high
            continue
        if mode == "split":
            shares = {a["agency_id"]: Decimal(a["share"]) for a in spec["agencies"]}
        else:
            shares = performance_shares(ctx, spec)
            ctx.details.setdefault("performance_shares", {})[segment] = {
                str(agency_id): str(share) for agency_id, share in shares.items()
            }
        for agency_id, share in shares.items():
            rows.append(
                PolicyRow(segment, None, Decimal(0), Decimal(1), False, agency_id, share, seed)
            )
    return rows


def performance_shares(ctx: RunContext, spec: dict[str, Any]) -> dict[int, Decimal]:
    """Agency shares by recovery rate on placements started in the recent window.

    rate = money credited during the placement (payments net of their reversals, from its
    start to the end of its grace period) / balance at placement, over the agency's
    placements started in the last ``window_days`` before the run date. An agency with
    fewer than ``min_placements`` such placements has no trustworthy rate yet and gets the
    mean rate of those that do (all equal when none do). Every agency then gets at least
    ``min_share`` percent, so a newcomer or an unlucky agency keeps earning a track record;
    the rest is split in proportion to the rates.
    """
    agency_ids = [a["agency_id"] for a in spec["agencies"]]
    window = int(spec.get("window_days", DEFAULT_WINDOW_DAYS))
    min_share = Decimal(spec.get("min_share", DEFAULT_MIN_SHARE))
    min_placements = int(spec.get("min_placements", DEFAULT_MIN_PLACEMENTS))
    rates = recovery_rates(ctx, agency_ids, window_days=window)
    measured = {a: rate for a, (rate, n) in rates.items() if n >= min_placements}
    prior = sum(measured.values(), Decimal(0)) / Decimal(len(measured)) if measured else Decimal(1)
    weights: dict[int, Decimal] = {a: measured.get(a, prior) for a in agency_ids}
    total = sum(weights.values(), Decimal(0))
    spare = HUNDRED - min_share * len(agency_ids)
    shares = {}
    for agency_id in agency_ids:
        proportional = (
            weights[agency_id] / total if total > 0 else Decimal(1) / Decimal(len(agency_ids))
        )
        shares[agency_id] = (min_share + spare * proportional).quantize(
            SHARE_PLACES, ROUND_HALF_EVEN
        )
    return shares


def recovery_rates(
    ctx: RunContext, agency_ids: list[int], *, window_days: int
) -> dict[int, tuple[Decimal, int]]:
    """(recovered / placed balance, placements) per agency over the recent window."""
    if not agency_ids:
        return {}
    s = ctx.s
    paid_on = local_date("pay.paid_at")
    ctx.execute(
        f"""WITH net AS (
                SELECT pay.account_id, {paid_on} AS paid_on,
                       pay.amount - coalesce(rev.reversed, 0) AS amount
                FROM {s}.payments pay
                LEFT JOIN (
                    SELECT reverses_id, sum(amount) AS reversed FROM {s}.payments
                    WHERE kind = 'reversal' GROUP BY reverses_id
                ) rev ON rev.reverses_id = pay.id
                WHERE pay.kind = 'payment' AND {paid_on} <= %(as_of)s::date
            ), per_placement AS (
                SELECT p.id, p.agency_id, p.balance_at_placement,
                       coalesce(sum(net.amount), 0) AS recovered
                FROM {s}.placements p
                JOIN {s}.cases c ON c.id = p.case_id
                LEFT JOIN net ON net.account_id = c.account_id
                     AND net.paid_on >= p.started_on
                     AND net.paid_on < coalesce(p.grace_until, %(as_of)s::date + 1)
                WHERE p.agency_id = ANY(%(agencies)s)
                  AND p.started_on >= %(as_of)s::date - %(window)s::int
                  AND p.started_on < %(as_of)s::date
                GROUP BY p.id, p.agency_id, p.balance_at_placement
            )
            SELECT agency_id, count(*), sum(balance_at_placement), sum(recovered)
            FROM per_placement GROUP BY agency_id""",
        agencies=agency_ids,
        window=window_days,
    )
    result = {}
    for agency_id, count, placed, recovered in ctx.cur.fetchall():
        rate = Decimal(recovered) / Decimal(placed) if placed else Decimal(0)
        result[int(agency_id)] = (max(rate, Decimal(0)), int(count))
    return result
