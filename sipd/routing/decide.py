"""The routing step: where a call goes, decided before anything is sent.

`decide(caller, dialled, directory, now)` returns a plan (sipd/routing/plan.py)
and does no I/O: everything it knows comes from the `Directory`
(sipd/routing/directory.py), so each rule is a row of a table test
(tests/unit/test_routing.py). The B2BUA carries the plan out.

A call to an extension, in this order (DND before forward always, as Avaya IP
Office puts it: "DND overrides all the redirect methods"):
1. unknown number: 404 "no such number"; disabled: 403 "Forbidden: extension disabled";
2. in as many calls as it may be (max_calls): busy, that is its busy forward,
   else 486 "Busy Here: call limit reached";
3. DND: its busy forward, else 486 "Busy Here";
4. forward always: where it leads;
5. nothing to ring (no binding, or none that answers sipd's OPTIONS): its
   unavailable forward, else 480;
6. otherwise ring it, for its no-answer time if it has a no-answer forward (else
   `ring_timeout`), going on to its no-answer, busy and unavailable forwards.

A ring group rings its usable members: all at once for `ring_time` (ringall),
or one after another for `member_time` each, `ring_time` in all (hunt). A member
is skipped when it is the caller, disabled, on DND, in a call, or has nothing
to ring; a member that forwards always to another extension is replaced by it
(FreePBX follows a member's call forward the same way); one that forwards always
to anything else (a group, hangup) is skipped. Members' other forwards do not
apply inside a group: the group's fallback does, when nobody can take the call
or nobody answered; without one the caller gets 480 (nobody usable) or what the
phones answered.

The `hangup` destination ends the call with 480 Temporarily Unavailable: the
caller's phone shows the callee as unavailable, and 480, unlike 603 Decline, is
no global failure (RFC 3261 §21.4.18, §21.6.2) that would stop a provider
trying elsewhere. The history's disposition says why it came there (BUSY, NO
ANSWER, otherwise FAILED).

Loops: a number reached twice on one path (1001 forwards to 1002, which forwards
to 1001) ends in 482 "Loop Detected: 1001 -> 1002 -> 1001". A path has at most
MAX_DEPTH numbers, and a whole plan about MAX_STEPS steps (each Ring can lead
three ways, so an unbounded plan would grow exponentially): the budget is shared
fairly among a step's continuations, and what is left beyond it is a 482 too.

Outside numbers (issue 12): a number that is no extension or ring group is
matched against the outbound routes in order (first route, then first pattern,
wins: core/dial_patterns.py) and becomes an `Outside` step, one
`TrunkAttempt` per enabled trunk of the route, each with the number the pattern
sends and the caller ID (the extension's, else the route's, else the trunk's).
The number as sent is classified (core/tolls.py) and the extension
whose call it is (the caller, or the extension whose forward leads there) must
be permitted it: a refusal is a 403 naming the rule, with a `toll_fraud` event
that the B2BUA also writes as a FraudEvent row. An emergency route is always
permitted. No route takes the number: 404 as before; a route without a usable
trunk: 503. Limits that need live counts (calls now, calls and minutes in the
last hour, a block) are the B2BUA's, before the first attempt (sipd/trunks/).

Feature codes (FreePBX/FusionPBX): *78 / *79 DND on / off, *72NUMBER / *73
forward always on / off; sipd/apps/features.py carries them out. *43 is the echo
test, an `Application` the PBX answers itself (sipd/apps/echo.py).
"""

from __future__ import annotations

import dataclasses
import re

from core import destinations, dial_patterns, hours, tolls
from sipd.routing.directory import Directory, ExtensionView, GroupView
from sipd.routing.plan import (
    Application,
    Event,
    Feature,
    Outside,
    Refuse,
    Ring,
    Step,
    TrunkAttempt,
)

MAX_DEPTH = 8  # numbers on one path of a call
MAX_STEPS = 64  # steps in one plan
NUMBER_RE = destinations.NUMBER_RE
# What may be tried against the outbound routes: what a phone dials (dial_patterns.py
# matches nothing else anyway), short enough for a reason phrase.
OUTSIDE_RE = re.compile(r"^\+?[0-9*#]{1,32}$")

FEATURE_CODES = {
    "*78": ("dnd_on", "dnd on"),
    "*79": ("dnd_off", "dnd off"),
    "*73": ("forward_off", "forward always off"),
}
FORWARD_ON = "*72"
# Applications the PBX answers itself (sipd/apps/), by feature code.
APPLICATION_CODES = {
    "*43": ("echo", "echo test"),
}
# Voicemail (issue 13): *97 one's own mailbox, *98 any mailbox (number, then PIN).
VOICEMAIL_CODES = {"*97": "check", "*98": "login"}
VOICEMAIL = destinations.VOICEMAIL
IVR = destinations.IVR
HOURS = destinations.HOURS

# The reason phrase of each refusal (RFC 3261 §21); decide's own, like calls.py's.
NOT_FOUND = "Not Found"
UNAVAILABLE = "Temporarily Unavailable"
BUSY = "Busy Here"
LOOP = "Loop Detected"


def decide(caller: str, dialled: str, directory: Directory, now: float,
           ring_timeout: float = 30, inbound: bool = False) -> Step:
    """The plan for a call from extension `caller` to `dialled` (the Request-URI's user).

    `now` is the time of the call: business hours (hours:NAME) are judged at it.
    `inbound`: a provider's call (sipd/trunks/inbound.py), `caller` the number as
    the provider sent it and `dialled` its inbound route's destination, reached
    as a forward there would be (an extension, a group, voicemail:N, hangup ...).
    """
    dialled = (dialled or "").strip()
    if inbound:
        router = _Router(caller, directory, ring_timeout, now)
        step, _ = router.follow("", "inbound", dialled, (), MAX_STEPS)
        first = step.events[0] if step.events else None
        if first is not None and first.kind == "forwarded" and not first.by:
            step = dataclasses.replace(step, events=step.events[1:])  # nobody forwarded it
        return step
    if dialled.startswith("*"):
        return _feature(caller, dialled, directory)
    step, _ = _Router(caller, directory, ring_timeout, now).route(dialled, (), MAX_STEPS)
    return step


def _with(events: tuple[Event, ...], step: Step) -> Step:
    """`step`, recording `events` first when it begins."""
    return dataclasses.replace(step, events=events + step.events) if events else step


def _disposition(detail: str) -> str:
    if detail in ("busy", "dnd"):
        return "BUSY"
    if detail.startswith("no answer") or detail == "fallback":
        return "NO ANSWER"
    return "FAILED"


def _mailbox_reason(detail: str) -> str:
    """Why a call reached voicemail, from the forward's detail: picks the greeting."""
    if detail in ("busy", "dnd", "unavailable"):
        return detail
    return "no_answer" if detail.startswith("no answer") else ""


def _fallback(ext: ExtensionView, forward: str) -> str:
    """Where a call goes that `ext` cannot take: its forward of that kind, else its
    mailbox when that is on (voicemail:NUMBER), else nowhere ("")."""
    if forward:
        return forward
    return f"{VOICEMAIL}{ext.number}" if ext.voicemail else ""


def _loop(path: tuple[str, ...], number: str) -> Refuse:
    way = " -> ".join((*path, number))
    return Refuse(482, f"{LOOP}: {way}", "FAILED", f"forwarding loop: {way}",
                  (Event("refused_loop", by=path[-1] if path else "", target=number,
                         detail=way),))


class _Router:
    def __init__(self, caller: str, directory: Directory, ring_timeout: float,
                 now: float = 0.0):
        self.caller = caller
        self.directory = directory
        self.ring_timeout = ring_timeout
        self.now = now

    # A plan is built depth first; each function gets a budget of steps and returns
    # (step, steps it used), never more than its budget: a step that would need more
    # (a Ring and one step for each of its continuations, at least) is a 482 instead.

    def spent(self, path: tuple[str, ...], number: str) -> Refuse:
        way = " -> ".join((*path, number))
        return Refuse(482, f"{LOOP}: too many forwards", "FAILED",
                      f"more than {MAX_STEPS} steps of forwarding: {way}",
                      (Event("refused_loop", by=path[-1] if path else "", target=number,
                             detail=way),))

    def route(self, number: str, path: tuple[str, ...], budget: int) -> tuple[Step, int]:
        """The plan for the call reaching `number` after the numbers of `path`."""
        if number in path:
            return _loop(path, number), 1
        if len(path) >= MAX_DEPTH:
            way = " -> ".join((*path, number))
            return Refuse(482, f"{LOOP}: more than {MAX_DEPTH} forwards", "FAILED",
                          f"more than {MAX_DEPTH} forwards: {way}",
                          (Event("refused_loop", by=path[-1], target=number, detail=way),)), 1
        if budget < 1:  # not reached: every continuation is given one step at least
            return self.spent(path, number), 1
        if number.lower().startswith(VOICEMAIL):  # a destination run as if dialled
            return self.mailbox(number[len(VOICEMAIL):], "", ""), 1
        if number.lower().startswith(IVR):
            return self.menu(number[len(IVR):].strip().lower()), 1
        if number.lower().startswith(HOURS):
            return self.hours(number[len(HOURS):].strip().lower(), path, budget)
        extension = self.directory.extension(number) if NUMBER_RE.match(number) else None
        if extension is not None:
            return self.extension(extension, path + (number,), budget)
        group = self.directory.group(number) if NUMBER_RE.match(number) else None
        if group is not None:
            return self.group(group, path + (number,), budget)
        # A menu's or schedule's own number (after extensions and groups, which
        # core/ivr.py keeps it apart from): as if its destination were dialled.
        owner = self.directory.numbered(number) if NUMBER_RE.match(number) else ""
        if owner:
            return self.route(owner, path + (number,), budget)
        if OUTSIDE_RE.match(number):
            step = self.outside(number, path)
            if step is not None:
                return step, 1
        return Refuse(404, NOT_FOUND, "FAILED", "no such number"), 1

    # -- menus and business hours -----------------------------------------------------

    def menu(self, name: str) -> Step:
        """An IVR menu (sipd/apps/ivr.py), if it exists and applications run."""
        if not getattr(self.directory, "applications", False):
            return Refuse(503, "Service Unavailable: IVR is not running", "FAILED",
                          f"IVR menu {name}: applications are not running")
        if not self.directory.ivr(name):
            return Refuse(480, UNAVAILABLE, "FAILED", f"IVR menu {name} does not exist")
        return Application("ivr", name)

    def hours(self, name: str, path: tuple[str, ...], budget: int) -> tuple[Step, int]:
        """Business hours: their open or closed destination at the call's `now`.
        Schedules leading to each other are on the path like forwards, so a loop of
        them ends in 482 like a loop of forwards."""
        key = f"{HOURS}{name}"
        if key in path:
            return _loop(path, key), 1
        schedule = self.directory.schedule(name)
        if schedule is None:
            return Refuse(480, UNAVAILABLE, "FAILED", f"business hours {name} do not exist"), 1
        is_open = hours.is_open(schedule.hours, self.now)
        destination = schedule.in_destination if is_open else schedule.out_destination
        event = Event("hours", by=key, target=destination,
                      detail="open" if is_open else "closed")
        if destination.strip().lower() == destinations.HANGUP:
            return Refuse(480, UNAVAILABLE, "FAILED",
                          f"business hours {name}: {event.detail}, hangup", (event,)), 1
        step, used = self.route(destination, path + (key,), budget)
        return _with((event,), step), used

    # -- an outside number ------------------------------------------------------------

    def outside(self, number: str, path: tuple[str, ...]) -> Step | None:
        """The Outside step (or the refusal) for `number`; None when no route takes it."""
        for route in self.directory.routes():
            try:
                found = dial_patterns.first_match(route.patterns, number)
            except dial_patterns.PatternError:
                # core/outbound.py refuses bad patterns on write: a row written
                # otherwise cannot take calls, but the routes after it still do.
                continue
            if found is not None:
                return self.through(route, number, found[1], path)
        return None

    def through(self, route, number: str, sent: str, path: tuple[str, ...]) -> Step:
        # The extension whose call this is: the caller, or the one whose forward leads
        # here (business hours and menu numbers on the way are nobody's).
        by = next((p for p in reversed(path)
                   if not p.startswith(HOURS) and not self.directory.numbered(p)), self.caller)
        ext = self.directory.extension(by)
        policy = self.directory.policy()
        kind = tolls.classify(sent, emergency=route.emergency,
                                 home_country=policy.home_country)
        refusal = tolls.permit(
            by, kind, permission=ext.outbound_permission if ext else "internal",
            home_country=policy.home_country, allowed_countries=policy.allowed_countries)
        if refusal is not None:
            return Refuse(403, f"Forbidden: {refusal.detail}", "FAILED",
                          f"{refusal.detail} (route {route.name}, {number} sent as {sent})",
                          (Event("toll_fraud", by=by, target=number, detail=refusal.rule),))
        if not route.trunks:
            return Refuse(503, "Service Unavailable: no trunk for this number", "FAILED",
                          f"outbound route {route.name} has no enabled trunk")
        own = ext.outbound_caller_id if ext else ""
        attempts = tuple(TrunkAttempt(t.name, sent, own or route.caller_id or t.caller_id)
                         for t in route.trunks)
        return Outside(number, route.name, attempts, by, kind.kind == tolls.EMERGENCY,
                       record=route.record)

    def follow(self, by: str, detail: str, destination: str, path: tuple[str, ...],
               budget: int) -> tuple[Step, int]:
        """Where `by`'s forward (of kind `detail`) to `destination` leads."""
        event = Event("forwarded", by=by, target=destination, detail=detail)
        try:
            target = destinations.parse(destination)
        except destinations.DestinationError:
            target = None
        if target is not None and target.kind == "voicemail":
            return _with((event,), self.mailbox(target.value, detail, by)), 1
        if target is not None and target.kind == "hangup":
            reason = (f"{by} falls back to hangup" if detail == "fallback"
                      else f"{by} forwards to hangup ({detail})")
            return Refuse(480, UNAVAILABLE, _disposition(detail), reason, (event,)), 1
        step, used = self.route(destination, path, budget)
        return _with((event,), step), used

    def mailbox(self, number: str, detail: str, by: str) -> Step:
        """The voicemail of `number` (an Application step), if its mailbox is on."""
        ext = self.directory.extension(number)
        if ext is None or not ext.voicemail:
            why = f"mailbox {number} is off or does not exist"
            return Refuse(480, UNAVAILABLE, _disposition(detail) if by else "FAILED",
                          f"{by} forwards to voicemail: {why}" if by else why)
        return Application("voicemail", number, _mailbox_reason(detail))

    # -- an extension -----------------------------------------------------------------

    def extension(self, ext: ExtensionView, path: tuple[str, ...],
                  budget: int) -> tuple[Step, int]:
        number, directory = ext.number, self.directory
        if not ext.enabled:
            return Refuse(403, "Forbidden: extension disabled", "FAILED",
                          "callee extension disabled"), 1
        busy = _fallback(ext, ext.forward_busy)
        if directory.in_calls(number) >= ext.max_calls:
            if busy:
                return self.follow(number, "busy", busy, path, budget)
            return Refuse(486, f"{BUSY}: call limit reached", "BUSY",
                          f"callee {number} is in {ext.max_calls} calls, its limit"), 1
        if ext.dnd:
            if busy:
                return self.follow(number, "dnd", busy, path, budget)
            return Refuse(486, BUSY, "BUSY", f"callee {number} is on do not disturb"), 1
        if ext.forward_always:
            return self.follow(number, "always", ext.forward_always, path, budget)
        unavailable = _fallback(ext, ext.forward_unavailable)
        if not directory.reachable(number):
            if unavailable:
                return self.follow(number, "unavailable", unavailable, path, budget)
            reason = ("callee's phones do not answer" if directory.registered(number)
                      else "callee not registered")
            return Refuse(480, UNAVAILABLE, "FAILED", reason), 1
        no_answer = _fallback(ext, ext.forward_no_answer)
        seconds = ext.forward_no_answer_after if no_answer else self.ring_timeout
        # In the order the B2BUA most often needs them: the budget goes first to those.
        forwards = [("on_no_answer", f"no answer after {seconds:g} s", no_answer),
                    ("on_busy", "busy", busy),
                    ("on_unavailable", "unavailable", unavailable)]
        wanted = [f for f in forwards if f[2]]
        if budget < 1 + len(wanted):
            return self.spent(path[:-1], number), 1
        # Each continuation gets its share of what is left, and what one does not use
        # goes to the next: a chain of single forwards can use the whole budget.
        left, continuations = budget - 1, {}
        for index, (name, detail, destination) in enumerate(wanted):
            share = left // (len(wanted) - index)
            continuations[name], used = self.follow(number, detail, destination, path, share)
            left -= used
        return Ring((number,), seconds, **continuations), budget - left

    # -- a ring group -----------------------------------------------------------------

    def group(self, group: GroupView, path: tuple[str, ...], budget: int) -> tuple[Step, int]:
        rung: list[str] = []
        events: list[Event] = []  # skipped members and members' forwards, in member order
        loops: list[str] = []
        for member in group.members:
            target, member_events, loop = self.member(member, group, path, rung)
            events += member_events
            if target is not None:
                rung.append(target)
            if loop:
                loops.append(loop)
        slots = self.slots(group, rung) if group.strategy == "hunt" else []
        own = max(1, len(slots))  # the steps of the group itself
        if budget < own + (1 if group.fallback else 0):
            return self.spent(path[:-1], group.number), 1
        left = budget - own
        fallback = None
        if group.fallback:
            fallback, used = self.follow(group.number, "fallback", group.fallback, path, left)
            left -= used
        if not rung:
            skipped = ", ".join(f"{e.by} {e.detail.removeprefix('skipped: ')}" for e in events
                                if e.detail.startswith("skipped"))
            why = f"nobody in ring group {group.number} ({group.name}) can take the call"
            why += f": {skipped}" if skipped else ""
            if fallback is not None:
                return _with(tuple(events), fallback), budget - left
            if loops:
                return Refuse(482, f"{LOOP}: {loops[0]}", "FAILED", f"forwarding loop: {loops[0]}",
                              (*events, Event("refused_loop", by=group.number,
                                              target=group.number, detail=loops[0]))), 1
            return Refuse(480, UNAVAILABLE, "FAILED", why, tuple(events)), 1
        common = dict(group=group.number, via=group.name, dialled=group.number)
        if group.strategy == "hunt":
            return self.hunt(group, slots, events, fallback, common), budget - left
        ringing = Event("group", by=group.number, target=",".join(rung),
                        detail=f"ringall {', '.join(rung)}")
        return Ring(tuple(rung), group.ring_time, on_busy=fallback, on_no_answer=fallback,
                    on_unavailable=fallback, events=(*events, ringing), **common), budget - left

    @staticmethod
    def slots(group: GroupView, rung: list[str]) -> list[tuple[str, float]]:
        """(member, seconds) of a hunt: member_time each until ring_time is used up."""
        slots, remaining = [], group.ring_time
        for member in rung:
            if remaining <= 0:
                break
            slots.append((member, min(group.member_time, remaining)))
            remaining -= group.member_time
        return slots

    def hunt(self, group: GroupView, slots: list[tuple[str, float]], events: list[Event],
             fallback: Step | None, common: dict) -> Step:
        """One Ring per slot, each going on to the next whatever happens, then the fallback."""
        step = fallback
        for index in range(len(slots) - 1, -1, -1):
            member, seconds = slots[index]
            turn = Event("group", by=group.number, target=member,
                         detail=f"hunt member {index + 1} of {len(slots)}")
            step = Ring((member,), seconds, on_busy=step, on_no_answer=step, on_unavailable=step,
                        events=((*events, turn) if index == 0 else (turn,)), **common)
        return step

    def member(self, member: str, group: GroupView, path: tuple[str, ...],
               rung: list[str]) -> tuple[str | None, list[Event], str]:
        """(the extension to ring for `member` or None, events, the loop if one was found).

        A member's forward always to another extension is followed (bounded, and
        a forward back onto the call's path is a loop)."""
        directory = self.directory
        events: list[Event] = []
        chain = [member]
        number = member

        def skip(why: str, loop: str = "") -> tuple[None, list[Event], str]:
            # Only the skip: the member's forwards were followed, but nothing rang there.
            via = f" ({' -> '.join(chain)})" if len(chain) > 1 else ""
            return None, [Event("group", by=member, target=group.number,
                                detail=f"skipped: {why}{via}")], loop

        for _ in range(MAX_DEPTH):
            if number == self.caller:
                return skip("the caller")
            if number in path:
                return skip("the call came through it")
            ext = directory.extension(number)
            if ext is None:
                return skip("no such extension")
            if not ext.enabled:
                return skip("disabled")
            if ext.dnd:
                return skip("dnd")
            if ext.forward_always:
                destination = ext.forward_always
                if destination in path or destination in chain:
                    loop = " -> ".join((*path, *chain, destination))
                    chain[1:] = []  # the loop names the whole way
                    return skip(f"forwarding loop {loop}", loop)
                if directory.extension(destination) is None:
                    return skip(f"forwards always to {destination}")
                events.append(Event("forwarded", by=number, target=destination, detail="always"))
                chain.append(destination)
                number = destination
                continue
            calls = directory.in_calls(number)
            if calls >= ext.max_calls or (group.skip_busy and calls > 0):
                return skip("in a call")
            if not directory.reachable(number):
                return skip("phones do not answer" if directory.registered(number)
                            else "not registered")
            if number in rung:
                return skip(f"{number} rings already")
            return number, events, ""
        return skip(f"more than {MAX_DEPTH} forwards")


# -- feature codes ------------------------------------------------------------------------


def _shown(text: str) -> str:
    """What a phone dialled, safe to put in a reason phrase (no CR/LF, short)."""
    safe = "".join(c for c in text if c.isascii() and c.isprintable())
    return safe[:24] + ("..." if len(safe) > 24 else "")


def _feature(caller: str, dialled: str, directory: Directory) -> Step:
    code = _shown(dialled)

    def refuse(status: int, phrase: str, reason: str) -> Refuse:
        return Refuse(status, phrase, "FAILED", reason,
                      (Event("feature", by=caller, target=code, detail=f"refused: {reason}"),))

    if directory.extension(caller) is None:
        return refuse(403, "Forbidden: feature codes are for extensions",
                      f"feature code {code} from {caller}, which is no extension")
    if dialled in VOICEMAIL_CODES:
        reason = VOICEMAIL_CODES[dialled]
        if not getattr(directory, "applications", False):
            return refuse(503, "Service Unavailable: voicemail is not running",
                          f"feature code {code}: voicemail is not running")
        if reason == "check" and not directory.extension(caller).voicemail:
            return refuse(403, "Forbidden: your mailbox is off",
                          f"feature code {code}: mailbox {caller} is off or does not exist")
        return Application("voicemail", caller if reason == "check" else "", reason,
                           (Event("feature", by=caller, target=code, detail="voicemail"),))
    if dialled in FEATURE_CODES:
        name, detail = FEATURE_CODES[dialled]
        return Feature(name, caller, events=(Event("feature", by=caller, detail=detail),))
    if dialled in APPLICATION_CODES:
        name, detail = APPLICATION_CODES[dialled]
        return Application(name, caller, events=(Event("feature", by=caller, detail=detail),))
    if dialled.startswith(FORWARD_ON):
        target = dialled[len(FORWARD_ON):]
        if not target:
            return refuse(484, "Address Incomplete: dial *72 and the number to forward to",
                          "feature code *72 without a number")
        if not NUMBER_RE.match(target):
            return refuse(484, f"Address Incomplete: {_shown(target)} is not a number to dial",
                          f"feature code *72 with {_shown(target)!r}")
        if target == caller:
            return refuse(403, "Forbidden: an extension cannot forward to itself",
                          f"{caller} cannot forward to itself")
        if (directory.extension(target) is None and directory.group(target) is None
                and not destinations.routed_out(
                    target, (route.patterns for route in directory.routes()))):
            # As the panel's forward (core/destinations.py): an outside number is a
            # target when an outbound route takes it; its calls are permission-checked
            # as the forwarding extension's when they are made.
            words = destinations.NOT_A_TARGET % {"number": target}
            return refuse(403, f"Forbidden: {words}", words)
        return Feature("forward_on", caller, target,
                       (Event("feature", by=caller, target=target, detail="forward always on"),))
    return refuse(484, f"Address Incomplete: unknown feature code {code}",
                  f"unknown feature code {code}")
