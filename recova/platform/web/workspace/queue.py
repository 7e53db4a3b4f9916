"""My queue and Next case: the collector's cases across every tenant the agency serves.

``GET /work/`` lists the cases assigned to the signed-in collector now, in priority order
(``recova.platform.work.queue``): promises due today and callbacks due first, then the
cases callable now by score, then the blocked ones by the time they next may be called,
each row naming its tenant, with the debtor's name masked, their local time and the
verdict for a call now. A manager sees every assigned case of the agency, with a filter
by collector (a collector of another agency is 404). Filters: the tenant (one of those
served; another is 404) and "callable now only"; pages of 50.

``POST /work/next`` (the *Next case* button, key ``n``) opens the highest-priority case
that may be called now, unless the call loop owes a wrap-up (``wrapup.wrap_up_due``):
then it goes back to that case with a message. With nothing callable now, the queue is
shown with the time the next case becomes callable. ``GET /work/next`` does the same, for
a link from the case screen: it changes nothing, it only chooses where to go. From a case
(the screen's button, or its outcome saved with "then the next case") the case being left
rides along as ``leaving``, so a no-answer moves on to another case.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from babel.dates import format_timedelta
from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response
from wtforms import BooleanField, HiddenField, SelectField

from recova.platform.allocation.services import agency_collectors, tenants_served
from recova.platform.cases.display import name_for_caller
from recova.platform.kernel.db import utcnow
from recova.platform.kernel.errors import abort
from recova.platform.kernel.request_scope import db_session
from recova.platform.web.i18n import current_locale
from recova.platform.web.pages import workspace_page
from recova.platform.web.workspace import blp
from recova.platform.web.workspace.frame import current_agency, is_manager, page_principal
from recova.platform.web.workspace.wrapup import wrap_up_due
from recova.platform.work import queue
from recova.tenants.models import Tenant

#: Why a call is not allowed now (``recova.platform.compliance.queue``), for people.
RULE_LABELS = {
    "flag": _l("Flagged"),
    "case_closed": _l("Case closed"),
    "case_on_hold": _l("Case on hold"),
    "do_not_contact": _l("Do not contact"),
    "no_calls": _l("The policy allows no calls"),
    "connected_calls_per_day": _l("Daily call cap reached"),
    "call_attempts_in_7_days": _l("7-day call cap reached"),
    "quiet_after_conversation": _l("Quiet period after a conversation"),
    "contact_window": _l("Outside calling hours"),
}
FLAG_LABELS = {
    "dispute": _l("Dispute"),
    "bankruptcy": _l("Bankruptcy"),
    "deceased": _l("Deceased"),
    "cease_contact": _l("Cease contact"),
}


NEXT_PREFIX = "next"


class QueueFilterForm(FlaskForm):
    """The queue's filters, read from the query string."""

    class Meta:
        csrf = False

    tenant = SelectField(_l("Client"), choices=[])
    collector = SelectField(_l("Collector"), choices=[])
    callable_only = BooleanField(_l("Callable now only"))


class NextCaseForm(FlaskForm):
    """*Next case*: the queue's tenant and collector filters ride along (``next-tenant``,
    ``next-collector``: the filter form's fields keep the plain names and ids), and from a
    case screen the case being left (``next-leaving``, ``<tenant>:<case id>``)."""

    tenant = HiddenField()
    collector = HiddenField()
    leaving = HiddenField()


def _served() -> list[Tenant]:
    return tenants_served(db_session(), current_agency().id)


def _chosen(
    served: list[Tenant], tenant_slug: str | None, collector: str | None
) -> tuple[list[Tenant], int | None, dict[int, str]]:
    """The tenants and the collector the queue is read for, and the agency's collectors'
    names (managers); a tenant not served or a collector not of the agency is 404."""
    principal = page_principal()
    names: dict[int, str] = {}
    tenants = served
    if tenant_slug:
        tenants = [t for t in served if t.slug == tenant_slug]
        if not tenants:
            abort(404, message=_("Your agency does not work for this tenant."))
    if not is_manager():
        if collector and collector != str(principal.subject_id):
            abort(404, message=_("You see only your own queue."))
        return tenants, principal.subject_id, names
    names = {
        c["user_id"]: c["full_name"] or c["email"]
        for c in agency_collectors(db_session(), current_agency().id)
    }
    if not collector:
        return tenants, None, names
    if not collector.isdigit() or int(collector) not in names:
        abort(404, message=_("There is no such collector in your agency."))
    return tenants, int(collector), names


def _leaving(value: str | None) -> tuple[str, int] | None:
    """The case *Next case* moves on from (``<tenant>:<case id>``), if one is named."""
    slug, _colon, case_id = (value or "").partition(":")
    return (slug, int(case_id)) if slug and case_id.isdigit() else None


def _case_url(row: queue.QueueRow) -> str:
    return url_for("workspace.queue_case", tenant_slug=row.tenant.slug, case_id=row.case_id)


def _until(moment: dt.datetime | None, now: dt.datetime) -> str:
    """How long until ``moment``, in words of the page's language (``in 4 hours``)."""
    if moment is None:
        return ""
    return format_timedelta(
        max(moment - now, dt.timedelta(0)),
        add_direction=True,
        threshold=1.5,
        locale=current_locale(),
    )


def _needs_collector(tenants: list[Tenant], collector_id: int | None) -> bool:
    """A manager of a large agency reads one collector's queue at a time."""
    return (
        is_manager()
        and collector_id is None
        and not queue.agency_queue_fits(
            db_session(), tenants=tenants, agency_id=current_agency().id
        )
    )


def _render(
    *, filters: QueueFilterForm, served: list[Tenant], nothing_callable: bool = False
) -> str:
    tenants, collector_id, names = _chosen(
        served, filters.tenant.data or None, filters.collector.data or None
    )
    choose_collector = _needs_collector(tenants, collector_id)
    if choose_collector:
        page = queue.QueuePage(rows=[], counts=queue.QueueCounts(), page=1, has_next=False)
    else:
        page = queue.read_queue(
            db_session(),
            tenants=tenants,
            agency_id=current_agency().id,
            collector_id=collector_id,
            callable_only=bool(filters.callable_only.data),
            page=request.args.get("page", 1, type=int) or 1,
        )
    args: dict[str, Any] = {k: v for k, v in request.args.items() if k != "page" and v}

    def page_url(number: int) -> str:
        return url_for("workspace.queue", **args, page=number)

    next_form = NextCaseForm(
        formdata=None,
        prefix=NEXT_PREFIX,
        tenant=filters.tenant.data or "",
        collector=filters.collector.data or "",
    )
    return render_template(
        "work/queue/index.html",
        page=page,
        counts=page.counts,
        filters=filters,
        next_form=next_form,
        manager=is_manager(),
        collector_names=names,
        filtered=bool(args),
        prev_url=page_url(page.page - 1) if page.page > 1 else None,
        next_url=page_url(page.page + 1) if page.has_next else None,
        now=utcnow(),
        zone=queue.shared_timezone(served),
        nothing_callable=nothing_callable and not choose_collector,
        choose_collector=choose_collector,
        queue_limit=queue.AGENCY_QUEUE_LIMIT,
        name_for_caller=name_for_caller,
        case_url=_case_url,
        until=_until,
        rule_labels=RULE_LABELS,
        flag_labels=FLAG_LABELS,
    )


def _filters(served: list[Tenant], formdata: Any) -> QueueFilterForm:
    filters = QueueFilterForm(formdata=formdata)
    filters.tenant.choices = [("", _("All clients")), *((t.slug, t.name) for t in served)]
    if is_manager():
        collectors = agency_collectors(db_session(), current_agency().id)
        filters.collector.choices = [
            ("", _("All collectors")),
            *((str(c["user_id"]), c["full_name"] or c["email"]) for c in collectors),
        ]
    return filters


@blp.get("/", endpoint="queue")
@workspace_page
def queue_page() -> str:
    """The signed-in collector's cases across the agency's tenants, most urgent first (a
    manager: the agency's assigned cases, by collector)."""
    served = _served()
    return _render(filters=_filters(served, request.args), served=served)


@blp.route("/next", methods=["GET", "POST"], endpoint="queue_next")
@workspace_page
def queue_next() -> Response | str:
    """Open the highest-priority case callable now, unless a wrap-up is owed."""
    due = wrap_up_due()
    if due is not None:
        flash(
            _(
                "Finish the wrap-up of case %(id)s first: leave a note or schedule the next"
                " contact.",
                id=due["case_id"],
            ),
            "error",
        )
        return redirect(
            url_for("workspace.queue_case", tenant_slug=due["tenant"], case_id=due["case_id"])
        )
    served = _served()
    if request.method == "POST":
        form = NextCaseForm(prefix=NEXT_PREFIX)
        if not form.validate_on_submit():
            abort(400, message=_("The form could not be read. Reload the page and try again."))
        tenant_slug, collector = form.tenant.data or None, form.collector.data or None
        leaving = _leaving(form.leaving.data)
    else:
        tenant_slug = request.args.get("tenant") or None
        collector = request.args.get("collector") or None
        leaving = _leaving(request.args.get("leaving"))
    tenants, collector_id, _names = _chosen(served, tenant_slug, collector)
    if not _needs_collector(tenants, collector_id):
        found, _counts = queue.next_case(
            db_session(),
            tenants=tenants,
            agency_id=current_agency().id,
            collector_id=collector_id,
            leaving=leaving,
        )
        if found is not None:
            return redirect(_case_url(found))
    filters = _filters(served, None)
    filters.tenant.data, filters.collector.data = tenant_slug or "", collector or ""
    return _render(filters=filters, served=served, nothing_callable=True)
