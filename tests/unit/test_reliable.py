"""Reliable provisional responses (RFC 3262) in the sans-IO core: RSeq and RAck
(§7), the UAS's retransmissions on a clock the test moves (§3) and the UAC's
choice of what to PRACK (§4)."""

from __future__ import annotations

import pytest

from sipd.sip.message import Headers, Request, Response, parse
from sipd.sip.reliable import Acknowledger, Provisionals, RAck, rack, reliable, rseq, wanted
from sipd.sip.transaction import T1

INVITE = (
    b"INVITE sip:1002@127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK1\r\n"
    b"From: <sip:1001@127.0.0.1>;tag=a\r\nTo: <sip:1002@127.0.0.1>\r\n"
    b"Call-ID: c@test\r\nCSeq: 7 INVITE\r\n"
)


def invite(extra: bytes = b"") -> Request:
    return parse(INVITE + extra + b"Content-Length: 0\r\n\r\n")


def provisional(status: int, body: bytes = b"", extra=()) -> Response:
    headers = Headers([("To", "<sip:1002@127.0.0.1>;tag=b"), ("CSeq", "7 INVITE"), *extra])
    return Response(headers=headers, status=status, reason="x", body=body)


# -- the headers (§7) ----------------------------------------------------------------------


def test_rseq_and_rack_are_read_and_malformed_ones_refused():
    assert rseq(" 988789 ") == 988789 and rseq(None) is None
    assert rack("776656 1 INVITE") == RAck(776656, 1, "INVITE")
    assert str(RAck(776656, 1, "INVITE")) == "776656 1 INVITE"
    for bad in ("0", "4294967296", "x", ""):
        with pytest.raises(ValueError):
            rseq(bad)
    for bad in (None, "1 INVITE", "1 2", "a 1 INVITE", "1 2 INVITE x"):
        with pytest.raises(ValueError):
            rack(bad)


def test_what_the_caller_wants_comes_from_require_then_supported():
    assert wanted(invite(b"Require: 100rel\r\n")) == "require"
    assert wanted(invite(b"Supported: timer, 100rel\r\n")) == "supported"
    assert wanted(invite(b"Supported: timer\r\n")) is None


# -- the UAS (§3) --------------------------------------------------------------------------


def test_a_reliable_1xx_is_retransmitted_t1_doubling_until_its_prack():
    uas = Provisionals("require", 7, first_rseq=100)
    sent = uas.send(provisional(180), now=0.0)
    assert sent.headers.get("Require") == "100rel" and sent.headers.get("RSeq") == "100"
    times = []
    now = 0.0
    while now < 10:
        now = uas.deadline
        if uas.due(now) is not None:
            times.append(now)
    # T1, then 2, 4, 8 T1 later: no T2 cap, unlike a 2xx (§3).
    assert times == [T1, 3 * T1, 7 * T1, 15 * T1, 31 * T1]
    assert uas.prack(RAck(100, 7, "INVITE"), now) == (True, None)
    assert uas.deadline is None and uas.due(now + 100) is None


def test_64_t1_without_a_prack_expires():
    uas = Provisionals("require", 7, first_rseq=1)
    uas.send(provisional(180), now=0.0)
    assert not uas.expired(64 * T1 - 0.01)
    assert uas.expired(64 * T1)


def test_over_a_reliable_transport_nothing_is_resent_but_the_limit_holds():
    uas = Provisionals("require", 7, retransmit=False, first_rseq=1)
    uas.send(provisional(180), now=0.0)
    assert uas.deadline == 64 * T1
    assert uas.due(64 * T1) is None and uas.expired(64 * T1)


def test_a_prack_for_another_rseq_cseq_or_method_matches_nothing():
    uas = Provisionals("require", 7, first_rseq=5)
    uas.send(provisional(183, b"v=0\r\n"), now=0.0)
    for wrong in (RAck(6, 7, "INVITE"), RAck(5, 8, "INVITE"), RAck(5, 7, "BYE")):
        assert uas.prack(wrong, 1.0) == (False, None)
    assert uas.prack(RAck(5, 7, "INVITE"), 1.0)[0]
    assert uas.prack(RAck(5, 7, "INVITE"), 1.0) == (False, None)  # acknowledged already


def test_the_next_reliable_1xx_waits_for_the_prack_and_is_one_higher():
    uas = Provisionals("require", 7, first_rseq=41)
    assert uas.send(provisional(180), 0.0).headers.get("RSeq") == "41"
    assert uas.send(provisional(183, b"v=0\r\n"), 0.1) is None
    assert uas.send(provisional(180), 0.2) is None  # never instead of the one with SDP
    matched, next_one = uas.prack(RAck(41, 7, "INVITE"), 0.3)
    assert matched and next_one.status == 183 and next_one.headers.get("RSeq") == "42"
    assert uas.deadline == pytest.approx(0.3 + T1)


def test_a_2xx_is_held_until_the_prack_and_a_non_2xx_is_not():
    uas = Provisionals("supported", 7, first_rseq=1)
    assert not uas.wants(provisional(180)) and uas.wants(provisional(183, b"v=0\r\n"))
    uas.send(provisional(183, b"v=0\r\n"), 0.0)
    ok = provisional(200)
    assert uas.hold(ok) and uas.released() is None
    uas.prack(RAck(1, 7, "INVITE"), 1.0)
    assert uas.released() is ok and not uas.wants(provisional(183, b"v=0\r\n"))

    refused = Provisionals("require", 7, first_rseq=1)
    refused.send(provisional(180), 0.0)
    assert not refused.hold(provisional(486)) and refused.deadline is None


def test_a_2xx_with_nothing_outstanding_goes_at_once():
    uas = Provisionals("require", 7)
    assert not uas.hold(provisional(200))


# -- the UAC (§4) --------------------------------------------------------------------------


def test_the_uac_pracks_in_order_and_drops_retransmissions_and_gaps():
    uac = Acknowledger()
    first = provisional(183, extra=[("Require", "100rel"), ("RSeq", "9")])
    assert reliable(first) and not reliable(provisional(180))
    assert uac.accept(first, "b") == RAck(9, 7, "INVITE")
    assert uac.accept(first, "b") is None  # a retransmission: PRACKed already
    gap = provisional(180, extra=[("Require", "100rel"), ("RSeq", "11")])
    assert uac.accept(gap, "b") is None
    following = provisional(180, extra=[("Require", "100rel"), ("RSeq", "10")])
    assert uac.accept(following, "b") == RAck(10, 7, "INVITE")
    # Another early dialog (a fork behind a proxy) keeps its own sequence.
    assert uac.accept(gap, "other") == RAck(11, 7, "INVITE")
    with pytest.raises(ValueError):
        uac.accept(provisional(180, extra=[("Require", "100rel")]), "c")


def test_a_reliable_1xx_with_sdp_is_known_sent_then_acknowledged():
    # RFC 3311 §5.1: an UPDATE with an offer may follow the PRACK of the 1xx
    # that carried the answer, not a PRACK of one without SDP.
    core = Provisionals("require", 7, first_rseq=1)
    core.send(provisional(180), 0.0)
    assert not core.sdp_sent
    core.send(provisional(183, b"v=0\r\n"), 0.0)  # waits for the 180's PRACK
    assert not core.sdp_sent
    assert core.prack(RAck(1, 7, "INVITE"), 0.1)[1].status == 183
    assert core.sdp_sent and not core.sdp_acked
    assert core.prack(RAck(2, 7, "INVITE"), 0.2)[0]
    assert core.sdp_acked
