"""The case lifecycle and disputes through the API, and who reaches which case."""

from __future__ import annotations

import datetime as dt

from recova.platform.allocation.placement import WORKED_STATUSES
from recova.platform.cases.models import CaseStatus
from recova.platform.work.lifecycle import ALLOWED, TERMINAL, can_transition
from tests.work_support import actions, at_once, audit_trail, work_world


def test_the_table_admits_every_move_allocation_and_ingestion_make() -> None:
    # The place step, the recall step and the snapshot's close/reopen are set-based SQL
    # outside the lifecycle service; each of their moves must be one the table admits.
    for status in (CaseStatus.NEW, CaseStatus.RECALLED):
        assert can_transition(status, CaseStatus.PLACED)
    for name in WORKED_STATUSES:
        assert can_transition(CaseStatus(name), CaseStatus.RECALLED)
    for status in CaseStatus:
        if status not in TERMINAL:
            assert can_transition(status, CaseStatus.CLOSED), status
    assert can_transition(CaseStatus.CLOSED, CaseStatus.NEW)
    assert ALLOWED[CaseStatus.SETTLED] == ALLOWED[CaseStatus.PAID] == frozenset()


def test_transitions_are_kept_and_an_illegal_one_is_409_naming_from_to_and_allowed(app) -> None:
    world = work_world(app)
    case_id = world.cases_of(world.collector)[0]
    collector = world.collector_caller()
    lifecycle = world.path(f"/cases/{case_id}/lifecycle")
    assert collector.get(lifecycle).json["status"] == "placed"

    worked = collector.post(world.path(f"/cases/{case_id}/transitions"), {"to": "in_progress"})
    assert worked.status_code == 200, worked.json
    assert worked.json["status"] == "in_progress"
    # Agency staff may not close a case: that is the tenant's decision.
    refused = collector.post(world.path(f"/cases/{case_id}/transitions"), {"to": "closed"})
    assert refused.status_code == 403

    admin = world.admin()
    closed = admin.post(
        f"/api/v1/cases/{case_id}/transitions", {"to": "closed", "reason": "written off"}
    )
    assert closed.status_code == 200, closed.json
    assert closed.json["close_reason"] == "closed"
    assert closed.json["allowed_transitions"] == ["new"]

    illegal = admin.post(f"/api/v1/cases/{case_id}/transitions", {"to": "in_progress"})
    assert illegal.status_code == 409
    assert "from closed to in_progress" in illegal.json["message"]
    assert illegal.json["errors"]["transition"] == {
        "from": "closed",
        "to": "in_progress",
        "allowed": ["new"],
    }
    assert world.status(case_id) == "closed"

    history = admin.get(f"/api/v1/cases/{case_id}/transitions").json
    assert [(h["from_status"], h["to_status"]) for h in history] == [
        ("placed", "in_progress"),
        ("in_progress", "closed"),
    ]
    assert history[0]["actor"] == f"user:{world.collector}"
    assert history[1]["reason"] == "written off"
    trail = audit_trail(world, ("case", case_id))
    assert [(action, data["from"], data["to"]) for action, _, data in trail] == [
        ("case.transition", "placed", "in_progress"),
        ("case.transition", "in_progress", "closed"),
    ]
    assert trail[0][1] == f"user:{world.collector}"
    assert trail[1][2]["transition_id"] == history[1]["id"]
    # Neither the refused moves nor the free-text reason reach the chain.
    assert "written off" not in str(trail)


def test_statuses_owned_elsewhere_and_holds_set_by_hand(app) -> None:
    world = work_world(app)
    case_id = world.cases_of(world.collector)[0]
    admin = world.admin()
    url = f"/api/v1/cases/{case_id}/transitions"
    promised = admin.post(url, {"to": "promised"})
    assert promised.status_code == 422
    assert "POST /cases/<id>/promises" in promised.json["message"]
    assert admin.post(url, {"to": "on_hold"}).status_code == 422  # a hold needs a reason
    held = admin.post(url, {"to": "on_hold", "hold_reason": "legal"})
    assert held.status_code == 200
    assert held.json["hold_reason"] == "legal"
    # A held case leaves its agency at once, and the daily run does not place it again.
    recalled = "SELECT recall_reason FROM {s}.placements WHERE case_id = :c"
    assert world.tenant.sql(recalled, c=case_id) == [("legal_hold",)]
    world.tenant.run(world.today)
    assert world.tenant.sql(recalled, c=case_id) == [("legal_hold",)]
    assert world.status(case_id) == "on_hold"
    # With no agency it cannot go back to being worked; released, it is placed again.
    assert admin.post(url, {"to": "in_progress"}).status_code == 409
    released = admin.post(url, {"to": "recalled"})
    assert released.status_code == 200
    assert released.json["hold_reason"] is None
    world.tenant.run(world.today + dt.timedelta(days=1))
    assert world.status(case_id) == "placed"
    assert len(world.tenant.sql(recalled, c=case_id)) == 2


def test_a_dispute_holds_the_case_until_the_tenant_resolves_it(app) -> None:
    world = work_world(app)
    first, second = world.cases_of(world.collector)[:2]
    collector = world.collector_caller()
    opened = collector.post(
        world.path(f"/cases/{first}/disputes"), {"grounds": "already_paid", "notes": "receipt"}
    )
    assert opened.status_code == 201, opened.json
    state = world.admin().get(f"/api/v1/cases/{first}/lifecycle").json
    assert state["status"] == "on_hold"
    assert state["hold_reason"] == "dispute"
    assert state["flags"] == ["dispute"]
    # The flag recalled the case from the agency: the collector no longer reaches it.
    assert world.tenant.sql(
        "SELECT recall_reason FROM {s}.placements WHERE case_id = :c", c=first
    ) == [("excluded_flag",)]
    assert collector.get(world.path(f"/cases/{first}/lifecycle")).status_code == 404

    admin = world.admin()
    # Only resolving the dispute releases a dispute hold.
    stuck = admin.post(f"/api/v1/cases/{first}/transitions", {"to": "in_progress"})
    assert stuck.status_code == 409
    assert "resolve the dispute" in stuck.json["message"]
    manager = world.manager()
    dispute_id = opened.json["id"]
    assert (
        manager.post(world.path(f"/disputes/{dispute_id}/resolution"), {"outcome": "rejected"})
    ).status_code == 403
    rejected = admin.post(f"/api/v1/disputes/{dispute_id}/resolution", {"outcome": "rejected"})
    assert rejected.status_code == 200, rejected.json
    assert rejected.json["status"] == "rejected"
    state = admin.get(f"/api/v1/cases/{first}/lifecycle").json
    # Its agency lost it meanwhile, so it waits to be placed again.
    assert (state["status"], state["flags"], state["hold_reason"]) == ("recalled", [], None)
    again = admin.post(f"/api/v1/disputes/{dispute_id}/resolution", {"outcome": "upheld"})
    assert again.status_code == 409

    other = collector.post(world.path(f"/cases/{second}/disputes"), {"grounds": "not_my_debt"})
    assert other.status_code == 201
    upheld = admin.post(f"/api/v1/disputes/{other.json['id']}/resolution", {"outcome": "upheld"})
    assert upheld.status_code == 200
    state = admin.get(f"/api/v1/cases/{second}/lifecycle").json
    assert (state["status"], state["close_reason"]) == ("closed", "dispute_upheld")
    history = admin.get(f"/api/v1/cases/{second}/transitions").json
    assert [(h["from_status"], h["to_status"]) for h in history] == [
        ("placed", "on_hold"),
        ("on_hold", "closed"),
    ]
    assert actions(world, first) == [
        "case.transition",
        "dispute.opened",
        "case.transition",
        "dispute.resolved",
    ]
    [(_, _, resolved)] = [
        e for e in audit_trail(world, ("case", second)) if e[0] == "dispute.resolved"
    ]
    assert resolved == {"dispute_id": other.json["id"], "outcome": "upheld"}


def test_agency_staff_reach_only_their_agency_s_cases_and_collectors_their_own(app) -> None:
    world = work_world(app)
    a, b = world.agencies.ids
    other_agency_case = world.cases_of_agency(b)[0]
    first, second = world.agencies.collectors[a]
    colleague_case = world.cases_of(second)[0]
    own_case = world.cases_of(first)[0]
    manager_a = world.manager(a)
    collector = world.collector_caller(first)
    body = {"amount": "100.00", "due_date": world.today.isoformat()}
    for caller, case_id in (
        (manager_a, other_agency_case),
        (collector, other_agency_case),
        (collector, colleague_case),
    ):
        for method, rest, payload in (
            ("GET", "lifecycle", None),
            ("GET", "promises", None),
            ("POST", "promises", body),
            ("POST", "transitions", {"to": "in_progress"}),
            ("POST", "settlements", {"amount": "1.00", "expires_on": world.today.isoformat()}),
            ("POST", "disputes", {"grounds": "other"}),
        ):
            response = caller.request(method, world.path(f"/cases/{case_id}/{rest}"), payload)
            assert response.status_code == 404, (caller.label, case_id, rest, response.json)
    assert world.tenant.sql(
        "SELECT count(*) FROM {s}.promises WHERE case_id IN (:x, :y)",
        x=other_agency_case,
        y=colleague_case,
    ) == [(0,)]
    # The manager reaches every case of the agency; the collector their own.
    assert manager_a.get(world.path(f"/cases/{colleague_case}/lifecycle")).status_code == 200
    assert collector.get(world.path(f"/cases/{own_case}/lifecycle")).status_code == 200


def test_a_reached_debtor_moves_a_placed_case_to_in_progress_once(app) -> None:
    from recova.platform.cases.models import Case
    from recova.platform.kernel.extension import platform
    from recova.platform.work.lifecycle import mark_worked
    from recova.tenants.scope import tenant_scope

    world = work_world(app)
    case_id = world.cases_of(world.collector)[0]
    db = platform(app).db
    for expected in (True, False):  # the compliance side calls it on every connected call
        with tenant_scope(world.tenant.slug, db=db) as session:
            case = session.get(Case, case_id)
            assert case is not None
            moved = mark_worked(session, case=case, actor="job:dialer", reason="call connected")
            assert moved is expected
    assert world.status(case_id) == "in_progress"
    assert [(a, d["to"]) for a, _, d in audit_trail(world, ("case", case_id))] == [
        ("case.transition", "in_progress")
    ]


def test_a_case_with_a_live_promise_or_plan_is_not_put_back_to_work_by_hand(app) -> None:
    world = work_world(app)
    promised, planned = world.cases_of(world.collector)[:2]
    collector = world.collector_caller()
    due = (world.today + dt.timedelta(days=3)).isoformat()
    promise = collector.post(
        world.path(f"/cases/{promised}/promises"), {"amount": "50", "due_date": due}
    )
    assert promise.status_code == 201, promise.json
    plan = collector.post(
        world.path(f"/cases/{planned}/plans"),
        {"instalments": [{"due_date": due, "amount": "50"}]},
    )
    assert plan.status_code == 201, plan.json
    for case_id, live in (
        (promised, f"pending promise ({promise.json['id']})"),
        (planned, f"active payment plan ({plan.json['id']})"),
    ):
        refused = collector.post(world.path(f"/cases/{case_id}/transitions"), {"to": "in_progress"})
        assert refused.status_code == 409, refused.json
        assert live in refused.json["message"]
    assert (world.status(promised), world.status(planned)) == ("promised", "on_plan")


def test_two_resolutions_of_one_dispute_at_once_resolve_it_once(app, monkeypatch) -> None:
    world = work_world(app)
    case_id = world.cases_of(world.collector)[0]
    opened = world.collector_caller().post(
        world.path(f"/cases/{case_id}/disputes"), {"grounds": "other"}
    )
    assert opened.status_code == 201, opened.json
    url = f"/api/v1/disputes/{opened.json['id']}/resolution"
    first, second = world.admin(), world.admin()
    responses = at_once(
        monkeypatch,
        lambda: first.post(url, {"outcome": "upheld"}),
        lambda: second.post(url, {"outcome": "rejected"}),
    )
    assert sorted(r.status_code for r in responses) == [200, 409]
    [won] = [r for r in responses if r.status_code == 200]
    assert world.status(case_id) == ("closed" if won.json["status"] == "upheld" else "recalled")
    assert actions(world, case_id).count("dispute.resolved") == 1
