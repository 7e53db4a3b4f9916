"""The collector's case screen and the call loop.

``queue_case`` is one page, laid out so the frequent path (call, outcome, next case) fits
1280x800 without scrolling: the case's tenant, debtor (masked) and balances; each contact
point with the compliance gate's verdict now (``gate.preview_contacts``: allowed, or the
rule in words, the next allowed time in the page's zone and the debtor's, and the calls
left today and in 7 days); the outcome form of the call in progress; the wrap-up; open
promises and plans; the newest timeline entries; the actions partial of
``workspace.actions``.

The page's zone, "your time", is the tenant's: users and agencies store no zone of their
own, and the tenant's zone is the one its placement calendar and contracts run by.

The loop: *Call* (``queue_case_call``) asks ``gate.attempt_contact`` first. A blocked
attempt is recorded blocked by the gate (the product's rule, as in the API; blocked
attempts never count toward a cap) and the screen shows why and when next; an allowed one
is pending, and the screen shows its outcome form. Every POST answers with a redirect to
the screen (or the next case), so a reload never dials twice. An outcome that means
someone answered, or that the number was wrong, owes a wrap-up (a note or a callback)
unless it came with one; until then *Next case* is disabled (``wrapup``).

Keyboard: ``c`` calls the first callable contact point, ``1``-``9`` save an outcome code
(``1`` is *No answer*, focused: Enter saves it), ``n`` opens the next case, ``b`` goes to
the callback time. A no-answer call and the next case: ``c``, then ``1`` (or Enter), with
"then the next case" ticked by default.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass
from typing import Any

from flask import (
    flash,
    g,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from sqlalchemy import select
from sqlalchemy.orm import joinedload, selectinload
from werkzeug.wrappers import Response
from wtforms import (
    BooleanField,
    DateTimeLocalField,
    HiddenField,
    IntegerField,
    StringField,
    TextAreaField,
)
from wtforms.validators import AnyOf, DataRequired, InputRequired, Length, Optional

from recova.platform.allocation.models import Assignment, Placement
from recova.platform.allocation.segmentation import tenant_buckets
from recova.platform.cases.browse import bucket_of
from recova.platform.cases.display import name_for_caller
from recova.platform.cases.models import Case, Contact, ContactKind
from recova.platform.cases.timeline import case_timeline
from recova.platform.compliance.gate import (
    Actor,
    CasePreview,
    ContactPreview,
    GateError,
    attempt_contact,
    preview_contacts,
)
from recova.platform.compliance.localtime import resolve_zone
from recova.platform.compliance.packs import Rules
from recova.platform.compliance.policy import policy_in_force
from recova.platform.contact.models import (
    CALL_CHANNELS,
    CONVERSATION_RESULTS,
    AttemptStatus,
    Channel,
    ContactAttempt,
    OutcomeCode,
    Result,
    result_fits,
)
from recova.platform.contact.services import DEFAULT_CODES, ContactError, outcome_codes
from recova.platform.contact.services import record_outcome as store_outcome
from recova.platform.kernel.db import utcnow
from recova.platform.kernel.errors import abort
from recova.platform.kernel.extension import platform
from recova.platform.kernel.request_scope import db_session
from recova.platform.web.i18n import date as format_day
from recova.platform.web.pages import workspace_case_page
from recova.platform.web.portal.cases import (
    CHANNEL_LABELS,
    CONTACT_KIND_LABELS,
    FLAG_LABELS,
    GROUNDS_LABELS,
    PLAN_LABELS,
    PROMISE_LABELS,
    RESULT_LABELS,
    SETTLEMENT_LABELS,
    STATUS_LABELS,
    SYSTEM_RECALL_REASONS,
)
from recova.platform.web.workspace import actions, blp, wrapup
from recova.platform.web.workspace.frame import page_principal, reachable_case
from recova.platform.work.followup import NOTE_MAX, FollowUpError, add_note, schedule_callback
from recova.platform.work.models import PaymentPlan, PlanStatus, Promise, PromiseStatus

CASE_URL = "/<slug:tenant_slug>/cases/<int:case_id>"
#: Timeline entries the screen shows (the portal's case page has the full history).
TIMELINE_LIMIT = 20
#: Outcomes after which the loop waits for a note or a callback: someone answered (a
#: refusal is a conversation too), or the number proved wrong.
WRAP_UP_RESULTS = frozenset({Result.CONNECTED, Result.REFUSED, Result.WRONG_NUMBER})
#: The first outcome shortcut is "no answer", the commonest by far.
FIRST_RESULT = Result.NO_ANSWER
#: What a contact point's button logs: a call, or an e-mail or letter sent outside Recova.
KIND_CHANNELS = {
    ContactKind.PHONE: Channel.CALL_OUT,
    ContactKind.EMAIL: Channel.EMAIL,
    ContactKind.ADDRESS: Channel.LETTER,
}
LOGGED_CHANNELS = tuple(c.value for c in KIND_CHANNELS.values())
KIND_ORDER = {ContactKind.PHONE: 0, ContactKind.EMAIL: 1, ContactKind.ADDRESS: 2}
DATETIME_LOCAL = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]

#: The default outcome codes' labels, for people (a tenant's own labels are its own words).
DEFAULT_CODE_LABELS = {
    "CONNECTED": _l("Spoke with the person"),
    "NO_ANSWER": _l("No answer"),
    "BUSY": _l("Line busy"),
    "WRONG_NUMBER": _l("Wrong or invalid number"),
    "REFUSED": _l("Refused to talk"),
    "DELIVERED": _l("Message delivered"),
    "FAILED": _l("Could not be delivered"),
}
_DEFAULT_LABELS = {code: label for code, label, _result in DEFAULT_CODES}
RELATION_LABELS = {
    "self": _l("Own"),
    "spouse": _l("Spouse"),
    "parent": _l("Parent"),
    "sibling": _l("Sibling"),
    "child": _l("Child"),
    "relative": _l("Relative"),
    "friend": _l("Friend"),
    "colleague": _l("Colleague"),
    "employer": _l("Employer"),
    "reference": _l("Reference"),
}
ACTION_LABELS = {
    Channel.CALL_OUT: _l("Call"),
    Channel.EMAIL: _l("Log e-mail"),
    Channel.LETTER: _l("Log letter"),
}


# --- forms -------------------------------------------------------------------------------


class CallForm(FlaskForm):
    """Ask the gate for one attempt on one contact point."""

    contact_id = IntegerField(validators=[InputRequired()])
    channel = HiddenField(default=Channel.CALL_OUT.value, validators=[AnyOf(LOGGED_CHANNELS)])


class OutcomeForm(FlaskForm):
    """The outcome of a pending attempt: a code (the button pressed), a note, a recording
    reference when the policy wants one, a callback, and whether to move on."""

    code = StringField(validators=[DataRequired(message=_l("Choose the outcome."))])
    note = TextAreaField(_l("Note"), validators=[Optional(), Length(max=NOTE_MAX)])
    recording_ref = StringField(_l("Recording reference"), validators=[Optional(), Length(max=300)])
    callback_at = DateTimeLocalField(
        _l("Call back at"), format=DATETIME_LOCAL, validators=[Optional()]
    )
    and_next = BooleanField(_l("Then open the next case"), default=True)


class NoteForm(FlaskForm):
    attempt_id = HiddenField()
    note = TextAreaField(
        _l("Note"),
        validators=[DataRequired(message=_l("Write the note.")), Length(max=NOTE_MAX)],
    )


class CallbackForm(FlaskForm):
    at = DateTimeLocalField(
        _l("Call back at"),
        format=DATETIME_LOCAL,
        validators=[DataRequired(message=_l("Choose the day and time to call back."))],
    )
    note = TextAreaField(_l("Note"), validators=[Optional(), Length(max=NOTE_MAX)])


# Each form of the screen has its own prefix, so field ids never clash. The one submitted
# reads the request's form; the others are shown fresh (``formdata=None``: a failed note
# must not leave the outcome form reading the note's post).


def outcome_form(*, submitted: bool = True) -> OutcomeForm:
    if submitted:
        return OutcomeForm(prefix="outcome")
    return OutcomeForm(formdata=None, prefix="outcome")


def note_form(*, submitted: bool = True) -> NoteForm:
    if submitted:
        return NoteForm(prefix="note")
    return NoteForm(formdata=None, prefix="note")


def callback_form(*, submitted: bool = True) -> CallbackForm:
    if submitted:
        return CallbackForm(prefix="callback")
    return CallbackForm(formdata=None, prefix="callback")


# --- what the screen shows -----------------------------------------------------------------


@dataclass(frozen=True)
class ContactPoint:
    """One contact point as the screen shows it: masked, with the gate's verdict now."""

    contact: Contact
    preview: ContactPreview | None
    #: The channel its button logs (a call for a phone).
    channel: Channel
    #: The verdict's rules in the page's language, the first the one that binds.
    reasons: list[str]

    @property
    def third_party(self) -> bool:
        return self.contact.relation != "self"

    @property
    def allowed(self) -> bool:
        return self.preview is not None and self.preview.decision.allowed

    @property
    def loggable(self) -> bool:
        """Whether its button is offered: calls always (the gate answers the click), a
        message to the debtor's own address (a third party's needs a template)."""
        return self.channel is Channel.CALL_OUT or not self.third_party


def _case_statement() -> Any:
    return select(Case).options(joinedload(Case.account), joinedload(Case.debtor))


def _tz() -> str:
    """The page's zone: the tenant's (see the module's docstring)."""
    zone: str = g.tenant.timezone
    return zone


def block_words(rule: str | None, rules: Rules | None, fallback: str | None = None) -> str:
    """One rule of the gate in the page's language (its own English message when the
    rule is new to this page)."""
    if rule is None:
        return ""
    prefix, _dot, name = rule.partition(".")
    whole = {
        "flag.dispute": _("No contact: the debt is disputed."),
        "flag.bankruptcy": _("No contact: the debtor is in bankruptcy."),
        "flag.deceased": _("No contact: the debtor is deceased."),
        "flag.cease_contact": _("No contact: the debtor asked to cease communication."),
        "case.closed": _("No contact: the case is closed."),
        "case.on_hold": _("No contact: the case is on hold."),
        "debtor.do_not_contact": _("The debtor is marked do-not-contact."),
        "contact.do_not_contact": _("This contact point is marked do-not-contact."),
        "third_party.refused": _("This third party refused further contact."),
    }
    if rule in whole:
        return whole[rule]
    if rules is None:
        return fallback or rule
    if rule == "third_party.debtor_reachable":
        return _(
            "Third parties only once the debtor is unreachable: every own number wrong,"
            " or %(n)s failed attempts in a row.",
            n=rules.third_party_after_failures,
        )
    by_name = {
        "contact_window": lambda: _(
            "Outside the contact window %(start)s-%(end)s in the debtor's local time.",
            start=rules.window_start.strftime("%H:%M"),
            end=rules.window_end.strftime("%H:%M"),
        ),
        "connected_calls_per_day": lambda: _(
            "The debtor has had %(n)s connected calls today, across every agency.",
            n=rules.max_connected_calls_per_day,
        ),
        "unanswered_calls_per_number": lambda: _(
            "This number has had %(n)s unanswered calls today.",
            n=rules.max_unanswered_calls_per_number_per_day,
        ),
        "call_attempts_in_7_days": lambda: _(
            "%(n)s calls about this debt in the last 7 days.",
            n=rules.max_call_attempts_in_7_days,
        ),
        "quiet_after_conversation": lambda: _(
            "A conversation about this debt took place in the last %(n)s days"
            " (a call without an outcome yet counts as one).",
            n=rules.quiet_days_after_conversation,
        ),
    }
    if prefix and name in by_name:
        return str(by_name[name]())
    return fallback or rule


def no_time_words(rule: str | None) -> str:
    """Why a block names no next time: what has to change first."""
    if rule == "third_party.debtor_reachable":
        return _("Not until the debtor proves unreachable.")
    if rule == "third_party.refused":
        return _("Not again: this third party refused.")
    if rule in ("case.closed", "case.on_hold"):
        return _("Not while the case is not being worked.")
    return _("Not until someone clears the mark.")


def _ordered(contacts: list[Contact]) -> list[Contact]:
    """Own phones first, then e-mail, address; third parties last, each marked."""
    return sorted(contacts, key=lambda c: (c.relation != "self", KIND_ORDER[c.kind], c.id))


def _points(contacts: list[Contact], preview: CasePreview) -> list[ContactPoint]:
    points = []
    for contact in _ordered(contacts):
        seen = preview.contacts.get(contact.id)
        reasons = (
            [block_words(b.rule, preview.rules, b.message) for b in seen.decision.blocks]
            if seen is not None
            else []
        )
        points.append(ContactPoint(contact, seen, KIND_CHANNELS[contact.kind], reasons))
    return points


def _first_callable(points: list[ContactPoint]) -> ContactPoint | None:
    """The contact point ``c`` calls: the first phone the gate allows now, else the first
    phone (the click then shows why not)."""
    phones = [p for p in points if p.channel is Channel.CALL_OUT]
    return next((p for p in phones if p.allowed), phones[0] if phones else None)


def _pending_attempt(case_id: int) -> tuple[ContactAttempt, Contact | None] | None:
    """The user's own attempt on the case still waiting for its outcome, if any."""
    principal = page_principal()
    row = (
        db_session()
        .execute(
            select(ContactAttempt, Contact)
            .outerjoin(Contact, Contact.id == ContactAttempt.contact_id)
            .where(
                ContactAttempt.case_id == case_id,
                ContactAttempt.status == AttemptStatus.PENDING.value,
                ContactAttempt.user_id == principal.subject_id,
                ContactAttempt.actor_kind == "agency",
            )
            .order_by(ContactAttempt.attempted_at.desc(), ContactAttempt.id.desc())
            .limit(1)
        )
        .first()
    )
    return (row[0], row[1]) if row is not None else None


def _blocked_attempt(case_id: int, attempt_id: int | None) -> ContactAttempt | None:
    if attempt_id is None:
        return None
    return db_session().scalar(
        select(ContactAttempt).where(
            ContactAttempt.id == attempt_id,
            ContactAttempt.case_id == case_id,
            ContactAttempt.status == AttemptStatus.BLOCKED.value,
        )
    )


def code_label(code: OutcomeCode) -> str:
    """A code's label: translated while it is a default code with its default label."""
    if code.code in DEFAULT_CODE_LABELS and _DEFAULT_LABELS.get(code.code) == code.label:
        return str(DEFAULT_CODE_LABELS[code.code])
    return code.label


def _codes_for(channel: str) -> list[OutcomeCode]:
    """The tenant's active codes that fit the attempt's channel, "no answer" first."""
    codes = [
        c for c in outcome_codes(db_session()) if c.is_active and result_fits(channel, c.result)
    ]
    return sorted(codes, key=lambda c: (c.result != FIRST_RESULT, c.id))


def _wrap_up_owed(case: Case) -> dict[str, Any] | None:
    due = wrapup.wrap_up_due()
    if due is not None and due["tenant"] == g.tenant.slug and due["case_id"] == case.id:
        return due
    return None


def _next_url(**args: Any) -> str:
    """The queue's *Next case*."""
    return url_for("workspace.queue_next", **args)


def leaving(case: Case) -> str:
    """How *Next case* names the case it moves on from (``<tenant>:<case id>``)."""
    return f"{g.tenant.slug}:{case.id}"


def _actions(case: Case) -> dict[str, Any]:
    """The actions partial's context (``workspace.actions.actions_panel``)."""
    return dict(actions.actions_panel(case))


def _open_commitments(case_id: int) -> tuple[list[Promise], list[PaymentPlan]]:
    session = db_session()
    promises = list(
        session.scalars(
            select(Promise)
            .where(Promise.case_id == case_id, Promise.status == PromiseStatus.PENDING)
            .order_by(Promise.due_date)
        )
    )
    plans = list(
        session.scalars(
            select(PaymentPlan)
            .options(selectinload(PaymentPlan.instalments))
            .where(PaymentPlan.case_id == case_id, PaymentPlan.status == PlanStatus.ACTIVE)
        )
    )
    return promises, plans


def _assignment(case_id: int) -> tuple[dt.datetime | None, dt.date] | None:
    """The open assignment's next action and the placement's end (exclusive)."""
    row = (
        db_session()
        .execute(
            select(Assignment.next_action_at, Placement.ends_on)
            .join(Placement, Placement.id == Assignment.placement_id)
            .where(
                Placement.case_id == case_id,
                Placement.recalled_on.is_(None),
                Assignment.ended_at.is_(None),
            )
        )
        .first()
    )
    return (row[0], row[1]) if row is not None else None


def _local_input(moment: dt.datetime) -> str:
    """``moment`` as a ``datetime-local`` value in the page's zone."""
    return moment.astimezone(zoneinfo.ZoneInfo(_tz())).strftime("%Y-%m-%dT%H:%M")


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    """A ``datetime-local`` input (the page's zone) as an instant."""
    if value is None:
        return None
    return value.replace(tzinfo=zoneinfo.ZoneInfo(_tz()))


def _screen(
    case: Case,
    *,
    status: int = 200,
    blocked_id: int | None = None,
    call_errors: list[str] | None = None,
    outcome: OutcomeForm | None = None,
    note: NoteForm | None = None,
    callback: CallbackForm | None = None,
) -> Response:
    """The case screen, with any failed form kept as it was sent."""
    session = db_session()
    tenant = g.tenant
    account, debtor = case.account, case.debtor
    contacts = list(session.scalars(select(Contact).where(Contact.debtor_id == debtor.id)))
    preview = preview_contacts(session, platform().cipher, tenant=tenant, case_id=case.id)
    points = _points(contacts, preview)
    pending = _pending_attempt(case.id)
    codes: list[OutcomeCode] = []
    recording_required = False
    if pending is not None:
        attempt = pending[0]
        codes = _codes_for(attempt.channel)
        if attempt.channel in {c.value for c in CALL_CHANNELS}:
            rules = policy_in_force(
                session, jurisdiction=tenant.jurisdiction.value, at=attempt.attempted_at
            ).rules
            recording_required = rules.recording_required
    owed = _wrap_up_owed(case)
    notes = note or note_form(submitted=False)
    if owed is not None and not notes.attempt_id.data:
        notes.attempt_id.data = str(owed["attempt_id"])
    later = _assignment(case.id)
    now = utcnow()
    own_zones = (
        next(
            (p.preview.decision.timezones for p in points if p.preview and not p.third_party),
            None,
        )
        or resolve_zone(
            debtor_timezone=debtor.timezone,
            region=debtor.region,
            phone=None,
            tenant_timezone=tenant.timezone,
        )[0]
    )
    promises, plans = _open_commitments(case.id)
    screen = {
        "case": case,
        "account": account,
        "debtor": debtor,
        "debtor_name": name_for_caller(debtor.full_name),
        "name_for_caller": name_for_caller,
        "bucket": bucket_of(account.days_past_due, tenant_buckets(session)),
        "points": points,
        "first_callable": _first_callable(points),
        "rules": preview.rules,
        "now": now,
        "page_zone": tenant.timezone,
        "debtor_zones": own_zones,
        "pending": pending,
        "codes": codes,
        "code_label": code_label,
        "recording_required": recording_required,
        "blocked": _blocked_attempt(case.id, blocked_id),
        "block_words": block_words,
        "no_time_words": no_time_words,
        "call_errors": call_errors or [],
        "outcome_form": outcome or outcome_form(submitted=False),
        "note_form": notes,
        "callback_form": callback or callback_form(submitted=False),
        "callback_min": _local_input(now),
        "callback_max": (
            _local_input(
                dt.datetime.combine(later[1], dt.time(0), zoneinfo.ZoneInfo(tenant.timezone))
                - dt.timedelta(minutes=1)
            )
            if later is not None
            else None
        ),
        "next_action_at": later[0] if later is not None else None,
        "placement_ends_on": later[1] if later is not None else None,
        "wrap_up_owed": owed,
        "next_url": _next_url(),
        "leaving": leaving(case),
        "timeline": case_timeline(session, case, timezone=tenant.timezone, limit=TIMELINE_LIMIT),
        "promises": promises,
        "plans": plans,
        "status_labels": STATUS_LABELS,
        "flag_labels": FLAG_LABELS,
        "channel_labels": CHANNEL_LABELS,
        "result_labels": RESULT_LABELS,
        "promise_labels": PROMISE_LABELS,
        "plan_labels": PLAN_LABELS,
        "settlement_labels": SETTLEMENT_LABELS,
        "grounds_labels": GROUNDS_LABELS,
        "recall_reasons": SYSTEM_RECALL_REASONS,
        "kind_labels": CONTACT_KIND_LABELS,
        "relation_labels": RELATION_LABELS,
        "action_labels": ACTION_LABELS,
    }
    panel = _actions(case)
    body = render_template("work/case/screen.html", **{**panel, **screen, "actions": panel})
    response = make_response(body, status)
    # The screen shows live verdicts: a cached copy would show yesterday's "allowed".
    response.headers["Cache-Control"] = "no-store"
    return response


def _back(case: Case, **args: Any) -> Response:
    return redirect(url_for("workspace.queue_case", case_id=case.id, **args), 303)


# --- the screen and the call loop ----------------------------------------------------------


@blp.get(CASE_URL, endpoint="queue_case")
@workspace_case_page
def queue_case(case_id: int) -> Response:
    """The case screen: everything a collector needs for the call, on one page."""
    return _screen(
        reachable_case(case_id, _case_statement()),
        blocked_id=request.args.get("blocked", type=int),
    )


@blp.post(f"{CASE_URL}/call", endpoint="queue_case_call")
@workspace_case_page
def queue_case_call(case_id: int) -> Response:
    """Ask the compliance gate for an attempt on one contact point: blocked, the screen
    says why and when next; allowed, it shows the outcome form of the pending attempt."""
    case = reachable_case(case_id, _case_statement())
    form = CallForm()
    if not form.validate_on_submit():
        return _screen(case, status=422, call_errors=[_("Choose a contact point to call.")])
    try:
        attempt = attempt_contact(
            db_session(),
            platform(),
            tenant=g.tenant,
            case_id=case.id,
            contact_id=form.contact_id.data or 0,
            channel=Channel(form.channel.data),
            actor=Actor.of(page_principal()),
        )
    except GateError as error:  # the 422 rolls the request's transaction back
        message = _("This contact point cannot take that attempt: %(detail)s", detail=str(error))
        return _screen(case, status=422, call_errors=[message])
    if attempt is None:
        abort(404, message=_("There is no such contact point on this case."))
    if attempt.status == AttemptStatus.BLOCKED:
        return _back(case, blocked=attempt.id)
    return _back(case)


def _needs_wrap_up(attempt: ContactAttempt) -> bool:
    """Someone answered (the debtor or a third party), or the number proved wrong."""
    return attempt.result in WRAP_UP_RESULTS or (
        attempt.third_party and attempt.result in CONVERSATION_RESULTS
    )


def _callback_refusal(error: FollowUpError) -> str:
    if error.reason == "past":
        return _("Choose a time ahead of now.")
    if error.reason == "after_placement":
        return _(
            "The case leaves the agency on %(day)s: choose an earlier time.",
            day=format_day(error.ends_on),
        )
    return _("The case is not assigned to you, so no callback can be scheduled.")


def _store_outcome(case: Case, attempt: ContactAttempt, form: OutcomeForm) -> Response | None:
    """Record the outcome, and the callback sent with it; the screen with the refusal
    beside its field if a service refuses (None: stored)."""
    session = db_session()
    principal = page_principal()
    note = (form.note.data or "").strip()
    try:
        store_outcome(
            session,
            attempt,
            jurisdiction=g.tenant.jurisdiction.value,
            code=form.code.data or "",
            actor=principal,
            notes=note or None,
            recording_ref=(form.recording_ref.data or "").strip() or None,
        )
    except ContactError as error:  # the 422 rolls the request's transaction back
        if "recording_ref" in str(error):
            form.recording_ref.errors = [
                _("Connected calls are recorded under this policy: give the recording reference.")
            ]
        else:
            form.form_errors = [_("The outcome was not saved: %(detail)s", detail=str(error))]
        return _screen(case, status=422, outcome=form)
    callback_at = _aware(form.callback_at.data)
    if callback_at is not None:
        try:
            schedule_callback(session, case=case, at=callback_at, actor=principal, timezone=_tz())
        except FollowUpError as error:
            form.callback_at.errors = [_callback_refusal(error)]
            return _screen(case, status=422, outcome=form)
    return None


@blp.post(f"{CASE_URL}/attempts/<int:attempt_id>/outcome", endpoint="queue_case_outcome")
@workspace_case_page
def queue_case_outcome(case_id: int, attempt_id: int) -> Response:
    """Record the pending attempt's outcome (a note, a callback with it); then the next
    case if asked and nothing is owed, else back to the screen."""
    session = db_session()
    case = reachable_case(case_id, _case_statement())
    attempt = session.scalar(
        select(ContactAttempt)
        .where(ContactAttempt.id == attempt_id, ContactAttempt.case_id == case.id)
        .with_for_update()
    )
    if attempt is None:
        abort(404, message=_("There is no such attempt on this case."))
    form = outcome_form()
    if not form.validate_on_submit():
        return _screen(case, status=422, outcome=form)
    if attempt.status != AttemptStatus.PENDING:
        form.form_errors = [_("The outcome of this attempt is already recorded.")]
        return _screen(case, status=422, outcome=form)
    refused = _store_outcome(case, attempt, form)
    if refused is not None:
        return refused
    note = (form.note.data or "").strip()
    callback_at = _aware(form.callback_at.data)
    slug = g.tenant.slug
    if _needs_wrap_up(attempt) and not note and callback_at is None:
        wrapup.require_wrap_up(tenant_slug=slug, case_id=case.id, attempt_id=attempt.id)
        flash(
            _("Outcome saved. Leave a note or schedule a callback before the next case."), "warning"
        )
        return _back(case)
    if note or callback_at is not None:
        wrapup.wrap_up_done(tenant_slug=slug, case_id=case.id)
    flash(_("Outcome saved."), "success")
    next_url = _next_url(leaving=leaving(case))
    if form.and_next.data and _wrap_up_owed(case) is None:
        return redirect(next_url, 303)
    return _back(case)


def _owed_attempt(case: Case, attempt_id: str | None) -> ContactAttempt | None:
    """The attempt a wrap-up is about: the one named (of this case), else none."""
    if not attempt_id or not attempt_id.isdigit():
        return None
    attempt = db_session().scalar(
        select(ContactAttempt).where(
            ContactAttempt.id == int(attempt_id), ContactAttempt.case_id == case.id
        )
    )
    if attempt is None:
        abort(404, message=_("There is no such attempt on this case."))
    return attempt


@blp.post(f"{CASE_URL}/note", endpoint="queue_case_note")
@workspace_case_page
def queue_case_note(case_id: int) -> Response:
    """Leave a note: on the call named (the one being wrapped up), else on the case."""
    case = reachable_case(case_id, _case_statement())
    form = note_form()
    if not form.validate_on_submit():
        return _screen(case, status=422, note=form)
    owed = _wrap_up_owed(case)
    about = form.attempt_id.data or (str(owed["attempt_id"]) if owed else None)
    try:
        add_note(
            db_session(),
            case=case,
            note=form.note.data or "",
            actor=page_principal(),
            attempt=_owed_attempt(case, about),
        )
    except FollowUpError as error:
        refusal = _("A blocked attempt takes no note.")
        form.note.errors = [refusal if error.reason == "blocked" else _("Write the note.")]
        return _screen(case, status=422, note=form)
    wrapup.wrap_up_done(tenant_slug=g.tenant.slug, case_id=case.id)
    flash(_("Note saved."), "success")
    return _back(case)


@blp.post(f"{CASE_URL}/callback", endpoint="queue_case_callback")
@workspace_case_page
def queue_case_callback(case_id: int) -> Response:
    """Schedule the case's next contact (ahead, and before the placement ends)."""
    case = reachable_case(case_id, _case_statement())
    form = callback_form()
    if not form.validate_on_submit():
        return _screen(case, status=422, callback=form)
    owed = _wrap_up_owed(case)
    at = _aware(form.at.data)
    assert at is not None  # required by the form
    try:
        schedule_callback(
            db_session(),
            case=case,
            at=at,
            actor=page_principal(),
            timezone=_tz(),
            note=form.note.data,
            attempt=_owed_attempt(case, str(owed["attempt_id"])) if owed else None,
        )
    except FollowUpError as error:
        form.at.errors = [_callback_refusal(error)]
        return _screen(case, status=422, callback=form)
    wrapup.wrap_up_done(tenant_slug=g.tenant.slug, case_id=case.id)
    flash(_("Callback scheduled."), "success")
    return _back(case)
