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


def round_sql(value: str, places: str, mode: str) -> str:
    """SQL rounding ``value`` (numeric) to ``places`` digits under ``mode`` (all SQL text).

    ``mode`` is an SQL expression yielding one of ``ROUNDING_MODES``; the CASE picks the
    rule per row, so lines of different contract versions round in one statement.
    PostgreSQL's ``round(numeric)`` rounds half away from zero; the other modes are built
    from ``trunc``, ``floor`` and ``ceil`` on the value scaled to whole minor units.
    """
    scaled = f"(({value}) * power(10::numeric, {places}))"
    down = f"trunc({scaled})"
    fraction = f"abs({scaled} - {down})"
    away = f"({down} + sign({scaled}))"
    half_even = (
        f"CASE WHEN {fraction} = 0.5"
        f" THEN CASE WHEN mod({down}, 2) = 0 THEN {down} ELSE {away} END"
        f" ELSE round({scaled}) END"
    )
    half_down = f"CASE WHEN {fraction} = 0.5 THEN {down} ELSE round({scaled}) END"
    up = f"CASE WHEN {fraction} = 0 THEN {down} ELSE {away} END"
    whole = (
        f"CASE {mode}"
        f" WHEN 'half_even' THEN {half_even}"
        f" WHEN 'half_up' THEN round({scaled})"
        f" WHEN 'half_down' THEN {half_down}"
        f" WHEN 'up' THEN {up}"
        f" WHEN 'down' THEN {down}"
        f" WHEN 'ceiling' THEN ceil({scaled})"
        f" WHEN 'floor' THEN floor({scaled})"
        f" END"
    )
    return f"(({whole}) / power(10::numeric, {places}))"
