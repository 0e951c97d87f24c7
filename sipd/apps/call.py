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
    call.continue_to(destination)
    call.now()

Status (session 8): the value types below are final, and the media
process's sans-IO parts (sipd/media/g711.py, wav.py, dtmf.py, pacer.py) are
on main; the endpoint sessions in the media process and the executor that
creates an AppCall are not yet, so nothing constructs one outside tests.
Applications code against `AppCallProtocol` with a scripted fake.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


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
