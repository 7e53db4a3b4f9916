"""The portal's audit section: the tenant's events with filters, verifying the chain, and
the exported heads.

The same rules as the audit API (``recova.platform.audit.api``): the tenant's admins read
the chain; the analyst does not (the API does not open the chain to them either), so the
section is the admins' only. Verifying changes nothing, so it is a GET (a link that works
without JavaScript; htmx loads the verdict into the page). Exporting a head now is the
daily export (``export_daily_head``) run early: once per day, audited.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from typing import Any

from flask import flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response
from wtforms import DateField, IntegerField, StringField
from wtforms.validators import Length, NumberRange, Optional, Regexp, ValidationError

from recova.platform.audit.browse import EventFilter, event_page, head_exports
from recova.platform.audit.chain import Verdict
from recova.platform.audit.services import export_daily_head, verify_chain
from recova.platform.auth.models import Role
from recova.platform.kernel.request_scope import db_session
from recova.platform.web.pages import web_page
from recova.platform.web.portal import blp
from recova.tenants.models import tenant_today

AUDIT_ROLES = (Role.TENANT_ADMIN,)
PAGE_SIZE = 50
#: Subject types the chain's events name, offered as suggestions (any label is accepted).
SUBJECT_TYPES = (
    "case",
    "debtor",
    "ingestion_run",
    "allocation_run",
    "agency",
    "agency_contract",
    "compliance_policy",
    "work_settings",
)
_LABEL = r"^[\w.:@/-]*$"


def audit_page(view: Any) -> Any:
    """A page of the audit section: the tenant's admins read and change."""
    return web_page(AUDIT_ROLES, write=AUDIT_ROLES, tenant=True)(view)


class EventFilterForm(FlaskForm):
    """The filters of the event list (a GET form: nothing to protect with a token)."""

    class Meta:
        csrf = False

    action = StringField(
        _l("Action"),
        validators=[
            Optional(),
            Length(max=64),
            Regexp(_LABEL, message=_l("Letters, digits and . _ : @ / - only.")),
        ],
    )
    actor = StringField(
        _l("Actor"),
        validators=[
            Optional(),
            Length(max=128),
            Regexp(_LABEL, message=_l("Letters, digits and . _ : @ / - only.")),
        ],
    )
    subject_type = StringField(
        _l("Object type"),
        validators=[
            Optional(),
            Length(max=32),
            Regexp(_LABEL, message=_l("Letters, digits and . _ : @ / - only.")),
        ],
    )
    subject_id = StringField(
        _l("Case or object id"),
        validators=[
            Optional(),
            Length(max=64),
            Regexp(_LABEL, message=_l("Letters, digits and . _ : @ / - only.")),
        ],
    )
    since = DateField(_l("From"), validators=[Optional()])
    until = DateField(_l("To"), validators=[Optional()])
    older_than = IntegerField(validators=[Optional(), NumberRange(min=1)])
    newer_than = IntegerField(validators=[Optional(), NumberRange(min=0)])

    def validate_until(self, until: DateField) -> None:
        if until.data and self.since.data and until.data < self.since.data:
            raise ValidationError(_("The end date is before the start date."))


class VerifyForm(FlaskForm):
    """An optional head kept outside Recova, to prove nothing was rewritten since."""

    class Meta:
        csrf = False

    head_seq = IntegerField(_l("Kept head index"), validators=[Optional(), NumberRange(min=1)])
    head_hash = StringField(
        _l("Kept head hash"),
        validators=[
            Optional(),
            Regexp(r"^[0-9a-f]{64}$", message=_l("A SHA-256 hash as 64 lowercase hex digits.")),
        ],
    )

    def validate_head_hash(self, head_hash: StringField) -> None:
        if bool(head_hash.data) != (self.head_seq.data is not None):
            raise ValidationError(_("Give the kept head's index and hash together."))


def _start_of(day: dt.date, timezone: str) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=zoneinfo.ZoneInfo(timezone))


def _filters(form: EventFilterForm) -> EventFilter:
    timezone = g.tenant.timezone
    subject_id = (form.subject_id.data or "").strip() or None
    return EventFilter(
        action=(form.action.data or "").strip() or None,
        actor=(form.actor.data or "").strip() or None,
        subject_type=((form.subject_type.data or "").strip() or None) if subject_id else None,
        subject_id=subject_id,
        since=_start_of(form.since.data, timezone) if form.since.data else None,
        until=(
            _start_of(form.until.data + dt.timedelta(days=1), timezone) if form.until.data else None
        ),
    )


def _query_args(form: EventFilterForm, **page: int) -> dict[str, Any]:
    """The filters as URL arguments, with one page key."""
    args = {
        name: request.args[name]
        for name in ("action", "actor", "subject_type", "subject_id", "since", "until")
        if request.args.get(name)
    }
    return {**args, **page}


@blp.get("/audit")
@audit_page
def audit() -> tuple[str, int]:
    """The tenant's audit events, newest first, with filters and keyset pages."""
    form = EventFilterForm(formdata=request.args)
    session = db_session()
    heads, _more = head_exports(session, size=10)
    if request.args and not form.validate():
        page = None
        status = 422
    else:
        page = event_page(
            session,
            _filters(form),
            older_than=form.older_than.data,
            newer_than=form.newer_than.data,
            size=PAGE_SIZE,
        )
        status = 200
    return render_template(
        "portal/audit/index.html",
        form=form,
        page=page,
        heads=heads,
        subject_types=SUBJECT_TYPES,
        older_url=(
            url_for("portal.audit", **_query_args(form, older_than=page.older_than))
            if page and page.older_than
            else None
        ),
        newer_url=(
            url_for("portal.audit", **_query_args(form, newer_than=page.newer_than))
            if page and page.newer_than is not None
            else None
        ),
        newest_url=url_for("portal.audit", **_query_args(form)),
    ), status


_MISSING = re.compile(r"^event (\d+) is missing$")


def problem_text(problem: str | None) -> str:
    """The verifier's finding in the page's language."""
    if problem is None:
        return ""
    missing = _MISSING.match(problem)
    if missing:
        return _("Event %(n)s is missing: the chain was cut there.", n=missing.group(1))
    texts = {
        "content does not match hash": _(
            "Its content does not match its hash: the event was altered."
        ),
        "does not link to the event before": _(
            "It does not link to the event before: the chain was rewired there."
        ),
        "out of order": _("It is out of order."),
        "does not match the kept head": _(
            "The chain no longer holds the kept head's hash at that index: it was rewritten."
        ),
        "chain is shorter than the kept head": _(
            "The chain is shorter than the kept head: events were removed."
        ),
    }
    return texts.get(problem, problem)


@blp.get("/audit/verify")
@audit_page
def audit_verify() -> tuple[str, int]:
    """Verify every link of the chain now (optionally against a kept head)."""
    form = VerifyForm(formdata=request.args)
    verdict: Verdict | None = None
    status = 200
    if form.validate():
        expected = None
        if form.head_seq.data is not None and form.head_hash.data:
            expected = (form.head_seq.data, bytes.fromhex(form.head_hash.data))
        verdict = verify_chain(db_session(), expected_head=expected)
    else:
        status = 422
    template = (
        "portal/audit/_verdict.html"
        if request.headers.get("HX-Request")
        else "portal/audit/verify.html"
    )
    return render_template(
        template,
        form=form,
        verdict=verdict,
        problem=problem_text(verdict.problem if verdict is not None else None),
    ), status


@blp.post("/audit/heads")
@audit_page
def audit_export_head() -> Response:
    """Export today's head now (the daily job's export, once per day)."""
    session = db_session()
    day = tenant_today(g.tenant.timezone)
    before = head_exports(session, size=1)[0]
    exported = export_daily_head(session, day=day, actor=g.page_principal)
    if before and before[0].day == day:
        flash(
            _(
                "Today's head was already exported (index %(seq)s); it is exported once a day.",
                seq=exported.head_seq,
            )
        )
    else:
        flash(_("Head exported: index %(seq)s.", seq=exported.head_seq))
    return redirect(url_for("portal.audit") + "#heads")


@blp.get("/audit/heads")
@audit_page
def audit_heads() -> str:
    """Every exported head, newest first, a month at a time."""
    before_raw = request.args.get("before")
    try:
        before = dt.date.fromisoformat(before_raw) if before_raw else None
    except ValueError:
        before = None
    heads, more = head_exports(db_session(), before_day=before, size=31)
    return render_template("portal/audit/heads.html", heads=heads, more=more)
