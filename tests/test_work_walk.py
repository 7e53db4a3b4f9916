"""Every workspace route, walked: the access rules hold on each one, not only on the ones
a section's own tests visit.

The route list comes from the app itself, so a page added later is walked too. Each route
is asked with placeholder ids first (the page rules are decided before any object is
looked up), then a case's routes with real cases out of the caller's reach:

- anonymous: a page is sent to sign in, a change is refused (401);
- tenant staff and the platform operator: every workspace route refused (403);
- a collector: every manager route refused (403);
- a tenant the agency holds no contract with, named in the path: 404 as if it did not
  exist, for its collectors and managers alike;
- another collector's case (same agency), another agency's case (same tenant) and a case
  id of another tenant's book: 404 on every route of a case, read or change.
"""

from __future__ import annotations

import secrets

import pytest
from flask import Flask
from sqlalchemy import select
from werkzeug.routing import Rule

from recova.platform.agencies.models import Agency
from recova.platform.allocation.models import Assignment, Placement
from recova.platform.auth.models import Role
from recova.platform.auth.services import create_user
from recova.platform.kernel.extension import platform
from recova.platform.web.pages import AGENCY_MANAGERS
from recova.tenants.scope import tenant_scope
from tests.compliance_support import Lender, lender_for
from tests.support import PASSWORD, Caller, World, anonymous, login
from tests.transactions import RolledBack
from tests.walk_support import ask, csrf_token, methods, route_path


def _workspace_rules(app: Flask) -> list[Rule]:
    return sorted(
        (r for r in app.url_map.iter_rules() if r.endpoint.startswith("workspace.")),
        key=lambda r: (r.rule, r.endpoint),
    )


def _is_manager_only(app: Flask, rule: Rule) -> bool:
    return app.view_functions[rule.endpoint].page_rule.roles == AGENCY_MANAGERS


def _walk(caller: Caller, rules: list[Rule], slug: str, expected: int, **ids: int) -> list[str]:
    token = csrf_token(caller)
    return [
        f"{method} {route_path(rule, slug, **ids)} -> {status}"
        for rule in rules
        for method in methods(rule)
        if (status := ask(caller, method, route_path(rule, slug, **ids), token)) != expected
    ]


def test_every_workspace_route_carries_a_page_rule(world: World) -> None:
    rules = _workspace_rules(world.app)

    assert len(rules) >= 20  # queue, case and its actions, team, assignment, ...
    missing = [
        r.endpoint for r in rules if not hasattr(world.app.view_functions[r.endpoint], "page_rule")
    ]
    assert missing == []


def test_anonymous_visitors_are_sent_to_sign_in_and_changes_refused(world: World) -> None:
    visitor = anonymous(world.app)
    token = csrf_token(visitor)
    wrong = []
    for rule in _workspace_rules(world.app):
        path = route_path(rule, world.a.slug)
        for method in methods(rule):
            if method == "GET":
                answer = visitor.client.get(path)
                ok = answer.status_code == 302 and answer.headers["Location"].startswith(
                    "/login?next="
                )
            else:
                ok = ask(visitor, method, path, token) == 401
            if not ok:
                wrong.append(f"{method} {path}")
    assert wrong == []


@pytest.mark.parametrize("who", ["tenant admin", "tenant analyst", "platform admin"])
def test_tenant_staff_and_the_operator_reach_no_workspace_route(world: World, who: str) -> None:
    email = {
        "tenant admin": world.a.admin_email,
        "tenant analyst": world.a.analyst_email,
        "platform admin": world.platform_admin_email,
    }[who]

    assert _walk(login(world.app, email), _workspace_rules(world.app), world.a.slug, 403) == []


def test_a_collector_reaches_no_manager_route(world: World) -> None:
    managers_only = [r for r in _workspace_rules(world.app) if _is_manager_only(world.app, r)]

    assert {r.endpoint.split("_", 1)[0] for r in managers_only} >= {
        "workspace.team",
        "workspace.assignment",
        "workspace.approvals",
        "workspace.placements",
        "workspace.statements",
    }
    assert _walk(login(world.app, world.collector_email), managers_only, world.a.slug, 403) == []


@pytest.mark.parametrize("who", ["outsider_manager_email", "collector_email", "manager_email"])
def test_a_tenant_without_contract_does_not_exist_in_the_workspace(world: World, who: str) -> None:
    # Agency A holds a contract with tenant A only, agency B with tenant B only.
    caller = login(world.app, getattr(world, who))
    slug = world.a.slug if who == "outsider_manager_email" else world.b.slug
    tenant_rules = [
        r
        for r in _workspace_rules(world.app)
        if "tenant_slug" in r.arguments
        and (who != "collector_email" or not _is_manager_only(world.app, r))
    ]

    assert tenant_rules
    assert _walk(caller, tenant_rules, slug, 404) == []


def _case_rules(app: Flask) -> list[Rule]:
    return [
        r
        for r in _workspace_rules(app)
        if "case_id" in r.arguments and not _is_manager_only(app, r)
    ]


def _place(lender: Lender, *, agency: int, collector_id: int | None) -> int:
    """A case of ``lender`` placed with agency ``agency`` (an index), assigned to
    ``collector_id`` (any user id; None: unassigned)."""
    debt = lender.debt(placed_with=agency, assigned=False)
    if collector_id is not None:
        with lender.scope() as session:
            placement = session.scalar(select(Placement).where(Placement.case_id == debt.case_id))
            assert placement is not None
            session.add(
                Assignment(placement_id=placement.id, collector_id=collector_id, reason="override")
            )
    return debt.case_id


@pytest.fixture
def lender(app: Flask, shared_lender_cn: Lender, rolled_back: RolledBack | None) -> Lender:
    """The worker's CN lender, the test rolled back at its end."""
    return lender_for(app, "CN", shared_lender_cn, rolled_back)


def _colleague(lender: Lender) -> tuple[str, int]:
    """A second collector in the lender's agency 0 (email, user id)."""
    email = f"colleague-{secrets.token_hex(4)}@walk.test"
    with platform(lender.app).db.session() as session:
        agency = session.get(Agency, lender.agency_ids[0])
        user = create_user(
            session,
            email=email,
            full_name="Colleague",
            password=PASSWORD,
            role=Role.COLLECTOR,
            agency=agency,
        )
        session.commit()
        return email, user.id


def test_a_case_out_of_reach_is_not_found_on_any_case_route(lender: Lender) -> None:
    colleague_email, colleague_id = _colleague(lender)
    collectors = _place(lender, agency=0, collector_id=lender.collector_ids[0])
    colleagues = _place(lender, agency=0, collector_id=colleague_id)
    unassigned = _place(lender, agency=0, collector_id=None)
    other_agencys = _place(lender, agency=1, collector_id=lender.collector_ids[1])
    collector = login(lender.app, lender.collector_emails[0])
    rules = _case_rules(lender.app)

    assert rules
    # A colleague's case, a case of the agency nobody assigned to them, another agency's.
    for case_id in (colleagues, unassigned, other_agencys):
        assert _walk(collector, rules, lender.slug, 404, case_id=case_id) == []
    # The colleague on the collector's case; the other agency's collector and manager too.
    assert (
        _walk(login(lender.app, colleague_email), rules, lender.slug, 404, case_id=collectors) == []
    )
    for email in (lender.collector_emails[1], lender.manager_emails[1]):
        assert _walk(login(lender.app, email), rules, lender.slug, 404, case_id=collectors) == []
    # Agency 0's manager reaches the agency's cases but not agency 1's.
    manager = login(lender.app, lender.manager_emails[0])
    assert _walk(manager, rules, lender.slug, 404, case_id=other_agencys) == []


def test_a_case_id_of_another_tenants_book_is_not_found(world: World, lender: Lender) -> None:
    # A case id that exists in the lender's book, asked under world tenant A, whose book
    # holds no case with that id placed with agency A: 404 on every case route.
    case_id = _place(lender, agency=0, collector_id=lender.collector_ids[0])
    with tenant_scope(world.a.slug, db=platform(world.app).db) as session:
        placed = session.scalar(select(Placement.id).where(Placement.case_id == case_id))
    assert placed is None
    caller = login(world.app, world.collector_email)

    assert _walk(caller, _case_rules(world.app), world.a.slug, 404, case_id=case_id) == []
