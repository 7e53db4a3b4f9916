"""Looking at a file before it is loaded: its columns, its first rows as they would be
stored, how many accounts a snapshot of it would recall, and a source's first page.

Nothing here writes to the tenant's tables. The first rows go through the pipeline's
own ``ChunkParser`` and the feed's reader (``fields``), so a row the preview calls bad is
a row the run rejects, for the same reason; only the unchanged-row shortcut is left out
(every row is parsed, as if new), so the preview shows what each row would become.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from recova.connectors import registry
from recova.connectors.base import Connector, Record, Source, SourceError
from recova.connectors.excel import workbook_options
from recova.connectors.fields import (
    MappingError,
    PaymentReader,
    PortfolioReader,
    RowReader,
    TenantDefaults,
    validate_mapping,
)
from recova.connectors.files import chunk_context, spool_file
from recova.connectors.models import (
    FeedKind,
    HttpSource,
    IngestionFile,
    IngestionFileChunk,
    IngestionSettings,
    RunMode,
)
from recova.connectors.pipeline import ACCOUNT_COLUMNS, PAYMENT_COLUMNS, ChunkParser, RunPlan
from recova.connectors.services import IngestionError, connector_for_filename
from recova.platform.cases.models import Account
from recova.platform.kernel.extension import Platform
from recova.tenants.models import Tenant

#: How many rows the preview shows.
PREVIEW_ROWS = 20
#: Sample values shown per column.
SAMPLES_PER_COLUMN = 3
#: Keys looked up per query when counting what a snapshot would recall.
KEY_BATCH = 5000

#: What the preview shows of an account row (the rest is ciphertext and digests).
ACCOUNT_SHOWN = (
    "external_id",
    "debtor_external_id",
    "full_name",
    "nid_masked",
    "region",
    "language",
    "product",
    "currency",
    "original_principal",
    "outstanding_principal",
    "outstanding_interest",
    "outstanding_fees",
    "outstanding_penalties",
    "overdue_amount",
    "interest_rate",
    "due_date",
    "days_past_due",
)
PAYMENT_SHOWN = (
    "external_id",
    "account_external_id",
    "kind",
    "amount",
    "currency",
    "paid_at",
    "channel",
    "paid_to",
    "reverses_external_id",
)


@dataclass
class FileHead:
    """A file's columns (in file order), a few values of each, and its first records."""

    columns: list[str]
    samples: dict[str, list[str]]
    records: list[Record]
    info: dict[str, Any]


@dataclass
class PreviewRow:
    """One row as it would be stored, or why it would not be."""

    number: int
    #: "ok", "warning" (loads without what the messages name) or "error" (rejected).
    outcome: str
    values: dict[str, Any] = field(default_factory=dict)
    #: Masked contact points the row would keep ("phone +86 138****5678").
    contacts: list[tuple[str, str]] = field(default_factory=list)
    #: (column, value as reported, reason).
    messages: list[tuple[str | None, str | None, str]] = field(default_factory=list)


@dataclass(frozen=True)
class RecallEstimate:
    """What a snapshot of a file would recall: accounts it does not mention, of the book."""

    would_recall: int
    open_accounts: int
    #: The tenant's recall guard would hold the run for a confirmation (``pipeline``).
    over_guard: bool

    @property
    def share(self) -> Decimal:
        if not self.open_accounts:
            return Decimal(0)
        return Decimal(self.would_recall) / Decimal(self.open_accounts)


def file_source_options(objects: Platform) -> dict[str, Any]:
    """The options a run gives a file connector: the same limits for a preview."""
    return {"max_bytes": objects.settings.max_upload_bytes, **workbook_options(objects.settings)}


def _private_temp_file() -> Path:
    descriptor, name = tempfile.mkstemp(prefix="recova-preview-")
    os.close(descriptor)  # mkstemp makes it 0600: only this user reads the plaintext
    return Path(name)


#: Chunks (1 MiB each) of a text file decrypted to read its head: its first rows are in
#: them, and a preview of a large file does not decrypt all of it. A workbook is a zip
#: archive, readable only whole.
HEAD_CHUNKS = 4
_TEXT_CONNECTORS = ("csv", "jsonl")


def _spool_head(session: Session, objects: Platform, file: IngestionFile, path: Path) -> None:
    statement = (
        select(IngestionFileChunk.seq, IngestionFileChunk.data)
        .where(IngestionFileChunk.file_id == file.id, IngestionFileChunk.seq < HEAD_CHUNKS)
        .order_by(IngestionFileChunk.seq)
    )
    with path.open("wb") as out:
        for seq, data in session.execute(statement):
            out.write(objects.cipher.decrypt_bytes(data, context=chunk_context(file.id, seq)))


@contextlib.contextmanager
def stored_file_source(
    session: Session, objects: Platform, file: IngestionFile, *, head_only: bool = False
) -> Iterator[tuple[Connector, Source]]:
    """A stored upload decrypted into a private temporary file, deleted afterwards;
    ``head_only``: only its first chunks, when its format can be read that way."""
    path = _private_temp_file()
    try:
        if head_only and file.connector in _TEXT_CONNECTORS:
            _spool_head(session, objects, file, path)
        else:
            spool_file(session, objects.cipher, file, path)
        yield (
            registry.get_connector(file.connector),
            Source(path=path, options=file_source_options(objects)),
        )
    finally:
        path.unlink(missing_ok=True)


def file_has_bytes(session: Session, file_id: int) -> bool:
    """Whether a stored upload still has its contents (a run deletes them when done)."""
    found = select(IngestionFileChunk.seq).where(IngestionFileChunk.file_id == file_id)
    return session.scalar(found.limit(1)) is not None


def read_head(connector: Connector, source: Source, *, rows: int = PREVIEW_ROWS) -> FileHead:
    """The first ``rows`` records of a source, its columns and sample values; raises
    ``SourceError`` when the source cannot be read at all."""
    records = list(itertools.islice(connector.records(source), rows))
    columns: list[str] = []
    samples: dict[str, list[str]] = {}
    for record in records:
        for column, value in record.values.items():
            if column not in samples:
                columns.append(column)
                samples[column] = []
            text = "" if value is None else str(value).strip()
            if text and len(samples[column]) < SAMPLES_PER_COLUMN:
                samples[column].append(text[:60])
    return FileHead(columns=columns, samples=samples, records=records, info=dict(source.info))


def check_upload(
    objects: Platform, *, filename: str, stream: IO[bytes], connector: str | None = None
) -> tuple[Path, str]:
    """Copy an upload into a private temporary file and read its head with the
    connector; returns the file (the caller deletes it) and the connector's name.

    Refuses (``IngestionError`` on ``file``) a file over the upload limit, of an unknown
    format, or one its connector cannot read (not text, an encoding it cannot decode, a
    workbook over the zip limits, a header and no rows): nothing is stored then.
    """
    name = connector or connector_for_filename(filename)
    if name not in registry.available_connectors():
        raise IngestionError("connector", f"no connector named {name!r}")
    limit = objects.settings.max_upload_bytes
    path = _private_temp_file()
    try:
        size = 0
        with path.open("wb") as out:
            while block := stream.read(1024 * 1024):
                size += len(block)
                if size > limit:
                    raise IngestionError(
                        "file",
                        f"the file is larger than the limit of {limit // (1024 * 1024)} MiB",
                    )
                out.write(block)
        source = Source(path=path, options=file_source_options(objects))
        try:
            head = read_head(registry.get_connector(name), source, rows=PREVIEW_ROWS)
        except SourceError as error:
            raise IngestionError("file", str(error)) from None
        if not head.records:
            raise IngestionError("file", "the file has no rows")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path, name


def tenant_defaults(tenant: Tenant) -> TenantDefaults:
    return TenantDefaults(
        jurisdiction=tenant.jurisdiction.value, currency=tenant.currency, timezone=tenant.timezone
    )


def mapping_problem(
    kind: FeedKind, columns: Mapping[str, str], options: Mapping[str, Any]
) -> MappingError | None:
    """Why the mapping cannot work, or ``None``."""
    try:
        validate_mapping(kind, columns, options)
    except MappingError as error:
        return error
    return None


def row_reader(
    objects: Platform,
    tenant: Tenant,
    *,
    kind: FeedKind,
    columns: Mapping[str, str],
    options: Mapping[str, Any],
    as_of: dt.date,
) -> RowReader:
    """The reader a run of this mapping would use (the mapping must be valid)."""
    defaults = tenant_defaults(tenant)
    if kind is FeedKind.PORTFOLIO:
        return PortfolioReader(columns, options, defaults, cipher=objects.cipher, as_of=as_of)
    return PaymentReader(columns, options, defaults)


def preview_rows(
    objects: Platform,
    tenant: Tenant,
    *,
    kind: FeedKind,
    columns: Mapping[str, str],
    options: Mapping[str, Any],
    as_of: dt.date,
    records: list[Record],
) -> list[PreviewRow]:
    """Each record as the run would store it, with its error or warnings; writes nothing."""
    reader = row_reader(objects, tenant, kind=kind, columns=columns, options=options, as_of=as_of)
    plan = RunPlan(
        tenant_id=tenant.id,
        schema=tenant.schema_name,
        run_id=0,
        kind=kind,
        mode=RunMode.DELTA,
        all_or_nothing=False,
        as_of=as_of,
        columns=dict(columns),
        options=dict(options),
        defaults=tenant_defaults(tenant),
        checkpoint=None,
    )
    chunk = ChunkParser(plan, reader, lambda keys: {}).parse(records)
    rows = {record.number: PreviewRow(number=record.number, outcome="ok") for record in records}
    order = ACCOUNT_COLUMNS if kind is FeedKind.PORTFOLIO else PAYMENT_COLUMNS
    names = [name.strip() for name in order.split(",")]
    shown = ACCOUNT_SHOWN if kind is FeedKind.PORTFOLIO else PAYMENT_SHOWN
    for stored in chunk.rows:
        values = dict(zip(names, stored, strict=False))
        rows[values["row_number"]].values = {name: values.get(name) for name in shown}
    for contact in chunk.contacts:
        number, _debtor, contact_kind, relation, _name, _ct, _idx, masked, _verified = contact
        label = contact_kind if relation == "self" else f"{contact_kind} ({relation})"
        rows[number].contacts.append((label, masked))
    for number, column, value, reason in chunk.warnings:
        rows[number].outcome = "warning"
        rows[number].messages.append((column, value, reason))
    for number, column, value, reason in chunk.errors:
        rows[number].outcome = "error"
        rows[number].values = {}
        rows[number].messages.append((column, value, reason))
    return [rows[record.number] for record in records]


def _mentioned_keys(reader: RowReader, records: Iterable[Record]) -> set[str]:
    """The external ids a snapshot would mention: every row whose key reads cleanly,
    rejected or not (the pipeline never recalls an account whose row it received)."""
    keys: set[str] = set()
    for record in records:
        key = reader.mentioned_key(record.values)
        if key is not None:
            keys.add(key)
    return keys


def estimate_recall(
    session: Session,
    reader: RowReader,
    connector: Connector,
    source: Source,
) -> RecallEstimate:
    """How many open accounts a snapshot of the whole source would recall, and whether
    the tenant's recall guard would hold it (the rule of ``ChunkWriter._guard_recall``:
    more than the guard's share of the open book, unless the guard is off)."""
    keys = sorted(_mentioned_keys(reader, connector.records(source)))
    open_book = select(func.count()).select_from(Account).where(Account.withdrawn_at.is_(None))
    book = session.scalar(open_book) or 0
    mentioned = 0
    for start in range(0, len(keys), KEY_BATCH):
        batch = keys[start : start + KEY_BATCH]
        mentioned += session.scalar(open_book.where(Account.external_id.in_(batch))) or 0
    would = book - mentioned
    guard = session.get(IngestionSettings, 1) or IngestionSettings(
        recall_guard=True, recall_guard_percent=Decimal("20.00")
    )
    over = bool(
        guard.recall_guard and would and would * 100 > Decimal(guard.recall_guard_percent) * book
    )
    return RecallEstimate(would_recall=would, open_accounts=book, over_guard=over)


def source_test_options(
    objects: Platform, source: HttpSource, *, allow_private_hosts: bool
) -> dict[str, Any]:
    """A source's options as a run sends them (auth decrypted), with quick failure: one
    try and at most 10 seconds per request, for a person waiting on the page."""
    options = dict(source.options)
    if source.auth_header and source.auth_value_ciphertext:
        options["auth_header"] = source.auth_header
        options["auth_value"] = objects.cipher.decrypt(
            source.auth_value_ciphertext, context="ingestion_source.auth"
        )
    options["allow_private_hosts"] = allow_private_hosts
    options["max_retries"] = 0
    timeout = options.get("timeout", 10)
    options["timeout"] = min(timeout, 10) if isinstance(timeout, int | float) else 10
    return options


def fetch_source_head(objects: Platform, source: HttpSource, *, rows: int = 5) -> FileHead:
    """Fetch the first records of a source through its connector (``SourceError`` if it
    cannot be read); the source's page size bounds what is fetched."""
    options = source_test_options(
        objects, source, allow_private_hosts=objects.settings.http_sources_allow_private
    )
    connector = registry.get_connector(source.connector)
    return read_head(connector, Source(options=options), rows=rows)
