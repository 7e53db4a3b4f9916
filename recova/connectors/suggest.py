"""Suggesting Recova's field for each column of a tenant's file, from the column's name.

Lenders' systems name columns in English or Chinese, with their own spacing, case and
punctuation: ``借款人姓名``, ``Borrower Name``, ``loan_no``. A header is reduced to a
comparable form (``normalised_header``: case folded, full-width characters made
half-width, spaces, underscores, dashes and brackets removed) and looked up in
``SYNONYMS``. Each field is suggested for one column at most (the first that names
it), so a suggestion is always a mapping ``validate_mapping`` would not refuse for
duplicates. A suggestion is only a starting point: the tenant confirms or changes it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from recova.connectors.fields import FIELDS
from recova.connectors.models import FeedKind

#: Recova field -> names tenants' files give it (compared after ``normalised_header``).
SYNONYMS: dict[FeedKind, dict[str, tuple[str, ...]]] = {
    FeedKind.PORTFOLIO: {
        "account_external_id": (
            "account_external_id",
            "account_id",
            "account_no",
            "account_number",
            "loan_id",
            "loan_no",
            "loan_number",
            "contract_no",
            "contract_id",
            "借款编号",
            "借据号",
            "借据编号",
            "贷款编号",
            "合同编号",
            "合同号",
            "账户编号",
            "订单号",
            "订单编号",
            "借款单号",
            "案件编号",
        ),
        "debtor_external_id": (
            "debtor_external_id",
            "debtor_id",
            "borrower_id",
            "customer_id",
            "customer_no",
            "client_id",
            "user_id",
            "客户编号",
            "客户号",
            "借款人编号",
            "用户编号",
            "用户id",
        ),
        "full_name": (
            "full_name",
            "name",
            "borrower_name",
            "borrower",
            "customer_name",
            "debtor_name",
            "client_name",
            "借款人姓名",
            "借款人",
            "姓名",
            "客户姓名",
            "客户名称",
            "用户姓名",
        ),
        "national_id": (
            "national_id",
            "id_number",
            "id_no",
            "id_card",
            "identity_number",
            "ssn",
            "身份证号",
            "身份证号码",
            "身份证",
            "证件号码",
            "证件号",
        ),
        "phone": (
            "phone",
            "mobile",
            "mobile_phone",
            "phone_number",
            "cell_phone",
            "telephone",
            "tel",
            "手机号",
            "手机号码",
            "手机",
            "电话",
            "联系电话",
            "借款人电话",
        ),
        "phone2": (
            "phone2",
            "second_phone",
            "other_phone",
            "alternate_phone",
            "mobile2",
            "备用电话",
            "备用手机",
            "其他电话",
            "手机号2",
        ),
        "email": ("email", "e_mail", "email_address", "mail", "邮箱", "电子邮箱", "电子邮件"),
        "address": (
            "address",
            "home_address",
            "residential_address",
            "住址",
            "地址",
            "家庭住址",
            "居住地址",
            "联系地址",
        ),
        "region": ("region", "province", "state", "省份", "省", "地区", "所在地区", "区域"),
        "language": ("language", "preferred_language", "语言", "偏好语言"),
        "product": ("product", "product_name", "loan_product", "产品", "产品名称", "贷款产品"),
        "currency": ("currency", "currency_code", "币种", "货币"),
        "original_principal": (
            "original_principal",
            "principal",
            "loan_amount",
            "amount_lent",
            "disbursed_amount",
            "借款本金",
            "借款金额",
            "贷款金额",
            "放款金额",
            "合同金额",
        ),
        "outstanding_principal": (
            "outstanding_principal",
            "principal_outstanding",
            "remaining_principal",
            "principal_due",
            "应还本金",
            "剩余本金",
            "未还本金",
            "待还本金",
        ),
        "outstanding_interest": (
            "outstanding_interest",
            "interest",
            "interest_due",
            "应还利息",
            "剩余利息",
            "未还利息",
            "利息",
        ),
        "outstanding_fees": ("outstanding_fees", "fees", "fee", "应还费用", "费用", "服务费"),
        "outstanding_penalties": (
            "outstanding_penalties",
            "penalty",
            "penalties",
            "late_fee",
            "罚息",
            "违约金",
            "应还罚息",
            "滞纳金",
        ),
        "overdue_amount": (
            "overdue_amount",
            "amount_overdue",
            "past_due_amount",
            "arrears",
            "逾期金额",
            "逾期总额",
            "应还总额",
            "欠款金额",
        ),
        "interest_rate": (
            "interest_rate",
            "rate",
            "annual_rate",
            "apr",
            "年化利率",
            "利率",
            "年利率",
        ),
        "due_date": (
            "due_date",
            "maturity_date",
            "date_due",
            "到期日",
            "应还日期",
            "还款日",
            "到期日期",
            "逾期日期",
            "首次逾期日",
        ),
        "days_past_due": (
            "days_past_due",
            "dpd",
            "days_overdue",
            "overdue_days",
            "逾期天数",
            "逾期天",
        ),
        "contact1_name": (
            "contact1_name",
            "contact_name",
            "emergency_contact",
            "emergency_contact_name",
            "紧急联系人",
            "紧急联系人姓名",
            "联系人",
            "联系人姓名",
            "联系人1",
            "联系人1姓名",
        ),
        "contact1_phone": (
            "contact1_phone",
            "contact_phone",
            "emergency_contact_phone",
            "紧急联系人电话",
            "紧急联系人手机",
            "联系人电话",
            "联系人手机",
            "联系人1电话",
        ),
        "contact1_relation": (
            "contact1_relation",
            "contact_relation",
            "relationship",
            "relation",
            "联系人关系",
            "紧急联系人关系",
            "关系",
            "联系人1关系",
        ),
        "contact2_name": ("contact2_name", "联系人2", "联系人2姓名", "紧急联系人2"),
        "contact2_phone": ("contact2_phone", "联系人2电话", "紧急联系人2电话"),
        "contact2_relation": ("contact2_relation", "联系人2关系", "紧急联系人2关系"),
        "contact3_name": ("contact3_name", "联系人3", "联系人3姓名", "紧急联系人3"),
        "contact3_phone": ("contact3_phone", "联系人3电话", "紧急联系人3电话"),
        "contact3_relation": ("contact3_relation", "联系人3关系", "紧急联系人3关系"),
    },
    FeedKind.PAYMENTS: {
        "payment_external_id": (
            "payment_external_id",
            "payment_id",
            "payment_no",
            "transaction_id",
            "txn_id",
            "repayment_id",
            "还款编号",
            "还款流水号",
            "流水号",
            "交易流水号",
            "交易编号",
        ),
        "account_external_id": (
            "account_external_id",
            "account_id",
            "loan_id",
            "loan_no",
            "contract_no",
            "借款编号",
            "借据号",
            "贷款编号",
            "合同编号",
            "账户编号",
        ),
        "amount": (
            "amount",
            "payment_amount",
            "paid_amount",
            "repayment_amount",
            "还款金额",
            "回款金额",
            "金额",
            "实还金额",
        ),
        "currency": ("currency", "currency_code", "币种", "货币"),
        "paid_at": (
            "paid_at",
            "payment_date",
            "paid_on",
            "repayment_date",
            "transaction_time",
            "还款时间",
            "还款日期",
            "回款时间",
            "回款日期",
            "交易时间",
            "支付时间",
        ),
        "channel": ("channel", "payment_channel", "method", "还款渠道", "渠道", "支付方式"),
        "paid_to": ("paid_to", "payee", "收款方"),
        "reverses_payment_external_id": (
            "reverses_payment_external_id",
            "reverses",
            "reversal_of",
            "original_payment_id",
            "冲正原流水号",
            "原还款编号",
            "原流水号",
        ),
    },
}

_PUNCTUATION = re.compile(r"[\s_\-.:/()\[\]【】·]+")  # NFKC made full-width ones plain


def normalised_header(header: str) -> str:
    """A header as headers are compared: NFKC (full-width to half-width), case folded,
    without spaces, underscores, dashes, dots and brackets."""
    return _PUNCTUATION.sub("", unicodedata.normalize("NFKC", header).casefold())


def _index(kind: FeedKind) -> dict[str, str]:
    index: dict[str, str] = {}
    for name, synonyms in SYNONYMS[kind].items():
        for synonym in synonyms:
            index.setdefault(normalised_header(synonym), name)
    return index


def suggest_fields(kind: FeedKind, headers: Sequence[str]) -> dict[str, str | None]:
    """Each header's suggested Recova field of ``kind`` (``None``: no suggestion); a field
    is suggested for the first header that names it only."""
    index = _index(kind)
    taken: set[str] = set()
    suggested: dict[str, str | None] = {}
    for header in headers:
        name = index.get(normalised_header(header))
        if name is None or name in taken or name not in FIELDS[kind]:
            suggested[header] = None
            continue
        taken.add(name)
        suggested[header] = name
    return suggested
