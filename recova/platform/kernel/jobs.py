"""Background jobs on RQ: declared once with their queue, timeout, retries and failure TTL.

Rules every job follows:

- Arguments are ids, the tenant id and plain values, serialised as JSON (never pickle,
  never ORM objects or personal data).
- A job asked for inside a transaction is written to the transactional outbox
  (``enqueue_after_commit``, see ``recova.platform.kernel.outbox``) in that transaction:
  it never runs against data that was rolled back, and a change that committed always
  gets its job, even when Redis is away at commit time (the relay hands it over later).
  Handing it to RQ never fails the request that committed.
- A job reaches RQ once per outbox row; its id is stable (the caller's, or
  ``outbox-<row id>``), and a pending job of the same id serves a second request.
- A job is idempotent: running it twice has the effect of running it once, so RQ's
  retries and a worker killed mid-job are safe.
- Each job runs inside an app context with its own session, opened by the job itself
  through ``tenant_scope``; one transaction per job.

The runtime never builds an app: the worker hands it one (``set_process_app``) at
start-up, and a job called where neither that nor an app context exists is an error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, has_app_context
from redis import Redis
from rq import Queue, get_current_job
from rq.job import Job
from rq.serializers import JSONSerializer
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from recova.platform.kernel.db import after_commit, pending_after_commit
from recova.platform.kernel.extension import Platform
from recova.platform.kernel.logs import job_log_context
from recova.platform.kernel.outbox import PublishAfterCommit, hand_to_rq, write_outbox_job

QUEUES = ("ingest", "allocate", "work", "billing", "webhooks", "default")
DAY = 24 * 3600

_process_app: Flask | None = None


@dataclass(frozen=True)
class JobSpec:
    """How one job runs: its queue, timeout, retries with back-off and failure TTL."""

    func: Callable[..., Any]
    queue: str = "default"
    timeout: int = 600
    retries: int = 3
    backoff: list[int] = field(default_factory=lambda: [30, 120, 600])
    failure_ttl: int = 14 * DAY
    result_ttl: int = DAY

    @property
    def path(self) -> str:
        return f"{self.func.__module__}.{self.func.__qualname__}"

    def __call__(self, **kwargs: Any) -> Any:
        with _app_context():
            current = get_current_job()
            with job_log_context(
                current.id if current is not None else None, kwargs.get("tenant_id")
            ):
                return self.func(**kwargs)

    @property
    def rq_options(self) -> dict[str, Any]:
        """How RQ runs it, as JSON (what an outbox row carries)."""
        return {
            "timeout": self.timeout,
            "retries": self.retries,
            "backoff": list(self.backoff),
            "failure_ttl": self.failure_ttl,
            "result_ttl": self.result_ttl,
        }

    def enqueue(self, objects: Platform, *, job_id: str | None = None, **kwargs: Any) -> Job:
        """Enqueue now, outside any transaction; inside one, use ``enqueue_after_commit``."""
        _check_json_arguments(kwargs)
        prefix = objects.settings.queue_prefix
        return hand_to_rq(
            job_queue(objects.redis, self.queue, prefix=prefix),
            self.path,
            kwargs=kwargs,
            options=self.rq_options,
            job_id=qualified_job_id(prefix, job_id),
        )

    def enqueue_after_commit(
        self, session: Session, objects: Platform, *, job_id: str | None = None, **kwargs: Any
    ) -> str | None:
        """Write the job to the outbox in ``session``'s transaction; RQ gets it after commit.

        A rollback takes the row with it. After the commit the row is published at once,
        best effort (a Redis failure is logged, never raised); the relay publishes any row
        left. Returns the RQ id the job will have, for the caller to report.
        """
        _check_json_arguments(kwargs)
        prefix = objects.settings.queue_prefix
        row_id, full_id = write_outbox_job(
            session,
            queue=prefix + self.queue,
            func_path=self.path,
            kwargs=kwargs,
            options=self.rq_options,
            job_id=qualified_job_id(prefix, job_id),
            job_id_prefix=qualified_job_id(prefix, "") or "",
        )
        publish_after_commit(session, objects, row_id)
        return full_id


def publish_after_commit(session: Session, objects: Platform, row_id: int) -> None:
    """Publish the outbox row ``row_id`` (a job or an event) once ``session``'s transaction
    commits (best effort); one publish per transaction serves every row it wrote."""
    redis = objects.redis
    for callback in pending_after_commit(session):
        if isinstance(callback, PublishAfterCommit) and callback.redis is redis:
            callback.ids.append(row_id)
            callback.events = callback.events or objects.outbox_events
            return
    bind = session.get_bind()
    publish = PublishAfterCommit(
        bind if isinstance(bind, Engine) else bind.engine, redis, objects.outbox_events
    )
    publish.ids.append(row_id)
    after_commit(session, publish)


def job(
    *,
    queue: str = "default",
    timeout: int = 600,
    retries: int = 3,
    backoff: list[int] | None = None,
    failure_ttl: int = 14 * DAY,
) -> Callable[[Callable[..., Any]], JobSpec]:
    """Declare a job function; RQ calls the returned ``JobSpec`` by its import path."""
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}")

    def decorator(func: Callable[..., Any]) -> JobSpec:
        return JobSpec(
            func=func,
            queue=queue,
            timeout=timeout,
            retries=retries,
            backoff=backoff or [30, 120, 600],
            failure_ttl=failure_ttl,
        )

    return decorator


def qualified_job_id(prefix: str, job_id: str | None) -> str | None:
    """``job_id`` under ``prefix`` (``RECOVA_QUEUE_PREFIX``): job records live outside the
    queues' keys."""
    if job_id is None or not prefix:
        return job_id
    return re.sub(r"[^A-Za-z0-9_-]", "-", prefix) + job_id


def job_queue(redis: Redis, name: str, *, prefix: str = "") -> Queue:
    """The RQ queue ``name`` (after ``RECOVA_QUEUE_PREFIX``), speaking JSON."""
    return Queue(prefix + name, connection=redis, serializer=JSONSerializer)


def set_process_app(app: Flask) -> None:
    """Make ``app`` the one jobs in this process run under (the worker does this)."""
    global _process_app  # noqa: PLW0603 - one app per worker process, set at start-up
    _process_app = app


class _app_context:
    """Enter the process app's context unless one is already active."""

    def __enter__(self) -> None:
        self._ctx = None
        if has_app_context():
            return
        if _process_app is None:
            raise RuntimeError(
                "a job ran outside an app context and no process app was set:"
                " run it under `recova worker` (which calls set_process_app) or inside"
                " app.app_context()"
            )
        self._ctx = _process_app.app_context()
        self._ctx.push()

    def __exit__(self, *exc: object) -> None:
        if self._ctx is not None:
            self._ctx.pop()


def _check_json_arguments(kwargs: dict[str, Any]) -> None:
    for name, value in kwargs.items():
        if not isinstance(value, str | int | float | bool | type(None) | list | dict):
            raise TypeError(f"job argument {name!r} must be JSON-serialisable, got {value!r}")


def dispose_connections_after_fork() -> None:
    """Drop inherited pooled connections in a forked work horse (never share a socket)."""

    def _after_fork() -> None:
        if _process_app is not None:
            _process_app.extensions["recova"].db.engine.dispose(close=False)

    os.register_at_fork(after_in_child=_after_fork)
