"""The demo's contact day: collectors work their first cases through the compliance gate.

Yesterday on each lender's calendar, replayed at fixed local times so every demo shows
the same day: calls that reach no one, a call that reaches the debtor (the case moves to
in progress), an SMS, a third party tried too early and refused, a wrong number that
makes the debtor unreachable so the registered third party may be called, that third
party refusing and never being called again, the jurisdiction's call cap (CN: a fourth
connected call in a day; US: the quiet week after a conversation) and an early call
before the contact window opens. Every attempt goes through ``attempt_contact``, exactly
as the API's do, so the blocks are real decisions of the rule pack in force.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import Counter
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from recova.platform.allocation.models import Assignment, Placement
from recova.platform.cases.models import Case, Contact, ContactKind
from recova.platform.compliance.gate import Actor, attempt_contact
from recova.platform.contact.models import Channel, ContactAttempt
from recova.platform.contact.services import record_outcome
from recova.platform.kernel.extension import Platform
from recova.tenants.models import Tenant, tenant_today
from recova.tenants.scope import tenant_scope


@dataclass(frozen=True)
class Worked:
    case_id: int
    actor: Actor
    own_phone: int
    third_party: int | None


def demo_contact_day(objects: Platform, slugs: list[str]) -> list[tuple[str, str]]:
    """Replay one working day per lender; a lender that already has attempts is left alone."""
    lines = []
    for slug in slugs:
        with tenant_scope(slug, db=objects.db) as session:
            tenant: Tenant = session.info["tenant"]
            if session.scalar(select(ContactAttempt.id).limit(1)) is None:
                cases = _first_worked_cases(session, 5)
                if len(cases) < 5:
                    lines.append((slug, "too few assigned cases for the demo's contact day"))
                    continue
                _work_the_day(session, objects, tenant, cases)
            lines.append((slug, _summary(session, tenant)))
    return lines


def _first_worked_cases(session: Session, count: int) -> list[Worked]:
    """The first assigned cases whose debtor has an own phone, with a third party first."""
    rows = session.execute(
        select(Case.id, Case.debtor_id, Placement.agency_id, Assignment.collector_id)
        .join(Placement, Placement.case_id == Case.id)
        .join(Assignment, Assignment.placement_id == Placement.id)
        .where(Placement.recalled_on.is_(None), Assignment.ended_at.is_(None))
        .order_by(Case.id)
        .limit(200)
    ).all()
    found: list[Worked] = []
    for case_id, debtor_id, agency_id, collector_id in rows:
        phones = session.execute(
            select(Contact.id, Contact.relation)
            .where(Contact.debtor_id == debtor_id, Contact.kind == ContactKind.PHONE)
            .order_by(Contact.id)
        ).all()
        own = [c for c, relation in phones if relation == "self"]
        others = [c for c, relation in phones if relation != "self"]
        if not own:
            continue
        actor = Actor(kind="agency", agency_id=agency_id, user_id=collector_id, collector=True)
        found.append(Worked(case_id, actor, own[0], others[0] if others else None))
        if len(found) == count:
            break
    # A case with a registered third party second: the day's third-party story needs one.
    with_third = [w for w in found if w.third_party is not None]
    if with_third and found.index(with_third[0]) != 1 and len(found) > 1:
        found.remove(with_third[0])
        found.insert(1, with_third[0])
    return found


def _work_the_day(session: Session, objects: Platform, tenant: Tenant, cases: list[Worked]) -> None:
    zone = zoneinfo.ZoneInfo(tenant.timezone)
    day = tenant_today(tenant.timezone) - dt.timedelta(days=1)

    def at(hour: int, minute: int) -> dt.datetime:
        return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=zone)

    def call(
        worked: Worked,
        when: dt.datetime,
        outcome: str | None,
        *,
        contact: int | None = None,
        channel: Channel = Channel.CALL_OUT,
    ) -> None:
        attempt = attempt_contact(
            session,
            objects,
            tenant=tenant,
            case_id=worked.case_id,
            contact_id=contact or worked.own_phone,
            channel=channel,
            actor=worked.actor,
            at=when,
        )
        if attempt is None or attempt.status != "pending" or outcome is None:
            return
        record_outcome(
            session,
            attempt,
            jurisdiction=tenant.jurisdiction,
            code=outcome,
            actor=worked.actor.audit_label,
            recording_ref=f"rec-{day:%Y%m%d}-{worked.case_id}-{when:%H%M}"
            if channel is Channel.CALL_OUT
            else None,
        )

    first, second, third, fourth, fifth = cases
    call(first, at(9, 5), "NO_ANSWER")
    call(first, at(9, 40), "CONNECTED")  # reached: the case is now in progress
    call(second, at(10, 15), "DELIVERED", channel=Channel.SMS)
    if second.third_party is not None:
        call(second, at(10, 30), None, contact=second.third_party)  # debtor still reachable
        call(second, at(11, 0), "WRONG_NUMBER")  # the debtor's only number is invalid
        call(second, at(11, 10), "REFUSED", contact=second.third_party)  # allowed now
        call(second, at(11, 30), None, contact=second.third_party)  # refused: never again
    if tenant.jurisdiction == "CN":
        for hour in (13, 14, 15):
            call(third, at(hour, 0), "CONNECTED")
        call(third, at(16, 0), None)  # a fourth connected call the same day: the cap
    else:
        call(third, at(13, 0), "CONNECTED")
        call(third, at(15, 0), None)  # a week's quiet after a telephone conversation
    call(fourth, at(14, 30), "BUSY")
    # Before the window opens wherever the debtor lives (US debtors west of the lender's
    # zone are earlier still).
    call(fifth, at(6, 30), None)


def _summary(session: Session, tenant: Tenant) -> str:
    """The day read back: attempts, results and blocks by rule.

    Only the replayed day's (the first day with attempts), not the attempts of later days
    (the demo's desk today, a collector's work in the workspace), so a second demo prints
    the same line.
    """
    first = session.scalar(select(func.min(ContactAttempt.attempted_at)))
    if first is None:
        return "no attempts"
    zone = zoneinfo.ZoneInfo(tenant.timezone)
    day = first.astimezone(zone).date()
    replayed = (
        ContactAttempt.attempted_at >= dt.datetime.combine(day, dt.time(0), tzinfo=zone),
        ContactAttempt.attempted_at
        < dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=zone),
    )
    rows = session.execute(
        select(ContactAttempt.status, ContactAttempt.result, ContactAttempt.blocked_rule).where(
            *replayed
        )
    ).all()
    blocked = Counter(rule for status, _, rule in rows if status == "blocked")
    results = Counter(result for status, result, _ in rows if status == "completed")
    reached = session.scalar(
        select(func.count(func.distinct(ContactAttempt.case_id))).where(
            *replayed, ContactAttempt.result == "connected", ContactAttempt.third_party.is_(False)
        )
    )
    rules = ", ".join(f"{rule} {n}" for rule, n in sorted(blocked.items()))
    return (
        f"{len(rows)} attempts: {sum(results.values())} completed"
        f" ({results.get('connected', 0)} connected), {sum(blocked.values())} blocked"
        f" ({rules}); {reached} debtors reached, their cases moved to in progress"
    )
