"""A plan: where a call goes, decided before anything is sent (sipd/routing/decide.py).

The routing step turns (caller, number dialled, source, time, the state of the
targets) into one of these values and does no I/O; the B2BUA (sipd/b2bua/)
carries it out. A plan is a tree: a `Ring` step names what follows it for each
way it can fail, so the B2BUA goes from step to step without asking again and
the caller hears ringing throughout. Everything a plan can lead to is one of
the few kinds of `Step` below; the trunk and media-application issues add
their kinds here (a trunk call, voicemail, an IVR), nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union


@dataclass(frozen=True)
class Event:
    """What the call history records when a step begins (core.models.CallEvent)."""

    kind: str  # forwarded | group | refused_loop | feature | hours (by: hours:NAME, open/closed)
    by: str = ""  # the extension whose setting caused it
    target: str = ""  # where the call goes
    detail: str = ""  # e.g. "always", "busy", "no answer after 20 s", "hunt member 2 of 3"


@dataclass(frozen=True)
class Ring:
    """Ring every reachable binding of each of `extensions` at once for `seconds`.

    The first 2xx wins and the other branches are CANCELled. When the step ends
    without an answer the B2BUA CANCELs what still rings and goes on to:
    - on_busy: every phone rung answered busy (486, 600, 603);
    - on_no_answer: `seconds` passed, or the phones answered 408/480/487;
    - on_unavailable: every phone failed otherwise (no response, 5xx, 404...).
    None for any of them: the caller gets the matching final response
    (486 Busy Here, 480 Temporarily Unavailable).
    """

    extensions: tuple[str, ...]
    seconds: float
    # The ring group the call came through: its number (the history's via_group)
    # and its name, shown to the callee with the caller ("1001 via Sales").
    group: str = ""
    via: str = ""
    # The number the callee's phone is told was dialled (To); "" = the extension's own.
    dialled: str = ""
    on_busy: Step | None = None
    on_no_answer: Step | None = None
    on_unavailable: Step | None = None
    events: tuple[Event, ...] = ()


@dataclass(frozen=True)
class Refuse:
    """Answer the caller with a final response and end the call (404, 480, 482, 486...)."""

    status: int
    phrase: str  # the reason phrase sent, e.g. "Busy Here", "Loop Detected: 1001 -> 1002 -> 1001"
    disposition: str  # the history's: BUSY | NO ANSWER | FAILED
    reason: str  # the log's and the history's words: why
    events: tuple[Event, ...] = ()


@dataclass(frozen=True)
class Feature:
    """A feature code dialled by `caller` (*78, *79, *72NUMBER, *73): the B2BUA has
    it carried out (sipd/apps/features.py) and answers with the result."""

    code: str  # "dnd_on" | "dnd_off" | "forward_on" | "forward_off"
    caller: str
    argument: str = ""  # *72's number
    events: tuple[Event, ...] = field(default=())


@dataclass(frozen=True)
class TrunkAttempt:
    """One trunk of an outbound route, with what is sent through it."""

    trunk: str  # core.models.Trunk.name
    number: str  # the number sent (after the route's strip and prepend)
    caller_id: str = ""  # the caller ID sent: extension's, else route's, else trunk's


@dataclass(frozen=True)
class Outside:
    """A call to the outside world through an outbound route (issue 12).

    The B2BUA tries `attempts` in order: the next one on 5xx, 408, no answer
    within the trunk's time, or a trunk that is down or at its call limit;
    404, 484 and 486 (the number is wrong or busy) go back to the caller.
    emergency: the route is an emergency one, never refused by a toll-fraud
    rule nor counted against a limit. Toll-fraud checks that need live state
    (concurrent calls, calls and minutes in the last hour) are made by the
    B2BUA before the first attempt (sipd/trunks/); permission and country are
    decided here, and a refused number is a `Refuse` instead.
    """

    dialled: str
    route: str
    attempts: tuple[TrunkAttempt, ...]
    caller: str = ""
    emergency: bool = False
    events: tuple[Event, ...] = ()
    record: bool = False  # the route records its calls (sipd/recording.py)


@dataclass(frozen=True)
class Application:
    """A call the PBX answers itself (issue 13, sipd/apps/).

    app: "voicemail" (target: the mailbox's number) or "ivr" (target: the
    menu's name). A business-hours schedule is no application: the routing
    step resolves `hours:NAME` with its `now` to the open or closed
    destination. reason, for voicemail: why the call came (busy | no_answer |
    unavailable | dnd | "" when dialled directly), which picks the greeting.
    """

    app: str
    target: str
    reason: str = ""
    events: tuple[Event, ...] = ()


Step = Union[Ring, Refuse, Feature, Outside, Application]  # noqa: UP007 - a closed set, read as one
