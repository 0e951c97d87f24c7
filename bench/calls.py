"""Call setup rate: sipd's B2BUA against Kamailio 5.6 as an authenticating
stateful proxy, same run, same load.

Each call is tests/sip/scenarios/caller_call.xml: INVITE, 407, ACK, INVITE
with digest credentials, 100/180, 200, ACK, 2 s of call, BYE, 200. The
callers are --users extensions (the sipp injection file, round robin); they all
call one extension, registered (register_auth.xml) by a sipp that answers
every INVITE with callee_answer.xml (180, 200 with SDP, ACK, BYE) and echoes
any RTP it gets (-rtp_echo). The callers send no RTP: this measures signalling;
bench/media.py measures the relay.

Kamailio (bench/kamailio/proxy.cfg): auth_db on db_sqlite (HA1), tm, rr,
registrar/usrloc in memory, 2 UDP workers (one per core here). It relays the
SDP untouched (no media relay). sipd: one gevent process and its RTP relay
process; every call opens relay ports and is written to the `call` table.

A step places rate x --duration calls at a fixed rate (sipp -r). It is clean
when every call succeeded (none failed or timed out, on either sipp) and the
last call ended within its 2 s + 5 s of the end of the placing, and 99 % of
the calls were set up (first INVITE to 200) within --max-p99-ms, 1 s by
default: calls that get through only after seconds of retransmissions are not
a rate the server sustains. The rate is
doubled until a step is not clean, then bisected; a step that is not clean is
run once more before it counts (this 2-core machine is shared), and after a
step that is not clean the server is restarted, so that the next step starts
from a fresh process rather than from what an overload left behind. The highest
clean rate is each server's sustained call setup rate. For sipd, after each
step every call must have its row ended in the database (no call left
"active") and the rows must agree with sipp's count.

With --fork N (issue 11: a call through a ringall group): N called phones
are rung at once; the first answers after --answer-after-ms and the other
N-1 ring (callee_no_answer.xml) until the server CANCELs them. Kamailio forks
to N contacts registered for the callee's one AOR; for sipd the callee's
number is a ringall ring group whose N members are one extension per phone.

    .venv/bin/python bench/calls.py                   # both
    .venv/bin/python bench/calls.py --fork 3 --answer-after-ms 100
    .venv/bin/python bench/calls.py --only sipd --json calls.json

Traffic goes to 127.0.0.1 only; every step is bounded in calls and time.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "kamailio"))
sys.path.insert(0, str(HERE.parent))

from benchlib import (  # noqa: E402
    LOOPBACK,
    ROOT,
    SCENARIOS,
    SippRun,
    bench_users,
    free_udp_port,
    loadavg,
    machine,
    process_cpu,
    process_tree,
    read_sipp_stats,
    run_sipp,
    sipd_python,
    sipp_command,
    stop_process,
    users_csv,
    wait_options_200,
)
from make_db import make_db  # noqa: E402

REALM = "pbx.bench"
CALLEE = "200000"
CALL_MS = 2000
PROXY_CFG = HERE / "kamailio" / "proxy.cfg"


def free_pair() -> int:
    """An even port p with p and p + 2 free (sipp binds its media port and +2)."""
    for _ in range(100):
        port = free_udp_port() & ~1
        if port + 2 > 65535:
            continue
        ok = True
        for candidate in (port, port + 2):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                try:
                    sock.bind((LOOPBACK, candidate))
                except OSError:
                    ok = False
        if ok:
            return port
    raise RuntimeError("no free media port pair")


# --- the called phone ----------------------------------------------------------------------

class Callee:
    """A sipp that registers `user` from its port, then answers every call
    (callee_answer.xml, -rtp_echo) or rings until it is CANCELled
    (callee_no_answer.xml: a fork that loses). Restarted for each step, so its own
    statistics are the step's and its binding never expires."""

    def __init__(self, workdir: Path, user: str, password: str, name: str = "callee",
                 answers: bool = True, ring_ms: int = 0):
        self.workdir = workdir / name
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.inf = users_csv(self.workdir / "callee.csv", [(user, password)])
        self.port = free_udp_port()
        self.media_port = free_pair()
        self.answers = answers
        self.ring_ms = ring_ms
        self.process: subprocess.Popen | None = None

    def start(self, target: str) -> None:
        register = subprocess.run(
            ["sipp", "-sf", str(SCENARIOS / "register_auth.xml"), "-inf", str(self.inf),
             "-i", LOOPBACK, "-p", str(self.port), "-mp", str(self.media_port),
             "-m", "1", "-timeout", "10", "-timeout_error", "-nostdin",
             "-cp", str(free_udp_port()), target],
            cwd=self.workdir, capture_output=True, text=True, timeout=30)
        if register.returncode != 0:
            raise RuntimeError(f"the callee could not register: {register.stdout[-500:]}")
        self.stats = self.workdir / "stats.csv"
        self.stats.unlink(missing_ok=True)
        self._out = open(self.workdir / "sipp.out", "wb")  # noqa: SIM115
        scenario = ["-sf", str(SCENARIOS / "callee_answer.xml"), "-rtp_echo",
                    "-set", "ring", str(self.ring_ms)] if self.answers else [
                    "-sf", str(SCENARIOS / "callee_no_answer.xml")]
        self.process = subprocess.Popen(
            ["sipp", *scenario,
             "-i", LOOPBACK, "-p", str(self.port), "-mi", LOOPBACK,
             "-mp", str(self.media_port),
             "-nostdin", "-trace_stat", "-stf", str(self.stats), "-fd", "1",
             "-trace_err", "-error_file", str(self.workdir / "errors.log"),
             "-buff_size", "4194304", "-cp", str(free_udp_port())],
            cwd=self.workdir, stdout=self._out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL)
        time.sleep(0.3)
        if self.process.poll() is not None:
            raise RuntimeError("the callee sipp exited at start")

    def stop(self) -> dict[str, str]:
        """Stop it (ours, by pid) and return its last statistics row."""
        if self.process is None:
            return {}
        self.cpu = process_cpu(self.process.pid)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGUSR1)  # sipp: quit, dumping statistics
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._out.close()
        self.process = None
        return read_sipp_stats(self.stats)


class Callees:
    """The called side of a step: one phone (the default), or --fork N phones rung at
    once of which the first answers after --answer-after-ms and the others ring until
    the server CANCELs them. Kamailio forks to N contacts registered for CALLEE; sipd
    rings the ring group CALLEE whose members are the N extensions after it."""

    def __init__(self, workdir: Path, users: dict[str, str], numbers: list[str], ring_ms: int):
        self.phones = [
            Callee(workdir, number, users[number], name=f"callee{i}", answers=i == 0,
                   ring_ms=ring_ms)
            for i, number in enumerate(numbers)
        ]

    def start(self, target: str) -> None:
        for phone in self.phones:
            phone.start(target)

    def stop(self) -> list[dict[str, str]]:
        return [phone.stop() for phone in self.phones]

    @property
    def cpu(self) -> float:
        return sum(getattr(phone, "cpu", 0.0) for phone in self.phones)


# --- the servers ---------------------------------------------------------------------------

class Server:
    name = "?"
    port = 0
    process: subprocess.Popen | None = None
    detail = ""
    command: list[str] = []

    def pids(self) -> list[int]:
        return process_tree(self.process.pid) if self.process else []

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process:
            children = {pid: _cmdline(pid) for pid in self.pids()[1:]}
            stop_process(self.process)
            # A child the server left behind (seen with Kamailio after a restart:
            # two of its workers orphaned, idle, holding the port) must not sit
            # under the next steps. Only if it is still that process (same command).
            for pid, cmdline in children.items():
                if cmdline and _cmdline(pid) == cmdline:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass

    def check_step(self, calls: int) -> str:
        """Anything wrong in the server's own records after a step ("" if fine)."""
        return ""

    def callee_numbers(self, fork: int) -> list[str]:
        """Whom the called phones register as: CALLEE from every one of them (a
        proxy forks to the contacts of one AOR)."""
        return [CALLEE] * fork

    def restart(self) -> None:
        """A fresh process after a step that was not clean, so that what a
        collapse left behind does not decide the next step."""
        self.stop()
        self.start()


class Kamailio(Server):
    name = "kamailio"

    def __init__(self, workdir: Path, users, children: int):
        self.workdir = workdir / "kamailio"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.db = make_db(self.workdir / "kamailio.db", users, REALM)
        self.port = free_udp_port()
        self.command = [
            "kamailio", "-DD", "-E", "-f", str(PROXY_CFG),
            "-l", f"udp:{LOOPBACK}:{self.port}", "-n", str(children),
            "-m", "256",
            "-Y", str(self.workdir), "-P", str(self.workdir / "kamailio.pid"),
            "-w", str(self.workdir),
            "-A", f'DBURL="sqlite:///{self.db}"', "-A", f'REALM="{REALM}"',
            "-A", "RING_TIMEOUT=30000",
        ]
        self.detail = (f"kamailio 5.6, {children} UDP workers, tm + rr, auth_db/db_sqlite, "
                       "usrloc in memory, no media relay")

    def start(self) -> None:
        self.log = open(self.workdir / "kamailio.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(self.command, stdout=self.log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, cwd=self.workdir)
        if wait_options_200(self.port, 20, alive=self.alive) is None:
            raise RuntimeError(f"kamailio did not answer OPTIONS; see {self.workdir}/kamailio.log")

    def stop(self) -> None:
        super().stop()
        if getattr(self, "log", None):
            self.log.close()


class Sipd(Server):
    name = "sipd"

    def __init__(self, workdir: Path, users, rtp_ports: str, fork: int = 1):
        from core.config import load_settings
        from core.credentials import ha1_pair
        from core.database import connect
        from core.models import Extension, RingGroup, RingGroupMember

        self.workdir = workdir / "sipd"
        (self.workdir / "run").mkdir(parents=True, exist_ok=True)
        self.db = self.workdir / "pbx.db"
        self.port = free_udp_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PBX_")}
        self.env.update({
            "PBX_DB": str(self.db),
            "PBX_SIP_LISTEN": f"{LOOPBACK}:{self.port}",
            "PBX_REALM": REALM,
            "PBX_LOG_LEVEL": "warning",
            "PBX_RUN_DIR": str(self.workdir / "run"),
            "PBX_SECRET_KEY": secrets.token_urlsafe(48),
            "PBX_PUBLIC_ADDRESS": LOOPBACK,
            "PBX_RTP_PORTS": rtp_ports,
            "PBX_RING_TIMEOUT": "30",
            # one address carries every phone's calls here: per-source limits and
            # the concurrent call cap must not be what stops the benchmark
            "PBX_TRUSTED_NETWORKS": "127.0.0.0/8",
            "PBX_MAX_CALLS": "100000",
            # Kamailio probes no contacts; nor does sipd here (sipp's callee would
            # count each OPTIONS as an unexpected message, a failed call)
            "PBX_QUALIFY_INTERVAL": "0",
            # sipp answers only the first challenge, and only MD5 (README)
            "PBX_DIGEST_ALGORITHMS": "MD5,SHA-256",
        })
        settings = load_settings(self.env)
        database = connect(settings)
        # One callee takes every call and each caller many at once: like
        # PBX_MAX_CALLS above, the per-extension call limit (4 by default) must
        # not be what stops the benchmark (written directly, past the panel's 1000).
        rows = [{"number": number, "name": "", "enabled": True, "max_calls": 100000,
                 **ha1_pair(number, REALM, password)} for number, password in users]
        if fork > 1:  # CALLEE is a ringall group of the fork extensions after it
            rows = [row for row in rows if row["number"] != CALLEE]
        with database.atomic():
            for start in range(0, len(rows), 500):
                Extension.insert_many(rows[start:start + 500]).execute()
            if fork > 1:
                # Its members are each in every call at once here: a group that
                # skipped members in a call (the default) would ring nobody.
                group = RingGroup.create(number=CALLEE, name="Bench", strategy="ringall",
                                         ring_time=30, skip_busy=False)
                for position, number in enumerate(self.callee_numbers(fork)):
                    RingGroupMember.create(group=group, position=position,
                                           extension=Extension.by_number(number))
        database.close()
        self.fork = fork
        self.command = [sipd_python(), "-m", "sipd"]
        self.detail = ("python -m sipd (gevent, one process) + its RTP relay process, "
                       f"SQLite WAL, call rows written, RTP ports {rtp_ports}")
        self.stderr_tail: list[str] = []
        self.rows_seen = 0

    def start(self) -> None:
        self.process = subprocess.Popen(self.command, cwd=ROOT, env=self.env,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE)

        def reader():
            for raw in self.process.stderr:
                line = raw.decode(errors="replace").rstrip()
                self.stderr_tail = (self.stderr_tail + [line])[-50:]

        threading.Thread(target=reader, daemon=True).start()
        if wait_options_200(self.port, 30, alive=self.alive) is None:
            tail = "\n".join(self.stderr_tail[-10:])
            raise RuntimeError(f"sipd did not answer OPTIONS:\n{tail}")

    def callee_numbers(self, fork: int) -> list[str]:
        """The called phones: CALLEE itself, or the members of the group CALLEE."""
        return [CALLEE] if fork == 1 else [str(int(CALLEE) + 1 + i) for i in range(fork)]

    def check_step(self, calls: int) -> str:
        """Every call of the step has its row, ended; none is left active."""
        deadline = time.monotonic() + 10
        while True:
            connection = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)
            try:
                total, active, answered = connection.execute(
                    "SELECT COUNT(*), SUM(ended_at IS NULL),"
                    " SUM(disposition = 'ANSWERED') FROM call").fetchone()
            finally:
                connection.close()
            active = active or 0
            if not active or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        new = total - self.rows_seen
        problems = []
        if active:
            problems.append(f"{active} call rows still active")
        if new != calls:
            problems.append(f"{new} call rows for {calls} calls")
        connection = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)
        try:
            outcomes = connection.execute(
                "SELECT disposition, sip_status, reason, COUNT(*) FROM call WHERE id > ?"
                " GROUP BY 1, 2, 3 ORDER BY 4 DESC LIMIT 4", (self.rows_seen,)).fetchall()
        finally:
            connection.close()
        self.rows_seen = total
        if outcomes and problems:
            problems.append("rows: " + ", ".join(
                f"{n} x {d or 'active'} {st or ''} {r!r}" for d, st, r, n in outcomes))
        return "; ".join(problems)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


# --- the search ------------------------------------------------------------------------------

@dataclass
class Result:
    name: str
    detail: str = ""
    steps: list[dict] = field(default_factory=list)
    sustained: dict | None = None
    error: str = ""
    command: str = ""


def _bucket_ms(label: str) -> float:
    """sipp's response-time bucket ("<200 ms", ">=2000 ms") -> its upper bound in ms
    (infinite for the open-ended last one)."""
    parts = label.replace("ms", "").split()
    if not parts or parts[0].startswith(">=") or not parts[0].lstrip("<").isdigit():
        return float("inf")
    return float(parts[0].lstrip("<"))


def run_step(server: Server, callee: Callees, inf: Path, workdir: Path, rate: float,
             duration: float, label: str, max_p99_ms: float) -> tuple[SippRun, dict]:
    calls = max(1, int(round(rate * duration)))
    target = f"{LOOPBACK}:{server.port}"
    callee.start(target)
    stepdir = workdir / server.name / "steps"
    stepdir.mkdir(parents=True, exist_ok=True)
    placing = calls / rate
    command = sipp_command(
        "caller_call.xml", target, inf, calls, rate, stepdir, free_udp_port(),
        extra=["-d", str(CALL_MS), "-mp", str(free_pair()), "-mi", LOOPBACK,
               "-cp", str(free_udp_port())],
        # room for every call that can be up at once, so sipp never throttles
        limit=int(rate * (CALL_MS / 1000 + 6)) + 50,
        timeout_s=int(placing + 60))
    try:
        run = run_sipp(command, stepdir, calls, rate, server_pids=server.pids,
                       timeout_s=int(placing + 90))
    finally:
        callee_stats = callee.stop()
    callee_failed = sum(int(float(st.get("FailedCall(C)", "0") or 0)) for st in callee_stats)
    # the answering phone's calls (the others' end CANCELled)
    callee_ok = int(float(callee_stats[0].get("SuccessfulCall(C)", "0") or 0))
    late = run.elapsed - (placing + CALL_MS / 1000)
    problems = server.check_step(calls) if server.alive() else f"{server.name} exited"
    prompt = _bucket_ms(run.p99_bucket) <= max_p99_ms
    clean = (run.clean and callee_failed == 0 and late <= 5.0 and not problems and prompt)
    record = asdict(run)
    record.update(label=label, command=" ".join(run.command), callee_failed=callee_failed,
                  zero_failures=run.clean and callee_failed == 0, prompt=prompt,
                  callee_cpu=round(callee.cpu, 2),
                  callee_ok=callee_ok, late_s=round(late, 2), problems=problems, clean=clean)
    print(f"  {server.name:8} {label:7} rate {rate:6.0f}/s calls {calls:6} "
          f"ok {run.successful:6} failed {run.failed:4} (callee side {callee_failed:3}) "
          f"retrans {run.retransmissions:5} setup mean {run.response_time_ms:6.1f} ms "
          f"p99 {run.p99_bucket:>8} late {late:5.1f} s "
          f"server CPU {run.server_cpu / max(run.wall, 1e-9) * 100:4.0f}% "
          f"sipp CPU {(run.sipp_cpu + record['callee_cpu']) / max(run.wall, 1e-9) * 100:4.0f}% "
          f"others {others_cores(record) * 100:4.0f}% load {run.load_after} "
          f"{'clean' if clean else 'NOT CLEAN'}"
          + (f" [{problems or run.note or 'p99 setup over the limit'}]" if not clean else ""),
          flush=True)
    if not server.alive():
        raise RuntimeError(f"{server.name} exited during the step at {rate:g}/s")
    time.sleep(2)  # let retransmissions and timers of the step die down
    return run, record


def search(server: Server, callee: Callees, inf: Path, workdir: Path, args,
           result: Result) -> None:
    started = time.monotonic()

    def attempt(rate: float, label: str) -> dict:
        _, record = run_step(server, callee, inf, workdir, rate, args.duration, label,
                             args.max_p99_ms)
        result.steps.append(record)
        if not record["clean"]:
            server.restart()
            time.sleep(3)
            _, again = run_step(server, callee, inf, workdir, rate, args.duration, label + "'",
                                args.max_p99_ms)
            result.steps.append(again)
            if not again["clean"]:
                server.restart()
            else:
                return again
        return record

    warm = attempt(args.start_rate / 2, "warm-up")
    if not warm["clean"]:
        result.error = f"not clean even at {args.start_rate / 2:g}/s"
        return
    good = bad = None
    rate = args.start_rate
    while rate <= args.max_rate and time.monotonic() - started < args.budget:
        record = attempt(rate, "climb")
        if record["clean"]:
            good = record
            rate *= 2
        else:
            bad = record
            break
    if good is not None and bad is not None:
        for _ in range(args.bisect):
            if time.monotonic() - started > args.budget:
                break
            low, high = good["target_rate"], bad["target_rate"]
            if high - low <= max(10.0, 0.05 * low):
                break
            mid = round((low + high) / 2 / 5) * 5
            record = attempt(mid, "bisect")
            if record["clean"]:
                good = record
            else:
                bad = record
    if good is None:
        result.error = f"not clean at {args.start_rate:g}/s"
        return
    result.sustained = good


def bench(server: Server, users, inf: Path, workdir: Path, args) -> Result:
    result = Result(server.name, detail=server.detail, command=" ".join(server.command))
    passwords = dict(users)
    callee = Callees(workdir / server.name, passwords, server.callee_numbers(args.fork),
                     args.answer_after_ms)
    try:
        server.start()
        search(server, callee, inf, workdir, args, result)
    except RuntimeError as error:
        result.error = str(error)
    finally:
        callee.stop()
        server.stop()
    return result


def others_cores(step: dict) -> float:
    """Cores' worth of CPU other work on the machine took during the step."""
    if step["wall"] <= 0:
        return 0.0
    ours = step["server_cpu"] + step["sipp_cpu"] + step.get("callee_cpu", 0.0)
    return max(0.0, step["machine_cpu"] - ours) / step["wall"]


def table(results: list[Result], args) -> str:
    lines = [
        f"Call setup with {CALL_MS / 1000:g} s calls: INVITE, 407, INVITE+auth, 180, 200, ACK, "
        f"BYE; {args.users} calling extensions, sipp over UDP on 127.0.0.1, "
        f"{args.duration:g} s of calls per step; sustained = no call failed and 99 % set up "
        f"within {args.max_p99_ms:g} ms",
        "",
        f"{'server':9} {'sustained':>10} {'calls':>6} {'failed':>6} {'retrans':>7} "
        f"{'setup mean':>10} {'setup p99':>9} {'server CPU':>10} {'CPU/call':>9} {'others':>6}"
        f" {'no failure':>10}  first rate not clean",
    ]
    for r in results:
        if r.sustained is None:
            lines.append(f"{r.name:9} {'-':>10}  {r.error}")
            continue
        s = r.sustained
        above = [st for st in r.steps if st["target_rate"] > s["target_rate"]
                 and not st["clean"]]
        # the highest rate of any step with zero failed calls, however slow the setup
        no_failure = max(st["target_rate"] for st in r.steps if st.get("zero_failures"))
        first_bad = (f"{min(st['target_rate'] for st in above):.0f}/s" if above
                     else f"none up to {s['target_rate']:.0f}/s (search ended)")
        lines.append(
            f"{r.name:9} {s['target_rate']:>8.0f}/s {s['calls']:>6} {s['failed']:>6} "
            f"{s['retransmissions']:>7} {s['response_time_ms']:>7.1f} ms {s['p99_bucket']:>9} "
            f"{s['server_cpu'] / max(s['wall'], 1e-9) * 100:>9.0f}% "
            f"{s['server_cpu'] / max(s['successful'], 1) * 1000:>6.2f} ms "
            f"{others_cores(s) * 100:>5.0f}% {no_failure:>8.0f}/s  {first_bad}")
    by = {r.name: r for r in results}
    if all(n in by and by[n].sustained for n in ("sipd", "kamailio")):
        ratio = by["sipd"].sustained["target_rate"] / by["kamailio"].sustained["target_rate"]
        lines += ["", f"sipd / kamailio sustained call rate: {ratio:.2f} (target >= 0.50)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200, help="calling extensions")
    parser.add_argument("--only", choices=("kamailio", "sipd"))
    parser.add_argument("--start-rate", type=float, default=20.0)
    parser.add_argument("--max-rate", type=float, default=4000.0)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of calls per step")
    parser.add_argument("--bisect", type=int, default=3)
    parser.add_argument("--max-p99-ms", type=float, default=1000.0,
                        help="a clean step also sets up 99%% of its calls within this "
                        "(sipp's response-time buckets: 10 20 50 100 200 500 1000 2000 ms)")
    parser.add_argument("--budget", type=float, default=420.0,
                        help="seconds of search per server at most")
    parser.add_argument("--kamailio-children", type=int, default=2)
    parser.add_argument("--rtp-ports", default="10000-19999",
                        help="sipd's PBX_RTP_PORTS (below Linux's ephemeral ports, "
                        "where every sipp and client socket of the machine lands)")
    parser.add_argument("--fork", type=int, default=1,
                        help="called phones rung at once: Kamailio forks to N contacts of "
                        "the callee, sipd rings a ringall group of N extensions; one answers")
    parser.add_argument("--answer-after-ms", type=int, default=0,
                        help="how long the answering phone rings first (with --fork, the "
                        "others have rung by then)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)

    for tool in ("sipp",) + (() if args.only == "sipd" else ("kamailio",)):
        if not shutil.which(tool):
            print(f"{tool} is not installed (make deps-bench)", file=sys.stderr)
            return 2
    info = machine()
    date = time.strftime("%Y-%m-%d %H:%M:%S %z")
    print(f"machine: {info['cores']} cores, {info['cpu']}, {info['memory']}; "
          f"{info['sipp']}; {info['kamailio']}; load {loadavg()}")
    print(f"sipd runs on: {info['sipd_python']}")
    print(f"date: {date}")
    workdir = Path(tempfile.mkdtemp(prefix="pbx-bench-calls-"))
    try:
        users = bench_users(args.users)
        callee_user = bench_users(1 + (args.fork if args.fork > 1 else 0), first=int(CALLEE))
        inf = users_csv(workdir / "callers.csv", users, extra=[[CALLEE]] * len(users))
        everyone = users + callee_user
        results = []
        if args.only in (None, "kamailio"):
            print("kamailio:", flush=True)
            results.append(bench(Kamailio(workdir, everyone, args.kamailio_children),
                                 everyone, inf, workdir, args))
        if args.only in (None, "sipd"):
            print("sipd:", flush=True)
            results.append(bench(Sipd(workdir, everyone, args.rtp_ports, args.fork),
                                 everyone, inf, workdir, args))
        print()
        print(table(results, args))
        for r in results:
            if r.error:
                print(f"{r.name}: {r.error}")
        if args.json:
            args.json.write_text(json.dumps(
                {"machine": info, "date": date, "args": {k: str(v) for k, v in vars(args).items()},
                 "results": [asdict(r) for r in results]}, indent=2))
        return 1 if any(r.sustained is None for r in results) else 0
    finally:
        if args.keep:
            print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
