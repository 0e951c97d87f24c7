"""Calls through a real sipd, caller and callee each a sipp process of its own
(RFC 3261 §9, §12-§17; RFC 3264 for hold; RFC 4961 latching by the relay).

Every test registers its callee(s) with digest auth, starts the callee's
scenario in the background, then the caller's, waits for both, and checks
what each side saw (sipp's -trace_msg) and the row the call left in the
`call` table.

PBX_CALLS_REFERENCE=kamailio runs the same SIP exchanges through Kamailio 5.6
configured as an authenticating stateful proxy (bench/kamailio/proxy.cfg)
instead, to show the scenarios themselves are right; what only sipd has
(relay, history, disabled extensions, port pool) is marked `sipd_only` and left
out of that run by selection, never skipped:
    PBX_CALLS_REFERENCE=kamailio pytest tests/sip/test_calls.py -m "not sipd_only"
"""

from __future__ import annotations

import os
import sqlite3

import pytest

from tests.sip import callkit as ck
from tests.support import LOOPBACK

REFERENCE = os.environ.get("PBX_CALLS_REFERENCE", "")
RING_TIMEOUT = 3  # seconds; PBX_RING_TIMEOUT for sipd, fr_inv_timer for Kamailio
RTP_LOW = 30000 + (os.getpid() * 400) % 20000
RTP_PORTS = (RTP_LOW, RTP_LOW + 399)

sipd_only = pytest.mark.sipd_only


def make_server(tmp_path, **env):
    if REFERENCE == "kamailio":
        return ck.KamailioServer(tmp_path, ring_timeout_s=RING_TIMEOUT)
    settings = {
        "PBX_RING_TIMEOUT": str(RING_TIMEOUT),
        "PBX_RTP_PORTS": f"{RTP_PORTS[0]}-{RTP_PORTS[1]}",
        "PBX_PUBLIC_ADDRESS": LOOPBACK,
    }
    settings.update(env)
    return ck.SipdServer(tmp_path, numbers=("1001", "1002", "1003"), disabled=("1004",),
                         **settings)


@pytest.fixture(autouse=True)
def _logs_in_tmp_path(tmp_path, monkeypatch):
    monkeypatch.setattr(ck, "WORK_ROOT", tmp_path)


@pytest.fixture
def server(tmp_path):
    srv = make_server(tmp_path).start()
    yield srv
    srv.stop()


def the_call(server, **expected) -> dict | None:
    """The one row in `call` once it has ended, checked against `expected`."""
    if not server.has_history:
        return None
    rows = ck.wait_for(
        lambda: [r for r in server.calls() if r["ended_at"] is not None], timeout=5
    )
    assert len(rows) == 1, f"call rows: {server.calls()}\n{server.log()[-3000:]}"
    row = rows[0]
    mismatched = {k: (row[k], v) for k, v in expected.items() if row[k] != v}
    assert not mismatched, f"call row differs (got, expected): {mismatched}\nrow: {row}"
    return row


def in_relay_range(address: tuple[str, int] | None) -> bool:
    return bool(address) and address[0] == LOOPBACK and RTP_PORTS[0] <= address[1] <= RTP_PORTS[1]


# --- an answered call ---------------------------------------------------------------------

def test_answered_call_with_media_both_ways(server):
    callee = ck.callee(server.address, "1002", "callee_answer.xml", ring_ms=300)
    caller = ck.caller(server.address, "1001", "1002", "caller_call.xml", duration_ms=3500)
    answer = ck.sdp_media(ck.wait_answer_sdp(caller))
    # RTP from a socket of our own, not the port the caller's SDP names: the
    # relay must latch onto where the packets really come from (RFC 4961).
    echo = ck.rtp_echo_check(answer, count=50)
    live = []
    if server.has_history:
        # The latched sources are on the live call's row while it runs (the panel
        # shows them), not only once it has ended.
        live = ck.wait_for(lambda: [r for r in server.calls()
                                    if r["caller_media"] and not r["ended_at"]], timeout=3)
    ck.finish(caller, callee, server=server)

    statuses = caller.statuses("INVITE")
    assert statuses[0] == 407 and 180 in statuses and statuses[-1] == 200, caller.flow()
    assert caller.statuses("BYE") == [200], caller.flow()
    assert callee.requests() == ["INVITE", "ACK", "BYE"], callee.flow()
    # the echo came back: caller -> relay -> callee -> relay -> caller
    assert echo["echoed"] >= 45, f"{echo}\n{caller.flow()}\n{server.log()[-3000:]}"
    if not server.has_history:
        return
    # both phones were given the relay, never each other
    offer_to_callee = ck.sdp_media(callee.received()[0].body)
    assert in_relay_range(answer), answer
    assert in_relay_range(offer_to_callee), offer_to_callee
    assert answer != offer_to_callee
    assert echo["from"] == {answer}
    row = the_call(server, caller="1001", callee="1002", disposition="ANSWERED",
                   hangup_by="caller")
    assert row["answered_at"] and row["ended_at"] > row["answered_at"] >= row["started_at"]
    talk = row["ended_at"] - row["answered_at"]
    assert 3.0 <= talk <= 6.5, row
    assert live and live[0]["callee_media"] == row["callee_media"], (live, row)
    assert row["caller_media"] == f"{LOOPBACK}:{echo['source'][1]}", row
    assert row["callee_media"] == f"{LOOPBACK}:{callee.media_port}", row
    assert "Call 1001 -> 1002 answered" in server.log()


def test_bye_from_the_callee(server):
    callee = ck.callee(server.address, "1002", "callee_hangs_up.xml", ring_ms=200,
                       extra=["-d", "1500"])
    caller = ck.caller(server.address, "1001", "1002", "caller_hung_up.xml")
    ck.finish(caller, callee, server=server)
    assert caller.requests() == ["BYE"], caller.flow()
    assert callee.statuses("BYE") == [200], callee.flow()
    row = the_call(server, disposition="ANSWERED", hangup_by="callee")
    if row:
        assert 1.2 <= row["ended_at"] - row["answered_at"] <= 4.0, row


# --- calls that are not answered ------------------------------------------------------------

def test_busy_callee(server):
    callee = ck.callee(server.address, "1002", "callee_busy.xml")
    caller = ck.caller(server.address, "1001", "1002", "caller_rejected.xml",
                       sets={"expect": "486"})
    ck.finish(caller, callee, server=server)
    assert caller.statuses("INVITE")[-1] == 486
    row = the_call(server, disposition="BUSY", sip_status=486)
    if row:
        assert row["answered_at"] is None


def test_no_answer_within_the_ring_timeout(server):
    callee = ck.callee(server.address, "1002", "callee_no_answer.xml")
    caller = ck.caller(server.address, "1001", "1002", "caller_rejected.xml",
                       sets={"expect": "480"}, timeout=RING_TIMEOUT + 20)
    ck.finish(caller, callee, server=server, timeout=RING_TIMEOUT + 30)
    # the callee was CANCELled (it answered 200 + 487, or its scenario fails)
    assert callee.requests() == ["INVITE", "CANCEL", "ACK"], callee.flow()
    ringing = next(m.at for m in caller.received() if m.status == 180)
    refused = next(m.at for m in caller.received() if m.status == 480)
    assert RING_TIMEOUT - 0.3 <= refused - ringing <= RING_TIMEOUT + 1.5, caller.flow()
    the_call(server, disposition="NO ANSWER", hangup_by="system", sip_status=480)


def test_caller_cancels_while_it_rings(server):
    callee = ck.callee(server.address, "1002", "callee_no_answer.xml")
    caller = ck.caller(server.address, "1001", "1002", "caller_cancel.xml", duration_ms=700)
    ck.finish(caller, callee, server=server)
    assert caller.statuses("CANCEL") == [200] and caller.statuses("INVITE")[-1] == 487
    assert callee.requests() == ["INVITE", "CANCEL", "ACK"], callee.flow()
    the_call(server, disposition="CANCELLED", hangup_by="caller", sip_status=487)


def test_callee_not_registered(server):
    caller = ck.caller(server.address, "1001", "1003", "caller_rejected.xml",
                       sets={"expect": "480"})
    ck.finish(caller, server=server)
    the_call(server, callee="1003", disposition="FAILED", sip_status=480)


def test_unknown_number(server):
    caller = ck.caller(server.address, "1001", "1009", "caller_rejected.xml",
                       sets={"expect": "404"})
    ck.finish(caller, server=server)
    the_call(server, callee="1009", disposition="FAILED", sip_status=404)


@sipd_only
def test_disabled_callee_is_forbidden(server):
    callee = ck.callee(server.address, "1004", "callee_answer.xml", register_first=False)
    caller = ck.caller(server.address, "1001", "1004", "caller_rejected.xml",
                       sets={"expect": "403"})
    ck.finish(caller, server=server)
    callee.stop()
    assert callee.received() == []
    the_call(server, callee="1004", disposition="FAILED", sip_status=403)


@sipd_only
def test_out_of_media_ports_is_503_and_ports_come_back(tmp_path):
    # four ports: the RTP/RTCP pairs of one call's two legs, no more
    srv = make_server(tmp_path, PBX_RTP_PORTS=f"{RTP_PORTS[0]}-{RTP_PORTS[0] + 3}").start()
    try:
        callee = ck.callee(srv.address, "1002", "callee_answer.xml")
        first = ck.caller(srv.address, "1001", "1002", "caller_call.xml", duration_ms=1500)
        ck.wait_answer_sdp(first)
        second = ck.caller(srv.address, "1003", "1002", "caller_rejected.xml",
                           sets={"expect": "503"})
        ck.finish(second, first, callee, server=srv)
        refusal = next(m for m in second.received() if m.status == 503)
        assert refusal.header("Retry-After"), refusal.text
        assert len([m for m in callee.received() if m.method == "INVITE"]) == 1
        rows = srv.calls()
        assert [(r["caller"], r["disposition"]) for r in rows] == [
            ("1001", "ANSWERED"), ("1003", "FAILED")], rows
        assert rows[1]["sip_status"] == 503, rows
        # the first call's ports were released when it ended: the next call gets them
        callee = ck.callee(srv.address, "1002", "callee_answer.xml")
        third = ck.caller(srv.address, "1003", "1002", "caller_call.xml", duration_ms=300)
        ck.finish(third, callee, server=srv)
    finally:
        srv.stop()


# --- within the call --------------------------------------------------------------------------

def test_hold_and_resume_by_reinvite(server):
    callee = ck.callee(server.address, "1002", "callee_hold.xml")
    caller = ck.caller(server.address, "1001", "1002", "caller_hold.xml", duration_ms=400)
    ck.finish(caller, callee, server=server)
    # the scenarios check the directions: sendonly -> recvonly, then sendrecv both ways
    invites = [m for m in callee.received() if m.method == "INVITE"]
    assert len(invites) == 3, callee.flow()
    if server.has_history:
        # the re-offers were rewritten to the relay as well, direction kept
        assert all(in_relay_range(ck.sdp_media(m.body)) for m in invites)
        assert "a=sendonly" in invites[1].body and "a=sendrecv" in invites[2].body
    the_call(server, disposition="ANSWERED", hangup_by="caller")


def test_forking_to_two_contacts_first_answer_wins(server):
    answering = ck.callee(server.address, "1002", "callee_answer.xml", ring_ms=800)
    ringing = ck.callee(server.address, "1002", "callee_no_answer.xml")
    caller = ck.caller(server.address, "1001", "1002", "caller_call.xml", duration_ms=500)
    ck.finish(caller, answering, ringing, server=server)
    assert answering.requests() == ["INVITE", "ACK", "BYE"], answering.flow()
    # the other phone rang at the same time and was CANCELled when the first answered
    assert ringing.requests() == ["INVITE", "CANCEL", "ACK"], ringing.flow()
    first = answering.received()[0].at
    second = ringing.received()[0].at
    assert abs(first - second) < 0.5, (answering.flow(), ringing.flow())
    cancel_at = ringing.received()[1].at
    answered_at = next(m.at for m in answering.sent() if m.status == 200)
    # Two sipp processes stamp their traces around the syscalls, so the CANCEL
    # caused by the 200 can be logged a fraction of a millisecond "before" it.
    assert -0.05 <= cancel_at - answered_at < 1.0, (answering.flow(), ringing.flow())
    row = the_call(server, disposition="ANSWERED", hangup_by="caller")
    if row:
        assert row["callee_contact"].endswith(f":{answering.local_port}"), row


# --- lost ACKs ------------------------------------------------------------------------------

def test_lost_ack_from_the_caller_gets_the_200_retransmitted(server):
    callee = ck.callee(server.address, "1002", "callee_answer.xml")
    caller = ck.caller(server.address, "1001", "1002", "caller_lost_ack.xml", duration_ms=300,
                       extra=["-nr"])
    ck.finish(caller, callee, server=server)
    oks = [m.at for m in caller.received() if m.status == 200 and m.cseq_method == "INVITE"]
    assert len(oks) == 3, caller.flow()
    # RFC 3261 §13.3.1.4: first after T1 (500 ms), then doubling (1 s)
    first, second = oks[1] - oks[0], oks[2] - oks[1]
    assert 0.4 <= first <= 1.0, caller.flow()
    assert 0.85 <= second <= 1.7, caller.flow()
    # the callee's side saw one ACK: sipd had ACKed it at once
    assert callee.requests() == ["INVITE", "ACK", "BYE"], callee.flow()
    the_call(server, disposition="ANSWERED", hangup_by="caller")


def test_retransmitted_200_from_the_callee_is_acked_again(server):
    callee = ck.callee(server.address, "1002", "callee_reack.xml",
                       extra=["-nr", "-pause_msg_ign"])
    caller = ck.caller(server.address, "1001", "1002", "caller_call.xml", duration_ms=1200)
    ck.finish(caller, callee, server=server)
    acks = [m for m in callee.received() if m.method == "ACK"]
    assert len(acks) == 2, callee.flow()
    # the second ACK is the same ACK (§13.2.2.4): same CSeq
    assert acks[0].header("CSeq") == acks[1].header("CSeq")
    the_call(server, disposition="ANSWERED", hangup_by="caller")


# --- a crash during a call --------------------------------------------------------------------

def _children(pid: int) -> list[int]:
    from pathlib import Path

    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return found


def _alive(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@sipd_only
def test_kill9_during_a_call_leaves_no_active_call_after_restart(server):
    callee = ck.callee(server.address, "1002", "callee_answer.xml", timeout=40)
    caller = ck.caller(server.address, "1001", "1002", "caller_call.xml", duration_ms=30000,
                       timeout=40)
    try:
        ck.wait_answer_sdp(caller)
        live = ck.wait_for(lambda: [r for r in server.calls() if r["answered_at"]], timeout=5)
        assert live and live[0]["ended_at"] is None, server.calls()
        helpers = _children(server.daemon.process.pid)
        server.kill9()
        # the media relay goes with sipd: nothing is left holding the ports
        assert ck.wait_for(lambda: not any(_alive(p) for p in helpers), timeout=5), helpers
        # on disk the call is still "active": nobody could end it
        assert [r["ended_at"] for r in server.calls()] == [None]
        server.restart()
        [row] = server.calls()
        assert row["ended_at"] is not None, row
        assert (row["disposition"], row["hangup_by"]) == ("ANSWERED", "system"), row
        with sqlite3.connect(server.db_path) as connection:
            active = connection.execute(
                "SELECT COUNT(*) FROM call WHERE ended_at IS NULL").fetchone()[0]
        assert active == 0
    finally:
        caller.stop()
        callee.stop()
    # the restarted daemon connects calls, media and all, from a clean port pool
    callee = ck.callee(server.address, "1002", "callee_answer.xml")
    caller = ck.caller(server.address, "1001", "1002", "caller_call.xml", duration_ms=1500)
    echo = ck.rtp_echo_check(ck.sdp_media(ck.wait_answer_sdp(caller)), count=25)
    ck.finish(caller, callee, server=server)
    assert echo["echoed"] >= 22, echo
    rows = server.calls()
    assert len(rows) == 2 and rows[1]["disposition"] == "ANSWERED", rows
