"""The demo's case work: a promise, a payment plan and a settlement offer per lender,
made by the collectors the cases are assigned to, as on a working day."""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_DOWN, Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from recova.platform.allocation.models import Assignment, Placement
from recova.platform.cases.models import Account, Case
from recova.platform.kernel.db import Database
from recova.platform.work import plans, promises, settlements
from recova.platform.work.models import ApprovalLevel, PaymentPlan, Promise, Settlement
from recova.tenants.models import tenant_today
from recova.tenants.scope import tenant_scope


def demo_case_work(db: Database, slugs: list[str]) -> list[tuple[str, str]]:
    """For each tenant: a promise, a plan and a settlement on its first assigned cases.

    A tenant that already holds promises is left alone, so a second demo adds nothing
    and prints the same lines.
    """
    lines = []
    for slug in slugs:
        with tenant_scope(slug, db=db) as session:
            tenant = session.info["tenant"]
            if session.scalar(select(Promise.id).limit(1)) is not None:
                lines.append((slug, _summary(session)))
                continue
            today = tenant_today(tenant.timezone)
            assigned = session.execute(
                select(Case, Assignment.collector_id)
                .join(Placement, Placement.case_id == Case.id)
                .join(Assignment, Assignment.placement_id == Placement.id)
                .where(Placement.recalled_on.is_(None), Assignment.ended_at.is_(None))
                .order_by(Case.id)
                .limit(3)
            ).all()
            if len(assigned) < 3:
                lines.append((slug, "too few assigned cases for the demo's case work"))
                continue
            (first, by_first), (second, by_second), (third, by_third) = assigned
            balance = {}
            for case, _ in assigned:
                account = session.get(Account, case.account_id)
                assert account is not None  # a case always has its account
                balance[case.id] = account.outstanding_total
            promises.create_promise(
                session,
                case=first,
                amount=(balance[first.id] / 10).quantize(Decimal("0.01"), rounding=ROUND_DOWN),
                due_date=today + dt.timedelta(days=3),
                actor=f"user:{by_first}",
                today=today,
            )
            third_of = (balance[second.id] / 3).quantize(Decimal("0.01"), rounding=ROUND_DOWN)
            plans.create_plan(
                session,
                case=second,
                instalments=[(today + dt.timedelta(days=30 * n), third_of) for n in range(3)],
                actor=f"user:{by_second}",
                today=today,
            )
            settlements.offer_settlement(
                session,
                case=third,
                amount=(balance[third.id] * Decimal("0.8")).quantize(Decimal("0.01")),
                expires_on=today + dt.timedelta(days=14),
                actor=f"user:{by_third}",
                level=ApprovalLevel.COLLECTOR,
                tenant_id=tenant.id,
                today=today,
            )
            lines.append((slug, _summary(session)))
    return lines


def _summary(session: Session) -> str:
    """What the demo's case work is, read back (so a second demo prints the same line)."""
    promise = session.scalar(select(Promise).order_by(Promise.id).limit(1))
    plan = session.scalar(select(PaymentPlan).order_by(PaymentPlan.id).limit(1))
    offer = session.scalar(select(Settlement).order_by(Settlement.id).limit(1))
    # The demo records all three in one transaction, so one found means all were.
    assert promise is not None
    assert plan is not None
    assert offer is not None
    return (
        f"promise on case {promise.case_id}, plan on case {plan.case_id}, settlement offer"
        f" on case {offer.case_id} ({offer.discount_percent}% off,"
        f" {offer.status.value.replace('_', ' ')})"
    )
