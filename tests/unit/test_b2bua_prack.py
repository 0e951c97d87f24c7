"""Reliable provisional responses through the B2BUA (RFC 3262), without sockets,
on a clock the test moves: our 18x to a caller that wants 100rel (§3), and our
PRACK to a callee's or a trunk's reliable 18x (§4). End to end: the sipp
scenarios of tests/sip/test_prack.py and tests/provider/test_outbound.py."""

from __future__ import annotations

import pytest

from sipd.sip.transaction import T1
from tests.unit.b2bua_harness import (
    CALLEE,
    CALLER,
    SDP,
    answer,
    header,
    invite,
    last,
    make_pbx,
    register_callee,
    request,
    tag_of,
)

ANSWER = SDP.replace("6000", "7000")


@pytest.fixture
def pbx(tmp_path):
    pbx = make_pbx(tmp_path)
    register_callee(pbx, pbx.sent)
    pbx.sent.clear()
    yield pbx
    pbx.stack.database.close()


def to_caller(pbx, start: bytes) -> list[bytes]:
    return [m for m in pbx.sent if m.startswith(start)]


def answers(pbx) -> list[bytes]:
    """Our 2xx to the caller's INVITE."""
    return [m for m in to_caller(pbx, b"SIP/2.0 200") if header(m, "CSeq") == "2 INVITE"]


def prack(pbx, provisional: bytes, cseq: int = 3, rseq: str | None = None, branch="p"):
    rack = f"{rseq or header(provisional, 'RSeq')} 2 INVITE"
    pbx.handle(
        request(
            "PRACK",
            cseq,
            f"{branch}{cseq}",
            extra=f"RAck: {rack}\r\n",
            to_tag=";tag=" + tag_of(provisional, b"To"),
        ),
        CALLER,
    )
    return pbx.sent[-1]


# -- to the caller (§3) --------------------------------------------------------------------


def test_a_caller_requiring_100rel_gets_its_180_reliably_until_it_pracks(pbx):
    invite(pbx, extra="Require: 100rel\r\n")
    ours = last(pbx.sent, b"INVITE sip:1002@")
    pbx.handle(answer(ours, "180 Ringing"), CALLEE)
    (ringing,) = to_caller(pbx, b"SIP/2.0 180")
    assert header(ringing, "Require") == "100rel"
    rseq = int(header(ringing, "RSeq"))
    assert 1 <= rseq < 2**31
    # Retransmitted after T1, then 2*T1 later (T1 doubling, §3)...
    pbx.advance(T1)
    assert len(to_caller(pbx, b"SIP/2.0 180")) == 2
    pbx.advance(T1)
    assert len(to_caller(pbx, b"SIP/2.0 180")) == 2
    pbx.advance(T1)
    assert to_caller(pbx, b"SIP/2.0 180") == [ringing] * 3
    # ...until the PRACK, answered 200.
    ok = prack(pbx, ringing)
    assert ok.startswith(b"SIP/2.0 200") and header(ok, "CSeq") == "3 PRACK"
    pbx.advance(16)
    assert len(to_caller(pbx, b"SIP/2.0 180")) == 3
    # The callee answers: our 2xx goes at once (nothing outstanding).
    pbx.handle(answer(ours, "200 OK", ANSWER), CALLEE)
    assert header(last(pbx.sent, b"SIP/2.0 200"), "CSeq") == "2 INVITE"


def test_a_prack_for_an_rseq_we_did_not_send_gets_481(pbx):
    invite(pbx, extra="Require: 100rel\r\n")
    ours = last(pbx.sent, b"INVITE sip:1002@")
    pbx.handle(answer(ours, "180 Ringing"), CALLEE)
    ringing = last(pbx.sent, b"SIP/2.0 180")
    wrong = str(int(header(ringing, "RSeq")) + 1)
    assert prack(pbx, ringing, rseq=wrong).startswith(b"SIP/2.0 481")
    unreadable = request(
        "PRACK", 4, "p4", extra="RAck: soon\r\n", to_tag=";tag=" + tag_of(ringing, b"To")
    )
    pbx.handle(unreadable, CALLER)
    assert pbx.sent[-1].startswith(b"SIP/2.0 400 Bad Request: RAck")
    assert prack(pbx, ringing, cseq=5).startswith(b"SIP/2.0 200")


def test_the_next_18x_waits_for_the_prack_and_the_2xx_for_the_last(pbx):
    invite(pbx, extra="Require: 100rel\r\n")
    ours = last(pbx.sent, b"INVITE sip:1002@")
    pbx.handle(answer(ours, "180 Ringing"), CALLEE)
    pbx.handle(answer(ours, "183 Session Progress", ANSWER), CALLEE)
    (ringing,) = to_caller(pbx, b"SIP/2.0 18")  # the 183 waits (§3)
    prack(pbx, ringing)
    early = last(pbx.sent, b"SIP/2.0 183")
    assert int(header(early, "RSeq")) == int(header(ringing, "RSeq")) + 1
    assert header(early, "Require") == "100rel" and b"m=audio 10000" in early
    # The callee answers before the caller PRACKed the 183: our 2xx waits.
    pbx.handle(answer(ours, "200 OK", ANSWER), CALLEE)
    assert not answers(pbx)
    assert last(pbx.sent, b"ACK sip:1002@")  # the callee has its ACK meanwhile
    prack(pbx, early, cseq=4)
    (answered,) = answers(pbx)
    assert header(answered, "RSeq") is None
    # Our 2xx is retransmitted from then on until the ACK (RFC 3261 §13.3.1.4).
    pbx.advance(T1)
    assert answers(pbx) == [answered] * 2


def test_no_prack_within_64_t1_refuses_the_invite_with_500(tmp_path):
    pbx = make_pbx(tmp_path, ring_timeout=60)  # 64*T1 is 32 s, more than the default 30
    register_callee(pbx, pbx.sent)
    invite(pbx, extra="Require: 100rel\r\n")
    ours = last(pbx.sent, b"INVITE sip:1002@")
    pbx.handle(answer(ours, "180 Ringing"), CALLEE)
    for _ in range(7):
        pbx.advance(T1 * 2**_)
    assert last(pbx.sent, b"SIP/2.0 500").startswith(b"SIP/2.0 500 Server Internal Error")
    assert last(pbx.sent, b"CANCEL sip:1002@")
    assert not pbx.calls.calls
    (row,) = pbx.rows()
    assert (row["sip_status"], row["reason"]) == (
        500,
        "no PRACK for our reliable provisional response",
    )


def test_a_caller_that_only_supports_100rel_gets_its_early_media_reliably(pbx):
    invite(pbx, extra="Supported: 100rel, timer\r\n")
    ours = last(pbx.sent, b"INVITE sip:1002@")
    pbx.handle(answer(ours, "180 Ringing"), CALLEE)
    ringing = last(pbx.sent, b"SIP/2.0 180")
    assert header(ringing, "RSeq") is None and header(ringing, "Require") is None
    pbx.handle(answer(ours, "183 Session Progress", ANSWER), CALLEE)
    early = last(pbx.sent, b"SIP/2.0 183")
    assert header(early, "Require") == "100rel" and header(early, "RSeq")


def test_a_caller_without_100rel_gets_nothing_reliably(pbx):
    invite(pbx)
    ours = last(pbx.sent, b"INVITE sip:1002@")
    pbx.handle(answer(ours, "183 Session Progress", ANSWER), CALLEE)
    assert header(last(pbx.sent, b"SIP/2.0 183"), "RSeq") is None


# -- from the callee (§4) ------------------------------------------------------------------


def reliable(response: str, rseq: int) -> str:
    return response.replace(
        "Content-Length:", f"Require: 100rel\r\nRSeq: {rseq}\r\nContent-Length:", 1
    )


def test_a_reliable_18x_from_the_callee_gets_our_prack_on_its_early_dialog(pbx):
    invite(pbx)
    ours = last(pbx.sent, b"INVITE sip:1002@")
    early = reliable(answer(ours, "183 Session Progress", ANSWER), 77)
    pbx.handle(early, CALLEE)
    (sent,) = [m for m in pbx.sent if m.startswith(b"PRACK ")]
    assert sent.startswith(b"PRACK sip:1002@127.0.0.1:5070 SIP/2.0\r\n")  # its Contact
    assert header(sent, "RAck") == "77 1 INVITE" and header(sent, "CSeq") == "2 PRACK"
    assert tag_of(sent, b"To") == "callee" and tag_of(sent, b"From") == tag_of(ours, b"From")
    assert header(sent, "Call-ID") == header(ours, "Call-ID")
    assert last(pbx.sent, b"SIP/2.0 183")  # its early media reached the caller
    # A retransmission (our PRACK's transaction retransmits itself) and a gap:
    # neither PRACKed again nor passed on.
    caller_183s = len(to_caller(pbx, b"SIP/2.0 183"))
    pbx.handle(early, CALLEE)
    pbx.handle(reliable(answer(ours, "180 Ringing"), 79), CALLEE)
    assert len([m for m in pbx.sent if m.startswith(b"PRACK ")]) == 1
    assert len(to_caller(pbx, b"SIP/2.0 18")) == caller_183s
    pbx.handle(reliable(answer(ours, "180 Ringing"), 78), CALLEE)
    assert header(last(pbx.sent, b"PRACK "), "CSeq") == "3 PRACK"
    # The answer: ACK with the INVITE's CSeq; our BYE after the PRACKs' CSeq.
    pbx.handle(answer(ours, "200 OK", ANSWER), CALLEE)
    assert header(last(pbx.sent, b"ACK sip:1002@"), "CSeq") == "1 ACK"
    ok = last(pbx.sent, b"SIP/2.0 200")
    pbx.handle(request("ACK", 2, "a2", to_tag=";tag=" + tag_of(ok, b"To")), CALLER)
    pbx.handle(request("BYE", 3, "b3", to_tag=";tag=" + tag_of(ok, b"To")), CALLER)
    assert header(last(pbx.sent, b"BYE sip:1002@"), "CSeq") == "4 BYE"
