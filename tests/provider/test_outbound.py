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


# --- PRACK where the provider requires 100rel (issue 12 item 5, RFC 3262 §4) ---------------

# Through a real sipd and Kamailio as the phone company: the far phone behind the carrier
# (tests/sip/scenarios/callee_100rel.xml) wants Supported: 100rel in sipd's INVITE,
# sends its early media in a reliable 183 (Require: 100rel, RSeq: 1) and answers only
# once sipd's PRACK, with the RAck naming that 183, has come through the carrier (a
# request on the early dialog, along the carrier's Record-Route). The extension, which
# did not ask for 100rel, hears the early media in an ordinary 183, then the call is
# answered with audio both ways. The unit tests: tests/unit/test_b2bua_prack.py.

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


# The provider changes codecs while it rings (RFC 3311): the far phone behind the carrier
# (tests/sip/scenarios/callee_early_update.xml) sends its 183 reliably, gets sipd's PRACK,
# then an UPDATE on the early dialog offering PCMA, PCMU and telephone-event, through the
# carrier. The extension took no 100rel, so its early dialog takes no UPDATE: sipd answers
# the provider itself with the relay's address and what the extension already has (PCMU,
# telephone-event), and the call goes on with audio both ways.

def test_a_providers_early_update_through_the_carrier_is_answered(sipd, make_carrier):
    acme = make_carrier()
    kit.office(sipd, {"acme": acme})
    far = kit.far_phone(acme, scenario="callee_early_update.xml")
    sipd.start()
    caller, echo = call_out(sipd, far)

    assert far.requests() == ["INVITE", "PRACK", "ACK", "BYE"], far.flow()
    invite = far.received()[0]
    assert "100rel" in invite.header("Supported"), invite.header("Supported")
    (ok,) = [m for m in far.received() if m.status == 200 and m.cseq_method == "UPDATE"]
    assert "m=audio" in ok.body and " RTP/AVP 0 101" in ok.body, far.flow()
    assert [r["uri"] for r in acme.requests("UPDATE")], acme.log()
    assert caller.statuses("INVITE")[-1] == 200, caller.flow()
    assert echo["echoed"] >= 35, f"{echo}\n{caller.flow()}\n{sipd.log()[-3000:]}"
    assert "early UPDATE from the callee answered here" in sipd.log()


# --- the session timer toward the provider (RFC 4028) -------------------------------------

TALK_MS = 100_000  # beyond the first interval (90 s) and its second refresh (90 s)


# sipd's INVITE offers the timer, the far phone behind the
# carrier (tests/sip/scenarios/callee_session_timer.xml) lowers it to 90 s, the
# floor, and leaves the refreshing to sipd (refresher=uac). The call outlives its
# first interval and more: sipd refreshes with UPDATE at 45 s and 90 s (checked by
# the far phone), and RTP sent through the relay the whole time, 95 s of it, comes
# back. sipd's clock cannot be moved from outside, so this takes the 100 s; the
# timer's other cases (a re-INVITE refresh, a provider that stops refreshing) are
# the unit tests' on a moved clock (tests/unit/test_b2bua_session_trunk.py).

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


# A far phone that takes the refreshing on itself (refresher=uas) and never refreshes
# (tests/sip/scenarios/callee_session_lapses.xml): at 60 s (90 s less a third, §10)
# sipd gives the session up and ends the call cleanly on both sides: BYE to the
# provider's phone and to the extension (caller_hung_up.xml waits for it).

def test_a_session_the_provider_fails_to_refresh_ends_on_both_legs(sipd, make_carrier):
    acme = make_carrier()
    kit.office(sipd, {"acme": acme})
    far = ck.callee(acme.address, kit.FAR, "callee_session_lapses.xml", ring_ms=200,
                    register_first=False, timeout=100)
    acme.route_to(kit.FAR, f"{ck.LOOPBACK}:{far.local_port}")
    sipd.start()
    caller = ck.caller(sipd.address, "1001", kit.DIALLED, "caller_hung_up.xml", timeout=100)
    ck.finish(caller, far, timeout=120, server=sipd)

    assert caller.requests() == ["BYE"] and far.requests() == ["INVITE", "ACK", "BYE"], (
        caller.flow() + "\n" + far.flow())
    (row,) = ck.ended_calls(sipd.db_path)
    assert (row["disposition"], row["hangup_by"], row["reason"]) == (
        "ANSWERED", "system", "session timer expired (90 s) on trunk acme"), row
    assert "no session refresh from trunk acme within 90 s; hanging up" in sipd.log()
