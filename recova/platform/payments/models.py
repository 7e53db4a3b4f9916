"""Tenant-schema payments: money the debtor paid, and reversals of it.

A payment is recorded once, by the tenant's external payment id, and never edited: a
correction arrives as a reversal row that points at the payment it reverses (in part or
in full). Billing attributes each row to the placement that held the case when the money
came in (``paid_at``), and a reversal to the same placement as its original.
"""

from __future__ import annotations

import datetime as dt
import enum
from decimal import Decimal

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from recova.platform.cases.models import MONEY, Account, _enum
from recova.platform.kernel.db import TENANT_PLACEHOLDER, TenantModel, Timestamped


class PaymentKind(enum.StrEnum):
    PAYMENT = "payment"
    REVERSAL = "reversal"


class PaidTo(enum.StrEnum):
    """Who received the money; attribution treats all three the same way."""

    TENANT = "tenant"
    AGENCY = "agency"
    PLATFORM = "platform"


class Payment(Timestamped, TenantModel):
    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("char_length(currency) = 3", name="currency_iso"),
        CheckConstraint(
            "(kind = 'reversal') = (reverses_id IS NOT NULL)", name="reversal_has_original"
        ),
        {"schema": TENANT_PLACEHOLDER},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str] = mapped_column(String(128), unique=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey(f"{TENANT_PLACEHOLDER}.accounts.id"), index=True
    )
    kind: Mapped[PaymentKind] = mapped_column(_enum(PaymentKind, "payment_kind"))
    #: Always positive; a reversal's amount is how much of the original it takes back.
    amount: Mapped[Decimal] = mapped_column(MONEY)
    currency: Mapped[str] = mapped_column(String(3))
    paid_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    channel: Mapped[str | None] = mapped_column(String(32))
    paid_to: Mapped[PaidTo] = mapped_column(_enum(PaidTo, "paid_to"), default=PaidTo.TENANT)
    reverses_id: Mapped[int | None] = mapped_column(
        ForeignKey(f"{TENANT_PLACEHOLDER}.payments.id"), index=True
    )
    run_id: Mapped[int | None] = mapped_column(Integer)
    row_hash: Mapped[bytes | None] = mapped_column(LargeBinary)

    account: Mapped[Account] = relationship()
    reverses: Mapped[Payment | None] = relationship(remote_side=[id])
