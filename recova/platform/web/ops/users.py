"""The operator's users: platform operators and agency staff (a tenant's users are its
admins' to manage, in the tenant's portal). Create one for the platform or for an agency
as manager or collector; deactivate (every session ends at once) or reactivate.

Through ``recova.platform.auth.services`` (``create_user``, ``set_user_active``), as the
API's ``/platform/users``: the role must fit the organisation, e-mails are unique, nobody
deactivates their own login.
"""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from sqlalchemy import select
from werkzeug.wrappers import Response
from wtforms import PasswordField, SelectChoice, SelectField, StringField
from wtforms.validators import Length

from recova.platform.agencies.models import Agency
from recova.platform.agencies.services import agencies_after
from recova.platform.auth import listing, services
from recova.platform.auth.models import Role, User
from recova.platform.auth.passwords import MIN_PASSWORD_LENGTH
from recova.platform.kernel.request_scope import db_session
from recova.platform.web.auth import ROLE_NAMES
from recova.platform.web.i18n import LANGUAGE_NAMES
from recova.platform.web.ops import blp
from recova.platform.web.ops.common import (
    OPS_TIMEZONE,
    PAGE_SIZE,
    add_error,
    at_most,
    id_after,
    ops_page,
    principal,
    required,
)
from recova.platform.web.portal.settings import ApiEmail

STAFF_ROLES = (Role.AGENCY_MANAGER, Role.COLLECTOR, Role.PLATFORM_ADMIN)
#: How many agencies the form suggests (any slug may be typed).
AGENCY_SUGGESTIONS = 500


class StaffUserForm(FlaskForm):
    email = StringField(_l("E-mail"), validators=[required(), at_most(320), ApiEmail()])
    full_name = StringField(_l("Full name"), validators=[required(), at_most(200)])
    role = SelectField(
        _l("Role"), choices=[SelectChoice(role.value, ROLE_NAMES[role]) for role in STAFF_ROLES]
    )
    agency = StringField(_l("Agency (slug)"), validators=[at_most(56)])
    locale = SelectField(
        _l("Language"),
        choices=[SelectChoice(code, LANGUAGE_NAMES[code]) for code in services.USER_LOCALES],
    )
    password = PasswordField(
        _l("Initial password"),
        validators=[
            required(),
            Length(min=MIN_PASSWORD_LENGTH, message=_l("At least %(min)d characters.")),
        ],
    )


class ActiveForm(FlaskForm):
    active = SelectField(choices=[SelectChoice("0"), SelectChoice("1")])


def _agency_filter() -> Agency | None:
    value = request.args.get("agency", "")
    if not value:
        return None
    agency = db_session().get(Agency, int(value)) if value.isdigit() else None
    if agency is None:
        abort(404)
    return agency


def _page(form: StaffUserForm | None = None, status: int = 200) -> tuple[str, int]:
    session = db_session()
    agency = _agency_filter()
    after = id_after()
    users = listing.staff_users(
        session, agency_id=agency.id if agency else None, after=after, limit=PAGE_SIZE + 1
    )
    more = len(users) > PAGE_SIZE
    users = users[:PAGE_SIZE]
    if form is None:
        form = StaffUserForm(
            formdata=None,
            role=Role.AGENCY_MANAGER.value if agency else Role.PLATFORM_ADMIN.value,
            agency=agency.slug if agency else "",
            locale="zh_CN",
        )
    return render_template(
        "ops/users/index.html",
        users=users,
        agency=agency,
        next_after=users[-1].id if more else None,
        first_page=after is None,
        form=form,
        active_form=ActiveForm(formdata=None),
        agency_slugs=[a.slug for a in agencies_after(session, limit=AGENCY_SUGGESTIONS)],
        role_names=ROLE_NAMES,
        language_names=LANGUAGE_NAMES,
        me=principal().subject_id,
        min_password=MIN_PASSWORD_LENGTH,
        tz=OPS_TIMEZONE,
    ), status


def _here() -> str:
    """This list's address, with its agency filter kept."""
    agency = request.args.get("agency", "")
    return url_for("ops.users", agency=agency) if agency.isdigit() else url_for("ops.users")


def _organisation(form: StaffUserForm, role: Role) -> tuple[bool, Agency | None]:
    """The agency the form names for ``role`` (None for an operator), or False with the
    reason beside the agency field."""
    slug = (form.agency.data or "").strip()
    if role is Role.PLATFORM_ADMIN:
        if slug:
            add_error(form.agency, _("A platform operator belongs to no agency: leave this empty."))
            return False, None
        return True, None
    if not slug:
        add_error(form.agency, _("Name the agency of a manager or collector."))
        return False, None
    agency = db_session().scalar(select(Agency).where(Agency.slug == slug))
    if agency is None:
        add_error(form.agency, _("There is no agency with this slug."))
        return False, None
    return True, agency


@blp.route("/users", methods=["GET", "POST"])
@ops_page
def users() -> Response | tuple[str, int]:
    """Platform operators and agency staff (``?agency=<id>``: one agency's); the form
    creates a user with an initial password."""
    if request.method == "GET":
        return _page()
    form = StaffUserForm()
    if not form.validate_on_submit():
        return _page(form, 422)
    session = db_session()
    role = Role(form.role.data)
    fits, agency = _organisation(form, role)
    if not fits:
        return _page(form, 422)
    try:
        user = services.create_user(
            session,
            email=form.email.data or "",
            full_name=(form.full_name.data or "").strip(),
            password=form.password.data or "",
            role=role,
            agency=agency,
            locale=form.locale.data,
        )
    except services.UserConflict:
        add_error(form.email, _("A user with this e-mail already exists."))
        return _page(form, 422)
    except services.UserError as error:
        form.form_errors = [_("The change was refused: %(reason)s", reason=str(error))]
        return _page(form, 422)
    flash(_("%(name)s can now sign in with the initial password.", name=user.email), "success")
    return redirect(_here())


def _user_or_404(user_id: int) -> User:
    user = listing.staff_user(db_session(), user_id=user_id)
    if user is None:
        abort(404)
    return user


@blp.post("/users/<int:user_id>/active")
@ops_page
def users_active(user_id: int) -> Response | tuple[str, int]:
    """Deactivate the user (every session of theirs ends at once) or let them back in."""
    user = _user_or_404(user_id)
    form = ActiveForm()
    if not form.validate_on_submit():
        abort(400)
    active = form.active.data == "1"
    try:
        services.set_user_active(db_session(), user, active, by_user_id=principal().subject_id)
    except services.SelfDeactivationError:
        flash(_("You cannot deactivate your own login."), "error")
        return redirect(_here())
    if active:
        flash(_("%(name)s can sign in again.", name=user.email), "success")
    else:
        flash(_("%(name)s is deactivated and signed out.", name=user.email), "success")
    return redirect(_here())
