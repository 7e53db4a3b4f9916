"""Rate limits: per client and per user, shared by replicas through Redis, in the one error shape.

The suite's own app runs with limits far above what a worker sends (``conftest``); each
test here builds apps of its own with small limits and a queue prefix of its own, so its
counters start at zero and no other test sees them. Everything is counted by the real
limiter in the real Redis; nothing depends on timing (a window is a minute long, and a
test takes well under one; ``t`` and ``Retry-After`` are only checked to lie inside it).
"""

from __future__ import annotations

import base64
import dataclasses
import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from limits import RateLimitItemPerMinute
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from recova.platform.entry.app import create_app
from recova.platform.kernel.config import ConfigError, Settings
from recova.platform.kernel.embedded import EmbeddedRedis
from recova.platform.kernel.extension import platform
from recova.platform.kernel.ratelimit import limits_storage_uri, storage_key_prefix
from tests.support import Caller, World, anonymous, bearer, build_world, fetch_token, login
from tests.test_api import ERROR_KEYS

pytestmark = pytest.mark.real_commits  # apps of their own, on a world of the module's own

POLICY = re.compile(r'^"(?P<name>[a-z-]+)";q=(?P<q>\d+);w=(?P<w>\d+)$')
STATE = re.compile(r'^"(?P<name>[a-z-]+)";r=(?P<r>\d+);t=(?P<t>\d+)$')

LimitedApp = Callable[..., Flask]


@pytest.fixture(scope="module")
def own_world(app: Flask) -> World:
    """Two tenants with clients and users, committed for this module's apps to sign in."""
    return build_world(app)


@pytest.fixture
def limited_app(settings: Settings) -> Iterator[LimitedApp]:
    """Build apps with small limits (``api="5/minute"`` and so on) and the test's own
    queue prefix (or ``prefix=``), dropping their connections and counters at the end."""
    built: list[Flask] = []
    own_prefix = f"test-rl-{secrets.token_hex(4)}:"

    def build(*, prefix: str | None = None, **limits: str) -> Flask:
        changes = {f"rate_limit_{name}": value for name, value in limits.items()}
        application = create_app(
            dataclasses.replace(settings, queue_prefix=prefix or own_prefix, **changes)
        )
        application.config["TESTING"] = True
        built.append(application)
        return application

    yield build
    for application in built:
        objects = platform(application)
        for key in objects.redis.scan_iter(match=f"{objects.settings.queue_prefix}*"):
            objects.redis.delete(key)
        objects.db.dispose()


def _policies(response: Any) -> dict[str, tuple[int, int]]:
    """``RateLimit-Policy`` as {name: (quota, window)}."""
    found = {}
    for member in response.headers["RateLimit-Policy"].split(", "):
        match = POLICY.fullmatch(member)
        assert match is not None, member
        found[match["name"]] = (int(match["q"]), int(match["w"]))
    return found


def _states(response: Any) -> dict[str, tuple[int, int]]:
    """``RateLimit`` as {name: (remaining, seconds to reset)}."""
    found = {}
    for member in response.headers["RateLimit"].split(", "):
        match = STATE.fullmatch(member)
        assert match is not None, member
        found[match["name"]] = (int(match["r"]), int(match["t"]))
    return found


def _client(app: Flask, world: World, key: str = "a") -> Caller:
    tenant = getattr(world, key)
    return bearer(app, tenant.client_id, tenant.client_secret)


def _assert_rate_limited_json(response: Any, policy: str) -> None:
    assert response.status_code == 429, response.get_data(as_text=True)
    body = response.json
    assert set(body) <= ERROR_KEYS, body
    assert body["code"] == 429
    assert body["status"] == "Too Many Requests"
    assert "too many requests" in body["message"]
    assert repr(policy) in body["message"]
    retry_after = int(response.headers["Retry-After"])
    window = _policies(response)[policy][1]
    assert 1 <= retry_after <= window
    remaining, reset = _states(response)[policy]
    assert remaining == 0
    assert reset <= window


# --- per client and per user ----------------------------------------------------------------


def test_normal_answers_carry_the_draft_fields(limited_app: LimitedApp, own_world: World) -> None:
    app = limited_app(api="5/minute", writes="3/minute")
    client = _client(app, own_world)

    read = client.get("/api/v1/me")
    write = client.post("/api/v1/ingestion/mappings", json={})

    assert read.status_code == 200
    assert _policies(read) == {"default": (5, 60)}
    remaining, reset = _states(read)["default"]
    assert remaining == 4
    assert 0 <= reset <= 60
    assert "X-RateLimit-Limit" not in read.headers  # Flask-Limiter's older fields are off
    assert write.status_code != 429
    assert _policies(write) == {"default": (5, 60), "writes": (3, 60)}
    assert _states(write)["default"][0] == 3
    assert _states(write)["writes"][0] == 2


def test_a_client_over_its_budget_gets_429_and_others_do_not(
    limited_app: LimitedApp, own_world: World
) -> None:
    app = limited_app(api="5/minute")
    first, second = _client(app, own_world, "a"), _client(app, own_world, "b")

    answers = [first.get("/api/v1/me") for _ in range(5)]
    refused = first.get("/api/v1/me")

    assert [a.status_code for a in answers] == [200] * 5
    assert [_states(a)["default"][0] for a in answers] == [4, 3, 2, 1, 0]
    _assert_rate_limited_json(refused, "default")
    assert "per client or user" in refused.json["message"]
    # Another client and a portal user of the same tenant have budgets of their own.
    assert second.get("/api/v1/me").status_code == 200
    assert _states(second.get("/api/v1/me"))["default"][0] == 3
    user = login(app, own_world.a.admin_email)
    assert user.get("/api/v1/me").status_code == 200
    # The refused client stays refused.
    assert first.get("/api/v1/cases").status_code == 429


def test_a_user_over_its_budget_leaves_clients_and_other_users_alone(
    limited_app: LimitedApp, own_world: World
) -> None:
    app = limited_app(api="6/minute")
    admin = login(app, own_world.a.admin_email)  # its GET /api/v1/me is its first request
    for _ in range(5):
        assert admin.get("/api/v1/me").status_code == 200

    refused = admin.get("/api/v1/me")

    _assert_rate_limited_json(refused, "default")
    # A portal page of the same user shares the budget, and gets the HTML error page.
    page = admin.client.get("/")
    assert page.status_code == 429
    assert page.mimetype == "text/html"
    analyst = anonymous(app)  # the logins so far spent two requests of this address
    assert analyst.get("/login").status_code == 200
    other = login(app, own_world.a.analyst_email)
    assert other.get("/api/v1/me").status_code == 200
    assert _client(app, own_world).get("/api/v1/me").status_code == 200


def test_writes_have_a_budget_of_their_own_on_top(
    limited_app: LimitedApp, own_world: World
) -> None:
    app = limited_app(api="50/minute", writes="2/minute")
    client = _client(app, own_world)

    writes = [client.post("/api/v1/ingestion/mappings", json={}) for _ in range(2)]
    refused = client.post("/api/v1/ingestion/mappings", json={})

    assert all(w.status_code != 429 for w in writes)
    _assert_rate_limited_json(refused, "writes")
    read = client.get("/api/v1/me")
    assert read.status_code == 200  # reads still go through
    assert "writes" not in _states(read)


def test_anonymous_requests_are_counted_per_address(limited_app: LimitedApp) -> None:
    app = limited_app(api="2/minute")
    here = app.test_client()
    there = app.test_client()
    there.environ_base["REMOTE_ADDR"] = "10.0.0.2"

    assert [here.get("/api/v1/me").status_code for _ in range(2)] == [401, 401]
    refused = here.get("/api/v1/me")
    _assert_rate_limited_json(refused, "default")
    assert "per address when anonymous" in refused.json["message"]
    assert there.get("/api/v1/me").status_code == 401
    # A bearer token nobody issued is anonymous too: it spends the address's budget.
    garbage = here.get("/api/v1/me", headers={"Authorization": "Bearer not-a-token"})
    assert garbage.status_code == 429


def test_a_portal_page_over_the_limit_is_the_html_error_page(limited_app: LimitedApp) -> None:
    app = limited_app(api="2/minute")
    browser = app.test_client()

    assert [browser.get("/login").status_code for _ in range(2)] == [200, 200]
    page = browser.get("/login")

    assert page.status_code == 429
    assert page.mimetype == "text/html"
    assert 1 <= int(page.headers["Retry-After"]) <= 60
    assert _states(page)["default"][0] == 0
    assert "<html" in page.get_data(as_text=True).lower()


def test_probes_metrics_and_docs_assets_spend_no_budget(limited_app: LimitedApp) -> None:
    app = limited_app(api="1/minute")
    probe = app.test_client()

    for path in ("/healthz", "/readyz", "/metrics", "/api/v1/docs/assets/swagger-ui.css"):
        answers = [probe.get(path) for _ in range(3)]
        for answer in answers:
            answer.close()  # the docs' assets are files, served streamed
        assert [a.status_code for a in answers] == [200] * 3, path
        assert "RateLimit" not in answers[-1].headers, path


# --- the token endpoint ---------------------------------------------------------------------


def test_token_requests_are_limited_per_client_id(
    limited_app: LimitedApp, own_world: World
) -> None:
    app = limited_app(token="2/minute", token_address="100/minute")
    a, b = own_world.a, own_world.b

    issued = [fetch_token(app, a.client_id, a.client_secret) for _ in range(2)]
    refused = fetch_token(app, a.client_id, a.client_secret)
    # The form's client_id names the same client as the Basic credentials did.
    in_form = app.test_client().post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": a.client_id,
            "client_secret": a.client_secret,
        },
    )

    assert [r.status_code for r in issued] == [200, 200]
    assert _policies(issued[0]) == {"token-client": (2, 60), "token-address": (100, 60)}
    _assert_rate_limited_json(refused, "token-client")
    _assert_rate_limited_json(in_form, "token-client")
    assert fetch_token(app, b.client_id, b.client_secret).status_code == 200
    # The token endpoint does not spend the API budget, nor the API the token budget.
    assert "default" not in _states(issued[0])


def test_token_requests_are_limited_per_address(limited_app: LimitedApp, own_world: World) -> None:
    app = limited_app(token="100/minute", token_address="3/minute")
    a, b = own_world.a, own_world.b

    answers = [
        fetch_token(app, a.client_id, a.client_secret),
        fetch_token(app, b.client_id, b.client_secret),
        fetch_token(app, "rc_no-such-client", "guess"),
    ]
    refused = fetch_token(app, "rc_another-guess", "guess")
    # With no client id at all, only the address counts.
    no_client = app.test_client().post("/oauth/token", data={"grant_type": "client_credentials"})

    assert [r.status_code for r in answers] == [200, 200, 401]
    _assert_rate_limited_json(refused, "token-address")
    assert "per address" in refused.json["message"]
    assert no_client.status_code == 429
    assert _policies(no_client) == {"token-address": (3, 60)}
    elsewhere = app.test_client()
    elsewhere.environ_base["REMOTE_ADDR"] = "10.0.0.3"
    basic = base64.b64encode(f"{a.client_id}:{a.client_secret}".encode()).decode()
    answer = elsewhere.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert answer.status_code == 200


# --- replicas, Redis, prefixes ---------------------------------------------------------------


def test_two_replicas_share_the_count_through_redis(
    limited_app: LimitedApp, own_world: World
) -> None:
    one = limited_app(api="5/minute")
    two = limited_app(api="5/minute")  # the same Redis and prefix: another web pod
    token = fetch_token(one, own_world.a.client_id, own_world.a.client_secret).json
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    on_one, on_two = one.test_client(), two.test_client()

    first = [on_one.get("/api/v1/me", headers=headers) for _ in range(3)]
    then = [on_two.get("/api/v1/me", headers=headers) for _ in range(2)]
    refused = on_one.get("/api/v1/me", headers=headers)

    assert [r.status_code for r in first + then] == [200] * 5
    assert [_states(r)["default"][0] for r in first + then] == [4, 3, 2, 1, 0]
    _assert_rate_limited_json(refused, "default")
    _assert_rate_limited_json(on_two.get("/api/v1/me", headers=headers), "default")


def test_counters_live_under_the_queue_prefix(limited_app: LimitedApp, own_world: World) -> None:
    prefix = f"test-rl-{secrets.token_hex(4)}:"
    app = limited_app(prefix=prefix, api="1/minute")
    elsewhere = limited_app(prefix=f"test-rl-{secrets.token_hex(4)}:", api="1/minute")
    client = _client(app, own_world)

    assert client.get("/api/v1/me").status_code == 200
    assert client.get("/api/v1/me").status_code == 429
    # Another deployment (or test run) on the same Redis counts on its own.
    token = client.headers["Authorization"]
    answer = elsewhere.test_client().get("/api/v1/me", headers={"Authorization": token})
    assert answer.status_code == 200
    keys = [k.decode() for k in platform(app).redis.scan_iter(match=f"{prefix}*")]
    assert any(key.startswith(storage_key_prefix(prefix)) for key in keys), keys


def test_without_redis_requests_go_through_unlimited(settings: Settings) -> None:
    app = create_app(
        dataclasses.replace(settings, redis_url="redis://127.0.0.1:1/0", rate_limit_api="1/minute")
    )
    try:
        answers = [app.test_client().get("/api/v1/openapi.json") for _ in range(3)]
        assert [a.status_code for a in answers] == [200] * 3
        assert "RateLimit" not in answers[-1].headers
    finally:
        platform(app).db.dispose()


def test_the_embedded_redis_socket_is_a_limits_storage(tmp_path: Path) -> None:
    embedded = EmbeddedRedis(tmp_path)
    url = embedded.acquire()
    try:
        uri = limits_storage_uri(url)
        assert uri.startswith("redis+unix://")
        storage = storage_from_string(uri, key_prefix=storage_key_prefix("test-embedded:"))
        limiter = FixedWindowRateLimiter(storage)
        item = RateLimitItemPerMinute(2)
        assert [limiter.hit(item, "client:1") for _ in range(3)] == [True, True, False]
        assert limiter.hit(item, "client:2")
    finally:
        embedded.release()


def test_storage_uris() -> None:
    assert limits_storage_uri("unix:///srv/redis.sock") == "redis+unix:///srv/redis.sock"
    assert limits_storage_uri("redis://cache:6379/2") == "redis://cache:6379/2"
    assert limits_storage_uri("rediss://:pw@cache:6380/0") == "rediss://:pw@cache:6380/0"


# --- settings and the OpenAPI document -------------------------------------------------------


def test_limits_are_read_from_the_environment(tmp_path: Path) -> None:
    defaults = Settings.from_env({"RECOVA_HOME": str(tmp_path)})
    assert (
        defaults.rate_limit_api,
        defaults.rate_limit_writes,
        defaults.rate_limit_token,
        defaults.rate_limit_token_address,
    ) == ("600/minute", "120/minute", "20/minute", "60/minute")
    chosen = Settings.from_env(
        {
            "RECOVA_HOME": str(tmp_path),
            "RECOVA_RATE_LIMIT_API": "100/second",
            "RECOVA_RATE_LIMIT_WRITES": "1000 per hour",
            "RECOVA_RATE_LIMIT_TOKEN": "5/minute",
            "RECOVA_RATE_LIMIT_TOKEN_ADDRESS": "10/minute",
        }
    )
    assert chosen.rate_limit_api == "100/second"
    assert chosen.rate_limit_writes == "1000 per hour"
    assert chosen.rate_limit_token == "5/minute"
    assert chosen.rate_limit_token_address == "10/minute"


@pytest.mark.parametrize("raw", ["often", "0/minute", "10/minute;100/hour", "10/fortnight"])
def test_a_limit_that_is_not_one_rate_stops_start_up(tmp_path: Path, raw: str) -> None:
    with pytest.raises(ConfigError, match="RECOVA_RATE_LIMIT_API"):
        Settings.from_env({"RECOVA_HOME": str(tmp_path), "RECOVA_RATE_LIMIT_API": raw})


def test_every_operation_documents_the_429(app: Flask) -> None:
    spec = anonymous(app).get("/api/v1/openapi.json").json
    component = spec["components"]["responses"]["RATE_LIMITED"]

    assert set(component["headers"]) == {"Retry-After", "RateLimit", "RateLimit-Policy"}
    assert component["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }
    operations = [
        (path, method, operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in ("get", "put", "post", "patch", "delete")
    ]
    assert len(operations) > 50
    for path, method, operation in operations:
        assert operation["responses"]["429"] == {"$ref": "#/components/responses/RATE_LIMITED"}, (
            method,
            path,
        )
