"""The JSON API: flask-smorest set-up, pagination over SQL, and tenant-scoped routes.

It also holds what keeps every input inside what the database can store, for all
operations at once: path converters bounded to the id columns' range, the input schema
base that bounds integers, decimals and dates and refuses text PostgreSQL cannot hold,
page numbers within range, and the documentation of all of it in the OpenAPI document.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import flask_smorest
from flask import Flask, request
from flask_smorest import Api, Page
from flask_smorest.fields import Upload
from marshmallow import RAISE, Schema, ValidationError, fields, validate
from sqlalchemy import Select, func, select, text
from webargs.flaskparser import FlaskParser
from werkzeug.datastructures import CombinedMultiDict, FileStorage
from werkzeug.routing import BaseConverter, IntegerConverter

from recova.platform.kernel.errors import abort
from recova.platform.kernel.request_scope import db_session

API_PREFIX = "/api/v1"
NAMED_TENANT_PREFIX = "/tenants/<slug:tenant_slug>"

#: PostgreSQL ``integer`` and ``bigint``: every id column is one or the other.
INT4_MIN, INT4_MAX = -(2**31), 2**31 - 1
INT8_MIN, INT8_MAX = -(2**63), 2**63 - 1
#: The largest amount any input may carry (money columns are ``NUMERIC(20, 4)``).
DECIMAL_MAX = decimal.Decimal(10) ** 15
#: Decimal places an input may carry; more cannot be stored by any numeric column.
DECIMAL_MAX_PLACES = 10
#: Dates an input may name: wide for any loan, narrow enough that date arithmetic
#: (grace periods, month ends, time zones) never leaves Python's calendar.
DATE_MIN, DATE_MAX = dt.date(1900, 1, 1), dt.date(9998, 12, 31)
#: Page numbers beyond this are refused; the offset they give stays a ``bigint``.
MAX_PAGE = INT4_MAX
#: How decimals travel: strings, so no client parses money into a float.
DECIMAL_PATTERN = r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$"

T = TypeVar("T")


# --- path converters --------------------------------------------------------------------


class IdConverter(IntegerConverter):
    """``<int:...>``: a non-negative id within PostgreSQL's ``integer``, else no route (404).

    Installed as the app's ``int`` converter, so every id in every path is bounded; an id
    beyond the column's range cannot exist, and would otherwise reach the database.
    """

    default_max = INT4_MAX

    def __init__(
        self,
        map: Any,  # werkzeug's own parameter names: rules pass them by name
        fixed_digits: int = 0,
        min: int | None = None,
        max: int | None = None,
        signed: bool = False,
    ) -> None:
        super().__init__(map, fixed_digits, min, self.default_max if max is None else max, signed)


class BigIdConverter(IdConverter):
    """``<bigint:...>``: an id of a ``bigint`` column."""

    default_max = INT8_MAX


def install_url_converters(
    app: Flask, extra: Mapping[str, type[BaseConverter]] | None = None
) -> None:
    """Bound every path parameter (ids here, and the ``extra`` converters a domain owns,
    such as tenancy's ``slug``); call before any route is registered."""
    app.url_map.converters.update(int=IdConverter, bigint=BigIdConverter, **(extra or {}))


# --- OpenAPI documentation of the fields ---------------------------------------------------


def _number(value: Any) -> int | float:
    """A bound as a JSON number (apispec would write a Decimal bound as a string)."""
    number = decimal.Decimal(value)
    return int(number) if number == number.to_integral_value() else float(number)


def _decimal_properties(
    converter: Any, field: fields.Field, ret: dict[str, Any], **_: Any
) -> dict[str, Any]:
    """Document a decimal as the string it travels as, with its bounds as numbers.

    (An apispec attribute function: bound to the field converter, so it comes first.)
    """
    if not isinstance(field, fields.Decimal):
        return {}
    ret.pop("x-minimum", None)
    ret.pop("x-maximum", None)
    properties: dict[str, Any] = {"pattern": DECIMAL_PATTERN}
    for validator in field.validators:
        if not isinstance(validator, validate.Range):
            continue
        if validator.min is not None:
            properties["minimum"] = _number(validator.min)
            if not validator.min_inclusive:
                properties["exclusiveMinimum"] = True
        if validator.max is not None:
            properties["maximum"] = _number(validator.max)
            if not validator.max_inclusive:
                properties["exclusiveMaximum"] = True
    return properties


def document_api_fields(
    api: Api,
    converters: Iterable[tuple[type[BaseConverter], Callable[[Any], dict[str, Any]]]] = (),
) -> None:
    """Teach the OpenAPI document Recova's fields and ``converters`` (each with the
    function that documents its parameter); call before any blueprint.

    Decimals are sent as strings (``as_string``, and Flask's JSON writes any Decimal as a
    string), so every ``fields.Decimal`` is documented as ``type: string, format: decimal``.
    """
    api.register_field(fields.Decimal, "string", "decimal")
    api.ma_plugin.converter.add_attribute_function(_decimal_properties)  # type: ignore[union-attr]
    for converter, document in converters:
        api.register_converter(converter, document)


# --- input fields ------------------------------------------------------------------------


class BigInteger(fields.Integer):
    """An integer for a ``bigint`` column (an audit sequence number, a ledger line id)."""


def refuse_unstorable_text(value: Any) -> None:
    """Refuse NUL characters and unpaired surrogates anywhere in a value.

    PostgreSQL text and JSON cannot hold either, so they would fail in the database
    rather than here, where the field can be named.
    """
    if isinstance(value, str):
        if "\x00" in value:
            raise ValidationError("Must not contain NUL (\\x00) characters.")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError("Must not contain unpaired surrogate characters.") from None
    elif isinstance(value, Mapping):
        for key, item in value.items():
            refuse_unstorable_text(key)
            refuse_unstorable_text(item)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            refuse_unstorable_text(item)


def _range_bounds(field: fields.Field) -> tuple[bool, bool]:
    ranges = [v for v in field.validators if isinstance(v, validate.Range)]
    return any(v.min is not None for v in ranges), any(v.max is not None for v in ranges)


def _decimal_places(value: decimal.Decimal) -> None:
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -DECIMAL_MAX_PLACES:
        raise ValidationError(f"Must have at most {DECIMAL_MAX_PLACES} decimal places.")


def _date_within(value: dt.date) -> None:
    day = value.date() if isinstance(value, dt.datetime) else value
    if not DATE_MIN <= day <= DATE_MAX:
        raise ValidationError(f"Must be a date from {DATE_MIN} to {DATE_MAX}.")


def guard_input_field(field: fields.Field) -> None:
    """Keep what ``field`` accepts storable: bounds where it names none, text PostgreSQL holds.

    An integer without bounds gets its column's range (``integer``, or ``bigint`` for a
    ``BigInteger``), a decimal ``±10**15`` and at most ten places, a date the years 1900 to
    9998; every value is checked for NUL and unpaired surrogates. Inner fields of lists,
    tuples and dicts get the same.
    """
    for inner in _inner_fields(field):
        guard_input_field(inner)
    if getattr(field, "_recova_guarded", False):
        return
    field._recova_guarded = True  # type: ignore[attr-defined]
    extra: list[Callable[[Any], Any]] = []
    if isinstance(field, fields.Integer):
        low, high = (INT8_MIN, INT8_MAX) if isinstance(field, BigInteger) else (INT4_MIN, INT4_MAX)
        has_min, has_max = _range_bounds(field)
        extra.append(validate.Range(min=None if has_min else low, max=None if has_max else high))
    elif isinstance(field, fields.Decimal):
        has_min, has_max = _range_bounds(field)
        extra.append(
            validate.Range(
                min=None if has_min else -DECIMAL_MAX, max=None if has_max else DECIMAL_MAX
            )
        )
        extra.append(_decimal_places)
    elif isinstance(field, fields.Date | fields.DateTime):
        extra.append(_date_within)
    elif not isinstance(field, fields.Boolean | fields.Float | Upload):
        extra.append(refuse_unstorable_text)
    field.validators = [*field.validators, *extra]


def _inner_fields(field: fields.Field) -> list[fields.Field]:
    if isinstance(field, fields.List):
        return [field.inner]
    if isinstance(field, fields.Tuple):
        return list(field.tuple_fields)
    if isinstance(field, fields.Dict):
        return [f for f in (field.key_field, field.value_field) if f is not None]
    return []


class FileUpload(Upload):
    """A multipart file part; a plain form value under the same name is refused."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, FileStorage):
            raise ValidationError("Not a file: send it as a file part of a multipart form.")
        return value


# --- a multipart location: form fields and files in one schema ---------------------------


class ApiArgumentsParser(FlaskParser):
    """webargs' Flask parser with ``multipart``: a form's fields and files together."""

    __location_map__ = {**FlaskParser.__location_map__, "multipart": "load_multipart"}

    def load_multipart(self, req: Any, schema: Schema) -> Any:
        """Files first: a file part wins over a form field of the same name."""
        return self._makeproxy(CombinedMultiDict([req.files, req.form]), schema)


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint, able to take an upload and its form fields as one body.

    flask-smorest documents one request body per operation, so ``form`` and ``files``
    arguments on one view give a broken document; ``location="multipart"`` is one body,
    documented as ``multipart/form-data``.
    """

    ARGUMENTS_PARSER = ApiArgumentsParser()
    DEFAULT_LOCATION_CONTENT_TYPE_MAPPING = {
        **flask_smorest.Blueprint.DEFAULT_LOCATION_CONTENT_TYPE_MAPPING,
        "multipart": "multipart/form-data",
    }


# --- pagination --------------------------------------------------------------------------


class _BoundedPage(Page):  # type: ignore[type-arg]
    def __init__(self, collection: Any, page_params: Any) -> None:
        if page_params.page > MAX_PAGE:
            message = f"Must be less than or equal to {MAX_PAGE}."
            abort(422, message=f"page: {message}", errors={"query": {"page": [message]}})
        super().__init__(collection, page_params)


class SelectPage(_BoundedPage):
    """Pages through a SQLAlchemy ``select()`` with LIMIT/OFFSET and a COUNT."""

    collection: Select[Any]

    @property
    def items(self) -> list[Any]:
        statement = self.collection.limit(self.page_params.page_size).offset(
            self.page_params.first_item
        )
        return list(db_session().scalars(statement))

    @property
    def item_count(self) -> int:
        counted = select(func.count()).select_from(self.collection.order_by(None).subquery())
        return int(db_session().scalar(counted) or 0)


@dataclass(frozen=True)
class TextQuery:
    """A textual query with its parameters and ordering, for ``RowsPage``.

    (A view returning a bare tuple would be read by Flask as body, status, headers.)
    """

    sql: str
    params: dict[str, Any]
    order: str


class RowsPage(_BoundedPage):
    """Pages through a ``TextQuery``, returning mappings.

    The query text is the caller's own SQL (a ``UNION ALL`` over tenant schemas, whose
    names are validated slugs, always quoted) with every value bound; only the paging
    values are added here, bound too.
    """

    collection: TextQuery

    @property
    def items(self) -> list[Any]:
        sql, params, order = self.collection.sql, self.collection.params, self.collection.order
        statement = text(f"SELECT * FROM ({sql}) AS rows ORDER BY {order} LIMIT :lim OFFSET :off")  # noqa: S608
        bound = {**params, "lim": self.page_params.page_size, "off": self.page_params.first_item}
        return list(db_session().execute(statement, bound).mappings())

    @property
    def item_count(self) -> int:
        sql, params = self.collection.sql, self.collection.params
        counted = text(f"SELECT count(*) FROM ({sql}) AS rows")  # noqa: S608
        return int(db_session().scalar(counted, params) or 0)


def one_or_404(statement: Select[T], what: str) -> T:
    """The one object ``statement`` selects, or a 404 saying ``no {what}``.

    The statement carries every rule of who may see what (a tenant's own rows, an
    agency's placements, a collector's cases): what the caller may not reach is answered
    as if it did not exist.
    """
    found = db_session().scalar(statement)
    if found is None:
        abort(404, message=f"no {what}")
    return found


def tenant_routes(blp: Blueprint, rule: str, **options: Any) -> Callable[[Any], Any]:
    """Register a view at ``rule`` (the caller's own tenant) and under ``/tenants/<slug>``.

    Tenant users and API clients use the short form; platform admins and agency users name
    the tenant. Both forms run the same view; the access rule resolves the tenant.
    """

    def decorator(view: Any) -> Any:
        name = options.pop("endpoint", None) or view.__name__
        blp.route(rule, endpoint=name, **options)(view)
        blp.route(NAMED_TENANT_PREFIX + rule, endpoint=f"{name}InNamedTenant", **options)(view)
        return view

    return decorator


def reject_unknown_query_parameters(apidoc: dict[str, Any]) -> None:
    """Answer 422 for query parameters the operation does not declare.

    webargs ignores unknown query parameters, so ``/cases?stauts=closed`` would quietly
    list every case. The operation's own documentation (its query argument schemas and
    its pagination) says which names exist.
    """
    if not request.args:
        return
    allowed: set[str] = set()
    declared = [
        parameter["schema"]
        for parameter in apidoc.get("arguments", {}).get("parameters", [])
        if parameter.get("in") == "query"
    ]
    if "pagination" in apidoc:
        declared.append(apidoc["pagination"]["parameters"]["schema"])
    for schema in declared:
        instance = schema() if isinstance(schema, type) else schema
        allowed.update(field.data_key or name for name, field in instance.fields.items())
    unknown = sorted(set(request.args) - allowed)
    if unknown:
        abort(
            422,
            message=f"unknown query parameter(s): {', '.join(unknown)}",
            errors={"query": {name: ["Unknown field."] for name in unknown}},
        )


class StrictSchema(Schema):
    """Base for input schemas: an unknown field is an error, whatever the default, and
    every field accepts only what can be stored (``guard_input_field``)."""

    class Meta:
        unknown = RAISE

    def on_bind_field(self, field_name: str, field_obj: fields.Field) -> None:
        guard_input_field(field_obj)


class ErrorSchema(Schema):
    """The one error shape every API error uses."""

    code = fields.Int(required=True)
    status = fields.Str(required=True)
    message = fields.Str()
    errors = fields.Dict()
