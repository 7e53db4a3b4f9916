"""Appending to and verifying a tenant's audit chain.

Appends are serialised per tenant by ``LOCK TABLE audit_events IN SHARE ROW EXCLUSIVE
MODE``: the table lives in the tenant's own schema, so the lock is exactly per tenant,
it conflicts with itself and with concurrent inserts, and it never blocks readers. The
lock is held to the end of the caller's transaction, so callers record their event as
the last thing before commit. A transaction that rolls back takes its events with it:
the chain holds what happened, not what was attempted and undone (a blocked contact
attempt is recorded in its own committed transaction by the compliance gate).

Audit data must not carry plaintext personal data, because the chain can never be
edited: erasing a debtor at the end of retention must not break it. ``record_event``
refuses keys that name personal fields and strings that look like phone numbers or ID
numbers, so a mistake fails loudly in tests instead of leaking quietly in production.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from recova.platform.audit.chain import (
    CONTENT_SQL,
    GENESIS,
    ChainRow,
    Verdict,
    canonical_json,
    content,
    link,
)
from recova.platform.audit.models import AuditEvent, AuditHeadExport
from recova.platform.auth.principal import Principal
from recova.platform.kernel.db import quote_identifier, utcnow
from recova.platform.webhooks.events import emit_event

#: Keys whose values are personal data by definition.
PERSONAL_KEYS = frozenset(
    {
        "phone",
        "phone_number",
        "national_id",
        "id_number",
        "full_name",
        "name",
        "email",
        "address",
        "plaintext",
    }
)
#: A value that is nothing but a phone or ID number (``+86 138-1234-5678``, ``...123X``).
_NUMBER_SHAPED = re.compile(r"^\+?[\d\s()-]{7,24}[Xx]?$")
#: Free text (it has spaces) that mentions seven or more digits in a row.
_DIGIT_RUN = re.compile(r"\d{7,}")
_LABEL = re.compile(r"^[\w.:@/-]{1,128}$")


class AuditDataError(ValueError):
    """An event that would write personal data, or a malformed label, into the chain."""


@dataclass(frozen=True)
class Subject:
    type: str
    id: str


def actor_label(actor: Principal | str) -> str:
    """``user:<id>``/``client:<id>`` for principals; system labels pass through checked."""
    if isinstance(actor, Principal):
        return f"{actor.kind}:{actor.subject_id}"
    return actor


def _check_label(field: str, value: str, *, allow_empty: bool = False) -> None:
    if value == "" and allow_empty:
        return
    if not _LABEL.match(value):
        raise AuditDataError(f"audit {field} {value!r} must be 1-128 of letters, digits, ._:@/-")


def check_data(value: Any, path: str = "data") -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if str(key).lower() in PERSONAL_KEYS:
                raise AuditDataError(f"audit {path} must not carry personal field {key!r}")
            check_data(item, f"{path}.{key}")
    elif isinstance(value, list | tuple | set | frozenset):
        for index, item in enumerate(value):
            check_data(item, f"{path}[{index}]")
    elif isinstance(value, str) and _looks_like_a_number(value):
        raise AuditDataError(f"audit {path} looks like a phone or ID number; log an id instead")


def _looks_like_a_number(value: str) -> bool:
    """Phone/ID-shaped strings, or free text quoting one; hashes and codes pass.

    Numbers that are facts (amounts, counts, ids) go in as numbers or Decimals, which are
    never refused; a tenant's numeric external ids go in as Recova's own integer ids.
    """
    digits = sum(ch.isdigit() for ch in value)
    if digits >= 7 and _NUMBER_SHAPED.match(value):
        return True
    return any(ch.isspace() for ch in value) and bool(
        _DIGIT_RUN.search(value.replace(" ", "").replace("-", ""))
    )


def _schema(session: Session) -> str:
    schema = session.info.get("tenant_schema")
    if schema is None:
        raise RuntimeError("audit events need a session bound to a tenant schema")
    return str(schema)


def _lock(session: Session) -> None:
    table = f"{quote_identifier(_schema(session))}.audit_events"
    session.execute(text(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE"))


def _last(session: Session) -> tuple[int, bytes, dt.datetime | None]:
    row = session.execute(
        select(AuditEvent.seq, AuditEvent.hash, AuditEvent.occurred_at)
        .order_by(AuditEvent.seq.desc())
        .limit(1)
    ).first()
    return (0, GENESIS, None) if row is None else (row.seq, row.hash, row.occurred_at)


def head(session: Session) -> tuple[int, bytes]:
    """``(seq, hash)`` of the newest event; ``(0, 32 zero bytes)`` for an empty chain."""
    seq, digest, _ = _last(session)
    return seq, digest


def record_event(
    session: Session,
    *,
    action: str,
    actor: Principal | str,
    subject: tuple[str, Any] | None = None,
    data: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Append one event to the tenant's chain, in the caller's transaction."""
    return record_events(session, [(action, actor, subject, data)])[0]


def record_events(
    session: Session,
    entries: Iterable[
        tuple[str, Principal | str, tuple[str, Any] | None, Mapping[str, Any] | None]
    ],
) -> list[AuditEvent]:
    """Append several events under one lock (a job's summary, a batch of decisions)."""
    prepared = []
    for action, actor, subject, data in entries:
        label = actor_label(actor)
        subject_type, subject_id = ("", "") if subject is None else (subject[0], str(subject[1]))
        _check_label("action", action)
        _check_label("actor", label)
        _check_label("subject type", subject_type, allow_empty=True)
        _check_label("subject id", subject_id, allow_empty=True)
        payload = dict(data or {})
        check_data(payload)
        prepared.append((action, label, subject_type, subject_id, canonical_json(payload)))
    if not prepared:
        return []
    _lock(session)
    seq, prev, last = _last(session)
    # Timestamps never run backwards along the chain, even if the clock does.
    now = utcnow()
    if last is not None and now < last:
        now = last
    written = []
    for action, label, subject_type, subject_id, body in prepared:
        seq += 1
        digest = link(
            prev,
            content(
                seq=seq,
                occurred_at=now,
                actor=label,
                action=action,
                subject_type=subject_type,
                subject_id=subject_id,
                data=body,
            ),
        )
        written.append(
            AuditEvent(
                seq=seq,
                occurred_at=now,
                actor=label,
                action=action,
                subject_type=subject_type,
                subject_id=subject_id,
                data=body,
                prev_hash=prev,
                hash=digest,
            )
        )
        prev = digest
    session.add_all(written)
    session.flush()  # the rows must exist before the lock holder's next append reads the head
    return written


def events(
    session: Session,
    *,
    action: str | None = None,
    subject: tuple[str, Any] | None = None,
    after_seq: int = 0,
    limit: int | None = None,
) -> list[AuditEvent]:
    """Events in chain order, filtered by action prefix (``contact.``) or subject."""
    query = select(AuditEvent).where(AuditEvent.seq > after_seq).order_by(AuditEvent.seq)
    if action is not None:
        if action.endswith("."):
            query = query.where(AuditEvent.action.startswith(action))
        else:
            query = query.where(AuditEvent.action == action)
    if subject is not None:
        query = query.where(
            AuditEvent.subject_type == subject[0], AuditEvent.subject_id == str(subject[1])
        )
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


# Only the chain's own fixed expression and, later, the quoted schema name go in.
_VERIFY_SQL = f"""
WITH checked AS (
    SELECT e.seq,
           e.hash,
           e.seq - lag(e.seq, 1, 0::bigint) OVER w AS step,
           e.prev_hash = lag(e.hash, 1, :genesis) OVER w AS linked,
           e.hash = sha256(e.prev_hash || {CONTENT_SQL}) AS intact
      FROM {{schema}}.audit_events e
    WINDOW w AS (ORDER BY e.seq)
)
SELECT count(*) AS events,
       max(seq) AS head_seq,
       min(seq) FILTER (WHERE step <> 1 OR NOT linked OR NOT intact) AS first_bad,
       (SELECT c.hash FROM checked c ORDER BY c.seq DESC LIMIT 1) AS head_hash
  FROM checked
"""  # noqa: S608

_DETAIL_SQL = """
SELECT e.seq, e.occurred_at, e.actor, e.action, e.subject_type, e.subject_id, e.data,
       e.prev_hash, e.hash
  FROM {schema}.audit_events e
 WHERE e.seq < :upto
 ORDER BY e.seq DESC
 LIMIT 2
"""


def verify_chain(session: Session, *, expected_head: tuple[int, bytes] | None = None) -> Verdict:
    """Check every link in the database; on a break, name the first broken index.

    The set-based check finds the lowest suspicious row (a gap, a bad link or a hash that
    does not match its content); the reference verifier then walks the few rows around
    it to say exactly what is wrong. ``expected_head`` is a head the tenant kept outside
    Recova: a chain rewritten from some point onward verifies internally but no longer
    holds that hash at that index.
    """
    schema = quote_identifier(_schema(session))
    row = session.execute(text(_VERIFY_SQL.format(schema=schema)), {"genesis": GENESIS}).one()
    count = int(row.events)
    head_seq = int(row.head_seq or 0)
    head_hash = bytes(row.head_hash) if row.head_hash is not None else GENESIS
    if row.first_bad is not None:
        return _explain_break(session, schema, int(row.first_bad), count)
    if count != head_seq:  # sequence numbers skip from the start: event 1 is missing
        return Verdict(False, count, 0, GENESIS, 1, "event 1 is missing")
    if expected_head is not None:
        kept_seq, kept_hash = expected_head
        if kept_seq > head_seq:
            problem = "chain is shorter than the kept head"
            return Verdict(False, count, head_seq, head_hash, head_seq + 1, problem)
        at = session.scalar(select(AuditEvent.hash).where(AuditEvent.seq == kept_seq))
        if at is None or bytes(at) != kept_hash:
            problem = "does not match the kept head"
            return Verdict(False, count, head_seq, head_hash, kept_seq, problem)
    return Verdict(True, count, head_seq, head_hash)


def _explain_break(session: Session, schema: str, first_bad: int, count: int) -> Verdict:
    rows = list(
        session.execute(text(_DETAIL_SQL.format(schema=schema)), {"upto": first_bad + 1}).all()
    )
    rows.reverse()
    before = [r for r in rows if r.seq < first_bad]
    prev = bytes(before[-1].hash) if before else GENESIS
    prev_seq = before[-1].seq if before else 0
    bad = next((r for r in rows if r.seq == first_bad), None)
    if bad is None or bad.seq != prev_seq + 1:
        index = prev_seq + 1
        return Verdict(False, count, prev_seq, prev, index, f"event {index} is missing")
    chain_row = ChainRow(
        seq=bad.seq,
        occurred_at=bad.occurred_at,
        actor=bad.actor,
        action=bad.action,
        subject_type=bad.subject_type,
        subject_id=bad.subject_id,
        data=bad.data,
        prev_hash=bytes(bad.prev_hash),
        hash=bytes(bad.hash),
    )
    if chain_row.prev_hash != prev:
        problem = "does not link to the event before"
    elif link(prev, chain_row.content()) != chain_row.hash:
        problem = "content does not match hash"
    else:
        problem = "out of order"
    return Verdict(False, count, prev_seq, prev, bad.seq, problem)


def export_head(session: Session, *, day: dt.date) -> tuple[AuditHeadExport, bool]:
    """Record (once per day) the head the tenant should keep; ``True`` if new."""
    existing = session.get(AuditHeadExport, day)
    if existing is not None:
        return existing, False
    seq, digest = head(session)
    export = AuditHeadExport(day=day, head_seq=seq, head_hash=digest, exported_at=utcnow())
    session.add(export)
    session.flush()
    return export, True


def export_daily_head(session: Session, *, day: dt.date, actor: Principal | str) -> AuditHeadExport:
    """Export the day's head once, and audit the export itself.

    The export event is appended *after* the head was read, so the kept head always
    names an event that exists, and the next day's head covers the export. Asking again
    for the same day returns the first export and appends nothing.
    """
    exported, new = export_head(session, day=day)
    if new:
        record_event(
            session,
            action="audit.head_exported",
            actor=actor,
            data={
                "day": day,
                "head_seq": exported.head_seq,
                "head_hash": exported.head_hash.hex(),
            },
        )
        emit_event(
            session,
            "audit.head.exported",
            {"day": day, "head_seq": exported.head_seq, "head_hash": exported.head_hash.hex()},
        )
    return exported


def chain_rows(session: Session, *, after_seq: int = 0, limit: int = 10_000) -> list[ChainRow]:
    """A page of the raw chain, for export and for the reference verifier."""
    found = session.scalars(
        select(AuditEvent).where(AuditEvent.seq > after_seq).order_by(AuditEvent.seq).limit(limit)
    )
    return [
        ChainRow(
            seq=e.seq,
            occurred_at=e.occurred_at,
            actor=e.actor,
            action=e.action,
            subject_type=e.subject_type,
            subject_id=e.subject_id,
            data=e.data,
            prev_hash=e.prev_hash,
            hash=e.hash,
        )
        for e in found
    ]
