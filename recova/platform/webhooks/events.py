"""Domain events for webhooks: written to the outbox in the transaction of the change.

A service calls ``emit_event(session, "promise.kept", {...})`` where the change happens;
the event is an outbox row of kind ``event`` in the same transaction (``func`` is its
type, ``kwargs`` its data, ``created_at`` its time; ``evt_<row id>`` its id), so it exists
exactly when the change commits. The relay fans it out into one delivery per subscribed
endpoint (``recova.platform.webhooks.delivery``).

**Cheap when nobody listens.** Before writing, the tenant's subscribed event types are read
once per transaction (one query over the enabled endpoints, kept in ``session.info`` for
that transaction): an event no enabled endpoint wants writes nothing. Set-based paths
(allocation placing or recalling thousands of cases, a month close attributing payments)
call ``bulk_events_sql`` instead: one ``INSERT ... SELECT`` into the outbox, guarded by an
``EXISTS`` over the endpoints that PostgreSQL evaluates once, so no row and no loop when
nobody subscribed. Bulk events are handed over by the next relay tick (seconds later); for
the others, the commit queues one job (``relay_events_job``) that fans them out at once,
so the request pays one enqueue and not the fan-out.

**Thin bodies.** Data carries ids, states, dates and amounts, never personal data (names,
phone numbers, national ids, free text a person typed): ``emit_event`` refuses keys that
name such fields and values that are not plain JSON scalars.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from flask import current_app, has_app_context
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from recova.platform.kernel.db import SHARED_SCHEMA, quote_identifier
from recova.platform.kernel.outbox import write_outbox_event
from recova.platform.webhooks.jobs import relay_events_after_commit
from recova.platform.webhooks.models import WebhookEndpoint

#: Every event type, with what it means (the API validates subscriptions against it).
EVENT_TYPES: dict[str, str] = {
    "ingestion.run.completed": "An ingestion run (portfolio or payments) finished",
    "ingestion.run.failed": "An ingestion run failed",
    "case.placed": "A case was placed with an agency",
    "case.recalled": "A case's placement was recalled",
    "promise.created": "A promise to pay was recorded",
    "promise.kept": "A promise was paid in full",
    "promise.partly_kept": "A promise's grace period ended with part of it paid",
    "promise.broken": "A promise's grace period ended with nothing paid",
    "plan.created": "A payment plan was agreed",
    "plan.completed": "Every instalment of a plan was paid",
    "plan.broken": "A plan broke after too many missed instalments",
    "settlement.requested": "A settlement was offered (approved at once or pending approval)",
    "settlement.decided": "A settlement offer was approved or rejected",
    "payment.attributed": "A payment was attributed to a placement on the commission ledger",
    "dispute.opened": "The debtor disputed a case",
    "dispute.resolved": "A dispute was resolved",
    "invoice.issued": "A monthly invoice was issued",
    "audit.head.exported": "The day's audit chain head was exported",
    "webhook.test": "A test event sent by hand to one endpoint",
}
#: Types a tenant may subscribe to (the test event goes only where it is sent).
SUBSCRIBABLE = frozenset(EVENT_TYPES) - {"webhook.test"}

#: Parts of a key that would name personal data: never in an event.
_PERSONAL = ("name", "phone", "national", "email", "address", "note", "reason", "value")
_CACHE = "webhook_subscribed_types"


def emit_event(session: Session, event_type: str, data: Mapping[str, Any]) -> int | None:
    """Write event ``event_type`` for the session's tenant in its transaction, if an
    enabled endpoint subscribes to it; the outbox row id, or None if nobody listens."""
    if event_type not in SUBSCRIBABLE:
        raise ValueError(f"unknown event type {event_type!r}")
    if event_type not in subscribed_types(session):
        return None
    tenant = session.info["tenant"]
    row_id = write_outbox_event(
        session, tenant_id=tenant.id, event_type=event_type, data=thin_data(data)
    )
    if has_app_context() and "recova" in current_app.extensions:
        relay_events_after_commit(session, current_app.extensions["recova"], row_id)
    return row_id


def subscribed_types(session: Session) -> frozenset[str]:
    """The event types the tenant's enabled endpoints want, read once per transaction."""
    transaction = session.get_transaction()
    cached = session.info.get(_CACHE)
    if cached is not None and transaction is not None and cached[0] is transaction:
        return frozenset(cached[1])
    found = frozenset(
        session.scalars(
            select(func.unnest(WebhookEndpoint.event_types))
            .where(WebhookEndpoint.enabled)
            .distinct()
        )
    )
    session.info[_CACHE] = (session.get_transaction(), found)
    return found


def forget_subscriptions(session: Session) -> None:
    """Drop the transaction's cached subscriptions (an endpoint changed in it)."""
    session.info.pop(_CACHE, None)


def thin_data(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` as JSON scalars (Decimal and dates as strings); refuses personal fields."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        lowered = key.lower()
        if any(part in lowered for part in _PERSONAL):
            raise ValueError(f"event data may not carry {key!r}: no personal data in events")
        if isinstance(value, Decimal):
            out[key] = str(value)
        elif isinstance(value, dt.date | dt.datetime):
            out[key] = value.isoformat()
        elif isinstance(value, str | int | float | bool) or value is None:
            out[key] = value
        else:
            raise TypeError(f"event data {key!r} must be a plain value, got {type(value)}")
    return out


def bulk_events_sql(*, schema: str, tenant_id: int, event_type: str, rows_sql: str) -> str:
    """SQL writing one event per row of ``rows_sql`` (a query with a ``data`` jsonb column)
    into the outbox, only if an enabled endpoint of the tenant subscribes to the type.

    ``schema`` is the tenant's schema unquoted (a validated name); the type and tenant id
    are checked here and written as literals, so the statement takes only the parameters
    ``rows_sql`` itself uses. Usable as a statement or as a data-modifying CTE body.
    """
    if event_type not in SUBSCRIBABLE:
        raise ValueError(f"unknown event type {event_type!r}")
    kind = f"'{event_type}'"  # one of the fixed names above: letters, dots and underscores
    endpoints = f"{quote_identifier(schema)}.webhook_endpoints"
    outbox = f"{quote_identifier(SHARED_SCHEMA)}.outbox"
    return (
        f"INSERT INTO {outbox} (kind, tenant_id, func, kwargs)"  # noqa: S608 - validated names
        f" SELECT 'event', {int(tenant_id)}, {kind}, events.data FROM ({rows_sql}) AS events"
        f" WHERE EXISTS (SELECT 1 FROM {endpoints} e"
        f" WHERE e.enabled AND {kind} = ANY(e.event_types))"
    )
