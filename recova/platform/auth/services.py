"""Users and their memberships, password login with lockout, and API clients."""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from recova.platform.agencies.models import Agency
from recova.platform.auth.models import (
    AGENCY_ROLES,
    TENANT_ROLES,
    Membership,
    OAuthClient,
    OAuthToken,
    Role,
    User,
)
from recova.platform.auth.passwords import hash_password, needs_rehash, verify_password
from recova.platform.auth.principal import token_digest
from recova.platform.kernel.db import utcnow
from recova.platform.kernel.errors import DomainError
from recova.tenants.models import Tenant


class UserError(DomainError, ValueError):
    """A user request that cannot be carried out (422)."""


class UserConflict(UserError):
    """The email is taken (409)."""

    status = 409


def create_user(
    session: Session,
    *,
    email: str,
    full_name: str,
    password: str,
    role: Role,
    tenant: Tenant | None = None,
    agency: Agency | None = None,
) -> User:
    """Create a user with their one membership; the organisation must fit the role."""
    email = email.strip()
    if "@" not in email:
        raise UserError(f"{email!r} is not an email address")
    if role in TENANT_ROLES and (tenant is None or agency is not None):
        raise UserError(f"role {role.value} belongs to a tenant")
    if role in AGENCY_ROLES and (agency is None or tenant is not None):
        raise UserError(f"role {role.value} belongs to an agency")
    if role is Role.PLATFORM_ADMIN and (tenant is not None or agency is not None):
        raise UserError("platform_admin belongs to no tenant or agency")
    taken = session.scalar(select(User.id).where(func.lower(User.email) == email.lower()))
    if taken is not None:
        raise UserConflict(f"a user with email {email!r} already exists")
    try:
        password_hash = hash_password(password)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    user = User(email=email, full_name=full_name, password_hash=password_hash, is_active=True)
    user.membership = Membership(
        role=role,
        tenant_id=tenant.id if tenant else None,
        agency_id=agency.id if agency else None,
    )
    session.add(user)
    session.flush()  # callers return the new id
    return user


def set_user_active(session: Session, user: User, active: bool) -> User:
    """Deactivate (or reactivate) a user; deactivating ends every session they hold."""
    if user.is_active and not active:
        end_sessions(session, user.id)
    user.is_active = active
    return user


def update_user(
    session: Session, user: User, *, full_name: str | None = None, is_active: bool | None = None
) -> User:
    """Rename a user, and deactivate or reactivate them (``set_user_active``); ``None``
    leaves that part as it is."""
    if full_name is not None:
        user.full_name = full_name
    if is_active is not None:
        set_user_active(session, user, is_active)
    return user


def end_sessions(session: Session, user_id: int) -> None:
    """End every portal session of the user, copied cookies included."""
    session.execute(
        update(User).where(User.id == user_id).values(session_epoch=User.session_epoch + 1)
    )


LOGIN_REFUSED = "wrong email or password, or too many attempts: try again later"


@dataclass(frozen=True)
class LoginResult:
    user: User | None
    error: str | None = None


def authenticate(
    session: Session, *, email: str, password: str, max_failures: int, lockout_seconds: int
) -> LoginResult:
    """Check a password login, counting failures and locking the account after too many.

    The caller commits whatever the outcome: failed attempts must be remembered. Every
    refusal costs one Argon2 check and says the same thing, so neither the answer nor its
    timing tells whether an account exists or is locked.
    """
    user = session.scalar(
        select(User).where(func.lower(User.email) == email.strip().lower()).with_for_update()
    )
    now = utcnow()
    matches = verify_password(user.password_hash if user is not None else None, password)
    locked = user is not None and user.locked_until is not None and user.locked_until > now
    if user is None or locked or not matches or not user.is_active:
        if user is not None and not locked:
            user.failed_logins += 1
            if user.failed_logins >= max_failures:
                user.locked_until = now + dt.timedelta(seconds=lockout_seconds)
                user.failed_logins = 0
        return LoginResult(None, LOGIN_REFUSED)
    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = now
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return LoginResult(user)


@dataclass(frozen=True)
class IssuedClient:
    """A new API client and its secret, which is shown once and never stored."""

    client: OAuthClient
    client_secret: str


def create_api_client(
    session: Session, *, tenant: Tenant, name: str, scopes: list[str], created_by: int | None
) -> IssuedClient:
    """Create an OAuth2 client-credentials client for the tenant's systems."""
    secret = secrets.token_urlsafe(32)
    client = OAuthClient(
        client_id="rc_" + secrets.token_urlsafe(18),
        client_secret_digest=token_digest(secret),
        name=name,
        tenant_id=tenant.id,
        scopes=scopes,
        created_by_id=created_by,
    )
    session.add(client)
    session.flush()  # callers return the new id
    return IssuedClient(client, secret)


def revoke_api_client(session: Session, client: OAuthClient) -> OAuthClient:
    """Revoke a client and every token it holds, at once."""
    now = utcnow()
    if client.revoked_at is None:
        client.revoked_at = now
    session.execute(
        update(OAuthToken)
        .where(OAuthToken.client_pk == client.id, OAuthToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return client


def client_secret_matches(client: OAuthClient, secret: str) -> bool:
    """Constant-time comparison of a presented secret with the stored digest."""
    return hmac.compare_digest(client.client_secret_digest, token_digest(secret))
