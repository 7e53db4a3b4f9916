"""Jobs of allocation: the daily run for one tenant, and reassignment after a deactivation."""

from __future__ import annotations

import datetime as dt
from typing import Any

from rq import get_current_job

from recova.platform.allocation.services import run_allocation, run_assignment
from recova.platform.kernel.extension import platform
from recova.platform.kernel.jobs import job
from recova.platform.reports.jobs import refresh_overview_soon


def _report_progress(step: str, done: int, total: int) -> None:
    current = get_current_job()
    if current is not None:
        current.meta.update({"step": step, "steps_done": done, "steps": total})
        current.save_meta()


# 30 minutes fits the core worker group; a run cut short resumes at its last step.
@job(queue="allocate", timeout=1800, retries=3, backoff=[60, 300, 900])
def allocate_tenant_job(
    *, tenant_id: int, as_of: str, requested_by: int | None = None
) -> dict[str, Any]:
    """The daily run for one tenant and date; a retry resumes from the last finished step."""

    current = get_current_job()
    result = run_allocation(
        platform().db,
        tenant=tenant_id,
        as_of=dt.date.fromisoformat(as_of),
        requested_by=requested_by,
        job_id=current.id if current is not None else None,
        on_progress=_report_progress,
    )
    # Committed: the buckets and placements changed, so do the overview's figures.
    refresh_overview_soon(platform(), tenant_id)
    return {"run_id": result.run_id, "steps_run": result.steps_run}


@job(queue="allocate", timeout=1800)
def reassign_cases_job(*, tenant_id: int) -> dict[str, int]:
    """Reassign the cases of collectors who can no longer work them, in one tenant."""
    return run_assignment(platform().db, tenant=tenant_id)


def allocation_job_id(tenant_id: int, as_of: dt.date | str) -> str:
    """The one id of a tenant's run for a date, shared by the scheduler and the API."""
    day = as_of if isinstance(as_of, str) else as_of.isoformat()
    return f"allocate-{tenant_id}-{day}"
