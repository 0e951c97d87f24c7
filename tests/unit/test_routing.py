"""The routing step as tables: (caller, number, states of the targets) -> plan.

Each case builds a directory from a few words and says the plan in a short
notation (`shape`): `ring 1001 20s [busy: ..., no answer: ..., unavailable: ...]`,
`refuse 486 BUSY`, `feature dnd_on`. No sockets, no database: sipd/routing/ is pure.
"""

from __future__ import annotations

import pytest

from sipd.routing.decide import MAX_STEPS, decide
from sipd.routing.directory import ExtensionView, GroupView, TableDirectory
from sipd.routing.plan import Feature, Refuse, Ring


def shape(step) -> str:
    if step is None:
        return "-"
    if isinstance(step, Refuse):
        return f"refuse {step.status} {step.disposition}"
    if isinstance(step, Feature):
        return f"feature {step.code}" + (f" {step.argument}" if step.argument else "")
    parts = [f"ring {','.join(step.extensions)} {step.seconds:g}s"]
    if step.via:
        parts.append(f"via {step.via}")
    then = [(label, getattr(step, f"on_{name}"))
            for label, name in (("busy", "busy"), ("no answer", "no_answer"),
                                ("unavailable", "unavailable"))]
    shown = [f"{label}: {shape(s)}" for label, s in then if s is not None]
    if shown:
        parts.append("[" + "; ".join(shown) + "]")
    return " ".join(parts)


def directory(extensions=(), groups=(), unregistered=(), unreachable=(), calls=None, **fields):
    """Extensions 1001-1005 registered and free unless said otherwise; `fields`:
    per-extension settings, e.g. e1002={"dnd": True}."""
    exts = {}
    for number in ("1001", "1002", "1003", "1004", "1005", *extensions):
        exts[number] = ExtensionView(number=number, name=f"Desk {number}",
                                     **fields.get(f"e{number}", {}))
    bindings = {n: "reachable" for n in exts if n not in unregistered}
    bindings.update({n: "unreachable" for n in unreachable})
    return TableDirectory(extensions=exts, groups={g.number: g for g in groups},
                          bindings=bindings, calls=dict(calls or {}))


SALES = GroupView(number="600", name="Sales", members=("1002", "1003", "1004"))
HUNT = GroupView(number="601", name="Support", strategy="hunt", ring_time=40, member_time=15,
                 members=("1002", "1003", "1004"))

CASES = [
    # (what, directory, dialled, plan)
    ("a registered extension rings for the ring timeout",
     directory(), "1002", "ring 1002 30s"),
    ("an unknown number", directory(), "1999", "refuse 404 FAILED"),
    ("a disabled extension", directory(e1002={"enabled": False}), "1002", "refuse 403 FAILED"),
    # Whether an extension's phones answer, the B2BUA finds when the step begins:
    # none is the step's on_unavailable (below), None there a 480.
    ("not registered: rung, and the B2BUA finds nothing to ring",
     directory(unregistered=("1002",)), "1002", "ring 1002 30s"),
    ("at its call limit", directory(calls={"1002": 4}), "1002", "refuse 486 BUSY"),
    ("in a call below its limit still rings (call waiting)",
     directory(calls={"1002": 1}), "1002", "ring 1002 30s"),
    ("DND: busy", directory(e1002={"dnd": True}), "1002", "refuse 486 BUSY"),
    ("DND with a busy forward goes there",
     directory(e1002={"dnd": True, "forward_busy": "1003"}), "1002", "ring 1003 30s"),
    ("forward always", directory(e1002={"forward_always": "1003"}), "1002", "ring 1003 30s"),
    ("forward always wins over DND",
     directory(e1002={"forward_always": "1003", "dnd": True}), "1002", "ring 1003 30s"),
    ("forward always to a group", directory(groups=[SALES], e1005={"forward_always": "600"}),
     "1005", "ring 1002,1003,1004 30s via Sales"),
    ("forward always to hangup", directory(e1002={"forward_always": "hangup"}), "1002",
     "refuse 480 FAILED"),
    ("forward on busy, at the limit",
     directory(calls={"1002": 4}, e1002={"forward_busy": "1003"}), "1002", "ring 1003 30s"),
    ("forward on busy, free: rings, busy answer goes on",
     directory(e1002={"forward_busy": "1003"}), "1002", "ring 1002 30s [busy: ring 1003 30s]"),
    ("forward on no answer: rings for its time, then there",
     directory(e1002={"forward_no_answer": "1003", "forward_no_answer_after": 15}), "1002",
     "ring 1002 15s [no answer: ring 1003 30s]"),
    ("forward when unavailable (not registered, or every phone failing)",
     directory(unregistered=("1002",), e1002={"forward_unavailable": "1003"}), "1002",
     "ring 1002 30s [unavailable: ring 1003 30s]"),
    ("every forward at once",
     directory(e1002={"forward_busy": "1003", "forward_no_answer": "1004",
                      "forward_unavailable": "1005"}), "1002",
     "ring 1002 20s [busy: ring 1003 30s; no answer: ring 1004 30s; "
     "unavailable: ring 1005 30s]"),
    ("a forward to an unregistered extension rings it (and so ends there)",
     directory(unregistered=("1003",), e1002={"forward_always": "1003"}), "1002",
     "ring 1003 30s"),
    ("forward chain", directory(e1002={"forward_always": "1003"},
                                e1003={"forward_always": "1004"}), "1002", "ring 1004 30s"),
    ("a forward loop is refused",
     directory(e1002={"forward_always": "1003"}, e1003={"forward_always": "1002"}), "1002",
     "refuse 482 FAILED"),
    ("a no-answer loop rings both, then is refused",
     directory(e1002={"forward_no_answer": "1003"}, e1003={"forward_no_answer": "1002"}),
     "1002", "ring 1002 20s [no answer: ring 1003 20s [no answer: refuse 482 FAILED]]"),
    ("a group containing itself through a forward",
     directory(groups=[SALES], e1002={"forward_always": "600"},
               e1003={"forward_always": "600"}, e1004={"forward_always": "600"}), "600",
     "refuse 480 FAILED"),
    ("a group whose fallback leads back to it",
     directory(groups=[GroupView(number="602", name="Loop", members=("1002",),
                                 fallback="1003")],
               e1003={"forward_always": "602"}), "602",
     "ring 1002 30s via Loop [busy: refuse 482 FAILED; no answer: refuse 482 FAILED; "
     "unavailable: refuse 482 FAILED]"),
    # ring groups
    ("ringall", directory(groups=[SALES]), "600", "ring 1002,1003,1004 30s via Sales"),
    ("ringall skips DND, busy and unregistered members",
     directory(groups=[SALES], e1002={"dnd": True}, calls={"1003": 1},
               unregistered=("1004",), extensions=("1006",)), "600", "refuse 480 FAILED"),
    ("ringall skips a member in a call, rings the rest",
     directory(groups=[SALES], calls={"1003": 1}), "600", "ring 1002,1004 30s via Sales"),
    ("a group that does not skip busy members rings one in a call",
     directory(groups=[GroupView(number="600", name="Sales", members=("1002", "1003"),
                                 skip_busy=False)], calls={"1003": 1}), "600",
     "ring 1002,1003 30s via Sales"),
    ("but not one at its limit",
     directory(groups=[GroupView(number="600", name="Sales", members=("1002", "1003"),
                                 skip_busy=False)], calls={"1003": 4}), "600",
     "ring 1002 30s via Sales"),
    ("a member forwarded always rings where it forwards",
     directory(groups=[SALES], e1003={"forward_always": "1005"}), "600",
     "ring 1002,1005,1004 30s via Sales"),
    ("a member forwarded to another member is rung once",
     directory(groups=[SALES], e1003={"forward_always": "1002"}), "600",
     "ring 1002,1004 30s via Sales"),
    ("a member's own no-answer forward does not apply in a group",
     directory(groups=[SALES], e1002={"forward_no_answer": "1005"}), "600",
     "ring 1002,1003,1004 30s via Sales"),
    ("ringall with a fallback",
     directory(groups=[GroupView(number="600", name="Sales", members=("1002", "1003"),
                                 fallback="1005")]), "600",
     "ring 1002,1003 30s via Sales [busy: ring 1005 30s; no answer: ring 1005 30s; "
     "unavailable: ring 1005 30s]"),
    ("nobody usable goes to the fallback at once",
     directory(groups=[GroupView(number="600", name="Sales", members=("1002",),
                                 fallback="1005")], e1002={"dnd": True}), "600",
     "ring 1005 30s"),
    ("hunt: one member after another within the ring time",
     directory(groups=[HUNT]), "601",
     "ring 1002 15s via Support [busy: ring 1003 15s via Support [busy: ring 1004 10s via "
     "Support; no answer: ring 1004 10s via Support; unavailable: ring 1004 10s via Support]; "
     "no answer: ring 1003 15s via Support [busy: ring 1004 10s via Support; no answer: ring "
     "1004 10s via Support; unavailable: ring 1004 10s via Support]; unavailable: ring 1003 "
     "15s via Support [busy: ring 1004 10s via Support; no answer: ring 1004 10s via Support; "
     "unavailable: ring 1004 10s via Support]]"),
    ("hunt skips the unusable member",
     directory(groups=[GroupView(number="601", name="Support", strategy="hunt", ring_time=30,
                                 member_time=15, members=("1002", "1003"))],
               e1002={"dnd": True}), "601", "ring 1003 15s via Support"),
    ("hunt stops at the ring time",
     directory(groups=[GroupView(number="601", name="S", strategy="hunt", ring_time=15,
                                 member_time=15, members=("1002", "1003"), fallback="hangup")]),
     "601", "ring 1002 15s via S [busy: refuse 480 NO ANSWER; no answer: refuse 480 NO ANSWER; "
     "unavailable: refuse 480 NO ANSWER]"),
    # feature codes
    ("*78 DND on", directory(), "*78", "feature dnd_on"),
    ("*79 DND off", directory(), "*79", "feature dnd_off"),
    ("*72 forward always on", directory(), "*721003", "feature forward_on 1003"),
    ("*72 without a number", directory(), "*72", "refuse 484 FAILED"),
    ("*73 forward always off", directory(), "*73", "feature forward_off"),
    ("an unknown feature code", directory(), "*55", "refuse 484 FAILED"),
]


@pytest.mark.parametrize("what, directory_, dialled, expected", CASES,
                         ids=[case[0] for case in CASES])
def test_plan(what, directory_, dialled, expected):
    assert shape(decide("1001", dialled, directory_, 0.0)) == expected


def test_reasons_and_phrases_say_why():
    d = directory(e1002={"forward_always": "1003"}, e1003={"forward_always": "1002"})
    loop = decide("1001", "1002", d, 0.0)
    assert loop.phrase == "Loop Detected: 1002 -> 1003 -> 1002"
    assert [(e.kind, e.by, e.target) for e in loop.events] == [
        ("forwarded", "1002", "1003"), ("forwarded", "1003", "1002"),
        ("refused_loop", "1003", "1002")]
    busy = decide("1001", "1002", directory(calls={"1002": 4}), 0.0)
    assert (busy.phrase, busy.reason) == ("Busy Here: call limit reached",
                                          "callee 1002 is in 4 calls, its limit")


def test_events_name_the_forward_and_the_group():
    d = directory(groups=[SALES], e1002={"dnd": True}, e1005={"forward_always": "600"})
    plan = decide("1001", "1005", d, 0.0)
    assert [(e.kind, e.by, e.target, e.detail) for e in plan.events] == [
        ("forwarded", "1005", "600", "always"),
        ("group", "600", "1003,1004", "ringall, skipped 1002 (dnd)"),
    ]
    assert (plan.group, plan.via) == ("600", "Sales")
    later = decide("1001", "1002", directory(
        e1002={"forward_no_answer": "1003", "forward_no_answer_after": 15}), 0.0)
    assert later.events == ()
    assert [(e.kind, e.detail) for e in later.on_no_answer.events] == [
        ("forwarded", "no answer after 15 s")]


def test_a_tree_of_forwards_stays_bounded():
    # Each of 40 extensions forwards busy, no answer and unavailable to the next
    # three: without a budget the plan would hold 3^8 steps.
    extensions = {}
    numbers = [str(2000 + i) for i in range(40)]
    for i, number in enumerate(numbers):
        nxt = [numbers[(i + k) % len(numbers)] for k in (1, 2, 3)]
        extensions[number] = ExtensionView(number=number, forward_busy=nxt[0],
                                           forward_no_answer=nxt[1],
                                           forward_unavailable=nxt[2])
    d = TableDirectory(extensions=extensions, bindings={n: "reachable" for n in numbers})
    plan = decide("1001", numbers[0], d, 0.0)

    def count(step) -> int:
        if not isinstance(step, Ring):
            return 0
        return 1 + sum(count(getattr(step, f"on_{k}")) for k in ("busy", "no_answer",
                                                                  "unavailable"))

    assert 1 <= count(plan) <= MAX_STEPS
