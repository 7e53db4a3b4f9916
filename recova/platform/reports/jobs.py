"""Jobs of reporting: the refresh of a tenant's overview snapshot."""

from __future__ import annotations

import logging

from redis import RedisError
from rq.job import Job

from recova.platform.kernel.extension import Platform, platform
from recova.platform.kernel.jobs import job
from recova.platform.reports.snapshot import refresh_overview
from recova.platform.reports.team import refresh_agency_book

logger = logging.getLogger(__name__)


@job(queue="default", timeout=1800, retries=2, backoff=[60, 300])
def refresh_overview_job(*, tenant_id: int) -> str:
    """Compute the tenant's overview figures and store the snapshot (idempotent)."""
    snapshot = refresh_overview(platform(), tenant_id)
    return snapshot.computed_at.isoformat()


def overview_job_id(tenant_id: int) -> str:
    """The one id of a tenant's pending refresh: requests while it waits share it."""
    return f"overview-{tenant_id}"


def request_overview_refresh(objects: Platform, tenant_id: int) -> Job:
    """Queue the tenant's refresh now (outside a transaction), unless one is pending."""
    return refresh_overview_job.enqueue(
        objects, job_id=overview_job_id(tenant_id), tenant_id=tenant_id
    )


def refresh_overview_soon(objects: Platform, tenant_id: int) -> None:
    """After a change that committed (an ingestion or allocation run): queue a refresh,
    best effort; a Redis failure is logged, never raised (the scheduler's refresh follows)."""
    try:
        request_overview_refresh(objects, tenant_id)
    except RedisError as exc:
        logger.warning("overview refresh not queued: %s", type(exc).__name__)


# --- the agency workspace's team page: an agency's book in one tenant -----------------------


@job(queue="default", timeout=900, retries=2, backoff=[60, 300])
def refresh_agency_book_job(*, tenant_id: int, agency_id: int) -> str | None:
    """Compute the agency's book in the tenant and store its snapshot (idempotent; nothing
    when the agency no longer serves the tenant)."""
    snapshot = refresh_agency_book(platform(), tenant_id=tenant_id, agency_id=agency_id)
    return snapshot.computed_at.isoformat() if snapshot is not None else None


def request_agency_book_refresh(objects: Platform, *, tenant_id: int, agency_id: int) -> None:
    """Queue the refresh of an agency's book in a tenant unless one is pending; best
    effort: a Redis failure is logged (the page shows what it has and asks again)."""
    try:
        refresh_agency_book_job.enqueue(
            objects,
            job_id=f"team-book-{tenant_id}-{agency_id}",
            tenant_id=tenant_id,
            agency_id=agency_id,
        )
    except RedisError as exc:
        logger.warning("agency book refresh not queued: %s", type(exc).__name__)
