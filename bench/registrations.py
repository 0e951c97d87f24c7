"""Authenticated registration throughput: sipd against Kamailio, same run, same load.

Each registration is the full exchange of tests/sip/scenarios/register_auth.xml:
REGISTER, 401, REGISTER with digest credentials, 200. sipp drives it over N
extensions (2,000 by default), each line of its injection file one extension,
at a fixed call rate; a step runs max(N, rate x --duration) registrations
(a whole number of passes over the extensions, so each re-registers equally).

For each registrar the rate is raised (x2) until a step is not clean, then
bisected; a step is clean when every registration succeeded (no failure, no
timeout) and sipp kept up the asked rate (achieved >= 95 % of it, i.e. the
registrar's answers, not sipp's concurrency limit, set the pace). A failed step
is run once more before it counts, because other work on this shared machine
can disturb one step. The highest clean rate is the registrar's sustained rate.
Then a last pass registers every extension once more at that rate, and, for
sipd, its process is killed with SIGKILL and the bindings left in its SQLite
file are counted: every extension must have a live binding on disk.

    .venv/bin/python bench/registrations.py                 # both registrars
    .venv/bin/python bench/registrations.py --only kamailio
    .venv/bin/python bench/registrations.py --json results.json

Traffic goes to 127.0.0.1 only; every step is bounded in calls and time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import shutil
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
    SippRun,
    bench_users,
    free_udp_port,
    loadavg,
    machine,
    process_tree,
    run_sipps,
    sipd_python,
    sipp_command,
    socket_drops,
    stop_process,
    users_csv,
    wait_options_200,
    wait_quiet,
)
from make_db import make_db  # noqa: E402

SCENARIO = "register_auth.xml"
KAMAILIO_CFG = HERE / "kamailio" / "kamailio.cfg"
REALM = "pbx.bench"


@dataclass
class Result:
    name: str
    detail: str = ""
    steps: list[dict] = field(default_factory=list)
    sustained: dict | None = None
    final: dict | None = None
    bindings_live: int | None = None
    bindings_after_kill: int | None = None
    error: str = ""
    command: str = ""


# --- registrars ---------------------------------------------------------------------

class Registrar:
    name = "?"
    port = 0
    sipp_port = 0
    process: subprocess.Popen | None = None

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def pids(self) -> list[int]:
        return process_tree(self.process.pid) if self.process else []

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Kamailio(Registrar):
    name = "kamailio"

    def __init__(self, workdir: Path, users, children: int):
        self.workdir = workdir / "kamailio"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.db = make_db(self.workdir / "kamailio.db", users, REALM)
        self.children = children
        self.port = free_udp_port()
        self.sipp_port = free_udp_port()
        self.command = [
            "kamailio", "-DD", "-E", "-f", str(KAMAILIO_CFG),
            "-l", f"udp:{LOOPBACK}:{self.port}", "-n", str(children),
            "-Y", str(self.workdir), "-P", str(self.workdir / "kamailio.pid"),
            "-w", str(self.workdir),
            "-A", f'DBURL="sqlite:///{self.db}"', "-A", f'REALM="{REALM}"',
        ]
        self.detail = f"kamailio 5.6, {children} UDP workers, auth_db/db_sqlite, usrloc db_mode 0"

    def start(self) -> None:
        self.log = open(self.workdir / "kamailio.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(self.command, stdout=self.log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, cwd=self.workdir)
        if wait_options_200(self.port, 20, alive=self.alive) is None:
            raise RuntimeError(f"kamailio did not answer OPTIONS on port {self.port}; "
                               f"see {self.workdir / 'kamailio.log'}")

    def stop(self) -> None:
        if self.process:
            stop_process(self.process)
            self.log.close()


class Sipd(Registrar):
    name = "sipd"

    def __init__(self, workdir: Path, users):
        from core.config import load_settings
        from core.credentials import ha1_pair
        from core.database import connect
        from core.models import Extension

        self.workdir = workdir / "sipd"
        (self.workdir / "run").mkdir(parents=True, exist_ok=True)
        self.db = self.workdir / "pbx.db"
        self.port = free_udp_port()
        self.sipp_port = free_udp_port()
        self.env = dict(os.environ)
        self.env.update({
            "PBX_DB": str(self.db),
            "PBX_SIP_LISTEN": f"{LOOPBACK}:{self.port}",
            "PBX_REALM": REALM,
            "PBX_LOG_LEVEL": "warning",
            "PBX_RUN_DIR": str(self.workdir / "run"),
            "PBX_SECRET_KEY": secrets.token_urlsafe(48),
            # All the load comes from one address, where 2,000 phones would come
            # from 2,000: per-source limits must not throttle the benchmark
            # (Kamailio here has none either).
            "PBX_TRUSTED_NETWORKS": "127.0.0.0/8",
        })
        self.env.pop("PBX_LOG_FILE", None)
        settings = load_settings(self.env)
        database = connect(settings)
        rows = [{"number": number, "name": "", "enabled": True,
                 **ha1_pair(number, REALM, password)} for number, password in users]
        with database.atomic():
            for start in range(0, len(rows), 500):
                Extension.insert_many(rows[start:start + 500]).execute()
        database.close()
        self.command = [sipd_python(), "-m", "sipd"]
        self.detail = "python -m sipd (gevent, one process), SQLite WAL"
        self.stderr_tail: list[str] = []

    def start(self, deadline: float = 30.0) -> float:
        """Start sipd; the seconds from exec until it answers OPTIONS with 200.

        Serving is judged by OPTIONS, not by its "ready" log line, which is
        logged at info level and so not printed under PBX_LOG_LEVEL=warning.
        """
        started = time.monotonic()
        self.process = subprocess.Popen(self.command, cwd=ROOT, env=self.env,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE)

        def reader():
            for raw in self.process.stderr:
                line = raw.decode(errors="replace").rstrip()
                self.stderr_tail = (self.stderr_tail + [line])[-50:]

        threading.Thread(target=reader, daemon=True).start()
        answered = wait_options_200(self.port, deadline, alive=self.alive)
        if answered is None:
            tail = "\n".join(self.stderr_tail[-10:])
            raise RuntimeError(f"sipd did not answer OPTIONS within {deadline:g} s:\n{tail}")
        return answered - started

    def kill(self) -> None:
        """SIGKILL: what is on disk afterwards is what was durably stored."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process:
            stop_process(self.process)

    def live_bindings(self) -> tuple[int, int]:
        """(live binding rows, extensions with a live binding) in the SQLite file."""
        import sqlite3

        connection = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)
        try:
            rows, extensions = connection.execute(
                "SELECT COUNT(*), COUNT(DISTINCT extension_id) FROM binding WHERE expires_at > ?",
                (time.time(),),
            ).fetchone()
        finally:
            connection.close()
        return rows, extensions


# --- the search ------------------------------------------------------------------------

def step_calls(users: int, rate: float, duration: float) -> int:
    passes = max(1, math.ceil(rate * duration / users))
    return passes * users


class Quiet:
    """Before each step, wait for the machine's other work to quieten down
    (it is shared), within a per-step and an overall budget."""

    def __init__(self, limit: float, per_step: float, total: float):
        self.limit, self.per_step, self.left = limit, per_step, total

    def wait(self, registrar: Registrar) -> float:
        if self.limit <= 0:
            return 0.0
        share, waited = wait_quiet(self.limit, min(self.per_step, self.left), registrar.pids())
        self.left = max(0.0, self.left - waited)
        if waited >= 4:
            print(f"  (waited {waited:.0f} s for other work to quieten: it now uses "
                  f"{share * 100:.0f}% of a core)", flush=True)
        return share


QUIET = Quiet(0, 0, 0)


@dataclass
class Site:
    """One sipp process: a source address and the extensions registering from it."""

    address: str
    inf: Path
    users: int


def sites(workdir: Path, users: list[tuple[str, str]], count: int) -> list[Site]:
    """The extensions dealt over `count` source addresses 127.0.0.10, .11, ...:
    offices behind their NAT addresses, each phone with its own Contact."""
    result = []
    for index in range(count):
        share = users[index::count]
        directory = workdir / f"site-{index}"
        directory.mkdir(parents=True, exist_ok=True)
        result.append(Site(f"127.0.0.{10 + index}", users_csv(directory / "users.csv", share),
                           len(share)))
    return result


def run_step(registrar: Registrar, sources: list[Site], workdir: Path, rate: float,
             duration: float, label: str) -> SippRun:
    share = rate / len(sources)
    per_site = [step_calls(site.users, share, duration) for site in sources]
    calls = sum(per_site)
    QUIET.wait(registrar)
    # One local port for every step: the Contact stays the same, so a step
    # refreshes each extension's binding instead of adding one (max_contacts).
    runs = []
    for index, (site, site_calls) in enumerate(zip(sources, per_site, strict=True)):
        directory = workdir / f"site-{index}"
        directory.mkdir(parents=True, exist_ok=True)
        command = sipp_command(SCENARIO, f"{LOOPBACK}:{registrar.port}", site.inf, site_calls,
                               share, directory, registrar.sipp_port,
                               timeout_s=int(site_calls / share * 3 + 30),
                               local_ip=site.address)
        runs.append((command, directory))
    server_drops = socket_drops(registrar.port)
    run = run_sipps(runs, calls, rate, server_pids=registrar.pids,
                    timeout_s=int(calls / rate * 3 + 60))
    run.server_drops = socket_drops(registrar.port) - server_drops  # type: ignore[attr-defined]
    if label == "final":
        verdict = "all registered" if run.clean else "NOT ALL REGISTERED"
    else:
        verdict = "clean" if sustained(run) else "NOT CLEAN"
    print(f"  {registrar.name:8} {label:7} rate {rate:7.0f}/s  calls {calls:6}  "
          f"ok {run.successful:6}  failed {run.failed:4}  retrans {run.retransmissions:5}  "
          f"drops {run.udp_drops:5} (server {run.server_drops})  "
          f"achieved {run.achieved_rate:7.0f}/s  p99 {run.p99_bucket:>8}  "
          f"server CPU {run.server_cpu / max(run.elapsed, 1e-9) * 100:4.0f}%  "
          f"sipp CPU {run.sipp_cpu / max(run.elapsed, 1e-9) * 100:4.0f}%  "
          f"others {run.others_cpu * 100:4.0f}%  "
          f"load {run.load_before} -> {run.load_after}  {verdict}"
          + (f"  [{run.note}]" if run.note and not sustained(run) else ""), flush=True)
    if not registrar.alive():
        raise RuntimeError(f"{registrar.name} exited during the step at {rate:g}/s")
    # Let a backlog drain before the next step: an OPTIONS queued behind it is
    # answered only when the registrar has caught up.
    if wait_options_200(registrar.port, 60, interval=0.5, alive=registrar.alive) is None:
        raise RuntimeError(f"{registrar.name} stopped answering after the step at {rate:g}/s")
    return run


def sustained(run: SippRun) -> bool:
    return run.clean and run.achieved_rate >= 0.95 * run.target_rate


def step_record(run: SippRun, label: str) -> dict:
    record = asdict(run)
    record.update(label=label, achieved_rate=round(run.achieved_rate, 1),
                  others_cpu=round(run.others_cpu, 2),
                  server_drops=getattr(run, "server_drops", 0),
                  sustained=sustained(run))
    record["command"] = " ".join(run.command)
    return record


def search(registrar: Registrar, sources: list[Site], workdir: Path, args,
           result: Result) -> None:
    stepdir = workdir / registrar.name / "sipp"
    stepdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()

    def attempt(rate: float, label: str) -> SippRun:
        run = run_step(registrar, sources, stepdir, rate, args.duration, label)
        result.steps.append(step_record(run, label))
        if not sustained(run):
            time.sleep(2)
            again = run_step(registrar, sources, stepdir, rate, args.duration, label + "'")
            result.steps.append(step_record(again, label + "'"))
            if sustained(again):
                return again
        time.sleep(1)
        return run

    # Warm-up: one pass over every extension at a gentle rate (not counted).
    warm = run_step(registrar, sources, stepdir, args.start_rate, 0, "warm-up")
    result.steps.append(step_record(warm, "warm-up"))
    time.sleep(1)

    good: SippRun | None = None
    bad: SippRun | None = None
    rate = args.start_rate
    # Not clean at the start rate: step down until a rate is (or 25/s is not).
    while time.monotonic() - started < args.budget:
        run = attempt(rate, "down" if rate < args.start_rate else "climb")
        if sustained(run):
            good = run
            rate *= 2
            break
        bad = run
        if rate / 2 < 25:
            break
        rate /= 2
    while (bad is None and good is not None and rate <= args.max_rate
           and time.monotonic() - started < args.budget):
        run = attempt(rate, "climb")
        if sustained(run):
            good = run
            rate *= 2
        else:
            bad = run
            break
    if good is not None and bad is not None:
        for _ in range(args.bisect):
            if time.monotonic() - started > args.budget:
                break
            low, high = good.target_rate, bad.target_rate
            if high - low <= max(25.0, 0.05 * low):
                break
            mid = round((low + high) / 2 / 25) * 25
            run = attempt(mid, "bisect")
            if sustained(run):
                good = run
            else:
                bad = run
    if good is None:
        result.error = f"not clean even at {rate:g}/s"
        return
    result.sustained = step_record(good, "sustained")
    # The last pass: every extension once more at the sustained rate.
    final = run_step(registrar, sources, stepdir, good.target_rate, 0, "final")
    result.final = step_record(final, "final")
    result.steps.append(result.final)


def bench_kamailio(workdir: Path, users, sources: list[Site], args) -> Result:
    result = Result("kamailio")
    if not shutil.which("kamailio"):
        result.error = "kamailio is not installed (make deps-bench)"
        return result
    registrar = Kamailio(workdir, users, args.kamailio_children)
    result.detail, result.command = registrar.detail, " ".join(registrar.command)
    try:
        registrar.start()
        search(registrar, sources, workdir, args, result)
    except RuntimeError as error:
        result.error = str(error)
    finally:
        registrar.stop()
    return result


def bench_sipd(workdir: Path, users, sources: list[Site], args) -> Result:
    result = Result("sipd")
    if not (ROOT / "sipd" / "__main__.py").exists():
        result.error = "sipd/__main__.py does not exist yet"
        return result
    registrar = Sipd(workdir, users)
    result.detail = registrar.detail
    result.command = "PBX_DB=... PBX_SIP_LISTEN=127.0.0.1:PORT python -m sipd"
    try:
        registrar.start()
        search(registrar, sources, workdir, args, result)
        result.bindings_live = registrar.live_bindings()[1]
        registrar.kill()
        rows, extensions = registrar.live_bindings()
        result.bindings_after_kill = extensions
        if rows != extensions:
            print(f"  sipd: {rows} live binding rows for {extensions} extensions", flush=True)
    except RuntimeError as error:
        result.error = str(error)
    finally:
        registrar.stop()
    return result


# --- output ----------------------------------------------------------------------------

def table(results: list[Result], users: int) -> str:
    lines = [
        f"Authenticated registrations over {users} extensions "
        "(REGISTER, 401, REGISTER+auth, 200), sipp over UDP on 127.0.0.1",
        "",
        f"{'registrar':10} {'sustained':>10} {'achieved':>9} {'failed':>6} {'retrans':>7} "
        f"{'p99':>8} {'CPU ms/reg':>10} {'final pass':>16} {'bindings on disk':>17}",
    ]
    for r in results:
        if r.sustained is None:
            lines.append(f"{r.name:10} {'-':>10}  {r.error}")
            continue
        s, f = r.sustained, r.final or {}
        cpu_per_reg = s["server_cpu"] / max(s["successful"], 1) * 1000
        final = f"{f.get('successful', 0)}/{f.get('calls', 0)} ok" if f else "-"
        if r.bindings_after_kill is not None:
            disk = f"{r.bindings_after_kill}/{users}"
        else:
            disk = "n/a (memory)"
        lines.append(
            f"{r.name:10} {s['target_rate']:>8.0f}/s {s['achieved_rate']:>7.0f}/s "
            f"{s['failed']:>6} {s['retransmissions']:>7} {s['p99_bucket']:>8} "
            f"{cpu_per_reg:>10.3f} {final:>16} {disk:>17}")
    by = {r.name: r for r in results}
    if all(n in by and by[n].sustained for n in ("sipd", "kamailio")):
        ratio = by["sipd"].sustained["target_rate"] / by["kamailio"].sustained["target_rate"]
        lines += ["", f"sipd / kamailio sustained rate: {ratio:.2f} (target >= 0.50)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--only", choices=("kamailio", "sipd"))
    parser.add_argument("--sources", type=int, default=8,
                        help="source addresses (127.0.0.10, .11, ...), one sipp each, the "
                             "extensions dealt over them")
    parser.add_argument("--start-rate", type=float, default=250.0)
    parser.add_argument("--max-rate", type=float, default=32000.0)
    parser.add_argument("--duration", type=float, default=10.0,
                        help="seconds of load per step (at least one pass over the extensions)")
    parser.add_argument("--bisect", type=int, default=4,
                        help="bisection steps after the climb (4: to 1/16 of the last doubling)")
    parser.add_argument("--budget", type=float, default=600.0,
                        help="seconds of search per registrar at most")
    parser.add_argument("--kamailio-children", type=int, default=2,
                        help="UDP worker processes of Kamailio (2 = one per core here)")
    parser.add_argument("--quiet", type=float, default=0.5,
                        help="before a step, wait until other work uses at most this many "
                             "cores (0: do not wait)")
    parser.add_argument("--quiet-wait", type=float, default=60.0,
                        help="seconds to wait for quiet before one step at most")
    parser.add_argument("--quiet-budget", type=float, default=600.0,
                        help="seconds to wait for quiet in the whole run at most")
    parser.add_argument("--json", type=Path, help="write every step here")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)

    if not shutil.which("sipp"):
        print("sipp is not installed (Debian package sip-tester; make deps-bench)",
              file=sys.stderr)
        return 2
    global QUIET
    QUIET = Quiet(args.quiet, args.quiet_wait, args.quiet_budget)
    info = machine()
    print(f"machine: {info['cores']} cores, {info['cpu']}, {info['memory']}; "
          f"{info['sipp']}; {info['kamailio']}; load {loadavg()}")
    print(f"sipd runs on: {info['sipd_python']}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M:%S %z')}")
    workdir = Path(tempfile.mkdtemp(prefix="pbx-bench-reg-"))
    try:
        users = bench_users(args.users)
        sources = sites(workdir, users, args.sources)
        results = []
        if args.only in (None, "kamailio"):
            print("kamailio:", flush=True)
            results.append(bench_kamailio(workdir, users, sources, args))
        if args.only in (None, "sipd"):
            print("sipd:", flush=True)
            results.append(bench_sipd(workdir, users, sources, args))
        print()
        print(table(results, args.users))
        for r in results:
            if r.error:
                print(f"{r.name}: {r.error}")
        if args.json:
            args.json.write_text(json.dumps(
                {"machine": info, "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
                 "args": {k: str(v) for k, v in vars(args).items()},
                 "results": [asdict(r) for r in results]}, indent=2))
        failed = [r for r in results if r.error or r.sustained is None]
        if any(r.bindings_after_kill not in (None, args.users) for r in results):
            print("FAIL: not every extension has a binding on disk after the sipd run")
            return 1
        return 1 if failed else 0
    finally:
        if args.keep:
            print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
