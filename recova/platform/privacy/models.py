"""The tenant's privacy settings (one row; defaults until saved)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, DateTime, ForeignKey, Integer, SmallInteger, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from recova.platform.kernel.db import TENANT_PLACEHOLDER, TenantModel

#: Three years after a case closes: Regulation F's record-keeping period, the longest of
#: the packs Recova ships. A tenant may shorten it (never below 30 days) or lengthen it.
DEFAULT_RETENTION_DAYS = 1095
DEFAULT_REVEALS_PER_HOUR = 20


class PrivacySettings(TenantModel):
    __tablename__ = "privacy_settings"
    __table_args__ = {"schema": TENANT_PLACEHOLDER}

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, default=1)
    #: Days after the last of a debtor's cases closed before their personal data is erased.
    retention_days: Mapped[int] = mapped_column(Integer, default=DEFAULT_RETENTION_DAYS)
    #: Reveals of unmasked personal data one user may make per hour in this tenant.
    reveals_per_hour: Mapped[int] = mapped_column(Integer, default=DEFAULT_REVEALS_PER_HOUR)
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class PersonalDataReveal(TenantModel):
    """One reveal: who saw which identifier of which debtor, when, and why.

    The reason is free text a person typed, so it may name people; it lives here, where
    retention can erase it, and the audit chain holds only a keyed digest of it (which
    still proves, to anyone given the text, what reason was stated).
    """

    __tablename__ = "personal_data_reveals"
    __table_args__ = {"schema": TENANT_PLACEHOLDER}

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    debtor_id: Mapped[int] = mapped_column(
        ForeignKey(f"{TENANT_PLACEHOLDER}.debtors.id"), index=True
    )
    field: Mapped[str] = mapped_column(String(16))
    contact_id: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(Text)
    revealed_by: Mapped[str] = mapped_column(String(128))
    revealed_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
