"""`./pbxctl run` (what `make run` starts) as a real process tree: kill -9 sipd or the
panel and it comes back; SIGINT, Ctrl-C or SIGTERM stops everything.

Free loopback ports, a temporary database and run directory, one registration
worker as on a two-core machine. The PBX runs in a session of its own, so its
whole process tree (pbxctl, sipd, its worker and media relay, the panel) is one
process group the test can look at, signal as a terminal's Ctrl-C does, and
clean up if the test fails.
"""

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.support import (
    LOOPBACK,
    ROOT,
    base_env,
    database_with,
    free_port,
    inject_row,
    options_ping,
    run_sipp,
)

PASSWORD = "correct-horse-9"
TIMEOUT = 30  # generous: the machine is shared; every wait ends as soon as its event comes


def wait_for(predicate, timeout=TIMEOUT, what="it"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def _stat(pid: str) -> tuple[str, int, int] | None:
    """(state, parent pid, process group) of a process, None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1]), int(fields[2])


def _cmdline(pid) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


class PbxRun:
    """`./pbxctl run` in its own session, on its own ports, database and run directory."""

    def __init__(self, tmp_path):
        self.db_path = database_with(tmp_path / "pbx.db", ["1001"], PASSWORD)
        self.sip_port = free_port()
        self.panel_port = free_port(socket.SOCK_STREAM)
        self.run_dir = tmp_path / "run"
        self.env = base_env(
            self.db_path,
            PBX_SIP_LISTEN=f"{LOOPBACK}:{self.sip_port}",
            PBX_PANEL_LISTEN=f"{LOOPBACK}:{self.panel_port}",
            PBX_RUN_DIR=str(self.run_dir),
            PBX_SIP_WORKERS="1",
            PBX_PYTHON=sys.executable,  # pbxctl's interpreter (a checkout's .venv otherwise)
        )
        self.out_path = tmp_path / "pbxctl-run.out"
        self.process = None

    def start(self) -> "PbxRun":
        with open(self.out_path, "wb") as out:
            self.process = subprocess.Popen(
                [str(ROOT / "pbxctl"), "run"],
                env=self.env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pgid = self.process.pid
        self.wait_serving()
        return self

    # -- what is running --------------------------------------------------------------

    def children(self) -> dict[str, int]:
        """pbxctl's children by name: {"sipd": pid, "panel": pid}."""
        found = {}
        for pid in filter(str.isdigit, os.listdir("/proc")):
            stat = _stat(pid)
            if stat is None or stat[1] != self.process.pid or stat[0] == "Z":
                continue
            args = _cmdline(pid)[1:]
            if args == ["-m", "sipd"]:
                found["sipd"] = int(pid)
            elif args == ["-m", "pbxcli", "panel"]:
                found["panel"] = int(pid)
        return found

    def members(self) -> list[str]:
        """Every live process of the PBX's process group, as 'pid command'."""
        return [
            f"{pid} {' '.join(_cmdline(pid))}"
            for pid in filter(str.isdigit, os.listdir("/proc"))
            if (stat := _stat(pid)) is not None and stat[2] == self.pgid and stat[0] != "Z"
        ]

    def panel_answers(self) -> bool:
        connection = http.client.HTTPConnection(LOOPBACK, self.panel_port, timeout=1)
        try:
            connection.request("GET", "/login")
            return connection.getresponse().status == 200
        except OSError:
            return False
        finally:
            connection.close()

    def wait_serving(self, replaced: dict[str, int] | None = None) -> dict[str, int]:
        """Wait until sipd answers OPTIONS and the panel a page, from processes
        other than those in `replaced`; their pids."""

        def serving():
            assert self.process.poll() is None, f"pbxctl run exited:\n{self.output()}"
            now = self.children()
            if {"sipd", "panel"} - set(now):
                return None
            if replaced and any(now[name] == pid for name, pid in replaced.items()):
                return None
            if options_ping(self.sip_port, timeout=0.2) and self.panel_answers():
                return now
            return None

        return wait_for(serving, what="sipd and the panel serving")

    def output(self) -> str:
        return self.out_path.read_text(errors="replace")

    def log(self, name: str) -> str:
        return (self.run_dir / "log" / f"{name}.log").read_text(errors="replace")

    def register(self, local_port: int):
        result = run_sipp(
            "register_auth.xml",
            f"{LOOPBACK}:{self.sip_port}",
            inject=[inject_row("1001", PASSWORD)],
            local_port=local_port,
        )
        assert result.returncode == 0, result.explain()
        assert "200 OK" in result.messages()

    def stopped(self, how) -> int:
        """Send the stop (a callable), wait for pbxctl and for its whole group to go."""
        how()
        code = self.process.wait(timeout=TIMEOUT)
        wait_for(lambda: not self.members(), what="every process of the PBX gone")
        return code

    def kill_all(self) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=TIMEOUT)


@pytest.fixture
def pbx(tmp_path):
    run = PbxRun(tmp_path)
    try:
        yield run.start()
    finally:
        run.kill_all()  # whatever the test left: no process outlives it


def killed_line(name: str, pid: int, delay: int) -> str:
    return (rf"\d\d:\d\d:\d\d,\d{{3}} run {name} \(pid {pid}\) was killed by signal 9 \(SIGKILL\)"
            rf" after [\d.]+ s; starting it again in {delay} s\n")


def test_kill9_of_sipd_and_the_panel_under_pbxctl_run(pbx):
    phone_port = free_port()
    pbx.register(phone_port)
    first = pbx.children()

    os.kill(first["sipd"], signal.SIGKILL)
    second = pbx.wait_serving(replaced={"sipd": first["sipd"]})
    assert second["panel"] == first["panel"]  # the panel was left alone
    line = killed_line("sipd", first["sipd"], 1)
    assert re.search(line, pbx.output()), pbx.output()
    assert re.search(line, pbx.log("sipd"))  # where `pbxctl logs sipd` shows it
    assert f"run sipd started again (pid {second['sipd']})" in pbx.output()
    # The phone's binding outlived the crash, and its next REGISTER is answered
    # (by the new sipd's registration worker: REGISTERs from 127.0.0.1 go there).
    restarted = f"started again (pid {second['sipd']})"
    wait_for(lambda: re.search(r"sipd ready on .*, 1 live bindings",
                               pbx.log("sipd").split(restarted, 1)[1]),
             what="the new sipd reporting the binding")
    pbx.register(phone_port)

    # Killed again straight away, it waits longer before it comes back.
    os.kill(second["sipd"], signal.SIGKILL)
    third = pbx.wait_serving(replaced={"sipd": second["sipd"]})
    assert re.search(killed_line("sipd", second["sipd"], 2), pbx.output()), pbx.output()

    os.kill(third["panel"], signal.SIGKILL)
    fourth = pbx.wait_serving(replaced={"panel": third["panel"]})
    assert fourth["sipd"] == third["sipd"]
    assert re.search(killed_line("panel", third["panel"], 1), pbx.log("panel")), pbx.log("panel")

    # SIGINT to pbxctl alone: it stops both, and nothing of the PBX is left.
    assert pbx.stopped(lambda: pbx.process.send_signal(signal.SIGINT)) == 0
    output = pbx.output()
    assert "run SIGINT received; stopping sipd and panel" in output
    assert "starting it again" not in output.split("SIGINT received")[1]
    assert "sipd stopping" in pbx.log("sipd") and "Panel stopping" in pbx.log("panel")


@pytest.mark.parametrize(
    "signal_name, to_group",
    [("SIGINT", True), ("SIGTERM", False)],
    ids=["ctrl-c-in-the-terminal", "sigterm-to-pbxctl"],
)
def test_stopping_pbxctl_run_starts_nothing_again_and_leaves_nothing(pbx, signal_name, to_group):
    number = getattr(signal, signal_name)

    def stop():
        if to_group:  # a terminal's Ctrl-C: the whole foreground group gets SIGINT at once
            os.killpg(pbx.pgid, number)
        else:
            pbx.process.send_signal(number)

    assert pbx.stopped(stop) == 0
    output = pbx.output()
    assert f"run {signal_name} received; stopping" in output
    assert "starting it again" not in output and "started again" not in output, output
    assert "sipd stopping" in pbx.log("sipd") and "Panel stopping" in pbx.log("panel")


def test_kill9_of_pbxctl_run_itself_leaves_no_process(pbx):
    # The children asked Linux for SIGTERM when their parent goes (PR_SET_PDEATHSIG):
    # sipd and the panel stop cleanly rather than hold the ports as orphans.
    assert pbx.stopped(lambda: pbx.process.send_signal(signal.SIGKILL)) == -signal.SIGKILL
    assert "sipd stopping" in pbx.log("sipd") and "Panel stopping" in pbx.log("panel")
