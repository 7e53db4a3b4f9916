"""The portal's billing: contract versions, the month close (previewed first), invoices with
their lifecycle and exports, the commission ledger and the agencies' statements.

Every change goes through ``recova.billing``'s services, the very ones the JSON API calls
(``recova/billing/api.py``): versions are validated by ``create_contract_version``, a
close is the ``close_month_job`` on the billing queue, a preview is ``close_month`` with
``dry_run`` (it does the close's work and rolls it back), and the invoice transitions are
``issue_invoice``, ``mark_invoice_paid`` and ``void_invoice``, which refuse what an
invoice's state forbids (an issued invoice never changes); their refusals are shown on
the page. Downloads are the API's exports, byte for byte.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from flask import Response, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from sqlalchemy import Select, func, select
from werkzeug.wrappers import Response as BaseResponse
from wtforms import BooleanField, DateField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional

from recova.billing import exports
from recova.billing.invoices import (
    BillingError,
    close_month,
    issue_invoice,
    mark_invoice_paid,
    month_start,
    statements_for,
    void_invoice,
)
from recova.billing.jobs import close_job_id, close_month_job
from recova.billing.models import AgencyStatement, CommissionLine, ContractVersion, Invoice
from recova.billing.money import ROUNDING_MODES, minor_units
from recova.billing.terms import TermsError, create_contract_version
from recova.platform.agencies.contracts import AgencyContract
from recova.platform.agencies.models import Agency
from recova.platform.auth.principal import Principal
from recova.platform.kernel.errors import DomainError, abort
from recova.platform.kernel.extension import platform
from recova.platform.kernel.request_scope import db_session
from recova.platform.web.i18n import money, number
from recova.platform.web.pages import portal_page
from recova.platform.web.portal import blp
from recova.tenants.models import tenant_today

PAGE_SIZE = 50
#: How many months back the month choices go (the current month first).
MONTHS_BACK = 36

STATUS_LABELS = {
    "draft": _l("Draft"),
    "issued": _l("Issued"),
    "paid": _l("Paid"),
    "void": _l("Void"),
}
STATUS_BADGES = {"draft": "warn", "issued": "", "paid": "good", "void": "bad"}
KIND_LABELS = {"commission": _l("Commission"), "clawback": _l("Clawback")}
ROUNDING_LABELS = {
    "half_even": _l("Half to even"),
    "half_up": _l("Half up"),
    "half_down": _l("Half down"),
    "up": _l("Away from zero"),
    "down": _l("Toward zero"),
    "ceiling": _l("Toward positive (ceiling)"),
    "floor": _l("Toward negative (floor)"),
}
assert set(ROUNDING_LABELS) == set(ROUNDING_MODES)
TABS = (
    ("portal.billing", _l("Invoices")),
    ("portal.billing_versions", _l("Contract versions")),
    ("portal.billing_close", _l("Month close")),
    ("portal.billing_ledger", _l("Ledger")),
    ("portal.billing_statements", _l("Agency statements")),
)


# --- formatting ------------------------------------------------------------------------------


def amount(value: Decimal | str | int | None, currency: str) -> str:
    """Money in ``currency`` for the page's locale: the currency's minor-unit digits, more
    only where the amount has them (an exact unrounded figure keeps every digit)."""
    if value is None:
        return "—"
    exact = Decimal(value)
    quantised = exact.quantize(Decimal(1).scaleb(-minor_units(currency)))
    return money(quantised if quantised == exact else exact.normalize(), currency)


def rate(value: Decimal | str | None) -> str:
    """A percentage as stored (``12.5`` -> ``12.5%``), digits kept."""
    if value is None:
        return "—"
    return f"{number(Decimal(value).normalize())}%"


def _render(template: str, status: int = 200, **context: Any) -> tuple[str, int]:
    page = render_template(
        f"portal/billing/{template}",
        tabs=TABS,
        amount=amount,
        rate=rate,
        status_labels=STATUS_LABELS,
        status_badges=STATUS_BADGES,
        kind_labels=KIND_LABELS,
        rounding_labels=ROUNDING_LABELS,
        **context,
    )
    return page, status


def _principal() -> Principal:
    principal: Principal = g.page_principal
    return principal


def _today() -> dt.date:
    return tenant_today(g.tenant.timezone)


def choices(pairs: Any) -> list[SelectChoice]:
    """``(value, label)`` pairs as a select's choices."""
    return [SelectChoice(str(value), label) for value, label in pairs]


def any_and(pairs: Any) -> list[SelectChoice]:
    """ "Any" (no filter) and then ``pairs``."""
    return [SelectChoice("", _l("Any")), *choices(pairs)]


def month_choices() -> list[SelectChoice]:
    """The months one may preview or close: this one (on the tenant's calendar) and back."""
    month = _today().replace(day=1)
    months = []
    for _n in range(MONTHS_BACK):
        months.append(SelectChoice(f"{month:%Y-%m}", f"{month:%Y-%m}"))
        month = (month - dt.timedelta(days=1)).replace(day=1)
    return months


def _agency_names(ids: set[int | None]) -> dict[int, str]:
    wanted = sorted(i for i in ids if i is not None)
    if not wanted:
        return {}
    rows = db_session().execute(select(Agency.id, Agency.name).where(Agency.id.in_(wanted)))
    return {row.id: row.name for row in rows}


def contracted_agencies() -> list[tuple[int, str]]:
    """Every agency the tenant holds or held a contract with, by name."""
    rows = db_session().execute(
        select(Agency.id, Agency.name)
        .where(
            Agency.id.in_(
                select(AgencyContract.agency_id).where(AgencyContract.tenant_id == g.tenant.id)
            )
        )
        .order_by(Agency.name, Agency.id)
    )
    return [(row.id, row.name) for row in rows]


# --- invoices --------------------------------------------------------------------------------


class InvoiceFilterForm(FlaskForm):
    class Meta:
        csrf = False

    status = SelectField(
        _l("Status"),
        choices=any_and(STATUS_LABELS.items()),
        validators=[Optional()],
    )
    month = SelectField(_l("Month"), validators=[Optional()], validate_choice=False)


@blp.get("/billing/")
@portal_page
def billing() -> tuple[str, int]:
    """The tenant's invoices, newest number first, by status and month; ``before`` pages on."""
    form = InvoiceFilterForm(request.args)
    form.month.choices = [SelectChoice("", _l("Any")), *month_choices()]
    statement = select(Invoice).order_by(Invoice.number.desc()).limit(PAGE_SIZE + 1)
    if form.status.data in STATUS_LABELS:
        statement = statement.where(Invoice.status == form.status.data)
    if form.month.data:
        try:
            statement = statement.where(Invoice.period == month_start(form.month.data))
        except BillingError as error:
            form.month.errors = [str(error)]
    before = request.args.get("before", type=int)
    if before is not None:
        statement = statement.where(Invoice.number < before)
    rows = list(db_session().scalars(statement))
    more = len(rows) > PAGE_SIZE
    invoices = rows[:PAGE_SIZE]
    args: dict[str, Any] = {k: v for k, v in request.args.items() if k != "before" and v}
    next_url = url_for("portal.billing", **args, before=invoices[-1].number) if more else None
    first_url = url_for("portal.billing", **args) if before is not None else None
    return _render(
        "invoices.html", form=form, invoices=invoices, next_url=next_url, first_url=first_url
    )


class PaidForm(FlaskForm):
    paid_on = DateField(_l("Paid on"), validators=[Optional()])


class VoidForm(FlaskForm):
    reason = TextAreaField(
        _l("Reason"),
        validators=[
            DataRequired(message=_l("Say why the invoice is voided.")),
            Length(max=500),
        ],
    )


class IssueForm(FlaskForm):
    """Only the CSRF token: issuing takes nothing else."""


def _invoice(invoice_id: int) -> Invoice:
    invoice = db_session().get(Invoice, invoice_id)
    if invoice is None:
        abort(404)
    return invoice


def invoice_line_page(invoice: Invoice, after: int | None) -> tuple[list[CommissionLine], bool]:
    """A page of the invoice's own lines (its period and currency, up to its last line),
    in ledger order after line ``after``: a keyset page on the primary key."""
    statement = (
        select(CommissionLine)
        .where(
            CommissionLine.period == invoice.period,
            CommissionLine.currency == invoice.currency,
            CommissionLine.id <= invoice.last_line_id,
        )
        .order_by(CommissionLine.id)
        .limit(PAGE_SIZE + 1)
    )
    if after is not None:
        statement = statement.where(CommissionLine.id > after)
    rows = list(db_session().scalars(statement))
    return rows[:PAGE_SIZE], len(rows) > PAGE_SIZE


def _invoice_page(
    invoice: Invoice,
    status: int = 200,
    *,
    issue_form: IssueForm | None = None,
    paid_form: PaidForm | None = None,
    void_form: VoidForm | None = None,
) -> tuple[str, int]:
    after = request.args.get("after", type=int)
    lines, more = invoice_line_page(invoice, after)
    summary = invoice.summary or {}
    return _render(
        "invoice.html",
        status,
        invoice=invoice,
        lines=lines,
        next_url=(
            url_for("portal.billing_invoice", invoice_id=invoice.id, after=lines[-1].id)
            if more
            else None
        ),
        first_url=(
            url_for("portal.billing_invoice", invoice_id=invoice.id) if after is not None else None
        ),
        agencies=_agency_names({line.agency_id for line in lines}),
        by_bucket=summary.get("by_bucket", []),
        by_agency=summary.get("by_agency", []),
        version=(
            db_session().get(ContractVersion, invoice.contract_version_id)
            if invoice.contract_version_id
            else None
        ),
        issue_form=issue_form or IssueForm(formdata=None),
        paid_form=paid_form or PaidForm(formdata=None, paid_on=_today()),
        void_form=void_form or VoidForm(formdata=None),
    )


@blp.get("/billing/invoices/<int:invoice_id>")
@portal_page
def billing_invoice(invoice_id: int) -> tuple[str, int]:
    """One invoice: its totals, its subtotals by bucket and agency, its lines, its actions."""
    return _invoice_page(_invoice(invoice_id))


def _changed(invoice: Invoice, message: str) -> BaseResponse:
    flash(message, "good")
    return redirect(url_for("portal.billing_invoice", invoice_id=invoice.id))


@blp.post("/billing/invoices/<int:invoice_id>/issue")
@portal_page
def billing_invoice_issue(invoice_id: int) -> BaseResponse | tuple[str, int]:
    """Issue a draft (``issue_invoice``: once its month has ended and it is up to date)."""
    invoice = _invoice(invoice_id)
    form = IssueForm()
    if not form.validate_on_submit():
        return _invoice_page(invoice, 400, issue_form=form)
    try:
        issue_invoice(db_session(), invoice, tenant=g.tenant)
    except BillingError as error:
        form.form_errors = [str(error)]
        return _invoice_page(invoice, error.status, issue_form=form)
    return _changed(invoice, _("Invoice %(number)s is issued.", number=invoice.number))


@blp.post("/billing/invoices/<int:invoice_id>/paid")
@portal_page
def billing_invoice_paid(invoice_id: int) -> BaseResponse | tuple[str, int]:
    """Record that an issued invoice was paid, on the date given (today if none)."""
    invoice = _invoice(invoice_id)
    form = PaidForm()
    if not form.validate_on_submit():
        return _invoice_page(invoice, 422, paid_form=form)
    try:
        mark_invoice_paid(db_session(), invoice, tenant=g.tenant, paid_on=form.paid_on.data)
    except BillingError as error:
        form.form_errors = [str(error)]
        return _invoice_page(invoice, error.status, paid_form=form)
    return _changed(invoice, _("Invoice %(number)s is marked paid.", number=invoice.number))


@blp.post("/billing/invoices/<int:invoice_id>/void")
@portal_page
def billing_invoice_void(invoice_id: int) -> BaseResponse | tuple[str, int]:
    """Void a draft or issued invoice with a reason; the next close bills the month anew."""
    invoice = _invoice(invoice_id)
    form = VoidForm()
    if not form.validate_on_submit():
        return _invoice_page(invoice, 422, void_form=form)
    try:
        void_invoice(db_session(), invoice, tenant=g.tenant, reason=form.reason.data or "")
    except BillingError as error:
        form.form_errors = [str(error)]
        return _invoice_page(invoice, error.status, void_form=form)
    return _changed(invoice, _("Invoice %(number)s is void.", number=invoice.number))


def _download(content: bytes, filename: str, mimetype: str) -> Response:
    return Response(
        content,
        mimetype=mimetype,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@blp.get("/billing/invoices/<int:invoice_id>/export.pdf")
@portal_page
def billing_invoice_pdf(invoice_id: int) -> Response:
    """The invoice as a PDF (the API's export)."""
    invoice = _invoice(invoice_id)
    name = exports.export_file_name(g.tenant.slug, invoice, "pdf")
    return _download(exports.invoice_pdf(db_session(), invoice), name, "application/pdf")


@blp.get("/billing/invoices/<int:invoice_id>/export.csv")
@portal_page
def billing_invoice_csv(invoice_id: int) -> Response:
    """Every line of the invoice as CSV (the API's export: formula-safe cells)."""
    invoice = _invoice(invoice_id)
    name = exports.export_file_name(g.tenant.slug, invoice, "csv")
    return _download(exports.invoice_csv(db_session(), invoice), name, "text/csv")


# --- contract versions -----------------------------------------------------------------------


class VersionForm(FlaskForm):
    currency = StringField(
        _l("Currency"),
        validators=[DataRequired(), Length(min=3, max=3)],
        filters=[lambda value: value.strip().upper() if isinstance(value, str) else value],
    )
    effective_from = DateField(_l("Effective from"), validators=[DataRequired()])
    rates = TextAreaField(_l("Rates by bucket (percent)"), validators=[DataRequired()])
    tiers = TextAreaField(_l("Monthly volume tiers"), validators=[Optional()])
    minimum_fee = StringField(_l("Minimum monthly fee"), validators=[Optional()])
    case_cap = StringField(_l("Cap per case"), validators=[Optional()])
    vat_rate = StringField(_l("VAT rate (percent)"), validators=[Optional()])
    rounding = SelectField(
        _l("Rounding"), choices=choices(ROUNDING_LABELS.items()), default="half_even"
    )
    unplaced_commission = BooleanField(_l("Charge commission on what the tenant recovers itself"))


def parse_rates(text: str) -> dict[str, str]:
    """``M1: 8`` per line (``=`` works too) as ``{"M1": "8"}``; ``ValueError`` names the
    line that is not one."""
    rates: dict[str, str] = {}
    for number_, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        bucket, sep, value = line.replace("=", ":").partition(":")
        if not sep or not bucket.strip() or not value.strip():
            raise ValueError(
                _("Line %(n)s: write a bucket, a colon and a percentage (M1: 8).", n=number_)
            )
        if bucket.strip() in rates:
            raise ValueError(_("Line %(n)s: bucket %(b)s is rated twice.", n=number_, b=bucket))
        rates[bucket.strip()] = value.strip().rstrip("%").strip()
    return rates


def parse_tiers(text: str) -> list[dict[str, str | None]] | None:
    """``from, to, factor`` per line (``to`` empty on the open last tier); None if empty."""
    tiers: list[dict[str, str | None]] = []
    for number_, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        parts = [part.strip() for part in line.split(",")]
        if len(parts) != 3:
            raise ValueError(
                _("Line %(n)s: write from, to and factor separated by commas.", n=number_)
            )
        low, high, factor = parts
        tiers.append({"from": low, "to": high or None, "factor": factor})
    return tiers or None


def _field_or_form(form: FlaskForm, name: str, message: str) -> None:
    target = getattr(form, name, None)
    if target is not None and hasattr(target, "errors"):
        target.errors = [*target.errors, message]
    else:
        form.form_errors = [*getattr(form, "form_errors", []), message]


@blp.get("/billing/contract-versions")
@portal_page
def billing_versions() -> tuple[str, int]:
    """The contract versions, per currency, newest first (the one in force marked)."""
    versions = list(
        db_session().scalars(
            select(ContractVersion).order_by(
                ContractVersion.currency, ContractVersion.effective_from.desc()
            )
        )
    )
    today = _today()
    in_force = {}
    for version in versions:  # newest first per currency: the first begun is in force
        if version.effective_from <= today and version.currency not in in_force:
            in_force[version.currency] = version.id
    return _render("versions.html", versions=versions, in_force=set(in_force.values()))


@blp.route("/billing/contract-versions/new", methods=["GET", "POST"])
@portal_page
def billing_versions_new() -> BaseResponse | tuple[str, int]:
    """Add a contract version from a date (the service validates every term)."""
    form = VersionForm()
    if request.method == "GET":
        form.currency.data = form.currency.data or g.tenant.currency
        form.rates.data = form.rates.data or "*: 10"
        return _render("version_new.html", form=form)
    if not form.validate_on_submit():
        return _render("version_new.html", 422, form=form)
    data: dict[str, Any] = {
        "currency": form.currency.data,
        "effective_from": form.effective_from.data,
        "minimum_fee": form.minimum_fee.data or None,
        "case_cap": form.case_cap.data or None,
        "vat_rate": form.vat_rate.data or None,
        "rounding": form.rounding.data,
        "unplaced_commission": bool(form.unplaced_commission.data),
    }
    parsed = True
    for name, parse in (("rates", parse_rates), ("tiers", parse_tiers)):
        try:
            data[name] = parse(getattr(form, name).data or "")
        except ValueError as error:
            _field_or_form(form, name, str(error))
            parsed = False
    if not parsed:
        return _render("version_new.html", 422, form=form)
    try:
        version = create_contract_version(
            db_session(), tenant_id=g.tenant.id, data=data, created_by=_principal().subject_id
        )
    except TermsError as error:
        for name, message in error.errors.items():
            _field_or_form(form, name, str(message))
        return _render("version_new.html", error.status, form=form)
    flash(
        _(
            "Version %(version)s of the %(currency)s contract is added.",
            version=version.version,
            currency=version.currency,
        ),
        "good",
    )
    return redirect(url_for("portal.billing_versions"))


# --- the month close -------------------------------------------------------------------------


class MonthForm(FlaskForm):
    month = SelectField(_l("Month"), validators=[DataRequired()])


class PreviewForm(MonthForm):
    class Meta:
        csrf = False


def _month_form(form_class: type[MonthForm], *args: Any, **kwargs: Any) -> MonthForm:
    form = form_class(*args, **kwargs)
    form.month.choices = month_choices()
    return form


@blp.get("/billing/close")
@portal_page
def billing_close() -> tuple[str, int]:
    """Choose a month; with one, the preview of its close: what it would write, per
    currency, rolled back (nothing changes)."""
    preview_form = _month_form(PreviewForm, request.args)
    preview = None
    status = 200
    if "month" in request.args:
        if preview_form.validate():
            try:
                preview = close_month(
                    platform().db, tenant=g.tenant, month=preview_form.month.data, dry_run=True
                )
            except DomainError as error:
                preview_form.form_errors = [str(error)]
                status = 422
        else:
            status = 422
    month = preview_form.month.data or month_choices()[1].value
    close_form = _month_form(MonthForm, formdata=None, month=month)
    existing = (
        list(
            db_session().scalars(
                select(Invoice)
                .where(Invoice.period == month_start(month))
                .order_by(Invoice.currency, Invoice.number)
            )
        )
        if preview is not None
        else []
    )
    return _render(
        "close.html",
        status,
        preview_form=preview_form,
        close_form=close_form,
        preview=preview,
        existing=existing,
        month=month,
    )


@blp.post("/billing/close")
@portal_page
def billing_close_run() -> BaseResponse | tuple[str, int]:
    """Close a month: the close job on the billing queue (the scheduled close is the same
    job, under the same id, so a month is never closed twice at once)."""
    form = _month_form(MonthForm)
    if not form.validate_on_submit():
        preview_form = _month_form(PreviewForm, formdata=None, month=form.month.data)
        return _render(
            "close.html",
            422,
            preview_form=preview_form,
            close_form=form,
            preview=None,
            existing=[],
            month=form.month.data,
        )
    month = form.month.data
    close_month_job.enqueue_after_commit(
        db_session(),
        platform(),
        job_id=close_job_id(g.tenant.id, month),
        tenant_id=g.tenant.id,
        month=month,
    )
    flash(
        _(
            "The close of %(month)s is queued; its invoices appear in the list once it has run.",
            month=month,
        ),
        "good",
    )
    return redirect(url_for("portal.billing", month=month))


# --- the ledger ------------------------------------------------------------------------------


class LedgerFilterForm(FlaskForm):
    class Meta:
        csrf = False

    month = SelectField(_l("Month"), validators=[Optional()])
    agency = SelectField(_l("Agency"), validators=[Optional()])
    kind = SelectField(_l("Kind"), choices=any_and(KIND_LABELS.items()), validators=[Optional()])


def ledger_statement(
    *,
    month: dt.date | None,
    agency_id: int | None,
    kind: str | None,
    after: int | None,
    before: int | None,
) -> Select[Any]:
    """A keyset page of lines on the primary key (``after``: the next page, ``before``:
    the previous one, in reverse), filtered. With a month, the scan starts at the month's
    first line (found through the period's block-range index), not at the ledger's."""
    statement = select(CommissionLine)
    if month is not None:
        first = (
            select(func.min(CommissionLine.id))
            .where(CommissionLine.period == month)
            .scalar_subquery()
        )
        statement = statement.where(CommissionLine.period == month, CommissionLine.id >= first)
    if agency_id is not None:
        statement = statement.where(CommissionLine.agency_id == agency_id)
    if kind is not None:
        statement = statement.where(CommissionLine.kind == kind)
    if before is not None:
        return (
            statement.where(CommissionLine.id < before)
            .order_by(CommissionLine.id.desc())
            .limit(PAGE_SIZE + 1)
        )
    if after is not None:
        statement = statement.where(CommissionLine.id > after)
    return statement.order_by(CommissionLine.id).limit(PAGE_SIZE + 1)


@blp.get("/billing/ledger")
@portal_page
def billing_ledger() -> tuple[str, int]:
    """Commission and clawback lines in ledger order, by month, agency and kind."""
    form = LedgerFilterForm(request.args)
    agencies = contracted_agencies()
    form.month.choices = [SelectChoice("", _l("Any")), *month_choices()]
    form.agency.choices = any_and(agencies)
    status = 200
    if not form.validate():
        status = 422
    month = month_start(form.month.data) if form.month.data and not form.month.errors else None
    agency_id = int(form.agency.data) if form.agency.data and not form.agency.errors else None
    kind = form.kind.data if form.kind.data in KIND_LABELS else None
    after = request.args.get("after", type=int)
    before = request.args.get("before", type=int)
    rows: list[CommissionLine] = list(
        db_session().scalars(
            ledger_statement(
                month=month, agency_id=agency_id, kind=kind, after=after, before=before
            )
        )
    )
    more = len(rows) > PAGE_SIZE
    lines = rows[:PAGE_SIZE]
    if before is not None:
        lines.reverse()
    has_next = more if before is None else True
    has_previous = (after is not None) or (before is not None and more)
    args: dict[str, Any] = {
        k: v for k, v in request.args.items() if k not in ("after", "before") and v
    }
    return _render(
        "ledger.html",
        status,
        form=form,
        lines=lines,
        agencies=dict(agencies) | _agency_names({line.agency_id for line in lines}),
        next_url=(
            url_for("portal.billing_ledger", **args, after=lines[-1].id)
            if has_next and lines
            else None
        ),
        previous_url=(
            url_for("portal.billing_ledger", **args, before=lines[0].id)
            if has_previous and lines
            else None
        ),
        first_url=url_for("portal.billing_ledger", **args)
        if (after or before) is not None
        else None,
    )


# --- agency statements -----------------------------------------------------------------------


class StatementFilterForm(FlaskForm):
    class Meta:
        csrf = False

    month = SelectField(_l("Month"), validators=[Optional()])


@blp.get("/billing/statements")
@portal_page
def billing_statements() -> tuple[str, int]:
    """What the platform owes each agency, per month (statements of live invoices)."""
    form = StatementFilterForm(request.args)
    form.month.choices = [SelectChoice("", _l("Any")), *month_choices()]
    status = 200 if form.validate() else 422
    period = month_start(form.month.data) if form.month.data and not form.month.errors else None
    statements = statements_for(db_session(), period=period)
    months: dict[dt.date, list[AgencyStatement]] = {}
    for statement in statements:
        months.setdefault(statement.period, []).append(statement)
    return _render(
        "statements.html",
        status,
        form=form,
        months=months,
        agencies=_agency_names({s.agency_id for s in statements}),
    )


def _statement(statement_id: int) -> tuple[AgencyStatement, Invoice]:
    """A statement of a live invoice (one of a void invoice is gone)."""
    statement = db_session().get(AgencyStatement, statement_id)
    if statement is None:
        abort(404)
    invoice = db_session().get(Invoice, statement.invoice_id)
    if invoice is None or invoice.status == "void":
        abort(404)
    return statement, invoice


def _statement_name(statement: AgencyStatement, invoice: Invoice, extension: str) -> str:
    return f"statement-{statement.id}-{invoice.period:%Y-%m}-{invoice.currency}.{extension}"


@blp.get("/billing/statements/<int:statement_id>/export.pdf")
@portal_page
def billing_statement_pdf(statement_id: int) -> Response:
    """An agency statement as a PDF (the API's export)."""
    statement, invoice = _statement(statement_id)
    content = exports.statement_pdf(db_session(), invoice, statement)
    return _download(content, _statement_name(statement, invoice, "pdf"), "application/pdf")


@blp.get("/billing/statements/<int:statement_id>/export.csv")
@portal_page
def billing_statement_csv(statement_id: int) -> Response:
    """An agency's lines of the month as CSV (the API's export)."""
    statement, invoice = _statement(statement_id)
    content = exports.statement_csv(db_session(), invoice, statement)
    return _download(content, _statement_name(statement, invoice, "csv"), "text/csv")
