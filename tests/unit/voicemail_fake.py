"""A scripted AppCall (sipd/apps/call.py's contract) for the voicemail and IVR
applications' unit tests: what the caller types, while which prompt, and what
it says when recorded; it keeps a transcript of what the PBX did, and moves its
own clock instead of sleeping.

    call = FakeCall("1002", "1001", "busy", keys={"vm-password": ["1234#"]},
                    recordings=[(4.0, "hangup")])

keys: prompt name -> what is typed, one string per time that prompt is played
(the first key stops the prompt, the rest waits for `digits`, as a phone's
user typing ahead). recordings: (seconds, ended_by[, key]) per `record`, each
written as a WAV of that length. gone_after: the number of operations after
which the caller hangs up (CallerGone from then on).
"""

from __future__ import annotations

import wave
from collections import deque
from pathlib import Path

from sipd.apps.call import CallerGone, Recording

PROMPT_SECONDS = 1.0  # each file played, on the fake clock


def name_of(path) -> str:
    """A prompt's name from its path (.../en/vm-intro.wav -> vm-intro, digits/1 -> digits/1);
    any other file (a message, a greeting) by its file name."""
    path = Path(path)
    if path.parent.name == "digits":
        return f"digits/{path.stem}"
    return path.stem if path.parent.name in ("en", "uz", "ru") else f"file:{path.name}"


class FakeCall:
    def __init__(self, caller="1002", target="1001", reason="", *, caller_name="",
                 source="127.0.0.1", keys=None, recordings=(), gone_after=None, now=1.79e9):
        self.caller, self.caller_name, self.target, self.reason = caller, caller_name, target, reason
        self.dialled = target
        self.source = source
        self.language = ""
        self.keys = {name: deque(typed) for name, typed in (keys or {}).items()}
        self.recordings = deque(recordings)
        self.gone_after = gone_after
        self.clock = now
        self.typeahead = ""
        self.transcript: list[tuple] = []
        self.hung_up = False
        self.gone = False
        self.operations = 0

    def _step(self) -> None:
        if self.gone or self.hung_up:
            raise CallerGone()
        self.operations += 1
        if self.gone_after is not None and self.operations > self.gone_after:
            self.gone = True
            raise CallerGone()

    def now(self) -> float:
        return self.clock

    def play(self, *paths, interrupt: bool = True) -> str:
        self._step()
        names = [name_of(p) for p in paths]
        for index, name in enumerate(names):
            self.clock += PROMPT_SECONDS
            pending = self.keys.get(name)
            if interrupt and pending:
                typed = pending.popleft()
                self.typeahead += typed[1:]
                self.transcript.append(("play", names[: index + 1], typed[0]))
                return typed[0]
        self.transcript.append(("play", names, ""))
        return ""

    def tone(self, hz: float, ms: int) -> None:
        self._step()
        self.clock += ms / 1000
        self.transcript.append(("tone", hz, ms))

    def digits(self, max_digits=1, timeout=5.0, end="#", first_timeout=None) -> str:
        self._step()
        got = ""
        while self.typeahead and len(got) < max_digits:
            key, self.typeahead = self.typeahead[0], self.typeahead[1:]
            if end and key in end:
                break
            got += key
        if not got:
            self.clock += first_timeout if first_timeout is not None else timeout
        self.transcript.append(("digits", got))
        return got

    def record(self, path, max_seconds, silence_seconds=5.0, end_keys="#") -> Recording:
        self._step()
        seconds, ended_by, *rest = self.recordings.popleft()
        seconds = min(seconds, max_seconds)
        with wave.open(str(path), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(8000)
            out.writeframes(b"\x00\x08" * int(8000 * seconds))
        self.clock += seconds
        self.transcript.append(("record", Path(path).name, seconds, ended_by))
        return Recording(str(path), seconds, ended_by, rest[0] if rest else "")

    def hangup(self) -> None:
        self._step()
        self.hung_up = True
        self.transcript.append(("hangup",))

    def continue_to(self, destination: str) -> None:
        self._step()
        self.transcript.append(("continue_to", destination))
        self.hung_up = True

    def played(self) -> list[str]:
        """Every prompt name played, in order, flattened."""
        return [name for entry in self.transcript if entry[0] == "play" for name in entry[1]]
