"""The collector's case screen and the call loop: the debtor (masked), balances, every
contact point with the gate's verdict now, the call through the gate, its outcome, the
wrap-up, callbacks, the keyboard path, and exact caps when two collectors call at once.

The gate reads the real clock, so each debtor's zone is chosen from it
(``zone_where_it_is``): noon there is inside every contact window, 3 a.m. outside.
"""

from __future__ import annotations

import datetime as dt
import html
import re
import secrets
import threading
import zoneinfo
from decimal import Decimal
from typing import Any

import pytest
from babel.dates import format_datetime
from sqlalchemy import select

from recova.platform.agencies.models import Agency
from recova.platform.allocation.models import Assignment, Placement
from recova.platform.auth.models import Role
from recova.platform.auth.services import create_user
from recova.platform.cases.models import Account, Case, Debtor
from recova.platform.compliance import gate
from recova.platform.compliance.policy import save_policy
from recova.platform.contact.models import ContactAttempt
from recova.platform.kernel.extension import platform
from tests.compliance_support import Debt, Lender, lender_for, zone_where_it_is
from tests.support import PASSWORD, Caller, login

NOON = 12  # the debtor's local hour that is inside every window
NIGHT = 3  # and outside every one
PAGE_ZONE = "Asia/Shanghai"  # the CN lender's zone: the page's "your time"
EN = {"Accept-Language": "en"}
ZH = {"Accept-Language": "zh-CN"}
TOKEN = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


@pytest.fixture
def cn(app, shared_lender_cn, rolled_back) -> Lender:  # type: ignore[no-untyped-def]
    return lender_for(app, "CN", shared_lender_cn, rolled_back)


@pytest.fixture
def us(app, shared_lender_us, rolled_back) -> Lender:  # type: ignore[no-untyped-def]
    return lender_for(app, "US", shared_lender_us, rolled_back)


# --- helpers -------------------------------------------------------------------------------


def url(lender: Lender, debt: Debt | int, rest: str = "") -> str:
    case_id = debt if isinstance(debt, int) else debt.case_id
    return f"/work/{lender.slug}/cases/{case_id}{rest}"


def collector(lender: Lender, n: int = 0) -> Caller:
    return login(lender.app, lender.collector_emails[n])


def screen(caller: Caller, lender: Lender, debt: Debt, headers: dict[str, str] = EN) -> str:
    response = caller.client.get(url(lender, debt), headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)[:2000]
    return str(response.get_data(as_text=True))


def token(page: str) -> str:
    found = TOKEN.search(page)
    assert found is not None
    return found.group(1)


def post(caller: Caller, path: str, data: dict[str, Any], headers: dict[str, str] = EN) -> Any:
    """A form post with the session's CSRF token, as the page's forms send it."""
    form = {"csrf_token": caller.headers["X-CSRFToken"], **data}
    return caller.client.post(path, data=form, headers=headers)


def text_of(fragment: str) -> str:
    """What a reader sees of an HTML fragment: tags out, entities decoded, spaces folded."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", fragment))).strip()


def point(page: str, contact_id: int) -> str:
    """One contact point's row."""
    found = re.search(
        rf'<li class="contact-point[^"]*" id="contact-{contact_id}".*?</li>', page, re.S
    )
    assert found is not None, contact_id
    return found.group(0)


def block(page: str, pattern: str) -> str:
    found = re.search(pattern, page, re.S)
    assert found is not None, pattern
    return found.group(0)


def section(page: str, element_id: str) -> str:
    found = re.search(rf'<section[^>]*id="{element_id}".*?</section>', page, re.S)
    assert found is not None, element_id
    return found.group(0)


def attempts(lender: Lender, debt: Debt) -> list[ContactAttempt]:
    return lender.attempts(debt)


def account_ref(lender: Lender, debt: Debt) -> tuple[str, str]:
    """The case's account external id and the debtor's full name."""
    with lender.scope() as session:
        case = session.get(Case, debt.case_id)
        assert case is not None
        return case.account.external_id, case.debtor.full_name


def next_action(lender: Lender, debt: Debt) -> dt.datetime | None:
    with lender.scope() as session:
        return session.scalar(
            select(Assignment.next_action_at)
            .join(Placement, Placement.id == Assignment.placement_id)
            .where(Placement.case_id == debt.case_id, Assignment.ended_at.is_(None))
        )


def short(moment: dt.datetime, zone: str, locale: str = "en") -> str:
    """A moment as the page's ``datetime("short", tz=zone)`` filter writes it, as read."""
    return text_of(format_datetime(moment, "short", tzinfo=zoneinfo.ZoneInfo(zone), locale=locale))


def next_window_opening(zone: str) -> dt.datetime:
    """08:00 next in ``zone`` (the CN window opens at eight)."""
    local = dt.datetime.now(zoneinfo.ZoneInfo(zone))
    day = local.date() if local.hour < 8 else local.date() + dt.timedelta(days=1)
    return dt.datetime.combine(day, dt.time(8), zoneinfo.ZoneInfo(zone))


def call(caller: Caller, lender: Lender, debt: Debt, contact_id: int | None = None) -> Any:
    return post(
        caller,
        url(lender, debt, "/call"),
        {"contact_id": str(contact_id or debt.phones[0]), "channel": "call_out"},
    )


def pending_id(lender: Lender, debt: Debt) -> int:
    [attempt] = [a for a in attempts(lender, debt) if a.status == "pending"]
    return attempt.id


def outcome(caller: Caller, lender: Lender, debt: Debt, code: str, **fields: str) -> Any:
    data = {"outcome-code": code, **{f"outcome-{k}": v for k, v in fields.items()}}
    return post(caller, url(lender, debt, f"/attempts/{pending_id(lender, debt)}/outcome"), data)


def colleague_of(lender: Lender, agency: int = 0) -> str:
    """A second collector of the agency, holding no case."""
    with platform(lender.app).db.session() as session:
        found = session.get(Agency, lender.agency_ids[agency])
        user = create_user(
            session,
            email=f"colleague-{secrets.token_hex(3)}@agency.test",
            full_name="Colleague",
            password=PASSWORD,
            role=Role.COLLECTOR,
            agency=found,
        )
        session.commit()
        return user.email


# --- the screen ------------------------------------------------------------------------------


def test_the_screen_shows_the_case_to_its_collector_in_english(cn: Lender) -> None:
    debt = cn.debt(timezone=zone_where_it_is(NOON))
    ref, full_name = account_ref(cn, debt)
    page = screen(collector(cn), cn, debt)
    head = text_of(block(page, r'<header class="case-head".*?</header>'))
    assert cn.tenant().name in head  # the case's lender, always in view
    assert ref in head
    assert "M0" in head  # the bucket (the account is not overdue yet)
    assert "Placed" in head
    assert "0 days past due" in head
    # Masked as the tenant's policy says: a readable first character a word.
    assert re.search(r"D\*{5} [0-9a-f]\*{7}", head), head
    assert full_name not in page
    assert "13812345678" not in page  # phone numbers only masked
    balances = text_of(block(page, r'<div class="balances".*?</div>'))
    assert "5,000.00" in balances
    assert "Outstanding" in balances
    assert "Interest and fees" in balances
    # Own phone first, then e-mail and address, the third party last.
    order = [int(n) for n in re.findall(r'id="contact-(\d+)"', page)]
    assert order == [*debt.phones, debt.email, debt.address, *debt.third_parties]
    assert "Time on case" in page
    assert 'data-clock="' in page
    assert "<kbd>c</kbd>" in page
    assert f'id="call-{debt.phones[0]}" data-testid="call" data-key="c"' in page
    assert 'id="timeline"' in page
    assert 'id="case-actions"' in page  # the actions partial is included


def test_the_screen_in_chinese(cn: Lender) -> None:
    debt = cn.debt(timezone=zone_where_it_is(NOON))
    page = screen(collector(cn), cn, debt, ZH)
    assert '<html lang="zh-CN"' in page or 'lang="zh' in page
    for words in ("联系方式", "当前允许", "本案用时", "下一案件", "剩余", "委托方"):
        assert words in page, words
    assert "Contact points" not in page
    assert "Allowed now" not in page


def test_verdicts_allowed_with_calls_left_today(cn: Lender) -> None:
    debt = cn.debt(timezone=zone_where_it_is(NOON))
    page = screen(collector(cn), cn, debt)
    own = text_of(point(page, debt.phones[0]))
    assert 'data-verdict="allowed"' in point(page, debt.phones[0])
    assert "Allowed now" in own
    # CN: 3 connected calls a day per debtor, 6 unanswered per number; the tighter binds.
    assert "Calls left today: 3 of 3" in own
    assert "no 7-day limit" in own
    assert "Allowed now" in text_of(point(page, debt.email))


def test_calls_left_in_seven_days_under_the_us_cap(us: Lender) -> None:
    debt = us.debt(timezone=zone_where_it_is(NOON))
    worker = login(us.app, us.collector_emails[0])
    assert "in 7 days: 7 of 7" in text_of(point(screen(worker, us, debt), debt.phones[0]))
    us.attempt(
        debt, dt.datetime.now(dt.UTC) - dt.timedelta(days=2), result="no_answer"
    )  # two days ago, by the same agency
    own = text_of(point(screen(worker, us, debt), debt.phones[0]))
    assert "No daily call limit" in own
    assert "in 7 days: 6 of 7" in own


def test_a_window_block_says_when_next_in_both_zones(cn: Lender) -> None:
    zone = zone_where_it_is(NIGHT)
    debt = cn.debt(timezone=zone)
    page = screen(collector(cn), cn, debt)
    row = point(page, debt.phones[0])
    assert 'data-verdict="blocked"' in row
    words = text_of(row)
    assert "Outside the contact window 08:00-22:00 in the debtor's local time." in words
    assert 'data-rule="cn.contact_window"' in row
    opening = next_window_opening(zone)
    assert f"{short(opening, PAGE_ZONE)} your time, {PAGE_ZONE}" in words
    assert f"{short(opening, zone)} the debtor's time, {zone}" in words
    assert "8:00" in short(opening, zone)
    # In Chinese, the same rule in Chinese words and the same two times.
    zh = text_of(point(screen(collector(cn), cn, debt, ZH), debt.phones[0]))
    assert "联系时段" in zh
    assert short(opening, zone, "zh_CN") in zh
    assert short(opening, PAGE_ZONE, "zh_CN") in zh


def test_do_not_contact_blocks_every_contact_point_until_cleared(cn: Lender) -> None:
    debt = cn.debt(timezone=zone_where_it_is(NOON))
    cn.set_debtor(debt, do_not_contact=True)
    page = screen(collector(cn), cn, debt)
    for contact_id in (*debt.phones, debt.email, debt.address, *debt.third_parties):
        words = text_of(point(page, contact_id))
        assert "The debtor is marked do-not-contact." in words, contact_id
        assert "Not until someone clears the mark." in words
    assert "Do not contact" in text_of(page)


def test_a_third_party_is_marked_and_never_told_the_debt(cn: Lender) -> None:
    debt = cn.debt(timezone=zone_where_it_is(NOON))
    ref, _ = account_ref(cn, debt)
    page = screen(collector(cn), cn, debt)
    row = point(page, debt.third_parties[0])
    words = text_of(row)
    assert "Third party" in words
    assert "Sibling" in words
    assert "Relative" not in words  # the third party's name, masked like the debtor's
    # Blocked until the debtor is unreachable, in words that name no amount or account.
    assert "Third parties only once the debtor is unreachable" in words
    for debt_word in ("5,000", "¥", "CNY", ref, "past due", "balance", "Outstanding"):
        assert debt_word not in words, debt_word
    # Only a call is offered to a third party (a message needs a third-party template).
    assert f'id="call-{debt.third_parties[0]}"' in row


def test_open_promises_plans_and_the_history_are_on_the_screen(cn: Lender) -> None:
    from recova.platform.work import plans, promises

    debt = cn.debt(timezone=zone_where_it_is(NOON))
    other = cn.debt(timezone=zone_where_it_is(NOON))
    today = dt.datetime.now(zoneinfo.ZoneInfo(PAGE_ZONE)).date()
    with cn.scope() as session:
        for case_id, make in ((debt.case_id, "promise"), (other.case_id, "plan")):
            case = session.get(Case, case_id)
            assert case is not None
            if make == "promise":
                promises.create_promise(
                    session,
                    case=case,
                    amount=Decimal(300),
                    due_date=today + dt.timedelta(days=3),
                    actor="test",
                    today=today,
                )
            else:
                plans.create_plan(
                    session,
                    case=case,
                    instalments=[(today + dt.timedelta(days=d), Decimal(100)) for d in (2, 32)],
                    actor="test",
                    today=today,
                )
    worker = collector(cn)
    page = screen(worker, cn, debt)
    open_ones = text_of(section(page, "commitments"))
    assert "Promise to pay CN¥300.00 by" in open_ones
    history = text_of(section(page, "timeline"))
    assert "Promise to pay CN¥300.00 by" in history
    assert "Placed with" in history
    planned = text_of(section(screen(worker, cn, other), "commitments"))
    assert "Payment plan of CN¥200.00 in 2 instalments" in planned
    assert "next CN¥100.00 on" in planned


# --- the call loop ---------------------------------------------------------------------------


def test_an_allowed_call_is_pending_then_its_outcome_is_stored(cn: Lender) -> None:
    debt = cn.debt(timezone=zone_where_it_is(NOON))
    worker = collector(cn)
    called = call(worker, cn, debt)
    assert called.status_code == 303
    assert called.headers["Location"].endswith(url(cn, debt))
    [attempt] = attempts(cn, debt)
    assert (attempt.status, attempt.channel, attempt.actor_kind) == (
        "pending",
        "call_out",
        "agency",
    )
    page = screen(worker, cn, debt)
    form = section(page, "outcome")
    # "No answer" first, focused, on key 1; the pending call counts against today's cap.
    assert re.search(r'id="code-NO_ANSWER"[^>]*data-key="1"[^>]*autofocus', form), form
    assert 'data-key="2"' in form
    assert "Calls left today: 2 of 3" in text_of(point(page, debt.phones[0]))
    assert f'id="call-{debt.phones[0]}"' not in page  # one call at a time
    assert re.search(r'id="next-case"[^>]*disabled', page)  # its outcome first
    saved = outcome(worker, cn, debt, "BUSY", and_next="")
    assert saved.status_code == 303
    assert saved.headers["Location"].endswith(url(cn, debt))
    [done] = attempts(cn, debt)
    assert (done.status, done.result) == ("completed", "busy")
    after = screen(worker, cn, debt)
    assert 'id="outcome"' not in after
    assert "Outcome saved." in after
    assert "Calls left today: 3 of 3" in text_of(point(after, debt.phones[0]))


def test_a_blocked_call_shows_why_and_is_recorded_blocked_counting_nothing(cn: Lender) -> None:
    zone = zone_where_it_is(NIGHT)
    debt = cn.debt(timezone=zone)
    worker = collector(cn)
    before = text_of(point(screen(worker, cn, debt), debt.phones[0]))
    called = call(worker, cn, debt)
    assert called.status_code == 303
    [attempt] = attempts(cn, debt)
    assert (attempt.status, attempt.blocked_rule) == ("blocked", "cn.contact_window")
    assert called.headers["Location"].endswith(f"{url(cn, debt)}?blocked={attempt.id}")
    page = worker.client.get(called.headers["Location"], headers=EN).get_data(as_text=True)
    blocked = text_of(section(page, "call-blocked"))
    assert "Not called" in blocked
    assert "Outside the contact window 08:00-22:00 in the debtor's local time." in blocked
    opening = next_window_opening(zone)
    assert short(opening, zone) in blocked
    assert short(opening, PAGE_ZONE) in blocked
    assert 'id="outcome"' not in page
    # Blocked attempts count toward no cap: the same calls are left as before.
    assert "Calls left today: 3 of 3" in before
    assert "Calls left today: 3 of 3" in text_of(point(page, debt.phones[0]))


def test_an_e_mail_is_logged_with_message_outcomes_and_a_mismatch_is_refused(cn: Lender) -> None:
    debt = cn.debt(timezone=zone_where_it_is(NOON))
    worker = collector(cn)
    wrong = post(
        worker, url(cn, debt, "/call"), {"contact_id": str(debt.phones[0]), "channel": "email"}
    )
    assert wrong.status_code == 422
    assert "cannot take that attempt" in wrong.get_data(as_text=True)
    assert attempts(cn, debt) == []
    logged = post(
        worker, url(cn, debt, "/call"), {"contact_id": str(debt.email), "channel": "email"}
    )
    assert logged.status_code == 303
    [attempt] = attempts(cn, debt)
    assert (attempt.channel, attempt.status) == ("email", "pending")
    form = section(screen(worker, cn, debt), "outcome")
    assert 'id="code-DELIVERED"' in form
    assert 'id="code-NO_ANSWER"' not in form  # nobody "does not answer" an e-mail
    assert outcome(worker, cn, debt, "DELIVERED", and_next="").status_code == 303
    assert attempts(cn, debt)[0].result == "delivered"


def test_a_connected_call_needs_its_recording_reference_beside_the_field(cn: Lender) -> None:
    debt = cn.debt(timezone=zone_where_it_is(NOON))
    worker = collector(cn)
    call(worker, cn, debt)
    page = screen(worker, cn, debt)
    assert 'id="outcome-recording_ref"' in page  # CN-2026: connected calls are recorded
    refused = outcome(worker, cn, debt, "CONNECTED", note="talked", and_next="")
    assert refused.status_code == 422
    body = refused.get_data(as_text=True)
    error = re.search(r'id="outcome-recording_ref-error">([^<]+)<', body)
    assert error is not None
    assert "give the recording reference" in error.group(1)
    assert "talked" in body  # the note typed is kept
    assert [a.status for a in attempts(cn, debt)] == ["pending"]
    stored = outcome(worker, cn, debt, "CONNECTED", note="talked", recording_ref="rec-77")
    assert stored.status_code == 303
    [done] = attempts(cn, debt)
    assert (done.result, done.recording_ref, done.notes) == ("connected", "rec-77", "talked")


def test_a_conversation_without_a_note_owes_a_wrap_up_before_the_next_case(cn: Lender) -> None:
    debt = cn.debt(timezone=zone_where_it_is(NOON))
    worker = collector(cn)
    call(worker, cn, debt)
    attempt_id = pending_id(cn, debt)
    saved = outcome(worker, cn, debt, "CONNECTED", recording_ref="rec-1", and_next="y")
    assert saved.status_code == 303
    assert saved.headers["Location"].endswith(url(cn, debt))  # not on to the next case
    page = screen(worker, cn, debt)
    assert 'data-testid="wrap-up-owed"' in page
    assert re.search(r'id="next-case"[^>]*disabled', page)
    empty = post(worker, url(cn, debt, "/note"), {"note-note": "  "})
    assert empty.status_code == 422
    assert 'id="note-note-error"' in empty.get_data(as_text=True)
    # A note clears it, kept on the call it is about.
    noted = post(worker, url(cn, debt, "/note"), {"note-note": "promised to call back"})
    assert noted.status_code == 303
    [done] = attempts(cn, debt)
    assert done.id == attempt_id
    assert done.notes == "promised to call back"
    after = screen(worker, cn, debt)
    assert 'data-testid="wrap-up-owed"' not in after
    assert not re.search(r'id="next-case"[^>]*disabled', after)
    # The note is in the history, under the call's outcome, for whoever opens the case next.
    history = after.split('id="timeline"', 1)[1]
    assert '<div class="entry-note small">promised to call back</div>' in history


def test_a_wrong_number_is_wrapped_up_by_a_callback(cn: Lender) -> None:
    debt = cn.debt(timezone=zone_where_it_is(NOON))
    worker = collector(cn)
    call(worker, cn, debt)
    outcome(worker, cn, debt, "WRONG_NUMBER", and_next="")
    assert 'data-testid="wrap-up-owed"' in screen(worker, cn, debt)
    at = (dt.datetime.now(zoneinfo.ZoneInfo(PAGE_ZONE)) + dt.timedelta(days=1)).replace(
        second=0, microsecond=0
    )
    scheduled = post(
        worker, url(cn, debt, "/callback"), {"callback-at": at.strftime("%Y-%m-%dT%H:%M")}
    )
    assert scheduled.status_code == 303
    assert next_action(cn, debt) == at
    page = screen(worker, cn, debt)
    assert 'data-testid="wrap-up-owed"' not in page
    assert "Callback scheduled" in page


def test_a_note_with_no_call_to_wrap_up_is_kept_on_the_case_and_shown(cn: Lender) -> None:
    debt = cn.debt(timezone=zone_where_it_is(NOON))
    worker = collector(cn)

    noted = post(worker, url(cn, debt, "/note"), {"note-note": "debtor asked for letters only"})

    assert noted.status_code == 303
    page = screen(worker, cn, debt)
    notes = page.split('id="case-notes"', 1)[1].split("</div></div>", 1)[0]
    assert "debtor asked for letters only" in notes


def test_an_outcome_with_a_note_owes_nothing(cn: Lender) -> None:
    debt = cn.debt(timezone=zone_where_it_is(NOON))
    worker = collector(cn)
    call(worker, cn, debt)
    outcome(worker, cn, debt, "REFUSED", note="hung up", and_next="")
    assert 'data-testid="wrap-up-owed"' not in screen(worker, cn, debt)


def test_a_callback_in_the_past_or_after_the_placement_is_refused_beside_the_field(
    cn: Lender,
) -> None:
    debt = cn.debt(timezone=zone_where_it_is(NOON))
    worker = collector(cn)
    past = dt.datetime.now(zoneinfo.ZoneInfo(PAGE_ZONE)) - dt.timedelta(hours=1)
    refused = post(
        worker, url(cn, debt, "/callback"), {"callback-at": past.strftime("%Y-%m-%dT%H:%M")}
    )
    assert refused.status_code == 422
    error = re.search(r'id="callback-at-error">([^<]+)<', refused.get_data(as_text=True))
    assert error is not None
    assert error.group(1) == "Choose a time ahead of now."
    zh = post(
        worker,
        url(cn, debt, "/callback"),
        {"callback-at": past.strftime("%Y-%m-%dT%H:%M")},
        ZH,
    )
    assert "Choose a time ahead of now." not in zh.get_data(as_text=True)
    # The placement ends on 2099-01-01 (exclusive): that day is no longer the agency's.
    late = post(worker, url(cn, debt, "/callback"), {"callback-at": "2099-01-01T09:00"})
    assert late.status_code == 422
    assert 'id="callback-at-error"' in late.get_data(as_text=True)
    assert next_action(cn, debt) is None


# --- keyboard first ------------------------------------------------------------------------


def _form_of(page: str, element: str) -> tuple[str, dict[str, str]]:
    """The form holding ``element`` (a button's HTML): its action and what it sends when
    the button is pressed (hidden inputs, ticked boxes, the button's own name and value)."""
    start = page.index(element)
    opening = page.rindex("<form", 0, start)
    closing = page.index("</form>", start)
    form = page[opening:closing]
    action = re.search(r'action="([^"]+)"', form)
    assert action is not None
    data: dict[str, str] = {}
    for tag in re.findall(r"<input[^>]*>", form):
        name = re.search(r'name="([^"]+)"', tag)
        value = re.search(r'value="([^"]*)"', tag)
        if name is None:
            continue
        if 'type="checkbox"' in tag and "checked" not in tag:
            continue
        data[name.group(1)] = html.unescape(value.group(1)) if value else ""
    name = re.search(r'name="([^"]+)"', element)
    value = re.search(r'value="([^"]*)"', element)
    if name is not None and value is not None:
        data[name.group(1)] = value.group(1)
    return html.unescape(action.group(1)), data


def press(caller: Caller, page: str, key: str) -> Any:
    """Press ``key`` on ``page`` as recova.js does: the element with ``data-key`` is clicked."""
    found = re.search(rf'<button[^>]*data-key="{re.escape(key)}"[^>]*>', page)
    assert found is not None, key
    action, data = _form_of(page, found.group(0))
    return caller.client.post(action, data=data, headers=EN)


def test_a_no_answer_call_and_the_next_case_take_two_keystrokes(cn: Lender) -> None:
    debt = cn.debt(timezone=zone_where_it_is(NOON))
    worker = collector(cn)
    page = screen(worker, cn, debt)
    keystrokes = 0

    called = press(worker, page, "c")  # call the first callable contact point
    keystrokes += 1
    assert called.status_code == 303
    page = worker.client.get(called.headers["Location"], headers=EN).get_data(as_text=True)

    saved = press(worker, page, "1")  # "No answer", and the next case is ticked
    keystrokes += 1
    assert saved.status_code == 303
    # On to the next case, leaving this one (still callable after a no-answer) behind.
    assert saved.headers["Location"].endswith(f"/work/next?leaving={cn.slug}:{debt.case_id}")
    assert keystrokes <= 3
    [done] = attempts(cn, debt)
    assert (done.status, done.result) == ("completed", "no_answer")
    opened = worker.client.get(saved.headers["Location"], headers=EN)
    assert opened.status_code in (200, 302), opened.status_code
    # From the screen, n is the queue's Next case.
    moved = press(worker, screen(worker, cn, debt), "n")
    assert moved.status_code in (200, 302), moved.status_code
    if moved.status_code == 302:
        assert "/work/" in moved.headers["Location"]


# --- who reaches the case ------------------------------------------------------------------


def _routes(lender: Lender, debt: Debt, attempt_id: int) -> list[tuple[str, str, dict[str, str]]]:
    return [
        ("GET", url(lender, debt), {}),
        ("POST", url(lender, debt, "/call"), {"contact_id": str(debt.phones[0])}),
        ("POST", url(lender, debt, f"/attempts/{attempt_id}/outcome"), {"outcome-code": "BUSY"}),
        ("POST", url(lender, debt, "/note"), {"note-note": "x"}),
        ("POST", url(lender, debt, "/callback"), {"callback-at": "2098-01-01T10:00"}),
    ]


def _walk(caller: Caller, routes: list[tuple[str, str, dict[str, str]]]) -> list[int]:
    statuses = []
    for method, path, data in routes:
        if method == "GET":
            statuses.append(caller.client.get(path).status_code)
        else:
            statuses.append(post(caller, path, data).status_code)
    return statuses


def test_another_collector_agency_tenant_or_uncontracted_tenant_is_404(
    cn: Lender, us: Lender
) -> None:
    debt = cn.debt(timezone=zone_where_it_is(NOON))
    cn.attempt(debt, dt.datetime.now(dt.UTC))  # a pending attempt on the case
    [attempt] = attempts(cn, debt)
    routes = _routes(cn, debt, attempt.id)
    colleague = login(cn.app, colleague_of(cn))
    other_agency = collector(cn, 1)
    assert _walk(colleague, routes) == [404] * len(routes)
    assert _walk(other_agency, routes) == [404] * len(routes)
    # Another tenant's case id, named under this tenant (where no case has it).
    elsewhere = [us.debt(timezone=zone_where_it_is(NOON)) for _ in range(2)][-1]
    with cn.scope() as session:
        assert session.get(Case, elsewhere.case_id) is None
    assert collector(cn).client.get(url(cn, elsewhere.case_id)).status_code == 404
    # A tenant the agency holds no contract with: 404 for all of it.
    assert _walk(collector(cn), _routes(us, elsewhere, attempt.id)) == [404] * len(routes)
    # Nothing was recorded by any of them.
    assert [a.id for a in attempts(cn, debt)] == [attempt.id]
    assert attempts(cn, debt)[0].status == "pending"
    assert next_action(cn, debt) is None
    # The holder reaches it, and so does their manager; the other agency's manager does not.
    assert collector(cn).client.get(url(cn, debt)).status_code == 200
    assert login(cn.app, cn.manager_emails[0]).client.get(url(cn, debt)).status_code == 200
    assert login(cn.app, cn.manager_emails[1]).client.get(url(cn, debt)).status_code == 404


# --- two collectors calling the same debtor at once -----------------------------------------


def _second_case(lender: Lender, debt: Debt) -> int:
    """Another case of the same debtor, placed with agency 1 and assigned to its collector."""
    with lender.scope() as session:
        debtor = session.get(Debtor, debt.debtor_id)
        assert debtor is not None
        account = Account(
            external_id=f"L2-{secrets.token_hex(4)}",
            debtor=debtor,
            currency="CNY",
            original_principal=Decimal(900),
            outstanding_principal=Decimal(900),
            due_date=dt.date(2026, 1, 1),
        )
        case = Case(account=account, debtor=debtor, status="placed")
        session.add_all([account, case])
        session.flush()  # the placement names the case
        placement = Placement(
            case_id=case.id,
            agency_id=lender.agency_ids[1],
            started_on=dt.date(2026, 1, 1),
            ends_on=dt.date(2099, 1, 1),
            grace_days=0,
            balance_at_placement=Decimal(900),
            currency="CNY",
        )
        session.add(placement)
        session.flush()  # the assignment names the placement
        session.add(
            Assignment(
                placement_id=placement.id, collector_id=lender.collector_ids[1], reason="override"
            )
        )
        return case.id


@pytest.mark.real_commits  # two requests on connections of their own, at the same instant
def test_two_collectors_calling_one_debtor_at_once_pass_a_cap_of_one_once(
    cn: Lender, monkeypatch: pytest.MonkeyPatch
) -> None:
    with cn.scope() as session:
        save_policy(
            session, jurisdiction="CN", overrides={"max_connected_calls_per_day": 1}, actor="test"
        )
    debt = cn.debt(timezone=zone_where_it_is(NOON))
    other_case = _second_case(cn, debt)
    first, second = collector(cn, 0), collector(cn, 1)
    assert "Calls left today: 1 of 1" in text_of(point(screen(first, cn, debt), debt.phones[0]))
    assert second.client.get(url(cn, other_case)).status_code == 200

    load_target = gate.load_target
    both_asked = threading.Barrier(2)

    def load_when_both_asked(*args: Any, **kwargs: Any) -> Any:
        both_asked.wait(timeout=10)  # each request is inside the gate before either locks
        return load_target(*args, **kwargs)

    monkeypatch.setattr(gate, "load_target", load_when_both_asked)
    responses: list[Any] = [None, None]

    def click(n: int, caller: Caller, case_id: int) -> None:
        responses[n] = post(caller, url(cn, case_id, "/call"), {"contact_id": str(debt.phones[0])})

    threads = [
        threading.Thread(target=click, args=(0, first, debt.case_id)),
        threading.Thread(target=click, args=(1, second, other_case)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    monkeypatch.setattr(gate, "load_target", load_target)
    assert [r.status_code for r in responses] == [303, 303]
    with cn.scope() as session:
        made = list(
            session.scalars(
                select(ContactAttempt).where(ContactAttempt.debtor_id == debt.debtor_id)
            )
        )
        outcomes = sorted((a.status, a.blocked_rule or "") for a in made)
    assert outcomes == [("blocked", "cn.connected_calls_per_day"), ("pending", "")]
