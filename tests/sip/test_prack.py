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
import re

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


# --- UPDATE on early dialogs (RFC 3311) and the offer in a reliable 18x (RFC 3262 §5) ----
# Issue 12 item 5. The rules, and what each refusal (491, 500, 488) is for: the unit
# tests (tests/unit/test_b2bua_early_update.py). Here, real sipp phones either side.

def sdp_of(message) -> tuple[str, list[str]]:
    """(the c= address, the audio formats) of a message's SDP."""
    address = ck.sdp_media(message.body)[0]
    (formats,) = re.findall(r"^m=audio \d+ RTP/AVP ([0-9 ]+)", message.body, re.M)
    return address, formats.split()


def test_a_callees_early_update_is_answered_by_sipd_for_a_caller_without_100rel(server):
    # The callee (tests/sip/scenarios/callee_early_update.xml) sends its 183 reliably,
    # gets sipd's PRACK, then an UPDATE offering PCMA, PCMU and telephone-event. The
    # caller (no 100rel: its 183 came unreliably) cannot take an UPDATE: sipd answers
    # itself with the relay's address and what the caller already has with the
    # callee (PCMU, telephone-event), and the audio goes both ways through the relay.
    callee = ck.callee(server.address, "1002", "callee_early_update.xml", ring_ms=300)
    caller = ck.caller(server.address, "1001", "1002", "caller_call.xml", duration_ms=2000)
    answer = ck.sdp_media(ck.wait_answer_sdp(caller))
    echo = ck.rtp_echo_check(answer, count=40)
    ck.finish(caller, callee, server=server)

    assert callee.requests() == ["INVITE", "PRACK", "ACK", "BYE"], callee.flow()
    (ok,) = [m for m in callee.received() if m.status == 200 and m.cseq_method == "UPDATE"]
    assert sdp_of(ok) == (LOOPBACK, ["0", "101"]), callee.flow()
    assert not [m for m in caller.received() if m.method == "UPDATE"], caller.flow()
    assert echo["echoed"] >= 35, f"{echo}\n{caller.flow()}\n{server.log()[-3000:]}"
    assert "early UPDATE from the callee answered here" in server.log()
    (row,) = ck.ended_calls(server.db_path)
    assert row["disposition"] == "ANSWERED", row


def test_a_callees_early_update_is_relayed_to_a_caller_that_takes_it(server):
    # The caller requires 100rel and allows UPDATE (caller_100rel_update.xml): once it
    # PRACKed the 183, the callee's new offer is relayed to it on its early dialog,
    # rewritten to the relay, and its answer goes back to the callee.
    callee = ck.callee(server.address, "1002", "callee_early_update.xml", ring_ms=300)
    caller = ck.caller(server.address, "1001", "1002", "caller_100rel_update.xml",
                       duration_ms=500)
    ck.finish(caller, callee, server=server)

    (update,) = [m for m in caller.received() if m.method == "UPDATE"]
    assert sdp_of(update) == (LOOPBACK, ["8", "0", "101"]), caller.flow()
    assert "tag=" in update.header("To") and "tag=" in update.header("From")
    (ok,) = [m for m in callee.received() if m.status == 200 and m.cseq_method == "UPDATE"]
    assert sdp_of(ok) == (LOOPBACK, ["0", "101"]), callee.flow()  # the caller's answer
    assert caller.statuses("INVITE")[-1] == 200, caller.flow()
    assert "UPDATE from callee relayed" in server.log()


def test_a_callers_early_updates_are_answered_while_the_callee_rings(server):
    # The caller (caller_early_update.xml) PRACKs our reliable 183, refreshes with an
    # UPDATE without SDP (200) and offers PCMA, PCMU and telephone-event in another:
    # the callee's 183 was unreliable (callee_early_media.xml), so sipd answers
    # itself with what the callee uses (PCMU, telephone-event).
    callee = ck.callee(server.address, "1002", "callee_early_media.xml", ring_ms=1500)
    caller = ck.caller(server.address, "1001", "1002", "caller_early_update.xml",
                       duration_ms=500)
    ck.finish(caller, callee, server=server)

    assert caller.statuses("UPDATE") == [200, 200], caller.flow()
    plain, offered = [m for m in caller.received() if m.cseq_method == "UPDATE"]
    assert "m=audio" not in plain.body
    assert sdp_of(offered) == (LOOPBACK, ["0", "101"]), caller.flow()
    assert callee.requests() == ["INVITE", "ACK", "BYE"], callee.flow()
    (row,) = ck.ended_calls(server.db_path)
    assert (row["disposition"], row["hangup_by"]) == ("ANSWERED", "caller"), row


def test_a_caller_without_an_offer_that_requires_100rel_answers_in_its_prack(server):
    # As providers that send no SDP and require 100rel call (caller_delayed_100rel.xml):
    # sipd's first reliable 18x (the 180) carries its offer, the PRACK the answer, and
    # the 200 no offer again; the audio goes both ways through the relay.
    callee = ck.callee(server.address, "1002", "callee_answer.xml", ring_ms=800)
    caller = ck.caller(server.address, "1001", "1002", "caller_delayed_100rel.xml",
                       duration_ms=2000)

    def offer():
        return next((m.body for m in caller.received()
                     if m.status == 180 and "m=audio" in m.body), "")

    body = ck.wait_for(offer, timeout=15, interval=0.05)
    assert body, caller.explain()
    ck.wait_for(lambda: caller.statuses("INVITE")[-1:] == [200], timeout=15, interval=0.05)
    echo = ck.rtp_echo_check(ck.sdp_media(body), count=40)
    ck.finish(caller, callee, server=server)

    (final,) = [m for m in caller.received() if m.status == 200 and m.cseq_method == "INVITE"]
    assert "m=audio" not in final.body, caller.flow()
    assert echo["echoed"] >= 35, f"{echo}\n{caller.flow()}\n{server.log()[-3000:]}"
    assert "the caller's answer came in its PRACK" in server.log()
    (row,) = ck.ended_calls(server.db_path)
    assert row["disposition"] == "ANSWERED", row
