"""What every operator page shares: its access rule, form parts and paging."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from flask import g, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from wtforms import DateField, DecimalField, Field, IntegerField
from wtforms.validators import InputRequired, Length

from recova.platform.auth.models import Role
from recova.platform.auth.principal import Principal
from recova.platform.web.pages import web_page

F = TypeVar("F", bound=Callable[..., Any])

PAGE_SIZE = 50
#: Operators work across tenants' time zones: their pages show moments in UTC.
OPS_TIMEZONE = "UTC"


def ops_page(view: F) -> F:
    """An operator page: platform admins read and change; nobody else opens it."""
    return web_page([Role.PLATFORM_ADMIN], write=[Role.PLATFORM_ADMIN])(view)


def principal() -> Principal:
    """The signed-in operator."""
    signed_in: Principal = g.page_principal
    return signed_in


def required() -> InputRequired:
    return InputRequired(message=_l("This field is required."))


def at_most(length: int) -> Length:
    return Length(max=length, message=_l("At most %(max)d characters."))


class WholeNumberField(IntegerField):
    """An integer input whose parse error is in the page's language."""

    def process_formdata(self, valuelist: list[Any]) -> None:
        if not valuelist or valuelist[0] in ("", None):
            self.data = None
            return
        try:
            self.data = int(str(valuelist[0]).strip())
        except ValueError as exc:
            self.data = None
            raise ValueError(_("Enter a whole number.")) from exc


def add_error(field: Field, message: str) -> None:
    """Show ``message`` beside ``field`` (after the form validated, errors is a list)."""
    errors = field.errors if isinstance(field.errors, list) else []
    errors.append(message)
    field.errors = errors


def text_after() -> str | None:
    """The keyset cursor of a list ordered by slug (``?after=<slug>``)."""
    return request.args.get("after") or None


def id_after() -> int | None:
    """The keyset cursor of a list ordered by id (``?after=<id>``)."""
    value = request.args.get("after", "")
    return int(value) if value.isdigit() else None


class DayField(DateField):
    """A date input (``YYYY-MM-DD``) whose parse error is in the page's language."""

    def process_formdata(self, valuelist: list[Any]) -> None:
        if not valuelist or not str(valuelist[0]).strip():
            self.data = None
            return
        try:
            self.data = dt.date.fromisoformat(str(valuelist[0]).strip())
        except ValueError as exc:
            self.data = None
            raise ValueError(_("Enter a date such as 2026-01-31.")) from exc


class PercentField(DecimalField):
    """A percentage (a decimal number, never a float) with the page's parse error."""

    def process_formdata(self, valuelist: list[Any]) -> None:
        if not valuelist or not str(valuelist[0]).strip():
            self.data = None
            return
        try:
            self.data = Decimal(str(valuelist[0]).strip())
        except InvalidOperation as exc:
            self.data = None
            raise ValueError(_("Enter a number such as 12.5.")) from exc
        if not self.data.is_finite():
            self.data = None
            raise ValueError(_("Enter a number such as 12.5."))
