"""IVR menus and business hours in the routing step (sipd/routing/decide.py): ivr:NAME
is an Application, hours:NAME its open or closed destination at the call's `now`
(a moved clock here), a menu's or schedule's number dials it, schedules leading to
each other end in 482 like forwards; plus StoreDirectory on a real database."""

from __future__ import annotations

import datetime as dt
import textwrap

import pytest

from core import accounts, destinations, ivr
from sipd.routing.decide import decide
from sipd.routing.directory import StoreDirectory, TableDirectory
from sipd.routing.plan import Application, Event
from tests.unit import test_routing_voicemail as vm

TASHKENT = dt.timezone(dt.timedelta(hours=5))


def at(day: int, hour: int, minute: int = 0) -> float:
    """December 2026 in Tashkent: the 3rd is a Thursday, the 5th a Saturday."""
    return dt.datetime(2026, 12, day, hour, minute, tzinfo=TASHKENT).timestamp()


DAY = {"rules": ["mon-fri 09:00-18:00"], "holidays": ["2026-12-31"], "in": "ivr:main",
       "out": "voicemail:1002", "timezone": "Asia/Tashkent", "number": "701"}
MENUS = {"main": {"number": "700"}, "night": {}}


def directory(schedules=None, menus=MENUS, **changes):
    return TableDirectory(vm.office(**changes), {}, menus=menus,
                          schedules={"day": DAY} if schedules is None else schedules)


def case(name, now, dialled, expected, schedules=None, caller="1001"):
    return pytest.param(now, dialled, schedules, caller,
                        textwrap.dedent(expected).strip("\n").splitlines(), id=name)


CASES = [
    case("menu_by_name", at(3, 10), "ivr:main", "ivr main -"),
    case("menu_by_its_number", at(3, 10), "700", "ivr main -"),
    case("no_such_menu", at(3, 10), "ivr:gone", """
        refuse 480 'Temporarily Unavailable' FAILED: IVR menu gone does not exist
    """),
    case("open_on_a_thursday_morning", at(3, 10), "hours:day", """
        * hours hours:day -> ivr:main: open
        ivr main -
    """),
    case("open_from_the_first_minute", at(3, 9, 0), "hours:day", """
        * hours hours:day -> ivr:main: open
        ivr main -
    """),
    case("closed_at_six", at(3, 18, 0), "hours:day", """
        * hours hours:day -> voicemail:1002: closed
        voicemail 1002 -
    """),
    case("closed_on_saturday", at(5, 11), "701", """
        * hours hours:day -> voicemail:1002: closed
        voicemail 1002 -
    """),
    case("closed_on_a_holiday", at(31, 11), "hours:day", """
        * hours hours:day -> voicemail:1002: closed
        voicemail 1002 -
    """),
    case("open_to_an_extension", at(3, 10), "hours:day", """
        * hours hours:day -> 1003: open
        ring 1003 20 s
        no answer:
          * forwarded 1003 -> voicemail:1003: no answer after 20 s
          voicemail 1003 no_answer
        busy:
          * forwarded 1003 -> voicemail:1003: busy
          voicemail 1003 busy
        unavailable:
          * forwarded 1003 -> voicemail:1003: unavailable
          voicemail 1003 unavailable
    """, schedules={"day": {**DAY, "in": "1003"}}),
    case("closed_to_hangup", at(5, 11), "hours:day", """
        * hours hours:day -> hangup: closed
        refuse 480 'Temporarily Unavailable' FAILED: business hours day: closed, hangup
    """, schedules={"day": {**DAY, "out": "hangup"}}),
    case("hours_within_hours", at(5, 11), "hours:day", """
        * hours hours:day -> hours:weekend: closed
        * hours hours:weekend -> ivr:night: open
        ivr night -
    """, schedules={"day": {**DAY, "out": "hours:weekend"},
                    "weekend": {"rules": ["sat-sun 00:00-24:00"], "in": "ivr:night",
                                "out": "1003", "timezone": "Asia/Tashkent"}}),
    case("hours_in_a_loop", at(5, 11), "hours:day", """
        * hours hours:day -> hours:other: closed
        * hours hours:other -> hours:day: closed
        * refused_loop hours:other -> hours:day: hours:day -> hours:other -> hours:day
        refuse 482 'Loop Detected: hours:day -> hours:other -> hours:day' FAILED: forwarding loop: hours:day -> hours:other -> hours:day
    """, schedules={"day": {**DAY, "out": "hours:other"},
                    "other": {"rules": ["mon 09:00-10:00"], "in": "1003", "out": "hours:day"}}),
    case("no_such_hours", at(3, 10), "hours:gone", """
        refuse 480 'Temporarily Unavailable' FAILED: business hours gone do not exist
    """),
]


@pytest.mark.parametrize(("now", "dialled", "schedules", "caller", "expected"), CASES)
def test_ivr_and_hours_routing_table(now, dialled, schedules, caller, expected):
    plan = decide(caller, dialled, directory(schedules), now)
    assert vm.outline(plan) == expected


def test_a_forward_and_an_inbound_route_reach_business_hours():
    table = directory(x1003={"forward_always": "hours:day"})
    plan = decide("1001", "1003", table, at(3, 10))
    assert plan == Application("ivr", "main", "", (
        Event("forwarded", "1003", "hours:day", "always"),
        Event("hours", "hours:day", "ivr:main", "open")))
    inbound = decide("998901112233", "hours:day", table, at(5, 10), inbound=True)
    assert inbound == Application("voicemail", "1002", "", (
        Event("hours", "hours:day", "voicemail:1002", "closed"),))


def test_the_destinations_ivr_and_hours():
    assert destinations.parse(" IVR:Main ") == destinations.Destination("ivr", "main")
    assert str(destinations.parse("hours:day")) == "hours:day"
    for bad in ("ivr:", "hours:a b", "ivr:" + "x" * 33):
        with pytest.raises(destinations.DestinationError, match="a name is 1 to 32"):
            destinations.parse(bad)


# -- on a real database ----------------------------------------------------------------


@pytest.fixture
def store(database, tmp_path):
    for number in ("1001", "1002"):
        accounts.create_extension(number, "pbx.test", name=f"Desk {number}", generate=True)
    from core.models import Ivr
    Ivr.create(name="main", number="700", prompt="ivr/main.wav")  # no upload needed here
    ivr.create_schedule("day", ["mon-fri 09:00-18:00"], "ivr:main", "voicemail:1002",
                        holidays=["2026-12-31"], number="701")
    return database


def test_store_directory_reads_menus_and_hours_in_the_pbx_zone(store):
    def plan(now, dialled):
        return decide("1001", dialled, StoreDirectory(now, lambda n: 0, applications=True,
                                                      timezone="Asia/Tashkent"), now)

    assert plan(at(3, 10), "700") == Application("ivr", "main")
    assert plan(at(3, 10), "701").target == "main"
    closed = plan(at(31, 10), "hours:day")
    assert (closed.app, closed.target, closed.events[0].detail) == ("voicemail", "1002", "closed")
    # 10:00 in Tashkent is 05:00 UTC: in PBX_TIMEZONE=UTC it is closed.
    utc = decide("1001", "701", StoreDirectory(at(3, 10), lambda n: 0, applications=True,
                                               timezone="UTC"), at(3, 10))
    assert utc.app == "voicemail"
