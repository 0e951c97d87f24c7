"""PRACK where the provider requires 100rel (issue 12 item 5; RFC 3262 §4), through a
real sipd and Kamailio as the phone company: the far phone behind the carrier
(tests/sip/scenarios/callee_100rel.xml) wants Supported: 100rel in sipd's INVITE,
sends its early media in a reliable 183 (Require: 100rel, RSeq: 1) and answers only
once sipd's PRACK, with the RAck naming that 183, has come through the carrier (a
request on the early dialog, along the carrier's Record-Route). The extension, which
did not ask for 100rel, hears the early media in an ordinary 183, then the call is
answered with audio both ways. The unit tests: tests/unit/test_b2bua_prack.py."""

from __future__ import annotations

import pytest

from tests.provider import outbound_kit as kit
from tests.sip import callkit as ck


@pytest.fixture(autouse=True)
def _logs_in_tmp_path(tmp_path, monkeypatch):
    monkeypatch.setattr(ck, "WORK_ROOT", tmp_path)


@pytest.fixture
def sipd(tmp_path):
    server = ck.SipdServer(tmp_path, numbers=("1001",))
    yield server
    server.stop()


def test_a_providers_reliable_183_gets_our_prack_through_the_carrier(sipd, make_carrier):
    acme = make_carrier()
    kit.office(sipd, {"acme": acme})
    far = kit.far_phone(acme, scenario="callee_100rel.xml")
    sipd.start()
    caller = ck.caller(sipd.address, "1001", kit.DIALLED, "caller_call.xml", duration_ms=2500)
    answer = ck.sdp_media(ck.wait_answer_sdp(caller))
    echo = ck.rtp_echo_check(answer, count=40)
    ck.finish(caller, far, server=sipd)

    # The far phone checked Supported: 100rel and the RAck; its 183 was PRACKed once,
    # on the early dialog: its To tag, the INVITE's Call-ID, through the carrier.
    assert far.requests() == ["INVITE", "PRACK", "ACK", "BYE"], far.flow()
    invite, prack = (m for m in far.received() if m.method in ("INVITE", "PRACK"))
    assert prack.header("Call-ID") == invite.header("Call-ID")
    assert "tag=" in prack.header("To") and prack.header("RAck").startswith("1 ")
    assert [r["uri"] for r in acme.requests("PRACK")], acme.log()
    # The extension asked for no 100rel: its 183 (the relay's early media) is unreliable.
    early = [m for m in caller.received() if m.status == 183 and m.cseq_method == "INVITE"]
    assert early and "m=audio" in early[0].body and not early[0].header("RSeq"), caller.flow()
    assert caller.statuses("INVITE")[-1] == 200, caller.flow()
    assert echo["echoed"] >= 35, f"{echo}\n{caller.flow()}\n{sipd.log()[-3000:]}"
    (row,) = ck.ended_calls(sipd.db_path)
    assert (row["trunk"], row["disposition"]) == ("acme", "ANSWERED"), row
    assert "PRACK for 183 (RSeq 1)" in sipd.log()
