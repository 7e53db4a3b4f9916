"""Tenant-schema audit tables: the chained events, and the heads exported for safekeeping."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Date, DateTime, Index, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from recova.platform.kernel.db import TENANT_PLACEHOLDER, TenantModel


class AuditEvent(TenantModel):
    """One link of the chain. The database refuses UPDATE, DELETE and TRUNCATE on it.

    ``seq`` is gap-free from 1: it is the event's index, assigned under the table lock
    that serialises appends, and verification reports breaks by it.
    """

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_subject", "subject_type", "subject_id"),
        # The portal browses newest first by actor, and turns a date range into a seq range.
        Index("ix_audit_events_actor_seq", "actor", "seq"),
        Index("ix_audit_events_occurred_at", "occurred_at"),
        {"schema": TENANT_PLACEHOLDER},
    )

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    occurred_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    #: ``user:<id>``, ``client:<id>`` or a system label such as ``job:retention``.
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64), index=True)
    subject_type: Mapped[str] = mapped_column(String(32), default="")
    subject_id: Mapped[str] = mapped_column(String(64), default="")
    #: Canonical JSON (see ``chain.canonical_json``): the exact text that was hashed.
    data: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class AuditHeadExport(TenantModel):
    """The chain head as of one day, exported so the tenant can keep it outside Recova."""

    __tablename__ = "audit_head_exports"
    __table_args__ = {"schema": TENANT_PLACEHOLDER}

    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    head_seq: Mapped[int] = mapped_column(BigInteger)
    head_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    exported_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
