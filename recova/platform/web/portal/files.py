"""Portfolio files: upload a portfolio or payment file, map its columns, preview its first
rows as they would be stored, load it, and follow the run to its row errors; HTTP sources
are registered and tested here too.

Every change goes through ``recova.connectors.services`` (what the JSON API calls); the
previews through ``recova.connectors.preview``, which runs the pipeline's own parser on a
file's first rows and writes nothing.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from flask import (
    Response,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from sqlalchemy import select
from werkzeug.wrappers import Response as BaseResponse
from wtforms import (
    BooleanField,
    DateField,
    Field,
    HiddenField,
    IntegerField,
    PasswordField,
    SelectChoice,
    SelectField,
    StringField,
    URLField,
)
from wtforms.validators import URL, DataRequired, Length, NumberRange, Optional, Regexp

from recova.connectors import preview, services
from recova.connectors.base import SourceError
from recova.connectors.fields import FIELDS
from recova.connectors.models import (
    FeedKind,
    HttpSource,
    IngestionFile,
    IngestionMapping,
    IngestionRowError,
    IngestionRun,
    RunMode,
    RunStatus,
    Severity,
)
from recova.connectors.suggest import suggest_fields
from recova.platform.auth.principal import current_principal
from recova.platform.kernel.errors import DomainError
from recova.platform.kernel.extension import platform
from recova.platform.kernel.request_scope import db_session
from recova.platform.web.pages import portal_page
from recova.platform.web.portal import blp
from recova.tenants.models import tenant_today

RUNS_PER_PAGE = 25
ERRORS_PER_PAGE = 50
LIVE = (RunStatus.QUEUED, RunStatus.RUNNING)
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
NAME_RULE = _l("Letters, digits and _ . - only, starting with a letter or digit.")

#: Recova's fields as the page names them.
FIELD_LABELS: dict[str, Any] = {
    "account_external_id": _l("Account (loan) id"),
    "debtor_external_id": _l("Borrower id"),
    "full_name": _l("Borrower's name"),
    "national_id": _l("National ID"),
    "phone": _l("Phone"),
    "phone2": _l("Second phone"),
    "email": _l("E-mail"),
    "address": _l("Address"),
    "region": _l("Region (province)"),
    "language": _l("Preferred language"),
    "product": _l("Loan product"),
    "currency": _l("Currency"),
    "original_principal": _l("Principal lent"),
    "outstanding_principal": _l("Principal outstanding"),
    "outstanding_interest": _l("Interest outstanding"),
    "outstanding_fees": _l("Fees outstanding"),
    "outstanding_penalties": _l("Penalties outstanding"),
    "overdue_amount": _l("Overdue amount"),
    "interest_rate": _l("Annual interest rate"),
    "due_date": _l("Due date"),
    "days_past_due": _l("Days past due"),
    "contact1_name": _l("Contact 1: name"),
    "contact1_phone": _l("Contact 1: phone"),
    "contact1_relation": _l("Contact 1: relation"),
    "contact2_name": _l("Contact 2: name"),
    "contact2_phone": _l("Contact 2: phone"),
    "contact2_relation": _l("Contact 2: relation"),
    "contact3_name": _l("Contact 3: name"),
    "contact3_phone": _l("Contact 3: phone"),
    "contact3_relation": _l("Contact 3: relation"),
    "payment_external_id": _l("Payment id"),
    "amount": _l("Amount"),
    "paid_at": _l("Paid at"),
    "channel": _l("Channel"),
    "paid_to": _l("Paid to"),
    "reverses_payment_external_id": _l("Reverses payment id"),
}
#: The preview's columns (stored names, see ``preview.ACCOUNT_SHOWN``).
STORED_LABELS: dict[str, Any] = {
    "external_id": _l("External id"),
    "debtor_external_id": _l("Borrower id"),
    "full_name": _l("Borrower's name"),
    "nid_masked": _l("National ID"),
    "region": _l("Region (province)"),
    "language": _l("Preferred language"),
    "product": _l("Loan product"),
    "currency": _l("Currency"),
    "original_principal": _l("Principal lent"),
    "outstanding_principal": _l("Principal outstanding"),
    "outstanding_interest": _l("Interest outstanding"),
    "outstanding_fees": _l("Fees outstanding"),
    "outstanding_penalties": _l("Penalties outstanding"),
    "overdue_amount": _l("Overdue amount"),
    "interest_rate": _l("Annual interest rate"),
    "due_date": _l("Due date"),
    "days_past_due": _l("Days past due"),
    "account_external_id": _l("Account (loan) id"),
    "kind": _l("Kind"),
    "amount": _l("Amount"),
    "paid_at": _l("Paid at"),
    "channel": _l("Channel"),
    "paid_to": _l("Paid to"),
    "reverses_external_id": _l("Reverses payment id"),
}
KIND_LABELS = {FeedKind.PORTFOLIO: _l("Portfolio"), FeedKind.PAYMENTS: _l("Payments")}
MODE_LABELS = {RunMode.DELTA: _l("Delta"), RunMode.SNAPSHOT: _l("Snapshot")}
STATUS_LABELS = {
    RunStatus.QUEUED: _l("Queued"),
    RunStatus.RUNNING: _l("Running"),
    RunStatus.COMPLETED: _l("Completed"),
    RunStatus.FAILED: _l("Failed"),
    RunStatus.HELD: _l("Held for confirmation"),
}
STATUS_BADGES = {
    RunStatus.QUEUED: "",
    RunStatus.RUNNING: "warn",
    RunStatus.COMPLETED: "good",
    RunStatus.FAILED: "bad",
    RunStatus.HELD: "warn",
}


# --- forms --------------------------------------------------------------------------------


def _choices(pairs: list[tuple[str, Any]]) -> list[SelectChoice]:
    return [SelectChoice(value, label) for value, label in pairs]


class UploadForm(FlaskForm):
    file = FileField(_l("File"), validators=[FileRequired(_l("Choose a file to upload."))])
    kind = SelectField(
        _l("The file holds"),
        choices=_choices(
            [
                (FeedKind.PORTFOLIO.value, _l("Portfolio: accounts and borrowers")),
                (FeedKind.PAYMENTS.value, _l("Payments and reversals")),
            ]
        ),
    )
    connector = SelectField(
        _l("Format"),
        choices=_choices(
            [
                ("", _l("From the file name")),
                ("csv", _l("CSV (UTF-8 or GBK)")),
                ("xlsx", _l("Excel (.xlsx)")),
                ("jsonl", _l("JSON lines")),
            ]
        ),
        default="",
    )


class MappingForm(FlaskForm):
    """The mapping and run options of one file; ``column_<n>`` fields are added per file."""

    kind = HiddenField()
    mapping = SelectField(_l("Mapping"), validate_choice=False)
    name = StringField(
        _l("Name of the new mapping"),
        validators=[Optional(), Length(max=64), Regexp(NAME_PATTERN, message=NAME_RULE)],
    )
    day_first = BooleanField(_l("Dates are day first (05/03/2024 is 5 March)"))
    mode = SelectField(
        _l("Mode"),
        choices=_choices(
            [
                (RunMode.DELTA.value, _l("Delta: add and update the accounts in the file")),
                (
                    RunMode.SNAPSHOT.value,
                    _l("Snapshot: the file is the whole book; recall accounts not in it"),
                ),
            ]
        ),
        default=RunMode.DELTA.value,
    )
    all_or_nothing = BooleanField(_l("All or nothing: load nothing if any row is rejected"))
    as_of = DateField(_l("Portfolio date"), validators=[Optional()])


class SourceForm(FlaskForm):
    name = StringField(
        _l("Source name"),
        validators=[
            DataRequired(_l("Give the source a name.")),
            Length(max=64),
            Regexp(NAME_PATTERN, message=NAME_RULE),
        ],
    )
    url = URLField(
        _l("URL"),
        validators=[
            DataRequired(_l("Give the endpoint's URL.")),
            URL(require_tld=False, message=_l("Give an http or https URL.")),
        ],
    )
    records_path = StringField(_l("Records path"), validators=[Optional(), Length(max=200)])
    pagination = SelectField(
        _l("Pagination"),
        choices=_choices([("page", _l("Page numbers")), ("cursor", _l("Cursor"))]),
        default="page",
    )
    page_param = StringField(_l("Page parameter"), validators=[Optional(), Length(max=64)])
    first_page = IntegerField(_l("First page"), validators=[Optional(), NumberRange(min=0)])
    page_size = IntegerField(
        _l("Page size"), validators=[Optional(), NumberRange(min=1, max=10000)]
    )
    page_size_param = StringField(
        _l("Page size parameter"), validators=[Optional(), Length(max=64)]
    )
    cursor_param = StringField(_l("Cursor parameter"), validators=[Optional(), Length(max=64)])
    cursor_path = StringField(_l("Cursor path"), validators=[Optional(), Length(max=200)])
    has_more_path = StringField(_l("Has-more path"), validators=[Optional(), Length(max=200)])
    last_page_path = StringField(_l("Last page path"), validators=[Optional(), Length(max=200)])
    total_path = StringField(_l("Total records path"), validators=[Optional(), Length(max=200)])
    auth_header = StringField(_l("Auth header"), validators=[Optional(), Length(max=64)])
    auth_value = PasswordField(_l("Auth value"), validators=[Optional(), Length(max=4096)])

    OPTION_FIELDS = (
        "records_path",
        "pagination",
        "page_param",
        "first_page",
        "page_size",
        "page_size_param",
        "cursor_param",
        "cursor_path",
        "has_more_path",
        "last_page_path",
        "total_path",
    )

    def options(self) -> dict[str, Any]:
        """The connector's options the form sets (empty fields are left to defaults)."""
        options: dict[str, Any] = {"url": self.url.data}
        for name in self.OPTION_FIELDS:
            value = getattr(self, name).data
            if value not in (None, ""):
                options[name] = value
        return options


class SourceRunForm(FlaskForm):
    mapping = SelectField(_l("Mapping"), validate_choice=False)
    mode = SelectField(
        _l("Mode"),
        choices=_choices(
            [(RunMode.DELTA.value, _l("Delta")), (RunMode.SNAPSHOT.value, _l("Snapshot"))]
        ),
        default=RunMode.DELTA.value,
    )


def _field_choices(kind: FeedKind) -> list[SelectChoice]:
    return _choices(
        [("", _("— not loaded —"))]
        + [
            (name, f"{FIELD_LABELS.get(name, name)}{' *' if spec.required else ''}")
            for name, spec in FIELDS[kind].items()
        ]
    )


def _mapping_choices(kind: FeedKind) -> list[SelectChoice]:
    mappings = db_session().scalars(
        select(IngestionMapping)
        .where(IngestionMapping.kind == kind)
        .order_by(IngestionMapping.name)
        .limit(500)
    )
    return _choices(
        [("", _("A new mapping from this file's header"))] + [(str(m.id), m.name) for m in mappings]
    )


def _mapping_form(kind: FeedKind, columns: list[str], *, formdata: Any = None) -> MappingForm:
    """The file's mapping form: one select of Recova's fields per column of the file."""

    class FileMappingForm(MappingForm):
        pass

    suggested = suggest_fields(kind, columns)
    choices = _field_choices(kind)
    for position, column in enumerate(columns):
        setattr(
            FileMappingForm,
            f"column_{position}",
            SelectField(column, choices=choices, default=suggested[column] or ""),
        )
    form = FileMappingForm(formdata=formdata) if formdata is not None else FileMappingForm()
    form.kind.data = kind.value
    form.mapping.choices = _mapping_choices(kind)
    form.form_errors = []
    return form


def _column_fields(form: MappingForm, columns: list[str]) -> list[tuple[str, Field]]:
    return [(column, getattr(form, f"column_{n}")) for n, column in enumerate(columns)]


# --- lookups ------------------------------------------------------------------------------


def _get_or_404(model: type, object_id: int) -> Any:
    found = db_session().get(model, object_id)
    if found is None:
        abort(404)
    return found


def _kind_arg(value: str | None) -> FeedKind:
    try:
        return FeedKind(value or FeedKind.PORTFOLIO.value)
    except ValueError:
        abort(404)


def _actor_id() -> int | None:
    principal = current_principal()
    return principal.subject_id if principal and not principal.is_client else None


def _read_head(file: IngestionFile) -> tuple[preview.FileHead | None, str | None]:
    """The stored file's head, or why it cannot be read (its bytes gone after a run)."""
    if not preview.file_has_bytes(db_session(), file.id):
        return None, _("This file was loaded already and its contents deleted; upload it again.")
    try:
        with preview.stored_file_source(db_session(), platform(), file, head_only=True) as (
            connector,
            source,
        ):
            return preview.read_head(connector, source), None
    except SourceError as error:
        return None, str(error)


# --- the section's page -------------------------------------------------------------------


def _runs_page(before: int | None) -> tuple[list[Any], int | None]:
    statement = (
        select(IngestionRun, IngestionFile.filename, HttpSource.name)
        .outerjoin(IngestionFile, IngestionFile.id == IngestionRun.file_id)
        .outerjoin(HttpSource, HttpSource.id == IngestionRun.source_id)
        .order_by(IngestionRun.id.desc())
        .limit(RUNS_PER_PAGE + 1)
    )
    if before is not None:
        statement = statement.where(IngestionRun.id < before)
    rows = list(db_session().execute(statement))
    more = len(rows) > RUNS_PER_PAGE
    rows = rows[:RUNS_PER_PAGE]
    return rows, (rows[-1][0].id if more else None)


def _render_index(
    *,
    upload: UploadForm | None = None,
    source_form: SourceForm | None = None,
    tested: tuple[HttpSource, preview.FileHead | None, str | None] | None = None,
    status: int = 200,
) -> tuple[str, int]:
    session = db_session()
    before = request.args.get("before", type=int)
    runs, next_before = _runs_page(before)
    mappings = list(session.scalars(select(IngestionMapping).order_by(IngestionMapping.name)))
    sources = list(session.scalars(select(HttpSource).order_by(HttpSource.name).limit(200)))
    upload = upload or UploadForm()
    source_form = source_form or SourceForm()
    for form in (upload, source_form):
        if not hasattr(form, "form_errors"):
            form.form_errors = []
    run_forms = {}
    for source in sources:
        run_form = SourceRunForm(prefix=f"source{source.id}")
        run_form.mapping.choices = _choices(
            [(str(m.id), f"{m.name} ({KIND_LABELS[m.kind]})") for m in mappings]
        )
        run_forms[source.id] = run_form
    return (
        render_template(
            "portal/files/index.html",
            upload=upload,
            source_form=source_form,
            runs=runs,
            next_before=next_before,
            before=before,
            mappings=mappings,
            sources=sources,
            run_forms=run_forms,
            tested=tested,
            **_labels(),
        ),
        status,
    )


def _labels() -> dict[str, Any]:
    return {
        "kind_labels": KIND_LABELS,
        "mode_labels": MODE_LABELS,
        "status_labels": STATUS_LABELS,
        "status_badges": STATUS_BADGES,
        "field_labels": FIELD_LABELS,
        "stored_labels": STORED_LABELS,
    }


@blp.get("/files")
@portal_page
def files() -> tuple[str, int]:
    """Upload a file; past runs, saved mappings and HTTP sources."""
    return _render_index()


@blp.post("/files/upload")
@portal_page
def files_upload() -> BaseResponse | tuple[str, int]:
    """Check an upload with its connector and store it; then map its columns."""
    form = UploadForm()
    form.form_errors = []
    if not form.validate_on_submit():
        return _render_index(upload=form, status=422)
    upload = form.file.data
    spooled: Path | None = None
    try:
        spooled, connector = preview.check_upload(
            platform(),
            filename=upload.filename or "upload",
            stream=upload.stream,
            connector=form.connector.data or None,
        )
        with spooled.open("rb") as stream:
            stored = services.store_file(
                db_session(),
                platform(),
                filename=upload.filename or "upload",
                stream=stream,
                connector=connector,
            )
    except DomainError as error:
        message = getattr(error, "error_message", str(error))
        target = form.connector if getattr(error, "field", "") == "connector" else form.file
        target.errors = [*target.errors, message]
        return _render_index(upload=form, status=422)
    finally:
        if spooled is not None:
            spooled.unlink(missing_ok=True)
    return redirect(url_for("portal.files_file", file_id=stored.id, kind=form.kind.data))


# --- one file: mapping, preview, start ----------------------------------------------------


def _chosen_mapping(form: MappingForm, kind: FeedKind) -> IngestionMapping | None:
    if not form.mapping.data:
        return None
    try:
        mapping_id = int(form.mapping.data)
    except ValueError:
        abort(404)
    mapping = _get_or_404(IngestionMapping, mapping_id)
    if mapping.kind is not kind:
        form.mapping.errors = [*form.mapping.errors, _("This mapping is for another kind of file.")]
    return mapping


def _columns_from_form(
    form: MappingForm, columns: list[str], kind: FeedKind
) -> dict[str, str] | None:
    """``{Recova field: column}`` from the column selects; ``None`` (errors set) if one
    field is chosen twice."""
    chosen: dict[str, str] = {}
    fine = True
    for column, select_field in _column_fields(form, columns):
        name = select_field.data
        if not name:
            continue
        if name not in FIELDS[kind]:
            select_field.errors = [*select_field.errors, _("Not a field of this kind of file.")]
            fine = False
        elif name in chosen:
            select_field.errors = [
                *select_field.errors,
                _("Already chosen for the column %(column)s.", column=chosen[name]),
            ]
            fine = False
        else:
            chosen[name] = column
    return chosen if fine else None


def _explain_mapping_problem(
    form: MappingForm, columns: list[str], mapping: dict[str, str], problem: Any
) -> None:
    """Put a mapping's problem beside the column it is about, or on the form."""
    label = FIELD_LABELS.get(problem.field, problem.field)
    message = _("%(field)s: %(reason)s", field=label, reason=_reason(problem.message))
    column = mapping.get(problem.field)
    if column is not None and column in columns and not form.mapping.data:
        select_field = getattr(form, f"column_{columns.index(column)}")
        select_field.errors = [*select_field.errors, message]
    else:
        form.form_errors.append(message)


def _reason(message: str) -> str:
    """The services' common reasons in the page's language; others as they are."""
    known = {
        "required": _("required: choose the column that holds it"),
        "map original or outstanding principal": _(
            "map the principal lent or the principal outstanding"
        ),
        "map the due date or days past due": _("map the due date or the days past due"),
        "a third-party phone needs it": _("a contact's phone needs the contact's relation"),
    }
    return known.get(message, message)


def _file_page(
    file: IngestionFile,
    kind: FeedKind,
    form: MappingForm | None,
    head: preview.FileHead | None,
    *,
    problem: str | None = None,
    rows: list[preview.PreviewRow] | None = None,
    estimate: preview.RecallEstimate | None = None,
    status: int = 200,
) -> tuple[str, int]:
    columns = head.columns if head else []
    return (
        render_template(
            "portal/files/file.html",
            file=file,
            kind=kind,
            form=form,
            head=head,
            columns=list(zip(columns, _column_fields(form, columns), strict=True)) if form else [],
            problem=problem,
            rows=rows,
            estimate=estimate,
            shown=(preview.ACCOUNT_SHOWN if kind is FeedKind.PORTFOLIO else preview.PAYMENT_SHOWN),
            **_labels(),
        ),
        status,
    )


def _mapping_in_use(
    form: MappingForm, columns: list[str], kind: FeedKind
) -> tuple[IngestionMapping | None, dict[str, str] | None, dict[str, Any]]:
    """The saved mapping chosen (if any), the columns and options the run would use."""
    saved = _chosen_mapping(form, kind)
    if saved is not None:
        return saved, dict(saved.columns), dict(saved.options)
    options: dict[str, Any] = {"day_first": True} if form.day_first.data else {}
    return None, _columns_from_form(form, columns, kind), options


@blp.route("/files/<int:file_id>", methods=["GET", "POST"])
@portal_page
def files_file(file_id: int) -> BaseResponse | tuple[str, int]:
    """A stored file: its columns with samples and suggested fields, the mapping, the
    preview of its first rows, and the start of its run (snapshots confirm first)."""
    file = _get_or_404(IngestionFile, file_id)
    kind = _kind_arg(request.values.get("kind"))
    head, problem = _read_head(file)
    if head is None:
        return _file_page(file, kind, None, None, problem=problem)
    posted = request.method == "POST"
    form = _mapping_form(kind, head.columns, formdata=request.form if posted else None)
    if not posted and request.args.get("mapping"):
        form.mapping.data = request.args["mapping"]
    if posted and not form.validate():
        return _file_page(file, kind, form, head, status=422)
    saved, columns, options = _mapping_in_use(form, head.columns, kind)
    if form.mapping.errors or columns is None:
        return _file_page(file, kind, form, head, status=422)
    mapping_error = preview.mapping_problem(kind, columns, options)
    if mapping_error is not None:
        _explain_mapping_problem(form, head.columns, columns, mapping_error)
        return _file_page(file, kind, form, head, status=422 if posted else 200)
    as_of = form.as_of.data or tenant_today(g.tenant.timezone)
    rows = preview.preview_rows(
        platform(),
        g.tenant,
        kind=kind,
        columns=columns,
        options=options,
        as_of=as_of,
        records=head.records,
    )
    action = request.form.get("action", "preview") if posted else "preview"
    if action == "preview":
        return _file_page(file, kind, form, head, rows=rows)
    return _start_file_run(file, kind, form, head, rows, saved, columns, options, as_of)


def _start_file_run(  # noqa: PLR0917 - the file page's state, passed on whole
    file: IngestionFile,
    kind: FeedKind,
    form: MappingForm,
    head: preview.FileHead,
    rows: list[preview.PreviewRow],
    saved: IngestionMapping | None,
    columns: dict[str, str],
    options: dict[str, Any],
    as_of: dt.date,
) -> BaseResponse | tuple[str, int]:
    session = db_session()
    if saved is None:
        if not form.name.data:
            form.name.errors = [*form.name.errors, _("Name the new mapping to save it.")]
            return _file_page(file, kind, form, head, rows=rows, status=422)
        if services.mapping_by_name(session, form.name.data) is not None:
            form.name.errors = [*form.name.errors, _("A mapping of this name exists already.")]
            return _file_page(file, kind, form, head, rows=rows, status=422)
    mode = RunMode(form.mode.data) if kind is FeedKind.PORTFOLIO else RunMode.DELTA
    confirmed = request.form.get("action") == "confirm"
    if mode is RunMode.SNAPSHOT and not confirmed:
        reader = preview.row_reader(
            platform(), g.tenant, kind=kind, columns=columns, options=options, as_of=as_of
        )
        with preview.stored_file_source(session, platform(), file) as (connector, source):
            try:
                estimate = preview.estimate_recall(session, reader, connector, source)
            except SourceError as error:
                form.form_errors.append(str(error))
                return _file_page(file, kind, form, head, rows=rows, status=422)
        return _file_page(file, kind, form, head, rows=rows, estimate=estimate)
    try:
        mapping = saved or services.save_mapping(
            session, name=form.name.data, kind=kind, columns=columns, options=options
        )
        run = services.start_run(
            session,
            platform(),
            tenant=g.tenant,
            mapping=mapping,
            file=file,
            mode=mode,
            all_or_nothing=bool(form.all_or_nothing.data),
            as_of=as_of,
            requested_by=_actor_id(),
            confirm_recall=mode is RunMode.SNAPSHOT and confirmed,
        )
    except DomainError as error:
        form.form_errors.append(getattr(error, "error_message", str(error)))
        return _file_page(file, kind, form, head, rows=rows, status=422)
    flash(_("Run %(id)s started.", id=run.id), "good")
    return redirect(url_for("portal.files_run", run_id=run.id))


@blp.get("/files/mappings/<int:mapping_id>")
@portal_page
def files_mapping(mapping_id: int) -> str:
    """A saved mapping: which column feeds each of Recova's fields."""
    mapping = _get_or_404(IngestionMapping, mapping_id)
    return render_template("portal/files/mapping.html", mapping=mapping, **_labels())


# --- runs ---------------------------------------------------------------------------------


def _errors_page(
    run: IngestionRun, severity: Severity | None, after: int | None
) -> tuple[list[IngestionRowError], int | None]:
    statement = (
        select(IngestionRowError)
        .where(IngestionRowError.run_id == run.id)
        .order_by(IngestionRowError.id)
        .limit(ERRORS_PER_PAGE + 1)
    )
    if severity is not None:
        statement = statement.where(IngestionRowError.severity == severity.value)
    if after is not None:
        statement = statement.where(IngestionRowError.id > after)
    found = list(db_session().scalars(statement))
    more = len(found) > ERRORS_PER_PAGE
    found = found[:ERRORS_PER_PAGE]
    return found, (found[-1].id if more else None)


def _progress(run: IngestionRun) -> dict[str, Any]:
    progress = services.run_progress(platform(), g.tenant, run)
    done, total = progress["done"] or 0, progress["total"]
    share = min(1.0, done / total) if total else None
    return {"done": done, "total": total, "share": share, "live": run.status in LIVE}


def _severity_arg() -> Severity | None:
    value = request.args.get("severity")
    if not value:
        return None
    try:
        return Severity(value)
    except ValueError:
        abort(404)


@blp.get("/files/runs/<int:run_id>")
@portal_page
def files_run(run_id: int) -> str:
    """A run: its status, live progress, counts and row errors with paging."""
    run = _get_or_404(IngestionRun, run_id)
    severity = _severity_arg()
    after = request.args.get("after", type=int)
    errors, next_after = _errors_page(run, severity, after)
    session = db_session()
    file = session.get(IngestionFile, run.file_id) if run.file_id else None
    source = session.get(HttpSource, run.source_id) if run.source_id else None
    mapping = session.get(IngestionMapping, run.mapping_id)
    return render_template(
        "portal/files/run.html",
        run=run,
        file=file,
        source=source,
        mapping=mapping,
        progress=_progress(run),
        errors=errors,
        next_after=next_after,
        after=after,
        severity=severity,
        **_labels(),
    )


@blp.get("/files/runs/<int:run_id>/progress")
@portal_page
def files_run_progress(run_id: int) -> Response:
    """The live part of a run's page; once the run stops, htmx reloads the whole page."""
    run = _get_or_404(IngestionRun, run_id)
    progress = _progress(run)
    body = render_template("portal/files/_progress.html", run=run, progress=progress, **_labels())
    response = Response(body)
    if not progress["live"] and request.headers.get("HX-Request"):
        response.headers["HX-Refresh"] = "true"
    return response


@blp.get("/files/runs/<int:run_id>/errors.csv")
@portal_page
def files_run_errors_csv(run_id: int) -> Response:
    """The run's row errors and warnings as CSV (formula-safe; values masked if personal)."""
    run = _get_or_404(IngestionRun, run_id)
    principal = current_principal()
    assert principal is not None  # the page's rule let a principal in
    rows = services.export_row_errors(db_session(), run, actor=principal, severity=_severity_arg())
    return Response(
        stream_with_context(rows),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="run-{run.id}-errors.csv"'},
    )


@blp.post("/files/runs/<int:run_id>/confirm-recall")
@portal_page
def files_run_confirm(run_id: int) -> BaseResponse:
    """Let a held snapshot recall the accounts it did not mention."""
    run = _get_or_404(IngestionRun, run_id)
    try:
        services.confirm_recall(
            db_session(), platform(), tenant=g.tenant, run=run, actor=current_principal()
        )
    except DomainError as error:
        flash(getattr(error, "error_message", str(error)), "error")
    else:
        flash(_("Recall confirmed; the run finishes in the background."), "good")
    return redirect(url_for("portal.files_run", run_id=run.id))


@blp.post("/files/runs/<int:run_id>/resume")
@portal_page
def files_run_resume(run_id: int) -> BaseResponse:
    """Queue a failed or interrupted run again from its checkpoint."""
    run = _get_or_404(IngestionRun, run_id)
    try:
        services.resume_run(db_session(), platform(), tenant=g.tenant, run=run)
    except DomainError as error:
        flash(getattr(error, "error_message", str(error)), "error")
    else:
        flash(_("The run is queued again."), "good")
    return redirect(url_for("portal.files_run", run_id=run.id))


# --- HTTP sources -------------------------------------------------------------------------


@blp.post("/files/sources")
@portal_page
def files_sources_new() -> BaseResponse | tuple[str, int]:
    """Register an HTTP source; its auth value is stored encrypted and never shown."""
    form = SourceForm()
    form.form_errors = []
    if not form.validate_on_submit():
        return _render_index(source_form=form, status=422)
    if services_source_by_name(form.name.data) is not None:
        form.name.errors = [*form.name.errors, _("A source of this name exists already.")]
        return _render_index(source_form=form, status=422)
    try:
        source = services.register_source(
            db_session(),
            platform(),
            name=form.name.data,
            options=form.options(),
            auth_header=form.auth_header.data or None,
            auth_value=form.auth_value.data or None,
        )
    except DomainError as error:
        field_name = getattr(error, "field", "").removeprefix("options.")
        target = getattr(form, field_name, None)
        message = getattr(error, "error_message", str(error))
        if isinstance(target, Field):
            target.errors = [*target.errors, message]
        else:
            form.form_errors.append(message)
        return _render_index(source_form=form, status=422)
    flash(_("Source %(name)s saved. Test its connection below.", name=source.name), "good")
    return redirect(url_for("portal.files", _anchor=f"source-{source.id}"))


def services_source_by_name(name: str) -> HttpSource | None:
    return db_session().scalar(select(HttpSource).where(HttpSource.name == name))


@blp.post("/files/sources/<int:source_id>/test")
@portal_page
def files_source_test(source_id: int) -> tuple[str, int]:
    """Fetch the source's first records through its connector and show them, or why not."""
    source = _get_or_404(HttpSource, source_id)
    try:
        head = preview.fetch_source_head(platform(), source)
    except SourceError as error:
        return _render_index(tested=(source, None, str(error)), status=422)
    if not head.records:
        return _render_index(
            tested=(source, None, _("The source answered, but its first page holds no records.")),
            status=422,
        )
    return _render_index(tested=(source, head, None))


@blp.post("/files/sources/<int:source_id>/run")
@portal_page
def files_source_run(source_id: int) -> BaseResponse | tuple[str, int]:
    """Pull the source through a saved mapping, in the background."""
    source = _get_or_404(HttpSource, source_id)
    form = SourceRunForm(prefix=f"source{source.id}")
    if not form.validate_on_submit() or not (form.mapping.data or "").isdigit():
        flash(_("Choose a mapping to pull the source through."), "error")
        return redirect(url_for("portal.files", _anchor=f"source-{source.id}"))
    mapping = _get_or_404(IngestionMapping, int(form.mapping.data))
    try:
        run = services.start_run(
            db_session(),
            platform(),
            tenant=g.tenant,
            mapping=mapping,
            source=source,
            mode=RunMode(form.mode.data),
            requested_by=_actor_id(),
        )
    except DomainError as error:
        flash(getattr(error, "error_message", str(error)), "error")
        return redirect(url_for("portal.files", _anchor=f"source-{source.id}"))
    flash(_("Run %(id)s started.", id=run.id), "good")
    return redirect(url_for("portal.files_run", run_id=run.id))
