"""Tenant-schema tables of contact work: attempts, outcome codes and message templates.

Every outbound attempt is a row from the moment the gate decides on it: ``pending`` until
its outcome is recorded, ``completed`` after, or ``blocked`` with the rule that stopped it.
The gate's caps are counts over this one table (per debtor, per case, per contact, by
time), so its indexes are shaped for those counts.
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from recova.platform.kernel.db import TENANT_PLACEHOLDER, TenantModel, Timestamped

T = TENANT_PLACEHOLDER


class Channel(enum.StrEnum):
    """How a contact is made. Inbound calls are the debtor's; every other one is outbound."""

    CALL_OUT = "call_out"
    CALL_IN = "call_in"
    SMS = "sms"
    EMAIL = "email"
    LETTER = "letter"
    VISIT = "visit"


OUTBOUND_CHANNELS = tuple(c for c in Channel if c is not Channel.CALL_IN)
#: Which kind of contact each channel uses.
CHANNEL_CONTACT_KIND = {
    Channel.CALL_OUT: "phone",
    Channel.CALL_IN: "phone",
    Channel.SMS: "phone",
    Channel.EMAIL: "email",
    Channel.LETTER: "address",
    Channel.VISIT: "address",
}


class Result(enum.StrEnum):
    """The canonical result every tenant outcome code maps to; the rules read only these."""

    CONNECTED = "connected"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    WRONG_NUMBER = "wrong_number"
    REFUSED = "refused"
    DELIVERED = "delivered"
    FAILED = "failed"


#: Results that count toward "the debtor is unreachable" (third parties).
FAILED_RESULTS = (Result.NO_ANSWER, Result.BUSY, Result.WRONG_NUMBER, Result.FAILED)
#: Results meaning someone answered the phone: a refusal is a conversation too, however
#: short, so both count toward the connected-call cap and the quiet period after one.
CONVERSATION_RESULTS = (Result.CONNECTED, Result.REFUSED)

CALL_CHANNELS = (Channel.CALL_OUT, Channel.CALL_IN)
#: Channels that send a message rather than reach a person at that moment.
MESSAGE_CHANNELS = (Channel.SMS, Channel.EMAIL, Channel.LETTER)
#: Results only a call can have (nobody answers, or refuses, a letter) and only a
#: message can have (a call is not "delivered"). A wrong number (or address) fits both;
#: a field visit is not constrained.
CALL_ONLY_RESULTS = (Result.CONNECTED, Result.NO_ANSWER, Result.BUSY, Result.REFUSED)
MESSAGE_ONLY_RESULTS = (Result.DELIVERED, Result.FAILED)


def result_fits(channel: str, result: str) -> bool:
    """Whether ``result`` can be the outcome of an attempt by ``channel``: the rules count
    results by channel (calls for the call caps), so a mismatch would escape them."""
    if channel in CALL_CHANNELS:
        return result not in MESSAGE_ONLY_RESULTS
    if channel in MESSAGE_CHANNELS:
        return result not in CALL_ONLY_RESULTS
    return True


class AttemptStatus(enum.StrEnum):
    PENDING = "pending"
    COMPLETED = "completed"
    BLOCKED = "blocked"


def _values(cls: type[enum.Enum]) -> str:
    return ", ".join(f"'{m.value}'" for m in cls)


class OutcomeCode(Timestamped, TenantModel):
    """A tenant's own outcome code (``PTP-CALLBACK``), mapped to one canonical result."""

    __tablename__ = "outcome_codes"
    __table_args__ = (
        CheckConstraint(f"result IN ({_values(Result)})", name="result_known"),
        {"schema": T},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    label: Mapped[str] = mapped_column(String(200))
    result: Mapped[str] = mapped_column(String(16))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)


class TemplateAudience(enum.StrEnum):
    DEBTOR = "debtor"
    THIRD_PARTY = "third_party"


class MessageTemplate(Timestamped, TenantModel):
    """A message with ``{placeholders}``; third-party templates may not name the debt."""

    __tablename__ = "message_templates"
    __table_args__ = (
        CheckConstraint("channel IN ('sms', 'email', 'letter')", name="channel_known"),
        CheckConstraint(f"audience IN ({_values(TemplateAudience)})", name="audience_known"),
        {"schema": T},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    channel: Mapped[str] = mapped_column(String(16))
    audience: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str | None] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class ContactAttempt(TenantModel):
    """One contact attempt: allowed (pending, then completed) or blocked, and by whom."""

    __tablename__ = "contact_attempts"
    __table_args__ = (
        CheckConstraint(f"channel IN ({_values(Channel)})", name="channel_known"),
        CheckConstraint(f"status IN ({_values(AttemptStatus)})", name="status_known"),
        CheckConstraint(f"result IS NULL OR result IN ({_values(Result)})", name="result_known"),
        CheckConstraint("(status = 'completed') = (result IS NOT NULL)", name="result_when_done"),
        CheckConstraint("(status = 'blocked') = (blocked_rule IS NOT NULL)", name="block_has_rule"),
        CheckConstraint("actor_kind IN ('agency', 'tenant', 'client')", name="actor_known"),
        # The gate's counts: per debtor by time, per case by time, per contact by time.
        # Blocked rows never count, so they stay out of the indexes.
        Index(
            "ix_contact_attempts_debtor_time",
            "debtor_id",
            "attempted_at",
            postgresql_where=text("status <> 'blocked'"),
        ),
        Index(
            "ix_contact_attempts_case_time",
            "case_id",
            "attempted_at",
            postgresql_where=text("status <> 'blocked'"),
        ),
        Index(
            "ix_contact_attempts_contact_time",
            "contact_id",
            "attempted_at",
            postgresql_where=text("status <> 'blocked'"),
        ),
        # A case's attempts as the API lists them: every one, newest first.
        Index(
            "ix_contact_attempts_case_newest",
            "case_id",
            text("attempted_at DESC"),
            text("id DESC"),
        ),
        {"schema": T},
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey(f"{T}.cases.id"))
    debtor_id: Mapped[int] = mapped_column(Integer)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey(f"{T}.contacts.id"))
    third_party: Mapped[bool] = mapped_column(Boolean, default=False)
    channel: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    attempted_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    #: Who: an agency's staff (``agency_id`` and ``user_id``), tenant staff, or an API client.
    actor_kind: Mapped[str] = mapped_column(String(16))
    agency_id: Mapped[int | None] = mapped_column(Integer)
    user_id: Mapped[int | None] = mapped_column(Integer)
    client_id: Mapped[int | None] = mapped_column(Integer)
    template_id: Mapped[int | None] = mapped_column(ForeignKey(f"{T}.message_templates.id"))
    #: The rule pack version and tenant policy version the gate decided under.
    pack_version: Mapped[str] = mapped_column(String(32))
    policy_id: Mapped[int | None] = mapped_column(Integer)
    local_timezone: Mapped[str] = mapped_column(String(64))
    blocked_rule: Mapped[str | None] = mapped_column(String(64))
    block_message: Mapped[str | None] = mapped_column(String(300))
    next_allowed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    outcome_code_id: Mapped[int | None] = mapped_column(ForeignKey(f"{T}.outcome_codes.id"))
    result: Mapped[str | None] = mapped_column(String(16))
    notes: Mapped[str | None] = mapped_column(Text)
    recording_ref: Mapped[str | None] = mapped_column(String(300))
    completed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
