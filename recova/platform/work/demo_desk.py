"""The demo's desk today: every collector of each lender finds a full queue and a day at work.

``recova demo`` replays yesterday's calls (``recova.platform.contact.demo``) and a
promise, a plan and an offer per lender (``recova.platform.work.demo``); this fills TODAY
on each lender's calendar for every collector holding its cases:

- what is due: two or three promises made days ago that fall due today, one or two
  callbacks due a few minutes ago and one later today, and a settlement the collector
  asked for yesterday at a discount above their own limit, waiting for their manager;
  and a record to judge them by: one or two promises due yesterday, paid that evening
  (kept), and one due five days ago with nothing paid (broken);
- once the contact window has been open half an hour (the day has started), the calls so
  far, spread over the window up to now: no answers, a busy line, an SMS, right-party
  contacts (two or three ending in a promise), a refusal, and the gate's blocks: a call
  before the window opened and the jurisdiction's cap (CN: a fourth conversation with the
  same debtor in a day; US: calling back within the week's quiet after a conversation);
  and a debtor paying a promise due today in full, sent in as the lender's payment file
  (the ingestion path), so the promise is kept.

Everything goes through the product's services, at instants earlier today (the gate's
``at``, a promise's and an offer's ``today``, a callback's ``now``); the rows those
services stamp with the clock (a promise's or an offer's creation) are then dated to the
replayed instant. The cases are each collector's first untouched ones by id (no attempt,
promise, plan, offer or callback yet) whose debtor's contact window is open at the
instants of their calls, so the same data gives the same desk. A part already there (the
collector's promises due today made before today; their attempts today) is left alone: a
second demo the same day adds nothing and prints the same line, a demo the next day adds
that day, and a demo before the window opens leaves the day's calls to the next demo
after it.
"""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from pathlib import Path

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from recova.connectors.models import FeedKind, IngestionMapping, IngestionRun, RunMode, RunStatus
from recova.connectors.services import ingest_local_file
from recova.platform.allocation.models import Assignment, Placement
from recova.platform.auth.models import Role, User
from recova.platform.auth.principal import Principal
from recova.platform.cases.models import Account, Case, CaseStatus, Contact, ContactKind, Debtor
from recova.platform.compliance.gate import Actor, attempt_contact, debtor_zone, load_target
from recova.platform.compliance.localtime import in_all_windows
from recova.platform.compliance.packs import Rules
from recova.platform.compliance.policy import policy_in_force
from recova.platform.contact.models import AttemptStatus, Channel, ContactAttempt, Result
from recova.platform.contact.services import outcome_codes, record_outcome
from recova.platform.kernel.db import utcnow
from recova.platform.kernel.extension import Platform
from recova.platform.payments.models import Payment, PaymentKind
from recova.platform.work import promises, settlements
from recova.platform.work.evaluation import evaluate_accounts
from recova.platform.work.followup import schedule_callback
from recova.platform.work.jobs import DAILY_ACTOR, PAYMENTS_ACTOR
from recova.platform.work.models import (
    ApprovalLevel,
    PaymentPlan,
    Promise,
    PromiseStatus,
    Settlement,
    SettlementStatus,
)
from recova.platform.work.money import money
from recova.tenants.models import Tenant
from recova.tenants.scope import tenant_scope

#: How long after the contact window opens the collectors' day counts as started (before
#: that, there would be too little of it to spread a day's calls over).
DAY_STARTS_AFTER = dt.timedelta(minutes=30)
#: A collector's untouched cases read for each part of the day (the calls skip debtors
#: whose window is shut at their instants, so more than the day's dozen).
_POOL = 60

#: What the collectors write, in the lender's language.
NOTES = {
    "CN": {
        "promise": "本人接听，承诺按期还款",  # noqa: RUF001 - Chinese punctuation
        "discount": "本人接听，询问减免方案，考虑后回复",  # noqa: RUF001 - Chinese punctuation
        "refused": "本人接听，拒绝还款",  # noqa: RUF001 - Chinese punctuation
        "hung_up": "接通后挂断",
        "callback": "客户约定此时回电",
        "settlement": "客户可一次性结清，申请减免，超出催收员权限，请主管审批",  # noqa: RUF001 - Chinese punctuation
    },
    "US": {
        "promise": "Spoke with the debtor: promised to pay",
        "discount": "Spoke with the debtor: asked about settling, will think it over",
        "refused": "Spoke with the debtor: refused to pay",
        "hung_up": "Answered and hung up",
        "callback": "Asked to be called back at this time",
        "settlement": "Can pay a lump sum now if we settle; above my limit, for the manager",
    },
}
#: How the debtors of each jurisdiction pay (a payment file's channel column).
PAYMENT_CHANNELS = {"CN": "微信支付", "US": "debit_card"}


@dataclass(frozen=True)
class DeskDay:
    """Today on a lender's calendar, its contact window, and how far into it ``now`` is."""

    date: dt.date
    zone: str
    now: dt.datetime
    window_opens: dt.datetime
    window_closes: dt.datetime

    @classmethod
    def of(
        cls, *, now: dt.datetime, timezone: str, window_start: dt.time, window_end: dt.time
    ) -> DeskDay:
        date = now.astimezone(zoneinfo.ZoneInfo(timezone)).date()
        return cls(
            date=date,
            zone=timezone,
            now=now,
            window_opens=_local(date, window_start, timezone),
            window_closes=_local(date, window_end, timezone),
        )

    @property
    def start(self) -> dt.datetime:
        return _local(self.date, dt.time(0), self.zone)

    @property
    def end(self) -> dt.datetime:
        return _local(self.date + dt.timedelta(days=1), dt.time(0), self.zone)

    @property
    def started(self) -> bool:
        """Whether the collectors' calls have begun (the window open half an hour)."""
        return self.now >= self.window_opens + DAY_STARTS_AFTER

    def at(self, days_before: int, hour: int, minute: int) -> dt.datetime:
        """A wall-clock time ``days_before`` days before today, on the lender's calendar."""
        return _local(self.date - dt.timedelta(days=days_before), dt.time(hour, minute), self.zone)

    def call_at(self, share: float | None) -> dt.datetime:
        """The instant ``share`` of the way through the day's calls so far (from just after
        the window opened to just before now, or its close); None: before it opened."""
        if share is None:
            return self.window_opens - dt.timedelta(minutes=20)
        first = self.window_opens + dt.timedelta(minutes=5)
        last = min(self.now, self.window_closes) - dt.timedelta(minutes=3)
        return (first + (last - first) * share).replace(microsecond=0)

    def later_callback(self) -> dt.datetime:
        """A callback later today inside the window; after the window's last hour, first
        thing tomorrow."""
        later = max(self.now, self.window_opens) + dt.timedelta(minutes=90)
        later = (later + dt.timedelta(minutes=-later.minute % 5)).replace(second=0, microsecond=0)
        if later < self.window_closes - dt.timedelta(minutes=5):
            return later
        return self.window_opens + dt.timedelta(days=1, minutes=30)


def _local(day: dt.date, clock: dt.time, timezone: str) -> dt.datetime:
    return dt.datetime.combine(day, clock, tzinfo=zoneinfo.ZoneInfo(timezone))


def demo_desk(
    objects: Platform,
    slugs: list[str],
    *,
    folder: Path,
    now: dt.datetime | None = None,
) -> list[tuple[str, str]]:
    """Fill today's desk of every collector of each lender; returns (tenant, summary) lines.

    ``folder`` receives the payment files sent in for the day; ``now`` is for tests.
    """
    moment = now or utcnow()
    lines = []
    for slug in slugs:
        with tenant_scope(slug, db=objects.db) as session:
            tenant: Tenant = session.info["tenant"]
            rules = policy_in_force(session, jurisdiction=tenant.jurisdiction, at=moment).rules
            day = DeskDay.of(
                now=moment,
                timezone=tenant.timezone,
                window_start=rules.window_start,
                window_end=rules.window_end,
            )
            collectors = _collectors(session)
        payments: list[DeskPayment] = []
        for index, collector in enumerate(collectors):
            with tenant_scope(slug, db=objects.db) as session:
                if not _due_today_exists(session, collector, day):
                    payments += _due_today(session, tenant, collector, index, day)
            if day.started:
                with tenant_scope(slug, db=objects.db) as session:
                    if not _calls_today_exist(session, collector, day):
                        _calls_today(
                            session,
                            objects,
                            tenant=tenant,
                            collector=collector,
                            index=index,
                            day=day,
                            rules=rules,
                        )
        if day.started:
            with tenant_scope(slug, db=objects.db) as session:
                payments += _paid_today(session, collectors, day)
        _send_payments(objects, slug, payments, day, folder)
        with tenant_scope(slug, db=objects.db) as session:
            lines.append((slug, _summary(session, session.info["tenant"], collectors, day)))
    return lines


def _collectors(session: Session) -> list[Principal]:
    """The collectors holding the tenant's cases now, by agency and id, as the principals
    they act as."""
    rows = session.execute(
        select(Assignment.collector_id, Placement.agency_id)
        .join(Placement, Placement.id == Assignment.placement_id)
        .where(Assignment.ended_at.is_(None), Placement.recalled_on.is_(None))
        .distinct()
        .order_by(Placement.agency_id, Assignment.collector_id)
    ).all()
    users = {
        user.id: user
        for user in session.scalars(select(User).where(User.id.in_([r[0] for r in rows])))
    }
    return [
        Principal(
            kind="user",
            subject_id=collector_id,
            display=users[collector_id].email,
            role=Role.COLLECTOR,
            agency_id=agency_id,
            full_name=users[collector_id].full_name,
        )
        for collector_id, agency_id in rows
        if collector_id in users
    ]


def _label(collector: Principal) -> str:
    return f"user:{collector.subject_id}"


def _untouched_cases(session: Session, collector_id: int) -> list[tuple[Case, int]]:
    """The collector's first cases by id that nobody has worked yet, with their debtor's
    first own phone: no attempt, promise, plan, offer or callback, no flag."""
    own_phone = (
        select(func.min(Contact.id))
        .where(
            Contact.debtor_id == Case.debtor_id,
            Contact.relation == "self",
            Contact.kind == ContactKind.PHONE,
            Contact.do_not_contact.is_(False),
        )
        .correlate(Case)
        .scalar_subquery()
    )
    rows = session.execute(
        select(Case, own_phone)
        .join(Placement, Placement.case_id == Case.id)
        .join(Assignment, Assignment.placement_id == Placement.id)
        .join(Debtor, Debtor.id == Case.debtor_id)
        .where(
            Placement.recalled_on.is_(None),
            Assignment.ended_at.is_(None),
            Assignment.collector_id == collector_id,
            Assignment.next_action_at.is_(None),
            Case.status.in_([CaseStatus.PLACED, CaseStatus.IN_PROGRESS]),
            func.coalesce(func.cardinality(Case.flags), 0) == 0,
            Debtor.do_not_contact.is_(False),
            own_phone.is_not(None),
            ~exists().where(ContactAttempt.case_id == Case.id),
            ~exists().where(Promise.case_id == Case.id),
            ~exists().where(PaymentPlan.case_id == Case.id),
            ~exists().where(Settlement.case_id == Case.id),
        )
        .order_by(Case.id)
        .limit(_POOL)
    ).all()
    return [(case, phone) for case, phone in rows]


def _share_of_balance(session: Session, case: Case, divisor: int) -> Decimal:
    account = session.get(Account, case.account_id)
    assert account is not None  # a case always has its account
    return money(
        (account.outstanding_total / divisor).quantize(Decimal("0.01"), rounding=ROUND_DOWN),
        account.currency,
    )


def _dated(row: Promise | Settlement, instant: dt.datetime) -> None:
    """Date a replayed promise or offer to the instant it was made (its service stamps the
    clock); the evaluation counts payments from that day on."""
    row.created_at = instant


def _note(tenant: Tenant, key: str) -> str:
    return NOTES.get(tenant.jurisdiction.value, NOTES["US"])[key]


# --- what is due today ---------------------------------------------------------------------


def _due_today_exists(session: Session, collector: Principal, day: DeskDay) -> bool:
    """Whether the collector's promises due today, made before today, are there."""
    found = session.scalar(
        select(Promise.id)
        .where(
            Promise.created_by == _label(collector),
            Promise.due_date == day.date,
            Promise.created_at < day.start,
        )
        .limit(1)
    )
    return found is not None


@dataclass(frozen=True)
class DeskPayment:
    """A payment the desk sends in through the lender's payment file."""

    external_id: str
    account: Account
    amount: Decimal
    currency: str
    paid_at: dt.datetime


def _due_today(
    session: Session, tenant: Tenant, collector: Principal, index: int, day: DeskDay
) -> list[DeskPayment]:
    """Promises made days ago due today, callbacks due now and later, an offer waiting for
    the manager, and earlier promises already judged; returns the payments they need."""
    pool: Iterator[tuple[Case, int]] = iter(_untouched_cases(session, collector.subject_id))
    # Two or three promises due today (every other collector has three).
    for n, days_ago in enumerate((2, 3, 5)[: 2 + index % 2]):
        picked = next(pool, None)
        if picked is None:
            return []
        case, _ = picked
        promise = promises.create_promise(
            session,
            case=case,
            amount=_share_of_balance(session, case, 4),
            due_date=day.date,
            actor=collector,
            today=day.date - dt.timedelta(days=days_ago),
        )
        _dated(promise, day.at(days_ago, 10 + 2 * n, 20))
    # Callbacks the debtors asked for yesterday: one or two due a few minutes ago, one later.
    due_now = [day.now - dt.timedelta(minutes=4)]
    if index % 2 == 0:
        due_now.append(day.now - dt.timedelta(minutes=11))
    for when in [*due_now, day.later_callback()]:
        picked = next(pool, None)
        if picked is None:
            return []
        schedule_callback(
            session,
            case=picked[0],
            at=when,
            actor=collector,
            timezone=tenant.timezone,
            note=_note(tenant, "callback"),
            now=when - dt.timedelta(days=1),
        )
    picked = next(pool, None)
    if picked is None:
        return []
    _offer_for_the_manager(session, tenant, collector, picked[0], day)
    return _judged_before(
        session, tenant=tenant, collector=collector, index=index, day=day, pool=pool
    )


def _judged_before(
    session: Session,
    *,
    tenant: Tenant,
    collector: Principal,
    index: int,
    day: DeskDay,
    pool: Iterator[tuple[Case, int]],
) -> list[DeskPayment]:
    """The collector's record (their kept rate): one or two promises due yesterday, paid
    that evening, and one due five days ago that nothing was paid on, judged broken as
    the daily evaluation would; returns the payments of the kept ones."""
    paid: list[DeskPayment] = []
    for n in range(1 + index % 2):
        picked = next(pool, None)
        if picked is None:
            return paid
        case = picked[0]
        promise = promises.create_promise(
            session,
            case=case,
            amount=_share_of_balance(session, case, 6),
            due_date=day.date - dt.timedelta(days=1),
            actor=collector,
            today=day.date - dt.timedelta(days=6),
        )
        _dated(promise, day.at(6, 11 + n, 5))
        account = session.get(Account, case.account_id)
        assert account is not None
        paid.append(
            DeskPayment(
                f"DEMO-DESK-{promise.id}",
                account,
                promise.amount,
                promise.currency,
                day.at(1, 19, 40 + n),
            )
        )
    picked = next(pool, None)
    if picked is not None:
        broken = promises.create_promise(
            session,
            case=picked[0],
            amount=_share_of_balance(session, picked[0], 5),
            due_date=day.date - dt.timedelta(days=5),
            actor=collector,
            today=day.date - dt.timedelta(days=9),
        )
        _dated(broken, day.at(9, 15, 10))
        promises.evaluate_promise(
            session, broken, today=day.date, timezone=tenant.timezone, actor=DAILY_ACTOR
        )
    return paid


def _offer_for_the_manager(
    session: Session, tenant: Tenant, collector: Principal, case: Case, day: DeskDay
) -> None:
    """Yesterday afternoon's settlement request at a discount halfway between the
    collector's limit and the manager's: it waits for the manager (none if the limits
    leave no such discount)."""
    yesterday = day.date - dt.timedelta(days=1)
    limits = settlements.limits_for(session, case_id=case.id, tenant_id=tenant.id, day=yesterday)
    if limits.manager <= limits.collector:
        return
    account = session.get(Account, case.account_id)
    assert account is not None
    balance = account.outstanding_total
    percent = ((limits.collector + limits.manager) / 2).quantize(Decimal("0.01"))
    amount = settlements.amount_for_discount(balance, percent, account.currency)
    if settlements.required_level(balance, amount, limits) is not ApprovalLevel.MANAGER:
        return
    offer = settlements.offer_settlement(
        session,
        case=case,
        amount=amount,
        expires_on=day.date + dt.timedelta(days=14),
        actor=collector,
        level=ApprovalLevel.COLLECTOR,
        tenant_id=tenant.id,
        today=yesterday,
        note=_note(tenant, "settlement"),
    )
    _dated(offer, day.at(1, 16, 30))


# --- the day's calls -----------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One attempt of the day's script."""

    #: Where in the day's calls so far (0 the first, 1 the last); None: before the window.
    share: float | None
    #: Which of the day's cases (the same letter, the same case).
    case: str
    #: The outcome recorded; None: the gate is expected to block the attempt.
    result: Result | None
    channel: Channel = Channel.CALL_OUT
    #: A promise to pay made on the call, due that many days later.
    promise_in_days: int | None = None
    note: str | None = None


def _script(rules: Rules, index: int) -> list[Step]:
    """A collector's day so far: 16 to 19 attempts on a dozen cases."""
    r = Result
    steps = [
        Step(None, "early", None),  # before the contact window opened: blocked
        Step(0.0, "a", r.NO_ANSWER),
        Step(0.06, "b", r.CONNECTED, promise_in_days=7, note="promise"),
        Step(0.12, "c", r.BUSY),
        Step(0.17, "d", r.DELIVERED, channel=Channel.SMS),
        Step(0.23, "e", r.NO_ANSWER),
        Step(0.29, "f", r.CONNECTED, promise_in_days=3, note="promise"),
        Step(0.35, "a", r.NO_ANSWER),
        Step(0.41, "g", r.REFUSED, note="refused"),
        Step(0.47, "h", r.NO_ANSWER),
        Step(0.53, "i", r.CONNECTED, note="discount"),
        Step(0.59, "j", r.NO_ANSWER),
        # Every other collector's third promise of the day.
        Step(0.65, "c", r.CONNECTED, promise_in_days=10 if index % 2 == 0 else None, note=None),
        Step(0.71, "k", r.BUSY),
        Step(1.0, "l", r.NO_ANSWER),
    ]
    return steps + _capped(rules)


def _capped(rules: Rules) -> list[Step]:
    """Attempts the jurisdiction's cap then blocks (none if its caps are out of reach)."""
    if rules.quiet_days_after_conversation:
        return [Step(0.84, "f", None)]  # the debtor reached at 0.29: a week's quiet
    for cap, result, note in (
        (rules.max_connected_calls_per_day, Result.REFUSED, "hung_up"),
        (rules.max_unanswered_calls_per_number_per_day, Result.NO_ANSWER, None),
    ):
        if cap is not None and 0 < cap <= 6:
            shares = [0.74 + 0.2 * n / cap for n in range(cap + 1)]
            return [Step(s, "m", result, note=note) for s in shares[:-1]] + [
                Step(shares[-1], "m", None)
            ]
    return []


def _calls_today_exist(session: Session, collector: Principal, day: DeskDay) -> bool:
    found = session.scalar(
        select(ContactAttempt.id)
        .where(
            ContactAttempt.user_id == collector.subject_id,
            ContactAttempt.attempted_at >= day.start,
            ContactAttempt.attempted_at < day.end,
        )
        .limit(1)
    )
    return found is not None


def _calls_today(
    session: Session,
    objects: Platform,
    *,
    tenant: Tenant,
    collector: Principal,
    index: int,
    day: DeskDay,
    rules: Rules,
) -> None:
    """The collector's calls so far today, in time order, each through the gate."""
    steps = sorted(_script(rules, index), key=lambda s: day.call_at(s.share))
    cases = _cases_for(
        session, objects, tenant=tenant, collector=collector, steps=steps, day=day, rules=rules
    )
    codes: dict[str, str] = {}
    for code in outcome_codes(session):
        if code.is_active:
            codes.setdefault(code.result, code.code)
    actor = Actor.of(collector)
    for step in steps:
        if step.case not in cases:
            continue  # too few cases for the whole script
        case, phone = cases[step.case]
        when = day.call_at(step.share)
        attempt = attempt_contact(
            session,
            objects,
            tenant=tenant,
            case_id=case.id,
            contact_id=phone,
            channel=step.channel,
            actor=actor,
            at=when,
        )
        if attempt is None or attempt.status != AttemptStatus.PENDING:
            continue
        # A block the gate did not make (a debtor east of the lender, say): nobody answered.
        result = step.result or Result.NO_ANSWER
        is_call = step.channel is Channel.CALL_OUT
        record_outcome(
            session,
            attempt,
            jurisdiction=tenant.jurisdiction,
            code=codes[result.value],
            actor=collector,
            notes=_note(tenant, step.note) if step.note else None,
            recording_ref=f"rec-{when:%Y%m%d}-{case.id}-{when:%H%M}" if is_call else None,
        )
        if step.promise_in_days is not None and result is Result.CONNECTED:
            promise = promises.create_promise(
                session,
                case=case,
                amount=_share_of_balance(session, case, 5),
                due_date=day.date + dt.timedelta(days=step.promise_in_days),
                actor=collector,
                today=day.date,
            )
            _dated(promise, when + dt.timedelta(minutes=3))


def _cases_for(
    session: Session,
    objects: Platform,
    *,
    tenant: Tenant,
    collector: Principal,
    steps: list[Step],
    day: DeskDay,
    rules: Rules,
) -> dict[str, tuple[Case, int]]:
    """A case for each letter of the script: the first untouched one whose debtor's window
    (every zone the gate would consider) is open at each of its calls."""
    pool = _untouched_cases(session, collector.subject_id)
    zones: dict[int, tuple[str, ...]] = {}

    def zones_of(case_id: int, phone: int) -> tuple[str, ...]:
        if case_id not in zones:
            target = load_target(session, case_id=case_id, contact_id=phone, at=day.now)
            zones[case_id] = (
                debtor_zone(
                    target,
                    channel=Channel.CALL_OUT,
                    tenant_timezone=tenant.timezone,
                    cipher=objects.cipher,
                )[0]
                if target is not None
                else ()
            )
        return zones[case_id]

    chosen: dict[str, tuple[Case, int]] = {}
    used: set[int] = set()
    letters = list(dict.fromkeys(step.case for step in steps if step.case != "early"))
    for letter in letters:
        instants = [day.call_at(s.share) for s in steps if s.case == letter]
        for case, phone in pool:
            if case.id in used:
                continue
            found = zones_of(case.id, phone)
            if found and all(
                in_all_windows(t, found, rules.window_start, rules.window_end) for t in instants
            ):
                chosen[letter] = (case, phone)
                used.add(case.id)
                break
    # The early call is blocked wherever the debtor is: any case left will do.
    early = next((c for c in pool if c[0].id not in used), None)
    if early is not None:
        chosen["early"] = early
    return chosen


# --- the day's payments --------------------------------------------------------------------


def _paid_today(session: Session, collectors: list[Principal], day: DeskDay) -> list[DeskPayment]:
    """Each collector's first promise due today, paid in full 20 minutes after their first
    call (and after the case came to them: the team page credits the collector whose
    assignment was open when the money came in). Read from the day's rows, so a run whose
    payment file failed sends it again."""
    paid: list[DeskPayment] = []
    for collector in collectors:
        first_call = session.scalar(
            select(func.min(ContactAttempt.attempted_at)).where(
                ContactAttempt.user_id == collector.subject_id,
                ContactAttempt.attempted_at >= day.start,
                ContactAttempt.attempted_at < day.end,
                ContactAttempt.status != AttemptStatus.BLOCKED,
            )
        )
        found = session.execute(
            select(Promise, Account, Assignment.assigned_at)
            .join(Case, Case.id == Promise.case_id)
            .join(Account, Account.id == Case.account_id)
            .join(Placement, (Placement.case_id == Case.id) & Placement.recalled_on.is_(None))
            .join(
                Assignment,
                (Assignment.placement_id == Placement.id) & Assignment.ended_at.is_(None),
            )
            .where(
                Promise.created_by == _label(collector),
                Promise.due_date == day.date,
                Promise.created_at < day.start,
            )
            .order_by(Promise.id)
            .limit(1)
        ).first()
        if first_call is None or found is None:
            continue
        promise, account, assigned_at = found
        paid_at = max(first_call + dt.timedelta(minutes=20), assigned_at + dt.timedelta(seconds=1))
        paid.append(
            DeskPayment(
                f"DEMO-DESK-{promise.id}",
                account,
                promise.amount,
                promise.currency,
                min(paid_at, day.now),
            )
        )
    return paid


def _send_payments(
    objects: Platform, slug: str, payments: list[DeskPayment], day: DeskDay, folder: Path
) -> None:
    """Send the payments not yet on record in as the lender's payment file (its payments
    mapping), and judge their promises at once, as the job after the run would."""
    if not payments:
        return
    with tenant_scope(slug, db=objects.db) as session:
        tenant: Tenant = session.info["tenant"]
        mapping = session.scalar(
            select(IngestionMapping)
            .where(IngestionMapping.kind == FeedKind.PAYMENTS)
            .order_by(IngestionMapping.id)
            .limit(1)
        )
        if mapping is None:
            return  # the lender sends no payment files
        known = set(
            session.scalars(
                select(Payment.external_id).where(
                    Payment.external_id.in_([p.external_id for p in payments])
                )
            )
        )
        columns, mapping_name = dict(mapping.columns), mapping.name
    missing = [p for p in payments if p.external_id not in known]
    if not missing:
        return
    zone = zoneinfo.ZoneInfo(tenant.timezone)
    channel = PAYMENT_CHANNELS.get(tenant.jurisdiction.value)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{slug}-desk-payments-{day.now.astimezone(zone):%Y-%m-%dT%H%M}.jsonl"
    with path.open("w", encoding="utf-8") as out:
        for payment in missing:
            values = {
                "payment_external_id": payment.external_id,
                "account_external_id": payment.account.external_id,
                "amount": str(payment.amount),
                "currency": payment.currency,
                "paid_at": payment.paid_at.astimezone(zone).isoformat(),
                "channel": channel,
            }
            row = {columns[k]: v for k, v in values.items() if k in columns}
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    _, run_id = ingest_local_file(
        objects, tenant_slug=slug, path=path, mapping_name=mapping_name, mode=RunMode.DELTA
    )
    with tenant_scope(slug, db=objects.db) as session:
        run = session.get(IngestionRun, run_id)
        assert run is not None
        if run.status is not RunStatus.COMPLETED or run.rejected:
            raise RuntimeError(
                f"the desk's payments for {slug} were not all loaded: run {run_id} is"
                f" {run.status.value} with {run.rejected} rows rejected"
            )
        evaluate_accounts(
            session,
            accounts=[p.account.id for p in missing],
            today=day.date,
            timezone=tenant.timezone,
            actor=PAYMENTS_ACTOR,
        )


# --- what the desk holds -------------------------------------------------------------------


def _summary(session: Session, tenant: Tenant, collectors: list[Principal], day: DeskDay) -> str:
    """Today's desk read back, so a second demo the same day prints the same line."""
    if not collectors:
        return "no collector holds a case: no desk to fill"
    ids = [c.subject_id for c in collectors]
    labels = [_label(c) for c in collectors]
    today = (day.start, day.end)
    attempts = session.execute(
        select(
            ContactAttempt.status,
            ContactAttempt.result,
            ContactAttempt.third_party,
            ContactAttempt.blocked_rule,
        ).where(
            ContactAttempt.user_id.in_(ids),
            ContactAttempt.attempted_at >= today[0],
            ContactAttempt.attempted_at < today[1],
        )
    ).all()
    blocked = Counter(rule for status, _, _, rule in attempts if status == AttemptStatus.BLOCKED)
    reached = sum(1 for _, result, third, _ in attempts if result == Result.CONNECTED and not third)
    made = session.scalar(
        select(func.count())
        .select_from(Promise)
        .where(
            Promise.created_by.in_(labels),
            Promise.created_at >= today[0],
            Promise.created_at < today[1],
        )
    )
    due = Counter(
        session.scalars(
            select(Promise.status).where(
                Promise.created_by.in_(labels), Promise.due_date == day.date
            )
        )
    )
    judged = Counter(
        session.scalars(
            select(Promise.status).where(
                Promise.created_by.in_(labels),
                Promise.due_date >= day.date - dt.timedelta(days=30),
                Promise.due_date < day.date,
                Promise.status.in_(
                    [PromiseStatus.KEPT, PromiseStatus.PARTLY_KEPT, PromiseStatus.BROKEN]
                ),
            )
        )
    )
    record = (
        f"{judged[PromiseStatus.KEPT]} of {_count(judged.total(), 'earlier promise')}"
        " (due in the last 30 days) kept"
    )
    held = (
        Placement.recalled_on.is_(None),
        Assignment.ended_at.is_(None),
        Assignment.collector_id.in_(ids),
    )
    callbacks = session.scalar(
        select(func.count())
        .select_from(Assignment)
        .join(Placement, Placement.id == Assignment.placement_id)
        .where(*held, Assignment.next_action_at < today[1])
    )
    paid = session.scalar(
        select(func.coalesce(func.sum(Payment.amount), 0))
        .join(Case, Case.account_id == Payment.account_id)
        .join(Placement, Placement.case_id == Case.id)
        .join(Assignment, Assignment.placement_id == Placement.id)
        .where(
            *held,
            Payment.kind == PaymentKind.PAYMENT,
            Payment.paid_at >= today[0],
            Payment.paid_at < today[1],
        )
    )
    waiting = session.scalar(
        select(func.count())
        .select_from(Settlement)
        .where(
            Settlement.requested_by.in_(labels),
            Settlement.status == SettlementStatus.PENDING_APPROVAL,
            Settlement.required_level == ApprovalLevel.MANAGER,
        )
    )
    if attempts:
        rules = ", ".join(f"{rule} {n}" for rule, n in sorted(blocked.items()))
        return (
            f"{_count(len(collectors), 'collector')} today: {_count(len(attempts), 'attempt')}"
            f" ({reached} reached the debtor; {blocked.total()} blocked: {rules or 'none'}),"
            f" {_count(made or 0, 'promise')} made, {due.total()} due today"
            f" ({due[PromiseStatus.KEPT]} kept, {paid:,.2f} {tenant.currency} paid), {record},"
            f" {_count(callbacks or 0, 'callback')} due,"
            f" {_count(waiting or 0, 'settlement')} waiting for a manager"
        )
    window = day.window_opens.astimezone(zoneinfo.ZoneInfo(day.zone))
    if day.now < day.window_opens:
        state = f"has not started (the contact window opens at {window:%H:%M} {day.zone})"
    else:
        state = f"has just started (the contact window opened at {window:%H:%M} {day.zone})"
    return (
        f"the day {state}: {_count(len(collectors), 'collector')} with"
        f" {_count(due.total(), 'promise')} due today, {_count(callbacks or 0, 'callback')} due,"
        f" {_count(waiting or 0, 'settlement')} waiting for a manager; {record}"
    )


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}" if n == 1 else f"{n} {thing}s"
