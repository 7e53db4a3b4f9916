"""Ingestion through the API: mappings, multipart uploads, runs on a real RQ worker, progress,
row errors as CSV, masked reads, and who may do what."""

from __future__ import annotations

import csv
import dataclasses
import io
from typing import Any

import pytest
from rq import SimpleWorker
from rq.serializers import JSONSerializer

from recova.platform.entry.app import create_app
from recova.platform.kernel.extension import platform
from recova.platform.kernel.jobs import QUEUES, job_queue
from tests.ingest_support import CN_COLUMNS, CN_HEADER, cn_row
from tests.support import Caller, World, login


def run_jobs(app) -> None:  # type: ignore[no-untyped-def]
    """Work every queued job in this process, as a worker would."""
    objects = platform(app)
    queues = [
        job_queue(objects.redis, name, prefix=objects.settings.queue_prefix) for name in QUEUES
    ]
    with app.app_context():
        SimpleWorker(queues, connection=objects.redis, serializer=JSONSerializer).work(burst=True)


def _csv(rows: list[dict[str, Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CN_HEADER)
    for row in rows:
        writer.writerow([row[c] for c in CN_HEADER])
    return buffer.getvalue().encode("gb18030")


def _load(admin: Caller, rows: list[dict[str, Any]], **run: Any) -> dict[str, Any]:
    if "cn" not in {m["name"] for m in admin.get("/api/v1/ingestion/mappings").json}:
        created = admin.post(
            "/api/v1/ingestion/mappings",
            {"name": "cn", "kind": "portfolio", "columns": CN_COLUMNS},
        )
        assert created.status_code == 201, created.json
    uploaded = admin.upload("/api/v1/ingestion/files", "portfolio.csv", _csv(rows))
    assert uploaded.status_code == 201, uploaded.json
    assert uploaded.json["connector"] == "csv"
    started = admin.post(
        "/api/v1/ingestion/runs", {"mapping": "cn", "file_id": uploaded.json["id"], **run}
    )
    assert started.status_code == 202, started.json
    assert started.json["status"] == "queued"
    return started.json


@pytest.mark.real_commits  # an ingestion run locks and reads on connections of its own
def test_upload_run_progress_and_errors(app, world: World) -> None:
    admin = login(app, world.a.admin_email)
    rows = [cn_row(n) for n in range(1, 8)] + [cn_row(8, 应还本金="=cmd|' /C calc'!A0")]
    run = _load(admin, rows)
    run_jobs(app)
    done = admin.get(f"/api/v1/ingestion/runs/{run['id']}").json
    assert done["status"] == "completed"
    assert (done["received"], done["inserted"], done["rejected"]) == (8, 7, 1)
    assert done["progress"] == {"done": 8, "total": 8}
    errors = admin.get(f"/api/v1/ingestion/runs/{run['id']}/errors")
    assert errors.status_code == 200
    assert errors.mimetype == "text/csv"
    lines = list(csv.reader(io.StringIO(errors.get_data(as_text=True))))
    assert lines[0] == ["row", "column", "value", "reason", "severity"]
    assert lines[1][:2] == ["9", "应还本金"]
    assert lines[1][4] == "error"
    assert lines[1][2].startswith("'=")  # never a live formula in a spreadsheet
    listed = admin.get("/api/v1/ingestion/runs?status=completed").json
    assert run["id"] in [r["id"] for r in listed]


@pytest.mark.real_commits  # an ingestion run locks and reads on connections of its own
def test_reads_are_masked_and_filtered(app, world: World) -> None:
    admin = login(app, world.a.admin_email)
    _load(admin, [cn_row(n, 逾期天数=str(10 * n)) for n in range(1, 6)])
    run_jobs(app)
    found = admin.get("/api/v1/accounts?external_id=LN000002").json
    assert [a["days_past_due"] for a in found] == [20]
    assert found[0]["case_status"] == "new"
    late = admin.get("/api/v1/accounts?dpd_min=30&dpd_max=40").json
    assert sorted(a["external_id"] for a in late) == ["LN000003", "LN000004"]
    cases = admin.get("/api/v1/cases?dpd_min=50").json
    assert [c["account"]["external_id"] for c in cases] == ["LN000005"]
    debtor_id = found[0]["debtor"]["id"]
    debtor = admin.get(f"/api/v1/debtors/{debtor_id}").json
    body = str(debtor)
    row = cn_row(2)
    assert row["身份证号"] not in body
    assert row["手机号"] not in body
    assert debtor["national_id"].count("*") == 8
    phones = {c["relation"]: c["value"] for c in debtor["contacts"]}
    assert phones == {"self": "+86138****0002", "配偶": "+86139****0002"}


def test_who_may_ingest(app, world: World) -> None:
    analyst = login(app, world.a.analyst_email)
    assert analyst.get("/api/v1/ingestion/runs").status_code == 200
    refused = analyst.upload("/api/v1/ingestion/files", "p.csv", _csv([cn_row(1)]))
    assert refused.status_code == 403
    for email in (world.manager_email, world.collector_email):
        staff = login(app, email)
        assert staff.get(f"/api/v1/tenants/{world.a.slug}/debtors").status_code == 403
        assert staff.get(f"/api/v1/tenants/{world.a.slug}/ingestion/runs").status_code == 403


def test_bad_requests_say_what_is_wrong(app, world: World) -> None:
    admin = login(app, world.a.admin_email)
    unknown = admin.post(
        "/api/v1/ingestion/mappings",
        {"name": "bad", "kind": "portfolio", "columns": {"loan": "x"}},
    )
    assert unknown.status_code == 422
    assert "columns.loan" in unknown.json["errors"]["json"]
    missing = admin.post(
        "/api/v1/ingestion/mappings",
        {"name": "bad", "kind": "portfolio", "columns": {"account_external_id": "id"}},
    )
    assert missing.status_code == 422
    assert "required" in str(missing.json)
    no_mapping = admin.post("/api/v1/ingestion/runs", {"mapping": "nope", "file_id": 1})
    assert no_mapping.status_code == 422
    odd = admin.upload("/api/v1/ingestion/files", "portfolio.pdf", b"%PDF-1.7")
    assert odd.status_code == 422
    assert "cannot tell the format" in odd.json["message"]
    secretless = admin.post(
        "/api/v1/ingestion/sources",
        {"name": "pull", "options": {"url": "ftp://lender.test/"}},
    )
    assert secretless.status_code == 422


@pytest.mark.real_commits  # an ingestion run locks and reads on connections of its own
def test_uploads_over_the_limit_are_refused(app, world: World) -> None:
    settings = platform(app).settings
    small = create_app(dataclasses.replace(settings, max_upload_bytes=2048))
    small.config["TESTING"] = True
    try:
        admin = login(small, world.a.admin_email)
        content = _csv([cn_row(n) for n in range(1, 200)])  # about 30 KiB
        assert 2048 < len(content) < 64 * 1024
        response = admin.upload("/api/v1/ingestion/files", "p.csv", content * 4)
        assert response.status_code == 413
        under_form_limit = admin.upload("/api/v1/ingestion/files", "p.csv", content)
        assert under_form_limit.status_code == 422
        assert "larger than the limit" in under_form_limit.json["message"]
    finally:
        platform(small).db.dispose()


def test_sources_never_show_their_secret(app, world: World) -> None:
    admin = login(app, world.a.admin_email)
    created = admin.post(
        "/api/v1/ingestion/sources",
        {
            "name": "lender-api",
            "options": {"url": "https://lender.test/loans", "pagination": "page"},
            "auth_header": "Authorization",
            "auth_value": "Bearer top-secret-value",
        },
    )
    assert created.status_code == 201, created.json
    listed = admin.get("/api/v1/ingestion/sources")
    assert "top-secret-value" not in created.get_data(as_text=True)
    assert "top-secret-value" not in listed.get_data(as_text=True)


@pytest.mark.parametrize("kind", ["portfolio", "payments"])
def test_field_lists(app, world: World, kind: str) -> None:
    admin = login(app, world.a.admin_email)
    fields = admin.get(f"/api/v1/ingestion/fields?kind={kind}").json
    required = {f["name"] for f in fields if f["required"]}
    assert "account_external_id" in required
