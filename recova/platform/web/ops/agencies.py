"""The operator's agencies: the list, registering one, suspending and reactivating, and
each agency's contracts with tenants (listed per tenant, and a new one with its dates).

Agencies go through ``recova.platform.agencies.services`` and contracts through
``recova.billing.services`` (``create_agency_contract``, ``set_agency_payout``), as the
API's ``/platform/agencies`` and ``/platform/contracts`` do.
"""

from __future__ import annotations

from decimal import Decimal

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response
from wtforms import SelectChoice, SelectField, StringField
from wtforms.validators import NumberRange, Optional

from recova.billing import services as billing
from recova.platform.agencies import services
from recova.platform.agencies.contracts import AgencyContract, agency_contracts
from recova.platform.agencies.models import Agency, AgencyStatus
from recova.platform.auth.listing import staff_users
from recova.platform.kernel.request_scope import db_session
from recova.platform.web.auth import ROLE_NAMES
from recova.platform.web.ops import blp
from recova.platform.web.ops.common import (
    OPS_TIMEZONE,
    PAGE_SIZE,
    DayField,
    PercentField,
    WholeNumberField,
    add_error,
    at_most,
    ops_page,
    required,
    text_after,
)
from recova.tenants.services import get_tenant, tenants_after

STATUS_NAMES = {
    AgencyStatus.ACTIVE: _l("Active"),
    AgencyStatus.SUSPENDED: _l("Suspended"),
}
RANGE_MESSAGE = _l("Enter a number from %(min)s to %(max)s.")
#: How many tenants the contract form suggests (any slug may be typed).
TENANT_SUGGESTIONS = 500


class AgencyForm(FlaskForm):
    slug = StringField(_l("Slug"), validators=[required(), at_most(56)])
    name = StringField(_l("Agency name"), validators=[required(), at_most(200)])


class StatusForm(FlaskForm):
    status = SelectField(choices=[SelectChoice(s.value) for s in AgencyStatus])


class ContractForm(FlaskForm):
    tenant = StringField(_l("Tenant (slug)"), validators=[required(), at_most(56)])
    starts_on = DayField(_l("Starts on"), validators=[required()])
    ends_on = DayField(_l("Ends on (not included; empty: open-ended)"), validators=[Optional()])
    placement_days = WholeNumberField(
        _l("Placement period (days)"),
        default=60,
        validators=[
            required(),
            NumberRange(1, 3650, RANGE_MESSAGE),
        ],
    )
    grace_days = WholeNumberField(
        _l("Grace days after a recall"),
        default=10,
        validators=[required(), NumberRange(0, 365, RANGE_MESSAGE)],
    )
    payout_share = PercentField(
        _l("Agency's share of the commission (%)"),
        validators=[Optional(), NumberRange(0, 100, RANGE_MESSAGE)],
    )


def _agency_or_404(agency_id: int) -> Agency:
    agency = db_session().get(Agency, agency_id)
    if agency is None:
        abort(404)
    return agency


def _list_page(form: AgencyForm | None = None, status: int = 200) -> tuple[str, int]:
    after = text_after()
    agencies = services.agencies_after(db_session(), after=after, limit=PAGE_SIZE + 1)
    more = len(agencies) > PAGE_SIZE
    agencies = agencies[:PAGE_SIZE]
    return render_template(
        "ops/agencies/index.html",
        agencies=agencies,
        next_after=agencies[-1].slug if more else None,
        first_page=after is None,
        form=form or AgencyForm(formdata=None),
        status_form=StatusForm(formdata=None),
        status_names=STATUS_NAMES,
        tz=OPS_TIMEZONE,
    ), status


@blp.route("/agencies", methods=["GET", "POST"])
@ops_page
def agencies() -> Response | tuple[str, int]:
    """Every agency; the form registers a new one."""
    if request.method == "GET":
        return _list_page()
    form = AgencyForm()
    if not form.validate_on_submit():
        return _list_page(form, 422)
    try:
        agency = services.create_agency(
            db_session(), slug=(form.slug.data or "").strip(), name=(form.name.data or "").strip()
        )
    except services.AgencyConflict:
        add_error(form.slug, _("An agency with this slug already exists."))
        return _list_page(form, 422)
    except services.AgencyError:
        add_error(
            form.slug,
            _("Use lowercase letters, digits and single hyphens, starting with a letter."),
        )
        return _list_page(form, 422)
    flash(_("Agency %(slug)s is registered.", slug=agency.slug), "success")
    return redirect(url_for("ops.agencies_detail", agency_id=agency.id))


def _detail_page(
    agency: Agency, form: ContractForm | None = None, status: int = 200
) -> tuple[str, int]:
    session = db_session()
    contracts = agency_contracts(session, agency.id)
    return render_template(
        "ops/agencies/detail.html",
        agency=agency,
        contracts=contracts,
        staff=staff_users(session, agency_id=agency.id, limit=PAGE_SIZE),
        form=form or ContractForm(formdata=None),
        status_form=StatusForm(formdata=None),
        status_names=STATUS_NAMES,
        role_names=ROLE_NAMES,
        tenant_slugs=[t.slug for t in tenants_after(session, limit=TENANT_SUGGESTIONS)],
        payout=payout,
        tz=OPS_TIMEZONE,
    ), status


def payout(contract: AgencyContract) -> str:
    """What the agency is paid under the contract, in the page's language."""
    if contract.payout_mode == "rates":
        return _("Own rates by bucket")
    return _("%(share)s%% of the commission", share=contract.payout_share.normalize())


@blp.get("/agencies/<int:agency_id>")
@ops_page
def agencies_detail(agency_id: int) -> tuple[str, int]:
    """One agency: its status, its contracts per tenant, a new contract, its staff."""
    return _detail_page(_agency_or_404(agency_id))


@blp.post("/agencies/<int:agency_id>/status")
@ops_page
def agencies_status(agency_id: int) -> Response:
    """Suspend the agency (it is placed no more cases) or reactivate it."""
    agency = _agency_or_404(agency_id)
    form = StatusForm()
    if not form.validate_on_submit():
        abort(400)
    status = AgencyStatus(form.status.data)
    services.update_agency(agency, status=status)
    if status is AgencyStatus.SUSPENDED:
        flash(_("Agency %(slug)s is suspended.", slug=agency.slug), "success")
    else:
        flash(_("Agency %(slug)s is active again.", slug=agency.slug), "success")
    if request.form.get("back") == "list":
        return redirect(url_for("ops.agencies"))
    return redirect(url_for("ops.agencies_detail", agency_id=agency.id))


@blp.post("/agencies/<int:agency_id>/contracts")
@ops_page
def agencies_contracts(agency_id: int) -> Response | tuple[str, int]:
    """Contract the agency to a tenant for a period that overlaps none of the pair's."""
    agency = _agency_or_404(agency_id)
    form = ContractForm()
    if not form.validate_on_submit():
        return _detail_page(agency, form, 422)
    session = db_session()
    tenant = get_tenant(session, (form.tenant.data or "").strip())
    if tenant is None:
        add_error(form.tenant, _("There is no tenant with this slug."))
        return _detail_page(agency, form, 422)
    assert form.starts_on.data is not None  # required
    try:
        contract = billing.create_agency_contract(
            session,
            tenant=tenant,
            agency=agency,
            starts_on=form.starts_on.data,
            ends_on=form.ends_on.data,
            placement_days=form.placement_days.data or 60,
            grace_days=form.grace_days.data if form.grace_days.data is not None else 10,
        )
        if form.payout_share.data is not None:
            billing.set_agency_payout(contract, mode="share", share=Decimal(form.payout_share.data))
    except billing.ContractConflict:
        add_error(
            form.starts_on,
            _("This agency already has a contract with this tenant overlapping these dates."),
        )
        return _detail_page(agency, form, 422)
    except billing.ContractError:
        add_error(form.ends_on, _("The end must be after the start."))
        return _detail_page(agency, form, 422)
    except billing.PayoutError:
        add_error(form.payout_share, _("Enter a number from %(min)s to %(max)s.", min=0, max=100))
        return _detail_page(agency, form, 422)
    flash(
        _("%(agency)s is contracted to %(tenant)s.", agency=agency.slug, tenant=tenant.slug),
        "success",
    )
    return redirect(url_for("ops.agencies_detail", agency_id=agency.id))
