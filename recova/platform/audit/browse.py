"""Browsing a tenant's audit chain newest first: filters and keyset pages by ``seq``.

Every filter is served by an index, so a page costs the same on a chain of millions:
``seq`` (the primary key) orders and pages; an actor's events come from
``(actor, seq)``; an action from its own index (a prefix such as ``contact.`` too);
a subject from ``(subject_type, subject_id)``. A date range becomes a ``seq`` range
first, by two look-ups of the ``occurred_at`` index: timestamps never run backwards
along the chain (``services.record_events``), so the first event at or after the start
and the last before the end bound every event between.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from recova.platform.audit.models import AuditEvent, AuditHeadExport


@dataclass(frozen=True)
class EventFilter:
    """What to look for; ``None`` is no condition. ``since``/``until``: [since, until)."""

    action: str | None = None
    actor: str | None = None
    subject_type: str | None = None
    subject_id: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None


@dataclass(frozen=True)
class EventPage:
    """One page, newest first, and the keys of the pages either side (``None``: no more)."""

    events: list[AuditEvent]
    older_than: int | None
    newer_than: int | None
    data: dict[int, Any] = field(default_factory=dict)


def _seq_bounds(session: Session, wanted: EventFilter) -> tuple[int, int] | None:
    """The ``seq`` range of the date range; ``None`` when no event falls in it."""
    low, high = 1, None
    if wanted.since is not None:
        first = session.scalar(
            select(AuditEvent.seq)
            .where(AuditEvent.occurred_at >= wanted.since)
            .order_by(AuditEvent.occurred_at, AuditEvent.seq)
            .limit(1)
        )
        if first is None:
            return None
        low = first
    if wanted.until is not None:
        high = session.scalar(
            select(AuditEvent.seq)
            .where(AuditEvent.occurred_at < wanted.until)
            .order_by(AuditEvent.occurred_at.desc(), AuditEvent.seq.desc())
            .limit(1)
        )
        if high is None:
            return None
    return low, high if high is not None else 2**63 - 1


def _filtered(wanted: EventFilter, bounds: tuple[int, int]) -> Select[AuditEvent]:
    query = select(AuditEvent).where(AuditEvent.seq.between(*bounds))
    if wanted.action:
        if wanted.action.endswith("."):
            query = query.where(AuditEvent.action.startswith(wanted.action, autoescape=True))
        else:
            query = query.where(AuditEvent.action == wanted.action)
    if wanted.actor:
        query = query.where(AuditEvent.actor == wanted.actor)
    if wanted.subject_id:
        query = query.where(AuditEvent.subject_id == wanted.subject_id)
        if wanted.subject_type:
            query = query.where(AuditEvent.subject_type == wanted.subject_type)
    # Timestamps are checked as well as the seq range: exact even on a tampered chain.
    if wanted.since is not None:
        query = query.where(AuditEvent.occurred_at >= wanted.since)
    if wanted.until is not None:
        query = query.where(AuditEvent.occurred_at < wanted.until)
    return query


def event_page(
    session: Session,
    wanted: EventFilter,
    *,
    older_than: int | None = None,
    newer_than: int | None = None,
    size: int = 50,
) -> EventPage:
    """A page of matching events, newest first: before ``older_than`` (the next page),
    after ``newer_than`` (the previous one), or the newest."""
    bounds = _seq_bounds(session, wanted)
    if bounds is None:
        return EventPage([], None, None)
    query = _filtered(wanted, bounds)
    if newer_than is not None:
        found = list(
            session.scalars(
                query.where(AuditEvent.seq > newer_than).order_by(AuditEvent.seq).limit(size + 1)
            )
        )
        more_newer = len(found) > size
        rows = list(reversed(found[:size]))
        more_older = True  # we came from there
    else:
        if older_than is not None:
            query = query.where(AuditEvent.seq < older_than)
        found = list(session.scalars(query.order_by(AuditEvent.seq.desc()).limit(size + 1)))
        more_older = len(found) > size
        rows = found[:size]
        more_newer = older_than is not None
    if not rows:
        return EventPage([], None, None)
    return EventPage(
        events=rows,
        older_than=rows[-1].seq if more_older else None,
        newer_than=rows[0].seq if more_newer else None,
        data={event.seq: readable_data(event.data) for event in rows},
    )


def readable_data(text: str) -> list[tuple[str, str]]:
    """An event's data as (key, value) pairs in its canonical order; nested values as
    compact JSON. Only what the event holds: nothing is looked up."""
    try:
        parsed = json.loads(text)
    except ValueError:
        return [("", text)]
    if not isinstance(parsed, dict):
        return [("", json.dumps(parsed, ensure_ascii=False))]
    pairs = []
    for key, value in parsed.items():
        if isinstance(value, str):
            shown = value
        elif value is None:
            shown = "—"
        else:
            shown = json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
        pairs.append((str(key), shown))
    return pairs


def head_exports(
    session: Session, *, before_day: dt.date | None = None, size: int = 30
) -> tuple[list[AuditHeadExport], dt.date | None]:
    """Exported heads, newest first, and the day to page on from (``None``: no more)."""
    query = select(AuditHeadExport).order_by(AuditHeadExport.day.desc())
    if before_day is not None:
        query = query.where(AuditHeadExport.day < before_day)
    found = list(session.scalars(query.limit(size + 1)))
    return found[:size], (found[size - 1].day if len(found) > size else None)
