"""Retention: erase a debtor's personal data once all their cases closed long enough ago.

A debtor is due when every one of their cases is finished (closed, settled or paid) and
the last one closed more than the tenant's ``retention_days`` ago. Erasure keeps what
the tenant's books and Recova's billing need (accounts, amounts, payments, placements,
commission lines, ids) and removes what identifies the person:

- the debtor's name is replaced by ``[erased]``; the national id's ciphertext, blind
  index and masked copy are dropped;
- every contact's value (ciphertext, blind index, masked copy) and name are replaced,
  so neither the value nor a match against a known number survives;
- free text typed about the debtor's cases is dropped: case notes, contact attempts'
  notes and call-recording references, transition reasons, settlement request and
  decision notes, dispute notes, the reasons given for reveals;
- uploaded source files older than the retention period are deleted byte for byte
  (their metadata and run counts stay), since a file holds every row it carried.

The audit chain is untouched, and still verifies: events never carry personal data
(``audit.services.check_data`` refuses it), only ids, so there is nothing to erase there.
Each batch of erased debtor ids is itself an audit event.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Text, and_, cast, delete, exists, func, literal, not_, select, update
from sqlalchemy.orm import Session

from recova.connectors.models import IngestionFile, IngestionFileChunk
from recova.platform.audit.services import record_events
from recova.platform.auth.principal import Principal
from recova.platform.cases.models import Case, CaseStatus, Contact, Debtor
from recova.platform.contact.models import ContactAttempt
from recova.platform.kernel.db import utcnow
from recova.platform.privacy.models import PersonalDataReveal
from recova.platform.privacy.settings import current_settings
from recova.platform.work.models import CaseTransition, Dispute, Settlement

FINISHED = (CaseStatus.CLOSED, CaseStatus.SETTLED, CaseStatus.PAID)
ERASED = "[erased]"
EVENT_BATCH = 1000


def due_debtors(session: Session, *, cutoff: dt.datetime) -> list[int]:
    """Debtors, not yet erased, whose every case finished before ``cutoff``."""
    has_case = exists().where(Case.debtor_id == Debtor.id)
    still_open = exists().where(
        Case.debtor_id == Debtor.id,
        not_(
            and_(
                Case.status.in_(FINISHED),
                Case.closed_at.is_not(None),
                Case.closed_at < cutoff,
            )
        ),
    )
    query = (
        select(Debtor.id)
        .where(Debtor.erased_at.is_(None), has_case, not_(still_open))
        .order_by(Debtor.id)
    )
    return list(session.scalars(query))


def _erase_free_text(session: Session, debtor_ids: list[int]) -> None:
    """Notes people typed about the debtor's cases: collectors write names and numbers."""
    cases = select(Case.id).where(Case.debtor_id.in_(debtor_ids))
    session.execute(
        update(ContactAttempt)
        .where(ContactAttempt.debtor_id.in_(debtor_ids))
        .values(notes=None, recording_ref=None)
    )
    session.execute(
        update(CaseTransition).where(CaseTransition.case_id.in_(cases)).values(reason=None)
    )
    session.execute(
        update(Settlement)
        .where(Settlement.case_id.in_(cases))
        .values(decision_note=None, request_note=None)
    )
    session.execute(
        update(Dispute).where(Dispute.case_id.in_(cases)).values(notes=None, resolution_note=None)
    )
    session.execute(
        update(PersonalDataReveal)
        .where(PersonalDataReveal.debtor_id.in_(debtor_ids))
        .values(reason=None)
    )


def erase_expired(
    session: Session, *, actor: Principal | str, now: dt.datetime | None = None
) -> dict[str, int]:
    """Erase every due debtor (set-based) and purge old source files; idempotent."""
    now = now or utcnow()
    cutoff = now - dt.timedelta(days=current_settings(session).retention_days)
    ids = due_debtors(session, cutoff=cutoff)
    if ids:
        session.execute(
            update(Debtor)
            .where(Debtor.id.in_(ids))
            .values(
                full_name=ERASED,
                national_id_ciphertext=None,
                national_id_index=None,
                national_id_masked=None,
                erased_at=now,
            )
        )
        session.execute(
            update(Contact)
            .where(Contact.debtor_id.in_(ids))
            .values(
                name=None,
                value_ciphertext=b"",
                # Unique per contact and meaningless: the old index matched a known number.
                value_index=func.sha256(
                    func.convert_to(literal("erased:") + cast(Contact.id, Text), "UTF8")
                ),
                value_masked=ERASED,
            )
        )
        session.execute(update(Case).where(Case.debtor_id.in_(ids)).values(notes=None))
        _erase_free_text(session, ids)
    old_files = select(IngestionFile.id).where(IngestionFile.created_at < cutoff)
    purged = session.execute(
        delete(IngestionFileChunk).where(IngestionFileChunk.file_id.in_(old_files))
    ).rowcount  # type: ignore[attr-defined]
    entries = [
        (
            "privacy.erased",
            actor,
            None,
            {"debtor_ids": ids[start : start + EVENT_BATCH], "cutoff": cutoff},
        )
        for start in range(0, len(ids), EVENT_BATCH)
    ]
    if purged:
        entries.append(("privacy.files_purged", actor, None, {"chunks": purged, "cutoff": cutoff}))
    record_events(session, entries)
    return {"debtors": len(ids), "file_chunks": purged}
