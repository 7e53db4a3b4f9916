"""Reading cases of the request's tenant."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields
from sqlalchemy import bindparam, select
from sqlalchemy.orm import joinedload

from recova.platform.api import SelectPage, StrictSchema, tenant_routes
from recova.platform.auth.access import access
from recova.platform.auth.models import Role
from recova.platform.cases.jobs import refresh_days_past_due_job
from recova.platform.cases.models import Account, Case
from recova.platform.cases.schemas import CaseQuerySchema, CaseSchema
from recova.platform.errors import abort
from recova.platform.extension import platform
from recova.platform.request_scope import db_session
from recova.tenants.scope import current_tenant

blp = Blueprint("cases", __name__, description="Collection cases")

CASE_READERS = (Role.TENANT_ADMIN, Role.TENANT_ANALYST, Role.PLATFORM_ADMIN)


# Built once (statements are immutable; each use adds to a copy).
_CASES = select(Case).options(joinedload(Case.account), joinedload(Case.debtor))
_CASE_BY_ID = _CASES.where(Case.id == bindparam("case_id"))


@tenant_routes(blp, "/cases")
class CaseCollection(MethodView):
    @access(*CASE_READERS, scope="cases:read", tenant=True)
    @blp.arguments(CaseQuerySchema, location="query")
    @blp.response(200, CaseSchema(many=True))
    @blp.paginate(SelectPage)
    def get(self, query: dict[str, Any]) -> Any:
        """List the tenant's cases, newest first."""
        statement = _CASES.order_by(Case.id.desc())
        if "status" in query:
            statement = statement.where(Case.status == query["status"])
        if "external_id" in query:
            statement = statement.join(Case.account).where(
                Account.external_id == query["external_id"]
            )
        return statement


@tenant_routes(blp, "/cases/<int:case_id>")
class CaseItem(MethodView):
    @access(*CASE_READERS, scope="cases:read", tenant=True)
    @blp.response(200, CaseSchema)
    def get(self, case_id: int) -> Case:
        """Show one case with its account and (masked) debtor."""
        case = db_session().scalar(_CASE_BY_ID, {"case_id": case_id})
        if case is None:
            abort(404, message=f"no case {case_id}")
        return case


class RefreshSchema(StrictSchema):
    as_of = fields.Date(required=True)


class JobAcceptedSchema(Schema):
    job_id = fields.Str()
    queue = fields.Str()


@tenant_routes(blp, "/cases/refresh-days-past-due")
class RefreshDaysPastDue(MethodView):
    @access(Role.TENANT_ADMIN, Role.PLATFORM_ADMIN, tenant=True)
    @blp.arguments(RefreshSchema)
    @blp.response(202, JobAcceptedSchema)
    def post(self, data: dict[str, Any]) -> dict[str, str]:
        """Recompute days past due for every account as of a date, in the background."""
        tenant = current_tenant()
        as_of = data["as_of"].isoformat()
        job_id = refresh_days_past_due_job.enqueue_after_commit(
            db_session(),
            platform(),
            job_id=f"refresh-dpd-{tenant.id}-{as_of}",
            tenant_id=tenant.id,
            as_of=as_of,
        )
        assert job_id is not None  # named above
        return {"job_id": job_id, "queue": refresh_days_past_due_job.queue}
