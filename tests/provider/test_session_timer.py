"""The session timer toward a provider (RFC 4028), through a real sipd and Kamailio
as the phone company: sipd's INVITE offers the timer, the far phone behind the
carrier (tests/sip/scenarios/callee_session_timer.xml) lowers it to 90 s, the
floor, and leaves the refreshing to sipd (refresher=uac). The call outlives its
first interval and more: sipd refreshes with UPDATE at 45 s and 90 s (checked by
the far phone), and RTP sent through the relay the whole time, 95 s of it, comes
back. sipd's clock cannot be moved from outside, so this takes the 100 s; the
timer's other cases (a re-INVITE refresh, a provider that stops refreshing) are
the unit tests' on a moved clock (tests/unit/test_b2bua_session_trunk.py)."""

from __future__ import annotations

import pytest

from tests.provider import outbound_kit as kit
from tests.sip import callkit as ck

TALK_MS = 100_000  # beyond the first interval (90 s) and its second refresh (90 s)


@pytest.fixture(autouse=True)
def _logs_in_tmp_path(tmp_path, monkeypatch):
    monkeypatch.setattr(ck, "WORK_ROOT", tmp_path)


@pytest.fixture
def sipd(tmp_path):
    server = ck.SipdServer(tmp_path, numbers=("1001",))
    yield server
    server.stop()


def test_a_call_with_a_90_s_session_outlives_it_refreshed_by_sipd(sipd, make_carrier):
    acme = make_carrier()
    kit.office(sipd, {"acme": acme})
    far = ck.callee(acme.address, kit.FAR, "callee_session_timer.xml", ring_ms=200,
                    register_first=False, timeout=TALK_MS / 1000 + 40)
    acme.route_to(kit.FAR, f"{ck.LOOPBACK}:{far.local_port}")
    sipd.start()
    caller = ck.caller(sipd.address, "1001", kit.DIALLED, "caller_call.xml",
                       duration_ms=TALK_MS, timeout=TALK_MS / 1000 + 40)
    answer = ck.sdp_media(ck.wait_answer_sdp(caller))
    # 95 s of RTP, 5 packets a second (the relay's media timeout never comes into it).
    echo = ck.rtp_echo_check(answer, count=475, interval=0.2)
    ck.finish(caller, far, timeout=TALK_MS / 1000 + 40, server=sipd)

    assert far.requests() == ["INVITE", "ACK", "UPDATE", "UPDATE", "BYE"], far.flow()
    updates = [m for m in far.received() if m.method == "UPDATE"]
    assert all(m.header("Session-Expires") == "90;refresher=uac" for m in updates)
    assert [r["uri"] for r in acme.requests("UPDATE")], acme.log()
    # Packets from after the first interval came back too (seq 450 left at 90 s).
    assert echo["echoed"] >= 460, f"{echo}\n{caller.flow()}\n{sipd.log()[-3000:]}"
    (row,) = ck.ended_calls(sipd.db_path)
    assert (row["trunk"], row["disposition"], row["hangup_by"]) == (
        "acme", "ANSWERED", "caller"), row
    assert "session timer 90 s on trunk acme, refreshed by us" in sipd.log()
