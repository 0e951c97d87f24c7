"""Qualifying bindings: which to probe with OPTIONS when, and what came of it.

RFC 3261 §11: an OPTIONS request asks a UA what it supports; any response at
all (200, but also 404, 405, 481 ...) proves that the contact is there and that
our requests reach it. A binding that does not answer within `timeout` is
unreachable (calls do not ring it) and after `drop_after` unanswered probes in
a row it is dropped.

Pure decisions, no networking: the caller passes the bindings as the database
has them (`sync`), asks which are due (`due`), reports answers (`answered`)
and failures it saw itself (`failed`, e.g. a TCP connection that is gone),
and collects probes past their deadline (`expired`). The clock is passed in,
so tests move time instead of waiting. sipd/qualifier.py carries it out.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import NamedTuple

from sipd.sip.message import Headers, Request

# Unanswered probes in a row after which a binding is dropped: one lost
# datagram (and its retransmissions, Timer E) is not enough, a dead phone is
# gone within a few intervals (3 minutes at the default of 60 s), well before
# its registration would have expired (PBX_DEFAULT_EXPIRES, 300 s).
DROP_AFTER = 3
# A probe unanswered this long has failed: a phone answers OPTIONS within
# milliseconds, and over UDP Timer E has retransmitted it three times by then
# (0.5, 1.5, 3.5 s). Timer F's 32 s (§17.1.2.2) would hold a dead phone's
# binding ringable for half a minute per probe.
PROBE_TIMEOUT = 5.0
# Probes in flight at once: a power cut that killed every phone must not turn
# into a burst of thousands of transactions; the rest wait their turn.
MAX_IN_FLIGHT = 32
# Spreads the first probes of bindings seen together (all of them when sipd
# starts) over the interval: id * the golden ratio, modulo 1, is well spread
# for consecutive ids.
_GOLDEN = 0.6180339887498949


class Target(NamedTuple):
    """A binding as the qualifier sees it (the database row's columns)."""

    id: int
    aor: str
    contact: str
    host: str  # where the REGISTER came from: the probe goes there (NAT-proof)
    port: int
    transport: str
    updated_at: float  # changes with every REGISTER refresh
    unreachable: bool  # as the database has it now
    # The same phone seems to have registered again elsewhere (superseded_at):
    # probed at once, dropped at its first silence.
    superseded: bool = False


class Change(NamedTuple):
    """What to write: `kind` is "unreachable", "reachable" or "drop"."""

    kind: str
    target: Target
    failures: int


@dataclass
class _State:
    target: Target
    next_probe: float
    unreachable: bool
    failures: int = 0
    deadline: float | None = None  # a probe is in flight until then
    superseded: bool = False


class Schedule:
    """Each binding's next probe in a heap, the probes in flight in a dict: a tick
    (every 0.1 s) costs what is due, not a walk over every binding."""

    def __init__(self, interval: float, timeout: float | None = None,
                 drop_after: int = DROP_AFTER, max_in_flight: int = MAX_IN_FLIGHT):
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.interval = interval
        # Never longer than half the interval, so that a probe ends before the next is due.
        self.timeout = min(PROBE_TIMEOUT, interval / 2) if timeout is None else timeout
        self.drop_after = drop_after
        self.max_in_flight = max_in_flight
        self._states: dict[int, _State] = {}
        # (next probe, id) of the bindings waiting; an entry whose binding went is skipped.
        self._waiting: list[tuple[float, int]] = []
        self._flying: dict[int, float] = {}  # id -> deadline of its probe

    def __len__(self) -> int:
        return len(self._states)

    def state(self, binding_id: int) -> _State | None:
        return self._states.get(binding_id)

    def in_flight(self) -> int:
        return len(self._flying)

    def sync(self, targets: list[Target], now: float) -> list[int]:
        """The live bindings as the database has them now; returns the ids that went
        (expired, unregistered, dropped by hand), whose probes are forgotten."""
        seen = set()
        for target in targets:
            seen.add(target.id)
            state = self._states.get(target.id)
            if state is None:
                phase = (target.id * _GOLDEN) % 1.0
                state = _State(target, now + phase * self.interval, target.unreachable)
                self._states[target.id] = state
                heapq.heappush(self._waiting, (state.next_probe, target.id))
            elif state.target.updated_at != target.updated_at:
                # A REGISTER refreshed it (and cleared unreachable_since): the phone
                # spoke to us, so its count starts again; its turn stays where it was.
                state.target = target
                state.failures = 0
                state.unreachable = target.unreachable
            else:
                state.target = target
            self._suspect(state, target.superseded, now)
        gone = [binding_id for binding_id in self._states if binding_id not in seen]
        for binding_id in gone:
            del self._states[binding_id]
            self._flying.pop(binding_id, None)
        return gone

    def _suspect(self, state: _State, superseded: bool, now: float) -> None:
        """Newly superseded: its probe is due now (the old heap entry is left over)."""
        if superseded and not state.superseded and state.deadline is None:
            state.next_probe = now
            heapq.heappush(self._waiting, (now, state.target.id))
        state.superseded = superseded and (state.superseded or state.deadline is None)

    def due(self, now: float) -> list[Target]:
        """The bindings to probe now (each marked in flight until now + timeout)."""
        picked: list[Target] = []
        room = self.max_in_flight - len(self._flying)
        waiting = self._waiting
        while waiting and waiting[0][0] <= now and len(picked) < room:
            when, binding_id = heapq.heappop(waiting)
            state = self._states.get(binding_id)
            if state is None or state.deadline is not None or state.next_probe != when:
                continue  # went, or an entry left over
            state.deadline = self._flying[binding_id] = now + self.timeout
            # The next turn keeps the binding's place in the interval, unless it was
            # held back so long (probes in flight) that the place is already past.
            state.next_probe = max(when + self.interval, now + self.timeout)
            picked.append(state.target)
        return picked

    def _landed(self, binding_id: int) -> _State | None:
        """A probe ended: the binding waits for its next turn (entered when it ends,
        so that a binding is in the heap at most once)."""
        state = self._states.get(binding_id)
        if state is None:
            return None
        state.deadline = None
        if self._flying.pop(binding_id, None) is not None:
            heapq.heappush(self._waiting, (state.next_probe, binding_id))
        return state

    def answered(self, binding_id: int, now: float) -> Change | None:
        """Any response to its probe: reachable (a Change only if it was not)."""
        state = self._landed(binding_id)
        if state is None:
            return None
        state.failures = 0
        if state.unreachable or state.superseded:
            # A superseded binding that answers is another live phone: kept.
            state.unreachable = state.superseded = False
            return Change("reachable", state.target, 0)
        return None

    def failed(self, binding_id: int, now: float) -> Change | None:
        """Its probe got no answer (or could not be sent)."""
        state = self._landed(binding_id)
        if state is None:
            return None
        state.failures += 1
        if state.failures >= self.drop_after or state.superseded:
            del self._states[binding_id]
            return Change("drop", state.target, state.failures)
        if not state.unreachable:
            state.unreachable = True
            return Change("unreachable", state.target, state.failures)
        return None

    def expired(self, now: float) -> tuple[list[int], list[Change]]:
        """Probes past their deadline: their ids (to forget the transactions) and
        what their failure changes."""
        ids = [binding_id for binding_id, deadline in self._flying.items() if deadline <= now]
        changes = [change for change in (self.failed(i, now) for i in ids) if change is not None]
        return ids, changes


def options_request(target: Target, via: str, realm: str, tag: str, call_id: str) -> Request:
    """The probe (§11.1): to the contact itself, out of any dialog, no body."""
    headers = Headers([
        ("Via", via),
        ("Max-Forwards", "70"),
        ("From", f"<sip:pbx@{realm}>;tag={tag}"),
        ("To", f"<{target.aor}>"),
        ("Call-ID", call_id),
        ("CSeq", "1 OPTIONS"),
        ("Accept", "application/sdp"),
        ("User-Agent", "pbx-sipd"),
    ])
    return Request(headers=headers, method="OPTIONS", uri=target.contact)
