"""Portal login and logout: CSRF on forms and API writes, cookie flags, lockout, deactivation."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from typing import Literal

import pytest
from argon2 import PasswordHasher
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from recova.platform.auth import passwords
from recova.platform.auth.models import Role, User
from recova.platform.auth.services import create_user
from recova.platform.entry.app import create_app
from recova.platform.kernel.db import utcnow
from recova.platform.kernel.extension import platform
from recova.tenants.models import Tenant
from tests.support import PASSWORD, Caller, bearer, login, unique

#: The sign-in page's one refusal, in English.
LOGIN_PAGE_REFUSED = "Wrong e-mail or password, or too many attempts: try again later."


def _form_token(client: FlaskClient, path: str = "/login") -> str:
    page = client.get(path, follow_redirects=True).get_data(as_text=True)
    found = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    assert found is not None, page
    return found.group(1)


def _post_login(client: FlaskClient, email: str, password: str):  # type: ignore[no-untyped-def]
    return client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": _form_token(client)},
    )


def _session_cookie(response) -> str:  # type: ignore[no-untyped-def]
    cookies = [c for c in response.headers.getlist("Set-Cookie") if c.startswith("recova_session=")]
    assert len(cookies) == 1, response.headers.getlist("Set-Cookie")
    return cookies[0]


def _cookie_flags(set_cookie: str) -> set[str]:
    return {part.strip().lower() for part in set_cookie.split(";")[1:]}


def _new_analyst(app: Flask, tenant_id: int) -> tuple[str, int]:
    """A fresh analyst of the tenant, committed, for tests that lock or deactivate."""
    email = f"{unique('fresh')}@alpha.test"
    with platform(app).db.session() as session:
        tenant = session.get(Tenant, tenant_id)
        assert tenant is not None
        user = create_user(
            session,
            email=email,
            full_name="Fresh Analyst",
            password=PASSWORD,
            role=Role.TENANT_ANALYST,
            tenant=tenant,
        )
        session.commit()
        return email, user.id


# --- the login form ------------------------------------------------------------------


def test_login_page_renders_with_csrf_token(world) -> None:
    response = world.app.test_client().get("/login")

    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert re.search(r'name="csrf_token" type="hidden" value="[^"]{20,}"', page)
    assert 'name="email"' in page
    assert 'name="password"' in page


def test_login_without_csrf_token_is_400_and_logs_nobody_in(world) -> None:
    client = world.app.test_client()
    client.get("/login")

    response = client.post("/login", data={"email": world.a.admin_email, "password": PASSWORD})

    assert response.status_code == 400
    assert client.get("/api/v1/me").status_code == 401


def test_login_with_a_wrong_csrf_token_is_400(world) -> None:
    client = world.app.test_client()
    _form_token(client)

    response = client.post(
        "/login",
        data={"email": world.a.admin_email, "password": PASSWORD, "csrf_token": "forged"},
    )

    assert response.status_code == 400
    assert client.get("/api/v1/me").status_code == 401


def test_correct_credentials_redirect_home_which_sends_tenant_staff_to_their_portal(world) -> None:
    client = world.app.test_client()

    response = _post_login(client, world.a.admin_email, PASSWORD)

    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    home = client.get("/")
    assert home.status_code == 302
    assert home.headers["Location"] == f"/portal/{world.a.slug}/"
    page = client.get(home.headers["Location"]).get_data(as_text=True)
    assert world.a.admin_email in page  # the signed-in user, in the page's header
    assert "Sign out" in page


@pytest.mark.parametrize("who", ["manager_email", "collector_email"])
def test_home_sends_agency_staff_to_their_workspace_queue(world, who: str) -> None:
    client = world.app.test_client()
    _post_login(client, getattr(world, who), PASSWORD)

    home = client.get("/")

    assert home.status_code == 302
    assert home.headers["Location"] == "/work/"
    page = client.get("/work/").get_data(as_text=True)
    assert "Agency for A" in page  # the agency's name in the page's header
    assert 'href="/work/"' in page  # the workspace's navigation


def test_login_email_is_case_insensitive(world) -> None:
    client = world.app.test_client()

    response = _post_login(client, world.a.admin_email.upper(), PASSWORD)

    assert response.status_code == 302
    assert client.get("/api/v1/me").json["name"] == world.a.admin_email


@pytest.mark.parametrize("who", ["known", "unknown"])
def test_wrong_password_or_unknown_email_shows_the_same_error(world, who: str) -> None:
    client = world.app.test_client()
    email = world.b.analyst_email if who == "known" else f"{unique('nobody')}@nowhere.test"

    response = _post_login(client, email, "not-the-password")

    assert response.status_code == 200
    assert "Wrong e-mail or password" in response.get_data(as_text=True)
    assert client.get("/api/v1/me").status_code == 401


def test_every_refusal_costs_one_password_check(world, settings, monkeypatch) -> None:
    """Unknown, wrong, locked and right all run Argon2 once: timing reveals no account."""
    checks: list[str] = []

    class CountingHasher(PasswordHasher):
        def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
            checks.append(str(password))
            return super().verify(hash, password)

    monkeypatch.setattr(passwords, "_hasher", CountingHasher())
    email, _ = _new_analyst(world.app, world.a.id)
    client = world.app.test_client()
    attempts = [
        (f"{unique('nobody')}@nowhere.test", "not-the-password"),
        *[(email, "not-the-password")] * settings.login_max_failures,
        (email, PASSWORD),  # locked by now
    ]
    for address, password in attempts:
        checks.clear()
        response = _post_login(client, address, password)
        assert response.status_code == 200
        assert LOGIN_PAGE_REFUSED in response.get_data(as_text=True)
        assert len(checks) == 1, address


def test_home_without_a_session_redirects_to_login(world) -> None:
    response = world.app.test_client().get("/")

    assert response.status_code == 302
    assert response.headers["Location"] == "/login"


# --- the session cookie --------------------------------------------------------------


def test_session_cookie_is_httponly_and_samesite_lax(world) -> None:
    response = _post_login(world.app.test_client(), world.a.admin_email, PASSWORD)

    assert response.status_code == 302
    flags = _cookie_flags(_session_cookie(response))
    assert "httponly" in flags
    assert "samesite=lax" in flags
    assert "secure" not in flags  # test mode serves plain HTTP


@pytest.mark.real_commits  # a production app of its own logs in on its own connections
def test_session_cookie_is_secure_in_production(world, settings) -> None:
    production = dataclasses.replace(settings, environment="production")
    # Production refuses to invent secrets or services; the test run's are given explicitly.
    given = (production.secret_key, production.data_key, production.database_url)
    assert all((*given, production.redis_url))
    app = create_app(production)
    try:
        client = app.test_client()
        response = _post_login(client, world.a.admin_email, PASSWORD)

        assert response.status_code == 302, response.get_data(as_text=True)
        flags = _cookie_flags(_session_cookie(response))
        assert {"secure", "httponly", "samesite=lax"} <= flags
    finally:
        platform(app).db.dispose()


# --- lockout -------------------------------------------------------------------------


def test_lockout_refuses_even_the_right_password_until_it_expires(world, db, settings) -> None:
    email, user_id = _new_analyst(world.app, world.a.id)
    client = world.app.test_client()

    for _ in range(settings.login_max_failures):
        failed = _post_login(client, email, "not-the-password")
        assert failed.status_code == 200
        assert "Wrong e-mail or password" in failed.get_data(as_text=True)

    locked = _post_login(client, email, PASSWORD)
    assert locked.status_code == 200
    # The same answer as a wrong password: a lockout does not reveal that the account exists.
    assert LOGIN_PAGE_REFUSED in locked.get_data(as_text=True)
    assert client.get("/api/v1/me").status_code == 401
    with db.session() as session:
        locked_until = session.scalar(select(User.locked_until).where(User.id == user_id))
    assert locked_until is not None
    assert locked_until > utcnow()

    with db.session() as session:
        session.execute(
            update(User)
            .where(User.id == user_id)
            .values(locked_until=utcnow() - dt.timedelta(seconds=1))
        )
        session.commit()

    unlocked = _post_login(client, email, PASSWORD)
    assert unlocked.status_code == 302
    assert client.get("/api/v1/me").json["name"] == email
    with db.session() as session:
        user = session.get(User, user_id)
        assert user is not None
        assert user.failed_logins == 0
        assert user.locked_until is None


def test_failures_below_the_limit_do_not_lock(world, settings) -> None:
    email, _ = _new_analyst(world.app, world.a.id)
    client = world.app.test_client()

    for _ in range(settings.login_max_failures - 1):
        assert _post_login(client, email, "not-the-password").status_code == 200

    assert _post_login(client, email, PASSWORD).status_code == 302


# --- deactivation --------------------------------------------------------------------


def test_deactivated_users_session_stops_working_on_the_next_request(world) -> None:
    email, user_id = _new_analyst(world.app, world.a.id)
    user = login(world.app, email)
    assert user.get("/api/v1/me").status_code == 200
    admin = login(world.app, world.a.admin_email)

    deactivated = admin.patch(f"/api/v1/users/{user_id}", json={"is_active": False})

    assert deactivated.status_code == 200, deactivated.json
    assert deactivated.json["is_active"] is False
    me = user.get("/api/v1/me")
    assert me.status_code == 401
    assert me.json["code"] == 401
    assert user.get("/api/v1/profile").status_code == 401
    assert user.get("/").status_code == 302
    # Nor can they log in again.
    refused = _post_login(world.app.test_client(), email, PASSWORD)
    assert refused.status_code == 200
    assert "Wrong e-mail or password" in refused.get_data(as_text=True)


# --- CSRF on API writes --------------------------------------------------------------


def test_session_api_write_without_csrf_header_is_400(world) -> None:
    admin = login(world.app, world.a.admin_email)
    body = {"name": "csrf-less", "scopes": ["tenant:read"]}

    missing = Caller(admin.client, "no header").post("/api/v1/api-clients", json=body)
    forged = Caller(admin.client, "forged", {"X-CSRFToken": "forged"}).post(
        "/api/v1/api-clients", json=body
    )

    for response in (missing, forged):
        assert response.status_code == 400
        assert response.json["code"] == 400
        assert set(response.json) <= {"code", "status", "message", "errors"}
    listed = admin.get("/api/v1/api-clients?page_size=100")
    assert "csrf-less" not in [item["name"] for item in listed.json]


def test_session_api_write_with_csrf_header_succeeds(world) -> None:
    admin = login(world.app, world.a.admin_email)

    response = admin.post(
        "/api/v1/api-clients", json={"name": "with-csrf", "scopes": ["tenant:read"]}
    )

    assert response.status_code == 201, response.json
    assert response.json["name"] == "with-csrf"


def test_bearer_writes_need_no_csrf(world) -> None:
    client = bearer(world.app, world.a.client_id, world.a.client_secret)

    # No CSRF header, no cookie: the request reaches the access rule, which answers 403
    # (clients may not manage clients), not the CSRF guard's 400.
    response = client.post("/api/v1/api-clients", json={"name": "x", "scopes": ["tenant:read"]})

    assert response.status_code == 403
    assert "not open to API clients" in response.json["message"]


def test_bearer_write_with_a_session_cookie_still_needs_no_csrf(world) -> None:
    admin = login(world.app, world.a.admin_email)
    token = bearer(world.app, world.a.client_id, world.a.client_secret).headers
    both = Caller(admin.client, "cookie and bearer", token)

    # The bearer token is the principal; the cookie is ignored, so no CSRF check applies.
    response = both.post("/api/v1/api-clients", json={"name": "x", "scopes": ["tenant:read"]})

    assert response.status_code == 403
    assert both.get("/api/v1/me").json["kind"] == "client"


def test_anonymous_api_write_is_401_not_400(world) -> None:
    response = world.app.test_client().post(
        "/api/v1/api-clients", json={"name": "x", "scopes": ["tenant:read"]}
    )

    assert response.status_code == 401


# --- logout --------------------------------------------------------------------------


def test_logout_needs_csrf_then_ends_the_session(world) -> None:
    caller = login(world.app, world.a.analyst_email)

    refused = caller.client.post("/logout")

    assert refused.status_code == 400
    assert caller.get("/api/v1/me").status_code == 200

    token = _form_token(caller.client, "/")
    done = caller.client.post("/logout", data={"csrf_token": token})

    assert done.status_code == 302
    assert done.headers["Location"] == "/login"
    assert caller.get("/api/v1/me").status_code == 401
    assert caller.client.get("/").status_code == 302


def test_logout_ends_copied_cookies_and_other_sessions_of_the_user(world) -> None:
    app = world.app
    email = f"{unique('copy')}@alpha.test"
    admin = login(app, world.a.admin_email)
    created = admin.post(
        "/api/v1/users",
        {"email": email, "full_name": "Copy", "password": PASSWORD, "role": "tenant_analyst"},
    )
    assert created.status_code == 201
    first = login(app, email)
    other_device = login(app, email)
    cookie = first.client.get_cookie("recova_session")
    assert cookie is not None
    thief = app.test_client()
    thief.set_cookie("recova_session", cookie.value)
    assert thief.get("/api/v1/me").status_code == 200

    token = _form_token(first.client, "/")
    assert first.client.post("/logout", data={"csrf_token": token}).status_code == 302

    assert thief.get("/api/v1/me").status_code == 401
    assert other_device.get("/api/v1/me").status_code == 401
    assert login(app, email).get("/api/v1/me").status_code == 200  # a new login works
