"""The call loop's wrap-up: after an outcome that needs one (someone answered, or the
number was wrong), the collector leaves a note or schedules the next contact before the
loop moves on.

What is owed is kept in the user's signed session cookie, so *Next case* (which may open
a case of another tenant) can refuse without reading every tenant's attempts. It is a
guard for the loop, not a record: the attempt and its note are stored by the services.
"""

from __future__ import annotations

from typing import Any

from flask import session

KEY = "wrap_up_due"


def require_wrap_up(*, tenant_slug: str, case_id: int, attempt_id: int) -> None:
    """The outcome of ``attempt_id`` needs a wrap-up before the next case."""
    session[KEY] = {"tenant": tenant_slug, "case_id": case_id, "attempt_id": attempt_id}


def wrap_up_done(*, tenant_slug: str, case_id: int) -> None:
    """A note or a scheduled contact was saved on the case: the loop may move on."""
    due = wrap_up_due()
    if due is not None and due["tenant"] == tenant_slug and due["case_id"] == case_id:
        session.pop(KEY, None)


def wrap_up_due() -> dict[str, Any] | None:
    """The case whose wrap-up is owed (``tenant``, ``case_id``, ``attempt_id``), if any."""
    due: dict[str, Any] | None = session.get(KEY)
    return due
