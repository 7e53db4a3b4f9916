"""Portal login and logout, with CSRF-protected forms and account lockout."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, session, url_for
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired

from recova.platform.audit import record_event
from recova.platform.auth.models import User
from recova.platform.auth.principal import SESSION_EPOCH_KEY, SESSION_USER_KEY, current_principal
from recova.platform.auth.services import authenticate, end_sessions
from recova.platform.kernel.db import bind_session_to_schema
from recova.platform.kernel.extension import platform
from recova.platform.kernel.request_scope import db_session

blp = Blueprint("web_auth", __name__)


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired()])
    password = PasswordField("Password", validators=[DataRequired()])


class LogoutForm(FlaskForm):
    pass


@blp.route("/login", methods=["GET", "POST"])
def login() -> Response | str | tuple[str, int]:
    """Show the login form, or check it and start a portal session."""
    form = LoginForm()
    error = None
    if request.method == "POST":
        if not form.validate_on_submit():
            return render_template("login.html", form=form, error="check the form"), 400
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
            session.clear()  # a fresh session on login: no fixation
            session[SESSION_USER_KEY] = result.user.id
            session[SESSION_EPOCH_KEY] = result.user.session_epoch
            session.permanent = True
            return redirect(url_for("web_auth.home"))
        # A failed attempt still commits (the failure count must stick), so answer 200.
        error = result.error
    return render_template("login.html", form=form, error=error)


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


@blp.get("/")
def home() -> Response | str:
    """Who is logged in, their organisation and where to go next."""
    principal = current_principal()
    if principal is None or principal.is_client:
        return redirect(url_for("web_auth.login"))
    return render_template("home.html", principal=principal, logout_form=LogoutForm())
