"""Delayed offer through the B2BUA (RFC 3261 §13.2.1, RFC 3264 §5), without sockets.

A caller's INVITE without SDP: the callee is offered the relay's leg B with our
own codecs, its answer (in its 2xx) becomes our offer to the caller on leg A,
and the caller's answer comes in its ACK and is applied to the relay. A
re-INVITE without SDP from either phone is answered here with an offer, its
answer in the ACK; an UPDATE without SDP (a refresh) gets 200 with none.
"""

from __future__ import annotations

import pytest

from sipd.sip.sdp import SessionDescription
from tests.unit.b2bua_harness import (
    CALLEE,
    CALLER,
    SDP,
    PortsOnly,
    answer,
    invite,
    last,
    make_pbx,
    register_callee,
    request,
    tag_of,
)

ANSWER = SDP.replace("6000", "7000").replace("RTP/AVP 0", "RTP/AVP 0 101") + (
    "a=rtpmap:101 telephone-event/8000\r\n")


class Recording(PortsOnly):
    """The stand-in relay, keeping what each leg was told."""

    def __init__(self):
        super().__init__()
        self.applied = []
        self.opened_with = []

    def open_session(self, call_id, stream=None, source=None):
        self.opened_with.append(stream)
        return super().open_session(call_id, stream, source)

    def apply_stream(self, session, leg, stream, source=None):
        self.applied.append((leg, stream.port, stream.relay_direction))


@pytest.fixture
def pbx(tmp_path):
    pbx = make_pbx(tmp_path, relay=Recording())
    register_callee(pbx, pbx.sent)
    pbx.sent.clear()
    yield pbx
    pbx.stack.database.close()


def answered_without_offer(pbx):
    """1001 calls 1002 with an INVITE without SDP; 1002 answers our offer."""
    invite(pbx, body="")
    ours = last(pbx.sent, b"INVITE sip:1002@")
    pbx.handle(answer(ours, "200 OK", ANSWER), CALLEE)
    return ours


def caller_ack(pbx, body="", cseq=2):
    ok = last(pbx.sent, b"SIP/2.0 200")
    pbx.handle(request("ACK", cseq, f"ack{cseq}", body=body,
                       to_tag=";tag=" + tag_of(ok, b"To")), CALLER)


def test_a_caller_without_offer_gets_ours_in_the_2xx_and_answers_in_the_ack(pbx):
    relay = pbx.calls.relay
    ours = answered_without_offer(pbx)
    assert relay.opened_with == [None]  # nothing to set leg A from yet
    offer = SessionDescription.parse(ours.split(b"\r\n\r\n", 1)[1])
    (stream,) = offer.streams()
    # Our own offer on leg B: G.711 both laws and telephone-event (RFC 4733).
    assert stream.port == 10002 and stream.formats == ("0", "8", "101")
    assert stream.rtpmap[101].encoding == "telephone-event"
    ok = last(pbx.sent, b"SIP/2.0 200")
    assert b"CSeq: 2 INVITE" in ok
    to_caller = SessionDescription.parse(ok.split(b"\r\n\r\n", 1)[1])
    (stream,) = to_caller.streams()
    # The callee's answer on leg A is the caller's offer: what the callee chose.
    assert stream.port == 10000 and stream.formats == ("0", "101")
    assert relay.applied == [("B", 7000, "sendrecv")]
    caller_ack(pbx, SDP.replace("sendrecv", "sendonly"))
    assert relay.applied[-1] == ("A", 6000, "sendonly")
    (call,) = pbx.calls.calls.values()
    assert call.caller.awaiting_answer is None and call.caller.direction == "sendonly"
    assert call.caller.pending_2xx is None  # the ACK stopped our retransmissions


def test_an_ack_without_the_answer_ends_the_call(pbx):
    answered_without_offer(pbx)
    caller_ack(pbx)
    assert not pbx.calls.calls
    assert last(pbx.sent, b"BYE sip:1001@")
    assert last(pbx.sent, b"BYE sip:1002@")
    (row,) = pbx.rows()
    assert row["reason"] == "caller sent no answer in its ACK"


def test_a_183_to_a_caller_without_offer_goes_as_180_without_sdp(pbx):
    invite(pbx, body="")
    ours = last(pbx.sent, b"INVITE sip:1002@")
    pbx.handle(answer(ours, "183 Session Progress", ANSWER), CALLEE)
    ringing = last(pbx.sent, b"SIP/2.0 18")
    assert ringing.startswith(b"SIP/2.0 180") and ringing.endswith(b"\r\n\r\n")


def test_early_media_of_a_183_reaches_a_caller_that_offered(pbx):
    relay = pbx.calls.relay
    invite(pbx)
    ours = last(pbx.sent, b"INVITE sip:1002@")
    pbx.handle(answer(ours, "183 Session Progress", ANSWER), CALLEE)
    early = last(pbx.sent, b"SIP/2.0 183")
    (stream,) = SessionDescription.parse(early.split(b"\r\n\r\n", 1)[1]).streams()
    assert stream.port == 10000  # the relay's leg A: the far ringback goes through it
    assert relay.applied == [("B", 7000, "sendrecv")]


def in_dialog_from_callee(pbx, method, cseq, body=""):
    ours = last(pbx.sent, b"INVITE sip:1002@")
    via = f"SIP/2.0/UDP {CALLEE.host}:{CALLEE.port};branch=z9hG4bKre{method}{cseq};rport"
    from_tag = tag_of(ours, b"From")
    call_id = [line for line in ours.split(b"\r\n") if line.startswith(b"Call-ID:")][0]
    message = (f"{method} sip:1001@127.0.0.1:5060 SIP/2.0\r\nVia: {via}\r\n"
               f"Max-Forwards: 70\r\nFrom: <sip:1002@127.0.0.1>;tag=callee\r\n"
               f"To: <sip:1001@pbx.test>;tag={from_tag}\r\n{call_id.decode()}\r\n"
               f"CSeq: {cseq} {method}\r\nContact: <sip:1002@{CALLEE.host}:{CALLEE.port}>\r\n"
               + ("Content-Type: application/sdp\r\n" if body else "")
               + f"Content-Length: {len(body)}\r\n\r\n{body}")
    pbx.handle(message, CALLEE)
    return call_id, from_tag


def test_a_reinvite_without_sdp_is_answered_here_with_an_offer(pbx):
    relay = pbx.calls.relay
    invite(pbx)
    ours = last(pbx.sent, b"INVITE sip:1002@")
    pbx.handle(answer(ours, "200 OK", ANSWER), CALLEE)
    caller_ack(pbx)
    relayed_before = len([d for d in pbx.sent if d.startswith(b"INVITE sip:1001@")])
    call_id, from_tag = in_dialog_from_callee(pbx, "INVITE", 1)
    ok = last(pbx.sent, b"SIP/2.0 200")
    assert b"CSeq: 1 INVITE" in ok
    (stream,) = SessionDescription.parse(ok.split(b"\r\n\r\n", 1)[1]).streams()
    # Leg B's port, the caller's codec: nothing changes for the caller.
    assert stream.port == 10002 and stream.formats == ("0",)
    assert len([d for d in pbx.sent if d.startswith(b"INVITE sip:1001@")]) == relayed_before
    ack = (f"ACK sip:1001@127.0.0.1:5060 SIP/2.0\r\n"
           f"Via: SIP/2.0/UDP {CALLEE.host}:{CALLEE.port};branch=z9hG4bKreack;rport\r\n"
           f"Max-Forwards: 70\r\nFrom: <sip:1002@127.0.0.1>;tag=callee\r\n"
           f"To: <sip:1001@pbx.test>;tag={from_tag}\r\n{call_id.decode()}\r\n"
           f"CSeq: 1 ACK\r\nContent-Type: application/sdp\r\n"
           f"Content-Length: {len(ANSWER)}\r\n\r\n{ANSWER.replace('7000', '7100')}")
    pbx.handle(ack, CALLEE)
    assert relay.applied[-1] == ("B", 7100, "sendrecv")
    (call,) = pbx.calls.calls.values()
    assert call.callee_leg.awaiting_answer is None and call.callee_leg.pending_2xx is None


def test_an_update_without_sdp_is_a_refresh_answered_200_without_sdp(pbx):
    invite(pbx)
    ours = last(pbx.sent, b"INVITE sip:1002@")
    pbx.handle(answer(ours, "200 OK", ANSWER), CALLEE)
    caller_ack(pbx)
    in_dialog_from_callee(pbx, "UPDATE", 2)
    ok = last(pbx.sent, b"SIP/2.0 200")
    assert b"CSeq: 2 UPDATE" in ok and ok.endswith(b"Content-Length: 0\r\n\r\n")
    assert not [d for d in pbx.sent if d.startswith(b"UPDATE sip:1001@")]


# --- extensions: 420 (RFC 3261 §8.2.2.3) and the session timer (RFC 4028) -----------------

def test_an_unknown_required_extension_gets_420_naming_it(pbx):
    invite(pbx, extra="Require: 100rel, foo, timer\r\n")
    refused = last(pbx.sent, b"SIP/2.0 420")
    assert b"\r\nUnsupported: foo\r\n" in refused  # 100rel and timer we do


def test_a_session_interval_below_90_s_gets_422_with_min_se(pbx):
    invite(pbx, extra="Supported: timer\r\nSession-Expires: 60\r\n")
    refused = last(pbx.sent, b"SIP/2.0 422")
    assert b"\r\nMin-SE: 90\r\n" in refused


def test_the_caller_refreshes_and_a_refresh_that_never_comes_ends_the_call(pbx):
    invite(pbx, extra="Supported: timer\r\nSession-Expires: 90;refresher=uac\r\n")
    ours = last(pbx.sent, b"INVITE sip:1002@")
    pbx.handle(answer(ours, "200 OK", ANSWER), CALLEE)
    ok = last(pbx.sent, b"SIP/2.0 200")
    assert b"\r\nSession-Expires: 90;refresher=uac\r\n" in ok and b"\r\nRequire: timer\r\n" in ok
    caller_ack(pbx)
    to_tag = ";tag=" + tag_of(ok, b"To")
    # A refresh (UPDATE without SDP) before the interval is up: the call goes on past it.
    pbx.advance(50)
    pbx.handle(request("UPDATE", 3, "up3", to_tag=to_tag), CALLER)
    refresh_ok = last(pbx.sent, b"SIP/2.0 200")
    assert b"CSeq: 3 UPDATE" in refresh_ok and b"Session-Expires: 90;refresher=uac" in refresh_ok
    pbx.advance(50)
    assert pbx.calls.calls  # 100 s in: beyond the first interval, refreshed
    # No refresh again: ended at 90 - 30 s after the last (§10), BYE to both.
    pbx.advance(61)
    assert not pbx.calls.calls
    assert last(pbx.sent, b"BYE sip:1001@") and last(pbx.sent, b"BYE sip:1002@")
    (row,) = pbx.rows()
    assert row["reason"] == "session timer expired (90 s)"


def test_a_2xx_without_sdp_after_early_media_keeps_the_183s_answer(pbx):
    invite(pbx)
    ours = last(pbx.sent, b"INVITE sip:1002@")
    pbx.handle(answer(ours, "183 Session Progress", ANSWER), CALLEE)
    pbx.handle(answer(ours, "200 OK"), CALLEE)
    ok = last(pbx.sent, b"SIP/2.0 200")
    (stream,) = SessionDescription.parse(ok.split(b"\r\n\r\n", 1)[1]).streams()
    assert stream.port == 10000 and pbx.calls.calls  # answered, not hung up
