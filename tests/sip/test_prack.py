"""Reliable provisional responses (RFC 3262) from a real sipd to a sipp caller
that wants them (tests/sip/scenarios/caller_100rel.xml): the callee's early
media (its 183 with SDP, callee_early_media.xml) reaches the caller with
Require: 100rel and an RSeq, is retransmitted until the caller's PRACK, a PRACK
for no response of ours gets 481, and the callee's 200 (sent 100 ms after its
183) waits for the PRACK. The timing of the retransmissions is the unit tests'
(tests/unit/test_reliable.py, on a moved clock); the other direction, our PRACK
to a provider's reliable 183, is tests/provider/test_outbound.py."""

from __future__ import annotations

import os

import pytest

from tests.sip import callkit as ck
from tests.support import LOOPBACK

RTP_LOW = 30000 + (os.getpid() * 400 + 200) % 20000


@pytest.fixture(autouse=True)
def _logs_in_tmp_path(tmp_path, monkeypatch):
    monkeypatch.setattr(ck, "WORK_ROOT", tmp_path)


@pytest.fixture
def server(tmp_path):
    srv = ck.SipdServer(tmp_path, numbers=("1001", "1002"), PBX_RING_TIMEOUT="10",
                        PBX_RTP_PORTS=f"{RTP_LOW}-{RTP_LOW + 99}",
                        PBX_PUBLIC_ADDRESS=LOOPBACK).start()
    yield srv
    srv.stop()


@pytest.mark.parametrize("option", ["Require", "Supported"])
def test_the_183_goes_reliably_until_the_prack_and_the_200_waits_for_it(server, option):
    callee = ck.callee(server.address, "1002", "callee_early_media.xml", ring_ms=100)
    caller = ck.caller(server.address, "1001", "1002", "caller_100rel.xml", duration_ms=500,
                       sets={"option": option, "wait": "1200"})
    ck.finish(caller, callee, server=server)

    messages = caller.messages()
    early = [m for m in messages if m.direction == "received" and m.status == 183]
    # Sent again while the caller waited (sipp logs the copies it discards), the
    # same response each time: one RSeq, Require: 100rel, the relay's early media.
    assert len(early) >= 2, caller.flow()
    assert {m.header("RSeq") for m in early} == {early[0].header("RSeq")}, caller.flow()
    assert early[0].header("Require") == "100rel" and "m=audio" in early[0].body
    assert caller.statuses("PRACK") == [481, 200], caller.flow()
    # The 200 to the INVITE came only after the PRACK (§3), though the callee
    # answered 1.1 s before it.
    order = [(m.direction, m.method or m.status, m.cseq_method) for m in messages]
    assert order.index(("sent", "PRACK", "PRACK")) < order.index(("received", 200, "INVITE")), (
        caller.flow())
    assert callee.requests() == ["INVITE", "ACK", "BYE"], callee.flow()
    (row,) = ck.ended_calls(server.db_path)
    assert (row["disposition"], row["hangup_by"]) == ("ANSWERED", "caller"), row
