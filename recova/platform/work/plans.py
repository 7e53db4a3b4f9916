"""Payment plans: an instalment schedule, payments applied oldest instalment first.

Everything the debtor paid on the account from the day the plan was agreed (net of
reversals, in its currency) is spread over the instalments in schedule order: each takes what it
is owed before the next gets anything, so a late payment first catches up the oldest
open instalment. An instalment not fully paid by its due date plus the tenant's grace
days is **missed**; when the plan has as many missed instalments as the tenant allows
(``plan_max_misses``) it **breaks**: the case returns to in_progress and its
``broken_promises`` goes up, as a broken promise's would. When every instalment is paid
the plan is **completed**, and the case is paid if the plan covered its whole balance.

The spread is recomputed from the payments each time, so evaluating twice, or after a
reversal, gives the same answer as evaluating once. A broken or completed plan is final.

A due date may be deferred (moved later) within the tenant's limits: at most
``max_deferral_days`` past the date first agreed, at most ``max_deferrals`` times per
plan, and never past the next instalment's date, so schedule order stays due-date order.

A schedule may be calculated rather than typed (``calculated_schedule``): a total split
into equal instalments of the currency's minor unit, the last carrying the remainder, a
week, two weeks or a month apart; any instalment's amount may be set, and the others
share the rest.
"""

from __future__ import annotations

import calendar
import datetime as dt
import enum
import itertools
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from recova.platform.cases.models import Account, Case, CaseStatus
from recova.platform.kernel.db import utcnow
from recova.platform.webhooks.events import emit_event
from recova.platform.work.errors import WorkConflict, WorkInvalid, WorkNotFound
from recova.platform.work.events import note_event
from recova.platform.work.lifecycle import Actor, actor_label, lock_for_evaluation, transition
from recova.platform.work.models import (
    Instalment,
    InstalmentStatus,
    PaymentPlan,
    PlanStatus,
)
from recova.platform.work.money import day_started, money, paid_between
from recova.platform.work.promises import supersede_promise
from recova.platform.work.settings import current_settings

MAX_INSTALMENTS = 60


class Frequency(enum.StrEnum):
    """How far apart a calculated schedule's instalments fall."""

    WEEKLY = "weekly"
    FORTNIGHTLY = "fortnightly"
    MONTHLY = "monthly"


@dataclass(frozen=True)
class PlanChange:
    """What one evaluation changed: instalments newly paid or missed, and the plan's end."""

    newly_paid: list[int]
    newly_missed: list[int]
    ended: PlanStatus | None


def check_schedule(
    instalments: list[tuple[dt.date, Decimal]], *, today: dt.date, currency: str
) -> list[Decimal]:
    """Refuse a schedule no plan may have, whatever the case (``WorkInvalid``); the
    amounts in the currency's minor unit."""
    if not 1 <= len(instalments) <= MAX_INSTALMENTS:
        raise WorkInvalid(f"a plan has between 1 and {MAX_INSTALMENTS} instalments")
    dates = [due for due, _ in instalments]
    if dates[0] < today:
        raise WorkInvalid("the first instalment cannot be due in the past")
    if any(later <= earlier for earlier, later in itertools.pairwise(dates)):
        raise WorkInvalid("instalment due dates must be strictly increasing")
    amounts = [money(amount, currency) for _, amount in instalments]
    if any(amount <= 0 for amount in amounts):
        raise WorkInvalid("every instalment amount must be positive")
    return amounts


def instalment_dates(first_due: dt.date, count: int, frequency: Frequency) -> list[dt.date]:
    """``count`` due dates from ``first_due``, a week, two weeks or a month apart; monthly
    dates keep the first date's day, or the month's last day when it has no such day."""
    if frequency is Frequency.MONTHLY:
        dates = []
        for n in range(count):
            month_index = first_due.month - 1 + n
            year, month = first_due.year + month_index // 12, month_index % 12 + 1
            day = min(first_due.day, calendar.monthrange(year, month)[1])
            dates.append(dt.date(year, month, day))
        return dates
    step = dt.timedelta(days=7 if frequency is Frequency.WEEKLY else 14)
    return [first_due + step * n for n in range(count)]


def split_evenly(total: Decimal, count: int, currency: str) -> list[Decimal]:
    """``total`` in ``count`` equal instalments of the currency's minor unit, rounded down;
    the last carries the remainder, so they add up to ``total`` exactly."""
    if not 1 <= count <= MAX_INSTALMENTS:
        raise WorkInvalid(f"a plan has between 1 and {MAX_INSTALMENTS} instalments")
    minor_unit = money(Decimal(1), currency)  # 1.00: quantising to it keeps its places
    total = money(total, currency)
    each = (total / count).quantize(minor_unit, rounding=ROUND_DOWN)
    if each <= 0:
        raise WorkInvalid("every instalment amount must be positive")
    return [each] * (count - 1) + [total - each * (count - 1)]


def calculated_schedule(
    *,
    total: Decimal,
    count: int,
    first_due: dt.date,
    frequency: Frequency,
    amounts: list[Decimal | None],
    currency: str,
    balance: Decimal,
    today: dt.date,
) -> list[tuple[dt.date, Decimal]]:
    """The plan calculator: ``count`` instalments from ``first_due``; those of ``amounts``
    given keep their amount, the blank ones share the rest of ``total`` equally (the last
    blank one carrying the remainder). None given: equal instalments. Every amount set:
    the plan is their sum. Never more than ``balance``; checked as ``create_plan`` checks
    a schedule (``check_schedule``), so what the preview shows, the plan saves.
    """
    if not 1 <= count <= MAX_INSTALMENTS:
        raise WorkInvalid(f"a plan has between 1 and {MAX_INSTALMENTS} instalments")
    total = money(total, currency)
    if total > balance:
        raise WorkInvalid(f"the plan's total is above the balance {balance}")
    chosen = [None if a is None else money(a, currency) for a in amounts[:count]]
    chosen += [None] * (count - len(chosen))
    blanks = [n for n, amount in enumerate(chosen) if amount is None]
    fixed = sum((a for a in chosen if a is not None), Decimal(0))
    if blanks:
        rest = total - fixed
        if rest <= 0:
            raise WorkInvalid("the amounts set reach the total; leave none blank or raise it")
        for n, share in zip(blanks, split_evenly(rest, len(blanks), currency), strict=True):
            chosen[n] = share
    elif fixed > balance:
        raise WorkInvalid(f"the plan's total is above the balance {balance}")
    schedule = []
    for due, amount in zip(instalment_dates(first_due, count, frequency), chosen, strict=True):
        assert amount is not None  # every blank got its share
        schedule.append((due, amount))
    check_schedule(schedule, today=today, currency=currency)
    return schedule


def create_plan(
    session: Session,
    *,
    case: Case,
    instalments: list[tuple[dt.date, Decimal]],
    actor: Actor,
    today: dt.date,
) -> PaymentPlan:
    """Agree an instalment schedule and move the case to on_plan.

    A promise still pending on the case is superseded by the plan (closed unjudged).
    """
    account = session.get(Account, case.account_id)
    assert account is not None
    amounts = check_schedule(instalments, today=today, currency=account.currency)
    dates = [due for due, _ in instalments]
    existing = active_plan(session, case.id)
    if existing is not None:
        raise WorkConflict(f"case {case.id} already has an active plan ({existing.id})")
    transition(session, case=case, to=CaseStatus.ON_PLAN, actor=actor, reason="payment plan")
    plan = PaymentPlan(
        case_id=case.id,
        currency=account.currency,
        total_amount=sum(amounts, Decimal(0)),
        balance_at_creation=account.outstanding_total,
        status=PlanStatus.ACTIVE,
        paid_amount=Decimal(0),
        misses=0,
        deferrals=0,
        created_by=actor_label(actor),
        created_at=utcnow(),
    )
    plan.instalments = [
        Instalment(
            seq=n,
            due_date=due,
            original_due_date=due,
            amount=amount,
            paid_amount=Decimal(0),
            status=InstalmentStatus.OPEN,
        )
        for n, (due, amount) in enumerate(zip(dates, amounts, strict=True), start=1)
    ]
    session.add(plan)
    session.flush()  # the caller answers with the new ids
    note_event(
        session,
        action="plan.created",
        actor=actor,
        subject=("case", case.id),
        data={
            "plan_id": plan.id,
            "instalments": [
                {"seq": i.seq, "due_date": i.due_date, "amount": i.amount} for i in plan.instalments
            ],
            "total_amount": plan.total_amount,
            "currency": plan.currency,
        },
    )
    emit_event(
        session,
        "plan.created",
        {
            "plan_id": plan.id,
            "case_id": case.id,
            "status": plan.status.value,
            "instalments": len(plan.instalments),
            "total_amount": plan.total_amount,
            "currency": plan.currency,
        },
    )
    supersede_promise(session, case_id=case.id, plan_id=plan.id, actor=actor)
    return plan


def active_plan(session: Session, case_id: int) -> PaymentPlan | None:
    """The case's active plan with its instalments, if any."""
    return session.scalar(
        select(PaymentPlan)
        .options(selectinload(PaymentPlan.instalments))
        .where(PaymentPlan.case_id == case_id, PaymentPlan.status == PlanStatus.ACTIVE)
    )


def _spread(
    plan: PaymentPlan, paid: Decimal, *, today: dt.date, grace: dt.timedelta
) -> tuple[list[int], list[int]]:
    """Give each instalment, in schedule order, what it is owed of ``paid`` and set its
    status; the seqs of instalments that became paid and missed."""
    remaining = paid
    newly_paid: list[int] = []
    newly_missed: list[int] = []
    for instalment in plan.instalments:
        share = min(instalment.amount, remaining)
        remaining -= share
        instalment.paid_amount = share
        before = instalment.status
        if share >= instalment.amount:
            instalment.status = InstalmentStatus.PAID
        elif today > instalment.due_date + grace:
            instalment.status = InstalmentStatus.MISSED
        else:
            instalment.status = InstalmentStatus.OPEN
        if instalment.status is not before:
            if instalment.status is InstalmentStatus.PAID:
                newly_paid.append(instalment.seq)
            elif instalment.status is InstalmentStatus.MISSED:
                newly_missed.append(instalment.seq)
    return newly_paid, newly_missed


def evaluate_plan(
    session: Session, plan: PaymentPlan, *, today: dt.date, timezone: str, actor: Actor
) -> PlanChange:
    """Spread the plan's payments over its instalments, mark misses, complete or break it."""
    lock_for_evaluation(session, plan.case_id, plan, *plan.instalments)
    if plan.status is not PlanStatus.ACTIVE:
        return PlanChange([], [], None)
    settings = current_settings(session)
    case = session.get(Case, plan.case_id)
    assert case is not None
    paid = paid_between(
        session,
        account_id=case.account_id,
        currency=plan.currency,
        since=day_started(plan.created_at, timezone),
    )
    plan.paid_amount = paid
    newly_paid, newly_missed = _spread(
        plan, paid, today=today, grace=dt.timedelta(days=settings.plan_grace_days)
    )
    plan.misses = sum(1 for i in plan.instalments if i.status is InstalmentStatus.MISSED)
    by_seq = {i.seq: i for i in plan.instalments}
    for seq in sorted(newly_paid + newly_missed):
        instalment = by_seq[seq]
        note_event(
            session,
            action="plan.instalment",
            actor=actor,
            subject=("case", case.id),
            data={
                "plan_id": plan.id,
                "seq": seq,
                "status": instalment.status.value,
                "amount": instalment.amount,
                "paid_amount": instalment.paid_amount,
            },
        )
    ended: PlanStatus | None = None
    if all(i.status is InstalmentStatus.PAID for i in plan.instalments):
        ended = PlanStatus.COMPLETED
        covered = plan.total_amount >= plan.balance_at_creation
        to = CaseStatus.PAID if covered else CaseStatus.IN_PROGRESS
        reason = f"plan {plan.id} completed"
    elif plan.misses >= settings.plan_max_misses:
        ended = PlanStatus.BROKEN
        case.broken_promises += 1
        to = CaseStatus.IN_PROGRESS
        reason = f"plan {plan.id} broken after {plan.misses} missed instalments"
    if ended is not None:
        plan.status = ended
        plan.ended_at = utcnow()
        note_event(
            session,
            action=f"plan.{ended.value}",
            actor=actor,
            subject=("case", case.id),
            data={"plan_id": plan.id, "misses": plan.misses, "paid_amount": plan.paid_amount},
        )
        emit_event(
            session,
            f"plan.{ended.value}",
            {
                "plan_id": plan.id,
                "case_id": case.id,
                "status": ended.value,
                "misses": plan.misses,
                "paid_amount": plan.paid_amount,
                "currency": plan.currency,
            },
        )
        if case.status is CaseStatus.ON_PLAN:
            transition(session, case=case, to=to, actor=actor, reason=reason)
    return PlanChange(newly_paid, newly_missed, ended)


def evaluate_active_plans(
    session: Session, *, today: dt.date, timezone: str, actor: Actor
) -> dict[str, int]:
    """Evaluate every active plan (the daily job): counts of misses, completions, breaks."""
    plans = session.scalars(
        select(PaymentPlan)
        .options(selectinload(PaymentPlan.instalments))
        .where(PaymentPlan.status == PlanStatus.ACTIVE)
        .order_by(PaymentPlan.id)
    ).all()
    counts = {"missed": 0, "completed": 0, "broken": 0}
    for plan in plans:
        change = evaluate_plan(session, plan, today=today, timezone=timezone, actor=actor)
        counts["missed"] += len(change.newly_missed)
        if change.ended is not None:
            counts[change.ended.value] += 1
    return counts


def defer_instalment(
    session: Session,
    *,
    plan: PaymentPlan,
    seq: int,
    due_date: dt.date,
    today: dt.date,
    actor: Actor,
) -> Instalment:
    """Move one open instalment's due date later, within the tenant's deferral limits.

    The plan is re-read under the case lock: a deferral committed meanwhile counts against
    the limit and may have moved the instalment this one must stay before.
    """
    lock_for_evaluation(session, plan.case_id, plan, *plan.instalments)
    if plan.status is not PlanStatus.ACTIVE:
        raise WorkConflict(f"plan {plan.id} is {plan.status.value}; only active plans defer")
    settings = current_settings(session)
    by_seq = {i.seq: i for i in plan.instalments}
    instalment = by_seq.get(seq)
    if instalment is None:
        raise WorkNotFound(f"plan {plan.id} has no instalment {seq}")
    if instalment.status is not InstalmentStatus.OPEN:
        raise WorkConflict(f"instalment {seq} is {instalment.status.value}; only open ones defer")
    if due_date <= instalment.due_date or due_date < today:
        raise WorkInvalid("a deferral moves the due date later, and not into the past")
    if plan.deferrals >= settings.max_deferrals:
        raise WorkConflict(
            f"plan {plan.id} has used all {settings.max_deferrals} deferrals it is allowed"
        )
    limit = instalment.original_due_date + dt.timedelta(days=settings.max_deferral_days)
    if due_date > limit:
        raise WorkConflict(
            f"an instalment may be deferred at most {settings.max_deferral_days} days past"
            f" its original date ({instalment.original_due_date}), so no later than {limit}"
        )
    following = by_seq.get(seq + 1)
    if following is not None and due_date >= following.due_date:
        raise WorkConflict(
            f"instalment {seq} cannot move onto or past instalment {seq + 1}"
            f" (due {following.due_date})"
        )
    note_event(
        session,
        action="plan.deferred",
        actor=actor,
        subject=("case", plan.case_id),
        data={
            "plan_id": plan.id,
            "seq": seq,
            "from": instalment.due_date,
            "to": due_date,
            "deferrals": plan.deferrals + 1,
        },
    )
    instalment.due_date = due_date
    plan.deferrals += 1
    session.flush()  # the answer shows the stored instalment
    return instalment
