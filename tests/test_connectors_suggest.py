"""Suggested fields for a file's columns, from English and Chinese header names."""

from __future__ import annotations

from recova.connectors.fields import FIELDS, validate_mapping
from recova.connectors.models import FeedKind
from recova.connectors.suggest import SYNONYMS, normalised_header, suggest_fields
from tests.ingest_support import CN_COLUMNS, CN_HEADER, PAYMENT_COLUMNS


def test_chinese_headers_get_their_fields() -> None:
    suggested = suggest_fields(FeedKind.PORTFOLIO, CN_HEADER)
    assert suggested == {column: field for field, column in CN_COLUMNS.items()}
    mapping = {field: column for column, field in suggested.items() if field}
    validate_mapping(FeedKind.PORTFOLIO, mapping, {})  # a complete, loadable mapping


def test_english_headers_in_any_spelling() -> None:
    headers = ["Loan No", "BORROWER_NAME", "Mobile Phone", "Principal", "DPD", "Notes"]
    assert suggest_fields(FeedKind.PORTFOLIO, headers) == {
        "Loan No": "account_external_id",
        "BORROWER_NAME": "full_name",
        "Mobile Phone": "phone",
        "Principal": "original_principal",
        "DPD": "days_past_due",
        "Notes": None,
    }


def test_full_width_and_spaced_chinese_headers() -> None:
    assert normalised_header(
        "借款人\uff08姓名\uff09"
    )  # full-width brackets == normalised_header("借款人姓名")
    assert suggest_fields(FeedKind.PORTFOLIO, [" 借款人 姓名 "]) == {" 借款人 姓名 ": "full_name"}


def test_a_field_is_suggested_once() -> None:
    suggested = suggest_fields(FeedKind.PORTFOLIO, ["姓名", "客户姓名", "name"])
    assert suggested == {"姓名": "full_name", "客户姓名": None, "name": None}


def test_payment_headers() -> None:
    suggested = suggest_fields(FeedKind.PAYMENTS, list(PAYMENT_COLUMNS.values()))
    assert suggested == {column: field for field, column in PAYMENT_COLUMNS.items()}
    chinese = suggest_fields(FeedKind.PAYMENTS, ["还款流水号", "借款编号", "还款金额", "还款时间"])
    assert list(chinese.values()) == [
        "payment_external_id",
        "account_external_id",
        "amount",
        "paid_at",
    ]


def test_every_synonym_names_a_real_field() -> None:
    for kind, table in SYNONYMS.items():
        assert set(table) <= set(FIELDS[kind]), kind
        assert set(FIELDS[kind]) <= set(table), kind  # every field can be suggested
