"""core/hours.py: rules parsed (and refused with one line), open/closed at a
moved clock, holidays, and the time zone's wall clock (incl. a DST change)."""

from __future__ import annotations

import datetime as dt

import pytest

from core import hours


def at(text: str, tz: str) -> float:
    """The epoch seconds of local wall-clock time `text` in `tz`."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=hours.zone(tz)).timestamp()


@pytest.mark.parametrize("text, days, start, end", [
    ("mon-fri 09:00-18:00", {0, 1, 2, 3, 4}, 540, 1080),
    ("  Sat   10:00-14:30 ", {5}, 600, 870),
    ("fri-mon 8:00-24:00", {4, 5, 6, 0}, 480, 1440),
    ("mon,wed,fri-sat 00:00-00:01", {0, 2, 4, 5}, 0, 1),
    ("daily 07:00-23:00", set(range(7)), 420, 1380),
])
def test_rules_parse(text, days, start, end):
    rule = hours.parse_rule(text)
    assert (set(rule.days), rule.start, rule.end) == (days, start, end)


@pytest.mark.parametrize("text, says", [
    ("mon-fri", "expected DAYS HH:MM-HH:MM"),
    ("funday 09:00-18:00", "'funday' is not a day"),
    ("mon-fri 09:00", "expected a time range"),
    ("mon-fri 9-18", "is not a time HH:MM"),
    ("mon 09:60-10:00", "not a time of day"),
    ("mon 09:00-24:01", "not a time of day"),
    ("mon 18:00-09:00", "past midnight is two rules"),
    ("mon 09:00-09:00", "closes at or before it opens"),
    ("mon 09:00-18:00 extra", "expected DAYS HH:MM-HH:MM"),
    ("mon 0900-1800", "is not a time HH:MM"),
])
def test_bad_rules_are_one_line(text, says):
    with pytest.raises(hours.HoursError) as refused:
        hours.parse_rule(text)
    assert says in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize("bad", ["2026-13-01", "25.12.2026", "tomorrow"])
def test_bad_holidays(bad):
    with pytest.raises(hours.HoursError, match="YYYY-MM-DD"):
        hours.parse_holiday(bad)


def test_bad_time_zone_and_no_rules():
    with pytest.raises(hours.HoursError, match="not a time zone"):
        hours.parse(["mon 09:00-10:00"], timezone="Mars/Olympus")
    with pytest.raises(hours.HoursError, match="at least one"):
        hours.parse([])


OFFICE = hours.parse(["mon-fri 09:00-18:00", "sat 10:00-14:00"], ["2026-03-21"],
                     "Asia/Tashkent")


@pytest.mark.parametrize("local, open_", [
    ("2026-03-16 08:59:59", False),  # Monday, a second before opening
    ("2026-03-16 09:00:00", True),
    ("2026-03-16 17:59:59", True),
    ("2026-03-16 18:00:00", False),  # the end is exclusive
    ("2026-03-20 12:00:00", True),  # Friday
    ("2026-03-21 12:00:00", False),  # Saturday, but Navruz: a holiday
    ("2026-03-28 12:00:00", True),  # the next Saturday
    ("2026-03-28 14:00:00", False),
    ("2026-03-22 12:00:00", False),  # Sunday
])
def test_open_in_the_servers_time_zone(local, open_):
    assert hours.is_open(OFFICE, at(local, "Asia/Tashkent")) is open_


def test_the_clock_is_the_zones_not_utcs():
    # 09:30 in Tashkent (UTC+5) is 04:30 UTC: open there, closed for a UTC office.
    now = at("2026-03-16 09:30", "Asia/Tashkent")
    utc = hours.parse(["mon-fri 09:00-18:00"])
    assert hours.is_open(OFFICE, now) and not hours.is_open(utc, now)
    # A holiday is a local date: 2026-03-21 00:30 Tashkent is still the 20th in UTC.
    daily = hours.parse(["daily 00:00-24:00"], ["2026-03-21"], "Asia/Tashkent")
    assert not hours.is_open(daily, at("2026-03-21 00:30", "Asia/Tashkent"))
    assert hours.is_open(daily, at("2026-03-20 23:59", "Asia/Tashkent"))


def test_a_daylight_saving_change_keeps_wall_clock_hours():
    # Berlin moves to summer time on 2026-03-29: opening stays 09:00 local,
    # which is 08:00 UTC the week before and 07:00 UTC the week after.
    berlin = hours.parse(["mon-fri 09:00-18:00"], timezone="Europe/Berlin")
    before = dt.datetime(2026, 3, 23, 8, 0, tzinfo=dt.UTC).timestamp()
    after = dt.datetime(2026, 3, 30, 7, 0, tzinfo=dt.UTC).timestamp()
    for moment in (before, after):
        assert hours.is_open(berlin, moment)
        assert not hours.is_open(berlin, moment - 1)


def test_rules_print_back():
    assert [str(r) for r in OFFICE.rules] == ["mon-fri 09:00-18:00", "sat 10:00-14:00"]
    assert str(hours.parse_rule("daily 00:00-24:00")) == "daily 00:00-24:00"
    # Written back as an admin writes days: consecutive ones as a range.
    assert str(hours.parse_rule("fri-mon 08:00-09:00")) == "mon,fri-sun 08:00-09:00"
    assert str(hours.parse_rule("mon,wed,thu 08:00-09:00")) == "mon,wed-thu 08:00-09:00"


def test_pbx_timezone_setting():
    from core.config import ConfigError, load_settings

    assert load_settings({"PBX_REALM": "x"}).timezone == "UTC"
    assert load_settings({"PBX_REALM": "x", "PBX_TIMEZONE": "Asia/Tashkent"}).timezone == (
        "Asia/Tashkent")
    with pytest.raises(ConfigError, match="PBX_TIMEZONE: 'Nowhere/Land' is not a time zone"):
        load_settings({"PBX_REALM": "x", "PBX_TIMEZONE": "Nowhere/Land"})
