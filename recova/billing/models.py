"""Tenant-schema tables of billing: contract versions, the commission ledger, invoices and
agency statements.

The ledger and issued invoices are protected by the database itself (migration
``0005``): a commission line can never be updated or deleted; no line may be added to a
period whose invoice is issued or paid; an issued invoice may only become paid or void,
and a paid or void one never changes; a statement changes only while its invoice is a
draft.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from recova.platform.cases.models import MONEY
from recova.platform.kernel.db import TENANT_PLACEHOLDER, TenantModel, Timestamped

T = TENANT_PLACEHOLDER
PERCENT = Numeric(9, 6)
#: Unrounded commission: exact products of amounts, rates and tier factors.
EXACT = Numeric()

INVOICE_STATUSES = ("draft", "issued", "paid", "void")


class ContractVersion(Timestamped, TenantModel):
    """One effective-dated version of the tenant's contract with the platform, per currency.

    A payment is charged under the version of its currency in force on its date (the
    latest ``effective_from`` on or before it). Versions are never edited: a change is a
    new version.
    """

    __tablename__ = "billing_contract_versions"
    __table_args__ = (
        UniqueConstraint("currency", "version", name="uq_billing_contract_versions_version"),
        UniqueConstraint(
            "currency", "effective_from", name="uq_billing_contract_versions_effective_from"
        ),
        CheckConstraint(
            "rounding IN ('half_even', 'half_up', 'half_down', 'up', 'down', 'ceiling', 'floor')",
            name="rounding_known",
        ),
        CheckConstraint("minimum_fee IS NULL OR minimum_fee >= 0", name="minimum_fee_positive"),
        CheckConstraint("case_cap IS NULL OR case_cap >= 0", name="case_cap_positive"),
        CheckConstraint("vat_rate IS NULL OR vat_rate BETWEEN 0 AND 100", name="vat_percent"),
        {"schema": T},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    currency: Mapped[str] = mapped_column(String(3))
    version: Mapped[int] = mapped_column(Integer)
    effective_from: Mapped[dt.date] = mapped_column(Date)
    #: Percent of the money by the case's bucket at placement: ``{"M1": "8", "*": "25"}``.
    rates: Mapped[dict[str, str]] = mapped_column(JSONB)
    #: Marginal monthly volume tiers ``[{"from": "0", "to": "100000", "factor": "1"}, ...]``:
    #: each slice of a month's money is charged at its bucket rate times its tier's factor.
    tiers: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB(none_as_null=True))
    minimum_fee: Mapped[Decimal | None] = mapped_column(MONEY)
    case_cap: Mapped[Decimal | None] = mapped_column(MONEY)
    vat_rate: Mapped[Decimal | None] = mapped_column(PERCENT)
    rounding: Mapped[str] = mapped_column(String(16), default="half_even")
    #: Whether money the tenant recovered itself (the case with no agency) carries commission.
    unplaced_commission: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[int | None] = mapped_column(Integer)


class CommissionLine(Timestamped, TenantModel):
    """One line per payment row: a commission for a payment, a clawback for a reversal.

    Signed: a clawback's base, commission and shares are negative. Ids are given by the
    close in event order (never by a sequence), so a close that was killed and run again
    writes the very lines an uninterrupted close would have.
    """

    __tablename__ = "commission_lines"
    __table_args__ = (
        # One line per payment or reversal: nothing is ever billed twice.
        UniqueConstraint("payment_id", name="uq_commission_lines_payment_id"),
        CheckConstraint("kind IN ('commission', 'clawback')", name="kind_known"),
        CheckConstraint(
            "(kind = 'clawback') = (original_line_id IS NOT NULL)", name="clawback_has_original"
        ),
        CheckConstraint("agency_share + platform_net = commission", name="shares_add_up"),
        CheckConstraint("extract(day FROM period) = 1", name="period_is_a_month"),
        # Lines are appended month by month: a block-range index finds a month's lines
        # and costs next to nothing to keep up while a million are written.
        Index("ix_commission_lines_period", "period", postgresql_using="brin"),
        Index(
            "ix_commission_lines_original_line_id",
            "original_line_id",
            postgresql_where=text("original_line_id IS NOT NULL"),
        ),
        {"schema": T},
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(10))
    #: No foreign keys: only the close writes lines, from existing payments, lines and
    #: versions, under the billing lock; a per-row referential check would dominate
    #: writing a million lines (the allocation tables make the same choice).
    payment_id: Mapped[int] = mapped_column(Integer)
    original_line_id: Mapped[int | None] = mapped_column(BigInteger)
    #: The invoice month the line belongs to (first day).
    period: Mapped[dt.date] = mapped_column(Date)
    #: The payment's date on the tenant's calendar.
    event_on: Mapped[dt.date] = mapped_column(Date)
    currency: Mapped[str] = mapped_column(String(3))
    case_id: Mapped[int | None] = mapped_column(Integer)
    placement_id: Mapped[int | None] = mapped_column(Integer)
    agency_id: Mapped[int | None] = mapped_column(Integer)
    agency_contract_id: Mapped[int | None] = mapped_column(Integer)
    bucket: Mapped[str | None] = mapped_column(String(16))
    contract_version_id: Mapped[int] = mapped_column(Integer)
    paid_to: Mapped[str] = mapped_column(String(8))
    base_amount: Mapped[Decimal] = mapped_column(MONEY)
    #: The bucket's rate in percent (0 when the money carries no commission).
    rate: Mapped[Decimal] = mapped_column(PERCENT)
    #: The month's commissionable volume before this payment (tier position); null when
    #: the money carries no commission, and on clawbacks.
    volume_before: Mapped[Decimal | None] = mapped_column(MONEY)
    commission_exact: Mapped[Decimal] = mapped_column(EXACT)
    commission: Mapped[Decimal] = mapped_column(MONEY)
    agency_share: Mapped[Decimal] = mapped_column(MONEY)
    platform_net: Mapped[Decimal] = mapped_column(MONEY)


class Invoice(Timestamped, TenantModel):
    """A month's invoice in one currency: the lines of its period up to ``last_line_id``."""

    __tablename__ = "invoices"
    __table_args__ = (
        UniqueConstraint("number", name="uq_invoices_number"),
        Index(
            "uq_invoices_period_currency_live",
            "period",
            "currency",
            unique=True,
            postgresql_where=text("status <> 'void'"),
        ),
        CheckConstraint("status IN ('draft', 'issued', 'paid', 'void')", name="status_known"),
        CheckConstraint("(status = 'void') = (void_reason IS NOT NULL)", name="void_has_reason"),
        {"schema": T},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Sequential per tenant with no gap (``invoice_counter``), given when the draft is made.
    number: Mapped[int] = mapped_column(Integer)
    period: Mapped[dt.date] = mapped_column(Date)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(8), default="draft")
    contract_version_id: Mapped[int | None] = mapped_column(Integer)
    rounding: Mapped[str] = mapped_column(String(16))
    last_line_id: Mapped[int] = mapped_column(BigInteger)
    line_count: Mapped[int] = mapped_column(Integer)
    base_total: Mapped[Decimal] = mapped_column(MONEY)
    commission_total: Mapped[Decimal] = mapped_column(MONEY)
    #: Clawbacks of lines already on an earlier invoice (negative), inside commission_total.
    credits: Mapped[Decimal] = mapped_column(MONEY)
    minimum_fee: Mapped[Decimal | None] = mapped_column(MONEY)
    top_up: Mapped[Decimal] = mapped_column(MONEY)
    vat_rate: Mapped[Decimal | None] = mapped_column(PERCENT)
    vat: Mapped[Decimal] = mapped_column(MONEY)
    total: Mapped[Decimal] = mapped_column(MONEY)
    agency_total: Mapped[Decimal] = mapped_column(MONEY)
    platform_total: Mapped[Decimal] = mapped_column(MONEY)
    #: ``{"by_bucket": [...], "by_agency": [...]}``, amounts as strings.
    summary: Mapped[dict[str, Any]] = mapped_column(JSONB)
    closed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    issued_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    paid_on: Mapped[dt.date | None] = mapped_column(Date)
    voided_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    void_reason: Mapped[str | None] = mapped_column(Text)


class InvoiceCounter(TenantModel):
    """The tenant's last invoice number; taken under a row lock in the numbering transaction."""

    __tablename__ = "invoice_counter"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"), {"schema": T})

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, default=1)
    last_number: Mapped[int] = mapped_column(Integer, default=0)


class AgencyStatement(TenantModel):
    """An agency's share of one invoice: what the platform owes it for that month."""

    __tablename__ = "agency_statements"
    __table_args__ = (
        UniqueConstraint("invoice_id", "agency_id", name="uq_agency_statements_invoice_agency"),
        Index("ix_agency_statements_agency_id", "agency_id"),
        {"schema": T},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey(f"{T}.invoices.id"))
    agency_id: Mapped[int] = mapped_column(Integer)
    period: Mapped[dt.date] = mapped_column(Date)
    currency: Mapped[str] = mapped_column(String(3))
    line_count: Mapped[int] = mapped_column(Integer)
    base_total: Mapped[Decimal] = mapped_column(MONEY)
    commission_total: Mapped[Decimal] = mapped_column(MONEY)
    agency_total: Mapped[Decimal] = mapped_column(MONEY)
    #: ``[{"bucket": "M1", "lines": 3, "base": "...", "commission": "...", "share": "..."}]``
    by_bucket: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
