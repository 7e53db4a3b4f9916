"""Jobs that keep cases current."""

from __future__ import annotations

import datetime as dt

from recova.platform.cases.services import refresh_days_past_due
from recova.platform.kernel.jobs import job
from recova.tenants.scope import tenant_scope


@job(queue="allocate", timeout=1800)
def refresh_days_past_due_job(*, tenant_id: int, as_of: str) -> int:
    """Recompute days past due for one tenant's accounts as of a date (idempotent)."""
    with tenant_scope(tenant_id) as session:
        return refresh_days_past_due(session, as_of=dt.date.fromisoformat(as_of))
