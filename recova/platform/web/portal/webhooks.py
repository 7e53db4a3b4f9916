"""The portal's webhooks: endpoints the tenant registers, their secrets and delivery logs.

The same services as the JSON API (``recova.platform.webhooks.services``): registering,
changing, rotating, testing, deleting and replaying. A secret is shown once, in the answer
to the request that made it (register, rotate), never stored in the session and never
cached (``Cache-Control: no-store``). Analysts read every page (no secret is on any page
they can open) and the server refuses their changes (``@portal_page``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flask import flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from sqlalchemy import select
from werkzeug.wrappers import Response
from wtforms import BooleanField, IntegerField, SelectMultipleField, StringField
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional

from recova.platform.auth.principal import Principal
from recova.platform.kernel.errors import DomainError, abort
from recova.platform.kernel.extension import platform
from recova.platform.kernel.request_scope import db_session
from recova.platform.web.pages import portal_page
from recova.platform.web.portal import blp
from recova.platform.webhooks import services
from recova.platform.webhooks.events import SUBSCRIBABLE
from recova.platform.webhooks.models import (
    DELIVERY_STATUSES,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)

#: Deliveries per page of an endpoint's log, and endpoints per page of the list.
LOG_PAGE = 25
ENDPOINT_PAGE = 50

#: The families of event types, in the order the checkboxes show them.
EVENT_GROUPS: dict[str, Any] = {
    "ingestion": _l("Portfolio files"),
    "case": _l("Cases"),
    "promise": _l("Promises to pay"),
    "plan": _l("Payment plans"),
    "settlement": _l("Settlements"),
    "payment": _l("Payments"),
    "dispute": _l("Disputes"),
    "invoice": _l("Invoices"),
    "audit": _l("Audit"),
}
#: What each event type means, in the page's language.
EVENT_LABELS: dict[str, Any] = {
    "ingestion.run.completed": _l("An ingestion run (portfolio or payments) finished"),
    "ingestion.run.failed": _l("An ingestion run failed"),
    "case.placed": _l("A case was placed with an agency"),
    "case.recalled": _l("A case's placement was recalled"),
    "promise.created": _l("A promise to pay was recorded"),
    "promise.kept": _l("A promise was paid in full"),
    "promise.partly_kept": _l("A promise's grace period ended with part of it paid"),
    "promise.broken": _l("A promise's grace period ended with nothing paid"),
    "plan.created": _l("A payment plan was agreed"),
    "plan.completed": _l("Every instalment of a plan was paid"),
    "plan.broken": _l("A plan broke after too many missed instalments"),
    "settlement.requested": _l("A settlement was offered"),
    "settlement.decided": _l("A settlement offer was approved or rejected"),
    "payment.attributed": _l("A payment was attributed to a placement"),
    "dispute.opened": _l("The debtor disputed a case"),
    "dispute.resolved": _l("A dispute was resolved"),
    "invoice.issued": _l("A monthly invoice was issued"),
    "audit.head.exported": _l("The day's audit chain head was exported"),
    "webhook.test": _l("A test event sent by hand"),
}
#: The services' refusals (English, for the API), in the page's language.
SERVICE_MESSAGES: dict[str, Any] = {
    "not a valid URL": _l("This is not a valid URL."),
    "must be an https:// URL": _l("The URL must start with https://."),
    "must name a host": _l("The URL must name a host."),
    "must not carry a user name or password": _l("The URL must not carry a user name or password."),
    "the host name could not be resolved": _l(
        "The host name could not be resolved: the receiver must exist to be registered."
    ),
    "the host is on a private or reserved network, which the platform may not reach": _l(
        "The host is on a private or reserved network (such as 10.x, 192.168.x or"
        " localhost), which the platform may not reach."
    ),
    "name at least one event type": _l("Choose at least one event type."),
}
#: Why the platform disabled an endpoint (``recova.platform.webhooks.delivery``).
DISABLED_REASONS: dict[str, Any] = {
    "the receiver answered 410 Gone": _l("the receiver answered 410 Gone"),
}
STATUS_LABELS: dict[str, Any] = {
    "active": _l("Active"),
    "failing": _l("Failing"),
    "disabled": _l("Disabled"),
    "pending": _l("Pending"),
    "delivered": _l("Delivered"),
    "failed": _l("Failed"),
    "cancelled": _l("Cancelled"),
}
STATUS_BADGES = {
    "active": "good",
    "delivered": "good",
    "failing": "bad",
    "failed": "bad",
    "disabled": "",
    "cancelled": "",
    "pending": "warn",
}


def event_choices() -> list[tuple[str, str]]:
    """Every subscribable event type, grouped by family then by name."""
    order = list(EVENT_GROUPS)
    return [
        (name, name)
        for name in sorted(SUBSCRIBABLE, key=lambda n: (order.index(n.split(".", 1)[0]), n))
    ]


def event_groups() -> list[tuple[Any, list[tuple[str, Any]]]]:
    """(family label, [(event type, what it means)]) in the checkboxes' order."""
    groups: dict[str, list[tuple[str, Any]]] = {key: [] for key in EVENT_GROUPS}
    for name, _label in event_choices():
        groups[name.split(".", 1)[0]].append((name, EVENT_LABELS[name]))
    return [(EVENT_GROUPS[key], items) for key, items in groups.items() if items]


class EndpointForm(FlaskForm):
    """Register an endpoint, or change one."""

    url = StringField(_l("Receiver URL"), validators=[DataRequired(), Length(max=2000)])
    description = StringField(_l("Description"), validators=[Optional(), Length(max=200)])
    event_types = SelectMultipleField(
        _l("Event types"),
        choices=event_choices,
        validate_choice=True,
        validators=[DataRequired(message=_l("Choose at least one event type."))],
    )


class EndpointStateForm(FlaskForm):
    enabled = BooleanField(_l("Enabled"))


class RotateForm(FlaskForm):
    grace_hours = IntegerField(
        _l("Hours the old secret keeps signing"),
        default=24,
        # InputRequired, not DataRequired: 0 (no grace period) is a valid choice.
        validators=[InputRequired(), NumberRange(min=0, max=168)],
    )


class ActionForm(FlaskForm):
    """A button's form: the CSRF token only (test, delete, replay)."""


@dataclass(frozen=True)
class EndpointRow:
    endpoint: WebhookEndpoint
    last: WebhookDelivery | None


def _principal() -> Principal:
    principal: Principal = g.page_principal
    return principal


def _actor() -> str:
    principal = _principal()
    return f"{principal.kind}:{principal.subject_id}"


def _endpoint(endpoint_id: int) -> WebhookEndpoint:
    """The tenant's endpoint, or 404 (another tenant's id is as if it did not exist)."""
    endpoint = db_session().get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        abort(404, message=_("There is no such webhook endpoint."))
    return endpoint


def _delivery(endpoint: WebhookEndpoint, delivery_id: int) -> WebhookDelivery:
    delivery = db_session().scalar(
        select(WebhookDelivery).where(
            WebhookDelivery.id == delivery_id, WebhookDelivery.endpoint_id == endpoint.id
        )
    )
    if delivery is None:
        abort(404, message=_("There is no such delivery."))
    return delivery


def service_message(message: str) -> str:
    """A service's refusal in the page's language (the text itself if it is not known)."""
    known = SERVICE_MESSAGES.get(message)
    return str(known) if known is not None else message


def disabled_reason(reason: str) -> str:
    """Why the platform disabled an endpoint, in the page's language."""
    known = DISABLED_REASONS.get(reason)
    return str(known) if known is not None else reason


def _int_arg(name: str) -> int | None:
    value = request.args.get(name, "")
    return int(value) if value.isascii() and value.isdigit() else None


def endpoints_page(after: int | None) -> tuple[list[EndpointRow], int | None]:
    """A page of endpoints by id with each one's newest delivery; the next page's cursor.

    The newest delivery comes from a lateral join on ``(endpoint_id, id)``, one index
    probe per endpoint, however long the logs are.
    """
    session = db_session()
    last = (
        select(WebhookDelivery.id)
        .where(WebhookDelivery.endpoint_id == WebhookEndpoint.id)
        .order_by(WebhookDelivery.id.desc())
        .limit(1)
        .correlate(WebhookEndpoint)
        .scalar_subquery()
    )
    statement = select(WebhookEndpoint, last).order_by(WebhookEndpoint.id).limit(ENDPOINT_PAGE + 1)
    if after is not None:
        statement = statement.where(WebhookEndpoint.id > after)
    found = session.execute(statement).all()
    more = len(found) > ENDPOINT_PAGE
    found = found[:ENDPOINT_PAGE]
    last_ids = [row[1] for row in found if row[1] is not None]
    deliveries = {
        d.id: d
        for d in session.scalars(select(WebhookDelivery).where(WebhookDelivery.id.in_(last_ids)))
    }
    rows = [EndpointRow(row[0], deliveries.get(row[1])) for row in found]
    return rows, (rows[-1].endpoint.id if more and rows else None)


def deliveries_page(
    endpoint: WebhookEndpoint, *, before: int | None, status: str | None
) -> tuple[list[WebhookDelivery], int | None]:
    """A page of the endpoint's delivery log, newest first; the next (older) page's cursor."""
    statement = (
        select(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id == endpoint.id)
        .order_by(WebhookDelivery.id.desc())
        .limit(LOG_PAGE + 1)
    )
    if before is not None:
        statement = statement.where(WebhookDelivery.id < before)
    if status is not None:
        statement = statement.where(WebhookDelivery.status == status)
    found = list(db_session().scalars(statement))
    more = len(found) > LOG_PAGE
    found = found[:LOG_PAGE]
    return found, (found[-1].id if more and found else None)


def _no_store(body: str, status: int = 200) -> Response:
    """A page holding a secret: never kept by the browser or a proxy."""
    response = Response(body, status=status, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


def _selected(form: EndpointForm) -> list[str]:
    return list(form.event_types.data or [])


def _field_error(form: FlaskForm, error: services.WebhookInvalid) -> None:
    """Put the service's refusal beside its field (or on the form)."""
    field = getattr(form, error.field, None)
    message = service_message(error.message)
    if field is not None:
        field.errors = [*field.errors, message]
    else:
        form.form_errors = [message]


def _render_list(form: EndpointForm, status: int = 200) -> tuple[str, int]:
    rows, next_after = endpoints_page(_int_arg("after"))
    return render_template(
        "portal/webhooks/list.html",
        rows=rows,
        next_after=next_after,
        form=form,
        groups=event_groups(),
        selected=_selected(form),
        labels=STATUS_LABELS,
        badges=STATUS_BADGES,
        disabled_reason=disabled_reason,
    ), status


@blp.route("/webhooks", methods=["GET", "POST"])
@portal_page
def webhooks() -> Any:
    """The tenant's webhook endpoints, and the form to register one."""
    form = EndpointForm()
    if request.method == "GET":
        return _render_list(form)
    if not form.validate_on_submit():
        return _render_list(form, 422)
    try:
        endpoint, secret = services.create_endpoint(
            db_session(),
            platform(),
            url=(form.url.data or "").strip(),
            event_types=_selected(form),
            description=(form.description.data or "").strip(),
            enabled=True,
            actor=_actor(),
        )
    except services.WebhookInvalid as error:
        _field_error(form, error)
        return _render_list(form, 422)
    return _no_store(
        render_template(
            "portal/webhooks/secret.html", endpoint=endpoint, secret=secret, rotated=False
        )
    )


def _render_detail(
    endpoint: WebhookEndpoint,
    *,
    form: EndpointForm | None = None,
    rotate: RotateForm | None = None,
    action_error: str | None = None,
    status: int = 200,
) -> tuple[str, int]:
    if form is None:
        form = EndpointForm(
            formdata=None,
            url=endpoint.url,
            description=endpoint.description,
            event_types=list(endpoint.event_types),
        )
    status_filter = request.args.get("status")
    if status_filter not in DELIVERY_STATUSES:
        status_filter = None
    deliveries, next_before = deliveries_page(
        endpoint, before=_int_arg("before"), status=status_filter
    )
    now = dt.datetime.now(dt.UTC)
    grace_until = endpoint.previous_secret_expires_at
    return render_template(
        "portal/webhooks/detail.html",
        endpoint=endpoint,
        form=form,
        rotate=rotate or RotateForm(formdata=None),
        action=ActionForm(formdata=None),
        action_error=action_error,
        groups=event_groups(),
        selected=_selected(form),
        deliveries=deliveries,
        next_before=next_before,
        status_filter=status_filter,
        statuses=DELIVERY_STATUSES,
        labels=STATUS_LABELS,
        badges=STATUS_BADGES,
        event_labels=EVENT_LABELS,
        disabled_reason=disabled_reason,
        grace_until=grace_until if grace_until is not None and grace_until > now else None,
    ), status


@blp.get("/webhooks/<int:endpoint_id>")
@portal_page
def webhooks_detail(endpoint_id: int) -> Any:
    """One endpoint: its state, its settings, its secret's rotation and its delivery log."""
    return _render_detail(_endpoint(endpoint_id))


@blp.post("/webhooks/<int:endpoint_id>")
@portal_page
def webhooks_update(endpoint_id: int) -> Any:
    """Change the endpoint's URL, description and event types."""
    endpoint = _endpoint(endpoint_id)
    form = EndpointForm()
    if not form.validate_on_submit():
        return _render_detail(endpoint, form=form, status=422)
    changes: Mapping[str, Any] = {
        "url": (form.url.data or "").strip(),
        "description": (form.description.data or "").strip(),
        "event_types": _selected(form),
    }
    try:
        services.update_endpoint(db_session(), platform(), endpoint, dict(changes))
    except services.WebhookInvalid as error:
        # The page shows the endpoint as stored (the 422 rolls the request back).
        db_session().expire(endpoint)
        _field_error(form, error)
        return _render_detail(endpoint, form=form, status=422)
    flash(_("The endpoint was saved."), "success")
    return redirect(url_for("portal.webhooks_detail", endpoint_id=endpoint.id))


@blp.post("/webhooks/<int:endpoint_id>/state")
@portal_page
def webhooks_state(endpoint_id: int) -> Any:
    """Enable or disable the endpoint (enabling clears the failing mark)."""
    endpoint = _endpoint(endpoint_id)
    form = EndpointStateForm()
    if not form.validate_on_submit():
        abort(400)
    services.update_endpoint(db_session(), platform(), endpoint, {"enabled": form.enabled.data})
    flash(
        _("The endpoint is enabled.") if endpoint.enabled else _("The endpoint is disabled."),
        "success",
    )
    return redirect(url_for("portal.webhooks_detail", endpoint_id=endpoint.id))


@blp.post("/webhooks/<int:endpoint_id>/rotate")
@portal_page
def webhooks_rotate(endpoint_id: int) -> Any:
    """A new secret, shown once; the old one keeps signing for the grace period."""
    endpoint = _endpoint(endpoint_id)
    form = RotateForm()
    if not form.validate_on_submit():
        return _render_detail(endpoint, rotate=form, status=422)
    endpoint, secret = services.rotate_secret(
        platform(), endpoint, grace=dt.timedelta(hours=form.grace_hours.data or 0)
    )
    db_session().flush()  # the page shows the rotation's times
    return _no_store(
        render_template(
            "portal/webhooks/secret.html", endpoint=endpoint, secret=secret, rotated=True
        )
    )


@blp.post("/webhooks/<int:endpoint_id>/test")
@portal_page
def webhooks_test(endpoint_id: int) -> Any:
    """Send a ``webhook.test`` event to this endpoint; its delivery joins the log."""
    endpoint = _endpoint(endpoint_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        services.send_test_event(db_session(), platform(), endpoint, tenant_id=g.tenant.id)
    except services.WebhookConflict:
        return _render_detail(
            endpoint,
            action_error=_("The endpoint is disabled: enable it before sending a test event."),
            status=409,
        )
    flash(_("A test event was queued; its delivery is at the top of the log."), "success")
    return redirect(url_for("portal.webhooks_detail", endpoint_id=endpoint.id))


@blp.post("/webhooks/<int:endpoint_id>/delete")
@portal_page
def webhooks_delete(endpoint_id: int) -> Any:
    """Remove the endpoint and its delivery log; nothing more is sent to it."""
    endpoint = _endpoint(endpoint_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    url = endpoint.url
    services.delete_endpoint(db_session(), endpoint)
    flash(_("The endpoint %(url)s was deleted with its delivery log.", url=url), "success")
    return redirect(url_for("portal.webhooks"))


def _attempts(delivery: WebhookDelivery) -> Sequence[WebhookAttempt]:
    return list(
        db_session().scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id == delivery.id)
            .order_by(WebhookAttempt.number)
        )
    )


@blp.get("/webhooks/<int:endpoint_id>/deliveries/<int:delivery_id>")
@portal_page
def webhooks_delivery(endpoint_id: int, delivery_id: int) -> Any:
    """One delivery: its body as sent and every attempt with its answer and latency."""
    endpoint = _endpoint(endpoint_id)
    delivery = _delivery(endpoint, delivery_id)
    return render_template(
        "portal/webhooks/delivery.html",
        endpoint=endpoint,
        delivery=delivery,
        attempts=_attempts(delivery),
        action=ActionForm(formdata=None),
        labels=STATUS_LABELS,
        badges=STATUS_BADGES,
        event_labels=EVENT_LABELS,
    )


@blp.post("/webhooks/<int:endpoint_id>/deliveries/<int:delivery_id>/replay")
@portal_page
def webhooks_replay(endpoint_id: int, delivery_id: int) -> Any:
    """Send the delivery again now, with the same ``webhook-id`` (a new attempt)."""
    endpoint = _endpoint(endpoint_id)
    delivery = _delivery(endpoint, delivery_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        services.replay_delivery(db_session(), platform(), delivery, tenant_id=g.tenant.id)
    except DomainError:
        flash(_("This delivery is being sent right now; replay it once it has finished."), "error")
    else:
        flash(_("The delivery was queued to be sent again."), "success")
    return redirect(
        url_for("portal.webhooks_delivery", endpoint_id=endpoint.id, delivery_id=delivery.id)
    )
