"""Finding cases in a big book: filters, look-up by identifier, sorted keyset pages.

Built for a tenant with a million cases. Every sort key lives on ``accounts`` (one per
case) and is indexed with the account id as its tiebreaker (tenant migration 0011), so a
page is an index range scan that stops after ``limit + 1`` rows, however deep the page:
no ``OFFSET`` and no ``COUNT(*)``. A page's cursor is the last row's (sort key, account
id), and the next page starts strictly after it.

A look-up by phone or national id never decrypts anything: the typed value is normalised
the way ingestion normalised it, its keyed blind index is computed
(``PersonalDataCipher.blind_index``) and compared with the stored index columns.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, false, func, or_, select, tuple_
from sqlalchemy.orm import Session

from recova.connectors.normalise import FieldError, parse_cn_national_id, parse_contact_phone
from recova.platform.allocation.models import CaseSegment, Placement
from recova.platform.allocation.segmentation import CURRENT_BUCKET, tenant_buckets
from recova.platform.cases.models import CASE_FLAGS, Account, Case, CaseStatus, Contact, Debtor
from recova.platform.kernel.crypto import PersonalDataCipher

#: The balance a case is sorted and filtered by: what the debtor owes now.
BALANCE = (
    Account.outstanding_principal
    + Account.outstanding_interest
    + Account.outstanding_fees
    + Account.outstanding_penalties
)
SORT_KEYS: dict[str, Any] = {
    "dpd": Account.days_past_due,
    "balance": BALANCE,
    "updated": Account.updated_at,
}
SORTS = ("dpd_desc", "dpd_asc", "balance_desc", "balance_asc", "updated_desc", "updated_asc")
#: A flag filter value meaning "no flag at all".
NO_FLAGS = "none"
#: The debtor-level do-not-contact mark, filtered beside the case flags.
DO_NOT_CONTACT = "do_not_contact"
FLAG_FILTERS = (*CASE_FLAGS, DO_NOT_CONTACT, NO_FLAGS)
#: Most cases a look-up may match (a phone shared by a family, say) before it is refused.
LOOKUP_LIMIT = 500


@dataclass(frozen=True)
class CaseFilters:
    """What the list is narrowed to; ``None`` or empty leaves a dimension open."""

    bucket: str | None = None
    status: CaseStatus | None = None
    agency_id: int | None = None
    segment: str | None = None
    flag: str | None = None
    dpd_min: int | None = None
    dpd_max: int | None = None
    balance_min: Decimal | None = None
    balance_max: Decimal | None = None
    lookup: str | None = None


@dataclass(frozen=True)
class CaseRow:
    """One line of the list: masked identifiers only."""

    case_id: int
    account_id: int
    account_external_id: str
    debtor_external_id: str
    full_name: str
    national_id_masked: str | None
    status: CaseStatus
    flags: list[str]
    do_not_contact: bool
    currency: str
    balance: Decimal
    days_past_due: int
    bucket: str
    segment: str | None
    agency_id: int | None
    updated_at: dt.datetime


@dataclass
class CasePage:
    rows: list[CaseRow]
    #: Cursors of the pages after and before this one (``None``: there is none).
    next_cursor: str | None = None
    prev_cursor: str | None = None
    buckets: list[dict[str, Any]] = field(default_factory=list)


def bucket_of(days_past_due: int, buckets: Sequence[dict[str, Any]]) -> str:
    """The bucket ``days_past_due`` falls in (``M0`` when not overdue)."""
    for bucket in buckets:
        low, high = bucket["min"], bucket.get("max")
        if days_past_due >= low and (high is None or days_past_due <= high):
            return str(bucket["name"])
    return CURRENT_BUCKET


def bucket_names(session: Session) -> list[str]:
    """The tenant's bucket names, current first."""
    return [CURRENT_BUCKET, *(str(b["name"]) for b in tenant_buckets(session))]


def segment_names(session: Session) -> list[str]:
    """The segments cases are in now, at most 200.

    A handful of names over a million rows: walked on ``ix_case_segments_segment`` one
    name at a time (each step the first name above the last), so the cost is one index
    probe per name, where a ``DISTINCT`` would read every case's segment.
    """
    return list(session.scalars(_SEGMENT_NAMES))


def _segment_name_walk() -> Select[Any]:
    first = (
        select(CaseSegment.segment)
        .where(CaseSegment.segment.is_not(None))
        .order_by(CaseSegment.segment)
        .limit(1)
        .cte("segment_names", recursive=True)
    )
    following = (
        select(CaseSegment.segment)
        .where(CaseSegment.segment > first.c.segment)
        .order_by(CaseSegment.segment)
        .limit(1)
        .scalar_subquery()
    )
    walk = first.union_all(select(following).where(first.c.segment.is_not(None)))
    return select(walk.c.segment).where(walk.c.segment.is_not(None)).limit(200)


# Built once (statements are immutable).
_SEGMENT_NAMES = _segment_name_walk()


def encode_cursor(value: Any, account_id: int) -> str:
    """A page boundary for the URL: the sort key and the account id, opaque to people."""
    if isinstance(value, dt.datetime):
        shown: Any = value.isoformat()
    elif isinstance(value, Decimal):
        shown = str(value)
    else:
        shown = value
    raw = json.dumps([shown, account_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str) -> tuple[Any, int] | None:
    """The (sort key, account id) of a cursor, or ``None`` if it is not one of ours."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value, account_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(account_id, int):
            return None
        key = sort.split("_", 1)[0]
        if key == "dpd":
            return (int(value), account_id)
        if key == "balance":
            return (Decimal(str(value)), account_id)
        return (dt.datetime.fromisoformat(str(value)), account_id)
    except (ValueError, TypeError, InvalidOperation, json.JSONDecodeError):
        return None


def national_id_indexes(cipher: PersonalDataCipher, typed: str) -> list[bytes]:
    """Blind indexes a typed national id may be stored under (as ingestion normalises)."""
    candidates = {typed.strip().upper().replace(" ", "")}
    with contextlib.suppress(FieldError):
        candidates.add(parse_cn_national_id(typed.strip()))
    return [cipher.blind_index(c, context="debtor.national_id") for c in candidates if c]


def phone_indexes(cipher: PersonalDataCipher, typed: str, *, region: str) -> list[bytes]:
    """Blind indexes a typed phone number may be stored under: its E.164 form."""
    candidates = set()
    text = typed.strip()
    if text.startswith("+") and text[1:].isdigit():
        candidates.add(text)
    with contextlib.suppress(FieldError):
        candidates.add(parse_contact_phone(text, region=region)[0])
    return [cipher.blind_index(c, context="contact.phone") for c in candidates]


def lookup_condition(
    session: Session, cipher: PersonalDataCipher, typed: str, *, region: str
) -> ColumnElement[bool]:
    """Cases whose account or debtor external id, phone or national id is ``typed``.

    Each identifier is found by its own index first (external ids are unique, the blind
    index columns are indexed), so the case query is an ``IN`` on two indexed columns.
    """
    text = typed.strip()
    if not text:
        return false()
    account_ids = list(session.scalars(select(Account.id).where(Account.external_id == text)))
    debtor_ids = set(session.scalars(select(Debtor.id).where(Debtor.external_id == text)))
    by_national_id = national_id_indexes(cipher, text)
    if by_national_id:
        debtor_ids.update(
            session.scalars(
                select(Debtor.id)
                .where(Debtor.national_id_index.in_(by_national_id))
                .limit(LOOKUP_LIMIT)
            )
        )
    by_phone = phone_indexes(cipher, text, region=region)
    if by_phone:
        debtor_ids.update(
            session.scalars(
                select(Contact.debtor_id)
                .where(Contact.value_index.in_(by_phone))
                .distinct()
                .limit(LOOKUP_LIMIT)
            )
        )
    if not account_ids and not debtor_ids:
        return false()
    return or_(Case.account_id.in_(account_ids), Case.debtor_id.in_(sorted(debtor_ids)))


def _filtered(
    session: Session,
    cipher: PersonalDataCipher,
    filters: CaseFilters,
    *,
    region: str,
) -> Select[Any]:
    active = and_(Placement.case_id == Case.id, Placement.recalled_on.is_(None))
    statement: Any = (
        select(Case, Account, Debtor, CaseSegment.segment, Placement.agency_id)
        .join(Account, Account.id == Case.account_id)
        .join(Debtor, Debtor.id == Case.debtor_id)
        .outerjoin(CaseSegment, CaseSegment.case_id == Case.id)
        .outerjoin(Placement, active)
    )
    if filters.bucket:
        statement = statement.where(*_bucket_range(session, filters.bucket))
    if filters.status is not None:
        statement = statement.where(Case.status == filters.status)
    if filters.agency_id is not None:
        statement = statement.where(Placement.agency_id == filters.agency_id)
    if filters.segment:
        statement = statement.where(CaseSegment.segment == filters.segment)
    if filters.flag == NO_FLAGS:
        statement = statement.where(
            func.cardinality(Case.flags) == 0, Debtor.do_not_contact.is_(False)
        )
    elif filters.flag == DO_NOT_CONTACT:
        statement = statement.where(Debtor.do_not_contact.is_(True))
    elif filters.flag:
        statement = statement.where(Case.flags.contains([filters.flag]))
    if filters.dpd_min is not None:
        statement = statement.where(Account.days_past_due >= filters.dpd_min)
    if filters.dpd_max is not None:
        statement = statement.where(Account.days_past_due <= filters.dpd_max)
    if filters.balance_min is not None:
        statement = statement.where(filters.balance_min <= BALANCE)
    if filters.balance_max is not None:
        statement = statement.where(filters.balance_max >= BALANCE)
    if filters.lookup:
        statement = statement.where(
            lookup_condition(session, cipher, filters.lookup, region=region)
        )
    return statement


def _bucket_range(session: Session, name: str) -> list[ColumnElement[bool]]:
    """The days-past-due range of bucket ``name`` (an unknown bucket matches nothing)."""
    if name == CURRENT_BUCKET:
        return [Account.days_past_due <= 0]
    for bucket in tenant_buckets(session):
        if bucket["name"] == name:
            conditions = [Account.days_past_due >= bucket["min"]]
            if bucket.get("max") is not None:
                conditions.append(Account.days_past_due <= bucket["max"])
            return conditions
    return [false()]


def list_cases(
    session: Session,
    cipher: PersonalDataCipher,
    filters: CaseFilters,
    *,
    region: str,
    sort: str = "dpd_desc",
    after: str | None = None,
    before: str | None = None,
    limit: int = 50,
) -> CasePage:
    """One page of cases matching ``filters`` in ``sort`` order.

    ``after``: the page following that cursor; ``before``: the page preceding it.
    """
    if sort not in SORTS:
        sort = "dpd_desc"
    key_name, direction = sort.split("_", 1)
    key = SORT_KEYS[key_name]
    descending = direction == "desc"
    statement = _filtered(session, cipher, filters, region=region)
    cursor = decode_cursor(before or after or "", sort) if (before or after) else None
    backwards = before is not None and cursor is not None
    if cursor is not None:
        boundary = tuple_(key, Account.id)
        # Moving forward in a descending list, or backward in an ascending one: smaller.
        smaller = descending != backwards
        statement = statement.where(boundary < cursor if smaller else boundary > cursor)
    reverse = descending != backwards
    order = (key.desc(), Account.id.desc()) if reverse else (key.asc(), Account.id.asc())
    fetched = list(session.execute(statement.order_by(*order).limit(limit + 1)).all())
    more = len(fetched) > limit
    fetched = fetched[:limit]
    if backwards:
        fetched.reverse()
    buckets = tenant_buckets(session)
    rows = [_row(found, buckets) for found in fetched]
    page = CasePage(rows=rows, buckets=buckets)
    if rows:
        first, last = rows[0], rows[-1]
        has_next = more if not backwards else True
        has_prev = more if backwards else cursor is not None
        if has_next:
            page.next_cursor = encode_cursor(_key_value(last, key_name), last.account_id)
        if has_prev:
            page.prev_cursor = encode_cursor(_key_value(first, key_name), first.account_id)
    return page


def _key_value(row: CaseRow, key_name: str) -> Any:
    if key_name == "dpd":
        return row.days_past_due
    if key_name == "balance":
        return row.balance
    return row.updated_at


def _row(found: Any, buckets: Sequence[dict[str, Any]]) -> CaseRow:
    case, account, debtor, segment, agency_id = found
    return CaseRow(
        case_id=case.id,
        account_id=account.id,
        account_external_id=account.external_id,
        debtor_external_id=debtor.external_id,
        full_name=debtor.full_name,
        national_id_masked=debtor.national_id_masked,
        status=case.status,
        flags=list(case.flags or ()),
        do_not_contact=debtor.do_not_contact,
        currency=account.currency,
        balance=account.outstanding_total,
        days_past_due=account.days_past_due,
        bucket=bucket_of(account.days_past_due, buckets),
        segment=segment,
        agency_id=agency_id,
        updated_at=account.updated_at,
    )
