"""Webhook endpoints a tenant registers, the deliveries of events to them and each attempt.

Tenant tables, in the ``tenant`` placeholder schema. An endpoint's secret is stored
encrypted (the platform cipher, ``recova.platform.webhooks.signing``); during a rotation's
grace period the previous secret is kept beside it, encrypted too. A delivery is one event
for one endpoint (unique on both, so the relay's fan-out is idempotent); its body is kept
as sent, so every attempt sends the same bytes under the same ``webhook-id``.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from recova.platform.kernel.db import TENANT_PLACEHOLDER, TenantModel

T = TENANT_PLACEHOLDER
DELIVERY_STATUSES = ("pending", "delivered", "failed", "cancelled")


class WebhookEndpoint(TenantModel):
    """A receiver of the tenant's events: its URL, the event types it wants, its secret."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (
        # The fan-out and the emit check read only enabled endpoints.
        Index("ix_webhook_endpoints_enabled", "id", postgresql_where=text("enabled")),
        {"schema": T},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(String(200), server_default="")
    event_types: Mapped[list[str]] = mapped_column(ARRAY(String(64)))
    enabled: Mapped[bool] = mapped_column(Boolean, server_default="true")
    #: Why the platform disabled it (a 410 answer); None when the tenant did, or it is on.
    disabled_reason: Mapped[str | None] = mapped_column(String(200))
    #: Set when a delivery ran out of retries; cleared by the next successful delivery.
    failing_since: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    secret_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    #: The secret a rotation replaced, still signing until ``previous_secret_expires_at``.
    previous_secret_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    previous_secret_expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )

    @property
    def status(self) -> str:
        """``disabled``, ``failing`` (retries ran out) or ``active``."""
        if not self.enabled:
            return "disabled"
        return "failing" if self.failing_since is not None else "active"


class WebhookDelivery(TenantModel):
    """One event for one endpoint, retried on the schedule until delivered or given up."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id", name="uq_webhook_deliveries_event"),
        CheckConstraint(
            "status IN ('pending', 'delivered', 'failed', 'cancelled')", name="status_known"
        ),
        # The sweep's scan: pending deliveries by when they are due.
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_webhook_deliveries_endpoint", "endpoint_id", "id"),
        {"schema": T},
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(
        ForeignKey(f"{T}.webhook_endpoints.id", ondelete="CASCADE")
    )
    #: The ``webhook-id``: the event's id, the same on every attempt and every endpoint.
    event_id: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(64))
    #: The JSON body exactly as sent: ``{"type", "timestamp", "data"}``.
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(10), server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    #: Attempts the schedule still allows (a manual replay of a finished one allows one).
    attempts_left: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    #: The next attempt was asked for by hand (a replay).
    manual_next: Mapped[bool] = mapped_column(Boolean, server_default="false")
    #: While an attempt is on the wire: until then no other worker sends it.
    lease_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    last_attempt_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    response_status: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))
    delivered_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class WebhookAttempt(TenantModel):
    """One attempt of a delivery: when, what came back, how long it took.

    An attempt whose worker died on the wire keeps no outcome (``finished_at`` null).
    """

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey(f"{T}.webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int] = mapped_column(Integer)
    manual: Mapped[bool] = mapped_column(Boolean, server_default="false")
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    response_status: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(500))
