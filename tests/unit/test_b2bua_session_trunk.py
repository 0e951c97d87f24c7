"""The session timer on the trunk's leg of an outside call (RFC 4028; the B2BUA's
sipd/b2bua/session_timer.py), without sockets, on a clock the test moves: our
INVITE offers it, the provider's 2xx says who refreshes; we refresh half way with
UPDATE (or a re-INVITE where the provider has no UPDATE) and the call outlives
interval after interval; a provider that should refresh and does not has the call
ended on both legs. End to end: tests/provider/test_outbound.py."""

from __future__ import annotations

import pytest

from core.models import OutboundPolicy, OutboundRoute, OutboundRouteTrunk, Trunk
from sipd.b2bua.transfer import TRANSFEROR_GRACE
from sipd.registrar import Source
from tests.unit.b2bua_harness import (
    CALLER,
    SDP,
    answer,
    header,
    invite,
    last,
    make_pbx,
    register,
    request,
    tag_of,
)

ACME = Source("127.0.0.1", 5090, "UDP")
PHONE_1003 = Source("127.0.0.1", 5073, "UDP")
DIALLED = "9901234567"
FAR_SDP = SDP.replace("6000", "7000")


@pytest.fixture
def pbx(tmp_path):
    pbx = make_pbx(tmp_path, numbers=("1001",))
    acme = Trunk.create(name="acme", host="127.0.0.1", port=5090)
    route = OutboundRoute.create(name="mobile", position=1, patterns="998+9|9XXXXXXXX")
    OutboundRouteTrunk.create(route=route, trunk=acme, position=1)
    OutboundPolicy.insert(id=1, home_country="998").on_conflict_replace().execute()
    pbx.sent.clear()
    yield pbx
    pbx.stack.database.close()


def to_trunk(pbx, method: str) -> list[bytes]:
    return [m for m in pbx.sent if m.startswith(method.encode() + b" sip:998901234567@")]


def with_headers(response: str, *lines: str) -> str:
    return response.replace(
        "Content-Length:", "".join(f"{line}\r\n" for line in lines) + "Content-Length:", 1
    )


def answered(pbx, *lines: str) -> bytes:
    """1001 calls out; acme answers 200 with `lines` (Session-Expires, Allow); the ACKs."""
    invite(pbx, target=DIALLED)
    (ours,) = to_trunk(pbx, "INVITE")
    pbx.handle(
        with_headers(answer(ours, "200 OK", FAR_SDP, contact=ACME, user="998901234567"), *lines),
        ACME,
    )
    ok = last(pbx.sent, b"SIP/2.0 200")
    pbx.handle(request("ACK", 2, "ack2", to_tag=";tag=" + tag_of(ok, b"To"), target=DIALLED))
    return ours


def from_trunk(pbx, ours: bytes, method: str, cseq: int, *lines: str) -> None:
    """An in-dialog request of the provider's (its tag "callee", as answer() gives it)."""
    call_id = header(ours, "Call-ID")
    message = (
        f"{method} sip:1001@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bKp{method}{cseq};rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:998901234567@127.0.0.1>;tag=callee\r\n"
        f"To: {header(ours, 'From')}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n"
        f"Contact: <sip:998901234567@127.0.0.1:5090>\r\n"
        + "".join(f"{line}\r\n" for line in lines)
        + "Content-Length: 0\r\n\r\n"
    )
    pbx.handle(message, ACME)


def test_our_invite_offers_the_timer_and_we_refresh_with_update_half_way(pbx):
    ours = answered(
        pbx, "Session-Expires: 90;refresher=uac", "Allow: INVITE, ACK, BYE, CANCEL, UPDATE"
    )
    assert header(ours, "Supported") == "100rel, timer"
    assert (header(ours, "Session-Expires"), header(ours, "Min-SE")) == ("1800", "90")
    pbx.advance(44)
    assert not to_trunk(pbx, "UPDATE")
    pbx.advance(1)
    (refresh,) = to_trunk(pbx, "UPDATE")
    assert header(refresh, "Session-Expires") == "90;refresher=uac"
    assert header(refresh, "CSeq") == "2 UPDATE" and header(refresh, "Supported") == "timer"
    assert refresh.endswith(b"Content-Length: 0\r\n\r\n")  # a refresh, no offer (RFC 3311)
    # Each answered refresh starts the interval again: the call outlives many of them.
    for count in range(2, 6):
        pbx.handle(
            with_headers(
                answer(refresh, "200 OK", contact=ACME), "Session-Expires: 90;refresher=uac"
            ),
            ACME,
        )
        pbx.advance(45)
        refresh = to_trunk(pbx, "UPDATE")[-1]
        assert len(to_trunk(pbx, "UPDATE")) == count
    assert pbx.calls.calls and not [m for m in pbx.sent if m.startswith(b"BYE ")]


def test_without_update_the_refresh_is_a_reinvite_with_the_session_as_it_is(pbx):
    answered(pbx, "Session-Expires: 120;refresher=uac", "Allow: INVITE, ACK, BYE, CANCEL")
    pbx.advance(60)
    refresh = to_trunk(pbx, "INVITE")[-1]
    assert header(refresh, "CSeq") == "2 INVITE"
    assert header(refresh, "Session-Expires") == "120;refresher=uac"
    assert b"m=audio 10002 RTP/AVP 0" in refresh  # the relay's leg B, as before
    pbx.handle(
        with_headers(
            answer(refresh, "200 OK", FAR_SDP, contact=ACME), "Session-Expires: 120;refresher=uac"
        ),
        ACME,
    )
    ack = last(pbx.sent, b"ACK sip:998901234567@")
    assert header(ack, "CSeq") == "2 ACK"
    pbx.advance(60)
    assert header(to_trunk(pbx, "INVITE")[-1], "CSeq") == "3 INVITE"


def test_a_provider_that_refreshes_and_then_stops_has_the_call_ended_on_both_legs(pbx):
    ours = answered(pbx, "Session-Expires: 90;refresher=uas", "Allow: INVITE, ACK, BYE, UPDATE")
    pbx.advance(40)
    from_trunk(pbx, ours, "UPDATE", 1, "Session-Expires: 90;refresher=uac", "Supported: timer")
    ok = last(pbx.sent, b"SIP/2.0 200")
    assert header(ok, "CSeq") == "1 UPDATE"
    # Its refresh is answered as §9 wants (the refresher named from its side: uac).
    assert header(ok, "Session-Expires") == "90;refresher=uac" and header(ok, "Require") == "timer"
    assert not to_trunk(pbx, "UPDATE")  # we never refresh for it
    pbx.advance(59)
    assert pbx.calls.calls  # 99 s in: refreshed at 40, expires at 40 + 90 - 30
    pbx.advance(1)
    assert not pbx.calls.calls
    assert to_trunk(pbx, "BYE") and last(pbx.sent, b"BYE sip:1001@")
    (row,) = pbx.rows()
    assert row["reason"] == "session timer expired (90 s) on trunk acme"


def test_a_refresh_answered_481_ends_the_call(pbx):
    answered(pbx, "Session-Expires: 90;refresher=uac", "Allow: INVITE, ACK, BYE, UPDATE")
    pbx.advance(45)
    pbx.handle(
        answer(to_trunk(pbx, "UPDATE")[-1], "481 Call/Transaction Does Not Exist", contact=ACME),
        ACME,
    )
    assert not pbx.calls.calls and last(pbx.sent, b"BYE sip:1001@")
    (row,) = pbx.rows()
    assert row["reason"] == "session refresh answered 481 by trunk acme"


def test_a_refresh_that_fails_otherwise_is_sent_again_soon(pbx):
    answered(pbx, "Session-Expires: 90;refresher=uac", "Allow: INVITE, ACK, BYE, UPDATE")
    pbx.advance(45)
    pbx.handle(answer(to_trunk(pbx, "UPDATE")[-1], "500 Server Internal Error", contact=ACME), ACME)
    pbx.advance(5)
    assert len(to_trunk(pbx, "UPDATE")) == 2 and pbx.calls.calls


def test_a_422_to_our_invite_is_retried_with_the_providers_min_se(pbx):
    invite(pbx, target=DIALLED)
    (first,) = to_trunk(pbx, "INVITE")
    pbx.handle(
        with_headers(answer(first, "422 Session Interval Too Small", contact=ACME), "Min-SE: 3600"),
        ACME,
    )
    second = to_trunk(pbx, "INVITE")[-1]
    assert header(second, "CSeq") == "2 INVITE"
    assert (header(second, "Session-Expires"), header(second, "Min-SE")) == ("3600", "3600")


def test_a_2xx_without_session_expires_means_no_timer(pbx):
    answered(pbx, "Allow: INVITE, ACK, BYE, UPDATE")
    pbx.advance(2000)
    assert not to_trunk(pbx, "UPDATE") and pbx.calls.calls


def test_the_refreshes_go_on_when_the_caller_transfers_the_outside_party(tmp_path):
    """1001 hands its outside call to 1003 (a blind transfer, RFC 3515): the trunk's
    leg moves to the new call, its session timer with it, and the refreshes go on
    after 1001's call is over."""
    pbx = make_pbx(tmp_path, numbers=("1001", "1003"))
    acme = Trunk.create(name="acme", host="127.0.0.1", port=5090)
    route = OutboundRoute.create(name="mobile", position=1, patterns="998+9|9XXXXXXXX")
    OutboundRouteTrunk.create(route=route, trunk=acme, position=1)
    OutboundPolicy.insert(id=1, home_country="998").on_conflict_replace().execute()
    register(pbx, pbx.sent, "1003", PHONE_1003)
    pbx.sent.clear()
    answered(pbx, "Session-Expires: 90;refresher=uac", "Allow: INVITE, ACK, BYE, UPDATE")
    to_tag = ";tag=" + tag_of(last(pbx.sent, b"SIP/2.0 200"), b"To")
    pbx.handle(request("REFER", 3, "ref3", to_tag=to_tag, target=DIALLED,
                       extra="Refer-To: <sip:1003@127.0.0.1>\r\n"
                             "Referred-By: <sip:1001@127.0.0.1>\r\n"))
    assert last(pbx.sent, b"SIP/2.0 202")
    ringing = last(pbx.sent, b"INVITE sip:1003@")
    pbx.handle(answer(ringing, "200 OK", SDP, contact=PHONE_1003, user="1003"), PHONE_1003)
    moved = to_trunk(pbx, "INVITE")[-1]  # the trunk's audio moves to 1003's call
    assert header(moved, "CSeq") == "2 INVITE"
    pbx.handle(answer(moved, "200 OK", FAR_SDP, contact=ACME), ACME)
    notify = last(pbx.sent, b"NOTIFY sip:1001@")  # 200 OK: the transfer is done
    pbx.handle(answer(notify, "200 OK", contact=CALLER, user="1001"))
    pbx.advance(TRANSFEROR_GRACE)
    bye = last(pbx.sent, b"BYE sip:1001@")  # 1001's part is over
    pbx.handle(answer(bye, "200 OK", contact=CALLER, user="1001"))
    assert [r["state"] for r in pbx.rows()] == ["ended", "answered"]
    pbx.advance(45 - TRANSFEROR_GRACE)
    (refresh,) = to_trunk(pbx, "UPDATE")
    assert header(refresh, "CSeq") == "3 UPDATE"
    pbx.handle(with_headers(answer(refresh, "200 OK", contact=ACME),
                            "Session-Expires: 90;refresher=uac"), ACME)
    pbx.advance(45)
    assert len(to_trunk(pbx, "UPDATE")) == 2
    pbx.stack.database.close()
