"""The chain's rules, in one place: what an event's hash covers and how links are checked.

Each event carries ``prev_hash`` (the hash of the event before it, or 32 zero bytes for
the first) and ``hash = SHA-256(prev_hash || content)``, where ``content`` is the UTF-8 of
the event's fields joined by the unit separator (0x1F), in this order:

    seq, occurred_at (UTC, ``YYYY-MM-DDTHH:MM:SS.ffffff``), actor, action,
    subject_type, subject_id, data (canonical JSON: sorted keys, no spaces)

PostgreSQL computes the same bytes in ``CONTENT_SQL``, so verification runs in the
database at full speed, while this module's ``verify_rows`` is the independent reference
a tenant (or a test) can run over an export. Fields that could smuggle a separator are
refused when an event is recorded; ``data`` is JSON, which escapes control characters.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

GENESIS = bytes(32)
SEPARATOR = "\x1f"
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"

#: The SQL twin of ``content``; ``e`` is the audit_events row.
CONTENT_SQL = (
    "convert_to(concat_ws(chr(31), e.seq::text,"
    " to_char(e.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US'),"
    " e.actor, e.action, e.subject_type, e.subject_id, e.data), 'UTF8')"
)


def _default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, set | frozenset | tuple):
        return sorted(value) if isinstance(value, set | frozenset) else list(value)
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"audit data cannot hold a {type(value).__name__}")


def canonical_json(data: Mapping[str, Any]) -> str:
    """Sorted keys, no whitespace, exact decimals as strings: one text per meaning."""
    return json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_default
    )


def timestamp_text(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime(TIMESTAMP_FORMAT)


def content(
    *,
    seq: int,
    occurred_at: dt.datetime,
    actor: str,
    action: str,
    subject_type: str,
    subject_id: str,
    data: str,
) -> bytes:
    fields = (str(seq), timestamp_text(occurred_at), actor, action, subject_type, subject_id, data)
    return SEPARATOR.join(fields).encode()


def link(prev_hash: bytes, event_content: bytes) -> bytes:
    return hashlib.sha256(prev_hash + event_content).digest()


@dataclass(frozen=True)
class ChainRow:
    seq: int
    occurred_at: dt.datetime
    actor: str
    action: str
    subject_type: str
    subject_id: str
    data: str
    prev_hash: bytes
    hash: bytes

    def content(self) -> bytes:
        return content(
            seq=self.seq,
            occurred_at=self.occurred_at,
            actor=self.actor,
            action=self.action,
            subject_type=self.subject_type,
            subject_id=self.subject_id,
            data=self.data,
        )


@dataclass(frozen=True)
class Verdict:
    """``ok`` with the head, or the first broken index and what is wrong there."""

    ok: bool
    events: int
    head_seq: int
    head_hash: bytes
    broken_at: int | None = None
    problem: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "events": self.events,
            "head_seq": self.head_seq,
            "head_hash": self.head_hash.hex(),
            "broken_at": self.broken_at,
            "problem": self.problem,
        }


def verify_rows(rows: Iterable[ChainRow]) -> Verdict:
    """The reference verifier: walk rows in ``seq`` order and stop at the first bad link."""
    expected_seq = 1
    prev = GENESIS
    count = 0
    for row in rows:
        if row.seq != expected_seq:
            problem = (
                f"event {expected_seq} is missing" if row.seq > expected_seq else "out of order"
            )
            return Verdict(False, count, expected_seq - 1, prev, expected_seq, problem)
        if row.prev_hash != prev:
            return Verdict(
                False, count, row.seq - 1, prev, row.seq, "does not link to the event before"
            )
        if link(prev, row.content()) != row.hash:
            return Verdict(False, count, row.seq - 1, prev, row.seq, "content does not match hash")
        prev = row.hash
        expected_seq += 1
        count += 1
    return Verdict(True, count, expected_seq - 1, prev)
