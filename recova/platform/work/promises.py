"""Promises to pay: recorded by a collector, judged by what the debtor then paid.

A promise counts the account's payments (net of reversals, in its currency) from the
start of the day it was made (tenant's calendar; see ``money.day_started``) until the
end of its date plus the tenant's grace days:

- paid in full at any point: **kept**, at once (the payments run's evaluation finds it);
- past its grace period with part of it paid: **partly kept**;
- past its grace period with nothing paid: **broken**, and the case's
  ``broken_promises`` (an input of the allocation score) goes up by one.

When a promise is judged the case, if still promised, goes back to in_progress.
Judging is idempotent: a promise is judged once, and later payments change nothing.

A payment plan agreed while a promise is pending **supersedes** it: the promise closes
unjudged (``superseded``; no broken promise counted), and the plan alone judges what the
debtor pays from then on.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from recova.platform.cases.models import Account, Case, CaseStatus
from recova.platform.kernel.db import utcnow
from recova.platform.webhooks.events import emit_event
from recova.platform.work.errors import WorkConflict, WorkInvalid
from recova.platform.work.events import note_event
from recova.platform.work.lifecycle import (
    Actor,
    actor_label,
    lock_for_evaluation,
    return_to_work,
    transition,
)
from recova.platform.work.models import Promise, PromiseStatus
from recova.platform.work.money import day_started, money, paid_between, start_of_day
from recova.platform.work.settings import current_settings

#: The longest a promise may look ahead; further out it is a plan, not a promise.
MAX_PROMISE_DAYS = 90
#: Statuses no judgment gives: still waiting, or closed by a plan.
_NOT_JUDGED = frozenset({PromiseStatus.PENDING, PromiseStatus.SUPERSEDED})


def create_promise(
    session: Session,
    *,
    case: Case,
    amount: Decimal,
    due_date: dt.date,
    actor: Actor,
    today: dt.date,
) -> Promise:
    """Record a promise to pay and move the case to promised."""
    if due_date < today:
        raise WorkInvalid("a promise's date cannot be in the past")
    if due_date > today + dt.timedelta(days=MAX_PROMISE_DAYS):
        raise WorkInvalid(f"a promise's date must be within {MAX_PROMISE_DAYS} days")
    account = session.get(Account, case.account_id)
    assert account is not None  # a case always has its account
    amount = money(amount, account.currency)
    if amount <= 0:
        raise WorkInvalid("a promise's amount must be positive")
    pending = pending_promise(session, case.id)
    if pending is not None:
        raise WorkConflict(f"case {case.id} already has a pending promise ({pending.id})")
    transition(session, case=case, to=CaseStatus.PROMISED, actor=actor, reason="promise to pay")
    promise = Promise(
        case_id=case.id,
        amount=amount,
        currency=account.currency,
        due_date=due_date,
        status=PromiseStatus.PENDING,
        paid_amount=Decimal(0),
        created_by=actor_label(actor),
        created_at=utcnow(),
    )
    session.add(promise)
    session.flush()  # the caller answers with the new id
    note_event(
        session,
        action="promise.created",
        actor=actor,
        subject=("case", case.id),
        data={
            "promise_id": promise.id,
            "amount": promise.amount,
            "currency": promise.currency,
            "due_date": promise.due_date,
        },
    )
    emit_event(
        session,
        "promise.created",
        {
            "promise_id": promise.id,
            "case_id": case.id,
            "status": promise.status.value,
            "amount": promise.amount,
            "currency": promise.currency,
            "due_date": promise.due_date,
        },
    )
    return promise


def pending_promise(session: Session, case_id: int) -> Promise | None:
    """The case's pending promise, if any."""
    return session.scalar(
        select(Promise).where(Promise.case_id == case_id, Promise.status == PromiseStatus.PENDING)
    )


def supersede_promise(
    session: Session, *, case_id: int, plan_id: int, actor: Actor
) -> Promise | None:
    """Close the case's pending promise, unjudged, because plan ``plan_id`` replaces it.

    Left pending, the promise would be judged on the payments the plan now counts: broken,
    it would count against the debtor although the plan is being kept, and its judgment
    would pull the case off its plan. Call with the case locked (``transition`` took the
    lock), so an evaluation judging the same promise either ran before or finds it closed.
    The superseded promise, or None if there was none.
    """
    promise = pending_promise(session, case_id)
    if promise is None:
        return None
    promise.status = PromiseStatus.SUPERSEDED
    promise.evaluated_at = utcnow()
    note_event(
        session,
        action="promise.superseded",
        actor=actor,
        subject=("case", case_id),
        data={"promise_id": promise.id, "plan_id": plan_id},
    )
    return promise


def evaluate_promise(
    session: Session, promise: Promise, *, today: dt.date, timezone: str, actor: Actor
) -> PromiseStatus | None:
    """Judge a pending promise by its payments; the new status, or None if still pending."""
    lock_for_evaluation(session, promise.case_id, promise)
    if promise.status is not PromiseStatus.PENDING:
        return None
    grace = current_settings(session).promise_grace_days
    last_day = promise.due_date + dt.timedelta(days=grace)
    case = session.get(Case, promise.case_id)
    assert case is not None
    account = session.get(Account, case.account_id)
    assert account is not None
    promise.paid_amount = paid_between(
        session,
        account_id=account.id,
        currency=promise.currency,
        since=day_started(promise.created_at, timezone),
        until=start_of_day(last_day + dt.timedelta(days=1), timezone),
    )
    if promise.paid_amount >= promise.amount:
        outcome = PromiseStatus.KEPT
    elif today <= last_day:
        return None
    elif promise.paid_amount > 0:
        outcome = PromiseStatus.PARTLY_KEPT
    else:
        outcome = PromiseStatus.BROKEN
        case.broken_promises += 1
    promise.status = outcome
    promise.evaluated_at = utcnow()
    note_event(
        session,
        action="promise.evaluated",
        actor=actor,
        subject=("case", case.id),
        data={
            "promise_id": promise.id,
            "status": outcome.value,
            "amount": promise.amount,
            "paid_amount": promise.paid_amount,
            "currency": promise.currency,
        },
    )
    emit_event(
        session,
        f"promise.{outcome.value}",
        {
            "promise_id": promise.id,
            "case_id": case.id,
            "status": outcome.value,
            "amount": promise.amount,
            "paid_amount": promise.paid_amount,
            "currency": promise.currency,
        },
    )
    return_to_work(session, case=case, actor=actor, reason=f"promise {promise.id} {outcome.value}")
    return outcome


def evaluate_due_promises(
    session: Session, *, today: dt.date, timezone: str, actor: Actor
) -> dict[str, int]:
    """Judge every pending promise whose date plus grace days is past; counts by outcome."""
    grace = current_settings(session).promise_grace_days
    due = session.scalars(
        select(Promise)
        .where(
            Promise.status == PromiseStatus.PENDING,
            Promise.due_date < today - dt.timedelta(days=grace),
        )
        .order_by(Promise.id)
    ).all()
    counts = {status.value: 0 for status in PromiseStatus if status not in _NOT_JUDGED}
    for promise in due:
        outcome = evaluate_promise(session, promise, today=today, timezone=timezone, actor=actor)
        if outcome is not None:
            counts[outcome.value] += 1
    return counts
