"""Priority scores: a transparent default formula, and a registry for tenants' own scorers.

A scorer is an object with a ``name`` and ``select_sql(ctx, options)`` returning one
``SELECT`` (and its parameters) that yields ``case_id, score, components`` for every open
case as of ``%(as_of)s``. The score step writes what it yields into ``case_scores``,
changing only rows whose score or components differ. A scorer whose ``components_text``
is true (the default one) yields the components as text in jsonb's own output form
instead: unchanged rows are then found by comparing text, and only the changed ones are
parsed into jsonb. Scorers are found by name among the
built-in ones and the ``recova.scorers`` entry-point group, so a tenant's own model ships
as a plug-in distribution, exactly like a connector.

The default, ``transparent-v1``, is a weighted sum of six components, each 0-100 points:

=================  =====================================================  ======
component          points                                                 weight
=================  =====================================================  ======
balance            100 * ln(1 + balance) / ln(1 + reference), capped      0.30
days_past_due      100 * (1 - dpd / 360), floored at 0                    0.25
last_payment       100 * (1 - days since last payment / 180), 0 if none   0.15
broken_promises    100 * 0.5 ^ broken promises                            0.10
reachability       100 own phone, 40 third-party contact only, 0 none     0.10
placement_history  100 * 0.7 ^ earlier placements                         0.10
=================  =====================================================  ======

Every input is taken as of the run date (payments up to that day, placements started
before it), so scoring the same date twice gives the same scores. Weights and the balance
reference can be changed per tenant (``scorer_options``); the components stored with each
score carry the input, the points and the weight, so a manager sees why a case ranks
where it does.
"""

from __future__ import annotations

from decimal import Decimal
from functools import cache
from importlib.metadata import entry_points
from typing import Any, Protocol

from recova.platform.allocation.context import (
    RunContext,
    balance_expression,
    local_date,
    open_case_condition,
)
from recova.platform.kernel.errors import DomainError

DEFAULT_SCORER = "transparent-v1"
DEFAULT_WEIGHTS = {
    "balance": Decimal("0.30"),
    "days_past_due": Decimal("0.25"),
    "last_payment": Decimal("0.15"),
    "broken_promises": Decimal("0.10"),
    "reachability": Decimal("0.10"),
    "placement_history": Decimal("0.10"),
}
DEFAULT_BALANCE_REFERENCE = Decimal(100_000)


class ScoringError(DomainError, ValueError):
    """Scorer settings that cannot be used."""


class Scorer(Protocol):
    """Yields a score and its components for every open case of a tenant."""

    name: str

    def validate_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Check and normalise the tenant's options for this scorer."""
        ...

    def select_sql(self, ctx: RunContext, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """A SELECT of ``case_id, score, components`` and its parameters."""
        ...


class TransparentScorer:
    """The default weighted sum of six explainable components (see the module docstring)."""

    name = DEFAULT_SCORER
    #: ``components`` is text in jsonb's output form (see ``score_cases``).
    components_text = True

    def validate_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Weights (non-negative, summing to 1) and the balance reference (> 0)."""
        unknown = sorted(set(options) - {"weights", "balance_reference"})
        if unknown:
            raise ScoringError(f"unknown scorer options: {', '.join(unknown)}")
        clean: dict[str, Any] = {}
        if "weights" in options:
            weights = options["weights"]
            if not isinstance(weights, dict) or set(weights) != set(DEFAULT_WEIGHTS):
                raise ScoringError(f"weights must name exactly: {', '.join(DEFAULT_WEIGHTS)}")
            parsed = {key: _decimal(value, f"weights.{key}") for key, value in weights.items()}
            if any(value < 0 for value in parsed.values()) or sum(parsed.values()) != 1:
                raise ScoringError("weights must be >= 0 and add up to 1")
            clean["weights"] = {key: str(value) for key, value in parsed.items()}
        if "balance_reference" in options:
            reference = _decimal(options["balance_reference"], "balance_reference")
            if reference <= 0:
                raise ScoringError("balance_reference must be positive")
            clean["balance_reference"] = str(reference)
        return clean

    def select_sql(self, ctx: RunContext, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The weighted sum in one pass over open cases, with per-debtor and per-account
        aggregates joined once (no per-case subqueries)."""
        s = ctx.s
        weights = {
            key: Decimal(value)
            for key, value in (options.get("weights") or DEFAULT_WEIGHTS).items()
        }
        params: dict[str, Any] = {f"w_{key}": value for key, value in weights.items()}
        params["balance_reference"] = Decimal(
            options.get("balance_reference") or DEFAULT_BALANCE_REFERENCE
        )
        points = {
            "balance": "least(100, 100 * ln(1 + greatest(x.balance, 0)::float8)"
            " / ln(1 + %(balance_reference)s::float8))",
            "days_past_due": "greatest(0, 100 * (1 - x.dpd / 360.0))",
            "last_payment": "CASE WHEN x.since_payment IS NULL THEN 0"
            " ELSE greatest(0, 100 * (1 - x.since_payment / 180.0)) END",
            "broken_promises": "100 * power(0.5, x.broken_promises)",
            "reachability": "CASE WHEN x.own_phone THEN 100 WHEN x.any_contact THEN 40 ELSE 0 END",
            "placement_history": "100 * power(0.7, x.placements)",
        }
        inputs = {
            "balance": "x.balance::text",
            "days_past_due": "x.dpd",
            "last_payment": "x.since_payment",
            "broken_promises": "x.broken_promises",
            "reachability": "CASE WHEN x.own_phone THEN 'own_phone'"
            " WHEN x.any_contact THEN 'third_party' ELSE 'none' END",
            "placement_history": "x.placements",
        }
        rounded = {key: f"round(({expr})::numeric, 3)" for key, expr in points.items()}
        total = " + ".join(f"%(w_{key})s::numeric * p.{key}" for key in points)
        # The components as JSON text exactly as jsonb prints them (keys by length, then
        # bytes; to_json renders each value as jsonb would): parsed, the same jsonb value
        # as nested jsonb_build_object calls, at about half the cost per case; compared as
        # text, an unchanged row is found without parsing at all.
        components = " || ', ' || ".join(
            f"""'"{key}": {{"input": ' || {_json(f"p.in_{key}")}"""
            f""" || ', "points": ' || {_json(f"p.{key}")}"""
            f""" || ', "weight": ' || {_json(f"%(w_{key})s::numeric")} || '}}'"""
            for key in sorted(points, key=lambda key: (len(key), key.encode()))
        )
        select_points = ", ".join(f"{rounded[key]} AS {key}" for key in points)
        select_inputs = ", ".join(f"{inputs[key]} AS in_{key}" for key in points)
        paid_on = local_date("pay.paid_at")
        sql = f"""
            SELECT p.case_id, round({total}, 3) AS score,
                   '{{' || {components} || '}}' AS components
            FROM (
                SELECT x.case_id, {select_points}, {select_inputs}
                FROM (
                    SELECT c.id AS case_id, {balance_expression()} AS balance,
                           greatest(0, %(as_of)s::date - a.due_date) AS dpd,
                           %(as_of)s::date - lp.last_paid_on AS since_payment,
                           c.broken_promises,
                           coalesce(ct.own_phone, false) AS own_phone,
                           ct.debtor_id IS NOT NULL AS any_contact,
                           coalesce(ph.placements, 0) AS placements
                    FROM {s}.cases c
                    JOIN {s}.accounts a ON a.id = c.account_id
                    LEFT JOIN (
                        SELECT pay.account_id, max({paid_on}) AS last_paid_on
                        FROM {s}.payments pay
                        WHERE pay.kind = 'payment' AND {paid_on} <= %(as_of)s::date
                        GROUP BY pay.account_id
                    ) lp ON lp.account_id = a.id
                    LEFT JOIN (
                        SELECT debtor_id,
                               bool_or(kind = 'phone' AND relation = 'self') AS own_phone
                        FROM {s}.contacts GROUP BY debtor_id
                    ) ct ON ct.debtor_id = c.debtor_id
                    LEFT JOIN (
                        SELECT case_id, count(*) AS placements FROM {s}.placements
                        WHERE started_on < %(as_of)s::date GROUP BY case_id
                    ) ph ON ph.case_id = c.id
                    WHERE {open_case_condition()}
                ) x
                -- a fence: each component is computed once, not again wherever it is used
                OFFSET 0
            ) p"""
        return sql, params


def _json(value: str) -> str:
    """SQL: ``value`` as JSON text, ``null`` for NULL."""
    return f"coalesce(to_json({value})::text, 'null')"


def _decimal(value: Any, name: str) -> Decimal:
    try:
        return Decimal(str(value))
    except ArithmeticError as exc:
        raise ScoringError(f"{name} must be a number") from exc


BUILT_IN: dict[str, Scorer] = {DEFAULT_SCORER: TransparentScorer()}


@cache
def _plugins() -> dict[str, Any]:
    return {entry.name: entry for entry in entry_points(group="recova.scorers")}


def scorer_by_name(name: str) -> Scorer:
    """The built-in or plug-in scorer called ``name``."""
    if name in BUILT_IN:
        return BUILT_IN[name]
    entry = _plugins().get(name)
    if entry is None:
        known = sorted({*BUILT_IN, *_plugins()})
        raise ScoringError(f"no scorer {name!r}; known: {', '.join(known)}")
    scorer: Scorer = entry.load()()
    return scorer


def score_cases(ctx: RunContext, scorer: Scorer, options: dict[str, Any]) -> dict[str, int]:
    """Score every open case as of the run date; only changed scores are written."""
    s = ctx.s
    select_sql, params = scorer.select_sql(ctx, options)
    stored, components = "old.components", "q.components"
    if getattr(scorer, "components_text", False):  # text in jsonb's output form
        stored, components = "old.components::text", "q.components::jsonb"
    changed = ctx.rowcount(
        f"""INSERT INTO {s}.case_scores AS cs (case_id, score, components, scorer, computed_on)
            SELECT q.case_id, q.score, {components}, %(scorer)s, %(as_of)s::date
            -- OFFSET 0 keeps the scorer's SELECT a subquery of its own: its score and
            -- components are computed once per case, not again in the comparison below.
            FROM (SELECT * FROM ({select_sql}) q0 OFFSET 0) q
            -- Unchanged scores are skipped before the insert: ON CONFLICT would still lock
            -- (and so write) every existing row it then declines to update.
            LEFT JOIN {s}.case_scores old ON old.case_id = q.case_id
            WHERE (old.score, {stored}, old.scorer)
                  IS DISTINCT FROM (q.score, q.components, %(scorer)s::varchar)
            ON CONFLICT (case_id) DO UPDATE
            SET score = EXCLUDED.score, components = EXCLUDED.components,
                scorer = EXCLUDED.scorer, computed_on = EXCLUDED.computed_on
            WHERE (cs.score, cs.components, cs.scorer)
                  IS DISTINCT FROM (EXCLUDED.score, EXCLUDED.components, EXCLUDED.scorer)""",
        scorer=scorer.name,
        **params,
    )
    return {"scores_changed": changed}
