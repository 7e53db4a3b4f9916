"""Turn raw values from tenant files into exact, validated Python values.

Connectors hand the ingestion pipeline raw values: strings from CSV files, cell values
from Excel (``str``, ``int``, ``float``, ``datetime`` or ``None``) and JSON scalars.
Each ``parse_*`` function here turns one raw value into the field's Python value or
raises :class:`FieldError`. A ``FieldError.reason`` is short, says what is wrong in
words a tenant understands, and is shown in error reports and logs. Reasons for
personal data (national IDs, phone numbers, email addresses) never repeat the value;
the pipeline stores the value separately, masked.

Every parser rejects a blank value (``None``, ``""``, whitespace) with the reason
"empty"; the pipeline calls :func:`is_blank` first to tell a missing optional field
from a missing required one.

Rules tenants' engineers should know:

Amounts
    Written with a ``.`` decimal point. ``,`` is only a thousands separator and must
    separate groups of exactly three digits: ``1,234.50`` and ``1234.50`` are amounts,
    ``1,23``, ``12,3456`` and the European ``1.234,50`` are rejected rather than
    guessed at. A currency code (``CNY 12.00``, ``12.00 USD``), symbol (``¥``, ``$``)
    or ``元`` may surround the number; it must agree with the field's currency.
    Negative amounts are ``-12.00`` or the accounting form ``(12.00)`` and are only
    accepted where the field allows them. Scientific notation, NaN and infinity are
    rejected, as are values of 10^15 or more. An amount may not have more decimal
    places than its currency's minor unit (two for CNY and USD, none for JPY);
    trailing zeros beyond it are fine (``12.500`` CNY is 12.50). Numbers from Excel
    are taken as the decimal a person typed (``1234.5`` is 1234.50), never rounded.
    Minor units follow the CLDR data shipped with babel, which agrees with ISO 4217
    for CNY, USD, JPY and KWD but says 0 for a few currencies whose ISO minor unit
    is not used in practice (IDR, HUF, COP, IQD, ...).

Percentages
    ``12.5%`` (or ``12.5 %``, or with a full-width percent sign) is 0.125. A number
    without a ``%`` sign is read as a fraction, so ``0.125`` is 12.5% and ``1`` is
    100%; a bare number above 1 (``12.5``) is ambiguous and rejected: write ``12.5%``
    or ``0.125``. This includes numbers from Excel, because a cell formatted as a
    percentage arrives as its fraction (12.5% arrives as 0.125) and cannot be told
    apart from a typed 12.5; so a rate above 100% must be written as text with a ``%``
    sign. The range is 0% to 1000%.

Dates
    Years have four digits (``05/03/24`` is rejected) and lie in 1900-2100. Year-first
    forms are unambiguous: ``2024-03-05``, ``2024/3/5``, ``2024.3.5``, ``20240305``,
    ``2024年3月5日``; a time after the date (``2024-03-05 10:00:00``) is allowed. The
    forms ``05/03/2024``, ``5/3/2024`` and ``05-03-2024`` are read month first
    (US: 5 March is ``03/05/2024``) unless the tenant's file is configured day first.
    Where a date has no time, a datetime field takes midnight in the tenant's time
    zone; a datetime without an offset is in the tenant's time zone.

Excel serial dates
    A date cell Excel stored as a plain number (an ``int``/``float`` or a digit-only
    string other than the 8-digit ``YYYYMMDD`` form) is a serial day number in
    Excel's 1900 date system: 1 is 1900-01-01 and 45356 is 2024-03-05. Serial 60 is
    Excel's 1900-02-29, a day that never existed, and is rejected; a serial whose
    value is a plausible year (1900-2100) is rejected too, because a year alone is
    not a date. A fraction of a serial is the time of day, rounded to the millisecond.

National IDs (PRC resident identity card, GB 11643-1999)
    18 characters: 17 digits and a check character (a digit or ``X``), with a real
    birth date. Old 15-digit IDs are not accepted. An ID column must be exported as
    text: once Excel stores an ID as a number it keeps only 15 digits, so any numeric
    value (or its text, ``1.10105E+17`` or ``110105199003074000.0``) is rejected.

Phone numbers
    Returned in E.164 (``+8613812345678``). Numbers without a country code are read
    in the tenant's region; spaces, dashes and parentheses are ignored. Validity is
    decided by the ``phonenumbers`` library's metadata. A contact point's number that
    the metadata calls possible but not valid is kept as unverified
    (``parse_contact_phone``).

Identifiers
    External ids (loan numbers, account ids) are kept as text. A number Excel stored
    with more than 15 digits, or showed in scientific notation, has lost digits and
    is rejected with a request to export the column as text.
"""

from __future__ import annotations

import calendar
import math
import operator
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal
from functools import cache

import phonenumbers
from babel.core import get_global
from babel.numbers import get_currency_precision, get_currency_symbol


class FieldError(ValueError):
    """A raw value that cannot become its field's value; ``reason`` is safe to show and log."""

    reason: str

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_EMPTY = "empty"
_EXCEL_SCIENTIFIC = (
    "looks like a number Excel converted to scientific notation{}; export the column as text"
)
_EXCEL_NUMBER = (
    "was stored as a number in Excel, which keeps only 15 digits{}; export the column as text"
)
# Excel keeps 15 significant digits; a whole number at or above this may have lost some.
_EXCEL_EXACT_LIMIT = 10**15
_SCIENTIFIC = re.compile(r"[+-]?\d+(?:[.,]\d+)?[eE][+-]?\d+")
# Excel shows large numbers as d.dddddE+nn, pandas writes 1.1e+17; ids such as 3E10
# (no sign in the exponent) are left alone.
_EXCEL_SCIENTIFIC_ID = re.compile(r"[+-]?\d+(?:[.,]\d+)?[eE][+-]\d+")


def is_blank(raw: object) -> bool:
    """Whether a raw value counts as missing: None, an empty or whitespace-only string."""
    return raw is None or (isinstance(raw, str) and (not raw or raw.isspace()))


def _nfkc(text: str) -> str:
    # Chinese input methods produce full-width digits, signs and spaces.
    if text.isascii():
        return text
    return unicodedata.normalize("NFKC", text)


# --------------------------------------------------------------------------- text


def _scalar_text(raw: object) -> str:
    if isinstance(raw, str):
        return raw.strip()
    if raw is None:
        raise FieldError(_EMPTY)
    if isinstance(raw, bool):
        # Spelled as the tenant saw it in the Excel cell.
        return "TRUE" if raw else "FALSE"
    if isinstance(raw, float):
        if not math.isfinite(raw):
            raise FieldError("not text")
        # Excel stores every number as a double: an id cell 12345 may arrive as 12345.0.
        return str(int(raw)) if raw.is_integer() else repr(raw)
    if isinstance(raw, int | Decimal | date):
        return str(raw)
    raise FieldError("not text")


def parse_text(raw: object, *, max_length: int) -> str:
    """Free text (names, addresses, notes) from any scalar, stripped at both ends."""
    text = _scalar_text(raw)
    if not text:
        raise FieldError(_EMPTY)
    if len(text) > max_length:
        raise FieldError(f"longer than {max_length} characters")
    return text


def parse_identifier(raw: object, *, max_length: int = 128) -> str:
    """An external id (loan or account number) as text, refusing ids Excel has mangled."""
    if isinstance(raw, float):
        if math.isfinite(raw) and abs(raw) >= _EXCEL_EXACT_LIMIT:
            raise FieldError(_EXCEL_NUMBER.format(f" ({raw:.6G})"))
        text = _scalar_text(raw)
        if "e" in text:
            raise FieldError(_EXCEL_SCIENTIFIC.format(f" ({raw:.6G})"))
    elif isinstance(raw, str):
        text = raw.strip()
        if not text.isascii():
            # So that the same id typed with full-width characters matches across files.
            text = unicodedata.normalize("NFKC", text).strip()
        if _EXCEL_SCIENTIFIC_ID.fullmatch(text):
            raise FieldError(_EXCEL_SCIENTIFIC.format(f" ({text})"))
    else:
        text = _scalar_text(raw)
    if not text:
        raise FieldError(_EMPTY)
    if not text.isprintable():
        raise FieldError("contains control or invisible characters")
    if len(text) > max_length:
        raise FieldError(f"longer than {max_length} characters")
    return text


# ----------------------------------------------------------------------- currency

# Common names that are not ISO codes but name exactly one currency.
_CURRENCY_ALIASES = {"RMB": "CNY", "人民币": "CNY", "美元": "USD"}
_SYMBOL_MEANINGS = {"¥": "CNY or JPY", "$": "USD, CAD, AUD, HKD, ...", "元": "CNY, HKD, TWD, ..."}


@cache
def _currencies_in_use() -> frozenset[str]:
    # CLDR's territory data marks when each legal tender stopped being used; codes
    # without an end date are current. Test and fund codes (XXX, XTS, CLF) are absent.
    codes = set()
    for history in get_global("territory_currencies").values():
        for code, _start, end, tender in history:
            if tender and end is None:
                codes.add(code)
    return frozenset(codes)


def parse_currency(raw: object) -> str:
    """An ISO 4217 code of a currency in use today, from a code or an unambiguous name."""
    if not isinstance(raw, str):
        raise FieldError(_EMPTY if raw is None else "not a currency code")
    text = raw.strip()
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text).strip()
    if not text:
        raise FieldError(_EMPTY)
    code = text.upper()
    if code in _currencies_in_use():
        return code
    alias = _CURRENCY_ALIASES.get(code)
    if alias is not None:
        return alias
    meaning = _SYMBOL_MEANINGS.get(text)
    if meaning is not None:
        raise FieldError(f"currency symbol '{text}' is ambiguous ({meaning}); write the ISO code")
    if len(text) <= 2 and all(unicodedata.category(c) == "Sc" for c in text):
        raise FieldError(f"write the ISO currency code, not the symbol '{text}'")
    shown = text if len(text) <= 12 else text[:12] + "..."
    raise FieldError(f"unknown currency '{shown}'")


# Canonical code -> (code, minor unit, quantum); filled only with codes parse_currency accepts.
_CURRENCY_INFO: dict[str, tuple[str, int, Decimal]] = {}


def _currency_info(currency: str) -> tuple[str, int, Decimal]:
    info = _CURRENCY_INFO.get(currency)
    if info is None:
        code = parse_currency(currency)
        minor = get_currency_precision(code)
        info = (code, minor, Decimal(1).scaleb(-minor))
        if code == currency:
            # Only canonical spellings are cached so the cache stays bounded.
            _CURRENCY_INFO[code] = info
    return info


def currency_minor_unit(code: str) -> int:
    """How many decimal places amounts in this currency have (CNY 2, JPY 0, KWD 3)."""
    return _currency_info(code)[1]


# ------------------------------------------------------------------------ amounts

_AMOUNT_LIMIT = Decimal(10**15)
_ZERO = Decimal(0)
# The shape nearly every amount has; matched before any clean-up.
_PLAIN_AMOUNT = re.compile(r"(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?")
_DECORATED_AMOUNT = re.compile(
    r"(?P<sign1>[+-])?\s*"
    r"(?:(?P<code1>[A-Za-z]{3})|(?P<symbol>[¥$]))?\s*"
    r"(?P<sign2>[+-])?\s*"
    r"(?P<number>[\d,]*(?:\.\d*)?)\s*"
    r"(?:(?P<code2>[A-Za-z]{3})|(?P<yuan>元))?"
)
_FRACTION_ONLY = re.compile(r"\.(\d+)")
_DECIMAL_COMMA = re.compile(r"\d{1,3}(?:\.\d{3})*,\d+")


def parse_amount(
    raw: object,
    *,
    currency: str | None = None,
    allow_negative: bool = False,
    allow_zero: bool = True,
) -> Decimal:
    """An exact money amount, quantised to the currency's minor unit when it is known."""
    info = None if currency is None else _CURRENCY_INFO.get(currency) or _currency_info(currency)
    if type(raw) is str:
        match = _PLAIN_AMOUNT.fullmatch(raw)
        if match is None and raw[-1:] == "元" and (info is None or info[0] == "CNY"):
            # "12,345.00元", the most common decorated form in Chinese exports.
            match = _PLAIN_AMOUNT.fullmatch(raw, 0, len(raw) - 1)
        if match is not None:
            whole, fraction = match.group(1, 2)
            return _amount_from_digits(
                whole, fraction, False, info, allow_negative=allow_negative, allow_zero=allow_zero
            )
        return _parse_amount_text(raw, info, allow_negative, allow_zero)
    if isinstance(raw, str):
        return _parse_amount_text(str(raw), info, allow_negative, allow_zero)
    return _checked_amount(_amount_from_number(raw), info, allow_negative, allow_zero)


def _amount_from_number(raw: object) -> Decimal:
    if raw is None:
        raise FieldError(_EMPTY)
    if isinstance(raw, bool):
        raise FieldError("not an amount")
    if isinstance(raw, int):
        return Decimal(raw)
    if isinstance(raw, float) and math.isfinite(raw):
        # repr is the shortest decimal that round-trips: the number the person typed.
        return Decimal(repr(raw))
    if isinstance(raw, Decimal) and raw.is_finite():
        return raw
    raise FieldError("not an amount")


def _amount_from_digits(
    whole: str,
    fraction: str | None,
    negative: bool,
    info: tuple[str, int, Decimal] | None,
    *,
    allow_negative: bool,
    allow_zero: bool,
) -> Decimal:
    # Builds the Decimal from the text itself so no digit ever passes through a float.
    if "," in whole:
        whole = whole.replace(",", "")
    if len(whole) > 15 and len(whole.lstrip("0")) > 15:
        raise FieldError("amount too large")
    if fraction is None:
        fraction = ""
    if info is not None:
        minor = info[1]
        places = len(fraction)
        if places > minor:
            if fraction[minor:].strip("0"):
                raise FieldError(f"more than {minor} decimal places for {info[0]}")
            fraction = fraction[:minor]
        elif places < minor:
            fraction += "0" * (minor - places)
    value = Decimal(f"{whole}.{fraction}" if fraction else whole)
    if not value:
        if not allow_zero:
            raise FieldError("zero amount")
        # -0.00 is zero, not a negative amount.
        return value.copy_abs()
    if negative:
        if not allow_negative:
            raise FieldError("negative amount")
        return -value
    return value


def _checked_amount(
    value: Decimal,
    info: tuple[str, int, Decimal] | None,
    allow_negative: bool,
    allow_zero: bool,
) -> Decimal:
    if abs(value) >= _AMOUNT_LIMIT:
        raise FieldError("amount too large")
    if info is not None:
        code, minor, quantum = info
        exponent = value.as_tuple().exponent
        if isinstance(exponent, int) and exponent != -minor:
            quantised = value.quantize(quantum)
            if quantised != value:
                raise FieldError(f"more than {minor} decimal places for {code}")
            value = quantised
    if not value:
        if not allow_zero:
            raise FieldError("zero amount")
        return value.copy_abs()
    if value < _ZERO and not allow_negative:
        raise FieldError("negative amount")
    return value


def _parse_amount_text(
    raw: str,
    info: tuple[str, int, Decimal] | None,
    allow_negative: bool,
    allow_zero: bool,
) -> Decimal:
    # U+2212 MINUS SIGN survives NFKC; spreadsheets and web pages use it.
    text = _nfkc(raw).replace("\u2212", "-").strip()
    if not text:
        raise FieldError(_EMPTY)
    negative = False
    if text[0] == "(" and text[-1] == ")":
        negative = True
        text = text[1:-1].strip()
    match = _DECORATED_AMOUNT.fullmatch(text)
    if match is None or not match["number"]:
        raise FieldError(_amount_text_problem(text))
    signs = [s for s in match.group("sign1", "sign2") if s]
    markers = [m for m in match.group("code1", "symbol", "code2", "yuan") if m]
    if len(signs) > 1 or len(markers) > 1 or (negative and signs):
        raise FieldError("not an amount")
    if signs and signs[0] == "-":
        negative = True
    if markers:
        _check_currency_marker(markers[0], info)
    number = match["number"]
    plain = _PLAIN_AMOUNT.fullmatch(number)
    if plain is not None:
        whole, fraction = plain.group(1, 2)
    else:
        only_fraction = _FRACTION_ONLY.fullmatch(number)
        if only_fraction is None:
            raise FieldError(_amount_text_problem(number))
        whole, fraction = "0", only_fraction[1]
    return _amount_from_digits(
        whole, fraction, negative, info, allow_negative=allow_negative, allow_zero=allow_zero
    )


def _amount_text_problem(text: str) -> str:
    if _SCIENTIFIC.fullmatch(text):
        return "not an amount: scientific notation is not accepted"
    if _DECIMAL_COMMA.fullmatch(text.lstrip("+-")):
        return "not an amount: use '.' for decimals and ',' only between groups of 3 digits"
    if "," in text:
        return "not an amount: ',' must separate groups of 3 digits"
    return "not an amount"


def _check_currency_marker(marker: str, info: tuple[str, int, Decimal] | None) -> None:
    if marker in ("¥", "$", "元"):
        if info is not None and not _symbol_fits(marker, info[0]):
            raise FieldError(f"amount is marked '{marker}' but the currency is {info[0]}")
        return
    marked = parse_currency(marker)
    if info is not None and marked != info[0]:
        raise FieldError(f"amount is marked {marked} but the currency is {info[0]}")


@cache
def _symbol_fits(symbol: str, code: str) -> bool:
    if symbol == "¥":
        return code in ("CNY", "JPY")
    if symbol == "元":
        return code == "CNY"
    # Dollars of every kind carry a "$" in their English symbol (CA$, HK$, NT$).
    return "$" in get_currency_symbol(code, locale="en")


# -------------------------------------------------------------- numbers, percents

_PERCENT = re.compile(r"([+-]?)(\d+(?:\.\d+)?|\.\d+)\s*(%?)")
_PERCENT_MAX = Decimal(10)
_ONE = Decimal(1)


def parse_percentage(raw: object) -> Decimal:
    """A rate as a fraction: "12.5%" and 0.125 are both Decimal("0.125")."""
    if isinstance(raw, str):
        match = _PERCENT.fullmatch(_nfkc(raw).strip())
        if match is None:
            raise FieldError(_EMPTY if is_blank(raw) else "not a percentage")
        sign, number, percent_sign = match.groups()
        value = Decimal(sign + number)
        if percent_sign:
            value = value.scaleb(-2)
        elif value > _ONE:
            raise FieldError(_ambiguous_percentage(number))
    else:
        value = _percentage_from_number(raw)
    if value < _ZERO or value > _PERCENT_MAX:
        raise FieldError("percentage out of range (0% to 1000%)")
    return value


def _percentage_from_number(raw: object) -> Decimal:
    if raw is None:
        raise FieldError(_EMPTY)
    if isinstance(raw, float) and math.isfinite(raw):
        # An Excel percentage cell holds the fraction: 12.5% arrives as 0.125.
        value = Decimal(repr(raw))
    elif isinstance(raw, int | Decimal) and not isinstance(raw, bool):
        value = Decimal(raw)
        if not value.is_finite():
            raise FieldError("not a percentage")
    else:
        raise FieldError("not a percentage")
    if value > _ONE:
        raise FieldError(_ambiguous_percentage(str(value)))
    return value


def _ambiguous_percentage(number: str) -> str:
    fraction = Decimal(number).scaleb(-2)
    return f"ambiguous percentage: write {number}% or {fraction}"


_INTEGER_TEXT = re.compile(r"([+-]?)(\d{1,3}(?:,\d{3})+|\d+)(?:\.0*)?")


def parse_int(raw: object, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """A whole number (a count, a number of days), optionally within bounds."""
    if type(raw) is int:
        value = raw
    elif isinstance(raw, str):
        if raw.isascii() and raw.isdigit():
            value = int(raw)
        else:
            match = _INTEGER_TEXT.fullmatch(_nfkc(raw).strip())
            if match is None:
                raise FieldError(_EMPTY if is_blank(raw) else "not a whole number")
            value = int(match[1] + match[2].replace(",", ""))
    else:
        value = _int_from_number(raw)
    if minimum is not None and value < minimum:
        raise FieldError(f"must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise FieldError(f"must be at most {maximum}")
    return value


def _int_from_number(raw: object) -> int:
    if raw is None:
        raise FieldError(_EMPTY)
    if isinstance(raw, int) and not isinstance(raw, bool):
        return int(raw)
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if isinstance(raw, Decimal) and raw.is_finite() and raw == raw.to_integral_value():
        return int(raw)
    raise FieldError("not a whole number")


# -------------------------------------------------------------------------- dates

_MIN_YEAR = 1900
_MAX_YEAR = 2100
_YEAR_RANGE = "year out of range (1900 to 2100)"
_EXCEL_MAX_SERIAL = 2958465  # 9999-12-31
# Serial 61 is 1900-03-01; serials before Excel's fictitious 1900-02-29 (60) are one
# day further along, so they count from 1899-12-31 instead of 1899-12-30.
_EXCEL_ORDINAL = date(1899, 12, 30).toordinal()
_MS_PER_DAY = 86_400_000

_YEAR_FIRST = re.compile(r"(\d{4})([-/.])(\d{1,2})\2(\d{1,2})")
_CHINESE_DATE = re.compile(r"(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*日")
_YEAR_LAST = re.compile(r"(\d{1,2})([-/.])(\d{1,2})\2(\d{4})(?!\d)")
_TWO_DIGIT_YEAR = re.compile(r"\d{1,2}([-/.])\d{1,2}\1\d{2}|\d{2}([-/.])\d{1,2}\2\d{1,2}")
_TIME_OF_DAY = re.compile(
    r"(?:T|\s+)(\d{1,2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?"
    r"\s*(?:([AaPp])[Mm])?"
    r"\s*(Z|[+-]\d{2}(?::?\d{2})?)?"
)


def _excel_serial_date(serial: int) -> date:
    if not 1 <= serial <= _EXCEL_MAX_SERIAL:
        raise FieldError("not a date")
    if _MIN_YEAR <= serial <= _MAX_YEAR:
        raise FieldError("a year alone is not a date")
    if serial == 60:
        raise FieldError("no such date (1900-02-29, a day Excel invents)")
    day = date.fromordinal(_EXCEL_ORDINAL + serial + (serial < 60))
    if day.year > _MAX_YEAR:
        raise FieldError(_YEAR_RANGE)
    return day


def _checked_year(day: date) -> date:
    if not _MIN_YEAR <= day.year <= _MAX_YEAR:
        raise FieldError(_YEAR_RANGE)
    return day


def _calendar_date(year: int, month: int, day: int, *, order_hint: str = "") -> date:
    if not _MIN_YEAR <= year <= _MAX_YEAR:
        raise FieldError(_YEAR_RANGE)
    try:
        return date(year, month, day)
    except ValueError:
        raise FieldError(f"no such date ({year:04d}-{month:02d}-{day:02d}{order_hint})") from None


def _day_number_date(number: int, *, allow_excel_serial: bool) -> date:
    # Eight digits are YYYYMMDD (Excel keeps a typed 20240305 as that number); serials
    # stay below 2958465, so the two never overlap.
    if 10_000_000 <= number <= 99_999_999:
        return _calendar_date(number // 10_000, number // 100 % 100, number % 100)
    if not allow_excel_serial:
        raise FieldError("not a date")
    return _excel_serial_date(number)


def _split_date_text(
    raw: str, *, day_first: bool, allow_excel_serial: bool
) -> tuple[date, time | None]:
    text = _nfkc(raw).strip()
    if not text:
        raise FieldError(_EMPTY)
    if text.isdigit():
        if len(text) == 8:
            return _calendar_date(int(text[:4]), int(text[4:6]), int(text[6:])), None
        if allow_excel_serial:
            return _excel_serial_date(int(text)), None
        raise FieldError("not a date")
    if match := _YEAR_FIRST.match(text):
        day_ = _calendar_date(int(match[1]), int(match[3]), int(match[4]))
    elif match := _CHINESE_DATE.match(text):
        day_ = _calendar_date(int(match[1]), int(match[2]), int(match[3]))
    elif match := _YEAR_LAST.match(text):
        first, second = int(match[1]), int(match[3])
        month, day = (second, first) if day_first else (first, second)
        hint = "; read day first" if day_first else "; read month first"
        day_ = _calendar_date(int(match[4]), month, day, order_hint=hint)
    elif _TWO_DIGIT_YEAR.match(text):
        raise FieldError("write the year with four digits")
    else:
        raise FieldError("not a date")
    rest = text[match.end() :]
    if not rest:
        return day_, None
    return day_, _time_of_day(rest)


def _time_of_day(text: str) -> time:
    match = _TIME_OF_DAY.fullmatch(text)
    if match is None:
        raise FieldError("not a date")
    hour, minute = int(match[1]), int(match[2])
    second = int(match[3] or 0)
    microsecond = int((match[4] or "0")[:6].ljust(6, "0"))
    meridiem = match[5]
    if meridiem is not None:
        if not 1 <= hour <= 12:
            raise FieldError("no such time")
        hour = hour % 12 + (12 if meridiem in "Pp" else 0)
    if hour > 23 or minute > 59 or second > 59:
        raise FieldError("no such time")
    offset = match[6]
    zone: tzinfo | None = None
    if offset == "Z":
        zone = UTC
    elif offset is not None:
        digits = offset[1:].replace(":", "")
        delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
        if delta >= timedelta(hours=24) or int(digits[2:] or 0) > 59:
            raise FieldError("no such time zone offset")
        zone = timezone(-delta if offset[0] == "-" else delta)
    return time(hour, minute, second, microsecond, tzinfo=zone)


def parse_date(raw: object, *, day_first: bool = False, allow_excel_serial: bool = True) -> date:
    """A calendar date from text, an Excel date cell or an Excel serial day number."""
    # The fast path: most files write ISO dates, and this runs for every row.
    if type(raw) is str and len(raw) == 10 and raw[4] == "-" and raw[7] == "-":
        try:
            day = date.fromisoformat(raw)
        except ValueError:
            pass  # the general parser below says what is wrong
        else:
            if _MIN_YEAR <= day.year <= _MAX_YEAR:
                return day
    return _date_from_value(raw, day_first=day_first, allow_excel_serial=allow_excel_serial)


def _date_from_value(raw: object, *, day_first: bool, allow_excel_serial: bool) -> date:
    if isinstance(raw, str):
        text = str(raw)
        return _split_date_text(text, day_first=day_first, allow_excel_serial=allow_excel_serial)[0]
    if isinstance(raw, datetime):
        return _checked_year(raw.date())
    if isinstance(raw, date):
        return _checked_year(raw)
    if isinstance(raw, float) and math.isfinite(raw):
        # The date part of a serial that also carries a time of day.
        return _day_number_date(math.floor(raw), allow_excel_serial=allow_excel_serial)
    if isinstance(raw, int) and not isinstance(raw, bool):
        return _day_number_date(raw, allow_excel_serial=allow_excel_serial)
    raise FieldError(_EMPTY if raw is None else "not a date")


def parse_datetime(raw: object, *, day_first: bool = False, default_tz: tzinfo) -> datetime:
    """A moment in time; values without an offset are in the tenant's time zone."""
    if (
        type(raw) is str
        and len(raw) >= 10
        and raw[4] == "-"
        and raw[7] == "-"
        and raw[10:11] in ("", "T", " ")
    ):
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            pass  # the general parser below says what is wrong
        else:
            if _MIN_YEAR <= moment.year <= _MAX_YEAR:
                return moment if moment.tzinfo is not None else moment.replace(tzinfo=default_tz)
    return _datetime_from_value(raw, day_first=day_first, default_tz=default_tz)


def _datetime_from_value(raw: object, *, day_first: bool, default_tz: tzinfo) -> datetime:
    if isinstance(raw, str):
        day, clock = _split_date_text(str(raw), day_first=day_first, allow_excel_serial=True)
        if clock is None:
            return datetime(day.year, day.month, day.day, tzinfo=default_tz)
        return datetime.combine(day, clock if clock.tzinfo else clock.replace(tzinfo=default_tz))
    if isinstance(raw, datetime):
        _checked_year(raw)
        return raw if raw.tzinfo is not None else raw.replace(tzinfo=default_tz)
    if isinstance(raw, date):
        _checked_year(raw)
        return datetime(raw.year, raw.month, raw.day, tzinfo=default_tz)
    if isinstance(raw, float) and math.isfinite(raw):
        # Excel keeps times to the millisecond; rounding there removes float noise
        # (10:00 is stored as 0.41666666666666...).
        serial, milliseconds = divmod(round(raw * _MS_PER_DAY), _MS_PER_DAY)
        day = _day_number_date(serial, allow_excel_serial=True)
        midnight = datetime(day.year, day.month, day.day, tzinfo=default_tz)
        return midnight + timedelta(milliseconds=milliseconds)
    if isinstance(raw, int) and not isinstance(raw, bool):
        day = _day_number_date(raw, allow_excel_serial=True)
        return datetime(day.year, day.month, day.day, tzinfo=default_tz)
    raise FieldError(_EMPTY if raw is None else "not a date")


# ------------------------------------------------------------------- national IDs

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK_CHARACTERS = "10X98765432"
# The checksum is computed over the ASCII codes; this removes the '0' offset in one step.
_ID_ASCII_OFFSET = ord("0") * sum(_ID_WEIGHTS)
_ID_SHAPE = re.compile(r"\d{17}[\dX]")
_ID_NUMBER_TEXT = re.compile(r"\d+\.\d*")
# Every MMDD of a leap year; 0229 is then checked against the year.
_ID_MONTH_DAYS = frozenset(
    f"{month:02d}{day:02d}"
    for month in range(1, 13)
    for day in range(1, calendar.monthrange(2000, month)[1] + 1)
)
_ID_MIN_BIRTH = "19000101"
# Birth dates on resident IDs are dates in China (UTC+8 all year).
_CHINA_TIME = timezone(timedelta(hours=8), "Asia/Shanghai")
# A YYYYMMDD known not to be in the future. It only ever moves forward, so comparing
# against it is always safe and the common case needs no clock read.
_id_latest_known_past = ""


def parse_cn_national_id(raw: object) -> str:
    """An 18-character PRC resident ID with a valid checksum and birth date."""
    if type(raw) is str and len(raw) == 18 and raw.isascii() and raw[:17].isdigit():
        text = raw if raw[17] != "x" else raw[:17] + "X"
        if not (text[17].isdigit() or text[17] == "X"):
            raise FieldError("national ID must be 17 digits followed by a digit or X")
    elif isinstance(raw, str):
        text = _clean_national_id(raw)
    elif raw is None:
        raise FieldError(_EMPTY)
    elif isinstance(raw, int | float | Decimal) and not isinstance(raw, bool):
        # Even an exact integer loses the IDs that end in X; the column must be text.
        raise FieldError(_EXCEL_NUMBER.format(""))
    else:
        raise FieldError("not a national ID")
    total = sum(map(operator.mul, text.encode(), _ID_WEIGHTS)) - _ID_ASCII_OFFSET
    if _ID_CHECK_CHARACTERS[total % 11] != text[17]:
        raise FieldError("national ID checksum does not match")
    birth = text[6:14]
    month_day = birth[4:]
    if month_day not in _ID_MONTH_DAYS or (
        month_day == "0229" and not calendar.isleap(int(birth[:4]))
    ):
        raise FieldError("national ID birth date is not a real date")
    if not _ID_MIN_BIRTH <= birth <= _id_latest_known_past:
        _check_id_birth_range(birth)
    return text


def _clean_national_id(raw: str) -> str:
    # People paste IDs with spaces between the groups, or with full-width digits.
    text = "".join(_nfkc(raw).split()).upper()
    if not text:
        raise FieldError(_EMPTY)
    if len(text) == 18 and _ID_SHAPE.fullmatch(text):
        return text
    if _SCIENTIFIC.fullmatch(text):
        raise FieldError(_EXCEL_SCIENTIFIC.format(""))
    if _ID_NUMBER_TEXT.fullmatch(text):
        raise FieldError(_EXCEL_NUMBER.format(""))
    if len(text) == 15 and text.isdigit():
        raise FieldError("15-digit IDs are not accepted; send the 18-digit ID")
    if len(text) != 18:
        raise FieldError(f"national ID must have 18 characters, not {len(text)}")
    raise FieldError("national ID must be 17 digits followed by a digit or X")


def _check_id_birth_range(birth: str) -> None:
    global _id_latest_known_past  # noqa: PLW0603 - a monotonic cache, see its definition
    if birth < _ID_MIN_BIRTH:
        raise FieldError("national ID birth date is before 1900")
    today = f"{datetime.now(_CHINA_TIME):%Y%m%d}"
    if birth > today:
        raise FieldError("national ID birth date is in the future")
    _id_latest_known_past = today


# ------------------------------------------------------------------------- phones


@dataclass(frozen=True, slots=True)
class _PhonePlan:
    """A region's numbering plan, compiled once from phonenumbers' metadata."""

    region: str
    country_code: str
    e164_prefix: str
    # Match at the start of a national number that phonenumbers.parse would rewrite
    # (international or national prefix, carrier code, leading zero, or the country
    # code itself), without and with a "+" in front.
    national_rewrite: re.Pattern[str]
    international_rewrite: re.Pattern[str]
    # Full-matches exactly the national numbers is_valid_number accepts as this
    # region's mobile or fixed-line numbers; None if the fast path cannot decide.
    valid: re.Pattern[str] | None

    def fast_e164(self, digits: str, international: bool) -> str | None:
        """The E.164 form if these digits are certainly valid here, None to ask phonenumbers."""
        valid = self.valid
        if valid is None:
            return None
        if international:
            if not digits.startswith(self.country_code):
                return None
            digits = digits[len(self.country_code) :]
            if self.international_rewrite.match(digits) is not None:
                return None
        elif self.national_rewrite.match(digits) is not None:
            return None
        if valid.fullmatch(digits) is None:
            return None
        return self.e164_prefix + digits


def _desc_regex(desc: object) -> str | None:
    """A pattern full-matching what phonenumbers' _is_number_matching_desc accepts."""
    pattern = getattr(desc, "national_number_pattern", None)
    if not pattern:
        return None
    lengths = [n for n in getattr(desc, "possible_length", ()) if n > 0]
    if getattr(desc, "possible_length", ()) and not lengths:
        return None  # phonenumbers' marker for "no numbers of this type"
    length_check = "|".join(rf"\d{{{n}}}\Z" for n in sorted(lengths))
    return (f"(?={length_check})" if length_check else "") + f"(?:{pattern})"


def _alternatives(*patterns: str | None) -> str:
    return "|".join(f"(?:{p})" for p in patterns if p)


_PHONE_PLANS: dict[str, _PhonePlan] = {}


def _phone_plan(region: str) -> _PhonePlan:
    plan = _PHONE_PLANS.get(region)
    if plan is not None:
        return plan
    code = region.strip().upper()
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(code, None)
    if metadata is None or metadata.country_code is None:
        raise ValueError(f"unknown phone region {region!r}")
    country_code = str(metadata.country_code)
    # is_valid_number asks the first region sharing a country code before the others
    # (US before CA for +1); only for that region do its own patterns decide alone.
    sharing = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(metadata.country_code, ())
    decides_alone = bool(sharing) and sharing[0] == code and metadata.leading_digits is None
    general = _desc_regex(metadata.general_desc)
    kinds = _alternatives(_desc_regex(metadata.mobile), _desc_regex(metadata.fixed_line))
    valid = None
    if decides_alone and general and kinds:
        # Valid means: the general description matches (a lookahead over the whole
        # number), and so does the mobile or the fixed-line description.
        valid = re.compile(rf"(?=(?:{general})\Z)(?:{kinds})")
    national_prefix = metadata.national_prefix_for_parsing
    plan = _PhonePlan(
        region=code,
        country_code=country_code,
        e164_prefix="+" + country_code,
        national_rewrite=re.compile(
            _alternatives(metadata.international_prefix, national_prefix, "0", country_code)
        ),
        international_rewrite=re.compile(_alternatives(national_prefix, "0")),
        valid=valid,
    )
    _PHONE_PLANS[region] = plan
    return plan


def phone_region_default(region: str) -> str:
    """Check a tenant's default phone region ("cn", "US") and prepare it; returns "CN"."""
    return _phone_plan(region).region


# Punctuation people put inside phone numbers; phonenumbers ignores it too.
_PHONE_PUNCTUATION = str.maketrans("", "", " -()")
_PHONE_FAST_MAX_LENGTH = 40


def parse_phone(raw: object, *, region: str) -> str:
    """A phone number in E.164 form, reading national numbers in the given region."""
    number, _verified = _parse_phone(raw, region, possible_is_enough=False)
    return number


def parse_contact_phone(raw: object, *, region: str) -> tuple[str, bool]:
    """A contact point's phone in E.164 form, and whether it is valid (verified).

    A number the ``phonenumbers`` metadata calls possible (its length fits the plan) but
    not valid (a prefix the metadata does not know yet, as happens with new ranges) is
    kept, unverified; anything less is a ``FieldError``.
    """
    return _parse_phone(raw, region, possible_is_enough=True)


def _parse_phone(raw: object, region: str, *, possible_is_enough: bool) -> tuple[str, bool]:
    plan = _PHONE_PLANS.get(region) or _phone_plan(region)
    if type(raw) is str:
        # isascii: phonenumbers' patterns use \d, which also matches other scripts' digits.
        if raw.isascii() and raw.isdigit():
            fast = plan.fast_e164(raw, False)
            return (fast, True) if fast else _slow_phone(raw, plan, possible_is_enough)
        text = raw
    elif isinstance(raw, str):
        text = str(raw)
    elif raw is None:
        raise FieldError(_EMPTY)
    elif isinstance(raw, int) and not isinstance(raw, bool) and raw > 0:
        text = str(raw)
    elif isinstance(raw, float) and raw.is_integer() and 0 < raw < _EXCEL_EXACT_LIMIT:
        # Phone numbers fit in Excel's 15 digits, so a whole float is exact.
        text = str(int(raw))
    else:
        raise FieldError(f"not a valid phone number for {plan.region}")
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    fast = _fast_phone(text, plan)
    return (fast, True) if fast else _slow_phone(text, plan, possible_is_enough)


def _fast_phone(text: str, plan: _PhonePlan) -> str | None:
    if len(text) > _PHONE_FAST_MAX_LENGTH:
        return None
    text = text.strip()
    international = text[:1] == "+"
    digits = text[1:] if international else text
    if not (digits.isascii() and digits.isdigit()):
        digits = digits.translate(_PHONE_PUNCTUATION)
        if not (digits.isascii() and digits.isdigit()):
            return None
    return plan.fast_e164(digits, international)


def _slow_phone(text: str, plan: _PhonePlan, possible_is_enough: bool) -> tuple[str, bool]:
    if is_blank(text):
        raise FieldError(_EMPTY)
    invalid = f"not a valid phone number for {plan.region}"
    try:
        number = phonenumbers.parse(text, plan.region)
    except phonenumbers.NumberParseException:
        raise FieldError(invalid) from None
    verified = phonenumbers.is_valid_number(number)
    if not verified and not (possible_is_enough and phonenumbers.is_possible_number(number)):
        raise FieldError(invalid)
    if number.extension:
        raise FieldError("phone extensions are not accepted")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), verified


# ------------------------------------------------------------------------- emails

_EMAIL_MAX_LENGTH = 254


def parse_email(raw: object) -> str:
    """An email address with its domain lower-cased; checks the shape only."""
    if not isinstance(raw, str):
        raise FieldError(_EMPTY if raw is None else "not an email address")
    text = raw.strip()
    if not text:
        raise FieldError(_EMPTY)
    local, at, domain = text.rpartition("@")
    if (
        not at
        or not local
        or "@" in local
        or len(text) > _EMAIL_MAX_LENGTH
        or any(c.isspace() for c in text)
        or not text.isprintable()
        or "." not in domain
        or domain.startswith(".")
        or domain.endswith(".")
        or ".." in domain
    ):
        raise FieldError("not an email address")
    return f"{local}@{domain.lower()}"
