"""Voicemail in the routing step (sipd/routing/decide.py): the fallback of an extension
whose mailbox is on (busy, no answer, unavailable, DND; a forward of that kind wins),
the `voicemail:NUMBER` destination, *97 / *98, as tables of cases in the outline of
tests/unit/test_routing.py, plus StoreDirectory on a real database."""

from __future__ import annotations

import dataclasses
import textwrap

import pytest

from core import accounts, destinations, forwarding, groups, voicemail
from sipd.routing import route_with
from sipd.routing.decide import decide
from sipd.routing.directory import StoreDirectory, TableDirectory
from sipd.routing.plan import Application, Event, Refuse, Ring
from tests.unit import test_routing as base

NOW = base.NOW


def outline(step, depth: int = 0) -> list[str]:
    """test_routing's outline, with an Application step as "voicemail NUMBER reason"."""
    pad = "  " * depth
    if isinstance(step, Application):
        lines = [f"{pad}* {e.kind} {e.by} -> {e.target}: {e.detail}" for e in step.events]
        return lines + [f"{pad}{step.app} {step.target or '-'} {step.reason or '-'}"]
    if not isinstance(step, Ring):
        return base.outline(step, depth)
    lines = base.outline(dataclasses.replace(step, on_busy=None, on_no_answer=None,
                                             on_unavailable=None), depth)
    nexts = [("no answer", step.on_no_answer), ("busy", step.on_busy),
             ("unavailable", step.on_unavailable)]
    if step.on_no_answer is not None and step.on_busy is step.on_no_answer is step.on_unavailable:
        nexts = [("then", step.on_no_answer)]
    for name, following in nexts:
        if following is not None:
            lines.append(f"{pad}{name}:")
            lines += outline(following, depth + 1)
    return lines


def office(**changes):
    """test_routing's office, every extension's mailbox on unless a case says otherwise."""
    table = base.office(**changes)
    for settings in table.values():
        settings.setdefault("voicemail", True)
    return table


def case(name, extensions, groups_, caller, dialled, expected):
    return pytest.param(extensions, groups_, caller, dialled,
                        textwrap.dedent(expected).strip("\n").splitlines(), id=name)


CASES = [
    case("ring_then_voicemail", office(), {}, "1001", "1002", """
        ring 1002 20 s
        no answer:
          * forwarded 1002 -> voicemail:1002: no answer after 20 s
          voicemail 1002 no_answer
        busy:
          * forwarded 1002 -> voicemail:1002: busy
          voicemail 1002 busy
        unavailable:
          * forwarded 1002 -> voicemail:1002: unavailable
          voicemail 1002 unavailable
    """),
    case("mailbox_off_rings_as_before", office(x1002={"voicemail": False}), {}, "1001", "1002", """
        ring 1002 30 s
    """),
    case("no_answer_time_is_the_extensions", office(x1002={"forward_no_answer_after": 12}), {},
         "1001", "1002", """
        ring 1002 12 s
        no answer:
          * forwarded 1002 -> voicemail:1002: no answer after 12 s
          voicemail 1002 no_answer
        busy:
          * forwarded 1002 -> voicemail:1002: busy
          voicemail 1002 busy
        unavailable:
          * forwarded 1002 -> voicemail:1002: unavailable
          voicemail 1002 unavailable
    """),
    case("a_forward_wins_over_voicemail", office(x1002={"forward_busy": "1003"}), {},
         "1001", "1002", """
        ring 1002 20 s
        no answer:
          * forwarded 1002 -> voicemail:1002: no answer after 20 s
          voicemail 1002 no_answer
        busy:
          * forwarded 1002 -> 1003: busy
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
        unavailable:
          * forwarded 1002 -> voicemail:1002: unavailable
          voicemail 1002 unavailable
    """),
    case("dnd", office(x1002={"dnd": True}), {}, "1001", "1002", """
        * forwarded 1002 -> voicemail:1002: dnd
        voicemail 1002 dnd
    """),
    case("at_its_call_limit", office(x1002={"calls": 4}), {}, "1001", "1002", """
        * forwarded 1002 -> voicemail:1002: busy
        voicemail 1002 busy
    """),
    case("not_registered", office(x1002={"phones": "none"}), {}, "1001", "1002", """
        * forwarded 1002 -> voicemail:1002: unavailable
        voicemail 1002 unavailable
    """),
    case("unavailable_forward_to_another_mailbox",
         office(x1002={"phones": "none", "forward_unavailable": "voicemail:1003"}), {},
         "1001", "1002", """
        * forwarded 1002 -> voicemail:1003: unavailable
        voicemail 1003 unavailable
    """),
    case("forward_always_to_voicemail", office(x1002={"forward_always": "voicemail:1002"}), {},
         "1001", "1002", """
        * forwarded 1002 -> voicemail:1002: always
        voicemail 1002 -
    """),
    case("forward_to_a_mailbox_that_is_off",
         office(x1002={"dnd": True, "forward_busy": "voicemail:1003"}, x1003={"voicemail": False}),
         {}, "1001", "1002", """
        * forwarded 1002 -> voicemail:1003: dnd
        refuse 480 'Temporarily Unavailable' BUSY: 1002 forwards to voicemail: mailbox 1003 is off or does not exist
    """),
    case("group_falls_back_to_a_mailbox", office(), {"600": {**base.SALES,
                                                            "fallback": "voicemail:1003"}},
         "1004", "600", """
        * group 600 -> 1001,1002,1003: ringall 1001, 1002, 1003
        ring 1001 1002 1003 30 s (group 600 via Sales, dialled 600)
        then:
          * forwarded 600 -> voicemail:1003: fallback
          voicemail 1003 -
    """),
    case("star97_own_mailbox", office(), {}, "1001", "*97", """
        * feature 1001 -> *97: voicemail
        voicemail 1001 check
    """),
    case("star97_mailbox_off", office(x1001={"voicemail": False}), {}, "1001", "*97", """
        * feature 1001 -> *97: refused: feature code *97: mailbox 1001 is off or does not exist
        refuse 403 'Forbidden: your mailbox is off' FAILED: feature code *97: mailbox 1001 is off or does not exist
    """),
    case("star98_any_mailbox", office(), {}, "1001", "*98", """
        * feature 1001 -> *98: voicemail
        voicemail - login
    """),
]


@pytest.mark.parametrize(("extensions", "groups_", "caller", "dialled", "expected"), CASES)
def test_voicemail_routing_table(extensions, groups_, caller, dialled, expected):
    plan = decide(caller, dialled, TableDirectory(extensions, groups_), NOW)
    assert outline(plan) == expected


def test_a_group_member_with_a_mailbox_is_still_only_rung():
    """Members' own fallbacks do not apply inside a group (decide.py): nor does their voicemail."""
    plan = decide("1004", "600", TableDirectory(office(), {"600": base.SALES}), NOW)
    assert plan.on_no_answer is None and plan.on_busy is None


def test_the_destination_voicemail_number():
    assert destinations.parse("voicemail:1001") == destinations.Destination("voicemail", "1001")
    assert str(destinations.parse(" Voicemail:1001 ")) == "voicemail:1001"
    for bad in ("voicemail:", "voicemail:abc", "voicemail:1"):
        with pytest.raises(destinations.DestinationError, match="is not a destination: a mailbox is"):
            destinations.parse(bad)


def test_a_destination_run_as_if_dialled():
    """call.continue_to("voicemail:1002") from an IVR: the routing step's own number."""
    plan = decide("1001", "voicemail:1002", TableDirectory(office()), NOW)
    assert plan == Application("voicemail", "1002", "")


# -- on a real database ----------------------------------------------------------------


@pytest.fixture
def store(database):
    for number in base.OFFICE:
        accounts.create_extension(number, "pbx.test", name=f"Desk {number}", generate=True)
    return database


def test_store_knows_mailboxes_only_when_applications_run(store):
    voicemail.set_voicemail("1002", False)
    on = StoreDirectory(NOW, lambda n: 0, applications=True)
    assert [on.extension(n).voicemail for n in ("1001", "1002")] == [True, False]
    off = StoreDirectory(NOW, lambda n: 0)
    assert off.extension("1001").voicemail is False
    # A group's members are read in the group's one statement, mailboxes with them.
    groups.create_group("600", "Sales", ["1001", "1002"])
    on = StoreDirectory(NOW, lambda n: 0, applications=True)
    on.group("600")
    assert [on.extension(n).voicemail for n in ("1001", "1002")] == [True, False]


def test_until_applications_run_calls_go_as_before(store):
    route = route_with(30)
    assert isinstance(route("1001", "1002", NOW, lambda n: 0), Refuse)  # not registered: 480
    assert route("1001", "*97", NOW, lambda n: 0).status == 503
    plan = route_with(30, applications=True)("1001", "1002", NOW, lambda n: 0)
    assert plan == Application("voicemail", "1002", "unavailable", (
        Event("forwarded", by="1002", target="voicemail:1002", detail="unavailable"),))


def test_forwarding_to_voicemail_is_checked(store):
    forwarding.set_forward("1002", "busy", "voicemail:1002")
    assert accounts.get_extension("1002").forward_busy == "voicemail:1002"
    from core.models import Mailbox

    Mailbox.delete().where(Mailbox.extension == accounts.get_extension("1003").id).execute()
    with pytest.raises(accounts.AccountError, match="extension 1003 has no mailbox"):
        forwarding.set_forward("1002", "busy", "voicemail:1003")
