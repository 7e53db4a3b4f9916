"""The portal's cases: the list (filters, look-up through the blind index, sort, keyset
pages), the case page (balances, timeline), the audited reveal and the admin's actions;
the analyst reads only, agency staff and other tenants never see it."""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select, text, update

from recova.platform.allocation.models import Placement
from recova.platform.audit.models import AuditEvent
from recova.platform.cases.browse import CaseFilters, list_cases
from recova.platform.cases.flags import change_case_flag
from recova.platform.cases.models import Account, Case, Contact, ContactKind, Debtor
from recova.platform.contact.models import ContactAttempt, OutcomeCode
from recova.platform.kernel.db import utcnow
from recova.platform.kernel.extension import platform
from recova.platform.privacy.models import PersonalDataReveal
from recova.platform.web.portal import cases as cases_view
from recova.platform.work import disputes, plans, promises, settlements
from recova.platform.work.models import ApprovalLevel, Dispute
from recova.tenants.models import tenant_today
from recova.tenants.scope import tenant_scope
from tests.support import B_MARK, Caller, World, anonymous, login

TOKEN = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
EN = {"Accept-Language": "en"}
PHONE = "+8613800138000"
OTHER_NID = "11010519800101123X"


def token_of(page: str) -> str:
    found = TOKEN.search(page)
    assert found is not None
    return found.group(1)


def base(world: World) -> str:
    return f"/portal/{world.a.slug}/cases"


def scope(world: World) -> Any:
    return tenant_scope(world.a.slug, db=platform(world.app).db)


def post(caller: Caller, world: World, case_id: int, action: str, **data: str) -> Any:
    page = caller.client.get(f"{base(world)}/{case_id}").get_data(as_text=True)
    return caller.client.post(
        f"{base(world)}/{case_id}/{action}", data={"csrf_token": token_of(page), **data}
    )


def case_ids_in(page: str, world: World) -> list[int]:
    """The case ids the list links to, in the order shown."""
    return [int(n) for n in re.findall(rf"{re.escape(base(world))}/(\d+)\"", page)]


@pytest.fixture
def book(world: World) -> World:
    """A's three cases: n has 10n days past due and a balance of 1,000n (+ 10n interest);
    debtor 1 has a phone, debtor 2 another national id; case 2 is placed with agency A."""
    cipher = platform(world.app).cipher
    with scope(world) as session:
        for n, case_id in enumerate(world.a.case_ids, 1):
            case = session.get(Case, case_id)
            assert case is not None
            session.execute(
                update(Account)
                .where(Account.id == case.account_id)
                .values(days_past_due=10 * n, outstanding_interest=Decimal(10 * n))
            )
        first = session.get(Case, world.a.case_ids[0])
        second = session.get(Case, world.a.case_ids[1])
        assert first is not None
        assert second is not None
        session.add(
            Contact(
                debtor_id=first.debtor_id,
                kind=ContactKind.PHONE,
                relation="self",
                value_ciphertext=cipher.encrypt(PHONE, context="contact.phone"),
                value_index=cipher.blind_index(PHONE, context="contact.phone"),
                value_masked="+86138****8000",
            )
        )
        debtor = session.get(Debtor, second.debtor_id)
        assert debtor is not None
        debtor.national_id_ciphertext = cipher.encrypt(OTHER_NID, context="debtor.national_id")
        debtor.national_id_index = cipher.blind_index(OTHER_NID, context="debtor.national_id")
        debtor.national_id_masked = "1101********123X"
        today = tenant_today(session.info["tenant"].timezone)
        session.add(
            Placement(
                case_id=second.id,
                agency_id=world.agency_a_id,
                started_on=today - dt.timedelta(days=3),
                ends_on=today + dt.timedelta(days=57),
                grace_days=10,
                balance_at_placement=Decimal("2020.00"),
                currency="CNY",
            )
        )
        session.flush()
    return world


def placement_of(world: World, case_id: int) -> Placement:
    with scope(world) as session:
        found = session.scalar(
            select(Placement).where(Placement.case_id == case_id).order_by(Placement.id.desc())
        )
        assert found is not None
        session.expunge(found)
        return found


# --- the list ------------------------------------------------------------------------------


def test_the_list_sorts_by_days_past_due_balance_and_update(book: World) -> None:
    admin = login(book.app, book.a.admin_email)
    one, two, three = book.a.case_ids

    most_overdue = admin.client.get(base(book), headers=EN).get_data(as_text=True)
    smallest = admin.client.get(f"{base(book)}?sort=balance_asc").get_data(as_text=True)
    largest = admin.client.get(f"{base(book)}?sort=balance_desc").get_data(as_text=True)

    assert case_ids_in(most_overdue, book) == [three, two, one]
    assert case_ids_in(smallest, book) == [one, two, three]
    assert case_ids_in(largest, book) == [three, two, one]
    # Balances are the four parts summed, formatted with every digit: 3,000 + 30 interest.
    assert "3,030.00" in most_overdue
    # Only masked identifiers: the national id never appears in full.
    assert "11010519491231002X" not in most_overdue
    assert "1101********002X" in most_overdue
    assert B_MARK not in most_overdue


def test_filters_narrow_the_list_and_stay_in_the_url(book: World) -> None:
    admin = login(book.app, book.a.admin_email)
    one, two, three = book.a.case_ids

    def shown(query: str) -> list[int]:
        response = admin.client.get(f"{base(book)}?{query}")
        assert response.status_code == 200, query
        return case_ids_in(response.get_data(as_text=True), book)

    assert shown("dpd_min=15&dpd_max=25") == [two]
    assert shown("balance_min=1500") == [three, two]
    assert shown("balance_max=1010.00") == [one]
    assert shown("bucket=M1") == [three, two, one]  # 10, 20 and 30 days: all in M1
    assert shown("bucket=M2") == []
    assert shown(f"agency={book.agency_a_id}") == [two]
    assert shown("status=new&sort=dpd_asc") == [one, two, three]
    assert shown("status=closed") == []
    # The form shows the filters it was sent, so the URL is the bookmark.
    page = admin.client.get(f"{base(book)}?dpd_min=15&status=new").get_data(as_text=True)
    assert 'name="dpd_min" type="number" value="15"' in page
    assert '<option selected value="new">' in page


def test_flag_filter_finds_flagged_and_unflagged_cases(book: World) -> None:
    one, two, three = book.a.case_ids
    with scope(book) as session:
        case = session.get(Case, three)
        assert case is not None
        change_case_flag(
            session, case=case, flag="deceased", value=True, actor="job:test", today=dt.date.today()
        )
        session.flush()
    admin = login(book.app, book.a.admin_email)

    flagged = admin.client.get(f"{base(book)}?flag=deceased").get_data(as_text=True)
    clean = admin.client.get(f"{base(book)}?flag=none").get_data(as_text=True)

    assert case_ids_in(flagged, book) == [three]
    assert case_ids_in(clean, book) == [two, one]


def test_an_upper_bound_below_the_lower_is_a_field_error(book: World) -> None:
    admin = login(book.app, book.a.admin_email)
    response = admin.client.get(f"{base(book)}?dpd_min=30&dpd_max=10", headers=EN)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert 'id="dpd_max-error"' in page
    assert 'value="30"' in page  # the input is kept


def test_look_up_by_external_id_phone_and_national_id(book: World) -> None:
    admin = login(book.app, book.a.admin_email)
    one, two, three = book.a.case_ids

    def found(typed: str) -> list[int]:
        response = admin.client.get(base(book), query_string={"q": typed})
        assert response.status_code == 200
        return case_ids_in(response.get_data(as_text=True), book)

    assert found("L-2") == [two]  # account external id
    assert found("D-3") == [three]  # debtor external id
    # A phone as people type it, national form with spaces: normalised to E.164.
    assert found("138 0013 8000") == [one]
    assert found(PHONE) == [one]
    # The national id in lower case: the blind index of the normalised value.
    assert found(OTHER_NID.lower()) == [two]
    assert found("11010519491231002X") == [three, one]
    assert found("13900000000") == []
    assert found("nobody") == []


def test_the_look_up_compares_blind_indexes_and_never_decrypts(
    book: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    cipher = platform(book.app).cipher

    def refuse(*args: Any, **kwargs: Any) -> str:
        raise AssertionError("the look-up decrypted a value")

    monkeypatch.setattr(type(cipher), "decrypt", refuse)
    with scope(book) as session:
        page = list_cases(session, cipher, CaseFilters(lookup=PHONE), region="CN")
    assert [row.case_id for row in page.rows] == [book.a.case_ids[0]]


def test_keyset_pages_meet_at_the_boundary_without_gaps_or_repeats(
    book: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    one, two, three = book.a.case_ids
    # Cases 1 and 2 get the same days past due: the account id breaks the tie.
    with scope(book) as session:
        case = session.get(Case, one)
        assert case is not None
        session.execute(
            update(Account).where(Account.id == case.account_id).values(days_past_due=20)
        )
        session.flush()
    monkeypatch.setattr(cases_view, "PAGE_SIZE", 2)
    admin = login(book.app, book.a.admin_email)

    first = admin.client.get(f"{base(book)}?status=new", headers=EN).get_data(as_text=True)
    assert case_ids_in(first, book) == [three, two]
    after = re.search(r'href="([^"]*after=[^"]+)" rel="next"', first)
    assert after is not None
    assert "status=new" in after.group(1)  # the filters go along
    second = admin.client.get(after.group(1).replace("&amp;", "&"), headers=EN)
    second_page = second.get_data(as_text=True)
    assert case_ids_in(second_page, book) == [one]
    assert 'rel="next"' not in second_page
    before = re.search(r'href="([^"]*before=[^"]+)" rel="prev"', second_page)
    assert before is not None
    back = admin.client.get(before.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert case_ids_in(back, book) == [three, two]
    # No OFFSET in the list's query, however deep the page.
    with scope(book) as session:
        deep = list_cases(session, platform(book.app).cipher, CaseFilters(), region="CN", limit=1)
        assert deep.next_cursor is not None
        following = list_cases(
            session,
            platform(book.app).cipher,
            CaseFilters(),
            region="CN",
            limit=1,
            after=deep.next_cursor,
        )
        assert [r.case_id for r in following.rows] == [two]


def test_a_garbled_cursor_starts_at_the_first_page(book: World) -> None:
    admin = login(book.app, book.a.admin_email)
    response = admin.client.get(f"{base(book)}?after=not-a-cursor")
    assert response.status_code == 200
    assert case_ids_in(response.get_data(as_text=True), book) == list(reversed(book.a.case_ids))


# --- the case page -------------------------------------------------------------------------


def test_the_case_page_shows_balances_and_the_masked_debtor(book: World) -> None:
    admin = login(book.app, book.a.admin_email)
    one = book.a.case_ids[0]
    response = admin.client.get(f"{base(book)}/{one}", headers=EN)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    for label in ("Principal", "Interest", "Fees", "Penalties", "Outstanding balance"):
        assert label in page
    assert "1,010.00" in page  # 1,000 principal + 10 interest
    assert "Debtor alpha 1" in page  # the tenant's own staff see the name whole
    assert "+86138****8000" in page
    assert PHONE not in page
    assert "11010519491231002X" not in page


def seed_timeline(world: World) -> int:
    """Every kind of timeline entry on A's case 2, at distinct moments where we choose."""
    case_id = world.a.case_ids[1]
    now = utcnow()
    with scope(world) as session:
        case = session.get(Case, case_id)
        assert case is not None
        today = tenant_today(session.info["tenant"].timezone)
        contact = Contact(
            debtor_id=case.debtor_id,
            kind=ContactKind.PHONE,
            relation="self",
            value_ciphertext=b"\x01x",
            value_index=b"t" * 32,
            value_masked="+86139****0001",
        )
        code = OutcomeCode(code="NA-T", label="No answer (test)", result="no_answer")
        session.add_all([contact, code])
        session.flush()
        base_attempt = {
            "case_id": case_id,
            "debtor_id": case.debtor_id,
            "contact_id": contact.id,
            "channel": "call_out",
            "actor_kind": "tenant",
            "pack_version": "CN-2025",
            "local_timezone": "Asia/Shanghai",
        }
        session.add_all(
            [
                ContactAttempt(
                    **base_attempt,
                    status="completed",
                    attempted_at=now - dt.timedelta(hours=3),
                    completed_at=now - dt.timedelta(hours=2),
                    outcome_code_id=code.id,
                    result="no_answer",
                ),
                ContactAttempt(
                    **base_attempt,
                    status="blocked",
                    attempted_at=now - dt.timedelta(hours=1),
                    blocked_rule="cn.quiet_hours",
                    block_message="No contact from 22:00 to 08:00.",
                ),
            ]
        )
        session.execute(
            text(
                f'INSERT INTO "{session.info["tenant"].schema_name}".payments (external_id,'
                " account_id, kind, amount, currency, paid_at, paid_to) VALUES ('P-T1', :a,"
                " 'payment', 25, 'CNY', :at, 'tenant')"
            ),
            {"a": case.account_id, "at": now + dt.timedelta(hours=1)},
        )
        promises.create_promise(
            session,
            case=case,
            amount=Decimal(100),
            due_date=today + dt.timedelta(days=5),
            actor="job:walk",
            today=today,
        )
        plans.create_plan(
            session,
            case=case,
            instalments=[(today + dt.timedelta(days=d), Decimal(50)) for d in (1, 31)],
            actor="job:walk",
            today=today,
        )
        settlements.offer_settlement(
            session,
            case=case,
            amount=Decimal(500),
            expires_on=today + dt.timedelta(days=5),
            actor="job:walk",
            level=ApprovalLevel.COLLECTOR,
            tenant_id=world.a.id,
            today=today,
        )
        dispute = disputes.open_dispute(
            session, case=case, grounds="amount_wrong", notes=None, actor="job:walk", today=today
        )
        change_case_flag(
            session, case=case, flag="bankruptcy", value=True, actor="job:walk", today=today
        )
        session.execute(
            text(
                f'INSERT INTO "{session.info["tenant"].schema_name}".bucket_transitions'
                " (case_id, as_of, from_bucket, to_bucket) VALUES (:c, :d, 'M0', 'M1')"
            ),
            {"c": case_id, "d": today - dt.timedelta(days=1)},
        )
        disputes.resolve_dispute(
            session,
            dispute=dispute,
            outcome=disputes.DisputeStatus.REJECTED,
            note="ok",
            actor="job:walk",
        )
        session.flush()
    return case_id


def test_the_timeline_has_every_kind_of_entry_newest_first(book: World) -> None:
    case_id = seed_timeline(book)
    admin = login(book.app, book.a.admin_email)
    page = admin.client.get(f"{base(book)}/{case_id}", headers=EN).get_data(as_text=True)

    kinds = re.findall(r'data-kind="([a-z_]+)"', page)
    for kind in (
        "placement",
        "recall",
        "attempt",
        "blocked",
        "outcome",
        "promise",
        "promise_result",
        "plan",
        "settlement",
        "payment",
        "dispute",
        "dispute_resolution",
        "flags",
        "transition",
        "bucket",
    ):
        assert kind in kinds, kind
    moments = re.findall(r'<time datetime="([^"]+)"', page)
    parsed = [dt.datetime.fromisoformat(m) for m in moments]
    assert parsed == sorted(parsed, reverse=True)
    # Chosen moments: the payment (in an hour) first, then the blocked attempt (an hour
    # ago), the outcome (two hours ago), the attempt (three), and the placement's day.
    order = [k for k in kinds if k in ("payment", "blocked", "outcome", "attempt", "placement")]
    assert order == ["payment", "blocked", "outcome", "attempt", "placement"]
    # The gate's verdict and the rule that blocked.
    assert "Blocked by the gate" in page
    assert "cn.quiet_hours" in page
    assert "No contact from 22:00 to 08:00." in page
    assert "Allowed by the gate" in page
    assert "Placed with Agency for A" in page
    assert "Recalled from Agency for A" in page
    assert "Flag set: Bankruptcy" in page
    assert "Dispute resolved: Dismissed" in page


# --- reveal --------------------------------------------------------------------------------


def test_a_long_timeline_shows_its_newest_entries_and_the_rest_on_request(book: World) -> None:
    case_id = book.a.case_ids[2]
    now = utcnow()
    with scope(book) as session:
        case = session.get(Case, case_id)
        assert case is not None
        contact = Contact(
            debtor_id=case.debtor_id,
            kind=ContactKind.PHONE,
            relation="self",
            value_ciphertext=b"\x01y",
            value_index=b"u" * 32,
            value_masked="+86139****0002",
        )
        session.add(contact)
        session.flush()
        session.add_all(
            ContactAttempt(
                case_id=case_id,
                debtor_id=case.debtor_id,
                contact_id=contact.id,
                channel="call_out",
                actor_kind="tenant",
                pack_version="CN-2025",
                local_timezone="Asia/Shanghai",
                status="blocked",
                attempted_at=now - dt.timedelta(minutes=n),
                blocked_rule="cn.quiet_hours",
                block_message="No contact from 22:00 to 08:00.",
            )
            for n in range(70)
        )
    admin = login(book.app, book.a.admin_email)
    path = f"{base(book)}/{case_id}"

    first = admin.client.get(path, headers=EN).get_data(as_text=True)
    everything = admin.client.get(f"{path}?timeline=all", headers=EN).get_data(as_text=True)

    assert len(re.findall(r'data-kind="', first)) == 50
    assert "Show older entries" in first
    assert len(re.findall(r'data-kind="', everything)) >= 70
    assert "Show older entries" not in everything


def reveals(world: World) -> list[PersonalDataReveal]:
    with scope(world) as session:
        return list(session.scalars(select(PersonalDataReveal)))


def reveal_events(world: World) -> list[dict[str, Any]]:
    with scope(world) as session:
        rows = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "personal_data.revealed")
        )
        return [json.loads(row.data) for row in rows]


def test_a_reveal_needs_a_reason(book: World) -> None:
    admin = login(book.app, book.a.admin_email)
    one = book.a.case_ids[0]
    empty = post(admin, book, one, "reveal", field="national_id", reason="  ")
    short = post(admin, book, one, "reveal", field="national_id", reason="why")

    assert empty.status_code == 422
    assert 'id="reason-error"' in empty.get_data(as_text=True)
    assert empty.headers["Cache-Control"] == "no-store"
    assert short.status_code == 422
    assert "why" in short.get_data(as_text=True)  # the input is kept
    assert "11010519491231002X" not in empty.get_data(as_text=True)
    assert reveals(book) == []
    assert reveal_events(book) == []


def test_a_reason_quoting_a_number_is_refused(book: World) -> None:
    admin = login(book.app, book.a.admin_email)
    response = post(
        admin,
        book,
        book.a.case_ids[0],
        "reveal",
        field="national_id",
        reason="call back on 13800138000 please",
    )
    assert response.status_code == 422
    assert reveals(book) == []


def test_revealing_a_national_id_shows_it_once_audited_and_uncached(book: World) -> None:
    admin = login(book.app, book.a.admin_email)
    one = book.a.case_ids[0]
    response = post(
        admin, book, one, "reveal", field="national_id", reason="Debtor asked to verify identity"
    )

    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert "11010519491231002X" in response.get_data(as_text=True)
    [stored] = reveals(book)
    assert stored.field == "national_id"
    assert stored.reason == "Debtor asked to verify identity"
    [event] = reveal_events(book)
    assert event["field"] == "national_id"
    assert "reason" not in event  # only its digest
    # The next plain view of the page is masked again.
    again = admin.client.get(f"{base(book)}/{one}").get_data(as_text=True)
    assert "11010519491231002X" not in again


def test_revealing_a_phone_names_its_contact(book: World) -> None:
    admin = login(book.app, book.a.admin_email)
    one = book.a.case_ids[0]
    with scope(book) as session:
        contact_id = session.scalar(select(Contact.id).where(Contact.value_masked.like("+86138%")))
    response = post(
        admin,
        book,
        one,
        "reveal",
        field="contact",
        contact_id=str(contact_id),
        reason="Confirm the number before a callback",
    )
    assert response.status_code == 200
    assert PHONE in response.get_data(as_text=True)


def test_the_analyst_cannot_reveal_or_act(book: World) -> None:
    analyst = login(book.app, book.a.analyst_email)
    two = book.a.case_ids[1]
    page = analyst.client.get(f"{base(book)}/{two}", headers=EN)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Reveal" not in html
    assert "Recall from the agency" not in html
    token = token_of(html)
    placement = placement_of(book, two)
    for action, data in (
        ("reveal", {"field": "national_id", "reason": "Debtor asked to verify identity"}),
        ("flags", {"flag": "deceased", "value": "1"}),
        ("recall", {"recall-placement_id": str(placement.id), "recall-reason": "complaint"}),
        ("dispute-resolution", {"dispute-dispute_id": "1", "dispute-outcome": "rejected"}),
    ):
        response = analyst.client.post(
            f"{base(book)}/{two}/{action}", data={"csrf_token": token, **data}
        )
        assert response.status_code == 403, action
        assert "11010519" not in response.get_data(as_text=True)
    assert reveals(book) == []
    assert placement_of(book, two).recalled_on is None
    with scope(book) as session:
        case = session.get(Case, two)
        assert case is not None
        assert case.flags == []


# --- actions -------------------------------------------------------------------------------


def test_setting_and_clearing_a_flag_redirects_with_a_message(book: World) -> None:
    admin = login(book.app, book.a.admin_email)
    two = book.a.case_ids[1]

    response = post(admin, book, two, "flags", flag="deceased", value="1")
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/cases/{two}")
    shown = admin.client.get(f"{base(book)}/{two}", headers=EN).get_data(as_text=True)
    assert "Flag set: Deceased." in shown
    assert "The case was recalled from its agency." in shown
    with scope(book) as session:
        case = session.get(Case, two)
        assert case is not None
        assert case.flags == ["deceased"]
    assert placement_of(book, two).recall_reason == "excluded_flag"

    again = post(admin, book, two, "flags", flag="deceased", value="1")
    assert again.status_code == 422
    assert "already has the deceased flag" in again.get_data(as_text=True)

    cleared = post(admin, book, two, "flags", flag="deceased", value="0")
    assert cleared.status_code == 303


def test_do_not_contact_is_the_debtors_mark(book: World) -> None:
    admin = login(book.app, book.a.admin_email)
    one = book.a.case_ids[0]
    response = post(admin, book, one, "flags", flag="do_not_contact", value="1")
    assert response.status_code == 303
    with scope(book) as session:
        case = session.get(Case, one)
        assert case is not None
        debtor = session.get(Debtor, case.debtor_id)
        assert debtor is not None
        assert debtor.do_not_contact is True
        assert case.flags == []


def test_an_unknown_flag_is_refused(book: World) -> None:
    admin = login(book.app, book.a.admin_email)
    response = post(admin, book, book.a.case_ids[0], "flags", flag="vip", value="1")
    assert response.status_code == 422


def test_recall_needs_a_reason_and_a_second_recall_is_refused(book: World) -> None:
    admin = login(book.app, book.a.admin_email)
    two = book.a.case_ids[1]
    placement = placement_of(book, two)

    missing = post(admin, book, two, "recall", **{"recall-placement_id": str(placement.id)})
    assert missing.status_code == 422
    assert 'id="recall-reason-error"' in missing.get_data(as_text=True)
    assert f'value="{placement.id}"' in missing.get_data(as_text=True)  # the input is kept
    assert placement_of(book, two).recalled_on is None

    done = post(
        admin,
        book,
        two,
        "recall",
        **{"recall-placement_id": str(placement.id), "recall-reason": "complaint"},
    )
    assert done.status_code == 303
    assert placement_of(book, two).recall_reason == "complaint"
    shown = admin.client.get(f"{base(book)}/{two}", headers=EN).get_data(as_text=True)
    assert "The case was recalled from its agency." in shown

    stale = admin.client.post(
        f"{base(book)}/{two}/recall",
        data={
            "csrf_token": token_of(shown),
            "recall-placement_id": str(placement.id),
            "recall-reason": "quality",
        },
        headers=EN,
    )
    assert stale.status_code == 422
    stale_page = stale.get_data(as_text=True)
    assert "already recalled" in stale_page


def test_recording_a_dispute_resolution(book: World) -> None:
    one = book.a.case_ids[0]
    with scope(book) as session:
        case = session.get(Case, one)
        assert case is not None
        dispute = disputes.open_dispute(
            session,
            case=case,
            grounds="already_paid",
            notes=None,
            actor="job:walk",
            today=dt.date.today(),
        )
        session.flush()
        dispute_id = dispute.id
    admin = login(book.app, book.a.admin_email)

    clearing = post(admin, book, one, "flags", flag="dispute", value="0")
    assert clearing.status_code == 422
    assert "open dispute" in clearing.get_data(as_text=True)

    unchosen = post(
        admin, book, one, "dispute-resolution", **{"dispute-dispute_id": str(dispute_id)}
    )
    assert unchosen.status_code == 422
    assert 'id="dispute-outcome-error"' in unchosen.get_data(as_text=True)

    data = {
        "dispute-dispute_id": str(dispute_id),
        "dispute-outcome": "rejected",
        "dispute-note": "Payment not found",
    }
    done = post(admin, book, one, "dispute-resolution", **data)
    assert done.status_code == 303
    with scope(book) as session:
        found = session.get(Dispute, dispute_id)
        assert found is not None
        assert found.status.value == "rejected"
        assert found.resolution_note == "Payment not found"
        case = session.get(Case, one)
        assert case is not None
        assert "dispute" not in case.flags

    page = admin.client.get(f"{base(book)}/{one}").get_data(as_text=True)
    twice = admin.client.post(
        f"{base(book)}/{one}/dispute-resolution",
        data={"csrf_token": token_of(page), **data},
    )
    assert twice.status_code == 422
    assert "already rejected" in twice.get_data(as_text=True)


# --- access and isolation ------------------------------------------------------------------


def routes(world: World, case_id: int) -> list[tuple[str, str]]:
    url = f"/portal/{world.a.slug}/cases"
    return [
        ("GET", url),
        ("GET", f"{url}/{case_id}"),
        ("POST", f"{url}/{case_id}/reveal"),
        ("POST", f"{url}/{case_id}/flags"),
        ("POST", f"{url}/{case_id}/recall"),
        ("POST", f"{url}/{case_id}/dispute-resolution"),
    ]


def test_agency_staff_are_refused(book: World) -> None:
    for email in (book.manager_email, book.collector_email):
        caller = login(book.app, email)
        for method, url in routes(book, book.a.case_ids[0]):
            response = caller.client.open(url, method=method, headers=caller.headers)
            assert response.status_code == 403, (email, method, url)


def test_another_tenants_admin_finds_nothing(book: World) -> None:
    outsider = login(book.app, book.b.admin_email)
    for method, url in routes(book, book.a.case_ids[0]):
        response = outsider.client.open(url, method=method, headers=outsider.headers)
        assert response.status_code == 404, (method, url)


def test_another_tenants_case_ids_are_404(book: World) -> None:
    admin = login(book.app, book.a.admin_email)
    foreign = [i for i in book.b.case_ids if i not in book.a.case_ids]
    assert foreign
    for case_id in foreign:
        for method, url in routes(book, case_id)[1:]:
            response = admin.client.open(
                url,
                method=method,
                headers=admin.headers,
                data={
                    "field": "national_id",
                    "reason": "Debtor asked to verify identity",
                    "flag": "deceased",
                    "value": "1",
                },
            )
            assert response.status_code == 404, (method, url)
    assert reveals(book) == []


def test_another_tenants_placement_or_dispute_id_is_404(book: World) -> None:
    admin = login(book.app, book.a.admin_email)
    one = book.a.case_ids[0]
    two = book.a.case_ids[1]
    placement = placement_of(book, two)  # case 2's placement, named on case 1's page
    wrong = post(
        admin,
        book,
        one,
        "recall",
        **{"recall-placement_id": str(placement.id), "recall-reason": "complaint"},
    )
    assert wrong.status_code == 404
    assert placement_of(book, two).recalled_on is None
    nothing = post(
        admin,
        book,
        one,
        "dispute-resolution",
        **{"dispute-dispute_id": "999999", "dispute-outcome": "rejected"},
    )
    assert nothing.status_code == 404


def test_anonymous_is_sent_to_sign_in(book: World) -> None:
    caller = anonymous(book.app)
    for method, url in routes(book, book.a.case_ids[0]):
        response = caller.client.open(url, method=method)
        if method == "GET":
            assert response.status_code == 302
            assert "/login" in response.headers["Location"]
        else:
            assert response.status_code in (400, 401)  # no session: no CSRF token either
