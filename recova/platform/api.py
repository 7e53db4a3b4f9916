"""The JSON API: flask-smorest set-up, pagination over SQL, and tenant-scoped routes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import request
from flask_smorest import Blueprint, Page
from marshmallow import RAISE, Schema, fields
from sqlalchemy import Select, func, select, text

from recova.platform.errors import abort
from recova.platform.request_scope import db_session

API_PREFIX = "/api/v1"
NAMED_TENANT_PREFIX = "/tenants/<tenant_slug>"


class SelectPage(Page):
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


class RowsPage(Page):  # type: ignore[type-arg]
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
    """Base for input schemas: an unknown field is an error, whatever the default."""

    class Meta:
        unknown = RAISE


class ErrorSchema(Schema):
    """The one error shape every API error uses."""

    code = fields.Int(required=True)
    status = fields.Str(required=True)
    message = fields.Str()
    errors = fields.Dict()
