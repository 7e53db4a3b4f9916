"""Audit events of case work, appended to the tenant's chain just before commit.

Services note an event where it happens (``note_event``) and the events are appended to
the tenant's audit chain in one batch by a ``before_commit`` hook, in the same
transaction as the change they describe. Why not ``record_event`` on the spot: an append
locks the tenant's chain until commit, and a daily evaluation judging thousands of
promises would hold that lock for its whole run; noting first and appending last holds it
only for the commit. A rolled-back transaction drops its notes with its changes.

Event data carries ids, statuses, amounts and dates, never free text a person typed
(reasons and notes stay in the case-work rows, which retention erases); dates go in as
dates, so the chain's personal-data guard never mistakes ``2026-11-30`` for a number.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from recova.platform.audit.services import record_events
from recova.platform.auth.principal import Principal

_NOTES = "work_audit_events"


def note_event(
    session: Session,
    *,
    action: str,
    actor: Principal | str,
    subject: tuple[str, Any],
    data: Mapping[str, Any],
) -> None:
    """Note an event for the tenant's audit chain; it is appended when the session commits."""
    session.info.setdefault(_NOTES, []).append((action, actor, subject, dict(data)))


@event.listens_for(Session, "before_commit")
def _append_noted_events(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint is released; the transaction's own commit appends them
    noted = session.info.pop(_NOTES, None)
    if noted:
        record_events(session, noted)


@event.listens_for(Session, "after_transaction_end")
def _drop_noted_events(session: Session, transaction: Any) -> None:
    # After a commit the notes were appended (and popped); after a rollback they go.
    if transaction.parent is None:
        session.info.pop(_NOTES, None)
