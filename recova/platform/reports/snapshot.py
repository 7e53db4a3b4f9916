"""The overview's figures, precomputed: a snapshot per tenant, kept in Redis.

``book_overview`` reads the whole book (tens of seconds at a million cases), so the page
never runs it: ``refresh_overview`` (the body of ``refresh_overview_job``) computes the
figures with those same queries and stores them, with the instant they were computed and
the tenant's calendar date they were computed for, under
``<queue prefix>recova:overview:<tenant id>``. The page reads that one key.

Redis is a cache here: a lost snapshot only means a recompute. The snapshot is JSON and
exact: amounts and ratios as ``Decimal`` strings, dates ISO, so a loaded snapshot equals
the computed one.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from recova.platform.kernel.extension import Platform
from recova.platform.reports.overview import (
    AgencyRecovery,
    BucketLine,
    CurveLine,
    CurvePoint,
    Overview,
    PromiseFigures,
    Recovered,
    RollRow,
    book_overview,
)
from recova.tenants.models import tenant_today
from recova.tenants.scope import tenant_scope

#: A snapshot older than this is shown with its time while a refresh is queued.
STALE_AFTER = dt.timedelta(minutes=15)
#: How long Redis keeps a snapshot nobody refreshes (a tenant gone quiet or deleted).
KEEP_FOR = dt.timedelta(days=7)
#: Bumped when the stored shape changes: an older snapshot is then treated as missing.
VERSION = 1


@dataclass(frozen=True)
class Snapshot:
    """The overview's figures as computed at ``computed_at`` (UTC) for ``book.today``."""

    book: Overview
    computed_at: dt.datetime

    def is_stale(self, *, now: dt.datetime, today: dt.date) -> bool:
        """Older than ``STALE_AFTER``, or computed for an earlier day of the tenant's."""
        return self.book.today < today or now - self.computed_at > STALE_AFTER


def snapshot_key(objects: Platform, tenant_id: int) -> str:
    return f"{objects.settings.queue_prefix}recova:overview:{tenant_id}"


def refresh_overview(objects: Platform, tenant_id: int) -> Snapshot:
    """Compute the tenant's overview as of its today and store it (idempotent)."""
    with tenant_scope(tenant_id, db=objects.db) as session:
        tenant = session.info["tenant"]
        book = book_overview(
            session,
            today=tenant_today(tenant.timezone),
            timezone=tenant.timezone,
            currency=tenant.currency,
        )
    snapshot = Snapshot(book=book, computed_at=dt.datetime.now(dt.UTC))
    store_snapshot(objects, tenant_id, snapshot)
    return snapshot


def store_snapshot(objects: Platform, tenant_id: int, snapshot: Snapshot) -> None:
    objects.redis.set(
        snapshot_key(objects, tenant_id),
        dump_snapshot(snapshot),
        ex=int(KEEP_FOR.total_seconds()),
    )


def load_snapshot(objects: Platform, tenant_id: int) -> Snapshot | None:
    """The tenant's stored snapshot (one GET), or None when there is none."""
    raw: bytes | None = objects.redis.get(snapshot_key(objects, tenant_id))  # type: ignore[assignment]
    return None if raw is None else parse_snapshot(raw)


# --- serialisation -------------------------------------------------------------------------


def _dec(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _undec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _amounts(values: dict[str, Decimal]) -> dict[str, str | None]:
    return {currency: _dec(amount) for currency, amount in values.items()}


def _unamounts(values: dict[str, str | None]) -> dict[str, Decimal]:
    return {currency: _undec(amount) for currency, amount in values.items()}  # type: ignore[misc]


def dump_snapshot(snapshot: Snapshot) -> str:
    """The snapshot as JSON: every amount and ratio a Decimal string, every date ISO."""
    book = snapshot.book
    data: dict[str, Any] = {
        "version": VERSION,
        "computed_at": snapshot.computed_at.isoformat(),
        "today": book.today.isoformat(),
        "currency": book.currency,
        "buckets": list(book.buckets),
        "inventory": [
            [line.bucket, line.currency, line.cases, _dec(line.balance)] for line in book.inventory
        ],
        "recovered": [
            [r.currency, _dec(r.this_month), _dec(r.last_month_to_date), _dec(r.last_month)]
            for r in book.recovered
        ],
        "promises": {
            "due_today": book.promises.due_today,
            "due_today_amounts": _amounts(book.promises.due_today_amounts),
            "kept_today": book.promises.kept_today,
            "broken_this_week": book.promises.broken_this_week,
            "broken_amounts": _amounts(book.promises.broken_amounts),
        },
        "curves": [
            {
                "month": curve.month.isoformat(),
                "placements": curve.placements,
                "placed": _dec(curve.placed),
                "points": [
                    [p.age, _dec(p.recovered), _dec(p.cumulative), _dec(p.ratio)]
                    for p in curve.points
                ],
            }
            for curve in book.curves
        ],
        "roll_since": book.roll_since.isoformat(),
        # A to-bucket may be None (left collection): pairs, not a JSON object.
        "roll_rates": [
            [row.from_bucket, row.cases, [[to, n] for to, n in row.counts.items()]]
            for row in book.roll_rates
        ],
        "by_agency": [
            [r.agency_id, r.name, r.currency, _dec(r.this_month), _dec(r.last_month)]
            for r in book.by_agency
        ],
    }
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def parse_snapshot(raw: str | bytes) -> Snapshot | None:
    """The snapshot ``dump_snapshot`` wrote; None for one of another version."""
    data = json.loads(raw)
    if data.get("version") != VERSION:
        return None
    promises = data["promises"]
    book = Overview(
        today=dt.date.fromisoformat(data["today"]),
        currency=data["currency"],
        buckets=list(data["buckets"]),
        inventory=[
            BucketLine(bucket, currency, cases, _undec(balance))  # type: ignore[arg-type]
            for bucket, currency, cases, balance in data["inventory"]
        ],
        recovered=[
            Recovered(currency, *(_undec(v) for v in values))  # type: ignore[arg-type]
            for currency, *values in data["recovered"]
        ],
        promises=PromiseFigures(
            due_today=promises["due_today"],
            due_today_amounts=_unamounts(promises["due_today_amounts"]),
            kept_today=promises["kept_today"],
            broken_this_week=promises["broken_this_week"],
            broken_amounts=_unamounts(promises["broken_amounts"]),
        ),
        curves=[
            CurveLine(
                month=dt.date.fromisoformat(curve["month"]),
                placements=curve["placements"],
                placed=_undec(curve["placed"]),  # type: ignore[arg-type]
                points=[
                    CurvePoint(age, *(_undec(v) for v in values))  # type: ignore[arg-type]
                    for age, *values in curve["points"]
                ],
            )
            for curve in data["curves"]
        ],
        roll_since=dt.date.fromisoformat(data["roll_since"]),
        roll_rates=[
            RollRow(from_bucket, cases, dict(counts))
            for from_bucket, cases, counts in data["roll_rates"]
        ],
        by_agency=[
            AgencyRecovery(agency_id, name, currency, _undec(this), _undec(last))  # type: ignore[arg-type]
            for agency_id, name, currency, this, last in data["by_agency"]
        ],
    )
    return Snapshot(book=book, computed_at=dt.datetime.fromisoformat(data["computed_at"]))
