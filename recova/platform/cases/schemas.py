"""How cases, accounts and debtors travel over the API.

Personal identifiers are only ever shown masked here (``138****5678``), to every caller;
people's names in full to the tenant's side and masked to agency staff (``PersonName``).
"""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from recova.platform.cases.display import PersonName
from recova.platform.cases.models import CaseStatus, ContactKind
from recova.platform.kernel.api import StrictSchema


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
    overdue_amount = fields.Decimal(as_string=True, allow_none=True)
    interest_rate = fields.Decimal(as_string=True, allow_none=True)
    due_date = fields.Date()
    days_past_due = fields.Int()
    withdrawn_at = fields.DateTime(allow_none=True)


class DebtorSummarySchema(Schema):
    id = fields.Int()
    external_id = fields.Str()
    full_name = PersonName()
    national_id = fields.Str(attribute="national_id_masked", allow_none=True)
    region = fields.Str(allow_none=True)


class ContactSchema(Schema):
    id = fields.Int()
    kind = fields.Enum(ContactKind, by_value=True)
    relation = fields.Str()
    name = PersonName(allow_none=True)
    value = fields.Str(attribute="value_masked")
    do_not_contact = fields.Bool(metadata={"description": "never to be used again"})
    verified = fields.Bool(
        metadata={"description": "false: a possible number the phone metadata does not know"}
    )


class DebtorSchema(DebtorSummarySchema):
    language = fields.Str(allow_none=True)
    created_at = fields.DateTime()
    contacts = fields.List(fields.Nested(ContactSchema))


class AccountDetailSchema(AccountSchema):
    debtor = fields.Nested(DebtorSummarySchema)
    case_id = fields.Int(attribute="case.id", allow_none=True)
    case_status = fields.Enum(CaseStatus, by_value=True, attribute="case.status", allow_none=True)


class CaseSchema(Schema):
    id = fields.Int()
    status = fields.Enum(CaseStatus, by_value=True)
    created_at = fields.DateTime()
    closed_at = fields.DateTime(allow_none=True)
    account = fields.Nested(AccountSchema)
    debtor = fields.Nested(DebtorSummarySchema)


class DaysPastDueFilter(StrictSchema):
    dpd_min = fields.Int(validate=validate.Range(min=0))
    dpd_max = fields.Int(validate=validate.Range(min=0))


class CaseQuerySchema(DaysPastDueFilter):
    status = fields.Enum(CaseStatus, by_value=True)
    external_id = fields.Str(metadata={"description": "the account's external id"})


class AccountQuerySchema(CaseQuerySchema):
    withdrawn = fields.Bool(metadata={"description": "recalled by the tenant's snapshot"})


class DebtorQuerySchema(StrictSchema):
    external_id = fields.Str(metadata={"description": "the debtor's external id"})
