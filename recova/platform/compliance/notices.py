"""Validation notices (Regulation F): record when one was sent, and find the ones due.

A notice is due within the policy's ``validation_notice_days`` of the first contact with
the debtor about the case (a connected call or a delivered message); a case past that
without a recorded notice is overdue.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from recova.platform.compliance.models import ValidationNotice
from recova.platform.kernel.db import scoped_schema, utcnow


def record_notice(
    session: Session,
    *,
    case_id: int,
    channel: str,
    sent_at: dt.datetime | None = None,
    recorded_by: int | None = None,
) -> ValidationNotice:
    """Record the case's validation notice as sent (once; a second one changes nothing)."""
    found = session.get(ValidationNotice, case_id)
    if found is not None:
        return found
    notice = ValidationNotice(
        case_id=case_id, channel=channel, sent_at=sent_at or utcnow(), recorded_by=recorded_by
    )
    session.add(notice)
    session.flush()  # the caller answers with the stored row
    return notice


def notices_due(
    session: Session, *, days: int | None, now: dt.datetime, state: str | None = None
) -> list[dict[str, Any]]:
    """Open cases contacted without a validation notice: due (still in time) or overdue."""
    if days is None:
        return []
    s = scoped_schema(session)
    rows = session.execute(
        text(
            f"""SELECT f.case_id, f.first_contact_at,
                       f.first_contact_at + make_interval(days => :days) AS due_by
                FROM (SELECT case_id, min(attempted_at) AS first_contact_at
                      FROM {s}.contact_attempts
                      WHERE status = 'completed' AND NOT third_party
                        AND result IN ('connected', 'delivered')
                      GROUP BY case_id) f
                JOIN {s}.cases c ON c.id = f.case_id
                WHERE c.status NOT IN ('closed', 'paid', 'settled', 'recalled')
                  AND NOT EXISTS (SELECT 1 FROM {s}.validation_notices n
                                  WHERE n.case_id = f.case_id)
                ORDER BY due_by, f.case_id"""
        ),
        {"days": days},
    ).mappings()
    out = []
    for row in rows:
        row_state = "overdue" if row["due_by"] < now else "due"
        if state is None or state == row_state:
            out.append({**row, "state": row_state})
    return out
