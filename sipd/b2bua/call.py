"""One call: its caller leg, the callee legs it has rung, its media session and
where it is in its plan. A value the parts of the B2BUA act on; the rules are in
forking.py (ringing), bridge.py (answered) and plan.py (from step to step).

Every call is a row in the `call` table from its first authenticated INVITE to
its end; nothing about a call lives only here once it has ended. The row's id
names the call (live calls page, hang-up): a Call-ID alone does not, since two
INVITEs with one Call-ID and different From tags are two calls (RFC 3261 §12).
"""

from __future__ import annotations

from enum import Enum


class Phase(Enum):
    RINGING = "ringing"
    ANSWERED = "answered"
    ENDED = "ended"


class Call:
    __slots__ = (
        "record_id", "caller_number", "caller_name", "callee", "caller", "callee_leg",
        "media", "offer", "started", "phase", "fork", "branches", "answered_at", "trying",
        "ring_timer", "max_timer", "hold_timer", "parties", "held_since", "relayed",
        "steps", "feature", "app", "music", "transfer", "delayed", "caller_session",
        "outside", "handover", "trunk_session", "recorded_by", "__weakref__",
    )

    def __init__(self, record_id: int, caller_number: str, caller_name: str, callee: str,
                 caller, media, offer, started: float):
        self.record_id = record_id
        self.caller_number = caller_number
        # The name the callee is shown (the panel's for the caller's extension).
        self.caller_name = caller_name
        self.callee = callee  # the number dialled
        self.caller = caller  # CallerLeg
        self.callee_leg = None  # the CalleeLeg that answered
        self.media = media  # the relay's MediaSession
        self.offer = offer  # the caller's SDP offer, for every branch's INVITE
        self.started = started
        self.phase = Phase.RINGING
        self.fork = None  # the Fork of the ring step under way
        self.branches: list = []  # every CalleeLeg of every ring step, in order
        self.answered_at: float | None = None
        self.trying = None  # the 100 Trying not sent yet (a timer Handle)
        self.ring_timer = None  # the ring step's time
        self.max_timer = None  # the maximum call duration
        self.hold_timer = None  # held both ways: ends after hold_timeout
        # The extensions whose call limit it counts against: the caller, the
        # extensions ringing now, then the one that answered.
        self.parties: set[str] = set()
        self.held_since: float | None = None
        # Our client transactions for what one phone sent the other: key -> Relayed.
        self.relayed: dict = {}
        self.steps = 0  # plan steps begun (bounded: see plan.py)
        self.feature = None  # a Feature step the PBX answered itself
        self.app = None  # the AppCall of an Application step (b2bua/application.py)
        self.music = None  # the legs hearing music on hold (b2bua/music.py), a set
        self.transfer = None  # the Transfer under way from a REFER (transfer.py)
        # The caller's INVITE had no SDP (RFC 3261 §13.2.1): `offer` is ours,
        # the caller's answer comes in its ACK.
        self.delayed = False
        # RFC 4028 on the caller's leg, as our 2xx settles it (b2bua/session_timer.py).
        self.caller_session = None
        # An outside call (sipd/trunks/outbound.py Prepared): counted by the toll-fraud
        # limits until it ends.
        self.outside = None
        # An application answered the call and handed it on to a number
        # (b2bua/handover.py): its Handover while the number's phones ring.
        self.handover = None
        # RFC 4028 on the trunk's leg of an outside call (b2bua/session_timer.py).
        self.trunk_session = None
        # The route whose calls are all recorded that this one came in or goes out by
        # ("inbound route 712000001", "outbound route mobile"), or "" (sipd/recording.py).
        self.recorded_by = ""

    @property
    def rings(self) -> bool:
        """Its plan rings phones: before the caller is answered, or after an
        application answered it and handed it on to a number."""
        return self.phase is Phase.RINGING or (
            self.handover is not None and self.phase is Phase.ANSWERED)

    @property
    def timers(self) -> tuple:
        sessions = tuple(session.timer for session in (self.caller_session, self.trunk_session)
                         if session is not None)
        return (self.trying, self.ring_timer, self.max_timer, self.hold_timer, *sessions)
