"""What every workspace page needs: the signed-in agency user, their agency, a case
within their reach."""

from __future__ import annotations

from typing import Any

from flask import g
from sqlalchemy import Select

from recova.platform.agencies.models import Agency
from recova.platform.auth.models import Role
from recova.platform.auth.principal import Principal
from recova.platform.auth.reach import reachable_case_or_404
from recova.platform.cases.models import Case
from recova.platform.kernel.errors import abort
from recova.platform.kernel.request_scope import db_session


def page_principal() -> Principal:
    """The agency user the page's rule let in."""
    principal: Principal = g.page_principal
    return principal


def is_manager() -> bool:
    return page_principal().role is Role.AGENCY_MANAGER


def current_agency() -> Agency:
    """The signed-in user's agency (read once per request)."""
    agency: Agency | None = g.get("agency")
    if agency is None:
        agency_id = page_principal().agency_id
        agency = db_session().get(Agency, agency_id) if agency_id is not None else None
        if agency is None:
            abort(404, message="no agency")
        g.agency = agency
    return agency


def reachable_case(case_id: int, statement: Select[Any] | None = None) -> Case:
    """The case of the page's tenant if the user may work it (a collector: assigned to
    them now; a manager: placed with their agency now), else 404 as if it did not exist."""
    return reachable_case_or_404(db_session(), page_principal(), case_id, statement)
