"""Outside calls through a real sipd and Kamailio as the phone company (issue 12
item 3, "Show"): an extension dials through a route that strips a prefix and
prepends the country code; the carrier challenges the trunk (digest with its
credentials); the far phone, a sipp UAS behind the carrier, gets the number as
the route sent it and the caller ID, and the audio goes both ways through the
relay (RTP sent and echoed, as tests/sip/test_calls.py does). Failover: the
first trunk's carrier answers 503, the call goes out through the second."""

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


def call_out(sipd, far, duration_ms=2500):
    caller = ck.caller(sipd.address, "1001", kit.DIALLED, "caller_call.xml",
                       duration_ms=duration_ms)
    answer = ck.sdp_media(ck.wait_answer_sdp(caller))
    echo = ck.rtp_echo_check(answer, count=40)
    ck.finish(caller, far, server=sipd)
    return caller, echo


def test_a_call_reaches_the_far_phone_with_the_number_and_caller_id(sipd, make_carrier):
    acme = make_carrier()
    kit.office(sipd, {"acme": acme})
    far = kit.far_phone(acme)
    sipd.start()
    caller, echo = call_out(sipd, far)
    # The far phone: the number as the route rewrote it (9 stripped, 998 put in
    # front), the route's caller ID in From.
    invite = far.received()[0]
    assert kit.user(invite.first_line) == kit.FAR, far.flow()
    assert kit.user(invite.header("From")) == "712223344", invite.header("From")
    # The carrier challenged sipd's INVITE and took the trunk's credentials.
    seen = acme.requests("INVITE")
    assert len(seen) == 2 and all(kit.user(r["uri"]) == kit.FAR for r in seen), seen
    assert caller.statuses("INVITE")[-1] == 200, caller.flow()
    assert far.requests() == ["INVITE", "ACK", "BYE"], far.flow()
    assert echo["echoed"] >= 35, f"{echo}\n{caller.flow()}\n{sipd.log()[-3000:]}"
    (row,) = ck.ended_calls(sipd.db_path)
    assert (row["direction"], row["trunk"], row["number_sent"], row["callee"],
            row["disposition"]) == ("outbound", "acme", kit.FAR, kit.DIALLED, "ANSWERED"), row
    assert f"via trunk acme to {acme.address}/udp as {kit.FAR}" in sipd.log()


def test_failover_to_the_second_trunk_when_the_first_answers_503(sipd, make_carrier):
    first, second = make_carrier(), make_carrier()
    first.answer(kit.FAR, 503, "Trunk Full")
    kit.office(sipd, {"acme": first, "backup": second})
    far = kit.far_phone(second)
    sipd.start()
    caller, echo = call_out(sipd, far)
    assert [r["uri"] for r in first.requests("INVITE")], first.log()
    assert far.requests() == ["INVITE", "ACK", "BYE"], far.flow()
    assert echo["echoed"] >= 35, f"{echo}\n{sipd.log()[-3000:]}"
    (row,) = ck.ended_calls(sipd.db_path)
    assert (row["trunk"], row["number_sent"], row["disposition"]) == (
        "backup", kit.FAR, "ANSWERED"), row
    assert "acme answered 503 Trunk Full; trying the next trunk" in sipd.log()


def test_early_media_from_the_far_end_reaches_the_extension(sipd, make_carrier):
    acme = make_carrier()
    kit.office(sipd, {"acme": acme})
    far = kit.far_phone(acme, scenario="callee_early_media.xml")
    sipd.start()
    caller, echo = call_out(sipd, far)
    early = [m for m in caller.received() if m.status == 183 and m.cseq_method == "INVITE"]
    assert early and "m=audio" in early[0].body, caller.flow()
    # The 183's media is the relay's, as the 200's is (the far phone's address stays
    # behind the trunk): one session from the first ring-back to the hang-up.
    assert ck.sdp_media(early[0].body) == ck.sdp_media(ck.wait_answer_sdp(caller)), (
        caller.flow())
    assert echo["echoed"] >= 35, f"{echo}\n{caller.flow()}"
    (row,) = ck.ended_calls(sipd.db_path)
    assert (row["trunk"], row["disposition"]) == ("acme", "ANSWERED"), row


def test_an_extensions_call_without_sdp_goes_out_with_an_offer(sipd, make_carrier):
    # Delayed offer (RFC 3261 §13.2.1) from the phone: the trunk's INVITE carries the
    # relay's offer, the phone gets one in the 200 and answers in its ACK.
    acme = make_carrier()
    kit.office(sipd, {"acme": acme})
    far = kit.far_phone(acme)
    sipd.start()
    caller = ck.caller(sipd.address, "1001", kit.DIALLED, "caller_delayed_offer.xml",
                       duration_ms=800)
    ck.finish(caller, far, server=sipd)
    assert all("m=audio" not in m.body for m in caller.sent() if m.method == "INVITE")
    invite = far.received()[0]
    assert "m=audio" in invite.body, far.flow()
    assert caller.statuses("INVITE")[-1] == 200, caller.flow()
    (row,) = ck.ended_calls(sipd.db_path)
    assert (row["trunk"], row["disposition"]) == ("acme", "ANSWERED"), row
