"""How billing travels over the API: contract versions, ledger lines, invoices, statements.

Amounts travel as strings (``"120.00"``) so no client parses money into a float. Rates
and shares are percentages. Tiers are ``[{"from": "0", "to": "100000", "factor": "1"},
..., {"from": "500000", "to": null, "factor": "0.6"}]``: each starts where the one
before ends, the last is open, and a slice of the month's money is charged at its bucket
rate times its tier's factor.
"""

from __future__ import annotations

from collections.abc import Callable

from marshmallow import Schema, ValidationError, fields, validate

from recova.billing.money import ROUNDING_MODES
from recova.platform.kernel.api import DATE_MAX, DATE_MIN, StrictSchema


def _month_within_calendar(value: str) -> None:
    """``0000-01`` has the shape of a month but is none: its days are outside Python's."""
    year = value[:4]
    if year.isascii() and year.isdigit() and not DATE_MIN.year <= int(year) <= DATE_MAX.year:
        raise ValidationError(f"a month from {DATE_MIN:%Y-%m} to {DATE_MAX:%Y-%m}")


MONTH: list[Callable[[str], object]] = [
    validate.Regexp(r"^[0-9]{4}-(0[1-9]|1[0-2])$", error="a month, YYYY-MM"),
    _month_within_calendar,
]


Money = fields.Decimal(as_string=True)


class ContractVersionCreateSchema(StrictSchema):
    currency = fields.Str(required=True, validate=validate.Length(equal=3))
    effective_from = fields.Date(required=True)
    rates = fields.Dict(
        keys=fields.Str(),
        values=fields.Raw(),
        required=True,
        metadata={"description": "percent by bucket at placement; '*' for any other bucket"},
    )
    tiers = fields.List(fields.Dict(), load_default=None, allow_none=True)
    minimum_fee = fields.Raw(load_default=None, allow_none=True)
    case_cap = fields.Raw(load_default=None, allow_none=True)
    vat_rate = fields.Raw(load_default=None, allow_none=True, metadata={"description": "percent"})
    rounding = fields.Str(load_default="half_even", validate=validate.OneOf(list(ROUNDING_MODES)))
    unplaced_commission = fields.Bool(load_default=False)


class ContractVersionSchema(Schema):
    id = fields.Int()
    currency = fields.Str()
    version = fields.Int()
    effective_from = fields.Date()
    rates = fields.Dict()
    tiers = fields.List(fields.Dict(), allow_none=True)
    minimum_fee = fields.Decimal(as_string=True, allow_none=True)
    case_cap = fields.Decimal(as_string=True, allow_none=True)
    vat_rate = fields.Decimal(as_string=True, allow_none=True)
    rounding = fields.Str()
    unplaced_commission = fields.Bool()
    created_by = fields.Int(allow_none=True)
    created_at = fields.DateTime()


class ContractVersionQuerySchema(StrictSchema):
    currency = fields.Str(validate=validate.Length(equal=3))


class LedgerQuerySchema(StrictSchema):
    month = fields.Str(validate=MONTH, metadata={"description": "the invoice month, YYYY-MM"})
    currency = fields.Str(validate=validate.Length(equal=3))
    kind = fields.Str(validate=validate.OneOf(["commission", "clawback"]))
    agency_id = fields.Int()
    case_id = fields.Int()
    payment_id = fields.Int()


class LineSchema(Schema):
    id = fields.Int()
    kind = fields.Str()
    payment_id = fields.Int()
    original_line_id = fields.Int(allow_none=True)
    period = fields.Date()
    event_on = fields.Date()
    currency = fields.Str()
    case_id = fields.Int(allow_none=True)
    placement_id = fields.Int(allow_none=True)
    agency_id = fields.Int(allow_none=True)
    agency_contract_id = fields.Int(allow_none=True)
    bucket = fields.Str(allow_none=True)
    contract_version_id = fields.Int()
    paid_to = fields.Str()
    base_amount = Money
    rate = fields.Decimal(as_string=True)
    volume_before = fields.Decimal(as_string=True, allow_none=True)
    commission_exact = fields.Decimal(as_string=True)
    commission = Money
    agency_share = Money
    platform_net = Money
    created_at = fields.DateTime()


class MonthSchema(StrictSchema):
    month = fields.Str(required=True, validate=MONTH)


class InvoiceQuerySchema(StrictSchema):
    month = fields.Str(validate=MONTH)
    currency = fields.Str(validate=validate.Length(equal=3))
    status = fields.Str(validate=validate.OneOf(["draft", "issued", "paid", "void"]))


class InvoiceSchema(Schema):
    id = fields.Int(allow_none=True)
    number = fields.Int(allow_none=True)
    period = fields.Date()
    currency = fields.Str()
    status = fields.Str()
    contract_version_id = fields.Int(allow_none=True)
    rounding = fields.Str()
    line_count = fields.Int()
    base_total = Money
    commission_total = Money
    credits = Money
    minimum_fee = fields.Decimal(as_string=True, allow_none=True)
    top_up = Money
    vat_rate = fields.Decimal(as_string=True, allow_none=True)
    vat = Money
    total = Money
    agency_total = Money
    platform_total = Money
    summary = fields.Dict()
    closed_at = fields.DateTime()
    issued_at = fields.DateTime(allow_none=True)
    paid_on = fields.Date(allow_none=True)
    voided_at = fields.DateTime(allow_none=True)
    void_reason = fields.Str(allow_none=True)


class PreviewSchema(Schema):
    month = fields.Str()
    counts = fields.Dict()
    invoices = fields.List(fields.Nested(InvoiceSchema))


class CloseAcceptedSchema(Schema):
    job_id = fields.Str(allow_none=True)
    queue = fields.Str()
    month = fields.Str()


class PaidSchema(StrictSchema):
    paid_on = fields.Date(load_default=None, allow_none=True)


class VoidSchema(StrictSchema):
    reason = fields.Str(required=True, validate=validate.Length(min=1, max=500))


class StatementQuerySchema(StrictSchema):
    month = fields.Str(validate=MONTH)


class AgencyStatementQuerySchema(StatementQuerySchema):
    tenant = fields.Str()


class _StatementTotals(Schema):
    """What every view of an agency statement shows."""

    id = fields.Int()
    invoice_id = fields.Int()
    period = fields.Date()
    currency = fields.Str()
    line_count = fields.Int()
    base_total = Money
    commission_total = Money
    agency_total = Money


class AgencyStatementRowSchema(_StatementTotals):
    """One of the agency's statements, in any tenant it works for."""

    tenant = fields.Str()
    tenant_name = fields.Str()
    invoice_number = fields.Int()
    invoice_status = fields.Str()


class StatementSchema(_StatementTotals):
    agency_id = fields.Int()
    by_bucket = fields.List(fields.Dict())
