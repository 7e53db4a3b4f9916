"""Message templates: ``{placeholders}`` checked when saved and again when rendered.

A third party (a relative, a colleague) may be asked to pass on a message, never told
about the debt: a third-party template may not name any amount or debt placeholder, nor
carry an amount written into its text, nor words that say there is a debt (owe, overdue,
loan, collection, 欠款, 逾期, 催收 and their kin, in English and Chinese). Rendering for a
third party refuses any template that is not a third-party one, so a debtor's template
cannot be sent to them by mistake.
"""

from __future__ import annotations

import re
import string
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from recova.platform.audit import record_event
from recova.platform.auth.principal import Principal
from recova.platform.contact.models import MessageTemplate, TemplateAudience
from recova.platform.kernel.errors import DomainError

#: Placeholders that disclose the debt.
DEBT_PLACEHOLDERS = frozenset(
    {
        "amount",
        "overdue_amount",
        "principal",
        "currency",
        "due_date",
        "days_past_due",
        "account_ref",
        "creditor",
    }
)
#: Placeholders safe for anyone.
NEUTRAL_PLACEHOLDERS = frozenset({"debtor_name", "recipient_name", "company", "callback_number"})
PLACEHOLDERS = DEBT_PLACEHOLDERS | NEUTRAL_PLACEHOLDERS
# Written-in money: a currency sign or code, or a number with two decimals.
_AMOUNT_TEXT = re.compile(
    r"[¥$€£元]|\b(?:CNY|USD|RMB|EUR|dollars?)\b|\d[\d,]*\.\d{2}\b", re.IGNORECASE
)

# Written-in debt: words that tell a third party there is a debt, whatever the amount.
# English by word stem (so "owed", "collections", "repayment" match, "bowl" does not);
# Chinese by the characters' compounds (no word boundaries to lean on).
_DEBT_TEXT = re.compile(
    r"\b(?:owe[sd]?|owing|debts?|debtors?|overdue|past[ -]due|arrears?|delinquen\w*"
    r"|loans?|lend\w*|borrow\w*|credits?|creditors?|repay\w*|default(?:ed|s)?"
    r"|collect(?:ion|ions|or|ors|ing)?|instal(?:l)?ments?|outstanding)\b"
    r"|欠|债|逾期|催收|催缴|催款|还款|借款|贷款|还钱|到期未还|分期|违约|征信",
    re.IGNORECASE,
)


class TemplateError(DomainError, ValueError):
    """A template that may not be saved, or may not be rendered for this recipient (422)."""


class TemplateConflict(TemplateError):
    """A new template's name is taken (409)."""

    status = 409


def placeholders(*parts: str | None) -> set[str]:
    """The placeholder names used in the given texts."""
    names: set[str] = set()
    for part in parts:
        if not part:
            continue
        try:
            parsed = list(string.Formatter().parse(part))
        except ValueError as exc:
            raise TemplateError(f"malformed placeholder: {exc}") from exc
        for _, name, spec, conversion in parsed:
            if name is None:
                continue
            if not name or spec or conversion or not name.isidentifier():
                raise TemplateError("placeholders are plain names in braces, like {debtor_name}")
            names.add(name)
    return names


def validate_template(audience: str, subject: str | None, body: str) -> None:
    """Refuse unknown placeholders, and any disclosure of the debt to a third party."""
    used = placeholders(subject, body)
    unknown = sorted(used - PLACEHOLDERS)
    if unknown:
        raise TemplateError(
            f"unknown placeholder(s) {', '.join(unknown)}; known: {', '.join(sorted(PLACEHOLDERS))}"
        )
    if audience == TemplateAudience.THIRD_PARTY:
        disclosing = sorted(used & DEBT_PLACEHOLDERS)
        if disclosing:
            raise TemplateError(
                "a third-party template may not disclose the debt: remove"
                f" {', '.join('{' + n + '}' for n in disclosing)}"
            )
        text = f"{subject or ''}\n{body}"
        if _AMOUNT_TEXT.search(text):
            raise TemplateError("a third-party template may not carry an amount")
        word = _DEBT_TEXT.search(text)
        if word:
            raise TemplateError(
                f"a third-party template may not disclose the debt: remove {word.group(0)!r}"
            )


def save_template(
    session: Session,
    *,
    name: str,
    channel: str,
    audience: str,
    body: str,
    actor: Principal | str,
    subject: str | None = None,
    template: MessageTemplate | None = None,
) -> MessageTemplate:
    """Create (or replace the text of) a template after validating it; a new template's
    name must be free."""
    if template is None and session.scalar(
        select(MessageTemplate.id).where(MessageTemplate.name == name)
    ):
        raise TemplateConflict(f"a template named {name!r} exists")
    validate_template(audience, subject, body)
    if template is None:
        template = MessageTemplate(name=name)
        session.add(template)
    template.name = name
    template.channel = channel
    template.audience = audience
    template.subject = subject
    template.body = body
    session.flush()  # the caller answers with the stored template; the event names its id
    record_event(
        session,
        action="config.changed",
        actor=actor,
        subject=("message_template", template.id),
        data={"what": "message_template", "channel": channel, "audience": audience},
    )
    return template


def render(
    template: MessageTemplate, values: dict[str, Any], *, third_party: bool
) -> dict[str, Any]:
    """Fill ``template`` for one recipient; a third party gets only third-party templates."""
    if third_party:
        if template.audience != TemplateAudience.THIRD_PARTY:
            raise TemplateError("only a third-party template may be sent to a third party")
        validate_template(template.audience, template.subject, template.body)
        values = {k: v for k, v in values.items() if k not in DEBT_PLACEHOLDERS}
    filled = {name: _text(values.get(name)) for name in PLACEHOLDERS}
    return {
        "subject": template.subject.format(**filled) if template.subject else None,
        "body": template.body.format(**filled),
    }


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return f"{value:,.2f}"
    return str(value)
