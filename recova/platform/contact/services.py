"""Recording outcomes, the tenant's outcome codes, do-not-contact marks, attempt history."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from recova.platform.audit import record_event
from recova.platform.auth.principal import Principal
from recova.platform.cases.models import Account, Case, Contact, Debtor
from recova.platform.compliance.policy import policy_in_force
from recova.platform.contact.models import (
    AttemptStatus,
    ContactAttempt,
    MessageTemplate,
    OutcomeCode,
    Result,
    result_fits,
)
from recova.platform.contact.templates import render
from recova.platform.kernel.db import utcnow
from recova.platform.kernel.errors import DomainError
from recova.platform.work.lifecycle import mark_worked


class ContactError(DomainError, ValueError):
    """A request about contact work that cannot be carried out (409 or 422)."""

    def __init__(self, message: str, *, conflict: bool = False) -> None:
        super().__init__(message)
        self.conflict = conflict
        self.status = 409 if conflict else 422


#: Codes a new tenant starts with, one per canonical result.
DEFAULT_CODES = (
    ("CONNECTED", "Spoke with the person", Result.CONNECTED),
    ("NO_ANSWER", "No answer", Result.NO_ANSWER),
    ("BUSY", "Line busy", Result.BUSY),
    ("WRONG_NUMBER", "Wrong or invalid number", Result.WRONG_NUMBER),
    ("REFUSED", "Refused to talk", Result.REFUSED),
    ("DELIVERED", "Message delivered", Result.DELIVERED),
    ("FAILED", "Could not be delivered", Result.FAILED),
)


def outcome_codes(session: Session) -> list[OutcomeCode]:
    """The tenant's codes; the defaults are created the first time they are asked for."""
    codes = list(session.scalars(select(OutcomeCode).order_by(OutcomeCode.id)))
    if not codes:
        codes = [OutcomeCode(code=c, label=label, result=r.value) for c, label, r in DEFAULT_CODES]
        session.add_all(codes)
        session.flush()  # the caller lists them with their ids
    return codes


def create_outcome_code(
    session: Session, *, code: str, label: str, result: str, actor: Principal | str
) -> OutcomeCode:
    """Add a tenant outcome code mapped to a canonical result."""
    outcome_codes(session)  # the defaults exist first, so the new code is not the only one
    if session.scalar(select(OutcomeCode.id).where(OutcomeCode.code == code)) is not None:
        raise ContactError(f"outcome code {code!r} exists", conflict=True)
    created = OutcomeCode(code=code, label=label, result=result, is_active=True)
    session.add(created)
    session.flush()  # the caller answers with the new id, and the audit event names it
    record_event(
        session,
        action="config.changed",
        actor=actor,
        subject=("outcome_code", created.id),
        data={"what": "outcome_code", "code": code, "result": result, "is_active": True},
    )
    return created


def update_outcome_code(
    session: Session, code: OutcomeCode, changes: dict[str, Any], *, actor: Principal | str
) -> OutcomeCode:
    """Relabel or retire a code; its result never changes (history reads it)."""
    for key in ("label", "is_active"):
        if key in changes:
            setattr(code, key, changes[key])
    session.flush()  # the answer shows the stored code
    record_event(
        session,
        action="config.changed",
        actor=actor,
        subject=("outcome_code", code.id),
        data={"what": "outcome_code", "code": code.code, "is_active": code.is_active},
    )
    return code


def record_outcome(
    session: Session,
    attempt: ContactAttempt,
    *,
    jurisdiction: str,
    code: str,
    actor: Principal | str,
    notes: str | None = None,
    recording_ref: str | None = None,
) -> ContactAttempt:
    """Complete a pending attempt with one of the tenant's outcome codes."""
    if attempt.status != AttemptStatus.PENDING:
        raise ContactError(f"attempt {attempt.id} is {attempt.status}, not pending", conflict=True)
    # Through ``outcome_codes``: a tenant that never listed its codes has the defaults.
    found = next((c for c in outcome_codes(session) if c.code == code and c.is_active), None)
    if found is None:
        raise ContactError(f"no active outcome code {code!r}")
    if not result_fits(attempt.channel, found.result):
        # A call "delivered" would escape the call caps that count connected calls, and
        # a letter "connected" would start a quiet period nobody had.
        raise ContactError(
            f"outcome {code!r} ({found.result}) does not fit a {attempt.channel} attempt"
        )
    rules = policy_in_force(session, jurisdiction=jurisdiction, at=attempt.attempted_at).rules
    is_call = attempt.channel in ("call_out", "call_in")
    if (
        is_call
        and found.result == Result.CONNECTED
        and rules.recording_required
        and not (recording_ref or "").strip()
    ):
        raise ContactError("connected calls are recorded under this policy: give recording_ref")
    attempt.status = AttemptStatus.COMPLETED.value
    attempt.outcome_code_id = found.id
    attempt.result = found.result
    attempt.completed_at = utcnow()
    if notes:
        attempt.notes = f"{attempt.notes}\n{notes}" if attempt.notes else notes
    if recording_ref:
        attempt.recording_ref = recording_ref
    session.flush()  # the caller answers with the stored attempt
    if found.result == Result.CONNECTED and not attempt.third_party:
        # Reaching the debtor is the agency starting work: placed -> in_progress.
        case = session.get(Case, attempt.case_id)
        assert case is not None  # attempts reference their case
        mark_worked(session, case=case, actor=actor, reason="contact")
    record_event(
        session,
        action="contact.outcome",
        actor=actor,
        subject=("case", attempt.case_id),
        data={
            "attempt_id": attempt.id,
            "code": found.code,
            "result": found.result,
            "recorded": bool(attempt.recording_ref),
        },
    )
    return attempt


def attempts_of_case(case_id: int) -> Any:
    """The case's attempts, newest first (a statement to paginate)."""
    return (
        select(ContactAttempt)
        .where(ContactAttempt.case_id == case_id)
        .order_by(ContactAttempt.attempted_at.desc(), ContactAttempt.id.desc())
    )


def set_do_not_contact(
    session: Session, *, debtor_id: int, contact_id: int | None, value: bool
) -> Debtor | Contact | None:
    """Mark a debtor (or one of their contacts) do-not-contact, or clear the mark."""
    target: Debtor | Contact | None
    if contact_id is None:
        target = session.get(Debtor, debtor_id)
    else:
        target = session.scalar(
            select(Contact).where(Contact.id == contact_id, Contact.debtor_id == debtor_id)
        )
    if target is not None:
        target.do_not_contact = value
        session.flush()  # the answer shows the stored mark
    return target


def render_for(
    session: Session,
    template: MessageTemplate,
    *,
    case_id: int,
    contact_id: int,
    company: str,
) -> dict[str, Any] | None:
    """Render ``template`` for a case and one of its contacts (None if either is missing)."""
    row = session.execute(
        select(Case, Account, Debtor, Contact)
        .join(Account, Account.id == Case.account_id)
        .join(Debtor, Debtor.id == Case.debtor_id)
        .join(Contact, Contact.debtor_id == Debtor.id)
        .where(Case.id == case_id, Contact.id == contact_id)
    ).first()
    if row is None:
        return None
    _, account, debtor, contact = row
    values: dict[str, Any] = {
        "debtor_name": debtor.full_name,
        "recipient_name": contact.name or debtor.full_name,
        "company": company,
        "amount": account.outstanding_total,
        "overdue_amount": account.overdue_amount,
        "principal": account.outstanding_principal,
        "currency": account.currency,
        "due_date": account.due_date.isoformat() if isinstance(account.due_date, dt.date) else None,
        "days_past_due": account.days_past_due,
        "account_ref": account.external_id,
        "creditor": company,
    }
    return render(template, values, third_party=contact.relation != "self")
