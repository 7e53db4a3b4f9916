"""One case's history, merged from every domain that touches it, newest first.

Placements and recalls, contact attempts (with the gate's verdict and the rule that
blocked), outcomes, promises, payment plans, settlements, payments and reversals,
disputes, flag changes, lifecycle transitions and bucket moves. Each source is read by its
case index, newest first and at most ``limit`` rows, so the merged first ``limit`` entries
are exact however long the case's history is.

Entries carry ids, codes, amounts and masked contact values only; the page translates
and formats them.
"""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from recova.platform.agencies.models import Agency
from recova.platform.allocation.models import BucketTransition, Placement
from recova.platform.audit.models import AuditEvent
from recova.platform.cases.models import Case, Contact
from recova.platform.contact.models import ContactAttempt, OutcomeCode
from recova.platform.payments.models import Payment
from recova.platform.work.models import (
    CaseTransition,
    Dispute,
    PaymentPlan,
    Promise,
    Settlement,
)

#: Audit actions that describe a change of the case's flags.
FLAG_ACTIONS = ("case.flags_changed",)
KINDS = (
    "placement",
    "recall",
    "attempt",
    "blocked",
    "outcome",
    "promise",
    "promise_result",
    "plan",
    "plan_end",
    "settlement",
    "settlement_decision",
    "payment",
    "reversal",
    "dispute",
    "dispute_resolution",
    "flags",
    "transition",
    "bucket",
)


@dataclass(frozen=True)
class Entry:
    """One thing that happened to the case."""

    at: dt.datetime
    kind: str
    #: The source row's id, to keep entries of the same instant in a stable order.
    ref: int
    #: True when the source knows only the day (placements, bucket moves).
    day_only: bool = False
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Timeline:
    entries: list[Entry]
    #: Some older entries were left out (the case has more than ``limit``).
    truncated: bool


def case_timeline(session: Session, case: Case, *, timezone: str, limit: int = 200) -> Timeline:
    """The case's newest ``limit`` entries, newest first."""
    zone = zoneinfo.ZoneInfo(timezone)

    def day(value: dt.date) -> dt.datetime:
        return dt.datetime.combine(value, dt.time(), zone)

    entries: list[Entry] = []
    # One more of each kind than shown: a kind that alone fills the page still says that
    # older entries were left out.
    fetch = limit + 1
    entries += _placements(session, case.id, day, fetch)
    entries += _attempts(session, case.id, fetch)
    entries += _outcomes(session, case.id, fetch)
    entries += _promises(session, case.id, fetch)
    entries += _plans(session, case.id, fetch)
    entries += _settlements(session, case.id, fetch)
    entries += _payments(session, case.account_id, fetch)
    entries += _disputes(session, case.id, fetch)
    entries += _flag_changes(session, case.id, fetch)
    entries += _transitions(session, case.id, fetch)
    entries += _bucket_moves(session, case.id, day, fetch)
    entries.sort(key=lambda e: (e.at, KINDS.index(e.kind), e.ref), reverse=True)
    return Timeline(entries[:limit], truncated=len(entries) > limit)


def _placements(session: Session, case_id: int, day: Any, limit: int) -> list[Entry]:
    rows = session.execute(
        select(Placement, Agency.name)
        .join(Agency, Agency.id == Placement.agency_id)
        .where(Placement.case_id == case_id)
        .order_by(Placement.started_on.desc(), Placement.id.desc())
        .limit(limit)
    ).all()
    entries = []
    for placement, agency in rows:
        common = {"agency": agency, "placement_id": placement.id}
        entries.append(
            Entry(
                day(placement.started_on),
                "placement",
                placement.id,
                day_only=True,
                data={
                    **common,
                    "ends_on": placement.ends_on,
                    "segment": placement.segment,
                    "arm": placement.arm,
                    "balance": placement.balance_at_placement,
                    "currency": placement.currency,
                },
            )
        )
        if placement.recalled_on is not None:
            entries.append(
                Entry(
                    day(placement.recalled_on),
                    "recall",
                    placement.id,
                    day_only=True,
                    data={**common, "reason": placement.recall_reason},
                )
            )
    return entries


def _attempts(session: Session, case_id: int, limit: int) -> list[Entry]:
    # Allowed and blocked attempts are read apart: each has its own partial index.
    rows: list[Any] = []
    for blocked in (False, True):
        status = ContactAttempt.status == "blocked"
        rows += session.execute(
            select(ContactAttempt, Contact.value_masked, Contact.relation)
            .outerjoin(Contact, Contact.id == ContactAttempt.contact_id)
            .where(ContactAttempt.case_id == case_id, status if blocked else ~status)
            .order_by(ContactAttempt.attempted_at.desc(), ContactAttempt.id.desc())
            .limit(limit)
        ).all()
    return [
        Entry(
            attempt.attempted_at,
            "blocked" if attempt.status == "blocked" else "attempt",
            attempt.id,
            data={
                "channel": attempt.channel,
                "status": attempt.status,
                "contact": masked,
                "relation": relation,
                "third_party": attempt.third_party,
                "rule": attempt.blocked_rule,
                "message": attempt.block_message,
                "next_allowed_at": attempt.next_allowed_at,
                "actor_kind": attempt.actor_kind,
            },
        )
        for attempt, masked, relation in rows
    ]


def _outcomes(session: Session, case_id: int, limit: int) -> list[Entry]:
    rows = session.execute(
        select(ContactAttempt, OutcomeCode.code, OutcomeCode.label)
        .outerjoin(OutcomeCode, OutcomeCode.id == ContactAttempt.outcome_code_id)
        .where(
            ContactAttempt.case_id == case_id,
            ContactAttempt.status == "completed",
            ContactAttempt.completed_at.is_not(None),
        )
        .order_by(ContactAttempt.completed_at.desc(), ContactAttempt.id.desc())
        .limit(limit)
    ).all()
    return [
        Entry(
            attempt.completed_at,
            "outcome",
            attempt.id,
            data={
                "channel": attempt.channel,
                "code": code,
                "label": label,
                "result": attempt.result,
                "recorded": bool(attempt.recording_ref),
                "notes": attempt.notes,
            },
        )
        for attempt, code, label in rows
        if attempt.completed_at is not None
    ]


def _promises(session: Session, case_id: int, limit: int) -> list[Entry]:
    promises = session.scalars(
        select(Promise)
        .where(Promise.case_id == case_id)
        .order_by(Promise.created_at.desc(), Promise.id.desc())
        .limit(limit)
    )
    entries = []
    for promise in promises:
        money = {"amount": promise.amount, "currency": promise.currency}
        entries.append(
            Entry(
                promise.created_at,
                "promise",
                promise.id,
                data={**money, "due_date": promise.due_date, "by": promise.created_by},
            )
        )
        if promise.evaluated_at is not None:
            entries.append(
                Entry(
                    promise.evaluated_at,
                    "promise_result",
                    promise.id,
                    data={
                        **money,
                        "status": promise.status.value,
                        "paid": promise.paid_amount,
                    },
                )
            )
    return entries


def _plans(session: Session, case_id: int, limit: int) -> list[Entry]:
    plans = session.scalars(
        select(PaymentPlan)
        .where(PaymentPlan.case_id == case_id)
        .order_by(PaymentPlan.created_at.desc(), PaymentPlan.id.desc())
        .limit(limit)
    )
    entries = []
    for plan in plans:
        money = {"amount": plan.total_amount, "currency": plan.currency}
        entries.append(
            Entry(
                plan.created_at,
                "plan",
                plan.id,
                data={**money, "instalments": len(plan.instalments), "by": plan.created_by},
            )
        )
        if plan.ended_at is not None:
            entries.append(
                Entry(
                    plan.ended_at,
                    "plan_end",
                    plan.id,
                    data={**money, "status": plan.status.value, "paid": plan.paid_amount},
                )
            )
    return entries


def _settlements(session: Session, case_id: int, limit: int) -> list[Entry]:
    settlements = session.scalars(
        select(Settlement)
        .where(Settlement.case_id == case_id)
        .order_by(Settlement.created_at.desc(), Settlement.id.desc())
        .limit(limit)
    )
    entries = []
    for offer in settlements:
        money = {"amount": offer.amount, "currency": offer.currency}
        entries.append(
            Entry(
                offer.created_at,
                "settlement",
                offer.id,
                data={
                    **money,
                    "balance": offer.balance,
                    "discount": offer.discount_percent,
                    "level": offer.required_level.value,
                    "expires_on": offer.expires_on,
                    "by": offer.requested_by,
                },
            )
        )
        decided = offer.decided_at or offer.ended_at
        if decided is not None:
            entries.append(
                Entry(
                    decided,
                    "settlement_decision",
                    offer.id,
                    data={**money, "status": offer.status.value, "by": offer.decided_by},
                )
            )
    return entries


def _payments(session: Session, account_id: int, limit: int) -> list[Entry]:
    payments = session.scalars(
        select(Payment)
        .where(Payment.account_id == account_id)
        .order_by(Payment.paid_at.desc(), Payment.id.desc())
        .limit(limit)
    )
    return [
        Entry(
            payment.paid_at,
            "reversal" if payment.reverses_id is not None else "payment",
            payment.id,
            data={
                "amount": payment.amount,
                "currency": payment.currency,
                "channel": payment.channel,
                "paid_to": payment.paid_to.value,
                "external_id": payment.external_id,
            },
        )
        for payment in payments
    ]


def _disputes(session: Session, case_id: int, limit: int) -> list[Entry]:
    disputes = session.scalars(
        select(Dispute)
        .where(Dispute.case_id == case_id)
        .order_by(Dispute.created_at.desc(), Dispute.id.desc())
        .limit(limit)
    )
    entries = []
    for dispute in disputes:
        entries.append(
            Entry(
                dispute.created_at,
                "dispute",
                dispute.id,
                data={"grounds": dispute.grounds, "notes": dispute.notes, "by": dispute.opened_by},
            )
        )
        if dispute.resolved_at is not None:
            entries.append(
                Entry(
                    dispute.resolved_at,
                    "dispute_resolution",
                    dispute.id,
                    data={
                        "status": dispute.status.value,
                        "note": dispute.resolution_note,
                        "by": dispute.resolved_by,
                    },
                )
            )
    return entries


def _flag_changes(session: Session, case_id: int, limit: int) -> list[Entry]:
    events = session.scalars(
        select(AuditEvent)
        .where(
            AuditEvent.subject_type == "case",
            AuditEvent.subject_id == str(case_id),
            AuditEvent.action.in_(FLAG_ACTIONS),
        )
        .order_by(AuditEvent.seq.desc())
        .limit(limit)
    )
    entries = []
    for event in events:
        data = json.loads(event.data)
        entries.append(
            Entry(
                event.occurred_at,
                "flags",
                event.seq,
                data={
                    "flag": data.get("flag"),
                    "set": bool(data.get("set")),
                    "by": event.actor,
                    "recalled_placement_id": data.get("recalled_placement_id"),
                },
            )
        )
    return entries


def _transitions(session: Session, case_id: int, limit: int) -> list[Entry]:
    transitions = session.scalars(
        select(CaseTransition)
        .where(CaseTransition.case_id == case_id)
        .order_by(CaseTransition.at.desc(), CaseTransition.id.desc())
        .limit(limit)
    )
    return [
        Entry(
            transition.at,
            "transition",
            transition.id,
            data={
                "from": transition.from_status.value,
                "to": transition.to_status.value,
                "reason": transition.reason,
                "by": transition.actor,
            },
        )
        for transition in transitions
    ]


def _bucket_moves(session: Session, case_id: int, day: Any, limit: int) -> list[Entry]:
    moves = session.scalars(
        select(BucketTransition)
        .where(BucketTransition.case_id == case_id)
        .order_by(BucketTransition.as_of.desc(), BucketTransition.id.desc())
        .limit(limit)
    )
    return [
        Entry(
            day(move.as_of),
            "bucket",
            move.id,
            day_only=True,
            data={"from": move.from_bucket, "to": move.to_bucket},
        )
        for move in moves
    ]
