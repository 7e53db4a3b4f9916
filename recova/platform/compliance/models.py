"""Tenant-schema tables of the compliance policy: its versions and validation notices.

A policy version is never edited: saving a policy adds a version effective from a moment,
so a past attempt is replayed under the version (and the rule pack version) of its day.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Integer, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from recova.platform.kernel.db import TENANT_PLACEHOLDER, TenantModel, Timestamped

T = TENANT_PLACEHOLDER


class PolicyVersion(Timestamped, TenantModel):
    """The tenant's rule pack and its tightenings, in force from ``effective_from``."""

    __tablename__ = "compliance_policies"
    __table_args__ = (
        CheckConstraint("pack IN ('CN', 'US')", name="pack_known"),
        {"schema": T},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    pack: Mapped[str] = mapped_column(String(8))
    #: Only tightenings of the pack, by rule name (validated when saved).
    overrides: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    effective_from: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    created_by: Mapped[int | None] = mapped_column(Integer)


class ValidationNotice(Timestamped, TenantModel):
    """When a case's validation notice (Regulation F) was sent, and how."""

    __tablename__ = "validation_notices"
    __table_args__ = (
        CheckConstraint("channel IN ('letter', 'email', 'sms')", name="channel_known"),
        {"schema": T},
    )

    case_id: Mapped[int] = mapped_column(ForeignKey(f"{T}.cases.id"), primary_key=True)
    sent_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    channel: Mapped[str] = mapped_column(String(16))
    recorded_by: Mapped[int | None] = mapped_column(Integer)
