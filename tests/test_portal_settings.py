"""The portal's settings pages: users, API clients, retention and case-work settings."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from recova.platform.auth import services
from recova.platform.auth.access import SCOPES
from recova.platform.auth.models import Membership, OAuthClient, Role, User
from recova.platform.kernel.extension import platform
from recova.platform.privacy.models import PrivacySettings
from recova.platform.web.portal.settings import SCOPE_LABELS
from recova.platform.work.models import WorkSettings
from recova.platform.work.settings import DEFAULTS as WORK_DEFAULTS
from recova.tenants.scope import tenant_scope
from tests.support import B_MARK, PASSWORD, Caller, World, anonymous, fetch_token, login, unique

TOKEN = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def _base(world: World, slug: str | None = None) -> str:
    return f"/portal/{slug or world.a.slug}/settings"


def _token(client: FlaskClient, path: str) -> str:
    page = client.get(path).get_data(as_text=True)
    found = TOKEN.search(page)
    assert found is not None, page
    return found.group(1)


def _post(caller: Caller, path: str, data: dict[str, Any], page: str) -> Any:
    """POST a form as the page would, with the CSRF token read from ``page``."""
    return caller.client.post(path, data={**data, "csrf_token": _token(caller.client, page)})


def _html(response: Any) -> str:
    return str(response.get_data(as_text=True))


def _user(app: Flask, email: str) -> User:
    with platform(app).db.session() as session:
        user = session.scalar(select(User).where(func.lower(User.email) == email.lower()))
        assert user is not None
        session.expunge(user)
        return user


def _role(app: Flask, user_id: int) -> Role:
    with platform(app).db.session() as session:
        role = session.scalar(select(Membership.role).where(Membership.user_id == user_id))
        assert role is not None
        return role


def _invite(admin: Caller, world: World, **fields: str) -> Any:
    data = {
        "email": f"{unique('new')}@alpha.test",
        "full_name": "New Person",
        "role": "tenant_analyst",
        "locale": "en",
        "password": PASSWORD,
        **fields,
    }
    users = f"{_base(world)}/users"
    return _post(admin, users, data, users)


def _new_user(admin: Caller, world: World, role: str = "tenant_analyst") -> User:
    email = f"{unique('new')}@alpha.test"
    response = _invite(admin, world, email=email, role=role)
    assert response.status_code == 302, _html(response)
    return _user(world.app, email)


# --- users ---------------------------------------------------------------------------


def test_the_users_page_lists_this_tenants_users_only(world) -> None:
    admin = login(world.app, world.a.admin_email)

    page = admin.client.get(f"{_base(world)}/users")

    assert page.status_code == 200
    html = _html(page)
    assert world.a.admin_email in html
    assert world.a.analyst_email in html
    assert "Tenant analyst" in html
    assert B_MARK not in html
    assert "Invite a user" in html
    assert 'aria-current="page" class="current">Settings' in html  # the section is marked


def test_inviting_a_user_creates_them_with_role_and_language_and_they_can_sign_in(
    world,
) -> None:
    admin = login(world.app, world.a.admin_email)
    email = f"{unique('invited')}@alpha.test"

    response = _invite(
        admin, world, email=email, full_name="李 四", role="tenant_admin", locale="zh_CN"
    )

    assert response.status_code == 302
    assert response.headers["Location"] == f"{_base(world)}/users"
    listed = _html(admin.client.get(response.headers["Location"]))
    assert email in listed
    assert "李 四" in listed
    user = _user(world.app, email)
    assert user.locale == "zh_CN"
    assert _role(world.app, user.id) is Role.TENANT_ADMIN
    invited = login(world.app, email)
    # Their saved language decides their pages.
    assert "用户" in _html(invited.client.get(f"{_base(world)}/users"))


def test_a_taken_email_is_refused_beside_the_field_and_the_input_is_kept(world) -> None:
    admin = login(world.app, world.a.admin_email)
    before = _count_users(world.app)

    response = _invite(admin, world, email=world.b.admin_email.upper(), full_name="Kept Name")

    assert response.status_code == 422
    html = _html(response)
    assert re.search(r'id="email-error">A user with this e-mail already exists.', html)
    assert 'value="Kept Name"' in html
    assert f'value="{world.b.admin_email.upper()}"' in html
    assert _count_users(world.app) == before


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"email": "not-an-email"}, "email", "Enter an e-mail address such as name@example.com."),
        ({"full_name": ""}, "full_name", "This field is required."),
        ({"password": "short"}, "password", "At least 10 characters."),
        ({"role": "platform_admin"}, "role", "Not a valid choice."),
        ({"locale": "fr"}, "locale", "Not a valid choice."),
    ],
)
def test_invite_field_errors_show_beside_their_field(world, fields, field, message) -> None:
    admin = login(world.app, world.a.admin_email)
    before = _count_users(world.app)

    response = _invite(admin, world, full_name=fields.pop("full_name", "Kept Name"), **fields)

    assert response.status_code == 422
    html = _html(response)
    assert f'id="{field}-error">{message}' in html
    if field != "full_name":
        assert 'value="Kept Name"' in html
    assert _count_users(world.app) == before


def test_changing_a_users_role_and_language(world) -> None:
    admin = login(world.app, world.a.admin_email)
    analyst = _user(world.app, world.a.analyst_email)
    detail = f"{_base(world)}/users/{analyst.id}"

    promoted = _post(admin, f"{detail}/role", {"role": "tenant_admin"}, detail)
    relabelled = _post(admin, f"{detail}/language", {"locale": "zh_CN"}, detail)

    assert promoted.status_code == 302
    assert relabelled.status_code == 302
    assert _role(world.app, analyst.id) is Role.TENANT_ADMIN
    assert _user(world.app, world.a.analyst_email).locale == "zh_CN"
    page = _html(admin.client.get(detail))
    assert "Tenant administrator" in page
    assert "中文" in page


def test_the_last_admin_cannot_be_demoted(world) -> None:
    admin = login(world.app, world.a.admin_email)
    detail = f"{_base(world)}/users/{world.a.admin_id}"

    response = _post(admin, f"{detail}/role", {"role": "tenant_analyst"}, detail)

    assert response.status_code == 422
    assert "The tenant must keep at least one active administrator" in _html(response)
    assert _role(world.app, world.a.admin_id) is Role.TENANT_ADMIN


def test_deactivating_a_user_ends_their_session_and_reactivating_lets_them_back(world) -> None:
    admin = login(world.app, world.a.admin_email)
    user = _new_user(admin, world)
    their = login(world.app, user.email)
    assert their.client.get(f"{_base(world)}/users").status_code == 200
    detail = f"{_base(world)}/users/{user.id}"

    off = _post(admin, f"{detail}/active", {"active": "0"}, detail)

    assert off.status_code == 302
    assert _user(world.app, user.email).is_active is False
    assert "Deactivated" in _html(admin.client.get(detail))
    assert their.client.get("/api/v1/me").status_code == 401
    assert their.client.get(f"{_base(world)}/users").status_code == 302  # to sign-in

    on = _post(admin, f"{detail}/active", {"active": "1"}, detail)

    assert on.status_code == 302
    assert _user(world.app, user.email).is_active is True
    assert login(world.app, user.email).client.get("/api/v1/me").status_code == 200


def test_an_admin_cannot_deactivate_themselves(world) -> None:
    admin = login(world.app, world.a.admin_email)
    other_admin = _new_user(admin, world, role="tenant_admin")
    detail = f"{_base(world)}/users/{world.a.admin_id}"
    assert "You cannot deactivate your own login." in _html(admin.client.get(detail))

    response = _post(admin, f"{detail}/active", {"active": "0"}, detail)

    assert response.status_code == 422
    assert "You cannot deactivate your own login." in _html(response)
    assert _user(world.app, world.a.admin_email).is_active is True
    assert _user(world.app, other_admin.email).is_active is True


def test_the_last_active_admin_cannot_be_deactivated_by_another(world) -> None:
    admin = login(world.app, world.a.admin_email)
    second = _new_user(admin, world, role="tenant_admin")
    other = login(world.app, second.email)
    # The first admin steps down to analyst; the second admin is then the only one.
    mine = f"{_base(world)}/users/{world.a.admin_id}"
    assert _post(admin, f"{mine}/role", {"role": "tenant_analyst"}, mine).status_code == 302
    theirs = f"{_base(world)}/users/{second.id}"

    # The demoted admin can no longer change anything...
    assert _post(admin, f"{theirs}/active", {"active": "0"}, theirs).status_code == 403
    # ...and the second cannot remove themselves as the last admin either way.
    refused = _post(other, f"{theirs}/role", {"role": "tenant_analyst"}, theirs)
    assert refused.status_code == 422
    assert _role(world.app, second.id) is Role.TENANT_ADMIN


def _count_users(app: Flask) -> int:
    with platform(app).db.session() as session:
        return int(session.scalar(select(func.count()).select_from(User)) or 0)


# --- the user services' rules ------------------------------------------------------------


def _tenant_user(session, world: World, email: str) -> User:  # type: ignore[no-untyped-def]
    user = session.scalar(select(User).where(User.email == email))
    assert user is not None
    return user


def test_service_refuses_deactivating_oneself_and_the_last_admin(world, db) -> None:
    with db.session() as session:
        admin = _tenant_user(session, world, world.a.admin_email)
        with pytest.raises(services.SelfDeactivationError):
            services.set_user_active(session, admin, False, by_user_id=admin.id)
        with pytest.raises(services.LastAdminError):
            services.set_user_active(session, admin, False, by_user_id=None)
        with pytest.raises(services.LastAdminError):
            services.set_user_role(session, admin, Role.TENANT_ANALYST)
        analyst = _tenant_user(session, world, world.a.analyst_email)
        services.set_user_role(session, analyst, Role.TENANT_ADMIN)
        # With a second admin the first may go.
        services.set_user_active(session, admin, False, by_user_id=analyst.id)
        assert admin.is_active is False
        with pytest.raises(services.UserError):
            services.set_user_role(session, analyst, Role.COLLECTOR)
        with pytest.raises(services.UserError):
            services.set_user_locale(analyst, "fr")
        session.rollback()


def test_the_api_refuses_self_deactivation_too(world) -> None:
    admin = login(world.app, world.a.admin_email)

    response = admin.patch(f"/api/v1/users/{world.a.admin_id}", json={"is_active": False})

    assert response.status_code == 409
    assert _user(world.app, world.a.admin_email).is_active is True


# --- API clients -------------------------------------------------------------------------


def test_the_clients_page_lists_this_tenants_clients_with_translated_scopes(world) -> None:
    admin = login(world.app, world.a.admin_email)

    html = _html(admin.client.get(f"{_base(world)}/clients"))

    assert world.a.client_id in html
    assert world.a.limited_client_id in html
    assert world.b.client_id not in html
    assert B_MARK not in html
    assert "Read the tenant's profile" in html
    assert world.a.client_secret not in html


def test_every_scope_has_a_translatable_description_equal_to_the_apis() -> None:
    assert set(SCOPE_LABELS) == set(SCOPES)
    for scope, label in SCOPE_LABELS.items():
        assert label._args[0] == SCOPES[scope]  # the msgid is the API's own text


def test_the_scopes_show_in_chinese_on_a_chinese_page(world) -> None:
    admin = login(world.app, world.a.admin_email)
    admin.client.post(
        "/language",
        data={"locale": "zh_CN", "csrf_token": _token(admin.client, f"{_base(world)}/clients")},
    )

    html = _html(admin.client.get(f"{_base(world)}/clients"))

    assert "API 客户端" in html or "接口客户端" in html
    assert "Read the tenant's profile" not in html


def test_creating_a_client_shows_its_secret_once_and_the_secret_works(world) -> None:
    admin = login(world.app, world.a.admin_email)
    clients = f"{_base(world)}/clients"

    created = _post(
        admin, clients, {"name": "Loan system", "scopes": ["cases:read", "work:read"]}, clients
    )

    assert created.status_code == 201
    assert created.headers["Cache-Control"] == "no-store"
    html = _html(created)
    client_id = re.search(r'id="client-id">([^<]+)<', html)
    secret = re.search(r'id="client-secret">([^<]+)<', html)
    assert client_id is not None
    assert secret is not None
    token = fetch_token(world.app, client_id.group(1), secret.group(1))
    assert token.status_code == 200, token.get_data(as_text=True)
    assert set(token.json["scope"].split()) == {"cases:read", "work:read"}
    listed = _html(admin.client.get(clients))
    assert client_id.group(1) in listed
    assert secret.group(1) not in listed
    with platform(world.app).db.session() as session:
        stored = session.scalar(
            select(OAuthClient).where(OAuthClient.client_id == client_id.group(1))
        )
        assert stored is not None
        assert stored.tenant_id == world.a.id
        assert stored.created_by_id == world.a.admin_id
        assert secret.group(1).encode() not in stored.client_secret_digest


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"name": "Kept client"}, "scopes", "Choose at least one scope."),
        (
            {"name": "Kept client", "scopes": ["cases:read", "root:all"]},
            "scopes",
            "not a valid choice",
        ),
        ({"name": "", "scopes": ["cases:read"]}, "name", "This field is required."),
    ],
)
def test_client_field_errors_keep_the_input(world, data, field, message) -> None:
    admin = login(world.app, world.a.admin_email)
    clients = f"{_base(world)}/clients"
    before = _count_clients(world.app)

    response = _post(admin, clients, data, clients)

    assert response.status_code == 422
    html = _html(response)
    assert f'id="{field}-error">' in html
    assert message.lower() in html.lower()
    if data["name"]:
        assert 'value="Kept client"' in html
    if "cases:read" in data.get("scopes", []):
        assert re.search(r'checked[^>]*value="cases:read"|value="cases:read"[^>]*checked', html)
    assert _count_clients(world.app) == before


def test_a_revoked_clients_token_stops_working(world) -> None:
    admin = login(world.app, world.a.admin_email)
    token = fetch_token(world.app, world.a.client_id, world.a.client_secret)
    assert token.status_code == 200
    bearer = {"Authorization": f"Bearer {token.json['access_token']}"}
    cases = f"/api/v1/tenants/{world.a.slug}/cases"
    assert world.app.test_client().get(cases, headers=bearer).status_code == 200
    clients = f"{_base(world)}/clients"

    revoked = _post(admin, f"{clients}/{world.a.client_pk}/revoke", {}, clients)

    assert revoked.status_code == 302
    assert world.app.test_client().get(cases, headers=bearer).status_code == 401
    assert fetch_token(world.app, world.a.client_id, world.a.client_secret).status_code != 200
    html = _html(admin.client.get(clients))
    assert "Revoked" in html


def _count_clients(app: Flask) -> int:
    with platform(app).db.session() as session:
        return int(session.scalar(select(func.count()).select_from(OAuthClient)) or 0)


# --- retention and case work -------------------------------------------------------------


def _privacy(app: Flask, slug: str) -> tuple[int, int] | None:
    with tenant_scope(slug, db=platform(app).db) as session:
        found = session.get(PrivacySettings, 1)
        return None if found is None else (found.retention_days, found.reveals_per_hour)


def _work(app: Flask, slug: str) -> dict[str, int] | None:
    with tenant_scope(slug, db=platform(app).db) as session:
        found = session.get(WorkSettings, 1)
        return None if found is None else {n: getattr(found, n) for n in WORK_DEFAULTS}


def test_the_settings_page_shows_the_current_values(world) -> None:
    admin = login(world.app, world.a.admin_email)

    html = _html(admin.client.get(_base(world)))

    assert re.search(r'name="promise_grace_days"[^>]*value="3"', html) or re.search(
        r'value="3"[^>]*name="promise_grace_days"', html
    )
    assert "Save retention settings" in html


def test_saving_retention_settings(world) -> None:
    admin = login(world.app, world.a.admin_email)

    saved = _post(
        admin,
        f"{_base(world)}/retention",
        {"retention_days": "400", "reveals_per_hour": "12"},
        _base(world),
    )

    assert saved.status_code == 302
    assert _privacy(world.app, world.a.slug) == (400, 12)
    assert _privacy(world.app, world.b.slug) is None
    assert "Retention settings saved." in _html(admin.client.get(_base(world)))


@pytest.mark.parametrize(
    ("days", "per_hour", "field", "message"),
    [
        ("29", "12", "retention_days", "Enter a number from 30 to 36500."),
        ("36501", "12", "retention_days", "Enter a number from 30 to 36500."),
        ("4o0", "12", "retention_days", "Enter a whole number."),
        ("400", "0", "reveals_per_hour", "Enter a number from 1 to 1000."),
        ("400", "", "reveals_per_hour", "This field is required."),
    ],
)
def test_retention_field_errors_keep_the_input(world, days, per_hour, field, message) -> None:
    admin = login(world.app, world.a.admin_email)

    response = _post(
        admin,
        f"{_base(world)}/retention",
        {"retention_days": days, "reveals_per_hour": per_hour},
        _base(world),
    )

    assert response.status_code == 422
    html = _html(response)
    assert f'id="{field}-error">{message}' in html
    assert f'value="{days}"' in html
    assert _privacy(world.app, world.a.slug) is None


def test_saving_work_settings(world) -> None:
    admin = login(world.app, world.a.admin_email)
    values = {**{n: str(v) for n, v in WORK_DEFAULTS.items()}, "plan_max_misses": "4"}

    saved = _post(admin, f"{_base(world)}/work", values, _base(world))

    assert saved.status_code == 302
    assert _work(world.app, world.a.slug) == {**WORK_DEFAULTS, "plan_max_misses": 4}
    assert "Case-work settings saved." in _html(admin.client.get(_base(world)))


def test_work_field_errors_keep_the_input(world) -> None:
    admin = login(world.app, world.a.admin_email)
    values = {
        **{n: str(v) for n, v in WORK_DEFAULTS.items()},
        "plan_max_misses": "0",
        "settlement_max_days": "366",
        "promise_grace_days": "7",
    }

    response = _post(admin, f"{_base(world)}/work", values, _base(world))

    assert response.status_code == 422
    html = _html(response)
    assert 'id="plan_max_misses-error">Enter a number from 1 to 24.' in html
    assert 'id="settlement_max_days-error">Enter a number from 1 to 365.' in html
    assert 'value="366"' in html
    assert 'value="7"' in html
    assert _work(world.app, world.a.slug) is None


# --- access and isolation ------------------------------------------------------------


def _routes(world: World, tenant: str = "a") -> tuple[list[str], list[tuple[str, dict[str, Any]]]]:
    """Every page of the section (GET) and every change (POST with a valid body)."""
    data = world.a if tenant == "a" else world.b
    analyst_id = _user(world.app, data.analyst_email).id
    base = _base(world, data.slug)
    pages = [base, f"{base}/users", f"{base}/users/{analyst_id}", f"{base}/clients"]
    changes: list[tuple[str, dict[str, Any]]] = [
        (f"{base}/retention", {"retention_days": "400", "reveals_per_hour": "12"}),
        (f"{base}/work", {**dict.fromkeys(WORK_DEFAULTS, "9")}),
        (
            f"{base}/users",
            {
                "email": f"{unique('walk')}@alpha.test",
                "full_name": "Walker",
                "role": "tenant_analyst",
                "locale": "en",
                "password": PASSWORD,
            },
        ),
        (f"{base}/users/{analyst_id}/role", {"role": "tenant_admin"}),
        (f"{base}/users/{analyst_id}/language", {"locale": "zh_CN"}),
        (f"{base}/users/{analyst_id}/active", {"active": "0"}),
        (f"{base}/clients", {"name": "walker", "scopes": ["cases:read"]}),
        (f"{base}/clients/{data.client_pk}/revoke", {}),
    ]
    return pages, changes


def _state(app: Flask, world: World) -> Any:
    """Everything the section can change, in both tenants."""
    with platform(app).db.session() as session:
        users = sorted(
            (u.email, u.is_active, u.locale, u.membership.role.value)
            for u in session.scalars(
                select(User).join(User.membership).where(Membership.tenant_id.is_not(None))
            )
        )
        clients = sorted(
            (c.client_id, str(c.revoked_at)) for c in session.scalars(select(OAuthClient))
        )
    return (
        users,
        clients,
        [_privacy(app, t.slug) for t in (world.a, world.b)],
        [_work(app, t.slug) for t in (world.a, world.b)],
    )


def test_the_admin_opens_every_page(world) -> None:
    admin = login(world.app, world.a.admin_email)
    pages, _ = _routes(world)
    for page in pages:
        assert admin.client.get(page).status_code == 200, page


def test_the_analyst_reads_every_page_but_every_change_is_refused(world) -> None:
    analyst = login(world.app, world.a.analyst_email)
    pages, changes = _routes(world)
    for page in pages:
        response = analyst.client.get(page)
        assert response.status_code == 200, page
        html = _html(response)
        assert "Invite a user" not in html
        assert "Create an API client" not in html
        assert "/revoke" not in html
        assert "Save retention settings" not in html
    before = _state(world.app, world)
    token = _token(analyst.client, pages[0])

    for path, data in changes:
        assert analyst.client.post(path, data={**data, "csrf_token": token}).status_code == 403, (
            path
        )

    assert _state(world.app, world) == before


@pytest.mark.parametrize("who", ["manager", "collector"])
def test_agency_staff_are_refused(world, who: str) -> None:
    staff = login(world.app, world.manager_email if who == "manager" else world.collector_email)
    pages, changes = _routes(world)
    before = _state(world.app, world)
    token = _token(staff.client, "/work/")  # their own home
    for page in pages:
        assert staff.client.get(page).status_code == 403, page
    for path, data in changes:
        assert staff.client.post(path, data={**data, "csrf_token": token}).status_code == 403, path
    assert _state(world.app, world) == before


def test_another_tenants_admin_finds_nothing(world) -> None:
    """B's admin on A's slug: every page and change is 404, as if A did not exist."""
    outsider = login(world.app, world.b.admin_email)
    pages, changes = _routes(world)
    before = _state(world.app, world)
    token = _token(outsider.client, _base(world, world.b.slug))
    for page in pages:
        assert outsider.client.get(page).status_code == 404, page
    for path, data in changes:
        assert outsider.client.post(path, data={**data, "csrf_token": token}).status_code == 404, (
            path
        )
    assert _state(world.app, world) == before


def test_another_tenants_user_and_client_ids_are_404_on_this_tenants_slug(world) -> None:
    admin = login(world.app, world.a.admin_email)
    b_analyst = _user(world.app, world.b.analyst_email).id
    base = _base(world)
    before = _state(world.app, world)
    token = _token(admin.client, base)

    for user_id in (world.b.admin_id, b_analyst):
        assert admin.client.get(f"{base}/users/{user_id}").status_code == 404
        for action, data in (
            ("role", {"role": "tenant_analyst"}),
            ("language", {"locale": "zh_CN"}),
            ("active", {"active": "0"}),
        ):
            response = admin.client.post(
                f"{base}/users/{user_id}/{action}", data={**data, "csrf_token": token}
            )
            assert response.status_code == 404, action
    revoke = admin.client.post(
        f"{base}/clients/{world.b.client_pk}/revoke", data={"csrf_token": token}
    )
    assert revoke.status_code == 404
    assert B_MARK not in _html(revoke)
    assert _state(world.app, world) == before
    assert fetch_token(world.app, world.b.client_id, world.b.client_secret).status_code == 200


def test_anonymous_visitors_are_sent_to_sign_in(world) -> None:
    visitor = anonymous(world.app)
    pages, changes = _routes(world)
    before = _state(world.app, world)
    for page in pages:
        response = visitor.client.get(page)
        assert response.status_code == 302, page
        assert response.headers["Location"].startswith("/login?next=")
    token = _token(visitor.client, "/login")
    for path, data in changes:
        assert visitor.client.post(path, data={**data, "csrf_token": token}).status_code == 401, (
            path
        )
    assert _state(world.app, world) == before
