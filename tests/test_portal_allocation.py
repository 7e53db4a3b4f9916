"""The portal's allocation: strategies and their versions, editing a draft, validating,
dry-running and activating it, runs with their step counts, champion/challenger results;
the analyst reads, agency staff and other tenants don't."""

from __future__ import annotations

import datetime as dt
import math
import re
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest

from recova.platform.allocation.models import AllocationRun, StrategyVersion
from recova.platform.allocation.strategies import add_version, create_strategy
from recova.platform.auth.models import Role
from recova.platform.auth.services import create_user
from recova.platform.kernel.extension import platform
from recova.platform.reports.experiments import (
    RatioSums,
    ratio_difference_test,
    ratio_interval,
    two_proportion_test,
    two_sided_p,
    wilson_interval,
)
from recova.tenants.models import Tenant, tenant_today
from recova.tenants.scope import tenant_scope
from tests.allocation_support import (
    AllocTenant,
    activate_policy,
    make_agencies,
    make_tenant,
    seed_cases,
    seed_world_allocation,
    split_policy,
)
from tests.support import PASSWORD, Caller, World, anonymous, login

TOKEN = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
EN = {"Accept-Language": "en"}


def token_of(page: str) -> str:
    found = TOKEN.search(page)
    assert found is not None
    return found.group(1)


# --- the statistics --------------------------------------------------------------------------


def test_the_two_proportion_z_test_matches_a_hand_computation() -> None:
    # 45/100 against 30/100: pooled 0.375, se = sqrt(0.375 * 0.625 * (1/100 + 1/100)).
    test = two_proportion_test(45, 100, 30, 100)
    assert test is not None
    se = math.sqrt(0.375 * 0.625 * 0.02)
    assert test.z == pytest.approx(0.15 / se)
    assert test.z == pytest.approx(2.1909, abs=1e-4)
    assert test.p_value == pytest.approx(0.0285, abs=1e-4)
    assert test.significant
    close = two_proportion_test(32, 100, 30, 100)
    assert close is not None
    assert not close.significant
    assert two_proportion_test(0, 0, 3, 10) is None
    assert two_proportion_test(0, 10, 0, 10) is None  # no variance: no test


def test_the_wilson_interval_matches_known_values() -> None:
    interval = wilson_interval(45, 100)
    assert interval is not None
    assert interval.estimate == pytest.approx(0.45)
    assert interval.low == pytest.approx(0.3561, abs=1e-4)
    assert interval.high == pytest.approx(0.5476, abs=1e-4)
    none_yet = wilson_interval(0, 20)
    assert none_yet is not None
    assert none_yet.low == 0.0
    assert none_yet.high == pytest.approx(0.1611, abs=1e-4)
    assert wilson_interval(0, 0) is None
    assert two_sided_p(1.959963984540054) == pytest.approx(0.05)


def sums(rs: list[float], bs: list[float]) -> RatioSums:
    return RatioSums(
        len(rs),
        sum(rs),
        sum(bs),
        sum(r * r for r in rs),
        sum(b * b for b in bs),
        sum(r * b for r, b in zip(rs, bs, strict=True)),
    )


def test_the_ratio_interval_is_the_delta_method() -> None:
    # Equal balances: the ratio is the mean of r/b = 0.1, 0.2, 0.3; its standard error is
    # their standard deviation (0.1) over sqrt(3).
    arm = sums([1, 2, 3], [10, 10, 10])
    interval = ratio_interval(arm)
    assert interval is not None
    assert interval.estimate == pytest.approx(0.2)
    half = 1.959963984540054 * 0.1 / math.sqrt(3)
    assert interval.low == pytest.approx(0.2 - half)
    assert interval.high == pytest.approx(0.2 + half)
    # Unequal balances: sum((r - R b)^2) / (n - 1) / n / mean(b)^2 by hand.
    uneven = sums([0, 50, 30, 20], [100, 200, 100, 100])
    ratio = 100 / 500
    residuals = (0 - 20) ** 2 + (50 - 40) ** 2 + (30 - 20) ** 2 + (20 - 20) ** 2
    assert uneven.ratio == pytest.approx(ratio)
    assert uneven.variance == pytest.approx(residuals / 3 / 4 / 125**2)
    other = sums([5, 6, 4, 5], [10, 10, 10, 10])
    test = ratio_difference_test(other, arm)
    assert test is not None
    assert test.z == pytest.approx((0.5 - 0.2) / math.sqrt(other.variance + arm.variance))  # type: ignore[operator]
    assert test.significant
    assert ratio_interval(sums([], [])) is None


# --- a tenant with cases, agencies and strategies ----------------------------------------------


class Book:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.agencies = make_agencies(app, 2)
        self.tenant: AllocTenant = make_tenant(app, self.agencies)
        self.today = tenant_today(self.tenant.timezone)
        seed_cases(self.tenant, 40, as_of=self.today)
        a, b = self.agencies.ids
        self.a, self.b = a, b
        db = platform(app).db
        with tenant_scope(self.tenant.slug, db=db) as session:
            strategy = create_strategy(
                session,
                tenant_id=self.tenant.id,
                name="main",
                policy=split_policy({a: 100}),
                effective_from=dt.date(2020, 1, 1),
                activate=True,
            )
            add_version(
                session,
                strategy,
                tenant_id=self.tenant.id,
                policy=split_policy({a: 50, b: 50}),
                effective_from=dt.date(2020, 1, 1),
            )
            session.commit()
            self.strategy_id = strategy.id
        with db.session() as session:
            tenant = session.get(Tenant, self.tenant.id)
            analyst = create_user(
                session,
                email=f"analyst-{self.tenant.slug}@lender.test",
                full_name="Analyst",
                password=PASSWORD,
                role=Role.TENANT_ANALYST,
                tenant=tenant,
            )
            session.commit()
            self.analyst_email = analyst.email

    def url(self, path: str = "") -> str:
        return f"/portal/{self.tenant.slug}/allocation{path}"

    def version_url(self, version: int, action: str = "") -> str:
        return self.url(f"/strategies/{self.strategy_id}/versions/{version}{action}")

    def versions(self) -> list[tuple[int, bool, dict[str, Any]]]:
        with tenant_scope(self.tenant.slug, db=platform(self.app).db) as session:
            return [
                (v.version, v.is_active, v.policy)
                for v in session.query(StrategyVersion)
                .filter_by(strategy_id=self.strategy_id)
                .order_by(StrategyVersion.version)
            ]


@pytest.fixture
def book(app: Any) -> Book:
    return Book(app)


def edit_data(page: str, **changes: str) -> dict[str, str]:
    """The edit form's fields as the page filled them, with ``changes``."""
    data: dict[str, str] = {"csrf_token": token_of(page)}
    for name, value in re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', page):
        data.setdefault(name, value)
    for match in re.finditer(r'<input([^>]*)type="checkbox"([^>]*)>', page):
        attributes = match.group(1) + match.group(2)
        name = re.search(r'name="([^"]+)"', attributes)
        if name and "checked" not in attributes:
            data.pop(name.group(1), None)
    for name, chosen in re.findall(
        r'<select[^>]*name="([^"]+)"[^>]*>.*?<option[^>]*selected[^>]*value="([^"]*)"', page, re.S
    ):
        data[name] = chosen
    for name in re.findall(r'<select[^>]*name="([^"]+)"', page):
        data.setdefault(name, "split")
    data.update(changes)
    return data


def share_names(page: str, segment: int = 0) -> list[str]:
    return re.findall(rf'name="(segments-{segment}-agencies-\d+-share)"', page)


def test_the_section_lists_strategies_with_the_active_version_marked(book: Book) -> None:
    admin = login(book.app, book.tenant.admin_email)
    response = admin.client.get(book.url(), headers=EN)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "main" in page
    rows = re.findall(r'<tr id="version-\d+"[^>]*>.*?</tr>', page, re.S)
    assert len(rows) == 2
    assert "Draft" in rows[0]
    assert "Version 2" in rows[0]
    assert "Active" in rows[1]
    assert "Version 1" in rows[1]
    assert "Segment rules" in page
    assert "M6+" in page  # the default buckets


def test_a_bad_split_is_refused_beside_its_field_and_the_input_stays(book: Book) -> None:
    admin = login(book.app, book.tenant.admin_email)
    form = admin.client.get(book.version_url(2, "/edit"), headers=EN).get_data(as_text=True)
    first, second = share_names(form)
    data = edit_data(form, **{first: "60", second: "30.5", "action": "save"})
    response = admin.client.post(book.version_url(2, "/edit"), data=data, headers=EN)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert 'id="segments-0-error"' in page
    assert "The agencies&#39; shares add up to 90.5%, not 100%." in page
    assert 'value="60"' in page
    assert 'value="30.5"' in page
    assert [v for v, *_ in book.versions()] == [1, 2]  # nothing saved


def test_validate_checks_without_saving_then_save_adds_a_draft(book: Book) -> None:
    admin = login(book.app, book.tenant.admin_email)
    form = admin.client.get(book.version_url(2, "/edit"), headers=EN).get_data(as_text=True)
    first, second = share_names(form)
    data = edit_data(form, **{first: "70", second: "30", "action": "validate"})
    checked = admin.client.post(book.version_url(2, "/edit"), data=data, headers=EN)
    assert checked.status_code == 200
    assert "The policy is valid. Nothing was saved." in checked.get_data(as_text=True)
    assert [v for v, *_ in book.versions()] == [1, 2]

    data["action"] = "save"
    saved = admin.client.post(book.version_url(2, "/edit"), data=data)
    assert saved.status_code == 302
    assert saved.headers["Location"].endswith(book.version_url(3))
    versions = book.versions()
    assert [(v, active) for v, active, _ in versions] == [(1, True), (2, False), (3, False)]
    shares = {
        a["agency_id"]: Decimal(a["share"]) for a in versions[2][2]["segments"]["*"]["agencies"]
    }
    assert shares == {book.a: Decimal(70), book.b: Decimal(30)}
    page = admin.client.get(book.version_url(3), headers=EN).get_data(as_text=True)
    assert "Saved as version 3, a draft." in page
    assert 'id="version-state">Draft' in page


def test_a_champion_challenger_draft_needs_a_seed_and_arms_adding_to_100(book: Book) -> None:
    admin = login(book.app, book.tenant.admin_email)
    form = admin.client.get(book.version_url(2, "/edit"), headers=EN).get_data(as_text=True)
    first = share_names(form)[0]
    arm = "segments-0-arms"
    data = edit_data(
        form,
        **{
            "segments-0-mode": "champion_challenger",
            f"{arm}-0-name": "champion",
            f"{arm}-0-share": "80",
            f"{arm}-0-agencies-0-share": "100",
            f"{arm}-1-name": "control",
            f"{arm}-1-share": "10",
            f"{arm}-1-holdout": "y",
            "action": "save",
        },
    )
    data.pop(first, None)
    refused = admin.client.post(book.version_url(2, "/edit"), data=data, headers=EN)
    assert refused.status_code == 422
    page = refused.get_data(as_text=True)
    assert 'id="segments-0-seed-error"' in page
    assert "The arms&#39; shares add up to 90%, not 100%." in page
    data.update({"segments-0-seed": "2031-q1", f"{arm}-1-share": "20"})
    saved = admin.client.post(book.version_url(2, "/edit"), data=data)
    assert saved.status_code == 302, saved.get_data(as_text=True)
    policy = book.versions()[-1][2]["segments"]["*"]
    assert policy["mode"] == "champion_challenger"
    assert [(a["name"], a["holdout"]) for a in policy["arms"]] == [
        ("champion", False),
        ("control", True),
    ]


def test_the_dry_run_shows_the_services_figures_and_changes_nothing(book: Book) -> None:
    admin = login(book.app, book.tenant.admin_email)
    page = admin.client.get(book.version_url(2), headers=EN).get_data(as_text=True)
    response = admin.client.post(
        book.version_url(2, "/dry-run"),
        data={"csrf_token": token_of(page), "as_of": book.today.isoformat()},
        headers=EN,
    )
    assert response.status_code == 200
    shown = response.get_data(as_text=True)
    with tenant_scope(book.tenant.slug, db=platform(book.app).db) as session:
        version_id = session.query(StrategyVersion).filter_by(version=2).one().id
    [[placed]] = book.tenant.sql("SELECT count(*) FROM {s}.placements")
    assert placed == 0  # the page's dry run placed nothing
    result = book.tenant.run(book.today, dry_run=True, strategy_version_id=version_id)
    by_agency: Counter[int] = Counter()
    for line in result.lines:
        by_agency[line["agency_id"]] += line["cases"]
    assert by_agency == {book.a: 20, book.b: 20}
    assert re.search(r'id="dry-placed">\s*40\s*<', shown)
    table = re.search(r'<table id="dry-by-agency_id">.*?</table>', shown, re.S)
    assert table is not None
    for agency_id, cases in by_agency.items():
        row = re.search(rf'<tr data-key="{agency_id}">(.*?)</tr>', table.group(0), re.S)
        assert row is not None
        assert f">{cases}<" in row.group(1)
        balance = sum(
            (Decimal(line["balance"]) for line in result.lines if line["agency_id"] == agency_id),
            Decimal(0),
        )
        assert f"{balance:,.2f}" in row.group(1)
    assert "By segment" in shown
    assert "By arm" in shown
    assert "By outcome" in shown


def test_activating_switches_the_active_version(book: Book) -> None:
    admin = login(book.app, book.tenant.admin_email)
    page = admin.client.get(book.version_url(2), headers=EN).get_data(as_text=True)
    assert 'id="activate"' in page
    assert "data-confirm" in page
    response = admin.client.post(
        book.version_url(2, "/activate"), data={"csrf_token": token_of(page)}
    )
    assert response.status_code == 302
    assert [(v, active) for v, active, _ in book.versions()] == [(1, False), (2, True)]
    after = admin.client.get(book.version_url(2), headers=EN).get_data(as_text=True)
    assert "Version 2 of main is now the active strategy." in after
    assert 'id="version-state">Active' in after
    assert 'id="activate"' not in after


def test_the_runs_list_shows_each_steps_counts(book: Book) -> None:
    book.tenant.run(book.today)
    admin = login(book.app, book.tenant.admin_email)
    page = admin.client.get(book.url("/runs"), headers=EN).get_data(as_text=True)
    with tenant_scope(book.tenant.slug, db=platform(book.app).db) as session:
        [run] = session.query(AllocationRun).all()
        counts = run.counts
    row = re.search(rf'<tr id="run-{run.id}">(.*?)</tr>', page, re.S)
    assert row is not None
    assert "Completed" in row.group(1)
    cells = dict(re.findall(r'data-step="(\w+)">([^<]*)<', row.group(1)))
    assert cells == {
        "segment": str(counts["segment"]["open_cases"]),
        "score": str(counts["score"]["scores_changed"]),
        "recall": str(counts["recall"]["recalled"]),
        "place": str(counts["place"]["placed"]),
        "assign": str(counts["assign"]["assigned"]),
    }
    assert counts["place"]["placed"] == 40
    detail = admin.client.get(book.url(f"/runs/{run.id}"), headers=EN).get_data(as_text=True)
    assert "placed <strong>40</strong>" in detail
    assert "hx-trigger" not in detail  # a finished run does not poll


def test_champion_challenger_results_per_arm(book: Book) -> None:
    policy = {
        "segments": {
            "*": {
                "mode": "champion_challenger",
                "seed": "s1",
                "arms": [
                    {
                        "name": "champion",
                        "share": 50,
                        "agencies": [{"agency_id": book.a, "share": 100}],
                    },
                    {
                        "name": "challenger",
                        "share": 30,
                        "agencies": [{"agency_id": book.b, "share": 100}],
                    },
                    {"name": "control", "share": 20, "holdout": True},
                ],
            }
        }
    }
    version_id = activate_policy(book.tenant, policy)
    book.tenant.run(book.today)
    arms = dict(
        book.tenant.sql(
            "SELECT arm, count(*) FROM {s}.strategy_arms WHERE strategy_version_id = :v"
            " GROUP BY arm",
            v=version_id,
        )
    )
    admin = login(book.app, book.tenant.admin_email)
    page = admin.client.get(book.url(f"/results?version={version_id}"), headers=EN)
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    for arm, cases in arms.items():
        row = re.search(rf'<tr id="arm-{arm}">(.*?)</tr>', text, re.S)
        assert row is not None, arm
        assert f">{cases}<" in row.group(1)
    champion = re.search(r'<tr id="arm-champion">(.*?)</tr>', text, re.S)
    assert champion is not None
    assert "Champion" in champion.group(1)
    assert "0.0%" in champion.group(1)  # nothing recovered or contacted yet
    assert "two-proportion z-test" in text
    assert admin.client.get(book.url("/results?version=999999")).status_code == 404


def test_the_analyst_reads_but_every_change_is_refused(book: Book) -> None:
    analyst = login(book.app, book.analyst_email)
    for path in ("", "/runs", "/results", f"/strategies/{book.strategy_id}/versions/2"):
        assert analyst.client.get(book.url(path)).status_code == 200, path
    page = analyst.client.get(book.version_url(2)).get_data(as_text=True)
    assert 'id="activate"' not in page
    assert 'id="edit"' not in page
    token = token_of(page)
    before = book.versions()
    for action, data in (
        ("/activate", {}),
        ("/dry-run", {"as_of": book.today.isoformat()}),
        ("/edit", {"action": "save", "segments-0-name": "*", "segments-0-mode": "split"}),
    ):
        response = analyst.client.post(
            book.version_url(2, action), data={"csrf_token": token, **data}
        )
        assert response.status_code == 403, action
    assert book.versions() == before


# --- isolation, on the two-tenant world --------------------------------------------------------


@pytest.fixture
def seeded(world: World) -> World:
    seed_world_allocation(world)
    return world


def a_paths(world: World) -> list[str]:
    base = f"/portal/{world.a.slug}/allocation"
    return [
        base,
        f"{base}/strategies/1",
        f"{base}/strategies/1/versions/1",
        f"{base}/strategies/1/versions/1/edit",
        f"{base}/runs",
        f"{base}/runs/1",
        f"{base}/results",
    ]


def a_posts(world: World) -> list[str]:
    base = f"/portal/{world.a.slug}/allocation/strategies/1/versions/1"
    return [f"{base}/activate", f"{base}/dry-run", f"{base}/edit"]


def a_state(world: World) -> list[Any]:
    with tenant_scope(world.a.slug, db=platform(world.app).db) as session:
        return [
            (v.strategy_id, v.version, v.is_active)
            for v in session.query(StrategyVersion).order_by(StrategyVersion.id)
        ]


def test_the_admin_opens_every_page(seeded: World) -> None:
    admin = login(seeded.app, seeded.a.admin_email)
    for path in a_paths(seeded):
        response = admin.client.get(path)
        assert response.status_code in (200, 302), path
        assert "bmark" not in response.get_data(as_text=True), path


@pytest.mark.parametrize("who", ["manager_email", "collector_email"])
def test_agency_staff_are_refused(seeded: World, who: str) -> None:
    staff = login(seeded.app, getattr(seeded, who))
    before = a_state(seeded)
    for path in a_paths(seeded):
        assert staff.client.get(path).status_code in (403, 404), path
    for path in a_posts(seeded):
        assert staff.post(path).status_code in (403, 404), path
    assert a_state(seeded) == before


def test_another_tenants_admin_finds_nothing(seeded: World) -> None:
    other = login(seeded.app, seeded.b.admin_email)
    before = a_state(seeded)
    for path in a_paths(seeded):
        assert other.client.get(path).status_code == 404, path
    for path in a_posts(seeded):
        assert other.post(path).status_code == 404, path
    assert a_state(seeded) == before


def test_another_tenants_ids_are_not_taken(seeded: World) -> None:
    admin = login(seeded.app, seeded.a.admin_email)
    base = f"/portal/{seeded.a.slug}/allocation"
    strategy = seeded.hostile_ids["strategy_id"]
    run = seeded.hostile_ids["allocation_run_id"]
    for path in (
        f"{base}/strategies/{strategy}",
        f"{base}/strategies/{strategy}/versions/1",
        f"{base}/strategies/{strategy}/versions/1/edit",
        f"{base}/strategies/1/versions/2",
        f"{base}/runs/{run}",
    ):
        assert admin.client.get(path).status_code == 404, path
    token = token_of(admin.client.get(base).get_data(as_text=True))
    for action in ("/activate", "/dry-run", "/edit"):
        response = admin.client.post(
            f"{base}/strategies/{strategy}/versions/1{action}", data={"csrf_token": token}
        )
        assert response.status_code == 404, action
    with tenant_scope(seeded.b.slug, db=platform(seeded.app).db) as session:
        active = session.query(StrategyVersion).filter_by(is_active=True).one()
        assert active.strategy_id == int(strategy)


def test_analyst_of_the_world_is_refused_changes(seeded: World) -> None:
    analyst: Caller = login(seeded.app, seeded.a.analyst_email)
    before = a_state(seeded)
    for path in a_paths(seeded):
        assert analyst.client.get(path).status_code in (200, 302), path
    for path in a_posts(seeded):
        assert analyst.post(path).status_code == 403, path
    assert a_state(seeded) == before


def test_anonymous_is_sent_to_sign_in(seeded: World) -> None:
    for path in a_paths(seeded):
        response = anonymous(seeded.app).client.get(path)
        assert response.status_code == 302, path
        assert "/login" in response.headers["Location"]
    for path in a_posts(seeded):
        assert anonymous(seeded.app).client.post(path).status_code in (400, 401)
