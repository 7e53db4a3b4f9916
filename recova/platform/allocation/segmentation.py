"""Days-past-due buckets, their transitions, and segments named by the tenant's rules.

A case's bucket comes from its days past due as of the run date (``as_of - due_date``,
the same formula as the days-past-due refresh), through the tenant's bucket table
(default M1 1-30, M2 31-60, M3 61-90, M4 91-180, M6+ over 180; ``M0`` below the first).
Every change of bucket is kept as a transition row, so roll rates can be reported.

A case's segment is the name of the first segment rule (lowest priority number) it meets,
or else its bucket. Rules may test the score, so segments are named after scoring (the
``score`` step calls ``name_segments``); buckets are the ``segment`` step.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from recova.platform.allocation.context import (
    RunContext,
    balance_expression,
    open_case_condition,
)
from recova.platform.allocation.models import AllocationSettings, BucketTransition, SegmentRule
from recova.platform.kernel.errors import DomainError

DEFAULT_BUCKETS: list[dict[str, Any]] = [
    {"name": "M1", "min": 1, "max": 30},
    {"name": "M2", "min": 31, "max": 60},
    {"name": "M3", "min": 61, "max": 90},
    {"name": "M4", "min": 91, "max": 180},
    {"name": "M6+", "min": 181, "max": None},
]
#: The bucket of a case not yet past due (below the first bucket's minimum).
CURRENT_BUCKET = "M0"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+_.-]{0,15}$")
RULE_CONDITIONS = (
    "buckets",
    "products",
    "regions",
    "balance_min",
    "balance_max",
    "score_min",
    "score_max",
)


class SegmentationError(DomainError, ValueError):
    """Bucket or rule settings that cannot be used."""


def validate_buckets(buckets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Check buckets are named, ordered and contiguous; returns them normalised."""
    if not buckets:
        raise SegmentationError("at least one bucket is needed")
    normalised = []
    expected_min: int | None = None
    names = set()
    for index, bucket in enumerate(buckets):
        name, low, high = bucket.get("name"), bucket.get("min"), bucket.get("max")
        if not isinstance(name, str) or not NAME_PATTERN.match(name) or name == CURRENT_BUCKET:
            raise SegmentationError(f"bucket {index}: name must be 1-16 letters, digits or +_.-")
        if name in names:
            raise SegmentationError(f"bucket {name}: names must be unique")
        names.add(name)
        if not isinstance(low, int) or low < 1:
            raise SegmentationError(f"bucket {name}: min must be a whole number of days >= 1")
        if expected_min is not None and low != expected_min:
            raise SegmentationError(f"bucket {name}: must start at {expected_min} (no gaps)")
        last = index == len(buckets) - 1
        if high is None:
            if not last:
                raise SegmentationError(f"bucket {name}: only the last bucket may be open-ended")
        elif not isinstance(high, int) or high < low:
            raise SegmentationError(f"bucket {name}: max must be >= min")
        normalised.append({"name": name, "min": low, "max": high})
        expected_min = None if high is None else high + 1
    return normalised


def tenant_buckets(session: Session) -> list[dict[str, Any]]:
    """The tenant's buckets (the default table until it saves its own)."""
    settings = session.get(AllocationSettings, 1)
    return settings.buckets if settings is not None else DEFAULT_BUCKETS


def bucket_case_sql(buckets: list[dict[str, Any]], dpd: str) -> tuple[str, dict[str, Any]]:
    """SQL ``CASE`` naming the bucket of ``dpd``, and its parameters."""
    whens = []
    params: dict[str, Any] = {"bucket_current": CURRENT_BUCKET}
    for n, bucket in enumerate(buckets):
        params[f"bucket_name_{n}"] = bucket["name"]
        params[f"bucket_min_{n}"] = bucket["min"]
        if bucket["max"] is None:
            whens.append(f"WHEN {dpd} >= %(bucket_min_{n})s THEN %(bucket_name_{n})s")
        else:
            params[f"bucket_max_{n}"] = bucket["max"]
            whens.append(
                f"WHEN {dpd} BETWEEN %(bucket_min_{n})s AND %(bucket_max_{n})s"
                f" THEN %(bucket_name_{n})s"
            )
    return f"(CASE {' '.join(whens)} ELSE %(bucket_current)s END)::varchar", params


def segment_cases(ctx: RunContext, buckets: list[dict[str, Any]]) -> dict[str, int]:
    """Recompute every open case's bucket as of the run date, keeping each transition.

    One statement: the open cases' buckets are computed once, compared once with the
    stored ones, and only the changed cases are written (a transition and the new bucket).
    """
    s = ctx.s
    bucket_sql, params = bucket_case_sql(buckets, "greatest(0, %(as_of)s::date - a.due_date)")
    # Only a changed bucket is written (and only forwards in time), so a second run the
    # same day writes nothing. Both writes read the stored buckets as they were before
    # the statement (one snapshot), as two statements in a row would.
    # The upsert is filtered first: ON CONFLICT would lock (write) every row it leaves
    # unchanged.
    segmented, transitions = ctx.execute(
        f"""WITH n AS MATERIALIZED (
                SELECT c.id AS case_id, {bucket_sql} AS bucket
                FROM {s}.cases c JOIN {s}.accounts a ON a.id = c.account_id
                WHERE {open_case_condition()}
            ), changed AS MATERIALIZED (
                SELECT n.case_id, n.bucket, old.bucket AS from_bucket
                FROM n LEFT JOIN {s}.case_segments old ON old.case_id = n.case_id
                WHERE old.case_id IS NULL OR (old.bucket IS DISTINCT FROM n.bucket
                                              AND old.bucket_since <= %(as_of)s::date)
            ), moved AS (
                INSERT INTO {s}.bucket_transitions (case_id, as_of, from_bucket, to_bucket)
                SELECT case_id, %(as_of)s::date, from_bucket, bucket FROM changed
                ON CONFLICT (case_id, as_of) DO UPDATE SET to_bucket = EXCLUDED.to_bucket
                RETURNING 1
            ), saved AS (
                INSERT INTO {s}.case_segments AS cs (case_id, bucket, bucket_since)
                SELECT case_id, bucket, %(as_of)s::date FROM changed
                ON CONFLICT (case_id) DO UPDATE
                SET bucket = EXCLUDED.bucket, bucket_since = EXCLUDED.bucket_since
                WHERE cs.bucket IS DISTINCT FROM EXCLUDED.bucket
                  AND cs.bucket_since <= EXCLUDED.bucket_since
            )
            SELECT (SELECT count(*) FROM n), (SELECT count(*) FROM moved)""",
        **params,
    ).fetchone()
    return {"open_cases": int(segmented), "bucket_changes": int(transitions)}


def validate_conditions(conditions: dict[str, Any]) -> dict[str, Any]:
    """Check a rule's conditions; returns them with amounts as strings (JSON-safe)."""
    unknown = sorted(set(conditions) - set(RULE_CONDITIONS))
    if unknown:
        raise SegmentationError(f"unknown conditions: {', '.join(unknown)}")
    if not conditions:
        raise SegmentationError("a rule needs at least one condition")
    clean: dict[str, Any] = {}
    for key in ("buckets", "products", "regions"):
        if key in conditions:
            values = conditions[key]
            if (
                not isinstance(values, list)
                or not values
                or not all(isinstance(v, str) and v for v in values)
            ):
                raise SegmentationError(f"{key} must be a non-empty list of names")
            clean[key] = sorted(set(values))
    for low, high in (("balance_min", "balance_max"), ("score_min", "score_max")):
        bounds = {}
        for key in (low, high):
            if conditions.get(key) is not None:
                try:
                    bounds[key] = Decimal(str(conditions[key]))
                except ArithmeticError as exc:
                    raise SegmentationError(f"{key} must be a number") from exc
                clean[key] = str(bounds[key])
        if low in bounds and high in bounds and bounds[low] > bounds[high]:
            raise SegmentationError(f"{low} must not exceed {high}")
    return clean


def rule_case_sql(rules: list[SegmentRule]) -> tuple[str, dict[str, Any]]:
    """SQL naming a case's segment from ``x`` (bucket, balance, product, region, score)."""
    params: dict[str, Any] = {}
    whens = []
    for n, rule in enumerate(rules):
        tests = []
        cond = rule.conditions
        for key, column in (("buckets", "x.bucket"), ("products", "x.product")):
            if key in cond:
                params[f"r{n}_{key}"] = cond[key]
                tests.append(f"{column} = ANY(%(r{n}_{key})s::text[])")
        if "regions" in cond:
            params[f"r{n}_regions"] = cond["regions"]
            tests.append(f"x.region = ANY(%(r{n}_regions)s::text[])")
        for key, column, op in (
            ("balance_min", "x.balance", ">="),
            ("balance_max", "x.balance", "<="),
            ("score_min", "x.score", ">="),
            ("score_max", "x.score", "<="),
        ):
            if key in cond:
                params[f"r{n}_{key}"] = Decimal(cond[key])
                tests.append(f"{column} {op} %(r{n}_{key})s::numeric")
        params[f"r{n}_name"] = rule.name
        whens.append(f"WHEN {' AND '.join(tests)} THEN %(r{n}_name)s")
    if not whens:
        return "x.bucket", params
    return f"(CASE {' '.join(whens)} ELSE x.bucket END)::varchar", params


def name_segments(ctx: RunContext, rules: list[SegmentRule]) -> int:
    """Name every open case's segment by the tenant's rules; returns how many changed."""
    s = ctx.s
    segment_sql, params = rule_case_sql(rules)
    # Debtors and scores are read only when a rule tests a region or a score (every case
    # has its debtor, and at most one score, so leaving either out changes no row).
    tested = {key for rule in rules for key in rule.conditions}
    region, debtors = "NULL::text", ""
    if "regions" in tested:
        region, debtors = "d.region", f"JOIN {s}.debtors d ON d.id = c.debtor_id"
    score, scores = "0::numeric", ""
    if tested & {"score_min", "score_max"}:
        score = "coalesce(sc.score, 0)"
        scores = f"LEFT JOIN {s}.case_scores sc ON sc.case_id = cs.case_id"
    return ctx.rowcount(
        f"""UPDATE {s}.case_segments cs SET segment = n.segment
            FROM (
                SELECT x.case_id, {segment_sql} AS segment
                FROM (
                    SELECT cs.case_id, cs.bucket, {balance_expression()} AS balance,
                           a.product, {region} AS region, {score} AS score
                    FROM {s}.case_segments cs
                    JOIN {s}.cases c ON c.id = cs.case_id
                    JOIN {s}.accounts a ON a.id = c.account_id
                    {debtors}
                    {scores}
                    WHERE {open_case_condition()}
                ) x
                OFFSET 0  -- a fence: the rules are tested once per case, not once per use
            ) n
            WHERE n.case_id = cs.case_id AND cs.segment IS DISTINCT FROM n.segment""",
        **params,
    )


def delete_rule(session: Session, rule: SegmentRule) -> None:
    """Remove a segment rule; the next run renames the segments it named."""
    session.delete(rule)
    session.flush()


def ordered_rules(session: Session) -> list[SegmentRule]:
    """The tenant's segment rules in the order they are tried."""
    return list(session.scalars(select(SegmentRule).order_by(SegmentRule.priority, SegmentRule.id)))


def roll_rates(session: Session, *, start: dt.date, end: dt.date) -> list[dict[str, Any]]:
    """Bucket transitions between two dates, counted by (from, to): the roll-rate table."""
    rows = session.execute(
        select(
            BucketTransition.from_bucket,
            BucketTransition.to_bucket,
            func.count().label("cases"),
        )
        .where(BucketTransition.as_of >= start, BucketTransition.as_of <= end)
        .group_by(BucketTransition.from_bucket, BucketTransition.to_bucket)
        .order_by(BucketTransition.from_bucket.nulls_first(), BucketTransition.to_bucket)
    ).all()
    return [
        {"from_bucket": row.from_bucket, "to_bucket": row.to_bucket, "cases": row.cases}
        for row in rows
    ]
