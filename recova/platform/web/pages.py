"""Who may open a web page, and what the page frame shows around it.

Every server-rendered page carries ``@web_page(...)``: the same rules as the API's
``@access`` (``recova.platform.auth.access``), answered the way a browser needs them.

- No session: a GET is sent to the sign-in page and back afterwards; anything else is 401.
- A role the page is not for: 403, with the page's error frame.
- A tenant page (``/portal/<tenant_slug>/...``) resolves the tenant exactly as the API
  does (``resolve_request_tenant``): another tenant's slug, or a tenant an agency holds no
  contract with, is 404, as if it did not exist; the request's session is then bound to
  the tenant's schema, so every query of the view sees that tenant only.
- A change (any method but GET and HEAD) needs one of the page's ``write`` roles: the
  tenant analyst sees every portal page but the server refuses their changes with 403,
  whatever the page showed them.

The page frame (``base.html``) shows the navigation of the signed-in role's area; an item
appears only once its page exists (its endpoint is registered).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import Flask, current_app, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from recova.platform.auth.models import Role
from recova.platform.auth.principal import Principal, current_principal
from recova.platform.auth.tenancy import resolve_request_tenant
from recova.platform.kernel.errors import abort
from recova.platform.kernel.request_scope import db_session

F = TypeVar("F", bound=Callable[..., Any])

READ_METHODS = frozenset({"GET", "HEAD"})
PORTAL_READERS = frozenset({Role.TENANT_ADMIN, Role.TENANT_ANALYST})
PORTAL_WRITERS = frozenset({Role.TENANT_ADMIN})
AGENCY_STAFF = frozenset({Role.AGENCY_MANAGER, Role.COLLECTOR})
AGENCY_MANAGERS = frozenset({Role.AGENCY_MANAGER})


@dataclass(frozen=True)
class PageRule:
    """Who may open one page, and who may change anything through it."""

    roles: frozenset[Role]
    write: frozenset[Role]
    tenant: bool


def web_page(
    roles: Iterable[Role], *, write: Iterable[Role] = (), tenant: bool = False
) -> Callable[[F], F]:
    """Open the page to ``roles``; its changes to ``write``; ``tenant``: a tenant page."""
    rule = PageRule(frozenset(roles), frozenset(write), tenant)

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            principal = current_principal()
            if principal is None or principal.is_client:
                if request.method in READ_METHODS and not request.headers.get("HX-Request"):
                    return redirect(url_for("web_auth.login", next=request.full_path))
                abort(401, message=str(_l("Your session has ended. Sign in again.")))
            if principal.role not in rule.roles:
                abort(403, message=str(_l("This page is not open to your role.")))
            if request.method not in READ_METHODS and principal.role not in rule.write:
                abort(403, message=str(_l("Your role can read this page but not change it.")))
            if rule.tenant:
                resolve_request_tenant(db_session(), principal, g.get("named_tenant_slug"))
            g.page_principal = principal
            return view(*args, **kwargs)

        wrapper.page_rule = rule  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorator


def portal_page(view: F) -> F:
    """A tenant portal page: admins and analysts read, admins change."""
    return web_page(PORTAL_READERS, write=PORTAL_WRITERS, tenant=True)(view)


def workspace_page(view: F) -> F:
    """An agency workspace page across the agency's tenants: collectors and managers."""
    return web_page(AGENCY_STAFF, write=AGENCY_STAFF)(view)


def workspace_case_page(view: F) -> F:
    """A page of one tenant's case in the workspace (``/work/<tenant_slug>/...``): the
    tenant is bound as for the API; the view still checks the case is within reach."""
    return web_page(AGENCY_STAFF, write=AGENCY_STAFF, tenant=True)(view)


def manager_page(view: F) -> F:
    """An agency manager's page (team, assignment, approvals, placements, statements)."""
    return web_page(AGENCY_MANAGERS, write=AGENCY_MANAGERS)(view)


def manager_case_page(view: F) -> F:
    """A manager's page bound to one tenant (``/work/<tenant_slug>/...``)."""
    return web_page(AGENCY_MANAGERS, write=AGENCY_MANAGERS, tenant=True)(view)


def can_write() -> bool:
    """Whether the signed-in user may change what this page shows (buttons show or hide)."""
    principal: Principal | None = g.get("page_principal")
    view = current_app.view_functions.get(request.endpoint or "")
    rule: PageRule | None = getattr(view, "page_rule", None)
    return principal is not None and rule is not None and principal.role in rule.write


def safe_next(target: str | None) -> str | None:
    """``target`` if it is a path on this site (never another host: no open redirect)."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


ERROR_TITLES = {
    400: _l("The request could not be read"),
    401: _l("Sign in first"),
    403: _l("Not allowed"),
    404: _l("Not found"),
    405: _l("Not allowed here"),
    409: _l("In conflict with the current state"),
    413: _l("Too large"),
    422: _l("Could not be done"),
    429: _l("Too many requests"),
    500: _l("Something went wrong on our side"),
}
ERROR_MESSAGES = {
    400: _l("The page sent something the server could not read. Go back and try again."),
    401: _l("Your session has ended. Sign in again."),
    403: _l("Your role may not open this page or make this change."),
    404: _l("There is no such page, or it is not one you may open."),
    405: _l("This address does not accept that kind of request."),
    413: _l("The file is larger than the upload limit."),
    429: _l("You sent too many requests. Wait a moment and try again."),
    500: _l("The error was logged. Try again, or tell your administrator."),
}


#: Flask-WTF's reasons for refusing a form (``flask_wtf.csrf``), in the page's language.
CSRF_REASONS = {
    "The CSRF token is missing.": _l("The CSRF token is missing."),
    "The CSRF session token is missing.": _l("The CSRF session token is missing."),
    "The CSRF token has expired.": _l("The CSRF token has expired."),
    "The CSRF token is invalid.": _l("The CSRF token is invalid."),
    "The CSRF tokens do not match.": _l("The CSRF tokens do not match."),
}


def page_error(error: HTTPException) -> str:
    """The HTML page of an error: a title and message in the page's language."""
    code = error.code or 500
    if isinstance(error, CSRFError):
        reason = CSRF_REASONS.get(str(error.description), error.description)
        message = _("%(reason)s Reload the page and send the form again.", reason=reason)
    else:
        data = getattr(error, "data", None)
        said = data.get("message") if isinstance(data, dict) else None
        message = str(said) if said else str(ERROR_MESSAGES.get(code, error.description or ""))
    title = ERROR_TITLES.get(code, error.name)
    return render_template("error.html", error=error, title=title, message=message)


@dataclass(frozen=True)
class NavItem:
    endpoint: str
    label: Any  # a lazy string, translated when the page renders


#: The tenant portal's sections, in the order its users work.
PORTAL_NAV = (
    NavItem("portal.overview", _l("Overview")),
    NavItem("portal.files", _l("Portfolio files")),
    NavItem("portal.cases", _l("Cases")),
    NavItem("portal.allocation", _l("Allocation")),
    NavItem("portal.agencies", _l("Agencies")),
    NavItem("portal.approvals", _l("Approvals")),
    NavItem("portal.compliance", _l("Compliance")),
    NavItem("portal.billing", _l("Billing")),
    NavItem("portal.webhooks", _l("Webhooks")),
    NavItem("portal.settings", _l("Settings")),
    NavItem("portal.audit", _l("Audit")),
)


#: The agency workspace's sections; each shows only to the roles its page is open to.
WORKSPACE_NAV = (
    NavItem("workspace.queue", _l("My queue")),
    NavItem("workspace.team", _l("Team today")),
    NavItem("workspace.assignment", _l("Assignment")),
    NavItem("workspace.approvals", _l("Approvals")),
    NavItem("workspace.placements", _l("Placements and recalls")),
    NavItem("workspace.statements", _l("Statements")),
)


#: The platform operator's sections.
OPS_NAV = (
    NavItem("ops.tenants", _l("Tenants")),
    NavItem("ops.agencies", _l("Agencies")),
    NavItem("ops.users", _l("Users")),
    NavItem("ops.jobs", _l("Background jobs")),
)


def navigation() -> list[tuple[str, Any, bool]]:
    """The signed-in role's sections that exist: (url, label, is the current one)."""
    principal: Principal | None = g.get("page_principal")
    if principal is None:
        return []
    if principal.role is Role.PLATFORM_ADMIN:
        items: tuple[NavItem, ...] = OPS_NAV
    elif principal.role in PORTAL_READERS and g.get("tenant") is not None:
        items = PORTAL_NAV
    elif principal.role in AGENCY_STAFF:
        items = WORKSPACE_NAV
    else:
        return []
    # A section's own pages are named after it: ``portal.cases``, ``portal.cases_detail``.
    section = (request.endpoint or "").split("_", 1)[0]
    return [
        (url_for(item.endpoint), item.label, section == item.endpoint)
        for item in items
        if item.endpoint in current_app.view_functions
        and _open_to(current_app.view_functions[item.endpoint], principal.role)
    ]


def _open_to(view: Any, role: Role) -> bool:
    """Whether a page's rule lets ``role`` open it (a section closed to it is not shown)."""
    rule: PageRule | None = getattr(view, "page_rule", None)
    return rule is None or role in rule.roles


def init_pages(app: Flask) -> None:
    """Fill in the tenant of the page in ``url_for`` and give templates the frame's parts."""

    @app.url_defaults
    def _tenant_slug(endpoint: str, values: dict[str, Any]) -> None:
        if "tenant_slug" in values or not app.url_map.is_endpoint_expecting(
            endpoint, "tenant_slug"
        ):
            return
        tenant = g.get("tenant")
        if tenant is not None:
            values["tenant_slug"] = tenant.slug

    static = Path(app.static_folder or "")

    @functools.cache
    def _digest(filename: str) -> str:
        return hashlib.sha256((static / filename).read_bytes()).hexdigest()[:12]

    def static_url(filename: str) -> str:
        """A static file's URL with its content's digest: cached until the file changes."""
        return url_for("static", filename=filename, v=_digest(filename))

    @app.context_processor
    def _frame() -> dict[str, Any]:
        return {"navigation": navigation, "can_write": can_write, "static_url": static_url}
