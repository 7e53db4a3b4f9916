"""The portal's settings: the tenant's users, its API clients, retention and case work.

Every change goes through the services the JSON API calls (``recova.platform.auth``,
``recova.platform.privacy.settings``, ``recova.platform.work.settings``), and each form
checks the same ranges as the API's schemas (read from them, so the two never drift).
"""

from __future__ import annotations

from typing import Any, cast

from flask import abort, flash, g, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from marshmallow import Schema, ValidationError, validate
from werkzeug.wrappers import Response
from wtforms import (
    Field,
    IntegerField,
    PasswordField,
    SelectChoice,
    SelectField,
    SelectMultipleField,
    StringField,
    widgets,
)
from wtforms.validators import (
    DataRequired,
    InputRequired,
    Length,
    NumberRange,
)
from wtforms.validators import (
    ValidationError as FieldError,
)

from recova.platform.auth import listing, services
from recova.platform.auth.access import SCOPES
from recova.platform.auth.models import OAuthClient, Role, User
from recova.platform.auth.passwords import MIN_PASSWORD_LENGTH
from recova.platform.auth.principal import Principal
from recova.platform.kernel.request_scope import db_session
from recova.platform.privacy import settings as privacy_settings
from recova.platform.privacy.schemas import PrivacySettingsSchema
from recova.platform.web.auth import ROLE_NAMES
from recova.platform.web.i18n import LANGUAGE_NAMES
from recova.platform.web.pages import portal_page
from recova.platform.web.portal import blp
from recova.platform.work import settings as work_settings
from recova.platform.work.schemas import WorkSettingsSchema

PAGE_SIZE = 50

#: The settings pages, as tabs at the top of each.
TABS = (
    ("portal.settings", _l("Retention and case work")),
    ("portal.settings_users", _l("Users")),
    ("portal.settings_clients", _l("API clients")),
)

#: Each API scope's description in the page's language (the API's ``SCOPES`` are English).
SCOPE_LABELS: dict[str, Any] = {
    "tenant:read": _l("Read the tenant's profile"),
    "cases:read": _l("Read cases, accounts and debtors (masked)"),
    "ingest:write": _l("Send portfolios and payments: mappings, files, sources and runs"),
    "allocation:read": _l("Read allocation settings, strategies, runs, placements and scores"),
    "allocation:write": _l("Change allocation settings and strategies, run allocation, recall"),
    "work:read": _l("Read case work: lifecycle, promises, plans, settlements, disputes"),
    "work:write": _l("Do case work: transitions, promises, plans, settlements, disputes, settings"),
    "contact:read": _l("Read contact attempts, outcome codes and message templates"),
    "contact:write": _l("Make contact attempts through the compliance gate and record outcomes"),
    "compliance:read": _l("Read the compliance policy, simulate schedules, list notices due"),
    "compliance:write": _l("Tighten the compliance policy; manage outcome codes and templates"),
    "audit:read": _l("Read and verify the tenant's audit chain and its exported heads"),
    "privacy:reveal": _l("Reveal a debtor's national id or phone number, with a stated reason"),
    "billing:read": _l("Read contract versions, the commission ledger, invoices and statements"),
    "billing:write": _l("Add contract versions, close months, issue, pay and void invoices"),
    "webhooks:read": _l("Read webhook endpoints and their delivery logs"),
    "webhooks:write": _l("Register, change and delete webhook endpoints; rotate secrets, replay"),
}

TENANT_ROLE_CHOICES = [
    SelectChoice(Role.TENANT_ANALYST.value, ROLE_NAMES[Role.TENANT_ANALYST]),
    SelectChoice(Role.TENANT_ADMIN.value, ROLE_NAMES[Role.TENANT_ADMIN]),
]
LANGUAGE_CHOICES = [SelectChoice(code, LANGUAGE_NAMES[code]) for code in services.USER_LOCALES]

#: What the user-facing refusals of the user services say, in the page's language.
USER_REFUSALS: dict[type[services.UserError], Any] = {
    services.LastAdminError: _l(
        "The tenant must keep at least one active administrator: make someone else"
        " an administrator first."
    ),
    services.SelfDeactivationError: _l("You cannot deactivate your own login."),
}


# --- form parts ------------------------------------------------------------------------


class WholeNumberField(IntegerField):
    """An integer input whose parse error is in the page's language."""

    def process_formdata(self, valuelist: list[Any]) -> None:
        if not valuelist or valuelist[0] in ("", None):
            self.data = None
            return
        try:
            self.data = int(str(valuelist[0]).strip())
        except ValueError as exc:
            self.data = None
            raise ValueError(_("Enter a whole number.")) from exc


class ScopesField(SelectMultipleField):
    """API scopes as a list of checkboxes."""

    widget = widgets.ListWidget(prefix_label=False)
    option_widget = widgets.CheckboxInput()


class ApiEmail:
    """The e-mail rule of the API's schemas (marshmallow's), with the page's message."""

    def __call__(self, form: FlaskForm, field: Field) -> None:
        try:
            validate.Email()(field.data or "")
        except ValidationError as exc:
            raise FieldError(_("Enter an e-mail address such as name@example.com.")) from exc


def api_range(schema: type[Schema], name: str) -> NumberRange:
    """A WTForms range with the bounds of the API schema's field ``name``."""
    for rule in schema().fields[name].validators:
        if isinstance(rule, validate.Range):
            return NumberRange(
                min=rule.min,
                max=rule.max,
                message=_l("Enter a number from %(min)s to %(max)s."),
            )
    raise LookupError(f"{schema.__name__}.{name} has no range")


def at_least_one_scope(form: FlaskForm, field: Field) -> None:
    """The API's rule (one scope or more), without marking every checkbox ``required``."""
    if not field.data:
        raise FieldError(_("Choose at least one scope."))


def required() -> InputRequired:
    return InputRequired(message=_l("This field is required."))


# --- forms -----------------------------------------------------------------------------


class RetentionForm(FlaskForm):
    retention_days = WholeNumberField(
        _l("Retention after the last case closes (days)"),
        validators=[required(), api_range(PrivacySettingsSchema, "retention_days")],
    )
    reveals_per_hour = WholeNumberField(
        _l("Reveals of personal data per user and hour"),
        validators=[required(), api_range(PrivacySettingsSchema, "reveals_per_hour")],
    )


WORK_LABELS = {
    "promise_grace_days": _l("Grace days after a promise's date"),
    "plan_grace_days": _l("Grace days after an instalment's due date"),
    "plan_max_misses": _l("Missed instalments that break a plan"),
    "max_deferral_days": _l("Longest deferral of one instalment (days)"),
    "max_deferrals": _l("Deferrals allowed over one plan"),
    "settlement_max_days": _l("Longest a settlement offer stays open (days)"),
}


class WorkSettingsForm(FlaskForm):
    promise_grace_days = WholeNumberField(
        WORK_LABELS["promise_grace_days"],
        validators=[required(), api_range(WorkSettingsSchema, "promise_grace_days")],
    )
    plan_grace_days = WholeNumberField(
        WORK_LABELS["plan_grace_days"],
        validators=[required(), api_range(WorkSettingsSchema, "plan_grace_days")],
    )
    plan_max_misses = WholeNumberField(
        WORK_LABELS["plan_max_misses"],
        validators=[required(), api_range(WorkSettingsSchema, "plan_max_misses")],
    )
    max_deferral_days = WholeNumberField(
        WORK_LABELS["max_deferral_days"],
        validators=[required(), api_range(WorkSettingsSchema, "max_deferral_days")],
    )
    max_deferrals = WholeNumberField(
        WORK_LABELS["max_deferrals"],
        validators=[required(), api_range(WorkSettingsSchema, "max_deferrals")],
    )
    settlement_max_days = WholeNumberField(
        WORK_LABELS["settlement_max_days"],
        validators=[required(), api_range(WorkSettingsSchema, "settlement_max_days")],
    )


class InviteUserForm(FlaskForm):
    email = StringField(
        _l("E-mail"),
        validators=[
            DataRequired(message=_l("This field is required.")),
            Length(max=320, message=_l("At most %(max)d characters.")),
            ApiEmail(),
        ],
    )
    full_name = StringField(
        _l("Full name"),
        validators=[
            DataRequired(message=_l("This field is required.")),
            Length(max=200, message=_l("At most %(max)d characters.")),
        ],
    )
    role = SelectField(_l("Role"), choices=TENANT_ROLE_CHOICES)
    locale = SelectField(_l("Language"), choices=LANGUAGE_CHOICES)
    password = PasswordField(
        _l("Initial password"),
        validators=[
            DataRequired(message=_l("This field is required.")),
            Length(
                min=MIN_PASSWORD_LENGTH,
                message=_l("At least %(min)d characters."),
            ),
        ],
    )


class RoleForm(FlaskForm):
    role = SelectField(_l("Role"), choices=TENANT_ROLE_CHOICES)


class LanguageForm(FlaskForm):
    locale = SelectField(_l("Language"), choices=LANGUAGE_CHOICES)


class ActiveForm(FlaskForm):
    active = SelectField(choices=[SelectChoice("0"), SelectChoice("1")])


class ApiClientForm(FlaskForm):
    name = StringField(
        _l("Name"),
        validators=[
            DataRequired(message=_l("This field is required.")),
            Length(max=200, message=_l("At most %(max)d characters.")),
        ],
    )
    scopes = ScopesField(
        _l("Scopes"),
        choices=[SelectChoice(scope) for scope in SCOPES],
        validators=[at_least_one_scope],
    )


# --- helpers ---------------------------------------------------------------------------


def _principal() -> Principal:
    principal: Principal = g.page_principal
    return principal


def _after() -> int | None:
    """The keyset cursor of a list page (``?after=<id>``), or None for the first page."""
    value = request.args.get("after", "")
    return int(value) if value.isdigit() else None


def _render(template: str, status: int = 200, **context: Any) -> tuple[str, int]:
    return render_template(template, tabs=TABS, **context), status


def _user_or_404(user_id: int) -> User:
    user = listing.tenant_user(db_session(), tenant_id=g.tenant.id, user_id=user_id)
    if user is None:
        abort(404)
    return user


def _client_or_404(client_pk: int) -> OAuthClient:
    client = listing.tenant_client(db_session(), tenant_id=g.tenant.id, client_pk=client_pk)
    if client is None:
        abort(404)
    return client


def _refusal(error: services.UserError) -> str:
    """A user service's refusal in the page's language."""
    for kind, message in USER_REFUSALS.items():
        if isinstance(error, kind):
            return str(message)
    return _("The change was refused: %(reason)s", reason=str(error))


# --- retention and case work -----------------------------------------------------------


def _settings_page(
    *,
    retention: RetentionForm | None = None,
    work: WorkSettingsForm | None = None,
    status: int = 200,
) -> tuple[str, int]:
    session = db_session()
    if retention is None:
        retention = RetentionForm(formdata=None, obj=privacy_settings.current_settings(session))
    if work is None:
        work = WorkSettingsForm(formdata=None, obj=work_settings.current_settings(session))
    return _render("portal/settings/general.html", status, retention=retention, work=work)


@blp.get("/settings")
@portal_page
def settings() -> tuple[str, int]:
    """The retention period, the reveal limit and the case-work settings, with their forms."""
    return _settings_page()


@blp.post("/settings/retention")
@portal_page
def settings_retention() -> Response | tuple[str, int]:
    """Save the retention period and reveal limit (an audit event with old and new)."""
    form = RetentionForm()
    if not form.validate_on_submit():
        return _settings_page(retention=form, status=422)
    try:
        privacy_settings.save_settings(
            db_session(),
            actor=_principal(),
            # Both are whole numbers once the form validated (InputRequired, a range).
            retention_days=cast(int, form.retention_days.data),
            reveals_per_hour=cast(int, form.reveals_per_hour.data),
        )
    except privacy_settings.PrivacySettingsError as error:
        form.form_errors = [_("The change was refused: %(reason)s", reason=str(error))]
        return _settings_page(retention=form, status=422)
    flash(_("Retention settings saved."), "success")
    return redirect(url_for("portal.settings"))


@blp.post("/settings/work")
@portal_page
def settings_work() -> Response | tuple[str, int]:
    """Save the case-work settings; the next evaluation uses them."""
    form = WorkSettingsForm()
    if not form.validate_on_submit():
        return _settings_page(work=form, status=422)
    values = {name: form[name].data for name in work_settings.DEFAULTS}
    changed = work_settings.change_settings(db_session(), actor=_principal(), **values)[1]
    if changed:
        flash(_("Case-work settings saved."), "success")
    else:
        flash(_("Nothing changed."), "success")
    return redirect(url_for("portal.settings"))


# --- users -----------------------------------------------------------------------------


def _users_page(form: InviteUserForm | None = None, status: int = 200) -> tuple[str, int]:
    after = _after()
    users = listing.tenant_users(
        db_session(), tenant_id=g.tenant.id, after=after, limit=PAGE_SIZE + 1
    )
    more = len(users) > PAGE_SIZE
    users = users[:PAGE_SIZE]
    if form is None:
        form = InviteUserForm(formdata=None, locale=_default_locale())
    return _render(
        "portal/settings/users.html",
        status,
        users=users,
        next_after=users[-1].id if more else None,
        first_page=after is None,
        form=form,
        role_names=ROLE_NAMES,
        language_names=LANGUAGE_NAMES,
        me=_principal().subject_id,
    )


def _default_locale() -> str:
    """A new user's language: the tenant's country's, else the page's."""
    return "zh_CN" if g.tenant.jurisdiction == "CN" else "en"


@blp.route("/settings/users", methods=["GET", "POST"])
@portal_page
def settings_users() -> Response | tuple[str, int]:
    """The tenant's users; an admin invites a new one with an initial password."""
    if request.method == "GET":
        return _users_page()
    form = InviteUserForm()
    if not form.validate_on_submit():
        return _users_page(form, 422)
    try:
        user = services.create_user(
            db_session(),
            email=form.email.data or "",
            full_name=(form.full_name.data or "").strip(),
            password=form.password.data or "",
            role=Role(form.role.data),
            tenant=g.tenant,
            locale=form.locale.data,
        )
    except services.UserConflict:
        form.email.errors.append(_("A user with this e-mail already exists."))
        return _users_page(form, 422)
    except services.UserError as error:
        form.form_errors = [_refusal(error)]
        return _users_page(form, 422)
    flash(_("%(name)s can now sign in with the initial password.", name=user.email), "success")
    return redirect(url_for("portal.settings_users"))


def _user_page(
    user: User,
    *,
    role: RoleForm | None = None,
    language: LanguageForm | None = None,
    errors: list[str] | None = None,
    status: int = 200,
) -> tuple[str, int]:
    return _render(
        "portal/settings/user.html",
        status,
        user=user,
        role_form=role or RoleForm(formdata=None, role=user.membership.role.value),
        language_form=language
        or LanguageForm(formdata=None, locale=user.locale or _default_locale()),
        active_form=ActiveForm(formdata=None),
        errors=errors or [],
        role_names=ROLE_NAMES,
        language_names=LANGUAGE_NAMES,
        me=_principal().subject_id,
    )


@blp.get("/settings/users/<int:user_id>")
@portal_page
def settings_users_detail(user_id: int) -> tuple[str, int]:
    """One user: their role, language and whether they may sign in."""
    return _user_page(_user_or_404(user_id))


@blp.post("/settings/users/<int:user_id>/role")
@portal_page
def settings_users_role(user_id: int) -> Response | tuple[str, int]:
    """Make the user an administrator or an analyst (the tenant keeps an admin)."""
    user = _user_or_404(user_id)
    form = RoleForm()
    if not form.validate_on_submit():
        return _user_page(user, role=form, status=422)
    try:
        services.set_user_role(db_session(), user, Role(form.role.data))
    except services.UserError as error:
        form.role.errors.append(_refusal(error))
        return _user_page(user, role=form, status=422)
    flash(_("Role changed."), "success")
    return redirect(url_for("portal.settings_users_detail", user_id=user.id))


@blp.post("/settings/users/<int:user_id>/language")
@portal_page
def settings_users_language(user_id: int) -> Response | tuple[str, int]:
    """Set the language the user's pages are shown in."""
    user = _user_or_404(user_id)
    form = LanguageForm()
    if not form.validate_on_submit():
        return _user_page(user, language=form, status=422)
    services.set_user_locale(user, form.locale.data)
    flash(_("Language changed."), "success")
    return redirect(url_for("portal.settings_users_detail", user_id=user.id))


@blp.post("/settings/users/<int:user_id>/active")
@portal_page
def settings_users_active(user_id: int) -> Response | tuple[str, int]:
    """Deactivate the user (every session of theirs ends at once) or let them back in."""
    user = _user_or_404(user_id)
    form = ActiveForm()
    if not form.validate_on_submit():
        return _user_page(user, errors=[_("Choose deactivate or reactivate.")], status=422)
    active = form.active.data == "1"
    try:
        services.set_user_active(db_session(), user, active, by_user_id=_principal().subject_id)
    except services.UserError as error:
        return _user_page(user, errors=[_refusal(error)], status=422)
    if active:
        flash(_("%(name)s can sign in again.", name=user.email), "success")
    else:
        flash(_("%(name)s is deactivated and signed out.", name=user.email), "success")
    return redirect(url_for("portal.settings_users_detail", user_id=user.id))


# --- API clients -----------------------------------------------------------------------


def _clients_page(form: ApiClientForm | None = None, status: int = 200) -> tuple[str, int]:
    after = _after()
    rows = listing.tenant_clients(
        db_session(), tenant_id=g.tenant.id, after=after, limit=PAGE_SIZE + 1
    )
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    return _render(
        "portal/settings/clients.html",
        status,
        rows=rows,
        next_after=rows[-1].client.id if more else None,
        first_page=after is None,
        form=form or ApiClientForm(formdata=None),
        scope_labels=SCOPE_LABELS,
        scopes=SCOPES,
    )


@blp.route("/settings/clients", methods=["GET", "POST"])
@portal_page
def settings_clients() -> Response | tuple[str, int]:
    """The tenant's API clients; an admin creates one and sees its secret once."""
    if request.method == "GET":
        return _clients_page()
    form = ApiClientForm()
    if not form.validate_on_submit():
        return _clients_page(form, 422)
    issued = services.create_api_client(
        db_session(),
        tenant=g.tenant,
        name=(form.name.data or "").strip(),
        scopes=list(dict.fromkeys(form.scopes.data or [])),
        created_by=_principal().subject_id,
    )
    page = render_template(
        "portal/settings/client_secret.html",
        tabs=TABS,
        client=issued.client,
        secret=issued.client_secret,
        scope_labels=SCOPE_LABELS,
    )
    response = make_response(page, 201)
    # The secret is in this answer only: no cache, no back-button copy, no proxy keeps it.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


@blp.post("/settings/clients/<int:client_pk>/revoke")
@portal_page
def settings_clients_revoke(client_pk: int) -> Response:
    """Revoke the client and every token it holds, at once."""
    client = _client_or_404(client_pk)
    services.revoke_api_client(db_session(), client)
    flash(_("%(name)s is revoked; its tokens no longer work.", name=client.name), "success")
    return redirect(url_for("portal.settings_clients"))
