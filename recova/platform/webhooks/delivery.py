"""Delivering events to endpoints: the fan-out, one attempt, its outcome, the schedule.

**Fan-out.** The outbox relay hands each batch of event rows to ``fan_out_events`` on its
own connection, inside the transaction that marks them published: per tenant, one
``INSERT ... SELECT`` joins the rows with the tenant's enabled endpoints subscribed to
their type and writes one delivery per (endpoint, event), ``ON CONFLICT DO NOTHING`` on
that pair. A relay killed after the insert rolled both back; one that committed marked the
rows, so each event becomes its deliveries exactly once. The body (``{"type",
"timestamp", "data"}``) is written then and never changes.

**One attempt** (``attempt_delivery``, the body of the ``webhooks`` queue's job):

1. *Claim*, in a short transaction: the delivery, if still pending, due and not leased
   (``FOR UPDATE SKIP LOCKED``), gets a lease of ``2 x timeout + 5`` seconds, its attempt
   count goes up and an attempt row is written. Committed before anything is sent.
2. *Send*, outside any transaction: the destination is checked and pinned again
   (``recova.platform.kernel.outbound``, the HTTP connector's guard: DNS rebinding never
   reaches a private address), the body is POSTed signed with the endpoint's secret (and,
   during a rotation's grace period, the previous one), ``timeout`` seconds at most per
   phase, no redirect followed.
3. *Record*, in a second transaction: 2xx is delivered (and clears the endpoint's failing
   mark); 410 disables the endpoint and cancels its pending deliveries; anything else
   (another status, a timeout, a refused connection) is retried after the schedule's next
   delay, or the ``Retry-After`` a 429 or 503 asked for, until the schedule runs out:
   then the delivery failed and the endpoint is marked failing (the API shows it).

**The schedule** is the Standard Webhooks one: at once, then 5 s, 5 min, 30 min, 2 h, 5 h,
10 h, 14 h, 20 h and 24 h after each failure (up to 10 % jitter added, so receivers
recovering from an outage are not hit by every retry at the same instant).

**Who runs the retries: RQ scheduled jobs, with a sweep behind them.** A failed attempt
schedules the next one with ``Queue.enqueue_in`` (the worker's scheduler moves it onto the
queue when due): precise to the second, and no table scan per tick across every tenant.
The database stays the record of what is owed, though: the ``webhook-sweep`` periodic job
(every minute, per tenant) enqueues every pending delivery that is due and not leased.
That covers a Redis that lost its jobs, a fan-out whose enqueue failed, and a worker
SIGKILLed mid-delivery: its delivery is still pending with a lease that lapses, and the
sweep sends it again, with the same ``webhook-id``.

**At-least-once.** A receiver may therefore see one event twice (the worker died after
the receiver answered but before the answer was recorded, or the lease ran out on a
receiver slower than it): always under the same ``webhook-id``, which receivers use to
drop duplicates. The delivery log keeps one row per (endpoint, event).
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import certifi
import httpx
from sqlalchemy import Connection, func, or_, select, text, update

from recova.platform.kernel.db import quote_identifier, utcnow
from recova.platform.kernel.extension import Platform
from recova.platform.kernel.outbound import DestinationRefused, pin_destination, retry_after_seconds
from recova.platform.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from recova.platform.webhooks.signing import open_secret, signed_headers
from recova.tenants.models import Tenant
from recova.tenants.scope import tenant_scope

logger = logging.getLogger(__name__)

#: Seconds before each attempt, counted from the failure of the one before (the first is
#: immediate): the Standard Webhooks schedule.
SCHEDULE = (0, 5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 14 * 3600, 20 * 3600, 24 * 3600)
#: The longest ``Retry-After`` honoured: a day, the schedule's longest step.
MAX_RETRY_AFTER = 24 * 3600
USER_AGENT = "Recova-Webhooks/1"
#: One TLS context for every attempt, built when the module is imported: loading the CA
#: bundle costs tens of milliseconds, and a worker's forked job would otherwise pay it for
#: each delivery (``benchmarks/outbox.py``).
TLS = ssl.create_default_context(cafile=certifi.where())
#: How early a scheduled attempt may start (clocks differ a little).
EARLY = dt.timedelta(seconds=2)
#: Deliveries the sweep hands over per tenant and run.
SWEEP_BATCH = 500


def _not_leased() -> Any:
    """SQL: no attempt of the delivery is on the wire (no lease, or a lapsed one)."""
    return or_(WebhookDelivery.lease_until.is_(None), WebhookDelivery.lease_until < func.now())


def lease_seconds(timeout: int) -> int:
    """How long a claimed attempt is left alone: two timeouts and a margin."""
    return 2 * timeout + 5


def retry_delay(attempts_made: int) -> float:
    """The wait before attempt ``attempts_made + 1``, with up to 10 % jitter."""
    base = SCHEDULE[min(attempts_made, len(SCHEDULE) - 1)]
    return base * (1 + secrets.randbelow(101) / 1000)


# --- fan-out --------------------------------------------------------------------------------


def fan_out_events(connection: Connection, rows: Sequence[Any]) -> list[tuple[int, int]]:
    """Write the deliveries of outbox event rows on ``connection``; the (tenant id,
    delivery id) pairs it created (none twice, whatever ran before)."""
    by_tenant: dict[int, list[int]] = {}
    for row in rows:
        if row.tenant_id is not None:
            by_tenant.setdefault(row.tenant_id, []).append(row.id)
    if not by_tenant:
        return []
    schemas = dict(
        connection.execute(
            select(Tenant.id, Tenant.schema_name).where(Tenant.id.in_(list(by_tenant)))
        ).all()
    )
    created: list[tuple[int, int]] = []
    for tenant_id, ids in sorted(by_tenant.items()):
        schema = schemas.get(tenant_id)
        if schema is None:
            continue  # the tenant is gone, and its endpoints with it
        s = quote_identifier(schema)
        found = connection.execute(
            text(
                f"""INSERT INTO {s}.webhook_deliveries
                        (endpoint_id, event_id, event_type, body, attempts_left, next_attempt_at)
                    SELECT e.id, 'evt_' || o.id, o.func,
                           jsonb_build_object(
                               'type', o.func,
                               'timestamp', to_char(o.created_at AT TIME ZONE 'UTC',
                                                    'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                               'data', o.kwargs)::text,
                           :attempts, now()
                    FROM platform.outbox o
                    JOIN {s}.webhook_endpoints e
                      ON e.enabled AND o.func = ANY(e.event_types)
                    WHERE o.id = ANY(:ids)
                    ORDER BY o.id, e.id
                    ON CONFLICT (endpoint_id, event_id) DO NOTHING
                    RETURNING id"""  # noqa: S608 - a validated schema name, quoted
            ),
            {"ids": ids, "attempts": len(SCHEDULE)},
        )
        created += [(tenant_id, int(delivery_id)) for delivery_id in found.scalars()]
    return created


# --- one attempt ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    """A delivery claimed for one attempt: what to send and where."""

    delivery_id: int
    attempt_id: int
    number: int
    url: str
    event_id: str
    body: str
    secrets: tuple[str, ...]


@dataclass(frozen=True)
class Outcome:
    """What one attempt came back with."""

    status: int | None
    latency_ms: int
    error: str | None = None
    retry_after: float | None = None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True)
class AttemptResult:
    """What became of an attempt: the delivery's status and, if it is retried, when."""

    status: str
    retry_in: float | None = None
    next_number: int | None = None


def attempt_delivery(
    objects: Platform, *, tenant_id: int, delivery_id: int, transport: Any = None
) -> AttemptResult | None:
    """Claim, send and record one attempt; None if the delivery was not there to claim
    (delivered, leased by another worker, or not due yet)."""
    claimed = claim_delivery(objects, tenant_id=tenant_id, delivery_id=delivery_id)
    if claimed is None:
        return None
    if isinstance(claimed, AttemptResult):
        return claimed
    outcome = send_delivery(
        claimed,
        timeout=objects.settings.webhook_timeout,
        allow_private=objects.settings.http_sources_allow_private,
        transport=transport,
    )
    return record_outcome(objects, tenant_id=tenant_id, claimed=claimed, outcome=outcome)


def claim_delivery(
    objects: Platform, *, tenant_id: int, delivery_id: int
) -> Claimed | AttemptResult | None:
    """Take the delivery for one attempt (committed before anything is sent)."""
    now = utcnow()
    with tenant_scope(tenant_id, db=objects.db) as session:
        delivery = session.scalar(
            select(WebhookDelivery)
            .where(
                WebhookDelivery.id == delivery_id,
                WebhookDelivery.status == "pending",
                # A little early is on time: the scheduler's clock and the database's differ.
                WebhookDelivery.next_attempt_at <= func.now() + EARLY,
                _not_leased(),
            )
            .with_for_update(skip_locked=True)
        )
        if delivery is None:
            return None
        endpoint = session.get(WebhookEndpoint, delivery.endpoint_id)
        assert endpoint is not None  # a delivery goes with its endpoint
        if not endpoint.enabled:
            delivery.status = "cancelled"
            delivery.next_attempt_at = None
            delivery.last_error = "the endpoint is disabled"
            return AttemptResult("cancelled")
        delivery.attempts += 1
        delivery.attempts_left -= 1
        delivery.lease_until = now + dt.timedelta(
            seconds=lease_seconds(objects.settings.webhook_timeout)
        )
        delivery.last_attempt_at = now
        attempt = WebhookAttempt(
            delivery_id=delivery.id,
            number=delivery.attempts,
            manual=delivery.manual_next,
            started_at=now,
        )
        delivery.manual_next = False
        session.add(attempt)
        session.flush()  # the attempt's id, for recording its outcome
        in_use = [open_secret(objects.cipher, endpoint.secret_ciphertext)]
        expires = endpoint.previous_secret_expires_at
        previous = endpoint.previous_secret_ciphertext
        if previous is not None and expires is not None and expires > now:
            in_use.append(open_secret(objects.cipher, previous))
        return Claimed(
            delivery_id=delivery.id,
            attempt_id=attempt.id,
            number=delivery.attempts,
            url=endpoint.url,
            event_id=delivery.event_id,
            body=delivery.body,
            secrets=tuple(in_use),
        )


def send_delivery(
    claimed: Claimed, *, timeout: float, allow_private: bool, transport: Any = None
) -> Outcome:
    """POST one signed attempt; never raises for what the receiver or network did."""
    try:
        pinned = pin_destination(httpx.URL(claimed.url), allow_private=allow_private)
    except (DestinationRefused, httpx.InvalidURL) as refused:
        return Outcome(None, 0, f"destination refused: {refused}")
    headers = {
        **signed_headers(
            claimed.secrets, msg_id=claimed.event_id, timestamp=utcnow(), body=claimed.body
        ),
        **pinned.headers(),
        "user-agent": USER_AGENT,
    }
    started = time.perf_counter()
    try:
        with (
            httpx.Client(
                timeout=timeout,
                follow_redirects=False,
                # Environment proxies would resolve the host themselves and defeat the guard.
                trust_env=False,
                verify=TLS,
                transport=transport,
            ) as client,
            client.stream(
                "POST",
                pinned.url,
                content=claimed.body.encode(),
                headers=headers,
                extensions=pinned.extensions,
            ) as response,
        ):
            # Only the status counts; the receiver's body is never read.
            status = response.status_code
            retry_after = retry_after_seconds(response) if status in (429, 503) else None
    except httpx.TimeoutException:
        return Outcome(None, _ms_since(started), f"no answer within {timeout:g} s")
    except httpx.HTTPError as error:
        return Outcome(None, _ms_since(started), f"{type(error).__name__}: {error}"[:500])
    latency = _ms_since(started)
    if 300 <= status < 400:
        return Outcome(status, latency, f"answered {status}: redirects are not followed")
    if not 200 <= status < 300:
        return Outcome(status, latency, f"answered {status}", retry_after)
    return Outcome(status, latency)


def _ms_since(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


def record_outcome(
    objects: Platform, *, tenant_id: int, claimed: Claimed, outcome: Outcome
) -> AttemptResult:
    """Write what the attempt came back with, and when the next one is due, if any."""
    now = utcnow()
    with tenant_scope(tenant_id, db=objects.db) as session:
        delivery = session.get(WebhookDelivery, claimed.delivery_id, with_for_update=True)
        if delivery is None:
            return AttemptResult("deleted")  # its endpoint was deleted meanwhile
        attempt = session.get(WebhookAttempt, claimed.attempt_id)
        if attempt is not None:
            attempt.finished_at = now
            attempt.response_status = outcome.status
            attempt.latency_ms = outcome.latency_ms
            attempt.error = outcome.error
        delivery.response_status = outcome.status
        delivery.latency_ms = outcome.latency_ms
        delivery.last_error = outcome.error
        delivery.lease_until = None
        endpoint = session.get(WebhookEndpoint, delivery.endpoint_id, with_for_update=True)
        assert endpoint is not None
        if outcome.delivered:
            delivery.status = "delivered"
            delivery.delivered_at = now
            delivery.next_attempt_at = None
            endpoint.failing_since = None
            return AttemptResult("delivered")
        if outcome.status == 410:
            delivery.status = "failed"
            delivery.next_attempt_at = None
            endpoint.enabled = False
            endpoint.disabled_reason = "the receiver answered 410 Gone"
            session.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.endpoint_id == endpoint.id,
                    WebhookDelivery.status == "pending",
                    WebhookDelivery.id != delivery.id,
                )
                .values(status="cancelled", next_attempt_at=None, last_error="endpoint gone")
                .execution_options(synchronize_session=False)
            )
            return AttemptResult("failed")
        if delivery.attempts_left <= 0:
            delivery.status = "failed"
            delivery.next_attempt_at = None
            if endpoint.failing_since is None:
                endpoint.failing_since = now
            return AttemptResult("failed")
        if outcome.retry_after is not None:
            wait = min(outcome.retry_after, MAX_RETRY_AFTER)
        else:
            wait = retry_delay(len(SCHEDULE) - delivery.attempts_left)
        delivery.next_attempt_at = now + dt.timedelta(seconds=wait)
        return AttemptResult("pending", retry_in=wait, next_number=delivery.attempts + 1)


def due_deliveries(objects: Platform, *, tenant_id: int) -> list[tuple[int, int]]:
    """Pending deliveries that are due and not leased: (delivery id, next attempt number)."""
    with tenant_scope(tenant_id, db=objects.db) as session:
        rows = session.execute(
            select(WebhookDelivery.id, WebhookDelivery.attempts)
            .where(
                WebhookDelivery.status == "pending",
                WebhookDelivery.next_attempt_at <= func.now(),
                _not_leased(),
            )
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(SWEEP_BATCH)
        ).all()
    return [(row.id, row.attempts + 1) for row in rows]
