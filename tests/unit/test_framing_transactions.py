"""TCP framing (RFC 3261 §18.3, RFC 5626 §3.5.1) and server transactions (§17.2.2)."""

import pytest

from sipd.sip.framing import PONG, Ping, StreamFramer
from sipd.sip.headers import Via
from sipd.sip.message import ParseError, parse
from sipd.sip.transaction import Received, ServerTransactions, State

MESSAGE = (
    b"OPTIONS sip:pbx.test SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK1\r\n"
    b"From: <sip:a@pbx.test>;tag=1\r\nTo: <sip:pbx.test>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\n"
    b"Content-Length: 5\r\n\r\nhello"
)


def test_framer_whole_and_at_every_split():
    stream = MESSAGE + b"\r\n\r\n" + MESSAGE
    for cut in range(len(stream) + 1):
        framer = StreamFramer()
        items = framer.feed(stream[:cut]) + framer.feed(stream[cut:])
        assert [type(i) for i in items] == [bytes, Ping, bytes], cut
        assert items[0] == MESSAGE and items[2] == MESSAGE
        assert framer.pending == 0


def test_pong_is_one_crlf():
    assert PONG == b"\r\n"


def test_single_crlf_is_ignored():
    framer = StreamFramer()
    assert framer.feed(b"\r\n" + MESSAGE) == [MESSAGE]


@pytest.mark.parametrize(
    "data",
    [
        b"OPTIONS sip:x SIP/2.0\r\nContent-Length: 99999999\r\n\r\n",
        b"OPTIONS sip:x SIP/2.0\r\nContent-Length: -1\r\n\r\n",
        b"A" * 70000,
    ],
)
def test_framer_refuses_absurd_lengths(data):
    with pytest.raises(ParseError):
        StreamFramer().feed(data)


def request(branch="z9hG4bK1", method="OPTIONS"):
    text = MESSAGE.replace(b"z9hG4bK1", branch.encode()).replace(b"OPTIONS", method.encode())
    return parse(text)


def test_retransmission_is_absorbed_and_answered_again():
    table = ServerTransactions()
    req = request()
    via = Via.parse(req.headers.get("Via"))
    kind, txn = table.receive(req, via, reliable=False, now=0)
    assert kind is Received.NEW and txn.state is State.TRYING
    kind, same = table.receive(req, via, reliable=False, now=0.1)
    assert kind is Received.RETRANSMISSION and same.last_response is None
    table.respond(txn, 200, b"SIP/2.0 200 OK", now=0.2)
    assert txn.state is State.COMPLETED
    kind, same = table.receive(req, via, reliable=False, now=1)
    assert kind is Received.RETRANSMISSION and same.last_response == b"SIP/2.0 200 OK"
    # Timer J = 64*T1 = 32 s over UDP.
    assert table.expire(now=32.1) == 0
    assert table.expire(now=32.3) == 1
    assert table.receive(req, via, reliable=False, now=33)[0] is Received.NEW


def test_timer_j_is_zero_over_tcp():
    table = ServerTransactions()
    req = request()
    kind, txn = table.receive(req, Via.parse(req.headers.get("Via")), reliable=True, now=0)
    table.respond(txn, 200, b"x", now=5)
    assert table.expire(now=5) == 1


def test_different_branch_or_method_is_another_transaction():
    table = ServerTransactions()
    first = request()
    table.receive(first, Via.parse(first.headers.get("Via")), False, 0)
    other = request(branch="z9hG4bK2")
    assert table.receive(other, Via.parse(other.headers.get("Via")), False, 0)[0] is Received.NEW
    register = request(method="REGISTER")
    assert table.receive(register, Via.parse(register.headers.get("Via")), False, 0)[0] is (
        Received.NEW
    )


def test_rfc2543_peer_without_magic_cookie():
    table = ServerTransactions()
    req = request(branch="oldstyle")
    via = Via.parse(req.headers.get("Via"))
    assert table.receive(req, via, False, 0)[0] is Received.NEW
    assert table.receive(req, via, False, 0)[0] is Received.RETRANSMISSION


def test_abandoned_transaction_is_dropped():
    table = ServerTransactions()
    req = request()
    table.receive(req, Via.parse(req.headers.get("Via")), False, 0)
    assert table.expire(now=40) == 1
