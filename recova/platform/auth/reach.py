"""Which cases a principal may reach, and through them which debtors and case objects.

One rule for every route that takes a case, debtor, contact, attempt, promise, plan,
settlement or dispute id (the ``@access`` rule has already checked role, scope and tenant):

- the tenant's own staff, its API clients and platform admins reach every case of the
  tenant the request resolved;
- an agency manager reaches the cases placed with their agency now (a placement that was
  not recalled);
- a collector reaches, of those, only the cases assigned to them now (an open assignment
  on that placement).

A debtor is reached through a reachable case of theirs; a contact, attempt, promise, plan,
settlement or dispute through its case. Anything out of reach answers 404, exactly like
something that does not exist, so a colleague's or another agency's ids leak nothing.
The compliance gate loads its target under the same rule in its own SQL
(``recova.platform.compliance.gate``), and the work queue lists exactly these cases.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, exists, false, select, true
from sqlalchemy.orm import Session, aliased

from recova.platform.allocation.models import Assignment, Placement
from recova.platform.auth.models import AGENCY_ROLES, TENANT_ROLES, Role
from recova.platform.auth.principal import Principal
from recova.platform.cases.models import Case, Debtor
from recova.platform.kernel.errors import abort


def reaches_every_case(principal: Principal) -> bool:
    """True for the tenant's side (its staff, its clients) and platform admins."""
    return principal.is_client or principal.is_platform_admin or principal.role in TENANT_ROLES


def case_reach(principal: Principal, case_id: Any) -> ColumnElement[bool]:
    """A SQL condition: the case whose id is ``case_id`` (a column) is within reach."""
    if reaches_every_case(principal):
        return true()
    if principal.role not in AGENCY_ROLES or principal.agency_id is None:
        return false()
    # Aliased, so the condition never correlates with the query it is added to.
    placement = aliased(Placement)
    placed = select(placement.id).where(
        placement.case_id == case_id,
        placement.agency_id == principal.agency_id,
        placement.recalled_on.is_(None),
    )
    if principal.role is Role.COLLECTOR:
        assignment = aliased(Assignment)
        placed = placed.join(assignment, assignment.placement_id == placement.id).where(
            assignment.collector_id == principal.subject_id, assignment.ended_at.is_(None)
        )
    return exists(placed)


def debtor_reach(principal: Principal, debtor_id: Any) -> ColumnElement[bool]:
    """A SQL condition: the debtor whose id is ``debtor_id`` has a case within reach."""
    if reaches_every_case(principal):
        return true()
    case = aliased(Case)
    return exists(
        select(case.id).where(case.debtor_id == debtor_id, case_reach(principal, case.id))
    )


def within_case_reach(statement: Select[Any], principal: Principal, case_id: Any) -> Select[Any]:
    """``statement`` keeping only rows whose case (``case_id``, a column) is within reach."""
    return statement.where(case_reach(principal, case_id))


def reachable_case_or_404(
    session: Session, principal: Principal, case_id: int, statement: Select[Any] | None = None
) -> Case:
    """The case (loaded by ``statement``, default plain) if within reach, else abort 404."""
    query = statement if statement is not None else select(Case)
    found = session.scalar(within_case_reach(query.where(Case.id == case_id), principal, Case.id))
    if found is None:
        abort(404, message=f"no case {case_id}")
    return found


def may_reach_debtor(session: Session, principal: Principal, debtor_id: int) -> bool:
    """True if the debtor exists and has a case within reach."""
    statement = select(Debtor.id).where(Debtor.id == debtor_id, debtor_reach(principal, Debtor.id))
    return session.scalar(statement) is not None


def reachable_debtor_or_404(
    session: Session, principal: Principal, debtor_id: int, statement: Select[Any] | None = None
) -> Debtor:
    """The debtor (loaded by ``statement``, default plain) if within reach, else abort 404."""
    query = statement if statement is not None else select(Debtor)
    found = session.scalar(query.where(Debtor.id == debtor_id, debtor_reach(principal, Debtor.id)))
    if found is None:
        abort(404, message=f"no debtor {debtor_id}")
    return found
