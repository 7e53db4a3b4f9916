"""Revealing one unmasked identifier: who may, why, how often, and the audit trail.

Everyone sees national ids and phone numbers masked (``138****5678``), and agency staff
see names masked too (``cases.display``). Seeing one in full is an act with a reason: the
caller names the field and a reason, the reveal is rate-limited per user and tenant (the
``limits`` library's moving window in Redis, so every web replica counts together), and
it is recorded (``personal_data_reveals``, with the reason) and audited (the chain holds
a keyed digest of the reason, not the text, because retention must be able to erase what
people typed) in the same transaction that returns the value.

Who may reveal:
- tenant admins, for any debtor of their tenant, and the tenant's API clients with the
  ``privacy:reveal`` scope (the data is the tenant's own);
- agency managers, for debtors with a case placed (and not recalled) with their agency;
- collectors, for debtors with a case currently assigned to them.
Analysts and platform admins work on aggregates and never need the plaintext.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from limits import RateLimitItemPerHour
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter
from redis import Redis
from sqlalchemy.orm import Session

from recova.platform.audit import record_event
from recova.platform.audit.services import AuditDataError, actor_label, check_data
from recova.platform.auth.models import Role
from recova.platform.auth.principal import Principal
from recova.platform.auth.reach import may_reach_debtor
from recova.platform.cases.models import Contact, ContactKind, Debtor
from recova.platform.kernel.crypto import PersonalDataCipher
from recova.platform.kernel.errors import DomainError
from recova.platform.kernel.extension import Platform
from recova.platform.privacy.models import PersonalDataReveal
from recova.platform.privacy.settings import current_settings

#: Keyed digests of reveal reasons: the chain proves the reason without holding it.
REASON_CONTEXT = "audit.reveal_reason"
REVEAL_ROLES = frozenset({Role.TENANT_ADMIN, Role.AGENCY_MANAGER, Role.COLLECTOR})
FIELDS = ("national_id", "contact", "name")


class RevealError(DomainError):
    """A reveal that is refused; ``status`` is the HTTP status to answer with (a rate
    limit's answer says when to retry)."""

    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after

    @property
    def error_message(self) -> str:
        return self.message

    @property
    def error_headers(self) -> dict[str, str] | None:
        return {"Retry-After": str(self.retry_after)} if self.retry_after else None


@dataclass(frozen=True)
class Revealed:
    debtor_id: int
    field: str
    contact_id: int | None
    value: str
    reveals_left: int


def _may_see_debtor(session: Session, principal: Principal, debtor_id: int) -> bool:
    """The one reach rule (``recova.platform.auth.reach``), for the roles that may reveal."""
    if not principal.is_client and principal.role not in REVEAL_ROLES:
        return False
    return may_reach_debtor(session, principal, debtor_id)


def reveal(
    session: Session,
    *,
    objects: Platform,
    tenant_id: int,
    principal: Principal,
    debtor_id: int,
    field: str,
    reason: str,
    contact_id: int | None = None,
) -> Revealed:
    """Decrypt one identifier for ``principal``, or raise ``RevealError`` saying why not."""
    if not principal.is_client and principal.role not in REVEAL_ROLES:
        raise RevealError(
            403, "revealing personal data needs the tenant admin, agency manager or collector role"
        )
    if field not in FIELDS:
        raise RevealError(422, f"field must be one of {', '.join(FIELDS)}")
    reason = reason.strip()
    if len(reason) < 10 or len(reason) > 500:
        raise RevealError(422, "state the reason for the reveal in 10 to 500 characters")
    try:
        check_data({"reason": reason})
    except AuditDataError as error:
        raise RevealError(422, "the reason must not quote a phone or ID number") from error
    debtor = session.get(Debtor, debtor_id)
    # A debtor out of the caller's reach answers exactly like one that does not exist.
    if debtor is None or not _may_see_debtor(session, principal, debtor_id):
        raise RevealError(404, f"no debtor {debtor_id}")
    if debtor.erased_at is not None:
        raise RevealError(410, "this debtor's personal data was erased at the end of retention")

    value = _decrypt(session, objects.cipher, debtor, field, contact_id)
    left = _spend_one_reveal(
        session, objects.redis, objects.settings.queue_prefix, tenant_id, principal
    )
    stored = PersonalDataReveal(
        debtor_id=debtor_id,
        field=field,
        contact_id=contact_id,
        reason=reason,
        revealed_by=actor_label(principal),
    )
    session.add(stored)
    session.flush()
    record_event(
        session,
        action="personal_data.revealed",
        actor=principal,
        subject=("debtor", debtor_id),
        data={
            "reveal_id": stored.id,
            "field": field,
            "contact_id": contact_id,
            "reason_digest": objects.cipher.blind_index(reason, context=REASON_CONTEXT).hex(),
        },
    )
    return Revealed(debtor_id, field, contact_id, value, left)


def _decrypt(
    session: Session,
    cipher: PersonalDataCipher,
    debtor: Debtor,
    field: str,
    contact_id: int | None,
) -> str:
    if field == "name":
        # Agency staff see names masked (``cases.display``); the name is not encrypted.
        if contact_id is not None:
            raise RevealError(422, "contact_id only goes with field 'contact'")
        return debtor.full_name
    if field == "national_id":
        if contact_id is not None:
            raise RevealError(422, "contact_id only goes with field 'contact'")
        if debtor.national_id_ciphertext is None:
            raise RevealError(404, "the tenant sent no national id for this debtor")
        return cipher.decrypt(debtor.national_id_ciphertext, context="debtor.national_id")
    if contact_id is None:
        raise RevealError(422, "name the contact_id to reveal")
    contact = session.get(Contact, contact_id)
    if contact is None or contact.debtor_id != debtor.id:
        raise RevealError(404, f"no contact {contact_id} for debtor {debtor.id}")
    if contact.kind is ContactKind.ADDRESS:
        raise RevealError(422, "addresses are not masked; nothing to reveal")
    return cipher.decrypt(contact.value_ciphertext, context=f"contact.{contact.kind.value}")


def _spend_one_reveal(
    session: Session, redis: Redis, prefix: str, tenant_id: int, principal: Principal
) -> int:
    per_hour = current_settings(session).reveals_per_hour
    storage = RedisStorage(
        "redis://",
        connection_pool=redis.connection_pool,
        key_prefix=f"{prefix}recova:reveals",
    )
    limiter = MovingWindowRateLimiter(storage)
    item = RateLimitItemPerHour(per_hour)
    who = (str(tenant_id), principal.kind, str(principal.subject_id))
    if not limiter.hit(item, *who):
        stats = limiter.get_window_stats(item, *who)
        wait = max(1, int(stats.reset_time - dt.datetime.now(dt.UTC).timestamp()) + 1)
        raise RevealError(
            429, f"at most {per_hour} reveals per hour; try again in {wait} s", retry_after=wait
        )
    return limiter.get_window_stats(item, *who).remaining
