"""The portal's cases: the book's list with filters and look-up, and one case's page.

The list (``cases``) is a GET form, so a filtered, sorted list is a URL to bookmark; it
pages by keyset (``recova.platform.cases.browse``) and shows masked identifiers only.
The case page (``cases_detail``) shows the account, the debtor as the masking policy
says, the timeline (``recova.platform.cases.timeline``) and, for admins, the actions:
flags, recall and dispute resolution, each through the service the API calls. A reveal
(``cases_reveal``) asks for a reason, goes through the privacy domain's reveal service
(its rate limit and audit event), and answers with the page holding the clear value once,
never cached (``Cache-Control: no-store``).
"""

from __future__ import annotations

from typing import Any

from flask import flash, g, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from sqlalchemy import select
from werkzeug.wrappers import Response
from wtforms import (
    DecimalField,
    HiddenField,
    IntegerField,
    SearchField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length, NumberRange, Optional, ValidationError

from recova.platform.agencies.contracts import AgencyContract
from recova.platform.agencies.models import Agency
from recova.platform.allocation.models import CaseSegment, Placement
from recova.platform.allocation.placement import PlacementError, recall_placement
from recova.platform.allocation.segmentation import tenant_buckets
from recova.platform.audit.services import AuditDataError, check_data
from recova.platform.cases.browse import (
    NO_FLAGS,
    SORTS,
    CaseFilters,
    bucket_names,
    bucket_of,
    list_cases,
    segment_names,
)
from recova.platform.cases.display import name_for_caller
from recova.platform.cases.flags import FLAGS, FlagRefused, change_case_flag, has_flag
from recova.platform.cases.models import Account, Case, CaseStatus, Contact, ContactKind, Debtor
from recova.platform.cases.timeline import case_timeline
from recova.platform.kernel.errors import DomainError, abort
from recova.platform.kernel.extension import platform
from recova.platform.kernel.request_scope import db_session
from recova.platform.privacy.reveal import Revealed, RevealError, reveal
from recova.platform.web.pages import portal_page
from recova.platform.web.portal import blp
from recova.platform.work.disputes import resolve_dispute
from recova.platform.work.models import Dispute, DisputeStatus
from recova.tenants.models import tenant_today

# --- labels ------------------------------------------------------------------------------

STATUS_LABELS = {
    CaseStatus.NEW: _l("New"),
    CaseStatus.PLACED: _l("Placed"),
    CaseStatus.IN_PROGRESS: _l("In progress"),
    CaseStatus.PROMISED: _l("Promised"),
    CaseStatus.ON_PLAN: _l("On plan"),
    CaseStatus.SETTLED: _l("Settled"),
    CaseStatus.PAID: _l("Paid off"),
    CaseStatus.ON_HOLD: _l("On hold"),
    CaseStatus.RECALLED: _l("Recalled"),
    CaseStatus.CLOSED: _l("Closed"),
}
FLAG_LABELS = {
    "dispute": _l("Dispute"),
    "bankruptcy": _l("Bankruptcy"),
    "deceased": _l("Deceased"),
    "cease_contact": _l("Cease contact"),
    "do_not_contact": _l("Do not contact"),
    NO_FLAGS: _l("No flag"),
}
SORT_LABELS = {
    "dpd_desc": _l("Days past due, most first"),
    "dpd_asc": _l("Days past due, fewest first"),
    "balance_desc": _l("Balance, largest first"),
    "balance_asc": _l("Balance, smallest first"),
    "updated_desc": _l("Updated, newest first"),
    "updated_asc": _l("Updated, oldest first"),
}
RECALL_REASONS = {
    "tenant_request": _l("The lender asked"),
    "complaint": _l("A complaint"),
    "quality": _l("Work quality"),
    "other": _l("Other"),
}
#: Timeline entries a case page shows, and with "show older" (``?timeline=all``).
TIMELINE_FIRST = 50
TIMELINE_ALL = 500
#: Recall reasons the platform itself gives (runs, flags), for the timeline.
SYSTEM_RECALL_REASONS = {
    "expired": _l("Placement period ended"),
    "excluded_flag": _l("A flag excludes the case"),
    "case_closed": _l("The case closed"),
    "on_hold": _l("The case is on hold"),
    "agency_unavailable": _l("The agency is unavailable"),
}
OUTCOMES = {
    DisputeStatus.UPHELD: _l("Upheld: the debt is not owed; the case closes"),
    DisputeStatus.ADJUSTED: _l("Adjusted: owed in a corrected amount; work resumes"),
    DisputeStatus.REJECTED: _l("Rejected: the debt stands; work resumes"),
}
DISPUTE_STATUS_LABELS = {
    "open": _l("Open"),
    "upheld": _l("Upheld"),
    "adjusted": _l("Adjusted"),
    "rejected": _l("Dismissed"),
}
GROUNDS_LABELS = {
    "not_my_debt": _l("Not my debt"),
    "amount_wrong": _l("Amount wrong"),
    "already_paid": _l("Already paid"),
    "identity_theft": _l("Identity theft"),
    "other": _l("Other"),
}
CHANNEL_LABELS = {
    "call_out": _l("Outbound call"),
    "call_in": _l("Inbound call"),
    "sms": _l("SMS"),
    "email": _l("E-mail"),
    "letter": _l("Letter"),
    "visit": _l("Field visit"),
}
RESULT_LABELS = {
    "connected": _l("Connected"),
    "no_answer": _l("No answer"),
    "busy": _l("Busy"),
    "wrong_number": _l("Wrong number"),
    "refused": _l("Refused"),
    "delivered": _l("Delivered"),
    "failed": _l("Failed"),
}
PROMISE_LABELS = {
    "pending": _l("Awaiting payment"),
    "kept": _l("Kept"),
    "partly_kept": _l("Partly kept"),
    "broken": _l("Broken"),
    "superseded": _l("Replaced by a plan"),
}
PLAN_LABELS = {"active": _l("Running"), "completed": _l("Completed"), "broken": _l("Broken")}
SETTLEMENT_LABELS = {
    "pending_approval": _l("Waiting for approval"),
    "approved": _l("Approved"),
    "rejected": _l("Refused"),
    "expired": _l("Expired"),
    "paid": _l("Paid off"),
}
RELATION_LABELS = {"self": _l("Debtor")}
CONTACT_KIND_LABELS = {
    ContactKind.PHONE: _l("Phone"),
    ContactKind.EMAIL: _l("E-mail"),
    ContactKind.ADDRESS: _l("Address"),
}


def _labels() -> dict[str, Any]:
    return {
        "status_labels": STATUS_LABELS,
        "flag_labels": FLAG_LABELS,
        "recall_reasons": {**SYSTEM_RECALL_REASONS, **RECALL_REASONS},
        "dispute_labels": DISPUTE_STATUS_LABELS,
        "grounds_labels": GROUNDS_LABELS,
        "channel_labels": CHANNEL_LABELS,
        "result_labels": RESULT_LABELS,
        "promise_labels": PROMISE_LABELS,
        "plan_labels": PLAN_LABELS,
        "settlement_labels": SETTLEMENT_LABELS,
        "relation_labels": RELATION_LABELS,
        "kind_labels": CONTACT_KIND_LABELS,
    }


# --- the list ----------------------------------------------------------------------------

#: Cases per page of the list.
PAGE_SIZE = 50


class CaseFilterForm(FlaskForm):
    """The list's filters: a GET form, so the URL holds them (no CSRF on a read)."""

    class Meta:
        csrf = False

    q = SearchField(_l("Look up"), validators=[Optional(), Length(max=128)])
    bucket = SelectField(_l("Bucket"), choices=[], validators=[Optional()])
    status = SelectField(_l("Status"), choices=[], validators=[Optional()])
    agency = SelectField(_l("Agency"), choices=[], validators=[Optional()])
    segment = SelectField(_l("Segment"), choices=[], validators=[Optional()])
    flag = SelectField(_l("Flag"), choices=[], validators=[Optional()])
    dpd_min = IntegerField(_l("Days past due from"), validators=[Optional(), NumberRange(min=0)])
    dpd_max = IntegerField(_l("to"), validators=[Optional(), NumberRange(min=0)])
    balance_min = DecimalField(_l("Balance from"), validators=[Optional(), NumberRange(min=0)])
    balance_max = DecimalField(_l("to"), validators=[Optional(), NumberRange(min=0)])
    sort = SelectField(_l("Sort"), choices=[], validators=[Optional()])

    def validate_dpd_max(self, field: IntegerField) -> None:
        if (
            field.data is not None
            and self.dpd_min.data is not None
            and field.data < self.dpd_min.data
        ):
            raise ValidationError(_("Must not be below the lower bound."))

    def validate_balance_max(self, field: DecimalField) -> None:
        low = self.balance_min.data
        if field.data is not None and low is not None and field.data < low:
            raise ValidationError(_("Must not be below the lower bound."))


def _contracted_agencies() -> list[tuple[int, str]]:
    rows = db_session().execute(
        select(Agency.id, Agency.name)
        .join(AgencyContract, AgencyContract.agency_id == Agency.id)
        .where(AgencyContract.tenant_id == g.tenant.id)
        .distinct()
        .order_by(Agency.name)
    )
    return [(agency_id, name) for agency_id, name in rows]


def _filter_form() -> CaseFilterForm:
    session = db_session()
    form = CaseFilterForm(request.args)
    every = [("", _("All"))]
    form.bucket.choices = every + [(name, name) for name in bucket_names(session)]
    form.status.choices = every + [(s.value, str(label)) for s, label in STATUS_LABELS.items()]
    form.agency.choices = every + [(str(i), name) for i, name in _contracted_agencies()]
    form.segment.choices = every + [(name, name) for name in segment_names(session)]
    form.flag.choices = every + [(flag, str(FLAG_LABELS[flag])) for flag in (*FLAGS, NO_FLAGS)]
    form.sort.choices = [(sort, str(SORT_LABELS[sort])) for sort in SORTS]
    return form


def _filters(form: CaseFilterForm) -> CaseFilters:
    agency = form.agency.data
    return CaseFilters(
        bucket=form.bucket.data or None,
        status=CaseStatus(form.status.data) if form.status.data else None,
        agency_id=int(agency) if agency and agency.isdigit() else None,
        segment=form.segment.data or None,
        flag=form.flag.data or None,
        dpd_min=form.dpd_min.data,
        dpd_max=form.dpd_max.data,
        balance_min=form.balance_min.data,
        balance_max=form.balance_max.data,
        lookup=(form.q.data or "").strip() or None,
    )


def _page_url(**cursor: str) -> str:
    """This list's URL with the same filters and another page cursor."""
    args: dict[str, Any] = {
        k: v for k, v in request.args.items() if k not in ("after", "before") and v != ""
    }
    return url_for("portal.cases", **{**args, **cursor})


@blp.get("/cases")
@portal_page
def cases() -> Any:
    """The tenant's cases: filters, look-up by identifier, sort, keyset pages."""
    form = _filter_form()
    valid = form.validate()
    page = None
    agencies: dict[int, str] = {}
    if valid:
        page = list_cases(
            db_session(),
            platform().cipher,
            _filters(form),
            region=str(g.tenant.jurisdiction),
            sort=form.sort.data or "dpd_desc",
            after=request.args.get("after") or None,
            before=request.args.get("before") or None,
            limit=PAGE_SIZE,
        )
        agencies = dict(_contracted_agencies())
        missing = {r.agency_id for r in page.rows if r.agency_id and r.agency_id not in agencies}
        if missing:
            agencies.update(
                db_session().execute(select(Agency.id, Agency.name).where(Agency.id.in_(missing)))
            )
    body = render_template(
        "portal/cases/list.html",
        form=form,
        page=page,
        agencies=agencies,
        filtered=any(v for k, v in request.args.items() if k not in ("sort", "after", "before")),
        next_url=_page_url(after=page.next_cursor) if page and page.next_cursor else None,
        prev_url=_page_url(before=page.prev_cursor) if page and page.prev_cursor else None,
        name_for_caller=name_for_caller,
        **_labels(),
    )
    return body, (200 if valid else 422)


# --- one case ----------------------------------------------------------------------------


def _reason_has_no_number(form: FlaskForm, field: TextAreaField) -> None:
    try:
        check_data({"reason": (field.data or "").strip()})
    except AuditDataError:
        raise ValidationError(_("The reason must not quote a phone or ID number.")) from None


class RevealForm(FlaskForm):
    field = HiddenField(validators=[DataRequired()])
    contact_id = HiddenField()
    reason = TextAreaField(
        _l("Reason"),
        validators=[
            DataRequired(message=_l("State why you need to see it.")),
            Length(min=10, max=500, message=_l("Between 10 and 500 characters.")),
            _reason_has_no_number,
        ],
    )


class FlagForm(FlaskForm):
    flag = HiddenField(validators=[DataRequired()])
    value = HiddenField(validators=[DataRequired()])


class RecallForm(FlaskForm):
    placement_id = HiddenField(validators=[DataRequired()])
    reason = SelectField(
        _l("Reason for the recall"),
        choices=[],
        validators=[DataRequired(message=_l("Choose the reason for the recall."))],
    )


class DisputeForm(FlaskForm):
    dispute_id = HiddenField(validators=[DataRequired()])
    outcome = SelectField(
        _l("Resolution"),
        choices=[],
        validators=[DataRequired(message=_l("Choose the resolution."))],
    )
    note = StringField(_l("Note"), validators=[Optional(), Length(max=2000)])


def _recall_form(formdata: Any = None) -> RecallForm:
    form = RecallForm(formdata, prefix="recall")
    form.reason.choices = [("", _("Choose…"))] + [(k, str(v)) for k, v in RECALL_REASONS.items()]
    return form


def _dispute_form(formdata: Any = None) -> DisputeForm:
    form = DisputeForm(formdata, prefix="dispute")
    form.outcome.choices = [("", _("Choose…"))] + [(k.value, str(v)) for k, v in OUTCOMES.items()]
    return form


def _case_or_404(case_id: int) -> Case:
    case = db_session().get(Case, case_id)
    if case is None:
        abort(404, message=_("There is no case %(id)s.", id=case_id))
    return case


def _refusal(error: DomainError) -> str:
    return _("Refused: %(reason)s", reason=error.error_message)


def _render_case(
    case: Case,
    *,
    status: int = 200,
    revealed: Revealed | None = None,
    reveal_form: RevealForm | None = None,
    recall_form: RecallForm | None = None,
    dispute_form: DisputeForm | None = None,
    flag_errors: list[str] | None = None,
) -> Response:
    session = db_session()
    account = session.get(Account, case.account_id)
    debtor = session.get(Debtor, case.debtor_id)
    assert account is not None
    assert debtor is not None
    contacts = list(
        session.scalars(
            select(Contact)
            .where(Contact.debtor_id == debtor.id)
            .order_by(Contact.relation != "self", Contact.id)
        )
    )
    placement = session.scalar(
        select(Placement).where(Placement.case_id == case.id, Placement.recalled_on.is_(None))
    )
    agency = session.get(Agency, placement.agency_id) if placement is not None else None
    segment = session.get(CaseSegment, case.id)
    dispute = session.scalar(
        select(Dispute).where(Dispute.case_id == case.id, Dispute.status == DisputeStatus.OPEN)
    )
    # The newest entries first; the rest on request (rendering each costs, on long cases).
    full = request.args.get("timeline") == "all"
    limit = TIMELINE_ALL if full else TIMELINE_FIRST
    timeline = case_timeline(session, case, timezone=g.tenant.timezone, limit=limit)
    recall = recall_form or _recall_form()
    resolution = dispute_form or _dispute_form()
    if placement is not None and not recall.placement_id.data:
        recall.placement_id.data = str(placement.id)
    if dispute is not None and not resolution.dispute_id.data:
        resolution.dispute_id.data = str(dispute.id)
    flags = [(flag, has_flag(session, case, flag)) for flag in FLAGS]
    body = render_template(
        "portal/cases/detail.html",
        case=case,
        account=account,
        debtor=debtor,
        full_name=name_for_caller(debtor.full_name),
        contacts=contacts,
        placement=placement,
        agency=agency,
        bucket=bucket_of(account.days_past_due, tenant_buckets(session)),
        segment=segment.segment if segment is not None else None,
        dispute=dispute,
        timeline=timeline,
        timeline_full=full,
        flags=flags,
        flag_errors=flag_errors or [],
        revealed=revealed,
        reveal_form=reveal_form,
        recall_form=recall,
        dispute_form=resolution,
        **_labels(),
    )
    response = make_response(body, status)
    if revealed is not None or reveal_form is not None:
        # The page holds (or was asked for) a clear identifier: no cache may keep it.
        response.headers["Cache-Control"] = "no-store"
        response.headers["Pragma"] = "no-cache"
    return response


@blp.get("/cases/<int:case_id>")
@portal_page
def cases_detail(case_id: int) -> Response:
    """One case: account and balances, debtor (masked), timeline and the admin's actions."""
    return _render_case(_case_or_404(case_id))


@blp.post("/cases/<int:case_id>/reveal")
@portal_page
def cases_reveal(case_id: int) -> Response:
    """Show one masked identifier in full, once, for a stated reason (audited)."""
    case = _case_or_404(case_id)
    form = RevealForm()
    if not form.validate():
        return _render_case(case, status=422, reveal_form=form)
    contact_id = form.contact_id.data
    try:
        revealed = reveal(
            db_session(),
            objects=platform(),
            tenant_id=g.tenant.id,
            principal=g.page_principal,
            debtor_id=case.debtor_id,
            field=form.field.data or "",
            reason=form.reason.data or "",
            contact_id=int(contact_id) if contact_id and contact_id.isdigit() else None,
        )
    except RevealError as error:
        if error.status in (403, 404):
            abort(error.status, message=error.message)
        form.form_errors = [_reveal_refusal(error)]
        response = _render_case(case, status=422 if error.status != 429 else 429, reveal_form=form)
        if error.retry_after:
            response.headers["Retry-After"] = str(error.retry_after)
        return response
    return _render_case(case, revealed=revealed)


def _reveal_refusal(error: RevealError) -> str:
    if error.status == 429:
        return _("Too many reveals this hour. Try again in %(s)s seconds.", s=error.retry_after)
    if error.status == 410:
        return _("This debtor's personal data was erased at the end of retention.")
    return _refusal(error)


@blp.post("/cases/<int:case_id>/flags")
@portal_page
def cases_flags(case_id: int) -> Response:
    """Set or clear one flag (a new flag recalls the case from its agency)."""
    case = _case_or_404(case_id)
    form = FlagForm()
    if not form.validate() or form.value.data not in ("1", "0"):
        return _render_case(case, status=422, flag_errors=[_("Choose a flag to change.")])
    flag, value = form.flag.data or "", form.value.data == "1"
    try:
        recalled = change_case_flag(
            db_session(),
            case=case,
            flag=flag,
            value=value,
            actor=g.page_principal,
            today=tenant_today(g.tenant.timezone),
        )
    except FlagRefused as error:
        return _render_case(case, status=422, flag_errors=[_refusal(error)])
    label = FLAG_LABELS.get(flag, flag)
    if value:
        message = _("Flag set: %(flag)s.", flag=label)
    else:
        message = _("Flag cleared: %(flag)s.", flag=label)
    if recalled is not None:
        message += " " + _("The case was recalled from its agency.")
    flash(message, "success")
    return redirect(url_for("portal.cases_detail", case_id=case.id), 303)


@blp.post("/cases/<int:case_id>/recall")
@portal_page
def cases_recall(case_id: int) -> Response:
    """Take the case back from its agency today, for a reason."""
    case = _case_or_404(case_id)
    form = _recall_form(request.form)
    if not form.validate():
        return _render_case(case, status=422, recall_form=form)
    placement_id = form.placement_id.data or ""
    placement = (
        db_session().scalar(
            select(Placement).where(Placement.id == int(placement_id), Placement.case_id == case.id)
        )
        if placement_id.isdigit()
        else None
    )
    if placement is None:
        abort(404, message=_("There is no such placement of this case."))
    try:
        recall_placement(
            db_session(),
            placement,
            reason=form.reason.data or "",
            on=tenant_today(g.tenant.timezone),
        )
    except PlacementError as error:
        form.form_errors = [_refusal(error)]
        return _render_case(case, status=422, recall_form=form)
    flash(_("The case was recalled from its agency."), "success")
    return redirect(url_for("portal.cases_detail", case_id=case.id), 303)


@blp.post("/cases/<int:case_id>/dispute-resolution")
@portal_page
def cases_dispute(case_id: int) -> Response:
    """Record the tenant's resolution of the case's open dispute."""
    case = _case_or_404(case_id)
    form = _dispute_form(request.form)
    if not form.validate():
        return _render_case(case, status=422, dispute_form=form)
    dispute_id = form.dispute_id.data or ""
    dispute = (
        db_session().scalar(
            select(Dispute).where(Dispute.id == int(dispute_id), Dispute.case_id == case.id)
        )
        if dispute_id.isdigit()
        else None
    )
    if dispute is None:
        abort(404, message=_("There is no such dispute of this case."))
    try:
        resolve_dispute(
            db_session(),
            dispute=dispute,
            outcome=DisputeStatus(form.outcome.data),
            note=(form.note.data or "").strip() or None,
            actor=g.page_principal,
        )
    except DomainError as error:
        form.form_errors = [_refusal(error)]
        return _render_case(case, status=422, dispute_form=form)
    flash(_("The dispute's resolution was recorded."), "success")
    return redirect(url_for("portal.cases_detail", case_id=case.id), 303)
