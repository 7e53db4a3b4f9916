"""The debtor's local time: which zone, and the edges of windows and days in it.

The zone comes from the debtor's own ``timezone``, else their address region (a US state
or a Chinese province), else the region of the phone number being called (phonenumbers'
time-zone data), else the tenant's zone. Every edge is computed with ``zoneinfo`` on the
local calendar, so a window opens at 08:00 local even on the day clocks change.

A phone number may name several zones (an area code across a zone line; a US toll-free
or 5xx number names every zone of the plan). Nothing says which one the debtor lives
in, so every one of them is a candidate and the rules must hold in all of them: an
attempt is inside the window only if it is inside it in each candidate zone, and a
"day" spans from the earliest candidate midnight to the latest.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from functools import lru_cache

import phonenumbers
from phonenumbers import timezone as phone_timezone

# Where a state spans zones, the zone most of its people live in.
US_STATE_ZONES = {
    "AL": "America/Chicago", "AK": "America/Anchorage", "AZ": "America/Phoenix",
    "AR": "America/Chicago", "CA": "America/Los_Angeles", "CO": "America/Denver",
    "CT": "America/New_York", "DE": "America/New_York", "DC": "America/New_York",
    "FL": "America/New_York", "GA": "America/New_York", "HI": "Pacific/Honolulu",
    "ID": "America/Boise", "IL": "America/Chicago", "IN": "America/Indiana/Indianapolis",
    "IA": "America/Chicago", "KS": "America/Chicago", "KY": "America/New_York",
    "LA": "America/Chicago", "ME": "America/New_York", "MD": "America/New_York",
    "MA": "America/New_York", "MI": "America/Detroit", "MN": "America/Chicago",
    "MS": "America/Chicago", "MO": "America/Chicago", "MT": "America/Denver",
    "NE": "America/Chicago", "NV": "America/Los_Angeles", "NH": "America/New_York",
    "NJ": "America/New_York", "NM": "America/Denver", "NY": "America/New_York",
    "NC": "America/New_York", "ND": "America/Chicago", "OH": "America/New_York",
    "OK": "America/Chicago", "OR": "America/Los_Angeles", "PA": "America/New_York",
    "RI": "America/New_York", "SC": "America/New_York", "SD": "America/Chicago",
    "TN": "America/Chicago", "TX": "America/Chicago", "UT": "America/Denver",
    "VT": "America/New_York", "VA": "America/New_York", "WA": "America/Los_Angeles",
    "WV": "America/New_York", "WI": "America/Chicago", "WY": "America/Denver",
}  # fmt: skip
# The whole of mainland China keeps Beijing time.
CN_PROVINCES = [
    "北京",
    "天津",
    "河北",
    "山西",
    "内蒙古",
    "辽宁",
    "吉林",
    "黑龙江",
    "上海",
    "江苏",
    "浙江",
    "安徽",
    "福建",
    "江西",
    "山东",
    "河南",
    "湖北",
    "湖南",
    "广东",
    "广西",
    "海南",
    "重庆",
    "四川",
    "贵州",
    "云南",
    "西藏",
    "陕西",
    "甘肃",
    "青海",
    "宁夏",
    "新疆",
]
REGION_ZONES = {**US_STATE_ZONES, **dict.fromkeys(CN_PROVINCES, "Asia/Shanghai")}


@lru_cache(maxsize=256)
def zone(name: str) -> zoneinfo.ZoneInfo:
    """A cached ``ZoneInfo`` (``KeyError``-free: unknown names raise ``ValueError``)."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def is_zone(name: str) -> bool:
    """Whether ``name`` is a known IANA time zone."""
    try:
        zone(name)
    except ValueError:
        return False
    return True


def region_zone(region: str | None) -> str | None:
    """The zone of an address region (``NY``, ``广东``, or an IANA name), if known."""
    if not region:
        return None
    cleaned = region.strip()
    if cleaned.upper() in US_STATE_ZONES:
        return US_STATE_ZONES[cleaned.upper()]
    for province in CN_PROVINCES:
        if cleaned.startswith(province):
            return "Asia/Shanghai"
    return cleaned if "/" in cleaned and is_zone(cleaned) else None


def phone_zones(number: str) -> tuple[str, ...]:
    """Every zone phonenumbers lists for an E.164 number (its "unknown" marker and names
    ``zoneinfo`` does not know left out); empty when the number names none."""
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return ()
    return tuple(
        z
        for z in phone_timezone.time_zones_for_number(parsed)
        if z != phone_timezone.UNKNOWN_TIMEZONE and is_zone(z)
    )


def resolve_zone(
    *,
    debtor_timezone: str | None,
    region: str | None,
    phone: str | None,
    tenant_timezone: str,
) -> tuple[tuple[str, ...], str]:
    """The debtor's candidate zones and where they came from: debtor, region, phone or
    tenant. Only a phone number gives more than one (see the module's docstring)."""
    if debtor_timezone and is_zone(debtor_timezone):
        return (debtor_timezone,), "debtor"
    from_region = region_zone(region)
    if from_region is not None:
        return (from_region,), "region"
    if phone:
        from_phone = phone_zones(phone)
        if from_phone:
            return from_phone, "phone"
    return (tenant_timezone,), "tenant"


def local_day(at: dt.datetime, zone_name: str) -> tuple[dt.datetime, dt.datetime]:
    """The local calendar day holding ``at``, as UTC instants [start, end) (23 or 25 hours
    long on a day the clocks change)."""
    tz = zone(zone_name)
    day = at.astimezone(tz).date()
    start = dt.datetime.combine(day, dt.time(0), tz)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tz)
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


def _local(day: dt.date, clock: dt.time, tz: zoneinfo.ZoneInfo) -> dt.datetime:
    """``day`` at ``clock`` local; a clock time skipped by a spring-forward gap moves on."""
    naive = dt.datetime.combine(day, clock)
    candidate = naive.replace(tzinfo=tz)
    # A time inside a gap does not survive the round trip through UTC.
    back = candidate.astimezone(dt.UTC).astimezone(tz).replace(tzinfo=None)
    if back != naive:
        candidate = naive.replace(tzinfo=tz, fold=1)
    return candidate


def in_window(at: dt.datetime, zone_name: str, start: dt.time, end: dt.time) -> bool:
    """Whether ``at`` falls in [start, end) on the local clock."""
    local = at.astimezone(zone(zone_name)).time()
    return start <= local < end


def window_opens(at: dt.datetime, zone_name: str, start: dt.time, end: dt.time) -> dt.datetime:
    """The first instant at or after ``at`` inside the local window [start, end)."""
    tz = zone(zone_name)
    local = at.astimezone(tz)
    if start <= local.time() < end:
        return at
    day = local.date() if local.time() < start else local.date() + dt.timedelta(days=1)
    return _local(day, start, tz).astimezone(dt.UTC)


def local_days(at: dt.datetime, zones: tuple[str, ...]) -> tuple[dt.datetime, dt.datetime]:
    """The local day holding ``at`` in every candidate zone, as one span of UTC instants
    [earliest start, latest end): a count over it is at least the count of any one
    candidate's day, so a daily cap that holds over it holds wherever the debtor is."""
    days = [local_day(at, z) for z in zones]
    return min(d[0] for d in days), max(d[1] for d in days)


def in_all_windows(at: dt.datetime, zones: tuple[str, ...], start: dt.time, end: dt.time) -> bool:
    """Whether ``at`` falls in [start, end) on the local clock of every candidate zone."""
    return all(in_window(at, z, start, end) for z in zones)


#: How far ahead ``all_windows_open`` looks for a common opening before giving up.
_COMMON_WINDOW_HORIZON = dt.timedelta(days=8)


def all_windows_open(
    at: dt.datetime, zones: tuple[str, ...], start: dt.time, end: dt.time
) -> dt.datetime | None:
    """The first instant at or after ``at`` inside the window in every candidate zone, or
    None if the windows never meet (zones too far apart for a narrow window).

    No common instant comes before the latest of the zones' own next openings; if one
    zone's window has closed again by then, the search moves on from there. A week and a
    day covers every weekday and a change of clocks; past that they never meet.
    """
    moment = at
    while moment - at <= _COMMON_WINDOW_HORIZON:
        opening = max(window_opens(moment, z, start, end) for z in zones)
        if in_all_windows(opening, zones, start, end):
            return opening
        moment = opening
    return None
