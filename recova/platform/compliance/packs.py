"""The rule packs, defined in code and dated: CN and US, each a list of versions.

A pack version says which limits bind from the day it takes effect (midnight in the
pack's home time zone). A check replays under the version in force at the attempt's
instant, so an audit of last year's attempt reads last year's rules. A tenant policy
names one pack and may only tighten it (``recova.platform.compliance.policy``).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass, fields, replace
from functools import lru_cache

#: Rule names a tenant policy may tighten, and how "tighter" reads for each:
#: ``later``/``earlier`` for window edges, ``lower`` and ``higher`` for numbers,
#: ``on`` for a requirement that may be switched on but never off.
TIGHTER = {
    "window_start": "later",
    "window_end": "earlier",
    "max_connected_calls_per_day": "lower",
    "max_unanswered_calls_per_number_per_day": "lower",
    "max_call_attempts_in_7_days": "lower",
    "quiet_days_after_conversation": "higher",
    "third_party_after_failures": "higher",
    "validation_notice_days": "lower",
    "recording_required": "on",
}


@dataclass(frozen=True)
class Rules:
    """The limits one check applies. ``None`` means the pack sets no such limit.

    Windows are half-open in the debtor's local time: ``[window_start, window_end)``;
    at ``window_end`` the last allowed minute has passed.
    """

    window_start: dt.time
    window_end: dt.time
    #: Connected (or still pending) outbound calls to the debtor per local day, all agencies.
    max_connected_calls_per_day: int | None = None
    #: Unanswered (or still pending) outbound calls to one number per local day.
    max_unanswered_calls_per_number_per_day: int | None = None
    #: Outbound calls to the debtor about one debt (case) in 7 consecutive days.
    max_call_attempts_in_7_days: int | None = None
    #: No calls about a debt for this many days after a telephone conversation about it.
    quiet_days_after_conversation: int | None = None
    #: Third parties only after this many consecutive failed attempts (or every own
    #: number proven wrong).
    third_party_after_failures: int = 3
    #: Days after first contact by which the validation notice must be sent.
    validation_notice_days: int | None = None
    #: Connected calls must carry a recording reference.
    recording_required: bool = False

    def as_dict(self) -> dict[str, object]:
        """Plain values for the API and the CLI (times as ``HH:MM``)."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.strftime("%H:%M") if isinstance(value, dt.time) else value
        return out


@dataclass(frozen=True)
class PackVersion:
    """One dated version of a jurisdiction's rule pack."""

    pack: str
    version: str
    effective_from: dt.date
    title: str
    rules: Rules
    home_timezone: str

    @property
    def starts_at(self) -> dt.datetime:
        """The instant the version takes effect: midnight of its day at home."""
        return _midnight(self.effective_from, self.home_timezone)


@lru_cache(maxsize=64)
def _midnight(day: dt.date, zone: str) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0), zoneinfo.ZoneInfo(zone))


_CN_2025 = Rules(
    window_start=dt.time(8, 0),
    window_end=dt.time(22, 0),
    max_connected_calls_per_day=3,
    max_unanswered_calls_per_number_per_day=6,
    third_party_after_failures=3,
)

PACKS: dict[str, list[PackVersion]] = {
    "CN": [
        PackVersion(
            pack="CN",
            version="CN-2025",
            effective_from=dt.date(2025, 1, 1),
            title="National collection standard for online consumer credit (2025)",
            rules=_CN_2025,
            home_timezone="Asia/Shanghai",
        ),
        PackVersion(
            pack="CN",
            version="CN-2026",
            effective_from=dt.date(2026, 1, 1),
            title="2025 standard and the China Banking Association consumer-loan collection"
            " guideline (2026): calls are recorded",
            rules=replace(_CN_2025, recording_required=True),
            home_timezone="Asia/Shanghai",
        ),
    ],
    "US": [
        PackVersion(
            pack="US",
            version="US-REGF-2021",
            effective_from=dt.date(2021, 11, 30),
            title="FDCPA and Regulation F (12 CFR 1006)",
            rules=Rules(
                window_start=dt.time(8, 0),
                window_end=dt.time(21, 0),
                max_call_attempts_in_7_days=7,
                quiet_days_after_conversation=7,
                third_party_after_failures=3,
                validation_notice_days=5,
            ),
            home_timezone="America/New_York",
        )
    ],
}


def pack_in_force(pack: str, at: dt.datetime) -> PackVersion:
    """The version of ``pack`` in force at ``at`` (the earliest one before any took effect)."""
    versions = PACKS.get(pack)
    if not versions:
        raise LookupError(f"no rule pack {pack!r}; known: {', '.join(sorted(PACKS))}")
    chosen = versions[0]
    for version in versions:
        if version.starts_at <= at:
            chosen = version
    return chosen
