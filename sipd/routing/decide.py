"""The routing rules: (caller, number dialled, the directory, time) -> a plan.

Pure: no sockets, no database, no clock of its own (the directory is a snapshot,
directory.py), so every rule is a row in tests/unit/test_routing.py. The plan's
kinds are in plan.py; the B2BUA (sipd/b2bua/) carries it out.

What a number leads to, in order (FreePBX's and FusionPBX's behaviour, where
an office admin comes from):
- a feature code (`*78` DND on, `*79` off, `*72NUMBER` forward always, `*73` off);
- an extension: disabled -> 403; forward always -> there; DND -> its busy
  forward, else 486; at its call limit -> busy the same way; else its phones
  ring, for its no-answer time when a no-answer forward is set, with its busy /
  no-answer / unavailable forwards as what follows (the B2BUA finds out when the
  step begins whether it has a phone that answers: if not, that is
  `on_unavailable`, its unavailable forward, else 480);
- a ring group: its usable members (not on DND, not in a call when the group
  skips busy members, registered and reachable; a member's forward-always to
  another extension rings that one instead) all at once for ring_time
  (ringall) or one after another for member_time each within ring_time (hunt);
  then its fallback, else 480;
- anything else: 404.
A forward chain is cut where it comes back to a number already on its path
(482 Loop Detected, naming the path) or after MAX_DEPTH numbers, and a whole
plan holds at most MAX_STEPS Ring steps, since each step names three
continuations and a tree of forwards could otherwise grow without bound.
"""

from __future__ import annotations

import re

from sipd.routing.directory import Directory, ExtensionView, GroupView
from sipd.routing.plan import Event, Feature, Refuse, Ring, Step

MAX_DEPTH = 8  # numbers along one path (caller's dialled number, forwards, a group)
MAX_STEPS = 64  # Ring steps in one plan
_NUMBER = re.compile(r"^[0-9]{2,15}$")
FEATURES = {"*78": "dnd_on", "*79": "dnd_off", "*73": "forward_off"}
FORWARD_ON = "*72"

# The words of a forward's kind in events and logs.
_KIND = {"always": "always", "busy": "busy", "no_answer": "no answer",
         "unavailable": "unavailable", "dnd": "dnd"}
# What the caller is told when a forward leads to `hangup`, by why it was taken.
_HANGUP_DISPOSITION = {"busy": "BUSY", "dnd": "BUSY", "no_answer": "NO ANSWER"}


def decide(caller: str, dialled: str, directory: Directory, now: float,
           ring_timeout: float = 30) -> Step:
    """Where a call from extension `caller` to `dialled` goes."""
    if dialled.startswith("*"):
        return feature(caller, dialled)
    return _Router(directory, ring_timeout).route(dialled, (), ())


def feature(caller: str, dialled: str) -> Step:
    code = FEATURES.get(dialled)
    if code is not None:
        return Feature(code, caller, events=(Event("feature", caller, dialled, code),))
    if dialled.startswith(FORWARD_ON):
        target = dialled[len(FORWARD_ON):]
        if not _NUMBER.match(target):
            return Refuse(484, "Address Incomplete: dial *72 and the number to forward to",
                          "FAILED", f"feature code {dialled!r} without a number")
        return Feature("forward_on", caller, target,
                       events=(Event("feature", caller, target, "forward_on"),))
    return Refuse(484, f"Address Incomplete: no feature code {dialled[:16]}", "FAILED",
                  f"unknown feature code {dialled[:16]!r}")


class _Router:
    def __init__(self, directory: Directory, ring_timeout: float):
        self.directory = directory
        self.ring_timeout = ring_timeout
        self.steps = 0

    def route(self, number: str, path: tuple[str, ...], events: tuple[Event, ...]) -> Step:
        if number in path:
            shown = " -> ".join(path + (number,))
            return Refuse(482, f"Loop Detected: {shown}", "FAILED", f"forward loop {shown}",
                          events + (Event("refused_loop", path[-1], number, shown),))
        if len(path) >= MAX_DEPTH:
            return Refuse(483, "Too Many Hops: forwarded too many times", "FAILED",
                          f"more than {MAX_DEPTH} forwards: {' -> '.join(path)}", events)
        path = path + (number,)
        extension = self.directory.extension(number)
        if extension is not None:
            return self.extension(extension, path, events)
        group = self.directory.group(number)
        if group is not None:
            return self.group(group, path, events)
        return Refuse(404, "Not Found", "FAILED", "no such number", events)

    # -- an extension ------------------------------------------------------------------

    def extension(self, ext: ExtensionView, path, events) -> Step:
        n = ext.number
        if not ext.enabled:
            return Refuse(403, "Forbidden: extension disabled", "FAILED",
                          "callee extension disabled", events)
        if ext.forward_always:
            return self.forward(ext, "always", ext.forward_always, path, events)
        if ext.dnd:
            if ext.forward_busy:
                return self.forward(ext, "dnd", ext.forward_busy, path, events)
            return Refuse(486, "Busy Here: do not disturb", "BUSY",
                          f"callee {n} is on do-not-disturb", events)
        if self.directory.in_calls(n) >= ext.max_calls:
            if ext.forward_busy:
                return self.forward(ext, "busy", ext.forward_busy, path, events)
            return Refuse(486, "Busy Here: call limit reached", "BUSY",
                          f"callee {n} is in {ext.max_calls} calls, its limit", events)
        # Whether it has a phone to ring is not asked here: the B2BUA reads the
        # bindings when the step begins (one read, which it needs anyway), and a
        # step with nothing to ring is `on_unavailable`, the unavailable forward.
        if not self._budget():
            return self._too_many(path, events)
        seconds = ext.forward_no_answer_after if ext.forward_no_answer else self.ring_timeout

        def then(kind: str, target: str) -> Step | None:
            return self.forward(ext, kind, target, path, ()) if target else None

        return Ring(
            (n,), seconds,
            on_busy=then("busy", ext.forward_busy),
            on_no_answer=then("no_answer", ext.forward_no_answer),
            on_unavailable=then("unavailable", ext.forward_unavailable),
            events=events,
        )

    def forward(self, ext: ExtensionView, kind: str, target: str, path, events) -> Step:
        detail = _KIND[kind]
        if kind == "no_answer":
            detail += f" after {ext.forward_no_answer_after} s"
        event = Event("forwarded", ext.number, target, detail)
        if target == "hangup":
            return Refuse(480, "Temporarily Unavailable",
                          _HANGUP_DISPOSITION.get(kind, "FAILED"),
                          f"{ext.number} forwards ({detail}) to hangup", events + (event,))
        return self.route(target, path, events + (event,))

    # -- a ring group ------------------------------------------------------------------

    def group(self, group: GroupView, path, events) -> Step:
        usable, skipped = self.members(group, path)
        fallback = self.fallback(group, path)
        if not usable:
            why = ", ".join(f"{m} ({reason})" for m, reason in skipped) or "no members"
            event = Event("group", group.number, "", f"nobody to ring: {why}")
            if fallback is not None:
                return _with_events(fallback, events + (event,))
            return Refuse(480, "Temporarily Unavailable", "FAILED",
                          f"no member of group {group.number} can take calls: {why}",
                          events + (event,))
        detail = group.strategy + "".join(
            f", skipped {m} ({reason})" for m, reason in skipped)
        event = Event("group", group.number, ",".join(usable), detail)
        via = group.name or group.number
        if group.strategy == "hunt":
            return self.hunt(group, usable, fallback, via, events + (event,))
        if not self._budget():
            return self._too_many(path, events)
        return Ring(tuple(usable), group.ring_time, group=group.number, via=via,
                    on_busy=fallback, on_no_answer=fallback, on_unavailable=fallback,
                    events=events + (event,))

    def members(self, group: GroupView, path) -> tuple[list[str], list[tuple[str, str]]]:
        """(the extensions to ring in order, [(member, why it is skipped)])."""
        usable: list[str] = []
        skipped: list[tuple[str, str]] = []
        for number in group.members:
            ext = self.directory.extension(number)
            if ext is not None and ext.forward_always and ext.forward_always != "hangup":
                # Follow a member's forward-always to another extension (not further:
                # a group rings phones, and a chain of forwards is the member's own).
                target = self.directory.extension(ext.forward_always)
                if target is None or target.number in path:
                    skipped.append((number, f"forwarded to {ext.forward_always}"))
                    continue
                ext = target
            why = self._unusable(ext, group)
            if why:
                skipped.append((number, why))
            elif ext.number not in usable:
                usable.append(ext.number)
        return usable, skipped

    def _unusable(self, ext: ExtensionView | None, group: GroupView) -> str:
        if ext is None or not ext.enabled:
            return "disabled"
        if ext.forward_always:
            return f"forwarded to {ext.forward_always}"
        if ext.dnd:
            return "dnd"
        calls = self.directory.in_calls(ext.number)
        if calls >= ext.max_calls or (group.skip_busy and calls > 0):
            return "in a call"
        if not self.directory.reachable(ext.number):
            return "not registered" if not self.directory.registered(ext.number) \
                else "not reachable"
        return ""

    def hunt(self, group: GroupView, usable: list[str], fallback, via, events) -> Step:
        """One member after another, member_time each, ring_time in all: built from
        the end, each step's every failure leading to the next member."""
        times = []
        left = group.ring_time
        for _ in usable:
            if left <= 0:
                break
            times.append(min(group.member_time, left))
            left -= group.member_time
        step = fallback
        count = len(times)
        for index in range(count - 1, -1, -1):
            if not self._budget():
                break
            number = usable[index]
            step = Ring((number,), times[index], group=group.number, via=via,
                        on_busy=step, on_no_answer=step, on_unavailable=step,
                        events=(Event("group", group.number, number,
                                      f"hunt member {index + 1} of {count}"),))
        return _with_events(step, events) if step is not None else Refuse(
            480, "Temporarily Unavailable", "FAILED",
            f"nobody in group {group.number} to ring", events)

    def fallback(self, group: GroupView, path) -> Step | None:
        if not group.fallback:
            return None
        event = Event("forwarded", group.number, group.fallback, "group fallback")
        if group.fallback == "hangup":
            return Refuse(480, "Temporarily Unavailable", "NO ANSWER",
                          f"group {group.number} ends in hangup", (event,))
        return self.route(group.fallback, path, (event,))

    # -- bounds ------------------------------------------------------------------------

    def _budget(self) -> bool:
        self.steps += 1
        return self.steps <= MAX_STEPS

    def _too_many(self, path, events) -> Refuse:
        return Refuse(483, "Too Many Hops: forwarded too many times", "FAILED",
                      f"more than {MAX_STEPS} ring steps: {' -> '.join(path)}", events)


def _with_events(step: Step, events: tuple[Event, ...]) -> Step:
    """`step` with `events` recorded before its own."""
    if not events:
        return step
    from dataclasses import replace  # noqa: PLC0415

    return replace(step, events=events + step.events)
