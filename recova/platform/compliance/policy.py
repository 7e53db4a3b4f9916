"""A tenant's compliance policy: its jurisdiction's rule pack plus tightenings, versioned.

The tenant may tighten a pack (a narrower window, lower caps, a longer quiet period,
more failures before third parties, recording switched on) and never loosen it. Each
saved policy is a new version, effective from a moment that may not lie in the past, so
replaying an old attempt finds the policy of its day. When a pack later gains a stricter
version, the rules in force are the stricter of the pack and the tenant's values: a
tightening can never turn into a loosening.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, fields, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from recova.platform.audit import record_event
from recova.platform.auth.principal import Principal
from recova.platform.compliance.models import PolicyVersion
from recova.platform.compliance.packs import TIGHTER, PackVersion, Rules, pack_in_force
from recova.platform.kernel.db import utcnow
from recova.platform.kernel.errors import DomainError

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
#: How far in the past a new version may start (clock skew between app servers).
_PAST_SLACK = dt.timedelta(minutes=1)


class PolicyError(DomainError, ValueError):
    """A policy that loosens its pack or is malformed; ``errors`` names each field at fault
    (422, the errors under ``overrides``)."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in sorted(errors.items())))
        self.errors = errors

    @property
    def error_details(self) -> dict[str, Any]:
        return {"json": {"overrides": self.errors}}


@dataclass(frozen=True)
class PolicyInForce:
    """What binds at one instant: the pack version, the tenant's version, the merged rules."""

    pack: PackVersion
    version_id: int | None
    overrides: dict[str, Any]
    rules: Rules

    @classmethod
    def of(
        cls,
        *,
        jurisdiction: str,
        at: dt.datetime,
        pack: str | None,
        overrides: dict[str, Any] | None,
        version_id: int | None,
    ) -> PolicyInForce:
        """Merge a stored version (or none: the bare pack) with the pack version at ``at``."""
        version = pack_in_force(pack or jurisdiction, at)
        rules = tighten(version.rules, overrides) if overrides else version.rules
        return cls(pack=version, version_id=version_id, overrides=overrides or {}, rules=rules)


def _parse_time(value: Any) -> dt.time | None:
    if isinstance(value, str) and (match := _HHMM.match(value)):
        return dt.time(int(match.group(1)), int(match.group(2)))
    return None


def _check_rule(pack: PackVersion, name: str, value: Any) -> tuple[Any, str | None]:  # noqa: PLR0911 - one early answer per kind of rule
    """One override, normalised, or the reason it is refused."""
    direction = TIGHTER.get(name)
    if direction is None:
        return None, f"unknown rule; known: {', '.join(sorted(TIGHTER))}"
    current = getattr(pack.rules, name)
    if direction in ("later", "earlier"):
        parsed = _parse_time(value)
        if parsed is None:
            return None, "must be a time HH:MM"
        if direction == "later" and parsed < current:
            return None, (
                f"loosens the {pack.version} pack: contact may not start before {current:%H:%M}"
            )
        if direction == "earlier" and parsed > current:
            return None, f"loosens the {pack.version} pack: contact must end by {current:%H:%M}"
        return parsed.strftime("%H:%M"), None
    if direction == "on":
        if not isinstance(value, bool):
            return None, "must be true or false"
        if current and not value:
            return None, f"loosens the {pack.version} pack, which requires it"
        return value, None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        return None, "must be a whole number, 0 or more"
    if current is not None and direction == "lower" and value > current:
        return None, f"loosens the {pack.version} pack: at most {current}"
    if current is not None and direction == "higher" and value < current:
        return None, f"loosens the {pack.version} pack: at least {current}"
    return value, None


def validate_overrides(pack: PackVersion, overrides: dict[str, Any]) -> dict[str, Any]:
    """Check that ``overrides`` only tighten ``pack``; returns them normalised."""
    errors: dict[str, str] = {}
    clean: dict[str, Any] = {}
    for name, value in overrides.items():
        normalised, error = _check_rule(pack, name, value)
        if error is not None:
            errors[name] = error
        else:
            clean[name] = normalised
    start = _parse_time(clean.get("window_start")) or pack.rules.window_start
    end = _parse_time(clean.get("window_end")) or pack.rules.window_end
    if "window_start" not in errors and "window_end" not in errors and start >= end:
        errors["window_end"] = "the window must end after it starts"
    if errors:
        raise PolicyError(errors)
    return clean


def tighten(base: Rules, overrides: dict[str, Any]) -> Rules:
    """The stricter of ``base`` and the tenant's values, rule by rule."""
    changes: dict[str, Any] = {}
    for f in fields(base):
        if f.name not in overrides:
            continue
        ours, theirs = overrides[f.name], getattr(base, f.name)
        direction = TIGHTER[f.name]
        if direction in ("later", "earlier"):
            ours = _parse_time(ours)
            changes[f.name] = max(ours, theirs) if direction == "later" else min(ours, theirs)
        elif direction == "on":
            changes[f.name] = bool(ours) or theirs
        elif theirs is None:
            changes[f.name] = ours
        else:
            changes[f.name] = min(ours, theirs) if direction == "lower" else max(ours, theirs)
    return replace(base, **changes)


def policy_in_force(session: Session, *, jurisdiction: str, at: dt.datetime) -> PolicyInForce:
    """The tenant's policy at ``at`` (``session`` bound to the tenant)."""
    version = session.scalar(
        select(PolicyVersion)
        .where(PolicyVersion.effective_from <= at)
        .order_by(PolicyVersion.effective_from.desc(), PolicyVersion.id.desc())
        .limit(1)
    )
    return PolicyInForce.of(
        jurisdiction=jurisdiction,
        at=at,
        pack=version.pack if version is not None else None,
        overrides=version.overrides if version is not None else None,
        version_id=version.id if version is not None else None,
    )


def save_policy(
    session: Session,
    *,
    jurisdiction: str,
    overrides: dict[str, Any],
    actor: Principal | str,
    effective_from: dt.datetime | None = None,
    created_by: int | None = None,
) -> PolicyVersion:
    """Add a policy version tightening the jurisdiction's pack, from now or a later moment."""
    now = utcnow()
    starts = effective_from or now
    if starts.tzinfo is None:
        raise PolicyError({"effective_from": "must carry a time zone"})
    if starts < now - _PAST_SLACK:
        raise PolicyError({"effective_from": "may not lie in the past: history is replayed"})
    clean = validate_overrides(pack_in_force(jurisdiction, starts), overrides)
    version = PolicyVersion(
        pack=jurisdiction, overrides=clean, effective_from=starts, created_by=created_by
    )
    session.add(version)
    session.flush()  # the caller answers with the new version's id; the event names it
    record_event(
        session,
        action="config.changed",
        actor=actor,
        subject=("compliance_policy", version.id),
        data={
            "what": "compliance_policy",
            "pack": jurisdiction,
            "overrides": clean,
            "effective_from": starts.isoformat(),
        },
    )
    return version


def policy_history(session: Session) -> list[PolicyVersion]:
    """Every saved version, newest first."""
    return list(
        session.scalars(
            select(PolicyVersion).order_by(
                PolicyVersion.effective_from.desc(), PolicyVersion.id.desc()
            )
        )
    )
