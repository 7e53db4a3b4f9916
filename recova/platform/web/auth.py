"""Portal login and logout (CSRF-protected forms, account lockout), the language switch,
and the home page that sends each role to its own area."""

from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from sqlalchemy import update
from werkzeug.wrappers import Response
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired

from recova.platform.audit import record_event
from recova.platform.auth.models import TENANT_ROLES, Role, User
from recova.platform.auth.principal import SESSION_EPOCH_KEY, SESSION_USER_KEY, current_principal
from recova.platform.auth.services import authenticate, end_sessions
from recova.platform.kernel.db import bind_session_to_schema
from recova.platform.kernel.extension import platform
from recova.platform.kernel.request_scope import db_session
from recova.platform.web.i18n import LOCALES, SESSION_LOCALE_KEY
from recova.platform.web.pages import safe_next

blp = Blueprint("web_auth", __name__)


class LoginForm(FlaskForm):
    email = EmailField(_l("Email"), validators=[DataRequired()])
    password = PasswordField(_l("Password"), validators=[DataRequired()])


@blp.route("/login", methods=["GET", "POST"])
def login() -> Response | str | tuple[str, int]:
    """Show the login form, or check it and start a portal session."""
    form = LoginForm()
    error = None
    next_page = safe_next(request.args.get("next"))
    if request.method == "POST":
        if not form.validate_on_submit():
            return render_template(
                "login.html", form=form, error=_("Check the form."), next=next_page
            ), 400
        settings = platform().settings
        result = authenticate(
            db_session(),
            email=form.email.data or "",
            password=form.password.data or "",
            max_failures=settings.login_max_failures,
            lockout_seconds=settings.login_lockout_seconds,
        )
        if result.user is not None:
            _audit_login(result.user)
            locale = session.get(SESSION_LOCALE_KEY)  # chosen before signing in: kept
            session.clear()  # a fresh session on login: no fixation
            session[SESSION_USER_KEY] = result.user.id
            session[SESSION_EPOCH_KEY] = result.user.session_epoch
            if locale in LOCALES:
                session[SESSION_LOCALE_KEY] = locale
            session.permanent = True
            return redirect(next_page or url_for("web_auth.home"))
        # A failed attempt still commits (the failure count must stick), so answer 200.
        error = _login_error(result.error)
    return render_template("login.html", form=form, error=error, next=next_page)


def _login_error(reason: str | None) -> str:
    """The service's refusal in the page's language: one text for every reason, so the
    page never tells a wrong password from an unknown e-mail or a locked account."""
    return _("Wrong e-mail or password, or too many attempts: try again later.")


def _audit_login(user: User) -> None:
    """A tenant user's login is an event in that tenant's chain, committed with it.

    Platform admins and agency staff belong to no single tenant; their logins are in the
    JSON logs, and what they then do inside a tenant is in that tenant's chain.
    """
    membership = user.membership
    if membership is None or membership.tenant is None:
        return
    current = db_session()
    bind_session_to_schema(current, membership.tenant.schema_name)
    record_event(current, action="auth.login", actor=f"user:{user.id}", data={"via": "portal"})


@blp.post("/logout")
def logout() -> Response:
    """End the portal session, and every other session of the same user."""
    principal = current_principal()
    if principal is not None and not principal.is_client:
        end_sessions(db_session(), principal.subject_id)
    session.clear()
    return redirect(url_for("web_auth.login"))


@blp.post("/language")
def set_language() -> Response:
    """Switch the portal's language: saved on the user, or in the session before sign-in."""
    # The app's CSRF guard has checked the form's token before this runs.
    locale = request.form.get("locale")
    if locale not in LOCALES:
        abort(400)
    session[SESSION_LOCALE_KEY] = locale
    principal = current_principal()
    if principal is not None and not principal.is_client:
        db_session().execute(
            update(User).where(User.id == principal.subject_id).values(locale=locale)
        )
    return redirect(safe_next(request.form.get("next")) or url_for("web_auth.home"))


@blp.get("/")
def home() -> Response | str:
    """Each role's own area: the tenant portal for a lender's staff, the operator's pages
    for a platform admin, the workspace's queue for agency staff."""
    principal = current_principal()
    if principal is None or principal.is_client:
        return redirect(url_for("web_auth.login"))
    if principal.role in TENANT_ROLES and principal.tenant is not None:
        return redirect(url_for("portal.overview", tenant_slug=principal.tenant.slug))
    if principal.role is Role.PLATFORM_ADMIN:
        return redirect(url_for("ops.tenants"))
    if principal.is_agency_user and "workspace.queue" in current_app.view_functions:
        return redirect(url_for("workspace.queue"))
    role_name = ROLE_NAMES[principal.role] if principal.role is not None else ""
    return render_template("home.html", principal=principal, role_name=role_name)


ROLE_NAMES = {
    Role.PLATFORM_ADMIN: _l("Platform operator"),
    Role.TENANT_ADMIN: _l("Tenant administrator"),
    Role.TENANT_ANALYST: _l("Tenant analyst"),
    Role.AGENCY_MANAGER: _l("Agency manager"),
    Role.COLLECTOR: _l("Collector"),
}
