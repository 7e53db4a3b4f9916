"""The daily retention erasure, per tenant."""

from __future__ import annotations

from recova.platform.kernel.jobs import job
from recova.platform.privacy.retention import erase_expired
from recova.tenants.scope import tenant_scope


@job(queue="default", timeout=1800)
def retention_erasure_job(*, tenant_id: int) -> dict[str, int]:
    """Erase the personal data of debtors past retention (idempotent: erased ones stay so)."""
    with tenant_scope(tenant_id) as session:
        return erase_expired(session, actor="job:retention")
