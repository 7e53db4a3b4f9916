"""The agency manager's placements and statements, across every tenant the agency serves.

Placements: the counts per tenant (active, recalled this month, ending within a week),
and one tenant's placements at a time, active or recalled, in keyset pages of 50
(``allocation.agency_book``). Statements: the agency's monthly statements of every
served tenant, each read by its own query (``billing.invoices.agency_statements_sql``),
with the PDF and CSV the API exports (``billing.exports``; the CSV's cells are
formula-safe). A download is under its tenant (``@manager_case_page`` binds it) and
finds only this agency's statement of a live invoice: another agency's id is 404.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Response, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select, text
from werkzeug.routing import BuildError

from recova.billing import exports
from recova.billing.invoices import agency_statements_sql
from recova.billing.models import AgencyStatement, Invoice
from recova.platform.allocation import agency_book
from recova.platform.allocation.services import tenants_served
from recova.platform.kernel.errors import abort
from recova.platform.kernel.request_scope import db_session
from recova.platform.web.pages import manager_case_page, manager_page
from recova.platform.web.workspace import blp
from recova.platform.web.workspace.frame import current_agency
from recova.tenants.models import Tenant, tenant_today

ACTIVE = "active"
RECALLED = "recalled"
STATES = {ACTIVE: _l("Active now"), RECALLED: _l("Recalled")}

#: Recall reasons the platform itself gives (runs, flags); a tenant's own shows as typed.
RECALL_REASONS = {
    "expired": _l("Placement period ended"),
    "excluded_flag": _l("A flag excludes the case"),
    "case_closed": _l("The case closed"),
    "on_hold": _l("The case is on hold"),
    "agency_unavailable": _l("The agency is unavailable"),
}

#: An invoice's status, which its statements share.
INVOICE_STATUSES = {"draft": _l("Draft"), "issued": _l("Issued"), "paid": _l("Paid")}

#: The statements of one tenant shown at most (a few years of months and currencies).
STATEMENTS_PER_TENANT = 120


def case_link(tenant_slug: str, case_id: int) -> str | None:
    """The workspace's case page, once that page exists (otherwise the id shows alone)."""
    try:
        return url_for("workspace.queue_case", tenant_slug=tenant_slug, case_id=case_id)
    except BuildError:
        return None


def _served_tenant(tenants: list[Tenant], slug: str | None) -> Tenant | None:
    """The tenant the filter names (404 if the agency does not serve it), else None."""
    if not slug:
        return None
    for tenant in tenants:
        if tenant.slug == slug:
            return tenant
    abort(404, message=_("There is no such tenant, or not one your agency serves."))
    return None  # not reached: abort raises


@blp.get("/placements", endpoint="placements")
@manager_page
def placements_page() -> tuple[str, int]:
    """The agency's placements in one tenant (active by end date, or recalled by recall
    date), a keyset page of 50, and every served tenant's counts."""
    session = db_session()
    agency = current_agency()
    tenants = tenants_served(session, agency.id)
    counts = {
        tenant.slug: agency_book.placement_counts(
            session, tenant, agency_id=agency.id, today=tenant_today(tenant.timezone)
        )
        for tenant in tenants
    }
    selected = _served_tenant(tenants, request.args.get("tenant")) or (
        tenants[0] if tenants else None
    )
    state = request.args.get("state") if request.args.get("state") in STATES else ACTIVE
    after_token = request.args.get("after")
    page = None
    if selected is not None:
        page = agency_book.agency_placements(
            session,
            selected,
            agency_id=agency.id,
            recalled=state == RECALLED,
            after=agency_book.PlacementKey.parse(after_token),
            limit=agency_book.PAGE_SIZE,
        )
    return render_template(
        "work/placements/index.html",
        tenants=tenants,
        counts=counts,
        selected=selected,
        state=state,
        states=STATES,
        page=page,
        first_page=bool(after_token),
        recall_reasons=RECALL_REASONS,
        ending_days=agency_book.ENDING_WITHIN_DAYS,
        case_link=case_link,
    ), 200


# --- statements ------------------------------------------------------------------------------


def _parse_month(value: str | None) -> dt.date | None:
    """``YYYY-MM`` as the month's first day; ``ValueError`` if it is not one."""
    if not value:
        return None
    year, sep, month = value.partition("-")
    if not sep or len(year) != 4 or len(month) != 2:
        raise ValueError(value)
    return dt.date(int(year), int(month), 1)


def _statements(tenants: list[Tenant], *, agency_id: int, period: dt.date | None) -> list[Any]:
    """The agency's statements of live invoices in each tenant (its own query each),
    newest month first, each row naming its tenant."""
    session = db_session()
    rows: list[Any] = []
    for tenant in tenants:
        sql, params = agency_statements_sql([tenant], agency_id=agency_id, period=period)
        rows.extend(
            session.execute(
                text(f"{sql} ORDER BY period DESC, currency, id LIMIT :statements_limit"),
                {**params, "statements_limit": STATEMENTS_PER_TENANT},
            ).mappings()
        )
    rows.sort(key=lambda row: (-row["period"].toordinal(), row["tenant"], row["currency"]))
    return rows


@blp.get("/statements", endpoint="statements")
@manager_page
def statements_page() -> tuple[str, int]:
    """The agency's monthly statements across the tenants it serves, with downloads."""
    session = db_session()
    agency = current_agency()
    tenants = tenants_served(session, agency.id)
    selected = (
        _served_tenant(tenants, request.args.get("tenant")) if request.args.get("tenant") else None
    )
    month_error = None
    try:
        period = _parse_month(request.args.get("month"))
    except ValueError:
        period = None
        month_error = _("Give the month as YYYY-MM.")
    rows = _statements(
        [selected] if selected is not None else tenants, agency_id=agency.id, period=period
    )
    return render_template(
        "work/placements/statements.html",
        tenants=tenants,
        selected=selected,
        month=request.args.get("month", ""),
        month_error=month_error,
        rows=rows,
        invoice_statuses=INVOICE_STATUSES,
    ), 422 if month_error else 200


def _own_statement(statement_id: int) -> tuple[AgencyStatement, Invoice]:
    """This agency's statement in the page's tenant, of a live invoice; else 404."""
    session = db_session()
    found = session.scalar(
        select(AgencyStatement).where(
            AgencyStatement.id == statement_id, AgencyStatement.agency_id == current_agency().id
        )
    )
    invoice = session.get(Invoice, found.invoice_id) if found is not None else None
    if found is None or invoice is None or invoice.status == "void":
        abort(404, message=_("There is no statement %(id)s.", id=statement_id))
    return found, invoice


def _download(content: bytes, filename: str, mimetype: str) -> Response:
    return Response(
        content,
        mimetype=mimetype,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _file_name(statement: AgencyStatement, invoice: Invoice, extension: str) -> str:
    """The API's name for the statement's file."""
    return f"statement-{statement.id}-{invoice.period:%Y-%m}-{invoice.currency}.{extension}"


@blp.get("/<slug:tenant_slug>/statements/<int:statement_id>/export.pdf", endpoint="statements_pdf")
@manager_case_page
def statements_pdf(statement_id: int) -> Response:
    """The agency's statement as a PDF (the API's export)."""
    statement, invoice = _own_statement(statement_id)
    return _download(
        exports.statement_pdf(db_session(), invoice, statement),
        _file_name(statement, invoice, "pdf"),
        "application/pdf",
    )


@blp.get("/<slug:tenant_slug>/statements/<int:statement_id>/export.csv", endpoint="statements_csv")
@manager_case_page
def statements_csv(statement_id: int) -> Response:
    """The agency's lines of the month as CSV (the API's export: formula-safe cells)."""
    statement, invoice = _own_statement(statement_id)
    return _download(
        exports.statement_csv(db_session(), invoice, statement),
        _file_name(statement, invoice, "csv"),
        "text/csv",
    )
