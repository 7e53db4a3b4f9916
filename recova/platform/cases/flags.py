"""Setting or clearing one flag of a case, as the tenant's staff do from the case page.

The case flags (dispute, bankruptcy, deceased, cease-contact) go through allocation's
``set_case_flags``, the service the flags API calls: a flagged case placed with an agency
is recalled at once. Do-not-contact is the debtor's mark (``contact.set_do_not_contact``,
as the do-not-contact API sets it); the compliance gate stops all outreach on either.

Each change is noted for the tenant's audit chain (``case.flags_changed``), which is also
where the case's timeline reads flag changes from.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from recova.platform.allocation.models import Placement
from recova.platform.allocation.placement import set_case_flags
from recova.platform.auth.principal import Principal
from recova.platform.cases.models import CASE_FLAGS, Case, Debtor
from recova.platform.contact.services import set_do_not_contact
from recova.platform.kernel.errors import DomainError
from recova.platform.work.events import note_event
from recova.platform.work.models import Dispute, DisputeStatus

DO_NOT_CONTACT = "do_not_contact"
#: Every flag the case page sets or clears.
FLAGS = (*CASE_FLAGS, DO_NOT_CONTACT)


class FlagRefused(DomainError):
    """A flag change that cannot be made (422); the message says why."""


def has_flag(session: Session, case: Case, flag: str) -> bool:
    """Whether ``flag`` is set on the case (do-not-contact: on its debtor)."""
    if flag == DO_NOT_CONTACT:
        debtor = session.get(Debtor, case.debtor_id)
        return bool(debtor is not None and debtor.do_not_contact)
    return flag in (case.flags or ())


def change_case_flag(
    session: Session,
    *,
    case: Case,
    flag: str,
    value: bool,
    actor: Principal,
    today: dt.date,
) -> Placement | None:
    """Set (``value``) or clear one flag; returns the placement a new flag recalled, if any.

    Refused: an unknown flag, a change that changes nothing, and clearing the dispute flag
    while a dispute is open (its resolution clears it).
    """
    if flag not in FLAGS:
        raise FlagRefused(f"unknown flag {flag!r}; one of {', '.join(FLAGS)}")
    if has_flag(session, case, flag) == value:
        state = "already has" if value else "does not have"
        raise FlagRefused(f"case {case.id} {state} the {flag} flag")
    recalled: Placement | None = None
    if flag == DO_NOT_CONTACT:
        set_do_not_contact(session, debtor_id=case.debtor_id, contact_id=None, value=value)
    else:
        if flag == "dispute" and not value:
            open_dispute = session.scalar(
                select(Dispute.id).where(
                    Dispute.case_id == case.id, Dispute.status == DisputeStatus.OPEN
                )
            )
            if open_dispute is not None:
                raise FlagRefused(
                    f"case {case.id} has an open dispute ({open_dispute}): "
                    "record its resolution, which clears the flag"
                )
        flags = set(case.flags or ())
        flags = flags | {flag} if value else flags - {flag}
        recalled = set_case_flags(session, case, sorted(flags), today=today)
    note_event(
        session,
        action="case.flags_changed",
        actor=actor,
        subject=("case", case.id),
        data={
            "flag": flag,
            "set": value,
            "recalled_placement_id": recalled.id if recalled is not None else None,
        },
    )
    return recalled
