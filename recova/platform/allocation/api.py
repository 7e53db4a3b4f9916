"""Allocation over the API: settings, segment rules, strategies, runs, placements, queues.

Tenant routes (``/api/v1/...`` or ``/api/v1/tenants/<slug>/...``) follow the cases API.
Agency managers reach a tenant's placements only by naming a tenant they hold an active
contract with, and see only their own agency's placements there. The agency routes
(``/api/v1/agency/...``) work across every tenant the caller's agency serves: the
manager's portfolio, a collector's own queue, and the agency's collector profiles.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import Select, select
from sqlalchemy.orm import selectinload

from recova.platform.allocation import schemas, segmentation, services, strategies
from recova.platform.allocation.assignment import collector_of_agency, override_assignment
from recova.platform.allocation.jobs import (
    allocate_tenant_job,
    allocation_job_id,
    reassign_cases_job,
)
from recova.platform.allocation.models import (
    AllocationRun,
    Assignment,
    CaseScore,
    Placement,
    PlacementStrategy,
    SegmentRule,
    StrategyVersion,
)
from recova.platform.allocation.placement import recall_placement, set_case_flags
from recova.platform.auth.access import access
from recova.platform.auth.models import Role
from recova.platform.auth.principal import Principal, current_principal
from recova.platform.cases.models import Case
from recova.platform.compliance.queue import rules_now
from recova.platform.kernel.api import RowsPage, SelectPage, TextQuery, one_or_404, tenant_routes
from recova.platform.kernel.db import utcnow
from recova.platform.kernel.errors import abort
from recova.platform.kernel.extension import platform
from recova.platform.kernel.request_scope import db_session
from recova.tenants.models import tenant_today
from recova.tenants.scope import current_tenant

blp = Blueprint(
    "allocation", __name__, description="Segmentation, placement with agencies, assignment"
)

READERS = (Role.TENANT_ADMIN, Role.TENANT_ANALYST, Role.PLATFORM_ADMIN)
WRITERS = (Role.TENANT_ADMIN, Role.PLATFORM_ADMIN)


def _principal() -> Principal:
    principal = current_principal()
    assert principal is not None  # the access rule ran first
    return principal


def _user_id() -> int | None:
    principal = _principal()
    return None if principal.is_client else principal.subject_id


# --- settings, rules, roll rates ------------------------------------------------------------


@tenant_routes(blp, "/allocation/settings")
class SettingsItem(MethodView):
    @access(*READERS, scope="allocation:read", tenant=True)
    @blp.response(200, schemas.SettingsSchema)
    def get(self) -> dict[str, Any]:
        """The tenant's days-past-due buckets and scorer (defaults until saved)."""
        return services.current_settings(db_session())

    @access(*WRITERS, scope="allocation:write", tenant=True)
    @blp.arguments(schemas.SettingsSchema)
    @blp.response(200, schemas.SettingsSchema)
    def put(self, data: dict[str, Any]) -> Any:
        """Replace the buckets and the scorer; the next run segments and scores by them."""
        return services.save_settings(db_session(), **data)


@tenant_routes(blp, "/allocation/segment-rules")
class SegmentRuleCollection(MethodView):
    @access(*READERS, scope="allocation:read", tenant=True)
    @blp.response(200, schemas.SegmentRuleSchema(many=True))
    def get(self) -> list[SegmentRule]:
        """The tenant's segment rules, in the order they are tried."""
        return segmentation.ordered_rules(db_session())

    @access(*WRITERS, scope="allocation:write", tenant=True)
    @blp.arguments(schemas.SegmentRuleCreateSchema)
    @blp.response(201, schemas.SegmentRuleSchema)
    def post(self, data: dict[str, Any]) -> SegmentRule:
        """Add a segment rule on bucket, balance, product, region or score."""
        return services.create_segment_rule(db_session(), **data)


@tenant_routes(blp, "/allocation/segment-rules/<int:rule_id>")
class SegmentRuleItem(MethodView):
    @access(*WRITERS, scope="allocation:write", tenant=True)
    @blp.response(204)
    def delete(self, rule_id: int) -> None:
        """Remove a segment rule; the next run renames the segments it named."""
        rule = one_or_404(
            select(SegmentRule).where(SegmentRule.id == rule_id), f"segment rule {rule_id}"
        )
        segmentation.delete_rule(db_session(), rule)


@tenant_routes(blp, "/allocation/roll-rates")
class RollRates(MethodView):
    @access(*READERS, scope="allocation:read", tenant=True)
    @blp.arguments(schemas.RollRateQuerySchema, location="query")
    @blp.response(200, schemas.RollRateSchema(many=True))
    def get(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        """Bucket transitions between two dates (default: the last 30 days), by (from, to)."""
        end = query.get("end") or tenant_today(current_tenant().timezone)
        start = query.get("start") or end - dt.timedelta(days=30)
        return segmentation.roll_rates(db_session(), start=start, end=end)


# --- strategies --------------------------------------------------------------------------


@tenant_routes(blp, "/allocation/strategies")
class StrategyCollection(MethodView):
    @access(*READERS, scope="allocation:read", tenant=True)
    @blp.response(200, schemas.StrategySchema(many=True))
    @blp.paginate(SelectPage)
    def get(self) -> Select[Any]:
        """The tenant's placement strategies with their versions."""
        return (
            select(PlacementStrategy)
            .options(selectinload(PlacementStrategy.versions))
            .order_by(PlacementStrategy.id)
        )

    @access(*WRITERS, scope="allocation:write", tenant=True)
    @blp.arguments(schemas.StrategyCreateSchema)
    @blp.response(201, schemas.StrategySchema)
    def post(self, data: dict[str, Any]) -> PlacementStrategy:
        """Create a strategy with its first version (optionally active at once)."""
        tenant = current_tenant()
        return strategies.create_strategy(
            db_session(),
            tenant_id=tenant.id,
            name=data["name"],
            description=data["description"],
            policy=data["policy"],
            effective_from=data["effective_from"] or tenant_today(tenant.timezone),
            activate=data["activate"],
            created_by=_user_id(),
        )


@tenant_routes(blp, "/allocation/strategies/validate")
class StrategyValidation(MethodView):
    @access(*READERS, scope="allocation:read", tenant=True)
    @blp.arguments(schemas.PolicyCheckSchema)
    @blp.response(200, schemas.ValidationResultSchema)
    def post(self, data: dict[str, Any]) -> dict[str, Any]:
        """Check a policy without saving it: errors, and warnings that would not block it."""
        tenant = current_tenant()
        try:
            _, warnings = strategies.validate_policy(
                db_session(),
                data["policy"],
                tenant_id=tenant.id,
                on=tenant_today(tenant.timezone),
            )
        except strategies.PolicyError as exc:
            return {"valid": False, "errors": exc.errors, "warnings": []}
        return {"valid": True, "errors": {}, "warnings": warnings}


def _strategy(strategy_id: int) -> PlacementStrategy:
    return one_or_404(strategies.strategy_statement(strategy_id), f"strategy {strategy_id}")


@tenant_routes(blp, "/allocation/strategies/<int:strategy_id>")
class StrategyItem(MethodView):
    @access(*READERS, scope="allocation:read", tenant=True)
    @blp.response(200, schemas.StrategySchema)
    def get(self, strategy_id: int) -> PlacementStrategy:
        """One strategy with every version."""
        return _strategy(strategy_id)


@tenant_routes(blp, "/allocation/strategies/<int:strategy_id>/versions")
class StrategyVersions(MethodView):
    @access(*WRITERS, scope="allocation:write", tenant=True)
    @blp.arguments(schemas.VersionCreateSchema)
    @blp.response(201, schemas.VersionSchema)
    def post(self, data: dict[str, Any], strategy_id: int) -> StrategyVersion:
        """Save a new version of the strategy's policy (versions are never edited)."""
        strategy = _strategy(strategy_id)
        tenant = current_tenant()
        return strategies.add_version(
            db_session(),
            strategy,
            tenant_id=tenant.id,
            policy=data["policy"],
            effective_from=data["effective_from"] or tenant_today(tenant.timezone),
            activate=data["activate"],
            created_by=_user_id(),
        )


def _version(strategy_id: int, version: int) -> StrategyVersion:
    return one_or_404(
        select(StrategyVersion).where(
            StrategyVersion.strategy_id == strategy_id, StrategyVersion.version == version
        ),
        f"version {version} of strategy {strategy_id}",
    )


@tenant_routes(blp, "/allocation/strategies/<int:strategy_id>/versions/<int:version>/activate")
class StrategyActivation(MethodView):
    @access(*WRITERS, scope="allocation:write", tenant=True)
    @blp.response(200, schemas.VersionSchema)
    def post(self, strategy_id: int, version: int) -> StrategyVersion:
        """Make this version the one the daily run places by."""
        return strategies.activate_version(db_session(), _version(strategy_id, version))


@tenant_routes(blp, "/allocation/strategies/<int:strategy_id>/dry-run")
class StrategyDryRun(MethodView):
    @access(*READERS, scope="allocation:read", tenant=True)
    @blp.arguments(schemas.DryRunRequestSchema)
    @blp.response(200, schemas.DryRunSchema)
    def post(self, data: dict[str, Any], strategy_id: int) -> dict[str, Any]:
        """What a run by this version (default: its latest) would place, changing nothing."""
        strategy = _strategy(strategy_id)
        if not strategy.versions:
            abort(404, message=f"strategy {strategy_id} has no versions")
        number = data["version"] or strategy.versions[-1].version
        version = _version(strategy_id, number)
        tenant = current_tenant()
        result = services.run_allocation(
            platform().db,
            tenant=tenant,
            as_of=data["as_of"],
            dry_run=True,
            strategy_version_id=version.id,
        )
        return {
            "as_of": result.as_of,
            "strategy_version_id": result.strategy_version_id,
            "lines": result.lines,
            "counts": result.counts,
        }


# --- runs --------------------------------------------------------------------------------


@tenant_routes(blp, "/allocation/runs")
class RunCollection(MethodView):
    @access(*READERS, scope="allocation:read", tenant=True)
    @blp.response(200, schemas.AllocationRunSchema(many=True))
    @blp.paginate(SelectPage)
    def get(self) -> Select[Any]:
        """Daily runs, newest date first, with their progress and counts."""
        return select(AllocationRun).order_by(AllocationRun.as_of.desc())

    @access(*WRITERS, scope="allocation:write", tenant=True)
    @blp.arguments(schemas.AllocationRunRequestSchema)
    @blp.response(202, schemas.AllocationRunAcceptedSchema)
    def post(self, data: dict[str, Any]) -> dict[str, Any]:
        """Run allocation now (the scheduled run of the same date is the same job)."""
        tenant = current_tenant()
        as_of = data["as_of"] or tenant_today(tenant.timezone)
        job_id = allocate_tenant_job.enqueue_after_commit(
            db_session(),
            platform(),
            job_id=allocation_job_id(tenant.id, as_of),
            tenant_id=tenant.id,
            as_of=as_of.isoformat(),
            requested_by=_user_id(),
        )
        return {"job_id": job_id, "queue": allocate_tenant_job.queue, "as_of": as_of}


@tenant_routes(blp, "/allocation/runs/<int:allocation_run_id>")
class RunItem(MethodView):
    @access(*READERS, scope="allocation:read", tenant=True)
    @blp.response(200, schemas.AllocationRunSchema)
    def get(self, allocation_run_id: int) -> AllocationRun:
        """One run: status, the step it is on, steps done, counts."""
        return one_or_404(
            select(AllocationRun).where(AllocationRun.id == allocation_run_id),
            f"allocation run {allocation_run_id}",
        )


# --- placements ----------------------------------------------------------------------------


_PLACEMENTS = select(Placement).options(selectinload(Placement.assignments))


def _visible_placements(statement: Select[Any]) -> Select[Any]:
    """Agency managers see only their own agency's placements."""
    principal = _principal()
    if principal.is_agency_user:
        return statement.where(Placement.agency_id == principal.agency_id)
    return statement


def _placement(placement_id: int) -> Placement:
    return one_or_404(
        _visible_placements(_PLACEMENTS.where(Placement.id == placement_id)),
        f"placement {placement_id}",
    )


@tenant_routes(blp, "/placements")
class PlacementCollection(MethodView):
    @access(*READERS, Role.AGENCY_MANAGER, scope="allocation:read", tenant=True)
    @blp.arguments(schemas.PlacementQuerySchema, location="query")
    @blp.response(200, schemas.PlacementSchema(many=True))
    @blp.paginate(SelectPage)
    def get(self, query: dict[str, Any]) -> Select[Any]:
        """Placements, newest first (an agency manager sees only their agency's)."""
        statement = _visible_placements(_PLACEMENTS.order_by(Placement.id.desc()))
        if "active" in query:
            active = Placement.recalled_on.is_(None)
            statement = statement.where(active if query["active"] else ~active)
        if "agency_id" in query:
            statement = statement.where(Placement.agency_id == query["agency_id"])
        if "case_id" in query:
            statement = statement.where(Placement.case_id == query["case_id"])
        return statement


@tenant_routes(blp, "/placements/<int:placement_id>")
class PlacementItem(MethodView):
    @access(*READERS, Role.AGENCY_MANAGER, scope="allocation:read", tenant=True)
    @blp.response(200, schemas.PlacementSchema)
    def get(self, placement_id: int) -> Placement:
        """One placement with its assignment history."""
        return _placement(placement_id)


@tenant_routes(blp, "/placements/<int:placement_id>/recall")
class PlacementRecall(MethodView):
    @access(*WRITERS, scope="allocation:write", tenant=True)
    @blp.arguments(schemas.RecallSchema)
    @blp.response(200, schemas.PlacementSchema)
    def post(self, data: dict[str, Any], placement_id: int) -> Placement:
        """Take a case back from its agency today; the next run places it elsewhere."""
        return recall_placement(
            db_session(),
            _placement(placement_id),
            reason=data["reason"],
            on=tenant_today(current_tenant().timezone),
        )


@tenant_routes(blp, "/placements/<int:placement_id>/assignment")
class PlacementAssignment(MethodView):
    @access(Role.AGENCY_MANAGER, tenant=True)
    @blp.arguments(schemas.OverrideSchema)
    @blp.response(200, schemas.AssignmentSchema)
    def put(self, data: dict[str, Any], placement_id: int) -> Assignment:
        """An agency manager gives one of their agency's cases to a chosen collector."""
        return override_assignment(
            db_session(),
            _placement(placement_id),
            collector_id=data["collector_id"],
            tenant_id=current_tenant().id,
            by_user=_principal().subject_id,
        )


@tenant_routes(blp, "/cases/<int:case_id>/score")
class CaseScoreItem(MethodView):
    @access(*READERS, scope="allocation:read", tenant=True)
    @blp.response(200, schemas.ScoreSchema)
    def get(self, case_id: int) -> CaseScore:
        """A case's priority score and the components that make it up."""
        score = db_session().get(CaseScore, case_id)
        if score is None:
            abort(404, message=f"case {case_id} has no score")
        return score


@tenant_routes(blp, "/cases/<int:case_id>/flags")
class CaseFlags(MethodView):
    @access(*WRITERS, scope="allocation:write", tenant=True)
    @blp.arguments(schemas.CaseFlagsSchema)
    @blp.response(200, schemas.CaseFlagsResultSchema)
    def put(self, data: dict[str, Any], case_id: int) -> dict[str, Any]:
        """Set a case's dispute, bankruptcy, deceased or cease-contact flags.

        A flagged case is never placed; one placed now is recalled at once.
        """
        case = one_or_404(select(Case).where(Case.id == case_id), f"case {case_id}")
        recalled = set_case_flags(
            db_session(), case, data["flags"], today=tenant_today(current_tenant().timezone)
        )
        return {
            "id": case.id,
            "flags": case.flags,
            "recalled_placement_id": recalled.id if recalled else None,
        }


# --- the agency's side, across tenants -----------------------------------------------------


def _served(tenant_slug: str | None = None) -> list[Any]:
    principal = _principal()
    assert principal.agency_id is not None
    served = services.tenants_served(db_session(), principal.agency_id)
    if tenant_slug is not None:
        served = [tenant for tenant in served if tenant.slug == tenant_slug]
    return served


@blp.route("/agency/placements")
class AgencyPortfolio(MethodView):
    @access(Role.AGENCY_MANAGER)
    @blp.arguments(schemas.PortfolioQuerySchema, location="query")
    @blp.response(200, schemas.PortfolioRowSchema(many=True))
    @blp.paginate(RowsPage)
    def get(self, query: dict[str, Any]) -> TextQuery:
        """The agency's active placements in every tenant it holds a contract with."""
        sql, params = services.portfolio_sql(
            _served(query.get("tenant")), agency_id=_principal().agency_id or 0
        )
        return TextQuery(sql, params, "started_on DESC, tenant, placement_id")


@blp.route("/agency/queue")
class CollectorQueue(MethodView):
    @access(Role.COLLECTOR, Role.AGENCY_MANAGER)
    @blp.arguments(schemas.QueueQuerySchema, location="query")
    @blp.response(200, schemas.QueueItemSchema(many=True))
    @blp.paginate(RowsPage)
    def get(self, query: dict[str, Any]) -> TextQuery:
        """A collector's queue across tenants: due work first, then by score; cases that
        may not be called now (flags, the debtor's local window, call caps) are left out.

        Collectors see their own; a manager sees every assigned case of the agency, or
        one collector's queue with ``collector_id``. Each item names the tenant (its slug),
        the case, the debtor (name masked) and the usable contact points' ids, with links
        to the case, its contacts and its attempts under ``/api/v1/tenants/<slug>/``.
        """
        principal = _principal()
        agency_id = principal.agency_id or 0
        collector_id: int | None = query.get("collector_id")
        if principal.role is Role.COLLECTOR:
            if collector_id not in (None, principal.subject_id):
                abort(403, message="collectors see only their own queue")
            collector_id = principal.subject_id
        elif collector_id is not None and (
            collector_of_agency(db_session(), user_id=collector_id, agency_id=agency_id) is None
        ):
            abort(404, message=f"no collector {collector_id} in your agency")
        # Cases the compliance gate would block now (flags, window, caps) are hidden.
        served = _served()
        now = utcnow()
        contactable = {t.id: rules_now(db_session(), t, now) for t in served}
        sql, params = services.portfolio_sql(
            served,
            agency_id=agency_id,
            collector_id=collector_id,
            assigned_only=True,
            contactable=contactable,
            with_debtor=True,
        )
        return TextQuery(
            sql,
            params,
            "(coalesce(next_action_at, '-infinity') > now()), score DESC NULLS LAST,"
            " next_action_at NULLS FIRST, tenant, placement_id",
        )


@blp.route("/agency/collectors")
class CollectorCollection(MethodView):
    @access(Role.AGENCY_MANAGER)
    @blp.response(200, schemas.CollectorProfileSchema(many=True))
    def get(self) -> list[dict[str, Any]]:
        """The agency's collectors with their skills, maximum and status."""
        return services.agency_collectors(db_session(), _principal().agency_id or 0)


@blp.route("/agency/collectors/<int:collector_id>")
class CollectorItem(MethodView):
    @access(Role.AGENCY_MANAGER)
    @blp.arguments(schemas.CollectorUpdateSchema)
    @blp.response(200, schemas.CollectorProfileSchema)
    def patch(self, data: dict[str, Any], collector_id: int) -> dict[str, Any]:
        """Change a collector's skills or maximum, or deactivate them (their cases are
        reassigned in every tenant, in the background)."""
        agency_id = _principal().agency_id or 0
        session = db_session()
        user = collector_of_agency(session, user_id=collector_id, agency_id=agency_id)
        if user is None:
            abort(404, message=f"no collector {collector_id} in your agency")
        view, deactivated = services.update_collector(session, user, data)
        if deactivated:
            for tenant in _served():
                reassign_cases_job.enqueue_after_commit(
                    session,
                    platform(),
                    job_id=f"reassign-{tenant.id}-{collector_id}",
                    tenant_id=tenant.id,
                )
        return view
