"""The portal's allocation: segment rules, strategies and their versions, dry runs, runs,
and champion/challenger results.

A strategy's versions are immutable (``recova.platform.allocation.strategies``): the
*draft* is a strategy's newest version while it is not the active one, and editing a
draft (or any version) saves the form as a new version, which becomes the draft. The form
covers what a policy holds: per segment a percentage split, performance weighting or
champion/challenger arms (one may be a held-out control), and per agency a capacity. It
is checked on the server beside each field, then by the service's own ``validate_policy``
(a refusal is shown on the form, the input kept). *Validate* checks without saving.

A dry run calls ``run_allocation(dry_run=True)`` as the API does: it runs in one rolled-back
transaction and reports cases and balance by segment, arm, agency and outcome. It is
synchronous (not a job), so the page shows its figures on return. Activation (admins,
after a confirmation) calls ``activate_version``. Runs are listed with each step's counts;
a running run's page refreshes itself. Results per arm come from
``recova.platform.reports.experiments``.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from decimal import Decimal
from typing import Any

from flask import flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from werkzeug.wrappers import Response
from wtforms import (
    BooleanField,
    DateField,
    DecimalField,
    FieldList,
    Form,
    FormField,
    HiddenField,
    IntegerField,
    SelectChoice,
    SelectField,
    StringField,
)
from wtforms.validators import NumberRange, Optional, Regexp

from recova.platform.agencies.models import Agency
from recova.platform.allocation import segmentation, services, strategies
from recova.platform.allocation.models import AllocationRun, PlacementStrategy, StrategyVersion
from recova.platform.kernel.errors import DomainError, abort
from recova.platform.kernel.extension import platform
from recova.platform.kernel.request_scope import db_session
from recova.platform.reports.experiments import arm_results
from recova.platform.web.pages import portal_page
from recova.platform.web.portal import blp
from recova.tenants.models import tenant_today

SPLIT = "split"
PERFORMANCE = "performance"
CHAMPION = "champion_challenger"
MODES = {
    SPLIT: _l("Percentage split"),
    PERFORMANCE: _l("Performance-weighted"),
    CHAMPION: _l("Champion/challenger"),
}
OUTCOMES = {
    "placed": _l("Placed"),
    "holdout": _l("Held out (control)"),
    "held_for_capacity": _l("Held for capacity"),
    "no_agency": _l("No agency available"),
}
STATUSES = {
    "running": _l("Running"),
    "completed": _l("Completed"),
    "failed": _l("Failed"),
}
STEPS = {
    "segment": _l("Segment"),
    "score": _l("Score"),
    "recall": _l("Recall"),
    "place": _l("Place"),
    "assign": _l("Assign"),
}
#: The counts a run's steps report, for people (others show their key).
COUNT_LABELS = {
    "open_cases": _l("open cases"),
    "bucket_changes": _l("bucket changes"),
    "scores_changed": _l("scores changed"),
    "segments_changed": _l("segments changed"),
    "recalled": _l("recalled"),
    "recalled_expired": _l("recalled: expired"),
    "recalled_case_closed": _l("recalled: case closed"),
    "recalled_excluded_flag": _l("recalled: flagged"),
    "recalled_on_hold": _l("recalled: on hold"),
    "recalled_agency_unavailable": _l("recalled: agency unavailable"),
    "assignments_ended": _l("assignments ended"),
    "placed": _l("placed"),
    "holdout": _l("held out"),
    "held_for_capacity": _l("held for capacity"),
    "no_agency": _l("no agency"),
    "no_active_strategy": _l("no active strategy"),
    "assigned": _l("assigned"),
    "unassigned": _l("unassigned"),
}
#: The one figure of each step the runs list shows.
MAIN_COUNT = {
    "segment": "open_cases",
    "score": "scores_changed",
    "recall": "recalled",
    "place": "placed",
    "assign": "assigned",
}
RUNS_PER_PAGE = 30
HUNDRED = Decimal(100)


# --- the policy form -------------------------------------------------------------------------


class AgencyRowForm(Form):
    """One agency in a segment or an arm: its share, or (performance) whether it takes part."""

    agency_id = HiddenField()
    share = DecimalField(
        _l("Share (%)"), places=None, validators=[Optional(), NumberRange(min=0, max=100)]
    )
    weighted = BooleanField(_l("Takes part"))


class ArmForm(Form):
    name = StringField(
        _l("Arm"),
        validators=[
            Optional(),
            Regexp(
                r"^[a-z0-9_-]{1,32}$",
                message=_l("Lower-case letters, digits, - and _ (at most 32)."),
            ),
        ],
    )
    share = DecimalField(
        _l("Share of cases (%)"), places=None, validators=[Optional(), NumberRange(min=0, max=100)]
    )
    holdout = BooleanField(_l("Holdout (control, placed with no agency)"))
    agencies = FieldList(FormField(AgencyRowForm))


class SegmentForm(Form):
    name = StringField(
        _l("Segment"),
        validators=[
            Optional(),
            Regexp(
                r"^(\*|[A-Za-z0-9][A-Za-z0-9+_.-]{0,63})$",
                message=_l("A segment or bucket name, or * for every other segment."),
            ),
        ],
    )
    mode = SelectField(
        _l("How its cases are placed"),
        choices=[SelectChoice(key, label) for key, label in MODES.items()],
    )
    seed = StringField(_l("Seed of the arm draw"), validators=[Optional()])
    window_days = IntegerField(
        _l("Window (days)"), validators=[Optional(), NumberRange(min=7, max=730)]
    )
    min_share = DecimalField(
        _l("Minimum share (%)"), places=None, validators=[Optional(), NumberRange(min=0, max=50)]
    )
    min_placements = IntegerField(
        _l("Placements for a trusted rate"), validators=[Optional(), NumberRange(min=1)]
    )
    agencies = FieldList(FormField(AgencyRowForm))
    arms = FieldList(FormField(ArmForm))


class CapacityRowForm(Form):
    agency_id = HiddenField()
    max_cases = IntegerField(_l("Most cases"), validators=[Optional(), NumberRange(min=0)])
    max_balance = DecimalField(
        _l("Most balance"), places=None, validators=[Optional(), NumberRange(min=0)]
    )


class PolicyForm(FlaskForm):
    """A strategy version's policy, one field per setting."""

    effective_from = DateField(_l("Effective from"), validators=[Optional()])
    segments = FieldList(FormField(SegmentForm))
    capacity = FieldList(FormField(CapacityRowForm))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Problems of a segment (by its index) or an arm (by segment and arm index)
        #: that no single input holds, such as shares not adding up to 100.
        self.segment_errors: dict[int, list[str]] = defaultdict(list)
        self.arm_errors: dict[tuple[int, int], list[str]] = defaultdict(list)
        self.form_errors: list[str] = []

    def validate(self, extra_validators: Any = None) -> bool:
        valid = super().validate(extra_validators)
        names: set[str] = set()
        used = 0
        for index, entry in enumerate(self.segments):
            segment = entry.form
            name = (segment.name.data or "").strip()
            if not name:
                continue
            used += 1
            if name in names:
                segment.name.errors = [*segment.name.errors, _("This segment is named twice.")]
                valid = False
            names.add(name)
            valid = self._check_segment(index, segment) and valid
        if not used:
            self.form_errors.append(_("Name at least one segment (* for every segment)."))
            valid = False
        return valid

    def _check_segment(self, index: int, segment: SegmentForm) -> bool:
        mode = segment.mode.data
        problems = self.segment_errors[index]
        if mode == SPLIT:
            problems += _share_problems(segment.agencies)
        elif mode == PERFORMANCE:
            taking_part = [row for row in segment.agencies if row.form.weighted.data]
            if not taking_part:
                problems.append(_("Choose at least one agency to weight by performance."))
            min_share = segment.min_share.data
            if min_share is not None and min_share * len(taking_part) > HUNDRED:
                problems.append(_("The minimum share times the number of agencies exceeds 100."))
        else:
            self._check_arms(index, segment)
        return not problems

    def _check_arms(self, index: int, segment: SegmentForm) -> None:
        """A champion/challenger segment: a seed, two arms or more adding up to 100."""
        problems = self.segment_errors[index]
        if not (segment.seed.data or "").strip():
            segment.seed.errors = [
                *segment.seed.errors,
                _("Give a seed, so the arm draw can be repeated."),
            ]
            problems.append("")  # marks the segment invalid; the message is on the seed
        arms = [(i, arm.form) for i, arm in enumerate(segment.arms) if _arm_used(arm.form)]
        if len(arms) < 2:
            problems.append(_("Champion/challenger needs at least two arms."))
        total = sum((arm.share.data or Decimal(0) for _, arm in arms), Decimal(0))
        if arms and total != HUNDRED:
            problems.append(
                _("The arms' shares add up to %(total)s%%, not 100%%.", total=_plain(total))
            )
        seen: set[str] = set()
        for arm_index, arm in arms:
            mine = self.arm_errors[(index, arm_index)]
            if not (arm.name.data or "").strip():
                arm.name.errors = [*arm.name.errors, _("Name the arm.")]
                mine.append("")
            elif arm.name.data in seen:
                arm.name.errors = [*arm.name.errors, _("Arm names must differ.")]
                mine.append("")
            seen.add(arm.name.data or "")
            if arm.share.data is None:
                arm.share.errors = [*arm.share.errors, _("Give the arm's share.")]
                mine.append("")
            if not arm.holdout.data:
                mine += _share_problems(arm.agencies)
            elif any(row.form.share.data is not None for row in arm.agencies):
                mine.append(_("A holdout arm places with no agency; leave its shares empty."))
            if mine:
                problems.append("")

    def policy(self) -> dict[str, Any]:
        """The policy the form describes, as the service takes it."""
        segments: dict[str, Any] = {}
        for entry in self.segments:
            segment = entry.form
            name = (segment.name.data or "").strip()
            if not name:
                continue
            spec: dict[str, Any] = {"mode": segment.mode.data}
            if segment.mode.data == SPLIT:
                spec["agencies"] = _shares(segment.agencies)
            elif segment.mode.data == PERFORMANCE:
                spec["agencies"] = [
                    {"agency_id": int(row.form.agency_id.data)}
                    for row in segment.agencies
                    if row.form.weighted.data
                ]
                for key in ("window_days", "min_placements"):
                    if getattr(segment, key).data is not None:
                        spec[key] = getattr(segment, key).data
                if segment.min_share.data is not None:
                    spec["min_share"] = str(segment.min_share.data)
            else:
                spec["seed"] = (segment.seed.data or "").strip()
                spec["arms"] = [
                    {
                        "name": arm.form.name.data,
                        "share": str(arm.form.share.data),
                        "holdout": bool(arm.form.holdout.data),
                        "agencies": [] if arm.form.holdout.data else _shares(arm.form.agencies),
                    }
                    for arm in segment.arms
                    if _arm_used(arm.form)
                ]
            segments[name] = spec
        capacity = {}
        for row in self.capacity:
            limits: dict[str, Any] = {}
            if row.form.max_cases.data is not None:
                limits["max_cases"] = row.form.max_cases.data
            if row.form.max_balance.data is not None:
                limits["max_balance"] = str(row.form.max_balance.data)
            if limits:
                capacity[str(int(row.form.agency_id.data))] = limits
        return {"segments": segments, "capacity": capacity}


def _plain(value: Decimal) -> str:
    """A percentage as typed (no trailing zeros)."""
    return format(value.normalize(), "f")


def share_text(value: Any) -> str:
    """A stored share (``"60.0000"``) as people write it (``60``)."""
    return _plain(Decimal(str(value)))


def _arm_used(arm: ArmForm) -> bool:
    return bool((arm.name.data or "").strip()) or arm.share.data is not None


def _shares(rows: FieldList) -> list[dict[str, Any]]:
    return [
        {"agency_id": int(row.form.agency_id.data), "share": str(row.form.share.data)}
        for row in rows
        if row.form.share.data is not None
    ]


def _share_problems(rows: FieldList) -> list[str]:
    given = [row.form.share.data for row in rows if row.form.share.data is not None]
    if not given:
        return [_("Give at least one agency a share.")]
    total = sum(given, Decimal(0))
    if total != HUNDRED:
        return [_("The agencies' shares add up to %(total)s%%, not 100%%.", total=_plain(total))]
    return []


def _agency_rows(agency_ids: list[int], shares: dict[int, Any], weighted: set[int]) -> list[Any]:
    return [
        {
            "agency_id": str(agency_id),
            "share": _typed(shares.get(agency_id)),
            "weighted": agency_id in weighted,
        }
        for agency_id in agency_ids
    ]


def form_data(policy: dict[str, Any], agency_ids: list[int], effective_from: dt.date) -> Any:
    """The form's data for a policy: every agency a row, one blank segment and arm added."""
    segments = []
    for name, spec in [*policy["segments"].items(), ("", {"mode": SPLIT})]:
        mode = spec["mode"]
        listed = spec.get("agencies") or []
        arms = [
            {
                "name": arm["name"],
                "share": _typed(arm["share"]),
                "holdout": arm.get("holdout", False),
                "agencies": _agency_rows(
                    agency_ids,
                    {a["agency_id"]: a.get("share") for a in arm.get("agencies", [])},
                    set(),
                ),
            }
            for arm in spec.get("arms") or []
        ]
        blank_arms = 1 if arms else 2
        arms += [
            {
                "name": "",
                "share": None,
                "holdout": False,
                "agencies": _agency_rows(agency_ids, {}, set()),
            }
        ] * blank_arms
        segments.append(
            {
                "name": name,
                "mode": mode,
                "seed": spec.get("seed", ""),
                "window_days": spec.get("window_days"),
                "min_share": _typed(spec.get("min_share")),
                "min_placements": spec.get("min_placements"),
                "agencies": _agency_rows(
                    agency_ids,
                    {a["agency_id"]: a.get("share") for a in listed} if mode == SPLIT else {},
                    {a["agency_id"] for a in listed} if mode == PERFORMANCE else set(),
                ),
                "arms": arms,
            }
        )
    capacity = [
        {
            "agency_id": str(agency_id),
            "max_cases": (policy["capacity"].get(str(agency_id)) or {}).get("max_cases"),
            "max_balance": _decimal_or_none(
                (policy["capacity"].get(str(agency_id)) or {}).get("max_balance")
            ),
        }
        for agency_id in agency_ids
    ]
    return {"effective_from": effective_from, "segments": segments, "capacity": capacity}


def _decimal_or_none(value: Any) -> Decimal | None:
    return None if value is None else Decimal(value)


def _typed(value: Any) -> Decimal | None:
    """A stored percentage as the user would type it (``"60.0000"`` shows as 60)."""
    return None if value is None else Decimal(share_text(value))


def policy_agencies(policy: dict[str, Any]) -> set[int]:
    """Every agency a policy names (segments, arms, capacity)."""
    named = {int(key) for key in policy.get("capacity", {})}
    for spec in policy["segments"].values():
        named.update(a["agency_id"] for a in spec.get("agencies") or [])
        for arm in spec.get("arms") or []:
            named.update(a["agency_id"] for a in arm.get("agencies") or [])
    return named


def agency_names(ids: set[int] | list[int]) -> dict[int, str]:
    if not ids:
        return {}
    rows = db_session().execute(select(Agency.id, Agency.name).where(Agency.id.in_(list(ids))))
    return {int(agency_id): str(name) for agency_id, name in rows}


def _today() -> dt.date:
    return tenant_today(g.tenant.timezone)


def _form_agencies(policy: dict[str, Any]) -> list[int]:
    """The rows of the form: the agencies under contract today and any the policy names."""
    contracted = strategies.contracted_agencies(db_session(), tenant_id=g.tenant.id, on=_today())
    ids = set(contracted) | policy_agencies(policy)
    names = agency_names(ids)
    return sorted(ids, key=lambda agency_id: (names.get(agency_id, ""), agency_id))


# --- finding things --------------------------------------------------------------------------


def _strategy(strategy_id: int) -> Any:
    strategy = db_session().scalar(strategies.strategy_statement(strategy_id))
    if strategy is None:
        abort(404, message=_("There is no strategy %(id)s.", id=strategy_id))
    return strategy


def _version(strategy: Any, number: int) -> StrategyVersion:
    found: StrategyVersion | None = next(
        (version for version in strategy.versions if version.version == number), None
    )
    if found is None:
        abort(404, message=_("Strategy %(id)s has no version %(n)s.", id=strategy.id, n=number))
    return found


def version_state(strategy: Any, version: StrategyVersion) -> str:
    """``active``, ``draft`` (the newest version while it is not active) or ``earlier``."""
    if version.is_active:
        return "active"
    if version.version == max(v.version for v in strategy.versions):
        return "draft"
    return "earlier"


STATES = {"active": _l("Active"), "draft": _l("Draft"), "earlier": _l("Earlier version")}


# --- pages -----------------------------------------------------------------------------------


@blp.get("/allocation")
@portal_page
def allocation() -> str:
    """Segment rules and strategies with their versions, the active one marked."""
    session = db_session()
    strategy_list = list(
        session.scalars(
            select(PlacementStrategy)
            .options(selectinload(PlacementStrategy.versions))
            .order_by(PlacementStrategy.name)
        )
    )
    return render_template(
        "portal/allocation/index.html",
        strategies=strategy_list,
        rules=segmentation.ordered_rules(session),
        settings=services.current_settings(session),
        version_state=version_state,
        states=STATES,
        modes=MODES,
    )


class DryRunForm(FlaskForm):
    as_of = DateField(_l("As of"), validators=[Optional()])


def _version_page(
    strategy: Any,
    version: StrategyVersion,
    *,
    dry_form: DryRunForm | None = None,
    dry_run: Any = None,
    status: int = 200,
) -> tuple[str, int]:
    named = policy_agencies(version.policy)
    lines = dry_run.lines if dry_run is not None else []
    names = agency_names(named | {line["agency_id"] for line in lines if line["agency_id"]})
    return render_template(
        "portal/allocation/version.html",
        strategy=strategy,
        version=version,
        state=version_state(strategy, version),
        states=STATES,
        modes=MODES,
        names=names,
        dry_form=dry_form or DryRunForm(data={"as_of": _today()}),
        dry_run=dry_run,
        breakdown=dry_run_breakdown(lines) if dry_run is not None else None,
        outcomes=OUTCOMES,
        counts_text=counts_text,
        steps=STEPS,
        share=share_text,
    ), status


@blp.get("/allocation/strategies/<int:strategy_id>/versions/<int:version>")
@portal_page
def allocation_version(strategy_id: int, version: int) -> tuple[str, int]:
    """One version's policy, with its dry run and activation."""
    strategy = _strategy(strategy_id)
    return _version_page(strategy, _version(strategy, version))


@blp.get("/allocation/strategies/<int:strategy_id>")
@portal_page
def allocation_strategy(strategy_id: int) -> Response:
    """A strategy opens on its newest version."""
    strategy = _strategy(strategy_id)
    if not strategy.versions:
        abort(404, message=_("Strategy %(id)s has no versions.", id=strategy_id))
    return redirect(
        url_for(
            "portal.allocation_version",
            strategy_id=strategy_id,
            version=strategy.versions[-1].version,
        )
    )


def dry_run_breakdown(lines: list[dict[str, Any]]) -> dict[str, list[tuple[Any, int, Decimal]]]:
    """The dry run's lines summed by segment, arm, agency and outcome: (key, cases, balance)."""
    result: dict[str, list[tuple[Any, int, Decimal]]] = {}
    for key in ("segment", "arm", "agency_id", "outcome"):
        totals: dict[Any, list[Any]] = {}
        for line in lines:
            entry = totals.setdefault(line[key], [0, Decimal(0)])
            entry[0] += line["cases"]
            entry[1] += Decimal(line["balance"])
        result[key] = [(k, v[0], v[1]) for k, v in totals.items()]
    return result


@blp.post("/allocation/strategies/<int:strategy_id>/versions/<int:version>/dry-run")
@portal_page
def allocation_dry_run(strategy_id: int, version: int) -> tuple[str, int]:
    """What a run by this version would place today (or on the date given), changing nothing."""
    strategy = _strategy(strategy_id)
    found = _version(strategy, version)
    form = DryRunForm()
    if not form.validate_on_submit():
        return _version_page(strategy, found, dry_form=form, status=422)
    result = services.run_allocation(
        platform().db,
        tenant=g.tenant,
        as_of=form.as_of.data or _today(),
        dry_run=True,
        strategy_version_id=found.id,
    )
    return _version_page(strategy, found, dry_form=form, dry_run=result)


@blp.post("/allocation/strategies/<int:strategy_id>/versions/<int:version>/activate")
@portal_page
def allocation_activate(strategy_id: int, version: int) -> Response:
    """Make this version the one the daily run places by."""
    strategy = _strategy(strategy_id)
    found = _version(strategy, version)
    form = FlaskForm()
    if not form.validate_on_submit():
        abort(400)
    strategies.activate_version(db_session(), found)
    flash(
        _(
            "Version %(n)s of %(name)s is now the active strategy.",
            n=found.version,
            name=strategy.name,
        )
    )
    return redirect(url_for("portal.allocation_version", strategy_id=strategy_id, version=version))


def _edit_page(
    strategy: Any, base: StrategyVersion, form: PolicyForm, agency_ids: list[int], **extra: Any
) -> str:
    return render_template(
        "portal/allocation/edit.html",
        strategy=strategy,
        base=base,
        form=form,
        names=agency_names(agency_ids),
        **extra,
    )


def _translated_warnings(policy: dict[str, Any]) -> list[str]:
    """The service's warnings (agencies without a contract, capacity never used), in the
    page's language."""
    contracted = strategies.contracted_agencies(db_session(), tenant_id=g.tenant.id, on=_today())
    named: set[int] = set()
    for spec in policy["segments"].values():
        named.update(a["agency_id"] for a in spec.get("agencies") or [])
        for arm in spec.get("arms") or []:
            named.update(a["agency_id"] for a in arm.get("agencies") or [])
    names = agency_names(named | {int(key) for key in policy.get("capacity", {})})
    warnings = [
        _(
            "%(agency)s has no active contract with you today; it gets no cases until one starts.",
            agency=names.get(agency_id, agency_id),
        )
        for agency_id in sorted(named - set(contracted))
    ]
    warnings += [
        _(
            "A capacity is set for %(agency)s, which no segment names.",
            agency=names.get(int(key), key),
        )
        for key in sorted(set(policy.get("capacity", {})) - {str(a) for a in named})
    ]
    return warnings


def _service_problems(errors: Any, path: str = "") -> list[str]:
    """A ``PolicyError``'s nested messages as lines (``segments.M1: ...``)."""
    if isinstance(errors, dict):
        return [
            line
            for key, value in errors.items()
            for line in _service_problems(value, f"{path}.{key}" if path else str(key))
        ]
    if isinstance(errors, list):
        return [line for value in errors for line in _service_problems(value, path)]
    return [f"{path}: {errors}" if path else str(errors)]


@blp.route(
    "/allocation/strategies/<int:strategy_id>/versions/<int:version>/edit",
    methods=["GET", "POST"],
)
@portal_page
def allocation_edit(strategy_id: int, version: int) -> Response | tuple[str, int]:
    """Edit a draft (or start one from any version): validate, or save as a new version."""
    strategy = _strategy(strategy_id)
    base = _version(strategy, version)
    agency_ids = _form_agencies(base.policy)
    if request.method == "GET":
        form = PolicyForm(data=form_data(base.policy, agency_ids, _today()))
        return _edit_page(strategy, base, form, agency_ids), 200
    form = PolicyForm()
    if not form.validate_on_submit():
        return _edit_page(strategy, base, form, agency_ids), 422
    return _check_or_save(strategy, base, form, agency_ids)


def _refused(error: DomainError) -> list[str]:
    if isinstance(error, strategies.PolicyError):
        return [
            _("The service refused the policy: %(detail)s", detail=line)
            for line in _service_problems(error.errors)
        ]
    return [_("This could not be done: %(detail)s", detail=str(error))]


def _check_or_save(
    strategy: Any, base: StrategyVersion, form: PolicyForm, agency_ids: list[int]
) -> Response | tuple[str, int]:
    """The form passed its own checks: validate with the service, or save a new version."""
    policy = form.policy()
    session = db_session()
    effective_from = form.effective_from.data or _today()
    try:
        if request.form.get("action") == "validate":
            strategies.validate_policy(session, policy, tenant_id=g.tenant.id, on=effective_from)
            warnings = _translated_warnings(policy)
            return _edit_page(strategy, base, form, agency_ids, valid=True, warnings=warnings), 200
        saved = strategies.add_version(
            session,
            strategy,
            tenant_id=g.tenant.id,
            policy=policy,
            effective_from=effective_from,
            created_by=g.page_principal.subject_id,
        )
    except DomainError as error:  # the 422 rolls the request's transaction back
        form.form_errors = _refused(error)
        return _edit_page(strategy, base, form, agency_ids), 422
    flash(_("Saved as version %(n)s, a draft.", n=saved.version))
    return redirect(
        url_for("portal.allocation_version", strategy_id=strategy.id, version=saved.version)
    )


# --- runs ------------------------------------------------------------------------------------


def counts_text(counts: dict[str, Any] | None) -> list[tuple[str, Any]]:
    """A step's counts as (label, number), the per-segment shares left out."""
    if not counts:
        return []
    return [
        (str(COUNT_LABELS.get(key, key)), value)
        for key, value in counts.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    ]


@blp.get("/allocation/runs")
@portal_page
def allocation_runs() -> str:
    """Daily runs, newest first, each step's main count and the run's status."""
    before = request.args.get("before")
    statement = select(AllocationRun).order_by(AllocationRun.as_of.desc())
    if before:
        try:
            statement = statement.where(AllocationRun.as_of < dt.date.fromisoformat(before))
        except ValueError:
            abort(400, message=_("The date %(value)s could not be read.", value=before))
    runs = list(db_session().scalars(statement.limit(RUNS_PER_PAGE + 1)))
    more = len(runs) > RUNS_PER_PAGE
    runs = runs[:RUNS_PER_PAGE]
    return render_template(
        "portal/allocation/runs.html",
        runs=runs,
        next_before=runs[-1].as_of.isoformat() if more and runs else None,
        steps=STEPS,
        main_count=MAIN_COUNT,
        statuses=STATUSES,
        before=before,
    )


@blp.get("/allocation/runs/<int:run_id>")
@portal_page
def allocation_run(run_id: int) -> str:
    """One run: status, the step it is on, and every step's counts (refreshes while running)."""
    run = db_session().get(AllocationRun, run_id)
    if run is None:
        abort(404, message=_("There is no allocation run %(id)s.", id=run_id))
    return render_template(
        "portal/allocation/run.html",
        run=run,
        steps=STEPS,
        statuses=STATUSES,
        counts_text=counts_text,
        all_steps=services.STEPS,
    )


# --- champion/challenger results -------------------------------------------------------------


def champion_arm(policy: dict[str, Any]) -> str | None:
    """The champion of a policy: an arm named ``champion``, else the first arm listed."""
    first = None
    for spec in policy["segments"].values():
        for arm in spec.get("arms") or []:
            if arm["name"] == "champion":
                return "champion"
            first = first or arm["name"]
    return first


@blp.get("/allocation/results")
@portal_page
def allocation_results() -> str:
    """Per arm of a champion/challenger version: cases, liquidation and contact rate."""
    session = db_session()
    rows = session.execute(
        select(StrategyVersion).order_by(
            StrategyVersion.is_active.desc(), StrategyVersion.id.desc()
        )
    ).scalars()
    versions = [
        v for v in rows if any(spec["mode"] == CHAMPION for spec in v.policy["segments"].values())
    ]
    chosen = None
    wanted = request.args.get("version", type=int)
    for version in versions:
        if wanted is None or version.id == wanted:
            chosen = version
            break
    if wanted is not None and chosen is None:
        abort(404, message=_("There is no champion/challenger version %(id)s.", id=wanted))
    results = (
        arm_results(
            session,
            version_id=chosen.id,
            champion=champion_arm(chosen.policy),
            as_of=_today(),
            timezone=g.tenant.timezone,
        )
        if chosen is not None
        else []
    )
    return render_template(
        "portal/allocation/results.html",
        versions=versions,
        chosen=chosen,
        results=results,
    )
