"""Case work over the API: lifecycle, promises, plans, settlements, disputes, settings.

Tenant routes (``/api/v1/...`` or ``/api/v1/tenants/<slug>/...``) follow the cases API.
Agency staff name a tenant their agency holds an active contract with, and reach only the
cases placed with their agency now; a collector reaches only the cases assigned to them
(``recova.platform.auth.reach``; a plan or settlement is reached through its case).
Anything else is a 404, as if it did not exist.
The agency's own setting (its collectors' discount limit) is an agency route.
"""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import Select, select
from sqlalchemy.orm import selectinload

from recova.platform.agencies.contracts import AgencyContract
from recova.platform.agencies.models import Agency
from recova.platform.auth.access import access
from recova.platform.auth.models import Role
from recova.platform.auth.principal import Principal, current_principal
from recova.platform.auth.reach import reachable_case_or_404, within_case_reach
from recova.platform.cases.models import Case
from recova.platform.kernel.api import one_or_404, tenant_routes
from recova.platform.kernel.extension import platform
from recova.platform.kernel.request_scope import db_session
from recova.platform.work import (
    disputes,
    lifecycle,
    plans,
    promises,
    schemas,
    settlements,
)
from recova.platform.work.jobs import (
    evaluate_promises_job,
    expire_settlements_job,
    expiry_job_id,
    promises_job_id,
)
from recova.platform.work.models import (
    CaseTransition,
    Dispute,
    DisputeStatus,
    PaymentPlan,
    Promise,
    Settlement,
)
from recova.platform.work.settings import change_settings, current_settings
from recova.tenants.models import tenant_today
from recova.tenants.scope import current_tenant

blp = Blueprint(
    "work", __name__, description="Case work: lifecycle, promises, plans, settlements, disputes"
)

READERS = (
    Role.TENANT_ADMIN,
    Role.TENANT_ANALYST,
    Role.PLATFORM_ADMIN,
    Role.AGENCY_MANAGER,
    Role.COLLECTOR,
)
WORKERS = (Role.TENANT_ADMIN, Role.PLATFORM_ADMIN, Role.AGENCY_MANAGER, Role.COLLECTOR)
TENANT_DECIDERS = (Role.TENANT_ADMIN, Role.PLATFORM_ADMIN)


def _principal() -> Principal:
    principal = current_principal()
    assert principal is not None  # the access rule ran first
    return principal


def _today() -> Any:
    return tenant_today(current_tenant().timezone)


def _reachable(statement: Select[Any], case_id_column: Any) -> Select[Any]:
    """Agency staff reach cases placed with their agency now; collectors their own."""
    return within_case_reach(statement, _principal(), case_id_column)


def _reachable_case(case_id: int) -> Case:
    return reachable_case_or_404(db_session(), _principal(), case_id)


# --- lifecycle -------------------------------------------------------------------------------


def _state(case: Case) -> dict[str, Any]:
    hold = lifecycle.open_hold(db_session(), case.id)
    return {
        "id": case.id,
        "status": case.status,
        "hold_reason": hold.reason.value if hold is not None else None,
        "flags": case.flags,
        "broken_promises": case.broken_promises,
        "close_reason": case.close_reason,
        "closed_at": case.closed_at,
        "allowed_transitions": sorted(lifecycle.ALLOWED[case.status]),
    }


@tenant_routes(blp, "/cases/<int:case_id>/lifecycle")
class CaseLifecycle(MethodView):
    @access(*READERS, scope="work:read", tenant=True)
    @blp.response(200, schemas.CaseStateSchema)
    def get(self, case_id: int) -> dict[str, Any]:
        """A case's status, hold, flags and the statuses it may move to next."""
        return _state(_reachable_case(case_id))


@tenant_routes(blp, "/cases/<int:case_id>/transitions")
class CaseTransitions(MethodView):
    @access(*READERS, scope="work:read", tenant=True)
    @blp.response(200, schemas.TransitionSchema(many=True))
    def get(self, case_id: int) -> list[Any]:
        """The case's transition history, oldest first."""

        case = _reachable_case(case_id)
        return list(
            db_session().scalars(
                select(CaseTransition)
                .where(CaseTransition.case_id == case.id)
                .order_by(CaseTransition.id)
            )
        )

    @access(*WORKERS, scope="work:write", tenant=True)
    @blp.arguments(schemas.TransitionRequestSchema)
    @blp.response(200, schemas.CaseStateSchema)
    def post(self, data: dict[str, Any], case_id: int) -> dict[str, Any]:
        """Move a case to another status; 409 names the statuses it may move to.

        Agency staff may only start working a case (in_progress); closing, paying off and
        legal holds are the tenant's. A promised or on_plan case goes back to in_progress
        only once its promise or plan has ended (409 names the live one). Placed, recalled,
        promised, on_plan and settled are reached through allocation, promises, plans and
        settlements.
        """
        case = _reachable_case(case_id)
        principal = _principal()
        lifecycle.request_transition(
            db_session(),
            case=case,
            to=data["to"],
            actor=principal,
            agency_staff=principal.is_agency_user,
            reason=data["reason"],
            hold_reason=data["hold_reason"],
            today=_today(),
        )
        return _state(case)


# --- promises --------------------------------------------------------------------------------


@tenant_routes(blp, "/cases/<int:case_id>/promises")
class CasePromises(MethodView):
    @access(*READERS, scope="work:read", tenant=True)
    @blp.response(200, schemas.PromiseSchema(many=True))
    def get(self, case_id: int) -> list[Promise]:
        """The case's promises to pay, newest first."""
        case = _reachable_case(case_id)
        return list(
            db_session().scalars(
                select(Promise).where(Promise.case_id == case.id).order_by(Promise.id.desc())
            )
        )

    @access(*WORKERS, scope="work:write", tenant=True)
    @blp.arguments(schemas.PromiseCreateSchema)
    @blp.response(201, schemas.PromiseSchema)
    def post(self, data: dict[str, Any], case_id: int) -> Promise:
        """Record the debtor's promise to pay an amount by a date; the case is promised."""
        return promises.create_promise(
            db_session(),
            case=_reachable_case(case_id),
            amount=data["amount"],
            due_date=data["due_date"],
            actor=_principal(),
            today=_today(),
        )


# --- plans -----------------------------------------------------------------------------------


@tenant_routes(blp, "/cases/<int:case_id>/plans")
class CasePlans(MethodView):
    @access(*READERS, scope="work:read", tenant=True)
    @blp.response(200, schemas.PlanSchema(many=True))
    def get(self, case_id: int) -> list[PaymentPlan]:
        """The case's payment plans with their instalments, newest first."""
        case = _reachable_case(case_id)
        return list(
            db_session().scalars(
                select(PaymentPlan)
                .options(selectinload(PaymentPlan.instalments))
                .where(PaymentPlan.case_id == case.id)
                .order_by(PaymentPlan.id.desc())
            )
        )

    @access(*WORKERS, scope="work:write", tenant=True)
    @blp.arguments(schemas.PlanCreateSchema)
    @blp.response(201, schemas.PlanSchema)
    def post(self, data: dict[str, Any], case_id: int) -> PaymentPlan:
        """Agree an instalment schedule; the case is on_plan while the plan is active."""
        return plans.create_plan(
            db_session(),
            case=_reachable_case(case_id),
            instalments=[(i["due_date"], i["amount"]) for i in data["instalments"]],
            actor=_principal(),
            today=_today(),
        )


def _plan(plan_id: int) -> PaymentPlan:
    statement = (
        select(PaymentPlan)
        .options(selectinload(PaymentPlan.instalments))
        .where(PaymentPlan.id == plan_id)
    )
    return one_or_404(_reachable(statement, PaymentPlan.case_id), f"payment plan {plan_id}")


@tenant_routes(blp, "/plans/<int:plan_id>")
class PlanItem(MethodView):
    @access(*READERS, scope="work:read", tenant=True)
    @blp.response(200, schemas.PlanSchema)
    def get(self, plan_id: int) -> PaymentPlan:
        """One plan with its instalments and what each has been paid."""
        return _plan(plan_id)


@tenant_routes(blp, "/plans/<int:plan_id>/instalments/<int:seq>/deferral")
class InstalmentDeferral(MethodView):
    @access(*WORKERS, scope="work:write", tenant=True)
    @blp.arguments(schemas.DeferralSchema)
    @blp.response(200, schemas.PlanSchema)
    def post(self, data: dict[str, Any], plan_id: int, seq: int) -> PaymentPlan:
        """Move an open instalment's due date later, within the tenant's deferral limits."""
        plan = _plan(plan_id)
        plans.defer_instalment(
            db_session(),
            plan=plan,
            seq=seq,
            due_date=data["due_date"],
            today=_today(),
            actor=_principal(),
        )
        return plan


# --- settlements ---------------------------------------------------------------------------


@tenant_routes(blp, "/cases/<int:case_id>/settlements")
class CaseSettlements(MethodView):
    @access(*READERS, scope="work:read", tenant=True)
    @blp.response(200, schemas.SettlementSchema(many=True))
    def get(self, case_id: int) -> list[Settlement]:
        """The case's settlement offers, newest first (agency staff: their agency's)."""
        case = _reachable_case(case_id)
        statement = select(Settlement).where(Settlement.case_id == case.id)
        principal = _principal()
        if principal.is_agency_user:
            statement = statement.where(Settlement.agency_id == principal.agency_id)
        return list(db_session().scalars(statement.order_by(Settlement.id.desc())))

    @access(*WORKERS, scope="work:write", tenant=True)
    @blp.arguments(schemas.SettlementCreateSchema)
    @blp.response(201, schemas.SettlementSchema)
    def post(self, data: dict[str, Any], case_id: int) -> Settlement:
        """Offer a discounted full-and-final settlement; approved at once when the
        discount is within the caller's limit, otherwise it waits for approval."""
        case = _reachable_case(case_id)
        principal = _principal()
        return settlements.offer_settlement(
            db_session(),
            case=case,
            amount=data["amount"],
            expires_on=data["expires_on"],
            actor=principal,
            level=settlements.level_of(principal),
            tenant_id=current_tenant().id,
            today=_today(),
        )


@tenant_routes(blp, "/settlements/<int:settlement_id>/decision")
class SettlementDecision(MethodView):
    @access(*WORKERS, scope="work:write", tenant=True)
    @blp.arguments(schemas.SettlementDecisionSchema)
    @blp.response(200, schemas.SettlementSchema)
    def post(self, data: dict[str, Any], settlement_id: int) -> Settlement:
        """Approve or reject an offer waiting for approval; 403 if the discount is above
        the caller's limit (collector: the agency's, manager: the contract's)."""
        settlement = one_or_404(
            _reachable(
                select(Settlement).where(Settlement.id == settlement_id), Settlement.case_id
            ),
            f"settlement {settlement_id}",
        )
        principal = _principal()
        return settlements.decide_settlement(
            db_session(),
            settlement=settlement,
            approve=data["approve"],
            actor=principal,
            level=settlements.level_of(principal),
            note=data["note"],
            today=_today(),
        )


# --- disputes --------------------------------------------------------------------------------


@tenant_routes(blp, "/cases/<int:case_id>/disputes")
class CaseDisputes(MethodView):
    @access(*READERS, scope="work:read", tenant=True)
    @blp.response(200, schemas.DisputeSchema(many=True))
    def get(self, case_id: int) -> list[Dispute]:
        """The case's disputes, newest first."""
        case = _reachable_case(case_id)
        return list(
            db_session().scalars(
                select(Dispute).where(Dispute.case_id == case.id).order_by(Dispute.id.desc())
            )
        )

    @access(*WORKERS, scope="work:write", tenant=True)
    @blp.arguments(schemas.DisputeCreateSchema)
    @blp.response(201, schemas.DisputeSchema)
    def post(self, data: dict[str, Any], case_id: int) -> Dispute:
        """Record the debtor's dispute: the case goes on hold, flagged, until the tenant
        resolves it (a placed case is recalled from its agency)."""
        return disputes.open_dispute(
            db_session(),
            case=_reachable_case(case_id),
            grounds=data["grounds"],
            notes=data["notes"],
            actor=_principal(),
            today=_today(),
        )


@tenant_routes(blp, "/disputes/<int:dispute_id>/resolution")
class DisputeResolution(MethodView):
    @access(*TENANT_DECIDERS, scope="work:write", tenant=True)
    @blp.arguments(schemas.DisputeResolutionSchema)
    @blp.response(200, schemas.DisputeSchema)
    def post(self, data: dict[str, Any], dispute_id: int) -> Dispute:
        """The tenant resolves a dispute: upheld closes the case; adjusted or rejected
        returns it to work."""
        dispute = one_or_404(
            _reachable(select(Dispute).where(Dispute.id == dispute_id), Dispute.case_id),
            f"dispute {dispute_id}",
        )
        return disputes.resolve_dispute(
            db_session(),
            dispute=dispute,
            outcome=DisputeStatus(data["outcome"]),
            note=data["note"],
            actor=_principal(),
        )


# --- settings, limits, evaluation ------------------------------------------------------------


def _settings_view() -> dict[str, Any]:
    found = current_settings(db_session())
    return {name: getattr(found, name) for name in schemas.WorkSettingsSchema().fields}


@tenant_routes(blp, "/work/settings")
class WorkSettingsItem(MethodView):
    @access(
        Role.TENANT_ADMIN, Role.TENANT_ANALYST, Role.PLATFORM_ADMIN, scope="work:read", tenant=True
    )
    @blp.response(200, schemas.WorkSettingsSchema)
    def get(self) -> dict[str, Any]:
        """Grace days, plan breakage, deferral limits and the longest offer (defaults until
        saved)."""
        return _settings_view()

    @access(*TENANT_DECIDERS, scope="work:write", tenant=True)
    @blp.arguments(schemas.WorkSettingsSchema)
    @blp.response(200, schemas.WorkSettingsSchema)
    def put(self, data: dict[str, Any]) -> dict[str, Any]:
        """Change any of the settings; the next evaluation uses them."""
        change_settings(db_session(), actor=_principal(), **data)
        return _settings_view()


@tenant_routes(blp, "/work/contracts/<int:agency_contract_id>/settlement-limit")
class ContractSettlementLimit(MethodView):
    @access(*TENANT_DECIDERS, scope="work:write", tenant=True)
    @blp.arguments(schemas.ContractLimitSchema)
    @blp.response(200, schemas.ContractLimitResultSchema)
    def put(self, data: dict[str, Any], agency_contract_id: int) -> dict[str, Any]:
        """Set the discount an agency's managers may approve on this tenant's cases."""
        contract = one_or_404(
            select(AgencyContract).where(
                AgencyContract.id == agency_contract_id,
                AgencyContract.tenant_id == current_tenant().id,
            ),
            f"contract {agency_contract_id}",
        )
        settlements.set_contract_limit(
            db_session(), contract, limit=data["settlement_discount_limit"], actor=_principal()
        )
        return {
            "contract_id": contract.id,
            "agency_id": contract.agency_id,
            "settlement_discount_limit": contract.settlement_discount_limit,
        }


def _own_agency() -> Agency:
    agency = db_session().get(Agency, _principal().agency_id)
    assert agency is not None  # a manager's agency exists (it is active, or they are out)
    return agency


@blp.route("/agency/settlement-limit")
class AgencySettlementLimit(MethodView):
    @access(Role.AGENCY_MANAGER)
    @blp.response(200, schemas.AgencyLimitResultSchema)
    def get(self) -> dict[str, Any]:
        """The discount the agency's collectors may approve, and each tenant's cap on it."""
        return settlements.agency_limits(db_session(), _own_agency())

    @access(Role.AGENCY_MANAGER)
    @blp.arguments(schemas.AgencyLimitSchema)
    @blp.response(200, schemas.AgencyLimitResultSchema)
    def put(self, data: dict[str, Any]) -> dict[str, Any]:
        """Set the discount the agency's collectors may approve (each tenant's contract
        limit still caps it there).

        The limit binds in every tenant the agency serves, so each of their audit chains
        records the change. Those appends commit just before this request does (each
        chain is its own schema, so no one transaction spans them): a chain may show a
        change whose own commit then failed, never a change it does not show.
        """
        agency = settlements.set_collector_limit(
            db_session(),
            _own_agency(),
            limit=data["collector_discount_limit"],
            actor=_principal(),
        )
        return settlements.agency_limits(db_session(), agency)


@tenant_routes(blp, "/work/evaluations")
class WorkEvaluation(MethodView):
    @access(*TENANT_DECIDERS, scope="work:write", tenant=True)
    @blp.arguments(schemas.EvaluationRequestSchema)
    @blp.response(202, schemas.EvaluationAcceptedSchema)
    def post(self, data: dict[str, Any]) -> dict[str, Any]:
        """Run the daily promise, plan and settlement evaluation now (the scheduled run
        of the same date is the same job)."""
        tenant = current_tenant()
        as_of = data["as_of"] or _today()
        ids = [
            evaluate_promises_job.enqueue_after_commit(
                db_session(),
                platform(),
                job_id=promises_job_id(tenant.id, as_of),
                tenant_id=tenant.id,
                as_of=as_of.isoformat(),
            ),
            expire_settlements_job.enqueue_after_commit(
                db_session(),
                platform(),
                job_id=expiry_job_id(tenant.id, as_of),
                tenant_id=tenant.id,
                as_of=as_of.isoformat(),
            ),
        ]
        return {"as_of": as_of, "job_ids": [job_id for job_id in ids if job_id]}
