"""The relay's rules against the probe of issue 14, without a relay process:
what counts as RTP or RTCP (sipd/media/rtp.py), which endpoints are the PBX's
own (sipd/media/own.py), whom a leg latches to and where it sends
(sipd/media/session.py), and the order ports are handed out (pool.py).
Time is passed in; nothing sleeps. tests/sip/test_probe_relay.py shows the
same against a real sipd.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

import pytest

from sipd.media.own import OwnEndpoints, is_local
from sipd.media.pool import PoolExhausted, PortPool
from sipd.media.rtp import RTCP, RTP, is_media
from sipd.media.server import ControlError, RelayServer
from sipd.media.session import RELATCH_AFTER, Session

PHONE = ("198.51.100.10", 4000)  # a phone not behind NAT: signalling and SDP agree
PRIVATE = ("10.0.0.5", 4000)  # what a phone behind NAT writes into its SDP
NAT = ("203.0.113.7", 61000)  # where its packets (and its SIP) really come from
CARRIER = ("198.51.100.200", 30000)  # a trunk's SDP
STRANGER = ("198.51.100.66", 5555)
SIPD_PORT = 5060


def rtp(payload_type: int = 0, marker: bool = False, csrcs: int = 0, payload: int = 160,
        version: int = 2) -> bytes:
    first = version << 6 | csrcs
    return (struct.pack("!BBHII", first, marker << 7 | payload_type, 1, 160, 0x1234)
            + bytes(4 * csrcs) + bytes(payload))


def rtcp(packet_type: int, words: int, size: int | None = None) -> bytes:
    """One RTCP packet whose length field says `words` + 1 32-bit words."""
    data = struct.pack("!BBHI", 0x80, packet_type, words, 0x1234)
    total = size if size is not None else 4 * (words + 1)
    return data + bytes(max(0, total - len(data)))


# --- RTP and RTCP only (rtp.py) ---------------------------------------------------------


@pytest.mark.parametrize("packet", [
    rtp(0), rtp(8), rtp(18, marker=True), rtp(101, payload=4),  # RFC 4733 event
    rtp(96, csrcs=2), rtp(127, marker=True, payload=0),
    rtp(0, payload=170),  # SRTP: the same header, an encrypted payload and a tag
])
def test_rtp_passes_on_the_rtp_port_only(packet):
    assert is_media(packet, len(packet), RTP)
    assert not is_media(packet, len(packet), RTCP)


@pytest.mark.parametrize("packet", [
    rtcp(200, 6),  # SR, no report blocks (RFC 3550 §6.4.1)
    rtcp(201, 1),  # RR, no report blocks: the smallest, 8 bytes (§6.4.2)
    rtcp(201, 7) + rtcp(202, 2),  # a compound RR + SDES
    rtcp(203, 1),  # BYE
    rtcp(205, 2), rtcp(206, 2),  # RFC 4585 feedback, alone (RFC 5506 reduced size)
    rtcp(207, 4),  # XR (RFC 3611)
    rtcp(200, 6) + bytes(14),  # SRTCP: E bit + index and a tag after the packet
])
def test_rtcp_passes_on_both_ports(packet):
    assert is_media(packet, len(packet), RTCP)
    assert is_media(packet, len(packet), RTP)  # rtcp-mux (RFC 5761 §4)


@pytest.mark.parametrize("data", [
    b"OPTIONS sip:1001@127.0.0.1 SIP/2.0\r\nContent-Length: 0\r\n\r\n",
    b"SIP/2.0 200 OK\r\n\r\n",
    b"\x00\x01\x00\x00\x21\x12\xa4\x42" + bytes(12),  # STUN binding request
    b"\x16\xfe\xfd" + bytes(40),  # DTLS handshake
    b"\x10\x00\x00\x01ZRTP" + bytes(16),  # ZRTP
    b"\x12\x34\x01\x00\x00\x01" + bytes(6) + b"\x07example\x03com\x00\x00\x01\x00\x01",  # DNS
    rtp(0, version=1), rtp(0, version=3), rtp(0, version=0),
    b"", b"\x80", b"\x80\x00\x00\x01",  # shorter than any header
    rtp(0, payload=0)[:11],  # one byte short of the fixed header
    rtp(0, csrcs=15, payload=0)[:60],  # CC = 15: the CSRC list is cut off
    rtcp(201, 64, size=8),  # a length running past the datagram
    rtcp(200, 6, size=20),
])
def test_anything_else_is_dropped(data):
    assert not is_media(data, len(data), RTP)
    assert not is_media(data, len(data), RTCP)


def test_only_the_received_bytes_are_looked_at():
    """The relay reads into one reused buffer: what is past `size` is an older packet."""
    buffer = bytearray(rtp(0)) + bytearray(100)
    assert is_media(buffer, 172, RTP)
    buffer[:8] = b"REGISTER"
    assert not is_media(buffer, 8, RTP)
    assert not is_media(rtcp(201, 7), 8, RTCP)  # RR with a report block, truncated to 8


# --- the PBX's own endpoints (own.py) ---------------------------------------------------


def route_source() -> str | None:
    """This host's address towards the outside, if it has a route (nothing is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("198.51.100.1", 9))
        except OSError:
            return None
        return probe.getsockname()[0]


def test_own_ports_are_refused_on_every_address_of_this_host():
    own = OwnEndpoints([SIPD_PORT, 8080], hosts=["203.0.113.50"])  # PBX_PUBLIC_ADDRESS
    own.relay_ports.update((30000, 30001))
    local = ["127.0.0.1", "127.0.0.9", "127.255.255.254", "0.0.0.0", "0.1.2.3"]
    if route_source():
        local.append(route_source())  # an interface address
    for host in local:
        assert is_local(ipaddress.IPv4Address(host)), host
        for port in (SIPD_PORT, 8080, 30000, 30001, 53, 123, 1):
            assert own.forbids((host, port)), (host, port)
        assert not own.forbids((host, 40000)), host  # a softphone on the PBX's host
        assert not own.forbids((host, 30002)), host  # PBX_RTP_PORTS, not held by the relay
    # The public address counts as this host (a port forward sends it back here).
    assert own.forbids(("203.0.113.50", SIPD_PORT)) and not own.forbids(("203.0.113.50", 4000))
    # Another host may use any port: a NAT may well map a phone's RTP to 5060 or 30000.
    for port in (SIPD_PORT, 8080, 30000, 53, 40000):
        assert not own.forbids(("198.51.100.7", port))
    # Once the relay lets a port go, it is anybody's again.
    own.relay_ports.discard(30000)
    assert not own.forbids(("127.0.0.1", 30000))


@pytest.mark.parametrize("host", [
    "224.0.0.1", "239.255.255.250", "255.255.255.255",  # multicast, broadcast
    "127.1", "2130706433", "::1", "example.com",  # not a dotted quad: never sent to
])
def test_multicast_broadcast_and_odd_forms_are_never_sent_to(host):
    assert OwnEndpoints().forbids((host, 40000))


def test_the_relay_takes_only_dotted_quads_from_sipd(tmp_path):
    """inet_aton() took "127.1" and "2130706433" for 127.0.0.1: refused, since the
    relay compares addresses as text."""
    ours, theirs = socket.socketpair()
    server = RelayServer(theirs, "127.0.0.1", 39000, 39099, OwnEndpoints([SIPD_PORT]))
    try:
        opened = server.op_open({"call_id": "c"}, 0.0)
        for host in ("127.1", "2130706433", "0x7f000001", "127.0.0.01"):
            with pytest.raises(ControlError, match="IPv4"):
                server.op_remote({"session": opened["session"], "leg": "A", "host": host,
                                  "rtp": 4000}, 0.0)
        with pytest.raises(ControlError, match="not an IP address"):
            server.op_apply({"session": opened["session"], "leg": "A", "direction": "sendrecv",
                             "source": "phone.example"}, 0.0)
        # The relay's own ports are protected while bound, and only then.
        ports = set(opened["legs"]["A"]) | set(opened["legs"]["B"])
        assert ports <= server.own.relay_ports
        server.op_close({"session": opened["session"]}, 0.0)
        assert not ports & server.own.relay_ports
    finally:
        server.close()
        ours.close()
        theirs.close()


# --- whom a leg latches to, where it sends (session.py) ----------------------------------


def call(a_sdp, a_source, b_sdp=PHONE, b_source=PHONE[0], own=None, now=0.0):
    """A session set up as sipd sets it up: each leg's SDP and signalling address."""
    notes: list = []
    session = Session(1, "c1", (20000, 20001), (20002, 20003), now, notes,
                      own or OwnEndpoints([SIPD_PORT]))
    a, b = session.leg("A"), session.leg("B")
    a.set_source(a_source)
    if a_sdp:
        a.set_remote(*a_sdp)
    b.set_source(b_source)
    if b_sdp:
        b.set_remote(*b_sdp)
    return a, b, notes


def test_a_stranger_sending_first_does_not_latch_a_phones_leg():
    a, b, notes = call(PRIVATE, NAT[0])
    for i in range(5):
        assert a.receive(RTP, STRANGER, 172, 0.1 + i * 0.02) is None
    assert a.latched == [None, None] and a.strangers == 5 and a.packets_in == 0
    assert notes == [("stranger", a, RTP, STRANGER)]  # logged once
    # The phone, from its NAT's address (another port than anything it said), latches.
    assert a.receive(RTP, NAT, 172, 0.3) == PHONE
    assert a.latched[RTP] == NAT
    assert b.receive(RTP, PHONE, 172, 0.31) == NAT


def test_a_stranger_cannot_relatch_after_silence_but_the_phone_can():
    a, b, _ = call(PRIVATE, NAT[0])
    a.receive(RTP, NAT, 172, 1.0)
    silent = 1.0 + RELATCH_AFTER + 10
    assert a.receive(RTP, STRANGER, 172, silent) is None  # RTP bleed, refused
    assert a.latched[RTP] == NAT and a.strangers == 1
    # The phone's NAT mapping changed: same address, new port. It re-latches.
    rebound = (NAT[0], 61544)
    assert a.receive(RTP, rebound, 172, silent + 0.02) == PHONE
    assert a.latched[RTP] == rebound and b.receive(RTP, PHONE, 172, silent + 0.03) == rebound


def test_the_sdp_address_may_latch_too():
    """A phone whose media leaves from another address than its SIP, and says so."""
    media_host = ("198.51.100.11", 4000)
    a, _, _ = call(media_host, PHONE[0])
    assert a.receive(RTP, (media_host[0], 4002), 172, 1.0) is not None
    assert a.latched[RTP] == (media_host[0], 4002)


def test_before_it_latches_a_phone_is_sent_to_only_at_its_signalling_address():
    a, b, _ = call(PRIVATE, NAT[0])
    # A's SDP names an address nobody has been heard from: nothing goes there.
    assert a.destination(RTP) is None and a.destination(RTCP) is None
    assert b.receive(RTP, PHONE, 172, 1.0) is None and b.unroutable == 1
    # B's SDP is where its SIP comes from: used from the start (early media).
    assert b.destination(RTP) == PHONE and b.destination(RTCP) == (PHONE[0], 4001)
    # A reflector's victim: a caller naming a third party gets it nothing.
    victim = ("198.51.100.99", 7777)
    v, _, _ = call(victim, NAT[0])
    assert v.destination(RTP) is None and v.destination(RTCP) is None


def test_a_trunk_leg_latches_to_its_sdp_address_only():
    """No signalling address given: the carrier's SDP address is sent to from the
    start and is the only one whose packets latch (carriers are not behind NAT)."""
    a, b, _ = call(PHONE, PHONE[0], b_sdp=CARRIER, b_source=None)
    assert b.destination(RTP) == CARRIER
    assert b.receive(RTP, STRANGER, 172, 1.0) is None and b.strangers == 1
    assert b.receive(RTP, (CARRIER[0], 30010), 172, 1.01) == PHONE


def test_the_pbxs_own_endpoints_are_never_a_destination_nor_a_source():
    own = OwnEndpoints([SIPD_PORT])
    # The probe's offer: the phone's own (local) address, sipd's SIP port.
    a, b, _ = call(("127.0.0.1", SIPD_PORT), "127.0.0.1", b_sdp=("127.0.0.1", 40000),
                   b_source="127.0.0.1", own=own)
    assert a.destination(RTP) is None
    assert b.receive(RTP, ("127.0.0.1", 40000), 172, 1.0) is None and b.unroutable == 1
    # sipd's answer coming back from that port does not latch the leg.
    assert a.receive(RTP, ("127.0.0.1", SIPD_PORT), 40, 1.1) is None and a.strangers == 1
    # Nor another relay socket (a loop).
    own.relay_ports.add(20010)
    assert a.receive(RTP, ("127.0.0.1", 20010), 172, 1.2) is None
    assert a.strangers == 2 and a.latched == [None, None]
    # sipd's port on another loopback address, named by the SDP (so its address may
    # latch): neither latched to nor sent to.
    d, _, _ = call(("127.0.0.9", SIPD_PORT), "127.0.0.1", own=own)
    assert "127.0.0.9" in d.trusted and d.destination(RTP) is None
    assert d.receive(RTP, ("127.0.0.9", SIPD_PORT), 172, 1.3) is None and d.strangers == 1
    # RTCP going to the latched RTP host at the SDP's RTCP port: refused there too.
    c, _, _ = call(("127.0.0.1", 4000), "127.0.0.1", own=own)
    c.set_remote("127.0.0.1", 4000, SIPD_PORT)  # a=rtcp:5060
    c.receive(RTP, ("127.0.0.1", 4000), 172, 2.0)
    assert c.latched[RTP] == ("127.0.0.1", 4000) and c.destination(RTCP) is None


def test_a_change_of_signalling_address_drops_latches_it_no_longer_allows():
    a, _, _ = call(PRIVATE, NAT[0])
    a.receive(RTP, NAT, 172, 1.0)
    a.set_source("203.0.113.8")  # a re-INVITE's answer came from another address
    assert a.latched == [None, None]
    assert a.receive(RTP, NAT, 172, 1.1) is None
    assert a.receive(RTP, ("203.0.113.8", 5000), 172, 1.2) is not None


def test_a_leg_that_knows_no_address_latches_to_the_first_packet():
    """The one weak case, documented: no SDP address (a host name) and no
    signalling address given (sipd always gives a phone's)."""
    a, _, _ = call(None, None)
    assert a.trusted is None
    assert a.receive(RTP, STRANGER, 172, 1.0) is not None
    a.set_source(NAT[0])  # told now: the stranger's latch goes
    assert a.latched == [None, None]


# --- port order (pool.py) ----------------------------------------------------------------


def test_ports_are_drawn_at_random_and_every_pair_comes_once():
    pool = PortPool(10000, 19999)
    first = [pool.allocate() for _ in range(10)]
    steps = {b - a for a, b in zip(first, first[1:], strict=False)}
    assert steps != {2}, first  # not in sequence (chance of a false failure: ~1e-33)
    rest = [pool.allocate() for _ in range(pool.size - 10)]
    everything = first + rest
    assert sorted(everything) == list(range(10000, 19999, 2))
    with pytest.raises(PoolExhausted):
        pool.allocate()


def test_the_draw_is_over_the_free_pairs():
    draws = iter([2, 0, 0])
    pool = PortPool(10000, 10007, randbelow=lambda n: next(draws))  # 4 pairs
    assert pool.allocate() == 10004  # index 2 of [10000, 10002, 10004, 10006]
    assert pool.allocate() == 10000  # index 0 of what is left
    pool.release(10004)  # rests (half the pool's worth of releases: 2)
    assert pool.allocate() in (10002, 10006)
