"""Billing over the API: agency contracts (platform admins), and each tenant's contract
versions, ledger, invoices, statements and exports."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate
from sqlalchemy import select

from recova.billing import exports, schemas
from recova.billing.invoices import (
    agency_statements_sql,
    close_month,
    issue_invoice,
    mark_invoice_paid,
    month_start,
    statements_for,
    void_invoice,
)
from recova.billing.jobs import close_job_id, close_month_job
from recova.billing.models import AgencyStatement, CommissionLine, ContractVersion, Invoice
from recova.billing.services import (
    create_agency_contract,
    end_agency_contract,
    set_agency_payout,
)
from recova.billing.terms import create_contract_version
from recova.platform.agencies.contracts import AgencyContract, contracted_tenants
from recova.platform.agencies.models import Agency
from recova.platform.auth.access import access
from recova.platform.auth.models import Role
from recova.platform.auth.principal import current_principal
from recova.platform.kernel.api import (
    RowsPage,
    SelectPage,
    StrictSchema,
    TextQuery,
    one_or_404,
    tenant_routes,
)
from recova.platform.kernel.errors import abort
from recova.platform.kernel.extension import platform
from recova.platform.kernel.request_scope import db_session
from recova.tenants.models import Tenant, tenant_today
from recova.tenants.scope import current_tenant

blp = Blueprint("contracts", __name__, description="Agency contracts with tenants")


class PayoutSchema(StrictSchema):
    """What the agency is paid: a share of each line's commission, or its own rates."""

    mode = fields.Str(required=True, validate=validate.OneOf(["share", "rates"]))
    share = fields.Decimal(
        as_string=True,
        load_default=None,
        allow_none=True,
        validate=validate.Range(min=0, max=100),
        metadata={"description": "percent of the commission (mode share)"},
    )
    rates = fields.Dict(
        keys=fields.Str(),
        values=fields.Raw(),
        load_default=None,
        allow_none=True,
        metadata={"description": "percent of the money by bucket, '*' for others (mode rates)"},
    )


class ContractCreateSchema(StrictSchema):
    tenant = fields.Str(required=True, metadata={"description": "tenant slug"})
    agency = fields.Str(required=True, metadata={"description": "agency slug"})
    starts_on = fields.Date(required=True)
    ends_on = fields.Date(load_default=None, allow_none=True)
    placement_days = fields.Int(load_default=60, validate=validate.Range(min=1, max=3650))
    grace_days = fields.Int(load_default=10, validate=validate.Range(min=0, max=365))
    payout = fields.Nested(PayoutSchema, load_default=None, allow_none=True)


class ContractUpdateSchema(StrictSchema):
    ends_on = fields.Date()
    payout = fields.Nested(PayoutSchema)


class ContractSchema(Schema):
    id = fields.Int()
    tenant = fields.Function(lambda c: c.tenant.slug)
    agency = fields.Function(lambda c: c.agency.slug)
    starts_on = fields.Date()
    ends_on = fields.Date(allow_none=True)
    placement_days = fields.Int()
    grace_days = fields.Int()
    payout = fields.Function(
        lambda c: {
            "mode": c.payout_mode,
            "share": str(c.payout_share) if c.payout_mode == "share" else None,
            "rates": c.payout_rates,
        }
    )
    created_at = fields.DateTime()


@blp.route("/platform/contracts")
class ContractCollection(MethodView):
    @access(Role.PLATFORM_ADMIN)
    @blp.response(200, ContractSchema(many=True))
    @blp.paginate(SelectPage)
    def get(self) -> Any:
        """List agency contracts."""
        return select(AgencyContract).order_by(AgencyContract.id)

    @access(Role.PLATFORM_ADMIN)
    @blp.arguments(ContractCreateSchema)
    @blp.response(201, ContractSchema)
    def post(self, data: dict[str, Any]) -> AgencyContract:
        """Contract an agency to a tenant for a period."""
        session = db_session()
        tenant = session.scalar(select(Tenant).where(Tenant.slug == data["tenant"]))
        agency = session.scalar(select(Agency).where(Agency.slug == data["agency"]))
        if tenant is None or agency is None:
            abort(
                422,
                message="unknown tenant or agency",
                errors={"json": {"tenant" if tenant is None else "agency": ["not found"]}},
            )
        contract = create_agency_contract(
            session,
            tenant=tenant,
            agency=agency,
            starts_on=data["starts_on"],
            ends_on=data["ends_on"],
            placement_days=data["placement_days"],
            grace_days=data["grace_days"],
        )
        if data["payout"] is not None:
            set_agency_payout(contract, **data["payout"])
        return contract


@blp.route("/platform/contracts/<int:contract_id>")
class ContractItem(MethodView):
    @access(Role.PLATFORM_ADMIN)
    @blp.response(200, ContractSchema)
    def get(self, contract_id: int) -> AgencyContract:
        """Show one contract."""
        return _contract(contract_id)

    @access(Role.PLATFORM_ADMIN)
    @blp.arguments(ContractUpdateSchema)
    @blp.response(200, ContractSchema)
    def patch(self, data: dict[str, Any], contract_id: int) -> AgencyContract:
        """End a contract on a date, or change the agency's payout (lines already on the
        ledger keep the payout they were written with)."""
        if not data:
            abort(422, message="give ends_on or payout")
        contract = _contract(contract_id)
        if "payout" in data:
            set_agency_payout(contract, **data["payout"])
        if "ends_on" in data:
            end_agency_contract(db_session(), contract, data["ends_on"])
        return contract


def _contract(contract_id: int) -> AgencyContract:
    return one_or_404(
        select(AgencyContract).where(AgencyContract.id == contract_id), f"contract {contract_id}"
    )


# --- the tenant's billing ------------------------------------------------------------------

billing_blp = Blueprint(
    "billing",
    __name__,
    description="Contract versions, the commission ledger, invoices and agency statements",
)

READERS = (Role.TENANT_ADMIN, Role.TENANT_ANALYST, Role.PLATFORM_ADMIN)
WRITERS = (Role.TENANT_ADMIN, Role.PLATFORM_ADMIN)


def _user_id() -> int | None:
    principal = current_principal()
    assert principal is not None  # the access rule ran first
    return None if principal.is_client else principal.subject_id


@tenant_routes(billing_blp, "/billing/contract-versions")
class ContractVersionCollection(MethodView):
    @access(*READERS, scope="billing:read", tenant=True)
    @billing_blp.arguments(schemas.ContractVersionQuerySchema, location="query")
    @billing_blp.response(200, schemas.ContractVersionSchema(many=True))
    @billing_blp.paginate(SelectPage)
    def get(self, query: dict[str, Any]) -> Any:
        """The tenant's contract versions, per currency, newest first."""
        statement = select(ContractVersion).order_by(
            ContractVersion.currency, ContractVersion.effective_from.desc()
        )
        if "currency" in query:
            statement = statement.where(ContractVersion.currency == query["currency"].upper())
        return statement

    @access(*WRITERS, scope="billing:write", tenant=True)
    @billing_blp.arguments(schemas.ContractVersionCreateSchema)
    @billing_blp.response(201, schemas.ContractVersionSchema)
    def post(self, data: dict[str, Any]) -> ContractVersion:
        """Add a contract version from a date (tiers must follow one another, no gap).

        Versions are never edited; a version may not start on or before a date already
        on the ledger in its currency.
        """
        return create_contract_version(
            db_session(), tenant_id=current_tenant().id, data=data, created_by=_user_id()
        )


@tenant_routes(billing_blp, "/billing/contract-versions/<int:version_id>")
class ContractVersionItem(MethodView):
    @access(*READERS, scope="billing:read", tenant=True)
    @billing_blp.response(200, schemas.ContractVersionSchema)
    def get(self, version_id: int) -> ContractVersion:
        """One contract version."""
        return one_or_404(
            select(ContractVersion).where(ContractVersion.id == version_id),
            f"contract version {version_id}",
        )


@tenant_routes(billing_blp, "/billing/ledger")
class Ledger(MethodView):
    @access(*READERS, scope="billing:read", tenant=True)
    @billing_blp.arguments(schemas.LedgerQuerySchema, location="query")
    @billing_blp.response(200, schemas.LineSchema(many=True))
    @billing_blp.paginate(SelectPage)
    def get(self, query: dict[str, Any]) -> Any:
        """Commission and clawback lines, in ledger order (filter by month, agency, ...)."""
        statement = select(CommissionLine).order_by(CommissionLine.id)
        if "month" in query:
            statement = statement.where(CommissionLine.period == month_start(query["month"]))
        if "currency" in query:
            statement = statement.where(CommissionLine.currency == query["currency"].upper())
        for name in ("kind", "agency_id", "case_id", "payment_id"):
            if name in query:
                statement = statement.where(getattr(CommissionLine, name) == query[name])
        return statement


@tenant_routes(billing_blp, "/billing/closes")
class Closes(MethodView):
    @access(*WRITERS, scope="billing:write", tenant=True)
    @billing_blp.arguments(schemas.MonthSchema)
    @billing_blp.response(202, schemas.CloseAcceptedSchema)
    def post(self, data: dict[str, Any]) -> dict[str, Any]:
        """Close a month on the billing queue (the scheduled close of it is the same job)."""
        tenant = current_tenant()
        month = month_start(data["month"])
        if month > tenant_today(tenant.timezone).replace(day=1):
            abort(422, message=f"{data['month']} has not begun on the tenant's calendar")
        job_id = close_month_job.enqueue_after_commit(
            db_session(),
            platform(),
            job_id=close_job_id(tenant.id, month),
            tenant_id=tenant.id,
            month=data["month"],
        )
        return {"job_id": job_id, "queue": close_month_job.queue, "month": data["month"]}


@tenant_routes(billing_blp, "/billing/invoices")
class InvoiceCollection(MethodView):
    @access(*READERS, scope="billing:read", tenant=True)
    @billing_blp.arguments(schemas.InvoiceQuerySchema, location="query")
    @billing_blp.response(200, schemas.InvoiceSchema(many=True))
    @billing_blp.paginate(SelectPage)
    def get(self, query: dict[str, Any]) -> Any:
        """Invoices, newest number first."""
        statement = select(Invoice).order_by(Invoice.number.desc())
        if "month" in query:
            statement = statement.where(Invoice.period == month_start(query["month"]))
        if "currency" in query:
            statement = statement.where(Invoice.currency == query["currency"].upper())
        if "status" in query:
            statement = statement.where(Invoice.status == query["status"])
        return statement


@tenant_routes(billing_blp, "/billing/invoices/preview")
class InvoicePreview(MethodView):
    @access(*READERS, scope="billing:read", tenant=True)
    @billing_blp.arguments(schemas.MonthSchema)
    @billing_blp.response(200, schemas.PreviewSchema)
    def post(self, data: dict[str, Any]) -> dict[str, Any]:
        """What closing the month now would bill, per currency; nothing is written."""
        result = close_month(
            platform().db, tenant=current_tenant(), month=data["month"], dry_run=True
        )
        for invoice in result.invoices:
            if invoice["status"] == "draft":
                invoice["id"] = invoice["number"] = None  # a preview takes no number
        return {"month": data["month"], "counts": result.counts, "invoices": result.invoices}


def _invoice(invoice_id: int) -> Invoice:
    return one_or_404(select(Invoice).where(Invoice.id == invoice_id), f"invoice {invoice_id}")


@tenant_routes(billing_blp, "/billing/invoices/<int:invoice_id>")
class InvoiceItem(MethodView):
    @access(*READERS, scope="billing:read", tenant=True)
    @billing_blp.response(200, schemas.InvoiceSchema)
    def get(self, invoice_id: int) -> Invoice:
        """One invoice with its totals and subtotals by bucket and agency."""
        return _invoice(invoice_id)


def _change(action: Any, invoice_id: int, **options: Any) -> Invoice:
    invoice = _invoice(invoice_id)
    return action(db_session(), invoice, tenant=current_tenant(), **options)  # type: ignore[no-any-return]


@tenant_routes(billing_blp, "/billing/invoices/<int:invoice_id>/issue")
class InvoiceIssue(MethodView):
    @access(*WRITERS, scope="billing:write", tenant=True)
    @billing_blp.response(200, schemas.InvoiceSchema)
    def post(self, invoice_id: int) -> Invoice:
        """Issue a draft once its month has ended; it never changes afterwards."""
        return _change(issue_invoice, invoice_id)


@tenant_routes(billing_blp, "/billing/invoices/<int:invoice_id>/mark-paid")
class InvoicePaid(MethodView):
    @access(*WRITERS, scope="billing:write", tenant=True)
    @billing_blp.arguments(schemas.PaidSchema)
    @billing_blp.response(200, schemas.InvoiceSchema)
    def post(self, data: dict[str, Any], invoice_id: int) -> Invoice:
        """Record that an issued invoice was paid (default: today)."""
        return _change(mark_invoice_paid, invoice_id, paid_on=data["paid_on"])


@tenant_routes(billing_blp, "/billing/invoices/<int:invoice_id>/void")
class InvoiceVoid(MethodView):
    @access(*WRITERS, scope="billing:write", tenant=True)
    @billing_blp.arguments(schemas.VoidSchema)
    @billing_blp.response(200, schemas.InvoiceSchema)
    def post(self, data: dict[str, Any], invoice_id: int) -> Invoice:
        """Void a draft or issued invoice, with a reason; the next close bills the month anew
        under a new number."""
        return _change(void_invoice, invoice_id, reason=data["reason"])


def _download(content: bytes, filename: str, mimetype: str) -> Response:
    return Response(
        content,
        mimetype=mimetype,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@tenant_routes(billing_blp, "/billing/invoices/<int:invoice_id>/export.csv")
class InvoiceCsv(MethodView):
    @access(*READERS, scope="billing:read", tenant=True)
    @billing_blp.response(200, content_type="text/csv")
    def get(self, invoice_id: int) -> Response:
        """Every line of the invoice as CSV."""
        invoice = _invoice(invoice_id)
        name = exports.export_file_name(current_tenant().slug, invoice, "csv")
        return _download(exports.invoice_csv(db_session(), invoice), name, "text/csv")


@tenant_routes(billing_blp, "/billing/invoices/<int:invoice_id>/export.pdf")
class InvoicePdf(MethodView):
    @access(*READERS, scope="billing:read", tenant=True)
    @billing_blp.response(200, content_type="application/pdf")
    def get(self, invoice_id: int) -> Response:
        """The invoice as a PDF."""
        invoice = _invoice(invoice_id)
        name = exports.export_file_name(current_tenant().slug, invoice, "pdf")
        return _download(exports.invoice_pdf(db_session(), invoice), name, "application/pdf")


def _own_agency() -> int | None:
    """An agency user's agency (they see only their own statements); None for the tenant."""
    principal = current_principal()
    assert principal is not None
    return principal.agency_id if principal.is_agency_user else None


def _statement(statement_id: int) -> tuple[AgencyStatement, Invoice]:
    """The statement (an agency user's own agency's only) with its invoice; a statement
    of a void invoice is gone, and says so."""
    statement = select(AgencyStatement).where(AgencyStatement.id == statement_id)
    agency = _own_agency()
    if agency is not None:
        statement = statement.where(AgencyStatement.agency_id == agency)
    found = one_or_404(statement, f"statement {statement_id}")
    invoice = db_session().get(Invoice, found.invoice_id)
    assert invoice is not None
    if invoice.status == "void":
        abort(404, message=f"statement {statement_id} belongs to a void invoice")
    return found, invoice


STATEMENT_READERS = (*READERS, Role.AGENCY_MANAGER)


@tenant_routes(billing_blp, "/billing/statements")
class StatementCollection(MethodView):
    @access(*STATEMENT_READERS, scope="billing:read", tenant=True)
    @billing_blp.arguments(schemas.StatementQuerySchema, location="query")
    @billing_blp.response(200, schemas.StatementSchema(many=True))
    def get(self, query: dict[str, Any]) -> list[AgencyStatement]:
        """Agency statements of live invoices, newest month first (an agency manager sees
        only their own agency's)."""
        month = month_start(query["month"]) if "month" in query else None
        return statements_for(db_session(), agency_id=_own_agency(), period=month)


@blp.route("/agency/statements")
class AgencyStatements(MethodView):
    @access(Role.AGENCY_MANAGER)
    @blp.arguments(schemas.AgencyStatementQuerySchema, location="query")
    @blp.response(200, schemas.AgencyStatementRowSchema(many=True))
    @blp.paginate(RowsPage)
    def get(self, query: dict[str, Any]) -> TextQuery:
        """The agency's statements in every tenant it holds or held a contract with, newest
        month first; ``tenant`` narrows to one, ``month`` (YYYY-MM) to one month. Each row
        names its tenant: the statement's CSV and PDF are under that tenant's
        ``/billing/statements/<id>``."""
        agency_id = _own_agency()
        assert agency_id is not None  # agency managers only
        # Every tenant ever contracted: a statement outlives the contract it was earned under.
        tenants = contracted_tenants(db_session(), agency_id)
        if "tenant" in query:
            tenants = [tenant for tenant in tenants if tenant.slug == query["tenant"]]
        month = month_start(query["month"]) if "month" in query else None
        sql, params = agency_statements_sql(tenants, agency_id=agency_id, period=month)
        return TextQuery(sql, params, "period DESC, tenant, currency, id")


@tenant_routes(billing_blp, "/billing/statements/<int:statement_id>")
class StatementItem(MethodView):
    @access(*STATEMENT_READERS, scope="billing:read", tenant=True)
    @billing_blp.response(200, schemas.StatementSchema)
    def get(self, statement_id: int) -> AgencyStatement:
        """One agency statement."""
        return _statement(statement_id)[0]


@tenant_routes(billing_blp, "/billing/statements/<int:statement_id>/export.csv")
class StatementCsv(MethodView):
    @access(*STATEMENT_READERS, scope="billing:read", tenant=True)
    @billing_blp.response(200, content_type="text/csv")
    def get(self, statement_id: int) -> Response:
        """The agency's lines of the month as CSV."""
        statement, invoice = _statement(statement_id)
        name = f"statement-{statement.id}-{invoice.period:%Y-%m}-{invoice.currency}.csv"
        return _download(exports.statement_csv(db_session(), invoice, statement), name, "text/csv")


@tenant_routes(billing_blp, "/billing/statements/<int:statement_id>/export.pdf")
class StatementPdf(MethodView):
    @access(*STATEMENT_READERS, scope="billing:read", tenant=True)
    @billing_blp.response(200, content_type="application/pdf")
    def get(self, statement_id: int) -> Response:
        """The agency statement as a PDF."""
        statement, invoice = _statement(statement_id)
        name = f"statement-{statement.id}-{invoice.period:%Y-%m}-{invoice.currency}.pdf"
        return _download(
            exports.statement_pdf(db_session(), invoice, statement), name, "application/pdf"
        )
