"""Judging promises, plans and settlements: when payments arrive, and once a day.

After a payments run (ingestion) the ``evaluate_payments`` job looks at the accounts the
run touched; the daily jobs judge promises and instalments whose grace period ran out
and expire settlement offers. Every evaluation recomputes from the stored payments, so
running one twice, or both the payment and the daily one, gives the answer of one.

Why a job after the run rather than inside its chunks: a payments run commits chunk by
chunk in set-based SQL and may resume after a crash; judging promises there would tie
each chunk to per-case ORM work and to the lifecycle's locks. The job runs once the run
has committed, on its own retries, and a failure in it never fails the run.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ColumnElement, exists, select
from sqlalchemy.orm import Session, selectinload

from recova.platform.cases.models import Case
from recova.platform.payments.models import Payment
from recova.platform.work import plans, promises, settlements
from recova.platform.work.lifecycle import Actor
from recova.platform.work.models import (
    PaymentPlan,
    PlanStatus,
    Promise,
    PromiseStatus,
    Settlement,
    SettlementStatus,
)


def touched_by_payment_run(run_id: int) -> ColumnElement[bool]:
    """SQL: the case's account got a payment or reversal in the run.

    Asked per case that holds open work (few), through the payments' account index,
    rather than listing every account a run touched (possibly a million).
    """
    return exists().where(Payment.account_id == Case.account_id, Payment.run_id == run_id)


def evaluate_accounts(
    session: Session,
    *,
    accounts: list[int] | ColumnElement[bool],
    today: dt.date,
    timezone: str,
    actor: Actor,
) -> dict[str, Any]:
    """Judge the pending promises, active plans and approved offers on some accounts:
    a list of account ids, or a condition on ``Case`` (``touched_by_payment_run``)."""
    counts: dict[str, Any] = {"promises": {}, "plans": {}, "settled": 0}
    condition = Case.account_id.in_(accounts) if isinstance(accounts, list) else accounts
    cases = select(Case.id).where(condition)
    # Each list is read whole before judging: judging locks and re-reads on the session.
    for settlement in session.scalars(
        select(Settlement)
        .where(Settlement.case_id.in_(cases), Settlement.status == SettlementStatus.APPROVED)
        .order_by(Settlement.id)
    ).all():
        if settlements.evaluate_settlement(session, settlement, timezone=timezone, actor=actor):
            counts["settled"] += 1
    for promise in session.scalars(
        select(Promise)
        .where(Promise.case_id.in_(cases), Promise.status == PromiseStatus.PENDING)
        .order_by(Promise.id)
    ).all():
        outcome = promises.evaluate_promise(
            session, promise, today=today, timezone=timezone, actor=actor
        )
        if outcome is not None:
            counts["promises"][outcome.value] = counts["promises"].get(outcome.value, 0) + 1
    for plan in session.scalars(
        select(PaymentPlan)
        .options(selectinload(PaymentPlan.instalments))
        .where(PaymentPlan.case_id.in_(cases), PaymentPlan.status == PlanStatus.ACTIVE)
        .order_by(PaymentPlan.id)
    ).all():
        change = plans.evaluate_plan(session, plan, today=today, timezone=timezone, actor=actor)
        if change.ended is not None:
            counts["plans"][change.ended.value] = counts["plans"].get(change.ended.value, 0) + 1
    return counts


def evaluate_due_work(
    session: Session, *, today: dt.date, timezone: str, actor: Actor
) -> dict[str, Any]:
    """The daily evaluation: promises past their grace period, and every active plan."""
    return {
        "promises": promises.evaluate_due_promises(
            session, today=today, timezone=timezone, actor=actor
        ),
        "plans": plans.evaluate_active_plans(session, today=today, timezone=timezone, actor=actor),
    }
