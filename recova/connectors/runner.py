"""Executing one ingestion run to its end: the body of the ingest job.

A run is resumable and idempotent: a finished run is left alone, two workers never
execute one run at once, and an error either fails the run with its reason (what it
loaded stays) or hands it back to the job's retry, which resumes from its checkpoint.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import psycopg
from rq import get_current_job
from sqlalchemy import delete, text
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.orm import Session

from recova.connectors import registry
from recova.connectors.base import Source
from recova.connectors.excel import workbook_options
from recova.connectors.fields import TenantDefaults
from recova.connectors.files import spool_file
from recova.connectors.models import (
    FeedKind,
    HttpSource,
    IngestionFile,
    IngestionFileChunk,
    IngestionRun,
    RunStatus,
)
from recova.connectors.pipeline import (
    Counts,
    Progress,
    RunOutcome,
    RunPlan,
    execute_run,
    finish_confirmed_run,
    progress_key,
)
from recova.connectors.settings import current_settings
from recova.platform.kernel.crypto import PersonalDataCipher
from recova.platform.kernel.db import utcnow
from recova.platform.kernel.extension import Platform
from recova.platform.kernel.metrics import record_ingested_rows
from recova.platform.webhooks.events import emit_event
from recova.platform.work.jobs import evaluate_payments_job, payments_job_id
from recova.tenants.models import Tenant
from recova.tenants.scope import tenant_scope

log = logging.getLogger(__name__)


class RunBusy(RuntimeError):
    """Another worker is executing this run right now."""


def execute_ingestion(objects: Platform, *, tenant_id: int, run_id: int) -> str:
    """Run (or resume) one ingestion run to its end; the body of the ingest job.

    Idempotent: a finished run is left alone, and two workers never execute one run at
    once (a session-level advisory lock on its id).
    """
    engine = objects.db.engine
    with engine.connect() as lock_connection:
        key = (tenant_id << 32) | run_id
        # Wait a little: a worker killed a moment ago holds the lock until PostgreSQL
        # notices its connection is gone. Still busy after that, another worker really
        # is running it; the job fails and RQ retries it later, when it finds the run done.
        lock_connection.execute(text("SET LOCAL lock_timeout = '30s'"))
        try:
            lock_connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
        except OperationalError as error:
            raise RunBusy(f"ingestion run {run_id} is being executed by another worker") from error
        lock_connection.commit()
        try:
            return _execute_locked(objects, tenant_id=tenant_id, run_id=run_id)
        finally:
            lock_connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            lock_connection.commit()


def _execute_locked(objects: Platform, *, tenant_id: int, run_id: int) -> str:
    spooled: Path | None = None
    try:
        with tenant_scope(tenant_id, db=objects.db) as session:
            tenant = session.info["tenant"]
            run = session.get(IngestionRun, run_id)
            if run is None:
                return "no such run"
            if run.status in (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.HELD):
                return run.status.value
            run.status = RunStatus.RUNNING
            run.attempts += 1
            run.started_at = run.started_at or utcnow()
            run.message = None
            plan = _plan_of(session, tenant, run)
            if run.held_at is not None:
                # A held snapshot, confirmed: its rows are in; only the recall is left
                # (after this commit, which releases the run's row for the finish).
                source_info = dict(run.source_info)
            else:
                connector, source, progress, spooled = _open_source(session, objects, tenant, run)
        if plan.held_at is not None:
            return _finish_confirmed(objects, plan, source_info)
        outcome = _execute(objects, plan, connector, source, progress)
        if outcome.unexpected:
            return "failed"  # the file stays, for a resume once the cause is fixed
        if plan.kind is FeedKind.PAYMENTS:
            _evaluate_payments_after(objects, tenant_id=plan.tenant_id, run_id=plan.run_id)
        if run.file_id is not None:
            with tenant_scope(tenant_id, db=objects.db) as session:
                session.execute(
                    delete(IngestionFileChunk).where(IngestionFileChunk.file_id == run.file_id)
                )
        if outcome.held:
            return "held"
        return "failed" if outcome.failed else "completed"
    finally:
        if spooled is not None:
            spooled.unlink(missing_ok=True)


def _open_source(
    session: Session, objects: Platform, tenant: Tenant, run: IngestionRun
) -> tuple[Any, Source, Progress, Path | None]:
    """The run's connector, its source (an upload decrypted into a private temporary
    file, which the caller deletes), and its progress reporter."""
    connector = registry.get_connector(run.connector)
    source = Source()
    spooled: Path | None = None
    if run.file_id is not None:
        file = session.get(IngestionFile, run.file_id)
        assert file is not None  # the FK only nulls when the file row is deleted
        spooled = _private_temp_file()
        try:
            spool_file(session, objects.cipher, file, spooled)
        except BaseException:
            spooled.unlink(missing_ok=True)
            raise
        source.path = spooled
        source.options = {
            "max_bytes": objects.settings.max_upload_bytes,
            **workbook_options(objects.settings),
        }
    else:
        source.options = _http_options(
            session,
            objects.cipher,
            run.source_id,
            allow_private_hosts=objects.settings.http_sources_allow_private,
        )
    if run.total_estimate is None:
        run.total_estimate = connector.estimate_total(source)
    progress = Progress(
        objects.redis,
        progress_key(objects.settings.queue_prefix, tenant.id, run.id),
        run.total_estimate,
        base=0 if run.all_or_nothing else run.received,
    )
    return connector, source, progress, spooled


def _plan_of(session: Session, tenant: Tenant, run: IngestionRun) -> RunPlan:
    """What the pipeline needs to know of a run, its tenant and the tenant's settings."""
    guard = current_settings(session)
    return RunPlan(
        tenant_id=tenant.id,
        schema=tenant.schema_name,
        run_id=run.id,
        kind=run.kind,
        mode=run.mode,
        all_or_nothing=run.all_or_nothing,
        as_of=run.as_of,
        columns=dict(run.mapping_snapshot["columns"]),
        options=dict(run.mapping_snapshot["options"]),
        defaults=TenantDefaults(
            jurisdiction=tenant.jurisdiction.value,
            currency=tenant.currency,
            timezone=tenant.timezone,
        ),
        checkpoint=None if run.all_or_nothing else run.checkpoint,
        recall_guard=guard.recall_guard,
        recall_guard_percent=guard.recall_guard_percent,
        recall_confirmed=run.recall_confirmed,
        held_at=run.held_at,
        resumable=run.source_id is not None,
    )


def _evaluate_payments_after(objects: Platform, *, tenant_id: int, run_id: int) -> None:
    """Hand the run's accounts to case work: promises, plans and settlements are judged
    by the payments the run recorded. The run has committed by now (its chunks and its
    finish); the job goes through the outbox, so Redis being away at this moment loses
    nothing and never fails the run (the relay hands it over later)."""
    with tenant_scope(tenant_id, db=objects.db) as session:
        evaluate_payments_job.enqueue_after_commit(
            session,
            objects,
            job_id=payments_job_id(tenant_id, run_id),
            tenant_id=tenant_id,
            run_id=run_id,
        )


def _execute(
    objects: Platform, plan: RunPlan, connector: Any, source: Source, progress: Progress
) -> RunOutcome:
    def count_committed(counts: Counts) -> None:
        _record_metrics(objects, plan.kind, counts)

    try:
        outcome = execute_run(
            db=objects.db,
            plan=plan,
            connector=connector,
            source=source,
            cipher=objects.cipher,
            progress=progress,
            # An all-or-nothing run commits once, at the end: count it then.
            on_chunk=None if plan.all_or_nothing else count_committed,
        )
    except Exception as error:
        return _interrupted(objects, plan, error)
    if plan.all_or_nothing and not outcome.failed:
        _record_metrics(objects, plan.kind, outcome.counts)
    return outcome


def _finish_confirmed(objects: Platform, plan: RunPlan, source_info: dict[str, Any]) -> str:
    try:
        finish_confirmed_run(db=objects.db, plan=plan, source_info=source_info)
    except Exception as error:
        _interrupted(objects, plan, error)
        return "failed"
    return "completed"


#: Errors a retry cannot cure: the data, or the code, is at fault, not the moment.
_PERMANENT = (DataError, psycopg.DataError, psycopg.ProgrammingError, ValueError, TypeError)


def _interrupted(objects: Platform, plan: RunPlan, error: Exception) -> RunOutcome:
    """Record why a run stopped on an exception, and re-raise it when a retry may help.

    A run is never left ``queued`` with nothing to run it: on an error a retry cannot
    cure, or on the job's last attempt (or outside a worker, where nothing retries),
    it fails with a message naming the error, keeping what it committed and its file
    for a resume once the cause is fixed.
    """
    final = isinstance(error, _PERMANENT) or _last_attempt()
    with tenant_scope(plan.tenant_id, db=objects.db) as session:
        run = session.get(IngestionRun, plan.run_id)
        if run is not None and run.status is RunStatus.RUNNING:
            if final:
                log.exception("ingestion run %s failed", plan.run_id)
                run.status = RunStatus.FAILED
                run.finished_at = utcnow()
                run.message = (
                    f"the run stopped on an unexpected error ({type(error).__name__}); what"
                    " it had loaded stays, and it can be resumed once the cause is fixed"
                )
                emit_event(
                    session,
                    "ingestion.run.failed",
                    {
                        "run_id": run.id,
                        "kind": run.kind.value,
                        "mode": run.mode.value,
                        "status": RunStatus.FAILED.value,
                        "received": run.received,
                        "inserted": run.inserted,
                        "updated": run.updated,
                        "unchanged": run.unchanged,
                        "rejected": run.rejected,
                        "recalled": run.recalled,
                    },
                )
            else:
                # The job's retry (or a resume) continues it from its checkpoint.
                run.status = RunStatus.QUEUED
                run.message = f"interrupted ({type(error).__name__}); it resumes on retry"
    if final:
        return RunOutcome(Counts(), failed=type(error).__name__, unexpected=True)
    raise error


def _last_attempt() -> bool:
    """Whether no retry of the current job will follow (or there is no job at all)."""

    job = get_current_job()
    return job is None or not job.retries_left


def _record_metrics(objects: Platform, kind: FeedKind, counts: Counts) -> None:
    for name in ("inserted", "updated", "unchanged", "rejected"):
        record_ingested_rows(kind.value, name, getattr(counts, name), objects=objects)


def _http_options(
    session: Session,
    cipher: PersonalDataCipher,
    source_id: int | None,
    *,
    allow_private_hosts: bool,
) -> dict[str, Any]:
    source = session.get(HttpSource, source_id)
    assert source is not None  # runs reference sources by foreign key
    options = dict(source.options)
    if source.auth_header and source.auth_value_ciphertext:
        options["auth_header"] = source.auth_header
        options["auth_value"] = cipher.decrypt(
            source.auth_value_ciphertext, context="ingestion_source.auth"
        )
    options["allow_private_hosts"] = allow_private_hosts
    return options


def _private_temp_file() -> Path:
    descriptor, name = tempfile.mkstemp(prefix="recova-ingest-")
    os.close(descriptor)  # mkstemp makes it 0600: only this user reads the plaintext
    return Path(name)
