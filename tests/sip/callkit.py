"""What the call tests share: sipp callers and callees run side by side, the
servers they call through (a real sipd, or Kamailio as the reference proxy),
RTP sent and echoed, and the call history rows.

Every socket here is on 127.0.0.1 (or inside a network namespace a test made);
every wait has a deadline and every loop a bound.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support import (
    LOOPBACK,
    ROOT,
    SCENARIOS,
    ServerProcess,
    Sipd,
    require_tool,
)

PASSWORD = "correct-horse-9"
REALM = "pbx.test"

# Where sipp and baresip runs keep their logs: a test sets it to its tmp_path
# (pytest keeps the last runs' for reading), else the system's temp directory.
WORK_ROOT: Path | None = None


def workdir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix, dir=WORK_ROOT))


# --- ports -------------------------------------------------------------------------

_taken: set[int] = set()
_taken_lock = threading.Lock()


def _bindable(port: int) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((LOOPBACK, port))
            except OSError:
                return False
    return True


def free_ports(count: int = 1, step: int = 1) -> int:
    """The first of `count` ports `step` apart, all free for UDP and TCP on loopback,
    and not handed out before by this process (sipp binds its media port and
    that port + 2, so media ports come as free_ports(2, 2))."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((LOOPBACK, 0))
            first = sock.getsockname()[1]
        ports = [first + i * step for i in range(count)]
        if ports[-1] > 65535:
            continue
        with _taken_lock:
            if any(p in _taken for p in ports):
                continue
            if all(_bindable(p) for p in ports):
                _taken.update(ports)
                return first
    raise RuntimeError("no free ports")


# --- sipp in the background ----------------------------------------------------------

@dataclass
class Message:
    at: float  # epoch seconds, from sipp's trace
    direction: str  # "sent" | "received"
    text: str

    @property
    def first_line(self) -> str:
        return self.text.split("\n", 1)[0].strip()

    @property
    def status(self) -> int | None:
        match = re.match(r"SIP/2\.0 (\d{3})", self.first_line)
        return int(match.group(1)) if match else None

    @property
    def method(self) -> str | None:
        if self.status is not None:
            return None
        return self.first_line.split(" ", 1)[0]

    def header(self, name: str) -> str:
        match = re.search(rf"^{name}:\s*(.*)$", self.text, re.M | re.I)
        return match.group(1).strip() if match else ""

    @property
    def cseq_method(self) -> str:
        parts = self.header("CSeq").split()
        return parts[1].upper() if len(parts) > 1 else ""

    @property
    def body(self) -> str:
        return self.text.split("\n\n", 1)[1] if "\n\n" in self.text else ""


_TRACE_SPLIT = re.compile(r"^-{20,} (\S+ \S+)\s*$", re.M)


def parse_trace(text: str) -> list[Message]:
    """sipp's -trace_msg file -> the messages in order."""
    messages = []
    parts = _TRACE_SPLIT.split(text)
    # parts: [before, stamp1, chunk1, stamp2, chunk2, ...]
    for stamp, chunk in zip(parts[1::2], parts[2::2], strict=False):
        chunk = chunk.replace("\r\n", "\n").strip("\n")
        head, _, rest = chunk.partition("\n")
        if "message sent" in head:
            direction = "sent"
        elif "message received" in head:
            direction = "received"
        else:
            continue
        try:
            at = time.mktime(time.strptime(stamp.split(".")[0], "%Y-%m-%d %H:%M:%S"))
            at += float("0." + stamp.split(".")[1]) if "." in stamp else 0.0
        except ValueError:
            at = 0.0
        messages.append(Message(at, direction, rest.strip("\n") + "\n"))
    return messages


class Sipp:
    """One sipp process, started in the background and waited for.

    `scenario` is a file name in tests/sip/scenarios (or a path); `target` the
    server's host:port (None for a callee in server mode). Every run gets its
    own work directory with sipp's message trace, errors and screen.
    """

    def __init__(
        self,
        name: str,
        scenario: str,
        target: str | None,
        *,
        local_port: int | None = None,
        media_port: int | None = None,
        inject: list[list[str]] | None = None,
        calls: int = 1,
        rate: float = 10,
        duration_ms: int | None = None,
        sets: dict[str, str] | None = None,
        rtp_echo: bool = False,
        timeout: float = 30,
        local_ip: str = LOOPBACK,
        extra: list[str] | None = None,
        netns: str | None = None,
    ):
        self.name = name
        self.local_port = local_port or free_ports()
        self.media_port = media_port or free_ports(2, 2)
        self.timeout = timeout
        self.workdir = workdir(f"sipp-{name}-")
        scenario_path = Path(scenario)
        if not scenario_path.is_absolute():
            scenario_path = SCENARIOS / scenario
        command = [
            require_tool("sipp"),
            "-sf", str(scenario_path),
            "-i", local_ip, "-mi", local_ip,
            "-p", str(self.local_port), "-mp", str(self.media_port),
            "-m", str(calls), "-r", f"{rate:g}",
            "-t", "u1",
            "-trace_msg", "-message_file", str(self.workdir / "messages.log"),
            "-trace_err", "-error_file", str(self.workdir / "errors.log"),
            "-trace_logs", "-log_file", str(self.workdir / "logs.log"),
            "-timeout", f"{int(timeout)}s", "-timeout_error",
            "-recv_timeout", f"{int(timeout * 1000)}",
            "-nostdin",
            # sipp binds a UDP control socket from 8888 upwards on every
            # address; pin it to a free port of its own so runs never collide.
            "-cp", str(free_ports()),
        ]
        if inject is not None:
            inject_file = self.workdir / "inject.csv"
            inject_file.write_text("SEQUENTIAL\n" + "".join(";".join(r) + "\n" for r in inject))
            command += ["-inf", str(inject_file)]
        if duration_ms is not None:
            command += ["-d", str(duration_ms)]
        for key, value in (sets or {}).items():
            command += ["-set", key, str(value)]
        if rtp_echo:
            command += ["-rtp_echo"]
        command += extra or []
        if target:
            command.append(target)
        if netns:
            command = [require_tool("ip"), "netns", "exec", netns, *command]
        self.command = command
        self.process: subprocess.Popen | None = None
        self.returncode: int | None = None

    def start(self) -> Sipp:
        self._out = open(self.workdir / "stdout.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            self.command, cwd=self.workdir, stdout=self._out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        return self

    def wait(self, timeout: float | None = None) -> int:
        """sipp's exit code (0: every call succeeded); killed if it overruns."""
        assert self.process is not None
        try:
            self.returncode = self.process.wait(timeout=timeout or self.timeout + 15)
        except subprocess.TimeoutExpired:
            self.stop()
            self.returncode = self.process.returncode
        self._out.close()
        return self.returncode

    def stop(self) -> None:
        """End this sipp (ours, by its pid): SIGINT, then SIGKILL."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # what happened

    def _read(self, name: str) -> str:
        try:
            return (self.workdir / name).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def trace(self) -> str:
        return self._read("messages.log")

    def messages(self) -> list[Message]:
        return parse_trace(self.trace())

    def received(self) -> list[Message]:
        return [m for m in self.messages() if m.direction == "received"]

    def sent(self) -> list[Message]:
        return [m for m in self.messages() if m.direction == "sent"]

    def statuses(self, method: str = "INVITE") -> list[int]:
        """The status codes received for requests of `method`, in order."""
        return [m.status for m in self.received() if m.status and m.cseq_method == method]

    def requests(self) -> list[str]:
        """The methods of the requests received, in order, without sipd's qualify
        probes: an OPTIONS comes at a moment of the qualify schedule's choosing
        after the phone registers (sipd/qualifier.py), not as part of a call, so
        a call's flow would otherwise depend on how long the machine took."""
        return [m.method for m in self.received() if m.method and m.method != "OPTIONS"]

    def flow(self) -> str:
        """One line per message: what a reader of a failure wants first."""
        lines = []
        for m in self.messages():
            arrow = "->" if m.direction == "sent" else "<-"
            lines.append(f"  {time.strftime('%H:%M:%S', time.localtime(m.at))}"
                         f".{int(m.at % 1 * 1000):03d} {arrow} {m.first_line}"
                         f"  [{m.header('CSeq')}]")
        return "\n".join(lines)

    def explain(self) -> str:
        return (f"--- sipp {self.name} ({' '.join(self.command)}) exit {self.returncode}\n"
                f"{self.flow()}\n--- stdout\n{self._read('stdout.log')[-3000:]}\n"
                f"--- errors\n{self._read('errors.log')[-3000:]}\n"
                f"--- logs\n{self._read('logs.log')[-2000:]}\n"
                f"--- trace\n{self.trace()[-12000:]}")


def explain(*runs: Sipp, server=None) -> str:
    text = "\n".join(run.explain() for run in runs)
    if server is not None:
        text += f"\n--- server log\n{server.log()[-8000:]}"
    return text


# --- callers and callees -----------------------------------------------------------------

def user_row(number: str, password: str = PASSWORD, *extra: str) -> list[str]:
    return [number, password, f"[authentication username={number} password={password}]", *extra]


def register(target: str, number: str, port: int, *, password: str = PASSWORD,
             netns: str | None = None, local_ip: str = LOOPBACK) -> Sipp:
    """REGISTER `number` with digest from local port `port` (its Contact is that port)."""
    run = Sipp(f"register-{number}", "register_auth.xml", target, local_port=port,
               inject=[user_row(number, password)], timeout=10, netns=netns, local_ip=local_ip)
    run.start()
    if run.wait() != 0:
        raise AssertionError(f"could not register {number}:\n{run.explain()}")
    return run


def callee(target: str, number: str, scenario: str, *, ring_ms: int | None = None,
           rtp_echo: bool = True, timeout: float = 30, sets: dict | None = None,
           register_first: bool = True, **kwargs) -> Sipp:
    """A registered phone: REGISTER (register_auth.xml), then `scenario` in
    server mode on the same port, started and waiting for its INVITE."""
    port = free_ports()
    if register_first:
        register(target, number, port, netns=kwargs.get("netns"),
                 local_ip=kwargs.get("local_ip", LOOPBACK))
    # -set ring MS only for the scenarios that ring before answering
    variables = {**({"ring": str(ring_ms)} if ring_ms is not None else {}), **(sets or {})}
    run = Sipp(f"callee-{number}-{scenario.removesuffix('.xml')}", scenario, None,
               local_port=port, rtp_echo=rtp_echo, timeout=timeout, sets=variables, **kwargs)
    run.number = number  # type: ignore[attr-defined]
    run.start()
    # Ready once its SIP socket (and, echoing, its media sockets) are bound.
    ports = [run.local_port] + ([run.media_port, run.media_port + 2] if rtp_echo else [])
    if not wait_for(lambda: not run.running() or udp_bound(run.process.pid, ports),
                    timeout=10, interval=0.01):
        run.stop()
        raise AssertionError(f"callee sipp did not bind {ports}:\n{run.explain()}")
    if not run.running():
        run.wait()
        raise AssertionError(f"callee sipp exited at start:\n{run.explain()}")
    return run


def udp_bound(pid: int, ports: list[int]) -> bool:
    """Whether every one of `ports` has a UDP socket bound in the network namespace
    of process `pid` (its /proc/PID/net/udp: also for a sipp run in a namespace
    of the test's own through `ip netns exec`, which keeps the pid)."""
    try:
        lines = Path(f"/proc/{pid}/net/udp").read_text().splitlines()[1:]
    except OSError:
        return False
    bound = {int(line.split()[1].rsplit(":", 1)[1], 16) for line in lines if line.strip()}
    return all(port in bound for port in ports)


def caller(target: str, number: str, callee_number: str, scenario: str, *,
           password: str = PASSWORD, duration_ms: int = 1000, timeout: float = 30,
           sets: dict | None = None, **kwargs) -> Sipp:
    run = Sipp(f"caller-{number}-{scenario.removesuffix('.xml')}", scenario, target,
               inject=[user_row(number, password, callee_number)], duration_ms=duration_ms,
               timeout=timeout, sets=sets, **kwargs)
    return run.start()


def finish(*runs: Sipp, timeout: float = 60, server=None) -> None:
    """Wait for every run; fail with the whole story when one did not succeed."""
    deadline = time.monotonic() + timeout
    for run in runs:
        run.wait(timeout=max(1.0, deadline - time.monotonic()))
    bad = [run for run in runs if run.returncode != 0]
    if bad:
        raise AssertionError("sipp run(s) failed: "
                             + ", ".join(f"{r.name} exit {r.returncode}" for r in bad)
                             + "\n" + explain(*runs, server=server))


# --- the servers ---------------------------------------------------------------------------

def options_ok(host: str, port: int, timeout: float = 0.3) -> bool:
    """True if an OPTIONS over UDP to host:port gets a 200."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        local = sock.getsockname()[1]
        stamp = time.monotonic_ns()
        request = (
            f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {host}:{local};branch=z9hG4bK-ping{stamp};rport\r\n"
            f"From: <sip:ping@{host}>;tag=ping\r\nTo: <sip:{host}>\r\n"
            f"Call-ID: ping-{stamp}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        sock.settimeout(timeout)
        try:
            sock.sendto(request, (host, port))
            return sock.recvfrom(65535)[0].startswith(b"SIP/2.0 200")
        except OSError:
            return False


class HostSipd(Sipd):
    """tests.support.Sipd listening on `host` instead of 127.0.0.1 (e.g. the
    host's end of a test's veth)."""

    def __init__(self, db_path, host: str, port: int | None = None, **env: str):
        super().__init__(db_path, port=port, **env)
        self.host = host
        self.env["PBX_SIP_LISTEN"] = f"{host}:{self.port}"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 15) -> HostSipd:
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        self.process = subprocess.Popen([sys.executable, "-m", "sipd"], env=self.env, cwd=ROOT,
                                        stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"sipd exited at start:\n{self.log()}")
            if options_ok(self.host, self.port):
                return self
        raise AssertionError(f"sipd did not answer within {timeout} s:\n{self.log()}")


class SipdServer:
    """A real sipd with a fresh database and extensions (on 127.0.0.1, or on
    `host`)."""

    name = "sipd"
    has_history = True

    def __init__(self, tmp_path: Path, numbers=("1001", "1002", "1003"), disabled=(),
                 host: str = LOOPBACK, voicemail=(), **env: str):
        from core import accounts
        from core import voicemail as mailboxes
        from core.config import load_settings
        from core.database import connect

        self.db_path = tmp_path / "pbx.db"
        settings = load_settings({"PBX_DB": str(self.db_path), "PBX_REALM": REALM})
        database = connect(settings)
        for number in numbers:
            accounts.create_extension(number, REALM, password=PASSWORD)
            # Calls that nobody answers end as they did before voicemail (480, 486)
            # unless a test asks for the mailboxes of `voicemail` (issue 13).
            if number not in voicemail:
                mailboxes.set_voicemail(number, False)
        for number in disabled:
            accounts.create_extension(number, REALM, password=PASSWORD)
            if hasattr(accounts, "set_enabled"):
                accounts.set_enabled(number, False)
            else:
                from core.models import Extension

                Extension.update(enabled=False).where(Extension.number == number).execute()
        database.close()
        defaults = {
            "PBX_RING_TIMEOUT": "4",
            "PBX_PUBLIC_ADDRESS": host,
            "PBX_TRUSTED_NETWORKS": "127.0.0.0/8",
            "PBX_RUN_DIR": str(tmp_path / "run"),
        }
        (tmp_path / "run").mkdir(exist_ok=True)
        # A port range of its own per test process (the relay skips ports in use).
        low = 30000 + (os.getpid() * 400) % 20000
        defaults["PBX_RTP_PORTS"] = f"{low}-{low + 399}"
        defaults.update(env)
        self.env = defaults
        self.host = host
        self.daemon = self._daemon()

    def _daemon(self, port: int | None = None) -> Sipd:
        if self.host == LOOPBACK:
            return Sipd(self.db_path, port=port, **self.env)
        return HostSipd(self.db_path, self.host, port=port, **self.env)

    @property
    def address(self) -> str:
        return self.daemon.address

    def start(self) -> SipdServer:
        self.daemon.start()
        return self

    def stop(self) -> None:
        self.daemon.stop()

    def kill9(self) -> None:
        self.daemon.kill9()

    def restart(self) -> SipdServer:
        """A new sipd on the same port and database (after stop or kill9)."""
        self.previous_log = getattr(self, "previous_log", "") + self.daemon.log()
        self.daemon = self._daemon(self.daemon.port)
        self.daemon.start()
        return self

    def log(self) -> str:
        return self.daemon.log()

    def calls(self) -> list[dict]:
        return call_rows(self.db_path)


class KamailioServer(ServerProcess):
    """Kamailio 5.6 as the reference: an authenticating stateful proxy and
    registrar (bench/kamailio/proxy.cfg). No media relay, no call history."""

    name = process_name = "kamailio"
    has_history = False

    def __init__(self, tmp_path: Path, numbers=("1001", "1002", "1003"), ring_timeout_s=4,
                 **_ignored):
        import sys

        sys.path.insert(0, str(ROOT / "bench" / "kamailio"))
        from make_db import make_db

        self.workdir = tmp_path / "kamailio"
        self.log_path = self.workdir / "kamailio.log"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.db = make_db(self.workdir / "kamailio.db", [(n, PASSWORD) for n in numbers], REALM)
        self.port = free_ports()
        self.command = [
            require_tool("kamailio"), "-DD", "-E", "-f", str(ROOT / "bench/kamailio/proxy.cfg"),
            "-l", f"udp:{LOOPBACK}:{self.port}", "-n", "2",
            "-Y", str(self.workdir), "-P", str(self.workdir / "kamailio.pid"),
            "-w", str(self.workdir),
            "-A", f'DBURL="sqlite:///{self.db}"', "-A", f'REALM="{REALM}"',
            "-A", f"RING_TIMEOUT={int(ring_timeout_s * 1000)}",
        ]
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def start(self) -> KamailioServer:
        self.spawn(self.command, cwd=self.workdir)
        return self

    def stop(self) -> None:
        self.terminate()

    def calls(self) -> list[dict]:
        return []


# --- call history ------------------------------------------------------------------------

def call_rows(db_path: Path) -> list[dict]:
    connection = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    connection.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in connection.execute("SELECT * FROM call ORDER BY id")]
    finally:
        connection.close()


def ended_calls(db_path: Path, count: int = 1, timeout: float = 5.0) -> list[dict]:
    """The call rows once at least `count` of them have ended. sipd writes its history
    in batches after the SIP answer has gone out, so a test that reads the row right
    after the caller's sipp exits can be ahead of it (a CI run read an empty table)."""
    rows = wait_for(lambda: [r for r in call_rows(db_path) if r["ended_at"]][count - 1:],
                    timeout=timeout)
    assert rows, f"fewer than {count} ended call(s) after {timeout} s: {call_rows(db_path)}"
    return [r for r in call_rows(db_path) if r["ended_at"]]


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.1):
    """predicate() until it is truthy or the time is up; its last value."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value


# --- RTP ------------------------------------------------------------------------------------

def sdp_media(sdp: str) -> tuple[str, int] | None:
    """(connection address, audio port) of an SDP body."""
    address = re.search(r"^c=IN IP4 (\S+)", sdp, re.M)
    port = re.search(r"^m=audio (\d+)", sdp, re.M)
    if not (address and port):
        return None
    return address.group(1), int(port.group(1))


def rtp_packet(seq: int, timestamp: int, ssrc: int, payload: bytes, pt: int = 0) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc) + payload


def send_paced(sock: socket.socket, target, payloads, ssrc: int, *, pt: int = 0,
               first_seq: int = 0, event_timestamp: int | None = None,
               interval: float = 0.02, until=None) -> int:
    """Send `payloads` from `sock` as RTP on a phone's 20 ms clock: packet n leaves
    at start + n * interval. This is real time on purpose, not a wait for an event:
    the sipd at the other end is another process that paces, measures silence and
    records by its own clock, which a test cannot move.

    target: an address, or a callable giving one (None while it is not known yet: that
    slot passes without a packet, and no payload is taken). Sequence numbers count
    from `first_seq`; timestamps are 160 a packet (G.711 at 8 kHz), or `event_timestamp`
    for every packet (the packets of one RFC 4733 event share its start, §2.5.1.2). A
    payload may instead be (payload, pt, timestamp), for a stream that mixes audio and
    events: the n-th payload taken goes out with sequence number first_seq + n. until:
    a callable, asked before each packet; true stops early. Returns how many packets
    were sent."""
    payloads = iter(payloads)
    start = time.monotonic()
    seq, slot = first_seq, 0
    while not (until and until()):
        address = target() if callable(target) else target
        if address is not None:
            payload = next(payloads, None)
            if payload is None:
                break
            if isinstance(payload, tuple):
                payload, kind, timestamp = payload
            else:
                kind = pt
                timestamp = seq * 160 if event_timestamp is None else event_timestamp
            sock.sendto(rtp_packet(seq, timestamp, ssrc, payload, kind), address)
            seq += 1
        slot += 1
        delay = start + slot * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    return seq - first_seq


def rtp_echo_check(destination: tuple[str, int], count: int = 50, interval: float = 0.02,
                   ssrc: int = 0x5EED1234, linger: float = 1.0) -> dict:
    """Send `count` PCMU packets (distinct payloads) from a fresh socket to
    `destination`, 20 ms apart, and collect what comes back to that socket.

    Returns {"source": (ip, port) we sent from, "sent": n, "echoed": n with
    the payload of one we sent, "from": set of addresses the replies came from}.
    """
    sent: dict[bytes, int] = {}
    echoed: set[int] = set()
    sources: set[tuple[str, int]] = set()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        sock.setblocking(False)
        started = time.monotonic()
        for seq in range(count):
            payload = bytes([(seq * 7 + i) % 256 for i in range(160)])
            sent[payload] = seq
            sock.sendto(rtp_packet(seq, seq * 160, ssrc, payload), destination)
            next_at = started + (seq + 1) * interval
            while True:
                _drain(sock, sent, echoed, sources)
                remaining = next_at - time.monotonic()
                if remaining <= 0:
                    break
                time.sleep(min(remaining, 0.005))
        end = time.monotonic() + linger
        while time.monotonic() < end and len(echoed) < count:
            _drain(sock, sent, echoed, sources)
            time.sleep(0.005)
        return {"source": sock.getsockname(), "sent": count, "echoed": len(echoed),
                "from": sources}


def _drain(sock, sent, echoed, sources) -> None:
    for _ in range(1000):
        try:
            data, source = sock.recvfrom(2048)
        except BlockingIOError:
            return
        sources.add(source)
        seq = sent.get(data[12:])
        if seq is not None:
            echoed.add(seq)


def wait_answer_sdp(run: Sipp, timeout: float = 15) -> str:
    """The SDP of the 200 to the INVITE that `run` (a caller) received, as soon
    as sipp's trace shows it."""
    def answer():
        for m in run.received():
            if m.status == 200 and m.cseq_method == "INVITE" and "m=audio" in m.body:
                return m.body
        return ""

    body = wait_for(answer, timeout=timeout, interval=0.05)
    if not body:
        raise AssertionError(f"no 200 with SDP within {timeout} s\n{run.explain()}")
    return body
