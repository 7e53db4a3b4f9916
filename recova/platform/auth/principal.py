"""Who is calling: resolving the principal of a request from a bearer token or a session.

A request has at most one principal. Machine clients present an OAuth2 bearer token;
people use the portal's session cookie (the API accepts it too, with a CSRF header on
writes). Either way the principal is loaded with one query that also brings its tenant.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from flask import g, request, session
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, joinedload

from recova.platform.agencies.models import AgencyStatus
from recova.platform.auth.models import (
    AGENCY_ROLES,
    TENANT_ROLES,
    Membership,
    OAuthClient,
    OAuthToken,
    Role,
    User,
)
from recova.platform.kernel.db import utcnow
from recova.platform.kernel.request_scope import db_session
from recova.tenants.models import Tenant, TenantStatus

SESSION_USER_KEY = "uid"
SESSION_EPOCH_KEY = "epoch"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a user with a role, or a tenant's OAuth client with scopes."""

    kind: str  # "user" or "client"
    subject_id: int
    display: str
    role: Role | None = None
    tenant: Tenant | None = None
    agency_id: int | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    #: A user's saved portal language (None: not chosen, or a client).
    locale: str | None = None
    #: A user's full name, for the portal's header.
    full_name: str | None = None

    @property
    def is_client(self) -> bool:
        return self.kind == "client"

    @property
    def is_platform_admin(self) -> bool:
        return self.role is Role.PLATFORM_ADMIN

    @property
    def is_agency_user(self) -> bool:
        return self.role in AGENCY_ROLES

    @property
    def home_tenant(self) -> Tenant | None:
        """The tenant this principal belongs to (tenant users and clients only)."""
        if self.is_client or self.role in TENANT_ROLES:
            return self.tenant
        return None


def token_digest(token: str) -> bytes:
    """The stored form of an access token or client secret."""
    return hashlib.sha256(token.encode()).digest()


# Built once: this runs on every API call made with a token.
_TOKEN_LOOKUP = (
    select(OAuthToken, OAuthClient, Tenant)
    .join(OAuthClient, OAuthToken.client_pk == OAuthClient.id)
    .join(Tenant, OAuthToken.tenant_id == Tenant.id)
    .where(OAuthToken.token_digest == bindparam("digest"))
)


def principal_from_token(session: Session, token: str) -> Principal | None:
    """The client behind a bearer token, or None if it is unknown, expired or revoked."""
    row = session.execute(_TOKEN_LOOKUP, {"digest": token_digest(token)}).first()
    if row is None:
        return None
    stored, client, tenant = row
    if (
        stored.revoked_at is not None
        or stored.expires_at <= utcnow()
        or client.revoked_at is not None
        or tenant.status != TenantStatus.ACTIVE
    ):
        return None
    return Principal(
        kind="client",
        subject_id=client.id,
        display=client.client_id,
        tenant=tenant,
        scopes=frozenset(stored.scope.split()),
    )


def principal_from_user_id(session: Session, user_id: int, epoch: int) -> Principal | None:
    """The user behind a portal session, or None if the session ended or they may not log in."""
    user = session.scalar(
        select(User)
        .options(
            joinedload(User.membership).joinedload(Membership.tenant),
            joinedload(User.membership).joinedload(Membership.agency),
        )
        .where(User.id == user_id)
    )
    if user is None or not user.is_active or user.session_epoch != epoch or user.membership is None:
        return None
    membership = user.membership
    tenant = membership.tenant
    if tenant is not None and tenant.status != TenantStatus.ACTIVE:
        return None
    if membership.agency is not None and membership.agency.status != AgencyStatus.ACTIVE:
        return None  # a suspended agency's staff are locked out with it
    return Principal(
        kind="user",
        subject_id=user.id,
        display=user.email,
        role=membership.role,
        tenant=tenant,
        agency_id=membership.agency_id,
        locale=user.locale,
        full_name=user.full_name,
    )


def current_principal() -> Principal | None:
    """The authenticated caller of this request, resolved once."""
    if "principal" not in g:
        g.principal = _resolve_principal()
    return g.principal


def bearer_token() -> str | None:
    """The bearer token of the request, if it carries one."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def _resolve_principal() -> Principal | None:
    token = bearer_token()
    if token is not None:
        return principal_from_token(db_session(), token)
    user_id = session.get(SESSION_USER_KEY)
    epoch = session.get(SESSION_EPOCH_KEY)
    if isinstance(user_id, int) and isinstance(epoch, int):
        return principal_from_user_id(db_session(), user_id, epoch)
    return None
