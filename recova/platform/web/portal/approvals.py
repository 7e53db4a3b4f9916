"""The portal's approvals: settlement offers above the agencies' limits and open disputes,
decided by the tenant with a reason.

The decisions call the same services as the API (``settlements.decide_settlement`` at the
tenant's level, ``disputes.resolve_dispute``); a refusal of the service (already decided,
expired, a hold that is not the dispute's) is shown on the page with status 422, the
user's input kept. Payment plans need no approval in Recova (a plan is agreed by the
collector and active at once), so none wait here.
"""

from __future__ import annotations

from typing import Any

from flask import current_app, flash, g, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response
from wtforms import SelectChoice, SelectField, TextAreaField
from wtforms.validators import Length, Optional

from recova.platform.auth.principal import Principal
from recova.platform.kernel.db import utcnow
from recova.platform.kernel.errors import DomainError, abort
from recova.platform.kernel.request_scope import db_session
from recova.platform.web.decisions import SettlementDecisionForm, decide_offer
from recova.platform.web.pages import portal_page
from recova.platform.web.portal import blp
from recova.platform.work import approvals, disputes
from recova.platform.work.errors import NotPermitted
from recova.platform.work.models import Dispute, DisputeStatus, Settlement
from recova.tenants.models import tenant_today

#: The debtor's grounds as collectors record them (``disputes.GROUNDS``), for people.
GROUNDS = {
    "not_my_debt": _l("Not my debt"),
    "amount_wrong": _l("Amount is wrong"),
    "already_paid": _l("Already paid"),
    "identity_theft": _l("Identity theft"),
    "other": _l("Other"),
}


class DisputeResolutionForm(FlaskForm):
    """The tenant's resolution of a dispute; rejecting it says why."""

    outcome = SelectField(
        _l("Resolution"),
        choices=[
            SelectChoice(DisputeStatus.REJECTED.value, _l("Rejected: the debt stands")),
            SelectChoice(DisputeStatus.ADJUSTED.value, _l("Adjusted: owed in a corrected amount")),
            SelectChoice(DisputeStatus.UPHELD.value, _l("Upheld: the debt is not owed")),
        ],
    )
    note = TextAreaField(_l("Reason"), validators=[Optional(), Length(max=2000)])

    def validate(self, extra_validators: Any = None) -> bool:
        valid = super().validate(extra_validators)
        if self.outcome.data == DisputeStatus.REJECTED.value and not (self.note.data or "").strip():
            self.note.errors = [*self.note.errors, _("Give the reason for rejecting the dispute.")]
            valid = False
        return valid


def settlement_form(settlement_id: int) -> SettlementDecisionForm:
    return SettlementDecisionForm(prefix=f"settlement-{settlement_id}")


def dispute_form(dispute_id: int) -> DisputeResolutionForm:
    return DisputeResolutionForm(prefix=f"dispute-{dispute_id}")


def _principal() -> Principal:
    principal: Principal = g.page_principal
    return principal


def _case_link(case_id: int) -> str | None:
    """The case page's URL once that page exists (otherwise the id is shown alone)."""
    if "portal.cases_detail" in current_app.view_functions:
        return url_for("portal.cases_detail", case_id=case_id)
    return None


def _page(
    *, failed: FlaskForm | None = None, failed_key: str | None = None, status: int = 200
) -> tuple[str, int]:
    session = db_session()
    tenant = g.tenant
    waiting = approvals.waiting_settlements(session, today=tenant_today(tenant.timezone))
    open_disputes = approvals.open_disputes(session, now=utcnow())
    forms: dict[str, FlaskForm] = {}
    for item in waiting:
        forms[f"settlement-{item.id}"] = settlement_form(item.id)
    for dispute in open_disputes:
        forms[f"dispute-{dispute.id}"] = dispute_form(dispute.id)
    # A refusal about a row no longer listed (decided meanwhile) is shown above the lists.
    unlisted_errors: list[str] = []
    if failed is not None and failed_key is not None:
        if failed_key in forms:
            forms[failed_key] = failed
        else:
            unlisted_errors = list(getattr(failed, "form_errors", []))
    return render_template(
        "portal/approvals/index.html",
        settlements=waiting,
        settlements_total=approvals.count_waiting_settlements(session),
        disputes=open_disputes,
        disputes_total=approvals.count_open_disputes(session),
        forms=forms,
        case_link=_case_link,
        grounds=GROUNDS,
        response_days=approvals.DISPUTE_RESPONSE_DAYS,
        unlisted_errors=unlisted_errors,
    ), status


@blp.get("/approvals", endpoint="approvals")
@portal_page
def approvals_page() -> tuple[str, int]:
    """Offers and disputes waiting for the tenant's decision, the most urgent first."""
    return _page()


def _refusal(error: DomainError) -> str:
    """The service's refusal, led by a sentence in the page's language."""
    if isinstance(error, NotPermitted):
        return _("Your approval level does not cover this: %(detail)s", detail=str(error))
    return _("This could not be done: %(detail)s", detail=str(error))


@blp.post("/approvals/settlements/<int:settlement_id>")
@portal_page
def approvals_settlement(settlement_id: int) -> Response | tuple[str, int]:
    """Approve or refuse one settlement offer at the tenant's level."""
    session = db_session()
    settlement = session.get(Settlement, settlement_id)
    if settlement is None:
        abort(404, message=_("There is no settlement offer %(id)s.", id=settlement_id))
    form = settlement_form(settlement_id)
    key = f"settlement-{settlement_id}"
    if not form.validate_on_submit():
        return _page(failed=form, failed_key=key, status=422)
    principal = _principal()
    try:
        message = decide_offer(session, settlement, form, principal, timezone=g.tenant.timezone)
    except DomainError as error:  # the 422 rolls the request's transaction back
        form.form_errors = [_refusal(error)]
        return _page(failed=form, failed_key=key, status=422)
    flash(message)
    return redirect(url_for("portal.approvals"))


@blp.post("/approvals/disputes/<int:dispute_id>")
@portal_page
def approvals_dispute(dispute_id: int) -> Response | tuple[str, int]:
    """Resolve one open dispute: upheld closes the case, adjusted or rejected resumes it."""
    session = db_session()
    dispute = session.get(Dispute, dispute_id)
    if dispute is None:
        abort(404, message=_("There is no dispute %(id)s.", id=dispute_id))
    form = dispute_form(dispute_id)
    key = f"dispute-{dispute_id}"
    if not form.validate_on_submit():
        return _page(failed=form, failed_key=key, status=422)
    try:
        disputes.resolve_dispute(
            session,
            dispute=dispute,
            outcome=DisputeStatus(form.outcome.data),
            note=(form.note.data or "").strip() or None,
            actor=_principal(),
        )
    except DomainError as error:  # the 422 rolls the request's transaction back
        form.form_errors = [_refusal(error)]
        return _page(failed=form, failed_key=key, status=422)
    flash(_("Dispute %(id)s resolved.", id=dispute_id))
    return redirect(url_for("portal.approvals"))
