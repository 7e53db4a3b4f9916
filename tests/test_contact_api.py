"""Contact work over the API: attempts through the gate, outcomes, blocks on record and
counted, agency scoping, templates for third parties, policy, simulation, notices, and
the work queue hiding what may not be called now."""

from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from recova.platform.allocation.models import Placement
from recova.platform.audit import events
from recova.platform.cases.models import Case, CaseStatus
from recova.platform.contact.models import Channel
from tests.compliance_support import Lender, lender_for, local, make_lender, zone_where_it_is
from tests.support import login

SH = "Asia/Shanghai"


@pytest.fixture
def cn(app, shared_lender_cn, rolled_back) -> Lender:  # type: ignore[no-untyped-def]
    return lender_for(app, "CN", shared_lender_cn, rolled_back)


def _blocks_counted(lender: Lender, rule: str) -> int:
    objects = lender.objects
    key = objects.settings.queue_prefix + "recova:metrics:compliance_blocks"
    return int(objects.redis.hget(key, rule) or 0)


def test_attempt_outcome_and_a_block_on_record(cn: Lender) -> None:
    debt = cn.debt(timezone=zone_where_it_is(12))
    collector = login(cn.app, cn.collector_emails[0])
    base = f"/api/v1/tenants/{cn.slug}/cases/{debt.case_id}/attempts"
    before = _blocks_counted(cn, "cn.connected_calls_per_day")
    for n in range(3):
        made = collector.post(base, {"contact_id": debt.phones[0], "channel": "call_out"})
        assert made.status_code == 201, made.json
        assert made.json["status"] == "pending"
        assert made.json["allowed"] is True
        assert made.json["actor_kind"] == "agency"
        outcome = f"{base}/{made.json['id']}/outcome"
        if n == 0:  # the 2026 guideline: connected calls carry their recording
            missing = collector.post(outcome, {"code": "CONNECTED"})
            assert missing.status_code == 422
            assert "recording_ref" in missing.json["message"]
        done = collector.post(outcome, {"code": "CONNECTED", "recording_ref": f"rec-{n}"})
        assert done.status_code == 200, done.json
        assert (done.json["status"], done.json["result"]) == ("completed", "connected")
        assert collector.post(outcome, {"code": "BUSY"}).status_code == 409
    fourth = collector.post(base, {"contact_id": debt.phones[0], "channel": "call_out"})
    assert fourth.status_code == 201
    assert fourth.json["status"] == "blocked"
    assert fourth.json["rule"] == "cn.connected_calls_per_day"
    assert fourth.json["next_allowed_at"] is not None
    assert "connected calls today" in fourth.json["message"]
    # The block was committed with the request, and counted once.
    stored = cn.attempts(debt)
    assert [a.status for a in stored] == ["completed"] * 3 + ["blocked"]
    assert _blocks_counted(cn, "cn.connected_calls_per_day") == before + 1
    listed = collector.get(base)
    assert [a["status"] for a in listed.json] == ["blocked"] + ["completed"] * 3
    # The chain holds each attempt, each outcome and the block, by the collector.
    with cn.scope() as session:
        chain = events(session, action="contact.", subject=("case", debt.case_id))
        actions = [e.action for e in chain]
        assert actions == ["contact.attempt", "contact.outcome"] * 3 + ["contact.blocked"]
        assert {e.actor for e in chain} == {f"user:{cn.collector_ids[0]}"}
        blocked = json.loads(chain[-1].data)
        assert blocked["rule"] == "cn.connected_calls_per_day"
        assert blocked["attempt_id"] == fourth.json["id"]
        assert dt.datetime.fromisoformat(blocked["next_allowed_at"]) == (
            dt.datetime.fromisoformat(fourth.json["next_allowed_at"])
        )
        assert json.loads(chain[1].data)["result"] == "connected"
        # Masked values and ids only: no number of the debtor's reaches the chain.
        assert all("13812345678" not in e.data for e in chain)
        # Reaching the debtor started the agency's work: placed -> in_progress, once.
        moves = events(session, action="case.transition", subject=("case", debt.case_id))
        assert [json.loads(e.data)["to"] for e in moves] == ["in_progress"]
        case = session.get(Case, debt.case_id)
        assert case is not None
        assert case.status == CaseStatus.IN_PROGRESS


def test_agency_staff_reach_only_their_placed_cases(cn: Lender) -> None:
    debt = cn.debt(timezone=zone_where_it_is(12), placed_with=0)
    other = login(cn.app, cn.collector_emails[1])
    base = f"/api/v1/tenants/{cn.slug}/cases/{debt.case_id}/attempts"
    body = {"contact_id": debt.phones[0], "channel": "call_out"}
    assert other.post(base, body).status_code == 404
    assert other.get(base).status_code == 404
    own = login(cn.app, cn.collector_emails[0])
    assert own.post(base, body).status_code == 201
    # A recalled placement closes the case to the agency at once.
    with cn.scope() as session:
        placement = session.scalar(select(Placement).where(Placement.case_id == debt.case_id))
        assert placement is not None
        placement.recalled_on = dt.date(2026, 6, 1)
        placement.recall_reason = "tenant_recall"
    assert own.post(base, body).status_code == 404
    # Tenant staff reach every case of their tenant, and are recorded as such.
    admin = login(cn.app, cn.admin_email)
    made = admin.post(f"/api/v1/cases/{debt.case_id}/attempts", body)
    assert made.status_code == 201
    assert made.json["actor_kind"] == "tenant"


def test_collectors_reach_only_their_assigned_cases(cn: Lender) -> None:
    """A collector works the cases assigned to them; their agency's manager, every case
    placed with the agency. Anything else is 404, as for other agencies' cases."""
    debt = cn.debt(timezone=zone_where_it_is(12), assigned=False)
    base = f"/api/v1/tenants/{cn.slug}/cases/{debt.case_id}/attempts"
    body = {"contact_id": debt.phones[0], "channel": "call_out"}
    manager = login(cn.app, cn.manager_emails[0])
    made = manager.post(base, body)
    assert made.status_code == 201, made.json
    assert made.json["status"] == "pending"
    assert manager.get(base).status_code == 200
    outcome = f"{base}/{made.json['id']}/outcome"
    collector = login(cn.app, cn.collector_emails[0])
    assert collector.get(base).status_code == 404
    assert collector.post(base, body).status_code == 404
    assert collector.post(outcome, {"code": "NO_ANSWER"}).status_code == 404
    proposed = {**body, "case_id": debt.case_id, "at": local(SH, 2031, 3, 3, 10).isoformat()}
    simulated = collector.post(
        f"/api/v1/tenants/{cn.slug}/compliance/simulate", {"attempts": [proposed]}
    )
    assert simulated.json["attempts"][0]["rule"] == "request.not_found"
    cn.assign(debt, 0)
    assert [a["id"] for a in collector.get(base).json] == [made.json["id"]]
    # A message's result does not fit a call.
    assert collector.post(outcome, {"code": "DELIVERED"}).status_code == 422
    assert collector.post(outcome, {"code": "NO_ANSWER"}).status_code == 200
    cn.assign(debt, None)  # the assignment ended
    assert collector.get(base).status_code == 404
    assert manager.get(base).status_code == 200


def test_wrong_kind_of_contact_is_a_422(cn: Lender) -> None:
    debt = cn.debt(timezone=zone_where_it_is(12))
    collector = login(cn.app, cn.collector_emails[0])
    base = f"/api/v1/tenants/{cn.slug}/cases/{debt.case_id}/attempts"
    response = collector.post(base, {"contact_id": debt.email, "channel": "call_out"})
    assert response.status_code == 422
    assert "phone" in response.json["message"]


def test_third_party_templates_never_carry_the_debt(cn: Lender) -> None:
    debt = cn.debt(timezone=zone_where_it_is(12))
    admin = login(cn.app, cn.admin_email)
    for body, names in (
        ("Please tell {debtor_name} they owe {amount}.", "{amount}"),
        ("Call us about 1,200.00 yuan", "amount"),
        ("Please tell {debtor_name} the loan is past due.", "'loan'"),
        ("Ask {debtor_name} to call us about the overdue balance.", "'overdue'"),
        ("Hello, this is the Collections Department for {debtor_name}.", "'Collections'"),
        ("请转告{debtor_name}尽快处理逾期账单。", "'逾期'"),
        ("请{debtor_name}尽快还款，谢谢。", "'还款'"),  # noqa: RUF001
        ("请转告{debtor_name}，他的欠款需要处理。", "'欠'"),  # noqa: RUF001
    ):
        refused = admin.post(
            "/api/v1/contact/templates",
            {"name": "tp-bad", "channel": "sms", "audience": "third_party", "body": body},
        )
        assert refused.status_code == 422, body
        assert names in refused.json["message"], refused.json
    third = admin.post(
        "/api/v1/contact/templates",
        {
            "name": "tp-ok",
            "channel": "sms",
            "audience": "third_party",
            "body": "Hello {recipient_name}, please ask {debtor_name} to call {company}.",
        },
    )
    assert third.status_code == 201, third.json
    # Words that merely contain a stem ("bowl", "recollect") and a neutral Chinese
    # message pass; so does a callback number.
    for n, body in enumerate(
        (
            "Hello {recipient_name}, please ask {debtor_name} to recollect and call 400-820-1234.",
            "您好，请转告{debtor_name}回电{callback_number}，谢谢。",  # noqa: RUF001
        )
    ):
        fine = admin.post(
            "/api/v1/contact/templates",
            {"name": f"tp-fine-{n}", "channel": "sms", "audience": "third_party", "body": body},
        )
        assert fine.status_code == 201, (body, fine.json)
    with cn.scope() as session:
        saved = events(
            session, action="config.changed", subject=("message_template", third.json["id"])
        )
        assert json.loads(saved[0].data)["audience"] == "third_party"
    own = admin.post(
        "/api/v1/contact/templates",
        {
            "name": "debtor-reminder",
            "channel": "sms",
            "audience": "debtor",
            "body": "{debtor_name}, {amount} {currency} is overdue on {account_ref}.",
        },
    )
    assert own.status_code == 201
    relative = debt.third_parties[0]
    render = f"/api/v1/contact/templates/{own.json['id']}/render"
    assert admin.post(render, {"case_id": debt.case_id, "contact_id": relative}).status_code == 422
    mine = admin.post(render, {"case_id": debt.case_id, "contact_id": debt.phones[0]})
    assert mine.status_code == 200
    assert "5,000.00 CNY" in mine.json["body"]
    safe = admin.post(
        f"/api/v1/contact/templates/{third.json['id']}/render",
        {"case_id": debt.case_id, "contact_id": relative},
    )
    assert safe.status_code == 200
    assert "5,000" not in safe.json["body"]
    # A text to a third party must use a third-party template.
    base = f"/api/v1/cases/{debt.case_id}/attempts"
    assert admin.post(base, {"contact_id": relative, "channel": "sms"}).status_code == 422
    wrong = {"contact_id": relative, "channel": "sms", "template_id": own.json["id"]}
    assert admin.post(base, wrong).status_code == 422
    right = {"contact_id": relative, "channel": "sms", "template_id": third.json["id"]}
    sent = admin.post(base, right)
    assert sent.status_code == 201
    assert sent.json["rule"] == "third_party.debtor_reachable"  # not yet unreachable


def test_policy_api_tightens_and_refuses_loosening(cn: Lender) -> None:
    admin = login(cn.app, cn.admin_email)
    shown = admin.get("/api/v1/compliance/policy")
    assert shown.status_code == 200
    assert (shown.json["pack"], shown.json["pack_version"]) == ("CN", "CN-2026")
    assert shown.json["rules"]["window_end"] == "22:00"
    loose = admin.request(
        "PUT", "/api/v1/compliance/policy", {"overrides": {"window_end": "23:00"}}
    )
    assert loose.status_code == 422
    assert "loosens" in loose.json["errors"]["json"]["overrides"]["window_end"]
    tight = admin.request(
        "PUT",
        "/api/v1/compliance/policy",
        {"overrides": {"window_end": "21:00", "max_connected_calls_per_day": 2}},
    )
    assert tight.status_code == 200, tight.json
    assert tight.json["rules"]["window_end"] == "21:00"
    assert tight.json["rules"]["max_connected_calls_per_day"] == 2
    assert tight.json["pack_rules"]["max_connected_calls_per_day"] == 3
    assert len(tight.json["history"]) == 1
    with cn.scope() as session:
        changed = events(session, action="config.changed", subject=("compliance_policy",
                         tight.json["version_id"]))  # fmt: skip
        assert len(changed) == 1
        assert json.loads(changed[0].data)["overrides"] == {
            "window_end": "21:00",
            "max_connected_calls_per_day": 2,
        }
    analyst_denied = login(cn.app, cn.collector_emails[0]).request(
        "PUT", f"/api/v1/tenants/{cn.slug}/compliance/policy", {"overrides": {}}
    )
    assert analyst_denied.status_code == 403


def test_simulate_counts_earlier_proposals_and_writes_nothing(cn: Lender) -> None:
    debt = cn.debt()
    collector = login(cn.app, cn.collector_emails[0])
    day = (2031, 3, 3)
    schedule = [
        {
            "case_id": debt.case_id,
            "contact_id": debt.phones[0],
            "channel": "call_out",
            "at": local(SH, *day, hour, 0).isoformat(),
        }
        for hour in (9, 10, 11, 12)
    ]
    schedule.append({**schedule[0], "at": local(SH, *day, 23, 0).isoformat()})
    schedule.append(
        {**schedule[0], "contact_id": debt.third_parties[0], "at": local(SH, *day, 13).isoformat()}
    )
    response = collector.post(
        f"/api/v1/tenants/{cn.slug}/compliance/simulate", {"attempts": schedule}
    )
    assert response.status_code == 200, response.json
    answers = response.json["attempts"]
    assert [a["allowed"] for a in answers] == [True, True, True, False, False, False]
    assert answers[3]["rule"] == "cn.connected_calls_per_day"
    assert dt.datetime.fromisoformat(answers[3]["next_allowed_at"]) == local(SH, 2031, 3, 4, 8, 0)
    assert "cn.contact_window" in answers[4]["rules"]
    assert answers[5]["rule"] == "third_party.debtor_reachable"
    assert response.json["blocked"] == 3
    assert cn.attempts(debt) == []
    # Expected results count too: three unanswered calls make the debtor unreachable.
    failing = [{**line, "result": "no_answer"} for line in schedule[:3]]
    later = {**schedule[5], "at": local(SH, *day, 14).isoformat()}
    response = collector.post(
        f"/api/v1/tenants/{cn.slug}/compliance/simulate", {"attempts": [*failing, later]}
    )
    assert [a["allowed"] for a in response.json["attempts"]] == [True] * 4
    # Another agency's staff simulate only on their own cases.
    other = login(cn.app, cn.collector_emails[1])
    foreign = other.post(
        f"/api/v1/tenants/{cn.slug}/compliance/simulate", {"attempts": schedule[:1]}
    )
    assert foreign.json["attempts"][0]["rule"] == "request.not_found"


def test_validation_notices_due_and_overdue(app) -> None:  # type: ignore[no-untyped-def]
    us = make_lender(app, "US")
    # Debtors where it is midday now (a fixed offset): the texts, sent at this hour 10
    # days and 1 day ago, fall inside the contact window whenever the suite runs.
    noon = zone_where_it_is(12)
    late = us.debt(timezone=noon)
    recent = us.debt(timezone=noon)
    silent = us.debt(timezone=noon)
    now = dt.datetime.now(dt.UTC)
    us.attempt(late, now - dt.timedelta(days=10), channel=Channel.SMS, result="delivered")
    us.attempt(recent, now - dt.timedelta(days=1), channel=Channel.SMS, result="delivered")
    us.attempt(silent, now - dt.timedelta(days=10), channel=Channel.SMS, result="failed")
    admin = login(app, us.admin_email)
    listed = admin.get("/api/v1/compliance/validation-notices")
    assert listed.status_code == 200
    states = {row["case_id"]: row["state"] for row in listed.json}
    assert {k: v for k, v in states.items() if k in (late.case_id, recent.case_id)} == {
        late.case_id: "overdue",
        recent.case_id: "due",
    }
    assert silent.case_id not in states
    recorded = admin.post(f"/api/v1/cases/{late.case_id}/validation-notice", {"channel": "letter"})
    assert recorded.status_code == 200
    overdue = admin.get("/api/v1/compliance/validation-notices?state=overdue").json
    assert late.case_id not in {row["case_id"] for row in overdue}


def test_do_not_contact_marks(cn: Lender) -> None:
    debt = cn.debt(timezone=zone_where_it_is(12))
    collector = login(cn.app, cn.collector_emails[0])
    path = f"/api/v1/tenants/{cn.slug}/debtors/{debt.debtor_id}/do-not-contact"
    assert collector.request("PUT", path, {"do_not_contact": True}).status_code == 200
    attempt = collector.post(
        f"/api/v1/tenants/{cn.slug}/cases/{debt.case_id}/attempts",
        {"contact_id": debt.phones[0], "channel": "call_out"},
    )
    assert attempt.json["rule"] == "debtor.do_not_contact"
    assert collector.request("PUT", path, {"do_not_contact": False}).status_code == 403
    other = login(cn.app, cn.collector_emails[1])
    assert other.request("PUT", path, {"do_not_contact": True}).status_code == 404
    admin = login(cn.app, cn.admin_email)
    cleared = admin.request("PUT", f"/api/v1/debtors/{debt.debtor_id}/do-not-contact",
                            {"do_not_contact": False})  # fmt: skip
    assert cleared.json == {
        "debtor_id": debt.debtor_id,
        "contact_id": None,
        "do_not_contact": False,
    }


def test_outcome_codes_are_the_tenants_own(cn: Lender) -> None:
    admin = login(cn.app, cn.admin_email)
    codes = admin.get("/api/v1/contact/outcome-codes").json
    assert {c["result"] for c in codes} >= {"connected", "no_answer", "refused"}
    made = admin.post(
        "/api/v1/contact/outcome-codes",
        {"code": "PTP-CALLBACK", "label": "Promised, call back", "result": "connected"},
    )
    assert made.status_code == 201
    again = admin.post(
        "/api/v1/contact/outcome-codes", {"code": "PTP-CALLBACK", "label": "x", "result": "busy"}
    )
    assert again.status_code == 409
    debt = cn.debt(timezone=zone_where_it_is(12))
    attempt = admin.post(
        f"/api/v1/cases/{debt.case_id}/attempts",
        {"contact_id": debt.phones[0], "channel": "call_out"},
    ).json
    outcome = f"/api/v1/cases/{debt.case_id}/attempts/{attempt['id']}/outcome"
    retired = admin.patch(f"/api/v1/contact/outcome-codes/{made.json['id']}", {"is_active": False})
    assert retired.status_code == 200
    with cn.scope() as session:
        changes = events(
            session, action="config.changed", subject=("outcome_code", made.json["id"])
        )
        assert [json.loads(e.data)["is_active"] for e in changes] == [True, False]
    assert admin.post(outcome, {"code": "PTP-CALLBACK", "recording_ref": "r"}).status_code == 422
    admin.patch(f"/api/v1/contact/outcome-codes/{made.json['id']}", {"is_active": True})
    done = admin.post(outcome, {"code": "PTP-CALLBACK", "recording_ref": "r"})
    assert done.json["result"] == "connected"


def test_work_queue_hides_cases_that_cannot_be_called_now(cn: Lender) -> None:
    day = zone_where_it_is(12)
    night = zone_where_it_is(3)
    callable_ = cn.debt(timezone=day)
    misspelt = cn.debt(timezone="Mars/Olympus_Mons")  # falls back to the tenant's clock
    cn.debt(timezone=night)  # asleep: hidden
    disputed = cn.debt(timezone=day)
    capped = cn.debt(timezone=day)
    unwilling = cn.debt(timezone=day)
    cn.set_flags(disputed, ["dispute"])
    cn.set_debtor(unwilling, do_not_contact=True)
    now = dt.datetime.now(dt.UTC)
    for n in range(3):
        cn.attempt(capped, now - dt.timedelta(minutes=n), result="connected")
    # Each debt is assigned to the first agency's collector (``Lender.debt``).
    collector = login(cn.app, cn.collector_emails[0])
    queue = collector.get("/api/v1/agency/queue?page_size=100")
    assert queue.status_code == 200
    shown = [row["case_id"] for row in queue.json]
    assert callable_.case_id in shown
    assert set(shown) <= {callable_.case_id, misspelt.case_id}
    # Shanghai's clock decides for the misspelt zone, as it does in the gate.
    shanghai_open = 8 <= dt.datetime.now(dt.UTC).astimezone(ZoneInfo(SH)).hour < 22
    assert (misspelt.case_id in shown) is shanghai_open
    # A tenant whose policy opens the window later hides the midday debtor too.
    admin = login(cn.app, cn.admin_email)
    tightened = admin.request(
        "PUT",
        "/api/v1/compliance/policy",
        {"overrides": {"window_start": "13:00", "window_end": "14:00"}},
    )
    assert tightened.status_code == 200
    assert collector.get("/api/v1/agency/queue?page_size=100").json == []
