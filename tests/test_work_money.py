"""Promises, payment plans and settlements: judged by payments, through the API, the
jobs, the payments-run hook and the CLI."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

from recova.connectors.models import FeedKind
from recova.connectors.services import ingest_local_file, save_mapping
from recova.platform.entry.scheduler import TenantRun, periodic_jobs
from recova.platform.kernel.config import Settings, new_secrets
from recova.platform.kernel.extension import platform
from recova.platform.work.evaluation import evaluate_accounts
from recova.tenants.scope import tenant_scope
from tests.ingest_support import PAYMENT_COLUMNS
from tests.isolation_jobs import run_all_jobs
from tests.support import recova
from tests.work_support import WorkWorld, actions, at_once, audit_trail, work_world


def _evaluate(world: WorkWorld, as_of: dt.date) -> None:
    """The daily evaluation for a date, requested through the API and run by a worker."""
    accepted = world.admin().post("/api/v1/work/evaluations", {"as_of": as_of.isoformat()})
    assert accepted.status_code == 202, accepted.json
    assert len(accepted.json["job_ids"]) == 2
    run_all_jobs(world.app)


def _promise(world: WorkWorld, case_id: int, amount: str, due: dt.date) -> Any:
    return world.collector_caller().post(
        world.path(f"/cases/{case_id}/promises"), {"amount": amount, "due_date": due.isoformat()}
    )


def _promises(world: WorkWorld, case_id: int) -> list[dict[str, Any]]:
    return world.admin().get(f"/api/v1/cases/{case_id}/promises").json


def _state(world: WorkWorld, case_id: int) -> dict[str, Any]:
    return world.admin().get(f"/api/v1/cases/{case_id}/lifecycle").json


def _account_external_id(world: WorkWorld, case_id: int) -> str:
    [(value,)] = world.tenant.sql(
        "SELECT a.external_id FROM {s}.cases c JOIN {s}.accounts a ON a.id = c.account_id"
        " WHERE c.id = :c",
        c=case_id,
    )
    return str(value)


def test_promises_are_kept_partly_kept_or_broken(app, tmp_path: Path) -> None:
    world = work_world(app)
    kept, partly, broken = world.cases_of(world.collector)[:3]
    due = world.today + dt.timedelta(days=2)
    for case_id in (kept, partly, broken):
        created = _promise(world, case_id, "300.00", due)
        assert created.status_code == 201, created.json
        assert created.json["status"] == "pending"
        assert created.json["currency"] == "CNY"
        assert _state(world, case_id)["status"] == "promised"
    assert _promise(world, kept, "10.00", due).status_code == 409  # one pending at a time
    past = _promise(world, world.cases_of(world.collector)[3], "10", world.today - dt.timedelta(1))
    assert past.status_code == 422

    # Kept: the tenant's payments file arrives; the run hands its accounts to case work.
    objects = platform(app)
    with tenant_scope(world.tenant.slug, db=objects.db) as session:
        save_mapping(session, name="payments", kind=FeedKind.PAYMENTS, columns=PAYMENT_COLUMNS)
    paid_at = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)).isoformat()
    file = tmp_path / "payments.csv"
    file.write_text(
        "payment_id,loan_id,amount,paid_at,channel,reverses\n"
        f"PAY-1,{_account_external_id(world, kept)},200.00,{paid_at},bank,\n"
        f"PAY-2,{_account_external_id(world, kept)},100.00,{paid_at},bank,\n"
        # A date without a time is local midnight: before the promise, on its day.
        f"PAY-3,{_account_external_id(world, partly)},120.00,{world.today},bank,\n",
        encoding="utf-8",
    )
    ingest_local_file(objects, tenant_slug=world.tenant.slug, path=file, mapping_name="payments")
    run_all_jobs(app)
    [promise] = _promises(world, kept)
    assert (promise["status"], promise["paid_amount"]) == ("kept", "300.00")
    assert _state(world, kept)["status"] == "in_progress"
    assert _promises(world, partly)[0]["status"] == "pending"  # not all paid, still in time

    # Within the grace days nothing is judged; after them, partly kept and broken.
    _evaluate(world, due + dt.timedelta(days=3))
    assert [_promises(world, c)[0]["status"] for c in (partly, broken)] == ["pending", "pending"]
    _evaluate(world, due + dt.timedelta(days=4))
    [promise] = _promises(world, partly)
    assert (promise["status"], promise["paid_amount"]) == ("partly_kept", "120.00")
    assert _promises(world, broken)[0]["status"] == "broken"
    assert [_state(world, c)["broken_promises"] for c in (kept, partly, broken)] == [0, 0, 1]
    assert [_state(world, c)["status"] for c in (partly, broken)] == ["in_progress"] * 2
    _evaluate(world, due + dt.timedelta(days=5))  # judged once: nothing changes
    assert _state(world, broken)["broken_promises"] == 1
    evaluated = {
        case_id: [
            (data["status"], actor)
            for action, actor, data in audit_trail(world, ("case", case_id))
            if action == "promise.evaluated"
        ]
        for case_id in (kept, partly, broken)
    }
    assert evaluated == {
        kept: [("kept", "job:payment-evaluation")],
        partly: [("partly_kept", "job:promise-evaluation")],
        broken: [("broken", "job:promise-evaluation")],
    }
    assert actions(world, broken) == [
        "case.transition",
        "promise.created",
        "promise.evaluated",
        "case.transition",
    ]
    # The broken promise feeds the allocation score.
    world.tenant.run(world.today)
    [(component,)] = world.tenant.sql(
        "SELECT components->'broken_promises'->>'input' FROM {s}.case_scores WHERE case_id = :c",
        c=broken,
    )
    assert component == "1"


def test_a_reversed_payment_does_not_keep_a_promise(app) -> None:
    world = work_world(app)
    case_id = world.cases_of(world.collector)[0]
    due = world.today + dt.timedelta(days=1)
    assert _promise(world, case_id, "50", due).status_code == 201
    payment = world.pay(case_id, "50")
    world.reverse(payment, "50")
    _evaluate(world, due + dt.timedelta(days=4))
    assert _promises(world, case_id)[0]["status"] == "broken"


def test_a_plan_takes_payments_oldest_instalment_first_and_breaks_after_misses(app) -> None:
    world = work_world(app)
    case_id = world.cases_of(world.collector)[0]
    admin = world.admin()
    saved = admin.request(
        "PUT",
        "/api/v1/work/settings",
        {"plan_grace_days": 2, "plan_max_misses": 2, "max_deferrals": 1, "max_deferral_days": 10},
    )
    assert saved.status_code == 200, saved.json
    assert saved.json["promise_grace_days"] == 3  # untouched default
    days = [world.today + dt.timedelta(days=n) for n in (0, 30, 60)]
    created = world.collector_caller().post(
        world.path(f"/cases/{case_id}/plans"),
        {"instalments": [{"due_date": d.isoformat(), "amount": "100"} for d in days]},
    )
    assert created.status_code == 201, created.json
    plan_id = created.json["id"]
    assert created.json["total_amount"] == "300.00"
    assert _state(world, case_id)["status"] == "on_plan"

    world.pay(case_id, "150")
    _evaluate(world, world.today)
    plan = admin.get(f"/api/v1/plans/{plan_id}").json
    assert [(i["status"], i["paid_amount"]) for i in plan["instalments"]] == [
        ("paid", "100.00"),
        ("open", "50.00"),
        ("open", "0.00"),
    ]

    defer = f"/api/v1/plans/{plan_id}/instalments/3/deferral"
    too_far = admin.post(defer, {"due_date": (days[2] + dt.timedelta(days=11)).isoformat()})
    assert too_far.status_code == 409
    assert "at most 10 days" in too_far.json["message"]
    onto_next = admin.post(
        f"/api/v1/plans/{plan_id}/instalments/2/deferral", {"due_date": days[2].isoformat()}
    )
    assert onto_next.status_code == 409
    moved = admin.post(defer, {"due_date": (days[2] + dt.timedelta(days=5)).isoformat()})
    assert moved.status_code == 200, moved.json
    assert moved.json["instalments"][2]["original_due_date"] == days[2].isoformat()
    assert moved.json["deferrals"] == 1
    again = admin.post(defer, {"due_date": (days[2] + dt.timedelta(days=6)).isoformat()})
    assert again.status_code == 409  # one deferral per plan here

    _evaluate(world, days[1] + dt.timedelta(days=3))  # instalment 2 past its grace
    plan = admin.get(f"/api/v1/plans/{plan_id}").json
    assert [i["status"] for i in plan["instalments"]] == ["paid", "missed", "open"]
    assert (plan["status"], plan["misses"]) == ("active", 1)
    # Instalment 3 was deferred: its old date plus grace no longer misses it.
    _evaluate(world, days[2] + dt.timedelta(days=3))
    assert admin.get(f"/api/v1/plans/{plan_id}").json["status"] == "active"
    _evaluate(world, days[2] + dt.timedelta(days=8))
    plan = admin.get(f"/api/v1/plans/{plan_id}").json
    assert (plan["status"], plan["misses"]) == ("broken", 2)
    state = _state(world, case_id)
    assert (state["status"], state["broken_promises"]) == ("in_progress", 1)
    trail = audit_trail(world, ("case", case_id))
    assert [action for action, _, _ in trail] == [
        "case.transition",
        "plan.created",
        "plan.instalment",  # 1 paid
        "plan.deferred",
        "plan.instalment",  # 2 missed
        "plan.instalment",  # 3 missed
        "plan.broken",
        "case.transition",
    ]
    assert [(d["seq"], d["status"]) for a, _, d in trail if a == "plan.instalment"] == [
        (1, "paid"),
        (2, "missed"),
        (3, "missed"),
    ]
    [(_, _, deferred)] = [event for event in trail if event[0] == "plan.deferred"]
    assert (deferred["from"], deferred["to"]) == (
        days[2].isoformat(),
        (days[2] + dt.timedelta(days=5)).isoformat(),
    )
    [(_, _, changed)] = audit_trail(world, ("work_settings", 1))
    assert changed["changed"] == {  # what changed, not what was sent
        "plan_grace_days": [5, 2],
        "max_deferrals": [2, 1],
        "max_deferral_days": [30, 10],
    }


def test_a_plan_paid_in_full_leaves_the_case_paid(app) -> None:
    world = work_world(app)
    case_id = world.cases_of(world.collector)[0]
    balance = world.balance(case_id)
    half = (balance / 2).quantize(Decimal("0.01"))
    rest = balance - half
    admin = world.admin()
    created = admin.post(
        f"/api/v1/cases/{case_id}/plans",
        {
            "instalments": [
                {"due_date": world.today.isoformat(), "amount": str(half)},
                {"due_date": (world.today + dt.timedelta(days=7)).isoformat(), "amount": str(rest)},
            ]
        },
    )
    assert created.status_code == 201, created.json
    assert admin.post(f"/api/v1/cases/{case_id}/plans", created.json).status_code == 422
    world.pay(case_id, str(half))
    world.pay(case_id, str(rest))
    _evaluate(world, world.today)
    plan = admin.get(f"/api/v1/plans/{created.json['id']}").json
    assert plan["status"] == "completed"
    state = _state(world, case_id)
    assert (state["status"], state["close_reason"]) == ("paid", "paid")


def _offer(world: WorkWorld, caller: Any, case_id: int, amount: Decimal, days: int = 10) -> Any:
    expires = (world.today + dt.timedelta(days=days)).isoformat()
    return caller.post(
        world.path(f"/cases/{case_id}/settlements"), {"amount": str(amount), "expires_on": expires}
    )


def _decide(world: WorkWorld, caller: Any, settlement_id: int, approve: bool = True) -> Any:
    return caller.post(world.path(f"/settlements/{settlement_id}/decision"), {"approve": approve})


def test_settlement_discounts_need_the_approval_of_the_level_that_covers_them(app) -> None:
    world = work_world(app)
    admin, manager, collector = world.admin(), world.manager(), world.collector_caller()
    [(manager_id,)] = world.tenant.sql(
        "SELECT id FROM platform.users WHERE email = :e",
        e=world.agencies.managers[world.agency],
    )
    manager_actor = f"user:{manager_id}"
    contract = world.contract_id(world.agency)
    limit = admin.request(
        "PUT",
        f"/api/v1/work/contracts/{contract}/settlement-limit",
        {"settlement_discount_limit": "30"},
    )
    assert limit.status_code == 200, limit.json
    agency_limit = manager.request(
        "PUT", "/api/v1/agency/settlement-limit", {"collector_discount_limit": "10"}
    )
    assert agency_limit.status_code == 200, agency_limit.json
    assert agency_limit.json["contract_limits"] == {world.tenant.slug: "30.00"}
    cases = world.cases_of(world.collector)
    cent = Decimal("0.01")

    def at(case_id: int, discount: str) -> Decimal:
        return world.balance(case_id) * (100 - Decimal(discount)) / 100

    # Collector: at the agency's limit approves on their own; above it, the manager.
    own = _offer(world, collector, cases[0], at(cases[0], "10"))
    assert own.status_code == 201, own.json
    assert (own.json["status"], own.json["required_level"]) == ("approved", "collector")
    assert own.json["discount_percent"] == "10.00"
    above = _offer(world, collector, cases[1], at(cases[1], "10") - cent)
    assert (above.json["status"], above.json["required_level"]) == (
        "pending_approval",
        "manager",
    )
    refused = _decide(world, collector, above.json["id"])
    assert refused.status_code == 403
    assert "needs manager approval" in refused.json["message"]
    assert _decide(world, manager, above.json["id"]).json["status"] == "approved"

    # Manager: at the contract's limit; above it, the tenant.
    at_contract = _offer(world, collector, cases[2], at(cases[2], "30"))
    assert at_contract.json["required_level"] == "manager"
    approved = _decide(world, manager, at_contract.json["id"])
    assert (approved.status_code, approved.json["status"]) == (200, "approved")
    assert approved.json["decided_by"].startswith("user:")
    over = _offer(world, collector, cases[3], at(cases[3], "30") - cent)
    assert over.json["required_level"] == "tenant"
    assert _decide(world, manager, over.json["id"]).status_code == 403
    tenant_ok = _decide(world, admin, over.json["id"])
    assert (tenant_ok.status_code, tenant_ok.json["status"]) == (200, "approved")
    assert _decide(world, admin, over.json["id"]).status_code == 409  # decided already

    # An agency limit above its contract's is capped there.
    manager.request("PUT", "/api/v1/agency/settlement-limit", {"collector_discount_limit": "50"})
    capped = _offer(world, collector, cases[4], at(cases[4], "35"))
    assert capped.json["required_level"] == "tenant"
    rejected = _decide(world, admin, capped.json["id"], approve=False)
    assert rejected.json["status"] == "rejected"
    within = _offer(world, collector, cases[4], at(cases[4], "30"))
    assert (within.json["status"], within.json["required_level"]) == ("approved", "collector")
    assert _offer(world, collector, cases[4], at(cases[4], "1")).status_code == 409  # one open
    offered = audit_trail(world, ("case", cases[3]))
    assert [action for action, _, _ in offered] == ["settlement.offered", "settlement.decided"]
    assert offered[0][2]["required_level"] == "tenant"
    assert offered[0][2]["manager_limit"] == "30.00"
    assert (offered[1][1], offered[1][2]["approved"], offered[1][2]["level"]) == (
        f"user:{world.tenant_admin_id}",
        True,
        "tenant",
    )
    [(_, _, limit_change)] = audit_trail(world, ("agency_contract", contract))
    assert limit_change["changed"] == {"settlement_discount_limit": ["0.00", "30.00"]}
    agency_changes = audit_trail(world, ("agency", world.agency))
    assert [(actor, data["changed"]) for _, actor, data in agency_changes] == [
        (manager_actor, {"collector_discount_limit": ["0.00", "10.00"]}),
        (manager_actor, {"collector_discount_limit": ["10.00", "50.00"]}),
    ]


def test_a_paid_settlement_settles_the_case_and_unpaid_offers_expire(app, settings) -> None:
    world = work_world(app)
    admin = world.admin()
    paid_case, lapsing_case = world.cases_of(world.collector)[:2]
    amount = (world.balance(paid_case) * Decimal("0.8")).quantize(Decimal("0.01"))
    offer = _offer(world, admin, paid_case, amount, days=5)
    assert offer.json["status"] == "approved"  # the tenant approves its own offer
    lapsing = _offer(world, admin, lapsing_case, world.balance(lapsing_case) - 1, days=5)
    world.pay(paid_case, str(amount - 1))
    objects = platform(app)
    with tenant_scope(world.tenant.slug, db=objects.db) as session:
        evaluate_accounts(
            session,
            accounts=[a for (a,) in world.tenant.sql("SELECT id FROM {s}.accounts")],
            today=world.today,
            timezone=world.tenant.timezone,
            actor="job:test",
        )
    assert _state(world, paid_case)["status"] == "placed"  # one short
    world.pay(paid_case, "1")
    with tenant_scope(world.tenant.slug, db=objects.db) as session:
        counts = evaluate_accounts(
            session,
            accounts=[a for (a,) in world.tenant.sql("SELECT id FROM {s}.accounts")],
            today=world.today,
            timezone=world.tenant.timezone,
            actor="job:test",
        )
    assert counts["settled"] == 1
    state = _state(world, paid_case)
    assert (state["status"], state["close_reason"]) == ("settled", "settled")
    assert state["closed_at"] is not None
    [settled] = admin.get(f"/api/v1/cases/{paid_case}/settlements").json
    assert (settled["status"], settled["paid_amount"]) == ("paid", str(amount))

    env = _cli_env(settings)
    expiry = (world.today + dt.timedelta(days=5)).isoformat()
    early = recova(env, "work", "expire-settlements", world.tenant.slug, "--as-of", expiry)
    assert early.exit_code == 0, early.output
    assert "0 offers expired" in early.output
    later = (world.today + dt.timedelta(days=6)).isoformat()
    result = recova(env, "work", "expire-settlements", world.tenant.slug, "--as-of", later)
    assert result.exit_code == 0, result.output
    assert "1 offers expired, 0 paid" in result.output
    [expired] = admin.get(f"/api/v1/cases/{lapsing_case}/settlements").json
    assert (expired["id"], expired["status"]) == (lapsing.json["id"], "expired")
    assert _state(world, lapsing_case)["status"] == "placed"
    assert actions(world, paid_case) == [
        "settlement.offered",
        "settlement.paid",
        "case.transition",
    ]
    assert actions(world, lapsing_case) == ["settlement.offered", "settlement.expired"]


def _evaluate_accounts(world: WorkWorld) -> dict[str, Any]:
    """What the payments run's hook does, for every account of the tenant."""
    with tenant_scope(world.tenant.slug, db=platform(world.app).db) as session:
        return evaluate_accounts(
            session,
            accounts=[a for (a,) in world.tenant.sql("SELECT id FROM {s}.accounts")],
            today=world.today,
            timezone=world.tenant.timezone,
            actor="job:test",
        )


def test_an_offer_paid_after_the_case_was_recalled_or_held_still_settles_it(app) -> None:
    world = work_world(app)
    admin, collector = world.admin(), world.collector_caller()
    recalled, disputed, held = world.cases_of(world.collector)[:3]
    amounts = {}
    for case_id in (recalled, disputed):
        amounts[case_id] = (world.balance(case_id) * Decimal("0.8")).quantize(Decimal("0.01"))
        offer = _offer(world, admin, case_id, amounts[case_id])
        assert offer.json["status"] == "approved", offer.json
    # After the approval the placement ends, and a dispute holds the other case.
    [(placement_id,)] = world.tenant.sql(
        "SELECT id FROM {s}.placements WHERE case_id = :c AND recalled_on IS NULL", c=recalled
    )
    assert admin.post(f"/api/v1/placements/{placement_id}/recall", {}).status_code == 200
    assert world.status(recalled) == "recalled"
    opened = collector.post(world.path(f"/cases/{disputed}/disputes"), {"grounds": "other"})
    assert opened.status_code == 201, opened.json
    assert world.status(disputed) == "on_hold"
    # No new offer is made on a held case, though.
    legal = admin.post(
        f"/api/v1/cases/{held}/transitions", {"to": "on_hold", "hold_reason": "legal"}
    )
    assert legal.status_code == 200, legal.json
    refused = _offer(world, admin, held, world.balance(held) - 1)
    assert refused.status_code == 409
    assert "being worked" in refused.json["message"]

    for case_id, amount in amounts.items():
        world.pay(case_id, str(amount))
    assert _evaluate_accounts(world)["settled"] == 2
    for case_id in (recalled, disputed):
        state = _state(world, case_id)
        assert (state["status"], state["close_reason"], state["hold_reason"]) == (
            "settled",
            "settled",
            None,
        )
        [offer] = admin.get(f"/api/v1/cases/{case_id}/settlements").json
        assert offer["status"] == "paid"
    history = admin.get(f"/api/v1/cases/{disputed}/transitions").json
    assert (history[-1]["from_status"], history[-1]["to_status"]) == ("on_hold", "settled")
    assert "releases the dispute hold" in history[-1]["reason"]
    released = [d for a, _, d in audit_trail(world, ("case", disputed)) if a == "case.transition"]
    assert released[-1] == {
        "from": "on_hold",
        "to": "settled",
        "transition_id": history[-1]["id"],
        "released_hold": "dispute",
    }
    # Settled, the recalled case is not placed again.
    world.tenant.run(world.today + dt.timedelta(days=1))
    assert world.status(recalled) == "settled"
    assert world.tenant.sql(
        "SELECT count(*) FROM {s}.placements WHERE case_id = :c", c=recalled
    ) == [(1,)]


def test_a_plan_supersedes_the_pending_promise_and_keeps_the_case_until_paid(app) -> None:
    world = work_world(app)
    case_id = world.cases_of(world.collector)[0]
    collector = world.collector_caller()
    due = world.today + dt.timedelta(days=2)
    promise_id = _promise(world, case_id, "100.00", due).json["id"]
    balance = world.balance(case_id)
    half = (balance / 2).quantize(Decimal("0.01"))
    created = collector.post(
        world.path(f"/cases/{case_id}/plans"),
        {
            "instalments": [
                {"due_date": (due + dt.timedelta(days=10)).isoformat(), "amount": str(half)},
                {
                    "due_date": (due + dt.timedelta(days=40)).isoformat(),
                    "amount": str(balance - half),
                },
            ]
        },
    )
    assert created.status_code == 201, created.json
    [promise] = _promises(world, case_id)
    assert (promise["id"], promise["status"]) == (promise_id, "superseded")
    assert promise["evaluated_at"] is not None
    trail = audit_trail(world, ("case", case_id))
    assert [action for action, _, _ in trail] == [
        "case.transition",  # placed -> promised
        "promise.created",
        "case.transition",  # promised -> on_plan
        "plan.created",
        "promise.superseded",
    ]
    assert trail[-1][2] == {"promise_id": promise_id, "plan_id": created.json["id"]}
    # Its grace days over, the superseded promise is not judged: nothing broken, still
    # on the plan; paid in full, the plan leaves the case paid.
    _evaluate(world, due + dt.timedelta(days=4))
    state = _state(world, case_id)
    assert (state["status"], state["broken_promises"]) == ("on_plan", 0)
    world.pay(case_id, str(balance))
    _evaluate(world, due + dt.timedelta(days=5))
    assert _promises(world, case_id)[0]["status"] == "superseded"
    assert world.admin().get(f"/api/v1/plans/{created.json['id']}").json["status"] == "completed"
    assert _state(world, case_id)["status"] == "paid"


def test_a_promise_judged_while_the_case_is_on_a_plan_leaves_it_on_the_plan(app) -> None:
    world = work_world(app)
    case_id = world.cases_of(world.collector)[0]
    created = world.admin().post(
        f"/api/v1/cases/{case_id}/plans",
        {"instalments": [{"due_date": world.today.isoformat(), "amount": "50"}]},
    )
    assert created.status_code == 201, created.json
    # A promise left pending beside the plan (as plans made before superseding left them).
    world.tenant.sql(
        "INSERT INTO {s}.promises (case_id, amount, currency, due_date, status, paid_amount,"
        " created_by) VALUES (:c, 80, 'CNY', :due, 'pending', 0, 'job:test')",
        c=case_id,
        due=world.today,
    )
    _evaluate(world, world.today + dt.timedelta(days=4))
    assert _promises(world, case_id)[0]["status"] == "broken"
    assert _state(world, case_id)["status"] == "on_plan"


def test_two_decisions_on_one_offer_at_once_one_wins_the_other_is_409(app, monkeypatch) -> None:
    world = work_world(app)
    case_id = world.cases_of(world.collector)[0]
    offer = _offer(world, world.collector_caller(), case_id, world.balance(case_id) / 2)
    assert offer.json["status"] == "pending_approval"
    first, second = world.admin(), world.admin()
    responses = at_once(
        monkeypatch,
        lambda: _decide(world, first, offer.json["id"], approve=True),
        lambda: _decide(world, second, offer.json["id"], approve=False),
    )
    assert sorted(r.status_code for r in responses) == [200, 409]
    [won] = [r for r in responses if r.status_code == 200]
    [lost] = [r for r in responses if r.status_code == 409]
    assert "not pending approval" in lost.json["message"]
    [stored] = world.admin().get(f"/api/v1/cases/{case_id}/settlements").json
    assert stored["status"] == won.json["status"]
    assert actions(world, case_id).count("settlement.decided") == 1


def test_two_deferrals_at_once_do_not_exceed_the_plan_s_limit(app, monkeypatch) -> None:
    world = work_world(app)
    case_id = world.cases_of(world.collector)[0]
    admin = world.admin()
    admin.request("PUT", "/api/v1/work/settings", {"max_deferrals": 1})
    days = [world.today + dt.timedelta(days=n) for n in (10, 40)]
    created = admin.post(
        f"/api/v1/cases/{case_id}/plans",
        {"instalments": [{"due_date": d.isoformat(), "amount": "100"} for d in days]},
    )
    plan_id = created.json["id"]
    first, second = world.admin(), world.admin()
    responses = at_once(
        monkeypatch,
        *(
            lambda caller=caller, seq=seq, day=day: caller.post(
                f"/api/v1/plans/{plan_id}/instalments/{seq}/deferral",
                {"due_date": (day + dt.timedelta(days=5)).isoformat()},
            )
            for caller, seq, day in ((first, 1, days[0]), (second, 2, days[1]))
        ),
    )
    assert sorted(r.status_code for r in responses) == [200, 409]
    plan = admin.get(f"/api/v1/plans/{plan_id}").json
    assert plan["deferrals"] == 1
    assert sum(i["due_date"] != i["original_due_date"] for i in plan["instalments"]) == 1


def _cli_env(settings: Settings) -> dict[str, str]:
    assert settings.database_url is not None
    assert settings.redis_url is not None
    return {
        "RECOVA_ENV": "test",
        "RECOVA_HOME": str(settings.home),
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "RECOVA_QUEUE_PREFIX": settings.queue_prefix,
        **new_secrets(),
    }


def test_cli_evaluates_promises_and_changes_settings(app, settings) -> None:
    world = work_world(app)
    case_id = world.cases_of(world.collector)[0]
    due = world.today + dt.timedelta(days=1)
    assert _promise(world, case_id, "80", due).status_code == 201
    env = _cli_env(settings)
    shown = recova(env, "work", "settings", world.tenant.slug, "--set", "promise_grace_days=0")
    assert shown.exit_code == 0, shown.output
    assert "promise_grace_days     0" in shown.output
    bad = recova(env, "work", "settings", world.tenant.slug, "--set", "plan_max_misses=0")
    assert bad.exit_code == 1
    as_of = (due + dt.timedelta(days=1)).isoformat()
    result = recova(env, "work", "evaluate-promises", world.tenant.slug, "--as-of", as_of)
    assert result.exit_code == 0, result.output
    assert "promises 0 kept, 0 partly kept, 1 broken" in result.output
    assert _promises(world, case_id)[0]["status"] == "broken"
    missing = recova(env, "work", "evaluate-promises", "no-such-tenant")
    assert missing.exit_code == 1
    assert "no tenant" in missing.output


def test_the_scheduler_runs_the_daily_evaluation_and_expiry_per_tenant_date() -> None:
    jobs = {job.name: job for job in periodic_jobs()}
    slot = dt.datetime(2026, 3, 10, 16, 10, tzinfo=dt.UTC)
    run = TenantRun(tenant_id=4, slug="a", timezone="Asia/Shanghai", slot=slot)
    assert jobs["evaluate-promises"].plan(run) == (
        "evaluate-promises-4-2026-03-11",
        {"tenant_id": 4, "as_of": "2026-03-11"},
    )
    assert jobs["expire-settlements"].plan(run) == (
        "expire-settlements-4-2026-03-11",
        {"tenant_id": 4, "as_of": "2026-03-11"},
    )
    assert jobs["evaluate-promises"].job.queue == "work"
    # After the days-past-due refresh, before the allocation run that scores the cases.
    refresh, allocate = jobs["refresh-dpd"].schedule, jobs["allocate"].schedule
    evaluate = jobs["evaluate-promises"].schedule
    assert refresh.latest_slot(slot) < evaluate.latest_slot(slot)
    assert evaluate.at < allocate.at  # type: ignore[union-attr]


def test_the_demo_records_a_promise_a_plan_and_an_offer_once(app) -> None:
    from recova.platform.work.demo import demo_case_work

    world = work_world(app)
    db = platform(app).db
    [(slug, line)] = demo_case_work(db, [world.tenant.slug])
    assert slug == world.tenant.slug
    assert "settlement offer" in line
    assert "pending approval" in line  # 20% off is above the agency's default limit of 0
    counts = world.tenant.sql(
        "SELECT (SELECT count(*) FROM {s}.promises), (SELECT count(*) FROM {s}.payment_plans),"
        " (SELECT count(*) FROM {s}.settlements)"
    )
    assert counts == [(1, 1, 1)]
    assert demo_case_work(db, [world.tenant.slug]) == [(slug, line)]  # the same, nothing added
    assert world.tenant.sql("SELECT count(*) FROM {s}.promises") == [(1,)]


def test_an_offer_stays_with_the_agency_that_priced_it(app) -> None:
    world = work_world(app)
    b = world.agencies.ids[1]
    case_id = world.cases_of(world.collector)[0]
    offer = _offer(world, world.collector_caller(), case_id, world.balance(case_id) / 2)
    assert offer.json["status"] == "pending_approval"
    admin = world.admin()
    [(placement_id,)] = world.tenant.sql(
        "SELECT id FROM {s}.placements WHERE case_id = :c AND recalled_on IS NULL", c=case_id
    )
    assert admin.post(f"/api/v1/placements/{placement_id}/recall", {}).status_code == 200
    world.tenant.run(world.today + dt.timedelta(days=1))
    assert case_id in world.cases_of_agency(b)
    manager_b = world.manager(b)
    assert manager_b.get(world.path(f"/cases/{case_id}/settlements")).json == []
    moved = _decide(world, manager_b, offer.json["id"])
    assert moved.status_code == 409
    assert "another agency" in moved.json["message"]
    assert [s["id"] for s in admin.get(f"/api/v1/cases/{case_id}/settlements").json] == [
        offer.json["id"]
    ]


def test_two_evaluations_at_once_judge_a_promise_once(app) -> None:
    import threading

    from recova.platform.work.models import Promise
    from recova.platform.work.promises import evaluate_promise

    world = work_world(app)
    case_id = world.cases_of(world.collector)[0]
    due = world.today + dt.timedelta(days=1)
    promise_id = _promise(world, case_id, "40", due).json["id"]
    db = platform(app).db
    both_loaded = threading.Barrier(2)
    outcomes: list[Any] = []

    def judge() -> None:
        with tenant_scope(world.tenant.slug, db=db) as session:
            promise = session.get(Promise, promise_id)
            assert promise is not None
            both_loaded.wait(timeout=10)  # each holds it as pending before either judges
            outcomes.append(
                evaluate_promise(
                    session,
                    promise,
                    today=due + dt.timedelta(days=10),
                    timezone=world.tenant.timezone,
                    actor="job:test",
                )
            )

    threads = [threading.Thread(target=judge) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(map(str, outcomes)) == ["None", "broken"]
    assert _state(world, case_id)["broken_promises"] == 1
    assert actions(world, case_id).count("promise.evaluated") == 1
