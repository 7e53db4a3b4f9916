"""The compliance gate: windows in local time, caps across agencies, third parties, flags,
packs replayed by date, policies that tighten only, and exact caps under concurrency."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import func, select

from recova.platform.compliance.gate import Actor, attempt_contact
from recova.platform.compliance.localtime import in_all_windows, phone_zones
from recova.platform.compliance.policy import PolicyError, save_policy
from recova.platform.contact.models import Channel, ContactAttempt
from recova.platform.contact.services import ContactError, outcome_codes, record_outcome
from recova.platform.kernel.db import Database
from recova.tenants.scope import tenant_scope
from tests.compliance_support import Lender, lender_for, local, make_lender, zone_where_it_is

SH = "Asia/Shanghai"
NY = "America/New_York"


@pytest.fixture
def cn(app, shared_lender_cn, rolled_back) -> Lender:  # type: ignore[no-untyped-def]
    return lender_for(app, "CN", shared_lender_cn, rolled_back)


@pytest.fixture
def us(app, shared_lender_us, rolled_back) -> Lender:  # type: ignore[no-untyped-def]
    return lender_for(app, "US", shared_lender_us, rolled_back)


# --- contact windows -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("clock", "allowed"),
    [
        ((7, 59), False),
        ((8, 0), True),
        ((20, 59), True),
        ((21, 0), True),
        ((21, 59), True),
        ((22, 0), False),
    ],
)
def test_cn_window_in_shanghai(cn: Lender, clock: tuple[int, int], allowed: bool) -> None:
    debt = cn.debt()
    attempt = cn.attempt(debt, local(SH, 2026, 6, 10, *clock), channel=Channel.SMS)
    assert (attempt.status == "pending") is allowed
    if not allowed:
        assert attempt.blocked_rule == "cn.contact_window"
        expected_day = 10 if clock < (8, 0) else 11
        assert attempt.next_allowed_at == local(SH, 2026, 6, expected_day, 8, 0)
    assert attempt.local_timezone == SH


@pytest.mark.parametrize(
    ("clock", "allowed"),
    [
        ((7, 59), False),
        ((8, 0), True),
        ((20, 59), True),
        ((21, 0), False),
        ((21, 59), False),
        ((22, 0), False),
    ],
)
def test_us_window_in_new_york(us: Lender, clock: tuple[int, int], allowed: bool) -> None:
    debt = us.debt()
    attempt = us.attempt(debt, local(NY, 2026, 6, 10, *clock), channel=Channel.SMS)
    assert (attempt.status == "pending") is allowed
    if not allowed:
        assert attempt.blocked_rule == "us.contact_window"
        expected_day = 10 if clock < (8, 0) else 11
        assert attempt.next_allowed_at == local(NY, 2026, 6, expected_day, 8, 0)


def test_window_on_the_days_clocks_change_in_new_york(us: Lender) -> None:
    debt = us.debt()
    # Spring forward (2026-03-08): 08:00 local is 12:00 UTC, not 13:00.
    spring = dt.datetime(2026, 3, 8, 11, 59, tzinfo=dt.UTC)
    blocked = us.attempt(debt, spring, channel=Channel.SMS)
    assert blocked.blocked_rule == "us.contact_window"
    assert blocked.next_allowed_at == dt.datetime(2026, 3, 8, 12, 0, tzinfo=dt.UTC)
    assert us.attempt(debt, spring + dt.timedelta(minutes=1), channel=Channel.SMS).status == (
        "pending"
    )
    # The evening before, the next opening is already on the new offset.
    evening = us.attempt(debt, local(NY, 2026, 3, 7, 21, 30), channel=Channel.SMS)
    assert evening.next_allowed_at == dt.datetime(2026, 3, 8, 12, 0, tzinfo=dt.UTC)
    # Fall back (2026-11-01): 08:00 local is 13:00 UTC; 12:59 UTC is 07:59 EST.
    fall = dt.datetime(2026, 11, 1, 12, 59, tzinfo=dt.UTC)
    assert us.attempt(debt, fall, channel=Channel.SMS).blocked_rule == "us.contact_window"
    assert us.attempt(debt, fall + dt.timedelta(minutes=1), channel=Channel.SMS).status == (
        "pending"
    )


def test_cn_day_count_follows_the_local_day_on_a_dst_day(app) -> None:  # type: ignore[no-untyped-def]
    """A CN tenant's debtor living in New York: the day of three calls is New York's day."""
    cn = make_lender(app, "CN")
    debt = cn.debt(timezone=NY)
    for hour in (9, 10, 11):  # 2026-03-08, the spring-forward day in New York
        cn.attempt(debt, local(NY, 2026, 3, 8, hour), result="connected")
    fourth = cn.attempt(debt, local(NY, 2026, 3, 8, 12))
    assert fourth.blocked_rule == "cn.connected_calls_per_day"
    assert fourth.next_allowed_at == local(NY, 2026, 3, 9, 8, 0)


def test_debtor_zone_differs_from_the_tenants(cn: Lender) -> None:
    # 10:30 in Shanghai is 22:30 (EDT) the evening before in New York.
    at = local(SH, 2026, 6, 11, 10, 30)
    in_ny = cn.debt(timezone=NY)
    in_sh = cn.debt()
    blocked = cn.attempt(in_ny, at, channel=Channel.SMS)
    assert blocked.blocked_rule == "cn.contact_window"
    assert blocked.local_timezone == NY
    assert blocked.next_allowed_at == local(NY, 2026, 6, 11, 8, 0)
    assert cn.attempt(in_sh, at, channel=Channel.SMS).status == "pending"
    # No zone of their own: the address region, then the phone's region decide.
    by_region = cn.debt(region="CA")
    assert cn.attempt(by_region, at, channel=Channel.SMS).local_timezone == "America/Los_Angeles"
    by_phone = cn.debt(phones=("+12125550199",))
    made = cn.attempt(by_phone, at, channel=Channel.SMS)
    assert (made.local_timezone, made.blocked_rule) == (NY, "cn.contact_window")


def test_a_number_across_two_zones_must_be_in_both_windows(us: Lender) -> None:
    """Idaho's 208 covers Boise (Mountain time) and the panhandle (Pacific time), and the
    number alone cannot say which: the window must be open on both clocks."""
    la, boise = "America/Los_Angeles", "America/Boise"
    assert phone_zones("+12085550123") == (boise, la)
    debt = us.debt(phones=("+12085550123",))
    # 08:30 in Boise is 07:30 on the Pacific side: too early there.
    early = us.attempt(debt, local(boise, 2026, 6, 10, 8, 30), channel=Channel.SMS)
    assert (early.blocked_rule, early.local_timezone) == ("us.contact_window", la)
    assert early.next_allowed_at == local(la, 2026, 6, 10, 8, 0)
    assert us.attempt(debt, local(la, 2026, 6, 10, 8, 0), channel=Channel.SMS).status == ("pending")
    # 20:30 Pacific is 21:30 in Boise: the evening closes on Boise's clock.
    late = us.attempt(debt, local(la, 2026, 6, 10, 20, 30), channel=Channel.SMS)
    assert (late.blocked_rule, late.local_timezone) == ("us.contact_window", boise)
    assert late.next_allowed_at == local(la, 2026, 6, 11, 8, 0)


def test_a_toll_free_number_binds_in_every_zone_of_the_plan(us: Lender) -> None:
    """A US toll-free number names every zone of the numbering plan, America/Adak first:
    16:00 in Adak is 20:00 in New York and 21:30 in St John's, already too late there."""
    zones = phone_zones("+18005550123")
    assert zones[0] == "America/Adak"
    assert {NY, "Pacific/Guam", "America/St_Johns"} <= set(zones)
    debt = us.debt(phones=("+18005550123",))
    at = local("America/Adak", 2026, 6, 10, 16, 0)
    made = us.attempt(debt, at, channel=Channel.SMS)
    assert made.blocked_rule == "us.contact_window"
    # The next allowed instant is the first inside the window on every one of the clocks.
    opens = made.next_allowed_at
    assert opens is not None
    assert opens > at
    window = (dt.time(8, 0), dt.time(21, 0))
    assert in_all_windows(opens, zones, *window)
    assert not in_all_windows(opens - dt.timedelta(minutes=1), zones, *window)
    assert us.attempt(debt, opens, channel=Channel.SMS).status == "pending"
    # A number without a known zone falls back to the tenant's zone, as before.
    unknown = us.debt(phones=("+8640012345678",))
    assert us.attempt(unknown, at, channel=Channel.SMS).local_timezone == NY


def test_letters_are_not_bound_to_the_window(cn: Lender) -> None:
    debt = cn.debt()
    night = local(SH, 2026, 6, 10, 23, 0)
    made = cn.attempt(debt, night, channel=Channel.LETTER, contact_id=debt.address)
    assert made.status == "pending"


# --- caps ----------------------------------------------------------------------------------


def test_cn_fourth_connected_call_is_blocked_across_agencies(cn: Lender) -> None:
    debt = cn.debt()
    # The same debtor through a second case placed with the second agency.
    day = (2026, 6, 10)
    cn.attempt(debt, local(SH, *day, 9, 0), agency=0, result="connected")
    cn.attempt(debt, local(SH, *day, 10, 0), agency=0, result="connected")
    cn.attempt(debt, local(SH, *day, 11, 0), agency=None, result="connected")  # tenant staff
    fourth = cn.attempt(debt, local(SH, *day, 12, 0), agency=0)
    assert fourth.status == "blocked"
    assert fourth.blocked_rule == "cn.connected_calls_per_day"
    assert fourth.next_allowed_at == local(SH, 2026, 6, 11, 8, 0)
    # Unanswered calls do not count toward the connected cap; tomorrow starts afresh.
    assert cn.attempt(debt, local(SH, 2026, 6, 11, 8, 0)).status == "pending"


def test_cn_cap_counts_the_debtor_across_two_agencies_cases(cn: Lender) -> None:
    first = cn.debt(placed_with=0)
    # A second loan of the same debtor, placed with the other agency.
    with cn.scope() as session:
        from recova.platform.cases.models import Account, Case

        base = session.get(Case, first.case_id)
        assert base is not None
        account = Account(
            external_id=f"{base.account.external_id}-2",
            debtor_id=first.debtor_id,
            currency="CNY",
            original_principal=base.account.original_principal,
            outstanding_principal=base.account.original_principal,
            due_date=base.account.due_date,
            source_row={},
        )
        second_case = Case(account=account, debtor_id=first.debtor_id, status="placed")
        session.add_all([account, second_case])
        session.flush()
        from recova.platform.allocation.models import Placement

        session.add(
            Placement(
                case_id=second_case.id,
                agency_id=cn.agency_ids[1],
                started_on=dt.date(2026, 1, 1),
                ends_on=dt.date(2099, 1, 1),
                grace_days=0,
                balance_at_placement=base.account.original_principal,
                currency="CNY",
            )
        )
        second_id = second_case.id
    second = type(first)(**{**first.__dict__, "case_id": second_id})
    day = (2026, 6, 10)
    cn.attempt(first, local(SH, *day, 9, 0), agency=0, result="connected")
    cn.attempt(second, local(SH, *day, 9, 30), agency=1, result="connected")
    cn.attempt(first, local(SH, *day, 10, 0), agency=0, result="connected")
    assert cn.attempt(second, local(SH, *day, 11, 0), agency=1).blocked_rule == (
        "cn.connected_calls_per_day"
    )


def test_cn_unanswered_cap_is_per_number(cn: Lender) -> None:
    debt = cn.debt(phones=("+8613800000001", "+8613800000002"))
    for minute in range(6):
        made = cn.attempt(debt, local(SH, 2026, 6, 10, 9, minute), result="no_answer")
        assert made.status == "completed"
    seventh = cn.attempt(debt, local(SH, 2026, 6, 10, 10, 0))
    assert seventh.blocked_rule == "cn.unanswered_calls_per_number"
    other = cn.attempt(debt, local(SH, 2026, 6, 10, 10, 1), contact_id=debt.phones[1])
    assert other.status == "pending"


def test_cn_unanswered_cap_counts_a_number_shared_by_two_debtors(cn: Lender) -> None:
    """A family phone registered for two debtors is one number: six unanswered dials
    today, whoever's debt they were for, and it rests until tomorrow."""
    shared = "+8613800000077"
    husband = cn.debt(phones=(shared,))
    wife = cn.debt(phones=(shared, "+8613800000078"))
    for minute in range(4):
        cn.attempt(husband, local(SH, 2026, 6, 10, 9, minute), result="no_answer")
    for minute in range(2):
        made = cn.attempt(wife, local(SH, 2026, 6, 10, 9, 10 + minute), result="busy")
        assert made.status == "completed"
    seventh = cn.attempt(husband, local(SH, 2026, 6, 10, 11, 0))
    assert seventh.blocked_rule == "cn.unanswered_calls_per_number"
    assert seventh.next_allowed_at == local(SH, 2026, 6, 11, 8, 0)
    assert cn.attempt(wife, local(SH, 2026, 6, 10, 11, 1)).blocked_rule == (
        "cn.unanswered_calls_per_number"
    )
    # The wife's own other number is another number; texts are not dials.
    own = cn.attempt(wife, local(SH, 2026, 6, 10, 11, 2), contact_id=wife.phones[1])
    assert own.status == "pending"
    assert cn.attempt(husband, local(SH, 2026, 6, 10, 11, 3), channel=Channel.SMS).status == (
        "pending"
    )
    assert cn.attempt(husband, local(SH, 2026, 6, 11, 9, 0)).status == "pending"


def test_us_eighth_call_in_seven_days_is_blocked(us: Lender) -> None:
    debt = us.debt()
    first = local(NY, 2026, 6, 1, 9, 0)
    for n in range(7):
        made = us.attempt(debt, first + dt.timedelta(days=n, hours=n), result="no_answer")
        assert made.status == "completed", (n, made.blocked_rule)
    eighth = us.attempt(debt, local(NY, 2026, 6, 7, 16, 0))
    assert eighth.blocked_rule == "us.call_attempts_in_7_days"
    assert eighth.next_allowed_at == first + dt.timedelta(days=7)
    assert us.attempt(debt, first + dt.timedelta(days=7)).status == "pending"
    # Texts are not calls: the cap does not touch them.
    assert us.attempt(debt, local(NY, 2026, 6, 7, 15, 5), channel=Channel.SMS).status == ("pending")


def test_us_quiet_week_after_a_conversation(us: Lender) -> None:
    debt = us.debt()
    talk = local(NY, 2026, 6, 1, 10, 0)
    us.attempt(debt, talk, result="connected")
    during = us.attempt(debt, local(NY, 2026, 6, 4, 10, 0))
    assert during.blocked_rule == "us.quiet_after_conversation"
    assert during.next_allowed_at == talk + dt.timedelta(days=7)
    assert us.attempt(debt, talk + dt.timedelta(days=7, minutes=-1)).status == "blocked"
    assert us.attempt(debt, talk + dt.timedelta(days=7)).status == "pending"


def test_cn_refused_calls_count_toward_the_connected_cap(cn: Lender) -> None:
    """A refusal means someone answered: it is a connected call for the daily cap."""
    debt = cn.debt()
    for hour in (9, 10, 11):
        made = cn.attempt(debt, local(SH, 2026, 6, 10, hour, 0), result="refused")
        assert made.status == "completed"
    fourth = cn.attempt(debt, local(SH, 2026, 6, 10, 12, 0))
    assert fourth.blocked_rule == "cn.connected_calls_per_day"


def test_us_quiet_week_after_a_refusal(us: Lender) -> None:
    debt = us.debt()
    talk = local(NY, 2026, 6, 1, 10, 0)
    us.attempt(debt, talk, result="refused")
    during = us.attempt(debt, local(NY, 2026, 6, 4, 10, 0))
    assert during.blocked_rule == "us.quiet_after_conversation"
    assert during.next_allowed_at == talk + dt.timedelta(days=7)


def test_us_a_pending_call_holds_the_quiet_week_until_its_outcome(us: Lender) -> None:
    """The first call's outcome is not recorded yet: it may have been a conversation."""
    debt = us.debt()
    first = us.attempt(debt, local(NY, 2026, 6, 1, 10, 0))
    assert first.status == "pending"
    second = us.attempt(debt, local(NY, 2026, 6, 1, 11, 0))
    assert second.blocked_rule == "us.quiet_after_conversation"
    assert second.next_allowed_at == local(NY, 2026, 6, 8, 10, 0)
    # Unanswered after all: nobody talked, so the next call may go.
    us.outcome(first, "no_answer")
    assert us.attempt(debt, local(NY, 2026, 6, 1, 12, 0)).status == "pending"


def test_outcomes_must_fit_the_channel(cn: Lender) -> None:
    """A call is not "delivered", and nobody answers a text: such an outcome would let
    the attempt escape the rules that count results by channel."""
    debt = cn.debt()
    at = local(SH, 2026, 6, 10, 10, 0)
    call = cn.attempt(debt, at)
    text = cn.attempt(debt, at, channel=Channel.SMS)
    letter = cn.attempt(debt, at, channel=Channel.LETTER, contact_id=debt.address)
    with cn.scope() as session:
        codes = {c.result: c.code for c in outcome_codes(session)}

        def record(attempt: ContactAttempt, result: str) -> None:
            stored = session.get(ContactAttempt, attempt.id)
            assert stored is not None
            record_outcome(session, stored, jurisdiction="CN", code=codes[result],
                           recording_ref="r-1", actor="test:gate")  # fmt: skip

        for attempt, result in (
            (call, "delivered"),
            (call, "failed"),
            (text, "connected"),
            (text, "refused"),
            (letter, "no_answer"),
            (letter, "busy"),
        ):
            with pytest.raises(ContactError, match="does not fit"):
                record(attempt, result)
        record(call, "refused")
        record(text, "delivered")
        record(letter, "wrong_number")  # a wrong number, or address, fits any channel
    assert [a.result for a in cn.attempts(debt)] == ["refused", "delivered", "wrong_number"]


def _race(lender: Lender, debt, at: dt.datetime | None, url: str, *others) -> list[str]:  # type: ignore[no-untyped-def]
    """50 threads, each on its own connection, attempt the same debtor at once (with
    ``others``, the debts take turns: thread n calls debt n mod their count)."""
    debts = (debt, *others)
    db = Database(url, pool_size=50, max_overflow=0)
    tenant = lender.tenant()
    barrier = threading.Barrier(50)
    statuses: list[str] = []
    errors: list[BaseException] = []
    guard = threading.Lock()

    def one(n: int) -> None:
        try:
            with tenant_scope(tenant, db=db) as session:
                session.connection()  # check out before the start line
                barrier.wait()
                target = debts[n % len(debts)]
                made = attempt_contact(
                    session,
                    lender.objects,
                    tenant=tenant,
                    case_id=target.case_id,
                    contact_id=target.phones[0],
                    channel=Channel.CALL_OUT,
                    # The agency's collectors and the tenant's own staff, all at once.
                    actor=Actor(kind="agency", agency_id=lender.agency_ids[0], user_id=n)
                    if n % 2
                    else Actor(kind="tenant", user_id=n),
                    at=at,
                )
                assert made is not None
                status = made.status
            with guard:
                statuses.append(status)
        except BaseException as exc:  # reported below
            with guard:
                errors.append(exc)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    db.dispose()
    assert errors == []
    return statuses


@pytest.mark.real_commits  # fifty threads race on connections of their own
def test_fifty_concurrent_attempts_pass_exactly_the_us_cap(us: Lender, database_url: str) -> None:
    """Six unanswered calls this week: the cap lets exactly one more through (and that
    one, pending, also holds the quiet week for the others)."""
    debt = us.debt()
    for day in range(4, 10):
        made = us.attempt(debt, local(NY, 2026, 6, day, 10, 0), result="no_answer")
        assert made.status == "completed"
    statuses = _race(us, debt, local(NY, 2026, 6, 10, 14, 0), database_url)
    assert statuses.count("pending") == 1
    assert statuses.count("blocked") == 49
    stored = us.attempts(debt)
    assert sum(a.status == "pending" for a in stored) == 1
    assert {a.blocked_rule for a in stored if a.status == "blocked"} == {
        "us.call_attempts_in_7_days"
    }


@pytest.mark.real_commits  # fifty threads race on connections of their own
def test_fifty_concurrent_live_attempts_pass_exactly_the_cap(us: Lender, database_url: str) -> None:
    """Live attempts (the time read by the gate itself, as through the API): a pending
    call may be a conversation, so exactly one passes the quiet week."""
    debt = us.debt(timezone=zone_where_it_is(12))
    statuses = _race(us, debt, None, database_url)
    assert statuses.count("pending") == 1
    assert statuses.count("blocked") == 49
    assert {a.blocked_rule for a in us.attempts(debt) if a.status == "blocked"} == {
        "us.quiet_after_conversation"
    }


@pytest.mark.real_commits  # fifty threads race on connections of their own
def test_fifty_concurrent_attempts_pass_exactly_the_cn_cap(cn: Lender, database_url: str) -> None:
    debt = cn.debt()
    statuses = _race(cn, debt, local(SH, 2026, 6, 10, 14, 0), database_url)
    assert statuses.count("pending") == 3
    assert statuses.count("blocked") == 47


@pytest.mark.real_commits  # fifty threads race on connections of their own
def test_fifty_concurrent_dials_of_a_shared_number_pass_exactly_its_cap(
    cn: Lender, database_url: str
) -> None:
    """Two debtors share a phone that has rung unanswered four times today: of fifty
    dials at once, half for each debtor, exactly two pass (each debtor alone would let
    three through the connected-call cap), because the number is locked too."""
    shared = "+8613800000099"
    first, second = cn.debt(phones=(shared,)), cn.debt(phones=(shared,))
    for minute in range(4):
        made = cn.attempt(first, local(SH, 2026, 6, 10, 9, minute), result="no_answer")
        assert made.status == "completed"
    statuses = _race(cn, first, local(SH, 2026, 6, 10, 14, 0), database_url, second)
    assert statuses.count("pending") == 2
    assert statuses.count("blocked") == 48
    pending = [a for debt in (first, second) for a in cn.attempts(debt) if a.status == "pending"]
    assert len(pending) == 2


# --- third parties, flags ------------------------------------------------------------------


def test_third_party_only_after_the_debtor_is_unreachable_and_never_after_refusal(
    cn: Lender,
) -> None:
    debt = cn.debt(third_parties=2)
    relative, other = debt.third_parties
    at = local(SH, 2026, 6, 10, 9, 0)
    before = cn.attempt(debt, at, contact_id=relative)
    assert before.blocked_rule == "third_party.debtor_reachable"
    assert before.next_allowed_at is None
    for minute in (1, 2):
        cn.attempt(debt, at + dt.timedelta(minutes=minute), result="no_answer")
    assert cn.attempt(debt, at + dt.timedelta(minutes=3), contact_id=relative).status == ("blocked")
    cn.attempt(debt, at + dt.timedelta(minutes=4), result="busy")  # the third failure in a row
    allowed = cn.attempt(debt, at + dt.timedelta(minutes=5), contact_id=relative, result="refused")
    assert allowed.third_party
    assert allowed.status == "completed"
    refused = cn.attempt(debt, at + dt.timedelta(days=3), contact_id=relative)
    assert refused.blocked_rule == "third_party.refused"
    assert refused.next_allowed_at is None
    # Another third party who never refused may still be reached.
    assert cn.attempt(debt, at + dt.timedelta(days=3, minutes=1), contact_id=other).status == (
        "pending"
    )


def test_a_wrong_number_makes_the_debtor_unreachable(cn: Lender) -> None:
    debt = cn.debt()
    at = local(SH, 2026, 6, 10, 9, 0)
    cn.attempt(debt, at, result="wrong_number")
    made = cn.attempt(debt, at + dt.timedelta(minutes=1), contact_id=debt.third_parties[0])
    assert made.status == "pending"


def test_a_debtor_without_an_own_phone_is_not_unreachable(cn: Lender) -> None:
    """No own number at all is not "every own number wrong": the third party waits."""
    debt = cn.debt(phones=())
    made = cn.attempt(debt, local(SH, 2026, 6, 10, 9, 0), contact_id=debt.third_parties[0])
    assert made.blocked_rule == "third_party.debtor_reachable"


def test_a_refusal_binds_every_contact_of_that_third_party(cn: Lender) -> None:
    """Named third parties are one person per relation and name; unnamed ones are only
    the contact itself."""
    debt = cn.debt(third_party_names=("Wang Fang", " wang fang", "Li Lei", None, None))
    same, same_again, other, unnamed, unnamed_other = debt.third_parties
    at = local(SH, 2026, 6, 10, 9, 0)
    cn.attempt(debt, at, result="wrong_number")  # the debtor's only number: unreachable
    for n, contact in enumerate((same, unnamed), start=1):
        made = cn.attempt(debt, at + dt.timedelta(minutes=n), contact_id=contact, result="refused")
        assert made.status == "completed"
    later = at + dt.timedelta(hours=1)
    assert cn.attempt(debt, later, contact_id=same_again).blocked_rule == "third_party.refused"
    assert cn.attempt(debt, later, contact_id=unnamed).blocked_rule == "third_party.refused"
    assert cn.attempt(debt, later, contact_id=other).status == "pending"
    assert cn.attempt(debt, later, contact_id=unnamed_other).status == "pending"


def test_a_collector_reaches_only_the_cases_assigned_to_them(cn: Lender) -> None:
    debt = cn.debt(assigned=False)
    at = local(SH, 2026, 6, 10, 10, 0)
    collector = Actor(
        kind="agency", agency_id=cn.agency_ids[0], user_id=cn.collector_ids[0], collector=True
    )

    def attempt(when: dt.datetime) -> str | None:
        """The attempt's status, None if the gate does not find the case for them."""
        with cn.scope() as session:
            made = attempt_contact(session, cn.objects, tenant=cn.tenant(), case_id=debt.case_id,
                                   contact_id=debt.phones[0], channel=Channel.SMS,
                                   actor=collector, at=when)  # fmt: skip
            return None if made is None else made.status

    assert attempt(at) is None
    # The agency's manager reaches every case placed with the agency.
    assert cn.attempt(debt, at, channel=Channel.SMS).status == "pending"
    cn.assign(debt, 0)
    assert attempt(at) == "pending"
    assert cn.attempts(debt)[-1].user_id == cn.collector_ids[0]
    cn.assign(debt, None)  # the assignment ended: no longer theirs
    assert attempt(at) is None


@pytest.mark.parametrize("flag", ["dispute", "bankruptcy", "deceased", "cease_contact"])
def test_case_flags_stop_all_outreach(cn: Lender, flag: str) -> None:
    debt = cn.debt()
    cn.set_flags(debt, [flag])
    for channel, contact in (
        (Channel.CALL_OUT, debt.phones[0]),
        (Channel.EMAIL, debt.email),
        (Channel.LETTER, debt.address),
    ):
        made = cn.attempt(debt, local(SH, 2026, 6, 10, 10, 0), channel=channel, contact_id=contact)
        assert made.blocked_rule == f"flag.{flag}"
        assert made.next_allowed_at is None


def test_do_not_contact_on_the_debtor_or_one_contact(cn: Lender) -> None:
    debt = cn.debt(phones=("+8613800000001", "+8613800000002"))
    at = local(SH, 2026, 6, 10, 10, 0)
    with cn.scope() as session:
        from recova.platform.cases.models import Contact

        contact = session.get(Contact, debt.phones[0])
        assert contact is not None
        contact.do_not_contact = True
    assert cn.attempt(debt, at).blocked_rule == "contact.do_not_contact"
    assert cn.attempt(debt, at, contact_id=debt.phones[1]).status == "pending"
    cn.set_debtor(debt, do_not_contact=True)
    assert cn.attempt(debt, at, contact_id=debt.phones[1]).blocked_rule == ("debtor.do_not_contact")


def test_inbound_calls_are_recorded_not_gated(cn: Lender) -> None:
    debt = cn.debt()
    cn.set_flags(debt, ["dispute"])
    made = cn.attempt(debt, local(SH, 2026, 6, 10, 23, 30), channel=Channel.CALL_IN)
    assert made.status == "pending"


# --- packs and policies --------------------------------------------------------------------


def test_checks_replay_under_the_pack_version_of_their_day(cn: Lender) -> None:
    debt = cn.debt()
    old = cn.attempt(debt, local(SH, 2025, 6, 10, 10, 0))
    new = cn.attempt(debt, local(SH, 2026, 6, 10, 10, 0))
    assert (old.pack_version, new.pack_version) == ("CN-2025", "CN-2026")
    with cn.scope() as session:
        code = {c.result: c.code for c in outcome_codes(session)}["connected"]
        stored_old = session.get(ContactAttempt, old.id)
        stored_new = session.get(ContactAttempt, new.id)
        assert stored_old is not None
        assert stored_new is not None
        # 2025: recording not yet required. 2026: a connected call needs its recording.
        record_outcome(session, stored_old, jurisdiction="CN", code=code, actor="test:gate")
        with pytest.raises(ContactError, match="recording_ref"):
            record_outcome(session, stored_new, jurisdiction="CN", code=code, actor="test:gate")
        record_outcome(
            session,
            stored_new,
            jurisdiction="CN",
            code=code,
            recording_ref="r-9",
            actor="test:gate",
        )


def test_policy_may_tighten_and_never_loosen(cn: Lender) -> None:
    with cn.scope() as session:
        with pytest.raises(PolicyError) as loosened:
            save_policy(
                session,
                actor="test:gate",
                jurisdiction="CN",
                overrides={
                    "window_start": "07:00",
                    "window_end": "23:00",
                    "max_connected_calls_per_day": 5,
                    "recording_required": False,
                    "third_party_after_failures": 1,
                },
            )
        assert set(loosened.value.errors) == {
            "window_start",
            "window_end",
            "max_connected_calls_per_day",
            "recording_required",
            "third_party_after_failures",
        }
        assert "at most 3" in loosened.value.errors["max_connected_calls_per_day"]
        with pytest.raises(PolicyError, match="unknown rule"):
            save_policy(session, jurisdiction="CN", overrides={"max_calls": 1}, actor="test:gate")
        with pytest.raises(PolicyError, match="past"):
            save_policy(
                session,
                actor="test:gate",
                jurisdiction="CN",
                overrides={},
                effective_from=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
            )
        save_policy(
            session,
            actor="test:gate",
            jurisdiction="CN",
            overrides={"max_connected_calls_per_day": 2, "window_end": "20:00"},
            effective_from=dt.datetime(2030, 1, 1, tzinfo=dt.UTC),
        )
    debt = cn.debt()
    # Before the version takes effect the pack's own limits apply; after, the tighter ones.
    assert cn.attempt(debt, local(SH, 2029, 6, 10, 20, 30), channel=Channel.SMS).status == (
        "pending"
    )
    late = cn.attempt(debt, local(SH, 2030, 6, 10, 20, 30), channel=Channel.SMS)
    assert late.blocked_rule == "cn.contact_window"
    cn.attempt(debt, local(SH, 2030, 6, 11, 9, 0), result="connected")
    cn.attempt(debt, local(SH, 2030, 6, 11, 9, 30), result="connected")
    assert cn.attempt(debt, local(SH, 2030, 6, 11, 10, 0)).blocked_rule == (
        "cn.connected_calls_per_day"
    )


def test_blocked_attempts_are_kept_and_counted_nowhere_else(cn: Lender) -> None:
    debt = cn.debt()
    cn.attempt(debt, local(SH, 2026, 6, 10, 23, 0))
    with cn.scope() as session:
        rows = session.execute(
            select(ContactAttempt.status, func.count())
            .where(ContactAttempt.case_id == debt.case_id)
            .group_by(ContactAttempt.status)
        ).all()
    assert rows == [("blocked", 1)]
