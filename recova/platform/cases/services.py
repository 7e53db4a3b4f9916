"""Opening cases, and keeping days past due current."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import func, update
from sqlalchemy.orm import Session

from recova.platform.cases.models import Account, Case, CaseStatus, Debtor
from recova.platform.kernel.crypto import PersonalDataCipher, mask


def open_case(
    session: Session,
    *,
    cipher: PersonalDataCipher,
    debtor_external_id: str,
    full_name: str,
    account_external_id: str,
    currency: str,
    principal: Decimal,
    due_date: dt.date,
    national_id: str | None = None,
    product: str | None = None,
    source_row: dict[str, Any] | None = None,
) -> Case:
    """Create a debtor, an account and its case in the session's tenant schema."""
    debtor = Debtor(external_id=debtor_external_id, full_name=full_name)
    if national_id:
        normalised = national_id.strip().upper()
        debtor.national_id_ciphertext = cipher.encrypt(normalised, context="debtor.national_id")
        debtor.national_id_index = cipher.blind_index(normalised, context="debtor.national_id")
        debtor.national_id_masked = mask(normalised, keep_start=4, keep_end=4)
    account = Account(
        external_id=account_external_id,
        debtor=debtor,
        product=product,
        currency=currency,
        original_principal=principal,
        outstanding_principal=principal,
        due_date=due_date,
        days_past_due=0,
        source_row=source_row or {},
    )
    case = Case(account=account, debtor=debtor, status=CaseStatus.NEW)
    session.add_all([debtor, account, case])
    session.flush()  # callers return the new case id
    return case


def refresh_days_past_due(session: Session, *, as_of: dt.date) -> int:
    """Set every account's days past due as of ``as_of``; returns how many rows changed.

    Only rows whose value differs are written, so a second run the same day writes nothing.
    """
    new_value = func.greatest(0, as_of - Account.due_date)
    result = session.execute(
        update(Account)
        .where(Account.days_past_due.is_distinct_from(new_value))
        .values(days_past_due=new_value)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
