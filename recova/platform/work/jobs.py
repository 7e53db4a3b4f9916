"""Jobs of case work: judging after a payments run, the daily promise and plan
evaluation, and the daily settlement expiry. Each takes the tenant id and plain values,
runs in one transaction, and is idempotent (see ``evaluation``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from recova.platform.kernel.jobs import job
from recova.platform.work.evaluation import (
    evaluate_accounts,
    evaluate_due_work,
    touched_by_payment_run,
)
from recova.platform.work.settlements import expire_settlements
from recova.tenants.models import tenant_today
from recova.tenants.scope import tenant_scope

PAYMENTS_ACTOR = "job:payment-evaluation"
DAILY_ACTOR = "job:promise-evaluation"
EXPIRY_ACTOR = "job:settlement-expiry"


@job(queue="work", timeout=1800, retries=3, backoff=[30, 120, 600])
def evaluate_payments_job(*, tenant_id: int, run_id: int) -> dict[str, Any]:
    """Judge promises, plans and settlements on the accounts a payments run touched."""
    with tenant_scope(tenant_id) as session:
        tenant = session.info["tenant"]
        return evaluate_accounts(
            session,
            accounts=touched_by_payment_run(run_id),
            today=tenant_today(tenant.timezone),
            timezone=tenant.timezone,
            actor=PAYMENTS_ACTOR,
        )


@job(queue="work", timeout=1800, retries=3, backoff=[60, 300, 900])
def evaluate_promises_job(*, tenant_id: int, as_of: str) -> dict[str, Any]:
    """The daily judgement of promises past their grace period and of active plans."""
    with tenant_scope(tenant_id) as session:
        return evaluate_due_work(
            session,
            today=dt.date.fromisoformat(as_of),
            timezone=session.info["tenant"].timezone,
            actor=DAILY_ACTOR,
        )


@job(queue="work", timeout=1800, retries=3, backoff=[60, 300, 900])
def expire_settlements_job(*, tenant_id: int, as_of: str) -> dict[str, int]:
    """The daily expiry of settlement offers past their date (paid ones settle)."""
    with tenant_scope(tenant_id) as session:
        return expire_settlements(
            session,
            today=dt.date.fromisoformat(as_of),
            timezone=session.info["tenant"].timezone,
            actor=EXPIRY_ACTOR,
        )


def payments_job_id(tenant_id: int, run_id: int) -> str:
    """The one id of the evaluation after a payments run."""
    return f"evaluate-payments-{tenant_id}-{run_id}"


def promises_job_id(tenant_id: int, as_of: dt.date | str) -> str:
    day = as_of if isinstance(as_of, str) else as_of.isoformat()
    return f"evaluate-promises-{tenant_id}-{day}"


def expiry_job_id(tenant_id: int, as_of: dt.date | str) -> str:
    day = as_of if isinstance(as_of, str) else as_of.isoformat()
    return f"expire-settlements-{tenant_id}-{day}"
