"""Crash safety and pulls: a worker killed with SIGKILL mid-run, and a tenant's paginated
HTTP endpoint that fails, returns a malformed page, and is resumed."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from sqlalchemy import select
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from recova.connectors.models import HttpSource, IngestionRun, RunStatus
from recova.connectors.runner import execute_ingestion
from recova.connectors.services import (
    ingest_local_file,
    mapping_by_name,
    register_source,
    resume_run,
    start_run,
)
from recova.platform.entry.app import create_app
from recova.platform.kernel.config import Settings
from recova.platform.kernel.extension import platform
from recova.tenants.migrate import migrate_shared
from recova.tenants.scope import tenant_scope
from tests.ingest_support import (
    add_mapping,
    cn_row,
    ingest,
    load_run,
    new_tenant,
    stored_state,
    write_csv,
)

ROWS = 60_000  # twelve chunks: the worker is killed after the first commits


def _run_of(objects, slug: str) -> IngestionRun:  # type: ignore[no-untyped-def]
    with tenant_scope(slug, db=objects.db) as session:
        run = session.scalars(select(IngestionRun).order_by(IngestionRun.id.desc())).first()
        assert run is not None
        session.expunge(run)
        return run


def _worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "recova.platform.entry.cli",
            "worker",
            "--burst",
            "--queues",
            "ingest",
        ],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_gives_the_uninterrupted_state(cli_env, tmp_path):
    app = create_app(Settings.from_env(cli_env))
    objects = platform(app)
    try:
        migrate_shared(objects.db.engine)
        killed, calm = new_tenant(app), new_tenant(app)
        for slug in (killed, calm):
            add_mapping(objects, slug)
        path = write_csv(tmp_path / "big.csv", [cn_row(n) for n in range(1, ROWS + 1)])
        ingest(objects, calm, path)  # the reference: one uninterrupted run

        ingest_local_file(
            objects, tenant_slug=killed, path=path, mapping_name="portfolio", background=True
        )
        worker = _worker(cli_env)
        deadline = time.monotonic() + 180
        while _run_of(objects, killed).received == 0:
            assert time.monotonic() < deadline, "the worker never committed a chunk"
            assert worker.poll() is None, "the worker stopped before the first chunk"
            time.sleep(0.02)
        # As a node failure would: the worker and its work horse (RQ runs each job in a
        # forked child of its own session) die at once.
        horses = psutil.Process(worker.pid).children(recursive=True)
        for process in [psutil.Process(worker.pid), *horses]:
            process.send_signal(signal.SIGKILL)
        worker.wait()
        psutil.wait_procs(horses, timeout=10)
        interrupted = _run_of(objects, killed)
        assert interrupted.status is RunStatus.RUNNING  # never shown as complete
        assert 0 < interrupted.received < ROWS, "killed too late to test anything"

        with tenant_scope(killed, db=objects.db) as session:
            run = session.get(IngestionRun, interrupted.id)
            assert run is not None
            resume_run(session, objects, tenant=session.info["tenant"], run=run)
        assert _worker(cli_env).wait(timeout=600) == 0
        resumed = _run_of(objects, killed)
        assert resumed.status is RunStatus.COMPLETED, resumed.message
        assert resumed.attempts == 2
        assert (resumed.received, resumed.inserted, resumed.rejected) == (ROWS, ROWS, 0)
        assert stored_state(objects, killed) == stored_state(objects, calm)
    finally:
        objects.db.dispose()


# --- HTTP pulls -----------------------------------------------------------------------------


class LenderApi:
    """A tenant's paginated endpoint: 3 pages of 4 loans, with failures on demand."""

    def __init__(self) -> None:
        self.loans = [
            {
                "loan_id": f"H-{n}",
                "name": f"Borrower {n}",
                "principal": f"{100 * n}.00",
                "dpd": str(n),
            }
            for n in range(1, 13)
        ]
        self.fail_once: set[int] = set()
        self.malformed: set[int] = set()
        self.requests: list[tuple[int, str | None]] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        page = int(request.args.get("page", "1"))
        self.requests.append((page, request.headers.get("Authorization")))
        if page in self.fail_once:
            self.fail_once.discard(page)
            return Response("upstream hiccup", status=500)(environ, start_response)
        if page in self.malformed:
            return Response("{not json", mimetype="application/json")(environ, start_response)
        body = {"data": self.loans[(page - 1) * 4 : page * 4]}
        return Response(json.dumps(body), mimetype="application/json")(environ, start_response)


@pytest.fixture
def lender() -> Iterator[tuple[LenderApi, str]]:
    api = LenderApi()
    server = make_server("127.0.0.1", 0, api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api, f"http://127.0.0.1:{server.server_port}/loans"
    finally:
        server.shutdown()
        thread.join()


def _pull(app, url: str) -> tuple[Any, str, int]:  # type: ignore[no-untyped-def]
    """A tenant with an HTTP source; returns the platform (private hosts allowed) and ids."""
    base = platform(app)
    objects = dataclasses.replace(
        base, settings=dataclasses.replace(base.settings, http_sources_allow_private=True)
    )
    slug = new_tenant(app)
    add_mapping(
        objects,
        slug,
        columns={
            "account_external_id": "loan_id",
            "full_name": "name",
            "outstanding_principal": "principal",
            "days_past_due": "dpd",
        },
    )
    with tenant_scope(slug, db=objects.db) as session:
        source = register_source(
            session,
            objects,
            name="lender",
            options={
                "url": url,
                "records_path": "data",
                "page_size": 4,
                "backoff_seconds": 0.01,
            },
            auth_header="Authorization",
            auth_value="Bearer s3cret",
        )
        mapping = mapping_by_name(session, "portfolio")
        assert mapping is not None
        run = start_run(
            session,
            objects,
            tenant=session.info["tenant"],
            mapping=mapping,
            source=source,
            enqueue=False,
        )
        run_id = run.id
    return objects, slug, run_id


def _execute(objects, slug: str, run_id: int) -> IngestionRun:  # type: ignore[no-untyped-def]
    with tenant_scope(slug, db=objects.db) as session:
        tenant_id = session.info["tenant"].id
    execute_ingestion(objects, tenant_id=tenant_id, run_id=run_id)
    return load_run(objects, slug, run_id)


def test_http_pull_pages_through_and_retries_a_500(app, lender) -> None:
    api, url = lender
    api.fail_once = {2}
    objects, slug, run_id = _pull(app, url)
    run = _execute(objects, slug, run_id)
    assert run.status is RunStatus.COMPLETED, run.message
    assert (run.received, run.inserted) == (12, 12)
    assert [page for page, _ in api.requests] == [1, 2, 2, 3, 4]
    assert {auth for _, auth in api.requests} == {"Bearer s3cret"}
    with tenant_scope(slug, db=objects.db) as session:
        stored = session.scalar(select(HttpSource))
        assert stored is not None
        assert b"s3cret" not in (stored.auth_value_ciphertext or b"")


def test_http_malformed_page_fails_then_resumes_from_the_last_good_page(app, lender) -> None:
    api, url = lender
    api.malformed = {3}
    objects, slug, run_id = _pull(app, url)
    failed = _execute(objects, slug, run_id)
    assert failed.status is RunStatus.FAILED
    assert "page 3" in (failed.message or "")
    assert (failed.received, failed.inserted) == (8, 8)  # pages 1 and 2 were kept
    api.malformed.clear()
    api.requests.clear()
    with tenant_scope(slug, db=objects.db) as session:
        run = session.get(IngestionRun, run_id)
        assert run is not None
        resume_run(session, objects, tenant=session.info["tenant"], run=run)
    resumed = _execute(objects, slug, run_id)
    assert resumed.status is RunStatus.COMPLETED, resumed.message
    assert (resumed.received, resumed.inserted) == (12, 12)
    assert api.requests[0][0] == 2  # refetched the last good page, not page 1
    accounts = stored_state(objects, slug)["accounts"]
    assert sorted(a[0] for a in accounts) == sorted(f"H-{n}" for n in range(1, 13))


def test_private_hosts_are_refused_unless_the_platform_allows_them(app, lender) -> None:
    _, url = lender
    objects, slug, run_id = _pull(app, url)
    strict = dataclasses.replace(
        objects, settings=dataclasses.replace(objects.settings, http_sources_allow_private=False)
    )
    run = _execute(strict, slug, run_id)
    assert run.status is RunStatus.FAILED
    assert run.received == 0
    assert "s3cret" not in (run.message or "")


def test_a_finished_run_is_left_alone(app, tmp_path: Path) -> None:
    objects = platform(app)
    slug = new_tenant(app)
    add_mapping(objects, slug)
    run = ingest(objects, slug, write_csv(tmp_path / "p.csv", [cn_row(1)]))
    before = stored_state(objects, slug)
    again = _execute(objects, slug, run.id)
    assert again.attempts == run.attempts == 1
    assert stored_state(objects, slug) == before
