"""The OpenAPI document is valid, says what the API really sends, and the docs can read it.

The bundled Swagger UI (``swagger-ui-bundle``, Swagger UI 4) renders OpenAPI 3.0 only, so
the document is 3.0 and must validate as such; decimals travel as strings and are
documented so; the upload is one multipart body with a binary file part.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from openapi_spec_validator import OpenAPIV30SpecValidator

from tests.support import anonymous


@pytest.fixture(scope="module")
def spec(app) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    response = anonymous(app).get("/api/v1/openapi.json")
    assert response.status_code == 200
    return response.json


def _schemas(node: Any, where: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every mapping in the document, with a JSON-pointer-ish path to it."""
    if isinstance(node, dict):
        yield where, node
        for key, value in node.items():
            yield from _schemas(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _schemas(value, f"{where}/{index}")


def test_the_document_is_valid_openapi_3_0(spec: dict[str, Any]) -> None:
    errors = [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message[:200]}"
        for error in OpenAPIV30SpecValidator(spec).iter_errors()
    ]

    assert spec["openapi"].startswith("3.0.")
    assert errors == []


def test_the_upload_is_one_multipart_body_with_a_binary_file_part(spec: dict[str, Any]) -> None:
    for path in ("/api/v1/ingestion/files", "/api/v1/tenants/{tenant_slug}/ingestion/files"):
        operation = spec["paths"][path]["post"]
        parameters = spec["paths"][path].get("parameters", []) + operation.get("parameters", [])

        # The file travels in the body, never as a parameter; the one header is every
        # write's optional Idempotency-Key.
        others = [p for p in parameters if p["in"] not in ("path", "query")]
        assert [(p["in"], p["name"]) for p in others] == [("header", "Idempotency-Key")]
        assert list(operation["requestBody"]["content"]) == ["multipart/form-data"]
        ref = operation["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"]
        body = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
        assert body["properties"]["file"]["type"] == "string"
        assert body["properties"]["file"]["format"] == "binary"
        assert body["required"] == ["file"]
        assert "connector" in body["properties"]


def test_no_parameter_is_in_form_data(spec: dict[str, Any]) -> None:
    wrong = [where for where, node in _schemas(spec) if node.get("in") == "formData"]

    assert wrong == []


def test_decimals_are_documented_as_the_strings_they_are_sent_as(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    decimals = [(where, node) for where, node in _schemas(spec) if node.get("format") == "decimal"]

    assert schemas["Account"]["properties"]["outstanding_total"]["type"] == "string"
    assert schemas["Promise"]["properties"]["amount"]["format"] == "decimal"
    assert len(decimals) > 50
    assert [where for where, node in decimals if node.get("type") != "string"] == []
    assert [where for where, node in _schemas(spec) if node.get("type") == "number"] == []


def test_every_bound_in_the_document_is_a_number(spec: dict[str, Any]) -> None:
    bounds = [
        (f"{where}/{key}", node[key])
        for where, node in _schemas(spec)
        for key in ("minimum", "maximum", "x-minimum", "x-maximum")
        if key in node and "properties" not in node
    ]

    assert bounds, "the document names no bound at all"
    assert [(where, value) for where, value in bounds if not isinstance(value, int | float)] == []
    assert not any(where.endswith(("x-minimum", "x-maximum")) for where, _ in bounds)


def test_a_decimal_range_is_documented_with_numbers(spec: dict[str, Any]) -> None:
    amount = spec["components"]["schemas"]["PromiseCreate"]["properties"]["amount"]

    assert amount["type"] == "string"
    assert amount["minimum"] == 0
    assert amount["exclusiveMinimum"] is True
    assert amount["maximum"] == 10**15
