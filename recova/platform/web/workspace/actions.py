"""The actions on a collector's case screen: promise, plan, settlement, template, reveal.

The case screen (``workspace.queue_case``) includes ``work/case/_actions.html`` with the
context ``actions_panel(case)`` gives: one form per action, the tenant's limits beside
their fields, the templates and contact points to choose from. Each action posts to its
own page; a success is flashed on the case screen, a refusal (the form's or the
service's) answers 422 with the action's focused page (``work/actions/<name>.html``): a
one-line case header, the form with the user's input and the errors beside the fields.

- promise (``create_promise``): a date within the service's limit, an amount;
- plan: a calculator (``plans.calculated_schedule``: equal instalments, the last carrying the
  remainder; any amount may be set by hand, the blank ones share the rest) whose
  schedule is shown before it is saved (``create_plan``), the same numbers both times;
- settlement: an amount or a discount, and why; who has to approve it is shown as the
  amount is typed (``settlements.approval_level``, the offer's own rule);
- template: one of the tenant's templates filled for one contact point
  (``contact.services.render_for``; a third party gets only third-party templates that
  name no debt), shown, not sent: sending is an attempt through the gate, from the
  contact point's row;
- reveal: the debtor's name, national id or one contact point's value, with a reason,
  through the privacy domain's ``reveal`` (its reach rule, rate limit and audit), never
  cached.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any

from flask import flash, g, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from sqlalchemy import select
from werkzeug.wrappers import Response
from wtforms import (
    DateField,
    DecimalField,
    FieldList,
    IntegerField,
    SelectChoice,
    SelectField,
    TextAreaField,
)
from wtforms.validators import InputRequired, Length, NumberRange, Optional

from recova.platform.cases.display import name_for_caller
from recova.platform.cases.models import Account, Case, Contact, ContactKind, Debtor
from recova.platform.contact.models import MessageTemplate, TemplateAudience
from recova.platform.contact.services import render_for
from recova.platform.kernel.errors import DomainError, abort
from recova.platform.kernel.extension import platform
from recova.platform.kernel.request_scope import db_session
from recova.platform.privacy.reveal import Revealed, RevealError, reveal
from recova.platform.web.i18n import date as show_date
from recova.platform.web.i18n import money as show_money
from recova.platform.web.pages import workspace_case_page
from recova.platform.web.workspace import blp
from recova.platform.web.workspace.frame import page_principal, reachable_case
from recova.platform.work import plans, promises, settlements
from recova.platform.work.models import ApprovalLevel, SettlementStatus
from recova.platform.work.settings import current_settings
from recova.tenants.models import tenant_today

#: Templates offered on the case screen (a tenant keeps a handful; the list is bounded).
TEMPLATES_SHOWN = 200
#: How long a new offer stays open unless the collector says otherwise.
DEFAULT_OFFER_DAYS = 7

FREQUENCIES = {
    plans.Frequency.MONTHLY: _l("Monthly"),
    plans.Frequency.FORTNIGHTLY: _l("Every two weeks"),
    plans.Frequency.WEEKLY: _l("Weekly"),
}
CHANNELS = {"sms": _l("SMS"), "email": _l("Email"), "letter": _l("Letter")}
CONTACT_KINDS = {
    ContactKind.PHONE: _l("Phone"),
    ContactKind.EMAIL: _l("Email"),
    ContactKind.ADDRESS: _l("Address"),
}
REVEAL_NAME = "name"
REVEAL_NATIONAL_ID = "national_id"


# --- forms -------------------------------------------------------------------------------


class PromiseForm(FlaskForm):
    """A promise to pay: how much, by when (the service checks the date's limits)."""

    amount = DecimalField(
        _l("Amount"),
        validators=[
            InputRequired(message=_l("Enter the amount promised.")),
            NumberRange(min=Decimal("0.01"), message=_l("The amount must be above zero.")),
        ],
    )
    due_date = DateField(
        _l("Pay by"), validators=[InputRequired(message=_l("Enter the date of the payment."))]
    )


class PlanForm(FlaskForm):
    """The plan calculator: how many instalments, how often, from when, of what total; any
    instalment's amount may be set, the blank ones share the rest equally."""

    count = IntegerField(
        _l("Instalments"),
        validators=[InputRequired(message=_l("Enter the number of instalments."))],
    )
    frequency = SelectField(
        _l("Every"), choices=[SelectChoice(key.value, label) for key, label in FREQUENCIES.items()]
    )
    first_due = DateField(
        _l("First due"),
        validators=[InputRequired(message=_l("Enter the first instalment's date."))],
    )
    total = DecimalField(
        _l("Total"),
        validators=[
            Optional(),
            NumberRange(min=Decimal("0.01"), message=_l("The total must be above zero.")),
        ],
    )
    amounts = FieldList(
        DecimalField(
            validators=[
                Optional(),
                NumberRange(min=Decimal("0.01"), message=_l("An amount must be above zero.")),
            ]
        ),
        max_entries=plans.MAX_INSTALMENTS,
    )


class SettlementForm(FlaskForm):
    """A settlement offer: the amount to settle for, or the discount, and why."""

    amount = DecimalField(_l("Settle for"), validators=[Optional()])
    discount = DecimalField(
        _l("or discount (%)"),
        validators=[
            Optional(),
            NumberRange(
                min=Decimal(0), max=Decimal(100), message=_l("A discount is from 0 to 100%.")
            ),
        ],
    )
    expires_on = DateField(
        _l("Offer open until"),
        validators=[InputRequired(message=_l("Enter the last day the offer is open."))],
    )
    reason = TextAreaField(
        _l("Reason"),
        validators=[
            InputRequired(message=_l("Say why the debtor should get this discount.")),
            Length(max=500, message=_l("At most 500 characters.")),
        ],
    )

    def validate(self, extra_validators: Any = None) -> bool:
        valid = super().validate(extra_validators)
        if self.amount.data is None and self.discount.data is None and not self.amount.errors:
            self.amount.errors = [*self.amount.errors, _("Enter the amount or the discount.")]
            valid = False
        if not (self.reason.data or "").strip() and not self.reason.errors:
            self.reason.errors = [_("Say why the debtor should get this discount.")]
            valid = False
        return valid


class TemplateForm(FlaskForm):
    """Which template to fill, for which contact point."""

    template_id = SelectField(
        _l("Template"),
        coerce=int,
        validate_choice=False,
        validators=[InputRequired(message=_l("Choose a template."))],
    )
    contact_id = SelectField(
        _l("For"),
        coerce=int,
        validate_choice=False,
        validators=[InputRequired(message=_l("Choose the contact point."))],
    )


class RevealForm(FlaskForm):
    """What to reveal, and why (the service checks the reason and counts the reveal)."""

    what = SelectField(
        _l("Reveal"),
        validate_choice=False,
        validators=[InputRequired(message=_l("Choose what to reveal."))],
    )
    reason = TextAreaField(
        _l("Reason"),
        validators=[
            InputRequired(message=_l("State why you need to see it.")),
            Length(min=10, max=500, message=_l("Between 10 and 500 characters.")),
        ],
    )


# --- the panel ---------------------------------------------------------------------------


def _contacts(case: Case) -> list[Contact]:
    """The contact points of the case's debtor: their own first (one indexed query)."""
    return list(
        db_session().scalars(
            select(Contact)
            .where(Contact.debtor_id == case.debtor_id)
            .order_by(Contact.relation != "self", Contact.id)
        )
    )


def _templates() -> list[MessageTemplate]:
    return list(
        db_session().scalars(
            select(MessageTemplate).order_by(MessageTemplate.name).limit(TEMPLATES_SHOWN)
        )
    )


def _contact_label(contact: Contact) -> str:
    kind = str(CONTACT_KINDS.get(contact.kind, contact.kind))
    if contact.relation == "self":
        return _("%(kind)s %(value)s (debtor)", kind=kind, value=contact.value_masked)
    return _(
        "%(kind)s %(value)s (%(relation)s, third party)",
        kind=kind,
        value=contact.value_masked,
        relation=contact.relation,
    )


def _today() -> dt.date:
    return tenant_today(g.tenant.timezone)


def _forms(
    account: Account, debtor: Debtor, contacts: list[Contact], limits: dict[str, Any]
) -> dict[str, Any]:
    """Fresh forms, with their defaults and choices."""
    today = limits["today"]
    promise = PromiseForm(prefix="promise", formdata=None)
    promise.due_date.data = today + dt.timedelta(days=1)
    plan = PlanForm(prefix="plan", formdata=None)
    plan.count.data = 6
    plan.frequency.data = plans.Frequency.MONTHLY.value
    plan.first_due.data = today + dt.timedelta(days=7)
    plan.total.data = account.outstanding_total
    settlement = SettlementForm(prefix="settlement", formdata=None)
    open_days = min(DEFAULT_OFFER_DAYS, limits["work"].settlement_max_days)
    settlement.expires_on.data = today + dt.timedelta(days=open_days)
    return {
        "promise_form": promise,
        "plan_form": plan,
        "settlement_form": settlement,
        "template_form": _template_form(contacts, formdata=None),
        "reveal_form": _reveal_form(debtor, contacts, formdata=None),
    }


def _template_form(contacts: list[Contact], formdata: Any = None) -> TemplateForm:
    form = TemplateForm(prefix="template", formdata=formdata)
    form.template_id.choices = [SelectChoice(t.id, _template_label(t)) for t in _templates()]
    form.contact_id.choices = [SelectChoice(c.id, _contact_label(c)) for c in contacts]
    return form


def _template_label(template: MessageTemplate) -> str:
    channel = str(CHANNELS.get(template.channel, template.channel))
    if template.audience == TemplateAudience.THIRD_PARTY:
        return _("%(name)s · %(channel)s · third party", name=template.name, channel=channel)
    return _("%(name)s · %(channel)s", name=template.name, channel=channel)


def _reveal_choices(debtor: Debtor, contacts: list[Contact]) -> list[SelectChoice]:
    choices = [
        SelectChoice(
            REVEAL_NAME, _("Debtor's name %(masked)s", masked=name_for_caller(debtor.full_name))
        )
    ]
    if debtor.national_id_masked:
        choices.append(
            SelectChoice(
                REVEAL_NATIONAL_ID, _("National id %(masked)s", masked=debtor.national_id_masked)
            )
        )
    choices += [
        SelectChoice(f"contact:{c.id}", _contact_label(c))
        for c in contacts
        if c.kind is not ContactKind.ADDRESS
    ]
    return choices


def _reveal_form(debtor: Debtor, contacts: list[Contact], formdata: Any = None) -> RevealForm:
    form = RevealForm(prefix="reveal", formdata=formdata)
    form.what.choices = _reveal_choices(debtor, contacts)
    return form


def _limits(case: Case) -> dict[str, Any]:
    """The tenant's limits the forms show beside their fields, and the caller's level."""
    session = db_session()
    today = _today()
    work = current_settings(session)
    return {
        "today": today,
        "work": work,
        "promise_max_days": promises.MAX_PROMISE_DAYS,
        "promise_last_day": today + dt.timedelta(days=promises.MAX_PROMISE_DAYS),
        "offer_last_day": today + dt.timedelta(days=work.settlement_max_days),
        "max_instalments": plans.MAX_INSTALMENTS,
        "discount": settlements.limits_for(
            session, case_id=case.id, tenant_id=g.tenant.id, day=today
        ),
        "my_level": settlements.level_of(page_principal()),
    }


def _panel(case: Case, **forms: FlaskForm) -> dict[str, Any]:
    """The panel's context, with ``forms`` (a refused one, the user's input kept) in place
    of the fresh ones."""
    session = db_session()
    account = session.get(Account, case.account_id)
    debtor = session.get(Debtor, case.debtor_id)
    assert account is not None
    assert debtor is not None
    contacts = _contacts(case)
    limits = _limits(case)
    return {
        "case": case,
        "balance": account.outstanding_total,
        "currency": account.currency,
        "debtor_name": name_for_caller(debtor.full_name),
        "tenant": g.tenant,
        "contacts": contacts,
        "limits": limits,
        "approval": ApprovalLevel,
        "today": limits["today"],
        **_forms(account, debtor, contacts, limits),
        **forms,
    }


def actions_panel(case: Case) -> dict[str, Any]:
    """What the case screen's actions partial (``work/case/_actions.html``) needs, as
    ``actions``: the five forms, the tenant's limits, the templates and contact points."""
    return _panel(case)


@blp.context_processor
def _actions_for_templates() -> dict[str, Any]:
    # The partial computes its own context when the including page did not hand it over.
    return {"actions_panel": actions_panel}


# --- answering -----------------------------------------------------------------------------


#: A service's refusal (its English text) as the page says it, beside the field it is
#: about (None: above the form). Anything not listed is shown as the service said it.
REFUSALS: tuple[tuple[re.Pattern[str], str | None, Any], ...] = (
    (
        re.compile(r"a promise's date cannot be in the past"),
        "due_date",
        _l("The date cannot be in the past."),
    ),
    (
        re.compile(r"a promise's date must be within (?P<days>\d+) days"),
        "due_date",
        _l("A promise is at most %(days)s days ahead; further out, agree a payment plan."),
    ),
    (
        re.compile(r"a promise's amount must be positive"),
        "amount",
        _l("The amount must be above zero."),
    ),
    (
        re.compile(r"case \d+ already has a pending promise \((?P<id>\d+)\)"),
        None,
        _l("The case already has a pending promise (%(id)s)."),
    ),
    (
        re.compile(r"a plan has between 1 and (?P<max>\d+) instalments"),
        "count",
        _l("A plan has between 1 and %(max)s instalments."),
    ),
    (
        re.compile(r"the first instalment cannot be due in the past"),
        "first_due",
        _l("The first instalment cannot be due in the past."),
    ),
    (
        re.compile(r"every instalment amount must be positive"),
        "count",
        _l("Every instalment must be above zero: fewer instalments, or a larger total."),
    ),
    (
        re.compile(r"case \d+ already has an active plan \((?P<id>\d+)\)"),
        None,
        _l("The case already has an active payment plan (%(id)s)."),
    ),
    (
        re.compile(r"the amounts set reach the total"),
        "total",
        _l("The amounts you set already reach the total; clear one or raise the total."),
    ),
    (
        re.compile(r"the plan's total is above the balance (?P<balance>\S+)"),
        "total",
        _l("The plan cannot ask for more than the balance."),
    ),
    (
        re.compile(r"an offer cannot expire in the past"),
        "expires_on",
        _l("The offer cannot end in the past."),
    ),
    (
        re.compile(r"an offer may stay open at most (?P<days>\d+) days"),
        "expires_on",
        _l("An offer stays open at most %(days)s days."),
    ),
    (
        re.compile(r"the settled amount must be above 0 and at most the balance"),
        "amount",
        _l("The amount must be above zero and at most the balance."),
    ),
    (
        re.compile(r"case \d+ already has an open settlement offer \((?P<id>\d+)\)"),
        None,
        _l("The case already has an open settlement offer (%(id)s)."),
    ),
    (
        re.compile(r"case \d+ is (?P<status>\w+); offers are made on a case being worked"),
        None,
        _l("Offers are made only on a case being worked; this one is %(status)s."),
    ),
    (
        re.compile(r"only a third-party template may be sent to a third party"),
        "template_id",
        _l("This contact point is a third party: only a third-party template may go to them."),
    ),
    (
        re.compile(r"a third-party template may not disclose the debt: remove (?P<what>.+)"),
        "template_id",
        _l("This template tells a third party about the debt (%(what)s); it cannot be used."),
    ),
    (
        re.compile(r"a third-party template may not carry an amount"),
        "template_id",
        _l("This template tells a third party an amount; it cannot be used."),
    ),
    (
        re.compile(r"state the reason for the reveal in 10 to 500 characters"),
        "reason",
        _l("Between 10 and 500 characters."),
    ),
    (
        re.compile(r"the reason must not quote a phone or ID number"),
        "reason",
        _l("The reason must not quote a phone or ID number."),
    ),
    (
        re.compile(r"this debtor's personal data was erased.*"),
        None,
        _l("This debtor's personal data was erased at the end of retention."),
    ),
    (
        re.compile(r"the tenant sent no national id for this debtor"),
        "what",
        _l("The lender sent no national id for this debtor."),
    ),
)


def _refuse(form: FlaskForm, error: DomainError) -> None:
    """Put the service's refusal on the form: beside its field, or above the form."""
    text = error.error_message
    for pattern, field_name, message in REFUSALS:
        found = pattern.search(text)
        if found is None:
            continue
        said = str(message) % found.groupdict() if found.groupdict() else str(message)
        target = getattr(form, field_name, None) if field_name else None
        if target is not None:
            target.errors = [*target.errors, said]
        else:
            form.form_errors = [*form.form_errors, said]
        return
    form.form_errors = [*form.form_errors, _("Refused: %(reason)s", reason=text)]


def _back(case: Case) -> Response:
    return redirect(url_for("workspace.queue_case", case_id=case.id))


def _page(name: str, case: Case, status: int, **context: Any) -> Response:
    """An action's focused page: the case in one line, the action's form, a way back."""
    forms = {k: v for k, v in context.items() if k.endswith("_form")}
    rest = {k: v for k, v in context.items() if not k.endswith("_form")}
    body = render_template(f"work/actions/{name}.html", actions=_panel(case, **forms), **rest)
    return make_response(body, status)


def _is_htmx() -> bool:
    return request.headers.get("HX-Request") == "true"


# --- promise -------------------------------------------------------------------------------


@blp.post("/<slug:tenant_slug>/cases/<int:case_id>/promise", endpoint="queue_case_promise")
@workspace_case_page
def promise(case_id: int) -> Response:
    """Record the debtor's promise to pay an amount by a date."""
    case = reachable_case(case_id)
    form = PromiseForm(prefix="promise")
    if not form.validate_on_submit():
        return _page("promise", case, 422, promise_form=form)
    assert form.amount.data is not None
    assert form.due_date.data is not None
    try:
        made = promises.create_promise(
            db_session(),
            case=case,
            amount=form.amount.data,
            due_date=form.due_date.data,
            actor=page_principal(),
            today=_today(),
        )
    except DomainError as error:  # the 422 rolls the request's transaction back
        _refuse(form, error)
        return _page("promise", case, 422, promise_form=form)
    flash(
        _(
            "Promise to pay recorded: %(amount)s by %(date)s.",
            amount=show_money(made.amount, made.currency),
            date=show_date(made.due_date),
        )
    )
    return _back(case)


# --- plan ----------------------------------------------------------------------------------


PREVIEW = "preview"
SAVE = "save"


def _schedule(form: PlanForm, account: Account) -> list[tuple[dt.date, Decimal]]:
    """The schedule the calculator's inputs give (the preview's and the saved one)."""
    assert form.count.data is not None
    assert form.first_due.data is not None
    count = form.count.data
    total = form.total.data if form.total.data is not None else account.outstanding_total
    chosen = [entry.data for entry in form.amounts.entries][:count] if count > 0 else []
    return plans.calculated_schedule(
        total=total,
        count=count,
        first_due=form.first_due.data,
        frequency=plans.Frequency(form.frequency.data),
        amounts=chosen,
        currency=account.currency,
        balance=account.outstanding_total,
        today=_today(),
    )


@blp.post("/<slug:tenant_slug>/cases/<int:case_id>/plan", endpoint="queue_case_plan")
@workspace_case_page
def plan(case_id: int) -> Response:
    """Preview the calculated schedule (the panel's htmx swap, or the plan page), or save
    it as the case's payment plan."""
    case = reachable_case(case_id)
    session = db_session()
    account = session.get(Account, case.account_id)
    assert account is not None
    form = PlanForm(prefix="plan")
    action = SAVE if request.form.get("plan-action") == SAVE else PREVIEW
    schedule: list[tuple[dt.date, Decimal]] | None = None
    if form.validate_on_submit():
        try:
            schedule = _schedule(form, account)
            if action == SAVE:
                created = plans.create_plan(
                    session,
                    case=case,
                    instalments=schedule,
                    actor=page_principal(),
                    today=_today(),
                )
                flash(
                    _(
                        "Payment plan agreed: %(n)s instalments, %(total)s.",
                        n=len(created.instalments),
                        total=show_money(created.total_amount, created.currency),
                    )
                )
                return _back(case)
        except DomainError as error:  # the 422 rolls the request's transaction back
            _refuse(form, error)
            schedule = None
    valid = schedule is not None
    context = {
        "plan_form": form,
        "schedule": schedule,
        "schedule_total": sum((amount for _, amount in schedule), Decimal(0)) if schedule else None,
    }
    if _is_htmx() and action == PREVIEW:
        # Swapped into the panel: htmx swaps 200s only, so errors come back as a 200 too.
        body = render_template(
            "work/actions/_plan_schedule.html",
            actions=_panel(case, plan_form=form),
            list_errors=True,
            **context,
        )
        return make_response(body, 200)
    return _page("plan", case, 200 if valid else 422, **context)


# --- settlement ------------------------------------------------------------------------------


def _offer_amount(form: SettlementForm, account: Account) -> Decimal | None:
    """The amount the form asks to settle for: typed, or the discount's."""
    if form.amount.data is not None:
        return form.amount.data
    if form.discount.data is not None:
        return settlements.amount_for_discount(
            account.outstanding_total, form.discount.data, account.currency
        )
    return None


@blp.route(
    "/<slug:tenant_slug>/cases/<int:case_id>/settlement/level",
    methods=["GET", "POST"],
    endpoint="queue_case_settlement_level",
)
@workspace_case_page
def settlement_level(case_id: int) -> Response:
    """Who would approve the offer as typed so far (the panel asks as the amount changes)."""
    case = reachable_case(case_id)
    account = db_session().get(Account, case.account_id)
    assert account is not None
    data = request.args if request.method == "GET" else request.form
    form = SettlementForm(prefix="settlement", formdata=data, meta={"csrf": False})
    form.amount.validate(form)
    form.discount.validate(form)
    level: settlements.OfferLevel | None = None
    amount = None if form.amount.errors or form.discount.errors else _offer_amount(form, account)
    if amount is not None:
        try:
            level = settlements.approval_level(
                db_session(), case=case, amount=amount, tenant_id=g.tenant.id, today=_today()
            )
        except DomainError as error:
            _refuse(form, error)
    problems = [*form.amount.errors, *form.discount.errors, *form.form_errors]
    problem = problems[0] if problems else None
    limits = _limits(case)
    body = render_template(
        "work/actions/_settlement_level.html",
        actions={"limits": limits, "approval": ApprovalLevel},
        level=level,
        within=level is not None and settlements.covers(limits["my_level"], level.required),
        problem=problem,
    )
    return make_response(body, 200)


@blp.post("/<slug:tenant_slug>/cases/<int:case_id>/settlement", endpoint="queue_case_settlement")
@workspace_case_page
def settlement(case_id: int) -> Response:
    """Offer a settlement: approved at once within the caller's limit, else sent up."""
    case = reachable_case(case_id)
    session = db_session()
    account = session.get(Account, case.account_id)
    assert account is not None
    form = SettlementForm(prefix="settlement")
    if not form.validate_on_submit():
        return _page("settlement", case, 422, settlement_form=form)
    amount = _offer_amount(form, account)
    assert amount is not None
    assert form.expires_on.data is not None
    principal = page_principal()
    try:
        offer = settlements.offer_settlement(
            session,
            case=case,
            amount=amount,
            expires_on=form.expires_on.data,
            actor=principal,
            level=settlements.level_of(principal),
            tenant_id=g.tenant.id,
            today=_today(),
            note=(form.reason.data or "").strip(),
        )
    except DomainError as error:  # the 422 rolls the request's transaction back
        _refuse(form, error)
        return _page("settlement", case, 422, settlement_form=form)
    shown = {
        "amount": show_money(offer.amount, offer.currency),
        "date": show_date(offer.expires_on),
    }
    if offer.status is SettlementStatus.APPROVED:
        flash(_("Settlement approved: %(amount)s, to be paid by %(date)s.", **shown))
    elif offer.required_level is ApprovalLevel.MANAGER:
        flash(_("Settlement of %(amount)s sent to your agency manager for approval.", **shown))
    else:
        flash(_("Settlement of %(amount)s sent to the lender for approval.", **shown))
    return _back(case)


# --- template --------------------------------------------------------------------------------


def _masked(text: str | None, names: list[str]) -> str | None:
    """``text`` with each of ``names`` as the caller may see it (the message sent keeps
    them whole; the screen shows what the masking policy allows)."""
    if text is None:
        return None
    for name in sorted({n for n in names if n}, key=len, reverse=True):
        text = text.replace(name, name_for_caller(name))
    return text


@blp.post("/<slug:tenant_slug>/cases/<int:case_id>/template", endpoint="queue_case_template")
@workspace_case_page
def template(case_id: int) -> Response:
    """Fill one of the tenant's templates for a contact point, to read before sending."""
    case = reachable_case(case_id)
    session = db_session()
    contacts = _contacts(case)
    form = _template_form(contacts, formdata=request.form)
    if not form.validate_on_submit():
        return _template_answer(case, form, None, 422)
    chosen = session.get(MessageTemplate, form.template_id.data)
    contact = next((c for c in contacts if c.id == form.contact_id.data), None)
    if chosen is None:
        form.template_id.errors = [_("There is no such template.")]
        return _template_answer(case, form, None, 422)
    if contact is None:
        form.contact_id.errors = [_("This contact point is not on the case.")]
        return _template_answer(case, form, None, 422)
    try:
        rendered = render_for(
            session, chosen, case_id=case.id, contact_id=contact.id, company=g.tenant.name
        )
    except DomainError as error:  # a 422 rolls back; rendering stores nothing anyway
        _refuse(form, error)
        return _template_answer(case, form, None, 422)
    assert rendered is not None  # the contact is the case debtor's
    debtor = session.get(Debtor, case.debtor_id)
    assert debtor is not None
    names = [debtor.full_name, contact.name or ""]
    text = {
        "subject": _masked(rendered["subject"], names),
        "body": _masked(rendered["body"], names),
        "template": chosen,
        "contact": contact,
        "contact_label": _contact_label(contact),
        "channel": CHANNELS.get(chosen.channel, chosen.channel),
    }
    return _template_answer(case, form, text, 200)


def _template_answer(
    case: Case, form: TemplateForm, text: dict[str, Any] | None, status: int
) -> Response:
    if _is_htmx():
        body = render_template(
            "work/actions/_template_text.html",
            actions=_panel(case, template_form=form),
            text=text,
        )
        return make_response(body, 200)  # htmx swaps 200s only
    return _page("template", case, status, template_form=form, text=text)


# --- reveal ----------------------------------------------------------------------------------


@blp.post("/<slug:tenant_slug>/cases/<int:case_id>/reveal", endpoint="queue_case_reveal")
@workspace_case_page
def reveal_value(case_id: int) -> Response:
    """Show one masked value in full, once, for a stated reason (audited, never cached)."""
    case = reachable_case(case_id)
    session = db_session()
    debtor = session.get(Debtor, case.debtor_id)
    assert debtor is not None
    contacts = _contacts(case)
    form = _reveal_form(debtor, contacts, formdata=request.form)
    revealed: Revealed | None = None
    retry_after: int | None = None
    status = 200
    choice = _reveal_choice(form) if form.validate_on_submit() else None
    if choice is None:
        status = 422
    else:
        field, contact_id = choice
        try:
            revealed = reveal(
                session,
                objects=platform(),
                tenant_id=g.tenant.id,
                principal=page_principal(),
                debtor_id=case.debtor_id,
                field=field,
                reason=form.reason.data or "",
                contact_id=contact_id,
            )
        except RevealError as error:
            if error.status in (403, 404):
                abort(error.status, message=error.message)
            if error.status == 429:
                retry_after = error.retry_after
                form.form_errors = [
                    _("Too many reveals this hour. Try again in %(s)s seconds.", s=retry_after)
                ]
            else:
                _refuse(form, error)
            status = error.status if error.status == 429 else 422
    label = next((c.label for c in _offered(form) if c.value == form.what.data), None)
    response = _page("reveal", case, status, reveal_form=form, revealed=revealed, label=label)
    # The page holds (or was asked for) a clear value: no cache may keep it.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    if retry_after:
        response.headers["Retry-After"] = str(retry_after)
    return response


def _offered(form: RevealForm) -> list[SelectChoice]:
    choices = form.what.choices
    return choices if isinstance(choices, list) else []


def _reveal_choice(form: RevealForm) -> tuple[str, int | None] | None:
    """The reveal service's field and contact id for the value chosen (None: not one of
    the choices offered; the error is on the field)."""
    what = form.what.data or ""
    offered = {choice.value for choice in _offered(form)}
    if what in offered and what in (REVEAL_NAME, REVEAL_NATIONAL_ID):
        return what, None
    kind, _sep, contact_id = what.partition(":")
    if what in offered and kind == "contact" and contact_id.isdigit():
        return "contact", int(contact_id)
    form.what.errors = [*form.what.errors, _("Choose what to reveal.")]
    return None
