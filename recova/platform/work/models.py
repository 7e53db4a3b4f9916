"""Tables of case work: transitions and holds, promises, plans, settlements, disputes.

All tenant tables, in the ``tenant`` placeholder schema. Amounts are ``MONEY`` with the
account's currency beside them. Who acted is kept as a label (``user:12``, ``client:3``,
``job:promise-evaluation``), never a name or an e-mail: the rows outlive the people.
"""

from __future__ import annotations

import datetime as dt
import enum
from decimal import Decimal

from sqlalchemy import (
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
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from recova.platform.cases.models import MONEY, CaseStatus, _enum
from recova.platform.kernel.db import TENANT_PLACEHOLDER, TenantModel, Timestamped

T = TENANT_PLACEHOLDER
#: A discount in percent of the balance, e.g. ``30.00``.
PERCENT = Numeric(5, 2)


class WorkSettings(TenantModel):
    """The tenant's one row of case-work settings (defaults until saved)."""

    __tablename__ = "work_settings"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"), {"schema": T})

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, default=1)
    #: Days after a promise's date that payments still count before it is judged.
    promise_grace_days: Mapped[int] = mapped_column(Integer, default=3)
    #: Days after an instalment's due date before it counts as missed.
    plan_grace_days: Mapped[int] = mapped_column(Integer, default=5)
    #: Missed instalments that break a plan.
    plan_max_misses: Mapped[int] = mapped_column(Integer, default=2)
    #: How far past its original due date one instalment may be deferred.
    max_deferral_days: Mapped[int] = mapped_column(Integer, default=30)
    #: Deferrals allowed over one plan's life.
    max_deferrals: Mapped[int] = mapped_column(Integer, default=2)
    #: Longest a settlement offer may stay open, in days.
    settlement_max_days: Mapped[int] = mapped_column(Integer, default=30)
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class HoldReason(enum.StrEnum):
    DISPUTE = "dispute"
    LEGAL = "legal"


class CaseTransition(TenantModel):
    """One lifecycle transition of a case, made through ``lifecycle.transition``."""

    __tablename__ = "case_transitions"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey(f"{T}.cases.id"), index=True)
    from_status: Mapped[CaseStatus] = mapped_column(_enum(CaseStatus, "case_status"))
    to_status: Mapped[CaseStatus] = mapped_column(_enum(CaseStatus, "case_status"))
    reason: Mapped[str | None] = mapped_column(String(200))
    actor: Mapped[str] = mapped_column(String(64))
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class CaseHold(TenantModel):
    """A case on hold: why, and the state it held from (where it returns when released)."""

    __tablename__ = "case_holds"
    __table_args__ = (
        Index(
            "uq_case_holds_one_open_per_case",
            "case_id",
            unique=True,
            postgresql_where=text("released_at IS NULL"),
        ),
        {"schema": T},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey(f"{T}.cases.id"))
    reason: Mapped[HoldReason] = mapped_column(_enum(HoldReason, "hold_reason"))
    held_from: Mapped[CaseStatus] = mapped_column(_enum(CaseStatus, "case_status"))
    started_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    released_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class PromiseStatus(enum.StrEnum):
    PENDING = "pending"
    KEPT = "kept"
    PARTLY_KEPT = "partly_kept"
    BROKEN = "broken"
    #: Closed unjudged: a payment plan agreed on the case replaced it (``plans.create_plan``).
    SUPERSEDED = "superseded"


class Promise(Timestamped, TenantModel):
    """A debtor's promise to pay ``amount`` by ``due_date``; payments from its day count."""

    __tablename__ = "promises"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        Index(
            "uq_promises_one_pending_per_case",
            "case_id",
            unique=True,
            postgresql_where=text("status = 'pending'"),
        ),
        {"schema": T},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey(f"{T}.cases.id"), index=True)
    amount: Mapped[Decimal] = mapped_column(MONEY)
    currency: Mapped[str] = mapped_column(String(3))
    due_date: Mapped[dt.date] = mapped_column(Date)
    status: Mapped[PromiseStatus] = mapped_column(
        _enum(PromiseStatus, "promise_status"), default=PromiseStatus.PENDING
    )
    #: Net of reversals, counted from ``created_at``'s day to the end of the grace period.
    paid_amount: Mapped[Decimal] = mapped_column(MONEY, default=Decimal(0))
    created_by: Mapped[str] = mapped_column(String(64))
    #: When it was judged, or superseded by a plan.
    evaluated_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class PlanStatus(enum.StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"
    BROKEN = "broken"


class InstalmentStatus(enum.StrEnum):
    OPEN = "open"
    PAID = "paid"
    MISSED = "missed"


class PaymentPlan(Timestamped, TenantModel):
    """An instalment schedule agreed with the debtor; payments from its day count."""

    __tablename__ = "payment_plans"
    __table_args__ = (
        Index(
            "uq_payment_plans_one_active_per_case",
            "case_id",
            unique=True,
            postgresql_where=text("status = 'active'"),
        ),
        {"schema": T},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey(f"{T}.cases.id"), index=True)
    currency: Mapped[str] = mapped_column(String(3))
    total_amount: Mapped[Decimal] = mapped_column(MONEY)
    #: The account's outstanding total when the plan was agreed: a completed plan that
    #: covered it leaves the case paid.
    balance_at_creation: Mapped[Decimal] = mapped_column(MONEY)
    status: Mapped[PlanStatus] = mapped_column(
        _enum(PlanStatus, "plan_status"), default=PlanStatus.ACTIVE
    )
    paid_amount: Mapped[Decimal] = mapped_column(MONEY, default=Decimal(0))
    misses: Mapped[int] = mapped_column(Integer, default=0)
    deferrals: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[str] = mapped_column(String(64))
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

    instalments: Mapped[list[Instalment]] = relationship(
        back_populates="plan", order_by="Instalment.seq"
    )


class Instalment(TenantModel):
    """One due payment of a plan; ``paid_amount`` is its share of the plan's payments."""

    __tablename__ = "plan_instalments"
    __table_args__ = (
        UniqueConstraint("plan_id", "seq", name="uq_plan_instalments_plan_seq"),
        CheckConstraint("amount > 0", name="amount_positive"),
        {"schema": T},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey(f"{T}.payment_plans.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    due_date: Mapped[dt.date] = mapped_column(Date)
    #: The date first agreed; deferral limits are measured from it.
    original_due_date: Mapped[dt.date] = mapped_column(Date)
    amount: Mapped[Decimal] = mapped_column(MONEY)
    paid_amount: Mapped[Decimal] = mapped_column(MONEY, default=Decimal(0))
    status: Mapped[InstalmentStatus] = mapped_column(
        _enum(InstalmentStatus, "instalment_status"), default=InstalmentStatus.OPEN
    )

    plan: Mapped[PaymentPlan] = relationship(back_populates="instalments")


class SettlementStatus(enum.StrEnum):
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    PAID = "paid"


class ApprovalLevel(enum.StrEnum):
    """Who may approve a discount: each level approves what the ones below may, and more."""

    COLLECTOR = "collector"
    MANAGER = "manager"
    TENANT = "tenant"


class Settlement(Timestamped, TenantModel):
    """A discounted full-and-final offer: ``amount`` for ``balance``, until ``expires_on``."""

    __tablename__ = "settlements"
    __table_args__ = (
        CheckConstraint("amount > 0 AND amount <= balance", name="amount_within_balance"),
        Index(
            "uq_settlements_one_open_per_case",
            "case_id",
            unique=True,
            postgresql_where=text("status IN ('pending_approval', 'approved')"),
        ),
        # An agency's recent offers, for its workspace's approvals (tenant migration 0017).
        Index("ix_settlements_agency_created", "agency_id", "created_at"),
        {"schema": T},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey(f"{T}.cases.id"), index=True)
    currency: Mapped[str] = mapped_column(String(3))
    balance: Mapped[Decimal] = mapped_column(MONEY)
    amount: Mapped[Decimal] = mapped_column(MONEY)
    discount_percent: Mapped[Decimal] = mapped_column(PERCENT)
    #: The lowest level whose limit covers the discount.
    required_level: Mapped[ApprovalLevel] = mapped_column(_enum(ApprovalLevel, "approval_level"))
    #: The agency holding the case when it was offered (its limits applied), if any.
    agency_id: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[SettlementStatus] = mapped_column(_enum(SettlementStatus, "settlement_status"))
    expires_on: Mapped[dt.date] = mapped_column(Date)
    paid_amount: Mapped[Decimal] = mapped_column(MONEY, default=Decimal(0))
    requested_by: Mapped[str] = mapped_column(String(64))
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    decision_note: Mapped[str | None] = mapped_column(String(500))
    #: Why the offer was asked for, as its requester typed it (for whoever approves it).
    request_note: Mapped[str | None] = mapped_column(String(500))
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class DisputeStatus(enum.StrEnum):
    OPEN = "open"
    UPHELD = "upheld"
    ADJUSTED = "adjusted"
    REJECTED = "rejected"


class Dispute(Timestamped, TenantModel):
    """The debtor disputes the debt: the case is on hold until the tenant resolves it."""

    __tablename__ = "disputes"
    __table_args__ = (
        Index(
            "uq_disputes_one_open_per_case",
            "case_id",
            unique=True,
            postgresql_where=text("status = 'open'"),
        ),
        {"schema": T},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey(f"{T}.cases.id"), index=True)
    #: The debtor's grounds as the collector recorded them (a category, not a transcript).
    grounds: Mapped[str] = mapped_column(String(32))
    notes: Mapped[str | None] = mapped_column(Text)
    status: Mapped[DisputeStatus] = mapped_column(
        _enum(DisputeStatus, "dispute_status"), default=DisputeStatus.OPEN
    )
    opened_by: Mapped[str] = mapped_column(String(64))
    resolved_by: Mapped[str | None] = mapped_column(String(64))
    resolved_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    resolution_note: Mapped[str | None] = mapped_column(Text)
