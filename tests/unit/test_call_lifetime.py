"""The B2BUA in-process: a call's objects are freed when it ends, by reference
counting alone; 100 Trying only when the callee is slow.

The B2BUA (sipd.b2bua) driven in-process through the real Handler, registrar,
SQLite database and call history (tests/unit/b2bua_harness.py), with the two
phones played by the test and the media relay replaced by a stand-in that only
hands out ports: what is checked is which objects the call leaves alive.

Before, every ended call stayed reachable from its transactions (RFC 6026's
32 s Accepted state) and from reference cycles among its own parts, so under
load tens of thousands of calls' objects waited for the cyclic collector,
whose full collections then took 55-75 ms each (docs/benchmarks.md).
"""

from __future__ import annotations

import gc
import re
import weakref

import pytest

from tests.unit.b2bua_harness import (
    CALLEE,
    CALLER,
    SDP,
    answer,
    digest,
    last,
    make_pbx,
    register_callee,
    request,
)


@pytest.fixture
def pbx(tmp_path):
    pbx = make_pbx(tmp_path)
    handle = pbx.handle
    yield pbx.stack, pbx.calls, pbx.sent, handle, pbx
    pbx.stack.database.close()


def test_an_ended_call_is_freed_without_the_cyclic_collector(pbx):
    stack, calls, sent, handle, harness = pbx
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
        live = next(iter(calls.calls.values()))
        call = weakref.ref(live)
        (branch,) = live.branches
        legs = [weakref.ref(live.caller), weakref.ref(branch)]
        del live, branch
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
        # ... and the call is gone all the same, legs and all, with the collector off.
        assert call() is None
        assert [leg() for leg in legs] == [None, None]
    finally:
        gc.enable()


def test_a_2xx_that_crosses_the_cancel_is_still_acked_and_byed(pbx):
    """A branch still waiting for its final answer keeps its call when the call
    ends: the callee answering after the caller hung up is ACKed, then BYEd."""
    stack, calls, sent, handle, harness = pbx
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
    (row,) = harness.rows()
    assert (row["disposition"], row["hangup_by"], row["sip_status"], row["answered_at"]) == (
        "CANCELLED", "caller", 487, None)


def test_100_trying_only_when_nothing_else_is_sent_within_200_ms(pbx):
    """RFC 3261 §17.2.1: a callee that rings at once spares the 100 Trying; one
    that stays silent gets the caller its 100 after 200 ms."""
    stack, calls, sent, handle, harness = pbx
    register_callee(handle, sent)
    for call_id, rings in (("quick@test", True), ("slow@test", False)):
        sent.clear()
        handle(request("INVITE", 1, "a" + call_id[:4], body=SDP, call_id=call_id), CALLER)
        challenge = last(sent, b"SIP/2.0 407")
        handle(request("INVITE", 2, "b" + call_id[:4], body=SDP, call_id=call_id,
                       extra=digest("1001", "INVITE", challenge, "Proxy-Authorization")), CALLER)
        if rings:
            handle(answer(last(sent, b"INVITE "), "180 Ringing"), CALLEE)
        harness.advance(0.19)
        assert not [d for d in sent if d.startswith(b"SIP/2.0 100")]
        harness.advance(0.02)
        trying = [d for d in sent if d.startswith(b"SIP/2.0 100")]
        assert len(trying) == (0 if rings else 1), sent
