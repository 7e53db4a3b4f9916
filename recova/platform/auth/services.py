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


class LastAdminError(UserError):
    """The change would leave the tenant with no active administrator (409)."""

    status = 409


class SelfDeactivationError(UserError):
    """A user asked to deactivate their own login (409): they would lock themselves out."""

    status = 409


#: The portal languages a user may save (``users.locale``'s check constraint).
USER_LOCALES = ("zh_CN", "en")


def create_user(
    session: Session,
    *,
    email: str,
    full_name: str,
    password: str,
    role: Role,
    tenant: Tenant | None = None,
    agency: Agency | None = None,
    locale: str | None = None,
) -> User:
    """Create a user with their one membership; the organisation must fit the role.
    ``locale``: their portal language (``USER_LOCALES``), or None for the browser's."""
    email = email.strip()
    if "@" not in email:
        raise UserError(f"{email!r} is not an email address")
    _check_locale(locale)
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
    user = User(
        email=email,
        full_name=full_name,
        password_hash=password_hash,
        is_active=True,
        locale=locale,
    )
    user.membership = Membership(
        role=role,
        tenant_id=tenant.id if tenant else None,
        agency_id=agency.id if agency else None,
    )
    session.add(user)
    session.flush()  # callers return the new id
    return user


def set_user_active(
    session: Session, user: User, active: bool, *, by_user_id: int | None = None
) -> User:
    """Deactivate (or reactivate) a user; deactivating ends every session they hold.

    ``by_user_id`` is the user asking: nobody deactivates their own login, and a tenant
    keeps at least one active administrator.
    """
    if user.is_active and not active:
        if by_user_id is not None and by_user_id == user.id:
            raise SelfDeactivationError("you cannot deactivate your own login")
        if user.membership.role is Role.TENANT_ADMIN:
            _keep_another_admin(session, user)
        end_sessions(session, user.id)
    user.is_active = active
    return user


def set_user_role(session: Session, user: User, role: Role) -> User:
    """Make a tenant user an administrator or an analyst; the tenant keeps an admin.

    The role stays in the user's organisation (a tenant user takes a tenant role). A
    demoted user's open sessions carry on with the new role, since every request reads
    the role afresh from the membership.
    """
    membership = user.membership
    if membership.tenant_id is None or role not in TENANT_ROLES:
        raise UserError(f"role {role.value} does not fit this user's organisation")
    if membership.role is Role.TENANT_ADMIN and role is not Role.TENANT_ADMIN and user.is_active:
        _keep_another_admin(session, user)
    membership.role = role
    return user


def set_user_locale(user: User, locale: str | None) -> User:
    """Save the user's portal language (``USER_LOCALES``); None: their browser decides."""
    _check_locale(locale)
    user.locale = locale
    return user


def _check_locale(locale: str | None) -> None:
    if locale is not None and locale not in USER_LOCALES:
        raise UserError(f"unknown language {locale!r}; one of {', '.join(USER_LOCALES)}")


def _keep_another_admin(session: Session, user: User) -> None:
    """Refuse to take ``user``'s admin role or login away if no other active admin is left.

    The tenant's admin memberships are locked first, so two admins removing each other at
    the same moment cannot both succeed: the second waits, then counts what the first
    committed.
    """
    tenant_id = user.membership.tenant_id
    admins = (
        select(Membership.user_id)
        .where(Membership.tenant_id == tenant_id, Membership.role == Role.TENANT_ADMIN)
        .with_for_update()
    )
    locked = session.scalars(admins).all()
    others = session.scalar(
        select(func.count())
        .select_from(User)
        .where(User.id.in_(locked), User.id != user.id, User.is_active.is_(True))
    )
    if not others:
        raise LastAdminError("the tenant must keep at least one active administrator")


def update_user(
    session: Session,
    user: User,
    *,
    full_name: str | None = None,
    is_active: bool | None = None,
    by_user_id: int | None = None,
) -> User:
    """Rename a user, and deactivate or reactivate them (``set_user_active``, asked by
    ``by_user_id``); ``None`` leaves that part as it is."""
    if full_name is not None:
        user.full_name = full_name
    if is_active is not None:
        set_user_active(session, user, is_active, by_user_id=by_user_id)
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
