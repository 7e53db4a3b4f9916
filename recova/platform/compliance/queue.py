"""Hiding cases from the collectors' work queue that the gate would block right now.

The queue is one UNION ALL over the agency's tenants (``portfolio_sql``); each tenant's
part gets the conditions below, set-based, with that tenant's rules in force now as
bound values: no stop flag or do-not-contact mark, the debtor's local clock inside the
window, and no call cap reached (CN: connected calls today; US: calls in 7 days, or a
conversation in the quiet period). The queue is the dialling queue, so the caps read are
the call caps; the gate still decides each attempt, by any channel.

The debtor's zone here is their own, else their address region's, else the tenant's.
The gate also reads the phone's region when those are missing; the queue cannot
(numbers are encrypted), so such a debtor is shown by the tenant's clock and the gate
has the last word.
"""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from recova.platform.compliance.localtime import REGION_ZONES
from recova.platform.compliance.packs import Rules, pack_in_force
from recova.platform.compliance.policy import tighten
from recova.platform.contact.models import CONVERSATION_RESULTS
from recova.platform.kernel.db import quote_identifier
from recova.tenants.models import Tenant

_REGIONS = json.dumps(REGION_ZONES, ensure_ascii=False)
# As in the gate: a refusal means someone answered, and a pending call may be a conversation.
_CONVERSATION = ", ".join(f"'{r.value}'" for r in CONVERSATION_RESULTS)


@lru_cache(maxsize=1)
def known_zones() -> list[str]:
    """Every IANA zone name, so a misspelt ``debtors.timezone`` falls back like in the gate
    instead of failing the whole queue (read once, on first use)."""
    return sorted(zoneinfo.available_timezones())


@dataclass(frozen=True)
class QueueRules:
    """One tenant's rules in force now, for the queue's SQL."""

    tenant_timezone: str
    rules: Rules


def rules_now(session: Session, tenant: Tenant, now: dt.datetime) -> QueueRules:
    """The tenant's merged rules at ``now`` (read from its schema by name)."""
    s = quote_identifier(tenant.schema_name)
    row = session.execute(
        text(
            f"""SELECT pack, overrides FROM {s}.compliance_policies
                WHERE effective_from <= :now ORDER BY effective_from DESC, id DESC LIMIT 1"""
        ),
        {"now": now},
    ).first()
    pack = pack_in_force(row[0] if row else tenant.jurisdiction.value, now)
    rules = tighten(pack.rules, row[1]) if row else pack.rules
    return QueueRules(tenant_timezone=tenant.timezone, rules=rules)


def contactable_sql(
    n: int, schema: str, queue_rules: QueueRules
) -> tuple[str, str, dict[str, Any]]:
    """(joins, conditions, params) keeping only cases of tenant part ``n`` that may be
    called now. ``schema`` is already quoted; cases are ``c``."""
    rules = queue_rules.rules
    params: dict[str, Any] = {
        f"cz_regions{n}": _REGIONS,
        f"cz_tz{n}": queue_rules.tenant_timezone,
        f"cz_zones{n}": known_zones(),
        f"cz_ws{n}": rules.window_start,
        f"cz_we{n}": rules.window_end,
    }
    joins = f"""JOIN {schema}.debtors cz_d{n} ON cz_d{n}.id = c.debtor_id
        CROSS JOIN LATERAL (
            SELECT (now() AT TIME ZONE z.tz) AS local_now, z.tz
            FROM (SELECT COALESCE(
                CASE WHEN cz_d{n}.timezone = ANY(CAST(:cz_zones{n} AS text[]))
                     THEN cz_d{n}.timezone END,
                CAST(:cz_regions{n} AS jsonb) ->> upper(cz_d{n}.region),
                CAST(:cz_regions{n} AS jsonb) ->> left(cz_d{n}.region, 3),
                CAST(:cz_regions{n} AS jsonb) ->> left(cz_d{n}.region, 2),
                CAST(:cz_tz{n} AS text)) AS tz) z
        ) cz{n}"""
    conditions = [
        "cardinality(c.flags) = 0",
        "c.status NOT IN ('on_hold', 'closed', 'paid', 'settled', 'recalled')",
        f"NOT cz_d{n}.do_not_contact",
        f"cz{n}.local_now::time >= :cz_ws{n}",
        f"cz{n}.local_now::time < :cz_we{n}",
    ]
    calls = f"""SELECT count(*) FROM {schema}.contact_attempts x
        WHERE x.status <> 'blocked' AND x.channel = 'call_out' AND NOT x.third_party"""
    if rules.max_connected_calls_per_day is not None:
        params[f"cz_connected{n}"] = rules.max_connected_calls_per_day
        conditions.append(
            f"""({calls} AND x.debtor_id = c.debtor_id
                 AND x.attempted_at >= (date_trunc('day', cz{n}.local_now) AT TIME ZONE cz{n}.tz)
                 AND (x.status = 'pending' OR x.result IN ({_CONVERSATION}))) < :cz_connected{n}"""
        )
    if rules.max_call_attempts_in_7_days is not None:
        params[f"cz_week{n}"] = rules.max_call_attempts_in_7_days
        conditions.append(
            f"""({calls} AND x.case_id = c.id
                 AND x.attempted_at > now() - interval '7 days') < :cz_week{n}"""
        )
    if rules.quiet_days_after_conversation:
        params[f"cz_quiet{n}"] = rules.quiet_days_after_conversation
        conditions.append(
            f"""NOT EXISTS (SELECT 1 FROM {schema}.contact_attempts x
                 WHERE x.case_id = c.id AND x.status <> 'blocked' AND NOT x.third_party
                   AND x.channel IN ('call_out', 'call_in')
                   AND (x.status = 'pending' OR x.result IN ({_CONVERSATION}))
                   AND x.attempted_at > now() - make_interval(days => :cz_quiet{n}))"""
        )
    return joins, " AND ".join(conditions), params


#: Rules that keep a case out of the queue until someone acts (no time lifts them), in
#: the order a collector is told about them.
STANDING_RULES = ("flag", "case_closed", "case_on_hold", "do_not_contact", "no_calls")
#: Rules that lift at a known time, in the order they are named when several hold.
TIMED_RULES = (
    "connected_calls_per_day",
    "call_attempts_in_7_days",
    "quiet_after_conversation",
    "contact_window",
)


def verdict_sql(n: int, schema: str, queue_rules: QueueRules) -> tuple[str, str, dict[str, Any]]:
    """(joins, columns, params) saying, for each case of tenant part ``n``, what
    ``contactable_sql`` decides and why, instead of leaving the blocked cases out.

    Columns: ``debtor_timezone`` (the zone the window is read in), ``case_flags``,
    ``blocked_rule`` (NULL when a call is allowed now, else the first of
    ``STANDING_RULES`` or ``TIMED_RULES`` that holds) and ``next_allowed_at`` (when a
    timed block lifts, moved to the next opening of the window in the debtor's zone;
    NULL when callable now or when only someone's action lifts the block). The debtor is
    ``cz_d{n}``; counts and caps are the ones ``contactable_sql`` applies, per row from
    the same indexes. ``schema`` is already quoted; cases are ``c``.
    """
    joins, _conditions, params = contactable_sql(n, schema, queue_rules)
    rules = queue_rules.rules
    d, z = f"cz_d{n}", f"cz{n}"
    ws, we = f"CAST(:cz_ws{n} AS time)", f"CAST(:cz_we{n} AS time)"
    calls = f"""FROM {schema}.contact_attempts ca
        WHERE ca.status <> 'blocked' AND ca.channel = 'call_out' AND NOT ca.third_party"""
    counted: list[str] = []
    whens = [
        "WHEN cardinality(c.flags) > 0 THEN 'flag'",
        "WHEN c.status IN ('closed', 'paid', 'settled', 'recalled') THEN 'case_closed'",
        "WHEN c.status = 'on_hold' THEN 'case_on_hold'",
        f"WHEN {d}.do_not_contact THEN 'do_not_contact'",
    ]
    lifts: list[str] = []
    if rules.max_call_attempts_in_7_days == 0:
        whens.append("WHEN true THEN 'no_calls'")
    if rules.max_connected_calls_per_day is not None:
        counted.append(
            f"""(SELECT count(*) {calls} AND ca.debtor_id = c.debtor_id
                 AND ca.attempted_at >= (date_trunc('day', {z}.local_now) AT TIME ZONE {z}.tz)
                 AND (ca.status = 'pending' OR ca.result IN ({_CONVERSATION})))
                AS connected_today"""
        )
        whens.append(
            f"WHEN cv{n}.connected_today >= :cz_connected{n} THEN 'connected_calls_per_day'"
        )
        lifts.append(
            f"""CASE WHEN cv{n}.connected_today >= :cz_connected{n}
                THEN (date_trunc('day', {z}.local_now) + interval '1 day') AT TIME ZONE {z}.tz
                END"""
        )
        params[f"cz_connected{n}"] = rules.max_connected_calls_per_day
    if rules.max_call_attempts_in_7_days:
        # The call that must leave the 7-day window before another is allowed (as the gate).
        counted.append(
            f"""(SELECT ca.attempted_at {calls} AND ca.case_id = c.id
                 AND ca.attempted_at > now() - interval '7 days'
                 ORDER BY ca.attempted_at DESC OFFSET :cz_week_offset{n} LIMIT 1)
                AS capped_call"""
        )
        whens.append(f"WHEN cv{n}.capped_call IS NOT NULL THEN 'call_attempts_in_7_days'")
        lifts.append(f"cv{n}.capped_call + interval '7 days'")
        params[f"cz_week_offset{n}"] = rules.max_call_attempts_in_7_days - 1
    if rules.quiet_days_after_conversation:
        counted.append(
            f"""(SELECT max(ca.attempted_at) FROM {schema}.contact_attempts ca
                 WHERE ca.case_id = c.id AND ca.status <> 'blocked' AND NOT ca.third_party
                   AND ca.channel IN ('call_out', 'call_in')
                   AND (ca.status = 'pending' OR ca.result IN ({_CONVERSATION}))
                   AND ca.attempted_at > now() - make_interval(days => :cz_quiet{n}))
                AS last_conversation"""
        )
        whens.append(f"WHEN cv{n}.last_conversation IS NOT NULL THEN 'quiet_after_conversation'")
        lifts.append(f"cv{n}.last_conversation + make_interval(days => :cz_quiet{n})")
        params[f"cz_quiet{n}"] = rules.quiet_days_after_conversation
    whens.append(
        f"WHEN NOT ({z}.local_now::time >= {ws} AND {z}.local_now::time < {we})"
        " THEN 'contact_window'"
    )
    standing = ", ".join(f"'{rule}'" for rule in STANDING_RULES)
    # OFFSET 0 keeps each lateral a subquery of its own, evaluated once per case: pulled up
    # into the outer query, each count would be run again wherever its column is used.
    joins += f"""
        CROSS JOIN LATERAL (SELECT {", ".join(counted) or "NULL AS nothing"} OFFSET 0) cv{n}
        CROSS JOIN LATERAL (
            SELECT CASE {" ".join(whens)} END AS rule,
                   GREATEST(now(), {", ".join(lifts) or "NULL"}) AS lifts_at
            OFFSET 0
        ) cr{n}
        CROSS JOIN LATERAL (SELECT cr{n}.lifts_at AT TIME ZONE {z}.tz AS local_lift) cl{n}"""
    columns = f"""{z}.tz AS debtor_timezone, c.flags AS case_flags, cr{n}.rule AS blocked_rule,
        CASE WHEN cr{n}.rule IS NULL OR cr{n}.rule IN ({standing}) THEN NULL
             WHEN cl{n}.local_lift::time >= {ws} AND cl{n}.local_lift::time < {we}
                THEN cr{n}.lifts_at
             WHEN cl{n}.local_lift::time < {ws}
                THEN (date_trunc('day', cl{n}.local_lift) + {ws}) AT TIME ZONE {z}.tz
             ELSE (date_trunc('day', cl{n}.local_lift) + interval '1 day' + {ws})
                AT TIME ZONE {z}.tz
        END AS next_allowed_at"""
    return joins, columns, params
