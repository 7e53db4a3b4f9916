"""The tenant's case-work settings: grace days, plan breakage, deferral and offer limits."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from recova.platform.auth.principal import Principal
from recova.platform.work.events import note_event
from recova.platform.work.models import WorkSettings

DEFAULTS: dict[str, int] = {
    "promise_grace_days": 3,
    "plan_grace_days": 5,
    "plan_max_misses": 2,
    "max_deferral_days": 30,
    "max_deferrals": 2,
    "settlement_max_days": 30,
}


def current_settings(session: Session) -> WorkSettings:
    """The tenant's settings; an unsaved tenant gets the defaults (not stored)."""
    found = session.get(WorkSettings, 1)
    return found if found is not None else WorkSettings(id=1, **DEFAULTS)


def save_settings(session: Session, **changes: Any) -> tuple[WorkSettings, dict[str, Any]]:
    """Change some settings; returns the settings and what changed as ``{name: [old, new]}``."""
    found = session.get(WorkSettings, 1)
    if found is None:
        found = WorkSettings(id=1, **DEFAULTS)
        session.add(found)
    changed: dict[str, Any] = {}
    for name, value in changes.items():
        if name not in DEFAULTS:
            raise KeyError(name)
        old = getattr(found, name)
        if old != value:
            changed[name] = [old, value]
            setattr(found, name, value)
    session.flush()  # the answer shows the stored row
    return found, changed


def change_settings(
    session: Session, *, actor: Principal | str, **changes: Any
) -> tuple[WorkSettings, dict[str, Any]]:
    """``save_settings``, with an audit event naming what changed (none if nothing did)."""
    found, changed = save_settings(session, **changes)
    if changed:
        note_event(
            session,
            action="config.changed",
            actor=actor,
            subject=("work_settings", 1),
            data={"changed": changed},
        )
    return found, changed
