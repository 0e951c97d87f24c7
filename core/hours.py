"""Business hours (issue 13 item 3): a weekly schedule plus holidays, in the
server's time zone (PBX_TIMEZONE), pure: `is_open(schedule, now)` reads only
its arguments, so the routing step (sipd/routing/decide.py) and the tests give
it the time of the call, a moved clock in the tests.

A rule is "DAYS HH:MM-HH:MM": DAYS one day ("sat"), a range ("mon-fri", which
may wrap: "fri-mon"), a list ("mon,wed,fri") or "daily"; the times are local
wall-clock times, the end exclusive, "24:00" for midnight at the end of the
day. A holiday (YYYY-MM-DD) is closed all day, whatever the rules say.

Errors are `HoursError` whose text is a core.text.Text: English for pbxctl, and
the panel's form error in the admin's language.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.text import N_, Text

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class HoursError(ValueError):
    """A rule, holiday or time zone we cannot use (one line naming it)."""


@dataclass(frozen=True)
class Rule:
    days: frozenset[int]  # 0 = Monday (datetime.weekday())
    start: int  # minutes after local midnight
    end: int  # exclusive; 1440 = "24:00"

    def __str__(self) -> str:
        return f"{_days_text(self.days)} {_hhmm(self.start)}-{_hhmm(self.end)}"


@dataclass(frozen=True)
class Schedule:
    rules: tuple[Rule, ...]
    holidays: frozenset[dt.date] = frozenset()
    timezone: str = "UTC"


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _days_text(days: frozenset[int]) -> str:
    if len(days) == 7:
        return "daily"
    runs: list[list[int]] = []
    for day in sorted(days):
        if runs and runs[-1][-1] == day - 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    # Consecutive days as a range ("mon-fri"), as an admin writes them.
    return ",".join(DAYS[r[0]] if len(r) == 1 else f"{DAYS[r[0]]}-{DAYS[r[-1]]}" for r in runs)


def _day(text: str, rule: str) -> int:
    try:
        return DAYS.index(text)
    except ValueError:
        raise HoursError(Text(
            N_("%(rule)r: %(text)r is not a day (mon tue wed thu fri sat sun, or daily)"),
            rule=rule, text=text)) from None


def _days(text: str, rule: str) -> frozenset[int]:
    if text == "daily":
        return frozenset(range(7))
    days: set[int] = set()
    for part in text.split(","):
        first, sep, last = part.partition("-")
        if not sep:
            days.add(_day(first, rule))
            continue
        start, stop = _day(first, rule), _day(last, rule)
        days.update((start + n) % 7 for n in range((stop - start) % 7 + 1))
    return frozenset(days)


def _minutes(text: str, rule: str) -> int:
    hours, sep, minutes = text.partition(":")
    if not (sep and hours.isdigit() and minutes.isdigit() and len(minutes) == 2
            and 1 <= len(hours) <= 2):
        raise HoursError(Text(N_("%(rule)r: %(text)r is not a time HH:MM"), rule=rule,
                              text=text))
    value = int(hours) * 60 + int(minutes)
    if int(minutes) > 59 or value > 1440:
        raise HoursError(Text(N_("%(rule)r: %(text)r is not a time of day (00:00 to 24:00)"),
                              rule=rule, text=text))
    return value


def parse_rule(text: str) -> Rule:
    """'mon-fri 09:00-18:00' -> Rule; HoursError naming what is wrong."""
    rule = " ".join(text.lower().split())
    days, sep, times = rule.partition(" ")
    if not sep or " " in times:
        raise HoursError(Text(N_("%(rule)r: expected DAYS HH:MM-HH:MM,"
                                 " e.g. 'mon-fri 09:00-18:00'"), rule=text))
    start_text, dash, end_text = times.partition("-")
    if not dash:
        raise HoursError(Text(N_("%(rule)r: expected a time range HH:MM-HH:MM, got %(text)r"),
                              rule=text, text=times))
    start, end = _minutes(start_text, text), _minutes(end_text, text)
    if end <= start:
        raise HoursError(Text(
            N_("%(rule)r: closes at or before it opens; past midnight is two rules"
               " (e.g. 'fri 22:00-24:00' and 'sat 00:00-06:00')"), rule=text))
    return Rule(_days(days, text), start, end)


def parse_holiday(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise HoursError(Text(N_("%(text)r: a holiday is a date YYYY-MM-DD"),
                              text=text)) from None


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise HoursError(Text(N_("%(name)r is not a time zone (e.g. Asia/Tashkent, UTC)"),
                              name=name)) from None


def parse(rules: list[str], holidays: list[str] = (), timezone: str = "UTC") -> Schedule:
    if not rules:
        raise HoursError("a schedule needs at least one opening rule")
    zone(timezone)
    return Schedule(tuple(parse_rule(r) for r in rules),
                    frozenset(parse_holiday(h) for h in holidays), timezone)


def is_open(schedule: Schedule, now: float) -> bool:
    """Whether `schedule` is open at `now` (seconds since the epoch), judged by the
    local wall clock of its time zone (so a DST change moves opening in UTC)."""
    local = dt.datetime.fromtimestamp(now, zone(schedule.timezone))
    if local.date() in schedule.holidays:
        return False
    minute = local.hour * 60 + local.minute
    return any(local.weekday() in rule.days and rule.start <= minute < rule.end
               for rule in schedule.rules)
