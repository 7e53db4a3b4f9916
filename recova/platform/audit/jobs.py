"""The daily audit head export, per tenant."""

from __future__ import annotations

import datetime as dt
from typing import Any

from recova.platform.audit.services import export_daily_head
from recova.platform.kernel.jobs import job
from recova.tenants.scope import tenant_scope


@job(queue="default", timeout=300)
def export_audit_head_job(*, tenant_id: int, day: str) -> dict[str, Any]:
    """Record the day's chain head for the tenant to keep (idempotent per day)."""
    with tenant_scope(tenant_id) as session:
        exported = export_daily_head(
            session, day=dt.date.fromisoformat(day), actor="job:audit-head-export"
        )
        return {"day": day, "head_seq": exported.head_seq, "head_hash": exported.head_hash.hex()}
