"""Mappings, uploaded files, HTTP sources and ingestion runs: what the API and CLI call.

Uploaded files hold personal data in clear, so their bytes are stored encrypted
(AES-256-GCM per 1 MiB chunk, the chunk's place authenticated) and deleted once the run
that read them has finished; the file's name, size and SHA-256 stay for the record.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, cast

from sqlalchemy import select
from sqlalchemy.orm import Session

from recova.connectors import registry
from recova.connectors.fields import MappingError, validate_mapping
from recova.connectors.files import FILE_CHUNK_BYTES, chunk_context
from recova.connectors.jobs import ingest_run_job
from recova.connectors.models import (
    FeedKind,
    HttpSource,
    IngestionFile,
    IngestionFileChunk,
    IngestionMapping,
    IngestionRowError,
    IngestionRun,
    RunMode,
    RunStatus,
    Severity,
)
from recova.connectors.pipeline import (
    progress_key,
)
from recova.connectors.runner import execute_ingestion
from recova.platform.audit import record_event
from recova.platform.auth.principal import Principal
from recova.platform.kernel.errors import DomainError
from recova.platform.kernel.extension import Platform
from recova.platform.kernel.safe_csv import formula_safe_writer
from recova.tenants.models import Tenant, tenant_today
from recova.tenants.scope import tenant_scope

log = logging.getLogger(__name__)

FILE_CONNECTORS = {".csv": "csv", ".txt": "csv", ".tsv": "csv", ".xlsx": "xlsx"}
FILE_CONNECTORS |= {".jsonl": "jsonl", ".ndjson": "jsonl"}


class IngestionError(DomainError, ValueError):
    """A request the ingestion services refuse; ``field`` names the culprit (422)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    @property
    def error_message(self) -> str:
        return self.message

    @property
    def error_details(self) -> dict[str, Any] | None:
        return {"json": {self.field: [self.message]}}


class IngestionConflict(IngestionError):
    """A run that cannot be resumed or confirmed in the state it is in (409, no details)."""

    status = 409

    @property
    def error_details(self) -> dict[str, Any] | None:
        return None


# --- mappings -----------------------------------------------------------------------------


def save_mapping(
    session: Session,
    *,
    name: str,
    kind: FeedKind,
    columns: dict[str, str],
    options: dict[str, Any] | None = None,
    mapping: IngestionMapping | None = None,
) -> IngestionMapping:
    """Create a mapping, or replace an existing one's columns and options."""
    options = options or {}
    try:
        validate_mapping(kind, columns, options)
    except MappingError as error:
        raise IngestionError(f"columns.{error.field}", error.message) from None
    if mapping is None:
        mapping = IngestionMapping(name=name, kind=kind, columns=columns, options=options)
        session.add(mapping)
    else:
        if mapping.kind is not kind:
            raise IngestionError("kind", "a mapping's kind cannot change")
        mapping.columns = columns
        mapping.options = options
    session.flush()  # the caller returns the id
    return mapping


def mapping_by_name(session: Session, name: str) -> IngestionMapping | None:
    return session.scalar(select(IngestionMapping).where(IngestionMapping.name == name))


# --- files and sources --------------------------------------------------------------------


def connector_for_filename(filename: str) -> str:
    """The file connector a file's extension calls for."""
    suffix = Path(filename).suffix.lower()
    if suffix not in FILE_CONNECTORS:
        known = ", ".join(sorted(FILE_CONNECTORS))
        raise IngestionError("file", f"cannot tell the format of {filename!r}; use {known}")
    return FILE_CONNECTORS[suffix]


def store_file(
    session: Session,
    objects: Platform,
    *,
    filename: str,
    stream: IO[bytes],
    connector: str | None = None,
) -> IngestionFile:
    """Store an upload, encrypted in chunks; refuses one over ``RECOVA_MAX_UPLOAD_BYTES``."""
    connector = connector or connector_for_filename(filename)
    if connector not in registry.available_connectors():
        raise IngestionError("connector", f"no connector named {connector!r}")
    limit = objects.settings.max_upload_bytes
    record = IngestionFile(filename=filename[:255], connector=connector, size_bytes=0, sha256="")
    session.add(record)
    session.flush()  # chunks need the file id
    digest = hashlib.sha256()
    size = 0
    seq = 0
    while block := stream.read(FILE_CHUNK_BYTES):
        size += len(block)
        if size > limit:
            raise IngestionError(
                "file", f"the file is larger than the limit of {limit // (1024 * 1024)} MiB"
            )
        digest.update(block)
        session.add(
            IngestionFileChunk(
                file_id=record.id,
                seq=seq,
                data=objects.cipher.encrypt_bytes(block, context=chunk_context(record.id, seq)),
            )
        )
        seq += 1
        if seq % 16 == 0:
            session.flush()  # keep at most 16 MiB of chunks in memory
    record.size_bytes = size
    record.sha256 = digest.hexdigest()
    session.flush()
    return record


def register_source(
    session: Session,
    objects: Platform,
    *,
    name: str,
    options: dict[str, Any],
    auth_header: str | None = None,
    auth_value: str | None = None,
) -> HttpSource:
    """Register a tenant's paginated HTTP endpoint; the auth value is stored encrypted."""
    url = str(options.get("url", ""))
    if not url.startswith(("https://", "http://")):
        raise IngestionError("options.url", "must be an http or https URL")
    if (auth_header is None) != (auth_value is None):
        raise IngestionError("auth_header", "give both the header name and its value, or neither")
    forbidden = {"auth_header", "auth_value", "allow_private_hosts"} & set(options)
    if forbidden:
        raise IngestionError(f"options.{sorted(forbidden)[0]}", "not allowed in options")
    source = HttpSource(name=name, connector="http", options=options, auth_header=auth_header)
    if auth_value is not None:
        source.auth_value_ciphertext = objects.cipher.encrypt(
            auth_value, context="ingestion_source.auth"
        )
    session.add(source)
    session.flush()  # the caller returns the id
    return source


# --- runs ---------------------------------------------------------------------------------


def start_run(
    session: Session,
    objects: Platform,
    *,
    tenant: Tenant,
    mapping: IngestionMapping,
    file: IngestionFile | None = None,
    source: HttpSource | None = None,
    mode: RunMode = RunMode.DELTA,
    all_or_nothing: bool = False,
    as_of: dt.date | None = None,
    requested_by: int | None = None,
    enqueue: bool = True,
    confirm_recall: bool = False,
) -> IngestionRun:
    """Record a run and (after commit) queue its job on the ``ingest`` queue.

    ``confirm_recall`` lets a snapshot recall past the tenant's recall guard.
    """
    if (file is None) == (source is None):
        raise IngestionError("file_id", "give exactly one of a file or a source")
    if mode is RunMode.SNAPSHOT and mapping.kind is FeedKind.PAYMENTS:
        raise IngestionError("mode", "payment feeds are always delta")
    if confirm_recall and mode is not RunMode.SNAPSHOT:
        raise IngestionError("confirm_recall", "only a snapshot recalls accounts")
    if file is not None and file.size_bytes and not _has_bytes(session, file.id):
        raise IngestionError("file_id", "this file was already loaded and its bytes deleted")
    run = IngestionRun(
        kind=mapping.kind,
        connector=file.connector if file is not None else source.connector,  # type: ignore[union-attr]
        file_id=file.id if file is not None else None,
        source_id=source.id if source is not None else None,
        mapping_id=mapping.id,
        mapping_snapshot={"columns": mapping.columns, "options": mapping.options},
        mode=mode,
        all_or_nothing=all_or_nothing,
        status=RunStatus.QUEUED,
        as_of=as_of or tenant_today(tenant.timezone),
        requested_by=requested_by,
        received=0,
        inserted=0,
        updated=0,
        unchanged=0,
        rejected=0,
        warnings=0,
        recalled=0,
        recall_confirmed=confirm_recall,
        attempts=0,
        source_info={},
    )
    session.add(run)
    session.flush()  # the job and the caller need the id
    if enqueue:
        _enqueue(session, objects, tenant, run)
    return run


def resume_run(session: Session, objects: Platform, *, tenant: Tenant, run: IngestionRun) -> None:
    """Queue a failed or interrupted run again; it continues from its checkpoint."""
    if run.status is RunStatus.COMPLETED:
        raise IngestionConflict("run", "the run is already complete")
    if run.status is RunStatus.HELD:
        raise IngestionConflict(
            "run", "the run is held for a recall confirmation: confirm it, or send a new snapshot"
        )
    if run.file_id is not None and not _has_bytes(session, run.file_id):
        raise IngestionConflict(
            "run", "the run's file is gone; upload it again and start a new run"
        )
    run.status = RunStatus.QUEUED
    run.finished_at = None
    _enqueue(session, objects, tenant, run)


def confirm_recall(
    session: Session,
    objects: Platform,
    *,
    tenant: Tenant,
    run: IngestionRun,
    actor: Principal | None = None,
) -> None:
    """Let a held snapshot recall what it did not mention; its job finishes the run. The
    confirmation is an audit event of ``actor``'s (none without one).

    Refused once a later portfolio run has completed: what the tenant sent since would
    be recalled on the word of an older file.
    """
    if run.status is not RunStatus.HELD:
        raise IngestionConflict("run", f"the run is {run.status.value}, not held for a recall")
    later = session.scalar(
        select(IngestionRun.id)
        .where(
            IngestionRun.kind == FeedKind.PORTFOLIO,
            IngestionRun.id > run.id,
            IngestionRun.status.in_([RunStatus.COMPLETED, RunStatus.HELD]),
        )
        .limit(1)
    )
    if later is not None:
        raise IngestionConflict(
            "run",
            f"portfolio run {later} finished after this one; send the complete file as a"
            " new snapshot instead",
        )
    run.recall_confirmed = True
    run.status = RunStatus.QUEUED
    run.message = "recall confirmed; it runs next"
    _enqueue(session, objects, tenant, run)
    if actor is None:
        return
    record_event(
        session,
        action="ingestion.recall_confirmed",
        actor=actor,
        subject=("ingestion_run", run.id),
        data={"recall_held": run.recall_held},
    )


def _has_bytes(session: Session, file_id: int) -> bool:
    """Whether a stored file still has its bytes (a run deletes them when it finishes)."""
    return (
        session.scalar(
            select(IngestionFileChunk.seq).where(IngestionFileChunk.file_id == file_id).limit(1)
        )
        is not None
    )


def _enqueue(session: Session, objects: Platform, tenant: Tenant, run: IngestionRun) -> None:
    run.job_id = ingest_run_job.enqueue_after_commit(
        session,
        objects,
        job_id=f"ingest-{tenant.id}-{run.id}-{run.attempts}",
        tenant_id=tenant.id,
        run_id=run.id,
    )


def run_progress(objects: Platform, tenant: Tenant, run: IngestionRun) -> dict[str, int | None]:
    """Rows done of the estimated total: live from Redis while the run works."""
    done: int = run.received
    total = run.total_estimate
    if run.status is RunStatus.RUNNING:
        key = progress_key(objects.settings.queue_prefix, tenant.id, run.id)
        # A synchronous client: redis-py's stubs type replies for both clients at once.
        live = cast("dict[bytes, bytes]", objects.redis.hgetall(key))
        if live:
            done = max(done, int(live.get(b"done", 0)))
            total = int(live[b"total"]) if b"total" in live else total
    if run.status is RunStatus.COMPLETED:
        total = run.received
    return {"done": done, "total": total}


def export_row_errors(
    session: Session, run: IngestionRun, *, actor: Principal, severity: Severity | None = None
) -> Iterator[str]:
    """``row_errors_csv`` for ``actor``, the export recorded in the audit chain first (the
    rows hold masked personal data)."""
    record_event(
        session,
        action="export.row_errors",
        actor=actor,
        subject=("ingestion_run", run.id),
        data={"rejected": run.rejected, "warnings": run.warnings},
    )
    return row_errors_csv(session, run, severity=severity)


def row_errors_csv(
    session: Session, run: IngestionRun, *, severity: Severity | None = None
) -> Iterator[str]:
    """The run's rejected rows and warnings as CSV: row, column, value (masked if
    personal), reason and severity (``error``: the row was rejected; ``warning``: it
    loaded without what the reason names); only one severity if given."""
    buffer = io.StringIO()
    writer = formula_safe_writer(buffer)  # values come from the tenant's file
    writer.writerow(["row", "column", "value", "reason", "severity"])
    statement = (
        select(
            IngestionRowError.row_number,
            IngestionRowError.column,
            IngestionRowError.value,
            IngestionRowError.reason,
            IngestionRowError.severity,
        )
        .where(IngestionRowError.run_id == run.id)
        .order_by(IngestionRowError.row_number, IngestionRowError.id)
        .execution_options(yield_per=2000)
    )
    if severity is not None:
        statement = statement.where(IngestionRowError.severity == severity.value)
    for row in session.execute(statement):
        writer.writerow(row)
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


__all__ = [
    "IngestionError",
    "confirm_recall",
    "mapping_by_name",
    "register_source",
    "resume_run",
    "row_errors_csv",
    "run_progress",
    "save_mapping",
    "start_run",
    "store_file",
]


def ingest_local_file(
    objects: Platform,
    *,
    tenant_slug: str,
    path: Path,
    mapping_name: str,
    mode: RunMode = RunMode.DELTA,
    all_or_nothing: bool = False,
    connector: str | None = None,
    as_of: dt.date | None = None,
    background: bool = False,
    confirm_recall: bool = False,
) -> tuple[str, int]:
    """Store a local file and run it (here, or on a worker when ``background``).

    Returns the tenant's slug and the run id; read the run for its outcome.
    """
    if not path.is_file():
        raise IngestionError("file", f"no such file: {path}")
    if path.stat().st_size > objects.settings.max_upload_bytes:
        limit = objects.settings.max_upload_bytes // (1024 * 1024)
        raise IngestionError("file", f"the file is larger than the limit of {limit} MiB")
    with tenant_scope(tenant_slug, db=objects.db) as session:
        tenant = session.info["tenant"]
        mapping = mapping_by_name(session, mapping_name)
        if mapping is None:
            names = session.scalars(select(IngestionMapping.name).order_by(IngestionMapping.name))
            known = ", ".join(names) or "none yet; create one through the API"
            raise IngestionError("mapping", f"no mapping {mapping_name!r} (known: {known})")
        with path.open("rb") as stream:
            stored = store_file(
                session, objects, filename=path.name, stream=stream, connector=connector
            )
        run = start_run(
            session,
            objects,
            tenant=tenant,
            mapping=mapping,
            file=stored,
            mode=mode,
            all_or_nothing=all_or_nothing,
            as_of=as_of,
            enqueue=background,
            confirm_recall=confirm_recall,
        )
        tenant_id, run_id = tenant.id, run.id
    if not background:
        execute_ingestion(objects, tenant_id=tenant_id, run_id=run_id)
    return tenant_slug, run_id
