"""The agency manager's assignment page: one case or many by filter moved to a collector,
previewed first with the same filter the move applies; collectors' skills, capacity and
active flag. Only the manager's own agency, in tenants it holds a contract with."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask

from recova.platform.allocation.models import CollectorProfile
from recova.platform.kernel.extension import platform
from tests.allocation_support import make_tenant, seed_cases
from tests.isolation_jobs import run_all_jobs
from tests.support import Caller
from tests.work_support import WorkWorld, audit_trail, work_world

EN = {"Accept-Language": "en"}
ZH = {"Accept-Language": "zh-CN"}
TOKEN = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def token_of(page: str) -> str:
    found = TOKEN.search(page)
    assert found is not None
    return found.group(1)


def preview(caller: Caller, **args: Any) -> Any:
    return caller.client.get("/work/assignment/preview", query_string=args, headers=EN)


def previewed_count(page: str) -> int:
    found = re.search(r'id="preview-count" data-cases="(\d+)"', page)
    assert found is not None, page
    return int(found.group(1))


def confirm(caller: Caller, page: str, **extra: str) -> Any:
    """Post the preview's own confirm form (its hidden fields as rendered), plus ``extra``."""
    form = re.search(
        r'<form method="post" action="/work/assignment/move" id="move-form">(.*?)</form>',
        page,
        re.S,
    )
    assert form is not None, page
    data = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form.group(1)))
    data.update(extra)
    return caller.client.post("/work/assignment/move", data=data, headers=EN)


def open_counts(world: WorkWorld) -> dict[int, int]:
    rows = world.tenant.sql(
        "SELECT collector_id, count(*) FROM {s}.assignments WHERE ended_at IS NULL"
        " GROUP BY collector_id"
    )
    return {int(c): int(n) for c, n in rows}


def big_world(app: Flask) -> WorkWorld:
    """200 cases, about 100 per agency; agency A's first collector holds exactly 50."""
    world = work_world(app, cases=200)
    a0, a1 = world.agencies.collectors[world.agency]
    surplus = len(world.cases_of(a0)) - 50
    giver, taker = (a0, a1) if surplus > 0 else (a1, a0)
    world.tenant.sql(
        "UPDATE {s}.assignments SET collector_id = :taker WHERE id IN (SELECT id FROM"
        " {s}.assignments WHERE collector_id = :giver AND ended_at IS NULL ORDER BY id LIMIT :n)",
        taker=taker,
        giver=giver,
        n=abs(surplus),
    )
    assert len(world.cases_of(a0)) == 50
    return world


def test_fifty_cases_by_filter_previewed_then_moved(app: Flask) -> None:
    world = big_world(app)
    a0, a1 = world.agencies.collectors[world.agency]
    manager = world.manager()
    shown = preview(manager, tenant=world.tenant.slug, current=a0, status="placed", target=a1)
    assert shown.status_code == 200
    page = shown.get_data(as_text=True)
    assert previewed_count(page) == 50
    assert f'data-from="{a0}"' in page
    balance = sum(world.balance(case_id) for case_id in world.cases_of(a0))
    assert f"{balance:,.2f}" in page  # the balance that moves
    held = len(world.cases_of(a1))
    assert f"after the move {held + 50} of their maximum of 1,000" in page
    before = world.cases_of(a0)
    moved = confirm(manager, page)
    assert moved.status_code == 302
    after = manager.client.get(moved.headers["Location"], headers=EN).get_data(as_text=True)
    assert "50 cases moved to Collector 0-1" in after
    assert "The preview counted" not in after
    assert world.cases_of(a0) == []
    assert set(before) <= set(world.cases_of(a1))
    assert open_counts(world)[a1] == held + 50
    # The old assignments ended, the new ones opened on the same placements, by the manager.
    [(ended,)] = world.tenant.sql(
        "SELECT count(*) FROM {s}.assignments WHERE collector_id = :c"
        " AND end_reason = 'reassigned'",
        c=a0,
    )
    assert ended == 50
    manager_id = world.tenant.sql(
        "SELECT id FROM platform.users WHERE email = :e", e=world.agencies.managers[world.agency]
    )[0][0]
    [(opened, by)] = world.tenant.sql(
        "SELECT count(*), min(assigned_by) FROM {s}.assignments WHERE collector_id = :c"
        " AND reason = 'reassigned' AND ended_at IS NULL",
        c=a1,
    )
    assert (opened, by) == (50, manager_id)
    # The shared workloads follow, and the move is on the tenant's audit chain.
    [(workload,)] = world.tenant.sql(
        "SELECT open_cases FROM platform.collector_workloads WHERE user_id = :u AND tenant_id = :t",
        u=a1,
        t=world.tenant.id,
    )
    assert workload == held + 50
    events = [
        data
        for action, actor, data in audit_trail(world, ("collector", a1))
        if action == "assignment.moved"
    ]
    assert events == [
        {
            "to_collector": a1,
            "moved": 50,
            "from_collectors": {str(a0): 50},
            "filter": {"bucket": None, "collector": a0, "status": "placed"},
            "previewed": 50,
            "over_capacity": False,
        }
    ]


def test_one_case_by_account_number_or_by_id(app: Flask) -> None:
    world = work_world(app)
    a0, a1 = world.agencies.collectors[world.agency]
    manager = world.manager()
    first, second = world.cases_of(a0)[:2]
    [(account,)] = world.tenant.sql(
        "SELECT a.external_id FROM {s}.cases c JOIN {s}.accounts a ON a.id = c.account_id"
        " WHERE c.id = :c",
        c=first,
    )
    page = preview(manager, tenant=world.tenant.slug, case=account, target=a1).get_data(
        as_text=True
    )
    assert previewed_count(page) == 1
    assert confirm(manager, page).status_code == 302
    page = preview(manager, tenant=world.tenant.slug, case=f"#{second}", target=a1).get_data(
        as_text=True
    )
    assert previewed_count(page) == 1
    assert confirm(manager, page).status_code == 302
    assert {first, second} <= set(world.cases_of(a1))
    assert first not in world.cases_of(a0)
    assert "assignment.moved" in [a for a, _, _ in audit_trail(world, ("case", first))]
    # Once with the collector, the same case has nothing left to move.
    again = preview(manager, tenant=world.tenant.slug, case=f"#{second}", target=a1)
    assert 'id="preview-none"' in again.get_data(as_text=True)
    # Another agency's case is not one of this agency's placements: nothing matches.
    theirs = world.cases_of_agency(world.agencies.ids[1])[0]
    page = preview(manager, tenant=world.tenant.slug, case=f"#{theirs}", target=a1).get_data(
        as_text=True
    )
    assert 'id="preview-none"' in page
    assert "No active placement of your agency" in page


def test_cases_no_collector_holds_are_given_out(app: Flask) -> None:
    world = work_world(app)
    a0, a1 = world.agencies.collectors[world.agency]
    loose = world.cases_of(a0)[:3]
    world.tenant.sql(
        "UPDATE {s}.assignments SET ended_at = now(), end_reason = 'test' WHERE ended_at IS NULL"
        " AND placement_id IN (SELECT id FROM {s}.placements WHERE case_id = ANY(:c))",
        c=loose,
    )
    manager = world.manager()
    page = preview(manager, tenant=world.tenant.slug, current="none", target=a1).get_data(
        as_text=True
    )
    assert previewed_count(page) == 3
    assert 'data-from="none"' in page
    assert confirm(manager, page).status_code == 302
    assert set(loose) <= set(world.cases_of(a1))


def test_a_move_says_how_many_moved_when_the_book_changed(app: Flask) -> None:
    world = work_world(app)
    a0, a1 = world.agencies.collectors[world.agency]
    manager = world.manager()
    page = preview(manager, tenant=world.tenant.slug, current=a0, target=a1).get_data(as_text=True)
    counted = previewed_count(page)
    assert counted == len(world.cases_of(a0)) > 1
    # Meanwhile one of those cases moves another way.
    case_id = world.cases_of(a0)[0]
    single = preview(manager, tenant=world.tenant.slug, case=f"#{case_id}", target=a1)
    assert confirm(manager, single.get_data(as_text=True)).status_code == 302
    moved = confirm(manager, page)
    assert moved.status_code == 302
    after = manager.client.get(moved.headers["Location"], headers=EN).get_data(as_text=True)
    assert f"{counted - 1} cases moved to Collector 0-1" in after
    assert (
        f"The preview counted {counted} cases; the book changed in between and {counted - 1} moved."
        in after
    )
    assert world.cases_of(a0) == []


def test_the_target_must_be_an_active_collector_of_the_agency(app: Flask) -> None:
    world = work_world(app)
    a0, a1 = world.agencies.collectors[world.agency]
    b0 = world.agencies.collectors[world.agencies.ids[1]][0]
    manager = world.manager()
    before = open_counts(world)
    # Another agency's collector: refused beside the field, on the preview and the move.
    refused = preview(manager, tenant=world.tenant.slug, current=a0, target=b0)
    assert refused.status_code == 422
    assert f"no collector {b0} in your agency" in refused.get_data(as_text=True)
    page = preview(manager, tenant=world.tenant.slug, current=a0, target=a1).get_data(as_text=True)
    forged = confirm(manager, page, target=str(b0))
    assert forged.status_code == 422
    assert open_counts(world) == before
    # An inactive collector cannot receive.
    with platform(app).db.session() as session:
        profile = session.get(CollectorProfile, a1)
        assert profile is not None
        profile.is_active = False
        session.commit()
    inactive = confirm(manager, page)
    assert inactive.status_code == 422
    assert "Collector 0-1 is inactive and cannot receive cases" in inactive.get_data(as_text=True)
    assert open_counts(world) == before
    assert (
        f'<option value="{a1}"'
        not in inactive.get_data(as_text=True).split('id="target"')[1].split("</select>")[0]
    )


def test_past_the_maximum_only_with_consent(app: Flask) -> None:
    world = work_world(app)
    a0, a1 = world.agencies.collectors[world.agency]
    held = len(world.cases_of(a1))
    with platform(app).db.session() as session:
        profile = session.get(CollectorProfile, a1)
        assert profile is not None
        profile.max_cases = held + 1
        session.commit()
    manager = world.manager()
    page = preview(manager, tenant=world.tenant.slug, current=a0, target=a1).get_data(as_text=True)
    moving = previewed_count(page)
    assert 'id="preview-over"' in page
    assert f"{moving - 1} past their maximum of {held + 1}" in page
    refused = confirm(manager, page)
    assert refused.status_code == 422
    assert "past their" in refused.get_data(as_text=True)
    assert len(world.cases_of(a1)) == held
    accepted = confirm(manager, page, over_capacity="y")
    assert accepted.status_code == 302
    assert len(world.cases_of(a1)) == held + moving
    after = manager.client.get(accepted.headers["Location"], headers=EN).get_data(as_text=True)
    assert "is now past their maximum" in after


def test_only_tenants_with_a_contract_and_only_the_own_agency(app: Flask) -> None:
    world = work_world(app)
    a0, a1 = world.agencies.collectors[world.agency]
    agency_b = world.agencies.ids[1]
    # A second tenant contracts agency B only.
    other = make_tenant(app, world.agencies, contracted=[agency_b])
    seed_cases(other, 4, as_of=world.today)
    manager = world.manager()
    page = manager.client.get("/work/assignment", headers=EN).get_data(as_text=True)
    assert world.tenant.slug in page
    assert other.slug not in page
    refused = preview(manager, tenant=other.slug, target=a1)
    assert refused.status_code == 422
    assert "Choose a tenant your agency serves." in refused.get_data(as_text=True)
    good = preview(manager, tenant=world.tenant.slug, current=a0, target=a1).get_data(as_text=True)
    forged = confirm(manager, good, tenant=other.slug)
    assert forged.status_code == 422
    # Agency B's manager sees none of A's collectors and may not filter by one.
    manager_b = world.manager(agency_b)
    theirs = manager_b.client.get("/work/assignment", headers=EN).get_data(as_text=True)
    assert f'id="collector-{a0}"' not in theirs
    assert f'id="collector-{world.agencies.collectors[agency_b][0]}"' in theirs
    b1 = world.agencies.collectors[agency_b][1]
    wrong = preview(manager_b, tenant=world.tenant.slug, current=a0, target=b1)
    assert wrong.status_code == 422
    assert "Choose a collector of your agency." in wrong.get_data(as_text=True)
    # And B's manager may not edit A's collector.
    assert manager_b.client.get(f"/work/assignment/collectors/{a0}").status_code == 404


def test_a_collector_is_refused_every_assignment_route(app: Flask) -> None:
    world = work_world(app)
    a0, a1 = world.agencies.collectors[world.agency]
    collector = world.collector_caller(a0)
    assert collector.client.get("/work/assignment").status_code == 403
    assert (
        collector.client.get("/work/assignment/preview", query_string={"target": a1}).status_code
        == 403
    )
    token = collector.headers["X-CSRFToken"]
    posted = collector.client.post(
        "/work/assignment/move",
        data={"csrf_token": token, "tenant": world.tenant.slug, "current": a1, "target": a0},
    )
    assert posted.status_code == 403
    assert collector.client.get(f"/work/assignment/collectors/{a0}").status_code == 403
    assert world.cases_of(a1)


def test_editing_a_collector_and_deactivating_one(app: Flask) -> None:
    world = work_world(app)
    a0, a1 = world.agencies.collectors[world.agency]
    manager = world.manager()
    url = f"/work/assignment/collectors/{a0}"
    form = manager.client.get(url, headers=EN)
    assert form.status_code == 200
    token = token_of(form.get_data(as_text=True))
    bad = manager.client.post(
        url,
        data={"csrf_token": token, "languages": "zh", "max_cases": "0", "is_active": "y"},
        headers=EN,
    )
    assert bad.status_code == 422
    assert 'id="max_cases-error"' in bad.get_data(as_text=True)
    saved = manager.client.post(
        url,
        data={
            "csrf_token": token,
            "languages": "zh\uff0c yue en",  # a Chinese comma, a space
            "regions": "Guangdong, Shanghai",
            "max_cases": "80",
            "is_active": "y",
        },
    )
    assert saved.status_code == 302
    with platform(app).db.session() as session:
        profile = session.get(CollectorProfile, a0)
        assert profile is not None
        assert (profile.languages, profile.regions, profile.max_cases, profile.is_active) == (
            ["en", "yue", "zh"],
            ["Guangdong", "Shanghai"],
            80,
            True,
        )
    listed = manager.client.get("/work/assignment", headers=EN).get_data(as_text=True)
    row = listed.split(f'id="collector-{a0}"')[1].split("</tr>")[0]
    assert "yue" in row
    assert "Guangdong" in row
    assert ">80<" in row
    # Deactivating: the collector's cases go to their colleague in the background.
    held = world.cases_of(a0)
    assert held
    off = manager.client.post(url, data={"csrf_token": token, "max_cases": "80"}, headers=EN)
    assert off.status_code == 302
    run_all_jobs(app)
    assert world.cases_of(a0) == []
    assert set(held) <= set(world.cases_of(a1))


def test_the_page_in_chinese(app: Flask) -> None:
    world = work_world(app)
    a0, a1 = world.agencies.collectors[world.agency]
    manager = world.manager()
    page = manager.client.get(
        "/work/assignment/preview",
        query_string={"tenant": world.tenant.slug, "current": a0, "target": a1},
        headers=ZH,
    ).get_data(as_text=True)
    assert "调案" in page
    assert "催收员" in page
    assert "Preview" not in page
    assert "Move to" not in page
