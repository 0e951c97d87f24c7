"""The session timer on the caller's leg, where we are the UAS (RFC 4028 §9, §10;
sipd/sip/extensions.py `answering`, sipd/b2bua/session_timer.py), without sockets,
on a clock the test moves. §9's table decides who refreshes: the refresher the
caller names is copied into our 2xx; none named, the caller refreshes; a caller
that does not support the timer (a proxy's Session-Expires) leaves it to us.
When it is us, we refresh half way through the interval (§10) with UPDATE, or a
re-INVITE where the caller does not allow UPDATE; a caller's refresh may hand
the refreshing over either way. End to end with Kamailio as the provider:
tests/provider/test_inbound_session_timer.py."""

from __future__ import annotations

import pytest

from sipd.sip.extensions import SessionExpires, answering
from sipd.sip.message import Request, parse
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
ALLOW_UPDATE = "Allow: INVITE, ACK, BYE, CANCEL, UPDATE\r\n"


def parsed(*lines: str) -> Request:
    return parse(
        (
            "INVITE sip:1002@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bKa\r\n"
            "From: <sip:1001@127.0.0.1>;tag=a\r\nTo: <sip:1002@127.0.0.1>\r\nCall-ID: n@test\r\n"
            "CSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
            + "".join(f"{line}\r\n" for line in lines)
            + "Content-Length: 0\r\n\r\n"
        ).encode()
    )


# §9, table 2: (UAC supports the timer?, refresher in the request) -> refresher in the 2xx.
@pytest.mark.parametrize(
    ("lines", "settled"),
    [
        (("Supported: timer", "Session-Expires: 90;refresher=uac"), SessionExpires(90, "uac")),
        (("Supported: timer", "Session-Expires: 90;refresher=uas"), SessionExpires(90, "uas")),
        (("Supported: timer", "Session-Expires: 1800"), SessionExpires(1800, "uac")),
        (("Require: timer", "Session-Expires: 600;refresher=UAS"), SessionExpires(600, "uas")),
        # A proxy's Session-Expires for a caller without the timer: only we can refresh.
        (("Session-Expires: 1800",), SessionExpires(1800, "uas")),
        (("Session-Expires: 1800;refresher=uac",), SessionExpires(1800, "uas")),
        (("Supported: 100rel", "Session-Expires: 90"), SessionExpires(90, "uas")),
        # No Session-Expires: no session timer, whatever it supports.
        (("Supported: timer",), None),
        ((), None),
    ],
)
def test_our_2xx_names_the_refresher_as_section_9_says(lines, settled):
    assert answering(parsed(*lines)) == settled


def test_a_malformed_session_expires_is_an_error_not_a_timer():
    with pytest.raises(ValueError):
        answering(parsed("Supported: timer", "Session-Expires: soon"))


@pytest.fixture
def pbx(tmp_path):
    pbx = make_pbx(tmp_path)
    register_callee(pbx, pbx.sent)
    pbx.sent.clear()
    yield pbx
    pbx.stack.database.close()


def answered(pbx, extra: str) -> str:
    """1001 calls 1002 with `extra` headers; 1002 answers; 1001 ACKs. Our 2xx's To tag."""
    invite(pbx, extra=extra)
    ours = last(pbx.sent, b"INVITE sip:1002@")
    pbx.handle(answer(ours, "200 OK", ANSWER), CALLEE)
    ok = last(pbx.sent, b"SIP/2.0 200")
    to_tag = ";tag=" + tag_of(ok, b"To")
    pbx.handle(request("ACK", 2, "ack2", to_tag=to_tag), CALLER)
    return to_tag


def to_caller(pbx, method: str) -> list[bytes]:
    return [m for m in pbx.sent if m.startswith(method.encode() + b" sip:1001@")]


def ok_to_caller(pbx) -> bytes:
    (ok,) = [m for m in pbx.sent if m.startswith(b"SIP/2.0 200") and b"CSeq: 2 INVITE" in m]
    return ok


def test_a_caller_that_names_us_gets_our_updates_half_way_and_the_call_goes_on(pbx):
    answered(pbx, "Supported: timer\r\nSession-Expires: 90;refresher=uas\r\n" + ALLOW_UPDATE)
    ok = ok_to_caller(pbx)
    assert header(ok, "Session-Expires") == "90;refresher=uas"  # §9: copied
    assert header(ok, "Require") == "timer"  # §9: SHOULD, the caller supports it
    pbx.advance(44)
    assert not to_caller(pbx, "UPDATE")
    pbx.advance(1)
    (refresh,) = to_caller(pbx, "UPDATE")
    # §10: we are the refresh's UAC and its refresher; no offer in an UPDATE refresh.
    assert header(refresh, "Session-Expires") == "90;refresher=uac"
    assert header(refresh, "Supported") == "timer" and header(refresh, "CSeq") == "1 UPDATE"
    assert refresh.endswith(b"Content-Length: 0\r\n\r\n")
    for count in range(2, 5):
        pbx.handle(answer(refresh, "200 OK", contact=CALLER, user="1001"), CALLER)
        pbx.advance(45)
        refresh = to_caller(pbx, "UPDATE")[-1]
        assert len(to_caller(pbx, "UPDATE")) == count
    # Far beyond the first interval: nobody was hung up on.
    assert pbx.calls.calls and not [m for m in pbx.sent if m.startswith(b"BYE ")]


def test_a_proxys_session_expires_for_a_caller_without_the_timer_is_refreshed_by_reinvite(pbx):
    # No Supported: timer and no UPDATE in Allow (a proxy asked for the timer).
    answered(pbx, "Session-Expires: 120\r\nAllow: INVITE, ACK, BYE, CANCEL\r\n")
    ok = ok_to_caller(pbx)
    assert header(ok, "Session-Expires") == "120;refresher=uas"
    assert header(ok, "Require") is None  # it would not understand one (§9)
    pbx.advance(60)
    (refresh,) = to_caller(pbx, "INVITE")
    assert header(refresh, "CSeq") == "1 INVITE"
    assert b"m=audio 10000 RTP/AVP 0" in refresh  # the session as it stands: leg A's
    pbx.handle(answer(refresh, "200 OK", SDP, contact=CALLER, user="1001"), CALLER)
    assert header(last(pbx.sent, b"ACK sip:1001@"), "CSeq") == "1 ACK"
    pbx.advance(60)
    assert header(to_caller(pbx, "INVITE")[-1], "CSeq") == "2 INVITE"
    assert pbx.calls.calls


def test_a_refresh_the_caller_answers_481_ends_the_call(pbx):
    answered(pbx, "Supported: timer\r\nSession-Expires: 90;refresher=uas\r\n" + ALLOW_UPDATE)
    pbx.advance(45)
    (refresh,) = to_caller(pbx, "UPDATE")
    pbx.handle(answer(refresh, "481 Call/Transaction Does Not Exist", contact=CALLER,
                      user="1001"), CALLER)
    assert not pbx.calls.calls
    assert last(pbx.sent, b"BYE sip:1002@")
    (row,) = pbx.rows()
    assert row["reason"] == "session refresh answered 481 by the caller"


def test_a_refresh_answered_422_is_sent_again_with_the_callers_minimum(pbx):
    answered(pbx, "Supported: timer\r\nSession-Expires: 90;refresher=uas\r\n" + ALLOW_UPDATE)
    pbx.advance(45)
    (refresh,) = to_caller(pbx, "UPDATE")
    pbx.handle(answer(refresh, "422 Session Interval Too Small", contact=CALLER,
                      user="1001").replace("Content-Length", "Min-SE: 300\r\nContent-Length"),
               CALLER)
    again = to_caller(pbx, "UPDATE")[-1]
    assert header(again, "Session-Expires") == "300;refresher=uac"
    assert header(again, "CSeq") == "2 UPDATE" and pbx.calls.calls


def test_the_callers_refresh_hands_the_refreshing_back_to_it(pbx):
    to_tag = answered(
        pbx, "Supported: timer\r\nSession-Expires: 90;refresher=uas\r\n" + ALLOW_UPDATE)
    pbx.advance(30)
    # Its own refresh names itself (refresher=uac of its UPDATE): §9, our 2xx copies it.
    pbx.handle(request("UPDATE", 3, "up3", to_tag=to_tag,
                       extra="Supported: timer\r\nSession-Expires: 90;refresher=uac\r\n"), CALLER)
    # (An UPDATE without SDP is answered here, not passed on: RFC 3311 §5.2.)
    refresh_ok = last(pbx.sent, b"SIP/2.0 200")
    assert b"CSeq: 3 UPDATE" in refresh_ok
    assert header(refresh_ok, "Session-Expires") == "90;refresher=uac"
    pbx.advance(59)
    assert not to_caller(pbx, "UPDATE") and pbx.calls.calls  # not ours to refresh now
    pbx.advance(1)  # 90 s after its refresh, less §10's 30 s: no refresh came
    assert not pbx.calls.calls
    (row,) = pbx.rows()
    assert row["reason"] == "session timer expired (90 s)"


def test_the_callers_refresh_may_hand_the_refreshing_to_us(pbx):
    to_tag = answered(
        pbx, "Supported: timer\r\nSession-Expires: 90;refresher=uac\r\n" + ALLOW_UPDATE)
    assert header(ok_to_caller(pbx), "Session-Expires") == "90;refresher=uac"
    pbx.advance(40)
    pbx.handle(request("UPDATE", 3, "up3", to_tag=to_tag,
                       extra="Supported: timer\r\nSession-Expires: 90;refresher=uas\r\n"), CALLER)
    assert header(last(pbx.sent, b"SIP/2.0 200"), "Session-Expires") == "90;refresher=uas"
    pbx.advance(45)
    (refresh,) = to_caller(pbx, "UPDATE")
    assert header(refresh, "Session-Expires") == "90;refresher=uac"
    pbx.handle(answer(refresh, "200 OK", contact=CALLER, user="1001"), CALLER)
    pbx.advance(60)
    assert pbx.calls.calls and len(to_caller(pbx, "UPDATE")) == 2
