"""The month-close job: one tenant, one month, on the ``billing`` queue."""

from __future__ import annotations

import datetime as dt
from typing import Any

from recova.billing.invoices import close_month, month_start
from recova.platform.kernel.extension import platform
from recova.platform.kernel.jobs import job


# A close is one transaction: a retry after a worker died redoes it from the start.
@job(queue="billing", timeout=1800, retries=3, backoff=[60, 300, 900])
def close_month_job(*, tenant_id: int, month: str) -> dict[str, Any]:
    """Write the month's ledger lines and build its invoices and statements."""
    result = close_month(platform().db, tenant=tenant_id, month=month)
    return {
        "month": result.month.strftime("%Y-%m"),
        "counts": result.counts,
        "invoices": [invoice["number"] for invoice in result.invoices],
    }


def close_job_id(tenant_id: int, month: str | dt.date) -> str:
    """The one id of a tenant's close of a month, shared by the scheduler and the API."""
    return f"billing-close-{tenant_id}-{month_start(month):%Y-%m}"


def previous_month(day: dt.date) -> dt.date:
    """The first day of the month before ``day``'s."""
    return (day.replace(day=1) - dt.timedelta(days=1)).replace(day=1)
