"""Contact work over the API: attempts through the compliance gate, outcomes, codes,
templates and do-not-contact marks.

Agency staff reach only cases placed with their agency now, and a collector among them
only the cases assigned to them on that placement now (anything else is 404, as if it
did not exist); tenant staff reach every case of their tenant. The rule is
``recova.platform.auth.reach``, for cases and for debtors alike.
"""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import Select, select

from recova.platform.auth.access import access
from recova.platform.auth.models import Role
from recova.platform.auth.principal import Principal, current_principal
from recova.platform.auth.reach import may_reach_debtor, reachable_case_or_404
from recova.platform.cases.models import Case
from recova.platform.compliance import notices
from recova.platform.compliance.gate import Actor, attempt_contact
from recova.platform.compliance.schemas import NoticeRecordSchema, NoticeSchema
from recova.platform.contact import schemas, services
from recova.platform.contact.models import Channel, ContactAttempt, MessageTemplate, OutcomeCode
from recova.platform.contact.templates import save_template
from recova.platform.kernel.api import SelectPage, one_or_404, tenant_routes
from recova.platform.kernel.errors import abort
from recova.platform.kernel.extension import platform
from recova.platform.kernel.request_scope import db_session
from recova.tenants.scope import current_tenant

blp = Blueprint("contact", __name__, description="Contact attempts, outcomes and templates")

READERS = (Role.TENANT_ADMIN, Role.TENANT_ANALYST, Role.PLATFORM_ADMIN)
WRITERS = (Role.TENANT_ADMIN, Role.PLATFORM_ADMIN)
AGENCY_STAFF = (Role.AGENCY_MANAGER, Role.COLLECTOR)
#: Who makes contact: agency staff, and the tenant's own staff (platform admins do not).
CONTACTORS = (Role.TENANT_ADMIN, *AGENCY_STAFF)


def _principal() -> Principal:
    principal = current_principal()
    assert principal is not None  # the access rule ran first
    return principal


def _reachable_case(case_id: int) -> Case:
    """The case, if the caller may work it (agency staff: placed with their agency now; a
    collector: also assigned to them on that placement now, as the gate requires)."""
    return reachable_case_or_404(db_session(), _principal(), case_id)


@tenant_routes(blp, "/cases/<int:case_id>/attempts")
class AttemptCollection(MethodView):
    @access(*READERS, *AGENCY_STAFF, scope="contact:read", tenant=True)
    @blp.response(200, schemas.AttemptSchema(many=True))
    @blp.paginate(SelectPage)
    def get(self, case_id: int) -> Select[Any]:
        """The case's contact attempts, allowed and blocked, newest first."""
        _reachable_case(case_id)
        return services.attempts_of_case(case_id)

    @access(*CONTACTORS, scope="contact:write", tenant=True)
    @blp.arguments(schemas.AttemptCreateSchema)
    @blp.response(201, schemas.AttemptSchema)
    def post(self, data: dict[str, Any], case_id: int) -> ContactAttempt:
        """Ask to make a contact attempt now: the compliance gate decides.

        Allowed: the attempt is recorded ``pending``; record its outcome next. Blocked:
        it is recorded ``blocked`` with the rule, a message and ``next_allowed_at``.
        Either way the answer is 201 with the stored attempt: a block is a decision to
        keep, not an error to roll back.
        """
        attempt = attempt_contact(
            db_session(),
            platform(),
            tenant=current_tenant(),
            case_id=case_id,
            contact_id=data["contact_id"],
            channel=Channel(data["channel"]),
            actor=Actor.of(_principal()),
            template_id=data.get("template_id"),
            notes=data.get("notes"),
        )
        if attempt is None:
            abort(404, message=f"no case {case_id} with contact {data['contact_id']}")
        return attempt


@tenant_routes(blp, "/cases/<int:case_id>/attempts/<bigint:attempt_id>/outcome")
class AttemptOutcome(MethodView):
    @access(*CONTACTORS, scope="contact:write", tenant=True)
    @blp.arguments(schemas.OutcomeSchema)
    @blp.response(200, schemas.AttemptSchema)
    def post(self, data: dict[str, Any], case_id: int, attempt_id: int) -> ContactAttempt:
        """Record a pending attempt's outcome with one of the tenant's outcome codes."""
        _reachable_case(case_id)
        attempt = one_or_404(
            select(ContactAttempt)
            .where(ContactAttempt.id == attempt_id, ContactAttempt.case_id == case_id)
            .with_for_update(),
            f"attempt {attempt_id} on case {case_id}",
        )
        return services.record_outcome(
            db_session(),
            attempt,
            jurisdiction=current_tenant().jurisdiction.value,
            code=data["code"],
            actor=_principal(),
            notes=data.get("notes"),
            recording_ref=data.get("recording_ref"),
        )


@tenant_routes(blp, "/cases/<int:case_id>/validation-notice")
class ValidationNoticeItem(MethodView):
    @access(*CONTACTORS, scope="contact:write", tenant=True)
    @blp.arguments(NoticeRecordSchema)
    @blp.response(200, NoticeSchema)
    def post(self, data: dict[str, Any], case_id: int) -> Any:
        """Record that the case's validation notice was sent (the first record stands)."""
        _reachable_case(case_id)
        principal = _principal()
        return notices.record_notice(
            db_session(),
            case_id=case_id,
            channel=data["channel"],
            sent_at=data.get("sent_at"),
            recorded_by=None if principal.is_client else principal.subject_id,
        )


@tenant_routes(blp, "/debtors/<int:debtor_id>/do-not-contact")
class DoNotContact(MethodView):
    @access(*CONTACTORS, scope="contact:write", tenant=True)
    @blp.arguments(schemas.DoNotContactSchema)
    @blp.response(200, schemas.DoNotContactResultSchema)
    def put(self, data: dict[str, Any], debtor_id: int) -> dict[str, Any]:
        """Mark the debtor (or one contact) do-not-contact; only the tenant clears a mark.

        Agency staff: a debtor with a case within their reach (a collector's own cases).
        """
        session = db_session()
        principal = _principal()
        if not may_reach_debtor(session, principal, debtor_id):
            abort(404, message=f"no debtor {debtor_id}")
        if principal.is_agency_user and not data["do_not_contact"]:
            abort(403, message="only the tenant clears a do-not-contact mark")
        contact_id = data.get("contact_id")
        target = services.set_do_not_contact(
            session, debtor_id=debtor_id, contact_id=contact_id, value=data["do_not_contact"]
        )
        if target is None:
            abort(
                404,
                message=f"no debtor {debtor_id}" + (f" contact {contact_id}" if contact_id else ""),
            )
        return {
            "debtor_id": debtor_id,
            "contact_id": contact_id,
            "do_not_contact": target.do_not_contact,
        }


@tenant_routes(blp, "/contact/outcome-codes")
class OutcomeCodeCollection(MethodView):
    @access(*READERS, *AGENCY_STAFF, scope="contact:read", tenant=True)
    @blp.response(200, schemas.OutcomeCodeSchema(many=True))
    def get(self) -> list[OutcomeCode]:
        """The tenant's outcome codes and the canonical result each maps to."""
        return services.outcome_codes(db_session())

    @access(*WRITERS, scope="compliance:write", tenant=True)
    @blp.arguments(schemas.OutcomeCodeCreateSchema)
    @blp.response(201, schemas.OutcomeCodeSchema)
    def post(self, data: dict[str, Any]) -> OutcomeCode:
        """Add an outcome code, mapped to a canonical result the rules read."""
        return services.create_outcome_code(
            db_session(),
            code=data["code"],
            label=data["label"],
            result=data["result"].value,
            actor=_principal(),
        )


@tenant_routes(blp, "/contact/outcome-codes/<int:code_id>")
class OutcomeCodeItem(MethodView):
    @access(*WRITERS, scope="compliance:write", tenant=True)
    @blp.arguments(schemas.OutcomeCodeUpdateSchema)
    @blp.response(200, schemas.OutcomeCodeSchema)
    def patch(self, data: dict[str, Any], code_id: int) -> OutcomeCode:
        """Relabel or retire a code (its result never changes: history reads it)."""
        code = one_or_404(
            select(OutcomeCode).where(OutcomeCode.id == code_id), f"outcome code {code_id}"
        )
        return services.update_outcome_code(db_session(), code, data, actor=_principal())


@tenant_routes(blp, "/contact/templates")
class TemplateCollection(MethodView):
    @access(*READERS, *AGENCY_STAFF, scope="contact:read", tenant=True)
    @blp.response(200, schemas.TemplateSchema(many=True))
    def get(self) -> list[MessageTemplate]:
        """The tenant's message templates."""
        return list(db_session().scalars(select(MessageTemplate).order_by(MessageTemplate.id)))

    @access(*WRITERS, scope="compliance:write", tenant=True)
    @blp.arguments(schemas.TemplateSaveSchema)
    @blp.response(201, schemas.TemplateSchema)
    def post(self, data: dict[str, Any]) -> MessageTemplate:
        """Add a template; a third-party one naming an amount or the debt is a 422."""
        return save_template(
            db_session(), **{**data, "audience": data["audience"].value}, actor=_principal()
        )


def _template(template_id: int) -> MessageTemplate:
    return one_or_404(
        select(MessageTemplate).where(MessageTemplate.id == template_id),
        f"template {template_id}",
    )


@tenant_routes(blp, "/contact/templates/<int:template_id>")
class TemplateItem(MethodView):
    @access(*WRITERS, scope="compliance:write", tenant=True)
    @blp.arguments(schemas.TemplateSaveSchema)
    @blp.response(200, schemas.TemplateSchema)
    def put(self, data: dict[str, Any], template_id: int) -> MessageTemplate:
        """Replace a template's text (validated again)."""
        return save_template(
            db_session(),
            **{**data, "audience": data["audience"].value},
            template=_template(template_id),
            actor=_principal(),
        )


@tenant_routes(blp, "/contact/templates/<int:template_id>/render")
class TemplateRender(MethodView):
    @access(*READERS, *AGENCY_STAFF, scope="contact:read", tenant=True)
    @blp.arguments(schemas.RenderRequestSchema)
    @blp.response(200, schemas.RenderedSchema)
    def post(self, data: dict[str, Any], template_id: int) -> dict[str, Any]:
        """Fill a template for a case and one contact; a third party gets no debt details."""
        template = _template(template_id)
        _reachable_case(data["case_id"])
        rendered = services.render_for(
            db_session(),
            template,
            case_id=data["case_id"],
            contact_id=data["contact_id"],
            company=current_tenant().name,
        )
        if rendered is None:
            abort(404, message=f"no contact {data['contact_id']} on case {data['case_id']}")
        return rendered
