"""The operator's tenants: the list, provisioning a new one, disabling and re-enabling.

Provisioning is ``recova.tenants.services.provision_tenant``, as the API's: the tenant's row,
its schema and every tenant migration in the request's one transaction. A refusal of the
service is shown beside the field it names, with everything typed kept.
"""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response
from wtforms import SelectChoice, SelectField, StringField

from recova.platform.kernel.request_scope import db_session
from recova.platform.web.ops import blp
from recova.platform.web.ops.common import (
    OPS_TIMEZONE,
    PAGE_SIZE,
    add_error,
    at_most,
    ops_page,
    required,
    text_after,
)
from recova.tenants import services
from recova.tenants.models import Jurisdiction, TenantStatus
from recova.tenants.slugs import MAX_IDENTIFIER_BYTES, SCHEMA_PREFIX

MAX_SLUG = MAX_IDENTIFIER_BYTES - len(SCHEMA_PREFIX)

JURISDICTION_NAMES = {
    Jurisdiction.CN: _l("CN · China"),
    Jurisdiction.US: _l("US · United States"),
}
STATUS_NAMES = {
    TenantStatus.ACTIVE: _l("Active"),
    TenantStatus.DISABLED: _l("Disabled"),
}
#: Suggestions for the time zone input (any IANA zone is accepted).
COMMON_ZONES = (
    "Asia/Shanghai",
    "Asia/Hong_Kong",
    "Asia/Singapore",
    "America/New_York",
    "America/Chicago",
    "America/Los_Angeles",
    "UTC",
)

#: The service's refusals by the field they name, in the page's language.
FIELD_REFUSALS = {
    "slug": _l(
        "Use lowercase letters, digits and single hyphens, starting with a letter"
        " (at most %(n)s characters, not starting with pg-)."
    ),
    "jurisdiction": _l("Choose a jurisdiction from the list."),
    "timezone": _l("Enter an IANA time zone such as Asia/Shanghai."),
    "currency": _l("Enter a three-letter ISO 4217 code such as CNY."),
}


class TenantForm(FlaskForm):
    slug = StringField(_l("Slug"), validators=[required(), at_most(MAX_SLUG)])
    name = StringField(_l("Tenant name"), validators=[required(), at_most(200)])
    jurisdiction = SelectField(
        _l("Jurisdiction"),
        choices=[SelectChoice(j.value, label) for j, label in JURISDICTION_NAMES.items()],
    )
    timezone = StringField(_l("Time zone"), validators=[required(), at_most(64)])
    currency = StringField(_l("Currency"), validators=[required(), at_most(3)])


class StatusForm(FlaskForm):
    status = SelectField(choices=[SelectChoice(s.value) for s in TenantStatus])


def _page(form: TenantForm | None = None, status: int = 200) -> tuple[str, int]:
    after = text_after()
    tenants = services.tenants_after(db_session(), after=after, limit=PAGE_SIZE + 1)
    more = len(tenants) > PAGE_SIZE
    tenants = tenants[:PAGE_SIZE]
    if form is None:
        form = TenantForm(
            formdata=None, jurisdiction="CN", timezone="Asia/Shanghai", currency="CNY"
        )
    return render_template(
        "ops/tenants/index.html",
        tenants=tenants,
        next_after=tenants[-1].slug if more else None,
        first_page=after is None,
        form=form,
        status_form=StatusForm(formdata=None),
        jurisdiction_names=JURISDICTION_NAMES,
        status_names=STATUS_NAMES,
        zones=COMMON_ZONES,
        tz=OPS_TIMEZONE,
    ), status


def _refusal(form: TenantForm, error: services.TenantError) -> None:
    """Put the service's refusal beside the field it names."""
    if isinstance(error, services.TenantConflict):
        add_error(form.slug, _("This slug is taken: a tenant or schema of that name exists."))
        return
    message: Any = FIELD_REFUSALS.get(error.field)
    field = form[error.field] if error.field in FIELD_REFUSALS else form.slug
    if message is None:
        message = _("The change was refused: %(reason)s", reason=str(error))
    elif error.field == "slug":
        message = str(message) % {"n": MAX_SLUG}
    add_error(field, str(message))


@blp.route("/tenants", methods=["GET", "POST"])
@ops_page
def tenants() -> Response | tuple[str, int]:
    """Every tenant; the form provisions a new one (its row, schema and tables)."""
    if request.method == "GET":
        return _page()
    form = TenantForm()
    if not form.validate_on_submit():
        return _page(form, 422)
    try:
        tenant = services.provision_tenant(
            db_session(),
            slug=(form.slug.data or "").strip(),
            name=(form.name.data or "").strip(),
            jurisdiction=form.jurisdiction.data or "",
            timezone=(form.timezone.data or "").strip(),
            currency=(form.currency.data or "").strip().upper(),
        )
    except services.TenantError as error:
        _refusal(form, error)
        return _page(form, 422)
    flash(
        _(
            "Tenant %(slug)s is provisioned in schema %(schema)s.",
            slug=tenant.slug,
            schema=tenant.schema_name,
        ),
        "success",
    )
    return redirect(url_for("ops.tenants"))


@blp.post("/tenants/<slug:slug>/status")
@ops_page
def tenants_status(slug: str) -> Response:
    """Disable a tenant (its staff and API clients are refused at once) or re-enable it."""
    session = db_session()
    tenant = services.get_tenant(session, slug)
    if tenant is None:
        abort(404)
    form = StatusForm()
    if not form.validate_on_submit():
        abort(400)
    status = TenantStatus(form.status.data)
    services.set_tenant_status(session, tenant, status)
    if status is TenantStatus.DISABLED:
        flash(
            _("Tenant %(slug)s is disabled: its users and API clients are refused.", slug=slug),
            "success",
        )
    else:
        flash(_("Tenant %(slug)s is enabled again.", slug=slug), "success")
    return redirect(url_for("ops.tenants"))
