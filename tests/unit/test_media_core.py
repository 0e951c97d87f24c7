"""The relay's decisions without sockets: port pool, latching, direction, dead media
(sipd/media/pool.py, sipd/media/session.py). Time is passed in; nothing sleeps."""

import pytest

from sipd.media.pool import PoolExhausted, PortPool
from sipd.media.session import RELATCH_AFTER, RTCP, RTP, Session

PHONE_A = ("198.51.100.10", 4000)  # what A's SDP says
PHONE_B = ("198.51.100.20", 6000)
NAT_A = ("203.0.113.7", 61000)  # where A's packets really come from
SPOOFER = ("192.0.2.66", 5555)


# --- port pool -------------------------------------------------------------------------


def test_pool_hands_out_even_rtp_ports_with_the_odd_port_inside_the_range():
    pool = PortPool(10001, 10008)  # odd low, even high
    ports = [pool.allocate() for _ in range(pool.size)]
    assert sorted(ports) == [10002, 10004, 10006]  # 10008 would need 10009
    assert all(p % 2 == 0 and p + 1 <= 10008 for p in ports)


def test_pool_exhaustion_is_a_clear_error_and_release_makes_room():
    pool = PortPool(10000, 10003)
    first, second = pool.allocate(), pool.allocate()
    with pytest.raises(PoolExhausted, match="all 2 media port pairs are in use"):
        pool.allocate()
    pool.release(first)
    pool.release(first)  # twice is harmless
    assert pool.available == 1 and pool.in_use == 1
    assert pool.allocate() == first
    assert {first, second} == {10000, 10002}


def test_pool_lets_a_released_pair_rest():
    pool = PortPool(10000, 10009)
    a, b = pool.allocate(), pool.allocate()
    pool.release(a)
    # a rests: every other free pair comes first (in an unpredictable order).
    others = {pool.allocate() for _ in range(3)}
    assert others == {10000, 10002, 10004, 10006, 10008} - {a, b}
    assert pool.allocate() == a
    pool.release(b)
    pool.set_aside(a)  # could not bind: tried again after the others
    assert [pool.allocate(), pool.allocate()] == [b, a]


def test_pool_rejects_a_range_without_a_pair():
    with pytest.raises(ValueError):
        PortPool(10001, 10001)


# --- latching and forwarding ---------------------------------------------------------


def new_session(now=0.0):
    notes = []
    session = Session(1, "call-1", (20000, 20001), (20002, 20003), now, notes)
    return session, session.leg("A"), session.leg("B"), notes


def test_before_any_packet_the_sdp_address_is_used_then_the_real_source():
    session, a, b, notes = new_session()
    a.set_remote(*PHONE_A)
    a.set_source(NAT_A[0])  # A's signalling comes from its NAT
    b.set_remote(*PHONE_B)
    b.set_source(PHONE_B[0])  # B is not behind NAT
    # A's first packet comes from its NAT, not from what its SDP said.
    assert a.receive(RTP, NAT_A, 172, 1.0) == PHONE_B  # B not heard yet: B's SDP address
    assert a.latched[RTP] == NAT_A
    # B's packets now go to where A really is.
    assert b.receive(RTP, PHONE_B, 172, 1.02) == NAT_A
    assert notes == [("latch", a, RTP, NAT_A, None, 1.0), ("latch", b, RTP, PHONE_B, None, 1.02)]


def test_a_live_stream_cannot_be_stolen_but_relatches_after_silence():
    session, a, b, _ = new_session()
    b.set_remote(*PHONE_B)
    a.receive(RTP, NAT_A, 172, 1.0)
    assert a.receive(RTP, SPOOFER, 172, 1.5) is None
    assert a.foreign == 1 and a.latched[RTP] == NAT_A
    assert a.receive(RTP, NAT_A, 172, 1.52) == PHONE_B
    # Silent for just under RELATCH_AFTER: still refused.
    assert a.receive(RTP, SPOOFER, 172, 1.52 + RELATCH_AFTER - 0.01) is None
    # The latched source silent for RELATCH_AFTER: a new source takes over
    # (the phone moved, or its NAT mapping changed).
    moved = ("203.0.113.7", 62000)
    assert a.receive(RTP, moved, 172, 1.52 + RELATCH_AFTER) == PHONE_B
    assert a.latched[RTP] == moved and a.latches == 2
    assert b.receive(RTP, PHONE_B, 172, 5.0) == moved


def test_rtcp_latches_separately_and_goes_to_the_nat_host_before_that():
    session, a, b, _ = new_session()
    a.set_remote(PHONE_A[0], PHONE_A[1], 4001)
    a.set_source(NAT_A[0])
    b.set_remote(PHONE_B[0], PHONE_B[1])  # no a=rtcp: RTP port + 1
    assert b.destination(RTCP) == (PHONE_B[0], 6001)
    # A's SDP names a private address nobody has been heard from: not used.
    assert a.destination(RTCP) is None
    a.receive(RTP, NAT_A, 172, 1.0)
    # RTP latched, RTCP not yet: the NAT's host with the SDP's RTCP port.
    assert b.receive(RTCP, (PHONE_B[0], 6001), 80, 1.1) == (NAT_A[0], 4001)
    a.receive(RTCP, (NAT_A[0], 61001), 80, 1.2)
    assert b.receive(RTCP, (PHONE_B[0], 6001), 80, 1.3) == (NAT_A[0], 61001)
    assert a.latched == [NAT_A, (NAT_A[0], 61001)]


def test_packets_with_nowhere_to_go_are_dropped_and_counted():
    session, a, b, _ = new_session()
    assert a.receive(RTP, NAT_A, 172, 1.0) is None  # B's address unknown yet
    assert a.unroutable == 1 and a.packets_in == 1 and b.packets_out == 0


def test_sdp_changes_reset_the_latch_only_when_the_phone_moved():
    session, a, b, _ = new_session()
    a.set_remote(*PHONE_A)
    a.set_source(NAT_A[0])
    a.receive(RTP, NAT_A, 172, 1.0)
    a.set_remote(*PHONE_A)  # a re-INVITE with the same address
    assert a.latched[RTP] == NAT_A
    a.set_remote("0.0.0.0", 4000)  # RFC 2543 hold: not a move
    assert a.latched[RTP] == NAT_A and a.remote[RTP] == PHONE_A
    a.set_remote("198.51.100.11", 4100)  # it says it moved
    assert a.latched == [None, None] and a.remote[RTP] == ("198.51.100.11", 4100)
    assert a.remote[RTCP] == ("198.51.100.11", 4101)


def test_counters_and_send_failures():
    session, a, b, _ = new_session()
    b.set_remote(*PHONE_B)
    for i in range(3):
        a.receive(RTP, NAT_A, 172, 1.0 + i * 0.02)
    b.send_failed()
    stats = session.stats(2.0)
    assert stats["legs"]["A"]["packets_in"] == 3 and stats["legs"]["A"]["bytes_in"] == 516
    assert stats["legs"]["B"]["packets_out"] == 2 and stats["legs"]["B"]["bytes_out"] == 516
    assert stats["legs"]["B"]["send_errors"] == 1
    assert stats["legs"]["A"]["latched"] == list(NAT_A)
    assert stats["legs"]["A"]["idle"] == pytest.approx(0.96)
    assert stats["legs"]["B"]["idle"] is None


# --- direction ------------------------------------------------------------------------


@pytest.mark.parametrize("a_dir, b_dir, a_to_b, b_to_a", [
    ("sendrecv", "sendrecv", True, True),
    ("sendonly", "recvonly", True, False),  # A holds B (RFC 3264 §8.4)
    ("recvonly", "sendonly", False, True),
    ("inactive", "inactive", False, False),
    ("sendonly", "sendrecv", True, False),  # A's own view is enough
    ("sendrecv", "inactive", False, False),
])
def test_direction_drops_rtp_the_way_sdp_says(a_dir, b_dir, a_to_b, b_to_a):
    session, a, b, _ = new_session()
    a.set_remote(*PHONE_A)
    b.set_remote(*PHONE_B)
    a.set_direction(a_dir)
    b.set_direction(b_dir)
    assert (a.receive(RTP, PHONE_A, 172, 1.0) is not None) == a_to_b
    assert (b.receive(RTP, PHONE_B, 172, 1.0) is not None) == b_to_a
    # RFC 3264 §5.1: RTCP flows whatever the direction.
    assert a.receive(RTCP, (PHONE_A[0], 4001), 80, 1.0) == (PHONE_B[0], 6001)
    assert b.receive(RTCP, (PHONE_B[0], 6001), 80, 1.0) == (PHONE_A[0], 4001)
    # A held phone's packets still latch and count as activity.
    assert a.latched[RTP] == PHONE_A and a.last_in == 1.0


def test_unknown_direction_is_refused():
    _, a, _, _ = new_session()
    with pytest.raises(ValueError):
        a.set_direction("sideways")
    with pytest.raises(ValueError):
        new_session()[0].leg("C")


# --- dead media -------------------------------------------------------------------------


def test_media_dead_on_both_legs():
    session, a, b, _ = new_session(now=100.0)
    b.set_remote(*PHONE_B)
    assert session.idle(130.0) == 30.0  # nothing yet: counted from the opening
    assert not session.dead(159.9, 60) and session.dead(160.0, 60)
    a.receive(RTP, NAT_A, 172, 150.0)
    assert not session.dead(200.0, 60) and session.dead(210.0, 60)
    # One leg alone alive keeps the call (one-way audio is still a call).
    b.receive(RTCP, PHONE_B, 80, 205.0)
    assert not session.dead(210.0, 60)


def test_a_held_call_uses_the_hold_timeout():
    session, a, b, _ = new_session(now=0.0)
    a.set_direction("sendonly")
    b.set_direction("recvonly")
    assert session.on_hold
    assert not session.dead(3600.0, 60)  # hold_timeout None: never
    assert session.dead(3600.0, 60, hold_timeout=1800)
    a.set_direction("sendrecv")
    b.set_direction("sendrecv")
    assert session.dead(61.0, 60)
