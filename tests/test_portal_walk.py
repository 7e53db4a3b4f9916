"""Every web page, walked: the access rules hold on each route, not only on the ones a
section's own tests visit.

The route list comes from the app itself, so a page added later is walked too. Each route
is asked with its tenant's slug and placeholder ids (the rules are decided before any
object is looked up; each section's tests check another tenant's real ids):

- anonymous: a page is sent to sign in, a change is refused (401);
- agency staff and collectors: every portal and operator route refused (403);
- another tenant's admin on this tenant's slug: 404, as if it did not exist;
- the tenant's analyst: every change refused (403), except the few that change nothing,
  named here on purpose;
- tenant staff on the operator's pages: 403.
"""

from __future__ import annotations

import pytest
from flask import Flask
from werkzeug.routing import Rule

from tests.support import World, anonymous, login
from tests.walk_support import ask, csrf_token, methods, route_path

#: Routes an analyst may POST to, because they change nothing (the API lets analysts
#: do the same): the compliance simulator.
ANALYST_POSTS = {"portal.compliance_simulate"}
READS = {"GET"}


def _web_rules(app: Flask) -> list[Rule]:
    return sorted(
        (r for r in app.url_map.iter_rules() if r.endpoint.startswith(("portal.", "ops."))),
        key=lambda r: (r.rule, r.endpoint),
    )


def test_every_web_route_carries_a_page_rule(world: World) -> None:
    rules = _web_rules(world.app)

    assert len(rules) > 60
    missing = [
        r.endpoint for r in rules if not hasattr(world.app.view_functions[r.endpoint], "page_rule")
    ]
    assert missing == []


def test_anonymous_visitors_are_sent_to_sign_in_and_changes_refused(world: World) -> None:
    visitor = anonymous(world.app)
    token = csrf_token(visitor)
    wrong = []
    for rule in _web_rules(world.app):
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


@pytest.mark.parametrize("who", ["manager", "collector"])
def test_agency_staff_reach_no_portal_or_operator_page(world: World, who: str) -> None:
    email = world.manager_email if who == "manager" else world.collector_email
    staff = login(world.app, email)
    token = csrf_token(staff)
    wrong = [
        f"{method} {route_path(rule, world.a.slug)}"
        for rule in _web_rules(world.app)
        for method in methods(rule)
        if ask(staff, method, route_path(rule, world.a.slug), token) != 403
    ]
    assert wrong == []


def test_another_tenants_admin_finds_nothing_on_this_tenants_pages(world: World) -> None:
    other = login(world.app, world.b.admin_email)
    token = csrf_token(other)
    wrong = [
        f"{method} {route_path(rule, world.a.slug)}"
        for rule in _web_rules(world.app)
        if rule.endpoint.startswith("portal.")
        for method in methods(rule)
        if ask(other, method, route_path(rule, world.a.slug), token) != 404
    ]
    assert wrong == []


def test_the_analyst_changes_nothing_anywhere(world: World) -> None:
    analyst = login(world.app, world.a.analyst_email)
    token = csrf_token(analyst)
    refused, allowed = [], []
    for rule in _web_rules(world.app):
        if not rule.endpoint.startswith("portal.") or "POST" not in methods(rule):
            continue
        status = ask(analyst, "POST", route_path(rule, world.a.slug), token)
        (refused if status == 403 else allowed).append(rule.endpoint)
    assert set(allowed) == ANALYST_POSTS
    assert refused  # the walk reached the change routes


def test_tenant_staff_reach_no_operator_page(world: World) -> None:
    admin = login(world.app, world.a.admin_email)
    token = csrf_token(admin)
    wrong = [
        f"{method} {route_path(rule, world.a.slug)}"
        for rule in _web_rules(world.app)
        if rule.endpoint.startswith("ops.")
        for method in methods(rule)
        if ask(admin, method, route_path(rule, world.a.slug), token) != 403
    ]
    assert wrong == []
