"""Simulating a proposed contact schedule: which attempts the gate would block, and why.

The attempts are taken in time order. Each is decided by the same ``decide`` the live
gate uses; an allowed one is then written as if it happened (pending, or completed with
the expected result when the schedule says), so later attempts count it. Everything is
written inside a savepoint that is rolled back: a simulation leaves no trace.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from recova.platform.compliance.gate import GateError, check_contact_kind, decide, load_target
from recova.platform.contact.models import AttemptStatus, Channel, ContactAttempt

if TYPE_CHECKING:
    from recova.platform.kernel.crypto import PersonalDataCipher
    from recova.tenants.models import Tenant


@dataclass(frozen=True)
class ProposedAttempt:
    """One line of a schedule: a contact of a case, by a channel, at an instant."""

    case_id: int
    contact_id: int
    channel: Channel
    at: dt.datetime
    result: str | None = None


def simulate_schedule(
    session: Session,
    schedule: list[ProposedAttempt],
    *,
    tenant: Tenant,
    cipher: PersonalDataCipher,
    agency_id: int | None = None,
    collector_id: int | None = None,
) -> list[dict[str, Any]]:
    """The gate's answer for each proposed attempt, in the order given (agency staff, and
    a collector among them, reach the cases the live gate lets them reach)."""
    order = sorted(range(len(schedule)), key=lambda i: schedule[i].at)
    answers: list[dict[str, Any]] = [{} for _ in schedule]
    savepoint = session.begin_nested()
    try:
        for index in order:
            proposed = schedule[index]
            answers[index] = _simulate_one(
                session,
                proposed,
                index=index,
                tenant=tenant,
                cipher=cipher,
                agency_id=agency_id,
                collector_id=collector_id,
            )
    finally:
        savepoint.rollback()
    return answers


def _simulate_one(
    session: Session,
    proposed: ProposedAttempt,
    *,
    index: int,
    tenant: Tenant,
    cipher: PersonalDataCipher,
    agency_id: int | None,
    collector_id: int | None,
) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "index": index,
        "case_id": proposed.case_id,
        "contact_id": proposed.contact_id,
        "channel": proposed.channel.value,
        "at": proposed.at,
    }
    target = load_target(
        session,
        case_id=proposed.case_id,
        contact_id=proposed.contact_id,
        at=proposed.at,
        agency_id=agency_id,
        collector_id=collector_id,
    )
    if target is None:
        return {**answer, "allowed": False, "rule": "request.not_found",
                "message": "No such case, or no such contact of its debtor.",
                "next_allowed_at": None}  # fmt: skip
    try:
        check_contact_kind(target, proposed.channel)
    except GateError as exc:
        return {**answer, "allowed": False, "rule": "request.invalid", "message": str(exc),
                "next_allowed_at": None}  # fmt: skip
    decision = decide(session, target, channel=proposed.channel, at=proposed.at, tenant=tenant,
                      cipher=cipher)  # fmt: skip
    if decision.allowed:
        status = AttemptStatus.COMPLETED if proposed.result else AttemptStatus.PENDING
        session.add(
            ContactAttempt(
                case_id=target.case_id,
                debtor_id=target.debtor_id,
                contact_id=target.contact_id,
                third_party=target.third_party,
                channel=proposed.channel.value,
                status=status.value,
                attempted_at=proposed.at,
                actor_kind="tenant",
                pack_version=decision.pack_version,
                policy_id=decision.policy_id,
                local_timezone=decision.timezone,
                result=proposed.result,
            )
        )
        session.flush()  # the next proposed attempt counts this one
    return {
        **answer,
        "allowed": decision.allowed,
        "rule": decision.rule,
        "message": decision.message,
        "next_allowed_at": decision.next_allowed_at,
        "timezone": decision.timezone,
        "pack_version": decision.pack_version,
        "rules": [b.rule for b in decision.blocks],
    }
