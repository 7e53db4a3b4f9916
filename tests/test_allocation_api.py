"""Allocation through the API and the CLI: strategies, runs, recalls, agency views,
collector queues, overrides and deactivation, with agency-to-agency isolation."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

from recova.tenants.models import tenant_today
from tests.allocation_support import (
    activate_policy,
    make_agencies,
    make_tenant,
    seed_cases,
    split_policy,
)
from tests.compliance_support import zone_where_it_is
from tests.isolation_jobs import run_all_jobs
from tests.support import login, recova


def placed_today(app) -> Any:  # type: ignore[no-untyped-def]
    """Two agencies sharing one tenant 50/50, with two collectors each, run for today."""
    agencies = make_agencies(app, 2, collectors=2, max_cases=1000)
    tenant = make_tenant(app, agencies)
    today = tenant_today(tenant.timezone)
    seed_cases(tenant, 60, as_of=today, languages=("zh",), regions=("BJ", "SH"))
    activate_policy(tenant, split_policy({agencies.ids[0]: 50, agencies.ids[1]: 50}))
    tenant.run(today)
    return agencies, tenant, today


def test_strategies_are_created_versioned_validated_and_dry_run(app) -> None:
    agencies = make_agencies(app, 2)
    tenant = make_tenant(app, agencies)
    seed_cases(tenant, 50, as_of=tenant_today(tenant.timezone))
    admin = login(app, tenant.admin_email)
    a, b = agencies.ids

    bad = admin.post(
        "/api/v1/allocation/strategies/validate",
        {"policy": split_policy({a: 60, b: 30})},
    )
    assert bad.status_code == 200
    assert bad.json["valid"] is False
    assert "agency shares must add up to 100" in str(bad.json["errors"])
    refused = admin.post(
        "/api/v1/allocation/strategies", {"name": "s", "policy": split_policy({a: 60, b: 30})}
    )
    assert refused.status_code == 422

    created = admin.post(
        "/api/v1/allocation/strategies",
        {"name": "main", "policy": split_policy({a: 100}), "activate": True},
    )
    assert created.status_code == 201, created.json
    strategy_id = created.json["id"]
    assert [v["is_active"] for v in created.json["versions"]] == [True]

    version = admin.post(
        f"/api/v1/allocation/strategies/{strategy_id}/versions",
        {"policy": split_policy({a: 50, b: 50})},
    )
    assert version.status_code == 201
    assert version.json["version"] == 2
    assert version.json["is_active"] is False

    dry = admin.post(f"/api/v1/allocation/strategies/{strategy_id}/dry-run", {"version": 2})
    assert dry.status_code == 200, dry.json
    placed = Counter()
    for line in dry.json["lines"]:
        placed[line["agency_id"]] += line["cases"]
    assert placed == {a: 25, b: 25}
    assert admin.get("/api/v1/placements").headers["X-Pagination"].count('"total": 0') == 1

    activated = admin.post(f"/api/v1/allocation/strategies/{strategy_id}/versions/2/activate")
    assert activated.status_code == 200
    versions = admin.get(f"/api/v1/allocation/strategies/{strategy_id}").json["versions"]
    assert [v["is_active"] for v in versions] == [False, True]


def test_run_now_is_a_job_that_reports_its_run(app) -> None:
    agencies = make_agencies(app, 1)
    tenant = make_tenant(app, agencies)
    today = tenant_today(tenant.timezone)
    seed_cases(tenant, 30, as_of=today)
    activate_policy(tenant, split_policy({agencies.ids[0]: 100}))
    admin = login(app, tenant.admin_email)

    accepted = admin.post("/api/v1/allocation/runs", {})
    assert accepted.status_code == 202
    assert accepted.json["job_id"].endswith(f"allocate-{tenant.id}-{today.isoformat()}")
    run_all_jobs(app)
    [run] = admin.get("/api/v1/allocation/runs").json
    assert run["status"] == "completed"
    assert run["steps_done"] == ["segment", "score", "recall", "place", "assign"]
    assert run["counts"]["place"]["placed"] == 30
    assert admin.get(f"/api/v1/allocation/runs/{run['id']}").json["as_of"] == today.isoformat()

    placement = admin.get("/api/v1/placements?page_size=1").json[0]
    score = admin.get(f"/api/v1/cases/{placement['case_id']}/score").json
    assert set(score["components"]) == {
        "balance",
        "days_past_due",
        "last_payment",
        "broken_promises",
        "reachability",
        "placement_history",
    }
    assert all("points" in c and "input" in c for c in score["components"].values())
    recalled = admin.post(f"/api/v1/placements/{placement['id']}/recall", {})
    assert recalled.status_code == 200
    assert recalled.json["recall_reason"] == "tenant_request"
    assert recalled.json["grace_until"] == (today + dt.timedelta(days=10)).isoformat()
    assert admin.post(f"/api/v1/placements/{placement['id']}/recall", {}).status_code == 409


def test_agency_staff_see_only_their_own_agency_s_placements(app) -> None:
    agencies, tenant, _ = placed_today(app)
    a, b = agencies.ids
    other = make_tenant(app, agencies, contracted=[b])  # agency A has no contract here
    seed_cases(other, 10, as_of=tenant_today(other.timezone))
    activate_policy(other, split_policy({b: 100}))
    other.run(tenant_today(other.timezone))

    manager_a = login(app, agencies.managers[a])
    own = manager_a.get(f"/api/v1/tenants/{tenant.slug}/placements?page_size=100").json
    assert len(own) == 30
    assert {p["agency_id"] for p in own} == {a}
    b_placement = tenant.sql("SELECT id FROM {s}.placements WHERE agency_id = :b LIMIT 1", b=b)[0][
        0
    ]
    base = f"/api/v1/tenants/{tenant.slug}/placements/{b_placement}"
    assert manager_a.get(base).status_code == 404
    assert (
        manager_a.request(
            "PUT", f"{base}/assignment", {"collector_id": agencies.collectors[a][0]}
        ).status_code
        == 404
    )
    assert manager_a.post(f"{base}/recall", {}).status_code == 403
    assert manager_a.get(f"/api/v1/tenants/{other.slug}/placements").status_code == 404

    portfolio = manager_a.get("/api/v1/agency/placements?page_size=100")
    assert portfolio.status_code == 200
    assert {row["tenant"] for row in portfolio.json} == {tenant.slug}
    assert '"total": 30' in portfolio.headers["X-Pagination"]
    manager_b = login(app, agencies.managers[b])
    tenants_b = Counter(
        row["tenant"] for row in manager_b.get("/api/v1/agency/placements?page_size=100").json
    )
    assert tenants_b == {tenant.slug: 30, other.slug: 10}

    # Collectors see only their own queue, never a colleague's or another agency's. (The
    # queue hides debtors outside their contact window: these live where it is midday.)
    tenant.sql("UPDATE {s}.debtors SET timezone = :tz", tz=zone_where_it_is(12))
    first, second = agencies.collectors[a]
    collector = login(app, agencies.collector_emails[first])
    queue = collector.get("/api/v1/agency/queue?page_size=100")
    assert queue.status_code == 200
    assert queue.json
    assert {row["collector_id"] for row in queue.json} == {first}
    scores = [float(row["score"]) for row in queue.json]
    assert scores == sorted(scores, reverse=True)
    assert collector.get(f"/api/v1/agency/queue?collector_id={second}").status_code == 403
    assert collector.get("/api/v1/agency/placements").status_code == 403
    assert collector.get(f"/api/v1/tenants/{tenant.slug}/placements").status_code == 403
    b_collector = agencies.collectors[b][0]
    assert manager_a.get(f"/api/v1/agency/queue?collector_id={b_collector}").status_code == 404
    assert (
        manager_a.patch(f"/api/v1/agency/collectors/{b_collector}", {"max_cases": 5}).status_code
        == 404
    )


def test_a_manager_overrides_an_assignment_and_it_sticks(app) -> None:
    agencies, tenant, today = placed_today(app)
    a = agencies.ids[0]
    first, second = agencies.collectors[a]
    placement_id = tenant.sql(
        "SELECT p.id FROM {s}.placements p JOIN {s}.assignments x ON x.placement_id = p.id"
        " WHERE p.agency_id = :a AND x.collector_id = :c AND x.ended_at IS NULL LIMIT 1",
        a=a,
        c=first,
    )[0][0]
    manager = login(app, agencies.managers[a])
    response = manager.request(
        "PUT",
        f"/api/v1/tenants/{tenant.slug}/placements/{placement_id}/assignment",
        {"collector_id": second},
    )
    assert response.status_code == 200, response.json
    assert response.json["reason"] == "override"
    assert response.json["collector_id"] == second
    tenant.run(today)  # the daily run leaves overrides alone
    assert tenant.sql(
        "SELECT collector_id, reason FROM {s}.assignments WHERE placement_id = :p"
        " AND ended_at IS NULL",
        p=placement_id,
    ) == [(second, "override")]


def test_a_deactivated_collector_s_cases_are_reassigned(app) -> None:
    agencies, tenant, _ = placed_today(app)
    a = agencies.ids[0]
    leaving, staying = agencies.collectors[a]
    theirs = {
        row[0]
        for row in tenant.sql(
            "SELECT placement_id FROM {s}.assignments WHERE collector_id = :c AND ended_at IS NULL",
            c=leaving,
        )
    }
    assert theirs
    manager = login(app, agencies.managers[a])
    response = manager.patch(f"/api/v1/agency/collectors/{leaving}", {"is_active": False})
    assert response.status_code == 200
    assert response.json["is_active"] is False
    run_all_jobs(app)
    assert tenant.sql(
        "SELECT count(*) FROM {s}.assignments WHERE collector_id = :c AND ended_at IS NULL",
        c=leaving,
    ) == [(0,)]
    now = dict(
        tenant.sql(
            "SELECT placement_id, collector_id FROM {s}.assignments WHERE ended_at IS NULL"
            " AND reason = 'reassigned'"
        )
    )
    assert set(now) == theirs
    assert set(now.values()) == {staying}
    listed = {c["user_id"]: c["is_active"] for c in manager.get("/api/v1/agency/collectors").json}
    assert listed == {leaving: False, staying: True}


def test_collectors_get_cases_in_their_languages_and_regions_only(app) -> None:
    agencies = make_agencies(app, 1, collectors=3)
    a = agencies.ids[0]
    speaker, local, anyone = agencies.collectors[a]
    tenant = make_tenant(app, agencies)
    tenant.sql(
        "UPDATE platform.collector_profiles SET languages = '{en}' WHERE user_id = :u", u=speaker
    )
    tenant.sql(
        "UPDATE platform.collector_profiles SET languages = '{zh}', regions = '{BJ}'"
        " WHERE user_id = :u",
        u=local,
    )
    tenant.sql(
        "UPDATE platform.collector_profiles SET languages = '{zh}', max_cases = 40"
        " WHERE user_id = :u",
        u=anyone,
    )
    seed_cases(tenant, 120, languages=("en", "zh"), regions=("BJ", "SH", "GZ"))
    activate_policy(tenant, split_policy({a: 100}))
    tenant.run()
    rows = tenant.sql(
        "SELECT x.collector_id, d.language, d.region FROM {s}.assignments x"
        " JOIN {s}.placements p ON p.id = x.placement_id JOIN {s}.cases c ON c.id = p.case_id"
        " JOIN {s}.debtors d ON d.id = c.debtor_id"
    )
    assert all(lang == "en" for c, lang, _ in rows if c == speaker)
    assert all(lang == "zh" and region == "BJ" for c, lang, region in rows if c == local)
    assert all(lang == "zh" for c, lang, _ in rows if c == anyone)
    load = Counter(c for c, _, _ in rows)
    assert load[anyone] <= 40
    assert sum(load.values()) == 120  # every case found a collector who may take it


def test_cli_allocate_runs_and_dry_runs(cli_env: dict[str, str]) -> None:
    assert recova(cli_env, "migrate").exit_code == 0
    created = recova(
        cli_env,
        "tenants",
        "create",
        "cli-alloc",
        "--name",
        "CLI",
        "--jurisdiction",
        "CN",
        "--timezone",
        "Asia/Shanghai",
        "--currency",
        "CNY",
    )
    assert created.exit_code == 0, created.output
    dry = recova(cli_env, "allocate", "cli-alloc", "--as-of", "2031-03-01", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "nothing was changed" in dry.output
    real = recova(cli_env, "allocate", "cli-alloc", "--as-of", "2031-03-01")
    assert real.exit_code == 0, real.output
    assert "as of 2031-03-01: 0 open cases, 0 placed (no agency)" in real.output
    missing = recova(cli_env, "allocate", "no-such-tenant")
    assert missing.exit_code == 1
    assert "no tenant" in missing.output
