"""Input the database cannot hold is answered 404 or 422 in the one error shape, never 500.

Ids beyond their column's range, NUL characters and unpaired surrogates in text, page
numbers past any offset, decimals and dates beyond what can be stored or computed with,
and a month that is no month: each is refused naming the field, and nothing is stored.
A CSRF failure says what was missing or stale, on the API and on forms.
"""

from __future__ import annotations

from typing import Any

import pytest
from marshmallow import Schema, fields

from recova.platform.kernel.api import StrictSchema
from tests.support import Caller, anonymous, login
from tests.test_api import assert_error

INT4_MAX = 2**31 - 1
INT8_MAX = 2**63 - 1


@pytest.fixture
def admin(world) -> Caller:  # type: ignore[no-untyped-def]
    return login(world.app, world.a.admin_email)


# --- every input goes through the guarded base ----------------------------------------


def _nested_schemas(schema: Schema) -> list[Schema]:
    found = [schema]
    for field in schema.fields.values():
        for inner in (field, getattr(field, "inner", None), getattr(field, "value_field", None)):
            if isinstance(inner, fields.Nested):
                found.extend(_nested_schemas(inner.schema))
    return found


def test_every_argument_schema_is_a_strict_schema(app) -> None:  # type: ignore[no-untyped-def]
    """Bodies, queries and uploads, nested ones included: the bounds and text checks of
    ``StrictSchema`` apply to every input of every operation."""
    loose: set[str] = set()
    for endpoint, view in app.view_functions.items():
        view_class: Any = getattr(view, "view_class", None)
        handlers = [
            getattr(view_class, m)
            for m in ("get", "post", "put", "patch", "delete")
            if view_class is not None and hasattr(view_class, m)
        ] or [view]
        for handler in handlers:
            arguments = getattr(handler, "_apidoc", {}).get("arguments", {})
            for parameter in arguments.get("parameters", []):
                declared = parameter["schema"]
                schema = declared() if isinstance(declared, type) else declared
                for each in _nested_schemas(schema):
                    if not isinstance(each, StrictSchema):
                        loose.add(f"{endpoint}: {type(each).__name__}")

    assert sorted(loose) == []


# --- ids in the path -----------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        f"/api/v1/cases/{INT4_MAX + 1}",
        f"/api/v1/debtors/{INT8_MAX + 1}",
        f"/api/v1/accounts/{10**30}",
        "/api/v1/cases/" + "9" * 5000,  # more digits than Python parses into an int
        f"/api/v1/users/{INT4_MAX + 1}",
        f"/api/v1/ingestion/runs/{INT4_MAX + 1}/errors",
        f"/api/v1/billing/invoices/{INT4_MAX + 1}/export.csv",
        f"/api/v1/cases/1/attempts/{INT8_MAX + 1}/outcome",
    ],
)
def test_an_id_beyond_its_column_is_404(admin: Caller, path: str) -> None:
    method = "POST" if path.endswith("/outcome") else "GET"
    body = assert_error(admin.request(method, path, json={} if method == "POST" else None), 404)
    assert body["message"]


def test_the_largest_ids_of_their_columns_are_looked_up_and_not_found(admin: Caller) -> None:
    assert "no case" in assert_error(admin.get(f"/api/v1/cases/{INT4_MAX}"), 404)["message"]
    # Contact attempts are a bigint column: an id past the integer range is still one.
    outcome = admin.post(
        f"/api/v1/cases/1/attempts/{INT4_MAX + 1}/outcome", json={"code": "connected"}
    )
    assert outcome.status_code in (404, 422), outcome.get_data(as_text=True)
    assert outcome.status_code != 500


def test_a_named_tenant_that_cannot_be_a_slug_is_404(world, admin: Caller) -> None:  # type: ignore[no-untyped-def]
    root = login(world.app, world.platform_admin_email)
    for path in (
        "/api/v1/tenants/a%00b/cases",
        "/api/v1/tenants/" + "a" * 57 + "/cases",
        "/api/v1/tenants/Upper/cases",
    ):
        assert_error(root.get(path), 404)
    assert_error(root.get("/api/v1/platform/tenants/a%00b"), 404)
    assert_error(anonymous(world.app).get("/api/v1/tenants/a%00b/cases"), 404)


def test_path_ids_are_documented_with_their_column_range(world) -> None:  # type: ignore[no-untyped-def]
    spec = world.app.test_client().get("/api/v1/openapi.json").json

    def path_parameter(path: str, method: str, name: str) -> dict:
        item = spec["paths"][path]
        declared = item.get("parameters", []) + item[method].get("parameters", [])
        found = [p for p in declared if p["name"] == name]
        return found[0]["schema"]

    assert path_parameter("/api/v1/cases/{case_id}", "get", "case_id") == {
        "type": "integer",
        "minimum": 0,
        "maximum": INT4_MAX,
    }
    outcome = "/api/v1/cases/{case_id}/attempts/{attempt_id}/outcome"
    assert path_parameter(outcome, "post", "attempt_id")["maximum"] == INT8_MAX
    slug = path_parameter("/api/v1/tenants/{tenant_slug}/cases", "get", "tenant_slug")
    assert slug["type"] == "string"
    assert slug["maxLength"] == 56


# --- integers in bodies and queries ---------------------------------------------------


def test_an_integer_beyond_its_column_in_a_body_is_422_naming_it(admin: Caller) -> None:
    response = admin.post(
        "/api/v1/ingestion/runs", json={"mapping": "walk-1", "file_id": INT4_MAX + 1}
    )

    body = assert_error(response, 422)
    assert list(body["errors"]["json"]) == ["file_id"]
    assert "file_id" in body["message"]


@pytest.mark.parametrize(
    "query", [f"dpd_min={INT4_MAX + 1}", f"dpd_max={10**40}", f"dpd_min={-(2**31) - 1}"]
)
def test_an_integer_beyond_range_in_a_query_is_422_naming_it(admin: Caller, query: str) -> None:
    body = assert_error(admin.get(f"/api/v1/cases?{query}"), 422)
    assert list(body["errors"]["query"]) == [query.split("=", maxsplit=1)[0]]


def test_an_audit_sequence_number_is_a_bigint(admin: Caller) -> None:
    beyond_integer = admin.get(f"/api/v1/audit/events?after_seq={INT4_MAX + 1}")
    beyond_bigint = admin.get(f"/api/v1/audit/events?after_seq={INT8_MAX + 1}")

    assert beyond_integer.status_code == 200, beyond_integer.get_data(as_text=True)
    assert beyond_integer.json == []
    assert list(assert_error(beyond_bigint, 422)["errors"]["query"]) == ["after_seq"]


@pytest.mark.parametrize("page", [INT4_MAX + 1, 2**63, 2**64 + 7])
def test_a_page_past_any_offset_is_422_naming_page(admin: Caller, page: int) -> None:
    body = assert_error(admin.get(f"/api/v1/cases?page={page}"), 422)

    assert list(body["errors"]["query"]) == ["page"]


def test_the_last_page_number_allowed_is_an_empty_page(admin: Caller) -> None:
    response = admin.get(f"/api/v1/cases?page={INT4_MAX}&page_size=100")

    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.json == []


# --- text PostgreSQL cannot hold ------------------------------------------------------


@pytest.mark.parametrize("bad", ["a\x00b", "\ud800 alone"])
def test_nul_or_a_lone_surrogate_in_a_json_string_is_422_and_stores_nothing(
    admin: Caller, bad: str
) -> None:
    response = admin.post(
        "/api/v1/contact/outcome-codes",
        json={"code": "nul_check", "label": bad, "result": "connected"},
    )

    body = assert_error(response, 422)
    assert list(body["errors"]["json"]) == ["label"]
    codes = admin.get("/api/v1/contact/outcome-codes").json
    assert "nul_check" not in [code["code"] for code in codes]


def test_nul_inside_a_dict_of_a_body_is_422(admin: Caller) -> None:
    response = admin.post(
        "/api/v1/ingestion/mappings",
        json={"name": "nul-map", "kind": "portfolio", "columns": {"full_name": "na\x00me"}},
    )

    body = assert_error(response, 422)
    assert "columns" in body["errors"]["json"]
    names = [m["name"] for m in admin.get("/api/v1/ingestion/mappings?page_size=100").json]
    assert "nul-map" not in names


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/audit/events?action=a%00b",
        "/api/v1/cases?external_id=L%00-1",
        "/api/v1/billing/invoices?currency=C%00Y",
        "/api/v1/ingestion/fields?kind=port%00folio",
    ],
)
def test_nul_in_a_query_value_is_422_naming_it(admin: Caller, path: str) -> None:
    body = assert_error(admin.get(path), 422)
    name = path.split("?")[1].split("=", maxsplit=1)[0]

    assert list(body["errors"]["query"]) == [name]


# --- decimals, dates and months -------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "reason"),
    [("1e-100000", "decimal places"), ("1e400", "less than or equal"), ("0.00000000001", "places")],
)
def test_a_decimal_the_database_cannot_hold_is_422(
    admin: Caller, world, amount: str, reason: str
) -> None:  # type: ignore[no-untyped-def]
    case_id = world.a.case_ids[0]

    response = admin.post(
        f"/api/v1/cases/{case_id}/promises", json={"amount": amount, "due_date": "2030-01-01"}
    )

    body = assert_error(response, 422)
    assert reason in " ".join(body["errors"]["json"]["amount"])
    assert admin.get(f"/api/v1/cases/{case_id}/promises").json == []


@pytest.mark.parametrize("day", ["9999-12-31", "0001-01-01"])
def test_a_date_past_what_can_be_computed_with_is_422(admin: Caller, world, day: str) -> None:  # type: ignore[no-untyped-def]
    case_id = world.a.case_ids[0]

    response = admin.post(
        f"/api/v1/cases/{case_id}/promises", json={"amount": "10.00", "due_date": day}
    )

    body = assert_error(response, 422)
    assert list(body["errors"]["json"]) == ["due_date"]


@pytest.mark.parametrize("month", ["0000-01", "9999-12", "1899-12"])
def test_a_month_outside_the_calendar_is_422_naming_month(admin: Caller, month: str) -> None:
    closed = assert_error(admin.post("/api/v1/billing/closes", json={"month": month}), 422)
    listed = assert_error(admin.get(f"/api/v1/billing/invoices?month={month}"), 422)

    assert list(closed["errors"]["json"]) == ["month"]
    assert list(listed["errors"]["query"]) == ["month"]


# --- uploads ------------------------------------------------------------------------


def test_an_upload_without_a_file_part_is_422_naming_file(admin: Caller) -> None:
    as_text = admin.client.post(
        "/api/v1/ingestion/files",
        data={"file": "not a file"},
        headers=admin.headers,
        content_type="multipart/form-data",
    )
    unknown = admin.upload("/api/v1/ingestion/files", "p.csv", b"a,b\n1,2\n", colour="red")

    assert list(assert_error(as_text, 422)["errors"]["multipart"]) == ["file"]
    assert list(assert_error(unknown, 422)["errors"]["multipart"]) == ["colour"]


def test_an_upload_with_its_connector_field_is_stored(admin: Caller) -> None:
    response = admin.upload("/api/v1/ingestion/files", "p.txt", b"a,b\n1,2\n", connector="csv")

    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.json["connector"] == "csv"


# --- CSRF failures say why ------------------------------------------------------------


def test_an_api_write_without_the_csrf_header_says_it_is_missing(admin: Caller) -> None:
    response = Caller(admin.client, "no header").post(
        "/api/v1/api-clients", json={"name": "csrf-less", "scopes": ["tenant:read"]}
    )

    body = assert_error(response, 400)
    assert "CSRF token is missing" in body["message"]
    assert "X-CSRFToken" in body["message"]
    assert body["errors"] == {"headers": {"X-CSRFToken": ["The CSRF token is missing."]}}


def test_an_api_write_with_a_stale_csrf_header_says_it_does_not_match(world, admin: Caller) -> None:  # type: ignore[no-untyped-def]
    other = login(world.app, world.a.analyst_email)  # a valid token of another session
    stale = Caller(admin.client, "stale", {"X-CSRFToken": other.headers["X-CSRFToken"]})

    body = assert_error(stale.post("/api/v1/api-clients", json={"name": "stale"}), 400)

    assert "CSRF tokens do not match" in body["message"]


def test_a_form_without_its_csrf_token_says_so_and_what_to_do(world) -> None:  # type: ignore[no-untyped-def]
    client = world.app.test_client()
    client.get("/login")

    response = client.post("/login", data={"email": world.a.admin_email, "password": "x"})

    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "The CSRF token is missing." in page
    assert "Reload the page" in page


def test_every_api_error_carries_a_message(world) -> None:  # type: ignore[no-untyped-def]
    caller = anonymous(world.app)
    root = login(world.app, world.platform_admin_email)

    for response in (
        caller.get("/api/v1/no-such-route"),
        root.request("PUT", "/api/v1/platform/tenants", json={}),
        root.post("/api/v1/platform/agencies", json={"name": "No slug"}),
    ):
        body = response.json
        assert isinstance(body.get("message"), str), body
        assert body["message"]
