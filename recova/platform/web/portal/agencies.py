"""The portal's agencies: how each agency the tenant contracts with performs, month by month.

The landing page (``agencies``) compares every contracted agency side by side for the
month chosen (``?month=2026-05``): placements, the book worked, recovered, liquidation,
right-party-contact rate, promise kept rate, blocked attempts and disputes, and lists the
contracts (active one, period, payout). An agency's page (``agencies_detail``) shows its
scorecard for the month, blocked attempts by rule, its placements and recalls of the
month (keyset pages) and its contract terms: every contract period with the tenant, and
the commission rates its payout share applies to. The figures come from
``recova.platform.reports.agencies``; the pages only read.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from babel.dates import format_skeleton
from flask import current_app, g, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from recova.billing.models import ContractVersion
from recova.platform.agencies.contracts import AgencyContract
from recova.platform.agencies.models import AgencyStatus
from recova.platform.kernel.errors import abort
from recova.platform.kernel.request_scope import db_session
from recova.platform.reports.agencies import (
    agency_placements,
    agency_scorecards,
    contracted_agencies,
    contracted_agency,
    months_offered,
    parse_after,
)
from recova.platform.reports.overview import add_months
from recova.platform.web.i18n import current_locale, number
from recova.platform.web.pages import portal_page
from recova.platform.web.portal import blp
from recova.platform.web.portal.cases import RECALL_REASONS, SYSTEM_RECALL_REASONS
from recova.tenants.models import tenant_today

LISTS = {"placed": _l("Placed in the month"), "recalled": _l("Recalled in the month")}
PAYOUT_LABELS = {
    "share": _l("A share of the commission"),
    "rates": _l("Its own rates by bucket"),
}
STATUS_LABELS = {AgencyStatus.ACTIVE: _l("Active"), AgencyStatus.SUSPENDED: _l("Suspended")}


def month_label(month: dt.date) -> str:
    """A month in the page's language: ``May 2026`` / ``2026年5月``."""
    return format_skeleton("yMMMM", month, locale=current_locale())


def rate(value: Decimal | str | None) -> str:
    """A percentage as stored (``12.5`` -> ``12.5%``), every digit kept."""
    if value is None:
        return "—"
    return f"{number(Decimal(value).normalize())}%"


def chosen_month(today: dt.date) -> dt.date:
    """The month of ``?month=YYYY-MM``; the current month when absent or unreadable."""
    raw = request.args.get("month", "")
    try:
        year, month = (int(part) for part in raw.split("-", 1))
        return dt.date(year, month, 1)
    except ValueError:
        return today.replace(day=1)


def _context(today: dt.date, month: dt.date) -> dict[str, Any]:
    offered = months_offered(today)
    if month not in offered:
        offered = sorted({*offered, month}, reverse=True)
    previous, following = add_months(month, -1), add_months(month, 1)
    return {
        "month": month,
        "month_param": f"{month:%Y-%m}",
        "months": [(f"{m:%Y-%m}", month_label(m)) for m in offered],
        "previous_month": f"{previous:%Y-%m}",
        "next_month": f"{following:%Y-%m}" if following <= today else None,
        "today": today,
        "month_label": month_label,
        "rate": rate,
        "payout_labels": PAYOUT_LABELS,
        "status_labels": STATUS_LABELS,
    }


def contract_is_active(contract: AgencyContract, today: dt.date) -> bool:
    return contract.starts_on <= today and (contract.ends_on is None or contract.ends_on > today)


@blp.get("/agencies")
@portal_page
def agencies() -> str:
    """Every contracted agency's scorecard for the month, side by side, and its contract."""
    tenant = g.tenant
    session = db_session()
    today = tenant_today(tenant.timezone)
    month = chosen_month(today)
    rows = contracted_agencies(session, tenant_id=tenant.id, today=today)
    cards = agency_scorecards(
        session,
        agency_ids=[row.agency.id for row in rows],
        month=month,
        timezone=tenant.timezone,
    )
    return render_template(
        "portal/agencies/index.html", rows=rows, cards=cards, **_context(today, month)
    )


@blp.get("/agencies/<int:agency_id>")
@portal_page
def agencies_detail(agency_id: int) -> str:
    """One agency: its scorecard for the month, placements and recalls, contract terms."""
    tenant = g.tenant
    session = db_session()
    today = tenant_today(tenant.timezone)
    found = contracted_agency(session, tenant_id=tenant.id, agency_id=agency_id, today=today)
    if found is None:
        abort(404, message=str(_l("The tenant holds no contract with this agency.")))
    month = chosen_month(today)
    card = agency_scorecards(
        session, agency_ids=[agency_id], month=month, timezone=tenant.timezone
    )[agency_id]
    shown = request.args.get("list", "placed")
    if shown not in LISTS:
        shown = "placed"
    page = agency_placements(
        session,
        agency_id=agency_id,
        month=month,
        recalled=shown == "recalled",
        after=parse_after(request.args.get("after")),
    )
    versions = list(
        session.scalars(
            select(ContractVersion).order_by(
                ContractVersion.currency, ContractVersion.effective_from.desc()
            )
        )
    )
    in_force: dict[str, ContractVersion] = {}
    for version in versions:  # newest first per currency: the first begun is in force
        if version.effective_from <= today and version.currency not in in_force:
            in_force[version.currency] = version
    return render_template(
        "portal/agencies/detail.html",
        found=found,
        card=card,
        page=page,
        shown=shown,
        lists=LISTS,
        is_first_page=request.args.get("after") is None,
        in_force=in_force,
        recall_reasons={**SYSTEM_RECALL_REASONS, **RECALL_REASONS},
        contract_is_active=contract_is_active,
        placement_state=placement_state,
        versions_url=url_for("portal.billing_versions")
        if "portal.billing_versions" in current_app.view_functions
        else None,
        **_context(today, month),
    )


def placement_state(
    recalled_on: dt.date | None, ends_on: dt.date, today: dt.date
) -> tuple[str, str]:
    """A placement's state today, as a badge class and label."""
    if recalled_on is not None:
        return "warn", _("Recalled")
    if ends_on <= today:
        return "", _("Period ended")
    return "good", _("With the agency")
