"""The demo's desk today (``recova.platform.work.demo_desk``): each collector of a lender
gets what is due today, and the day's calls once the contact window has been open a
while, through the product's services; a second run the same day adds nothing.

The clock is fixed (``now``) on days just past, so the window, the day's phase and the
gate's decisions are the same whenever the tests run. ``recova demo`` itself, with its
real clock, is run twice in ``tests/test_embedded.py``.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from recova.connectors.models import FeedKind
from recova.connectors.services import save_mapping
from recova.platform.allocation.models import Assignment, Placement
from recova.platform.contact.models import ContactAttempt
from recova.platform.entry.demo import limit_demo_discounts
from recova.platform.entry.demo_data import CN_PAYMENTS_MAPPING, US_PAYMENTS_MAPPING
from recova.platform.payments.models import Payment
from recova.platform.work.demo_desk import demo_desk
from recova.platform.work.models import Promise, Settlement
from tests.compliance_support import Lender, lender_for

MAPPINGS = {"CN": CN_PAYMENTS_MAPPING, "US": US_PAYMENTS_MAPPING}


@pytest.fixture
def cn(app, shared_lender_cn, rolled_back) -> Lender:  # type: ignore[no-untyped-def]
    return lender_for(app, "CN", shared_lender_cn, rolled_back)


@pytest.fixture
def us(app, shared_lender_us, rolled_back) -> Lender:  # type: ignore[no-untyped-def]
    return lender_for(app, "US", shared_lender_us, rolled_back)


def _open_book(lender: Lender, cases_per_collector: int, collectors: int = 2) -> None:
    """Debtors with a phone each (numbers apart, so no per-number cap binds across them),
    assigned to the lender's collectors; its payments mapping; the demo's limits."""
    prefix = "+86138" if lender.jurisdiction == "CN" else "+1212555"
    width = 8 if lender.jurisdiction == "CN" else 4
    for agency in range(collectors):
        for n in range(cases_per_collector):
            number = agency * 1000 + n
            lender.debt(
                phones=(f"{prefix}{number:0{width}d}",), third_parties=0, placed_with=agency
            )
    with lender.scope() as session:
        save_mapping(
            session, name="payments", kind=FeedKind.PAYMENTS, **MAPPINGS[lender.jurisdiction]
        )
    limit_demo_discounts(lender.app, [lender.slug])


def _local(lender: Lender, day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    zone = "Asia/Shanghai" if lender.jurisdiction == "CN" else "America/New_York"
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=zoneinfo.ZoneInfo(zone))


def _days_ago(lender: Lender, days: int) -> dt.date:
    zone = "Asia/Shanghai" if lender.jurisdiction == "CN" else "America/New_York"
    return dt.datetime.now(zoneinfo.ZoneInfo(zone)).date() - dt.timedelta(days=days)


def _desk(lender: Lender, collector_id: int, now: dt.datetime) -> dict[str, Any]:
    """What one collector's desk holds at ``now``, on that day."""
    zone = zoneinfo.ZoneInfo("Asia/Shanghai" if lender.jurisdiction == "CN" else "America/New_York")
    day = now.astimezone(zone).date()
    start = dt.datetime.combine(day, dt.time(0), tzinfo=zone)
    end = start + dt.timedelta(days=1)
    label = f"user:{collector_id}"
    with lender.scope() as session:
        attempts = session.execute(
            select(ContactAttempt.status, ContactAttempt.result, ContactAttempt.blocked_rule).where(
                ContactAttempt.user_id == collector_id,
                ContactAttempt.attempted_at >= start,
                ContactAttempt.attempted_at < end,
            )
        ).all()
        due = session.scalars(
            select(Promise.status).where(
                Promise.created_by == label, Promise.due_date == day, Promise.created_at < start
            )
        ).all()
        made = session.scalar(
            select(func.count())
            .select_from(Promise)
            .where(
                Promise.created_by == label, Promise.created_at >= start, Promise.created_at < end
            )
        )
        callbacks = session.scalars(
            select(Assignment.next_action_at)
            .join(Placement, Placement.id == Assignment.placement_id)
            .where(
                Assignment.collector_id == collector_id,
                Assignment.ended_at.is_(None),
                Assignment.next_action_at.is_not(None),
            )
        ).all()
        judged = session.scalars(
            select(Promise.status).where(
                Promise.created_by == label,
                Promise.due_date < day,
                Promise.status != "pending",
            )
        ).all()
        waiting = session.scalars(
            select(Settlement.discount_percent).where(
                Settlement.requested_by == label,
                Settlement.status == "pending_approval",
                Settlement.required_level == "manager",
            )
        ).all()
    return {
        "attempts": len(attempts),
        "reached": sum(1 for _, result, _ in attempts if result == "connected"),
        "blocked": sorted(rule for status, _, rule in attempts if status == "blocked"),
        "due": sorted(str(s) for s in due),
        "made": made,
        "callbacks_due_now": sum(1 for at in callbacks if at <= now),
        "callbacks_later": sum(1 for at in callbacks if now < at < end),
        "waiting": [str(w) for w in waiting],
        "judged_before": sorted(str(s) for s in judged),
    }


def _totals(lender: Lender) -> dict[str, int]:
    """Every row the desk writes, counted (a second run must add none)."""
    with lender.scope() as session:
        return {
            model.__tablename__: int(session.scalar(select(func.count()).select_from(model)) or 0)
            for model in (ContactAttempt, Promise, Settlement, Payment)
        } | {
            "callbacks": int(
                session.scalar(
                    select(func.count())
                    .select_from(Assignment)
                    .where(Assignment.next_action_at.is_not(None))
                )
                or 0
            )
        }


def _run(lender: Lender, now: dt.datetime, folder: Path) -> str:
    [(slug, line)] = demo_desk(lender.objects, [lender.slug], folder=folder, now=now)
    assert slug == lender.slug
    return line


# The day's payments arrive through ingestion, which opens connections of its own.
@pytest.mark.real_commits
def test_before_the_window_only_what_is_due_then_the_day_then_the_next_day(
    cn: Lender, tmp_path: Path
) -> None:
    _open_book(cn, 36)
    day = _days_ago(cn, 2)
    early, afternoon = _local(cn, day, 6), _local(cn, day, 15)

    # 06:00: the day has not started. What is due today is there, no call was made.
    line = _run(cn, early, tmp_path)
    assert line == (
        "the day has not started (the contact window opens at 08:00 Asia/Shanghai):"
        " 2 collectors with 5 promises due today, 5 callbacks due, 2 settlements waiting for"
        " a manager; 3 of 5 earlier promises (due in the last 30 days) kept"
    )
    first, second = (_desk(cn, c, early) for c in cn.collector_ids)
    for desk, due, callbacks_now in ((first, 2, 2), (second, 3, 1)):
        assert desk["attempts"] == 0
        assert desk["due"] == ["pending"] * due
        # Promises due yesterday, paid through the payment file; one due days ago, unpaid.
        assert desk["judged_before"] == ["broken"] + ["kept"] * (due - 1)
        assert desk["callbacks_due_now"] == callbacks_now
        assert desk["callbacks_later"] == 1
        # 20% off: above the collectors' 10%, within the managers' 30%.
        assert desk["waiting"] == ["20.00"]
    before = _totals(cn)
    assert _run(cn, early, tmp_path) == line
    assert _totals(cn) == before

    # 15:00 the same day: the calls so far are added, nothing that was due is repeated.
    line = _run(cn, afternoon, tmp_path)
    for collector_id, made in zip(cn.collector_ids, (3, 2), strict=True):
        desk = _desk(cn, collector_id, afternoon)
        assert 10 <= desk["attempts"] <= 20
        assert desk["reached"] >= 3
        assert desk["made"] == made
        # The call before the window opened, and the fourth conversation of the day.
        assert desk["blocked"] == ["cn.connected_calls_per_day", "cn.contact_window"]
        # The first promise due today was paid in full through the payment file: kept.
        assert desk["due"][0] == "kept"
        assert desk["due"].count("kept") == 1
        assert len(desk["waiting"]) == 1
    assert "2 collectors today: " in line
    assert "blocked: cn.connected_calls_per_day 2, cn.contact_window 2" in line
    assert ", 5 promises made, 5 due today (2 kept, " in line
    assert "2 settlements waiting for a manager" in line
    assert "3 of 5 earlier promises (due in the last 30 days) kept" in line
    # Three payments yesterday evening (sent in at 06:00), two today (at 15:00).
    with cn.scope() as session:
        paid = session.scalars(select(Payment.external_id).order_by(Payment.id)).all()
    assert len(paid) == 5
    assert all(p.startswith("DEMO-DESK-") for p in paid)
    for clock in ("0600", "1500"):
        assert (tmp_path / f"{cn.slug}-desk-payments-{day:%Y-%m-%d}T{clock}.jsonl").is_file()

    # Again later the same day: the same line, not one row more.
    during = _totals(cn)
    assert _run(cn, afternoon + dt.timedelta(minutes=20), tmp_path) == line
    assert _totals(cn) == during

    # The next day: that day is added.
    next_day = afternoon + dt.timedelta(days=1)
    _run(cn, next_day, tmp_path)
    after = _totals(cn)
    assert after["contact_attempts"] > during["contact_attempts"]
    assert after["promises"] > during["promises"]
    assert after["settlements"] == during["settlements"] + 2
    for collector_id in cn.collector_ids:
        desk = _desk(cn, collector_id, next_day)
        assert desk["attempts"] > 0
        assert desk["due"]
        assert desk["waiting"]


@pytest.mark.real_commits
def test_a_us_day_blocks_a_call_in_the_quiet_week_after_a_conversation(
    us: Lender, tmp_path: Path
) -> None:
    _open_book(us, 26, collectors=1)
    now = _local(us, _days_ago(us, 1), 16, 30)
    line = _run(us, now, tmp_path)
    [collector_id] = us.collector_ids[:1]
    desk = _desk(us, collector_id, now)
    assert desk["blocked"] == ["us.contact_window", "us.quiet_after_conversation"]
    assert 10 <= desk["attempts"] <= 20
    assert desk["made"] == 3
    assert desk["due"][0] == "kept"
    assert desk["callbacks_due_now"] == 2
    assert desk["waiting"] == ["20.00"]
    assert desk["judged_before"] == ["broken", "kept"]
    assert line.startswith("1 collector today: ")
    assert "1 of 2 earlier promises (due in the last 30 days) kept" in line
    assert "USD paid" in line
    assert _run(us, now, tmp_path) == line


def test_a_lender_without_collectors_has_no_desk(cn: Lender, tmp_path: Path) -> None:
    now = _local(cn, _days_ago(cn, 1), 15)
    assert _run(cn, now, tmp_path) == "no collector holds a case: no desk to fill"
