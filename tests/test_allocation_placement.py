"""The daily allocation run through its services: splits, capacity, exclusions, history,
champion/challenger, idempotency, concurrency, crash recovery, recall and grace."""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter
from decimal import Decimal

import pytest

from recova.platform.allocation import assignment as assignment_module
from recova.platform.allocation import services as services_module
from recova.platform.allocation.models import Placement
from recova.platform.allocation.placement import placement_credited_for
from recova.platform.allocation.services import run_allocation
from recova.tenants.scope import tenant_scope
from tests.allocation_support import (
    AS_OF,
    activate_policy,
    make_agencies,
    make_tenant,
    seed_cases,
    split_policy,
    state,
)


def placed_by_segment(tenant) -> dict[str, Counter[int]]:  # type: ignore[no-untyped-def]
    result: dict[str, Counter[int]] = {}
    for segment, agency_id, n in tenant.sql(
        "SELECT segment, agency_id, count(*) FROM {s}.placements"
        " WHERE recalled_on IS NULL GROUP BY 1, 2"
    ):
        result.setdefault(segment, Counter())[agency_id] = n
    return result


def test_a_percentage_split_is_honoured_to_within_one_case_per_segment(app) -> None:
    agencies = make_agencies(app, 3)
    tenant = make_tenant(app, agencies)
    seed_cases(tenant, 2_000)
    a, b, c = agencies.ids
    activate_policy(tenant, split_policy({a: 50, b: 30, c: 20}))

    result = tenant.run()

    assert result.counts["place"]["placed"] == 2_000
    segments = placed_by_segment(tenant)
    assert set(segments) == {"M1", "M2", "M3", "M4", "M6+"}
    for counts in segments.values():
        total = sum(counts.values())
        for agency_id, share in ((a, 50), (b, 30), (c, 20)):
            assert abs(counts[agency_id] - total * share / 100) < 1, (counts, total)


def test_capacity_is_never_exceeded_and_the_best_scores_get_the_room(app) -> None:
    agencies = make_agencies(app, 2)
    tenant = make_tenant(app, agencies)
    seed_cases(tenant, 600)
    a, b = agencies.ids
    activate_policy(
        tenant,
        split_policy(
            {a: 50, b: 50},
            capacity={str(a): {"max_cases": 100}, str(b): {"max_balance": "500000"}},
        ),
    )

    counts = tenant.run().counts["place"]

    (a_cases,), (b_balance,) = (
        tenant.sql("SELECT count(*) FROM {s}.placements WHERE agency_id = :a", a=a)[0],
        tenant.sql(
            "SELECT coalesce(sum(balance_at_placement), 0) FROM {s}.placements"
            " WHERE agency_id = :b",
            b=b,
        )[0],
    )
    assert a_cases == 100
    assert 0 < b_balance <= Decimal(500_000)
    assert counts["held_for_capacity"] == 600 - counts["placed"] > 0
    # Agency A's room went to its highest-scored cases.
    (worst_placed,) = tenant.sql(
        "SELECT min(sc.score) FROM {s}.placements p JOIN {s}.case_scores sc USING (case_id)"
        " WHERE p.agency_id = :a",
        a=a,
    )[0]
    assert worst_placed > 0
    # The next run keeps within the limits too.
    tenant.run(AS_OF + dt.timedelta(days=1))
    assert tenant.sql("SELECT count(*) FROM {s}.placements WHERE agency_id = :a", a=a)[0][0] == 100


def test_flagged_cases_are_never_placed_and_a_flagged_placed_case_is_recalled(app) -> None:
    agencies = make_agencies(app, 1)
    tenant = make_tenant(app, agencies)
    ids = seed_cases(tenant, 40)
    flagged = {ids[0]: "dispute", ids[1]: "bankruptcy", ids[2]: "deceased", ids[3]: "cease_contact"}
    for case_id, flag in flagged.items():
        tenant.sql("UPDATE {s}.cases SET flags = ARRAY[:f] WHERE id = :id", f=flag, id=case_id)
    activate_policy(tenant, split_policy({agencies.ids[0]: 100}))

    tenant.run()
    placed = {row[0] for row in tenant.sql("SELECT case_id FROM {s}.placements")}
    assert placed == set(ids) - set(flagged)

    # A case flagged while placed is recalled by the next run and not placed again.
    tenant.sql("UPDATE {s}.cases SET flags = '{dispute}' WHERE id = :id", id=ids[10])
    counts = tenant.run(AS_OF + dt.timedelta(days=1)).counts
    assert counts["recall"]["recalled_excluded_flag"] == 1
    assert tenant.sql(
        "SELECT recall_reason FROM {s}.placements WHERE case_id = :id", id=ids[10]
    ) == [("excluded_flag",)]
    assert tenant.sql(
        "SELECT count(*) FROM {s}.placements WHERE recalled_on IS NULL AND case_id = :id",
        id=ids[10],
    ) == [(0,)]


def test_expired_placements_are_recalled_and_never_return_to_an_agency(app) -> None:
    agencies = make_agencies(app, 2)
    tenant = make_tenant(app, agencies, placement_days=30, grace_days=10)
    seed_cases(tenant, 50)
    a, b = agencies.ids
    activate_policy(tenant, split_policy({a: 50, b: 50}))
    tenant.run()
    first = dict(tenant.sql("SELECT case_id, agency_id FROM {s}.placements"))

    # Day 30: every placement expired on its end date and moved to the other agency.
    counts = tenant.run(AS_OF + dt.timedelta(days=31)).counts
    assert counts["recall"]["recalled_expired"] == 50
    assert tenant.sql(
        "SELECT DISTINCT recalled_on, grace_until FROM {s}.placements WHERE recalled_on IS NOT NULL"
    ) == [(AS_OF + dt.timedelta(days=30), AS_OF + dt.timedelta(days=40))]
    second = dict(
        tenant.sql("SELECT case_id, agency_id FROM {s}.placements WHERE recalled_on IS NULL")
    )
    assert set(second) == set(first)
    assert all(second[case] != first[case] for case in first)

    # Day 61: both agencies have had every case; none is placed a third time.
    counts = tenant.run(AS_OF + dt.timedelta(days=62)).counts
    assert counts["place"]["placed"] == 0
    assert counts["place"]["no_agency"] == 50
    pairs = tenant.sql("SELECT case_id, agency_id, count(*) FROM {s}.placements GROUP BY 1, 2")
    assert all(n == 1 for _, _, n in pairs)
    assert tenant.sql("SELECT DISTINCT status::text FROM {s}.cases") == [("recalled",)]


def test_champion_challenger_is_reproducible_and_the_holdout_stays_unplaced(app) -> None:
    agencies = make_agencies(app, 2)
    a, b = agencies.ids
    policy = {
        "segments": {
            "*": {
                "mode": "champion_challenger",
                "seed": "2031-q1",
                "arms": [
                    {"name": "champion", "share": 60, "agencies": [{"agency_id": a, "share": 100}]},
                    {
                        "name": "challenger",
                        "share": 30,
                        "agencies": [{"agency_id": b, "share": 100}],
                    },
                    {"name": "control", "share": 10, "holdout": True},
                ],
            }
        }
    }
    arms = []
    for _ in range(2):  # two tenants with the same cases and the same seed
        tenant = make_tenant(app, agencies)
        seed_cases(tenant, 1_000)
        activate_policy(tenant, policy)
        counts = tenant.run().counts["place"]
        recorded = tenant.sql(
            "SELECT c.account_id, r.arm, r.holdout FROM {s}.strategy_arms r"
            " JOIN {s}.cases c ON c.id = r.case_id ORDER BY 1"
        )
        assert len(recorded) == 1_000
        holdout = {row[0] for row in recorded if row[2]}
        assert counts["holdout"] == len(holdout)
        assert 50 < len(holdout) < 150  # about 10%
        placed_accounts = {
            row[0]
            for row in tenant.sql(
                "SELECT c.account_id FROM {s}.placements p JOIN {s}.cases c ON c.id = p.case_id"
            )
        }
        assert placed_accounts.isdisjoint(holdout)
        arm_agency = set(tenant.sql("SELECT DISTINCT arm, agency_id FROM {s}.placements"))
        assert arm_agency == {("champion", a), ("challenger", b)}
        # Later runs keep the control group out.
        tenant.run(AS_OF + dt.timedelta(days=1))
        assert tenant.sql("SELECT count(*) FROM {s}.placements")[0][0] == 1_000 - len(holdout)
        arms.append([(row[1], row[2]) for row in recorded])
    assert arms[0] == arms[1]


def test_a_second_run_the_same_day_changes_nothing(app) -> None:
    agencies = make_agencies(app, 2)
    tenant = make_tenant(app, agencies)
    seed_cases(tenant, 300)
    activate_policy(tenant, split_policy({agencies.ids[0]: 50, agencies.ids[1]: 50}))
    first = tenant.run()
    before = state(tenant)
    second = tenant.run()
    assert state(tenant) == before
    assert second.run_id == first.run_id
    assert second.counts["place"]["placed"] == 0
    assert second.counts["score"] == {"scores_changed": 0, "segments_changed": 0}
    assert tenant.sql("SELECT attempts, status FROM {s}.allocation_runs") == [(2, "completed")]


def test_two_concurrent_runs_give_one_result(app) -> None:
    agencies = make_agencies(app, 2)
    twin, tenant = make_tenant(app, agencies), make_tenant(app, agencies)
    for each in (twin, tenant):
        seed_cases(each, 500)
        activate_policy(each, split_policy({agencies.ids[0]: 50, agencies.ids[1]: 50}))
    twin.run()

    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def run() -> None:
        try:
            barrier.wait()
            tenant.run()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert state(tenant) == state(twin)
    assert tenant.sql("SELECT count(*) FROM {s}.placements")[0][0] == 500


def test_a_run_killed_mid_way_and_run_again_reaches_the_same_end_state(
    app, monkeypatch: pytest.MonkeyPatch
) -> None:
    agencies = make_agencies(app, 2)
    twin, tenant = make_tenant(app, agencies), make_tenant(app, agencies)
    for each in (twin, tenant):
        seed_cases(each, 400)
        activate_policy(each, split_policy({agencies.ids[0]: 50, agencies.ids[1]: 50}))
    twin.run()

    real_assign = assignment_module.assign_cases

    def assign_then_die(ctx):  # type: ignore[no-untyped-def]
        real_assign(ctx)  # the step's statements ran, but the process dies before commit
        raise SystemExit("worker killed")

    monkeypatch.setattr(assignment_module, "assign_cases", assign_then_die)
    with pytest.raises(SystemExit):
        tenant.run()
    assert tenant.sql("SELECT status, steps_done FROM {s}.allocation_runs") == [
        ("running", ["segment", "score", "recall", "place"])
    ]
    assert tenant.sql("SELECT count(*) FROM {s}.assignments") == [(0,)]
    monkeypatch.setattr(assignment_module, "assign_cases", real_assign)

    resumed = tenant.run()
    assert resumed.steps_run == ["assign"]
    assert state(tenant) == state(twin)
    assert tenant.sql("SELECT status, attempts FROM {s}.allocation_runs") == [("completed", 2)]


def test_a_failed_step_is_recorded_and_resumed(app, monkeypatch: pytest.MonkeyPatch) -> None:
    agencies = make_agencies(app, 1)
    tenant = make_tenant(app, agencies)
    seed_cases(tenant, 20)
    activate_policy(tenant, split_policy({agencies.ids[0]: 100}))

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("scorer unavailable")

    monkeypatch.setattr(services_module.scoring, "score_cases", broken)
    with pytest.raises(RuntimeError):
        tenant.run()
    assert tenant.sql("SELECT status, steps_done, message FROM {s}.allocation_runs") == [
        ("failed", ["segment"], "RuntimeError: scorer unavailable")
    ]
    monkeypatch.undo()
    assert tenant.run().steps_run == ["score", "recall", "place", "assign"]


def test_a_payment_in_the_grace_period_credits_the_previous_agency(app) -> None:
    agencies = make_agencies(app, 2)
    tenant = make_tenant(app, agencies, placement_days=30, grace_days=10)
    [case_id] = seed_cases(tenant, 1)
    activate_policy(tenant, split_policy({agencies.ids[0]: 50, agencies.ids[1]: 50}))
    tenant.run()
    tenant.run(AS_OF + dt.timedelta(days=30))  # expired on day 30, placed elsewhere at once
    (first, first_agency), (second, second_agency) = tenant.sql(
        "SELECT id, agency_id FROM {s}.placements ORDER BY id"
    )
    assert first_agency != second_agency

    def pay(external_id: str, day: dt.date) -> dt.datetime:
        # Noon in Shanghai on ``day``; stored as UTC.
        paid_at = dt.datetime.combine(day, dt.time(4, 0), tzinfo=dt.UTC)
        tenant.sql(
            "INSERT INTO {s}.payments (external_id, account_id, kind, amount, currency,"
            " paid_at, paid_to) SELECT :e, account_id, 'payment', 100, 'CNY', :p, 'tenant'"
            " FROM {s}.cases WHERE id = :c",
            e=external_id,
            p=paid_at,
            c=case_id,
        )
        return paid_at

    during = pay("P-1", AS_OF + dt.timedelta(days=5))
    in_grace = pay("P-2", AS_OF + dt.timedelta(days=39))
    after_grace = pay("P-3", AS_OF + dt.timedelta(days=40))
    before = dt.datetime.combine(AS_OF - dt.timedelta(days=1), dt.time(4), tzinfo=dt.UTC)
    with tenant_scope(tenant.slug, db=tenant.db) as session:

        def credited(paid_at: dt.datetime) -> int | None:
            found: Placement | None = placement_credited_for(
                session, case_id=case_id, paid_at=paid_at, timezone=tenant.timezone
            )
            return found.id if found is not None else None

        assert credited(during) == first
        assert credited(in_grace) == first  # late money for the old agency's work
        assert credited(after_grace) == second
        assert credited(before) is None


def test_performance_weighting_favours_the_agency_that_recovers_more(app) -> None:
    agencies = make_agencies(app, 2)
    tenant = make_tenant(app, agencies, placement_days=30)
    a, b = agencies.ids
    seed_cases(tenant, 200)
    activate_policy(tenant, split_policy({a: 50, b: 50}))
    tenant.run(AS_OF - dt.timedelta(days=20))
    # Agency A's debtors paid back half their balance; agency B's nothing.
    tenant.sql(
        "INSERT INTO {s}.payments (external_id, account_id, kind, amount, currency, paid_at,"
        " paid_to) SELECT 'PW-' || p.id, c.account_id, 'payment',"
        " round(p.balance_at_placement / 2, 2), 'CNY', CAST(:at AS timestamptz), 'tenant'"
        " FROM {s}.placements p JOIN {s}.cases c ON c.id = p.case_id WHERE p.agency_id = :a",
        a=a,
        at=dt.datetime.combine(AS_OF - dt.timedelta(days=10), dt.time(4), tzinfo=dt.UTC),
    )
    seed_cases(tenant, 1_000, start=1_000)
    performance = {
        "segments": {
            "*": {
                "mode": "performance",
                "agencies": [{"agency_id": a}, {"agency_id": b}],
                "window_days": 90,
                "min_share": 10,
                "min_placements": 20,
            }
        }
    }
    activate_policy(tenant, performance)
    counts = tenant.run().counts["place"]
    assert counts["performance_shares"]["*"] == {str(a): "90.0000", str(b): "10.0000"}
    new = dict(
        tenant.sql(
            "SELECT agency_id, count(*) FROM {s}.placements WHERE started_on = :d GROUP BY 1",
            d=AS_OF,
        )
    )
    assert new[a] > 8 * new[b]


def test_a_dry_run_reports_where_cases_would_go_and_changes_nothing(app) -> None:
    agencies = make_agencies(app, 2)
    tenant = make_tenant(app, agencies)
    seed_cases(tenant, 100)
    a, b = agencies.ids
    activate_policy(tenant, split_policy({a: 70, b: 30}))
    before = state(tenant)
    result = run_allocation(tenant.db, tenant=tenant.slug, as_of=AS_OF, dry_run=True)
    assert state(tenant) == before
    assert tenant.sql("SELECT count(*) FROM {s}.allocation_runs") == [(0,)]
    by_agency: Counter[int] = Counter()
    balance = Decimal(0)
    for line in result.lines:
        assert line["outcome"] == "placed"
        by_agency[line["agency_id"]] += line["cases"]
        balance += line["balance"]
    assert by_agency[a] + by_agency[b] == 100
    assert 68 <= by_agency[a] <= 72
    (total,) = tenant.sql("SELECT sum(outstanding_principal) FROM {s}.accounts")[0]
    assert balance == total
