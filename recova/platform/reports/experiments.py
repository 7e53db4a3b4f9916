"""Champion/challenger results: per arm of a strategy version, its cases, liquidation and
contact rate, each with a 95% confidence interval, and whether it differs from the champion.

- **Cases**: the cases that drew the arm (``strategy_arms``), held-out control included.
- **Contact rate**: the share of those cases with a connected, right-party attempt
  (``contact_attempts``: completed, result ``connected``, not a third party) since the day
  the case drew the arm. Its interval is Wilson's score interval; the difference from the
  champion is a two-proportion z-test with the pooled rate.
- **Liquidation**: money recovered on the arm's placements (payments net of their
  reversals, from the placement's start to the end of its grace period, or to today while
  it runs — the same window as performance weighting) ÷ their balance at placement. It is
  a ratio of sums over placements, so its standard error is the ratio estimator's normal
  (delta-method) approximation, ``sqrt(sum((r - R*b)^2) / (n - 1) / n) / mean(b)``, and
  the difference from the champion is a z-test on ``R1 - R2`` with the two variances
  added. A held-out arm places nothing, so it has no liquidation.

Money stays ``Decimal`` in the query's sums; the statistics (rates, intervals, z, p) are
floats, which is all a significance test needs.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from recova.platform.kernel.db import scoped_schema

#: The normal quantile of a two-sided 95% interval, and the test's level.
Z_95 = 1.959963984540054
ALPHA = 0.05


@dataclass(frozen=True)
class Interval:
    """An estimate with its 95% confidence interval."""

    estimate: float
    low: float
    high: float


@dataclass(frozen=True)
class Comparison:
    """A two-sided test of an arm against the champion."""

    z: float
    p_value: float

    @property
    def significant(self) -> bool:
        """Whether the difference is significant at the 5% level."""
        return self.p_value < ALPHA


def two_sided_p(z: float) -> float:
    """The two-sided p-value of a standard normal statistic."""
    return math.erfc(abs(z) / math.sqrt(2))


def wilson_interval(successes: int, n: int, *, z: float = Z_95) -> Interval | None:
    """A proportion with Wilson's score interval (None without cases)."""
    if n <= 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half))


def two_proportion_test(x1: int, n1: int, x2: int, n2: int) -> Comparison | None:
    """The pooled two-proportion z-test of ``x1/n1`` against ``x2/n2`` (None if undefined)."""
    if n1 <= 0 or n2 <= 0:
        return None
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return None
    z = (x1 / n1 - x2 / n2) / se
    return Comparison(z, two_sided_p(z))


@dataclass(frozen=True)
class RatioSums:
    """The sums a ratio estimate needs over ``n`` units: recovered ``r`` and balance ``b``."""

    n: int
    r: float
    b: float
    rr: float
    bb: float
    rb: float

    @property
    def ratio(self) -> float | None:
        return self.r / self.b if self.b > 0 else None

    @property
    def variance(self) -> float | None:
        """The ratio's variance by the delta method (None below two units)."""
        ratio = self.ratio
        if ratio is None or self.n < 2:
            return None
        residuals = max(0.0, self.rr - 2 * ratio * self.rb + ratio * ratio * self.bb)
        mean_b = self.b / self.n
        return residuals / (self.n - 1) / self.n / (mean_b * mean_b)


def ratio_interval(sums: RatioSums, *, z: float = Z_95) -> Interval | None:
    """Recovered ÷ balance with its normal-approximation interval (None without balance)."""
    ratio, variance = sums.ratio, sums.variance
    if ratio is None:
        return None
    if variance is None:
        return Interval(ratio, ratio, ratio)
    half = z * math.sqrt(variance)
    return Interval(ratio, ratio - half, ratio + half)


def ratio_difference_test(arm: RatioSums, champion: RatioSums) -> Comparison | None:
    """The z-test of two independent ratio estimates (None if either has no variance)."""
    if arm.ratio is None or champion.ratio is None:
        return None
    if arm.variance is None or champion.variance is None:
        return None
    se = math.sqrt(arm.variance + champion.variance)
    if se == 0:
        return None
    z = (arm.ratio - champion.ratio) / se
    return Comparison(z, two_sided_p(z))


@dataclass(frozen=True)
class ArmResult:
    """One arm's figures and its comparison with the champion (None for the champion)."""

    arm: str
    holdout: bool
    cases: int
    contacted: int
    contact: Interval | None
    contact_test: Comparison | None
    placements: int
    placed_balance: Decimal
    recovered: Decimal
    liquidation: Interval | None
    liquidation_test: Comparison | None


def _num(value: Any) -> float:
    return float(value or 0)


def arm_results(
    session: Session, *, version_id: int, champion: str | None, as_of: dt.date, timezone: str
) -> list[ArmResult]:
    """Every arm of a strategy version, the champion first (``champion``: its arm's name,
    else the arm with most cases), each compared with it."""
    s = scoped_schema(session)
    conn = session.connection()
    paid_on = "(pay.paid_at AT TIME ZONE %(tz)s::text)::date"
    params = {"version": version_id, "as_of": as_of, "tz": timezone}
    arms = conn.exec_driver_sql(
        f"""SELECT sa.arm, bool_or(sa.holdout) AS holdout, count(*) AS cases,
                   count(*) FILTER (WHERE EXISTS (
                       SELECT 1 FROM {s}.contact_attempts ca
                       WHERE ca.case_id = sa.case_id AND ca.status = 'completed'
                         AND ca.result = 'connected' AND NOT ca.third_party
                         AND (ca.attempted_at AT TIME ZONE %(tz)s::text)::date
                             >= sa.assigned_on)) AS contacted
            FROM {s}.strategy_arms sa
            WHERE sa.strategy_version_id = %(version)s
            GROUP BY sa.arm""",
        params,
    ).all()
    money = {
        row.arm: row
        for row in conn.exec_driver_sql(
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
                    SELECT p.arm, p.balance_at_placement AS b,
                           coalesce(sum(net.amount), 0) AS r
                    FROM {s}.placements p
                    JOIN {s}.cases c ON c.id = p.case_id
                    LEFT JOIN net ON net.account_id = c.account_id
                         AND net.paid_on >= p.started_on
                         AND net.paid_on < coalesce(p.grace_until, %(as_of)s::date + 1)
                    WHERE p.strategy_version_id = %(version)s AND p.arm IS NOT NULL
                    GROUP BY p.id, p.arm, p.balance_at_placement
                )
                SELECT arm, count(*) AS n, sum(r) AS r, sum(b) AS b, sum(r * r) AS rr,
                       sum(b * b) AS bb, sum(r * b) AS rb
                FROM per_placement GROUP BY arm""",
            params,
        ).all()
    }
    if not arms:
        return []
    names = [row.arm for row in arms]
    lead = champion if champion in names else max(arms, key=lambda row: row.cases).arm
    ordered = sorted(arms, key=lambda row: (row.arm != lead, row.arm))

    def sums(arm: str) -> RatioSums | None:
        row = money.get(arm)
        if row is None:
            return None
        return RatioSums(
            int(row.n), _num(row.r), _num(row.b), _num(row.rr), _num(row.bb), _num(row.rb)
        )

    base = ordered[0]
    base_sums = sums(base.arm)
    results = []
    for row in ordered:
        mine = sums(row.arm)
        is_champion = row.arm == base.arm
        placed = money.get(row.arm)
        results.append(
            ArmResult(
                arm=row.arm,
                holdout=bool(row.holdout),
                cases=int(row.cases),
                contacted=int(row.contacted),
                contact=wilson_interval(int(row.contacted), int(row.cases)),
                contact_test=None
                if is_champion
                else two_proportion_test(
                    int(row.contacted), int(row.cases), int(base.contacted), int(base.cases)
                ),
                placements=int(placed.n) if placed else 0,
                placed_balance=Decimal(placed.b) if placed else Decimal(0),
                recovered=Decimal(placed.r) if placed else Decimal(0),
                liquidation=ratio_interval(mine) if mine else None,
                liquidation_test=None
                if is_champion or mine is None or base_sums is None
                else ratio_difference_test(mine, base_sums),
            )
        )
    return results
