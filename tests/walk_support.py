"""Walking every web route of the app's own map: the path of a route with placeholder
values, a signed-in caller's CSRF token, one request, a rule's methods.

Used by the portal's and the workspace's walks (``tests/test_portal_walk.py``,
``tests/test_work_walk.py``)."""

from __future__ import annotations

import re

from werkzeug.routing import Rule

from tests.support import Caller


def route_path(rule: Rule, slug: str, **ids: int) -> str:
    """``rule``'s path with the tenant ``slug`` and the given ids (any other id: 1)."""
    path = rule.rule
    for name in rule.arguments:
        value = slug if name in ("tenant_slug", "slug") else str(ids.get(name, 1))
        path = re.sub(rf"<(?:[a-z]+:)?{name}>", value, path)
    return path


def csrf_token(caller: Caller) -> str:
    """A CSRF token of the caller's session, read from the sign-in page (or their home)."""
    page = caller.client.get("/login", follow_redirects=True).get_data(as_text=True)
    found = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    assert found is not None
    return found.group(1)


def ask(caller: Caller, method: str, path: str, token: str) -> int:
    """The status of one GET, or of one form POST carrying only the token."""
    if method == "GET":
        return caller.client.get(path).status_code
    return caller.client.post(path, data={"csrf_token": token}).status_code


def methods(rule: Rule) -> list[str]:
    return sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
