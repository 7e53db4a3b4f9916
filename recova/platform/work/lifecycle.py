"""The case lifecycle: which status may follow which, and the one service that moves a case.

Every status change made by case work goes through ``transition``: it locks the case row,
checks the move against ``ALLOWED``, keeps the history (``case_transitions``) and the hold
(``case_holds``), and stamps closing. A move the table does not admit raises
``TransitionRefused``, which the API answers with 409 naming from, to and the allowed
targets.

Allocation and ingestion move cases too, set-based, without this service (a daily run
touches a million cases); the table admits exactly what they do, so a case never reaches
a status from which the lifecycle has no way on:

- the place step: ``new`` or ``recalled`` → ``placed``;
- the recall step and a tenant's recall: ``placed``, ``in_progress``, ``promised`` and
  ``on_plan`` (``WORKED_STATUSES``) → ``recalled``; a case on hold (or flagged) is
  recalled without a status change and never placed, so it waits on hold;
- a portfolio snapshot that no longer lists an account: every open status → ``closed``,
  and a later file listing it again: ``closed`` → ``new``.

Their history lives in their own rows (placements, ingestion runs); ``case_transitions``
holds the moves made by people and by case-work jobs.

``recalled`` and ``on_hold`` may move to ``settled`` for one reason only: an offer approved
while the case was worked is paid in full after its placement ended or a dispute or legal
hold stopped the case. The full-and-final payment extinguishes the debt whatever happened
to the case meanwhile, so the case settles (a hold is released, the transition naming the
paid offer) rather than staying open with its offer paid and being placed again. Nobody
moves a case to ``settled`` by hand (``MANAGED``), and no new offer is made on a recalled
or held case (``settlements.offer_settlement``), so only a paid offer takes these moves.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from recova.platform.allocation.models import Placement
from recova.platform.allocation.placement import recall_placement
from recova.platform.auth.principal import Principal
from recova.platform.cases.models import Case, CaseStatus
from recova.platform.kernel.db import utcnow
from recova.platform.kernel.errors import DomainError
from recova.platform.work.errors import NotPermitted, WorkConflict, WorkInvalid
from recova.platform.work.events import note_event
from recova.platform.work.models import (
    CaseHold,
    CaseTransition,
    HoldReason,
    PaymentPlan,
    PlanStatus,
    Promise,
    PromiseStatus,
)

S = CaseStatus

#: Every status a case may move to from each status. Terminal: ``settled`` and ``paid``.
ALLOWED: dict[CaseStatus, frozenset[CaseStatus]] = {
    S.NEW: frozenset({S.PLACED, S.IN_PROGRESS, S.PROMISED, S.ON_PLAN, S.ON_HOLD, S.CLOSED}),
    S.PLACED: frozenset(
        {S.IN_PROGRESS, S.PROMISED, S.ON_PLAN, S.SETTLED, S.PAID, S.ON_HOLD, S.RECALLED, S.CLOSED}
    ),
    S.IN_PROGRESS: frozenset(
        {S.PROMISED, S.ON_PLAN, S.SETTLED, S.PAID, S.ON_HOLD, S.RECALLED, S.CLOSED}
    ),
    S.PROMISED: frozenset(
        {S.IN_PROGRESS, S.ON_PLAN, S.SETTLED, S.PAID, S.ON_HOLD, S.RECALLED, S.CLOSED}
    ),
    S.ON_PLAN: frozenset({S.IN_PROGRESS, S.SETTLED, S.PAID, S.ON_HOLD, S.RECALLED, S.CLOSED}),
    # Leaving a hold returns to where the case was held from (or, if its placement was
    # recalled meanwhile, to recalled), or closes it.
    # ... and an approved offer paid while the case was held or recalled settles it.
    S.ON_HOLD: frozenset(
        {S.NEW, S.PLACED, S.IN_PROGRESS, S.PROMISED, S.ON_PLAN, S.RECALLED, S.SETTLED, S.CLOSED}
    ),
    S.RECALLED: frozenset(
        {S.PLACED, S.IN_PROGRESS, S.PROMISED, S.ON_PLAN, S.SETTLED, S.ON_HOLD, S.CLOSED}
    ),
    S.CLOSED: frozenset({S.NEW}),
    S.SETTLED: frozenset(),
    S.PAID: frozenset(),
}

#: Statuses of a case out of collection; closing stamps ``closed_at``.
TERMINAL = frozenset({S.CLOSED, S.SETTLED, S.PAID})
#: Statuses an agency works the case in (allocation's ``WORKED_STATUSES``).
WORKED = frozenset({S.PLACED, S.IN_PROGRESS, S.PROMISED, S.ON_PLAN})

Actor = Principal | str


def actor_label(actor: Actor) -> str:
    """How an actor is recorded: ``user:12``, ``client:3`` or a system label as given."""
    if isinstance(actor, Principal):
        return f"{actor.kind}:{actor.subject_id}"
    return actor


class TransitionRefused(DomainError):
    """A status change the lifecycle does not admit (409, naming the statuses allowed)."""

    status = 409

    def __init__(self, from_status: CaseStatus, to_status: CaseStatus) -> None:
        self.from_status = from_status
        self.to_status = to_status
        self.allowed = sorted(ALLOWED[from_status])
        targets = ", ".join(self.allowed) or "none (the case is final)"
        super().__init__(
            f"a case cannot move from {from_status.value} to {to_status.value};"
            f" from {from_status.value} it may move to: {targets}"
        )

    @property
    def error_details(self) -> dict[str, Any]:
        return {
            "transition": {
                "from": self.from_status.value,
                "to": self.to_status.value,
                "allowed": [status.value for status in self.allowed],
            }
        }


def can_transition(from_status: CaseStatus, to_status: CaseStatus) -> bool:
    """Whether the lifecycle admits the move."""
    return to_status in ALLOWED[from_status]


def lock_case(session: Session, case_id: int) -> Case | None:
    """The case with its row locked for this transaction, its attributes read afresh.

    Two requests changing one case (a payment run settling it while a collector records a
    promise) are serialised here, so each checks the status the other left.
    """
    return session.scalar(
        select(Case)
        .where(Case.id == case_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def lock_for_evaluation(session: Session, case_id: int, *rows: object) -> None:
    """Lock the case, then re-read ``rows`` (its promise, plan or offer) under the lock.

    The payments job and the daily job may judge the same promise at once; whichever
    locks the case second sees what the first committed (no promise broken twice). The
    same holds for people: two decisions on one offer, two deferrals on one plan or two
    resolutions of one dispute each load their row before the lock, so each re-reads it
    here and checks the state the other committed (one wins, the other gets a 409).
    """
    lock_case(session, case_id)
    for row in rows:
        session.refresh(row)


def open_hold(session: Session, case_id: int) -> CaseHold | None:
    """The case's current hold, if it is on hold."""
    return session.scalar(
        select(CaseHold).where(CaseHold.case_id == case_id, CaseHold.released_at.is_(None))
    )


def transition(
    session: Session,
    *,
    case: Case,
    to: CaseStatus,
    actor: Actor,
    reason: str | None = None,
    hold_reason: HoldReason | None = None,
    close_reason: str | None = None,
) -> CaseTransition:
    """Move ``case`` to ``to`` if the lifecycle admits it, keeping history and holds.

    ``hold_reason`` is required when ``to`` is on_hold; ``close_reason`` is kept on the
    case when it leaves collection (default: the status itself, or ``reason``).
    """
    lock_case(session, case.id)  # refreshes ``case``: the status is read under the lock
    current = case.status
    if not can_transition(current, to):
        raise TransitionRefused(current, to)
    released: CaseHold | None = None
    if to is S.ON_HOLD:
        if hold_reason is None:
            raise ValueError("putting a case on hold needs a hold reason")
        session.add(CaseHold(case_id=case.id, reason=hold_reason, held_from=current))
    elif current is S.ON_HOLD:
        released = open_hold(session, case.id)
        session.execute(
            update(CaseHold)
            .where(CaseHold.case_id == case.id, CaseHold.released_at.is_(None))
            .values(released_at=utcnow())
            .execution_options(synchronize_session=False)
        )
    if to in TERMINAL:
        case.closed_at = utcnow()
        case.close_reason = (close_reason or to.value)[:32]
    elif current in TERMINAL:
        case.closed_at = None
        case.close_reason = None
    case.status = to
    record = CaseTransition(
        case_id=case.id,
        from_status=current,
        to_status=to,
        reason=reason[:200] if reason else None,
        actor=actor_label(actor),
    )
    session.add(record)
    session.flush()  # the caller answers with the transition's id and time
    data: dict[str, object] = {"from": current.value, "to": to.value, "transition_id": record.id}
    if hold_reason is not None and to is S.ON_HOLD:
        data["hold_reason"] = hold_reason.value
    if released is not None:
        data["released_hold"] = released.reason.value  # the hold this move ended
    note_event(session, action="case.transition", actor=actor, subject=("case", case.id), data=data)
    return record


def mark_worked(session: Session, *, case: Case, actor: Actor, reason: str) -> bool:
    """A placed case the agency has started to work moves to in_progress; else nothing.

    Called when a contact attempt reaches the debtor; True if the case moved.
    """
    if case.status is not S.PLACED:
        return False
    transition(session, case=case, to=S.IN_PROGRESS, actor=actor, reason=reason)
    return True


def return_to_work(session: Session, *, case: Case, actor: Actor, reason: str) -> bool:
    """After a promise is judged, a promised case goes back to in_progress; else nothing.

    Only from promised: a case on_plan is the plan's (its end moves the case, to paid when
    it covered the balance), and a promise judged while the case is on a plan, held or
    gone must not take the case off where it is.
    """
    if case.status is not S.PROMISED:
        return False
    transition(session, case=case, to=S.IN_PROGRESS, actor=actor, reason=reason)
    return True


#: Statuses other parts of the system own: the transition endpoint names where to go.
MANAGED: dict[CaseStatus, str] = {
    S.PLACED: "cases are placed by the allocation run",
    S.RECALLED: "recall the case's placement (POST /placements/<id>/recall)",
    S.PROMISED: "record a promise (POST /cases/<id>/promises)",
    S.ON_PLAN: "set up a payment plan (POST /cases/<id>/plans)",
    S.SETTLED: "a case is settled when an approved settlement offer is paid",
}
#: What agency staff may move a case to by hand; the rest is the tenant's decision.
AGENCY_TARGETS = frozenset({S.IN_PROGRESS})


def request_transition(
    session: Session,
    *,
    case: Case,
    to: CaseStatus,
    actor: Actor,
    agency_staff: bool,
    reason: str | None,
    hold_reason: HoldReason | None,
    today: dt.date,
) -> CaseTransition:
    """A person asks to move a case: the lifecycle first, then who may ask for what.

    A legal hold takes the case back from its agency at once (as a flag does): a held case
    is neither worked nor placed until the hold is released.
    """
    lock_case(session, case.id)
    if not can_transition(case.status, to):
        raise TransitionRefused(case.status, to)
    releasing_to_allocation = to is S.RECALLED and case.status is S.ON_HOLD
    if to in MANAGED and not releasing_to_allocation:
        raise WorkInvalid(f"{to.value} is not set by hand: {MANAGED[to]}")
    if agency_staff and to not in AGENCY_TARGETS:
        raise NotPermitted(f"agency staff may move a case only to {', '.join(AGENCY_TARGETS)}")
    if to is S.ON_HOLD and hold_reason is not HoldReason.LEGAL:
        raise WorkInvalid("a hold set by hand is a legal hold; a dispute is opened as a dispute")
    if to is S.IN_PROGRESS and case.status in (S.PROMISED, S.ON_PLAN):
        _refuse_while_live(session, case)
    if case.status is S.ON_HOLD:
        hold = open_hold(session, case.id)
        if hold is not None and hold.reason is HoldReason.DISPUTE:
            raise WorkConflict(f"case {case.id} is on hold for a dispute; resolve the dispute")
        if to in WORKED and _active_placement(session, case.id) is None:
            raise WorkConflict(
                f"case {case.id} is with no agency now; release it to recalled (or new)"
                " and the allocation run places it again"
            )
    moved = transition(
        session, case=case, to=to, actor=actor, reason=reason, hold_reason=hold_reason
    )
    if to is S.ON_HOLD:
        active = _active_placement(session, case.id)
        if active is not None:
            recall_placement(session, active, reason="legal_hold", on=today)
    return moved


def _refuse_while_live(session: Session, case: Case) -> None:
    """A promised or on_plan case goes back to work by hand only once its promise or plan
    has ended: moved while it is live, the promise or plan would still be judged later, a
    plan's completion would no longer make the case paid, and a new promise or plan
    would sit beside the old one. It ends by being judged (or broken) by the evaluation.
    """
    promise = session.scalar(
        select(Promise.id).where(
            Promise.case_id == case.id, Promise.status == PromiseStatus.PENDING
        )
    )
    if promise is not None:
        raise WorkConflict(
            f"case {case.id} has a pending promise ({promise}); it goes back to work when"
            " the promise is judged"
        )
    plan = session.scalar(
        select(PaymentPlan.id).where(
            PaymentPlan.case_id == case.id, PaymentPlan.status == PlanStatus.ACTIVE
        )
    )
    if plan is not None:
        raise WorkConflict(
            f"case {case.id} has an active payment plan ({plan}); it goes back to work when"
            " the plan completes or breaks"
        )


def _active_placement(session: Session, case_id: int) -> Placement | None:
    return session.scalar(
        select(Placement).where(Placement.case_id == case_id, Placement.recalled_on.is_(None))
    )
