"""Schemathesis against the app itself: no server errors, every response as documented.

Two principals walk every operation they could call: a tenant admin (the short routes,
``/api/v1/...``) and an agency collector holding cases (the named-tenant routes,
``/api/v1/tenants/<slug>/...``). Both act in a world made for this module (two tenants,
their agencies and staff, seeded with placements, promises, plans, settlements, disputes,
contacts and invoices), so the writes generated here land in tenants no other test reads.

Some examples of an operation with ids in its path use small ids, which exist in that
world, so the walk reaches the objects and not only their 404s; others are whatever
schemathesis draws, up to the largest id the path admits; and operations that take any
input also get invalid input (schemathesis' negative mode), which must be answered 4xx in
the error shape, never 500.
"""

from __future__ import annotations

import json
from typing import Any

import hypothesis
import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, Phase, given
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.allocation_support import seed_world_allocation
from tests.billing_support import seed_world_billing
from tests.compliance_support import seed_world_contact
from tests.support import Caller, World, build_world, login
from tests.work_support import seed_world_work

pytestmark = pytest.mark.slow

#: Examples per operation and principal: enough to reach the declared fields and value
#: kinds, few enough for both walks to take about a minute on two cores.
MAX_EXAMPLES = 16
CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
]
NAMED_TENANT = "/api/v1/tenants/{tenant_slug}/"
#: Writes a principal must not aim at itself: it would lock itself out of the rest of
#: the walk (that a user may deactivate or demote itself is the API's business).
SELF_WRITES = {"PATCH", "PUT", "DELETE", "POST"}


@pytest.fixture(scope="module")
def world(app: Flask) -> World:
    world = build_world(app)
    seed_world_allocation(world)
    seed_world_work(world)
    seed_world_contact(world)
    seed_world_billing(world)
    return world


def _strategy(operation: Any, tenant_slug: str | None) -> Any:
    """Valid requests, half of them with small ids; and, where the operation takes any
    input, invalid ones (a value of the wrong type or out of range, a missing field)."""
    fixed = {"tenant_slug": tenant_slug} if tenant_slug else {}
    drawn = operation.as_strategy(path_parameters=fixed or None)
    ids = [
        parameter.name
        for parameter in operation.path_parameters
        if parameter.definition.get("schema", {}).get("type") == "integer"
    ]
    strategies = [drawn]
    if ids:
        strategies.append(
            st.integers(min_value=1, max_value=3).flatmap(
                lambda n: operation.as_strategy(path_parameters={**fixed, **dict.fromkeys(ids, n)})
            )
        )
    takes_input = ids or list(operation.query) or list(operation.body)
    if takes_input:
        strategies.append(
            operation.as_strategy(GenerationMode.NEGATIVE, path_parameters=fixed or None)
        )
    return st.one_of(*strategies)


def _summary(error: BaseException) -> str:
    """The first lines of each distinct failure, without the whole response."""
    parts = error.exceptions if isinstance(error, BaseExceptionGroup) else (error,)
    lines = set()
    for part in parts:
        text = [line.strip() for line in str(part).strip().splitlines() if line.strip()]
        lines.add(" | ".join(text[:4]))
    return " || ".join(sorted(lines))[:700]


def _walk(app: Flask, caller: Caller, *, named_tenant: str | None) -> list[str]:
    """Every operation of the document on one side (short or named-tenant routes)."""
    own_id = caller.get("/api/v1/me").json["id"]
    cookie = caller.client.get_cookie("recova_session")
    assert cookie is not None
    cookies = {"recova_session": cookie.value}
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.startswith(NAMED_TENANT) != (named_tenant is not None):
            continue

        @given(case=_strategy(operation, named_tenant))
        @hypothesis.settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            if case.method in SELF_WRITES and (case.path_parameters or {}).get("user_id") == own_id:
                return
            response = case.call(headers=caller.headers, cookies=cookies)
            case.validate_response(response, checks=CHECKS)

        try:
            check()
        except (Exception, BaseExceptionGroup) as error:  # every failure is listed, in brief
            failures.append(f"{operation.label}: {_summary(error)}")
    return failures


def test_tenant_admin_gets_no_server_error_and_only_documented_answers(
    app: Flask, world: World
) -> None:
    failures = _walk(app, login(app, world.a.admin_email), named_tenant=None)

    assert not failures, json.dumps(failures, indent=1)[:20000]


def test_agency_collector_gets_no_server_error_and_only_documented_answers(
    app: Flask, world: World
) -> None:
    failures = _walk(app, login(app, world.collector_email), named_tenant=world.a.slug)

    assert not failures, json.dumps(failures, indent=1)[:20000]
