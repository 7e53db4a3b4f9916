"""How webhook endpoints and deliveries travel over the API."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from recova.platform.kernel.api import StrictSchema
from recova.platform.webhooks.events import SUBSCRIBABLE

EVENT_TYPE = fields.Str(
    validate=validate.Length(max=64),
    metadata={"description": "one of: " + ", ".join(sorted(SUBSCRIBABLE))},
)


class WebhookEndpointCreateSchema(StrictSchema):
    url = fields.Str(
        required=True,
        validate=validate.Length(min=1, max=2000),
        metadata={"description": "the receiver's https URL (public addresses only)"},
    )
    event_types = fields.List(EVENT_TYPE, required=True, validate=validate.Length(max=64))
    description = fields.Str(load_default="", validate=validate.Length(max=200))
    enabled = fields.Bool(load_default=True)


class WebhookEndpointUpdateSchema(StrictSchema):
    url = fields.Str(validate=validate.Length(min=1, max=2000))
    event_types = fields.List(EVENT_TYPE, validate=validate.Length(max=64))
    description = fields.Str(validate=validate.Length(max=200))
    enabled = fields.Bool()


class WebhookRotateSchema(StrictSchema):
    grace_hours = fields.Int(
        load_default=24,
        validate=validate.Range(min=0, max=168),
        metadata={"description": "hours the old secret keeps signing beside the new one"},
    )


class WebhookEndpointSchema(Schema):
    id = fields.Int()
    url = fields.Str()
    description = fields.Str()
    event_types = fields.List(fields.Str())
    enabled = fields.Bool()
    status = fields.Str(metadata={"description": "active, failing (retries ran out) or disabled"})
    disabled_reason = fields.Str(allow_none=True)
    failing_since = fields.DateTime(allow_none=True)
    previous_secret_expires_at = fields.DateTime(
        allow_none=True,
        metadata={"description": "until when the rotated-out secret still signs"},
    )
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class WebhookEndpointWithSecretSchema(WebhookEndpointSchema):
    secret = fields.Str(metadata={"description": "whsec_...: shown only in this answer"})


class WebhookDeliveryQuerySchema(StrictSchema):
    status = fields.Str(validate=validate.OneOf(["pending", "delivered", "failed", "cancelled"]))
    event_type = EVENT_TYPE


class WebhookAttemptSchema(Schema):
    number = fields.Int()
    manual = fields.Bool()
    started_at = fields.DateTime()
    finished_at = fields.DateTime(allow_none=True)
    response_status = fields.Int(allow_none=True)
    latency_ms = fields.Int(allow_none=True)
    error = fields.Str(allow_none=True)


class WebhookDeliverySchema(Schema):
    id = fields.Int()
    endpoint_id = fields.Int()
    event_id = fields.Str(metadata={"description": "the webhook-id header"})
    event_type = fields.Str()
    status = fields.Str()
    attempts = fields.Int()
    next_attempt_at = fields.DateTime(allow_none=True)
    last_attempt_at = fields.DateTime(allow_none=True)
    response_status = fields.Int(allow_none=True)
    latency_ms = fields.Int(allow_none=True)
    last_error = fields.Str(allow_none=True)
    delivered_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()


class WebhookDeliveryDetailSchema(WebhookDeliverySchema):
    body = fields.Str()
    attempt_log = fields.List(fields.Nested(WebhookAttemptSchema))


class WebhookEventTypeSchema(Schema):
    type = fields.Str()
    description = fields.Str()
