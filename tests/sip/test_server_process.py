"""tests/support.py ServerProcess: no process a test server started outlives it. The
server here is a few lines of Python that answer OPTIONS and leave a child behind
when they exit (as a sipd whose relay hung would): `terminate`, or the sweep after a
kill9, kills that child with its group."""

import os
import signal
import sys
import textwrap
from pathlib import Path

from tests.sip import callkit as ck
from tests.support import ServerProcess, free_port, sweep_orphans

SERVER = textwrap.dedent("""
    import os, signal, socket, subprocess, sys
    child = subprocess.Popen(["sleep", "600"])  # its group's, never told to stop
    open(sys.argv[2], "w").write(str(child.pid))
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))  # exits, leaving the child
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", int(sys.argv[1])))
    while True:
        data, address = sock.recvfrom(65535)
        head = dict(line.split(": ", 1) for line in data.decode().split("\\r\\n")[1:] if ": " in line)
        reply = "SIP/2.0 200 OK\\r\\n" + "".join(
            f"{name}: {head[name]}\\r\\n" for name in ("Via", "From", "To", "Call-ID", "CSeq"))
        sock.sendto((reply + "Content-Length: 0\\r\\n\\r\\n").encode(), address)
""")


class Leaver(ServerProcess):
    process_name = "leaver"

    def __init__(self, tmp_path: Path):
        self.port = free_port()
        self.log_path = tmp_path / "leaver.log"
        self.pid_file = tmp_path / "child.pid"
        self.spawn([sys.executable, "-c", SERVER, str(self.port), str(self.pid_file)])

    def child(self) -> int:
        return int(self.pid_file.read_text())


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def gone(pid: int, timeout: float = 5) -> bool:
    return ck.wait_for(lambda: not alive(pid), timeout=timeout, interval=0.05)


def test_terminate_kills_what_the_server_left_behind(tmp_path):
    server = Leaver(tmp_path)
    child = server.child()
    assert os.getpgid(child) == server.process.pid  # in the server's own group
    assert os.getpgid(server.process.pid) != os.getpgid(0)  # not in pytest's
    server.terminate()
    assert server.process.returncode == 0  # the leader had its SIGTERM, and exited
    assert gone(child), f"{child} outlived its server"


def test_after_a_kill9_the_sweep_kills_what_is_left(tmp_path):
    from tests.support import _orphaned

    server = Leaver(tmp_path)
    child = server.child()
    server.process.send_signal(signal.SIGKILL)
    server.process.wait()
    _orphaned.add(server.process.pid)  # what Sipd.kill9 records
    assert alive(child)  # nothing killed it yet: a kill9 test sees the helpers as they are
    sweep_orphans()
    assert gone(child)
    server.terminate()
