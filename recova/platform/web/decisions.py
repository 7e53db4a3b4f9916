"""A settlement offer decided from a web form, the same on the tenant's approvals page
(``portal.approvals``) and the agency manager's (``workspace.approvals``): the form, the
service call at the signed-in user's level, and the message after it."""

from __future__ import annotations

from typing import Any

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from sqlalchemy.orm import Session
from wtforms import StringField, TextAreaField
from wtforms.validators import AnyOf, Length, Optional

from recova.platform.auth.principal import Principal
from recova.platform.work import settlements
from recova.platform.work.models import Settlement
from recova.tenants.models import tenant_today

APPROVE = "approve"
REFUSE = "refuse"


class SettlementDecisionForm(FlaskForm):
    """Approve or refuse one offer; a refusal says why."""

    decision = StringField(validators=[AnyOf([APPROVE, REFUSE])])
    note = TextAreaField(_l("Reason"), validators=[Optional(), Length(max=500)])

    def validate(self, extra_validators: Any = None) -> bool:
        valid = super().validate(extra_validators)
        if self.decision.data == REFUSE and not (self.note.data or "").strip():
            self.note.errors = [*self.note.errors, _("Give the reason for refusing.")]
            valid = False
        return valid


def decide_offer(
    session: Session,
    settlement: Settlement,
    form: SettlementDecisionForm,
    principal: Principal,
    *,
    timezone: str,
) -> str:
    """Decide the offer as the validated ``form`` says, at ``principal``'s level (a
    ``DomainError`` when the service refuses); returns the message to flash."""
    approve = form.decision.data == APPROVE
    settlements.decide_settlement(
        session,
        settlement=settlement,
        approve=approve,
        actor=principal,
        level=settlements.level_of(principal),
        note=(form.note.data or "").strip() or None,
        today=tenant_today(timezone),
    )
    if approve:
        return _("Settlement offer %(id)s approved.", id=settlement.id)
    return _("Settlement offer %(id)s refused.", id=settlement.id)
