"""sipd's resident memory with 10,000 live bindings, and its start-up time with them.

1. Creates 10,000 extensions in a fresh SQLite file (core/, as pbxctl would).
2. Starts sipd on a free loopback port and registers every extension through
   sipp (tests/sip/scenarios/register_auth.xml: REGISTER, 401, REGISTER with
   credentials, 200), so the bindings are made the way phones make them; a
   second pass re-registers them all, to see whether memory grows with traffic.
3. Checks the file holds 10,000 live bindings, then reads sipd's VmRSS (and
   VmHWM, its peak) from /proc/PID/status.
4. Stops sipd and starts it again --starts times with the 10,000 bindings in
   place, timing each from exec until an OPTIONS sent over UDP gets a 200.

Targets (issue 2): RSS under 150 MB, start-up under 2 s.

    .venv/bin/python bench/memory.py [--bindings 10000] [--rate 250] [--passes 2] [--starts 5]

Traffic goes to 127.0.0.1 only; every wait has a deadline.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from benchlib import (  # noqa: E402
    LOOPBACK,
    ROOT,
    bench_users,
    loadavg,
    machine,
    process_tree,
    run_sipp,
    sipp_command,
    users_csv,
    vm_rss_kib,
)
from registrations import Sipd  # noqa: E402

RSS_TARGET_MB = 150
STARTUP_TARGET_S = 2.0


def vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def sip_pids(sipd) -> list[int]:
    """sipd's SIP processes: the main one and its registration workers (not the media
    relay, a process of its own whose memory does not depend on the bindings)."""
    return [pid for pid in process_tree(sipd.process.pid)
            if b"sipd.media" not in Path(f"/proc/{pid}/cmdline").read_bytes()]


def sip_rss_kib(sipd) -> int:
    return sum(vm_rss_kib(pid) for pid in sip_pids(sipd))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bindings", type=int, default=10000)
    parser.add_argument("--rate", type=float, default=250.0,
                        help="registrations per second while filling (sipd must sustain it)")
    parser.add_argument("--starts", type=int, default=5, help="timed restarts")
    parser.add_argument("--passes", type=int, default=2,
                        help="registration passes over all extensions (the 2nd refreshes: "
                             "does memory grow with traffic, or only with bindings?)")
    parser.add_argument("--idle", type=float, default=40.0,
                        help="seconds idle after the passes before RSS is read again")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)

    if not (ROOT / "sipd" / "__main__.py").exists():
        print("sipd/__main__.py does not exist yet: nothing to measure", file=sys.stderr)
        return 2
    if not shutil.which("sipp"):
        print("sipp is not installed (Debian package sip-tester; make deps-bench)",
              file=sys.stderr)
        return 2
    info = machine()
    print(f"machine: {info['cores']} cores, {info['cpu']}, {info['memory']}; load {loadavg()}")
    print(f"sipd runs on: {info['sipd_python']}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M:%S %z')}")
    workdir = Path(tempfile.mkdtemp(prefix="pbx-bench-mem-"))
    figures: dict = {"bindings_wanted": args.bindings}
    sipd = None
    try:
        users = bench_users(args.bindings)
        inf = users_csv(workdir / "users.csv", users)
        made = time.monotonic()
        sipd = Sipd(workdir, users)
        print(f"{args.bindings} extensions written in {time.monotonic() - made:.1f} s")

        empty_start = sipd.start()
        figures["startup_empty_s"] = round(empty_start, 3)
        figures["rss_empty_mb"] = round(sip_rss_kib(sipd) / 1024, 1)
        print(f"start-up with no bindings: {empty_start:.3f} s, "
              f"RSS {figures['rss_empty_mb']} MB")

        stepdir = workdir / "sipp"
        stepdir.mkdir()
        command = sipp_command("register_auth.xml", f"{LOOPBACK}:{sipd.port}", inf,
                               args.bindings, args.rate, stepdir, sipd.sipp_port,
                               timeout_s=int(args.bindings / args.rate * 3 + 30))
        rss_passes = []
        for number in range(1, args.passes + 1):
            print(f"pass {number}: registering {args.bindings} extensions at {args.rate:g}/s "
                  "through sipp ...", flush=True)
            run = run_sipp(command, stepdir, args.bindings, args.rate,
                           timeout_s=int(args.bindings / args.rate * 3 + 60))
            print(f"  {run.successful} registered, {run.failed} failed, "
                  f"{run.retransmissions} retransmissions; "
                  f"RSS {sip_rss_kib(sipd) / 1024:.1f} MB", flush=True)
            rss_passes.append(round(sip_rss_kib(sipd) / 1024, 1))
            if run.failed:
                break
        figures["rss_per_pass_mb"] = rss_passes
        figures["fill"] = {"successful": run.successful, "failed": run.failed,
                           "retransmissions": run.retransmissions,
                           "seconds": round(run.elapsed, 1),
                           "achieved_rate": round(run.achieved_rate, 1),
                           "load": f"{run.load_before} -> {run.load_after}",
                           "command": " ".join(command)}
        print(f"  {run.successful} registered, {run.failed} failed, "
              f"{run.retransmissions} retransmissions, {run.elapsed:.1f} s "
              f"({run.achieved_rate:.0f}/s); load {run.load_before} -> {run.load_after}")
        rows, extensions = sipd.live_bindings()
        figures["live_bindings"] = extensions
        print(f"  live bindings in the database: {rows} rows, {extensions} extensions")

        time.sleep(2)
        samples = []
        for _ in range(5):
            samples.append(sip_rss_kib(sipd))
            time.sleep(0.2)
        figures["rss_after_fill_mb"] = round(max(samples) / 1024, 1)
        figures["hwm_after_fill_mb"] = round(
            sum(vm_hwm_kib(pid) for pid in sip_pids(sipd)) / 1024, 1)
        figures["processes"] = {
            " ".join(Path(f"/proc/{pid}/cmdline").read_text().split("\0")[1:4]):
            round(vm_rss_kib(pid) / 1024, 1) for pid in process_tree(sipd.process.pid)}
        print(f"RSS per process: {figures['processes']}")
        print(f"RSS with {extensions} live bindings (registered through sipp): "
              f"{figures['rss_after_fill_mb']} MB (peak VmHWM {figures['hwm_after_fill_mb']} MB)")
        if args.idle > 0:
            # UDP non-INVITE server transactions live 64*T1 = 32 s after their
            # final response (RFC 3261 §17.2.2 Timer J): after that, what is
            # left is what the bindings (and caches) cost, not the traffic.
            print(f"idle {args.idle:g} s (past Timer J) ...", flush=True)
            time.sleep(args.idle)
            figures["rss_after_idle_mb"] = round(sip_rss_kib(sipd) / 1024, 1)
            print(f"RSS after {args.idle:g} s idle: {figures['rss_after_idle_mb']} MB")
        sipd.stop()

        starts, rss_restart = [], []
        for _ in range(args.starts):
            starts.append(sipd.start())
            time.sleep(0.5)
            rss_restart.append(sip_rss_kib(sipd))
            sipd.stop()
            time.sleep(0.3)
        rows, extensions = sipd.live_bindings()
        figures["startup_s"] = [round(s, 3) for s in starts]
        figures["startup_median_s"] = round(statistics.median(starts), 3)
        figures["startup_max_s"] = round(max(starts), 3)
        figures["rss_after_restart_mb"] = round(max(rss_restart) / 1024, 1)
        figures["live_bindings_after_restarts"] = extensions
        print(f"start-up with {extensions} live bindings, exec -> OPTIONS 200, "
              f"{args.starts} starts: median {figures['startup_median_s']:.3f} s, "
              f"max {figures['startup_max_s']:.3f} s "
              f"({', '.join(f'{s:.3f}' for s in starts)}); "
              f"RSS just after start {figures['rss_after_restart_mb']} MB")
        figures["load_end"] = loadavg()

        ok_rss = figures["rss_after_fill_mb"] < RSS_TARGET_MB
        ok_start = figures["startup_max_s"] < STARTUP_TARGET_S
        ok_fill = run.failed == 0 and figures["live_bindings"] == args.bindings
        print()
        print(f"{'figure':44} {'value':>10} {'target':>10}")
        print(f"{'RSS with ' + str(args.bindings) + ' live bindings':44} "
              f"{figures['rss_after_fill_mb']:>7.1f} MB {'< 150 MB':>10}  "
              f"{'ok' if ok_rss else 'OVER'}")
        print(f"{'start-up to serving (max of ' + str(args.starts) + ')':44} "
              f"{figures['startup_max_s']:>8.3f} s {'< 2 s':>10}  "
              f"{'ok' if ok_start else 'OVER'}")
        print(f"{'live bindings after the sipp passes':44} {figures['live_bindings']:>10} "
              f"{args.bindings:>10}  "
              + ("ok" if ok_fill else "MISSING" if figures["live_bindings"] != args.bindings
                 else f"{run.failed} registrations failed in the last pass"))
        print(f"load at the end: {figures['load_end']}")
        if args.json:
            args.json.write_text(json.dumps({"machine": info, "figures": figures}, indent=2))
        return 0 if (ok_rss and ok_start and ok_fill) else 1
    except RuntimeError as error:
        print(f"memory benchmark: {error}", file=sys.stderr)
        return 1
    finally:
        if sipd is not None:
            sipd.stop()
        if args.keep:
            print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
