"""Reading and saving the tenant's privacy settings."""

from __future__ import annotations

from sqlalchemy.orm import Session

from recova.platform.audit import record_event
from recova.platform.auth.principal import Principal
from recova.platform.kernel.errors import DomainError
from recova.platform.privacy.models import PrivacySettings


class PrivacySettingsError(DomainError, ValueError):
    """Settings outside the allowed range."""


def current_settings(session: Session) -> PrivacySettings:
    """The saved settings, or the defaults (not saved) when the tenant never set them."""
    saved = session.get(PrivacySettings, 1)
    if saved is not None:
        return saved
    return PrivacySettings(
        id=1,
        retention_days=PrivacySettings.retention_days.default.arg,  # type: ignore[attr-defined]
        reveals_per_hour=PrivacySettings.reveals_per_hour.default.arg,  # type: ignore[attr-defined]
    )


def save_settings(
    session: Session, *, actor: Principal | str, retention_days: int, reveals_per_hour: int
) -> PrivacySettings:
    """Replace the settings; the change is an audit event with the old and new values."""
    if retention_days < 30:
        raise PrivacySettingsError("retention_days must be at least 30")
    if not 1 <= reveals_per_hour <= 1000:
        raise PrivacySettingsError("reveals_per_hour must be between 1 and 1000")
    settings = session.get(PrivacySettings, 1)
    before = None
    if settings is None:
        settings = PrivacySettings(id=1)
        session.add(settings)
    else:
        before = {
            "retention_days": settings.retention_days,
            "reveals_per_hour": settings.reveals_per_hour,
        }
    settings.retention_days = retention_days
    settings.reveals_per_hour = reveals_per_hour
    session.flush()
    record_event(
        session,
        action="config.changed",
        actor=actor,
        subject=("settings", "privacy"),
        data={
            "before": before,
            "after": {"retention_days": retention_days, "reveals_per_hour": reveals_per_hour},
        },
    )
    return settings
