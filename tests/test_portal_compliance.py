"""The portal's compliance pages: the rules in force and tightening them, the simulator,
blocked attempts by rule, agency and person, validation notices due, and who may do what."""

from __future__ import annotations

import datetime as dt
import io
import re
import zoneinfo
from typing import Any

import pytest
from sqlalchemy import func, select

from recova.platform.compliance.gate import Actor
from recova.platform.compliance.models import PolicyVersion
from recova.platform.compliance.notices import record_notice
from recova.platform.compliance.packs import pack_in_force
from recova.platform.contact.models import ContactAttempt
from recova.platform.kernel.extension import platform
from recova.tenants.scope import tenant_scope
from tests.compliance_support import Lender, lender_for, local
from tests.support import Caller, World, anonymous, login

TOKEN = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
CN_ZONE = "Asia/Shanghai"
US_ZONE = "America/New_York"


@pytest.fixture
def cn(app, shared_lender_cn, rolled_back) -> Lender:  # type: ignore[no-untyped-def]
    return lender_for(app, "CN", shared_lender_cn, rolled_back)


@pytest.fixture
def us(app, shared_lender_us, rolled_back) -> Lender:  # type: ignore[no-untyped-def]
    return lender_for(app, "US", shared_lender_us, rolled_back)


def _html(response: Any) -> str:
    return str(response.get_data(as_text=True))


def _token(caller: Caller, path: str) -> str:
    found = TOKEN.search(_html(caller.client.get(path)))
    assert found is not None
    return found.group(1)


def _post(caller: Caller, path: str, data: dict[str, Any], page: str, **kwargs: Any) -> Any:
    return caller.client.post(path, data={**data, "csrf_token": _token(caller, page)}, **kwargs)


def _row(html: str, rule: str) -> str:
    found = re.search(rf'<tr data-rule="{rule}">(.*?)</tr>', html, re.S)
    assert found is not None, rule
    return found.group(1)


def _in_force(html: str, rule: str) -> str:
    cell = re.search(r"<td class=\"num\" data-in-force>(.*?)</td>", _row(html, rule), re.S)
    assert cell is not None
    return re.sub(r"<[^>]+>", "", cell.group(1)).strip()


def _versions(lender: Lender) -> list[dict[str, Any]]:
    with lender.scope() as session:
        return [
            v.overrides for v in session.scalars(select(PolicyVersion).order_by(PolicyVersion.id))
        ]


def _attempt_count(slug: str, app: Any) -> int:
    with tenant_scope(slug, db=platform(app).db) as session:
        return int(session.scalar(select(func.count()).select_from(ContactAttempt)) or 0)


# --- the rules in force and tightening them ------------------------------------------


def test_the_rules_page_shows_the_pack_its_date_and_each_rule(cn: Lender) -> None:
    admin = login(cn.app, cn.admin_email)
    pack = pack_in_force("CN", dt.datetime.now(dt.UTC))

    page = admin.client.get(f"/portal/{cn.slug}/compliance")

    assert page.status_code == 200
    html = _html(page)
    assert f'data-figure="pack-version">{pack.version}<' in html
    assert "January 1, 2026" in html  # the pack version's day, in the page's language
    assert "Contact window closes (debtor&#39;s local time)" in html
    assert _in_force(html, "window_end") == "22:00"
    assert _in_force(html, "max_connected_calls_per_day") == "3"
    assert _in_force(html, "max_call_attempts_in_7_days") == "No limit"
    assert 'aria-current="page" class="current">Compliance' in html


def test_tightening_saves_a_version_and_shows_the_new_effective_value(cn: Lender) -> None:
    admin = login(cn.app, cn.admin_email)
    base = f"/portal/{cn.slug}/compliance"

    response = _post(
        admin,
        f"{base}/policy",
        {"window_end": "21:00", "max_connected_calls_per_day": "2", "recording_required": "y"},
        base,
    )

    assert response.status_code == 302
    assert response.headers["Location"] == base
    assert _versions(cn)[-1] == {
        "window_end": "21:00",
        "max_connected_calls_per_day": 2,
        "recording_required": True,
    }
    html = _html(admin.client.get(base))
    assert _in_force(html, "window_end") == "21:00"
    assert _in_force(html, "max_connected_calls_per_day") == "2"
    assert _in_force(html, "window_start") == "08:00"  # untouched rules keep the pack's
    assert "The policy was saved and binds from now." in html
    # The gate applies it at once: 21:30 is now outside the window.
    debt = cn.debt(timezone=CN_ZONE)
    blocked = cn.attempt(debt, local(CN_ZONE, 2026, 12, 20, 21, 30))
    assert blocked.blocked_rule == "cn.contact_window"


def test_a_loosening_is_refused_beside_its_rule_with_the_input_kept(cn: Lender) -> None:
    admin = login(cn.app, cn.admin_email)
    base = f"/portal/{cn.slug}/compliance"
    before = _versions(cn)

    response = _post(
        admin,
        f"{base}/policy",
        {
            "window_end": "23:00",
            "max_connected_calls_per_day": "2",
            "third_party_after_failures": "1",
        },
        base,
    )

    assert response.status_code == 422
    html = _html(response)
    end_error = re.search(r'id="window_end-error">([^<]+)<', html)
    assert end_error is not None
    assert "Contact window closes" in end_error.group(1)
    assert "loosen" in end_error.group(1)
    assert "22:00" in end_error.group(1)
    failures_error = re.search(r'id="third_party_after_failures-error">([^<]+)<', html)
    assert failures_error is not None
    assert "loosen" in failures_error.group(1)
    assert 'id="max_connected_calls_per_day-error"' not in html  # a tightening is fine
    assert re.search(r'role="alert">Not saved: [^<]*Contact window closes', html)
    for kept in ('value="23:00"', 'value="2"', 'value="1"'):
        assert kept in html
    assert _versions(cn) == before


def test_a_rule_that_is_not_a_number_is_refused_beside_it(cn: Lender) -> None:
    admin = login(cn.app, cn.admin_email)
    base = f"/portal/{cn.slug}/compliance"

    response = _post(admin, f"{base}/policy", {"max_connected_calls_per_day": "two"}, base)

    assert response.status_code == 422
    assert 'id="max_connected_calls_per_day-error">Enter a whole number.<' in _html(response)
    assert 'value="two"' in _html(response)


# --- the simulator ---------------------------------------------------------------------


def _rows(*rows: dict[str, str]) -> dict[str, str]:
    data: dict[str, str] = {}
    for n, row in enumerate(rows):
        for key, value in row.items():
            data[f"rows-{n}-{key}"] = value
    return data


def _verdicts(html: str) -> dict[int, tuple[str, str]]:
    return {
        int(row): (verdict, rule)
        for row, verdict, rule in re.findall(
            r'<tr data-row="(\d+)" data-verdict="(\w+)" data-rule="([^"]*)">', html
        )
    }


def test_the_simulator_allows_a_daytime_call_and_blocks_one_at_23_debtor_time(cn: Lender) -> None:
    admin = login(cn.app, cn.admin_email)
    debt = cn.debt(timezone=CN_ZONE)
    path = f"/portal/{cn.slug}/compliance/simulate"
    before = _attempt_count(cn.slug, cn.app)
    call = {"case_id": str(debt.case_id), "contact_id": str(debt.phones[0]), "channel": "call_out"}

    response = _post(
        admin,
        path,
        _rows({**call, "at": "2026-12-21T10:00"}, {**call, "at": "2026-12-21T23:00"}),
        path,
    )

    assert response.status_code == 200, _html(response)
    html = _html(response)
    assert _verdicts(html) == {1: ("allowed", ""), 2: ("blocked", "cn.contact_window")}
    assert "Outside the contact window" in html
    assert "23:00 <span" in html  # the debtor's local time beside the verdict
    assert _attempt_count(cn.slug, cn.app) == before  # a simulation records nothing


def test_a_simulated_schedule_counts_its_own_earlier_attempts(cn: Lender) -> None:
    admin = login(cn.app, cn.admin_email)
    debt = cn.debt(timezone=CN_ZONE)
    path = f"/portal/{cn.slug}/compliance/simulate"
    lines = ["case_id,contact_id,channel,at,result"] + [
        f"{debt.case_id},{debt.phones[0]},call_out,2026-12-21 1{n}:00+08:00,connected"
        for n in range(4)
    ]

    response = _post(
        admin,
        path,
        {"file": (_file("\n".join(lines)), "schedule.csv")},
        path,
        content_type="multipart/form-data",
    )

    assert response.status_code == 200, _html(response)
    verdicts = _verdicts(_html(response))
    assert [verdicts[n][0] for n in (1, 2, 3)] == ["allowed"] * 3
    assert verdicts[4] == ("blocked", "cn.connected_calls_per_day")
    assert "schedule.csv" in _html(response)


def _file(text: str, encoding: str = "utf-8") -> Any:
    return io.BytesIO(text.encode(encoding))


def test_bad_schedule_rows_are_listed_by_row_and_column(cn: Lender) -> None:
    admin = login(cn.app, cn.admin_email)
    path = f"/portal/{cn.slug}/compliance/simulate"
    content = (
        "case_id,contact_id,channel,at,result\n"
        "12,34,call_out,2026-12-21 10:00,\n"
        "x,34,fax,tomorrow,maybe\n"
    )

    response = _post(
        admin,
        path,
        {"file": (_file(content, "gbk"), "坏的.csv")},
        path,
        content_type="multipart/form-data",
    )

    assert response.status_code == 422
    html = _html(response)
    errors = set(re.findall(r'<tr data-row="(\d+)" data-column="(\w+)">', html))
    assert errors == {("2", "case_id"), ("2", "channel"), ("2", "at"), ("2", "result")}
    assert 'id="verdict-table"' not in html


def test_bad_typed_rows_show_their_errors_beside_the_field_with_the_input_kept(
    cn: Lender,
) -> None:
    admin = login(cn.app, cn.admin_email)
    path = f"/portal/{cn.slug}/compliance/simulate"

    response = _post(
        admin,
        path,
        _rows({"case_id": "12", "contact_id": "abc", "channel": "call_out", "at": ""}),
        path,
    )

    assert response.status_code == 422
    html = _html(response)
    assert 'id="rows-0-contact_id-error">Enter a whole number (an id).<' in html
    assert 'id="rows-0-at-error">' in html
    assert 'value="abc"' in html
    assert 'value="12"' in html


# --- blocked attempts ------------------------------------------------------------------


def _page_counts(html: str, table: str, key: str) -> dict[str, int]:
    body = re.search(rf'<table id="{table}">(.*?)</table>', html, re.S)
    assert body is not None, table
    return {
        name: int(count.replace(",", ""))
        for name, count in re.findall(
            rf'<tr data-{key}="([^"]+)">.*?<td class="num" data-count>([\d,]+)</td>',
            body.group(1),
            re.S,
        )
    }


def test_blocked_attempts_by_rule_agency_and_collector_equal_what_was_stored(cn: Lender) -> None:
    first = cn.debt(timezone=CN_ZONE, placed_with=0)
    second = cn.debt(timezone=CN_ZONE, placed_with=1)
    collector_0 = Actor(
        kind="agency", agency_id=cn.agency_ids[0], user_id=cn.collector_ids[0], collector=True
    )
    collector_1 = Actor(
        kind="agency", agency_id=cn.agency_ids[1], user_id=cn.collector_ids[1], collector=True
    )
    day = (2026, 11, 10)
    cn.attempt(first, local(CN_ZONE, *day, 23, 0), actor=collector_0)  # window
    cn.attempt(first, local(CN_ZONE, *day, 7, 0), actor=collector_0)  # window
    cn.attempt(first, local(CN_ZONE, *day, 10, 0), actor=collector_0)  # allowed
    cn.attempt(second, local(CN_ZONE, *day, 22, 30), agency=None)  # window, tenant staff
    cn.set_flags(second, ["dispute"])
    cn.attempt(second, local(CN_ZONE, *day, 11, 0), actor=collector_1)  # dispute
    cn.attempt(first, local(CN_ZONE, 2026, 10, 1, 23, 0), actor=collector_0)  # before the period
    admin = login(cn.app, cn.admin_email)

    page = admin.client.get(
        f"/portal/{cn.slug}/compliance/blocked?since=2026-11-01&until=2026-11-30"
    )

    assert page.status_code == 200
    html = _html(page)
    since, until = local(CN_ZONE, 2026, 11, 1), local(CN_ZONE, 2026, 12, 1)
    with cn.scope() as session:
        stored = list(
            session.execute(
                select(
                    ContactAttempt.blocked_rule, ContactAttempt.agency_id, ContactAttempt.user_id
                )
                .where(ContactAttempt.status == "blocked")
                .where(ContactAttempt.attempted_at >= since, ContactAttempt.attempted_at < until)
            )
        )
    by_rule: dict[str, int] = {}
    by_agency: dict[str, int] = {}
    by_person: dict[str, int] = {}
    for rule, agency, user in stored:
        by_rule[rule] = by_rule.get(rule, 0) + 1
        by_agency[str(agency or "own")] = by_agency.get(str(agency or "own"), 0) + 1
        person = f"{agency or 'own'}-{user or 'client'}"
        by_person[person] = by_person.get(person, 0) + 1
    assert by_rule == {"cn.contact_window": 3, "flag.dispute": 1}
    assert _page_counts(html, "by-rule", "rule") == by_rule
    assert _page_counts(html, "by-agency", "agency") == by_agency
    assert _page_counts(html, "by-person", "person") == by_person
    assert by_person[f"{cn.agency_ids[0]}-{cn.collector_ids[0]}"] == 2
    assert 'data-figure="blocked-total">4<' in html
    assert "Collector 0" in html
    assert "Outside the contact window" in html


def test_a_period_that_ends_before_it_starts_is_refused_beside_the_field(cn: Lender) -> None:
    admin = login(cn.app, cn.admin_email)

    page = admin.client.get(
        f"/portal/{cn.slug}/compliance/blocked?since=2026-11-30&until=2026-11-01"
    )

    assert page.status_code == 422
    assert 'id="until-error">The period must end on or after its first day.<' in _html(page)
    assert 'value="2026-11-30"' in _html(page)


# --- validation notices ----------------------------------------------------------------


def test_validation_notices_due_and_overdue_are_listed_with_their_case(us: Lender) -> None:
    today = dt.datetime.now(dt.UTC).astimezone(zoneinfo.ZoneInfo(US_ZONE)).date()
    overdue = us.debt(timezone=US_ZONE)
    due = us.debt(timezone=US_ZONE)
    sent = us.debt(timezone=US_ZONE)
    never_reached = us.debt(timezone=US_ZONE)

    def noon(days_ago: int) -> dt.datetime:
        day = today - dt.timedelta(days=days_ago)
        return local(US_ZONE, day.year, day.month, day.day, 12, 0)

    us.attempt(overdue, noon(9), result="connected")
    us.attempt(due, noon(1), result="connected")
    us.attempt(sent, noon(9), result="connected")
    us.attempt(never_reached, noon(2), result="no_answer")
    with us.scope() as session:
        record_notice(session, case_id=sent.case_id, channel="letter")
    admin = login(us.app, us.admin_email)

    page = admin.client.get(f"/portal/{us.slug}/compliance/notices")

    assert page.status_code == 200
    html = _html(page)
    listed = dict(re.findall(r'<tr data-case="(\d+)" data-state="(\w+)">', html))
    assert listed == {str(overdue.case_id): "overdue", str(due.case_id): "due"}
    assert 'data-figure="notices-due">1<' in html
    assert 'data-figure="notices-overdue">1<' in html
    assert f'href="/portal/{us.slug}/cases/{overdue.case_id}"' in html
    assert "within 5 days" in html


def test_a_pack_without_validation_notices_says_so(cn: Lender) -> None:
    admin = login(cn.app, cn.admin_email)

    page = admin.client.get(f"/portal/{cn.slug}/compliance/notices")

    assert page.status_code == 200
    assert 'id="no-notices"' in _html(page)


# --- access and isolation --------------------------------------------------------------

ROUTES = ("compliance", "compliance/simulate", "compliance/blocked", "compliance/notices")


@pytest.mark.parametrize("route", ROUTES)
def test_admins_and_analysts_read_every_page(world: World, route: str) -> None:
    for email in (world.a.admin_email, world.a.analyst_email):
        page = login(world.app, email).client.get(f"/portal/{world.a.slug}/{route}")
        assert page.status_code == 200, (email, route)


def test_an_analyst_sees_the_rules_without_the_form_and_cannot_tighten(world: World) -> None:
    analyst = login(world.app, world.a.analyst_email)
    base = f"/portal/{world.a.slug}/compliance"
    html = _html(analyst.client.get(base))
    assert 'name="window_end"' not in html
    with tenant_scope(world.a.slug, db=platform(world.app).db) as session:
        before = session.scalar(select(func.count()).select_from(PolicyVersion))

    response = _post(analyst, f"{base}/policy", {"window_end": "21:00"}, base)

    assert response.status_code == 403
    with tenant_scope(world.a.slug, db=platform(world.app).db) as session:
        assert session.scalar(select(func.count()).select_from(PolicyVersion)) == before


def test_an_analyst_may_simulate_as_the_api_lets_them_and_nothing_is_written(
    world: World,
) -> None:
    analyst = login(world.app, world.a.analyst_email)
    path = f"/portal/{world.a.slug}/compliance/simulate"
    before = _attempt_count(world.a.slug, world.app)

    response = _post(
        analyst,
        path,
        _rows(
            {
                "case_id": str(world.a.case_ids[0]),
                "contact_id": "999999",
                "channel": "call_out",
                "at": "2026-12-21T10:00",
            }
        ),
        path,
    )

    assert response.status_code == 200
    assert _verdicts(_html(response)) == {1: ("blocked", "request.not_found")}
    assert _attempt_count(world.a.slug, world.app) == before


@pytest.mark.parametrize("route", ROUTES)
def test_agency_staff_are_refused(world: World, route: str) -> None:
    for email in (world.manager_email, world.collector_email):
        staff = login(world.app, email)
        assert staff.client.get(f"/portal/{world.a.slug}/{route}").status_code == 403
    staff = login(world.app, world.manager_email)
    for path in ("compliance/policy", "compliance/simulate"):
        response = staff.client.post(
            f"/portal/{world.a.slug}/{path}", data={"window_end": "21:00"}, headers=staff.headers
        )
        assert response.status_code == 403


@pytest.mark.parametrize("route", ROUTES)
def test_another_tenants_admin_gets_404_on_this_tenants_slug(world: World, route: str) -> None:
    other = login(world.app, world.b.admin_email)
    assert other.client.get(f"/portal/{world.a.slug}/{route}").status_code == 404
    response = other.client.post(
        f"/portal/{world.a.slug}/compliance/policy",
        data={"window_end": "21:00"},
        headers=other.headers,
    )
    assert response.status_code == 404


def test_another_tenants_case_ids_are_not_found_in_the_simulator(world: World) -> None:
    admin = login(world.app, world.a.admin_email)
    path = f"/portal/{world.a.slug}/compliance/simulate"
    foreign = world.b.case_ids[-1]  # B holds more cases: this id is not one of A's
    assert foreign not in world.a.case_ids

    response = _post(
        admin,
        path,
        _rows(
            {
                "case_id": str(foreign),
                "contact_id": "1",
                "channel": "call_out",
                "at": "2026-12-21T10:00",
            }
        ),
        path,
    )

    assert response.status_code == 200
    assert _verdicts(_html(response)) == {1: ("blocked", "request.not_found")}


@pytest.mark.parametrize("route", ROUTES)
def test_anonymous_is_sent_to_sign_in(world: World, route: str) -> None:
    response = anonymous(world.app).client.get(f"/portal/{world.a.slug}/{route}")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")
