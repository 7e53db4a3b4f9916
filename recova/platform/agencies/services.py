"""Creating and changing agencies."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from recova.platform.agencies.models import Agency, AgencyStatus
from recova.platform.kernel.errors import DomainError
from recova.tenants.slugs import SLUG_PATTERN


class AgencyError(DomainError, ValueError):
    """An agency request that cannot be carried out (422)."""


class AgencyConflict(AgencyError):
    """The slug is taken (409)."""

    status = 409


def create_agency(session: Session, *, slug: str, name: str) -> Agency:
    """Register an agency under a unique slug."""
    if not SLUG_PATTERN.fullmatch(slug) or len(slug) > 56:
        raise AgencyError(
            f"slug {slug!r} may hold only lowercase letters, digits and single hyphens"
        )
    if session.scalar(select(Agency.id).where(Agency.slug == slug)) is not None:
        raise AgencyConflict(f"agency {slug!r} already exists")
    agency = Agency(slug=slug, name=name, status=AgencyStatus.ACTIVE)
    session.add(agency)
    session.flush()  # callers return the new id
    return agency


def agencies_after(session: Session, *, after: str | None = None, limit: int = 50) -> list[Agency]:
    """Up to ``limit`` agencies by slug, after the slug ``after`` (keyset paging)."""
    query = select(Agency).order_by(Agency.slug).limit(limit)
    if after is not None:
        query = query.where(Agency.slug > after)
    return list(session.scalars(query))


def update_agency(
    agency: Agency, *, name: str | None = None, status: AgencyStatus | None = None
) -> Agency:
    """Rename an agency, or suspend or reactivate it; ``None`` leaves that part as it is."""
    if name is not None:
        agency.name = name
    if status is not None:
        agency.status = status
    return agency
