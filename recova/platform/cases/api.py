"""Reading cases of the request's tenant.

Tenant staff and clients read every case, account and debtor. Agency staff read one case
at a time, with its debtor and contact points, when it is within their reach
(``recova.platform.auth.reach``: a collector the cases assigned to them, a manager those
placed with their agency); anything else is a 404. Names are masked to them, and
identifiers to everyone.
"""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields
from sqlalchemy import Select, select
from sqlalchemy.orm import joinedload, selectinload

from recova.platform.auth.access import access
from recova.platform.auth.models import Role
from recova.platform.auth.principal import Principal, current_principal
from recova.platform.auth.reach import reachable_case_or_404, reachable_debtor_or_404
from recova.platform.cases.jobs import refresh_days_past_due_job
from recova.platform.cases.models import Account, Case, Contact, Debtor
from recova.platform.cases.schemas import (
    AccountDetailSchema,
    AccountQuerySchema,
    CaseQuerySchema,
    CaseSchema,
    ContactSchema,
    DebtorQuerySchema,
    DebtorSchema,
)
from recova.platform.kernel.api import SelectPage, StrictSchema, one_or_404, tenant_routes
from recova.platform.kernel.extension import platform
from recova.platform.kernel.request_scope import db_session
from recova.tenants.scope import current_tenant

blp = Blueprint("cases", __name__, description="Collection cases")

CASE_READERS = (Role.TENANT_ADMIN, Role.TENANT_ANALYST, Role.PLATFORM_ADMIN)
#: One case, its debtor and contacts: agency staff too, within their reach.
CASE_WORKERS = (*CASE_READERS, Role.AGENCY_MANAGER, Role.COLLECTOR)


def _principal() -> Principal:
    principal = current_principal()
    assert principal is not None  # the access rule ran first
    return principal


# Built once (statements are immutable; each use adds to a copy).
_CASES = select(Case).options(joinedload(Case.account), joinedload(Case.debtor))


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
        if {"external_id", "dpd_min", "dpd_max"} & set(query):
            statement = _filter_accounts(statement.join(Case.account), query)
        return statement


def _filter_accounts(statement: Select[Any], query: dict[str, Any]) -> Select[Any]:
    if "external_id" in query:
        statement = statement.where(Account.external_id == query["external_id"])
    if "dpd_min" in query:
        statement = statement.where(Account.days_past_due >= query["dpd_min"])
    if "dpd_max" in query:
        statement = statement.where(Account.days_past_due <= query["dpd_max"])
    return statement


_ACCOUNTS = select(Account).options(joinedload(Account.debtor), joinedload(Account.case))


@tenant_routes(blp, "/accounts")
class AccountCollection(MethodView):
    @access(*CASE_READERS, scope="cases:read", tenant=True)
    @blp.arguments(AccountQuerySchema, location="query")
    @blp.response(200, AccountDetailSchema(many=True))
    @blp.paginate(SelectPage)
    def get(self, query: dict[str, Any]) -> Any:
        """List the tenant's accounts, filtered by days past due, case status or external id."""
        statement = _filter_accounts(_ACCOUNTS.order_by(Account.id.desc()), query)
        if "status" in query:
            statement = statement.where(
                Account.id.in_(select(Case.account_id).where(Case.status == query["status"]))
            )
        if "withdrawn" in query:
            withdrawn = Account.withdrawn_at.is_not(None)
            statement = statement.where(withdrawn if query["withdrawn"] else ~withdrawn)
        return statement


@tenant_routes(blp, "/accounts/<int:account_id>")
class AccountItem(MethodView):
    @access(*CASE_READERS, scope="cases:read", tenant=True)
    @blp.response(200, AccountDetailSchema)
    def get(self, account_id: int) -> Account:
        """One account with its (masked) debtor and its case."""
        return one_or_404(_ACCOUNTS.where(Account.id == account_id), f"account {account_id}")


_DEBTORS = select(Debtor).options(selectinload(Debtor.contacts))


@tenant_routes(blp, "/debtors")
class DebtorCollection(MethodView):
    @access(*CASE_READERS, scope="cases:read", tenant=True)
    @blp.arguments(DebtorQuerySchema, location="query")
    @blp.response(200, DebtorSchema(many=True))
    @blp.paginate(SelectPage)
    def get(self, query: dict[str, Any]) -> Any:
        """List the tenant's debtors with their contacts, masked."""
        statement = _DEBTORS.order_by(Debtor.id.desc())
        if "external_id" in query:
            statement = statement.where(Debtor.external_id == query["external_id"])
        return statement


@tenant_routes(blp, "/debtors/<int:debtor_id>")
class DebtorItem(MethodView):
    @access(*CASE_WORKERS, scope="cases:read", tenant=True)
    @blp.response(200, DebtorSchema)
    def get(self, debtor_id: int) -> Debtor:
        """One debtor with contacts (own and third-party), masked.

        Agency staff: a debtor with a case within their reach.
        """
        return reachable_debtor_or_404(db_session(), _principal(), debtor_id, _DEBTORS)


@tenant_routes(blp, "/cases/<int:case_id>")
class CaseItem(MethodView):
    @access(*CASE_WORKERS, scope="cases:read", tenant=True)
    @blp.response(200, CaseSchema)
    def get(self, case_id: int) -> Case:
        """Show one case with its account and (masked) debtor.

        Agency staff: a case within their reach (a collector's own, a manager's agency's).
        """
        return reachable_case_or_404(db_session(), _principal(), case_id, _CASES)


@tenant_routes(blp, "/cases/<int:case_id>/contacts")
class CaseContacts(MethodView):
    @access(*CASE_WORKERS, scope="cases:read", tenant=True)
    @blp.response(200, ContactSchema(many=True))
    def get(self, case_id: int) -> list[Contact]:
        """The contact points of the case's debtor, own ones first: ids and masked values,
        to name in a contact attempt (``POST .../cases/<id>/attempts``)."""
        case = reachable_case_or_404(db_session(), _principal(), case_id)
        return list(
            db_session().scalars(
                select(Contact)
                .where(Contact.debtor_id == case.debtor_id)
                .order_by(Contact.relation != "self", Contact.id)
            )
        )


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
