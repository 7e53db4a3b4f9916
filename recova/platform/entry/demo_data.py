"""Realistic, reproducible portfolio and payment files for the demo and the benchmarks.

Two styles, as lenders really send them:

- a Chinese online lender: a GBK-encoded CSV with Chinese headers, 18-digit resident IDs
  with valid check characters, mobile numbers, an emergency contact, amounts written with
  thousands separators and ``元``, and payments as a UTF-8 CSV with Chinese headers;
- a US consumer lender: a UTF-8 CSV with English headers, month-first dates, an APR
  column as a percentage, (NANP) phone numbers and emails, and payments as JSON lines
  including reversals.

Everything is drawn from a seeded generator, so the same seed writes the same bytes.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

CN_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"  # noqa: E501
CN_GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华建国文红玉兰志强春梅海燕欣怡子涵浩然宇轩梓萱一诺"  # noqa: E501
CN_PROVINCES = [
    ("110105", "北京"),
    ("310104", "上海"),
    ("440305", "广东"),
    ("330106", "浙江"),
    ("320102", "江苏"),
    ("510107", "四川"),
    ("420106", "湖北"),
    ("370202", "山东"),
]
CN_MOBILE_PREFIXES = ["130", "131", "132", "135", "136", "137", "138", "139", "150", "151"]
CN_MOBILE_PREFIXES += ["152", "155", "156", "158", "159", "177", "186", "187", "188", "189"]
CN_RELATIONS = ["配偶", "父亲", "母亲", "兄弟", "姐妹", "朋友", "同事"]
CN_PRODUCTS = ["现金贷", "消费分期", "小微经营贷"]
CN_CHANNELS = ["支付宝", "微信支付", "银行转账", "代扣"]

US_FIRST = ["James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda"]
US_FIRST += ["David", "Elizabeth", "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica"]
US_FIRST += ["Thomas", "Sarah", "Carlos", "Maria", "Wei", "Priya", "Ahmed", "Olga"]
US_LAST = ["Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis"]
US_LAST += ["Rodriguez", "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson"]
US_LAST += ["Thomas", "Taylor", "Moore", "Jackson", "Martin", "Lee", "Nguyen", "Chen", "Patel"]
US_STATES = [("NY", "212"), ("CA", "415"), ("TX", "512"), ("IL", "312"), ("FL", "305")]
US_STATES += [("WA", "206"), ("MA", "617"), ("GA", "404")]
US_PRODUCTS = ["personal_loan", "auto_refi", "bnpl"]
US_CHANNELS = ["ach", "debit_card", "check", "wire"]

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"

CN_PORTFOLIO_HEADER = [
    "借款编号",
    "借款人编号",
    "借款人姓名",
    "身份证号",
    "手机号",
    "产品",
    "省份",
    "借款本金",
    "应还本金",
    "应还利息",
    "罚息",
    "逾期金额",
    "年化利率",
    "到期日",
    "逾期天数",
    "紧急联系人",
    "紧急联系人电话",
    "联系人关系",
]

#: The mapping a tenant would save for the Chinese portfolio above.
CN_PORTFOLIO_MAPPING: dict[str, Any] = {
    "columns": {
        "account_external_id": "借款编号",
        "debtor_external_id": "借款人编号",
        "full_name": "借款人姓名",
        "national_id": "身份证号",
        "phone": "手机号",
        "product": "产品",
        "region": "省份",
        "original_principal": "借款本金",
        "outstanding_principal": "应还本金",
        "outstanding_interest": "应还利息",
        "outstanding_penalties": "罚息",
        "overdue_amount": "逾期金额",
        "interest_rate": "年化利率",
        "due_date": "到期日",
        "days_past_due": "逾期天数",
        "contact1_name": "紧急联系人",
        "contact1_phone": "紧急联系人电话",
        "contact1_relation": "联系人关系",
    },
    "options": {"phone_region": "CN", "default_currency": "CNY"},
}
CN_PAYMENTS_MAPPING: dict[str, Any] = {
    "columns": {
        "payment_external_id": "还款流水号",
        "account_external_id": "借款编号",
        "amount": "还款金额",
        "currency": "币种",
        "paid_at": "还款时间",
        "channel": "渠道",
        "reverses_payment_external_id": "冲正原流水号",
    },
    "options": {"timezone": "Asia/Shanghai"},
}
US_PORTFOLIO_MAPPING: dict[str, Any] = {
    "columns": {
        "account_external_id": "loan_id",
        "debtor_external_id": "borrower_id",
        "full_name": "borrower_name",
        "phone": "phone",
        "email": "email",
        "region": "state",
        "product": "product",
        "original_principal": "principal_original",
        "outstanding_principal": "principal_outstanding",
        "outstanding_interest": "interest_due",
        "outstanding_fees": "fees_due",
        "interest_rate": "apr",
        "due_date": "due_date",
    },
    "options": {"phone_region": "US", "default_currency": "USD", "day_first": False},
}
US_PAYMENTS_MAPPING: dict[str, Any] = {
    "columns": {
        "payment_external_id": "payment_id",
        "account_external_id": "loan_id",
        "amount": "amount",
        "currency": "currency",
        "paid_at": "paid_at",
        "channel": "channel",
        "paid_to": "received_by",
        "reverses_payment_external_id": "reverses",
    },
    "options": {"timezone": "America/New_York"},
}


def cn_national_id(rng: random.Random, region: str, birth: dt.date) -> str:
    """A syntactically valid 18-character resident ID (region, birth date, check char)."""
    body = f"{region}{birth:%Y%m%d}{rng.randrange(1000):03d}"
    check = _ID_CHECK[sum(int(d) * w for d, w in zip(body, _ID_WEIGHTS, strict=True)) % 11]
    return body + check


def _cn_mobile(rng: random.Random) -> str:
    return rng.choice(CN_MOBILE_PREFIXES) + f"{rng.randrange(10**8):08d}"


def _us_phone(rng: random.Random, area: str) -> str:
    exchange = rng.randrange(201, 999)
    if exchange % 100 == 11:  # N11 codes are not exchanges
        exchange += 1
    return f"({area}) {exchange:03d}-{rng.randrange(10000):04d}"


def _yuan(amount: Decimal) -> str:
    return f"{amount:,.2f}元"


@dataclass(frozen=True)
class Portfolio:
    """What a generated portfolio holds, for the payment file that follows it."""

    path: Path
    accounts: list[tuple[str, Decimal]]  # (account external id, outstanding principal)


def write_cn_portfolio(
    path: Path, *, rows: int, seed: int = 7, as_of: dt.date | None = None
) -> Portfolio:
    """A GBK CSV of a Chinese lender's overdue loans, Chinese headers, ``rows`` accounts."""
    rng = random.Random(seed)
    as_of = as_of or dt.date(2026, 11, 1)
    accounts: list[tuple[str, Decimal]] = []
    with path.open("w", encoding="gb18030", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(CN_PORTFOLIO_HEADER)
        number = 0
        while number < rows:
            region, province = rng.choice(CN_PROVINCES)
            birth = dt.date(1965, 1, 1) + dt.timedelta(days=rng.randrange(365 * 38))
            person = [
                f"U{seed:02d}{number + 1:08d}",
                rng.choice(CN_SURNAMES) + "".join(rng.sample(CN_GIVEN, rng.choice((1, 2)))),
                cn_national_id(rng, region, birth),
                _cn_mobile(rng),
            ]
            contact = [rng.choice(CN_SURNAMES) + rng.choice(CN_GIVEN), _cn_mobile(rng)]
            relation = rng.choice(CN_RELATIONS)
            # Most borrowers have one loan in collection; some have two.
            for _ in range(1 if rng.random() < 0.85 else 2):
                if number == rows:
                    break
                number += 1
                principal = Decimal(rng.randrange(2_000, 200_000))
                outstanding = (principal * Decimal(rng.randrange(20, 100)) / 100).quantize(
                    Decimal("0.01")
                )
                interest = (outstanding * Decimal("0.03")).quantize(Decimal("0.01"))
                penalty = (outstanding * Decimal("0.01")).quantize(Decimal("0.01"))
                dpd = rng.choice(
                    [rng.randrange(1, 31), rng.randrange(31, 91), rng.randrange(91, 400)]
                )
                due = as_of - dt.timedelta(days=dpd)
                external_id = f"CN{seed:02d}{number:08d}"
                writer.writerow(
                    [
                        external_id,
                        *person,
                        rng.choice(CN_PRODUCTS),
                        province,
                        _yuan(principal),
                        _yuan(outstanding),
                        f"{interest:.2f}",
                        f"{penalty:.2f}",
                        _yuan(outstanding + interest + penalty),
                        f"{rng.choice((18, 24, 24, 36))}%",
                        f"{due.year}/{due.month}/{due.day}",
                        dpd,
                        *contact,
                        relation,
                    ]
                )
                accounts.append((external_id, outstanding))
    return Portfolio(path, accounts)


def write_us_portfolio(
    path: Path, *, rows: int, seed: int = 11, as_of: dt.date | None = None
) -> Portfolio:
    """A UTF-8 CSV of a US lender's charged-off loans, English headers, month-first dates."""
    rng = random.Random(seed)
    as_of = as_of or dt.date(2026, 11, 1)
    accounts: list[tuple[str, Decimal]] = []
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(list(US_PORTFOLIO_MAPPING["columns"].values()))
        for number in range(1, rows + 1):
            state, area = rng.choice(US_STATES)
            first, last = rng.choice(US_FIRST), rng.choice(US_LAST)
            principal = Decimal(rng.randrange(500, 40_000))
            outstanding = (principal * Decimal(rng.randrange(30, 100)) / 100).quantize(
                Decimal("0.01")
            )
            due = as_of - dt.timedelta(days=rng.randrange(15, 420))
            external_id = f"US{seed:02d}{number:08d}"
            writer.writerow(
                [
                    external_id,
                    f"B{seed:02d}{number:08d}",
                    f"{first} {last}",
                    _us_phone(rng, area),
                    f"{first}.{last}{number}@example.com".lower(),
                    state,
                    rng.choice(US_PRODUCTS),
                    f"${principal:,.2f}",
                    f"${outstanding:,.2f}",
                    f"{(outstanding * Decimal('0.04')).quantize(Decimal('0.01'))}",
                    rng.choice(("0.00", "25.00", "35.00")),
                    f"{rng.choice(('19.99', '24.5', '29.99'))}%",
                    f"{due.month:02d}/{due.day:02d}/{due.year}",
                ]
            )
            accounts.append((external_id, outstanding))
    return Portfolio(path, accounts)


def _payments(
    rng: random.Random, portfolio: Portfolio, count: int, start: dt.datetime
) -> Iterator[tuple[str, str, Decimal, dt.datetime, str | None]]:
    """(payment id, account id, amount, paid at, reverses) with a few reversals at the end."""
    paid: list[tuple[str, str, Decimal, dt.datetime]] = []
    for number in range(1, count + 1):
        account, outstanding = rng.choice(portfolio.accounts)
        share = Decimal(rng.choice((10, 20, 25, 50, 100))) / 100
        amount = max(Decimal("1.00"), (outstanding * share).quantize(Decimal("0.01")))
        at = start + dt.timedelta(minutes=rng.randrange(60 * 24 * 25))
        payment = (f"P{number:08d}", account, amount, at)
        paid.append(payment)
        yield (*payment, None)
    for number, (payment_id, account, amount, at) in enumerate(
        rng.sample(paid, max(1, count // 50)), start=1
    ):
        part = amount if number % 2 else (amount / 2).quantize(Decimal("0.01"))
        yield f"R{number:08d}", account, part, at + dt.timedelta(days=2), payment_id


def write_cn_payments(path: Path, portfolio: Portfolio, *, count: int, seed: int = 13) -> None:
    """A UTF-8 CSV of repayments with Chinese headers, times in Beijing time, no offset."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(list(CN_PAYMENTS_MAPPING["columns"].values()))
        start = dt.datetime(2026, 11, 2, 8, 0)  # noqa: DTZ001 - local time, as exported
        for payment_id, account, amount, at, reverses in _payments(rng, portfolio, count, start):
            writer.writerow(
                [
                    payment_id,
                    account,
                    f"{amount:.2f}",
                    "CNY",
                    at.strftime("%Y-%m-%d %H:%M:%S"),
                    rng.choice(CN_CHANNELS),
                    reverses or "",
                ]
            )


def write_us_payments(path: Path, portfolio: Portfolio, *, count: int, seed: int = 17) -> None:
    """JSON lines of payments with ISO 8601 offsets, some received by the agency."""
    rng = random.Random(seed)
    start = dt.datetime(2026, 11, 2, 13, 0, tzinfo=dt.UTC)
    with path.open("w", encoding="utf-8") as out:
        for payment_id, account, amount, at, reverses in _payments(rng, portfolio, count, start):
            record = {
                "payment_id": payment_id,
                "loan_id": account,
                "amount": str(amount),
                "currency": "USD",
                "paid_at": at.isoformat(),
                "channel": rng.choice(US_CHANNELS),
                "received_by": rng.choice(("tenant", "tenant", "agency")),
                "reverses": reverses,
            }
            out.write(json.dumps(record) + "\n")
