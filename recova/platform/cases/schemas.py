"""How cases travel over the API. Personal identifiers are only ever shown masked here."""

from __future__ import annotations

from marshmallow import Schema, fields

from recova.platform.cases.models import CaseStatus


class AccountSchema(Schema):
    id = fields.Int()
    external_id = fields.Str()
    product = fields.Str(allow_none=True)
    currency = fields.Str()
    original_principal = fields.Decimal(as_string=True)
    outstanding_principal = fields.Decimal(as_string=True)
    outstanding_interest = fields.Decimal(as_string=True)
    outstanding_fees = fields.Decimal(as_string=True)
    outstanding_penalties = fields.Decimal(as_string=True)
    outstanding_total = fields.Decimal(as_string=True)
    due_date = fields.Date()
    days_past_due = fields.Int()


class DebtorSummarySchema(Schema):
    id = fields.Int()
    external_id = fields.Str()
    full_name = fields.Str()
    national_id = fields.Str(attribute="national_id_masked", allow_none=True)
    region = fields.Str(allow_none=True)


class CaseSchema(Schema):
    id = fields.Int()
    status = fields.Enum(CaseStatus, by_value=True)
    created_at = fields.DateTime()
    closed_at = fields.DateTime(allow_none=True)
    account = fields.Nested(AccountSchema)
    debtor = fields.Nested(DebtorSummarySchema)


class CaseQuerySchema(Schema):
    status = fields.Enum(CaseStatus, by_value=True)
    external_id = fields.Str(metadata={"description": "the account's external id"})
