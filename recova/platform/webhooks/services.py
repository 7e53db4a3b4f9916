"""Registering webhook endpoints, rotating their secrets, replaying and testing deliveries.

An endpoint's URL is https, naming a host whose every address is public, checked by the
HTTP connector's guard (``recova.platform.kernel.outbound``) when it is registered and
again before every attempt. With ``RECOVA_HTTP_SOURCES_ALLOW_PRIVATE`` on (development,
tests, an on-premises install) private and loopback hosts are allowed, and plain http with
them. A host that does not resolve is refused: a receiver must exist to be registered.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from collections.abc import Sequence
from typing import Any

import httpx
from sqlalchemy import delete
from sqlalchemy.orm import Session

from recova.platform.kernel.db import after_commit, utcnow
from recova.platform.kernel.errors import DomainError
from recova.platform.kernel.extension import Platform
from recova.platform.kernel.outbound import DestinationRefused, Resolver, check_destination
from recova.platform.kernel.outbound import resolve_host as _resolve_host
from recova.platform.webhooks.delivery import SCHEDULE
from recova.platform.webhooks.events import SUBSCRIBABLE, forget_subscriptions
from recova.platform.webhooks.jobs import schedule_attempt
from recova.platform.webhooks.models import WebhookDelivery, WebhookEndpoint
from recova.platform.webhooks.signing import new_secret, seal_secret

logger = logging.getLogger(__name__)

#: How long a rotated-out secret keeps signing, unless the rotation says otherwise.
DEFAULT_GRACE = dt.timedelta(hours=24)


class WebhookInvalid(DomainError, ValueError):
    """A field of the request is wrong (422, naming the field)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    @property
    def error_details(self) -> dict[str, Any]:
        return {"json": {self.field: [self.message]}}


class WebhookConflict(DomainError):
    """The request contradicts the endpoint's or delivery's state (409)."""

    status = 409


def check_url(url: str, *, allow_private: bool, resolve: Resolver = _resolve_host) -> str:
    """``url`` if an endpoint may have it; else ``WebhookInvalid`` naming ``url``."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        raise WebhookInvalid("url", "not a valid URL") from None
    schemes = ("https", "http") if allow_private else ("https",)
    if parsed.scheme not in schemes:
        raise WebhookInvalid("url", "must be an https:// URL")
    if not parsed.host:
        raise WebhookInvalid("url", "must name a host")
    if parsed.userinfo:
        raise WebhookInvalid("url", "must not carry a user name or password")
    try:
        check_destination(parsed, allow_private=allow_private, resolve=resolve)
    except DestinationRefused as refused:
        raise WebhookInvalid("url", str(refused)) from None
    return str(parsed)


def check_event_types(event_types: Sequence[str]) -> list[str]:
    """The event types, de-duplicated and sorted; ``WebhookInvalid`` for an unknown one."""
    unknown = sorted(set(event_types) - SUBSCRIBABLE)
    if unknown:
        raise WebhookInvalid("event_types", f"unknown event types: {', '.join(unknown)}")
    if not event_types:
        raise WebhookInvalid("event_types", "name at least one event type")
    return sorted(set(event_types))


def create_endpoint(
    session: Session,
    objects: Platform,
    *,
    url: str,
    event_types: Sequence[str],
    description: str,
    enabled: bool,
    actor: str,
) -> tuple[WebhookEndpoint, str]:
    """Register an endpoint; it and its secret (shown this once, stored encrypted)."""
    secret = new_secret()
    endpoint = WebhookEndpoint(
        url=check_url(url, allow_private=objects.settings.http_sources_allow_private),
        event_types=check_event_types(event_types),
        description=description,
        enabled=enabled,
        secret_ciphertext=seal_secret(objects.cipher, secret),
        created_by=actor,
    )
    session.add(endpoint)
    session.flush()  # the caller answers with the new id
    forget_subscriptions(session)
    return endpoint, secret


def update_endpoint(
    session: Session, objects: Platform, endpoint: WebhookEndpoint, changes: dict[str, Any]
) -> WebhookEndpoint:
    """Change the URL, event types, description or enabled flag; enabling clears the
    platform's disabled reason and the failing mark."""
    if "url" in changes:
        endpoint.url = check_url(
            changes["url"], allow_private=objects.settings.http_sources_allow_private
        )
    if "event_types" in changes:
        endpoint.event_types = check_event_types(changes["event_types"])
    if "description" in changes:
        endpoint.description = changes["description"]
    if "enabled" in changes:
        if changes["enabled"] and not endpoint.enabled:
            endpoint.disabled_reason = None
            endpoint.failing_since = None
        endpoint.enabled = changes["enabled"]
    endpoint.updated_at = utcnow()
    session.flush()  # the caller answers with the changed row
    forget_subscriptions(session)
    return endpoint


def rotate_secret(
    objects: Platform, endpoint: WebhookEndpoint, *, grace: dt.timedelta = DEFAULT_GRACE
) -> tuple[WebhookEndpoint, str]:
    """A new secret (shown this once); the old one keeps signing for ``grace``."""
    secret = new_secret()
    now = utcnow()
    if grace > dt.timedelta(0):
        endpoint.previous_secret_ciphertext = endpoint.secret_ciphertext
        endpoint.previous_secret_expires_at = now + grace
    else:
        endpoint.previous_secret_ciphertext = None
        endpoint.previous_secret_expires_at = None
    endpoint.secret_ciphertext = seal_secret(objects.cipher, secret)
    endpoint.updated_at = now
    return endpoint, secret


def delete_endpoint(session: Session, endpoint: WebhookEndpoint) -> None:
    """Remove an endpoint with its delivery log (pending deliveries are never sent)."""
    session.execute(delete(WebhookEndpoint).where(WebhookEndpoint.id == endpoint.id))
    forget_subscriptions(session)


def replay_delivery(
    session: Session, objects: Platform, delivery: WebhookDelivery, *, tenant_id: int
) -> WebhookDelivery:
    """Send a delivery again now, by hand, with the same ``webhook-id``.

    A finished one (delivered, failed, cancelled) gets one more attempt; a pending one has
    its next attempt brought forward. Refused while an attempt is on the wire.
    """
    now = utcnow()
    if delivery.lease_until is not None and delivery.lease_until > now:
        raise WebhookConflict(f"delivery {delivery.id} is being sent right now")
    if delivery.status != "pending":
        delivery.attempts_left = 1
    delivery.status = "pending"
    delivery.next_attempt_at = now
    delivery.manual_next = True
    session.flush()  # the caller answers with the delivery as it now is
    _attempt_after_commit(session, objects, tenant_id, delivery)
    return delivery


def send_test_event(
    session: Session, objects: Platform, endpoint: WebhookEndpoint, *, tenant_id: int
) -> WebhookDelivery:
    """Queue a ``webhook.test`` event to this endpoint alone (even if it subscribes to none
    of the types, or is disabled: the tenant asked for this one)."""
    if not endpoint.enabled:
        raise WebhookConflict(f"endpoint {endpoint.id} is disabled; enable it first")
    now = utcnow()
    event_id = f"evt_test_{uuid.uuid4().hex}"
    body = json.dumps(
        {
            "type": "webhook.test",
            "timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "data": {"endpoint_id": endpoint.id},
        },
        separators=(",", ":"),
    )
    delivery = WebhookDelivery(
        endpoint_id=endpoint.id,
        event_id=event_id,
        event_type="webhook.test",
        body=body,
        status="pending",
        attempts=0,
        attempts_left=len(SCHEDULE),
        next_attempt_at=now,
        manual_next=True,
    )
    session.add(delivery)
    session.flush()  # the caller answers with the new delivery
    _attempt_after_commit(session, objects, tenant_id, delivery)
    return delivery


def _attempt_after_commit(
    session: Session, objects: Platform, tenant_id: int, delivery: WebhookDelivery
) -> None:
    """Queue the delivery's next attempt once the transaction commits; if Redis is away
    then, the sweep sends it (the row is pending and due)."""
    number = delivery.attempts + 1
    delivery_id = delivery.id

    def _queue() -> None:
        try:
            schedule_attempt(
                objects,
                tenant_id=tenant_id,
                delivery_id=delivery_id,
                number=number,
                delay=0,
                origin=f"manual{uuid.uuid4().hex[:8]}",
            )
        except Exception:  # never into the request: the sweep sends it
            logger.warning("delivery %s not queued; the sweep sends it", delivery_id)

    after_commit(session, _queue)
