"""Webhooks over the API: endpoints, their secrets, delivery logs, replays and test events.

Tenant routes (``/api/v1/webhooks/...`` or ``/api/v1/tenants/<slug>/webhooks/...``). Tenant
admins (and platform admins naming the tenant) register and change endpoints; analysts
read them and their delivery logs; API clients need ``webhooks:read`` or
``webhooks:write``. Agency staff have no business here (403). An endpoint or delivery of
another tenant is a 404, as if it did not exist. A secret is answered once, by the
request that made it (create, rotate), and never again.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import select

from recova.platform.auth.access import access
from recova.platform.auth.models import Role
from recova.platform.auth.principal import current_principal
from recova.platform.kernel.api import SelectPage, one_or_404, tenant_routes
from recova.platform.kernel.extension import platform
from recova.platform.kernel.request_scope import db_session
from recova.platform.webhooks import schemas, services
from recova.platform.webhooks.events import EVENT_TYPES, SUBSCRIBABLE
from recova.platform.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from recova.tenants.scope import current_tenant

blp = Blueprint(
    "webhooks", __name__, description="Signed webhooks: endpoints, secrets and delivery logs"
)

READERS = (Role.TENANT_ADMIN, Role.TENANT_ANALYST, Role.PLATFORM_ADMIN)
WRITERS = (Role.TENANT_ADMIN, Role.PLATFORM_ADMIN)


def _actor() -> str:
    principal = current_principal()
    assert principal is not None  # the access rule ran first
    return f"{principal.kind}:{principal.subject_id}"


def _endpoint(endpoint_id: int) -> WebhookEndpoint:
    return one_or_404(
        select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id),
        f"webhook endpoint {endpoint_id}",
    )


def _delivery(endpoint_id: int, delivery_id: int) -> WebhookDelivery:
    return one_or_404(
        select(WebhookDelivery).where(
            WebhookDelivery.id == delivery_id, WebhookDelivery.endpoint_id == endpoint_id
        ),
        f"delivery {delivery_id} of webhook endpoint {endpoint_id}",
    )


def _values(row: Any, schema: type[Any]) -> dict[str, Any]:
    """The row's values of the fields ``schema`` declares (for an answer adding more)."""
    return {name: getattr(row, name) for name in schema._declared_fields}


def _with_secret(endpoint: WebhookEndpoint, secret: str) -> dict[str, Any]:
    return {**_values(endpoint, schemas.WebhookEndpointSchema), "secret": secret}


@tenant_routes(blp, "/webhooks/event-types")
class EventTypes(MethodView):
    @access(*READERS, scope="webhooks:read", tenant=True)
    @blp.response(200, schemas.WebhookEventTypeSchema(many=True))
    def get(self) -> list[dict[str, str]]:
        """The event types an endpoint may subscribe to."""
        return [{"type": name, "description": EVENT_TYPES[name]} for name in sorted(SUBSCRIBABLE)]


@tenant_routes(blp, "/webhooks/endpoints")
class EndpointCollection(MethodView):
    @access(*READERS, scope="webhooks:read", tenant=True)
    @blp.response(200, schemas.WebhookEndpointSchema(many=True))
    @blp.paginate(SelectPage)
    def get(self) -> Any:
        """The tenant's webhook endpoints (never their secrets)."""
        return select(WebhookEndpoint).order_by(WebhookEndpoint.id)

    @access(*WRITERS, scope="webhooks:write", tenant=True)
    @blp.arguments(schemas.WebhookEndpointCreateSchema)
    @blp.response(201, schemas.WebhookEndpointWithSecretSchema)
    def post(self, data: dict[str, Any]) -> dict[str, Any]:
        """Register an endpoint; the answer holds its secret, shown this once."""
        endpoint, secret = services.create_endpoint(
            db_session(), platform(), actor=_actor(), **data
        )
        return _with_secret(endpoint, secret)


@tenant_routes(blp, "/webhooks/endpoints/<int:endpoint_id>")
class EndpointItem(MethodView):
    @access(*READERS, scope="webhooks:read", tenant=True)
    @blp.response(200, schemas.WebhookEndpointSchema)
    def get(self, endpoint_id: int) -> WebhookEndpoint:
        """One endpoint: its URL, event types and status (active, failing, disabled)."""
        return _endpoint(endpoint_id)

    @access(*WRITERS, scope="webhooks:write", tenant=True)
    @blp.arguments(schemas.WebhookEndpointUpdateSchema)
    @blp.response(200, schemas.WebhookEndpointSchema)
    def patch(self, data: dict[str, Any], endpoint_id: int) -> WebhookEndpoint:
        """Change the URL, event types, description, or enable or disable the endpoint."""
        return services.update_endpoint(db_session(), platform(), _endpoint(endpoint_id), data)

    @access(*WRITERS, scope="webhooks:write", tenant=True)
    @blp.response(204)
    def delete(self, endpoint_id: int) -> None:
        """Remove the endpoint and its delivery log; nothing more is sent to it."""
        services.delete_endpoint(db_session(), _endpoint(endpoint_id))


@tenant_routes(blp, "/webhooks/endpoints/<int:endpoint_id>/rotate-secret")
class EndpointRotation(MethodView):
    @access(*WRITERS, scope="webhooks:write", tenant=True)
    @blp.arguments(schemas.WebhookRotateSchema)
    @blp.response(200, schemas.WebhookEndpointWithSecretSchema)
    def post(self, data: dict[str, Any], endpoint_id: int) -> dict[str, Any]:
        """A new secret, shown this once; the old one also signs for ``grace_hours``
        (the ``webhook-signature`` header then carries both signatures)."""
        endpoint, secret = services.rotate_secret(
            platform(), _endpoint(endpoint_id), grace=dt.timedelta(hours=data["grace_hours"])
        )
        db_session().flush()  # the answer shows the rotation's times
        return _with_secret(endpoint, secret)


@tenant_routes(blp, "/webhooks/endpoints/<int:endpoint_id>/test")
class EndpointTest(MethodView):
    @access(*WRITERS, scope="webhooks:write", tenant=True)
    @blp.response(202, schemas.WebhookDeliverySchema)
    def post(self, endpoint_id: int) -> WebhookDelivery:
        """Send a ``webhook.test`` event to this endpoint; its delivery is in the log."""
        return services.send_test_event(
            db_session(), platform(), _endpoint(endpoint_id), tenant_id=current_tenant().id
        )


@tenant_routes(blp, "/webhooks/endpoints/<int:endpoint_id>/deliveries")
class DeliveryCollection(MethodView):
    @access(*READERS, scope="webhooks:read", tenant=True)
    @blp.arguments(schemas.WebhookDeliveryQuerySchema, location="query")
    @blp.response(200, schemas.WebhookDeliverySchema(many=True))
    @blp.paginate(SelectPage)
    def get(self, query: dict[str, Any], endpoint_id: int) -> Any:
        """The endpoint's delivery log, newest first: status, attempts, answer, latency."""
        _endpoint(endpoint_id)
        statement = (
            select(WebhookDelivery)
            .where(WebhookDelivery.endpoint_id == endpoint_id)
            .order_by(WebhookDelivery.id.desc())
        )
        for name in ("status", "event_type"):
            if name in query:
                statement = statement.where(getattr(WebhookDelivery, name) == query[name])
        return statement


@tenant_routes(blp, "/webhooks/endpoints/<int:endpoint_id>/deliveries/<int:delivery_id>")
class DeliveryItem(MethodView):
    @access(*READERS, scope="webhooks:read", tenant=True)
    @blp.response(200, schemas.WebhookDeliveryDetailSchema)
    def get(self, endpoint_id: int, delivery_id: int) -> dict[str, Any]:
        """One delivery with its body and every attempt."""
        delivery = _delivery(endpoint_id, delivery_id)
        attempts = db_session().scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id == delivery.id)
            .order_by(WebhookAttempt.number)
        )
        return {
            **_values(delivery, schemas.WebhookDeliverySchema),
            "body": delivery.body,
            "attempt_log": list(attempts),
        }


@tenant_routes(blp, "/webhooks/endpoints/<int:endpoint_id>/deliveries/<int:delivery_id>/replay")
class DeliveryReplay(MethodView):
    @access(*WRITERS, scope="webhooks:write", tenant=True)
    @blp.response(202, schemas.WebhookDeliverySchema)
    def post(self, endpoint_id: int, delivery_id: int) -> WebhookDelivery:
        """Send the delivery again now, with the same ``webhook-id`` (a new attempt)."""
        _endpoint(endpoint_id)
        return services.replay_delivery(
            db_session(),
            platform(),
            _delivery(endpoint_id, delivery_id),
            tenant_id=current_tenant().id,
        )
