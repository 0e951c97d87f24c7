"""The routing step (sipd/routing/decide.py) as tables of cases: the caller, the number
dialled and the state of the targets -> the plan, written as an outline that names
every step, its seconds, its continuations and the events it records. No sockets, no
database (except StoreDirectory's own tests, on a real SQLite file), no clock."""

from __future__ import annotations

import textwrap

import pytest

from core import accounts, forwarding, groups
from core.models import Binding, db
from sipd.routing.decide import MAX_DEPTH, MAX_STEPS, decide
from sipd.routing.directory import ExtensionView, GroupView, StoreDirectory, TableDirectory
from sipd.routing.plan import Event, Feature, Refuse, Ring

NOW = 1_700_000_000.0


def outline(step, depth: int = 0) -> list[str]:
    """A plan as text: events as "* kind by -> target: detail" above the step they
    begin with, continuations indented under "no answer:", "busy:", "unavailable:"
    ("then:" where all three are the same step, as in a group)."""
    pad = "  " * depth
    lines = [f"{pad}* {e.kind} {e.by} -> {e.target}: {e.detail}" for e in step.events]
    if isinstance(step, Refuse):
        lines.append(f"{pad}refuse {step.status} {step.phrase!r} {step.disposition}: {step.reason}")
        return lines
    if isinstance(step, Feature):
        lines.append(f"{pad}feature {step.code} {step.caller} {step.argument}".rstrip())
        return lines
    head = f"{pad}ring {' '.join(step.extensions)} {step.seconds:g} s"
    if step.group or step.via or step.dialled:
        head += f" (group {step.group} via {step.via}, dialled {step.dialled})"
    lines.append(head)
    nexts = [("no answer", step.on_no_answer), ("busy", step.on_busy),
             ("unavailable", step.on_unavailable)]
    if step.on_no_answer is not None and step.on_busy is step.on_no_answer is step.on_unavailable:
        nexts = [("then", step.on_no_answer)]
    for name, following in nexts:
        if following is not None:
            lines.append(f"{pad}{name}:")
            lines += outline(following, depth + 1)
    return lines


# The office of most cases: five extensions, each registered and idle; a case changes
# some (x1002={"dnd": True}) or adds more. "phones": up | unreachable | none,
# "calls": the live calls it is in (TableDirectory).
OFFICE = ("1001", "1002", "1003", "1004", "1005")
SALES = {"name": "Sales", "members": ["1001", "1002", "1003"]}


def office(**changes) -> dict:
    table = {number: {} for number in OFFICE}
    for key, settings in changes.items():
        table.setdefault(key.removeprefix("x"), {}).update(settings)
    return table


def case(name, extensions, groups_, caller, dialled, expected):
    return pytest.param(extensions, groups_, caller, dialled,
                        textwrap.dedent(expected).strip("\n").splitlines(), id=name)


CASES = [
    case("plain", office(), {}, "1001", "1002", """
        ring 1002 30 s
    """),
    case("unknown", office(), {}, "1001", "1999", """
        refuse 404 'Not Found' FAILED: no such number
    """),
    case("disabled", office(x1002={"enabled": False}), {}, "1001", "1002", """
        refuse 403 'Forbidden: extension disabled' FAILED: callee extension disabled
    """),
    case("limit", office(x1002={"calls": 4}), {}, "1001", "1002", """
        refuse 486 'Busy Here: call limit reached' BUSY: callee 1002 is in 4 calls, its limit
    """),
    case("limit_fwd_busy", office(x1002={"calls": 2, "max_calls": 2, "forward_busy": "1003"}), {}, "1001", "1002", """
        * forwarded 1002 -> 1003: busy
        ring 1003 30 s
    """),
    case("dnd", office(x1002={"dnd": True}), {}, "1001", "1002", """
        refuse 486 'Busy Here' BUSY: callee 1002 is on do not disturb
    """),
    case("dnd_fwd_busy", office(x1002={"dnd": True, "forward_busy": "1003"}), {}, "1001", "1002", """
        * forwarded 1002 -> 1003: dnd
        ring 1003 30 s
    """),
    case("always", office(x1002={"forward_always": "1003"}), {}, "1001", "1002", """
        * forwarded 1002 -> 1003: always
        ring 1003 30 s
    """),
    case("always_hangup", office(x1002={"forward_always": "hangup"}), {}, "1001", "1002", """
        * forwarded 1002 -> hangup: always
        refuse 480 'Temporarily Unavailable' FAILED: 1002 forwards to hangup (always)
    """),
    case("not_registered", office(x1002={"phones": "none"}), {}, "1001", "1002", """
        refuse 480 'Temporarily Unavailable' FAILED: callee not registered
    """),
    case("unreachable", office(x1002={"phones": "unreachable"}), {}, "1001", "1002", """
        refuse 480 'Temporarily Unavailable' FAILED: callee's phones do not answer
    """),
    case("unavailable_fwd", office(x1002={"phones": "none", "forward_unavailable": "1003"}), {}, "1001", "1002", """
        * forwarded 1002 -> 1003: unavailable
        ring 1003 30 s
    """),
    case("no_answer", office(x1002={"forward_no_answer": "1003", "forward_no_answer_after": 15}), {}, "1001", "1002", """
        ring 1002 15 s
        no answer:
          * forwarded 1002 -> 1003: no answer after 15 s
          ring 1003 30 s
    """),
    case("all_three", office(x1002={"forward_no_answer": "1003", "forward_busy": "1004", "forward_unavailable": "1005"}), {}, "1001", "1002", """
        ring 1002 20 s
        no answer:
          * forwarded 1002 -> 1003: no answer after 20 s
          ring 1003 30 s
        busy:
          * forwarded 1002 -> 1004: busy
          ring 1004 30 s
        unavailable:
          * forwarded 1002 -> 1005: unavailable
          ring 1005 30 s
    """),
    case("busy_to_group", office(x1002={"forward_busy": "600"}), {"600": SALES}, "1004", "1002", """
        ring 1002 30 s
        busy:
          * forwarded 1002 -> 600: busy
          * group 1002 -> 600: skipped: the call came through it
          * group 600 -> 1001,1003: ringall 1001, 1003
          ring 1001 1003 30 s (group 600 via Sales, dialled 600)
    """),
    case("no_answer_hangup", office(x1002={"forward_no_answer": "hangup"}), {}, "1001", "1002", """
        ring 1002 20 s
        no answer:
          * forwarded 1002 -> hangup: no answer after 20 s
          refuse 480 'Temporarily Unavailable' NO ANSWER: 1002 forwards to hangup (no answer after 20 s)
    """),
    case("chain", office(x1002={"forward_always": "1003"}, x1003={"forward_always": "1004"}), {}, "1001", "1002", """
        * forwarded 1002 -> 1003: always
        * forwarded 1003 -> 1004: always
        ring 1004 30 s
    """),
    case("dnd_beats_always", office(x1002={"dnd": True, "forward_always": "1003"}), {}, "1001", "1002", """
        refuse 486 'Busy Here' BUSY: callee 1002 is on do not disturb
    """),
    case("limit_beats_dnd", office(x1002={"dnd": True, "calls": 4}), {}, "1001", "1002", """
        refuse 486 'Busy Here: call limit reached' BUSY: callee 1002 is in 4 calls, its limit
    """),
    case("target_dnd", office(x1002={"forward_always": "1003"}, x1003={"dnd": True}), {}, "1001", "1002", """
        * forwarded 1002 -> 1003: always
        refuse 486 'Busy Here' BUSY: callee 1003 is on do not disturb
    """),
    case("loop_always", office(x1001={"forward_always": "1002"}, x1002={"forward_always": "1001"}), {}, "1003", "1001", """
        * forwarded 1001 -> 1002: always
        * forwarded 1002 -> 1001: always
        * refused_loop 1002 -> 1001: 1001 -> 1002 -> 1001
        refuse 482 'Loop Detected: 1001 -> 1002 -> 1001' FAILED: forwarding loop: 1001 -> 1002 -> 1001
    """),
    case("loop_busy", office(x1001={"forward_busy": "1002"}, x1002={"forward_busy": "1001"}), {}, "1003", "1001", """
        ring 1001 30 s
        busy:
          * forwarded 1001 -> 1002: busy
          ring 1002 30 s
          busy:
            * forwarded 1002 -> 1001: busy
            * refused_loop 1002 -> 1001: 1001 -> 1002 -> 1001
            refuse 482 'Loop Detected: 1001 -> 1002 -> 1001' FAILED: forwarding loop: 1001 -> 1002 -> 1001
    """),
    case("loop_via_group", office(x1001={"forward_no_answer": "600"}), {"600": {"name": "Sales", "members": ["1002"], "fallback": "1001"}}, "1003", "1001", """
        ring 1001 20 s
        no answer:
          * forwarded 1001 -> 600: no answer after 20 s
          * group 600 -> 1002: ringall 1002
          ring 1002 30 s (group 600 via Sales, dialled 600)
          then:
            * forwarded 600 -> 1001: fallback
            * refused_loop 600 -> 1001: 1001 -> 600 -> 1001
            refuse 482 'Loop Detected: 1001 -> 600 -> 1001' FAILED: forwarding loop: 1001 -> 600 -> 1001
    """),
    case("deep", {f"20{i:02d}": {"forward_always": f"20{i + 1:02d}"} for i in range(12)}, {}, "2000", "2001", """
        * forwarded 2001 -> 2002: always
        * forwarded 2002 -> 2003: always
        * forwarded 2003 -> 2004: always
        * forwarded 2004 -> 2005: always
        * forwarded 2005 -> 2006: always
        * forwarded 2006 -> 2007: always
        * forwarded 2007 -> 2008: always
        * forwarded 2008 -> 2009: always
        * refused_loop 2008 -> 2009: 2001 -> 2002 -> 2003 -> 2004 -> 2005 -> 2006 -> 2007 -> 2008 -> 2009
        refuse 482 'Loop Detected: more than 8 forwards' FAILED: more than 8 forwards: 2001 -> 2002 -> 2003 -> 2004 -> 2005 -> 2006 -> 2007 -> 2008 -> 2009
    """),
    case("group_loop_only", office(x1001={"forward_always": "600"}), {"600": {"name": "Sales", "members": ["1001"]}}, "1003", "600", """
        * group 1001 -> 600: skipped: forwarding loop 600 -> 1001 -> 600
        * refused_loop 600 -> 600: 600 -> 1001 -> 600
        refuse 482 'Loop Detected: 600 -> 1001 -> 600' FAILED: forwarding loop: 600 -> 1001 -> 600
    """),
    case("group_loop_other", office(x1001={"forward_always": "600"}), {"600": {"name": "Sales", "members": ["1001", "1002"]}}, "1003", "600", """
        * group 1001 -> 600: skipped: forwarding loop 600 -> 1001 -> 600
        * group 600 -> 1002: ringall 1002
        ring 1002 30 s (group 600 via Sales, dialled 600)
    """),
    case("ringall", office(), {"600": SALES}, "1004", "600", """
        * group 600 -> 1001,1002,1003: ringall 1001, 1002, 1003
        ring 1001 1002 1003 30 s (group 600 via Sales, dialled 600)
    """),
    case("ringall_fallback", office(), {"600": dict(SALES, fallback="1005", ring_time=20)}, "1004", "600", """
        * group 600 -> 1001,1002,1003: ringall 1001, 1002, 1003
        ring 1001 1002 1003 20 s (group 600 via Sales, dialled 600)
        then:
          * forwarded 600 -> 1005: fallback
          ring 1005 30 s
    """),
    case("ringall_skips", office(x1001={"dnd": True}, x1002={"calls": 1}, x1003={"phones": "none"}, x1004={"phones": "unreachable"}, x1006={"enabled": False}, x1007={}), {"600": {"name": "Sales", "members": ["1001", "1002", "1003", "1004", "1006", "1007"]}}, "1005", "600", """
        * group 1001 -> 600: skipped: dnd
        * group 1002 -> 600: skipped: in a call
        * group 1003 -> 600: skipped: not registered
        * group 1004 -> 600: skipped: phones do not answer
        * group 1006 -> 600: skipped: disabled
        * group 600 -> 1007: ringall 1007
        ring 1007 30 s (group 600 via Sales, dialled 600)
    """),
    case("ringall_rings_busy", office(x1002={"calls": 1}, x1003={"calls": 4}), {"600": {**SALES, "skip_busy": False}}, "1005", "600", """
        * group 1003 -> 600: skipped: in a call
        * group 600 -> 1001,1002: ringall 1001, 1002
        ring 1001 1002 30 s (group 600 via Sales, dialled 600)
    """),
    case("ringall_caller", office(), {"600": SALES}, "1001", "600", """
        * group 1001 -> 600: skipped: the caller
        * group 600 -> 1002,1003: ringall 1002, 1003
        ring 1002 1003 30 s (group 600 via Sales, dialled 600)
    """),
    case("nobody", office(x1001={"dnd": True}, x1002={"phones": "none"}), {"600": {"name": "Sales", "members": ["1001", "1002"]}}, "1004", "600", """
        * group 1001 -> 600: skipped: dnd
        * group 1002 -> 600: skipped: not registered
        refuse 480 'Temporarily Unavailable' FAILED: nobody in ring group 600 (Sales) can take the call: 1001 dnd, 1002 not registered
    """),
    case("nobody_fallback", office(x1001={"dnd": True}, x1002={"phones": "none"}), {"600": {"name": "Sales", "members": ["1001", "1002"], "fallback": "1005"}}, "1004", "600", """
        * group 1001 -> 600: skipped: dnd
        * group 1002 -> 600: skipped: not registered
        * forwarded 600 -> 1005: fallback
        ring 1005 30 s
    """),
    case("member_forwarded", office(x1002={"forward_always": "1009"}, x1009={}), {"600": SALES}, "1004", "600", """
        * forwarded 1002 -> 1009: always
        * group 600 -> 1001,1009,1003: ringall 1001, 1009, 1003
        ring 1001 1009 1003 30 s (group 600 via Sales, dialled 600)
    """),
    case("member_forwarded_dnd", office(x1002={"forward_always": "1009"}, x1009={"dnd": True}), {"600": SALES}, "1004", "600", """
        * group 1002 -> 600: skipped: dnd (1002 -> 1009)
        * group 600 -> 1001,1003: ringall 1001, 1003
        ring 1001 1003 30 s (group 600 via Sales, dialled 600)
    """),
    case("member_forwarded_group", office(x1002={"forward_always": "601"}), {"600": SALES, "601": {"name": "Support", "members": ["1005"]}}, "1004", "600", """
        * group 1002 -> 600: skipped: forwards always to 601
        * group 600 -> 1001,1003: ringall 1001, 1003
        ring 1001 1003 30 s (group 600 via Sales, dialled 600)
    """),
    case("member_forwarded_member", office(x1002={"forward_always": "1003"}), {"600": SALES}, "1004", "600", """
        * forwarded 1002 -> 1003: always
        * group 1003 -> 600: skipped: 1003 rings already
        * group 600 -> 1001,1003: ringall 1001, 1003
        ring 1001 1003 30 s (group 600 via Sales, dialled 600)
    """),
    case("hunt", office(), {"600": dict(SALES, strategy="hunt", member_time=10)}, "1004", "600", """
        * group 600 -> 1001: hunt member 1 of 3
        ring 1001 10 s (group 600 via Sales, dialled 600)
        then:
          * group 600 -> 1002: hunt member 2 of 3
          ring 1002 10 s (group 600 via Sales, dialled 600)
          then:
            * group 600 -> 1003: hunt member 3 of 3
            ring 1003 10 s (group 600 via Sales, dialled 600)
    """),
    case("hunt_bounded", office(), {"600": dict(SALES, strategy="hunt", member_time=10, ring_time=25)}, "1004", "600", """
        * group 600 -> 1001: hunt member 1 of 3
        ring 1001 10 s (group 600 via Sales, dialled 600)
        then:
          * group 600 -> 1002: hunt member 2 of 3
          ring 1002 10 s (group 600 via Sales, dialled 600)
          then:
            * group 600 -> 1003: hunt member 3 of 3
            ring 1003 5 s (group 600 via Sales, dialled 600)
    """),
    case("hunt_cut", office(), {"600": dict(SALES, strategy="hunt", member_time=15, ring_time=20)}, "1004", "600", """
        * group 600 -> 1001: hunt member 1 of 2
        ring 1001 15 s (group 600 via Sales, dialled 600)
        then:
          * group 600 -> 1002: hunt member 2 of 2
          ring 1002 5 s (group 600 via Sales, dialled 600)
    """),
    case("hunt_skip_fallback", office(x1002={"dnd": True}), {"600": dict(SALES, strategy="hunt", member_time=10, fallback="1005")}, "1004", "600", """
        * group 1002 -> 600: skipped: dnd
        * group 600 -> 1001: hunt member 1 of 2
        ring 1001 10 s (group 600 via Sales, dialled 600)
        then:
          * group 600 -> 1003: hunt member 2 of 2
          ring 1003 10 s (group 600 via Sales, dialled 600)
          then:
            * forwarded 600 -> 1005: fallback
            ring 1005 30 s
    """),
    case("fallback_hangup", office(), {"600": dict(SALES, fallback="hangup")}, "1004", "600", """
        * group 600 -> 1001,1002,1003: ringall 1001, 1002, 1003
        ring 1001 1002 1003 30 s (group 600 via Sales, dialled 600)
        then:
          * forwarded 600 -> hangup: fallback
          refuse 480 'Temporarily Unavailable' NO ANSWER: 600 falls back to hangup
    """),
    case("fallback_group", office(), {"600": dict(SALES, fallback="601"), "601": {"name": "Support", "members": ["1005"], "strategy": "hunt", "member_time": 10, "ring_time": 10}}, "1004", "600", """
        * group 600 -> 1001,1002,1003: ringall 1001, 1002, 1003
        ring 1001 1002 1003 30 s (group 600 via Sales, dialled 600)
        then:
          * forwarded 600 -> 601: fallback
          * group 601 -> 1005: hunt member 1 of 1
          ring 1005 10 s (group 601 via Support, dialled 601)
    """),
    case("no_answer_to_group", office(x1002={"forward_no_answer": "600"}), {"600": {"name": "Sales", "members": ["1002", "1003"]}}, "1001", "1002", """
        ring 1002 20 s
        no answer:
          * forwarded 1002 -> 600: no answer after 20 s
          * group 1002 -> 600: skipped: the call came through it
          * group 600 -> 1003: ringall 1003
          ring 1003 30 s (group 600 via Sales, dialled 600)
    """),
    case("f_dnd_on", office(), {}, "1001", "*78", """
        * feature 1001 -> : dnd on
        feature dnd_on 1001
    """),
    case("f_dnd_off", office(), {}, "1001", "*79", """
        * feature 1001 -> : dnd off
        feature dnd_off 1001
    """),
    case("f_fwd_on", office(), {}, "1001", "*721003", """
        * feature 1001 -> 1003: forward always on
        feature forward_on 1001 1003
    """),
    case("f_fwd_group", office(), {"600": SALES}, "1001", "*72600", """
        * feature 1001 -> 600: forward always on
        feature forward_on 1001 600
    """),
    case("f_fwd_off", office(), {}, "1001", "*73", """
        * feature 1001 -> : forward always off
        feature forward_off 1001
    """),
    case("f_fwd_empty", office(), {}, "1001", "*72", """
        * feature 1001 -> *72: refused: feature code *72 without a number
        refuse 484 'Address Incomplete: dial *72 and the number to forward to' FAILED: feature code *72 without a number
    """),
    case("f_fwd_bad", office(), {}, "1001", "*72#", """
        * feature 1001 -> *72#: refused: feature code *72 with '#'
        refuse 484 'Address Incomplete: # is not a number to dial' FAILED: feature code *72 with '#'
    """),
    case("f_fwd_self", office(), {}, "1001", "*721001", """
        * feature 1001 -> *721001: refused: 1001 cannot forward to itself
        refuse 403 'Forbidden: an extension cannot forward to itself' FAILED: 1001 cannot forward to itself
    """),
    case("f_fwd_nothing", office(), {}, "1001", "*721999", """
        * feature 1001 -> *721999: refused: 1999 is no extension or ring group, and no outbound route takes it
        refuse 403 'Forbidden: 1999 is no extension or ring group, and no outbound route takes it' FAILED: 1999 is no extension or ring group, and no outbound route takes it
    """),
    case("f_unknown", office(), {}, "1001", "*99", """
        * feature 1001 -> *99: refused: unknown feature code *99
        refuse 484 'Address Incomplete: unknown feature code *99' FAILED: unknown feature code *99
    """),
    case("f_stranger", office(), {}, "5551234", "*78", """
        * feature 5551234 -> *78: refused: feature code *78 from 5551234, which is no extension
        refuse 403 'Forbidden: feature codes are for extensions' FAILED: feature code *78 from 5551234, which is no extension
    """),
]


@pytest.mark.parametrize(("extensions", "groups_", "caller", "dialled", "expected"), CASES)
def test_routing_table(extensions, groups_, caller, dialled, expected):
    plan = decide(caller, dialled, TableDirectory(extensions, groups_), NOW)
    assert outline(plan) == expected


def test_a_direct_call_is_one_plain_ring():
    plan = decide("1001", "1002", TableDirectory(office()), NOW)
    assert plan == Ring(("1002",), 30)


def test_the_ring_timeout_is_the_b2buas_unless_a_no_answer_forward_sets_one():
    directory = TableDirectory(office(x1003={"forward_no_answer": "1004",
                                             "forward_no_answer_after": 12}))
    assert decide("1001", "1002", directory, NOW, ring_timeout=45).seconds == 45
    plan = decide("1001", "1003", directory, NOW, ring_timeout=45)
    assert plan.seconds == 12
    assert plan.on_no_answer == Ring(("1004",), 45, events=(
        Event("forwarded", by="1003", target="1004", detail="no answer after 12 s"),))


def test_what_a_phone_dials_never_reaches_a_reason_phrase_unsafe():
    for dialled in ("*72\r\nVia: evil", "*9\x00\r\n", "*" + "9" * 200):
        plan = decide("1001", dialled, TableDirectory(office()), NOW)
        assert isinstance(plan, Refuse) and plan.status == 484
        assert plan.phrase.isprintable() and len(plan.phrase) < 80, plan.phrase


def steps(plan) -> list:
    """Every distinct step object of a plan (continuations may be shared)."""
    seen, todo = {}, [plan]
    while todo:
        step = todo.pop()
        if step is None or id(step) in seen:
            continue
        seen[id(step)] = step
        if isinstance(step, Ring):
            todo += [step.on_busy, step.on_no_answer, step.on_unavailable]
    return list(seen.values())


def depth(plan) -> int:
    if not isinstance(plan, Ring):
        return 1
    following = [s for s in (plan.on_busy, plan.on_no_answer, plan.on_unavailable) if s]
    return 1 + max(map(depth, following), default=0)


class Counting(TableDirectory):
    """Counts what decide asks: its cost, which must not grow with the paths."""

    asked = 0

    def extension(self, number):
        self.asked += 1
        return super().extension(number)


def test_a_web_of_forwards_gives_a_bounded_plan():
    """30 extensions, each forwarding on busy, no answer and unavailable to three others:
    3^8 paths of 8 numbers. The plan stays within its budget of steps, every path ends,
    and what lies beyond the budget is a clear 482."""
    numbers = [f"3{i:03d}" for i in range(30)]
    table = {n: {"forward_no_answer": numbers[(i + 1) % 30], "forward_busy": numbers[(i + 2) % 30],
                 "forward_unavailable": numbers[(i + 3) % 30]} for i, n in enumerate(numbers)}
    directory = Counting(table)
    plan = decide("1001", numbers[0], directory, NOW)
    found = steps(plan)
    assert len(found) <= MAX_STEPS
    assert depth(plan) <= MAX_DEPTH + 1
    assert directory.asked <= 4 * MAX_STEPS
    ends = [s for s in found if isinstance(s, Refuse)]
    assert ends and {s.status for s in ends} == {482}
    assert {s.phrase for s in ends} >= {"Loop Detected: too many forwards"}
    # Every continuation of the first ring got a share of the budget: none is cut short.
    assert all(isinstance(s, Ring) for s in (plan.on_no_answer, plan.on_busy,
                                             plan.on_unavailable))


def test_a_long_chain_of_forwards_stops_at_the_depth():
    chain = {f"20{i:02d}": {"forward_no_answer": f"20{i + 1:02d}"} for i in range(20)}
    plan = decide("1001", "2000", TableDirectory(chain), NOW)
    assert depth(plan) == MAX_DEPTH + 1
    last = plan
    while isinstance(last, Ring):
        last = last.on_no_answer
    assert last.phrase == f"Loop Detected: more than {MAX_DEPTH} forwards"
    assert last.reason.endswith("2006 -> 2007 -> 2008")


def test_features_name_their_caller():
    assert decide("1004", "*78", TableDirectory(office()), NOW) == Feature(
        "dnd_on", "1004", events=(Event("feature", by="1004", detail="dnd on"),))


# -- StoreDirectory, on a real database ---------------------------------------------------


@pytest.fixture
def store(database):
    for number in OFFICE:
        accounts.create_extension(number, "pbx.test", name=f"Desk {number}", generate=True)
    return database


def bind(number: str, expires_at: float = NOW + 300, unreachable_since: float | None = None,
         contact: str = ""):
    extension = accounts.get_extension(number)
    contact = contact or f"sip:{number}@127.0.0.1:5070"
    Binding.create(extension=extension, aor=f"sip:{number}@pbx.test", contact=contact,
                   source_host="127.0.0.1", source_port=5070, transport="UDP",
                   expires_at=expires_at, call_id=f"reg-{number}-{contact}", cseq=1,
                   unreachable_since=unreachable_since)


class Statements:
    """The statements run on the shared connection (sqlite3's trace callback)."""

    def __init__(self):
        self.run: list[str] = []

    def __enter__(self):
        db.connection().set_trace_callback(self.run.append)
        return self

    def __exit__(self, *exc):
        db.connection().set_trace_callback(None)


def test_the_store_reads_extensions_groups_and_bindings(store):
    forwarding.set_dnd("1003", True)
    forwarding.set_forward("1002", "no_answer", "1004", after=25)
    forwarding.set_forward("1002", "busy", "hangup")
    accounts.update_extension("1005", enabled=False, max_calls=2)
    groups.create_group("600", "Sales", ["1003", "1001", "1002"], strategy="hunt",
                        ring_time=40, member_time=10, fallback="1004")
    bind("1001")
    bind("1002", unreachable_since=NOW - 60)
    bind("1004", expires_at=NOW - 1)  # expired: not registered any more
    bind("1004", contact="sip:1004@127.0.0.1:5071", unreachable_since=NOW - 5,
         expires_at=NOW + 60)
    directory = StoreDirectory(NOW, {"1001": 2}.get)
    assert directory.extension("1002") == ExtensionView(
        "1002", "Desk 1002", forward_busy="hangup", forward_no_answer="1004",
        forward_no_answer_after=25)
    assert directory.extension("1005") == ExtensionView("1005", "Desk 1005", enabled=False,
                                                        max_calls=2)
    assert directory.extension("1999") is None
    assert directory.group("600") == GroupView("600", "Sales", "hunt", 40, 10,
                                               ("1003", "1001", "1002"), "1004")
    assert directory.group("601") is None
    assert directory.extension("1003").dnd is True
    assert [directory.reachable(n) for n in OFFICE] == [True, False, False, False, False]
    assert [directory.registered(n) for n in OFFICE] == [True, True, False, True, False]
    assert directory.in_calls("1001") == 2


def test_a_call_costs_one_statement_a_group_call_two(store):
    groups.create_group("600", "Sales", ["1001", "1002", "1003"])
    forwarding.set_forward("1002", "no_answer", "1003")
    for number in OFFICE:
        bind(number)
    with Statements() as direct:
        plan = decide("1004", "1001", StoreDirectory(NOW, lambda n: 0), NOW)
    assert plan == Ring(("1001",), 30)
    assert len(direct.run) == 1, direct.run
    with Statements() as group:
        plan = decide("1004", "600", StoreDirectory(NOW, lambda n: 0), NOW)
    assert plan.extensions == ("1001", "1002", "1003")
    assert len(group.run) == 2, group.run  # no extension 600; the group with its members
    with Statements() as forwarded:
        plan = decide("1004", "1002", StoreDirectory(NOW, lambda n: 0), NOW)
    assert plan.on_no_answer.extensions == ("1003",)
    assert len(forwarded.run) == 2, forwarded.run  # 1002, then where it forwards


def test_the_caller_and_the_callee_in_one_statement(store):
    bind("1002")
    directory = StoreDirectory(NOW, lambda n: 0)
    with Statements() as read:
        directory.preload("1001", "1002", "1999")
        plan = decide("1001", "1002", directory, NOW)
        caller = directory.extension("1001")
        nobody = directory.extension("1999")
    assert (plan, caller.name, nobody) == (Ring(("1002",), 30), "Desk 1001", None)
    assert len(read.run) == 1, read.run


def test_the_store_and_a_table_give_the_same_plan(store):
    forwarding.set_dnd("1001", True)
    forwarding.set_forward("1002", "always", "1004")
    forwarding.set_forward("1004", "busy", "1005")
    groups.create_group("600", "Sales", ["1001", "1002", "1003"], fallback="1005")
    for number in ("1003", "1004", "1005"):
        bind(number)
    table = TableDirectory(
        office(x1001={"name": "Desk 1001", "dnd": True, "phones": "none"},
               x1002={"name": "Desk 1002", "forward_always": "1004", "phones": "none"},
               x1003={"name": "Desk 1003"}, x1004={"name": "Desk 1004", "forward_busy": "1005"},
               x1005={"name": "Desk 1005"}),
        {"600": {"name": "Sales", "members": ["1001", "1002", "1003"], "fallback": "1005"}})
    for dialled in ("600", "1002", "1001", "1999"):
        assert decide("1005", dialled, StoreDirectory(NOW, lambda n: 0), NOW) == decide(
            "1005", dialled, table, NOW), dialled
