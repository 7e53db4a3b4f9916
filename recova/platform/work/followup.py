"""What a collector leaves on a case after a contact: a note, and the next contact.

A note goes on the attempt it is about (the call just made), or on the case when there is
no such attempt. A callback is the case's next action: ``next_action_at`` of its open
assignment, which orders the collector's queue (a callback due now floats to the top).
It must lie ahead, and before the placement ends: after that the case is no longer the
agency's to call. Both are audited, without the note's words (a note may quote anything
the debtor said; the audit chain can never be edited).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from recova.platform.allocation.models import Assignment, Placement
from recova.platform.audit import record_event
from recova.platform.auth.models import Role
from recova.platform.auth.principal import Principal
from recova.platform.cases.models import Case
from recova.platform.contact.models import AttemptStatus, ContactAttempt
from recova.platform.kernel.db import utcnow
from recova.platform.kernel.errors import DomainError

#: The longest note kept in one go (a wrap-up, not a transcript).
NOTE_MAX = 2000


class FollowUpError(DomainError, ValueError):
    """A note or callback that cannot be kept; ``reason`` says which rule refused it
    (``empty``, ``blocked``, ``past``, ``after_placement``, ``unassigned``), ``field``
    which input it is about."""

    status = 422

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        field: str,
        ends_on: dt.date | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.field = field
        self.ends_on = ends_on


def add_note(
    session: Session,
    *,
    case: Case,
    note: str,
    actor: Principal | str,
    attempt: ContactAttempt | None = None,
) -> None:
    """Append ``note`` to ``attempt`` (one of the case's, not blocked), or to the case."""
    text = note.strip()
    if not text:
        raise FollowUpError("the note is empty", reason="empty", field="note")
    if len(text) > NOTE_MAX:
        text = text[:NOTE_MAX]
    if attempt is not None:
        if attempt.case_id != case.id:
            raise ValueError("the attempt is not the case's")
        if attempt.status == AttemptStatus.BLOCKED:
            raise FollowUpError(
                "nothing happened on a blocked attempt", reason="blocked", field="note"
            )
        attempt.notes = f"{attempt.notes}\n{text}" if attempt.notes else text
    else:
        case.notes = f"{case.notes}\n{text}" if case.notes else text
    session.flush()  # the event follows the stored note
    record_event(
        session,
        action="case.note_added",
        actor=actor,
        subject=("case", case.id),
        data={"attempt_id": attempt.id if attempt is not None else None, "length": len(text)},
    )


def open_assignment(session: Session, case_id: int) -> tuple[Assignment, Placement] | None:
    """The case's open assignment on its active placement, locked, with the placement."""
    row = session.execute(
        select(Assignment, Placement)
        .join(Placement, Placement.id == Assignment.placement_id)
        .where(
            Placement.case_id == case_id,
            Placement.recalled_on.is_(None),
            Assignment.ended_at.is_(None),
        )
        .with_for_update(of=Assignment)
    ).first()
    return (row[0], row[1]) if row is not None else None


def schedule_callback(
    session: Session,
    *,
    case: Case,
    at: dt.datetime,
    actor: Principal,
    timezone: str,
    note: str | None = None,
    attempt: ContactAttempt | None = None,
    now: dt.datetime | None = None,
) -> Assignment:
    """Make ``at`` the case's next action (its open assignment's ``next_action_at``).

    ``at`` must be ahead of ``now`` and before the placement ends (``ends_on`` is
    exclusive, at midnight in ``timezone``, the tenant's zone). A collector schedules only
    on their own assignment; the caller has checked the case is within reach. ``note``,
    if any, is kept as ``add_note`` keeps it.
    """
    if at.tzinfo is None:
        raise ValueError("a callback time carries its zone")
    moment = now or utcnow()
    if at <= moment:
        raise FollowUpError("the callback time has passed", reason="past", field="at")
    found = open_assignment(session, case.id)
    if found is None:
        raise FollowUpError(
            "the case is not assigned to a collector", reason="unassigned", field="at"
        )
    assignment, placement = found
    if actor.role is Role.COLLECTOR and assignment.collector_id != actor.subject_id:
        raise FollowUpError("the case is not assigned to you", reason="unassigned", field="at")
    ends = dt.datetime.combine(placement.ends_on, dt.time(0), zoneinfo.ZoneInfo(timezone))
    if at >= ends:
        raise FollowUpError(
            f"the placement ends on {placement.ends_on.isoformat()}",
            reason="after_placement",
            field="at",
            ends_on=placement.ends_on,
        )
    previous = assignment.next_action_at
    assignment.next_action_at = at
    session.flush()  # the queue reads the new time in this transaction
    record_event(
        session,
        action="case.callback_scheduled",
        actor=actor,
        subject=("case", case.id),
        data={
            "assignment_id": assignment.id,
            "at": at.astimezone(dt.UTC).isoformat(),
            "previous": previous.astimezone(dt.UTC).isoformat() if previous else None,
        },
    )
    if note and note.strip():
        add_note(session, case=case, note=note, actor=actor, attempt=attempt)
    return assignment
