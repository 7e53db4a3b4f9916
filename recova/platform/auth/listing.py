"""Reading users and API clients a page at a time (the portal's settings lists, and the
platform operator's staff list)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session, joinedload

from recova.platform.auth.models import Membership, OAuthClient, OAuthToken, User


def tenant_users(
    session: Session, *, tenant_id: int, after: int | None = None, limit: int = 50
) -> list[User]:
    """Up to ``limit`` of the tenant's users by id, after the id ``after`` (keyset paging)."""
    query = (
        select(User)
        .join(User.membership)
        .options(joinedload(User.membership))
        .where(Membership.tenant_id == tenant_id)
        .order_by(User.id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(User.id > after)
    return list(session.scalars(query))


def staff_users(
    session: Session, *, agency_id: int | None = None, after: int | None = None, limit: int = 50
) -> list[User]:
    """Up to ``limit`` platform operators and agency staff by id, after ``after`` (keyset);
    with ``agency_id``, that agency's staff only."""
    query = (
        select(User)
        .join(User.membership)
        .options(joinedload(User.membership).joinedload(Membership.agency))
        .where(Membership.tenant_id.is_(None))
        .order_by(User.id)
        .limit(limit)
    )
    if agency_id is not None:
        query = query.where(Membership.agency_id == agency_id)
    if after is not None:
        query = query.where(User.id > after)
    return list(session.scalars(query))


def staff_user(session: Session, *, user_id: int) -> User | None:
    """One platform operator or agency staff member, or None (a tenant's user is None)."""
    return session.scalar(
        select(User)
        .join(User.membership)
        .options(joinedload(User.membership).joinedload(Membership.agency))
        .where(User.id == user_id, Membership.tenant_id.is_(None))
    )


def tenant_user(session: Session, *, tenant_id: int, user_id: int) -> User | None:
    """One of the tenant's users, or None (another tenant's user is None too)."""
    return session.scalar(
        select(User)
        .join(User.membership)
        .options(joinedload(User.membership))
        .where(User.id == user_id, Membership.tenant_id == tenant_id)
    )


@dataclass(frozen=True)
class ClientRow:
    """An API client with the moment it last fetched a token (None if it never did)."""

    client: OAuthClient
    last_token_at: dt.datetime | None


def tenant_clients(
    session: Session, *, tenant_id: int, after: int | None = None, limit: int = 50
) -> list[ClientRow]:
    """Up to ``limit`` of the tenant's API clients by id, after ``after``, each with its
    latest token's issue time (tokens are indexed by client)."""
    last_token = (
        select(func.max(OAuthToken.issued_at))
        .where(OAuthToken.client_pk == OAuthClient.id)
        .correlate(OAuthClient)
        .scalar_subquery()
    )
    query = (
        select(OAuthClient, last_token)
        .where(OAuthClient.tenant_id == tenant_id)
        .order_by(OAuthClient.id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(OAuthClient.id > after)
    return [ClientRow(client, last) for client, last in session.execute(query)]


def tenant_client(session: Session, *, tenant_id: int, client_pk: int) -> OAuthClient | None:
    """One of the tenant's API clients, or None."""
    return session.scalar(
        select(OAuthClient).where(OAuthClient.id == client_pk, OAuthClient.tenant_id == tenant_id)
    )
