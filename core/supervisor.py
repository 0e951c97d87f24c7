"""`pbxctl run`: sipd and the panel in the foreground, each started again if it dies.

What pm2 did for the setup this PBX replaced, and systemd (Restart=always) does
on a server (ansible/): a child that exits while the PBX is not stopping is
started again, after 1 s, doubling up to 30 s while it keeps dying, back to
1 s once it has stayed up a minute; it is never given up on. Each exit is one
line naming the child, its exit status or signal and how long it ran, on
stderr and in that child's log file (`pbxctl logs sipd`). SIGINT (Ctrl-C) and
SIGTERM stop both children and nothing is started again.

The decisions (`Backoff`, `Schedule`, `exit_line`) are pure and take the time
as an argument; `run` is the thin loop that starts, polls and stops processes.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

FIRST_DELAY = 1.0
MAX_DELAY = 30.0
# A child that ran this long was healthy: its next crash waits FIRST_DELAY again.
STABLE_AFTER = 60.0
POLL_INTERVAL = 0.2
# sipd stops its workers, media relay and calls; the panel finishes its requests (5 s).
STOP_TIMEOUT = 10.0


# -- decisions (pure) ---------------------------------------------------------------


@dataclass
class Backoff:
    """Seconds to wait before starting a child that died after `uptime` seconds."""

    first: float = FIRST_DELAY
    maximum: float = MAX_DELAY
    stable_after: float = STABLE_AFTER
    last: float = 0.0  # the last delay given; 0 = none since the child was healthy

    def delay(self, uptime: float) -> float:
        if not self.last or uptime >= self.stable_after:
            self.last = self.first
        else:
            self.last = min(self.maximum, self.last * 2)
        return self.last


@dataclass
class _Child:
    backoff: Backoff = field(default_factory=Backoff)
    started_at: float | None = None  # running since; None while waiting to start
    due: float | None = None  # when to start it again


@dataclass(frozen=True)
class Restart:
    """What happened to a child and what follows: start it again in `delay` s."""

    name: str
    delay: float
    uptime: float


class Schedule:
    """Which children run and when each one is to be started again."""

    def __init__(self, names, backoff=Backoff):
        self._children = {name: _Child(backoff()) for name in names}

    def started(self, name: str, now: float) -> None:
        child = self._children[name]
        child.started_at, child.due = now, None

    def exited(self, name: str, now: float) -> Restart:
        child = self._children[name]
        uptime = now - (child.started_at if child.started_at is not None else now)
        delay = child.backoff.delay(uptime)
        child.started_at, child.due = None, now + delay
        return Restart(name, delay, uptime)

    def due(self, now: float) -> list[str]:
        """The children whose time to start again has come."""
        return [name for name, child in self._children.items()
                if child.due is not None and child.due <= now]

    def wait(self, now: float, longest: float) -> float:
        """How long the loop may sleep: `longest`, or less if a start falls due sooner."""
        dues = [child.due for child in self._children.values() if child.due is not None]
        return max(0.0, min([longest, *(due - now for due in dues)]))


def describe_exit(returncode: int) -> str:
    """Popen's returncode in words: negative is the signal that ended the process."""
    if returncode < 0:
        number = -returncode
        try:
            name = signal.Signals(number).name
        except ValueError:
            return f"was killed by signal {number}"
        return f"was killed by signal {number} ({name})"
    return f"exited with status {returncode}"


def _seconds(value: float) -> str:
    if value < 10:
        return f"{value:.1f} s".replace(".0 s", " s")
    if value < 120:
        return f"{value:.0f} s"
    if value < 3600:
        return f"{int(value // 60)} min {int(value % 60)} s"
    return f"{int(value // 3600)} h {int(value % 3600 // 60)} min"


def exit_line(restart: Restart, pid: int, returncode: int) -> str:
    return (
        f"{restart.name} (pid {pid}) {describe_exit(returncode)} after "
        f"{_seconds(restart.uptime)}; starting it again in {_seconds(restart.delay)}"
    )


# -- processes (thin) ---------------------------------------------------------------


@dataclass
class Spec:
    """A child: its name, command line, environment and log file."""

    name: str
    command: list[str]
    env: dict[str, str]
    log_file: str | None = None


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _start(spec: Spec, cwd: str) -> subprocess.Popen:
    try:
        prctl = ctypes.CDLL(None).prctl  # looked up here, not in the forked child
    except AttributeError:  # not Linux: children may outlive a killed supervisor
        prctl = None

    def die_with_parent() -> None:
        # In the child, before exec: SIGTERM when the supervisor goes, even by
        # SIGKILL, so no sipd or panel is left holding the ports (prctl(2)).
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)

    # No new process group: Ctrl-C in the terminal reaches the children too, as
    # before, and each stops itself cleanly; the supervisor then starts nothing.
    return subprocess.Popen(spec.command, env=spec.env, cwd=cwd,
                            preexec_fn=die_with_parent if prctl else None)


def report(line: str, spec: Spec | None = None) -> None:
    """One line on stderr and, for a child, in its log file as well."""
    now = time.time()
    # The stamp of core/logs.py's lines, which these sit among.
    clock = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
    stamped = f"{clock},{int(now % 1 * 1000):03d} run {line}"
    print(stamped, file=sys.stderr, flush=True)
    if spec is not None and spec.log_file:
        try:
            with open(spec.log_file, "a") as log:
                log.write(stamped + "\n")
        except OSError as error:
            print(f"pbxctl run: cannot write {spec.log_file}: {error}", file=sys.stderr)


def run(specs: list[Spec], cwd: str, banner: str = "") -> int:
    """Run the children until SIGINT or SIGTERM, starting again those that die."""
    clock = time.monotonic
    stopping: list[int] = []

    def stop(number, _frame):
        # Only noted: printing here could re-enter a print the signal interrupted.
        stopping.append(number)

    previous = {number: signal.signal(number, stop) for number in (signal.SIGINT, signal.SIGTERM)}
    by_name = {spec.name: spec for spec in specs}
    schedule = Schedule(by_name)
    processes: dict[str, subprocess.Popen] = {}
    try:
        for spec in specs:
            processes[spec.name] = _start(spec, cwd)
            schedule.started(spec.name, clock())
        if banner:
            print(banner, flush=True)
        while not stopping:
            _reap(processes, schedule, by_name, clock(), stopping)
            for name in schedule.due(clock()):
                if stopping:
                    break
                processes[name] = _start(by_name[name], cwd)
                schedule.started(name, clock())
                report(f"{name} started again (pid {processes[name].pid})", by_name[name])
            time.sleep(schedule.wait(clock(), POLL_INTERVAL))
        names = " and ".join(name for name in by_name if name in processes)
        report(f"{signal.Signals(stopping[0]).name} received; stopping {names}".rstrip())
    finally:
        _stop_all(processes)
        for number, handler in previous.items():
            signal.signal(number, handler)
    return 0


def _reap(processes, schedule: Schedule, by_name, now: float, stopping) -> None:
    for name, process in list(processes.items()):
        code = process.poll()
        if code is None or stopping:
            continue  # while stopping, an exit is the stop (Ctrl-C reached it too)
        del processes[name]
        restart = schedule.exited(name, now)
        report(exit_line(restart, process.pid, code), by_name[name])


def _stop_all(processes: dict[str, subprocess.Popen]) -> None:
    for process in processes.values():
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT
    for name, process in processes.items():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            report(f"{name} (pid {process.pid}) did not stop within {STOP_TIMEOUT:.0f} s; "
                   "killing it")
            process.kill()
            process.wait()

