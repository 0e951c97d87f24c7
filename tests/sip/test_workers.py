"""Registration workers (sipd/workers.py): REGISTERs spread over processes by the kernel.

The steering program runs in the real kernel here; the daemon tests start a
real sipd with PBX_SIP_WORKERS=2 and send from loopback addresses (127.0.0.x,
all local) chosen so that the kernel's choice of process is known in advance:
index (address as a number) % 3, where 0 is the main process.
"""

import hashlib
import os
import re
import signal
import socket
import time
import uuid

import pytest

from sipd.workers import attach_steering
from tests.support import LOOPBACK, Sipd, database_with, free_port, inject_row, run_sipp

PASSWORD = "correct-horse-9"
REALM = "pbx.test"


def index_of(address: str, processes: int = 3) -> int:
    return int.from_bytes(socket.inet_aton(address), "big") % processes


def address_for(index: int, processes: int = 3, skip: int = 0) -> str:
    """A loopback address whose REGISTERs the kernel steers to `index`."""
    candidates = [f"127.0.0.{n}" for n in range(10, 250) if index_of(f"127.0.0.{n}") == index]
    return candidates[skip]


def row(number, password=PASSWORD):
    return inject_row(number, password)


@pytest.fixture
def db_path(tmp_path):
    return database_with(tmp_path / "pbx.db", ["1001"], PASSWORD, REALM)


def worker_pids(parent: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                worker = b"--worker" in cmdline.read().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and worker:
            pids.append(int(entry))
    return sorted(pids)


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    return predicate()


def process_that_registered(log: str, address: str) -> str:
    """The log name ("sipd", "sipd/1"...) on the line that registered from an address."""
    escaped = re.escape(address)
    match = re.search(rf" (sipd(?:/\d+)?) Extension 1001 registered from {escaped}:", log)
    assert match, f"no registration from {address} in the log:\n{log}"
    return match.group(1)


def test_the_kernel_steers_registers_by_source_and_the_rest_to_the_main_socket():
    port = free_port()
    group = []
    for _ in range(3):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((LOOPBACK, port))
        group.append(sock)
    attach_steering(group[0], 3)
    senders = []
    try:
        for n in range(10, 22):
            sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sender.bind((f"127.0.0.{n}", 0))
            senders.append(sender)
            for method in (b"REGISTER", b"INVITE", b"OPTIONS"):
                sender.sendto(method + b" sip:x SIP/2.0 %d" % n, (LOOPBACK, port))
        senders[0].sendto(b"RE", (LOOPBACK, port))  # shorter than "REGI": the main socket
        received = {}
        for index, sock in enumerate(group):
            sock.settimeout(0.2)
            try:
                while True:
                    data, (address, _) = sock.recvfrom(100)
                    received[data] = (index, address)
            except TimeoutError:
                pass
        assert len(received) == 37
        assert received[b"RE"][0] == 0
        for data, (index, address) in received.items():
            if data.startswith(b"REGISTER"):
                assert index == index_of(address), (data, index)
            else:
                assert index == 0, data
        assert {i for d, (i, _) in received.items() if d.startswith(b"REGISTER")} == {0, 1, 2}
    finally:
        for sock in group + senders:
            sock.close()


def test_registrations_spread_over_the_workers(db_path):
    with Sipd(db_path, PBX_SIP_WORKERS="2") as daemon:
        assert len(worker_pids(daemon.process.pid)) == 2
        addresses = [address_for(index) for index in range(3)]
        for address in addresses:
            result = run_sipp("register_auth.xml", daemon.address, inject=[row("1001")],
                              local_ip=address)
            assert result.returncode == 0, result.explain()
        log = wait_for(lambda: daemon.log() if daemon.log().count("registered from") >= 3 else "")
        names = [process_that_registered(log, address) for address in addresses]
        # Index 0 is the main process; the two workers joined the group in either order.
        assert names[0] == "sipd"
        assert sorted(names[1:]) == ["sipd/1", "sipd/2"]


def _register(sock, target, nonce=None, challenge=None, cseq=1):
    """A REGISTER from `sock` (a phone on a fixed port), answering `challenge` if given.
    The digest (RFC 7616 §3.4.1, MD5, qop=auth) is computed here, not by sipd's code."""
    host, local = sock.getsockname()
    uri = f"sip:{target[0]}:{target[1]}"
    lines = [
        f"REGISTER {uri} SIP/2.0",
        f"Via: SIP/2.0/UDP {host}:{local};branch=z9hG4bK{uuid.uuid4().hex};rport",
        "Max-Forwards: 70",
        f"From: <sip:1001@{LOOPBACK}>;tag=w{cseq}",
        f"To: <sip:1001@{LOOPBACK}>",
        "Call-ID: workers-test",
        f"CSeq: {cseq} REGISTER",
        f"Contact: <sip:1001@{host}:{local}>",
        "Expires: 300",
    ]
    if challenge:
        def md5(text):
            return hashlib.md5(text.encode()).hexdigest()

        ha1 = md5(f"1001:{REALM}:{PASSWORD}")
        response = md5(f"{ha1}:{challenge}:00000001:c0ffee:auth:{md5('REGISTER:' + uri)}")
        lines.append(
            f'Authorization: Digest username="1001", realm="{REALM}", nonce="{challenge}", '
            f'uri="{uri}", response="{response}", algorithm=MD5, cnonce="c0ffee", nc=00000001, '
            "qop=auth"
        )
    sock.sendto(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode(), target)
    reply = sock.recvfrom(65535)[0].decode()
    nonce = re.search(r'nonce="([^"]+)"', reply)
    return reply.split("\r\n", 1)[0], reply, nonce.group(1) if nonce else None


def test_a_nonce_from_another_process_is_stale_there(db_path):
    with Sipd(db_path, PBX_SIP_WORKERS="2") as daemon:
        target = (LOOPBACK, daemon.port)
        first = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        second = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            first.bind((address_for(1), 0))
            second.bind((address_for(2), 0))
            for sock in (first, second):
                sock.settimeout(3)
            status, _, nonce = _register(first, target)
            assert status == "SIP/2.0 401 Unauthorized"
            # The same credentials from an address steered to another process: that
            # process keeps no nonce count for it, so it asks again (stale=true,
            # RFC 7616 §3.3) instead of accepting what could be a replay.
            status, reply, fresh = _register(second, target, challenge=nonce, cseq=2)
            assert status == "SIP/2.0 401 Unauthorized", reply
            assert "stale=true" in reply and fresh != nonce
            status, reply, _ = _register(second, target, challenge=fresh, cseq=3)
            assert status == "SIP/2.0 200 OK", reply
            # At the process that issued it, the first nonce is good.
            status, reply, _ = _register(first, target, challenge=nonce, cseq=4)
            assert status == "SIP/2.0 200 OK", reply
        finally:
            first.close()
            second.close()


def test_a_killed_worker_is_replaced_and_workers_die_with_sipd(db_path):
    daemon = Sipd(db_path, PBX_SIP_WORKERS="2").start()
    try:
        before = worker_pids(daemon.process.pid)
        assert len(before) == 2
        os.kill(before[0], signal.SIGKILL)
        after = wait_for(lambda: (p := worker_pids(daemon.process.pid)) and len(p) == 2
                         and before[0] not in p and p)
        assert after and before[1] in after, after
        assert "exited with -9; starting it again" in daemon.log()
        # Once the new worker's socket is in the group, every index answers REGISTER.
        assert wait_for(lambda: daemon.log().count("Registration worker") >= 3)
        for index in range(3):
            result = run_sipp("register_auth.xml", daemon.address, inject=[row("1001")],
                              local_ip=address_for(index, skip=1))
            assert result.returncode == 0, result.explain()
        daemon.kill9()
        assert wait_for(lambda: not any(os.path.exists(f"/proc/{p}") for p in after), 5)
    finally:
        daemon.stop()
