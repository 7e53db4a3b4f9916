"""How the compliance policy, simulations and validation notices travel over the API."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from recova.platform.contact.models import Channel, Result
from recova.platform.kernel.api import StrictSchema


class PolicyVersionSchema(Schema):
    id = fields.Int()
    pack = fields.Str()
    overrides = fields.Dict()
    effective_from = fields.DateTime()
    created_by = fields.Int(allow_none=True)
    created_at = fields.DateTime()


class PolicySchema(Schema):
    pack = fields.Str()
    pack_version = fields.Str()
    pack_title = fields.Str()
    pack_rules = fields.Dict()
    version_id = fields.Int(allow_none=True)
    overrides = fields.Dict()
    rules = fields.Dict(metadata={"description": "what binds now: the pack, tightened"})
    history = fields.List(fields.Nested(PolicyVersionSchema))


class PolicySaveSchema(StrictSchema):
    overrides = fields.Dict(
        required=True, metadata={"description": "tightenings by rule name, e.g. window_end"}
    )
    effective_from = fields.AwareDateTime(metadata={"description": "default: now"})


class ProposedAttemptSchema(StrictSchema):
    case_id = fields.Int(required=True)
    contact_id = fields.Int(required=True)
    channel = fields.Enum(Channel, by_value=True, required=True)
    at = fields.AwareDateTime(required=True)
    result = fields.Enum(
        Result,
        by_value=True,
        metadata={"description": "the expected result; without it the attempt stays pending"},
    )


class SimulateRequestSchema(StrictSchema):
    attempts = fields.List(
        fields.Nested(ProposedAttemptSchema),
        required=True,
        validate=validate.Length(min=1, max=500),
    )


class SimulatedAttemptSchema(Schema):
    index = fields.Int()
    case_id = fields.Int()
    contact_id = fields.Int()
    channel = fields.Str()
    at = fields.DateTime()
    allowed = fields.Bool()
    rule = fields.Str(allow_none=True)
    rules = fields.List(fields.Str())
    message = fields.Str(allow_none=True)
    next_allowed_at = fields.DateTime(allow_none=True)
    timezone = fields.Str()
    pack_version = fields.Str()


class SimulationSchema(Schema):
    attempts = fields.List(fields.Nested(SimulatedAttemptSchema))
    blocked = fields.Int()


class NoticeRecordSchema(StrictSchema):
    channel = fields.Str(required=True, validate=validate.OneOf(["letter", "email", "sms"]))
    sent_at = fields.AwareDateTime(metadata={"description": "default: now"})


class NoticeSchema(Schema):
    case_id = fields.Int()
    sent_at = fields.DateTime()
    channel = fields.Str()


class NoticeQuerySchema(StrictSchema):
    state = fields.Str(validate=validate.OneOf(["due", "overdue"]))


class NoticeDueSchema(Schema):
    case_id = fields.Int()
    first_contact_at = fields.DateTime()
    due_by = fields.DateTime()
    state = fields.Str()
