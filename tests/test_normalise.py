"""The value normalisers the ingestion pipeline applies to every cell of a tenant file."""

import random
import re
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import phonenumbers
import pytest

from recova.connectors import normalise
from recova.connectors.normalise import (
    FieldError,
    currency_minor_unit,
    is_blank,
    parse_amount,
    parse_cn_national_id,
    parse_currency,
    parse_date,
    parse_datetime,
    parse_email,
    parse_identifier,
    parse_int,
    parse_percentage,
    parse_phone,
    parse_text,
    phone_region_default,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")
PLUS_8 = timezone(timedelta(hours=8))


def wide(text: str) -> str:
    """The text as a Chinese input method types it: full-width letters, digits and signs."""
    return "".join("\u3000" if c == " " else chr(ord(c) + 0xFEE0) for c in text)


def reason_of(parse, raw, **options) -> str:
    with pytest.raises(FieldError) as caught:
        parse(raw, **options)
    assert isinstance(caught.value, ValueError)
    return caught.value.reason


def assert_no_personal_digits(raw: object, reason: str) -> None:
    """Reasons go to logs: no run of 4 or more of the value's digits may appear in one."""
    digits = re.sub(r"\D", "", str(raw))
    for start in range(len(digits) - 3):
        assert digits[start : start + 4] not in reason, (raw, reason)
    if isinstance(raw, str) and raw.strip():
        assert raw.strip() not in reason


# ----------------------------------------------------------------------- blanks, text


@pytest.mark.parametrize(
    ("raw", "blank"),
    [(None, True), ("", True), ("   ", True), ("\t\u3000\n", True), ("0", False), (0, False)],
)
def test_is_blank(raw, blank):
    assert is_blank(raw) is blank


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Zhang  San ", "Zhang  San"),
        (12345, "12345"),
        (12345.0, "12345"),
        (12.5, "12.5"),
        (True, "TRUE"),
        (Decimal("1.50"), "1.50"),
        (date(2024, 3, 5), "2024-03-05"),
    ],
)
def test_parse_text_accepts(raw, expected):
    assert parse_text(raw, max_length=20) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "empty"),
        ("   ", "empty"),
        ("x" * 21, "longer than 20 characters"),
        (float("nan"), "not text"),
        ([1], "not text"),
    ],
)
def test_parse_text_rejects(raw, reason):
    assert reason_of(parse_text, raw, max_length=20) == reason


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("LN-2024-0001", "LN-2024-0001"),
        ("  A 1  ", "A 1"),
        (12345, "12345"),
        (12345.0, "12345"),
        (999_999_999_999_999.0, "999999999999999"),
        (123456789012345678901, "123456789012345678901"),  # a JSON integer is exact
        (wide("LN123"), "LN123"),
        ("3E10", "3E10"),  # an id with a letter E, not Excel's notation
    ],
)
def test_parse_identifier_accepts(raw, expected):
    assert parse_identifier(raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (
            "1.10105E+17",
            "looks like a number Excel converted to scientific notation (1.10105E+17); "
            "export the column as text",
        ),
        ("1.10105e+17", "scientific notation (1.10105e+17)"),
        (110105199003074578.0, "keeps only 15 digits (1.10105E+17)"),
        (1e15, "keeps only 15 digits"),
        (1e-5, "scientific notation"),
        ("LN\x00001", "contains control or invisible characters"),
        ("LN\u200b001", "contains control or invisible characters"),
        ("", "empty"),
        ("x" * 129, "longer than 128 characters"),
    ],
)
def test_parse_identifier_rejects(raw, reason):
    assert reason in reason_of(parse_identifier, raw)


# --------------------------------------------------------------------------- currency


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("CNY", "CNY"),
        (" usd ", "USD"),
        ("jpy", "JPY"),
        ("RMB", "CNY"),
        ("rmb", "CNY"),
        ("人民币", "CNY"),
        (wide("CNY"), "CNY"),
        ("KWD", "KWD"),
    ],
)
def test_parse_currency_accepts(raw, expected):
    assert parse_currency(raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("RMBX", "unknown currency 'RMBX'"),
        ("XXX", "unknown currency 'XXX'"),  # ISO's "no currency" test code
        ("XTS", "unknown currency 'XTS'"),
        ("DEM", "unknown currency 'DEM'"),  # replaced by the euro
        ("¥", "currency symbol '¥' is ambiguous (CNY or JPY); write the ISO code"),
        ("￥", "currency symbol '¥' is ambiguous (CNY or JPY); write the ISO code"),
        ("$", "currency symbol '$' is ambiguous"),
        ("€", "write the ISO currency code, not the symbol '€'"),
        ("", "empty"),
        (156, "not a currency code"),
    ],
)
def test_parse_currency_rejects(raw, reason):
    assert reason_of(parse_currency, raw).startswith(reason)


@pytest.mark.parametrize(
    ("code", "minor"), [("CNY", 2), ("USD", 2), ("JPY", 0), ("KWD", 3), ("RMB", 2)]
)
def test_currency_minor_unit(code, minor):
    assert currency_minor_unit(code) == minor


def test_currency_minor_unit_rejects_unknown_codes():
    assert reason_of(currency_minor_unit, "XXX") == "unknown currency 'XXX'"


# ---------------------------------------------------------------------------- amounts


@pytest.mark.parametrize(
    ("raw", "options", "expected"),
    [
        ("1234.5", {}, "1234.5"),
        ("1234.5", {"currency": "CNY"}, "1234.50"),
        ("1,234.50", {"currency": "CNY"}, "1234.50"),
        ("12,345.67", {"currency": "CNY"}, "12345.67"),
        ("1,234,567", {"currency": "CNY"}, "1234567.00"),
        ("¥1,234.50", {"currency": "CNY"}, "1234.50"),
        ("￥1,234.50", {"currency": "CNY"}, "1234.50"),
        ("$1,234.50", {"currency": "USD"}, "1234.50"),
        ("1,234.50元", {"currency": "CNY"}, "1234.50"),
        ("1234.50 元", {"currency": "CNY"}, "1234.50"),
        ("CNY 1,234.50", {"currency": "CNY"}, "1234.50"),
        ("1,234.50 CNY", {"currency": "CNY"}, "1234.50"),
        ("RMB 12", {"currency": "CNY"}, "12.00"),
        ("  12 ", {"currency": "CNY"}, "12.00"),
        (wide("123"), {"currency": "CNY"}, "123.00"),
        (wide("1,234.50"), {"currency": "CNY"}, "1234.50"),
        ("12.500", {"currency": "CNY"}, "12.50"),
        ("0.5", {"currency": "USD"}, "0.50"),
        (".5", {"currency": "USD"}, "0.50"),
        ("1234", {"currency": "JPY"}, "1234"),
        ("1.250", {"currency": "KWD"}, "1.250"),
        ("-12.00", {"allow_negative": True, "currency": "CNY"}, "-12.00"),
        ("(12.00)", {"allow_negative": True, "currency": "CNY"}, "-12.00"),
        ("\u221212", {"allow_negative": True}, "-12"),
        ("-¥12", {"allow_negative": True, "currency": "CNY"}, "-12.00"),
        ("¥-12", {"allow_negative": True, "currency": "CNY"}, "-12.00"),
        ("0", {"currency": "CNY"}, "0.00"),
        ("-0.00", {"currency": "CNY"}, "0.00"),
        ("999999999999999.99", {"currency": "CNY"}, "999999999999999.99"),
        (12, {"currency": "CNY"}, "12.00"),
        (1234.5, {"currency": "CNY"}, "1234.50"),
        (0.1, {"currency": "USD"}, "0.10"),
        (1234.5, {}, "1234.5"),
        (-3.25, {"allow_negative": True, "currency": "USD"}, "-3.25"),
        (Decimal("7.1"), {"currency": "CNY"}, "7.10"),
    ],
)
def test_parse_amount_accepts(raw, options, expected):
    value = parse_amount(raw, **options)
    assert isinstance(value, Decimal)
    # str() shows the exponent too, so "12.00" and "12" are told apart.
    assert str(value) == expected


@pytest.mark.parametrize(
    ("raw", "options", "reason"),
    [
        ("", {}, "empty"),
        (None, {}, "empty"),
        ("abc", {}, "not an amount"),
        ("1e5", {}, "not an amount: scientific notation is not accepted"),
        ("NaN", {}, "not an amount"),
        ("Infinity", {}, "not an amount"),
        (float("nan"), {}, "not an amount"),
        (float("inf"), {}, "not an amount"),
        (Decimal("NaN"), {}, "not an amount"),
        (True, {}, "not an amount"),
        ("1,23", {}, "not an amount: use '.' for decimals"),
        ("12,3456", {}, "not an amount: use '.' for decimals"),
        ("1.234,50", {}, "not an amount: use '.' for decimals"),
        ("1234,567,890", {}, "not an amount: ',' must separate groups of 3 digits"),
        ("12.", {}, "not an amount"),
        ("1 234", {}, "not an amount"),
        ("--12", {"allow_negative": True}, "not an amount"),
        ("(-12)", {"allow_negative": True}, "not an amount"),
        ("CNY 12 CNY", {}, "not an amount"),
        ("-12.00", {}, "negative amount"),
        ("(12.00)", {}, "negative amount"),
        (-12, {}, "negative amount"),
        ("0", {"allow_zero": False}, "zero amount"),
        (0.0, {"allow_zero": False}, "zero amount"),
        ("12.345", {"currency": "CNY"}, "more than 2 decimal places for CNY"),
        ("12.5", {"currency": "JPY"}, "more than 0 decimal places for JPY"),
        (0.1 + 0.2, {"currency": "USD"}, "more than 2 decimal places for USD"),
        (Decimal("1.001"), {"currency": "CNY"}, "more than 2 decimal places for CNY"),
        ("1000000000000000", {}, "amount too large"),
        ("1,000,000,000,000,000.00", {"currency": "CNY"}, "amount too large"),
        (10**15, {}, "amount too large"),
        (1e15, {}, "amount too large"),
        ("$12", {"currency": "CNY"}, "amount is marked '$' but the currency is CNY"),
        ("¥12", {"currency": "USD"}, "amount is marked '¥' but the currency is USD"),
        ("12元", {"currency": "JPY"}, "amount is marked '元' but the currency is JPY"),
        ("USD 12", {"currency": "CNY"}, "amount is marked USD but the currency is CNY"),
        ("ABC 12", {}, "unknown currency 'ABC'"),
        ("HK$ 5", {}, "not an amount"),
        ("12", {"currency": "XXX"}, "unknown currency 'XXX'"),
    ],
)
def test_parse_amount_rejects(raw, options, reason):
    assert reason_of(parse_amount, raw, **options).startswith(reason)


def test_parse_amount_never_goes_through_float():
    value = parse_amount("123456789012345.67", currency="CNY")
    assert value == Decimal("123456789012345.67")


# ------------------------------------------------------------ percentages, integers


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("12.5%", Decimal("0.125")),
        ("12.5 %", Decimal("0.125")),
        ("12.5" + wide("%"), Decimal("0.125")),
        ("0.125", Decimal("0.125")),
        ("1", Decimal(1)),
        ("0", Decimal(0)),
        ("0%", Decimal(0)),
        ("1000%", Decimal(10)),
        ("150%", Decimal("1.5")),
        (0.125, Decimal("0.125")),
        (0.35, Decimal("0.35")),
        (1, Decimal(1)),
        (Decimal("0.2"), Decimal("0.2")),
    ],
)
def test_parse_percentage_accepts(raw, expected):
    value = parse_percentage(raw)
    assert value == expected
    assert isinstance(value, Decimal)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("12.5", "ambiguous percentage: write 12.5% or 0.125"),
        ("5", "ambiguous percentage: write 5% or 0.05"),
        (12.5, "ambiguous percentage: write 12.5% or 0.125"),
        (2, "ambiguous percentage: write 2% or 0.02"),
        ("1001%", "percentage out of range (0% to 1000%)"),
        ("-1%", "percentage out of range (0% to 1000%)"),
        ("-0.5", "percentage out of range (0% to 1000%)"),
        ("abc", "not a percentage"),
        ("12.5%%", "not a percentage"),
        ("", "empty"),
        (None, "empty"),
        (float("nan"), "not a percentage"),
        (True, "not a percentage"),
    ],
)
def test_parse_percentage_rejects(raw, reason):
    assert reason_of(parse_percentage, raw) == reason


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("45", 45),
        (" 45 ", 45),
        ("+45", 45),
        ("-3", -3),
        ("1,234", 1234),
        ("45.0", 45),
        (wide("45"), 45),
        (45, 45),
        (45.0, 45),
        (Decimal("45.00"), 45),
    ],
)
def test_parse_int_accepts(raw, expected):
    value = parse_int(raw)
    assert value == expected
    assert type(value) is int


@pytest.mark.parametrize(
    ("raw", "options", "reason"),
    [
        ("45.5", {}, "not a whole number"),
        ("abc", {}, "not a whole number"),
        ("1e3", {}, "not a whole number"),
        ("12,34", {}, "not a whole number"),
        (45.5, {}, "not a whole number"),
        (float("inf"), {}, "not a whole number"),
        (True, {}, "not a whole number"),
        ("", {}, "empty"),
        (None, {}, "empty"),
        ("-1", {"minimum": 0}, "must be at least 0"),
        ("36501", {"maximum": 36500}, "must be at most 36500"),
    ],
)
def test_parse_int_rejects(raw, options, reason):
    assert reason_of(parse_int, raw, **options) == reason


# ------------------------------------------------------------------------------ dates


@pytest.mark.parametrize(
    ("raw", "options", "expected"),
    [
        ("2024-03-05", {}, date(2024, 3, 5)),
        ("2024/3/5", {}, date(2024, 3, 5)),
        ("2024.3.5", {}, date(2024, 3, 5)),
        ("2024-3-5", {}, date(2024, 3, 5)),
        ("20240305", {}, date(2024, 3, 5)),
        ("2024年3月5日", {}, date(2024, 3, 5)),
        ("2024 年 3 月 5 日", {}, date(2024, 3, 5)),
        (wide("2024-03-05"), {}, date(2024, 3, 5)),
        ("2024-03-05T10:00:00", {}, date(2024, 3, 5)),
        ("2024-03-05 10:00:00", {}, date(2024, 3, 5)),
        ("2024-03-05T23:30:00+08:00", {}, date(2024, 3, 5)),
        ("2024年3月5日 10:00", {}, date(2024, 3, 5)),
        ("05/03/2024", {}, date(2024, 5, 3)),
        ("05/03/2024", {"day_first": True}, date(2024, 3, 5)),
        ("5/3/2024", {}, date(2024, 5, 3)),
        ("5/3/2024", {"day_first": True}, date(2024, 3, 5)),
        ("05-03-2024", {"day_first": True}, date(2024, 3, 5)),
        ("3/5/2024 10:00 PM", {}, date(2024, 3, 5)),
        (" 2024-03-05 ", {}, date(2024, 3, 5)),
        ("2024-02-29", {}, date(2024, 2, 29)),
        ("1900-01-01", {}, date(1900, 1, 1)),
        ("2100-12-31", {}, date(2100, 12, 31)),
        (datetime(2024, 3, 5, 10, 0), {}, date(2024, 3, 5)),
        (date(2024, 3, 5), {}, date(2024, 3, 5)),
        (45356, {}, date(2024, 3, 5)),
        (45356.0, {}, date(2024, 3, 5)),
        (45356.75, {}, date(2024, 3, 5)),
        ("45356", {}, date(2024, 3, 5)),
        (1, {}, date(1900, 1, 1)),
        (59, {}, date(1900, 2, 28)),
        (61, {}, date(1900, 3, 1)),
        (20240305, {}, date(2024, 3, 5)),
        (20240305, {"allow_excel_serial": False}, date(2024, 3, 5)),
    ],
)
def test_parse_date_accepts(raw, options, expected):
    assert parse_date(raw, **options) == expected


@pytest.mark.parametrize(
    ("raw", "options", "reason"),
    [
        ("2024-02-30", {}, "no such date (2024-02-30)"),
        ("2023-02-29", {}, "no such date (2023-02-29)"),
        ("2024-13-05", {}, "no such date (2024-13-05)"),
        ("2024/13/5", {}, "no such date (2024-13-05)"),
        ("20241305", {}, "no such date (2024-13-05)"),
        ("2024年2月30日", {}, "no such date (2024-02-30)"),
        ("13/05/2024", {}, "no such date (2024-13-05; read month first)"),
        ("05/13/2024", {"day_first": True}, "no such date (2024-13-05; read day first)"),
        ("05/03/24", {}, "write the year with four digits"),
        ("5-3-24", {}, "write the year with four digits"),
        ("24-03-05", {}, "write the year with four digits"),
        ("1899-12-31", {}, "year out of range (1900 to 2100)"),
        ("2101-01-01", {}, "year out of range (1900 to 2100)"),
        (date(1899, 12, 31), {}, "year out of range (1900 to 2100)"),
        (60, {}, "no such date (1900-02-29, a day Excel invents)"),
        ("60", {}, "no such date (1900-02-29, a day Excel invents)"),
        (0, {}, "not a date"),
        (-5, {}, "not a date"),
        (2958466, {}, "not a date"),
        (2958465, {}, "year out of range (1900 to 2100)"),
        (2024, {}, "a year alone is not a date"),
        ("2024", {}, "a year alone is not a date"),
        (45356, {"allow_excel_serial": False}, "not a date"),
        ("45356", {"allow_excel_serial": False}, "not a date"),
        ("2024-03-05 25:00", {}, "no such time"),
        ("2024-03-05 10:00 XYZ", {}, "not a date"),
        ("March 5, 2024", {}, "not a date"),
        ("2024-03", {}, "not a date"),
        ("", {}, "empty"),
        (None, {}, "empty"),
        (True, {}, "not a date"),
        (float("nan"), {}, "not a date"),
    ],
)
def test_parse_date_rejects(raw, options, reason):
    assert reason_of(parse_date, raw, **options) == reason


@pytest.mark.parametrize(
    ("raw", "options", "expected"),
    [
        ("2024-03-05T10:00:00+08:00", {}, datetime(2024, 3, 5, 10, 0, tzinfo=PLUS_8)),
        ("2024-03-05T10:00:00Z", {}, datetime(2024, 3, 5, 10, 0, tzinfo=UTC)),
        ("2024-03-05 10:00:00", {}, datetime(2024, 3, 5, 10, 0, tzinfo=SHANGHAI)),
        ("2024-03-05", {}, datetime(2024, 3, 5, tzinfo=SHANGHAI)),
        ("2024/3/5 10:30", {}, datetime(2024, 3, 5, 10, 30, tzinfo=SHANGHAI)),
        ("2024/3/5 10:30 +0800", {}, datetime(2024, 3, 5, 10, 30, tzinfo=PLUS_8)),
        ("2024年3月5日 10:00", {}, datetime(2024, 3, 5, 10, 0, tzinfo=SHANGHAI)),
        ("05/03/2024 12:00 AM", {"day_first": True}, datetime(2024, 3, 5, tzinfo=SHANGHAI)),
        ("2024-03-05 10:00:00.1234567", {}, datetime(2024, 3, 5, 10, 0, 0, 123456, SHANGHAI)),
        ("20240305", {}, datetime(2024, 3, 5, tzinfo=SHANGHAI)),
        (datetime(2024, 3, 5, 10, 0), {}, datetime(2024, 3, 5, 10, 0, tzinfo=SHANGHAI)),
        (datetime(2024, 3, 5, 10, 0, tzinfo=UTC), {}, datetime(2024, 3, 5, 10, 0, tzinfo=UTC)),
        (date(2024, 3, 5), {}, datetime(2024, 3, 5, tzinfo=SHANGHAI)),
        (45356, {}, datetime(2024, 3, 5, tzinfo=SHANGHAI)),
        (45356.416666666664, {}, datetime(2024, 3, 5, 10, 0, tzinfo=SHANGHAI)),
        (45356.5, {}, datetime(2024, 3, 5, 12, 0, tzinfo=SHANGHAI)),
    ],
)
def test_parse_datetime_accepts(raw, options, expected):
    value = parse_datetime(raw, default_tz=SHANGHAI, **options)
    assert value.tzinfo is not None
    assert value == expected
    assert value.utcoffset() == expected.utcoffset()


def test_parse_datetime_keeps_the_written_offset():
    value = parse_datetime("2024-03-05T10:00:00-05:00", default_tz=SHANGHAI)
    assert value.utcoffset() == timedelta(hours=-5)
    assert value.tzinfo == timezone(timedelta(hours=-5))


def test_parse_datetime_uses_the_default_zone_for_naive_values_across_dst():
    summer = parse_datetime("7/1/2024 9:00 AM", default_tz=NEW_YORK)
    winter = parse_datetime("1/2/2024 9:00 AM", default_tz=NEW_YORK)
    assert summer.utcoffset() == timedelta(hours=-4)
    assert winter.utcoffset() == timedelta(hours=-5)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("2024-02-30 10:00", "no such date (2024-02-30)"),
        ("2024-03-05 24:00", "no such time"),
        ("2024-03-05 13:00 PM", "no such time"),
        ("2024-03-05 10:60", "no such time"),
        ("2024-03-05 10:00+25:00", "no such time zone offset"),
        ("05/03/24 10:00", "write the year with four digits"),
        (60.5, "no such date (1900-02-29, a day Excel invents)"),
        ("", "empty"),
        ([2024], "not a date"),
    ],
)
def test_parse_datetime_rejects(raw, reason):
    assert reason_of(parse_datetime, raw, default_tz=SHANGHAI) == reason


# ----------------------------------------------------------------------- national IDs

WEIGHTS = [2 ** (17 - i) % 11 for i in range(17)]  # GB 11643-1999: 2^(i-1) mod 11, i = 18..2


def check_character(body: str) -> str:
    """The ISO 7064 MOD 11-2 check character, computed the way the standard states it."""
    remainder = sum(int(digit) * weight for digit, weight in zip(body, WEIGHTS, strict=True)) % 11
    value = (12 - remainder) % 11
    return "X" if value == 10 else str(value)


def generated_ids(count: int, seed: int = 11643) -> list[str]:
    rng = random.Random(seed)
    first_day = date(1900, 1, 1).toordinal()
    last_day = date.today().toordinal()
    ids = []
    for _ in range(count):
        area = f"{rng.randint(11, 65)}{rng.randint(1, 99):02d}{rng.randint(1, 99):02d}"
        born = date.fromordinal(rng.randint(first_day, last_day))
        body = f"{area}{born:%Y%m%d}{rng.randint(0, 999):03d}"
        ids.append(body + check_character(body))
    return ids


def test_check_character_weights_match_the_standard():
    assert WEIGHTS == [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    # The specimen number printed in GB 11643-1999.
    assert check_character("11010519491231002") == "X"


def test_generated_ids_are_accepted():
    ids = generated_ids(3000)
    assert any(i.endswith("X") for i in ids)
    for national_id in ids:
        assert parse_cn_national_id(national_id) == national_id


def test_generated_ids_with_a_wrong_check_character_are_rejected():
    for national_id in generated_ids(500, seed=7):
        for wrong in "0123456789X":
            if wrong == national_id[17]:
                continue
            raw = national_id[:17] + wrong
            reason = reason_of(parse_cn_national_id, raw)
            assert reason == "national ID checksum does not match"
            assert_no_personal_digits(raw, reason)


def test_a_changed_digit_fails_the_checksum():
    for national_id in generated_ids(300, seed=8):
        position = random.Random(national_id).randrange(17)
        digit = str((int(national_id[position]) + 1) % 10)
        raw = national_id[:position] + digit + national_id[position + 1 :]
        # MOD 11-2 catches every single-digit substitution.
        assert reason_of(parse_cn_national_id, raw) == "national ID checksum does not match"


def with_check(body: str) -> str:
    return body + check_character(body)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("11010519491231002X", "11010519491231002X"),
        ("11010519491231002x", "11010519491231002X"),
        (" 110105 19491231 002X ", "11010519491231002X"),
        (wide("11010519491231002X"), "11010519491231002X"),
        (with_check("11010520000229123"), with_check("11010520000229123")),
        (with_check("11010519000101123"), with_check("11010519000101123")),
    ],
)
def test_parse_cn_national_id_accepts(raw, expected):
    assert parse_cn_national_id(raw) == expected


tomorrow = date.today() + timedelta(days=2)

BAD_NATIONAL_IDS = [
    ("", "empty"),
    (None, "empty"),
    ("110105490307457", "15-digit IDs are not accepted; send the 18-digit ID"),
    ("11010519900307457", "national ID must have 18 characters, not 17"),
    ("1101051990030745781", "national ID must have 18 characters, not 19"),
    ("11010519900307A578", "national ID must be 17 digits followed by a digit or X"),
    ("11010519900307457Y", "national ID must be 17 digits followed by a digit or X"),
    ("110105199003074571", "national ID checksum does not match"),
    (with_check("11010519900230123"), "national ID birth date is not a real date"),
    (with_check("11010519000229123"), "national ID birth date is not a real date"),
    (with_check("11010519901301123"), "national ID birth date is not a real date"),
    (with_check("11010518991231123"), "national ID birth date is before 1900"),
    (with_check(f"110105{tomorrow:%Y%m%d}123"), "national ID birth date is in the future"),
    (
        "1.10105E+17",
        "looks like a number Excel converted to scientific notation; export the column as text",
    ),
    ("1.10105199003074E+17", "looks like a number Excel converted to scientific notation"),
    ("110105199003074578.0", "was stored as a number in Excel, which keeps only 15 digits"),
    (110105199003074578.0, "was stored as a number in Excel, which keeps only 15 digits"),
    (110105199003074000, "was stored as a number in Excel, which keeps only 15 digits"),
    (110105199003074578, "was stored as a number in Excel, which keeps only 15 digits"),
    (Decimal("110105199003074578"), "was stored as a number in Excel"),
    (True, "not a national ID"),
]


@pytest.mark.parametrize(("raw", "reason"), BAD_NATIONAL_IDS)
def test_parse_cn_national_id_rejects_without_repeating_the_id(raw, reason):
    got = reason_of(parse_cn_national_id, raw)
    assert got.startswith(reason)
    assert_no_personal_digits(raw, got)


# ----------------------------------------------------------------------------- phones


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("13812345678", "CN", "+8613812345678"),
        ("138 1234 5678", "CN", "+8613812345678"),
        ("138-1234-5678", "CN", "+8613812345678"),
        ("+86 138 1234 5678", "CN", "+8613812345678"),
        ("+8613812345678", "CN", "+8613812345678"),
        ("008613812345678", "CN", "+8613812345678"),
        ("8613812345678", "CN", "+8613812345678"),
        (wide("13812345678"), "CN", "+8613812345678"),
        (wide("+86 138 1234 5678"), "CN", "+8613812345678"),
        ("010 6552 9988", "CN", "+861065529988"),
        (13812345678, "CN", "+8613812345678"),
        (13812345678.0, "CN", "+8613812345678"),
        ("(415) 555-2671", "US", "+14155552671"),
        ("415-555-2671", "US", "+14155552671"),
        ("4155552671", "US", "+14155552671"),
        ("1 415 555 2671", "US", "+14155552671"),
        ("+1 415-555-2671", "US", "+14155552671"),
        ("+14155552671", "US", "+14155552671"),
        ("+1 416 555 0123", "US", "+14165550123"),  # Canada, same country code
        ("+14155552671", "CN", "+14155552671"),
        ("+8613812345678", "US", "+8613812345678"),
        ("13812345678", "cn", "+8613812345678"),
    ],
)
def test_parse_phone_accepts(raw, region, expected):
    assert parse_phone(raw, region=region) == expected


BAD_PHONES = [
    ("12345", "CN"),
    ("23812345678", "CN"),
    ("1381234567", "CN"),
    ("138123456789", "CN"),
    ("abcdefg", "CN"),
    ("555-2671", "US"),
    ("(123) 555-2671", "US"),
    ("+1 415 555 267", "US"),
    ("+999 1234 5678", "US"),
    (13812345678.5, "CN"),
    (-13812345678, "CN"),
    (float("nan"), "CN"),
]


@pytest.mark.parametrize(("raw", "region"), BAD_PHONES)
def test_parse_phone_rejects_without_repeating_the_number(raw, region):
    reason = reason_of(parse_phone, raw, region=region)
    assert reason == f"not a valid phone number for {region}"
    assert_no_personal_digits(raw, reason)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("13812345678", ("+8613812345678", True)),
        ("12012345678", ("+8612012345678", False)),  # possible, not (yet) valid
        ("+86 174 1234 5678", ("+8617412345678", False)),
    ],
)
def test_a_contact_phone_possible_but_not_valid_is_kept_unverified(raw, expected):
    assert normalise.parse_contact_phone(raw, region="CN") == expected
    if not expected[1]:
        assert reason_of(parse_phone, raw, region="CN") == "not a valid phone number for CN"


@pytest.mark.parametrize("raw", ["800", "1234", "phone", "+86 1"])
def test_a_contact_phone_that_is_not_even_possible_is_refused(raw):
    assert reason_of(normalise.parse_contact_phone, raw, region="CN") == (
        "not a valid phone number for CN"
    )


def test_parse_phone_rejects_blanks_and_extensions():
    assert reason_of(parse_phone, "", region="CN") == "empty"
    assert reason_of(parse_phone, None, region="CN") == "empty"
    reason = reason_of(parse_phone, "+1 415 555 2671 ext. 12", region="US")
    assert reason == "phone extensions are not accepted"


def test_phone_region_default_validates_and_canonicalises():
    assert phone_region_default("cn") == "CN"
    assert phone_region_default("US") == "US"
    with pytest.raises(ValueError, match="unknown phone region"):
        phone_region_default("XX")


def phonenumbers_answer(text: str, region: str) -> str | None:
    """What the maintained library alone says about a string, as E.164 or None."""
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number) or number.extension:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def formatted(digits: str, rng: random.Random) -> str:
    """The digits as people write them: plain, grouped by spaces or dashes, or (area)."""
    style = rng.randrange(4)
    if style == 0:
        return digits
    if style == 3 and len(digits) > 6:
        return f"({digits[:3]}) {digits[3:6]}-{digits[6:]}"
    separator = " " if style == 1 else "-"
    cuts = sorted(rng.sample(range(1, len(digits)), k=min(3, len(digits) - 1)))
    parts = [digits[i:j] for i, j in zip([0, *cuts], [*cuts, len(digits)], strict=True)]
    return separator.join(parts)


def generated_phone_inputs(region: str, count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    country_code = str(phonenumbers.country_code_for_region(region))
    inputs = []
    for _ in range(count):
        shape = rng.randrange(6)
        if region == "CN" and shape < 4:
            # Mostly mobile-like: 1 and ten more digits, plus some that are a digit off.
            length = rng.choice([11, 11, 11, 10, 12])
            digits = "1" + "".join(rng.choices("0123456789", k=length - 1))
        elif region == "US" and shape < 4:
            length = rng.choice([10, 10, 10, 9, 11])
            digits = "".join(rng.choices("23456789", k=1) + rng.choices("0123456789", k=length - 1))
        else:
            length = rng.randint(6, 13)
            digits = "".join(rng.choices("0123456789", k=length))
        prefix = rng.choice(["", "", "", "+" + country_code, "+" + country_code + " ", "0"])
        inputs.append(prefix + formatted(digits, rng))
    return inputs


@pytest.mark.parametrize("region", ["CN", "US"])
def test_phone_fast_path_agrees_with_phonenumbers(region):
    plan = normalise._phone_plan(region)
    fast_answers = 0
    for text in generated_phone_inputs(region, 4000, seed=len(region) + ord(region[0])):
        expected = phonenumbers_answer(text, region)
        fast = normalise._fast_phone(text, plan)
        if fast is not None:
            fast_answers += 1
            assert fast == expected, text
        try:
            got: str | None = parse_phone(text, region=region)
        except FieldError as error:
            got = None
            assert_no_personal_digits(text, error.reason)
        assert got == expected, text
    # The comparison means something only if the fast path answered often.
    assert fast_answers > 400


# ----------------------------------------------------------------------------- emails


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Zhang.San@Example.COM", "Zhang.San@example.com"),
        ("  a@b.cn ", "a@b.cn"),
        ("first+tag@mail.example.co.uk", "first+tag@mail.example.co.uk"),
        ("用户@例子.中国", "用户@例子.中国"),
    ],
)
def test_parse_email_accepts(raw, expected):
    assert parse_email(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "zhang.san",
        "zhang@san",
        "a@@b.com",
        "a@b@c.com",
        "@b.com",
        "a b@c.com",
        "a@b .com",
        "a@.b.com",
        "a@b.com.",
        "a@b..com",
        "a@b.com\x00",
        "x" * 250 + "@b.com",
        42,
    ],
)
def test_parse_email_rejects_without_repeating_the_address(raw):
    reason = reason_of(parse_email, raw)
    assert reason == "not an email address"


def test_field_errors_are_value_errors_carrying_the_reason():
    error = FieldError("not an amount")
    assert isinstance(error, ValueError)
    assert error.reason == "not an amount"
    assert str(error) == "not an amount"
