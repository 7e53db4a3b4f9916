"""The figures of the portal's compliance page: blocked attempts and validation notices due.

- **Blocked attempts** in a period (``[since, until)``): counted by the rule that blocked
  them, by agency (``None``: the tenant's own staff and its API clients) and by who made
  them (an agency's collector or manager, a tenant user; ``None``: an API client), in one
  statement with grouping sets over the period's blocked rows. The rows are found by the
  partial index ``ix_contact_attempts_blocked_time`` (tenant migration 0013), which holds
  the grouped columns too, so a month of a book with millions of attempts is one index-only
  range scan.
- **Validation notices due** (Regulation F): open cases first contacted (a connected call or
  a delivered message to the debtor) without a recorded notice, due within the policy's
  days of that contact or overdue; the counts of each and the first page by due date. The
  first contact of each case is read from the partial index
  ``ix_contact_attempts_first_contact`` (0013), which holds only such contacts.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from recova.platform.agencies.models import Agency
from recova.platform.auth.models import User
from recova.platform.compliance.gate import CLOSED_STATES
from recova.platform.kernel.db import scoped_schema

#: The most rows of people the blocked-attempt table shows (the busiest first).
PEOPLE_SHOWN = 100
#: Notices due listed on one page, earliest due first.
NOTICES_SHOWN = 100


@dataclass(frozen=True)
class RuleCount:
    rule: str
    blocked: int


@dataclass(frozen=True)
class AgencyCount:
    #: None: the tenant's own staff and API clients.
    agency_id: int | None
    name: str | None
    blocked: int


@dataclass(frozen=True)
class PersonCount:
    agency_id: int | None
    agency_name: str | None
    #: None: an API client of the tenant.
    user_id: int | None
    name: str | None
    email: str | None
    blocked: int


@dataclass
class BlockedAttempts:
    """Blocked attempts of one period, three ways."""

    since: dt.datetime
    until: dt.datetime
    total: int = 0
    by_rule: list[RuleCount] = field(default_factory=list)
    by_agency: list[AgencyCount] = field(default_factory=list)
    #: The busiest ``PEOPLE_SHOWN`` people; ``people`` counts them all.
    by_person: list[PersonCount] = field(default_factory=list)
    people: int = 0


def blocked_attempts(
    session: Session, *, since: dt.datetime, until: dt.datetime, people_shown: int = PEOPLE_SHOWN
) -> BlockedAttempts:
    """Blocked attempts made in ``[since, until)`` by rule, agency and person (``session``
    bound to the tenant); agencies and people are named from the shared tables."""
    s = scoped_schema(session)
    rows = session.execute(
        text(
            f"""SELECT GROUPING(blocked_rule) AS g_rule, GROUPING(agency_id) AS g_agency,
                       GROUPING(user_id) AS g_user, blocked_rule, agency_id, user_id,
                       count(*) AS blocked
                FROM {s}.contact_attempts
                WHERE status = 'blocked' AND attempted_at >= :since AND attempted_at < :until
                GROUP BY GROUPING SETS ((blocked_rule), (agency_id), (agency_id, user_id), ())"""
        ),
        {"since": since, "until": until},
    ).mappings()
    report = BlockedAttempts(since=since, until=until)
    agencies: list[tuple[int | None, int]] = []
    people: list[tuple[int | None, int | None, int]] = []
    for row in rows:
        if row["g_rule"] and row["g_agency"] and row["g_user"]:
            report.total = row["blocked"]
        elif not row["g_rule"]:
            report.by_rule.append(RuleCount(row["blocked_rule"], row["blocked"]))
        elif row["g_user"]:
            agencies.append((row["agency_id"], row["blocked"]))
        else:
            people.append((row["agency_id"], row["user_id"], row["blocked"]))
    report.by_rule.sort(key=lambda r: (-r.blocked, r.rule))
    # The tenant's own attempts (no agency) after the agencies, each group busiest first.
    agencies.sort(key=lambda a: (a[0] is None, -a[1], a[0] or 0))
    people.sort(key=lambda p: (-p[2], p[0] is None, p[0] or 0, p[1] is None, p[1] or 0))
    report.people = len(people)
    people = people[:people_shown]
    agency_names = _agency_names(session, {a for a, _ in agencies} | {p[0] for p in people})
    users = _users(session, {p[1] for p in people})
    report.by_agency = [
        AgencyCount(agency_id, agency_names.get(agency_id) if agency_id else None, blocked)
        for agency_id, blocked in agencies
    ]
    report.by_person = [
        PersonCount(
            agency_id=agency_id,
            agency_name=agency_names.get(agency_id) if agency_id else None,
            user_id=user_id,
            name=users[user_id][0] if user_id in users else None,
            email=users[user_id][1] if user_id in users else None,
            blocked=blocked,
        )
        for agency_id, user_id, blocked in people
    ]
    return report


def _agency_names(session: Session, ids: set[int | None]) -> dict[int, str]:
    wanted = sorted(i for i in ids if i is not None)
    if not wanted:
        return {}
    # ``dict(result)`` would read the result as a mapping (it has ``keys()``): pass its rows.
    return dict(session.execute(select(Agency.id, Agency.name).where(Agency.id.in_(wanted))).all())


def _users(session: Session, ids: set[int | None]) -> dict[int, tuple[str, str]]:
    wanted = sorted(i for i in ids if i is not None)
    if not wanted:
        return {}
    return {
        user_id: (name, email)
        for user_id, name, email in session.execute(
            select(User.id, User.full_name, User.email).where(User.id.in_(wanted))
        )
    }


@dataclass(frozen=True)
class NoticeDue:
    case_id: int
    account_external_id: str
    debtor_name: str
    first_contact_at: dt.datetime
    due_by: dt.datetime
    overdue: bool


@dataclass
class NoticesDue:
    """Validation notices owed: how many are due and overdue, and the earliest ones."""

    #: The policy's days from first contact (None: the policy asks for no notice).
    days: int | None
    due: int = 0
    overdue: int = 0
    rows: list[NoticeDue] = field(default_factory=list)


def notices_due(
    session: Session, *, days: int | None, now: dt.datetime, limit: int = NOTICES_SHOWN
) -> NoticesDue:
    """Open cases contacted without a validation notice: the counts of due (still in time)
    and overdue ones, and the ``limit`` earliest due, with their case (the same rule as
    ``recova.platform.compliance.notices.notices_due``, counted and paged in SQL)."""
    report = NoticesDue(days=days)
    if days is None:
        return report
    s = scoped_schema(session)
    closed = ", ".join(f"'{state}'" for state in CLOSED_STATES)
    rows = session.execute(
        text(
            f"""WITH owed AS (
                    SELECT f.case_id, f.first_contact_at,
                           f.first_contact_at + make_interval(days => :days) AS due_by
                    FROM (SELECT case_id, min(attempted_at) AS first_contact_at
                          FROM {s}.contact_attempts
                          WHERE status = 'completed' AND NOT third_party
                            AND result IN ('connected', 'delivered')
                          GROUP BY case_id) f
                    JOIN {s}.cases c ON c.id = f.case_id
                    WHERE c.status::text NOT IN ({closed})
                      AND NOT EXISTS (SELECT 1 FROM {s}.validation_notices n
                                      WHERE n.case_id = f.case_id)),
                counts AS (
                    SELECT count(*) FILTER (WHERE due_by >= :now) AS due,
                           count(*) FILTER (WHERE due_by < :now) AS overdue FROM owed),
                page AS (
                    SELECT o.*, a.external_id, d.full_name
                    FROM (SELECT * FROM owed ORDER BY due_by, case_id LIMIT :limit) o
                    JOIN {s}.cases c ON c.id = o.case_id
                    JOIN {s}.accounts a ON a.id = c.account_id
                    JOIN {s}.debtors d ON d.id = c.debtor_id)
                SELECT counts.due, counts.overdue, page.*
                FROM counts LEFT JOIN page ON true
                ORDER BY page.due_by, page.case_id"""
        ),
        {"days": days, "now": now, "limit": limit},
    ).mappings()
    for row in rows:
        report.due, report.overdue = row["due"], row["overdue"]
        if row["case_id"] is None:
            continue
        report.rows.append(
            NoticeDue(
                case_id=row["case_id"],
                account_external_id=row["external_id"],
                debtor_name=row["full_name"],
                first_contact_at=row["first_contact_at"],
                due_by=row["due_by"],
                overdue=row["due_by"] < now,
            )
        )
    return report
