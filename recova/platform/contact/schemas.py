"""How attempts, outcome codes and templates travel over the API (contacts always masked)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from recova.platform.contact.models import Channel, Result, TemplateAudience
from recova.platform.kernel.api import StrictSchema

_CODE = validate.Regexp(r"^[A-Za-z0-9_.-]{1,32}$")


class AttemptCreateSchema(StrictSchema):
    contact_id = fields.Int(required=True, validate=validate.Range(min=1))
    channel = fields.Enum(Channel, by_value=True, required=True)
    template_id = fields.Int(validate=validate.Range(min=1))
    notes = fields.Str(validate=validate.Length(max=4000))


class AttemptSchema(Schema):
    id = fields.Int()
    case_id = fields.Int()
    contact_id = fields.Int(allow_none=True)
    third_party = fields.Bool()
    channel = fields.Str()
    status = fields.Str()
    allowed = fields.Function(lambda a: a.status != "blocked")
    attempted_at = fields.DateTime()
    actor_kind = fields.Str()
    agency_id = fields.Int(allow_none=True)
    user_id = fields.Int(allow_none=True)
    template_id = fields.Int(allow_none=True)
    pack_version = fields.Str()
    policy_id = fields.Int(allow_none=True)
    local_timezone = fields.Str()
    rule = fields.Str(attribute="blocked_rule", allow_none=True)
    message = fields.Str(attribute="block_message", allow_none=True)
    next_allowed_at = fields.DateTime(allow_none=True)
    result = fields.Str(allow_none=True)
    outcome_code_id = fields.Int(allow_none=True)
    notes = fields.Str(allow_none=True)
    recording_ref = fields.Str(allow_none=True)
    completed_at = fields.DateTime(allow_none=True)


class OutcomeSchema(StrictSchema):
    code = fields.Str(required=True, validate=_CODE)
    notes = fields.Str(validate=validate.Length(max=4000))
    recording_ref = fields.Str(validate=validate.Length(min=1, max=300))


class OutcomeCodeSchema(Schema):
    id = fields.Int()
    code = fields.Str()
    label = fields.Str()
    result = fields.Str()
    is_active = fields.Bool()


class OutcomeCodeCreateSchema(StrictSchema):
    code = fields.Str(required=True, validate=_CODE)
    label = fields.Str(required=True, validate=validate.Length(min=1, max=200))
    result = fields.Enum(Result, by_value=True, required=True)


class OutcomeCodeUpdateSchema(StrictSchema):
    label = fields.Str(validate=validate.Length(min=1, max=200))
    is_active = fields.Bool()


class TemplateSchema(Schema):
    id = fields.Int()
    name = fields.Str()
    channel = fields.Str()
    audience = fields.Str()
    subject = fields.Str(allow_none=True)
    body = fields.Str()
    updated_at = fields.DateTime()


class TemplateSaveSchema(StrictSchema):
    name = fields.Str(required=True, validate=validate.Regexp(r"^[A-Za-z0-9_.-]{1,64}$"))
    channel = fields.Str(required=True, validate=validate.OneOf(["sms", "email", "letter"]))
    audience = fields.Enum(TemplateAudience, by_value=True, required=True)
    subject = fields.Str(validate=validate.Length(max=200))
    body = fields.Str(required=True, validate=validate.Length(min=1, max=10_000))


class RenderRequestSchema(StrictSchema):
    case_id = fields.Int(required=True)
    contact_id = fields.Int(required=True)


class RenderedSchema(Schema):
    subject = fields.Str(allow_none=True)
    body = fields.Str()


class DoNotContactSchema(StrictSchema):
    do_not_contact = fields.Bool(required=True)
    contact_id = fields.Int(metadata={"description": "mark one contact instead of the debtor"})


class DoNotContactResultSchema(Schema):
    debtor_id = fields.Int()
    contact_id = fields.Int(allow_none=True)
    do_not_contact = fields.Bool()
