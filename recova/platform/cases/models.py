"""Tenant-schema tables: debtors, contacts, accounts and cases.

Declared once in the ``tenant`` placeholder schema; a tenant-bound session maps them to
``tenant_<slug>``. Personal identifiers are stored encrypted with a keyed blind index
(see ``recova.platform.kernel.crypto``); only a masked form is kept in clear.
"""

from __future__ import annotations

import datetime as dt
import enum
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Enum,
    ForeignKey,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from recova.platform.kernel.db import TENANT_PLACEHOLDER, TenantModel, Timestamped

MONEY = Numeric(20, 4)  # exact; amounts are quantised to the currency's minor unit in code


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    return Enum(
        cls, name=name, schema=TENANT_PLACEHOLDER, values_callable=lambda e: [m.value for m in e]
    )


class ContactKind(enum.StrEnum):
    PHONE = "phone"
    EMAIL = "email"
    ADDRESS = "address"


class CaseStatus(enum.StrEnum):
    NEW = "new"
    PLACED = "placed"
    IN_PROGRESS = "in_progress"
    PROMISED = "promised"
    ON_PLAN = "on_plan"
    SETTLED = "settled"
    PAID = "paid"
    ON_HOLD = "on_hold"
    RECALLED = "recalled"
    CLOSED = "closed"


class Debtor(Timestamped, TenantModel):
    """A borrower, identified by the tenant's external id."""

    __tablename__ = "debtors"

    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str] = mapped_column(String(128), unique=True)
    full_name: Mapped[str] = mapped_column(String(200))
    national_id_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    national_id_index: Mapped[bytes | None] = mapped_column(LargeBinary(32), index=True)
    national_id_masked: Mapped[str | None] = mapped_column(String(32))
    region: Mapped[str | None] = mapped_column(String(64))
    timezone: Mapped[str | None] = mapped_column(String(64))
    language: Mapped[str | None] = mapped_column(String(16))
    #: The debtor asked not to be contacted at all: the compliance gate stops all outreach.
    do_not_contact: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Set when retention erased the debtor's personal data (see ``privacy.retention``).
    erased_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

    contacts: Mapped[list[Contact]] = relationship(back_populates="debtor", order_by="Contact.id")
    accounts: Mapped[list[Account]] = relationship(back_populates="debtor", order_by="Account.id")


class Contact(Timestamped, TenantModel):
    """A way to reach a debtor, or a third party the tenant registered (``relation`` set)."""

    __tablename__ = "contacts"
    __table_args__ = (
        UniqueConstraint("debtor_id", "kind", "value_index", name="uq_contacts_debtor_value"),
        {"schema": TENANT_PLACEHOLDER},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Indexed by the unique (debtor_id, kind, value_index) constraint's leading column.
    debtor_id: Mapped[int] = mapped_column(
        ForeignKey(f"{TENANT_PLACEHOLDER}.debtors.id", ondelete="CASCADE")
    )
    kind: Mapped[ContactKind] = mapped_column(_enum(ContactKind, "contact_kind"))
    relation: Mapped[str] = mapped_column(String(32), default="self")
    name: Mapped[str | None] = mapped_column(String(200))
    value_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    value_index: Mapped[bytes] = mapped_column(LargeBinary(32), index=True)
    value_masked: Mapped[str] = mapped_column(String(64))
    #: Never use this contact again (the owner asked, or the tenant says so).
    do_not_contact: Mapped[bool] = mapped_column(Boolean, default=False)
    #: False for a phone number that is possible but not valid by the ``phonenumbers``
    #: metadata (a new prefix, say): kept and dialable, but shown as unverified.
    verified: Mapped[bool] = mapped_column(Boolean, default=True)

    debtor: Mapped[Debtor] = relationship(back_populates="contacts")


class Account(Timestamped, TenantModel):
    """An overdue loan account handed over by the tenant."""

    __tablename__ = "accounts"
    __table_args__ = (
        CheckConstraint("days_past_due >= 0", name="dpd_non_negative"),
        CheckConstraint("char_length(currency) = 3", name="currency_iso"),
        {"schema": TENANT_PLACEHOLDER},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str] = mapped_column(String(128), unique=True)
    debtor_id: Mapped[int] = mapped_column(
        ForeignKey(f"{TENANT_PLACEHOLDER}.debtors.id"), index=True
    )
    product: Mapped[str | None] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(3))
    original_principal: Mapped[Decimal] = mapped_column(MONEY)
    outstanding_principal: Mapped[Decimal] = mapped_column(MONEY, default=Decimal(0))
    outstanding_interest: Mapped[Decimal] = mapped_column(MONEY, default=Decimal(0))
    outstanding_fees: Mapped[Decimal] = mapped_column(MONEY, default=Decimal(0))
    outstanding_penalties: Mapped[Decimal] = mapped_column(MONEY, default=Decimal(0))
    due_date: Mapped[dt.date] = mapped_column(Date)
    days_past_due: Mapped[int] = mapped_column(Integer, default=0)
    overdue_amount: Mapped[Decimal | None] = mapped_column(MONEY)
    #: Annual contractual rate as a fraction (0.24 for 24%).
    interest_rate: Mapped[Decimal | None] = mapped_column(Numeric(9, 6))
    #: The tenant's row minus personal data (see ``recova.connectors.fields``).
    source_row: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    #: Digest of the raw source values: an unchanged re-sent row is skipped unparsed.
    row_hash: Mapped[bytes | None] = mapped_column(LargeBinary)
    #: Keyed digest of the row's personal fields, so a changed phone counts as an update.
    profile_digest: Mapped[bytes | None] = mapped_column(LargeBinary)
    #: Set when a snapshot no longer lists the account: the tenant took it back.
    withdrawn_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    withdrawn_by_run_id: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )

    debtor: Mapped[Debtor] = relationship(back_populates="accounts")
    case: Mapped[Case | None] = relationship(back_populates="account", uselist=False)

    @property
    def outstanding_total(self) -> Decimal:
        return (
            self.outstanding_principal
            + self.outstanding_interest
            + self.outstanding_fees
            + self.outstanding_penalties
        )


#: Flags that stop placement (and, with the compliance policy, all outreach).
CASE_FLAGS = ("dispute", "bankruptcy", "deceased", "cease_contact")


class Case(Timestamped, TenantModel):
    """One collection case per account in collection."""

    __tablename__ = "cases"
    __table_args__ = (
        CheckConstraint(
            "flags <@ ARRAY['dispute', 'bankruptcy', 'deceased', 'cease_contact']::varchar[]",
            name="flags_known",
        ),
        {"schema": TENANT_PLACEHOLDER},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey(f"{TENANT_PLACEHOLDER}.accounts.id"), unique=True
    )
    debtor_id: Mapped[int] = mapped_column(
        ForeignKey(f"{TENANT_PLACEHOLDER}.debtors.id"), index=True
    )
    status: Mapped[CaseStatus] = mapped_column(
        _enum(CaseStatus, "case_status"), default=CaseStatus.NEW, index=True
    )
    notes: Mapped[str | None] = mapped_column(Text)
    #: Why a closed case left collection, e.g. ``tenant_recall``.
    close_reason: Mapped[str | None] = mapped_column(String(32))
    closed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    #: Any of ``CASE_FLAGS``; a flagged case is never placed, and is recalled if placed.
    flags: Mapped[list[str]] = mapped_column(ARRAY(String(16)), default=list)
    #: Promises to pay the debtor broke; an input of the priority score.
    broken_promises: Mapped[int] = mapped_column(Integer, default=0)

    account: Mapped[Account] = relationship(back_populates="case")
    debtor: Mapped[Debtor] = relationship()
