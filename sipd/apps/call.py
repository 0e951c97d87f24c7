"""The call an application (voicemail, IVR, the echo test) talks to: `AppCall`.

The contract (/work/wt/CONTRACTS.md, issue 13): an application is
`run(call: AppCall) -> None`, registered in sipd/apps/__init__.py's APPS; the
B2BUA's executor answers the caller with the PBX's media endpoint and runs it
in a greenlet of its own. Every blocking method raises `CallerGone` once the
caller has hung up, so an application reads top to bottom like a script of
the call and needs no checks of its own:

    call.caller, call.caller_name, call.dialled, call.target, call.reason, call.source
    call.language                       # "" unless the app sets it
    call.play(*paths, interrupt=True) -> str   # first key pressed, or "" when all played
    call.tone(hz, ms)
    call.digits(max_digits=1, timeout=5.0, end="#", first_timeout=None) -> str
    call.record(path, max_seconds, silence_seconds=5.0, end_keys="#") -> Recording
    call.hangup()
    call.continue_to(destination)      # never returns (CallerGone): see below
    call.now()

`continue_to(destination)` routes `destination` as if the caller had dialled
it: another application (voicemail:N, ivr:X) runs on in the same call and
endpoint; a number (an extension, a ring group, an outside number) is rung
while the caller hears a ringback tone, and the phone that answers is bridged
to the caller, or the plan's failure steps follow (sipd/b2bua/handover.py).

`AppCall` below is the real one: its media are the PBX's own endpoint on the
caller's leg of the call's relay session (sipd/media/endpoint.py, in the
media process; ops and events through sipd.media.Relay), its signalling the
B2BUA's (sipd/b2bua/executor.py runs it, ends the call when `run` returns,
and tells it when the caller hangs up). Keys come from RFC 4733
telephone-events (the media process) and from SIP INFO (application/dtmf-relay,
application/dtmf: `AppCall.key`), both into one queue; a key pressed while
nothing asks for one waits there (type-ahead), except that `play` with
interrupt=True returns one at once, and `record` starts with the queue cleared.
Unit tests use a scripted fake relay whose `events()` moves the call's clock.

Beyond the contract: `call.echo(max_seconds, end_keys)` (the *43 echo test),
`call.payload_type` (0 or 8, what the endpoint speaks).
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger("sipd")

# How long one wait for the media process's events lasts at most: a hang-up
# seen by the B2BUA (which cannot wake a greenlet blocked on the relay's
# socket) is noticed within this.
SLICE = 0.25


class CallerGone(Exception):
    """The caller hung up (or the call was ended): the application stops here."""


ENDED_BY = ("key", "hangup", "silence", "max")


@dataclass(frozen=True)
class Recording:
    path: str  # a WAV, 8 kHz mono (16-bit PCM), of what the caller sent
    seconds: float
    ended_by: str  # one of ENDED_BY
    key: str = ""  # the key that ended it ("" unless ended_by == "key")


class AppCallProtocol(Protocol):
    caller: str
    caller_name: str
    dialled: str
    target: str
    reason: str
    source: str
    language: str

    def play(self, *paths, interrupt: bool = True) -> str: ...

    def tone(self, hz: float, ms: int) -> None: ...

    def digits(self, max_digits: int = 1, timeout: float = 5.0, end: str = "#",
               first_timeout: float | None = None) -> str: ...

    def record(self, path, max_seconds: float, silence_seconds: float = 5.0,
               end_keys: str = "#") -> Recording: ...

    def hangup(self) -> None: ...

    def continue_to(self, destination: str) -> None: ...

    def now(self) -> float: ...


class AppCall:
    """The answered call an application runs on (see the module's docstring).
    `owner`: the B2BUA's executor side: `clock()`, `hangup(app)`,
    `continue_to(app, destination)`; `relay`, `session`: the media session
    whose leg A is the caller's, with the endpoint attached."""

    def __init__(self, owner, relay, session, *, caller: str, caller_name: str, dialled: str,
                 target: str, reason: str, source: str, payload_type: int = 0):
        self.owner = owner
        self.relay = relay
        self.session = session
        self.caller = caller
        self.caller_name = caller_name
        self.dialled = dialled
        self.target = target
        self.reason = reason
        self.source = source
        self.language = ""
        self.payload_type = payload_type
        self.gone = False  # the caller hung up, or the call ended
        self.keys: deque[str] = deque()
        self.played: set = set()
        self.recorded: dict[str, dict] = {}
        self._tags = 0
        # Kept by the B2BUA (sipd/b2bua/application.py): its Call, the app's
        # name, the caller's telephone-event type, whether the app's greenlet runs.
        self.call = None
        self.app = ""
        self.event_type: int | None = None
        self.running = False

    # --- what the B2BUA tells it ------------------------------------------------------

    def caller_gone(self) -> None:
        self.gone = True

    def key(self, key: str) -> None:
        """A key from SIP INFO (application/dtmf-relay)."""
        self.keys.append(key)

    # --- the contract -------------------------------------------------------------------

    def now(self) -> float:
        return self.owner.clock()

    def play(self, *paths, interrupt: bool = True) -> str:
        self._alive()
        if not paths:
            return ""
        if interrupt and self.keys:
            return self.keys.popleft()
        tag = self._send("play", files=[str(path) for path in paths])
        return self._until_played(tag, interrupt)

    def tone(self, hz: float, ms: int) -> None:
        self._alive()
        tag = self._send("tone", hz=hz, ms=int(ms))
        self._until_played(tag, False)

    def digits(self, max_digits: int = 1, timeout: float = 5.0, end: str = "#",
               first_timeout: float | None = None) -> str:
        self._alive()
        collected = ""
        deadline = self.now() + (timeout if first_timeout is None else first_timeout)
        while True:
            while self.keys:
                key = self.keys.popleft()
                if key in end:
                    return collected
                collected += key
                if len(collected) >= max_digits:
                    return collected
                deadline = self.now() + timeout
            remaining = deadline - self.now()
            if remaining <= 0:
                return collected
            self._wait(remaining)

    def record(self, path, max_seconds: float, silence_seconds: float = 5.0,
               end_keys: str = "#") -> Recording:
        self._alive()
        path = str(path)
        self.keys.clear()  # a key pressed before the beep does not end it
        self.recorded.pop(path, None)
        self._send("record", tag=False, path=path, max=max_seconds,
                   silence=silence_seconds or 0, end_keys=end_keys)
        while path not in self.recorded:
            if self.gone:
                done = self._stop_recording()
                if done is not None:
                    return _recording(done)
                raise CallerGone()
            try:
                self._wait(SLICE)
            except CallerGone:
                continue  # what was recorded is still the caller's message
        return _recording(self.recorded.pop(path))

    def hangup(self) -> None:
        if not self.gone:
            self.gone = True
            self.owner.hangup_app(self)

    def continue_to(self, destination: str) -> None:
        self._alive()
        self.owner.continue_to(self, destination)

    def echo(self, max_seconds: float = 600, end_keys: str = "#") -> str:
        """Play back what the caller says until a key of `end_keys` (returned),
        the caller hangs up (CallerGone) or `max_seconds` pass ("")."""
        self._alive()
        self.keys.clear()
        self._send("echo", tag=False, on=True)
        deadline = self.now() + max_seconds
        try:
            while True:
                while self.keys:
                    key = self.keys.popleft()
                    if key in end_keys:
                        return key
                remaining = deadline - self.now()
                if remaining <= 0:
                    return ""
                self._wait(remaining)
        finally:
            if not self.gone:
                self._send("echo", tag=False, on=False)

    # --- the media process --------------------------------------------------------------

    def _alive(self) -> None:
        if self.gone:
            raise CallerGone()

    def _send(self, op: str, tag=True, **fields):
        """An endpoint op; its tag (the "played" event's) when it plays something."""
        if tag:
            self._tags += 1
            fields["tag"] = self._tags
        try:
            self.relay.endpoint(self.session, op, **fields)
        except Exception as error:  # the media process restarted: the call has no media
            log.warning("Call %s -> %s: media endpoint: %s", self.caller, self.dialled, error)
            self.gone = True
            raise CallerGone() from None
        return fields.get("tag")

    def _until_played(self, tag, interrupt: bool) -> str:
        while tag not in self.played:
            if interrupt and self.keys:
                self._send("stop", tag=False)
                return self.keys.popleft()
            self._wait(SLICE)
        self.played.discard(tag)
        return ""

    def _wait(self, timeout: float) -> None:
        """Up to `timeout` (at most SLICE) for the media process's events."""
        self._alive()
        for event in self.relay.events(self.session, min(timeout, SLICE)):
            kind = event.get("event")
            if kind == "key":
                self.keys.append(event["key"])
                log.info("Call %s -> %s: key %s (RFC 4733)", self.caller, self.dialled,
                         event["key"])
            elif kind == "played":
                self.played.add(event.get("tag"))
            elif kind == "recorded":
                self.recorded[event["path"]] = event
            elif kind == "closed":
                self.gone = True
        self._alive()

    def _stop_recording(self) -> dict | None:
        try:
            return self.relay.endpoint(self.session, "record_stop").get("recorded")
        except Exception:
            return None


def _recording(event: dict) -> Recording:
    if event.get("error"):
        log.error("Recording %s not written: %s", event["path"], event["error"])
    return Recording(event["path"], float(event["seconds"]), event["ended_by"],
                     event.get("key", ""))
