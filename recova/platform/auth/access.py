"""Declaring and enforcing who may call each API operation.

Every API view method carries an ``@access(...)`` rule. It is enforced before the
request body is parsed: no principal gives 401, a principal without the role or scope
gives 403, and a tenant the principal may not reach gives 404. The rule is kept on the
view (``view.access_rule``) so the tests can walk every route and role. Once the caller
and the tenant are known, a POST or PATCH carrying ``Idempotency-Key`` is claimed for
that caller in that tenant (``recova.platform.kernel.idempotency``): a retry is answered
from the stored response without running the view.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import g

from recova.platform.auth.models import Role
from recova.platform.auth.principal import Principal, current_principal
from recova.platform.auth.tenancy import resolve_request_tenant
from recova.platform.kernel.api import reject_unknown_query_parameters
from recova.platform.kernel.errors import abort
from recova.platform.kernel.idempotency import claim_idempotency_key
from recova.platform.kernel.request_scope import db_session

F = TypeVar("F", bound=Callable[..., Any])

SCOPES: dict[str, str] = {
    "tenant:read": "Read the tenant's profile",
    "cases:read": "Read cases, accounts and debtors (masked)",
    "ingest:write": "Send portfolios and payments: mappings, files, sources and runs",
    "allocation:read": "Read allocation settings, strategies, runs, placements and scores",
    "allocation:write": "Change allocation settings and strategies, run allocation, recall",
    "work:read": "Read case work: lifecycle, promises, plans, settlements, disputes",
    "work:write": "Do case work: transitions, promises, plans, settlements, disputes, settings",
    "contact:read": "Read contact attempts, outcome codes and message templates",
    "contact:write": "Make contact attempts through the compliance gate and record outcomes",
    "compliance:read": "Read the compliance policy, simulate schedules, list notices due",
    "compliance:write": "Tighten the compliance policy; manage outcome codes and templates",
    "audit:read": "Read and verify the tenant's audit chain and its exported heads",
    "privacy:reveal": "Reveal a debtor's national id or phone number, with a stated reason",
    "billing:read": "Read contract versions, the commission ledger, invoices and statements",
    "billing:write": "Add contract versions, close months, issue, pay and void invoices",
    "webhooks:read": "Read webhook endpoints and their delivery logs",
    "webhooks:write": "Register, change and delete webhook endpoints; rotate secrets, replay",
}


@dataclass(frozen=True)
class AccessRule:
    """Who may call one operation."""

    roles: frozenset[Role]
    scope: str | None = None
    tenant: bool = False
    any_principal: bool = False

    def allows(self, principal: Principal) -> bool:
        if principal.is_client:
            return self.scope is not None and self.scope in principal.scopes
        if self.any_principal:
            return True
        return principal.role in self.roles


def access(
    *roles: Role, scope: str | None = None, tenant: bool = False, any_principal: bool = False
) -> Callable[[F], F]:
    """Require one of ``roles`` (users) or ``scope`` (OAuth clients); resolve a tenant."""
    if scope is not None and scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")
    rule = AccessRule(frozenset(roles), scope, tenant, any_principal)

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            principal = enforce(rule)
            reject_unknown_query_parameters(getattr(wrapper, "_apidoc", {}))
            tenant = g.get("tenant") if rule.tenant else None
            replay = claim_idempotency_key(
                scope=f"{principal.kind}:{principal.subject_id}",
                tenant_id=None if tenant is None else tenant.id,
            )
            if replay is not None:
                return replay
            return view(*args, **kwargs)

        wrapper.access_rule = rule  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorator


def enforce(rule: AccessRule) -> Principal:
    """Apply ``rule`` to the current request, aborting with 401, 403 or 404."""
    principal = current_principal()
    if principal is None:  # abort raises
        abort(
            401,
            message="authentication required",
            headers={"WWW-Authenticate": 'Bearer realm="recova"'},
        )
    if not rule.allows(principal):
        abort(403, message=_forbidden_message(rule, principal))
    if rule.tenant:
        resolve_request_tenant(db_session(), principal, g.get("named_tenant_slug"))
    return principal


def _forbidden_message(rule: AccessRule, principal: Principal) -> str:
    if principal.is_client:
        if rule.scope is None:
            return "this operation is not open to API clients"
        return f"this operation needs the {rule.scope!r} scope"
    names = ", ".join(sorted(role.value for role in rule.roles))
    return f"this operation needs one of the roles: {names}"


def pop_named_tenant(endpoint: str | None, values: dict[str, Any] | None) -> None:
    """URL preprocessor: take ``tenant_slug`` out of the view arguments into ``g``."""
    if values and "tenant_slug" in values:
        g.named_tenant_slug = values.pop("tenant_slug")
