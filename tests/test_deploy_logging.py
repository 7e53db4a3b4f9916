"""Structured logs: JSON lines carrying request id, job id and tenant slug, never personal data."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from flask import Flask

from recova.platform.cases.jobs import refresh_days_past_due_job
from recova.platform.kernel.logs import (
    REQUEST_ID_HEADER,
    ContextFilter,
    JsonFormatter,
    job_log_context,
    scrub,
)
from recova.tenants.scope import tenant_scope
from tests.support import World, login


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    """What Recova's JSON handler writes, captured (the same filter and formatter)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    previous = logging.getLogger("recova").level
    logging.getLogger("recova").setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    logging.getLogger("recova").setLevel(previous)


def records(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line]


def test_a_well_formed_request_id_is_kept_and_echoed(client, lines: io.StringIO) -> None:
    response = client.get("/healthz", headers={REQUEST_ID_HEADER: "edge-7f3a.91_b"})
    assert response.headers[REQUEST_ID_HEADER] == "edge-7f3a.91_b"


@pytest.mark.parametrize("offered", [None, "", "a b", "x" * 129, "id;forged=1", "é"])
def test_a_missing_or_malformed_request_id_is_replaced(client, offered: str | None) -> None:
    headers = {} if offered is None else {REQUEST_ID_HEADER: offered}
    response = client.get("/healthz", headers=headers)
    echoed = response.headers[REQUEST_ID_HEADER]
    assert echoed != offered
    assert len(echoed) == 32
    assert int(echoed, 16) >= 0


def test_request_lines_carry_request_id_and_tenant_but_no_query_string(
    app: Flask, world: World, lines: io.StringIO
) -> None:
    admin = login(app, world.a.admin_email)
    admin.headers[REQUEST_ID_HEADER] = "req-123"
    query = "external_id=13812345678"
    assert admin.get(f"/api/v1/cases?{query}").status_code == 200
    mine = [r for r in records(lines) if r.get("request_id") == "req-123"]
    (line,) = [r for r in mine if r["logger"] == "recova.request"]
    assert line["level"] == "INFO"
    assert line["route"] == "/api/v1/cases"
    assert line["path"] == "/api/v1/cases"
    assert line["status"] == 200
    assert line["tenant"] == world.a.slug
    assert line["job_id"] is None
    assert "time" in line
    assert "13812345678" not in lines.getvalue()
    assert "external_id" not in lines.getvalue()


def test_job_lines_carry_job_id_and_tenant_slug(
    app: Flask, world: World, lines: io.StringIO
) -> None:
    logger = logging.getLogger("recova.test.job")
    # A job's lines name its tenant's slug once the job opens the tenant's scope.
    with app.app_context(), job_log_context("job-42", world.a.id), tenant_scope(world.a.id):
        logger.info("working")
    with app.app_context():
        refresh_days_past_due_job(tenant_id=world.a.id, as_of="2030-01-01")  # runs the wrapper
    (line,) = [r for r in records(lines) if r["message"] == "working"]
    assert line["job_id"] == "job-42"
    assert line["tenant"] == world.a.slug
    assert line["tenant_id"] == world.a.id
    assert line["request_id"] is None


def test_personal_data_never_reaches_a_line(lines: io.StringIO) -> None:
    logger = logging.getLogger("recova.test.pii")
    logger.warning(
        "debtor %s at %s / %s, mail %s, id %s",
        "Zhang San",
        "13812345678",
        "+8613812345678",
        "zhang.san@example.com",
        "11010519491231002X",
        extra={"national_id": "11010519491231002X", "phone": "13812345678", "body": "{}"},
    )
    try:
        raise ValueError("lookup failed for (415) 555-0134")
    except ValueError:
        logger.exception("failed")
    text = lines.getvalue()
    for secret in ("13812345678", "zhang.san@example.com", "11010519491231002X", "555-0134"):
        assert secret not in text
    first, second = records(lines)
    assert "national_id" not in first
    assert "phone" not in first
    assert "[phone]" in first["message"]
    assert "[national-id]" in first["message"]
    assert "[email]" in first["message"]
    assert "[phone]" in second["exc_info"]


def test_scrub_leaves_ordinary_figures_alone() -> None:
    text = "run 20260310 took 1234.5 ms for 10000 rows, request 8c5cbb554ac044f3"
    assert scrub(text) == text
