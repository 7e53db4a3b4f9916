"""The one compliance gate: every outbound contact attempt passes ``attempt_contact``.

The API calls it now; the web UI and any dialer call the same function later. For one
attempt it:

1. loads the case, debtor, contact and the tenant's policy version in one query (agency
   staff reach only cases placed with their agency, and a collector only the cases
   assigned to them: anything else is "not found");
2. takes transaction-level advisory locks on (tenant schema, debtor) and then on
   (tenant schema, number) in that same statement, so two collectors dialling the same
   debtor, or the same number for two debtors who share it, at the same instant are
   decided one after the other and cannot both pass a cap only one may pass;
3. decides under the rules in force at that instant (``decide``): flags, the local
   contact window, the caps, the third-party rules;
4. records the attempt: ``pending`` when allowed (its outcome follows), ``blocked`` with
   the rule, a message and the next allowed time otherwise, and counts the block.

Counts are indexed ``count(*)`` queries over ``contact_attempts`` (one statement for all
of them), per debtor across every agency and the tenant's own staff; the unanswered
cap counts per number, across every contact row that holds it (its blind index), so a
phone shared by two debtors is not dialled twice the cap. A pending call
counts as the worst case until its outcome is recorded (connected for the connected-call
cap and the quiet period after a conversation, unanswered for the unanswered cap), so
the lock plus the count is exact. Someone who answers and refuses has had a
conversation: ``refused`` counts wherever ``connected`` does.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from recova.platform.audit import record_event
from recova.platform.auth.models import Role
from recova.platform.compliance.localtime import (
    all_windows_open,
    in_window,
    local_days,
    resolve_zone,
    zone,
)
from recova.platform.compliance.packs import Rules
from recova.platform.compliance.policy import PolicyInForce
from recova.platform.contact.models import (
    CHANNEL_CONTACT_KIND,
    CONVERSATION_RESULTS,
    FAILED_RESULTS,
    MESSAGE_CHANNELS,
    AttemptStatus,
    Channel,
    ContactAttempt,
    MessageTemplate,
)
from recova.platform.kernel.db import after_commit, scoped_schema, utcnow
from recova.platform.kernel.errors import DomainError
from recova.platform.kernel.metrics import record_compliance_block

if TYPE_CHECKING:
    from recova.platform.auth.principal import Principal
    from recova.platform.kernel.crypto import PersonalDataCipher
    from recova.platform.kernel.extension import Platform
    from recova.tenants.models import Tenant

#: Flags of a case that stop all outreach, with the words a collector reads.
STOP_FLAGS = {
    "dispute": "the debt is disputed",
    "bankruptcy": "the debtor is in bankruptcy",
    "deceased": "the debtor is deceased",
    "cease_contact": "the debtor asked to cease communication",
}
#: Case states in which nobody contacts the debtor about the case.
CLOSED_STATES = ("closed", "paid", "settled", "recalled")
WINDOW_EXEMPT = (Channel.LETTER,)  # posted, not delivered at a time of day
_FAILED = ", ".join(f"'{r.value}'" for r in FAILED_RESULTS)
_CONVERSATION = ", ".join(f"'{r.value}'" for r in CONVERSATION_RESULTS)


class GateError(DomainError, ValueError):
    """The attempt asked for is malformed (wrong kind of contact, template, channel)."""


@dataclass(frozen=True)
class Actor:
    """Who makes an attempt: an agency's staff, the tenant's staff, or a tenant API client.

    ``collector``: an agency collector, who works only the cases assigned to them (an
    agency manager, ``collector`` false, reaches every case placed with the agency).
    """

    kind: str
    agency_id: int | None = None
    user_id: int | None = None
    client_id: int | None = None
    collector: bool = False

    def __post_init__(self) -> None:
        if self.collector and (self.agency_id is None or self.user_id is None):
            # Without both the assignment check could not run, and must not be skipped.
            raise ValueError("a collector acts for an agency as a user")

    @classmethod
    def of(cls, principal: Principal) -> Actor:
        if principal.is_client:
            return cls(kind="client", client_id=principal.subject_id)
        if principal.is_agency_user:
            return cls(
                kind="agency",
                agency_id=principal.agency_id,
                user_id=principal.subject_id,
                collector=principal.role is Role.COLLECTOR,
            )
        return cls(kind="tenant", user_id=principal.subject_id)

    @property
    def collector_id(self) -> int | None:
        """The user whose open assignment the case needs (None: no assignment needed)."""
        return self.user_id if self.collector else None

    @property
    def audit_label(self) -> str:
        """The actor as the audit chain names principals: ``user:<id>`` or ``client:<id>``."""
        if self.kind == "client":
            return f"client:{self.client_id}"
        return f"user:{self.user_id}" if self.user_id is not None else f"{self.kind}:system"


@dataclass(frozen=True)
class Target:
    """What the gate needs to know about a case and the contact to be used."""

    case_id: int
    case_status: str
    flags: tuple[str, ...]
    debtor_id: int
    debtor_do_not_contact: bool
    debtor_timezone: str | None
    region: str | None
    contact_id: int
    contact_kind: str
    relation: str
    contact_do_not_contact: bool
    contact_ciphertext: bytes
    #: The contact's blind index: the same number registered for several debtors (a
    #: shared family phone, a relative's number) shares it, so per-number caps count it.
    contact_index: bytes
    #: A third party's name, as the tenant registered it (None: not given).
    contact_name: str | None = None
    #: The tenant's policy version in force at the instant asked about (None: the bare pack).
    policy_id: int | None = None
    policy_pack: str | None = None
    policy_overrides: dict[str, Any] | None = None

    @property
    def third_party(self) -> bool:
        return self.relation != "self"


@dataclass(frozen=True)
class Block:
    """One rule that stops the attempt, and until when (None: until someone acts)."""

    rule: str
    message: str
    until: dt.datetime | None


@dataclass(frozen=True)
class Decision:
    """The gate's answer for one attempt."""

    at: dt.datetime
    #: The zone recorded with the attempt: the one whose window shut it out, else the
    #: first candidate.
    timezone: str
    zone_source: str
    pack_version: str
    policy_id: int | None
    blocks: tuple[Block, ...] = field(default_factory=tuple)
    next_allowed_at: dt.datetime | None = None
    #: Every zone the debtor may be in (several only when a phone number says so).
    timezones: tuple[str, ...] = ()

    @property
    def allowed(self) -> bool:
        return not self.blocks

    @property
    def rule(self) -> str | None:
        return self.blocks[0].rule if self.blocks else None

    @property
    def message(self) -> str | None:
        return self.blocks[0].message if self.blocks else None


def _schema(session: Session) -> str:
    if session.info.get("tenant_schema") is None:
        raise RuntimeError("the compliance gate needs a session bound to a tenant")
    return scoped_schema(session)


def load_target(
    session: Session,
    *,
    case_id: int,
    contact_id: int,
    at: dt.datetime,
    agency_id: int | None = None,
    collector_id: int | None = None,
    lock: bool = False,
) -> Target | None:
    """The case, the contact (which must be the case debtor's) and the tenant's policy
    version in force at ``at``, in one round trip; None if the case or contact is missing
    or, for agency staff, the case is not placed with their agency now, or, for a
    collector (``collector_id``, with ``agency_id``), not assigned to them on that
    placement now.

    With ``lock`` the same statement takes the per-debtor advisory lock, then the
    per-number one (the contact's blind index), both held to the end of the transaction,
    so the counts that follow, in their own statement and snapshot, see every attempt
    committed by whoever held them before. The keys hash the schema name and the debtor
    id (or the number's index) into PostgreSQL's 64-bit lock space; a collision only
    makes two attempts wait for each other.
    """
    if collector_id is not None and agency_id is None:
        raise ValueError("a collector's reach is checked within their agency")
    statement = _load_statement(
        _schema(session), agency_id is not None, collector_id is not None, lock
    )
    row = session.execute(
        statement,
        {
            "case_id": case_id,
            "contact_id": contact_id,
            "agency_id": agency_id,
            "collector_id": collector_id,
            "at": at,
            "lock_prefix": _lock_prefix(session),
        },
    ).first()
    if row is None:
        return None
    return _target(row)


def _target(row: Any) -> Target:
    """A ``Target`` from a row of ``_load_statement`` or ``_preview_statement``."""
    return Target(
        case_id=row[0],
        case_status=row[1],
        flags=tuple(row[2] or ()),
        debtor_id=row[3],
        debtor_do_not_contact=row[4],
        debtor_timezone=row[5],
        region=row[6],
        contact_id=row[7],
        contact_kind=row[8],
        relation=row[9],
        contact_do_not_contact=row[10],
        contact_ciphertext=row[11],
        policy_id=row[12],
        policy_pack=row[13],
        policy_overrides=row[14],
        contact_name=row[15],
        contact_index=row[16],
    )


@lru_cache(maxsize=1024)
def _load_statement(s: str, placed: bool, assigned: bool, lock: bool) -> Any:
    """Built once per schema and shape: parsing the SQL for its parameters costs more than
    running it on a warm connection."""
    assigned_sql = (
        f"""AND EXISTS (SELECT 1 FROM {s}.assignments a WHERE a.placement_id = pl.id
                            AND a.collector_id = :collector_id AND a.ended_at IS NULL)"""
        if assigned
        else ""
    )
    placed_sql = (
        f"""AND EXISTS (SELECT 1 FROM {s}.placements pl WHERE pl.case_id = c.id
                        AND pl.agency_id = :agency_id AND pl.recalled_on IS NULL
                        {assigned_sql})"""
        if placed
        else ""
    )
    # The debtor's lock first, then the number's: every taker goes in that order, and a
    # transaction makes one attempt, so two never wait on each other in a cycle.
    locked = (
        ", pg_advisory_xact_lock(hashtextextended(:lock_prefix || d.id::text, 0)) IS NULL,"
        " pg_advisory_xact_lock(hashtextextended("
        ":lock_prefix || 'number:' || encode(k.value_index, 'hex'), 0)) IS NULL"
        if lock
        else ""
    )
    return text(
        f"""SELECT c.id, c.status::text, c.flags, d.id, d.do_not_contact, d.timezone,
                   d.region, k.id, k.kind::text, k.relation, k.do_not_contact,
                   k.value_ciphertext, p.id, p.pack, p.overrides, k.name, k.value_index
                   {locked}
            FROM {s}.cases c
            JOIN {s}.debtors d ON d.id = c.debtor_id
            JOIN {s}.contacts k ON k.id = :contact_id AND k.debtor_id = d.id
            LEFT JOIN LATERAL (
                SELECT id, pack, overrides FROM {s}.compliance_policies
                WHERE effective_from <= :at
                ORDER BY effective_from DESC, id DESC LIMIT 1) p ON true
            WHERE c.id = :case_id {placed_sql}"""
    )


def _lock_prefix(session: Session) -> str:
    return f"contact:{session.info['tenant_schema']}:"


def debtor_zone(
    target: Target, *, channel: Channel, tenant_timezone: str, cipher: PersonalDataCipher
) -> tuple[tuple[str, ...], str]:
    """The debtor's candidate zones and their source; the phone is decrypted (in memory
    only) when nothing else says, and may name several zones, all of which then bind."""
    phone = None
    if (
        target.debtor_timezone is None
        and target.region is None
        and target.contact_kind == "phone"
        and channel in (Channel.CALL_OUT, Channel.SMS, Channel.CALL_IN)
    ):
        phone = cipher.decrypt(target.contact_ciphertext, context="contact.phone")
    return resolve_zone(
        debtor_timezone=target.debtor_timezone,
        region=target.region,
        phone=phone,
        tenant_timezone=tenant_timezone,
    )


_FAR_FUTURE = dt.datetime(9999, 1, 1, tzinfo=dt.UTC)


@lru_cache(maxsize=1024)
def _count_statement(s: str, parts: tuple[str, ...]) -> Any:
    """Built once per schema and set of counts (see ``_load_statement``)."""
    return text("SELECT " + ", ".join(parts).format(s=s))


_CONNECTED_TODAY = (
    """(SELECT count(*) FROM {s}.contact_attempts
    WHERE debtor_id = :debtor_id AND attempted_at >= :day_start AND attempted_at < :day_end
      AND status <> 'blocked' AND channel = 'call_out' AND NOT third_party
      AND (status = 'pending' OR result IN ("""
    + _CONVERSATION
    + """))) AS connected_today"""
)
# Per number, whoever's debt it was dialled for: every contact row holding the number.
_UNANSWERED_TODAY = """(SELECT count(*) FROM {s}.contact_attempts
    WHERE contact_id IN (SELECT id FROM {s}.contacts WHERE value_index = :contact_index)
      AND attempted_at >= :day_start AND attempted_at < :day_end
      AND status <> 'blocked' AND channel = 'call_out'
      AND (status = 'pending' OR result IN ('no_answer', 'busy'))) AS unanswered_today"""
# The call that must leave the 7-day window before another is allowed: the cap-th newest.
_CAPPED_CALL = """(SELECT attempted_at FROM {s}.contact_attempts
    WHERE case_id = :case_id AND attempted_at > :week_ago AND attempted_at <= :at
      AND status <> 'blocked' AND channel = 'call_out' AND NOT third_party
    ORDER BY attempted_at DESC OFFSET :calls_offset LIMIT 1) AS capped_call"""
# A call still pending may turn out a conversation: it counts as one until its outcome is
# recorded, or a second call would pass while the first one's is unknown.
_LAST_CONVERSATION = (
    """(SELECT max(attempted_at) FROM {s}.contact_attempts
    WHERE case_id = :case_id AND attempted_at > :quiet_since AND attempted_at <= :at
      AND status <> 'blocked' AND channel IN ('call_out', 'call_in') AND NOT third_party
      AND (status = 'pending' OR result IN ("""
    + _CONVERSATION
    + """))) AS last_conversation"""
)
# A refusal by a third party, through this contact or any other the tenant registered
# for the same person (same relation and name, see ``_read_counts``).
_REFUSED = """(SELECT count(*) FROM {s}.contact_attempts x
    JOIN {s}.contacts k ON k.id = x.contact_id
    WHERE x.debtor_id = :debtor_id AND x.third_party AND x.attempted_at <= :at
      AND x.status = 'completed' AND x.result = 'refused'
      AND (x.contact_id = :contact_id
           OR (k.relation = :relation
               AND lower(btrim(k.name)) = lower(CAST(:contact_name AS text))))) AS refusals"""
_OWN_PHONES = """(SELECT count(*) FROM {s}.contacts k
    WHERE k.debtor_id = :debtor_id AND k.relation = 'self' AND k.kind = 'phone')
    AS own_phones"""
_FAILED_RUN = (
    """(SELECT count(*) = :failures AND bool_and(result IN ("""
    + _FAILED
    + """)) FROM (
      SELECT result FROM {s}.contact_attempts
      WHERE debtor_id = :debtor_id AND attempted_at <= :at AND status = 'completed'
        AND NOT third_party
      ORDER BY attempted_at DESC LIMIT :failures) AS recent) AS failed_run"""
)
_OWN_PHONES_VALID = """(SELECT count(*) FROM {s}.contacts k
    WHERE k.debtor_id = :debtor_id AND k.relation = 'self' AND k.kind = 'phone'
      AND NOT EXISTS (SELECT 1 FROM {s}.contact_attempts x
                      WHERE x.contact_id = k.id AND x.status = 'completed'
                        AND x.result = 'wrong_number' AND x.attempted_at <= :at))
    AS own_phones_valid"""


def decide(
    session: Session,
    target: Target,
    *,
    channel: Channel,
    at: dt.datetime,
    tenant: Tenant,
    cipher: PersonalDataCipher,
    live: bool = False,
) -> Decision:
    """Apply the tenant's policy in force at ``at`` to one proposed attempt (reads only).

    ``live`` counts every attempt on record, whatever its time: a live attempt is decided
    after the lock, so anything recorded is earlier, even if another server's clock ran
    ahead. A replay or a simulation counts only what happened up to ``at``.
    """
    policy = _policy_of(target, tenant=tenant, at=at)
    zones, source = debtor_zone(
        target, channel=channel, tenant_timezone=tenant.timezone, cipher=cipher
    )
    blocks = _blocks(session, target, channel=channel, at=at, zones=zones, policy=policy, live=live)
    return _decision(at, channel, zones=zones, source=source, policy=policy, blocks=blocks)


def _policy_of(target: Target, *, tenant: Tenant, at: dt.datetime) -> PolicyInForce:
    return PolicyInForce.of(
        jurisdiction=tenant.jurisdiction.value,
        at=at,
        pack=target.policy_pack,
        overrides=target.policy_overrides,
        version_id=target.policy_id,
    )


def _decision(
    at: dt.datetime,
    channel: Channel,
    *,
    zones: tuple[str, ...],
    source: str,
    policy: PolicyInForce,
    blocks: list[Block],
) -> Decision:
    """The decision of ``blocks``: allowed when there are none, else the next instant
    every one of them has lifted (inside the window of every candidate zone)."""
    rules = policy.rules
    next_at: dt.datetime | None = None
    if blocks and all(b.until is not None for b in blocks):
        latest = max(b.until for b in blocks if b.until is not None)
        next_at = (
            latest
            if channel in WINDOW_EXEMPT
            else all_windows_open(latest, zones, rules.window_start, rules.window_end)
        )
    return Decision(
        at=at,
        timezone=_outside_window(at, zones, channel, rules) or zones[0],
        zone_source=source,
        pack_version=policy.pack.version,
        policy_id=policy.version_id,
        blocks=tuple(blocks),
        next_allowed_at=next_at,
        timezones=zones,
    )


def _outside_window(
    at: dt.datetime, zones: tuple[str, ...], channel: Channel, rules: Any
) -> str | None:
    """The first candidate zone whose local clock is outside the window at ``at``."""
    if channel in WINDOW_EXEMPT:
        return None
    return next(
        (z for z in zones if not in_window(at, z, rules.window_start, rules.window_end)), None
    )


def _blocks(
    session: Session,
    target: Target,
    *,
    channel: Channel,
    at: dt.datetime,
    zones: tuple[str, ...],
    policy: PolicyInForce,
    live: bool,
) -> list[Block]:
    blocks = _uncounted_blocks(target, channel=channel, at=at, zones=zones, policy=policy)
    if channel is Channel.CALL_OUT or target.third_party:
        blocks += _counted_blocks(session, target, channel=channel, at=at, zones=zones,
                                  policy=policy, live=live)  # fmt: skip
    return blocks


def _uncounted_blocks(
    target: Target,
    *,
    channel: Channel,
    at: dt.datetime,
    zones: tuple[str, ...],
    policy: PolicyInForce,
) -> list[Block]:
    """The flags, marks and the contact window: what the gate decides without counting."""
    blocks = _standing_blocks(target)
    rules = policy.rules
    p = policy.pack.pack.lower()
    outside = _outside_window(at, zones, channel, rules)
    if outside is not None:
        local = at.astimezone(zone(outside))
        where = (
            "the debtor's local time"
            if len(zones) == 1
            else f"every one of the {len(zones)} zones the debtor's number may be in"
        )
        blocks.append(
            Block(
                f"{p}.contact_window",
                f"Outside the contact window {rules.window_start:%H:%M}-{rules.window_end:%H:%M}"
                f" in {where} (now {local:%H:%M} {outside}).",
                all_windows_open(at, zones, rules.window_start, rules.window_end),
            )
        )
    return blocks


def _standing_blocks(target: Target) -> list[Block]:
    """Flags and marks that stop all outreach until someone clears them."""
    blocks: list[Block] = []
    for flag in target.flags:
        if flag in STOP_FLAGS:
            blocks.append(Block(f"flag.{flag}", f"No contact: {STOP_FLAGS[flag]}.", None))
    if target.case_status in CLOSED_STATES:
        blocks.append(Block("case.closed", f"No contact: the case is {target.case_status}.", None))
    elif target.case_status == "on_hold":
        blocks.append(Block("case.on_hold", "No contact: the case is on hold.", None))
    if target.debtor_do_not_contact:
        blocks.append(Block("debtor.do_not_contact", "The debtor is marked do-not-contact.", None))
    if target.contact_do_not_contact:
        blocks.append(
            Block("contact.do_not_contact", "This contact is marked do-not-contact.", None)
        )
    return blocks


def _counted_blocks(
    session: Session,
    target: Target,
    *,
    channel: Channel,
    at: dt.datetime,
    zones: tuple[str, ...],
    policy: PolicyInForce,
    live: bool,
) -> list[Block]:
    """The caps and third-party rules, from one statement of indexed counts."""
    request = _count_request(target, channel=channel, at=at, zones=zones, policy=policy, live=live)
    if not request.parts:
        return request.blocks
    counts = (
        session.execute(_count_statement(_schema(session), tuple(request.parts)), request.params)
        .mappings()
        .one()
    )
    return request.blocks + _read_counts(
        counts, target, rules=policy.rules, p=policy.pack.pack.lower(), day_end=request.day_end
    )


@dataclass
class _CountRequest:
    """The counts one attempt's caps need: the statement's parts and their values, and
    what is decided without counting (a cap of zero)."""

    blocks: list[Block]
    parts: list[str]
    params: dict[str, Any]
    day_end: dt.datetime


def _count_request(
    target: Target,
    *,
    channel: Channel,
    at: dt.datetime,
    zones: tuple[str, ...],
    policy: PolicyInForce,
    live: bool,
) -> _CountRequest:
    rules = policy.rules
    p = policy.pack.pack.lower()
    blocks: list[Block] = []
    day_start, day_end = local_days(at, zones)
    parts: list[str] = []
    params: dict[str, Any] = {
        "debtor_id": target.debtor_id,
        "case_id": target.case_id,
        "contact_id": target.contact_id,
        "at": _FAR_FUTURE if live else at,
        "day_start": day_start,
        "day_end": day_end,
    }
    is_call = channel is Channel.CALL_OUT
    own = not target.third_party
    if is_call and own and rules.max_connected_calls_per_day is not None:
        parts.append(_CONNECTED_TODAY)
    if is_call and rules.max_unanswered_calls_per_number_per_day is not None:
        parts.append(_UNANSWERED_TODAY)
        params["contact_index"] = target.contact_index
    if is_call and own and rules.max_call_attempts_in_7_days is not None:
        if rules.max_call_attempts_in_7_days == 0:
            blocks.append(
                Block(f"{p}.call_attempts_in_7_days", "The policy allows no calls.", None)
            )
        else:
            parts.append(_CAPPED_CALL)
            params["week_ago"] = at - dt.timedelta(days=7)
            params["calls_offset"] = rules.max_call_attempts_in_7_days - 1
    if is_call and own and rules.quiet_days_after_conversation:
        parts.append(_LAST_CONVERSATION)
        params["quiet_since"] = at - dt.timedelta(days=rules.quiet_days_after_conversation)
    if target.third_party:
        parts += [_REFUSED, _FAILED_RUN, _OWN_PHONES, _OWN_PHONES_VALID]
        params["failures"] = rules.third_party_after_failures
        params["relation"] = target.relation
        params["contact_name"] = (target.contact_name or "").strip().lower() or None
    return _CountRequest(blocks, parts, params, day_end)


def _read_counts(
    counts: Any, target: Target, *, rules: Any, p: str, day_end: dt.datetime
) -> list[Block]:
    blocks: list[Block] = []
    if "connected_today" in counts:
        cap = rules.max_connected_calls_per_day
        if cap is not None and counts["connected_today"] >= cap:
            blocks.append(
                Block(
                    f"{p}.connected_calls_per_day",
                    f"The debtor has had {cap} connected calls today (all agencies);"
                    " no more until tomorrow.",
                    day_end,
                )
            )
    if "unanswered_today" in counts:
        cap = rules.max_unanswered_calls_per_number_per_day
        if cap is not None and counts["unanswered_today"] >= cap:
            blocks.append(
                Block(
                    f"{p}.unanswered_calls_per_number",
                    f"This number has had {cap} unanswered calls today; no more until tomorrow.",
                    day_end,
                )
            )
    if counts.get("capped_call") is not None:
        blocks.append(
            Block(
                f"{p}.call_attempts_in_7_days",
                f"{rules.max_call_attempts_in_7_days} calls about this debt in the last 7 days.",
                counts["capped_call"] + dt.timedelta(days=7),
            )
        )
    if counts.get("last_conversation") is not None:
        quiet = rules.quiet_days_after_conversation or 0
        blocks.append(
            Block(
                f"{p}.quiet_after_conversation",
                f"A telephone conversation about this debt took place in the last {quiet} days"
                " (a call whose outcome is not recorded yet counts as one).",
                counts["last_conversation"] + dt.timedelta(days=quiet),
            )
        )
    if target.third_party:
        # A refusal binds the person, not only the number they refused on. Contacts carry
        # a relation and a name, so a named third party is every contact of the debtor's
        # with the same relation and name (trimmed, any case); an unnamed one is only the
        # contact that refused, since nothing ties it to any other.
        if counts["refusals"]:
            blocks.append(
                Block("third_party.refused", "This third party refused further contact.", None)
            )
        # Every own number proven wrong only means something if there is one: a debtor
        # with no phone of their own is not unreachable by that half of the rule.
        all_wrong = counts["own_phones"] > 0 and counts["own_phones_valid"] == 0
        unreachable = bool(counts["failed_run"]) or all_wrong
        if not unreachable:
            blocks.append(
                Block(
                    "third_party.debtor_reachable",
                    "Third parties only once the debtor is unreachable (every own number"
                    f" wrong, or {rules.third_party_after_failures} failed attempts in a row).",
                    None,
                )
            )
    return blocks


# --- previews: every contact point's verdict for a screen, recording nothing --------------

#: The attempt a contact point is previewed for: a phone is called, an e-mail address
#: written to, an address sent a letter.
PREVIEW_CHANNELS = {"phone": Channel.CALL_OUT, "email": Channel.EMAIL, "address": Channel.LETTER}

# The room under the 7-day cap: the calls about the debt in the last 7 days (the gate
# itself reads only the cap-th newest, which says when the next one is allowed).
_CALLS_IN_7_DAYS = """(SELECT count(*) FROM {s}.contact_attempts
    WHERE case_id = :case_id AND attempted_at > :week_ago AND attempted_at <= :at
      AND status <> 'blocked' AND channel = 'call_out' AND NOT third_party)
    AS calls_in_7_days"""
_BIND = re.compile(r"(?<![:\w]):(\w+)")
_ALIAS = re.compile(r"\s+AS\s+(\w+)\s*$")


@dataclass(frozen=True)
class ContactPreview:
    """What the gate would answer for an attempt on one contact point now, and the room
    left under the call caps (None: no such cap binds this contact point)."""

    contact_id: int
    channel: Channel
    decision: Decision
    #: Calls left today under the tightest daily cap (a pending call counts against each).
    calls_left_today: int | None = None
    daily_cap: int | None = None
    calls_left_in_7_days: int | None = None
    weekly_cap: int | None = None


@dataclass(frozen=True)
class CasePreview:
    """Every contact point of a case's debtor, previewed under the rules in force."""

    at: dt.datetime
    #: The merged rules in force (None when the debtor has no contact point at all).
    rules: Rules | None
    contacts: dict[int, ContactPreview]


@lru_cache(maxsize=1024)
def _preview_statement(s: str) -> Any:
    """Every contact of the case's debtor with the case, debtor and policy in force, in
    ``_load_statement``'s columns (built once per schema)."""
    return text(
        f"""SELECT c.id, c.status::text, c.flags, d.id, d.do_not_contact, d.timezone,
                   d.region, k.id, k.kind::text, k.relation, k.do_not_contact,
                   k.value_ciphertext, p.id, p.pack, p.overrides, k.name, k.value_index
            FROM {s}.cases c
            JOIN {s}.debtors d ON d.id = c.debtor_id
            JOIN {s}.contacts k ON k.debtor_id = d.id
            LEFT JOIN LATERAL (
                SELECT id, pack, overrides FROM {s}.compliance_policies
                WHERE effective_from <= :at
                ORDER BY effective_from DESC, id DESC LIMIT 1) p ON true
            WHERE c.id = :case_id
            ORDER BY k.id"""
    )


def _numbered(part: str, n: int) -> str:
    """A count part with its values and its column suffixed ``_n``, so the parts of
    several contact points share one statement."""
    bound = _BIND.sub(lambda m: f":{m.group(1)}_{n}", part)
    return _ALIAS.sub(lambda m: f" AS {m.group(1)}_{n}", bound)


def _alias(part: str) -> str:
    found = _ALIAS.search(part)
    assert found is not None  # every count part ends with its column's name
    return found.group(1)


def preview_contacts(
    session: Session,
    cipher: PersonalDataCipher,
    *,
    tenant: Tenant,
    case_id: int,
    at: dt.datetime | None = None,
) -> CasePreview:
    """The gate's verdict on every contact point of the case's debtor now (a call for a
    phone, an e-mail, a letter), with the calls left under the caps: two statements
    whatever the number of contact points, no lock taken, nothing recorded.

    The caller has checked that the case is within reach. A preview is advice for a
    screen: another attempt may land between it and a click, and the click is decided by
    ``attempt_contact`` under the debtor's lock.
    """
    when = at or utcnow()
    live = at is None
    schema = _schema(session)
    rows = session.execute(_preview_statement(schema), {"case_id": case_id, "at": when}).all()
    prepared: list[tuple[Any, ...]] = []
    parts: list[str] = []
    params: dict[str, Any] = {}
    rules: Rules | None = None
    for n, row in enumerate(rows):
        target = _target(row)
        channel = PREVIEW_CHANNELS[target.contact_kind]
        policy = _policy_of(target, tenant=tenant, at=when)
        rules = policy.rules
        zones, source = debtor_zone(
            target, channel=channel, tenant_timezone=tenant.timezone, cipher=cipher
        )
        blocks = _uncounted_blocks(target, channel=channel, at=when, zones=zones, policy=policy)
        request: _CountRequest | None = None
        if channel is Channel.CALL_OUT or target.third_party:
            request = _count_request(
                target, channel=channel, at=when, zones=zones, policy=policy, live=live
            )
            if (
                channel is Channel.CALL_OUT
                and not target.third_party
                and (policy.rules.max_call_attempts_in_7_days)
            ):
                request.parts.append(_CALLS_IN_7_DAYS)
                request.params["week_ago"] = when - dt.timedelta(days=7)
            parts += [_numbered(part, n) for part in request.parts]
            params.update({f"{key}_{n}": value for key, value in request.params.items()})
        prepared.append((target, channel, policy, zones, source, blocks, request))
    row_counts: Any = {}
    if parts:
        statement = _count_statement(schema, tuple(parts))
        row_counts = session.execute(statement, params).mappings().one()
    contacts: dict[int, ContactPreview] = {}
    for n, (target, channel, policy, zones, source, uncounted, request) in enumerate(prepared):
        counts: dict[str, Any] = {}
        blocks = uncounted
        if request is not None:
            counts = {_alias(part): row_counts[f"{_alias(part)}_{n}"] for part in request.parts}
            blocks = [
                *uncounted,
                *request.blocks,
                *_read_counts(
                    counts,
                    target,
                    rules=policy.rules,
                    p=policy.pack.pack.lower(),
                    day_end=request.day_end,
                ),
            ]
        decision = _decision(
            when, channel, zones=zones, source=source, policy=policy, blocks=blocks
        )
        contacts[target.contact_id] = _with_room(
            ContactPreview(target.contact_id, channel, decision), counts, policy.rules, target
        )
    return CasePreview(at=when, rules=rules, contacts=contacts)


def _with_room(
    preview: ContactPreview, counts: dict[str, Any], rules: Rules, target: Target
) -> ContactPreview:
    """The calls left today (the tightest daily cap) and in 7 days, from the counts."""
    daily: list[tuple[int, int]] = []
    if "connected_today" in counts and rules.max_connected_calls_per_day is not None:
        daily.append((rules.max_connected_calls_per_day, int(counts["connected_today"])))
    if "unanswered_today" in counts and rules.max_unanswered_calls_per_number_per_day is not None:
        cap = rules.max_unanswered_calls_per_number_per_day
        daily.append((cap, int(counts["unanswered_today"])))
    left_today = daily_cap = None
    if daily:
        daily_cap, used = min(daily, key=lambda pair: pair[0] - pair[1])
        left_today = max(daily_cap - used, 0)
    left_week = weekly_cap = None
    if (
        preview.channel is Channel.CALL_OUT
        and not target.third_party
        and rules.max_call_attempts_in_7_days is not None
    ):
        weekly_cap = rules.max_call_attempts_in_7_days
        left_week = max(weekly_cap - int(counts.get("calls_in_7_days", 0)), 0)
    return ContactPreview(
        preview.contact_id,
        preview.channel,
        preview.decision,
        calls_left_today=left_today,
        daily_cap=daily_cap,
        calls_left_in_7_days=left_week,
        weekly_cap=weekly_cap,
    )


def check_contact(
    session: Session,
    cipher: PersonalDataCipher,
    *,
    tenant: Tenant,
    case_id: int,
    contact_id: int,
    channel: Channel,
    agency_id: int | None = None,
    collector_id: int | None = None,
    at: dt.datetime | None = None,
) -> Decision | None:
    """The gate's decision for an attempt, under the debtor's lock, recording nothing
    (a dialler asking before it dials; the caller's transaction ends the lock)."""
    when = at or utcnow()
    target = load_target(
        session,
        case_id=case_id,
        contact_id=contact_id,
        at=when,
        agency_id=agency_id,
        collector_id=collector_id,
        lock=True,
    )
    if target is None:
        return None
    check_contact_kind(target, channel)
    return decide(
        session,
        target,
        channel=channel,
        at=when,
        tenant=tenant,
        cipher=cipher,
        live=at is None,
    )


def check_contact_kind(target: Target, channel: Channel) -> None:
    """A call or a text needs a phone, an email an email address, a letter an address."""
    if target.contact_kind != CHANNEL_CONTACT_KIND[channel]:
        raise GateError(
            f"a {channel.value} attempt needs a {CHANNEL_CONTACT_KIND[channel]} contact,"
            f" not a {target.contact_kind}"
        )


def _check_request(target: Target, channel: Channel, template: MessageTemplate | None) -> None:
    check_contact_kind(target, channel)
    if template is not None:
        if template.channel != channel.value:
            raise GateError(f"template {template.name!r} is for {template.channel}")
        if target.third_party and template.audience != "third_party":
            raise GateError("a message to a third party needs a third-party template")
    elif target.third_party and channel in MESSAGE_CHANNELS:
        raise GateError("a message to a third party needs a third-party template")


def attempt_contact(
    session: Session,
    objects: Platform,
    *,
    tenant: Tenant,
    case_id: int,
    contact_id: int,
    channel: Channel,
    actor: Actor,
    template_id: int | None = None,
    notes: str | None = None,
    at: dt.datetime | None = None,
) -> ContactAttempt | None:
    """Pass one attempt through the gate and record it, pending or blocked.

    Returns None if the case or contact is not there (or not the agency's to work).
    Inbound calls are the debtor's own doing: they are recorded, never blocked.
    ``at`` is for replays and tests. A live attempt (no ``at``) counts every attempt on
    record: under the debtor's lock, whatever is recorded came first, whatever the clocks
    of the servers that recorded it said.
    """
    when = at or utcnow()
    template = session.get(MessageTemplate, template_id) if template_id is not None else None
    if template_id is not None and template is None:
        raise GateError(f"no message template {template_id}")
    target = load_target(
        session,
        case_id=case_id,
        contact_id=contact_id,
        at=when,
        agency_id=actor.agency_id,
        collector_id=actor.collector_id,
        lock=True,
    )
    if target is None:
        return None
    _check_request(target, channel, template)
    if channel is Channel.CALL_IN:
        zones, _ = debtor_zone(
            target, channel=channel, tenant_timezone=tenant.timezone, cipher=objects.cipher
        )
        pack = PolicyInForce.of(
            jurisdiction=tenant.jurisdiction.value,
            at=when,
            pack=target.policy_pack,
            overrides=target.policy_overrides,
            version_id=target.policy_id,
        )
        decision = Decision(
            at=when,
            timezone=zones[0],
            zone_source="",
            pack_version=pack.pack.version,
            policy_id=pack.version_id,
            timezones=zones,
        )
    else:
        decision = decide(
            session,
            target,
            channel=channel,
            at=when,
            tenant=tenant,
            cipher=objects.cipher,
            live=at is None,
        )
    attempt = ContactAttempt(
        case_id=target.case_id,
        debtor_id=target.debtor_id,
        contact_id=target.contact_id,
        third_party=target.third_party,
        channel=channel.value,
        status=AttemptStatus.PENDING.value if decision.allowed else AttemptStatus.BLOCKED.value,
        attempted_at=when,
        actor_kind=actor.kind,
        agency_id=actor.agency_id,
        user_id=actor.user_id,
        client_id=actor.client_id,
        template_id=template.id if template is not None else None,
        pack_version=decision.pack_version,
        policy_id=decision.policy_id,
        local_timezone=decision.timezone,
        blocked_rule=decision.rule,
        block_message=decision.message,
        next_allowed_at=decision.next_allowed_at,
        notes=notes,
    )
    session.add(attempt)
    session.flush()  # the caller answers with the attempt's id
    # Last, after the decision: the audit append holds the tenant's chain lock to commit.
    record_event(
        session,
        action="contact.attempt" if decision.allowed else "contact.blocked",
        actor=actor.audit_label,
        subject=("case", target.case_id),
        data={
            "attempt_id": attempt.id,
            "contact_id": target.contact_id,
            "channel": channel.value,
            "third_party": target.third_party,
            "agency_id": actor.agency_id,
            "pack_version": decision.pack_version,
            "policy_id": decision.policy_id,
            "timezone": decision.timezone,
            "rule": decision.rule,
            "rules": [b.rule for b in decision.blocks],
            "next_allowed_at": (
                decision.next_allowed_at.isoformat() if decision.next_allowed_at else None
            ),
        },
    )
    if not decision.allowed:
        rule = decision.rule or ""
        # Counted once the block is on record, never for a transaction that rolled back.
        after_commit(session, lambda: record_compliance_block(rule, objects=objects))
    return attempt
