"""Requests within early dialogs through the B2BUA, without sockets: UPDATE (RFC
3311) from the callee or the caller before the 2xx, and the offer/answer of a
PRACK (RFC 3262 §5). End to end with sipp: tests/sip/test_prack.py.

An UPDATE with an offer on an early dialog whose INVITE offer/answer is complete
(the answer in a reliable 18x, §5.1) is relayed to the other phone when that
phone's early dialog takes an UPDATE (it allows UPDATE, its own offer/answer is
complete), else answered here with what the other phone already uses (so that
nothing changes for it), or refused 488 when that cannot be; 491 and 500 with
Retry-After as §5.2 has them; an UPDATE without SDP gets 200.
"""

from __future__ import annotations

import re

import pytest

from sipd.sip.sdp import SessionDescription
from tests.unit.b2bua_harness import (
    CALLEE,
    CALLER,
    answer,
    header,
    invite,
    last,
    make_pbx,
    register_callee,
    request,
    tag_of,
)

# The caller offers both laws and telephone-event, the callee's early answer
# takes PCMU and telephone-event.
OFFER = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
         "m=audio 6000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n"
         "a=sendrecv\r\n")
EARLY = ("v=0\r\no=- 2 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
         "m=audio 7000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
         "a=sendrecv\r\n")
ALLOW = "Allow: INVITE, ACK, CANCEL, BYE, PRACK, UPDATE\r\n"


@pytest.fixture
def pbx(tmp_path):
    pbx = make_pbx(tmp_path)
    register_callee(pbx, pbx.sent)
    pbx.sent.clear()
    yield pbx
    pbx.stack.database.close()


def reliable(response: str, rseq: int, allow: str = ALLOW) -> str:
    return response.replace(
        "Content-Length:", f"Require: 100rel\r\nRSeq: {rseq}\r\n{allow}Content-Length:", 1)


def formats(message: bytes) -> tuple[int, list[str]]:
    """The audio port and formats of a message's SDP."""
    stream = SessionDescription.parse(message.split(b"\r\n\r\n", 1)[1]).streams()[0]
    return stream.port, list(stream.formats)


def from_callee(ours: bytes, method: str, cseq: int, body: str = "", extra: str = "",
                tag: str = "callee") -> str:
    """A request of the callee's within the early dialog of its 18x to our INVITE `ours`."""
    return (f"{method} sip:1001@127.0.0.1:5060 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKu{method}{cseq};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: {header(ours, 'To')};tag={tag}\r\n"
            f"To: {header(ours, 'From')}\r\nCall-ID: {header(ours, 'Call-ID')}\r\n"
            f"CSeq: {cseq} {method}\r\nContact: <sip:1002@127.0.0.1:5070>\r\n" + extra
            + ("Content-Type: application/sdp\r\n" if body else "")
            + f"Content-Length: {len(body)}\r\n\r\n{body}")


def ringing_early(pbx, caller_extra: str = "", callee_reliable: bool = True,
                  callee_allow: str = ALLOW) -> bytes:
    """1001 calls 1002, whose 183 brings its early media (reliably: our PRACK
    goes, and its 200 comes back). Our INVITE to 1002."""
    invite(pbx, body=OFFER, extra=caller_extra)
    ours = last(pbx.sent, b"INVITE sip:1002@")
    early = answer(ours, "183 Session Progress", EARLY)
    if callee_reliable:
        early = reliable(early, 1, callee_allow)
        pbx.handle(early, CALLEE)
        ack = last(pbx.sent, b"PRACK ")
        pbx.handle(answer(ack, "200 OK"), CALLEE)
    else:
        pbx.handle(early, CALLEE)
    return ours


def caller_prack(pbx, cseq: int = 3, body: str = "") -> bytes:
    """The caller PRACKs our reliable 18x; our response to it."""
    provisional = last(pbx.sent, b"SIP/2.0 18")
    pbx.handle(request("PRACK", cseq, f"p{cseq}", body=body,
                       extra=f"RAck: {header(provisional, 'RSeq')} 2 INVITE\r\n",
                       to_tag=";tag=" + tag_of(provisional, b"To")), CALLER)
    return pbx.sent[-1]


def from_caller(pbx, method: str, cseq: int, body: str = "") -> bytes:
    provisional = last(pbx.sent, b"SIP/2.0 18")
    pbx.handle(request(method, cseq, f"{method}{cseq}", body=body,
                       to_tag=";tag=" + tag_of(provisional, b"To")), CALLER)
    return pbx.sent[-1]


CALLER_100REL = "Require: 100rel\r\n" + ALLOW


# -- from the callee (we are the UAC of its INVITE) -------------------------------------------


def test_an_update_without_sdp_on_the_callees_early_dialog_gets_200(pbx):
    ours = ringing_early(pbx)
    pbx.handle(from_callee(ours, "UPDATE", 1, extra="Session-Expires: 1800\r\n"), CALLEE)
    ok = pbx.sent[-1]
    assert ok.startswith(b"SIP/2.0 200"), ok
    assert header(ok, "CSeq") == "1 UPDATE" and header(ok, "Content-Length") == "0"
    assert header(ok, "Contact")
    # Its CSeq is the early dialog's now: one that does not go up is refused (§12.2.2).
    pbx.handle(from_callee(ours, "UPDATE", 1).replace("UPDATE1", "again"), CALLEE)
    assert pbx.sent[-1].startswith(b"SIP/2.0 500"), pbx.sent[-1]


def test_the_callees_early_offer_is_answered_here_for_a_caller_without_100rel(pbx):
    ours = ringing_early(pbx)  # the caller gets the 183 unreliably: no UPDATE to it
    new = EARLY.replace("7000", "7100").replace("0 101", "8 0 101")
    pbx.handle(from_callee(ours, "UPDATE", 1, new), CALLEE)
    ok = pbx.sent[-1]
    assert ok.startswith(b"SIP/2.0 200"), ok
    # The relay's leg B; only what the caller already has with the callee
    # (PCMU, telephone-event): nothing changes for the caller.
    assert formats(ok) == (10002, ["0", "101"])
    assert not [m for m in pbx.sent if m.startswith(b"UPDATE ")]
    # An offer without anything the caller uses cannot be answered so: 488.
    g729 = EARLY.replace("0 101", "18")
    pbx.handle(from_callee(ours, "UPDATE", 2, g729), CALLEE)
    assert pbx.sent[-1].startswith(b"SIP/2.0 488"), pbx.sent[-1]
    # The call goes on: answered, bridged.
    pbx.handle(answer(ours, "200 OK", new), CALLEE)
    assert header(last(pbx.sent, b"SIP/2.0 200"), "CSeq") == "2 INVITE"


def test_the_callees_early_offer_is_relayed_to_a_caller_whose_early_dialog_takes_it(pbx):
    ours = ringing_early(pbx, CALLER_100REL)
    assert caller_prack(pbx).startswith(b"SIP/2.0 200")
    new = EARLY.replace("7000", "7100").replace("0 101", "8 101")
    pbx.handle(from_callee(ours, "UPDATE", 1, new), CALLEE)
    relayed = last(pbx.sent, b"UPDATE ")
    # To the caller's Contact, in its early dialog (our tag, its tag), our first
    # request in it; the offer on the relay's leg A.
    assert relayed.startswith(b"UPDATE sip:1001@127.0.0.1:5061 SIP/2.0"), relayed
    assert header(relayed, "CSeq") == "1 UPDATE" and tag_of(relayed, b"To") == "from-1001"
    assert formats(relayed) == (10000, ["8", "101"])
    # A second offer of the callee's while the first waits for our answer: 500
    # with Retry-After (§5.2).
    pbx.handle(from_callee(ours, "UPDATE", 2, new), CALLEE)
    busy = pbx.sent[-1]
    assert busy.startswith(b"SIP/2.0 500") and 0 <= int(header(busy, "Retry-After")) <= 10
    # The caller offering meanwhile: glare, 491 (§5.2).
    assert from_caller(pbx, "UPDATE", 4, OFFER).startswith(b"SIP/2.0 491")
    # The caller's answer goes back to the callee, on the relay's leg B.
    pbx.handle(answer(relayed, "200 OK", OFFER.replace("0 8 101", "8 101"), tag="from-1001",
                      contact=CALLER, user="1001"), CALLER)
    ok = last(pbx.sent, b"SIP/2.0 200")
    assert header(ok, "CSeq") == "1 UPDATE" and formats(ok) == (10002, ["8", "101"])
    # And the call is answered as any other.
    pbx.handle(answer(ours, "200 OK", new), CALLEE)
    assert header(last(pbx.sent, b"SIP/2.0 200"), "CSeq") == "2 INVITE"


def test_an_offer_before_the_callees_early_answer_gets_491(pbx):
    invite(pbx, body=OFFER)
    ours = last(pbx.sent, b"INVITE sip:1002@")
    pbx.handle(reliable(answer(ours, "180 Ringing"), 1), CALLEE)  # reliable, no answer
    pbx.handle(from_callee(ours, "UPDATE", 1, EARLY), CALLEE)
    assert pbx.sent[-1].startswith(b"SIP/2.0 491"), pbx.sent[-1]


def test_an_update_on_an_early_dialog_of_an_unreliable_18x(pbx):
    ours = ringing_early(pbx, callee_reliable=False)
    pbx.handle(from_callee(ours, "UPDATE", 1), CALLEE)
    assert pbx.sent[-1].startswith(b"SIP/2.0 200"), pbx.sent[-1]
    # §5.1: no offer before the INVITE's answer came reliably; ours waits (§5.2).
    pbx.handle(from_callee(ours, "UPDATE", 2, EARLY), CALLEE)
    assert pbx.sent[-1].startswith(b"SIP/2.0 491"), pbx.sent[-1]


# -- from the caller (we are the UAS of its INVITE) -------------------------------------------


def test_the_callers_early_offer_is_answered_here_when_the_callee_takes_no_update(pbx):
    ringing_early(pbx, CALLER_100REL, callee_reliable=False)
    assert caller_prack(pbx).startswith(b"SIP/2.0 200")
    ok = from_caller(pbx, "UPDATE", 4, OFFER.replace("6000", "6100"))
    assert ok.startswith(b"SIP/2.0 200"), ok
    assert formats(ok) == (10000, ["0", "101"])  # leg A, what the callee uses
    assert not [m for m in pbx.sent if m.startswith(b"UPDATE ")]
    # Without SDP: a plain 200.
    ok = from_caller(pbx, "UPDATE", 5)
    assert ok.startswith(b"SIP/2.0 200") and header(ok, "Content-Length") == "0"


def test_the_callers_early_offer_is_relayed_on_the_callees_early_dialog(pbx):
    ours = ringing_early(pbx, CALLER_100REL)
    caller_prack(pbx)
    from_caller(pbx, "UPDATE", 4, OFFER.replace("0 8 101", "8 101"))
    relayed = last(pbx.sent, b"UPDATE ")
    # On the callee's early dialog: its To tag, after our PRACK's CSeq.
    assert relayed.startswith(b"UPDATE sip:1002@127.0.0.1:5070 SIP/2.0"), relayed
    assert tag_of(relayed, b"To") == "callee" and header(relayed, "CSeq") == "3 UPDATE"
    assert formats(relayed) == (10002, ["8", "101"])
    pbx.handle(answer(relayed, "200 OK", EARLY.replace("0 101", "8 101")), CALLEE)
    ok = last(pbx.sent, b"SIP/2.0 200")
    assert header(ok, "CSeq") == "4 UPDATE" and formats(ok) == (10000, ["8", "101"])
    # The confirmed dialog takes over the early one's CSeq: ACK 1, BYE after 3.
    pbx.handle(answer(ours, "200 OK", EARLY), CALLEE)
    final = last(pbx.sent, b"SIP/2.0 200")
    pbx.handle(request("ACK", 2, "a2", to_tag=";tag=" + tag_of(final, b"To")), CALLER)
    pbx.handle(request("BYE", 6, "b6", to_tag=";tag=" + tag_of(final, b"To")), CALLER)
    assert header(last(pbx.sent, b"BYE sip:1002@"), "CSeq") == "4 BYE"


def test_a_callers_offer_before_our_reliable_answer_gets_500_with_retry_after(pbx):
    invite(pbx, body=OFFER, extra=CALLER_100REL)
    ours = last(pbx.sent, b"INVITE sip:1002@")
    pbx.handle(answer(ours, "180 Ringing"), CALLEE)  # our reliable 180 has no answer
    caller_prack(pbx)
    busy = from_caller(pbx, "UPDATE", 4, OFFER)
    assert busy.startswith(b"SIP/2.0 500"), busy
    assert 0 <= int(header(busy, "Retry-After")) <= 10


def test_unreadable_sdp_in_an_early_update_gets_400_class_and_nothing_breaks(pbx):
    ringing_early(pbx, CALLER_100REL, callee_reliable=False)
    caller_prack(pbx)
    bad = from_caller(pbx, "UPDATE", 4, "v=0\r\nnonsense\r\n")
    assert re.match(rb"SIP/2.0 4\d\d", bad), bad
    assert from_caller(pbx, "UPDATE", 5).startswith(b"SIP/2.0 200")


# -- the offer/answer of a PRACK (RFC 3262 §5) ------------------------------------------------


def test_a_delayed_offer_caller_requiring_100rel_gets_our_offer_in_the_first_reliable_18x(pbx):
    invite(pbx, body="", extra="Require: 100rel\r\n")
    ours = last(pbx.sent, b"INVITE sip:1002@")
    pbx.handle(answer(ours, "180 Ringing"), CALLEE)
    ringing = last(pbx.sent, b"SIP/2.0 180")
    # RFC 3261 §13.2.1: the offer in the first reliable non-failure message.
    assert header(ringing, "RSeq") and formats(ringing)[0] == 10000
    offered = formats(ringing)[1]
    # Its answer comes in the PRACK (§5), the callee then answers on leg B.
    ok = caller_prack(pbx, body=OFFER.replace("0 8 101", "0 101"))
    assert ok.startswith(b"SIP/2.0 200") and header(ok, "Content-Length") == "0"
    assert offered[:2] == ["0", "8"]
    pbx.handle(answer(ours, "200 OK", EARLY), CALLEE)
    final = last(pbx.sent, b"SIP/2.0 200")
    assert header(final, "CSeq") == "2 INVITE"
    # No offer again in the 2xx: the offer/answer is complete; the ACK has none.
    assert header(final, "Content-Length") == "0", final
    pbx.handle(request("ACK", 2, "a2", to_tag=";tag=" + tag_of(final, b"To")), CALLER)
    assert pbx.calls.calls, "the call goes on"
    assert not [m for m in pbx.sent if m.startswith(b"BYE ")]


def test_a_prack_without_the_answer_leaves_the_offer_to_the_2xx(pbx):
    invite(pbx, body="", extra="Require: 100rel\r\n")
    ours = last(pbx.sent, b"INVITE sip:1002@")
    pbx.handle(answer(ours, "180 Ringing"), CALLEE)
    assert caller_prack(pbx).startswith(b"SIP/2.0 200")
    pbx.handle(answer(ours, "200 OK", EARLY), CALLEE)
    final = last(pbx.sent, b"SIP/2.0 200")
    # The offer again, in the 2xx, its answer in the ACK (as for any delayed offer).
    assert formats(final)[0] == 10000
    pbx.handle(request("ACK", 2, "a2", body=OFFER, to_tag=";tag=" + tag_of(final, b"To")),
               CALLER)
    assert pbx.calls.calls


def test_an_offer_in_the_callers_prack_is_answered_in_the_200(pbx):
    ringing_early(pbx, CALLER_100REL, callee_reliable=False)
    ok = caller_prack(pbx, body=OFFER.replace("6000", "6200"))
    assert ok.startswith(b"SIP/2.0 200"), ok
    assert formats(ok) == (10000, ["0", "101"])


def test_a_callee_answering_another_codec_than_the_callers_prack_gets_a_reinvite(pbx):
    invite(pbx, body="", extra="Require: 100rel\r\n")
    ours = last(pbx.sent, b"INVITE sip:1002@")
    pbx.handle(answer(ours, "180 Ringing"), CALLEE)
    caller_prack(pbx, body=OFFER.replace("0 8 101", "8 101"))  # the caller takes PCMA
    pbx.handle(answer(ours, "200 OK", EARLY), CALLEE)  # the callee PCMU: no codec shared
    final = last(pbx.sent, b"SIP/2.0 200")
    assert header(final, "CSeq") == "2 INVITE" and header(final, "Content-Length") == "0"
    # The callee is offered what the caller answered (RFC 3261 §14.1), on leg B.
    reinvite = last(pbx.sent, b"INVITE sip:1002@")
    assert reinvite is not ours and header(reinvite, "CSeq") == "2 INVITE", reinvite
    assert formats(reinvite) == (10002, ["8", "101"])
    pbx.handle(answer(reinvite, "200 OK", EARLY.replace("0 101", "8 101")), CALLEE)
    assert header(last(pbx.sent, b"ACK sip:1002@"), "CSeq") == "2 ACK"
    pbx.handle(request("ACK", 2, "a2", to_tag=";tag=" + tag_of(final, b"To")), CALLER)
    assert pbx.calls.calls and not [m for m in pbx.sent if m.startswith(b"BYE ")]


def test_a_callee_refusing_the_callers_codec_ends_the_call(pbx):
    invite(pbx, body="", extra="Require: 100rel\r\n")
    ours = last(pbx.sent, b"INVITE sip:1002@")
    pbx.handle(answer(ours, "180 Ringing"), CALLEE)
    caller_prack(pbx, body=OFFER.replace("0 8 101", "8 101"))
    pbx.handle(answer(ours, "200 OK", EARLY), CALLEE)
    pbx.handle(answer(last(pbx.sent, b"INVITE sip:1002@"), "488 Not Acceptable Here"), CALLEE)
    assert not pbx.calls.calls
    assert last(pbx.sent, b"BYE sip:1002@") and last(pbx.sent, b"BYE sip:1001@")


def test_sdp_in_a_prack_before_the_invites_offer_is_answered_is_not_taken_up(pbx):
    invite(pbx, body=OFFER, extra=CALLER_100REL)
    ours = last(pbx.sent, b"INVITE sip:1002@")
    pbx.handle(answer(ours, "180 Ringing"), CALLEE)  # our reliable 180: no answer in it
    ok = caller_prack(pbx, body=OFFER.replace("6000", "6200"))
    assert ok.startswith(b"SIP/2.0 200") and header(ok, "Content-Length") == "0", ok
