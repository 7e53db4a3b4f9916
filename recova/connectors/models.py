"""Tenant-schema tables of ingestion: mappings, HTTP sources, uploaded files, runs, row errors.

Uploaded files are kept in PostgreSQL (in 1 MiB chunks) rather than on a web pod's disk,
so whichever worker picks the run up can read them, and deleting a run's file is part of
the same transaction as everything else.
"""

from __future__ import annotations

import datetime as dt
import enum
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    Numeric,
    SmallInteger,
    String,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from recova.platform.cases.models import _enum
from recova.platform.kernel.db import TENANT_PLACEHOLDER, TenantModel, Timestamped


class FeedKind(enum.StrEnum):
    """What a run loads: accounts with their debtors, or payments and reversals."""

    PORTFOLIO = "portfolio"
    PAYMENTS = "payments"


class RunMode(enum.StrEnum):
    """Delta leaves unmentioned accounts alone; a snapshot recalls them."""

    DELTA = "delta"
    SNAPSHOT = "snapshot"


class RunStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    #: A snapshot whose rows are loaded and whose recall waits for an explicit
    #: confirmation: it would recall more of the open book than the tenant's guard allows.
    HELD = "held"


class Severity(enum.StrEnum):
    """A row error rejects its row; a warning loads it without the part it names."""

    ERROR = "error"
    WARNING = "warning"


#: A snapshot may recall at most this share of the open book, in percent, unless confirmed.
DEFAULT_RECALL_GUARD_PERCENT = Decimal("20.00")


class IngestionSettings(TenantModel):
    """The tenant's ingestion settings (one row; defaults until saved)."""

    __tablename__ = "ingestion_settings"
    __table_args__ = {"schema": TENANT_PLACEHOLDER}

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, default=1)
    #: Whether a snapshot that would recall much of the book waits for a confirmation.
    recall_guard: Mapped[bool] = mapped_column(Boolean, default=True)
    #: The share of the open book (accounts not recalled), in percent, a snapshot may
    #: recall without a confirmation.
    recall_guard_percent: Mapped[Decimal] = mapped_column(
        Numeric(5, 2), default=DEFAULT_RECALL_GUARD_PERCENT
    )
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class IngestionMapping(Timestamped, TenantModel):
    """A tenant's named mapping from its source columns to Recova fields."""

    __tablename__ = "ingestion_mappings"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[FeedKind] = mapped_column(_enum(FeedKind, "feed_kind"))
    #: Recova field -> source column name.
    columns: Mapped[dict[str, str]] = mapped_column(JSONB)
    #: day_first, phone_region, default_currency, timezone, national_id_type, extra_columns.
    options: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class HttpSource(Timestamped, TenantModel):
    """A tenant's paginated JSON endpoint; the auth header's value is stored encrypted."""

    __tablename__ = "ingestion_sources"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    connector: Mapped[str] = mapped_column(String(32), default="http")
    options: Mapped[dict[str, Any]] = mapped_column(JSONB)
    auth_header: Mapped[str | None] = mapped_column(String(64))
    auth_value_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)


class IngestionFile(Timestamped, TenantModel):
    """An uploaded file; its bytes live in ``ingestion_file_chunks``."""

    __tablename__ = "ingestion_files"

    id: Mapped[int] = mapped_column(primary_key=True)
    filename: Mapped[str] = mapped_column(String(255))
    connector: Mapped[str] = mapped_column(String(32))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))


class IngestionFileChunk(TenantModel):
    __tablename__ = "ingestion_file_chunks"

    file_id: Mapped[int] = mapped_column(
        ForeignKey(f"{TENANT_PLACEHOLDER}.ingestion_files.id", ondelete="CASCADE"),
        primary_key=True,
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class IngestionRun(Timestamped, TenantModel):
    """One load of one source through one mapping: its status, counts and checkpoint."""

    __tablename__ = "ingestion_runs"
    __table_args__ = (
        CheckConstraint(
            "(file_id IS NOT NULL) <> (source_id IS NOT NULL)", name="exactly_one_source"
        ),
        {"schema": TENANT_PLACEHOLDER},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[FeedKind] = mapped_column(_enum(FeedKind, "feed_kind"))
    connector: Mapped[str] = mapped_column(String(32))
    file_id: Mapped[int | None] = mapped_column(
        ForeignKey(f"{TENANT_PLACEHOLDER}.ingestion_files.id", ondelete="SET NULL")
    )
    source_id: Mapped[int | None] = mapped_column(
        ForeignKey(f"{TENANT_PLACEHOLDER}.ingestion_sources.id")
    )
    mapping_id: Mapped[int] = mapped_column(
        ForeignKey(f"{TENANT_PLACEHOLDER}.ingestion_mappings.id")
    )
    #: The mapping as it was when the run was started: editing a mapping never changes
    #: a run that is already under way.
    mapping_snapshot: Mapped[dict[str, Any]] = mapped_column(JSONB)
    mode: Mapped[RunMode] = mapped_column(_enum(RunMode, "run_mode"), default=RunMode.DELTA)
    all_or_nothing: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[RunStatus] = mapped_column(
        _enum(RunStatus, "run_status"), default=RunStatus.QUEUED, index=True
    )
    message: Mapped[str | None] = mapped_column(Text)
    as_of: Mapped[dt.date] = mapped_column()
    received: Mapped[int] = mapped_column(Integer, default=0)
    inserted: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    #: Rows loaded with a warning (a contact point left out), counted apart from rejections.
    warnings: Mapped[int] = mapped_column(Integer, default=0)
    recalled: Mapped[int] = mapped_column(Integer, default=0)
    #: The snapshot may recall past the tenant's guard (asked for at start, or confirmed).
    recall_confirmed: Mapped[bool] = mapped_column(Boolean, default=False)
    #: How many accounts a held snapshot would recall, and since when it waits.
    recall_held: Mapped[int | None] = mapped_column(Integer)
    held_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    total_estimate: Mapped[int | None] = mapped_column(Integer)
    #: Where a resumed run continues: the connector's token for the last committed record.
    checkpoint: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    source_info: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    requested_by: Mapped[int | None] = mapped_column(Integer)
    job_id: Mapped[str | None] = mapped_column(String(128))
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class IngestionRowError(TenantModel):
    """A rejected row, or a warning on a loaded one: where (row, column), what (the value,
    masked if personal) and why."""

    __tablename__ = "ingestion_row_errors"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    run_id: Mapped[int] = mapped_column(
        ForeignKey(f"{TENANT_PLACEHOLDER}.ingestion_runs.id", ondelete="CASCADE"), index=True
    )
    row_number: Mapped[int] = mapped_column(Integer)
    column: Mapped[str | None] = mapped_column(String(255))
    value: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    severity: Mapped[str] = mapped_column(String(8), default=Severity.ERROR.value)


class IngestionSeen(TenantModel):
    """External ids a run has read so far: catches duplicates across a file's chunks and
    tells a snapshot which accounts it did not mention. Emptied when the run completes."""

    __tablename__ = "ingestion_seen"
    run_id: Mapped[int] = mapped_column(
        ForeignKey(f"{TENANT_PLACEHOLDER}.ingestion_runs.id", ondelete="CASCADE"),
        primary_key=True,
    )
    external_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    row_number: Mapped[int] = mapped_column(Integer)
