"""The portal's compliance pages: the rules binding now, tightening them, the simulator,
blocked attempts and validation notices due.

- **Rules in force**: the tenant's jurisdiction rule pack (its version and the day it took
  effect), each rule's pack value, the tenant's tightening and the value in force (the
  stricter, ``recova.platform.compliance.policy``); an admin tightens in the same table,
  one field a rule, and ``save_policy`` refuses a loosening naming the rule.
- **Simulator**: a schedule of proposed attempts, uploaded as CSV or typed into a few rows,
  decided by ``simulate_schedule`` (the live gate's rules; nothing is written). Like the
  API, analysts may simulate: it changes nothing.
- **Blocked attempts** by rule, agency and person for a period, and **validation notices
  due** (``recova.platform.reports.compliance``, one aggregate each).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import zoneinfo
from dataclasses import dataclass
from typing import Any

from flask import flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from werkzeug.wrappers import Response
from wtforms import (
    BooleanField,
    DateField,
    FieldList,
    Form,
    FormField,
    IntegerField,
    SelectChoice,
    SelectField,
    StringField,
)
from wtforms.validators import Optional

from recova.platform.compliance.gate import STOP_FLAGS, Actor
from recova.platform.compliance.packs import TIGHTER, PackVersion, Rules, pack_in_force
from recova.platform.compliance.policy import (
    PolicyError,
    PolicyInForce,
    policy_history,
    policy_in_force,
    save_policy,
)
from recova.platform.compliance.simulate import ProposedAttempt, simulate_schedule
from recova.platform.contact.models import OUTBOUND_CHANNELS, Channel, Result
from recova.platform.kernel.db import utcnow
from recova.platform.kernel.extension import platform
from recova.platform.kernel.request_scope import db_session
from recova.platform.reports.compliance import blocked_attempts, notices_due
from recova.platform.web.i18n import current_locale
from recova.platform.web.pages import PORTAL_READERS, portal_page, web_page
from recova.platform.web.portal import blp
from recova.tenants.models import tenant_today

#: The compliance pages, as tabs at the top of each.
TABS = (
    ("portal.compliance", _l("Rules in force")),
    ("portal.compliance_simulate", _l("Simulator")),
    ("portal.compliance_blocked", _l("Blocked attempts")),
    ("portal.compliance_notices", _l("Validation notices")),
)

#: Each rule a policy may tighten, as its readers call it.
RULE_LABELS: dict[str, Any] = {
    "window_start": _l("Contact window opens (debtor's local time)"),
    "window_end": _l("Contact window closes (debtor's local time)"),
    "max_connected_calls_per_day": _l("Connected calls per debtor per day (all agencies)"),
    "max_unanswered_calls_per_number_per_day": _l("Unanswered calls per number per day"),
    "max_call_attempts_in_7_days": _l("Call attempts per debt in 7 consecutive days"),
    "quiet_days_after_conversation": _l("Days without calls after a conversation"),
    "third_party_after_failures": _l("Failed attempts before third parties may be called"),
    "validation_notice_days": _l("Days after first contact to send the validation notice"),
    "recording_required": _l("Connected calls must be recorded"),
}
#: Which way "stricter" goes for each kind of rule (``packs.TIGHTER``).
DIRECTION_LABELS: dict[str, Any] = {
    "later": _l("stricter: later"),
    "earlier": _l("stricter: earlier"),
    "lower": _l("stricter: fewer"),
    "higher": _l("stricter: more"),
    "on": _l("may be switched on, never off"),
}
#: The rule packs' titles in the page's language (``packs.PACKS`` are English).
PACK_TITLES: dict[str, Any] = {
    "CN-2025": _l("National collection standard for online consumer credit (2025)"),
    "CN-2026": _l(
        "2025 standard and the China Banking Association consumer-loan collection"
        " guideline (2026): calls are recorded"
    ),
    "US-REGF-2021": _l("FDCPA and Regulation F (12 CFR 1006)"),
}
#: The rules the gate blocks by (``Block.rule``), without their pack's prefix (``cn.``).
BLOCK_LABELS: dict[str, Any] = {
    "contact_window": _l("Outside the contact window"),
    "connected_calls_per_day": _l("Connected calls per day reached"),
    "unanswered_calls_per_number": _l("Unanswered calls to this number today reached"),
    "call_attempts_in_7_days": _l("Call attempts in 7 days reached"),
    "quiet_after_conversation": _l("Quiet period after a conversation"),
    "third_party.refused": _l("The third party refused further contact"),
    "third_party.debtor_reachable": _l("Third party while the debtor is reachable"),
    "flag.dispute": _l("The debt is disputed"),
    "flag.bankruptcy": _l("The debtor is in bankruptcy"),
    "flag.deceased": _l("The debtor is deceased"),
    "flag.cease_contact": _l("The debtor asked to cease communication"),
    "case.closed": _l("The case is closed"),
    "case.on_hold": _l("The case is on hold"),
    "debtor.do_not_contact": _l("The debtor is marked do-not-contact"),
    "contact.do_not_contact": _l("The contact is marked do-not-contact"),
    "request.not_found": _l("No such case, or no such contact of its debtor"),
    "request.invalid": _l("The channel does not fit the contact"),
}
assert {f"flag.{flag}" for flag in STOP_FLAGS} <= BLOCK_LABELS.keys()
#: The pack prefixes of the gate's rule names.
PACK_PREFIXES = ("cn.", "us.")

CHANNEL_LABELS: dict[str, Any] = {
    "call_out": _l("Outbound call"),
    "call_in": _l("Inbound call"),
    "sms": _l("SMS"),
    "email": _l("E-mail"),
    "letter": _l("Letter"),
    "visit": _l("Field visit"),
}
RESULT_LABELS: dict[str, Any] = {
    "connected": _l("Connected"),
    "no_answer": _l("No answer"),
    "busy": _l("Busy"),
    "wrong_number": _l("Wrong number"),
    "refused": _l("Refused"),
    "delivered": _l("Delivered"),
    "failed": _l("Failed"),
}
#: Columns of a schedule, in the order a CSV gives them.
SCHEDULE_COLUMNS = ("case_id", "contact_id", "channel", "at", "result")
#: The most attempts one simulation takes (the API's limit).
MAX_SCHEDULE = 500
#: The most rows of a schedule typed into the page.
FORM_ROWS = 5
#: The largest schedule file read (500 rows fit well within it).
MAX_SCHEDULE_BYTES = 256 * 1024
#: The longest period of the blocked-attempt report.
MAX_PERIOD_DAYS = 366


def block_label(rule: str | None) -> str:
    """A rule the gate blocked by, in the page's language (its code if unknown)."""
    if rule is None:
        return ""
    key = rule
    for prefix in PACK_PREFIXES:
        if rule.startswith(prefix):
            key = rule[len(prefix) :]
    label = BLOCK_LABELS.get(key)
    return str(label) if label is not None else rule


def rule_value(value: Any) -> str:
    """A rule's value as the page shows it."""
    if value is None:
        return _("No limit")
    if isinstance(value, bool):
        return _("Yes") if value else _("No")
    if isinstance(value, dt.time):
        return value.strftime("%H:%M")
    return str(value)


# --- rules in force and the tightening form -------------------------------------------


class _Whole(IntegerField):
    """A whole-number input whose parse error is in the page's language (blank: None)."""

    def process_formdata(self, valuelist: list[Any]) -> None:
        if not valuelist or str(valuelist[0]).strip() == "":
            self.data = None
            return
        try:
            self.data = int(str(valuelist[0]).strip())
        except ValueError as exc:
            self.data = None
            raise ValueError(_("Enter a whole number.")) from exc


class PolicyForm(FlaskForm):
    """One field a rule: blank means the pack's value binds unchanged."""

    window_start = StringField(RULE_LABELS["window_start"], validators=[Optional()])
    window_end = StringField(RULE_LABELS["window_end"], validators=[Optional()])
    max_connected_calls_per_day = _Whole(RULE_LABELS["max_connected_calls_per_day"])
    max_unanswered_calls_per_number_per_day = _Whole(
        RULE_LABELS["max_unanswered_calls_per_number_per_day"]
    )
    max_call_attempts_in_7_days = _Whole(RULE_LABELS["max_call_attempts_in_7_days"])
    quiet_days_after_conversation = _Whole(RULE_LABELS["quiet_days_after_conversation"])
    third_party_after_failures = _Whole(RULE_LABELS["third_party_after_failures"])
    validation_notice_days = _Whole(RULE_LABELS["validation_notice_days"])
    recording_required = BooleanField(RULE_LABELS["recording_required"])

    def overrides(self) -> dict[str, Any]:
        """The tightenings asked for: every filled-in rule (a box ticked)."""
        out: dict[str, Any] = {}
        for name in TIGHTER:
            value = self[name].data
            if isinstance(value, str):
                value = value.strip() or None
            if name == "recording_required":
                value = True if value else None
            if value is not None:
                out[name] = value
        return out


assert set(RULE_LABELS) == set(TIGHTER)


def _policy_form(overrides: dict[str, Any]) -> PolicyForm:
    return PolicyForm(formdata=None, data=dict(overrides))


def _refusal_message(name: str, message: str, pack: PackVersion) -> str:
    """The policy service's refusal of one rule, in the page's language, naming the rule."""
    rule = RULE_LABELS.get(name, name)
    if message.startswith("loosens"):
        allowed = rule_value(getattr(pack.rules, name, None))
        return _(
            "“%(rule)s” would loosen the %(pack)s rule pack, which sets %(value)s: a policy"
            " may only tighten it.",
            rule=rule,
            pack=pack.version,
            value=allowed,
        )
    if message.startswith("must be a time"):
        return _("“%(rule)s”: enter a time as HH:MM, such as 21:00.", rule=rule)
    if message.startswith("must be a whole number"):
        return _("“%(rule)s”: enter a whole number, 0 or more.", rule=rule)
    if message.startswith("the window must end"):
        return _("The contact window must close after it opens.")
    return _("“%(rule)s”: %(reason)s", rule=rule, reason=message)


@dataclass(frozen=True)
class RuleRow:
    name: str
    label: str
    direction: str
    pack_value: str
    tightening: str | None
    in_force: str
    tightened: bool


def _rule_rows(in_force: PolicyInForce) -> list[RuleRow]:
    pack_rules: Rules = in_force.pack.rules
    rows = []
    for name, direction in TIGHTER.items():
        ours = in_force.overrides.get(name)
        pack_value = getattr(pack_rules, name)
        effective = getattr(in_force.rules, name)
        rows.append(
            RuleRow(
                name=name,
                label=str(RULE_LABELS[name]),
                direction=str(DIRECTION_LABELS[direction]),
                pack_value=rule_value(pack_value),
                tightening=None if ours is None else rule_value(ours),
                in_force=rule_value(effective),
                tightened=effective != pack_value,
            )
        )
    return rows


def _rules_page(form: PolicyForm | None = None, status: int = 200) -> tuple[str, int]:
    session = db_session()
    now = utcnow()
    in_force = policy_in_force(session, jurisdiction=g.tenant.jurisdiction.value, at=now)
    if form is None:
        form = _policy_form(in_force.overrides)
    history = policy_history(session)[:10]
    pack = in_force.pack
    return render_template(
        "portal/compliance/rules.html",
        tabs=TABS,
        form=form,
        pack=pack,
        pack_title=PACK_TITLES.get(pack.version, pack.title),
        in_force=in_force,
        rows=_rule_rows(in_force),
        history=history,
        rule_labels=RULE_LABELS,
        rule_value=rule_value,
    ), status


@blp.get("/compliance")
@portal_page
def compliance() -> tuple[str, int]:
    """The rules binding now: the pack, the tenant's tightening and the value in force."""
    return _rules_page()


@blp.post("/compliance/policy")
@portal_page
def compliance_policy() -> Response | tuple[str, int]:
    """Save a new policy version from now; a loosening is refused beside its rule (422)."""
    form = PolicyForm()
    if not form.validate_on_submit():
        return _rules_page(form, 422)
    jurisdiction = g.tenant.jurisdiction.value
    principal = g.page_principal
    try:
        save_policy(
            db_session(),
            jurisdiction=jurisdiction,
            overrides=form.overrides(),
            actor=principal,
            created_by=principal.subject_id,
        )
    except PolicyError as error:
        pack = pack_in_force(jurisdiction, utcnow())
        named = []
        for name, message in sorted(error.errors.items()):
            text = _refusal_message(name, message, pack)
            if name in form:
                form[name].errors = [*form[name].errors, text]
                named.append(str(RULE_LABELS.get(name, name)))
            else:
                form.form_errors = [*form.form_errors, text]
        if named:
            form.form_errors = [
                _("Not saved: %(rules)s.", rules=_("; ").join(named)),
                *form.form_errors,
            ]
        return _rules_page(form, 422)
    flash(_("The policy was saved and binds from now."), "success")
    return redirect(url_for("portal.compliance"))


# --- the simulator ---------------------------------------------------------------------


def _channel_choices() -> list[SelectChoice]:
    return [SelectChoice("", "—")] + [
        SelectChoice(c.value, CHANNEL_LABELS[c.value]) for c in OUTBOUND_CHANNELS
    ]


def _result_choices() -> list[SelectChoice]:
    return [SelectChoice("", _l("Stays pending"))] + [
        SelectChoice(r.value, RESULT_LABELS[r.value]) for r in Result
    ]


class ScheduleRowForm(Form):
    """One proposed attempt typed into the page (a sub-form: the outer form has the CSRF)."""

    case_id = StringField(_l("Case"))
    contact_id = StringField(_l("Contact"))
    channel = SelectField(_l("Contact channel"), choices=_channel_choices, validate_choice=False)
    at = StringField(_l("Time"))
    result = SelectField(_l("Expected result"), choices=_result_choices, validate_choice=False)

    def raw(self) -> dict[str, str]:
        return {name: str(self[name].data or "").strip() for name in SCHEDULE_COLUMNS}


class SimulateForm(FlaskForm):
    file = FileField(_l("Schedule file (CSV)"))
    rows = FieldList(FormField(ScheduleRowForm), min_entries=FORM_ROWS, max_entries=FORM_ROWS)


@dataclass(frozen=True)
class RowError:
    row: int
    column: str
    message: str


@dataclass(frozen=True)
class ParsedSchedule:
    attempts: list[ProposedAttempt]
    #: The schedule row (1: the first under the header) of each attempt.
    rows: list[int]
    errors: list[RowError]


def parse_time(value: str, zone: str) -> dt.datetime:
    """An ISO 8601 time (``2026-03-02T23:00+08:00``, ``2026-03-02 23:00``); one without an
    offset is read in ``zone``."""
    parsed = dt.datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zoneinfo.ZoneInfo(zone))
    return parsed


def parse_schedule(rows: list[tuple[int, dict[str, str]]], *, zone: str) -> ParsedSchedule:
    """Proposed attempts from raw rows (row number, column values), or each bad value's
    row, column and reason."""
    attempts: list[ProposedAttempt] = []
    numbers: list[int] = []
    errors: list[RowError] = []
    channels = {c.value for c in OUTBOUND_CHANNELS}
    results = {r.value for r in Result}
    for number, raw in rows:
        found: list[RowError] = []
        ids: dict[str, int] = {}
        for column in ("case_id", "contact_id"):
            value = raw.get(column, "")
            if not value:
                found.append(RowError(number, column, _("Required.")))
            elif not value.isdigit():
                found.append(RowError(number, column, _("Enter a whole number (an id).")))
            else:
                ids[column] = int(value)
        channel = raw.get("channel", "")
        if channel not in channels:
            found.append(
                RowError(
                    number,
                    "channel",
                    _("One of: %(values)s.", values=", ".join(sorted(channels))),
                )
            )
        at: dt.datetime | None = None
        try:
            at = parse_time(raw.get("at", ""), zone)
        except ValueError:
            found.append(
                RowError(
                    number, "at", _("A time such as 2026-03-02 23:00 or 2026-03-02T23:00+08:00.")
                )
            )
        result = raw.get("result", "") or None
        if result is not None and result not in results:
            found.append(
                RowError(
                    number, "result", _("One of: %(values)s.", values=", ".join(sorted(results)))
                )
            )
        if found:
            errors += found
            continue
        assert at is not None
        attempts.append(
            ProposedAttempt(
                case_id=ids["case_id"],
                contact_id=ids["contact_id"],
                channel=Channel(channel),
                at=at,
                result=result,
            )
        )
        numbers.append(number)
    return ParsedSchedule(attempts, numbers, errors)


def read_schedule_file(content: bytes) -> tuple[list[tuple[int, dict[str, str]]], list[RowError]]:
    """The rows of a schedule CSV (UTF-8, or GBK as Excel saves it in China): each with its
    row number (1: the first under the header), or what is wrong with the file."""
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = content.decode("gb18030")
        except UnicodeDecodeError:
            return [], [RowError(0, "", _("The file is neither UTF-8 nor GBK text."))]
    reader = csv.DictReader(io.StringIO(text))
    header = [name.strip().lower() for name in reader.fieldnames or []]
    missing = [c for c in SCHEDULE_COLUMNS if c != "result" and c not in header]
    if missing:
        return [], [
            RowError(
                0,
                ", ".join(missing),
                _(
                    "The header must name the columns %(columns)s.",
                    columns=", ".join(SCHEDULE_COLUMNS),
                ),
            )
        ]
    reader.fieldnames = header
    rows: list[tuple[int, dict[str, str]]] = []
    for number, record in enumerate(reader, start=1):
        values = {k: (v or "").strip() for k, v in record.items() if isinstance(k, str)}
        if not any(values.values()):
            continue
        if len(rows) == MAX_SCHEDULE:
            return [], [
                RowError(0, "", _("At most %(n)s attempts in one simulation.", n=MAX_SCHEDULE))
            ]
        rows.append((number, values))
    if not rows:
        return [], [RowError(0, "", _("The file holds no attempt under its header."))]
    return rows, []


@dataclass(frozen=True)
class Verdict:
    row: int
    case_id: int
    contact_id: int
    channel: str
    at: dt.datetime
    local_at: dt.datetime | None
    timezone: str | None
    allowed: bool
    rule: str | None
    reason: str
    message: str | None
    also: list[str]
    next_allowed_at: dt.datetime | None


def _verdicts(answers: list[dict[str, Any]], rows: list[int]) -> list[Verdict]:
    out = []
    for answer, row in zip(answers, rows, strict=True):
        zone = answer.get("timezone")
        rule = answer.get("rule")
        out.append(
            Verdict(
                row=row,
                case_id=answer["case_id"],
                contact_id=answer["contact_id"],
                channel=answer["channel"],
                at=answer["at"],
                local_at=answer["at"].astimezone(zoneinfo.ZoneInfo(zone)) if zone else None,
                timezone=zone,
                allowed=answer["allowed"],
                rule=rule,
                reason=block_label(rule),
                message=answer.get("message"),
                also=[block_label(r) for r in answer.get("rules", [])[1:]],
                next_allowed_at=answer.get("next_allowed_at"),
            )
        )
    return out


def _simulate_page(
    form: SimulateForm | None = None,
    *,
    verdicts: list[Verdict] | None = None,
    errors: list[RowError] | None = None,
    source: str | None = None,
    status: int = 200,
) -> tuple[str, int]:
    return render_template(
        "portal/compliance/simulate.html",
        tabs=TABS,
        form=form or SimulateForm(formdata=None),
        verdicts=verdicts,
        row_errors=errors or [],
        source=source,
        columns=SCHEDULE_COLUMNS,
        channel_labels=CHANNEL_LABELS,
        english=current_locale().startswith("en"),
    ), status


#: Simulating changes nothing, so analysts may run it as the API lets them.
_simulator_page = web_page(PORTAL_READERS, write=PORTAL_READERS, tenant=True)


@blp.route("/compliance/simulate", methods=["GET", "POST"])
@_simulator_page
def compliance_simulate() -> tuple[str, int]:
    """A proposed schedule, uploaded or typed in: each attempt's verdict and its reason."""
    if request.method == "GET":
        return _simulate_page()
    form = SimulateForm()
    if not form.validate_on_submit():
        return _simulate_page(form, status=422)
    zone = g.tenant.timezone
    upload = form.file.data
    # The button pressed says which half of the form to read (Enter in a field: the file,
    # if one was chosen).
    wants_file = request.form.get("send") != "rows"
    chosen = wants_file and upload is not None and bool(upload.filename)
    content = upload.read(MAX_SCHEDULE_BYTES + 1) if chosen else b""
    raw: list[tuple[int, dict[str, str]]]
    errors: list[RowError]
    source: str | None
    if content:
        source = upload.filename
        if len(content) > MAX_SCHEDULE_BYTES:
            raw, errors = [], [RowError(0, "", _("The file is larger than 256 KB."))]
        else:
            raw, errors = read_schedule_file(content)
    else:
        source = None
        raw = [
            (n, entry.form.raw())
            for n, entry in enumerate(form.rows.entries, start=1)
            if any(entry.form.raw().values())
        ]
        errors = [] if raw else [RowError(0, "", _("Fill in at least one row, or choose a file."))]
    parsed = parse_schedule(raw, zone=zone) if raw else ParsedSchedule([], [], [])
    errors = errors + parsed.errors
    if errors:
        if source is None:
            for error in errors:
                if error.row and error.column:
                    entry = form.rows.entries[error.row - 1].form
                    entry[error.column].errors = [*entry[error.column].errors, error.message]
        return _simulate_page(form, errors=errors, source=source, status=422)
    actor = Actor.of(g.page_principal)
    answers = simulate_schedule(
        db_session(),
        parsed.attempts,
        tenant=g.tenant,
        cipher=platform().cipher,
        agency_id=actor.agency_id,
        collector_id=actor.collector_id,
    )
    return _simulate_page(form, verdicts=_verdicts(answers, parsed.rows), source=source)


# --- blocked attempts ------------------------------------------------------------------


class PeriodForm(FlaskForm):
    class Meta:
        csrf = False  # a GET filter that changes nothing

    since = DateField(_l("From"), validators=[Optional()])
    until = DateField(_l("To (inclusive)"), validators=[Optional()])


def _midnight(day: dt.date, zone: str) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0), zoneinfo.ZoneInfo(zone))


@blp.get("/compliance/blocked")
@portal_page
def compliance_blocked() -> tuple[str, int]:
    """Blocked attempts of a period (tenant calendar) by rule, agency and person."""
    zone = g.tenant.timezone
    today = tenant_today(zone)
    form = PeriodForm(request.args)
    valid = form.validate()
    since = form.since.data or today - dt.timedelta(days=29)
    until = form.until.data or today
    if valid and until < since:
        form.until.errors = [_("The period must end on or after its first day.")]
        valid = False
    if valid and (until - since).days >= MAX_PERIOD_DAYS:
        form.until.errors = [_("At most %(n)s days at a time.", n=MAX_PERIOD_DAYS)]
        valid = False
    if not valid:
        return render_template(
            "portal/compliance/blocked.html", tabs=TABS, form=form, report=None
        ), 422
    form.since.data, form.until.data = since, until
    report = blocked_attempts(
        db_session(),
        since=_midnight(since, zone),
        until=_midnight(until + dt.timedelta(days=1), zone),
    )
    return render_template(
        "portal/compliance/blocked.html",
        tabs=TABS,
        form=form,
        report=report,
        block_label=block_label,
        period=(since, until),
    ), 200


# --- validation notices ----------------------------------------------------------------


@blp.get("/compliance/notices")
@portal_page
def compliance_notices() -> tuple[str, int]:
    """Cases owed a validation notice: due within the policy's days of first contact, or
    overdue, earliest first."""
    session = db_session()
    now = utcnow()
    in_force = policy_in_force(session, jurisdiction=g.tenant.jurisdiction.value, at=now)
    report = notices_due(session, days=in_force.rules.validation_notice_days, now=now)
    return render_template(
        "portal/compliance/notices.html", tabs=TABS, report=report, pack=in_force.pack
    ), 200
