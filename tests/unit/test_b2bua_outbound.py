"""Outside calls carried out by the B2BUA (sipd/trunks/outbound.py), without sockets:
the real routing step on the test's database (routes, trunks, policy), the caller's
and the trunks' messages written out (tests/unit/b2bua_harness.py), the clock moved.
The same against Kamailio: tests/provider/test_outbound.py."""

from __future__ import annotations

import re

import pytest

from core.models import (
    Extension,
    OutboundPolicy,
    OutboundRoute,
    OutboundRouteTrunk,
    Trunk,
    TrunkState,
)
from sipd.registrar import Source
from sipd.sip.digest import H, expected_response
from sipd.trunks.outbound import NO_RESPONSE
from tests.unit.b2bua_harness import (
    SDP,
    answer,
    invite,
    last,
    make_pbx,
    register,
    request,
    tag_of,
)

ACME = Source("127.0.0.1", 5090, "UDP")
BACKUP = Source("127.0.0.1", 5091, "UDP")
PHONE = Source("127.0.0.1", 5072, "UDP")  # 1002's


@pytest.fixture
def pbx(tmp_path):
    pbx = make_pbx(tmp_path, numbers=("1001", "1002"))
    acme = Trunk.create(name="acme", host="127.0.0.1", port=5090, username="acme1",
                        password="trunk-secret", caller_id="711111111")
    backup = Trunk.create(name="backup", host="127.0.0.1", port=5091, from_user="office",
                          caller_id_header="pai")
    route = OutboundRoute.create(name="mobile", position=1, patterns="998+9|9XXXXXXXX",
                                 caller_id="712223344")
    OutboundRouteTrunk.create(route=route, trunk=acme, position=1)
    OutboundRouteTrunk.create(route=route, trunk=backup, position=2)
    emergency = OutboundRoute.create(name="emergency", position=0, patterns="10[1-4]",
                                     emergency=True)
    OutboundRouteTrunk.create(route=emergency, trunk=acme, position=1)
    OutboundPolicy.insert(id=1, home_country="998").on_conflict_replace().execute()
    pbx.sent.clear()
    yield pbx
    pbx.stack.database.close()


def invites_to(pbx, host_port: str) -> list[bytes]:
    return [m for m in pbx.sent if m.startswith(b"INVITE ") and host_port.encode()
            in m.split(b"\r\n", 1)[0]]


def header(message: bytes, name: str) -> str | None:
    found = re.search(rb"\r\n" + name.encode() + rb": ([^\r]*)", message)
    return found.group(1).decode() if found else None


def challenge(to: bytes, status: str, kind: str, nonce: str = "n1") -> str:
    response = answer(to, status, contact=ACME, user="998901234567")
    return response.replace("Content-Length:", f'{kind}: Digest realm="carrier.test",'
                            f'nonce="{nonce}",qop="auth",algorithm=MD5\r\nContent-Length:', 1)


def test_failover_digest_caller_id_and_history(pbx):
    invite(pbx, target="9901234567")
    (first,) = invites_to(pbx, "@127.0.0.1:5090")
    # The number as the route rewrote it, the route's caller ID in From.
    assert first.startswith(b"INVITE sip:998901234567@127.0.0.1:5090 SIP/2.0\r\n")
    assert header(first, "From").startswith("<sip:712223344@127.0.0.1:5090>;tag=")
    assert header(first, "To") == "<sip:998901234567@127.0.0.1:5090>"
    assert header(first, "P-Asserted-Identity") is None
    # RFC 3262 §4: we PRACK reliable 18x; RFC 4028 §7.1: the session timer offered.
    assert header(first, "Supported") == "100rel, timer"
    # acme challenges: answered with its credentials, CSeq 2, same Call-ID and tag.
    pbx.handle(challenge(first, "407 Proxy Authentication Required", "Proxy-Authenticate"),
               ACME)
    second = invites_to(pbx, "@127.0.0.1:5090")[-1]
    assert header(second, "CSeq") == "2 INVITE"
    assert header(second, "Call-ID") == header(first, "Call-ID")
    assert tag_of(second, b"From") == tag_of(first, b"From")
    credentials = header(second, "Proxy-Authorization")
    assert 'username="acme1"' in credentials and 'realm="carrier.test"' in credentials
    cnonce = re.search(r'cnonce="([^"]+)"', credentials).group(1)
    key = H("MD5", "acme1:carrier.test:trunk-secret")
    expected = expected_response("MD5", key, "n1", "INVITE", "sip:998901234567@127.0.0.1:5090",
                                 "auth", "00000001", cnonce)
    assert f'response="{expected}"' in credentials
    # acme then fails (503): the next trunk, caller ID in P-Asserted-Identity.
    pbx.handle(answer(second, "503 Service Unavailable", contact=ACME), ACME)
    (third,) = invites_to(pbx, "@127.0.0.1:5091")
    assert header(third, "From").startswith("<sip:office@127.0.0.1:5091>;tag=")
    assert header(third, "P-Asserted-Identity") == "<sip:712223344@127.0.0.1:5091>"
    pbx.handle(answer(third, "180 Ringing", contact=BACKUP), BACKUP)
    assert last(pbx.sent, b"SIP/2.0 18").startswith(b"SIP/2.0 180")
    pbx.handle(answer(third, "200 OK", SDP, contact=BACKUP, user="998901234567"), BACKUP)
    ok = last(pbx.sent, b"SIP/2.0 200")
    assert b"INVITE" in ok.split(b"CSeq: ")[1].split(b"\r\n")[0]
    ack = last(pbx.sent, b"ACK ")
    assert header(ack, "CSeq") == "1 ACK"
    (row,) = pbx.rows()
    assert (row["direction"], row["trunk"], row["number_sent"], row["state"]) == (
        "outbound", "backup", "998901234567", "answered")
    assert pbx.calls.outbound.guard.trunk_calls == {"backup": 1}
    assert pbx.calls.outbound.guard.calls == {"1001": 1}
    # The caller hangs up: BYE to the trunk, nothing counted any more.
    pbx.handle(request("BYE", 3, "bye", to_tag=";tag=" + tag_of(ok, b"To"),
                       target="9901234567"))
    bye = last(pbx.sent, b"BYE ")
    assert bye.startswith(b"BYE sip:998901234567@127.0.0.1:5091")
    assert pbx.calls.outbound.guard.trunk_calls == {}
    assert pbx.calls.outbound.guard.calls == {}


def test_a_wrong_number_goes_back_to_the_caller(pbx):
    invite(pbx, target="9901234567")
    (first,) = invites_to(pbx, "@127.0.0.1:5090")
    pbx.handle(answer(first, "404 Not Found", contact=ACME), ACME)
    assert last(pbx.sent, b"SIP/2.0 4").startswith(b"SIP/2.0 404")
    assert invites_to(pbx, "@127.0.0.1:5091") == []
    (row,) = pbx.rows()
    assert (row["sip_status"], row["trunk"]) == (404, "acme")


def test_silence_down_and_full_trunks_are_skipped(pbx):
    invite(pbx, target="9901234567")
    pbx.advance(NO_RESPONSE + 0.1)  # acme says nothing at all: backup
    assert len(invites_to(pbx, "@127.0.0.1:5091")) == 1
    pbx.advance(NO_RESPONSE + 0.1)  # nor does backup: the caller is told
    assert last(pbx.sent, b"SIP/2.0 4").startswith(b"SIP/2.0 480")
    (row,) = pbx.rows()
    assert "acme: no response within 5 s; backup: no response within 5 s" in row["reason"]
    # acme marked down by its keep-alive, backup at its limit of 1 call.
    TrunkState.create(trunk=Trunk.get(name="acme"), status="down", reachable=False)
    Trunk.update(max_calls=1).where(Trunk.name == "backup").execute()
    pbx.calls.outbound.guard.trunk_begin("backup")
    pbx.sent.clear()
    invite(pbx, call_id="c2@test", branch="b2", target="9901234567")
    assert last(pbx.sent, b"SIP/2.0 5").startswith(
        b"SIP/2.0 503 Service Unavailable: every trunk of route mobile is at its call limit")


def test_limits_and_blocks(pbx):
    Extension.update(outbound_calls_per_hour=1).where(Extension.number == "1001").execute()
    invite(pbx, target="9901234567")
    (first,) = invites_to(pbx, "@127.0.0.1:5090")
    pbx.handle(answer(first, "486 Busy Here", contact=ACME), ACME)
    pbx.sent.clear()
    invite(pbx, call_id="c2@test", branch="b2", target="9901234567")
    assert last(pbx.sent, b"SIP/2.0 4").startswith(
        b"SIP/2.0 403 Forbidden: 1001 made 1 outside calls in the last hour, its limit")
    assert Extension.get(number="1001").outbound_blocked_at is not None
    events = pbx.rows("fraud_event")
    assert [e["rule"] for e in events] == ["calls_per_hour"]
    # Emergency still goes out, blocked or not.
    pbx.sent.clear()
    invite(pbx, call_id="c3@test", branch="b3", target="103")
    (sos,) = invites_to(pbx, "@127.0.0.1:5090")
    assert sos.startswith(b"INVITE sip:103@127.0.0.1:5090 ")
    # Blocked: refused until lifted (time alone does not lift it: test_fraud.py).
    invite(pbx, call_id="c4@test", branch="b4", target="9901234567")
    assert last(pbx.sent, b"SIP/2.0 4").startswith(b"SIP/2.0 403 Forbidden: 1001 is blocked")
    # Lifted by an admin: calls again.
    Extension.update(outbound_blocked_at=None).where(Extension.number == "1001").execute()
    pbx.sent.clear()
    invite(pbx, call_id="c5@test", branch="b5", target="9901234567")
    assert len(invites_to(pbx, "@127.0.0.1:5090")) == 1


def test_a_forward_on_no_answer_to_an_outside_number(pbx):
    register(pbx, pbx.sent, "1002", PHONE)
    Extension.update(forward_no_answer="9901234567", forward_no_answer_after=5).where(
        Extension.number == "1002").execute()
    pbx.sent.clear()
    invite(pbx, target="1002")
    (rung,) = [m for m in pbx.sent if m.startswith(b"INVITE sip:1002@")]
    pbx.handle(answer(rung, "180 Ringing", contact=PHONE), PHONE)
    pbx.advance(5.1)  # 1002 does not answer: out through the route, for 1002
    (out,) = invites_to(pbx, "@127.0.0.1:5090")
    assert out.startswith(b"INVITE sip:998901234567@127.0.0.1:5090 ")
    assert header(out, "From").startswith("<sip:712223344@")
    pbx.handle(answer(out, "200 OK", SDP, contact=ACME, user="998901234567"), ACME)
    assert last(pbx.sent, b"SIP/2.0 200")
    (row,) = pbx.rows()
    assert (row["direction"], row["trunk"], row["state"]) == ("outbound", "acme", "answered")
    assert pbx.calls.outbound.guard.calls == {"1002": 1}
