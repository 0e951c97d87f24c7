"""The B2BUA in-process: a call's objects are freed when it ends, by reference
counting alone; 100 Trying only when the callee is slow.

The B2BUA (sipd.calls) driven in-process through the real Handler, registrar
and SQLite database, with the two phones played by the test (their messages
written out here) and the media relay replaced by a stand-in that only hands
out ports: what is checked is which objects the call leaves alive.

Before, every ended call stayed reachable from its transactions (RFC 6026's
32 s Accepted state) and from reference cycles among its own parts, so under
load tens of thousands of calls' objects waited for the cyclic collector,
whose full collections then took 55-75 ms each (docs/benchmarks.md).
"""

from __future__ import annotations

import gc
import re
import weakref

import gevent
import pytest

from core.config import load_settings
from core.credentials import ha1
from sipd.calls import Calls
from sipd.daemon import Registration
from sipd.media import LegPorts, MediaSession
from sipd.registrar import Source
from sipd.sip.digest import expected_response
from tests.support import database_with

REALM = "pbx.test"
PASSWORD = "Correct-Horse-42"
CALLER = Source("127.0.0.1", 5061, "UDP")
CALLEE = Source("127.0.0.1", 5070, "UDP")
SDP = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       "m=audio 6000 RTP/AVP 0\r\na=sendrecv\r\n")


class PortsOnly:
    """The relay's API as the B2BUA uses it, without a relay process."""

    address = "127.0.0.1"

    def __init__(self):
        self.opened = 0

    def open_session(self, call_id, stream=None, source=None):
        self.opened += 1
        return MediaSession(self.opened, call_id, {"A": LegPorts("A", 10000, 10001),
                                                   "B": LegPorts("B", 10002, 10003)})

    def apply_stream(self, session, leg, stream, source=None):
        pass

    def close_session(self, session, wait=True):
        return None


@pytest.fixture
def pbx(tmp_path):
    path = database_with(tmp_path / "pbx.db", ["1001", "1002"], PASSWORD, REALM)
    settings = load_settings({"PBX_DB": str(path), "PBX_REALM": REALM,
                              "PBX_SECRET_KEY": "k" * 48, "PBX_DIGEST_ALGORITHMS": "MD5"})
    stack = Registration(settings)
    sent: list[bytes] = []
    stack.handler.send = lambda data, destination: sent.append(data)
    calls = Calls(stack.registrar, PortsOnly(), stack.handler.send, stack.handler.respond,
                  "127.0.0.1", 5060, REALM, history=NoHistory())
    stack.handler.calls = calls

    def handle(data: str, source: Source) -> None:
        for out in stack.handler.handle(data.encode(), source):
            sent.append(out.data)

    yield stack, calls, sent, handle
    stack.database.close()


class NoHistory:
    def opened(self, *args):
        return 1

    def __getattr__(self, name):
        return lambda *args: None


def digest(number: str, method: str, challenge: bytes, header: str) -> str:
    nonce = re.search(rb'nonce="([^"]+)"', challenge).group(1).decode()
    key = ha1(number, REALM, PASSWORD, "MD5")
    response = expected_response("MD5", key, nonce, method, "sip:127.0.0.1:5060", "auth",
                                 "00000001", "c0ffee")
    return (f'{header}: Digest username="{number}",realm="{REALM}",nonce="{nonce}",'
            f'uri="sip:127.0.0.1:5060",response="{response}",algorithm=MD5,qop=auth,'
            f'nc=00000001,cnonce="c0ffee"\r\n')


def request(method, cseq, branch, extra="", body="", to_tag="", call_id="c1@test",
            number="1001", source=CALLER, target="1002"):
    return (f"{method} sip:{target}@127.0.0.1:5060 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {source.host}:{source.port};branch=z9hG4bK{branch};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:{number}@127.0.0.1>;tag=from-{number}\r\n"
            f"To: <sip:{target}@127.0.0.1>{to_tag}\r\nCall-ID: {call_id}\r\n"
            f"CSeq: {cseq} {method}\r\nContact: <sip:{number}@{source.host}:{source.port}>\r\n"
            + extra + ("Content-Type: application/sdp\r\n" if body else "")
            + f"Content-Length: {len(body)}\r\n\r\n{body}")


def answer(to: bytes, status: str, body: str = "") -> str:
    """The callee's response to one of our requests (its Via, From, To, Call-ID, CSeq)."""
    head = to.split(b"\r\n\r\n")[0].decode()

    def value(name):
        return re.search(rf"\r\n{name}: ([^\r]*)", head).group(1)

    vias = "".join(f"Via: {v}\r\n" for v in re.findall(r"\r\nVia: ([^\r]*)", head))
    to_tag = "" if ";tag=" in value("To") else ";tag=callee"
    return (f"SIP/2.0 {status}\r\n{vias}From: {value('From')}\r\nTo: {value('To')}{to_tag}\r\n"
            f"Call-ID: {value('Call-ID')}\r\nCSeq: {value('CSeq')}\r\n"
            f"Contact: <sip:1002@{CALLEE.host}:{CALLEE.port}>\r\n"
            + ("Content-Type: application/sdp\r\n" if body else "")
            + f"Content-Length: {len(body)}\r\n\r\n{body}")


def last(sent: list[bytes], start: bytes) -> bytes:
    return [data for data in sent if data.startswith(start)][-1]


def register_callee(handle, sent) -> None:
    register = ("REGISTER sip:127.0.0.1:5060 SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {CALLEE.host}:{CALLEE.port};branch=z9hG4bKr{{n}};rport\r\n"
                "Max-Forwards: 70\r\nFrom: <sip:1002@127.0.0.1>;tag=r\r\n"
                "To: <sip:1002@127.0.0.1>\r\nCall-ID: reg@test\r\nCSeq: {n} REGISTER\r\n"
                f"Contact: <sip:1002@{CALLEE.host}:{CALLEE.port}>\r\n{{auth}}Expires: 3600\r\n"
                "Content-Length: 0\r\n\r\n")
    handle(register.format(n=1, auth=""), CALLEE)
    handle(register.format(n=2, auth=digest("1002", "REGISTER", sent[-1], "Authorization")),
           CALLEE)
    assert sent[-1].startswith(b"SIP/2.0 200")


def test_an_ended_call_is_freed_without_the_cyclic_collector(pbx):
    stack, calls, sent, handle = pbx
    register_callee(handle, sent)
    gc.collect()
    gc.disable()
    try:
        handle(request("INVITE", 1, "a", body=SDP), CALLER)
        challenge = last(sent, b"SIP/2.0 407")
        handle(request("ACK", 1, "a", to_tag=";tag=" + re.search(
            rb"\r\nTo: [^\r]*;tag=([^\r;]*)", challenge).group(1).decode()), CALLER)
        handle(request("INVITE", 2, "b", body=SDP,
                       extra=digest("1001", "INVITE", challenge, "Proxy-Authorization")), CALLER)
        invite = last(sent, b"INVITE ")
        call = weakref.ref(next(iter(calls.calls.values())))
        handle(answer(invite, "180 Ringing"), CALLEE)
        handle(answer(invite, "200 OK", SDP), CALLEE)
        ok = last(sent, b"SIP/2.0 200")
        to_tag = ";tag=" + re.search(rb"\r\nTo: [^\r]*;tag=([^\r;]*)", ok).group(1).decode()
        handle(request("ACK", 2, "c", to_tag=to_tag), CALLER)
        handle(request("BYE", 3, "d", to_tag=to_tag), CALLER)
        handle(answer(last(sent, b"BYE "), "200 OK"), CALLEE)
        assert calls.calls == {} and calls.dialogs == {} and calls.per_extension == {}
        # The transactions are still there (Timer M, Accepted: 32 s)...
        assert len(calls.client) >= 1 and len(stack.handler.transactions) >= 1
        # ... and the call is gone all the same, with the collector off.
        assert call() is None
    finally:
        gc.enable()


def test_a_2xx_that_crosses_the_cancel_is_still_acked_and_byed(pbx):
    """A branch still waiting for its final answer keeps its call when the call
    ends: the callee answering after the caller hung up is ACKed, then BYEd."""
    stack, calls, sent, handle = pbx
    register_callee(handle, sent)
    handle(request("INVITE", 1, "a", body=SDP), CALLER)
    challenge = last(sent, b"SIP/2.0 407")
    handle(request("INVITE", 2, "b", body=SDP,
                   extra=digest("1001", "INVITE", challenge, "Proxy-Authorization")), CALLER)
    invite = last(sent, b"INVITE ")
    handle(answer(invite, "180 Ringing"), CALLEE)
    handle(request("CANCEL", 2, "b"), CALLER)
    assert last(sent, b"SIP/2.0 487").count(b"CSeq: 2 INVITE")
    assert last(sent, b"CANCEL ")
    sent.clear()
    handle(answer(invite, "200 OK", SDP), CALLEE)
    assert [data.split(b" ")[0] for data in sent] == [b"ACK", b"BYE"]


def test_100_trying_only_when_nothing_else_is_sent_within_200_ms(pbx):
    """RFC 3261 §17.2.1: a callee that rings at once spares the 100 Trying; one
    that stays silent gets the caller its 100 after 200 ms."""
    stack, calls, sent, handle = pbx
    register_callee(handle, sent)
    for call_id, rings in (("quick@test", True), ("slow@test", False)):
        sent.clear()
        handle(request("INVITE", 1, "a" + call_id[:4], body=SDP, call_id=call_id), CALLER)
        challenge = last(sent, b"SIP/2.0 407")
        handle(request("INVITE", 2, "b" + call_id[:4], body=SDP, call_id=call_id,
                       extra=digest("1001", "INVITE", challenge, "Proxy-Authorization")), CALLER)
        if rings:
            handle(answer(last(sent, b"INVITE "), "180 Ringing"), CALLEE)
        assert not [d for d in sent if d.startswith(b"SIP/2.0 100")]
        gevent.sleep(0.3)
        trying = [d for d in sent if d.startswith(b"SIP/2.0 100")]
        assert len(trying) == (0 if rings else 1), sent
