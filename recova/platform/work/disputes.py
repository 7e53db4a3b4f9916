"""Disputes: the debtor contests the debt, and the case stops until the tenant decides.

Opening a dispute puts the case on hold (hold reason ``dispute``) and sets its
``dispute`` flag, which stops outreach (the compliance gate) and placement; a case
placed with an agency is recalled at once (allocation's ``set_case_flags``), because a
flagged case may not stay with an agency. Only the tenant resolves a dispute:

- **upheld**: the debt is not owed; the case closes (``dispute_upheld``);
- **adjusted**: the debt is owed in a corrected amount, which the tenant sends in its next
  portfolio file; the case goes back to work as for rejected;
- **rejected**: the debt stands; the case goes back to the state it was held from, or to
  recalled if it was being worked by an agency whose placement ended meanwhile (the next
  allocation run places it again).

In both non-closing outcomes the dispute flag is removed.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from recova.platform.allocation.models import Placement
from recova.platform.allocation.placement import set_case_flags
from recova.platform.cases.models import Case, CaseStatus
from recova.platform.kernel.db import utcnow
from recova.platform.webhooks.events import emit_event
from recova.platform.work.errors import WorkConflict
from recova.platform.work.events import note_event
from recova.platform.work.lifecycle import (
    WORKED,
    Actor,
    actor_label,
    can_transition,
    lock_for_evaluation,
    open_hold,
    transition,
)
from recova.platform.work.models import Dispute, DisputeStatus, HoldReason

GROUNDS = ("not_my_debt", "amount_wrong", "already_paid", "identity_theft", "other")


def open_dispute(
    session: Session,
    *,
    case: Case,
    grounds: str,
    notes: str | None,
    actor: Actor,
    today: dt.date,
) -> Dispute:
    """Record the debtor's dispute: the case goes on hold and gets the dispute flag."""
    existing = session.scalar(
        select(Dispute.id).where(Dispute.case_id == case.id, Dispute.status == DisputeStatus.OPEN)
    )
    if existing is not None:
        raise WorkConflict(f"case {case.id} already has an open dispute ({existing})")
    transition(
        session,
        case=case,
        to=CaseStatus.ON_HOLD,
        actor=actor,
        reason=f"dispute: {grounds}",
        hold_reason=HoldReason.DISPUTE,
    )
    set_case_flags(session, case, [*case.flags, "dispute"], today=today)
    dispute = Dispute(
        case_id=case.id,
        grounds=grounds,
        notes=notes,
        status=DisputeStatus.OPEN,
        opened_by=actor_label(actor),
        created_at=utcnow(),
    )
    session.add(dispute)
    session.flush()  # the caller answers with the new id
    note_event(
        session,
        action="dispute.opened",
        actor=actor,
        subject=("case", case.id),
        data={"dispute_id": dispute.id, "grounds": grounds},
    )
    emit_event(
        session,
        "dispute.opened",
        {
            "dispute_id": dispute.id,
            "case_id": case.id,
            "status": dispute.status.value,
            "grounds": grounds,
        },
    )
    return dispute


def resolve_dispute(
    session: Session,
    *,
    dispute: Dispute,
    outcome: DisputeStatus,
    note: str | None,
    actor: Actor,
) -> Dispute:
    """The tenant's decision: upheld closes the case, adjusted or rejected resumes it.

    The dispute is re-read under the case lock, so a dispute is resolved once.
    """
    lock_for_evaluation(session, dispute.case_id, dispute)
    if dispute.status is not DisputeStatus.OPEN:
        raise WorkConflict(f"dispute {dispute.id} is already {dispute.status.value}")
    if outcome is DisputeStatus.OPEN:
        raise ValueError("a resolution is upheld, adjusted or rejected")
    case = session.get(Case, dispute.case_id)
    assert case is not None
    reason = f"dispute {dispute.id} {outcome.value}"
    if outcome is DisputeStatus.UPHELD:
        if can_transition(case.status, CaseStatus.CLOSED):
            transition(
                session,
                case=case,
                to=CaseStatus.CLOSED,
                actor=actor,
                reason=reason,
                close_reason="dispute_upheld",
            )
    else:
        hold = open_hold(session, case.id)
        if case.status is CaseStatus.ON_HOLD and hold is not None:
            if hold.reason is not HoldReason.DISPUTE:
                raise WorkConflict(f"case {case.id} is on a {hold.reason.value} hold")
            transition(
                session,
                case=case,
                to=_resume_status(session, case, hold.held_from),
                actor=actor,
                reason=reason,
            )
        case.flags = sorted(set(case.flags) - {"dispute"})
    dispute.status = outcome
    dispute.resolved_by = actor_label(actor)
    dispute.resolved_at = utcnow()
    dispute.resolution_note = note
    note_event(
        session,
        action="dispute.resolved",
        actor=actor,
        subject=("case", case.id),
        data={"dispute_id": dispute.id, "outcome": outcome.value},
    )
    emit_event(
        session,
        "dispute.resolved",
        {"dispute_id": dispute.id, "case_id": case.id, "status": outcome.value},
    )
    return dispute


def _resume_status(session: Session, case: Case, held_from: CaseStatus) -> CaseStatus:
    """Where a released case goes: back where it was, unless its agency lost it meanwhile."""
    if held_from not in WORKED:
        return held_from
    placed = session.scalar(
        select(Placement.id).where(Placement.case_id == case.id, Placement.recalled_on.is_(None))
    )
    return held_from if placed is not None else CaseStatus.RECALLED
