"""The agency manager's team today: each collector's day across every tenant the agency
serves, and the agency's book per tenant and bucket.

The figures come from ``recova.platform.reports.team``: the collectors' day is read live
(each tenant by its own statement on its own schema, "today" being each tenant's own
calendar day); the book (inventory and liquidation) reads the agency's whole book in a
tenant, so it comes from a snapshot per tenant that a job keeps, refreshed when it is
missing, stale or of an earlier day. While a tenant's first snapshot is computed, its
panel says so and htmx asks again every few seconds (``team_book``). The pages only
read.
"""

from __future__ import annotations

import datetime as dt

from flask import render_template

from recova.platform.allocation.services import tenants_served
from recova.platform.kernel.extension import platform
from recova.platform.kernel.request_scope import db_session
from recova.platform.reports.jobs import request_agency_book_refresh
from recova.platform.reports.team import (
    BOOK_STALE_AFTER,
    KEPT_WINDOW_DAYS,
    BookSnapshot,
    load_agency_book,
    team_today,
)
from recova.platform.web.pages import manager_page
from recova.platform.web.portal.compliance import block_label
from recova.platform.web.workspace import blp
from recova.platform.web.workspace.frame import current_agency
from recova.tenants.models import Tenant, tenant_today


def _books(tenants: list[Tenant], agency_id: int) -> dict[str, BookSnapshot | None]:
    """Each served tenant's book snapshot (None: being computed); a missing, stale or
    yesterday's one is refreshed in the background (one pending job per tenant)."""
    objects = platform()
    now = dt.datetime.now(dt.UTC)
    books: dict[str, BookSnapshot | None] = {}
    for tenant in tenants:
        snapshot = load_agency_book(objects, tenant_id=tenant.id, agency_id=agency_id)
        if snapshot is None or snapshot.is_stale(now=now, today=tenant_today(tenant.timezone)):
            request_agency_book_refresh(objects, tenant_id=tenant.id, agency_id=agency_id)
        books[tenant.slug] = snapshot
    return books


def _book_context(tenants: list[Tenant], agency_id: int) -> dict[str, object]:
    books = _books(tenants, agency_id)
    return {
        "book_tenants": tenants,
        "books": books,
        "computing": any(snapshot is None for snapshot in books.values()),
        "stale_minutes": int(BOOK_STALE_AFTER.total_seconds() // 60),
    }


@blp.get("/team", endpoint="team")
@manager_page
def team_page() -> str:
    """Per collector: assigned, worked, attempts, right-party contacts, promises, kept rate,
    collected and blocked attempts today; per tenant and bucket: inventory and liquidation."""
    session = db_session()
    agency = current_agency()
    tenants = tenants_served(session, agency.id)
    team = team_today(session, agency_id=agency.id, tenants=tenants)
    return render_template(
        "work/team/index.html",
        team=team,
        total=team.total,
        block_label=block_label,
        kept_window=KEPT_WINDOW_DAYS,
        **_book_context(tenants, agency.id),
    )


@blp.get("/team/book", endpoint="team_book")
@manager_page
def team_book() -> str:
    """The inventory and liquidation panel alone (htmx polls it while a tenant's figures
    are being computed)."""
    agency = current_agency()
    tenants = tenants_served(db_session(), agency.id)
    return render_template("work/team/_book.html", **_book_context(tenants, agency.id))
