"""Reading and saving the tenant's ingestion settings (the snapshot recall guard)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from recova.connectors.models import DEFAULT_RECALL_GUARD_PERCENT, IngestionSettings
from recova.platform.audit import record_event
from recova.platform.auth.principal import Principal
from recova.platform.kernel.errors import DomainError


class IngestionSettingsError(DomainError, ValueError):
    """Settings outside the allowed range; ``field`` names the culprit (422)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    @property
    def error_message(self) -> str:
        return self.message

    @property
    def error_details(self) -> dict[str, Any]:
        return {"json": {self.field: [self.message]}}


def current_settings(session: Session) -> IngestionSettings:
    """The saved settings, or the defaults (not saved) when the tenant never set them."""
    saved = session.get(IngestionSettings, 1)
    if saved is not None:
        return saved
    return IngestionSettings(
        id=1, recall_guard=True, recall_guard_percent=DEFAULT_RECALL_GUARD_PERCENT
    )


def save_settings(
    session: Session,
    *,
    actor: Principal | str,
    recall_guard: bool,
    recall_guard_percent: Decimal,
) -> IngestionSettings:
    """Replace the settings; the change is an audit event with the old and new values."""
    if not Decimal(0) < recall_guard_percent <= Decimal(100):
        raise IngestionSettingsError("recall_guard_percent", "must be more than 0 and at most 100")
    if recall_guard_percent != recall_guard_percent.quantize(Decimal("0.01")):
        raise IngestionSettingsError("recall_guard_percent", "at most two decimal places")
    settings = session.get(IngestionSettings, 1)
    before = None
    if settings is None:
        settings = IngestionSettings(id=1)
        session.add(settings)
    else:
        before = _as_data(settings.recall_guard, settings.recall_guard_percent)
    settings.recall_guard = recall_guard
    settings.recall_guard_percent = recall_guard_percent
    session.flush()  # the caller returns the saved row
    record_event(
        session,
        action="config.changed",
        actor=actor,
        subject=("settings", "ingestion"),
        data={"before": before, "after": _as_data(recall_guard, recall_guard_percent)},
    )
    return settings


def _as_data(recall_guard: bool, percent: Decimal) -> dict[str, object]:
    return {"recall_guard": recall_guard, "recall_guard_percent": str(percent)}
