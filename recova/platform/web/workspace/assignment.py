"""The agency manager's assignment page: move cases between collectors, and keep the
collectors' skills, capacity and active flag.

A move is one case (by id as ``#123``, or by account number) or every case a filter
matches (bucket, current collector or none, status) among the agency's active placements
in one tenant, to one collector. The filter is a GET form: its preview
(``assignment_preview``) says how many cases move, their balance, from whom, and where
the move leaves the collector against their maximum; confirming posts the same filter
(``assignment_move``), which the service applies again, so the counts agree unless the
book changed in between, and the page then says how many actually moved. A move past the
collector's maximum needs the manager's explicit consent; an inactive collector never
receives cases (``recova.platform.allocation.reassign``).

A move happens in one tenant, in the request's one transaction: the request is bound to
that tenant's schema once it is known to be one the agency serves (a tenant without an
active contract is refused beside the field, like any other unknown name), so the move
and its audit event land in that tenant alone.

Editing a collector mirrors ``PATCH /api/v1/agency/collectors/<id>``: skills, maximum and
active flag through ``allocation.services.update_collector``; a deactivation asks for
their cases to be reassigned in every served tenant, after the commit.
"""

from __future__ import annotations

import re
from typing import Any

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response
from wtforms import BooleanField, IntegerField, SelectField, StringField
from wtforms.validators import InputRequired, Length, NumberRange, Optional, ValidationError

from recova.platform.allocation import reassign, services
from recova.platform.allocation.assignment import collector_of_agency
from recova.platform.allocation.jobs import reassign_cases_job
from recova.platform.cases.models import CaseStatus
from recova.platform.kernel.db import bind_session_to_schema
from recova.platform.kernel.errors import abort
from recova.platform.kernel.extension import platform
from recova.platform.kernel.request_scope import db_session
from recova.platform.reports.team import bucket_names
from recova.platform.web.pages import manager_page
from recova.platform.web.portal.cases import STATUS_LABELS
from recova.platform.web.workspace import blp
from recova.platform.web.workspace.frame import current_agency, page_principal
from recova.tenants.models import Tenant

#: The filter's fields, carried from the preview to the move unchanged.
FILTER_FIELDS = ("tenant", "case", "bucket", "current", "status", "target")
#: ``#123`` names a case by id; anything else is an account number.
CASE_ID = re.compile(r"^#\s*(\d{1,12})$")
#: Skills are typed as lists: languages apart by commas or spaces, regions by commas.
#: (``\uff0c`` and ``\u3001`` are the Chinese comma and enumeration comma.)
LANGUAGE_SEPARATORS = re.compile("[,\uff0c\u3001;\\s]+")
REGION_SEPARATORS = re.compile("[,\uff0c\u3001;]+")


class MoveFilterForm(FlaskForm):
    """Which cases move and to whom: a GET form, so its URL is the preview's."""

    class Meta:
        csrf = False

    tenant = SelectField(_l("Client"), choices=[], validate_choice=False)
    case = StringField(
        _l("One case"),
        validators=[Optional(), Length(max=128)],
        filters=[lambda v: v and v.strip()],
    )
    bucket = SelectField(_l("Bucket"), choices=[], validate_choice=False)
    current = SelectField(_l("Current collector"), choices=[], validate_choice=False)
    status = SelectField(_l("Status"), choices=[], validate_choice=False)
    target = SelectField(_l("Move to"), choices=[], validate_choice=False)


class MoveForm(MoveFilterForm):
    """The confirmed move: the same filter, the count its preview showed, and the
    manager's consent to take the collector past their maximum."""

    class Meta:
        csrf = True

    previewed = IntegerField(validators=[Optional(), NumberRange(min=0)])
    over_capacity = BooleanField(
        _l("Move them even though it takes the collector past their maximum")
    )


def _skills(value: str | None, separators: re.Pattern[str]) -> list[str]:
    return [part.strip() for part in separators.split(value or "") if part.strip()]


class CollectorForm(FlaskForm):
    """A collector's skills, maximum of open cases and active flag."""

    languages = StringField(_l("Languages"), validators=[Optional(), Length(max=300)])
    regions = StringField(_l("Regions"), validators=[Optional(), Length(max=1000)])
    max_cases = IntegerField(
        _l("Maximum of open cases"), validators=[InputRequired(), NumberRange(min=1, max=100_000)]
    )
    is_active = BooleanField(_l("Active: may receive cases"))

    def validate_languages(self, field: StringField) -> None:
        if any(len(code) > 16 for code in _skills(field.data, LANGUAGE_SEPARATORS)):
            raise ValidationError(_("A language code has at most 16 characters."))

    def validate_regions(self, field: StringField) -> None:
        if any(len(region) > 64 for region in _skills(field.data, REGION_SEPARATORS)):
            raise ValidationError(_("A region has at most 64 characters."))


# --- what the page needs -------------------------------------------------------------------


def _bucket_names(tenants: list[Tenant]) -> list[str]:
    """The buckets of every served tenant, in each tenant's order, once each."""
    names: list[str] = []
    for tenant in tenants:
        names.extend(name for name in bucket_names(db_session(), tenant) if name not in names)
    return names


def _collector_label(collector: dict[str, Any]) -> str:
    if collector["is_active"]:
        return str(collector["full_name"])
    return _("%(name)s (inactive)", name=collector["full_name"])


def _setup(form: MoveFilterForm, tenants: list[Tenant], collectors: list[dict[str, Any]]) -> None:
    """The choices of the filter form (the agency's tenants, buckets, collectors)."""
    every = [("", _("All"))]
    form.tenant.choices = [(tenant.slug, tenant.name) for tenant in tenants]
    form.bucket.choices = every + [(name, name) for name in _bucket_names(tenants)]
    form.current.choices = [
        ("", _("Anyone or no one")),
        (reassign.UNASSIGNED, _("No collector")),
        *((str(c["user_id"]), _collector_label(c)) for c in collectors),
    ]
    form.status.choices = every + [(s.value, str(label)) for s, label in STATUS_LABELS.items()]
    form.target.choices = [("", _("Choose a collector"))] + [
        (str(c["user_id"]), str(c["full_name"])) for c in collectors if c["is_active"]
    ]


def _read_filter(
    form: MoveFilterForm, tenants: list[Tenant], collectors: list[dict[str, Any]]
) -> tuple[Tenant, reassign.CaseFilter, reassign.Receiver] | None:
    """The tenant, filter and receiving collector the form names; None (errors set beside
    the fields) when any of them is not one the manager may use."""
    valid = form.validate()
    tenant = next((t for t in tenants if t.slug == form.tenant.data), None)
    if tenant is None:
        form.tenant.errors = [*form.tenant.errors, _("Choose a tenant your agency serves.")]
        valid = False
    ids = {str(c["user_id"]) for c in collectors}
    current = form.current.data or ""
    if current not in ("", reassign.UNASSIGNED) and current not in ids:
        form.current.errors = [*form.current.errors, _("Choose a collector of your agency.")]
        valid = False
    status = form.status.data or ""
    if status and status not in {s.value for s in CaseStatus}:
        form.status.errors = [*form.status.errors, _("Choose a status from the list.")]
        valid = False
    bucket = form.bucket.data or ""
    if len(bucket) > 16:
        form.bucket.errors = [*form.bucket.errors, _("Choose a bucket from the list.")]
        valid = False
    target_id = form.target.data or ""
    receiver = None
    if not target_id.isdigit():
        form.target.errors = [*form.target.errors, _("Choose the collector the cases go to.")]
        valid = False
    else:
        try:
            receiver = reassign.receiving_collector(
                db_session(), agency_id=current_agency().id, user_id=int(target_id)
            )
        except reassign.ReassignmentRefused as refusal:
            form.target.errors = [*form.target.errors, _refusal(refusal)]
            valid = False
    if not valid or tenant is None or receiver is None:
        return None
    case = form.case.data or ""
    one = CASE_ID.match(case)
    filters = reassign.CaseFilter(
        bucket=bucket or None,
        collector=(int(current) if current.isdigit() else current) or None,
        status=status or None,
        case_id=int(one.group(1)) if one else None,
        account_external_id=case if case and not one else None,
    )
    return tenant, filters, receiver


def _refusal(error: reassign.ReassignmentRefused) -> str:
    """The service's refusal, led by a sentence in the page's language."""
    return _("This could not be done: %(detail)s", detail=str(error))


def _page(
    form: MoveFilterForm,
    *,
    tenants: list[Tenant],
    collectors: list[dict[str, Any]],
    preview: reassign.MovePreview | None = None,
    move_form: MoveForm | None = None,
    status: int = 200,
) -> tuple[str, int]:
    session = db_session()
    open_now = reassign.open_cases_by_collector(
        session, tenants=tenants, user_ids=[c["user_id"] for c in collectors]
    )
    if move_form is None and preview is not None:
        move_form = MoveForm(formdata=None)
    return render_template(
        "work/assignment/index.html",
        form=form,
        tenants=tenants,
        collectors=collectors,
        names={c["user_id"]: c["full_name"] for c in collectors},
        open_now=open_now,
        preview=preview,
        move_form=move_form,
        filter_fields=FILTER_FIELDS,
        unassigned=reassign.UNASSIGNED,
    ), status


def _context() -> tuple[list[Tenant], list[dict[str, Any]]]:
    session = db_session()
    agency = current_agency()
    return services.tenants_served(session, agency.id), services.agency_collectors(
        session, agency.id
    )


# --- pages ---------------------------------------------------------------------------------


@blp.get("/assignment", endpoint="assignment")
@manager_page
def assignment_page() -> tuple[str, int]:
    """The move form (prefilled from the URL) and the agency's collectors."""
    tenants, collectors = _context()
    form = MoveFilterForm(formdata=request.args or None)
    _setup(form, tenants, collectors)
    return _page(form, tenants=tenants, collectors=collectors)


@blp.get("/assignment/preview", endpoint="assignment_preview")
@manager_page
def assignment_preview() -> tuple[str, int]:
    """How many cases the filter would move now, their balance and from whom, and where
    the move leaves the receiving collector against their maximum."""
    tenants, collectors = _context()
    form = MoveFilterForm(formdata=request.args)
    _setup(form, tenants, collectors)
    chosen = _read_filter(form, tenants, collectors)
    if chosen is None:
        return _page(form, tenants=tenants, collectors=collectors, status=422)
    tenant, filters, receiver = chosen
    preview = reassign.preview_move(
        db_session(), tenant=tenant, agency_id=current_agency().id, target=receiver, filters=filters
    )
    return _page(form, tenants=tenants, collectors=collectors, preview=preview)


@blp.post("/assignment/move", endpoint="assignment_move")
@manager_page
def assignment_move() -> Response | tuple[str, int]:
    """Move the cases the filter matches now to the chosen collector, in one statement."""
    tenants, collectors = _context()
    form = MoveForm()
    _setup(form, tenants, collectors)
    chosen = _read_filter(form, tenants, collectors)
    if chosen is None:
        return _page(form, tenants=tenants, collectors=collectors, status=422)
    tenant, filters, receiver = chosen
    session = db_session()
    agency = current_agency()
    bind_session_to_schema(session, tenant.schema_name)  # the move and its audit: this tenant
    try:
        result = reassign.move_cases(
            session,
            tenant=tenant,
            agency_id=agency.id,
            target=receiver,
            filters=filters,
            actor=page_principal(),
            allow_over_capacity=bool(form.over_capacity.data),
            previewed=form.previewed.data,
        )
    except reassign.ReassignmentRefused as refusal:  # the 422 rolls the request back
        preview = reassign.preview_move(
            session, tenant=tenant, agency_id=agency.id, target=receiver, filters=filters
        )
        form.over_capacity.errors = [_refusal(refusal)]
        return _page(
            form,
            tenants=tenants,
            collectors=collectors,
            preview=preview,
            move_form=form,
            status=422,
        )
    name = receiver.user.full_name
    if result.moved == 0:
        flash(_("No case moved: none matches the filter now."), "error")
    else:
        flash(
            _(
                "%(n)s cases moved to %(name)s in %(tenant)s; they now hold %(open)s open cases.",
                n=result.moved,
                name=name,
                tenant=tenant.name,
                open=result.target_open,
            )
        )
    previewed = form.previewed.data
    if previewed is not None and previewed != result.moved:
        flash(
            _(
                "The preview counted %(previewed)s cases; the book changed in between and"
                " %(n)s moved.",
                previewed=previewed,
                n=result.moved,
            ),
            "error",
        )
    if result.over_capacity and result.moved:
        flash(
            _(
                "%(name)s is now past their maximum of %(max)s open cases.",
                name=name,
                max=receiver.max_cases,
            ),
            "error",
        )
    return redirect(url_for("workspace.assignment", tenant=tenant.slug, target=receiver.user.id))


@blp.route(
    "/assignment/collectors/<int:collector_id>",
    methods=["GET", "POST"],
    endpoint="assignment_collector",
)
@manager_page
def assignment_collector(collector_id: int) -> Response | tuple[str, int]:
    """A collector's skills, maximum and active flag; deactivating one reassigns their
    cases in every served tenant, in the background."""
    session = db_session()
    agency = current_agency()
    user = collector_of_agency(session, user_id=collector_id, agency_id=agency.id)
    if user is None:
        abort(404, message=_("There is no such collector in your agency."))
    current = next(
        c for c in services.agency_collectors(session, agency.id) if c["user_id"] == user.id
    )
    if request.method == "GET":
        form = CollectorForm(
            formdata=None,
            data={
                "languages": ", ".join(current["languages"]),
                "regions": ", ".join(current["regions"]),
                "max_cases": current["max_cases"],
                "is_active": current["is_active"],
            },
        )
        return render_template("work/assignment/collector.html", form=form, collector=current), 200
    form = CollectorForm()
    if not form.validate_on_submit():
        return render_template("work/assignment/collector.html", form=form, collector=current), 422
    view, deactivated = services.update_collector(
        session,
        user,
        {
            "languages": _skills(form.languages.data, LANGUAGE_SEPARATORS),
            "regions": _skills(form.regions.data, REGION_SEPARATORS),
            "max_cases": form.max_cases.data,
            "is_active": bool(form.is_active.data),
        },
    )
    if deactivated:
        for tenant in services.tenants_served(session, agency.id):
            reassign_cases_job.enqueue_after_commit(
                session,
                platform(),
                job_id=f"reassign-{tenant.id}-{collector_id}",
                tenant_id=tenant.id,
            )
        flash(
            _(
                "%(name)s is inactive: their open cases go to their colleagues in the background.",
                name=view["full_name"],
            )
        )
    else:
        flash(_("%(name)s is saved.", name=view["full_name"]))
    return redirect(url_for("workspace.assignment") + "#collectors")
