"""The compliance policy, schedule simulation and validation notices over the API.

Tenant staff read the policy and tenant admins tighten it. Simulation is open to agency
staff too, on the cases placed with their agency only (a collector: assigned to them), the
reach the live gate applies (``recova.platform.auth.reach``); a proposed attempt on any
other case is answered ``request.not_found``, like one on a case that does not exist.
"""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from recova.platform.auth.access import access
from recova.platform.auth.models import Role
from recova.platform.auth.principal import Principal, current_principal
from recova.platform.compliance import notices, policy, schemas
from recova.platform.compliance.gate import Actor
from recova.platform.compliance.packs import pack_in_force
from recova.platform.compliance.simulate import ProposedAttempt, simulate_schedule
from recova.platform.kernel.api import tenant_routes
from recova.platform.kernel.db import utcnow
from recova.platform.kernel.extension import platform
from recova.platform.kernel.request_scope import db_session
from recova.tenants.scope import current_tenant

blp = Blueprint("compliance", __name__, description="Compliance policy, simulation, notices")

READERS = (Role.TENANT_ADMIN, Role.TENANT_ANALYST, Role.PLATFORM_ADMIN)
WRITERS = (Role.TENANT_ADMIN, Role.PLATFORM_ADMIN)
AGENCY_STAFF = (Role.AGENCY_MANAGER, Role.COLLECTOR)


def _principal() -> Principal:
    principal = current_principal()
    assert principal is not None  # the access rule ran first
    return principal


def policy_view(session: Any, jurisdiction: str) -> dict[str, Any]:
    """The policy in force now, its pack, and every saved version."""
    now = utcnow()
    in_force = policy.policy_in_force(session, jurisdiction=jurisdiction, at=now)
    pack = pack_in_force(in_force.pack.pack, now)
    return {
        "pack": pack.pack,
        "pack_version": pack.version,
        "pack_title": pack.title,
        "pack_rules": pack.rules.as_dict(),
        "version_id": in_force.version_id,
        "overrides": in_force.overrides,
        "rules": in_force.rules.as_dict(),
        "history": policy.policy_history(session),
    }


@tenant_routes(blp, "/compliance/policy")
class PolicyItem(MethodView):
    @access(*READERS, scope="compliance:read", tenant=True)
    @blp.response(200, schemas.PolicySchema)
    def get(self) -> dict[str, Any]:
        """The rule pack and version in force, the tenant's tightenings, the merged rules."""
        return policy_view(db_session(), current_tenant().jurisdiction.value)

    @access(*WRITERS, scope="compliance:write", tenant=True)
    @blp.arguments(schemas.PolicySaveSchema)
    @blp.response(200, schemas.PolicySchema)
    def put(self, data: dict[str, Any]) -> dict[str, Any]:
        """Tighten the pack from now (or a later moment); loosening any rule is a 422."""
        session = db_session()
        jurisdiction = current_tenant().jurisdiction.value
        principal = _principal()
        policy.save_policy(
            session,
            jurisdiction=jurisdiction,
            overrides=data["overrides"],
            effective_from=data.get("effective_from"),
            actor=principal,
            created_by=None if principal.is_client else principal.subject_id,
        )
        return policy_view(session, jurisdiction)


@tenant_routes(blp, "/compliance/simulate")
class Simulation(MethodView):
    @access(*READERS, *AGENCY_STAFF, scope="compliance:read", tenant=True)
    @blp.arguments(schemas.SimulateRequestSchema)
    @blp.response(200, schemas.SimulationSchema)
    def post(self, data: dict[str, Any]) -> dict[str, Any]:
        """Which attempts of a proposed schedule the gate would block, and why.

        Earlier allowed attempts count for later ones; nothing is written.
        """
        actor = Actor.of(_principal())
        schedule = [ProposedAttempt(**item) for item in data["attempts"]]
        answers = simulate_schedule(
            db_session(),
            schedule,
            tenant=current_tenant(),
            cipher=platform().cipher,
            agency_id=actor.agency_id,
            collector_id=actor.collector_id,
        )
        return {"attempts": answers, "blocked": sum(1 for a in answers if not a["allowed"])}


@tenant_routes(blp, "/compliance/validation-notices")
class NoticesDue(MethodView):
    @access(*READERS, scope="compliance:read", tenant=True)
    @blp.arguments(schemas.NoticeQuerySchema, location="query")
    @blp.response(200, schemas.NoticeDueSchema(many=True))
    def get(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        """Cases contacted without a validation notice yet: due, or overdue."""
        session = db_session()
        now = utcnow()
        rules = policy.policy_in_force(
            session, jurisdiction=current_tenant().jurisdiction.value, at=now
        ).rules
        return notices.notices_due(
            session, days=rules.validation_notice_days, now=now, state=query.get("state")
        )
