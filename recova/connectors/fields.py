"""Recova's fields, how a tenant's mapping names them, and how one raw row becomes them.

A mapping is ``{recova field: source column}`` plus options. Column names are whatever
the tenant's system exports, in any language: ``借款人姓名`` or ``borrower_name``.

Options (all optional):

``day_first``
    Read ``05/03/2024`` as 5 March (default: month first). ISO dates are unaffected.
``phone_region``
    ISO country whose numbering plan reads national phone numbers (default: the
    tenant's jurisdiction).
``default_currency``
    Currency when no column is mapped to ``currency`` (default: the tenant's currency).
``timezone``
    IANA zone for payment times without an offset (default: the tenant's zone).
``national_id_type``
    ``cn_resident`` (the 18-character PRC ID, checksum verified; default for CN tenants)
    or ``other`` (kept as text, upper-cased; default elsewhere).
``extra_columns``
    Unmapped source columns to keep in the account's ``source_row``.

Contact points (phones, e-mail, address, third parties) never reject the account: one
that cannot be used is left out and reported as a *warning* on the row, which loads.
A phone the ``phonenumbers`` metadata calls possible but not valid is kept, marked
unverified.

What ``source_row`` keeps: the raw values of the columns mapped to non-personal fields,
plus ``extra_columns``. Columns mapped to personal fields (names, national ID, phones,
email, address) never reach it, and unmapped columns are dropped unless listed, because
an unknown column may well hold personal data the mapping does not know about.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers

from recova.connectors import normalise as n
from recova.connectors.models import FeedKind
from recova.platform.kernel.crypto import PersonalDataCipher, mask

THIRD_PARTY_SLOTS = (1, 2, 3)


@dataclass(frozen=True)
class FieldSpec:
    name: str
    description: str
    required: bool = False
    personal: bool = False


def _portfolio_fields() -> dict[str, FieldSpec]:
    specs = [
        FieldSpec("account_external_id", "the tenant's loan/account id", required=True),
        FieldSpec("debtor_external_id", "the tenant's borrower id (default: by national ID)"),
        FieldSpec("full_name", "the borrower's name", required=True, personal=True),
        FieldSpec("national_id", "national ID", personal=True),
        FieldSpec("phone", "the borrower's phone", personal=True),
        FieldSpec("phone2", "a second phone of the borrower", personal=True),
        FieldSpec("email", "the borrower's email", personal=True),
        FieldSpec("address", "the borrower's address", personal=True),
        FieldSpec("region", "province or state"),
        FieldSpec("language", "preferred language, e.g. zh or en"),
        FieldSpec("product", "loan product"),
        FieldSpec("currency", "ISO 4217 code (default: the mapping's default_currency)"),
        FieldSpec("original_principal", "principal lent"),
        FieldSpec("outstanding_principal", "principal still owed"),
        FieldSpec("outstanding_interest", "interest owed"),
        FieldSpec("outstanding_fees", "fees owed"),
        FieldSpec("outstanding_penalties", "penalties owed"),
        FieldSpec("overdue_amount", "amount currently overdue, as the tenant states it"),
        FieldSpec("interest_rate", "annual rate, '24%' or 0.24"),
        FieldSpec("due_date", "the date payment fell due"),
        FieldSpec("days_past_due", "days past due as the tenant counts them"),
    ]
    for slot in THIRD_PARTY_SLOTS:
        specs += [
            FieldSpec(f"contact{slot}_name", f"third-party contact {slot}: name", personal=True),
            FieldSpec(f"contact{slot}_phone", f"third-party contact {slot}: phone", personal=True),
            FieldSpec(f"contact{slot}_relation", f"third-party contact {slot}: relation"),
        ]
    return {spec.name: spec for spec in specs}


PAYMENT_FIELDS = {
    spec.name: spec
    for spec in [
        FieldSpec("payment_external_id", "the tenant's payment id", required=True),
        FieldSpec("account_external_id", "the account paid", required=True),
        FieldSpec("amount", "amount paid (or reversed), positive", required=True),
        FieldSpec("currency", "ISO 4217 code (default: the mapping's default_currency)"),
        FieldSpec("paid_at", "when the money came in", required=True),
        FieldSpec("channel", "payment channel, e.g. bank_transfer"),
        FieldSpec("paid_to", "who received it: tenant, agency or platform (default tenant)"),
        FieldSpec("reverses_payment_external_id", "for a reversal: the payment it reverses"),
    ]
}

FIELDS: dict[FeedKind, dict[str, FieldSpec]] = {
    FeedKind.PORTFOLIO: _portfolio_fields(),
    FeedKind.PAYMENTS: PAYMENT_FIELDS,
}

OPTION_NAMES = (
    "day_first",
    "phone_region",
    "default_currency",
    "timezone",
    "national_id_type",
    "extra_columns",
)
NATIONAL_ID_TYPES = ("cn_resident", "other")
PAID_TO = ("tenant", "agency", "platform")


class MappingError(ValueError):
    """A mapping that cannot work; ``field`` names what to fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def validate_mapping(
    kind: FeedKind, columns: Mapping[str, str], options: Mapping[str, Any]
) -> None:
    """Refuse a mapping with unknown fields or options, or missing what a row needs."""
    known = FIELDS[kind]
    for name, column in columns.items():
        if name not in known:
            raise MappingError(name, f"unknown field; known fields: {', '.join(known)}")
        if not isinstance(column, str) or not column.strip():
            raise MappingError(name, "the source column must be a non-empty name")
    used: dict[str, str] = {}
    for name, column in columns.items():
        if column in used:
            raise MappingError(name, f"column {column!r} is already mapped to {used[column]}")
        used[column] = name
    for name, spec in known.items():
        if spec.required and name not in columns:
            raise MappingError(name, "required")
    if kind is FeedKind.PORTFOLIO:
        if "original_principal" not in columns and "outstanding_principal" not in columns:
            raise MappingError("outstanding_principal", "map original or outstanding principal")
        if "due_date" not in columns and "days_past_due" not in columns:
            raise MappingError("due_date", "map the due date or days past due")
        for slot in THIRD_PARTY_SLOTS:
            if f"contact{slot}_phone" in columns and f"contact{slot}_relation" not in columns:
                raise MappingError(f"contact{slot}_relation", "a third-party phone needs it")
    _validate_options(options)


def _validate_options(options: Mapping[str, Any]) -> None:
    for name in options:
        if name not in OPTION_NAMES:
            raise MappingError(name, f"unknown option; known: {', '.join(OPTION_NAMES)}")
    if "day_first" in options and not isinstance(options["day_first"], bool):
        raise MappingError("day_first", "must be true or false")
    if "phone_region" in options:
        region = options["phone_region"]
        if not isinstance(region, str) or region.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise MappingError("phone_region", "must be an ISO country code such as CN or US")
    if "default_currency" in options:
        try:
            n.parse_currency(options["default_currency"])
        except n.FieldError as error:
            raise MappingError("default_currency", error.reason) from None
    if "timezone" in options:
        try:
            ZoneInfo(str(options["timezone"]))
        except (ZoneInfoNotFoundError, ValueError):
            raise MappingError("timezone", "unknown IANA time zone") from None
    if options.get("national_id_type", "other") not in NATIONAL_ID_TYPES:
        raise MappingError("national_id_type", f"one of {', '.join(NATIONAL_ID_TYPES)}")
    extra = options.get("extra_columns", [])
    if not isinstance(extra, list) or not all(isinstance(c, str) and c for c in extra):
        raise MappingError("extra_columns", "must be a list of column names")


class Rejected(Exception):
    """A row the mapping cannot accept: the column, the value as reported, and why.

    The same triple, not raised, is a warning on a row that loads (see ``RowWarnings``).
    """

    def __init__(self, column: str | None, value: str | None, reason: str) -> None:
        super().__init__(reason)
        self.column = column
        self.value = value
        self.reason = reason


#: What a row's reader noticed without rejecting it: contact points it left out.
RowWarnings = list[Rejected]

_UNSTORABLE_MARKS = ("\\x00", "\\ud")  # in a value's repr: a NUL or a lone surrogate


def unstorable(value: object) -> str | None:
    """Why PostgreSQL cannot store this raw value as text (a NUL character, or a lone
    surrogate left by undecodable bytes), or ``None``; nested JSON values included."""
    if isinstance(value, str):
        if "\x00" in value:
            return "contains a NUL byte (character 0), which text cannot hold; is the file damaged?"
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return "holds characters that are not valid Unicode"
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            problem = unstorable(key) or unstorable(item)
            if problem:
                return problem
    elif isinstance(value, list):
        for item in value:
            problem = unstorable(item)
            if problem:
                return problem
    return None


@dataclass(frozen=True)
class TenantDefaults:
    jurisdiction: str
    currency: str
    timezone: str


class RowReader:
    """What every feed shares: looking up mapped columns, hashing, and reporting errors."""

    key_field: str

    def __init__(
        self,
        kind: FeedKind,
        columns: Mapping[str, str],
        options: Mapping[str, Any],
        defaults: TenantDefaults,
    ) -> None:
        self.kind = kind
        self.columns = dict(columns)
        self.options = dict(options)
        self.day_first = bool(options.get("day_first", False))
        self.currency = str(options.get("default_currency") or defaults.currency).upper()
        self.timezone = ZoneInfo(str(options.get("timezone") or defaults.timezone))
        specs = FIELDS[kind]
        self.personal_columns = frozenset(
            column for name, column in self.columns.items() if specs[name].personal
        )
        kept = [c for f, c in self.columns.items() if not specs[f].personal]
        kept += [c for c in options.get("extra_columns", []) if c not in kept]
        self.kept_columns = tuple(kept)
        self.hashed_columns = tuple(sorted(set(self.columns.values()) | set(kept)))
        fingerprint = json.dumps([sorted(self.columns.items()), self.options], sort_keys=True)
        self._salt = hashlib.blake2b(fingerprint.encode(), digest_size=16).digest()
        self._key_column = self.columns[self.key_field]

    def external_id(self, values: Mapping[str, Any]) -> str:
        """The row's key (account or payment external id), or ``Rejected``."""
        return self.identifier(values, self.key_field, required=True) or ""

    def row_hash(self, values: Mapping[str, Any]) -> bytes:
        """A digest of the raw mapped values: equal digests mean an unchanged row.

        Raises ``Rejected`` for a value no text column can store (a NUL character or a
        lone surrogate): the repr the digest is taken of shows either one as an escape,
        so the common row pays for two substring searches and nothing more.
        """
        get = values.get
        text = "\x1f".join([repr(get(column)) for column in self.hashed_columns])
        if _UNSTORABLE_MARKS[0] in text or _UNSTORABLE_MARKS[1] in text:
            self._refuse_unstorable(values)
        return hashlib.blake2b(text.encode(), digest_size=16, key=self._salt).digest()

    def _refuse_unstorable(self, values: Mapping[str, Any]) -> None:
        for column in self.hashed_columns:
            value = values.get(column)
            problem = unstorable(value)
            if problem is not None:
                raise Rejected(column, self._shown(column, value), problem)

    def mentioned_key(self, values: Mapping[str, Any]) -> str | None:
        """The key of a row rejected as a whole (broken, undecodable), if it can be read
        cleanly: a snapshot must not recall an account whose row it did receive."""
        raw = values.get(self._key_column)
        if isinstance(raw, str) and ("\ufffd" in raw or unstorable(raw) is not None):
            return None
        try:
            return self.external_id(values)
        except Rejected:
            return None

    def column(self, field: str) -> str | None:
        return self.columns.get(field)

    def raw(self, values: Mapping[str, Any], field: str) -> Any:
        return values.get(self.columns.get(field))  # type: ignore[arg-type] # None: unmapped

    def reject(self, field: str, raw: Any, reason: str) -> Rejected:
        column = self.columns.get(field, field)
        return Rejected(column, self._shown(column, raw), reason)

    def _shown(self, column: str, raw: Any) -> str | None:
        """A raw value as an error report may show it: masked when personal, cut."""
        if raw is None:
            return None
        if column in self.personal_columns:
            return mask(str(raw).strip()) if str(raw).strip() else ""
        return str(raw)[:200]

    def identifier(self, values: Mapping[str, Any], field: str, *, required: bool) -> str | None:
        raw = self.raw(values, field)
        if n.is_blank(raw):
            if required:
                raise self.reject(field, raw, "required")
            return None
        try:
            return n.parse_identifier(raw)
        except n.FieldError as error:
            raise self.reject(field, raw, error.reason) from None

    def text(
        self, values: Mapping[str, Any], field: str, *, max_length: int, required: bool = False
    ) -> str | None:
        raw = self.raw(values, field)
        if n.is_blank(raw):
            if required:
                raise self.reject(field, raw, "required")
            return None
        try:
            return n.parse_text(raw, max_length=max_length)
        except n.FieldError as error:
            raise self.reject(field, raw, error.reason) from None

    def amount(
        self, values: Mapping[str, Any], field: str, currency: str, *, allow_zero: bool = True
    ) -> Decimal | None:
        raw = self.raw(values, field)
        if n.is_blank(raw):
            return None
        try:
            return n.parse_amount(raw, currency=currency, allow_zero=allow_zero)
        except n.FieldError as error:
            raise self.reject(field, raw, error.reason) from None

    def source_row(self, values: Mapping[str, Any]) -> str:
        get = values.get
        kept = {column: get(column) for column in self.kept_columns}
        for column, value in kept.items():
            if not (value is None or isinstance(value, str | int | bool)):
                kept[column] = str(value)  # floats, datetimes from Excel: as the tenant saw
        return json.dumps(kept, ensure_ascii=False, separators=(",", ":"))


# One row ready for COPY into the portfolio staging table (see pipeline.PORTFOLIO_STAGE).
AccountRow = tuple[Any, ...]
ContactRow = tuple[Any, ...]

_LEFT_OUT = "the account is loaded without"


class PortfolioReader(RowReader):
    """Turns one portfolio row into an account row and its contact rows (encrypted)."""

    key_field = "account_external_id"

    def __init__(
        self,
        columns: Mapping[str, str],
        options: Mapping[str, Any],
        defaults: TenantDefaults,
        *,
        cipher: PersonalDataCipher,
        as_of: dt.date,
    ) -> None:
        super().__init__(FeedKind.PORTFOLIO, columns, options, defaults)
        self.cipher = cipher
        self.as_of = as_of
        self.phone_region = str(options.get("phone_region") or defaults.jurisdiction).upper()
        default_type = "cn_resident" if defaults.jurisdiction == "CN" else "other"
        self.national_id_type = options.get("national_id_type", default_type)
        self._third_party = [
            slot for slot in THIRD_PARTY_SLOTS if f"contact{slot}_phone" in self.columns
        ]

    def read(
        self, number: int, values: Mapping[str, Any], external_id: str, row_hash: bytes
    ) -> tuple[AccountRow, list[ContactRow], RowWarnings]:
        """Validate, normalise and encrypt one row; raises ``Rejected`` on the first problem.

        A contact point that cannot be used is left out and returned as a warning.
        """
        full_name = self.text(values, "full_name", max_length=200, required=True)
        debtor_external_id = self.identifier(values, "debtor_external_id", required=False)
        national_id = self._national_id(values)
        profile = [full_name or ""]
        nid_ct = nid_idx = nid_masked = None
        if national_id is not None:
            nid_ct = self.cipher.encrypt(national_id, context="debtor.national_id")
            nid_idx = self.cipher.blind_index(national_id, context="debtor.national_id")
            nid_masked = mask(national_id, keep_start=4, keep_end=4)
            profile.append(national_id)
        if debtor_external_id is None:
            debtor_external_id = (
                "nid:" + nid_idx.hex()[:32] if nid_idx is not None else "acct:" + external_id
            )

        currency = self._currency(values)
        original = self.amount(values, "original_principal", currency)
        principal = self.amount(values, "outstanding_principal", currency)
        if original is None and principal is None:
            field = (
                "outstanding_principal"
                if "outstanding_principal" in self.columns
                else ("original_principal")
            )
            raise self.reject(field, self.raw(values, field), "required")
        if original is None:
            original = principal
        if principal is None:
            principal = original
        interest = self.amount(values, "outstanding_interest", currency) or Decimal(0)
        fees = self.amount(values, "outstanding_fees", currency) or Decimal(0)
        penalties = self.amount(values, "outstanding_penalties", currency) or Decimal(0)
        overdue = self.amount(values, "overdue_amount", currency)
        rate = self._percentage(values, "interest_rate")
        due_date, days_past_due = self._due(values)

        contacts, warnings = self._contact_points(number, debtor_external_id, values, profile)

        account: AccountRow = (
            number,
            external_id,
            debtor_external_id,
            full_name,
            nid_ct,
            nid_idx,
            nid_masked,
            self.text(values, "region", max_length=64),
            self.text(values, "language", max_length=16),
            self.text(values, "product", max_length=64),
            currency,
            original,
            principal,
            interest,
            fees,
            penalties,
            overdue,
            rate,
            due_date,
            days_past_due,
            self.source_row(values),
            row_hash,
            self.cipher.blind_index("\x1f".join(profile), context="account.profile"),
        )
        return account, contacts, warnings

    def _contact_points(
        self,
        number: int,
        debtor_external_id: str,
        values: Mapping[str, Any],
        profile: list[str],
    ) -> tuple[list[ContactRow], RowWarnings]:
        """The row's contact points, and warnings for those left out; extends ``profile``."""
        contacts: list[ContactRow] = []
        warnings: RowWarnings = []
        for field in ("phone", "phone2"):
            phone = self._phone(values, field, warnings)
            if phone is not None:
                number_text, verified = phone
                contacts.append(
                    self._contact(
                        number, debtor_external_id, "phone", "self", None, number_text, verified
                    )
                )
                profile.append(number_text)
        email = self._email(values, warnings)
        if email is not None:
            contacts.append(self._contact(number, debtor_external_id, "email", "self", None, email))
            profile.append(email)
        address = self._contact_text(values, "address", 500, warnings, "this address")
        if address is not None:
            contacts.append(
                self._contact(number, debtor_external_id, "address", "self", None, address)
            )
            profile.append(address)
        for slot in self._third_party:
            third = self._third_party_contact(values, slot, warnings)
            if third is None:
                continue
            (number_text, verified), relation, name = third
            contacts.append(
                self._contact(
                    number, debtor_external_id, "phone", relation, name, number_text, verified
                )
            )
            profile += [number_text, relation, name or ""]
        return contacts, warnings

    def _contact(  # noqa: PLR0917 - one contact row's columns, in COPY order
        self,
        number: int,
        debtor_external_id: str,
        kind: str,
        relation: str | None,
        name: str | None,
        value: str,
        verified: bool = True,
    ) -> ContactRow:
        context = f"contact.{kind}"
        if kind == "email":
            local, _, domain = value.partition("@")
            masked = mask(local, keep_start=1, keep_end=0) + "@" + domain
        elif kind == "address":
            masked = mask(value, keep_start=6, keep_end=0)
        else:  # +86 138****5678: the country code and the carrier prefix stay readable
            masked = mask(value, keep_start=6 if value.startswith("+86") else 5, keep_end=4)
        return (
            number,
            debtor_external_id,
            kind,
            relation or "self",
            name,
            self.cipher.encrypt(value, context=context),
            self.cipher.blind_index(value, context=context),
            masked[:64],
            verified,
        )

    def _national_id(self, values: Mapping[str, Any]) -> str | None:
        raw = self.raw(values, "national_id")
        if n.is_blank(raw):
            return None
        try:
            if self.national_id_type == "cn_resident":
                return n.parse_cn_national_id(raw)
            if isinstance(raw, float):  # the reason must not carry the number itself
                raise n.FieldError("stored as a number in Excel; export the column as text")
            return n.parse_text(raw, max_length=32).upper()
        except n.FieldError as error:
            raise self.reject("national_id", raw, error.reason) from None

    def _phone(
        self, values: Mapping[str, Any], field: str, warnings: RowWarnings
    ) -> tuple[str, bool] | None:
        """The phone in E.164 and whether it is verified; ``None`` (with a warning) if
        it cannot be dialled at all."""
        raw = self.raw(values, field)
        if n.is_blank(raw):
            return None
        try:
            return n.parse_contact_phone(raw, region=self.phone_region)
        except n.FieldError as error:
            warnings.append(self.reject(field, raw, f"{error.reason}; {_LEFT_OUT} this number"))
            return None

    def _email(self, values: Mapping[str, Any], warnings: RowWarnings) -> str | None:
        raw = self.raw(values, "email")
        if n.is_blank(raw):
            return None
        try:
            return n.parse_email(raw)
        except n.FieldError as error:
            warnings.append(self.reject("email", raw, f"{error.reason}; {_LEFT_OUT} this e-mail"))
            return None

    def _contact_text(
        self,
        values: Mapping[str, Any],
        field: str,
        max_length: int,
        warnings: RowWarnings,
        what: str,
    ) -> str | None:
        try:
            return self.text(values, field, max_length=max_length)
        except Rejected as rejected:
            rejected.reason = f"{rejected.reason}; {_LEFT_OUT} {what}"
            warnings.append(rejected)
            return None

    def _third_party_contact(
        self, values: Mapping[str, Any], slot: int, warnings: RowWarnings
    ) -> tuple[tuple[str, bool], str, str | None] | None:
        """A third party's phone, relation and name; ``None`` (with a warning) if any of
        them cannot be used, since a third party is only ever called with all three."""
        phone = self._phone(values, f"contact{slot}_phone", warnings)
        if phone is None:
            return None
        what = f"third-party contact {slot}"
        before = len(warnings)
        field = f"contact{slot}_relation"
        relation = self._contact_text(values, field, 32, warnings, what)
        if relation is None and len(warnings) == before:
            reason = f"required with a third-party phone; {_LEFT_OUT} {what}"
            warnings.append(self.reject(field, self.raw(values, field), reason))
        name = self._contact_text(values, f"contact{slot}_name", 200, warnings, what)
        if relation is None or len(warnings) > before:
            return None
        return phone, relation, name

    def _currency(self, values: Mapping[str, Any]) -> str:
        raw = self.raw(values, "currency")
        if n.is_blank(raw):
            return self.currency
        try:
            return n.parse_currency(raw)
        except n.FieldError as error:
            raise self.reject("currency", raw, error.reason) from None

    def _percentage(self, values: Mapping[str, Any], field: str) -> Decimal | None:
        raw = self.raw(values, field)
        if n.is_blank(raw):
            return None
        try:
            return n.parse_percentage(raw)
        except n.FieldError as error:
            raise self.reject(field, raw, error.reason) from None

    def _due(self, values: Mapping[str, Any]) -> tuple[dt.date, int]:
        raw_date = self.raw(values, "due_date")
        raw_dpd = self.raw(values, "days_past_due")
        dpd: int | None = None
        if not n.is_blank(raw_dpd):
            try:
                dpd = n.parse_int(raw_dpd, minimum=0, maximum=36500)
            except n.FieldError as error:
                raise self.reject("days_past_due", raw_dpd, error.reason) from None
        if not n.is_blank(raw_date):
            try:
                due = n.parse_date(raw_date, day_first=self.day_first)
            except n.FieldError as error:
                raise self.reject("due_date", raw_date, error.reason) from None
            if dpd is None:
                dpd = max(0, (self.as_of - due).days)
            return due, dpd
        if dpd is None:
            field = "due_date" if "due_date" in self.columns else "days_past_due"
            raise self.reject(field, None, "required")
        return self.as_of - dt.timedelta(days=dpd), dpd


# One row ready for COPY into the payments staging table (see pipeline.PAYMENT_STAGE).
PaymentRow = tuple[Any, ...]


class PaymentReader(RowReader):
    """Turns one payment-feed row into a payment or reversal row."""

    key_field = "payment_external_id"

    def __init__(
        self, columns: Mapping[str, str], options: Mapping[str, Any], defaults: TenantDefaults
    ) -> None:
        super().__init__(FeedKind.PAYMENTS, columns, options, defaults)

    def read(
        self, number: int, values: Mapping[str, Any], external_id: str, row_hash: bytes
    ) -> PaymentRow:
        """Validate and normalise one payment row; raises ``Rejected`` on the first problem."""
        account = self.identifier(values, "account_external_id", required=True)
        raw_currency = self.raw(values, "currency")
        currency = self.currency
        if not n.is_blank(raw_currency):
            try:
                currency = n.parse_currency(raw_currency)
            except n.FieldError as error:
                raise self.reject("currency", raw_currency, error.reason) from None
        raw_amount = self.raw(values, "amount")
        if n.is_blank(raw_amount):
            raise self.reject("amount", raw_amount, "required")
        amount = self.amount(values, "amount", currency, allow_zero=False)
        raw_paid_at = self.raw(values, "paid_at")
        if n.is_blank(raw_paid_at):
            raise self.reject("paid_at", raw_paid_at, "required")
        try:
            paid_at = n.parse_datetime(
                raw_paid_at, day_first=self.day_first, default_tz=self.timezone
            )
        except n.FieldError as error:
            raise self.reject("paid_at", raw_paid_at, error.reason) from None
        paid_to = (self.text(values, "paid_to", max_length=16) or "tenant").lower()
        if paid_to not in PAID_TO:
            raise self.reject("paid_to", paid_to, f"one of {', '.join(PAID_TO)}")
        channel = self.text(values, "channel", max_length=32)
        reverses = self.identifier(values, "reverses_payment_external_id", required=False)
        return (
            number,
            external_id,
            account,
            "reversal" if reverses else "payment",
            amount,
            currency,
            paid_at,
            channel.lower() if channel else None,
            paid_to,
            reverses,
            row_hash,
        )
