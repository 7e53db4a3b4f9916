"""The transactional outbox: jobs to enqueue are rows written with the change they describe.

A request (or a job) that asks for a job writes one ``platform.outbox`` row in its own
transaction, so the job exists exactly when the change does: a rollback leaves no row,
a commit always leaves one. Handing the row to RQ happens afterwards, twice over:

1. **At once, best effort.** After the commit, the rows that transaction wrote are
   published (``PublishAfterCommit``, through ``publish_outbox_rows``). Any failure (Redis
   away, the database blinking) is logged and the rows wait: the request that committed
   never fails because of it.
2. **The relay.** The scheduler's leader calls ``relay_outbox`` every tick: it takes the
   oldest unpublished rows ``FOR UPDATE SKIP LOCKED``, hands each to RQ, marks it published
   and commits the batch. A relay killed mid-batch committed nothing of it: the rows it had
   handed over stay unpublished and are handed over again by the next run, which finds the
   job already on RQ (its id carries the row's id in ``meta``, or a pending job of the same
   id serves it) and only marks the row. Two relays, or a relay and an immediate publish,
   never hold the same row: whoever locks it publishes it, the other skips it.

So every committed row reaches RQ once per row: exactly one RQ job per job id. Published
rows are kept ``RETENTION`` (for inspection) and then purged by the relay.

The table is shared (``platform`` schema), so a tenant-scoped session writes it in the same
transaction as the tenant's data.

**Events.** A row of kind ``event`` is a domain event of one tenant (``func`` holds its
type, ``kwargs`` its data, ``created_at`` its time; its id, ``evt_<row id>``, is the
event's id). The kernel knows nothing of what becomes of it: the app factory hands the
``Platform`` an ``outbox_events`` handler (the webhooks domain's fan-out), which the
publish calls with the batch's event rows on the batch's connection, inside the same
transaction that marks them published, so an event becomes its deliveries exactly once.
What the handler returns runs after that commit (best effort: handing the deliveries to
RQ). A process without a handler leaves event rows to one that has one.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from redis import Redis, RedisError
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Connection,
    DateTime,
    Engine,
    Identity,
    Index,
    Integer,
    String,
    Text,
    bindparam,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, Session, mapped_column

from recova.platform.kernel.db import SHARED_SCHEMA, SharedModel
from recova.platform.kernel.extension import Platform

logger = logging.getLogger(__name__)

RETENTION = dt.timedelta(days=7)
BATCH = 200
KINDS = ("job", "event")
#: The key in an RQ job's ``meta`` naming the outbox row that put it there.
META_KEY = "outbox_id"

#: Turns a batch of event rows into their effects on the publish's connection (inside its
#: transaction); returns work to run after that transaction commits, or None.
EventHandler = Callable[[Connection, Sequence[Any]], Callable[[], None] | None]


class OutboxEntry(SharedModel):
    """One job or one event to hand over once the transaction that wrote it commits."""

    __tablename__ = "outbox"
    __table_args__ = (
        CheckConstraint("kind IN ('job', 'event')", name="kind_known"),
        CheckConstraint(
            "kind <> 'job' OR (queue IS NOT NULL AND func IS NOT NULL AND job_id IS NOT NULL)",
            name="job_complete",
        ),
        # The relay's scan: only the few unpublished rows, in id order.
        Index("ix_outbox_unpublished", "id", postgresql_where=text("published_at IS NULL")),
        # The purge of rows published long ago.
        Index(
            "ix_outbox_published_at",
            "published_at",
            postgresql_where=text("published_at IS NOT NULL"),
        ),
        {"schema": SHARED_SCHEMA},
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    kind: Mapped[str] = mapped_column(String(8), server_default="job")
    #: The tenant the job works for, when it names one (for operators; no foreign key, so a
    #: row never blocks removing a tenant).
    tenant_id: Mapped[int | None] = mapped_column(Integer)
    #: The RQ queue's full name (with ``RECOVA_QUEUE_PREFIX``) and the job's import path.
    queue: Mapped[str | None] = mapped_column(String(128))
    func: Mapped[str | None] = mapped_column(String(255))
    #: The job's keyword arguments (JSON values only).
    kwargs: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    #: How RQ runs it: timeout, retries, backoff, failure_ttl, result_ttl (``JobSpec``'s).
    options: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    #: The RQ job id, qualified by the queue prefix; ``outbox-<id>`` when the caller named none.
    job_id: Mapped[str | None] = mapped_column(String(255))
    published_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)


_PENDING = (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED)


def pending_job(queue: Queue, job_id: str) -> Job | None:
    """The job with this id if it has yet to finish; a finished or failed one may rerun."""
    existing = _fetch(queue.connection, job_id)
    if existing is None:
        return None
    return existing if existing.get_status(refresh=False) in _PENDING else None


def _fetch(redis: Redis, job_id: str) -> Job | None:
    try:
        return Job.fetch(job_id, connection=redis, serializer=JSONSerializer)
    except NoSuchJobError:
        return None


def hand_to_rq(
    queue: Queue,
    func_path: str,
    *,
    kwargs: dict[str, Any],
    options: dict[str, Any],
    job_id: str | None,
    meta: dict[str, Any] | None = None,
) -> Job:
    """Put one job on ``queue``, unless a pending job of the same id is there to serve it."""
    if job_id is not None:
        pending = pending_job(queue, job_id)
        if pending is not None:
            return pending  # asked again before it ran: one run serves both
    retries = options.get("retries", 0)
    return queue.enqueue_call(
        func_path,
        kwargs=kwargs,
        timeout=options.get("timeout"),
        retry=Retry(max=retries, interval=options.get("backoff", 0)) if retries else None,
        failure_ttl=options.get("failure_ttl"),
        result_ttl=options.get("result_ttl"),
        job_id=job_id,
        meta=meta,
    )


def write_outbox_job(
    session: Session,
    *,
    queue: str,
    func_path: str,
    kwargs: dict[str, Any],
    options: dict[str, Any],
    job_id: str | None,
    job_id_prefix: str,
) -> tuple[int, str]:
    """Write one job row in ``session``'s transaction; its row id and RQ job id.

    ``job_id`` is the qualified id the caller chose, or None: then the job's id is
    ``outbox-<row id>`` under ``job_id_prefix``, stable across re-publishes.
    """
    tenant_id = kwargs.get("tenant_id")
    values = {
        "kind": "job",
        "tenant_id": tenant_id if isinstance(tenant_id, int) else None,
        "queue": queue,
        "func": func_path,
        "kwargs": kwargs,
        "options": options,
        # A placeholder (never published: the row is not committed yet) until the id is known.
        "job_id": job_id or "outbox-unnamed",
    }
    row_id: int = session.execute(
        insert(OutboxEntry).values(values).returning(OutboxEntry.id)
    ).scalar_one()
    if job_id is None:
        job_id = f"{job_id_prefix}outbox-{row_id}"
        session.execute(update(OutboxEntry).where(OutboxEntry.id == row_id).values(job_id=job_id))
    return row_id, job_id


def write_outbox_event(
    session: Session, *, tenant_id: int, event_type: str, data: dict[str, Any]
) -> int:
    """Write one event row in ``session``'s transaction; its row id (the event is
    ``evt_<row id>``). ``data`` holds JSON values only."""
    row_id: int = session.execute(
        insert(OutboxEntry)
        .values(kind="event", tenant_id=tenant_id, func=event_type, kwargs=data)
        .returning(OutboxEntry.id)
    ).scalar_one()
    return row_id


class PublishAfterCommit:
    """The after-commit work of one transaction: publish the outbox rows it wrote, at once
    and best effort (``recova.platform.kernel.jobs`` registers it with ``after_commit``)."""

    def __init__(self, engine: Engine, redis: Redis, events: EventHandler | None = None) -> None:
        self.engine = engine
        self.redis = redis
        self.events = events
        self.ids: list[int] = []

    def __call__(self) -> None:
        try:
            publish_outbox_rows(self.engine, self.redis, ids=self.ids, events=self.events)
        except Exception:  # never into the request: the relay publishes what is left
            logger.warning(
                "outbox rows %s not published at commit; the relay will", self.ids, exc_info=True
            )


def relay_outbox(
    objects: Platform, *, limit: int = BATCH, retention: dt.timedelta = RETENTION
) -> int:
    """One relay batch: publish up to ``limit`` of the oldest unpublished rows, and purge
    rows published longer than ``retention`` ago; the number of rows published."""
    published = publish_outbox_rows(
        objects.db.engine, objects.redis, limit=limit, events=objects.outbox_events
    )
    _purge(objects.db.engine, retention)
    return published


def relay_outbox_until_drained(
    objects: Platform, *, limit: int = BATCH, budget: float = 5.0
) -> int:
    """Relay batch after batch until none is left or ``budget`` seconds have passed."""
    started = time.monotonic()
    total = 0
    while True:
        published = relay_outbox(objects, limit=limit)
        total += published
        if published < limit or time.monotonic() - started >= budget:
            return total


def publish_outbox_rows(
    engine: Engine,
    redis: Redis,
    *,
    ids: Sequence[int] | None = None,
    limit: int = BATCH,
    events: EventHandler | None = None,
) -> int:
    """Hand unpublished rows (all of them, oldest first, or only ``ids``) to RQ, and event
    rows to ``events``, in one transaction holding their row locks; the number marked
    published.

    A Redis failure ends the batch: the rows handed over so far are marked, the failing
    one records the error, the rest wait for the next relay. Without ``events`` event rows
    are left alone; a failing handler records its error on the batch's event rows.
    """
    if ids is not None and not ids:
        return 0
    kinds = ["job", "event"] if events is not None else ["job"]
    query = (
        select(
            OutboxEntry.id,
            OutboxEntry.kind,
            OutboxEntry.tenant_id,
            OutboxEntry.created_at,
            OutboxEntry.queue,
            OutboxEntry.func,
            OutboxEntry.kwargs,
            OutboxEntry.options,
            OutboxEntry.job_id,
        )
        .where(OutboxEntry.published_at.is_(None), OutboxEntry.kind.in_(kinds))
        .order_by(OutboxEntry.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    if ids is not None:
        query = query.where(OutboxEntry.id.in_(list(ids)))
    published: list[int] = []
    after: Callable[[], None] | None = None
    with engine.begin() as connection:
        rows = connection.execute(query).all()
        event_rows = [row for row in rows if row.kind == "event"]
        if event_rows and events is not None:
            after = _hand_events(connection, events, event_rows, published)
        for row in rows:
            if row.kind == "event":
                continue
            try:
                _publish_one(redis, row)
            except RedisError as exc:
                _record_failure(connection, row.id, exc)
                logger.warning(
                    "outbox row %s not published: %s; later rows wait", row.id, type(exc).__name__
                )
                break
            except Exception as exc:  # this row is broken; the others still go
                _record_failure(connection, row.id, exc)
                logger.exception("outbox row %s could not be published", row.id)
                continue
            published.append(row.id)
        if published:
            connection.execute(
                update(OutboxEntry)
                .where(OutboxEntry.id.in_(bindparam("ids", expanding=True)))
                .values(
                    published_at=func.now(), attempts=OutboxEntry.attempts + 1, last_error=None
                ),
                {"ids": published},
            )
    if after is not None:
        try:
            after()
        except Exception:  # the events are committed; what follows them has a sweep
            logger.warning("work after publishing outbox events failed", exc_info=True)
    return len(published)


def _hand_events(
    connection: Connection, events: EventHandler, rows: Sequence[Any], published: list[int]
) -> Callable[[], None] | None:
    """Give the event rows to the handler in a savepoint; on success they count as
    published, on failure each records the error and waits for the next relay."""
    try:
        with connection.begin_nested():
            after = events(connection, rows)
    except Exception as exc:
        logger.exception("outbox events %s could not be handed over", [row.id for row in rows])
        for row in rows:
            _record_failure(connection, row.id, exc)
        return None
    published.extend(row.id for row in rows)
    return after


def _publish_one(redis: Redis, row: Any) -> None:
    existing = _fetch(redis, row.job_id)
    if existing is not None and existing.meta.get(META_KEY) == row.id:
        return  # handed over by a relay that died before marking the row
    queue = Queue(row.queue, connection=redis, serializer=JSONSerializer)
    hand_to_rq(
        queue,
        row.func,
        kwargs=row.kwargs,
        options=row.options,
        job_id=row.job_id,
        meta={META_KEY: row.id},
    )


def _record_failure(connection: Any, row_id: int, exc: Exception) -> None:
    connection.execute(
        update(OutboxEntry)
        .where(OutboxEntry.id == row_id)
        .values(attempts=OutboxEntry.attempts + 1, last_error=f"{type(exc).__name__}: {exc}"[:2000])
    )


def _purge(engine: Engine, retention: dt.timedelta) -> None:
    cutoff = dt.datetime.now(dt.UTC) - retention
    old = (
        select(OutboxEntry.id)
        .where(OutboxEntry.published_at < cutoff)
        .order_by(OutboxEntry.published_at)
        .limit(1000)
        .scalar_subquery()
    )
    with engine.begin() as connection:
        connection.execute(delete(OutboxEntry).where(OutboxEntry.id.in_(old)))
