"""Creating and changing agencies."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from recova.platform.agencies.models import Agency, AgencyStatus
from recova.tenants.slugs import SLUG_PATTERN


class AgencyError(ValueError):
    """An agency request that cannot be carried out."""


def create_agency(session: Session, *, slug: str, name: str) -> Agency:
    """Register an agency under a unique slug."""
    if not SLUG_PATTERN.fullmatch(slug) or len(slug) > 56:
        raise AgencyError(
            f"slug {slug!r} may hold only lowercase letters, digits and single hyphens"
        )
    if session.scalar(select(Agency.id).where(Agency.slug == slug)) is not None:
        raise AgencyError(f"agency {slug!r} already exists")
    agency = Agency(slug=slug, name=name, status=AgencyStatus.ACTIVE)
    session.add(agency)
    session.flush()  # callers return the new id
    return agency
