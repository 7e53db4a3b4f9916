"""What the background jobs are doing, for the platform operator's jobs page.

Per queue (``QUEUES`` under ``RECOVA_QUEUE_PREFIX``): how many jobs are queued, running,
failed and scheduled; the running jobs; the failed jobs with their error (the exception's
last line and the whole traceback, from RQ's latest result of the job). A failed job is
retried (``FailedJobRegistry.requeue``: back on its queue, as it was enqueued) or deleted.
And the transactional outbox's rows not yet handed to RQ.

Every read is bounded (``limit`` jobs per registry): a queue with a million failed jobs
still gives a page of them.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from redis import Redis
from rq import Queue
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq.registry import BaseRegistry, FailedJobRegistry
from rq.results import Result
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from recova.platform.kernel.jobs import QUEUES, job_queue
from recova.platform.kernel.outbox import OutboxEntry

#: How many jobs of one registry a page shows at most.
LIMIT = 50


@dataclass(frozen=True)
class QueueCounts:
    """One queue's jobs by state."""

    queue: str  # the name without the prefix: ``ingest``
    queued: int
    started: int
    failed: int
    scheduled: int


@dataclass(frozen=True)
class JobRow:
    """One job as the page shows it."""

    id: str
    queue: str
    func: str
    arguments: str
    enqueued_at: dt.datetime | None
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
    worker: str | None
    error: str | None  # the exception's last line
    traceback: str | None


@dataclass(frozen=True)
class OutboxBacklog:
    """The outbox rows not yet handed to RQ, and the oldest one's age."""

    unpublished: int
    oldest: dt.datetime | None
    with_errors: int


def _queues(redis: Redis, prefix: str) -> list[tuple[str, Queue]]:
    return [(name, job_queue(redis, name, prefix=prefix)) for name in QUEUES]


def queue_counts(redis: Redis, *, prefix: str) -> list[QueueCounts]:
    """Each queue's queued, running, failed and scheduled jobs."""
    return [
        QueueCounts(
            queue=name,
            queued=queue.count,
            started=queue.started_job_registry.count,
            failed=queue.failed_job_registry.count,
            scheduled=queue.scheduled_job_registry.count,
        )
        for name, queue in _queues(redis, prefix)
    ]


def _utc(moment: dt.datetime | None) -> dt.datetime | None:
    """RQ's naive UTC times as aware ones."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=dt.UTC)


def _arguments(job: Job) -> str:
    try:
        return json.dumps(job.kwargs, ensure_ascii=False, sort_keys=True, default=str)
    except Exception:
        return ""


def _row(job: Job, queue: str, *, with_error: bool = False) -> JobRow:
    error = trace = None
    if with_error:
        result = job.latest_result()
        if result is not None and result.type == Result.Type.FAILED and result.exc_string:
            trace = result.exc_string.strip()
            error = trace.splitlines()[-1]
    return JobRow(
        id=job.id,
        queue=queue,
        func=job.func_name or "",
        arguments=_arguments(job),
        enqueued_at=_utc(job.enqueued_at),
        started_at=_utc(job.started_at),
        ended_at=_utc(job.ended_at),
        worker=job.worker_name,
        error=error,
        traceback=trace,
    )


def _jobs(registry: BaseRegistry, redis: Redis, limit: int) -> list[Job]:
    # A started job is listed once per execution: one row per job.
    ids = list(dict.fromkeys(registry.get_job_ids(0, limit - 1, desc=True)))
    return [
        job
        for job in Job.fetch_many(ids, connection=redis, serializer=registry.serializer)
        if job is not None
    ]


def running_jobs(redis: Redis, *, prefix: str, limit: int = LIMIT) -> list[JobRow]:
    """The jobs workers are running now, up to ``limit`` per queue, latest start first."""
    rows = [
        _row(job, name)
        for name, queue in _queues(redis, prefix)
        for job in _jobs(queue.started_job_registry, redis, limit)
    ]
    return sorted(rows, key=_latest(lambda row: row.started_at), reverse=True)


def failed_jobs(redis: Redis, *, prefix: str, limit: int = LIMIT) -> list[JobRow]:
    """The failed jobs with their errors, up to ``limit`` per queue, latest failure first."""
    rows = [
        _row(job, name, with_error=True)
        for name, queue in _queues(redis, prefix)
        for job in _jobs(queue.failed_job_registry, redis, limit)
    ]
    return sorted(rows, key=_latest(lambda row: row.ended_at), reverse=True)


def _latest(moment: Any) -> Any:
    epoch = dt.datetime.min.replace(tzinfo=dt.UTC)
    return lambda row: moment(row) or epoch


def _failed_registry(redis: Redis, *, prefix: str, queue: str) -> FailedJobRegistry | None:
    if queue not in QUEUES:
        return None
    return job_queue(redis, queue, prefix=prefix).failed_job_registry


def retry_failed_job(redis: Redis, *, prefix: str, queue: str, job_id: str) -> bool:
    """Put a failed job of ``queue`` back on its queue; False if it is no failed job there."""
    registry = _failed_registry(redis, prefix=prefix, queue=queue)
    if registry is None or job_id not in registry:
        return False
    try:
        registry.requeue(job_id)
    except (InvalidJobOperation, NoSuchJobError):  # retried or expired meanwhile
        return False
    return True


def delete_failed_job(redis: Redis, *, prefix: str, queue: str, job_id: str) -> bool:
    """Delete a failed job of ``queue`` and its record; False if it is no failed job there."""
    registry = _failed_registry(redis, prefix=prefix, queue=queue)
    if registry is None or job_id not in registry:
        return False
    try:
        job = Job.fetch(job_id, connection=redis, serializer=registry.serializer)
    except NoSuchJobError:
        registry.remove(job_id)
        return True
    registry.remove(job, delete_job=True)
    return True


def outbox_backlog(session: Session) -> OutboxBacklog:
    """The outbox rows still waiting for RQ (the partial index on unpublished rows)."""
    count, oldest, with_errors = session.execute(
        select(
            func.count(),
            func.min(OutboxEntry.created_at),
            func.count().filter(OutboxEntry.last_error.is_not(None)),
        ).where(OutboxEntry.published_at.is_(None))
    ).one()
    return OutboxBacklog(unpublished=count, oldest=oldest, with_errors=with_errors)
