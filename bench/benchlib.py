"""What the benchmarks share: loopback ports, sipp runs and their statistics,
users files, process CPU and memory, readiness by OPTIONS, and the machine.

Every socket here talks to 127.0.0.1 only. Every wait has a deadline.
"""

from __future__ import annotations

import csv
import os
import platform
import resource
import secrets
import shutil
import signal
import socket
import string
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "tests" / "sip" / "scenarios"
LOOPBACK = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
# The interpreter a deployed sipd runs on: the Ansible role makes the release's venv
# from Debian's /usr/bin/python3 (pbx_python), and `make bench` makes .venv-deploy the
# same way. It is not .venv's interpreter on every machine: a pyenv build without
# --enable-optimizations (no PGO, no LTO) parses a SIP message 45 % slower than
# Debian's python3.11 (5.8 against 8.4 us, bench notes of 2026-12-04), so a sipd
# measured on it would be a slower sipd than the one offices run.
DEPLOY_PYTHON = ROOT / ".venv-deploy" / "bin" / "python"
_PASSWORD_ALPHABET = string.ascii_letters + string.digits


def sipd_python() -> str:
    """The interpreter the benchmarks run sipd on: $PBX_BENCH_PYTHON, else the
    deployment's (.venv-deploy, `make bench` builds it), else this one."""
    chosen = os.environ.get("PBX_BENCH_PYTHON")
    if chosen:
        return chosen
    return str(DEPLOY_PYTHON) if DEPLOY_PYTHON.exists() else sys.executable


def python_version(python: str) -> str:
    out = subprocess.run([python, "-c", "import platform; print(platform.python_version())"],
                         capture_output=True, text=True, timeout=30)
    return out.stdout.strip() or "unknown"


# --- ports and users -------------------------------------------------------

def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that was free a moment ago (never a fixed 5060)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def bench_users(count: int, first: int = 100000, seed: str = "") -> list[tuple[str, str]]:
    """`count` (number, password) pairs; passwords are letters and digits only,
    so they fit in a CSV field and in sipp's [authentication] keyword."""
    users = []
    for i in range(count):
        number = str(first + i)
        password = "Pw" + "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(14)) + seed
        users.append((number, password))
    return users


def users_csv(path: Path, users: list[tuple[str, str]], order: str = "SEQUENTIAL",
              extra: list[list[str]] | None = None) -> Path:
    """A sipp injection file: NUMBER;PASSWORD;[authentication ...][;extra fields...].

    field2 spells out sipp's [authentication] keyword for the line because
    sipp 3.6.1 does not expand [field0] inside [authentication ...] (see
    tests/sip/scenarios/register_auth.xml).
    """
    lines = [order]
    for i, (number, password) in enumerate(users):
        for value in (number, password):
            if any(c in value for c in ";] \t\r\n"):
                raise ValueError(f"{value!r} cannot go into a sipp injection field")
        fields = [number, password, f"[authentication username={number} password={password}]"]
        if extra:
            fields += extra[i]
        lines.append(";".join(fields))
    path.write_text("\n".join(lines) + "\n")
    return path


# --- sipp ------------------------------------------------------------------

@dataclass
class SippRun:
    target_rate: float
    calls: int
    returncode: int
    successful: int
    failed: int
    retransmissions: int
    elapsed: float  # sipp's own elapsed time for the run, seconds
    wall: float  # our wall-clock around the sipp process, seconds
    response_time_ms: float  # mean REGISTER(no auth) -> 200 (sipp counts whole ms)
    p99_bucket: str  # sipp's response-time bucket holding the 99th percentile, e.g. "<1 ms"
    server_cpu: float  # CPU seconds the server used during the run
    load_before: str
    load_after: str
    udp_drops: int  # machine-wide UDP receive-buffer drops during the run
    machine_cpu: float  # CPU seconds the whole machine used during the run
    sipp_cpu: float  # CPU seconds sipp used
    command: list[str]
    note: str = ""

    @property
    def achieved_rate(self) -> float:
        return self.successful / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def others_cpu(self) -> float:
        """Cores' worth of CPU that other work on the machine took during the run
        (everything but the server and sipp), averaged over the run."""
        if self.wall <= 0:
            return 0.0
        return max(0.0, self.machine_cpu - self.server_cpu - self.sipp_cpu) / self.wall

    @property
    def clean(self) -> bool:
        return self.returncode == 0 and self.failed == 0 and self.successful == self.calls


def _duration(value: str) -> float:
    """sipp's 'HH:MM:SS:uuuuuu' (or with a '.') -> seconds."""
    parts = value.replace(".", ":").split(":")
    if len(parts) < 3:
        return 0.0
    hours, minutes, seconds = (int(p) for p in parts[:3])
    micros = int(parts[3]) if len(parts) > 3 and parts[3] else 0
    return hours * 3600 + minutes * 60 + seconds + micros / 1e6


def _epoch(value: str) -> float:
    """sipp's 'date<TAB>time<TAB>epoch.micro' timestamp -> epoch seconds."""
    try:
        return float(value.split("\t")[-1])
    except ValueError:
        return 0.0


def p99_bucket(row: dict[str, str]) -> str:
    """The ResponseTimeRepartition1 bucket that holds the 99th percentile."""
    buckets = [(name.split("_", 1)[1], int(value or 0)) for name, value in row.items()
               if name.startswith("ResponseTimeRepartition1_")]
    total = sum(count for _, count in buckets)
    if not total:
        return "-"
    seen = 0
    for label, count in buckets:
        seen += count
        if seen >= 0.99 * total:
            return f"{label} ms"
    return f"{buckets[-1][0]} ms"


def read_sipp_stats(path: Path) -> dict[str, str]:
    """The last row (cumulative values) of sipp's -trace_stat CSV."""
    if not path.exists():
        return {}
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle, delimiter=";"))
    if len(rows) < 2:
        return {}
    header = rows[0]
    return dict(zip(header, rows[-1], strict=False))


def sipp_command(scenario: str, target: str, inf: Path, calls: int, rate: float,
                 workdir: Path, local_port: int, extra: list[str] | None = None,
                 limit: int | None = None, timeout_s: int = 120,
                 local_ip: str = LOOPBACK) -> list[str]:
    stats = workdir / "stats.csv"
    command = [
        "sipp", "-sf", str(SCENARIOS / scenario), "-inf", str(inf),
        "-i", local_ip, "-p", str(local_port), "-t", "u1",
        "-m", str(calls), "-r", f"{rate:g}", "-rp", "1000",
        # At most 2 s worth of registrations open at once (16,000 at most: above
        # that sipp warns that open calls could exceed its file descriptors).
        "-l", str(limit if limit is not None else min(16000, max(200, int(rate * 2)))),
        "-recv_timeout", "5000", "-timeout", str(timeout_s), "-timeout_error",
        "-nostdin", "-trace_stat", "-stf", str(stats), "-fd", "1",
        "-trace_err", "-error_file", str(workdir / "errors.log"),
        # sipp's default socket buffer is 64 KiB: at a few thousand registrations
        # a second the kernel drops its replies (RcvbufErrors in /proc/net/snmp)
        # and the lost ones look like the registrar's failures. 4 MiB (capped by
        # net.core.rmem_max) keeps sipp from being what fails.
        "-buff_size", "4194304",
    ]
    return command + (extra or []) + [target]


def run_sipp(command: list[str], workdir: Path, calls: int, rate: float,
             server_pids=None, timeout_s: int = 150) -> SippRun:
    """Run sipp to completion (bounded by timeout_s) and read its statistics.

    server_pids: a callable giving the server's process ids, to measure the CPU
    it used during the run.
    """
    return run_sipps([(command, workdir)], calls, rate, server_pids, timeout_s)


def run_sipps(runs: list[tuple[list[str], Path]], calls: int, rate: float,
              server_pids=None, timeout_s: int = 150) -> SippRun:
    """Several sipp processes at once (each its command and work directory, e.g.
    one per source address), to completion; their statistics added up. `calls`
    and `rate` are the totals asked of all of them."""
    for _, workdir in runs:
        for stale in (workdir / "stats.csv", workdir / "errors.log"):
            stale.unlink(missing_ok=True)
    pids = list(server_pids()) if server_pids else []
    cpu_before = sum(process_cpu(pid) for pid in pids)
    load_before = loadavg()
    drops_before = udp_rcvbuf_errors()
    busy_before = machine_busy()
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    outputs = [open(workdir / "sipp.out", "wb") for _, workdir in runs]
    try:
        processes = [
            subprocess.Popen(command, cwd=workdir, stdout=out, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL)
            for (command, workdir), out in zip(runs, outputs, strict=True)
        ]
        returncodes = [_wait_sipp(p, started + timeout_s) for p in processes]
    finally:
        for out in outputs:
            out.close()
    wall = time.monotonic() - started
    busy = machine_busy() - busy_before
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    sipp_cpu = ((children_after.ru_utime + children_after.ru_stime)
                - (children_before.ru_utime + children_before.ru_stime))
    cpu_after = sum(process_cpu(pid) for pid in (server_pids() if server_pids else []))
    rows = [read_sipp_stats(workdir / "stats.csv") for _, workdir in runs]

    def number(row: dict[str, str], name: str) -> int:
        try:
            return int(float(row.get(name, "0") or 0))
        except ValueError:
            return 0

    def total(name: str) -> int:
        return sum(number(row, name) for row in rows)

    note = ""
    for _, workdir in runs:
        errors = workdir / "errors.log"
        if not note and errors.exists() and errors.stat().st_size:
            first = next((line for line in errors.read_text(errors="replace").splitlines()
                          if line.strip() and not line.startswith("The following events")
                          and "Maximum number of open sockets" not in line), "")
            note = first.split(": ", 1)[-1][:160]
    successful = total("SuccessfulCall(C)")
    # ElapsedTime(C) counts whole seconds only; the timestamps are exact. Together
    # the runs took from the first start to the last end.
    starts = [_epoch(row.get("StartTime", "")) for row in rows if row]
    ends = [_epoch(row.get("CurrentTime", "")) for row in rows if row]
    elapsed = max(0.0, max(ends) - min(starts)) if starts and ends else 0.0
    response = sum(_duration(row.get("ResponseTime1(C)", "0:0:0")) * number(
        row, "SuccessfulCall(C)") for row in rows) / max(successful, 1)
    return SippRun(
        target_rate=rate, calls=calls, returncode=max(returncodes),
        successful=successful, failed=total("FailedCall(C)"),
        retransmissions=total("Retransmissions(C)"),
        elapsed=elapsed, wall=wall,
        response_time_ms=response * 1000,
        p99_bucket=p99_bucket(_sum_buckets(rows)),
        server_cpu=max(0.0, cpu_after - cpu_before),
        load_before=load_before, load_after=loadavg(),
        udp_drops=udp_rcvbuf_errors() - drops_before, machine_cpu=busy, sipp_cpu=sipp_cpu,
        command=runs[0][0], note=note,
    )


def _sum_buckets(rows: list[dict[str, str]]) -> dict[str, str]:
    """The response-time buckets of several runs added up, in sipp's order."""
    summed: dict[str, str] = {}
    for row in rows:
        for name, value in row.items():
            if name.startswith("ResponseTimeRepartition1_"):
                summed[name] = str(int(summed.get(name, "0")) + int(value or 0))
    return summed


def _wait_sipp(process: subprocess.Popen, deadline: float) -> int:
    try:
        return process.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)
        try:
            return process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()


# --- processes ---------------------------------------------------------------

def process_cpu(pid: int) -> float:
    """User + system CPU seconds of one process (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def vm_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def stop_process(process: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM the process we started, then SIGKILL it after `grace` seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


# --- readiness -------------------------------------------------------------------

def options_request(port: int, local_port: int, seq: int) -> bytes:
    branch = "z9hG4bK" + secrets.token_hex(8)
    return (
        f"OPTIONS sip:{LOOPBACK}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {LOOPBACK}:{local_port};branch={branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:bench@{LOOPBACK}>;tag=b{seq}\r\n"
        f"To: <sip:{LOOPBACK}:{port}>\r\n"
        f"Call-ID: bench-options-{secrets.token_hex(6)}\r\n"
        f"CSeq: {seq} OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def wait_options_200(port: int, deadline_s: float, interval: float = 0.01,
                     alive=None) -> float | None:
    """Send OPTIONS to 127.0.0.1:port every `interval` s until a 200 arrives.

    Returns the monotonic time the 200 arrived, or None at the deadline (or
    when alive() says the server has exited).
    """
    end = time.monotonic() + deadline_s
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        local_port = sock.getsockname()[1]
        seq = 0
        while time.monotonic() < end:
            if alive is not None and not alive():
                return None
            seq += 1
            try:
                sock.sendto(options_request(port, local_port, seq), (LOOPBACK, port))
            except OSError:
                pass
            sock.settimeout(interval)
            try:
                while True:
                    data = sock.recv(65535)
                    if data.startswith(b"SIP/2.0 200"):
                        return time.monotonic()
            except (TimeoutError, ConnectionRefusedError, OSError):
                pass
    return None


# --- the machine ---------------------------------------------------------------

def machine_busy() -> float:
    """CPU seconds all cores have spent busy since boot (user, system, irq,
    softirq, steal), from /proc/stat. Time of niced processes (the "nice"
    column) is left out: background work at nice > 0 yields to ours, so it is
    not competition."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, _nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + system + irq + softirq + steal) / CLK_TCK


def others_busy(own_pids=(), window: float = 2.0) -> float:
    """Cores' worth of CPU that processes other than own_pids use, over `window` s."""
    busy, own = machine_busy(), sum(process_cpu(pid) for pid in own_pids)
    time.sleep(window)
    busy_after, own_after = machine_busy(), sum(process_cpu(pid) for pid in own_pids)
    return max(0.0, (busy_after - busy) - (own_after - own)) / window


def wait_quiet(limit: float, deadline: float, own_pids=()) -> tuple[float, float]:
    """Wait until other work uses at most `limit` cores (2 s windows), for at
    most `deadline` s. Returns (their last share, seconds waited)."""
    started = time.monotonic()
    while True:
        share = others_busy(own_pids)
        waited = time.monotonic() - started
        if share <= limit or waited >= deadline:
            return share, waited


def udp_rcvbuf_errors() -> int:
    """The kernel's count of UDP datagrams dropped for a full receive buffer."""
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()
             if line.startswith("Udp:")]
    if len(lines) < 2:
        return 0
    return int(dict(zip(lines[0][1:], lines[1][1:], strict=False)).get("RcvbufErrors", 0))


def socket_drops(port: int) -> int:
    """Datagrams the kernel dropped on the UDP socket(s) bound to 127.0.0.1:port."""
    wanted = f"0100007F:{port:04X}"
    drops = 0
    try:
        lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    except OSError:
        return 0
    for line in lines:
        fields = line.split()
        if len(fields) > 12 and fields[1] == wanted:
            drops += int(fields[12])
    return drops


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def machine() -> dict[str, str]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    return {
        "cores": str(os.cpu_count()),
        "cpu": model,
        "memory": f"{mem_kib / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sipd_python": f"{sipd_python()} (Python {python_version(sipd_python())})",
        "sipp": _first_line(["sipp", "-v"]),
        "kamailio": _first_line(["kamailio", "-v"]),
    }


def _first_line(command: list[str]) -> str:
    if not shutil.which(command[0]):
        return "not installed"
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0].strip() if text else "unknown"
