"""Money in billing: each currency's minor unit and the rounding modes, in Python and in SQL.

A commission line is rounded once, to its currency's minor unit (ISO 4217, as Babel knows
it: 2 for CNY and USD, 0 for JPY, 3 for KWD) under its contract version's rounding mode.
The SQL expression and ``round_money`` give the same answer for every value: the close
rounds a million lines in the database, the API and the tests round in Python, and the
two must agree to the last digit.
"""

from __future__ import annotations

import decimal
from decimal import Decimal

from babel.numbers import get_currency_precision

#: Rounding modes a contract version may name, with the ``decimal`` constant of each.
ROUNDING_MODES: dict[str, str] = {
    "half_even": decimal.ROUND_HALF_EVEN,
    "half_up": decimal.ROUND_HALF_UP,
    "half_down": decimal.ROUND_HALF_DOWN,
    "up": decimal.ROUND_UP,
    "down": decimal.ROUND_DOWN,
    "ceiling": decimal.ROUND_CEILING,
    "floor": decimal.ROUND_FLOOR,
}
DEFAULT_ROUNDING = "half_even"


def minor_units(currency: str) -> int:
    """Digits after the point in ``currency``'s minor unit (2 for CNY, 0 for JPY)."""
    return int(get_currency_precision(currency.upper()))


def round_money(amount: Decimal, currency: str, mode: str = DEFAULT_ROUNDING) -> Decimal:
    """``amount`` rounded to ``currency``'s minor unit under ``mode``."""
    return round_places(amount, minor_units(currency), mode)


def round_places(amount: Decimal, places: int, mode: str = DEFAULT_ROUNDING) -> Decimal:
    """``amount`` rounded to ``places`` digits after the point under ``mode``."""
    exponent = Decimal(1).scaleb(-places)
    with decimal.localcontext() as context:
        context.prec = 60  # money never comes near this; no intermediate step rounds
        return amount.quantize(exponent, rounding=ROUNDING_MODES[mode])


def round_sql(value: str, places: str, mode: str, *, unit: str | None = None) -> str:
    """SQL rounding ``value`` (numeric) to ``places`` digits after the point under ``mode``.

    All arguments are SQL text. ``mode`` is a quoted mode name (``'half_even'``) or an
    SQL expression yielding one of ``ROUNDING_MODES``, in which case a CASE picks the
    rule per row, so lines of different contract versions round in one statement.
    ``unit``, if given, is an expression for 10 ** places (a column, so it is not
    computed per row). ``value`` appears several times: pass a column, not an expression
    to compute. PostgreSQL's ``round(numeric, int)`` rounds half away from zero and
    ``trunc`` toward it; the other modes are built from those two.
    """
    unit = unit or f"power(10::numeric, {places})"
    down = f"trunc({value}, {places})"
    near = f"round({value}, {places})"
    on_half = f"abs({value} - {down}) * 2 * {unit} = 1"
    step = f"sign({value}) / {unit}"
    branches = {
        "half_even": f"CASE WHEN {on_half} AND mod({down} * {unit}, 2) = 0 THEN {down}"
        f" ELSE {near} END",
        "half_up": near,
        "half_down": f"CASE WHEN {on_half} THEN {down} ELSE {near} END",
        "up": f"CASE WHEN {value} = {down} THEN {down} ELSE {down} + {step} END",
        "down": down,
        "ceiling": f"CASE WHEN {value} <= {down} THEN {down} ELSE {down} + 1 / {unit} END",
        "floor": f"CASE WHEN {value} >= {down} THEN {down} ELSE {down} - 1 / {unit} END",
    }
    if mode.strip("'") in branches:  # one mode known in advance: no per-row choice
        return f"({branches[mode.strip(chr(39))]})"
    whens = " ".join(f"WHEN '{name}' THEN {branch}" for name, branch in branches.items())
    return f"(CASE {mode} {whens} END)"
