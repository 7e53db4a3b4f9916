"""The agency manager's approvals: settlement offers above the collectors' limit and within
the contract's, decided with a reason; those above the contract's, passed to the tenant
(read only, with what became of them); the collectors' own limit.

Every tenant the agency serves is read by its own query (``approvals.agency_settlements``)
and each row names its tenant. A decision is posted under the offer's tenant
(``/work/<tenant_slug>/approvals/settlements/<id>``, ``@manager_case_page`` binding it)
and calls the API's service, ``settlements.decide_settlement`` at the manager's level; an
offer out of reach (another agency's, a case no longer placed with the agency) is 404,
and the service's refusals (decided already, expired, above the agency's limit: the
tenant's to decide) are shown on the page with status 422, the input kept.

Payment plans need no approval in Recova: a plan is agreed by the collector and active at
once (``work.plans.create_plan``), so none wait here and the page says so.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from flask import flash, g, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from sqlalchemy import select
from werkzeug.routing import BuildError
from werkzeug.wrappers import Response
from wtforms import DecimalField
from wtforms.validators import (
    InputRequired,
    NumberRange,
    ValidationError,
)

from recova.platform.allocation.services import tenants_served
from recova.platform.auth.reach import within_case_reach
from recova.platform.kernel.db import utcnow
from recova.platform.kernel.errors import DomainError, abort
from recova.platform.kernel.request_scope import db_session
from recova.platform.web.decisions import SettlementDecisionForm, decide_offer
from recova.platform.web.pages import manager_case_page, manager_page
from recova.platform.web.workspace import blp
from recova.platform.web.workspace.frame import current_agency, page_principal
from recova.platform.work import approvals, settlements
from recova.platform.work.errors import NotPermitted
from recova.platform.work.models import Settlement, SettlementStatus

#: An offer's state as the manager reads it on the list of those passed to the tenant.
STATES = {
    SettlementStatus.PENDING_APPROVAL: _l("Waiting for the tenant"),
    SettlementStatus.APPROVED: _l("Approved by the tenant"),
    SettlementStatus.REJECTED: _l("Refused by the tenant"),
    SettlementStatus.EXPIRED: _l("Expired"),
    SettlementStatus.PAID: _l("Paid"),
}
STATE_BADGES = {
    SettlementStatus.PENDING_APPROVAL: "warn",
    SettlementStatus.APPROVED: "good",
    SettlementStatus.REJECTED: "bad",
    SettlementStatus.EXPIRED: "",
    SettlementStatus.PAID: "good",
}


def _two_places(form: FlaskForm, field: DecimalField) -> None:
    value = field.data
    if isinstance(value, Decimal) and value.as_tuple().exponent < -2:  # type: ignore[operator]
        raise ValidationError(_("Give the percentage with at most two decimals."))


class CollectorLimitForm(FlaskForm):
    """The discount the agency's collectors may approve on their own."""

    limit = DecimalField(
        _l("Collectors approve discounts up to (%)"),
        validators=[InputRequired(), NumberRange(min=0, max=100), _two_places],
    )


def settlement_key(tenant_slug: str, settlement_id: int) -> str:
    """The form prefix and row id of one offer: ids repeat across tenants, slugs do not."""
    return f"s-{tenant_slug}-{settlement_id}"


def settlement_form(tenant_slug: str, settlement_id: int) -> SettlementDecisionForm:
    return SettlementDecisionForm(prefix=settlement_key(tenant_slug, settlement_id))


def case_link(tenant_slug: str, case_id: int) -> str | None:
    """The workspace's case page, once that page exists (otherwise the id shows alone)."""
    try:
        return url_for("workspace.queue_case", tenant_slug=tenant_slug, case_id=case_id)
    except BuildError:
        return None


def _limits_view(limit_form: CollectorLimitForm | None) -> dict[str, Any]:
    """The collectors' limit, and per served tenant the contract's cap and the limit that
    applies there (the lower of the two)."""
    session = db_session()
    agency = current_agency()
    limits = settlements.agency_limits(session, agency)
    names = {tenant.slug: tenant.name for tenant in tenants_served(session, agency.id)}
    own = agency.collector_discount_limit
    caps = []
    for slug, found in sorted(limits["contract_limits"].items()):
        cap = found if found is not None else Decimal(0)
        caps.append(
            {
                "slug": slug,
                "name": names.get(slug, slug),
                "contract": cap,
                "applies": min(own, cap),
                "capped": own > cap,
            }
        )
    if limit_form is None:
        limit_form = CollectorLimitForm()
        limit_form.limit.data = own
    return {"limit_form": limit_form, "own_limit": own, "caps": caps}


def _page(
    *,
    failed: FlaskForm | None = None,
    failed_key: str | None = None,
    limit_form: CollectorLimitForm | None = None,
    status: int = 200,
) -> tuple[str, int]:
    session = db_session()
    agency = current_agency()
    tenants = tenants_served(session, agency.id)
    now = utcnow()
    waiting = approvals.agency_settlements(session, tenants, agency_id=agency.id, now=now)
    passed = approvals.agency_settlements(
        session, tenants, agency_id=agency.id, passed=True, now=now
    )
    forms: dict[str, FlaskForm] = {
        settlement_key(item.tenant_slug, item.id): settlement_form(item.tenant_slug, item.id)
        for item in waiting.items
    }
    # A refusal about a row no longer listed (decided meanwhile) is shown above the lists.
    unlisted_errors: list[str] = []
    if failed is not None and failed_key is not None:
        if failed_key in forms:
            forms[failed_key] = failed
        else:
            unlisted_errors = [
                *getattr(failed, "form_errors", []),
                *(message for field in failed for message in field.errors),
            ]
    return render_template(
        "work/approvals/index.html",
        waiting=waiting,
        passed=passed,
        tenants=tenants,
        forms=forms,
        settlement_key=settlement_key,
        case_link=case_link,
        states=STATES,
        state_badges=STATE_BADGES,
        passed_days=approvals.PASSED_LISTED_DAYS,
        unlisted_errors=unlisted_errors,
        **_limits_view(limit_form),
    ), status


@blp.get("/approvals", endpoint="approvals")
@manager_page
def approvals_page() -> tuple[str, int]:
    """Offers waiting for the manager across the agency's tenants, the soonest to expire
    first; those passed to the tenant; the collectors' limit."""
    return _page()


def _refusal(error: DomainError) -> str:
    """The service's refusal, led by a sentence in the page's language."""
    if isinstance(error, NotPermitted):
        return _(
            "Above the agency's limit: only the tenant may decide this offer (%(detail)s).",
            detail=str(error),
        )
    return _("This could not be done: %(detail)s", detail=str(error))


@blp.post(
    "/<slug:tenant_slug>/approvals/settlements/<int:settlement_id>",
    endpoint="approvals_settlement",
)
@manager_case_page
def approvals_settlement(settlement_id: int) -> Response | tuple[str, int]:
    """Approve or refuse one offer of the tenant at the manager's level (the contract's
    limit); an offer the agency may not reach is 404."""
    session = db_session()
    tenant_slug = g.tenant.slug  # bound by the page's rule (the slug left the arguments)
    principal = page_principal()
    statement = select(Settlement).where(
        Settlement.id == settlement_id, Settlement.agency_id == principal.agency_id
    )
    settlement = session.scalar(within_case_reach(statement, principal, Settlement.case_id))
    if settlement is None:
        abort(404, message=_("There is no settlement offer %(id)s.", id=settlement_id))
    key = settlement_key(tenant_slug, settlement_id)
    form = settlement_form(tenant_slug, settlement_id)
    if not form.validate_on_submit():
        return _page(failed=form, failed_key=key, status=422)
    try:
        message = decide_offer(session, settlement, form, principal, timezone=g.tenant.timezone)
    except DomainError as error:  # the 422 rolls the request's transaction back
        form.form_errors = [_refusal(error)]
        return _page(failed=form, failed_key=key, status=422)
    flash(message)
    return redirect(url_for("workspace.approvals"))


@blp.post("/approvals/collector-limit", endpoint="approvals_limit")
@manager_page
def approvals_limit() -> Response | tuple[str, int]:
    """Set the discount the agency's collectors approve on their own (each tenant's
    contract limit still caps it there), as the API's ``/agency/settlement-limit``."""
    form = CollectorLimitForm()
    if not form.validate_on_submit():
        return _page(limit_form=form, status=422)
    try:
        settlements.set_collector_limit(
            db_session(), current_agency(), limit=form.limit.data, actor=page_principal()
        )
    except DomainError as error:  # the 422 rolls the request's transaction back
        form.limit.errors = [*form.limit.errors, str(error)]
        return _page(limit_form=form, status=422)
    flash(_("Collectors now approve discounts up to %(limit)s%%.", limit=form.limit.data))
    return redirect(url_for("workspace.approvals", _anchor="collector-limit"))
