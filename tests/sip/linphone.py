"""Linphone as a real test phone: `linphonec` (Debian's linphone-cli 5.1) driven on its
standard input, beside baresip (tests/sip/softphone.py) and sipp.

One `Linphone` is one linphonec process with a directory of its own: its
linphonerc, its HOME (liblinphone keeps a database under ~/.local/share), its
debug log with the SIP trace (`debug.log`, -d 6), and what it printed
(`console.log`). It registers as an extension to a sipd on loopback with
linphone's defaults for everything the PBX has a say in (digest algorithm,
transport UDP, keep-alives), and listens only on 127.0.0.1 (`bind_address` for
SIP and RTP; nothing else is configured that would reach out: no STUN, no
provisioning, no account server).

Audio: linphonec's file mode (`soundcard use files`): the microphone is a WAV
file holding one tone, and what the phone hears is written to a WAV file
(`record`), one per call if the test asks (`record_to`), checked with
tests/sip/softphone.tone_report as for baresip. PCMU is the only codec left
enabled, so every call is 8 kHz G.711 like baresip's.

Driving it: linphonec reads commands line by line and prints their output and
its events ("Receiving new incoming call from ..., assigned id 2") as text.
Each command is followed by a marker line it does not know (`pbxmark7`), which
it answers with "'pbxmark7': Cannot understand this.": what came between is the
command's output, whatever events came in the middle. The state of the calls is
read from its `calls` table.

What a test (or the transfer tests) can do with it, each returning once the
phone has done it or failing with the phone's output and log:

    phone = Linphone("alice", "1001", PASSWORD, server.address, tone_hz=440).start()
    phone.wait_registered()
    call = phone.call("1002")              # the call's id on this phone
    phone.wait_state(call, "StreamsRunning")
    incoming = other.wait_incoming()       # id of a call ringing here
    other.answer(incoming)
    phone.hold(call) / phone.resume(call)  # re-INVITE a=sendonly / sendrecv
    phone.calls()                          # [LinphoneCall(id, peer, state), ...]
    phone.transfer(call, "1003")           # blind: REFER to sip:1003@<registrar>
    phone.transfer_to_call(call, other_call)   # attended: REFER with Replaces
    phone.sent("REFER")                    # requests it sent, from its SIP trace
    phone.hangup(call)
    phone.record_to(path)                  # the next call's recording
    phone.stop()

The transfers send what RFC 3515 and RFC 3891 say (tests/sip/test_linphone.py
checks the REFERs in the phone's trace); linphonec reports no outcome of its
own, so a transfer test reads what happened from the calls and the history.
Linphone restarts its audio stream on hold and resume, and writes a recording
only when its stream stops: `record_to` a new file before a hold to check the
audio on both sides of it, and read a recording once that call has ended on
this phone.

Every socket is on 127.0.0.1; every wait has a deadline.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tests.sip.callkit import free_ports, wait_for, workdir
from tests.sip.softphone import write_tone
from tests.support import LOOPBACK, require_tool

PROMPT = "linphonec> "
# liblinphone's names of call states (linphone/call.h, LinphoneCallState without
# the prefix), as the `calls` table shows them.
RINGING_STATES = ("IncomingReceived", "IncomingEarlyMedia")
TALKING = "StreamsRunning"


@dataclass(frozen=True)
class LinphoneCall:
    id: int
    peer: str  # the other side's address as linphone shows it
    state: str  # StreamsRunning, Paused, PausedByRemote, OutgoingRinging, ...
    flags: str = ""


# Id | Destination (an address, or "Name" <address>) | State | Flags
_ROW = re.compile(r"^(\d+)\s*\|\s*(.+?)\s*\|\s*(\S+)\s*\|\s*(.*)$")
_ASSIGNED = re.compile(r"assigned id (\d+)")
# The caller as linphone shows it: an address, or a display name and an address.
_INCOMING = re.compile(r"Receiving new incoming call from (.+), assigned id (\d+)")


class Linphone:
    """One linphonec registering as `number` (password `password`) at `registrar`
    ("host:port", UDP), its microphone a tone of `tone_hz`.

    keepalive_ms: linphonerc's [sip] keepalive_period (linphone's default is
    30000 for UDP). expires: its registration interval. auto_answer: answer
    incoming calls at once (linphonec's `autoanswer`).
    """

    def __init__(self, name: str, number: str, password: str, registrar: str,
                 tone_hz: float, *, keepalive_ms: int | None = None, expires: int = 300,
                 auto_answer: bool = False):
        self.name, self.number, self.registrar = name, number, registrar
        self.host, port = registrar.rsplit(":", 1)
        self.dir = workdir(f"linphone-{name}-")
        (self.dir / ".local" / "share" / "linphone").mkdir(parents=True)
        self.tone = write_tone(self.dir / "tone.wav", tone_hz, 30.0)
        self.recording = self.dir / "heard.wav"
        self.sip_port = free_ports()
        self.auto_answer = auto_answer
        sip = [
            f"sip_port={self.sip_port}",
            "sip_tcp_port=-1",
            "sip_tls_port=-1",
            f"bind_address={LOOPBACK}",
            "use_ipv6=0",
            "default_proxy=0",
        ]
        if keepalive_ms is not None:
            sip.append(f"keepalive_period={keepalive_ms}")
        rc = [
            "[sip]", *sip,
            "[rtp]", f"audio_rtp_port={free_ports(2)}", f"bind_address={LOOPBACK}",
            "[sound]", "echocancellation=0",
            "[video]", "capture=0", "display=0",
            "[proxy_0]",
            f"reg_proxy=<sip:{self.host}:{port};transport=udp>",
            f"reg_identity=sip:{number}@{self.host}",
            f"reg_expires={expires}",
            "reg_sendregister=1",
            "[auth_info_0]",
            f"username={number}",
            f"passwd={password}",
        ]
        (self.dir / "linphonerc").write_text("\n".join(rc) + "\n")
        self.process: subprocess.Popen | None = None
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._marks = 0
        self._reader: threading.Thread | None = None

    # -- the process ---------------------------------------------------------------------

    def start(self) -> Linphone:
        command = [require_tool("linphonec"), "-c", str(self.dir / "linphonerc"),
                   "-d", "6", "-l", str(self.dir / "debug.log")]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "DISPLAY"))}
        env["HOME"] = str(self.dir)
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            cwd=self.dir, env=env)
        self._reader = threading.Thread(target=self._read, name=f"linphone-{self.name}",
                                        daemon=True)
        self._reader.start()
        self.command("soundcard use files")
        self.command(f"play {self.tone}")
        self.record_to(self.recording)
        self._pcmu_only()
        if self.auto_answer:
            self.command("autoanswer enable")
        return self

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        with open(self.dir / "console.log", "wb") as copy:
            for raw in self.process.stdout:
                copy.write(raw)
                copy.flush()
                # A prompt can also stand in the middle of a line, after output
                # that ended without a newline: what follows it is a line of its own.
                text = raw.decode(errors="replace").rstrip("\r\n")
                parts = [part.strip() for part in text.split(PROMPT.rstrip())]
                with self._changed:
                    self.lines.extend(part for part in parts if part)
                    self._changed.notify_all()

    def _pcmu_only(self) -> None:
        for line in self.command("codec list"):
            match = re.match(r"\s*(\d+): (\S+) \((\d+)\) enabled", line)
            if match and (match.group(2), match.group(3)) != ("PCMU", "8000"):
                self.command(f"codec disable {match.group(1)}")

    def stop(self) -> None:
        """quit (it unregisters), then SIGTERM, then SIGKILL: ours, by pid."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            try:
                process.stdin.write(b"quit\n")
                process.stdin.flush()
                process.wait(timeout=8)
            except (OSError, subprocess.TimeoutExpired):
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=5)
        if process.stdin:
            try:
                process.stdin.close()
            except OSError:
                pass
        if self._reader is not None:
            self._reader.join(timeout=5)

    def console(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def log(self) -> str:
        """linphone's debug log (the SIP trace is in it)."""
        try:
            return (self.dir / "debug.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def story(self, tail: int = 4000) -> str:
        return (f"--- linphone {self.name} console\n{self.console()[-tail:]}\n"
                f"--- linphone {self.name} log\n{self.log()[-tail:]}")

    # -- commands ------------------------------------------------------------------------

    def command(self, text: str, timeout: float = 10) -> list[str]:
        """Run one linphonec command; the lines it printed (events that came in
        the middle included)."""
        assert self.process is not None and self.process.poll() is None, (
            f"linphone {self.name} is not running\n{self.story()}")
        self._marks += 1
        mark = f"pbxmark{self._marks}"
        with self._changed:
            start = len(self.lines)
        self.process.stdin.write(f"{text}\n{mark}\n".encode())
        self.process.stdin.flush()
        answer = f"'{mark}': Cannot understand this."
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for index in range(start, len(self.lines)):
                    if answer in self.lines[index]:
                        return [line for line in self.lines[start:index] if line.strip()]
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.process.poll() is not None:
                    break
                self._changed.wait(min(remaining, 0.5))
        raise AssertionError(f"linphone {self.name}: no answer to {text!r} within {timeout} s\n"
                             f"{self.story()}")

    def wait_line(self, pattern: str, timeout: float = 10, after: int = 0) -> re.Match:
        """The first printed line from index `after` on that matches `pattern`."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines[after:]:
                    match = regex.search(line)
                    if match:
                        return match
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(min(remaining, 0.5))
        raise AssertionError(f"linphone {self.name}: no line like {pattern!r} within "
                             f"{timeout} s\n{self.story()}")

    def registered(self) -> bool:
        lines = self.command("status register")
        return any(line.startswith("registered, identity=") for line in lines)

    def wait_registered(self, timeout: float = 15) -> None:
        self.until(self.registered, f"registered as {self.number}", timeout)

    def uri(self, number: str) -> str:
        """What this phone dials for `number`: sip:NUMBER@ its registrar."""
        return f"sip:{number}@{self.registrar}"

    def call(self, number: str) -> int:
        """Dial `number` (an extension, a group); the new call's id on this phone."""
        lines = self.command(f"call {self.uri(number)}")
        for line in lines:
            match = _ASSIGNED.search(line)
            if match:
                return int(match.group(1))
        raise AssertionError(f"linphone {self.name}: call {number} not placed: {lines}\n"
                             f"{self.story()}")

    def wait_incoming(self, timeout: float = 15) -> int:
        """The id of a call ringing on this phone (already or within `timeout`)."""
        match = self.wait_line(_INCOMING.pattern, timeout)
        return int(match.group(2))

    def answer(self, call_id: int | None = None) -> None:
        self._expect_ok(self.command("answer" if call_id is None else f"answer {call_id}"))

    def hangup(self, call_id: int | None = None) -> None:
        """End one call (the current one without an id)."""
        self._expect_ok(self.command("terminate" if call_id is None else f"terminate {call_id}"))

    def hold(self, call_id: int | None = None) -> None:
        """Put a call on hold (linphone's pause: a re-INVITE with a=sendonly)."""
        if call_id is not None and self.current() != call_id:
            # linphonec pauses only the current call; make this one current first
            self.resume(call_id)
        self._expect_ok(self.command("pause"))

    def resume(self, call_id: int | None = None) -> None:
        self._expect_ok(self.command("resume" if call_id is None else f"resume {call_id}"))

    def transfer(self, call_id: int, number: str) -> None:
        """Blind transfer of call `call_id` to `number` (REFER, RFC 3515)."""
        self._expect_ok(self.command(f"transfer {call_id} {self.uri(number)}"))

    def transfer_to_call(self, call_id: int, other_call_id: int) -> None:
        """Attended transfer: the party of `call_id` is connected to the party of
        `other_call_id` (REFER with Replaces, RFC 3891)."""
        self._expect_ok(self.command(f"transfer {call_id} --to-call {other_call_id}"))

    def record_to(self, path: Path) -> Path:
        """Where what this phone hears from the next call on is written (a WAV file)."""
        self.recording = Path(path)
        self.command(f"record {self.recording}")
        return self.recording

    def calls(self) -> list[LinphoneCall]:
        """The calls linphone has now, with their state (its `calls` table)."""
        found = []
        for line in self.command("calls"):
            match = _ROW.match(line.strip())
            if match:
                found.append(LinphoneCall(int(match.group(1)), match.group(2),
                                          match.group(3), match.group(4).strip()))
        return found

    def state(self, call_id: int) -> str | None:
        """A call's state, None once it is over (gone from the table)."""
        for call in self.calls():
            if call.id == call_id:
                return call.state
        return None

    def current(self) -> int | None:
        """The call linphonec acts on without an id: the one not on hold, if any."""
        talking = [c.id for c in self.calls() if not c.state.startswith("Paused")]
        return talking[0] if len(talking) == 1 else None

    def wait_state(self, call_id: int, *states: str | None, timeout: float = 15) -> str | None:
        """Until call `call_id` is in one of `states` (None: ended); the state."""
        seen: list[str | None] = []

        def reached():
            state = self.state(call_id)
            if not seen or seen[-1] != state:
                seen.append(state)
            return state in states

        self.until(reached, f"call {call_id} in {states} (saw {seen})", timeout)
        return seen[-1]

    def sent(self, method: str) -> list[str]:
        """The `method` requests this phone sent, as its SIP trace shows them (the
        head of each: request line and headers)."""
        found = []
        for match in re.finditer(r"message sent to \[[^\]]*\], size: \[\d+\] bytes\r?\n"
                                 r"(.*?)\r?\n\r?\n", self.log(), re.S):
            if match.group(1).startswith(f"{method} "):
                found.append(match.group(1))
        return found

    # -- helpers -------------------------------------------------------------------------

    def until(self, condition, what: str, timeout: float) -> None:
        """condition() within `timeout` seconds, or an AssertionError with the story."""
        if not wait_for(condition, timeout, 0.2):
            raise AssertionError(f"linphone {self.name}: not {what} within {timeout} s\n"
                                 f"{self.story()}")

    def _expect_ok(self, lines: list[str]) -> None:
        refused = [line for line in lines if re.search(
            r"No (active )?call|no call|There is no|Cannot|can only|not found|Unknown|failed"
            r"|No such", line)]
        if refused:
            raise AssertionError(f"linphone {self.name}: {refused}\n{self.story()}")
