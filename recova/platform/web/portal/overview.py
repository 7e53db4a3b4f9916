"""The portal's overview: the book at a glance.

Open inventory by bucket, recovered this month against last month, promises due today and
broken this week, and three charts with their numbers: the liquidation curve per placement
month, roll rates between buckets (where the cases of each bucket 30 days ago are today,
from the bucket history allocation keeps), and recoveries by agency. The figures come
from ``recova.platform.reports.overview``, one SQL aggregate each.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from babel.dates import format_skeleton
from babel.numbers import format_decimal
from flask import flash, g, redirect, render_template, url_for
from flask_babel import gettext as _
from markupsafe import Markup
from werkzeug.wrappers import Response

from recova.platform.kernel.extension import platform
from recova.platform.reports.jobs import request_overview_refresh
from recova.platform.reports.overview import Overview
from recova.platform.reports.snapshot import load_snapshot
from recova.platform.web.charts import grouped_bars, line_chart, stacked_bars
from recova.platform.web.i18n import current_locale, percent
from recova.platform.web.pages import portal_page
from recova.platform.web.portal import blp
from recova.tenants.models import tenant_today


def month_label(month: dt.date) -> str:
    """A month in the page's language: ``Mar 2026`` / ``2026年3月``."""
    return format_skeleton("yMMM", month, locale=current_locale())


def whole_amount(value: float) -> str:
    """An axis amount, grouped and without decimals (the table keeps every digit)."""
    return format_decimal(round(value), locale=current_locale())


def _percent(value: float) -> str:
    return percent(value, 0)


def liquidation_chart(book: Overview) -> Markup | None:
    curves = [curve for curve in book.curves if curve.placed > 0]
    if not curves:
        return None
    longest = max(len(curve.points) for curve in curves)
    return line_chart(
        [
            (
                month_label(curve.month),
                [point.ratio for point in curve.points] + [None] * (longest - len(curve.points)),
            )
            for curve in curves
        ],
        x_labels=[str(age) for age in range(longest)],
        x_title=_("Months since placement (0 = the month placed)"),
        y_format=_percent,
        y_title=_("Recovered ÷ placed balance"),
    )


def roll_chart(book: Overview) -> Markup | None:
    if not book.roll_rates:
        return None
    destinations: list[str | None] = [
        name for name in book.buckets if any(row.counts.get(name) for row in book.roll_rates)
    ]
    destinations.append(None)
    return stacked_bars(
        [
            (
                _("Closed") if to is None else to,
                [row.rate(to) for row in book.roll_rates],
            )
            for to in destinations
        ],
        bar_labels=[row.from_bucket for row in book.roll_rates],
        value_format=_percent,
        title=_("Share of the bucket's cases on %(day)s", day=_day(book.roll_since)),
    )


def _day(day: dt.date) -> str:
    return format_skeleton("MMMd", day, locale=current_locale())


def agency_chart(book: Overview) -> Markup | None:
    rows = [row for row in book.by_agency if row.currency == book.currency]
    if not rows or not any(row.this_month or row.last_month for row in rows):
        return None
    return grouped_bars(
        [
            (_("This month"), [row.this_month for row in rows]),
            (_("Last month"), [row.last_month for row in rows]),
        ],
        bar_labels=[agency_name(row.agency_id, row.name, short=True) for row in rows],
        value_format=whole_amount,
        title=_("Recovered, %(currency)s", currency=book.currency),
    )


def agency_name(agency_id: int | None, name: str | None, *, short: bool = False) -> str:
    """An agency's name; the tenant's own money (no agency) by its label."""
    if agency_id is None:
        return _("Own recoveries") if short else _("The tenant's own recoveries (no agency)")
    return name or _("Agency %(id)s", id=agency_id)


def change(now: Decimal, before: Decimal) -> Decimal | None:
    """The change from ``before`` to ``now`` as a ratio (None when there was nothing)."""
    return None if not before else (now - before) / before


@blp.get("/")
@portal_page
def overview() -> str:
    """Open inventory, recoveries, promises and the three charts of the book, from the
    tenant's snapshot; none yet: a panel that waits for it while the refresh is queued."""
    tenant = g.tenant
    objects = platform()
    snapshot = load_snapshot(objects, tenant.id)
    if snapshot is None:
        request_overview_refresh(objects, tenant.id)
        return render_template("portal/overview_computing.html")
    stale = snapshot.is_stale(now=dt.datetime.now(dt.UTC), today=tenant_today(tenant.timezone))
    if stale:
        request_overview_refresh(objects, tenant.id)
    book = snapshot.book
    return render_template(
        "portal/overview.html",
        book=book,
        computed_at=snapshot.computed_at,
        stale=stale,
        liquidation=liquidation_chart(book),
        roll=roll_chart(book),
        agencies=agency_chart(book),
        month_label=month_label,
        agency_name=agency_name,
        change=change,
    )


@blp.get("/overview/status")
@portal_page
def overview_status() -> Response | str:
    """The computing panel's poll: once the snapshot exists, htmx reloads the page."""
    if load_snapshot(platform(), g.tenant.id) is None:
        return render_template("portal/_overview_waiting.html")
    return Response("", headers={"HX-Refresh": "true"})


@blp.post("/overview/refresh")
@portal_page
def overview_refresh() -> Response:
    """Queue a refresh of the figures now (one per tenant while it waits)."""
    request_overview_refresh(platform(), g.tenant.id)
    flash(_("The figures are being refreshed; reload the page in a moment."))
    return redirect(url_for("portal.overview"))
