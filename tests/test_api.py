"""The JSON API as a whole: one error shape, the OpenAPI document and docs, pagination,
platform administration, tenant administration, profiles and the background refresh."""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
from http import HTTPStatus

import pytest
from rq.job import Job
from rq.serializers import JSONSerializer

from recova.platform.auth.access import SCOPES
from recova.platform.kernel.extension import platform
from recova.platform.kernel.jobs import job_queue
from tests.support import B_MARK, PASSWORD, Caller, anonymous, bearer, login, unique

ERROR_KEYS = {"code", "status", "message", "errors"}
PLATFORM_LISTS = [
    "/api/v1/platform/tenants",
    "/api/v1/platform/agencies",
    "/api/v1/platform/contracts",
    "/api/v1/platform/users",
]


def _root(world) -> Caller:  # type: ignore[no-untyped-def]
    return login(world.app, world.platform_admin_email)


def _all(caller: Caller, path: str) -> list[dict]:
    """Every item of a list endpoint, walking its pages as X-Pagination describes them."""
    items: list[dict] = []
    page: int | None = 1
    while page is not None:
        response = caller.get(f"{path}?page={page}&page_size=100")
        assert response.status_code == 200, response.json
        items.extend(response.json)
        page = json.loads(response.headers["X-Pagination"]).get("next_page")
    return items


def assert_error(response, status: int) -> dict:  # type: ignore[no-untyped-def]
    """The response is an API error of ``status`` in the one documented JSON shape."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.json
    assert set(body) <= ERROR_KEYS, body
    assert body["code"] == status
    assert body["status"] == HTTPStatus(status).phrase
    if "message" in body:
        assert isinstance(body["message"], str)
    if "errors" in body:
        assert isinstance(body["errors"], dict)
    return body


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


# --- one error shape -----------------------------------------------------------------


def test_401_error_shape(world) -> None:
    body = assert_error(anonymous(world.app).get("/api/v1/cases"), 401)
    assert body["message"] == "authentication required"


def test_403_error_shape(world) -> None:
    analyst = login(world.app, world.a.analyst_email)

    body = assert_error(analyst.get("/api/v1/platform/tenants"), 403)

    assert "platform_admin" in body["message"]


@pytest.mark.parametrize("path", ["/api/v1/no-such-route", "/api/v1/platform/tenants/no-such"])
def test_404_error_shape(world, path: str) -> None:
    assert_error(_root(world).get(path), 404)


def test_404_for_unknown_route_even_without_credentials(world) -> None:
    assert_error(anonymous(world.app).get("/api/v1/no-such-route"), 404)


def test_405_error_shape(world) -> None:
    response = _root(world).request("PUT", "/api/v1/platform/tenants", json={})

    assert_error(response, 405)
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}


def test_409_error_shape(world) -> None:
    response = _root(world).post(
        "/api/v1/platform/agencies", json={"slug": world.agency_a_slug, "name": "Again"}
    )

    body = assert_error(response, 409)
    assert "already exists" in body["message"]


def test_422_unknown_field_is_rejected_and_named(world) -> None:
    slug = unique("agency-extra-")
    root = _root(world)

    response = root.post(
        "/api/v1/platform/agencies", json={"slug": slug, "name": "Extra", "colour": "red"}
    )

    body = assert_error(response, 422)
    assert body["errors"] == {"json": {"colour": ["Unknown field."]}}
    assert slug not in [agency["slug"] for agency in _all(root, "/api/v1/platform/agencies")]


def test_422_missing_field_is_named(world) -> None:
    response = _root(world).post("/api/v1/platform/agencies", json={"name": "No slug"})

    body = assert_error(response, 422)
    assert list(body["errors"]["json"]) == ["slug"]


# --- OpenAPI and docs ----------------------------------------------------------------


def test_openapi_document_lists_paths_and_oauth2(world) -> None:
    response = anonymous(world.app).get("/api/v1/openapi.json")

    assert response.status_code == 200
    spec = json.loads(response.get_data(as_text=True))
    assert spec["openapi"].startswith("3.")
    assert {"/api/v1/me", "/api/v1/cases", "/api/v1/platform/tenants"} <= set(spec["paths"])
    oauth2 = spec["components"]["securitySchemes"]["oauth2"]
    assert oauth2["type"] == "oauth2"
    assert oauth2["flows"]["clientCredentials"]["tokenUrl"] == "/oauth/token"
    assert set(oauth2["flows"]["clientCredentials"]["scopes"]) == set(SCOPES)


def test_swagger_ui_is_served_with_local_assets(world) -> None:
    client = world.app.test_client()

    page = client.get("/api/v1/docs")

    assert page.status_code == 200
    assert page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert "/api/v1/docs/assets/swagger-ui-bundle.js" in assets
    assert "/api/v1/openapi.json" in html
    for asset in assets:
        assert asset.startswith("/api/v1/docs/assets/"), asset  # nothing from a CDN
        with client.get(asset) as response:
            assert response.status_code == 200, asset
            assert response.get_data()


# --- pagination ----------------------------------------------------------------------


def test_cases_list_honours_page_and_page_size(world) -> None:
    admin = login(world.app, world.b.admin_email)
    newest_first = sorted(world.b.case_ids, reverse=True)

    pages = [admin.get(f"/api/v1/cases?page={n}&page_size=4") for n in (1, 2)]

    assert [len(page.json) for page in pages] == [4, 2]
    assert [case["id"] for page in pages for case in page.json] == newest_first
    first, second = (json.loads(page.headers["X-Pagination"]) for page in pages)
    assert first == {
        "total": 6,
        "total_pages": 2,
        "first_page": 1,
        "last_page": 2,
        "page": 1,
        "next_page": 2,
    }
    assert second == {
        "total": 6,
        "total_pages": 2,
        "first_page": 1,
        "last_page": 2,
        "page": 2,
        "previous_page": 1,
    }


def test_page_beyond_the_last_is_empty_and_bad_paging_is_422(world) -> None:
    admin = login(world.app, world.b.admin_email)

    beyond = admin.get("/api/v1/cases?page=9&page_size=4")

    assert beyond.status_code == 200
    assert beyond.json == []
    assert json.loads(beyond.headers["X-Pagination"])["total"] == 6
    too_small = assert_error(admin.get("/api/v1/cases?page_size=0"), 422)
    assert "page_size" in too_small["errors"]["query"]
    assert "page" in assert_error(admin.get("/api/v1/cases?page=0"), 422)["errors"]["query"]


@pytest.mark.parametrize(
    ("who", "path"),
    [
        *(("root", path) for path in PLATFORM_LISTS),
        ("tenant admin", "/api/v1/users"),
        ("tenant admin", "/api/v1/api-clients"),
        ("tenant admin", "/api/v1/cases"),
    ],
)
def test_list_endpoints_send_x_pagination(world, who: str, path: str) -> None:
    caller = _root(world) if who == "root" else login(world.app, world.a.admin_email)

    first = caller.get(f"{path}?page=1&page_size=1")
    second = caller.get(f"{path}?page=2&page_size=1")

    assert first.status_code == 200, first.json
    paging = json.loads(first.headers["X-Pagination"])
    everything = _all(caller, path)
    assert paging["total"] == len(everything) >= 2
    assert paging["total_pages"] == paging["total"]
    assert (paging["page"], paging["next_page"]) == (1, 2)
    assert [len(first.json), len(second.json)] == [1, 1]
    assert [first.json[0], second.json[0]] == everything[:2]


# --- platform administration ---------------------------------------------------------


def test_platform_admin_manages_tenants(world) -> None:
    root = _root(world)
    slug = unique("newt")

    created = root.post(
        "/api/v1/platform/tenants",
        json={
            "slug": slug,
            "name": "New Tenant",
            "jurisdiction": "US",
            "timezone": "America/Chicago",
            "currency": "USD",
        },
    )

    assert created.status_code == 201, created.json
    assert created.json["slug"] == slug
    assert created.json["schema_name"] == f"tenant_{slug}"
    assert created.json["status"] == "active"
    assert slug in [tenant["slug"] for tenant in _all(root, "/api/v1/platform/tenants")]
    shown = root.get(f"/api/v1/platform/tenants/{slug}")
    assert shown.status_code == 200
    assert shown.json["timezone"] == "America/Chicago"
    renamed = root.patch(f"/api/v1/platform/tenants/{slug}", json={"name": "Renamed"})
    assert renamed.status_code == 200
    assert root.get(f"/api/v1/platform/tenants/{slug}").json["name"] == "Renamed"
    # The new tenant is reachable by name, and empty.
    cases = root.get(f"/api/v1/tenants/{slug}/cases")
    assert cases.status_code == 200
    assert cases.json == []


def test_tenant_slug_conflicts_and_bad_input(world) -> None:
    root = _root(world)
    base = {"name": "T", "jurisdiction": "CN", "timezone": "Asia/Shanghai", "currency": "CNY"}

    assert_error(root.post("/api/v1/platform/tenants", json={**base, "slug": world.a.slug}), 409)
    upper = {**base, "slug": world.a.slug.upper()}
    assert_error(root.post("/api/v1/platform/tenants", json=upper), 409)
    bad_jurisdiction = {**base, "slug": unique("badj"), "jurisdiction": "XX"}
    body = assert_error(root.post("/api/v1/platform/tenants", json=bad_jurisdiction), 422)
    assert "jurisdiction" in body["errors"]["json"]
    assert_error(root.patch(f"/api/v1/platform/tenants/{unique('none')}", json={"name": "x"}), 404)


def test_platform_admin_manages_agencies(world) -> None:
    root = _root(world)
    slug = unique("agency-new-")

    created = root.post("/api/v1/platform/agencies", json={"slug": slug, "name": "New Agency"})

    assert created.status_code == 201, created.json
    agency_id = created.json["id"]
    assert created.json["status"] == "active"
    assert agency_id in [agency["id"] for agency in _all(root, "/api/v1/platform/agencies")]
    assert root.get(f"/api/v1/platform/agencies/{agency_id}").json["slug"] == slug
    patched = root.patch(
        f"/api/v1/platform/agencies/{agency_id}", json={"name": "Renamed", "status": "suspended"}
    )
    assert patched.status_code == 200
    assert (patched.json["name"], patched.json["status"]) == ("Renamed", "suspended")
    bad_slug = root.post("/api/v1/platform/agencies", json={"slug": "Bad Slug", "name": "x"})
    assert_error(bad_slug, 422)
    assert_error(root.get("/api/v1/platform/agencies/999999999"), 404)


def test_platform_admin_manages_contracts(world) -> None:
    root = _root(world)
    agency = root.post(
        "/api/v1/platform/agencies", json={"slug": unique("agency-c-"), "name": "Contracted"}
    ).json
    today = _today()
    starts = today - dt.timedelta(days=5)

    created = root.post(
        "/api/v1/platform/contracts",
        json={"tenant": world.a.slug, "agency": agency["slug"], "starts_on": starts.isoformat()},
    )

    assert created.status_code == 201, created.json
    contract_id = created.json["id"]
    assert created.json["tenant"] == world.a.slug
    assert created.json["ends_on"] is None
    listed = _all(root, "/api/v1/platform/contracts")
    assert contract_id in [contract["id"] for contract in listed]
    assert root.get(f"/api/v1/platform/contracts/{contract_id}").json["agency"] == agency["slug"]

    overlapping = root.post(
        "/api/v1/platform/contracts",
        json={
            "tenant": world.a.slug,
            "agency": agency["slug"],
            "starts_on": (today + dt.timedelta(days=30)).isoformat(),
        },
    )
    assert "overlapping" in assert_error(overlapping, 409)["message"]

    # An end before the start is invalid input (422), when creating and when ending.
    backwards = root.post(
        "/api/v1/platform/contracts",
        json={
            "tenant": world.b.slug,
            "agency": agency["slug"],
            "starts_on": today.isoformat(),
            "ends_on": (today - dt.timedelta(days=1)).isoformat(),
        },
    )
    assert "ends_on" in assert_error(backwards, 422)["message"]
    ends_early = root.patch(
        f"/api/v1/platform/contracts/{contract_id}",
        json={"ends_on": (starts - dt.timedelta(days=1)).isoformat()},
    )
    assert_error(ends_early, 422)

    ended = root.patch(
        f"/api/v1/platform/contracts/{contract_id}",
        json={"ends_on": (today + dt.timedelta(days=10)).isoformat()},
    )
    assert ended.status_code == 200
    assert ended.json["ends_on"] == (today + dt.timedelta(days=10)).isoformat()
    # Once it ends, a later contract for the same pair no longer overlaps.
    later = root.post(
        "/api/v1/platform/contracts",
        json={
            "tenant": world.a.slug,
            "agency": agency["slug"],
            "starts_on": (today + dt.timedelta(days=10)).isoformat(),
        },
    )
    assert later.status_code == 201, later.json
    # Moving the first contract's end past the later one's start would overlap them.
    extended = root.patch(
        f"/api/v1/platform/contracts/{contract_id}",
        json={"ends_on": (today + dt.timedelta(days=11)).isoformat()},
    )
    assert f"contract {later.json['id']}" in assert_error(extended, 409)["message"]
    unknown = root.post(
        "/api/v1/platform/contracts",
        json={"tenant": unique("none"), "agency": agency["slug"], "starts_on": today.isoformat()},
    )
    assert "tenant" in assert_error(unknown, 422)["errors"]["json"]


def test_platform_admin_manages_users(world) -> None:
    root = _root(world)
    email = f"{unique('collector')}@agency-a.test"

    created = root.post(
        "/api/v1/platform/users",
        json={
            "email": email,
            "full_name": "New Collector",
            "password": PASSWORD,
            "role": "collector",
            "agency": world.agency_a_slug,
        },
    )

    assert created.status_code == 201, created.json
    user_id = created.json["id"]
    assert (created.json["role"], created.json["agency"]) == ("collector", world.agency_a_slug)
    assert created.json["tenant"] is None
    assert "password" not in created.json
    assert "password_hash" not in created.json
    shown = root.get(f"/api/v1/platform/users/{user_id}")
    assert shown.json["email"] == email
    patched = root.patch(f"/api/v1/platform/users/{user_id}", json={"full_name": "Renamed"})
    assert patched.json["full_name"] == "Renamed"
    assert user_id in [user["id"] for user in _all(root, "/api/v1/platform/users")]
    # The new user can log in.
    assert login(world.app, email).get("/api/v1/me").json["role"] == "collector"


def test_platform_user_role_must_fit_the_organisation(world) -> None:
    root = _root(world)
    email = f"{unique('orphan')}@alpha.test"
    analyst = {
        "email": email,
        "full_name": "Orphan",
        "password": PASSWORD,
        "role": "tenant_analyst",
    }

    no_tenant = root.post("/api/v1/platform/users", json=analyst)
    also_agency = root.post(
        "/api/v1/platform/users",
        json={**analyst, "tenant": world.a.slug, "agency": world.agency_a_slug},
    )
    unknown_tenant = root.post("/api/v1/platform/users", json={**analyst, "tenant": unique("no")})

    assert "tenant" in assert_error(no_tenant, 422)["message"]
    assert_error(also_agency, 422)
    assert_error(unknown_tenant, 422)
    assert email not in [user["email"] for user in _all(root, "/api/v1/platform/users")]


def test_duplicate_email_is_409_whatever_its_case(world) -> None:
    root = _root(world)

    response = root.post(
        "/api/v1/platform/users",
        json={
            "email": world.a.analyst_email.upper(),
            "full_name": "Twin",
            "password": PASSWORD,
            "role": "tenant_analyst",
            "tenant": world.a.slug,
        },
    )

    assert "already exists" in assert_error(response, 409)["message"]


@pytest.mark.parametrize(
    "who", ["tenant admin", "tenant analyst", "agency manager", "collector", "api client"]
)
def test_non_platform_admins_get_403_on_platform_routes(world, who: str) -> None:
    if who == "api client":
        caller = bearer(world.app, world.a.client_id, world.a.client_secret)
    else:
        email = {
            "tenant admin": world.a.admin_email,
            "tenant analyst": world.a.analyst_email,
            "agency manager": world.manager_email,
            "collector": world.collector_email,
        }[who]
        caller = login(world.app, email)

    responses = [
        *(caller.get(path) for path in PLATFORM_LISTS),
        caller.get(f"/api/v1/platform/tenants/{world.a.slug}"),
        caller.get(f"/api/v1/platform/agencies/{world.agency_a_id}"),
        caller.get(f"/api/v1/platform/contracts/{world.contract_a_id}"),
        caller.get(f"/api/v1/platform/users/{world.a.admin_id}"),
        caller.post("/api/v1/platform/agencies", json={"slug": unique("nope-"), "name": "x"}),
        caller.patch(f"/api/v1/platform/tenants/{world.a.slug}", json={"status": "disabled"}),
    ]

    for response in responses:
        assert_error(response, 403)
    # Nothing was changed by the refused writes.
    assert _root(world).get(f"/api/v1/platform/tenants/{world.a.slug}").json["status"] == "active"


# --- tenant administration -----------------------------------------------------------


def test_tenant_admin_lists_only_own_tenants_users(world) -> None:
    admin = login(world.app, world.a.admin_email)

    response = admin.get("/api/v1/users?page_size=100")

    assert response.status_code == 200
    assert {user["tenant"] for user in response.json} == {world.a.slug}
    emails = [user["email"] for user in response.json]
    assert world.a.admin_email in emails
    assert world.a.analyst_email in emails
    assert B_MARK not in response.get_data(as_text=True)


def test_tenant_admin_creates_and_updates_users(world) -> None:
    admin = login(world.app, world.a.admin_email)
    email = f"{unique('analyst')}@alpha.test"

    created = admin.post(
        "/api/v1/users",
        json={
            "email": email,
            "full_name": "New Analyst",
            "password": PASSWORD,
            "role": "tenant_analyst",
        },
    )

    assert created.status_code == 201, created.json
    assert (created.json["role"], created.json["tenant"]) == ("tenant_analyst", world.a.slug)
    user_id = created.json["id"]
    patched = admin.patch(f"/api/v1/users/{user_id}", json={"full_name": "Renamed Analyst"})
    assert patched.status_code == 200
    assert admin.get(f"/api/v1/users/{user_id}").json["full_name"] == "Renamed Analyst"
    me = login(world.app, email).get("/api/v1/me")
    assert (me.json["role"], me.json["tenant"]) == ("tenant_analyst", world.a.slug)


@pytest.mark.parametrize("role", ["agency_manager", "collector", "platform_admin"])
def test_tenant_admin_cannot_create_other_roles(world, role: str) -> None:
    admin = login(world.app, world.a.admin_email)
    email = f"{unique('wrong')}@alpha.test"

    response = admin.post(
        "/api/v1/users",
        json={"email": email, "full_name": "Wrong", "password": PASSWORD, "role": role},
    )

    assert "role" in assert_error(response, 422)["errors"]["json"]
    assert email not in [user["email"] for user in _all(admin, "/api/v1/users")]


def test_tenant_admin_cannot_reach_another_tenants_users(world) -> None:
    admin = login(world.app, world.a.admin_email)

    assert_error(admin.get(f"/api/v1/users/{world.b.admin_id}"), 404)
    assert_error(admin.patch(f"/api/v1/users/{world.b.admin_id}", json={"is_active": False}), 404)
    assert_error(admin.get(f"/api/v1/tenants/{world.b.slug}/users"), 404)
    # B's admin is untouched and still works.
    assert login(world.app, world.b.admin_email).get("/api/v1/me").status_code == 200


def test_analyst_cannot_administer_users(world) -> None:
    analyst = login(world.app, world.a.analyst_email)

    assert_error(analyst.get("/api/v1/users"), 403)
    assert_error(analyst.patch(f"/api/v1/users/{world.a.admin_id}", json={"full_name": "x"}), 403)


# --- who am I, and profiles ----------------------------------------------------------


def test_me_for_a_user(world) -> None:
    response = login(world.app, world.a.admin_email).get("/api/v1/me")

    assert response.status_code == 200
    me = response.json
    assert me["kind"] == "user"
    assert me["id"] == world.a.admin_id
    assert me["name"] == world.a.admin_email
    assert me["role"] == "tenant_admin"
    assert me["tenant"] == world.a.slug
    assert me["scopes"] == []
    assert me["csrf_token"]


def test_me_for_a_client(world) -> None:
    response = bearer(world.app, world.a.client_id, world.a.client_secret).get("/api/v1/me")

    assert response.status_code == 200
    me = response.json
    assert me["kind"] == "client"
    assert me["id"] == world.a.client_pk
    assert me["name"] == world.a.client_id
    assert me["role"] is None
    assert me["tenant"] == world.a.slug
    assert me["scopes"] == sorted(SCOPES)
    assert me["csrf_token"] is None


def test_me_for_an_agency_user(world) -> None:
    me = login(world.app, world.manager_email).get("/api/v1/me").json

    assert (me["role"], me["tenant"], me["agency_id"]) == (
        "agency_manager",
        None,
        world.agency_a_id,
    )


def test_profile_for_a_tenant_user(world) -> None:
    response = login(world.app, world.a.analyst_email).get("/api/v1/profile")

    assert response.status_code == 200
    assert response.json == {
        "slug": world.a.slug,
        "name": f"Tenant {world.a.slug}",
        "jurisdiction": "CN",
        "timezone": "Asia/Shanghai",
        "currency": "CNY",
    }


def test_agency_manager_reads_only_contracted_tenants_profile(world) -> None:
    manager = login(world.app, world.manager_email)

    contracted = manager.get(f"/api/v1/tenants/{world.a.slug}/profile")

    assert contracted.status_code == 200
    assert contracted.json["slug"] == world.a.slug
    assert_error(manager.get(f"/api/v1/tenants/{world.b.slug}/profile"), 404)
    assert_error(manager.get("/api/v1/profile"), 404)
    assert_error(manager.get(f"/api/v1/tenants/{unique('none')}/profile"), 404)
    # And the other way round: B's agency does not reach A.
    outsider = login(world.app, world.outsider_manager_email)
    assert_error(outsider.get(f"/api/v1/tenants/{world.a.slug}/profile"), 404)
    assert outsider.get(f"/api/v1/tenants/{world.b.slug}/profile").status_code == 200


# --- background refresh --------------------------------------------------------------


@pytest.mark.real_commits  # the outbox publishes jobs on a connection of its own
def test_refresh_days_past_due_is_accepted_as_a_queued_job(world, settings) -> None:
    admin = login(world.app, world.a.admin_email)
    # Any past date will do; a random one keeps this test's job id its own.
    as_of = (_today() - dt.timedelta(days=1 + secrets.randbelow(20_000))).isoformat()

    response = admin.post("/api/v1/cases/refresh-days-past-due", json={"as_of": as_of})

    assert response.status_code == 202, response.json
    job_id = response.json["job_id"]
    assert isinstance(job_id, str)
    assert job_id
    redis = platform(world.app).redis
    queue = job_queue(redis, response.json["queue"], prefix=settings.queue_prefix)
    job = Job.fetch(job_id, connection=redis, serializer=JSONSerializer)
    try:
        assert job_id in queue.get_job_ids()
        assert job.func_name.endswith("refresh_days_past_due_job")
        assert job.kwargs == {"tenant_id": world.a.id, "as_of": as_of}
    finally:
        job.delete()


def test_refresh_days_past_due_needs_a_date_and_a_tenant_admin(world) -> None:
    admin = login(world.app, world.a.admin_email)
    analyst = login(world.app, world.a.analyst_email)
    client = bearer(world.app, world.a.client_id, world.a.client_secret)
    path = "/api/v1/cases/refresh-days-past-due"
    body = {"as_of": _today().isoformat()}

    assert "as_of" in assert_error(admin.post(path, json={}), 422)["errors"]["json"]
    assert_error(analyst.post(path, json=body), 403)
    assert_error(client.post(path, json=body), 403)


def test_unknown_query_parameters_are_rejected(world) -> None:
    admin = login(world.app, world.a.admin_email)
    typo = admin.get("/api/v1/cases?stauts=closed")
    body = assert_error(typo, 422)
    assert body["errors"] == {"query": {"stauts": ["Unknown field."]}}
    assert admin.get("/api/v1/cases?status=closed&page=1&page_size=5").status_code == 200
    assert_error(admin.get("/api/v1/users?role=admin"), 422)
    # Authentication comes first: an anonymous caller learns nothing about parameters.
    assert_error(world.app.test_client().get("/api/v1/cases?stauts=closed"), 401)
