"""Helpers for tests that run the real thing: a sipd process on loopback, sipp against it.

Everything here talks to 127.0.0.1 only.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "tests" / "sip" / "scenarios"
LOOPBACK = "127.0.0.1"


def require_tool(name: str) -> str:
    """The path of a tool the test needs; its absence fails the test (never a skip)."""
    path = shutil.which(name)
    if path is None:
        raise AssertionError(f"{name} is not installed (make test installs it with apt-get)")
    return path


def self_signed(directory: Path, subject: str, *extensions: str, name: str = "cert"):
    """(certificate, key) made with the openssl CLI in `directory`: self-signed for
    `subject` ("/CN=..."), with these -addext extensions; files NAME.pem, NAME.key."""
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    command = [require_tool("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes",
               "-days", "2", "-subj", subject, "-keyout", str(key), "-out", str(cert)]
    for extension in extensions:
        command += ["-addext", extension]
    subprocess.run(command, check=True, capture_output=True)
    return cert, key


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    """A port free for both UDP and TCP on loopback."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, kind) as first:
            first.bind((LOOPBACK, 0))
            port = first.getsockname()[1]
            other = socket.SOCK_STREAM if kind == socket.SOCK_DGRAM else socket.SOCK_DGRAM
            with socket.socket(socket.AF_INET, other) as second:
                try:
                    second.bind((LOOPBACK, port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


def base_env(db_path: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PBX_")}
    env.update(
        PBX_DB=str(db_path), PBX_REALM="pbx.test", PBX_LOG_LEVEL="info", PYTHONPATH=str(ROOT)
    )
    env.update(extra)
    return env


def database_with(path, numbers, password: str, realm: str = "pbx.test", voicemail=()):
    """A fresh SQLite database at `path` (migrated) holding these extensions; their
    mailboxes are off (calls nobody takes end in 480/486) but for those of `voicemail`."""
    from core import accounts
    from core import voicemail as mailboxes
    from core.config import load_settings
    from core.database import connect

    database = connect(load_settings({"PBX_DB": str(path), "PBX_REALM": realm}))
    for number in numbers:
        accounts.create_extension(number, realm, password=password)
        if number not in voicemail:
            mailboxes.set_voicemail(number, False)
    database.close()
    return path


def inject_row(number: str, password: str, *extra: str) -> list[str]:
    """A line of register_auth.xml's injection file (see the scenario's comment)."""
    return [number, password, f"[authentication username={number} password={password}]", *extra]


# Process groups of servers whose leader is gone but whose members may not be (after a
# kill9, the helpers are meant to go by themselves): swept after each test (conftest.py).
_orphaned: set[int] = set()


def _kill_group(pgid: int) -> bool:
    """SIGKILL every process left in group `pgid`; False once there is none."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def sweep_orphans() -> None:
    """Kill what is left in the groups of servers killed with SIGKILL during a test."""
    for pgid in list(_orphaned):
        _kill_group(pgid)
        _orphaned.discard(pgid)


class ServerProcess:
    """A SIP server a test runs (sipd, Kamailio): `spawn` starts `command` with its
    output in `self.log_path` and returns once it answers OPTIONS on `self.port`;
    `terminate` stops it (SIGTERM, SIGKILL after 10 s). A subclass sets log_path,
    port and process_name.

    Each server leads a process group of its own (start_new_session), and
    `terminate` kills what is left of that group once the leader has exited, so no
    child (sipd's media relay and registration workers, Kamailio's children)
    outlives the test, whatever the leader did on SIGTERM. The leader alone gets
    the SIGTERM: its orderly stop (unregistering trunks, stopping its relay) is what
    tests see; the group's SIGKILL only sweeps what that stop left behind."""

    process_name = "server"
    process: subprocess.Popen | None = None
    log_path: Path
    port: int

    def spawn(self, command: list[str], *, timeout: float = 15, mode: str = "wb",
              **popen) -> None:
        self._log = open(self.log_path, mode)  # noqa: SIM115 - closed in terminate()
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True,
                                        **popen)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.terminate()
                raise AssertionError(f"{self.process_name} exited at start:\n{self.log()}")
            if options_ping(self.port, timeout=0.2):
                return
        self.terminate()
        raise AssertionError(f"{self.process_name} did not answer within {timeout} s:\n"
                             f"{self.log()}")

    def terminate(self) -> None:
        if self.process:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            # The leader is gone (its pid, the group's id, is not reused while
            # members remain): nothing of its group may outlive it.
            _kill_group(self.process.pid)
            _orphaned.discard(self.process.pid)
        if getattr(self, "_log", None):
            self._log.close()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


class Sipd(ServerProcess):
    """A real `python -m sipd` on a loopback port; `start`, `stop`, `kill9`."""

    process_name = "sipd"

    def __init__(self, db_path: str | Path, port: int | None = None, **env: str):
        self.db_path = str(db_path)
        self.port = port or free_port()
        self.env = base_env(self.db_path, PBX_SIP_LISTEN=f"{LOOPBACK}:{self.port}", **env)
        self.run_dir = Path(tempfile.mkdtemp(prefix="sipd-run-"))
        # Each daemon its own run directory: its media relay and control socket.
        self.env.setdefault("PBX_RUN_DIR", str(self.run_dir))
        self.log_path = self.run_dir / "sipd.log"
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def start(self, timeout: float = 15) -> Sipd:
        self.spawn([sys.executable, "-m", "sipd"], timeout=timeout, mode="ab", env=self.env,
                   cwd=ROOT)
        return self

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return getattr(self, "_log_text", "")

    def stop(self) -> None:
        self.terminate()
        self._clean_run_dir()

    def kill9(self) -> None:
        """SIGKILL sipd alone, as a crash would: its helpers must notice and go by
        themselves (tests check that); whatever does not is killed after the test."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        _orphaned.add(self.process.pid)
        self._log.close()
        self._clean_run_dir()

    def _clean_run_dir(self) -> None:
        """Remove the run directory this object made (keeping its log readable)."""
        if self.env.get("PBX_RUN_DIR") != str(self.run_dir) or not self.run_dir.exists():
            return
        self._log_text = self.log()
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> Sipd:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def options_ping(port: int, timeout: float = 1.0) -> bool:
    """True if an OPTIONS over UDP gets a 200 from 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        local = sock.getsockname()[1]
        request = (
            f"OPTIONS sip:{LOOPBACK}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOOPBACK}:{local};branch=z9hG4bK-ping{time.monotonic_ns()};rport\r\n"
            f"From: <sip:ping@{LOOPBACK}>;tag=ping\r\nTo: <sip:{LOOPBACK}>\r\n"
            f"Call-ID: ping-{time.monotonic_ns()}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        sock.settimeout(timeout)
        try:
            sock.sendto(request, (LOOPBACK, port))
            data, _ = sock.recvfrom(65535)
        except OSError:
            return False
        return data.startswith(b"SIP/2.0 200")


def sip_exchange(
    port: int, data: bytes, timeout: float = 2.0, transport: str = "UDP", expect: int = 1
) -> list[bytes]:
    """Send raw bytes to sipd and collect up to `expect` replies (UDP datagrams or TCP data)."""
    if transport == "UDP":
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((LOOPBACK, 0))
            sock.settimeout(timeout)
            sock.sendto(data, (LOOPBACK, port))
            replies = []
            try:
                while len(replies) < expect:
                    replies.append(sock.recvfrom(65535)[0])
            except TimeoutError:
                pass
            return replies
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = b""
        try:
            while True:
                chunk = sock.recv(65535)
                if not chunk:
                    break
                chunks += chunk
                if chunks.count(b"SIP/2.0 ") >= expect and chunks.endswith(b"\r\n\r\n"):
                    break
        except TimeoutError:
            pass
        return [chunks] if chunks else []


class SippResult:
    def __init__(self, returncode: int, workdir: Path, stdout: str):
        self.returncode = returncode
        self.workdir = workdir
        self.stdout = stdout

    def messages(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.workdir.glob("*_messages.log"))

    def errors(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.workdir.glob("*_errors.log"))

    def explain(self) -> str:
        return f"sipp exit {self.returncode}\n{self.stdout}\n{self.errors()}\n{self.messages()}"


def run_sipp(
    scenario: str | Path,
    target: str,
    *,
    calls: int = 1,
    inject: list[list[str]] | None = None,
    keys: dict[str, str] | None = None,
    local_port: int | None = None,
    rate: float = 10,
    transport: str = "u1",
    timeout: float = 60,
    extra: list[str] | None = None,
    local_ip: str = LOOPBACK,
) -> SippResult:
    """Run a sipp scenario (a path, or a name in tests/sip/scenarios) against `target`."""
    sipp = require_tool("sipp")
    scenario = Path(scenario)
    if not scenario.is_absolute() and not scenario.exists():
        scenario = SCENARIOS / scenario
    workdir = Path(tempfile.mkdtemp(prefix="sipp-"))
    command = [
        sipp,
        target,
        "-sf",
        str(scenario),
        "-m",
        str(calls),
        "-r",
        str(rate),
        "-i",
        local_ip,
        "-p",
        str(local_port or free_port()),
        "-t",
        transport,
        "-trace_msg",
        "-trace_err",
        "-timeout",
        f"{int(timeout)}s",
        "-timeout_error",
        "-nostdin",
    ]
    if inject is not None:
        inject_file = workdir / "inject.csv"
        inject_file.write_text("SEQUENTIAL\n" + "".join(";".join(r) + "\n" for r in inject))
        command += ["-inf", str(inject_file)]
    for key, value in (keys or {}).items():
        command += ["-key", key, value]
    command += extra or []
    process = subprocess.run(
        command, cwd=workdir, capture_output=True, text=True, timeout=timeout + 30
    )
    return SippResult(process.returncode, workdir, process.stdout + process.stderr)
