"""A running sipd under hostile traffic: then the same process must still register phones.

Tens of thousands of malformed datagrams from 200 loopback addresses (under
each one's rate limit, so that they all reach the parser), and abusive TCP
connections: garbage, half messages held open, absurd Content-Length, bodies
that never come, connections that never speak, resets, one address over its
connection limit. Meanwhile and afterwards a phone on 127.0.0.3 registers over
UDP and TCP with sipp; sipd's memory and descriptors must stay bounded.
"""

import random
import select
import socket
import sqlite3
import struct
import time
from pathlib import Path

import pytest

from core import accounts
from core.config import load_settings
from core.database import connect
from tests.fuzz.corpus import SEEDS, TOKENS
from tests.support import Sipd, options_ping, run_sipp

PASSWORD = "correct-horse-9"
PHONE = "127.0.0.3"
DATAGRAMS = 30_000
UDP_SOURCES = [f"127.0.1.{n}" for n in range(1, 201)]
READ_TIMEOUT = 5


def mutate(rng: random.Random) -> bytes:
    choice = rng.random()
    if choice < 0.1:
        return rng.randbytes(rng.randint(0, 1500))
    if choice < 0.12:
        return rng.choice([b"", b"\r\n\r\n", b"\r\n", b"\x00" * 8])
    if choice < 0.13:
        return b"OPTIONS sip:x SIP/2.0\r\nX: " + b"a" * 64000 + b"\r\n\r\n"  # over 64 KB-ish
    data = bytearray(rng.choice(SEEDS))
    for _ in range(rng.randint(1, 10)):
        at = rng.randint(0, len(data))
        kind = rng.randint(0, 5)
        if kind == 0:
            data[at:at] = rng.choice(TOKENS)
        elif kind == 1:
            data[at:at] = rng.randbytes(rng.randint(1, 12))
        elif kind == 2:
            del data[at : at + rng.randint(1, 60)]
        elif kind == 3 and at < len(data):
            data[at] = rng.randrange(256)
        elif kind == 4:
            data[at:at] = data[at : at + rng.randint(1, 50)] * rng.randint(1, 20)
        else:
            del data[at:]
    return bytes(data[:65000])


def descriptors(pid: int) -> list[str]:
    found = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            found.append(str(fd.readlink()))
        except OSError:
            pass
    return sorted(found)


def status(pid: int) -> dict[str, int]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0])  # kB
    links = descriptors(pid)
    values["fds"] = len(links)
    values["sockets"] = sum(link.startswith("socket:") for link in links)
    return values


def row(number="1001"):
    return [number, PASSWORD, f"[authentication username={number} password={PASSWORD}]"]


def phone_registers(daemon, transport="u1") -> None:
    result = run_sipp(
        "register_auth.xml",
        daemon.address,
        inject=[row()],
        local_ip=PHONE,
        transport=transport,
        timeout=20,
    )
    assert result.returncode == 0, result.explain()


def connect_from(host: str, port: int) -> socket.socket:
    sock = socket.socket()
    sock.bind((host, 0))
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    return sock


def closed_by_peer(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def count_closed(socks: list[socket.socket], after: float) -> int:
    """How many of `socks` the peer has closed, `after` seconds from now."""
    time.sleep(after)
    poller = select.poll()
    for sock in socks:
        poller.register(sock, select.POLLIN)
    ready = {fd for fd, _ in poller.poll(0)}
    closed = 0
    for sock in socks:
        if sock.fileno() not in ready:
            continue
        try:
            closed += sock.recv(65536, socket.MSG_PEEK) == b""
        except ConnectionResetError:
            closed += 1
    return closed


@pytest.fixture
def daemon(tmp_path):
    path = tmp_path / "pbx.db"
    database = connect(load_settings({"PBX_DB": str(path), "PBX_REALM": "pbx.test"}))
    accounts.create_extension("1001", "pbx.test", password=PASSWORD)
    database.close()
    sipd = Sipd(
        path,
        PBX_TCP_READ_TIMEOUT=str(READ_TIMEOUT),
        PBX_LOG_LEVEL="info",
        PBX_RUN_DIR=str(tmp_path),
    )
    with sipd:
        sipd.db_path_ = path
        yield sipd


def test_hostile_traffic_then_the_same_process_still_registers(daemon):
    pid = daemon.process.pid
    phone_registers(daemon)
    before = status(pid)
    rng = random.Random(4475)

    # -- datagrams ------------------------------------------------------------------
    senders = []
    for host in UDP_SOURCES:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((host, 0))
        sock.setblocking(False)
        senders.append(sock)
    try:
        for index in range(DATAGRAMS):
            try:
                senders[index % len(senders)].sendto(mutate(rng), ("127.0.0.1", daemon.port))
            except OSError:
                pass  # e.g. EMSGSIZE for the largest
            if index % 1000 == 999:
                # Let sipd catch up, so the kernel does not drop what it should parse.
                assert any(options_ping(daemon.port, timeout=2) for _ in range(5)), index
    finally:
        for sock in senders:
            sock.close()
    assert daemon.process.poll() is None
    phone_registers(daemon)
    after_udp = status(pid)

    # -- TCP --------------------------------------------------------------------------
    port = daemon.port
    for index in range(300):  # garbage, then our side closes
        with connect_from(f"127.0.2.{1 + index % 50}", port) as sock:
            try:
                sock.sendall(rng.randbytes(rng.randint(1, 4000)))
            except OSError:
                pass
    for index in range(100):  # connect and reset at once
        sock = connect_from(f"127.0.2.{51 + index % 10}", port)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    absurd = []
    for index in range(100):  # absurd Content-Length: closed at once
        sock = connect_from(f"127.0.2.{61 + index % 10}", port)
        sock.sendall(
            b"REGISTER sip:pbx.test SIP/2.0\r\nContent-Length: 99999999999\r\n\r\nabc"
            if index % 2
            else b"INVITE sip:1001@pbx.test SIP/2.0\r\nl: 9999999\r\n\r\n"
        )
        absurd.append(sock)
    held = []
    for index in range(200):  # half a header, held open
        sock = connect_from(f"127.0.2.{71 + index % 4}", port)
        sock.sendall(b"REGISTER sip:pbx.test SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.2.9;bran")
        held.append(sock)
    for index in range(100):  # a body promised and never sent
        sock = connect_from(f"127.0.2.{75 + index % 2}", port)
        sock.sendall(
            b"MESSAGE sip:1001@pbx.test SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.2.9;branch=z9hG4bKx\r\n"
            b"From: <sip:a@b>;tag=1\r\nTo: <sip:1001@pbx.test>\r\nCall-ID: x\r\n"
            b"CSeq: 1 MESSAGE\r\nContent-Length: 60000\r\n\r\nhello"
        )
        held.append(sock)
    for index in range(1000):  # connections that never say anything
        held.append(connect_from(f"127.0.3.{1 + index % 20}", port))
    over = [connect_from("127.0.4.1", port) for _ in range(120)]  # over the per-source limit
    refused = count_closed(over, after=1.0)
    try:
        # While all that is held open, the phone still registers, over TCP too.
        phone_registers(daemon)
        phone_registers(daemon, transport="t1")
        for sock in absurd:
            assert closed_by_peer(sock, 2)
        assert refused == 20, refused
        during = status(pid)
        # Slow senders and silent connections are cut off after the read timeout.
        time.sleep(READ_TIMEOUT)
        still_open = [sock for sock in held if not closed_by_peer(sock, READ_TIMEOUT + 2)]
        assert not still_open, len(still_open)
    finally:
        for sock in absurd + held + over:
            sock.close()

    # -- afterwards ------------------------------------------------------------------
    assert daemon.process.poll() is None, daemon.log()[-3000:]
    phone_registers(daemon)
    phone_registers(daemon, transport="t1")
    time.sleep(0.5)
    after = status(pid)
    log = daemon.log()
    assert log.count("[SIP] Dropped malformed message") + log.count("Bad request") > 10_000
    assert f"no complete message in {READ_TIMEOUT} s" in log
    assert "more than 100 connections from one address" in log
    crash = log.find("Traceback")
    assert crash < 0, log[max(0, crash - 300) : crash + 3000]
    with sqlite3.connect(daemon.db_path_) as conn:
        # Only the phone registered: nothing in the hostile traffic made a binding.
        assert conn.execute("SELECT DISTINCT source_host FROM binding").fetchall() == [(PHONE,)]
    # Bounded: no growth with the traffic beyond a few buffers, and every
    # descriptor of the abusive connections given back.
    print(f"sipd before {before}, after UDP {after_udp}, during TCP {during}, after {after}")
    assert after["VmRSS"] - before["VmRSS"] < 40_000, (before, after)
    assert after["VmHWM"] < before["VmRSS"] + 80_000, (before, after)
    assert after["sockets"] <= before["sockets"] + 2, (before, after, descriptors(pid))
    # (Other descriptors vary a little: SQLite connections of finished greenlets
    # wait for the garbage collector.)
    assert after["fds"] <= before["fds"] + 30, (before, after, descriptors(pid))
