"""The ingest job: one ingestion run, resumable, on the ``ingest`` queue."""

from __future__ import annotations

from recova.connectors.runner import execute_ingestion
from recova.platform.kernel.extension import platform
from recova.platform.kernel.jobs import job
from recova.platform.reports.jobs import refresh_overview_soon


@job(queue="ingest", timeout=4 * 3600, retries=3, backoff=[10, 60, 300])
def ingest_run_job(*, tenant_id: int, run_id: int) -> str:
    """Run or resume one ingestion run (idempotent: a finished run is left alone)."""
    outcome = execute_ingestion(platform(), tenant_id=tenant_id, run_id=run_id)
    if outcome == "completed":  # committed: the overview's figures follow the new book
        refresh_overview_soon(platform(), tenant_id)
    return outcome
