"""The real relay process (`python -m sipd.media`) on 127.0.0.1, driven through the
API the B2BUA uses, with UDP sockets playing the phones.

Everything here talks to 127.0.0.1 only; every wait has a deadline.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from core.config import load_settings
from sipd.media import MediaError, PortsExhausted, Relay
from sipd.media.server import RelayServer
from sipd.sip.sdp import SessionDescription, rewrite

ROOT = Path(__file__).resolve().parent.parent.parent
LOOPBACK = "127.0.0.1"


def port_range(pairs: int) -> str:
    # A random even base keeps parallel runs (and other engineers' relays) apart;
    # a port another program holds is skipped by the relay anyway.
    low = random.randrange(20000, 30000 - 2 * pairs, 2)
    return f"{low}-{low + 2 * pairs - 1}"


def make_relay(tmp_path, pairs: int = 50) -> Relay:
    settings = load_settings({
        "PBX_SIP_LISTEN": f"{LOOPBACK}:5060",
        "PBX_RTP_PORTS": port_range(pairs),
        "PBX_RUN_DIR": str(tmp_path),
        "PBX_LOG_LEVEL": "info",
    })
    return Relay(settings)


@pytest.fixture
def relay(tmp_path):
    relay = make_relay(tmp_path).start()
    yield relay
    relay.stop()


class Phone:
    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.sock.settimeout(1.0)
        self.seq = 0

    @property
    def address(self) -> tuple[str, int]:
        return self.sock.getsockname()

    def rtp(self, payload_type: int = 0, payload: bytes = b"\xff" * 160) -> bytes:
        self.seq += 1
        return struct.pack("!BBHII", 0x80, payload_type, self.seq, self.seq * 160,
                           0x1234) + payload

    def send(self, port: int, data: bytes) -> None:
        self.sock.sendto(data, (LOOPBACK, port))

    def receive(self, timeout: float = 1.0) -> tuple[bytes, tuple] | None:
        self.sock.settimeout(timeout)
        try:
            return self.sock.recvfrom(2048)
        except TimeoutError:
            return None

    def close(self):
        self.sock.close()


def call(relay: Relay, phone_a: Phone, phone_b: Phone, call_id: str = "call-1"):
    session = relay.open_session(call_id)
    relay.set_remote(session, "A", *phone_a.address)
    relay.set_remote(session, "B", *phone_b.address)
    return session


def test_two_phones_talk_both_ways_and_telephone_events_pass(relay):
    a, b = Phone(), Phone()
    session = call(relay, a, b)
    port_a, port_b = session.leg("A").local_rtp_port, session.leg("B").local_rtp_port
    assert port_a % 2 == 0 and session.leg("A").local_rtcp_port == port_a + 1
    for _ in range(5):
        packet = a.rtp()
        a.send(port_a, packet)
        data, source = b.receive()
        # Byte for byte, and from the relay's leg B port (what B's SDP was told).
        assert data == packet and source == (LOOPBACK, port_b)
        reply = b.rtp(payload_type=8)
        b.send(port_b, reply)
        assert a.receive() == (reply, (LOOPBACK, port_a))
    # RFC 4733 telephone-event ("5", end bit, duration 800) is just RTP: untouched.
    event = a.rtp(payload_type=101, payload=bytes([5, 0x80 | 10, 0x03, 0x20]))
    a.send(port_a, event)
    assert b.receive()[0] == event
    # An RTCP receiver report (RFC 3550 §6.4.2) from B goes to A's RTCP port
    # (its RTP port + 1 here, nobody listening), not onto A's RTP port.
    report = struct.pack("!BBHI", 0x80, 201, 1, 0x1234)
    b.send(session.leg("B").local_rtcp_port, report)
    assert a.receive(timeout=0.2) is None
    stats = relay.stats(session)
    assert stats["legs"]["A"]["packets_in"] == 6 and stats["legs"]["B"]["packets_out"] == 6
    assert stats["legs"]["A"]["bytes_in"] == 5 * 172 + 16
    assert stats["legs"]["B"]["packets_in"] == 6  # 5 RTP + 1 RTCP
    assert stats["legs"]["A"]["packets_out"] == 6
    assert stats["legs"]["A"]["idle"] < 1.0


def test_rtcp_is_relayed_to_the_rtcp_ports(relay):
    a, b = Phone(), Phone()
    a_rtcp, b_rtcp = Phone(), Phone()
    session = relay.open_session("call-rtcp")
    relay.set_remote(session, "A", LOOPBACK, a.address[1], a_rtcp.address[1])
    relay.set_remote(session, "B", LOOPBACK, b.address[1], b_rtcp.address[1])
    report = struct.pack("!BBHI", 0x81, 201, 7, 0xABCD) + bytes(24)
    a_rtcp.send(session.leg("A").local_rtcp_port, report)
    assert b_rtcp.receive() == (report, (LOOPBACK, session.leg("B").local_rtcp_port))
    b_rtcp.send(session.leg("B").local_rtcp_port, report)
    assert a_rtcp.receive()[0] == report
    assert b.receive(timeout=0.2) is None  # nothing leaked onto the RTP port


def test_latching_to_a_source_other_than_the_sdp_says(relay):
    """A phone behind NAT: its SDP names one port, its packets come from another."""
    a_claimed, a_real, b = Phone(), Phone(), Phone()
    session = call(relay, a_claimed, b)  # SDP says a_claimed
    port_a, port_b = session.leg("A").local_rtp_port, session.leg("B").local_rtp_port
    # Before A has sent anything, B's audio goes to the SDP address.
    b.send(port_b, b.rtp())
    assert a_claimed.receive() is not None
    # A's packets arrive from elsewhere (its NAT): the leg latches to that source...
    a_real.send(port_a, a_real.rtp())
    assert b.receive() is not None
    # ...and B's audio now goes there, not to the SDP address.
    packet = b.rtp()
    b.send(port_b, packet)
    assert a_real.receive() == (packet, (LOOPBACK, port_a))
    assert a_claimed.receive(timeout=0.2) is None
    # A spoofer cannot take over the live stream.
    spoofer = Phone()
    spoofer.send(port_a, spoofer.rtp())
    assert b.receive(timeout=0.2) is None
    b.send(port_b, b.rtp())
    assert a_real.receive() is not None and spoofer.receive(timeout=0.2) is None
    legs = relay.stats(session)["legs"]
    assert legs["A"]["remote"] == list(a_claimed.address)
    assert legs["A"]["latched"] == list(a_real.address)
    assert legs["A"]["dropped_foreign"] == 1


def test_hold_with_sendonly_drops_one_direction_and_resume_restores_it(relay):
    a, b = Phone(), Phone()
    session = call(relay, a, b)
    port_a, port_b = session.leg("A").local_rtp_port, session.leg("B").local_rtp_port
    # A puts B on hold: A's SDP says sendonly, B answers recvonly (RFC 3264 §8.4).
    relay.set_direction(session, "A", "sendonly")
    relay.set_direction(session, "B", "recvonly")
    a.send(port_a, a.rtp())  # music on hold from A still reaches B
    assert b.receive() is not None
    b.send(port_b, b.rtp())  # B's audio is dropped
    assert a.receive(timeout=0.3) is None
    assert relay.stats(session)["legs"]["B"]["dropped_direction"] == 1
    assert relay.stats(session)["on_hold"]
    relay.set_direction(session, "A", "sendrecv")
    relay.set_direction(session, "B", "sendrecv")
    b.send(port_b, b.rtp())
    assert a.receive() is not None


def test_hold_from_sdp_bodies(relay):
    """The B2BUA's path: SDP in, apply_stream, rewrite out; the held side hears nothing."""
    a, b = Phone(), Phone()
    session = relay.open_session("call-sdp")
    offer = SessionDescription.parse(
        f"v=0\r\no=- 1 1 IN IP4 {LOOPBACK}\r\ns=-\r\nc=IN IP4 {LOOPBACK}\r\nt=0 0\r\n"
        f"m=audio {a.address[1]} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
        "a=sendonly\r\n".encode())
    relay.apply_stream(session, "A", offer.streams()[0])
    to_b = rewrite(offer, relay.address, {0: session.leg("B").local_rtp_port})
    assert to_b.streams()[0].port == session.leg("B").local_rtp_port
    assert to_b.streams()[0].host == relay.address == LOOPBACK
    answer = SessionDescription.parse(
        f"v=0\r\no=- 2 2 IN IP4 {LOOPBACK}\r\ns=-\r\nc=IN IP4 {LOOPBACK}\r\nt=0 0\r\n"
        f"m=audio {b.address[1]} RTP/AVP 0 101\r\na=recvonly\r\n".encode())
    relay.apply_stream(session, "B", answer.streams()[0])
    b.send(session.leg("B").local_rtp_port, b.rtp())
    assert a.receive(timeout=0.3) is None
    a.send(session.leg("A").local_rtp_port, a.rtp())
    assert b.receive() is not None


def _offer(port: int, direction: str = "sendrecv", host: str = LOOPBACK) -> SessionDescription:
    return SessionDescription.parse(
        f"v=0\r\no=- 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\na={direction}\r\n".encode())


def test_the_callers_offer_is_applied_with_the_open(relay):
    """open_session(call_id, stream): leg A set in the same round trip (the B2BUA's
    INVITE path), the reply counted: one request on the control socket, not two."""
    a = Phone()
    before = relay._next_request
    session = relay.open_session("call-open", _offer(a.address[1], "sendonly").streams()[0])
    assert relay._next_request == before + 1
    legs = relay.stats(session)["legs"]
    assert legs["A"]["remote"] == [LOOPBACK, a.address[1]]
    assert legs["A"]["direction"] == "sendonly"
    # An offer the relay refuses does not leave a session (and its ports) behind.
    free = relay.info()["ports_free"]
    with pytest.raises(MediaError, match="IPv4"):
        relay._call({"op": "open", "call_id": "bad",
                     "apply": {"remote": {"host": "not-an-address", "rtp": 4000, "rtcp": None},
                               "direction": "sendrecv"}})
    assert relay.info()["ports_free"] == free and relay.info()["sessions"] == 1


def test_apply_stream_is_not_waited_for_and_its_failure_is_logged(relay, caplog):
    """apply_stream sends without waiting: the relay answers only a failure, which
    the client logs when it next reads; a request after it sees it applied."""
    b = Phone()
    session = relay.open_session("call-nowait")
    relay.apply_stream(session, "B", _offer(b.address[1], "recvonly").streams()[0])
    assert not relay._waiting  # nothing waits for it
    legs = relay.stats(session)["legs"]
    assert legs["B"]["remote"] == [LOOPBACK, b.address[1]] and legs["B"]["direction"] == "recvonly"
    # A refused one (sent by hand: apply_stream itself only sends IPv4 addresses).
    relay._call({"op": "apply", "session": session.id, "leg": "B", "direction": "sendrecv",
                 "remote": {"host": "300.1.1.1", "rtp": 4000, "rtcp": None}}, wait=False)
    with caplog.at_level("WARNING", logger="sipd.media"):
        assert relay.stats(session)["legs"]["B"]["direction"] == "recvonly"
    assert any("refused a request" in r.getMessage() and "IPv4" in r.getMessage()
               for r in caplog.records)


def test_check_reports_each_session_once_both_legs_have_latched(relay):
    a, b = Phone(), Phone()
    session = call(relay, a, b, "call-latch")
    a.send(session.leg("A").local_rtp_port, a.rtp())
    assert b.receive() is not None
    assert relay.check(timeout=60).latched == {}  # only leg A so far
    b.send(session.leg("B").local_rtp_port, b.rtp())
    assert a.receive() is not None
    check = relay.check(timeout=60)
    assert check.latched == {session: (f"{LOOPBACK}:{a.address[1]}",
                                       f"{LOOPBACK}:{b.address[1]}")}
    assert check.dead == []
    assert relay.check(timeout=60).latched == {}  # once


def test_a_session_closed_without_waiting_is_reported_by_the_next_check(relay):
    """close_session(wait=False): ports released at once (the relay handles its
    requests in order), the legs' last sources come with the next check."""
    a, b = Phone(), Phone()
    session = call(relay, a, b, "call-closing")
    a.send(session.leg("A").local_rtp_port, a.rtp())
    assert b.receive() is not None
    silent = call(relay, Phone(), Phone(), "call-silent")
    free = relay.info()["ports_free"]
    assert relay.close_session(session, wait=False) is None
    assert relay.close_session(silent, wait=False) is None
    assert relay.info()["ports_free"] == free + 8  # two sessions, two pairs each
    check = relay.check(timeout=60)
    assert check.closed == {session: (f"{LOOPBACK}:{a.address[1]}", ""), silent: ("", "")}
    assert relay.check(timeout=60).closed == {}  # once
    # Closed again, or lost with a relay that died: reported all the same, once, with
    # no sources (the B2BUA's table of ended calls is emptied by check() alone).
    assert relay.close_session(session, wait=False) is None
    assert relay.check(timeout=60).closed == {session: ("", "")}
    assert relay.check(timeout=60).closed == {}


def test_a_host_name_in_sdp_leaves_the_address_to_latching(relay):
    a, b = Phone(), Phone()
    session = relay.open_session("call-fqdn")
    offer = SessionDescription.parse(
        b"v=0\r\no=alice 1 1 IN IP4 host.atlanta.example.com\r\ns=\r\n"
        b"c=IN IP4 host.atlanta.example.com\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0\r\n")
    relay.apply_stream(session, "A", offer.streams()[0])  # no error, no address
    relay.set_remote(session, "B", *b.address)
    assert relay.stats(session)["legs"]["A"]["remote"] is None
    a.send(session.leg("A").local_rtp_port, a.rtp())
    assert b.receive() is not None
    b.send(session.leg("B").local_rtp_port, b.rtp())
    assert a.receive() is not None


def test_ports_are_released_and_exhaustion_is_a_clear_error(tmp_path):
    relay = make_relay(tmp_path, pairs=4).start()  # two calls' worth
    try:
        total = relay.info()["ports_total"]
        first, second = relay.open_session("c1"), relay.open_session("c2")
        with pytest.raises(PortsExhausted, match="in use") as raised:
            relay.open_session("c3")
        assert raised.value.retry_after > 0
        assert relay.close_session(first)["call_id"] == "c1"
        assert relay.close_session(first) is None  # twice is harmless
        third = relay.open_session("c3")
        # The freed ports can be bound by someone else once released.
        for session in (second, third):
            relay.close_session(session)
        assert relay.info()["ports_free"] == total
        port = first.leg("A").local_rtp_port
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((LOOPBACK, port))
        with pytest.raises(MediaError, match="gone"):
            relay.stats(first)
    finally:
        relay.stop()


class RelayInThread:
    """The relay's real loop (RelayServer) in a thread of this process, on a clock
    the test sets, spoken to in its control protocol (one JSON object per line):
    what depends on how long media has been idle is checked by moving the
    relay's time, not by waiting for it."""

    def __init__(self, pairs: int = 10):
        self.now = 1000.0
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        theirs.setblocking(False)
        low, high = (int(p) for p in port_range(pairs).split("-"))
        self.server = RelayServer(theirs, LOOPBACK, low, high, clock=lambda: self.now)
        self.server.coalesce = 0
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        self.replies = self.sock.makefile("rb")
        self.count = 0

    def op(self, **request) -> dict:
        self.count += 1
        self.sock.sendall(json.dumps({**request, "id": self.count}).encode() + b"\n")
        reply = json.loads(self.replies.readline())
        assert reply["ok"] and reply["id"] == self.count, reply
        return reply

    def call(self, call_id: str, a: Phone, b: Phone) -> dict:
        opened = self.op(op="open", call_id=call_id)
        for leg, phone in (("A", a), ("B", b)):
            self.op(op="remote", session=opened["session"], leg=leg, host=LOOPBACK,
                    rtp=phone.address[1], rtcp=None)
        return opened

    def dead(self, timeout: float, hold_timeout: float | None = None) -> list[int]:
        return self.op(op="dead", timeout=timeout, hold_timeout=hold_timeout)["sessions"]

    def stop(self) -> None:
        self.replies.close()
        self.sock.close()  # the relay's end-of-file: its loop ends
        self.thread.join(timeout=5)
        self.server.close()


@pytest.fixture
def relay_in_thread():
    relay = RelayInThread()
    yield relay
    relay.stop()


def test_dead_media_is_reported(relay_in_thread):
    relay = relay_in_thread
    a, b, c, d = Phone(), Phone(), Phone(), Phone()
    quiet = relay.call("quiet", c, d)["session"]
    talking = relay.call("talking", a, b)
    relay.now += 0.8
    a.send(talking["legs"]["A"][0], a.rtp())
    assert b.receive() is not None  # relayed: the relay has seen it, at its time 0.8
    assert relay.dead(timeout=0.5) == [quiet]
    assert relay.dead(timeout=0.9) == []
    relay.now += 0.5
    assert sorted(relay.dead(timeout=0.5)) == sorted([quiet, talking["session"]])
    # On hold, the hold timeout applies (None: never reported).
    relay.op(op="direction", session=quiet, leg="A", direction="sendonly")
    assert relay.dead(timeout=0.5) == [talking["session"]]
    assert sorted(relay.dead(timeout=0.5, hold_timeout=1.2)) == sorted(
        [quiet, talking["session"]])
    for phone in (a, b, c, d):
        phone.close()


def test_a_crashed_relay_is_restarted_and_its_calls_reported(relay):
    a, b = Phone(), Phone()
    session = call(relay, a, b)
    old_pid = relay.pid
    os.kill(old_pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while relay.process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    # The next request restarts it; the call it had is reported dead at once.
    dead = relay.dead_sessions(timeout=60)
    assert [s.call_id for s in dead] == ["call-1"] and relay.pid != old_pid
    assert relay.close_session(session) is None
    assert relay.dead_sessions(timeout=60) == []
    fresh = call(relay, a, b, "call-2")
    a.send(fresh.leg("A").local_rtp_port, a.rtp())
    assert b.receive() is not None


PARENT = textwrap.dedent("""
    import sys, time
    from core.config import load_settings
    from sipd.media import Relay
    relay = Relay(load_settings({"PBX_SIP_LISTEN": "127.0.0.1:5060",
                                 "PBX_RTP_PORTS": sys.argv[1], "PBX_RUN_DIR": sys.argv[2]}))
    relay.start()
    session = relay.open_session("orphan")
    print(relay.pid, session.leg("A").local_rtp_port, flush=True)
    time.sleep(60)
""")


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_the_relay_dies_with_its_parent_and_the_ports_come_back(tmp_path, how):
    ports = port_range(10)
    parent = subprocess.Popen([sys.executable, "-c", PARENT, ports, str(tmp_path)],
                              cwd=ROOT, stdout=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        line = parent.stdout.readline().split()
        relay_pid, port = int(line[0]), int(line[1])
        assert alive(relay_pid)
        parent.send_signal(how)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 5
        while alive(relay_pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not alive(relay_pid), "the relay outlived sipd"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
    # A new sipd's relay starts clean: the same range, every port free again.
    settings = load_settings({"PBX_SIP_LISTEN": f"{LOOPBACK}:5060", "PBX_RTP_PORTS": ports,
                              "PBX_RUN_DIR": str(tmp_path)})
    relay = Relay(settings).start()
    try:
        assert relay.info()["ports_free"] == relay.info()["ports_total"] == 20
        # Every pair can be bound again, the dead relay's first one too (pairs are
        # drawn at random: it is among the five sessions' ten).
        sessions = [relay.open_session(f"again-{n}") for n in range(5)]
        assert port in {s.leg(leg).local_rtp_port for s in sessions for leg in "AB"}
    finally:
        relay.stop()
    assert not (tmp_path / "media-relay.pid").exists()


def test_an_orphan_relay_from_a_dead_sipd_is_killed(tmp_path):
    """A relay whose sipd is gone but which is still there (stopped here with
    SIGSTOP, so it cannot notice): the next sipd kills it from the pid file."""
    first = make_relay(tmp_path).start()
    orphan = first.process.pid
    os.kill(orphan, signal.SIGSTOP)
    try:
        # Pretend it was started by a sipd that has exited since.
        (tmp_path / "media-relay.pid").write_text(f"{orphan} 999999999\n")
        second = make_relay(tmp_path)
        second.start()
        try:
            assert not alive(orphan)
            assert second.info()["sessions"] == 0
        finally:
            second.stop()
    finally:
        if alive(orphan):
            os.kill(orphan, signal.SIGKILL)
        first.stop()


GEVENT_CLIENT = textwrap.dedent("""
    from gevent import monkey
    monkey.patch_all()
    import sys, time, gevent
    from core.config import load_settings
    from sipd.media import Relay
    relay = Relay(load_settings({"PBX_SIP_LISTEN": "127.0.0.1:5060",
                                 "PBX_RTP_PORTS": sys.argv[1], "PBX_RUN_DIR": sys.argv[2]}))
    relay.start()
    ticks = []
    def ticker():
        for _ in range(400):
            ticks.append(time.monotonic())
            gevent.sleep(0.001)
    def worker(n):
        for i in range(50):
            relay.close_session(relay.open_session(f"g{n}-{i}"))
    tick = gevent.spawn(ticker)
    gevent.joinall([gevent.spawn(worker, n) for n in range(4)] + [tick], timeout=30)
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    print(len(ticks), max(gaps), relay.info()["sessions"], file=sys.stdout)
    print("max gap", max(gaps), file=sys.stderr)
    relay.stop()
""")


def test_the_client_is_cooperative_under_gevent(tmp_path):
    """Requests from several greenlets are serialized and never stall the hub."""
    out = subprocess.run([sys.executable, "-c", GEVENT_CLIENT, port_range(20), str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    ticks, max_gap, sessions = out.stdout.split()
    assert int(ticks) == 400 and int(sessions) == 0
    assert float(max_gap) < 0.25  # no request held the hub (generous on a busy machine)


def test_requests_of_many_calls_in_flight_at_once_each_get_their_own_reply(tmp_path):
    """sipd's greenlets (here threads) do not wait for one another's round trip:
    each request is sent at once and its reply, read by whichever waiter reads
    the socket, is matched to it by id."""
    import threading

    # 400 pairs: a released pair rests for half the pool's worth of releases (200)
    # before it is drawn again, more than these 64 calls' 128 legs release, so each
    # call's ports are its own and the replies can be told apart by them.
    relay = make_relay(tmp_path, pairs=400).start()
    results, errors = {}, []

    def one_call(n: int) -> None:
        try:
            session = relay.open_session(f"call-{n}")
            relay.set_remote(session, "A", LOOPBACK, 20000 + 2 * n)
            stats = relay.stats(session)
            results[n] = (session.id, session.leg("A").local_rtp_port, stats)
            relay.close_session(session)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append((n, error))

    threads = [threading.Thread(target=one_call, args=(n,)) for n in range(64)]
    try:
        # With the relay stopped, the first requests pile up unanswered: they are
        # all sent (in flight together) rather than queued behind the first.
        os.kill(relay.pid, signal.SIGSTOP)
        try:
            for thread in threads[:8]:
                thread.start()
            deadline = time.monotonic() + 3
            while len(relay._waiting) < 8 and time.monotonic() < deadline:
                time.sleep(0.01)
            in_flight = len(relay._waiting)
        finally:
            os.kill(relay.pid, signal.SIGCONT)
        for thread in threads[8:]:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        relay.stop()
    assert in_flight == 8
    assert errors == []
    assert len(results) == 64
    assert len({session_id for session_id, _, _ in results.values()}) == 64
    assert len({port for _, port, _ in results.values()}) == 64
    assert all(isinstance(stats, dict) for _, _, stats in results.values())
