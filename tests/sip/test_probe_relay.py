"""The media relay against the outside probe of issue 14 (findings 1 and 3),
through a real sipd and its real relay, the probe's way.

Two registered extensions call each other with sipp (the caller's offer names
whatever the test wants: caller_sdp.xml); the test then plays the phones'
media from its own UDP sockets on 127.0.0.1, the address their signalling
comes from, and a stranger from another loopback address, 127.0.0.9.

Finding 1, the relay as a UDP proxy: an offer naming sipd's own SIP port
got SIP through the relay answered back through it; an offer naming any
other address got the other side's packets sent there; anything, RTP or not,
was forwarded. Finding 3, RTP hijack: a stranger's packets before the phones
latched the legs to it, and after 2 s of silence from a phone the leg
re-latched to it; the ports came in sequence. docs/security.md says how each
is fixed; every test here failed before.

Only 127.0.0.0/8; every wait has a deadline.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest

from sipd.media.session import RELATCH_AFTER
from tests.sip import callkit as ck
from tests.support import LOOPBACK

STRANGER = "127.0.0.9"
PRIVATE = "127.0.0.5"  # what a phone behind NAT writes into its SDP: nobody there for us


@pytest.fixture(autouse=True)
def _logs_in_tmp_path(tmp_path, monkeypatch):
    monkeypatch.setattr(ck, "WORK_ROOT", tmp_path)


@pytest.fixture
def server(tmp_path):
    srv = ck.SipdServer(tmp_path, numbers=("1001", "1002")).start()
    yield srv
    srv.stop()


@pytest.fixture
def runs():
    """The sipp runs of a test, ended (by their pids) when it is over."""
    started: list[ck.Sipp] = []
    yield started
    for run in started:
        run.stop()


class Endpoint:
    """A UDP socket playing a phone's media (or a stranger's) on a loopback address."""

    def __init__(self, host: str = LOOPBACK, port: int = 0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.seq = 0

    @property
    def address(self) -> tuple[str, int]:
        return self.sock.getsockname()

    def rtp(self, tag: bytes) -> bytes:
        """A PCMU packet (RFC 3550 §5.1) whose payload starts with `tag`."""
        self.seq += 1
        return struct.pack("!BBHII", 0x80, 0, self.seq, self.seq * 160, 0xC0FFEE) + tag.ljust(
            160, b"\xff")

    def send(self, data: bytes, port: int) -> None:
        self.sock.sendto(data, (LOOPBACK, port))

    def send_rtp(self, tag: bytes, port: int) -> None:
        self.send(self.rtp(tag), port)

    def until(self, tag: bytes, timeout: float = 3.0) -> list[bytes]:
        """Everything received until a packet with payload `tag` came (its tag
        last in the list), or what came within `timeout` if it never did."""
        got: list[bytes] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(2048)
            except TimeoutError:
                break
            got.append(data)
            if data[12:12 + len(tag)] == tag:
                break
        return got

    def drain(self, timeout: float = 0.3) -> list[bytes]:
        """What arrives within `timeout` (for what must not arrive: bounded)."""
        got = []
        deadline = time.monotonic() + timeout
        while True:
            self.sock.settimeout(max(0.001, deadline - time.monotonic()))
            try:
                got.append(self.sock.recv(65535))
            except TimeoutError:
                return got

    def close(self) -> None:
        self.sock.close()


def tags(packets: list[bytes]) -> list[bytes]:
    return [p[12:12 + 8].rstrip(b"\xff") if p[:1] == b"\x80" else p[:16] for p in packets]


def talk(x: Endpoint, x_port: int, y: Endpoint, y_port: int, timeout: float = 3.0):
    """Two phones talking: each sends a packet every 20 ms to its relay port until
    each has heard the other (or `timeout`). Returns the tags each one heard."""
    heard_x: list[bytes] = []
    heard_y: list[bytes] = []
    for endpoint in (x, y):
        endpoint.sock.setblocking(False)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not (b"y" in heard_x and b"x" in heard_y):
            x.send_rtp(b"x", x_port)
            y.send_rtp(b"y", y_port)
            time.sleep(0.02)
            for endpoint, heard in ((x, heard_x), (y, heard_y)):
                while True:
                    try:
                        heard.extend(tags([endpoint.sock.recv(2048)]))
                    except BlockingIOError:
                        break
    finally:
        for endpoint in (x, y):
            endpoint.sock.setblocking(True)
    return heard_x, heard_y


class Flood:
    """A stranger sending RTP to `ports` every 20 ms for as long as the block lasts."""

    def __init__(self, endpoint: Endpoint, ports: tuple[int, ...], tag: bytes = b"stranger"):
        self.endpoint, self.ports, self.tag = endpoint, ports, tag
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            for port in self.ports:
                self.endpoint.send_rtp(self.tag, port)
            self.stop.wait(0.02)

    def __enter__(self) -> Flood:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


def place_call(server, runs, sdp: tuple[str, int], duration_ms: int = 4000):
    """1001 calls 1002 with an offer naming `sdp`; returns (relay port facing the
    caller, relay port facing the callee) once the call is answered."""
    callee = ck.callee(server.address, "1002", "callee_answer.xml", rtp_echo=False,
                       timeout=30)
    runs.append(callee)
    caller = ck.caller(server.address, "1001", "1002", "caller_sdp.xml",
                       duration_ms=duration_ms, sets={"sdp_host": sdp[0], "sdp_port": sdp[1]})
    runs.append(caller)
    a_host, a_port = ck.sdp_media(ck.wait_answer_sdp(caller))
    invites = ck.wait_for(lambda: [m for m in callee.received() if m.method == "INVITE"])
    assert invites, callee.explain()
    b_host, b_port = ck.sdp_media(invites[0].body)
    assert a_host == b_host == LOOPBACK and a_port != b_port
    return a_port, b_port


# --- finding 1: a proxy into the PBX's own host, a reflector towards any host ----------

def test_sip_sent_through_the_relay_to_sipds_own_port_is_not_answered(server, runs):
    """The probe's OPTIONS: the caller's offer names sipd's SIP port; the callee
    side sends a SIP request to its relay port. Before, the relay delivered it
    to sipd and sipd's answer came back through the relay."""
    sipd_port = server.daemon.port
    leg_a, leg_b = place_call(server, runs, (LOOPBACK, sipd_port))
    callee_side = Endpoint()
    try:
        callee_side.send_rtp(b"latch", leg_b)  # RTP first: leg B latches to this socket
        options = (
            f"OPTIONS sip:1001@{LOOPBACK}:{sipd_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOOPBACK}:{leg_a};branch=z9hG4bK-probe-{time.monotonic_ns()}\r\n"
            f"From: <sip:probe@{LOOPBACK}>;tag=probe\r\nTo: <sip:1001@{LOOPBACK}>\r\n"
            f"Call-ID: probe-{time.monotonic_ns()}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n").encode()
        callee_side.send(options, leg_b)
        answers = callee_side.drain(timeout=1.5)
        assert not [a for a in answers if a.startswith(b"SIP/2.0")], answers
        # The call itself is fine: the caller's packets reach the callee side.
        caller_side = Endpoint()
        caller_side.send_rtp(b"hello", leg_a)
        assert tags(callee_side.until(b"hello")) == [b"hello"], server.log()[-3000:]
        caller_side.close()
    finally:
        callee_side.close()
    ck.finish(*runs, server=server)
    assert "one of the PBX's own endpoints" in server.log()


def test_sipds_port_on_another_loopback_address_gets_nothing(server, runs):
    """"Own" is the port on any address of the host: sipd on 0.0.0.0 would answer
    on 127.0.0.9 too. A listener there, on sipd's port number, named by the
    offer, sends first (it may: its address is the one the SDP names); the
    relay must still neither latch to it nor send to it."""
    sipd_port = server.daemon.port
    own = Endpoint(STRANGER, sipd_port)
    leg_a, leg_b = place_call(server, runs, (STRANGER, sipd_port))
    callee_side, caller_side = Endpoint(), Endpoint()
    try:
        with Flood(own, (leg_a,), b"own"):
            # The caller's packets, from its signalling address, latch leg A instead.
            heard_caller, heard_callee = talk(caller_side, leg_a, callee_side, leg_b)
        assert set(heard_caller) == {b"y"} and set(heard_callee) == {b"x"}, (
            heard_caller, heard_callee)
        assert own.drain() == []
    finally:
        for endpoint in (own, callee_side, caller_side):
            endpoint.close()
    ck.finish(*runs, server=server)


def test_an_address_nobody_sent_from_gets_nothing(server, runs):
    """The offer names another host (here 127.0.0.5; a reflector's victim, or a
    phone's private address behind NAT). Before, the other side's packets went
    there. Now the leg waits for its phone: packets from its signalling address
    latch it, and only then does the audio flow, to where they came from."""
    victim = Endpoint(PRIVATE)
    leg_a, leg_b = place_call(server, runs, victim.address)
    callee_side, caller_side = Endpoint(), Endpoint()
    try:
        for _ in range(10):
            callee_side.send_rtp(b"callee", leg_b)
        assert victim.drain(timeout=0.5) == []
        # The phone behind NAT sends from its real address: now both hear each other.
        heard_caller, heard_callee = talk(caller_side, leg_a, callee_side, leg_b)
        assert set(heard_caller) == {b"y"} and set(heard_callee) == {b"x"}, (
            heard_caller, heard_callee)
        assert victim.drain() == []
    finally:
        for endpoint in (victim, callee_side, caller_side):
            endpoint.close()
    ck.finish(*runs, server=server)


def test_only_rtp_and_rtcp_are_forwarded(server, runs):
    """Datagrams that are not RTP (RFC 3550 §5.1) or RTCP (§6.4) are dropped:
    sent before a valid packet on the same path, none arrives ahead of it."""
    caller_side = Endpoint()
    leg_a, leg_b = place_call(server, runs, caller_side.address)
    callee_side = Endpoint()
    try:
        callee_side.send_rtp(b"latch", leg_b)
        assert tags(caller_side.until(b"latch")) == [b"latch"]
        not_media = [
            b"OPTIONS sip:1002@127.0.0.1 SIP/2.0\r\nContent-Length: 0\r\n\r\n",
            b"\x00\x01\x00\x00\x21\x12\xa4\x42" + bytes(12),  # a STUN binding request
            b"\x40" + bytes(171),  # RTP version 1
            b"\x80\x00\x00\x01",  # shorter than the fixed header
            b"\x8f\x00" + bytes(30),  # CC = 15: 60 bytes of CSRCs that are not there
            b"\x80\xc9\x00\x40" + bytes(4),  # RTCP RR whose length runs past the datagram
        ]
        for data in not_media:
            caller_side.send(data, leg_a)
        caller_side.send_rtp(b"valid", leg_a)
        report = struct.pack("!BBHI", 0x80, 201, 1, 0xC0FFEE)  # RTCP RR, muxed on RTP
        caller_side.send(report, leg_a)
        got = callee_side.until(b"valid")
        assert tags(got) == [b"valid"], got
        assert callee_side.drain() == [report]
    finally:
        caller_side.close()
        callee_side.close()
    ck.finish(*runs, server=server)


# --- finding 3: RTP hijack ------------------------------------------------------------

def test_a_stranger_sending_first_does_not_capture_the_legs(server, runs):
    caller_side = Endpoint()
    leg_a, leg_b = place_call(server, runs, caller_side.address)
    stranger, callee_side = Endpoint(STRANGER), Endpoint()
    try:
        # Before either phone has sent a packet, and on while they talk.
        with Flood(stranger, (leg_a, leg_b)):
            time.sleep(0.1)  # the stranger's head start: five packets per leg
            heard_caller, heard_callee = talk(caller_side, leg_a, callee_side, leg_b)
        assert set(heard_caller) == {b"y"} and set(heard_callee) == {b"x"}, (
            heard_caller, heard_callee)
        assert stranger.drain() == []
    finally:
        for endpoint in (stranger, caller_side, callee_side):
            endpoint.close()
    ck.finish(*runs, server=server)


def test_a_stranger_cannot_take_the_legs_after_the_phones_go_silent(server, runs):
    """RTP bleed: the phones talk, then say nothing (a mute, a NAT hiccup) for
    longer than the relay's re-latch time while a stranger keeps sending."""
    caller_side = Endpoint()
    leg_a, leg_b = place_call(server, runs, caller_side.address,
                              duration_ms=int((RELATCH_AFTER + 5) * 1000))
    stranger, callee_side = Endpoint(STRANGER), Endpoint()
    try:
        heard_caller, heard_callee = talk(caller_side, leg_a, callee_side, leg_b)
        assert b"y" in heard_caller and b"x" in heard_callee
        with Flood(stranger, (leg_a, leg_b)):
            # The phones' silence: the attack itself takes this long.
            time.sleep(RELATCH_AFTER + 1.0)
            caller_side.drain(timeout=0.05)
            callee_side.drain(timeout=0.05)
            heard_caller, heard_callee = talk(caller_side, leg_a, callee_side, leg_b)
        assert set(heard_caller) == {b"y"} and set(heard_callee) == {b"x"}, (
            heard_caller, heard_callee)
        assert stranger.drain() == []
    finally:
        for endpoint in (stranger, caller_side, callee_side):
            endpoint.close()
    ck.finish(*runs, server=server)
    assert "not the phone's address" in server.log()


def test_relay_ports_are_not_handed_out_in_sequence(server, runs):
    """Three calls one after the other: before, their ports were p, p+2, p+4...,
    so one call told a stranger where the next would be."""
    callee = ck.callee(server.address, "1002", "callee_answer.xml", rtp_echo=False, calls=3)
    caller = ck.caller(server.address, "1001", "1002", "caller_call.xml", duration_ms=200,
                       calls=3, rate=4)
    runs.extend([callee, caller])
    ck.finish(caller, callee, server=server)
    def first_per_call(messages):  # a retransmission carries the same ports
        return list({m.header("Call-ID"): m for m in reversed(messages)}.values())[::-1]

    answers = first_per_call([m for m in caller.received()
                              if m.status == 200 and m.cseq_method == "INVITE"])
    offers = first_per_call([m for m in callee.received() if m.method == "INVITE"])
    assert len(answers) == len(offers) == 3, caller.flow()
    # Opened in this order: leg A (in the 200 to the caller), leg B (in the INVITE).
    ports = [port for a, b in zip(answers, offers, strict=True)
             for port in (ck.sdp_media(a.body)[1], ck.sdp_media(b.body)[1])]
    assert len(set(ports)) == 6 and all(p % 2 == 0 for p in ports), ports
    steps = [b - a for a, b in zip(ports, ports[1:], strict=False)]
    assert steps != [2] * 5, ports
