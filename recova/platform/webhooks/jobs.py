"""Jobs of webhooks on the ``webhooks`` queue: one delivery attempt, and the sweep.

The attempt job takes the tenant id and the delivery id; its RQ id names the attempt
(``webhook-<tenant>-<delivery>-<n>``), so asking twice for the same attempt queues one
job, and RQ never retries it by itself (``retries=0``): the delivery's own schedule and the
sweep decide what is sent again (``recova.platform.webhooks.delivery``). The outbox relay
reaches this module through ``outbox_events``, the handler the app factory hands the
platform: the fan-out, then the first attempt of every delivery it wrote.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any

from redis import RedisError
from rq import Retry
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from recova.platform.kernel.db import after_commit, pending_after_commit
from recova.platform.kernel.extension import Platform, platform
from recova.platform.kernel.jobs import job, job_queue, qualified_job_id
from recova.platform.kernel.outbox import hand_to_rq, publish_outbox_rows
from recova.platform.webhooks.delivery import attempt_delivery, due_deliveries, fan_out_events

logger = logging.getLogger(__name__)


@job(queue="webhooks", timeout=300, retries=0, failure_ttl=3 * 24 * 3600)
def deliver_webhook_job(*, tenant_id: int, delivery_id: int) -> dict[str, Any]:
    """Make the delivery's due attempt, and schedule the next one if it failed."""
    objects = platform()
    result = attempt_delivery(objects, tenant_id=tenant_id, delivery_id=delivery_id)
    if result is None:
        return {"delivery_id": delivery_id, "status": "not due"}
    if result.retry_in is not None and result.next_number is not None:
        schedule_attempt(
            objects,
            tenant_id=tenant_id,
            delivery_id=delivery_id,
            number=result.next_number,
            delay=result.retry_in,
        )
    return {"delivery_id": delivery_id, "status": result.status, "retry_in": result.retry_in}


@job(queue="webhooks", timeout=300, retries=2, backoff=[10, 30])
def sweep_webhook_deliveries_job(*, tenant_id: int) -> dict[str, int]:
    """Hand over every due delivery of the tenant that no job is sending (see the sweep)."""
    objects = platform()
    due = due_deliveries(objects, tenant_id=tenant_id)
    for delivery_id, number in due:
        schedule_attempt(
            objects,
            tenant_id=tenant_id,
            delivery_id=delivery_id,
            number=number,
            delay=0,
            origin="sweep",
        )
    return {"enqueued": len(due)}


@job(queue="webhooks", timeout=300, retries=2, backoff=[5, 30])
def relay_events_job(*, ids: list[int]) -> dict[str, int]:
    """Fan the events a transaction wrote out into deliveries and queue their first
    attempts (the relay's work for those rows, done at once instead of at its next tick)."""
    objects = platform()
    published = publish_outbox_rows(
        objects.db.engine, objects.redis, ids=ids, events=objects.outbox_events
    )
    return {"published": published}


class RelayEventsAfterCommit:
    """After a commit, one RQ job for the events the transaction wrote.

    The request that wrote them pays one enqueue (about a millisecond), not the fan-out
    transaction and its Redis round trips; a Redis failure is logged and the relay's next
    tick hands the rows over instead.
    """

    def __init__(self, objects: Platform) -> None:
        self.objects = objects
        self.ids: list[int] = []

    def __call__(self) -> None:
        prefix = self.objects.settings.queue_prefix
        try:
            queue = job_queue(self.objects.redis, relay_events_job.queue, prefix=prefix)
            options = relay_events_job.rq_options
            # One enqueue, no look-up first: the id (the transaction's first event row) is
            # new, and a job relaying rows already handed over publishes nothing twice.
            queue.enqueue_call(
                relay_events_job.path,
                kwargs={"ids": self.ids},
                timeout=options["timeout"],
                retry=Retry(max=options["retries"], interval=options["backoff"]),
                failure_ttl=options["failure_ttl"],
                result_ttl=options["result_ttl"],
                job_id=qualified_job_id(prefix, f"webhook-relay-{self.ids[0]}"),
            )
        except RedisError as error:
            logger.warning(
                "events %s not handed over at commit (%s); the relay will",
                self.ids,
                type(error).__name__,
            )


def relay_events_after_commit(session: Session, objects: Platform, row_id: int) -> None:
    """Hand event ``row_id`` over once the session's transaction commits (one job for all
    the events of one transaction)."""
    for callback in pending_after_commit(session):
        if isinstance(callback, RelayEventsAfterCommit) and callback.objects is objects:
            callback.ids.append(row_id)
            return
    relay = RelayEventsAfterCommit(objects)
    relay.ids.append(row_id)
    after_commit(session, relay)


def attempt_job_id(tenant_id: int, delivery_id: int, number: int, origin: str = "") -> str:
    """The RQ id of one attempt (the sweep's own ids never stand in for a scheduled one)."""
    suffix = f"-{origin}" if origin else ""
    return f"webhook-{tenant_id}-{delivery_id}-{number}{suffix}"


def sweep_job_id(tenant_id: int, slot: dt.datetime) -> str:
    return f"webhook-sweep-{tenant_id}-{int(slot.timestamp())}"


def schedule_attempt(
    objects: Platform,
    *,
    tenant_id: int,
    delivery_id: int,
    number: int,
    delay: float,
    origin: str = "",
) -> None:
    """Queue attempt ``number`` now, or after ``delay`` seconds (an RQ scheduled job)."""
    prefix = objects.settings.queue_prefix
    queue = job_queue(objects.redis, deliver_webhook_job.queue, prefix=prefix)
    job_id = qualified_job_id(prefix, attempt_job_id(tenant_id, delivery_id, number, origin))
    kwargs = {"tenant_id": tenant_id, "delivery_id": delivery_id}
    options = deliver_webhook_job.rq_options
    if delay <= 0:
        hand_to_rq(queue, deliver_webhook_job.path, kwargs=kwargs, options=options, job_id=job_id)
        return
    queue.enqueue_in(
        dt.timedelta(seconds=delay),
        deliver_webhook_job.path,
        kwargs=kwargs,
        job_id=job_id,
        job_timeout=options["timeout"],
        failure_ttl=options["failure_ttl"],
        result_ttl=options["result_ttl"],
    )


def enqueue_first_attempts(objects: Platform, created: Sequence[tuple[int, int]]) -> None:
    """Queue the first attempt of new deliveries; a Redis failure leaves them to the sweep."""
    try:
        for tenant_id, delivery_id in created:
            schedule_attempt(
                objects, tenant_id=tenant_id, delivery_id=delivery_id, number=1, delay=0
            )
    except RedisError as error:
        logger.warning(
            "webhook deliveries not queued (%s); the sweep sends them", type(error).__name__
        )


def relay_events(
    objects: Platform, connection: Connection, rows: Sequence[Any]
) -> Callable[[], None] | None:
    """The outbox's event handler: fan the rows out into deliveries on the relay's
    connection; after its commit, queue their first attempts."""
    created = fan_out_events(connection, rows)
    if not created:
        return None
    return functools.partial(enqueue_first_attempts, objects, created)


def outbox_event_handler(
    objects: Platform,
) -> Callable[[Connection, Sequence[Any]], Callable[[], None] | None]:
    """``relay_events`` bound to one app's platform objects (what the factory installs)."""
    return functools.partial(relay_events, objects)
