"""Calls from the carrier (Kamailio) to the office's numbers: a DID rings the extension
and the ring group its inbound route names, not challenged, with the caller's number as
the provider sent it on the phone and in the history; a DID without a route gets 404;
an IP trunk takes calls only from its own addresses (anyone else is challenged)."""

import pytest

from tests.provider.test_trunk_register import trunk_state
from tests.sip import callkit
from tests.sip.callkit import SipdServer, Sipp, ended_calls, finish, free_ports, wait_for

OUTSIDE = "998901234567"


@pytest.fixture(autouse=True)
def _logs_in_tmp_path(tmp_path, monkeypatch):
    monkeypatch.setattr(callkit, "WORK_ROOT", tmp_path)


def outside(target, did, scenario="outside_call.xml", local_ip="127.0.0.1", port=None,
            caller=OUTSIDE):
    return Sipp(f"outside-{did}", str(callkit.ROOT / "tests/provider/scenarios" / scenario),
                target, inject=[[caller, did]], duration_ms=800, timeout=20,
                local_ip=local_ip, local_port=port).start()


def invite_from(run):
    invites = [m for m in run.received() if m.method == "INVITE"]
    assert invites, run.explain()
    return invites[0].header("From")


@pytest.fixture
def office(tmp_path, carrier, pbxctl):
    """sipd registered to the carrier as trunk acme, with DIDs routed to 1001 and group 600."""
    carrier.add_subscriber("acme1", "s3cret")
    sipd = SipdServer(tmp_path, numbers=("1001", "1002", "1003"))
    for argv in (
        ("trunk", "add", "acme", "--host", carrier.address, "--username", "acme1",
         "--password", "s3cret", "--register", "--keepalive", "0"),
        ("group", "add", "600", "--name", "Sales", "--members", "1002,1003"),
        ("inbound", "add", "712000001", "--to", "1001"),
        ("inbound", "add", "712000002", "--to", "600", "--trunk", "acme"),
    ):
        status, out, err = pbxctl(*argv)
        assert status == 0, f"{argv}: {out}{err}"
    for did in ("712000001", "712000002", "712000009"):
        carrier.did(did, "acme1")
    sipd.start()
    assert wait_for(lambda: trunk_state(sipd.db_path)[0] == "registered", 10), sipd.log()
    yield sipd
    sipd.stop()


def test_a_did_rings_its_extension_and_another_its_group(office, carrier):
    phone = callkit.callee(office.address, "1001", "callee_answer.xml")
    port = free_ports()
    carrier.trust("127.0.0.1", port)  # the outside world's caller needs no account
    call = outside(carrier.address, "712000001", port=port)
    finish(call, phone, server=office)
    assert f"<sip:{OUTSIDE}@" in invite_from(phone), phone.explain()
    row = ended_calls(office.db_path)[-1]
    assert (row["caller"], row["callee"], row["direction"], row["trunk"]) == (
        OUTSIDE, "1001", "inbound", "acme"), row
    assert row["disposition"] == "ANSWERED"
    assert f"[TRUNK] acme: call from {OUTSIDE} to DID 712000001 -> 1001" in office.log()

    answers = callkit.callee(office.address, "1002", "callee_answer.xml", ring_ms=300)
    rings = callkit.callee(office.address, "1003", "callee_no_answer.xml", rtp_echo=False)
    port = free_ports()
    carrier.trust("127.0.0.1", port)
    call = outside(carrier.address, "712000002", port=port)
    finish(call, answers, rings, server=office)
    assert f"<sip:{OUTSIDE}@" in invite_from(rings)
    row = ended_calls(office.db_path, count=2)[-1]
    assert (row["callee"], row["via_group"], row["answered_by"], row["direction"]) == (
        "600", "600", "1002", "inbound"), row


def test_a_did_without_a_route_gets_404(office, carrier):
    port = free_ports()
    carrier.trust("127.0.0.1", port)
    call = outside(carrier.address, "712000009", "outside_refused_404.xml", port=port)
    finish(call, server=office)
    assert "[TRUNK] acme: DID 712000009 has no inbound route" in office.log()
    row = ended_calls(office.db_path)[-1]
    assert (row["sip_status"], row["direction"], row["trunk"], row["callee"]) == (
        404, "inbound", "acme", "712000009"), row


def test_an_ip_trunk_accepts_calls_only_from_its_addresses(tmp_path, pbxctl):
    sipd = SipdServer(tmp_path, numbers=("1001",))
    for argv in (
        ("trunk", "add", "voip", "--host", "127.0.0.3", "--match", "127.0.0.3/32",
         "--keepalive", "0"),
        ("inbound", "add", "712000005", "--to", "1001", "--trunk", "voip"),
    ):
        status, out, err = pbxctl(*argv)
        assert status == 0, f"{argv}: {out}{err}"
    sipd.start()
    try:
        phone = callkit.callee(sipd.address, "1001", "callee_answer.xml")
        # The same DID from another loopback address: challenged like a phone's call.
        stranger = outside(sipd.address, "712000005", "outside_refused_407.xml",
                           local_ip="127.0.0.2")
        finish(stranger, server=sipd)
        assert not [m for m in phone.received() if m.method == "INVITE"]
        # From the provider's address: no challenge, the phone rings.
        call = outside(sipd.address, "712000005", local_ip="127.0.0.3")
        finish(call, phone, server=sipd)
        assert f"<sip:{OUTSIDE}@" in invite_from(phone)
        row = ended_calls(sipd.db_path)[-1]
        assert (row["caller"], row["callee"], row["trunk"], row["direction"]) == (
            OUTSIDE, "1001", "voip", "inbound"), row
    finally:
        sipd.stop()


def test_a_trunk_at_its_call_limit_refuses_another_call_with_503(office, carrier, pbxctl):
    status, out, err = pbxctl("trunk", "set", "acme", "--max-calls", "1")
    assert status == 0, out + err
    # The first call rings 1001 for 3 s: it counts against acme's limit of 1 meanwhile.
    phone = callkit.callee(office.address, "1001", "callee_answer.xml", ring_ms=3000)
    port = free_ports()
    carrier.trust("127.0.0.1", port)
    first = outside(carrier.address, "712000001", port=port)
    assert wait_for(lambda: f"[TRUNK] acme: call from {OUTSIDE} to DID 712000001 -> 1001"
                    in office.log(), 5), office.log()
    port = free_ports()
    carrier.trust("127.0.0.1", port)
    second = outside(carrier.address, "712000002", "outside_refused_503.xml", port=port,
                     caller="998907654321")
    finish(second, server=office)
    finish(first, phone, server=office)
    assert ("[TRUNK] acme: call from 998907654321 to DID 712000002 refused: 1 calls,"
            " its limit") in office.log()
    rows = ended_calls(office.db_path, count=2)
    refused = [row for row in rows if row["caller"] == "998907654321"]
    assert [(r["sip_status"], r["trunk"], r["direction"]) for r in refused] == [
        (503, "acme", "inbound")], rows
    assert "trunk acme is in 1 calls, its limit" in refused[0]["reason"]
    assert [r["disposition"] for r in rows if r["caller"] == OUTSIDE] == ["ANSWERED"]

    # Once that call is over it counts no more: the next one rings 1001 again.
    phone = callkit.callee(office.address, "1001", "callee_answer.xml")
    port = free_ports()
    carrier.trust("127.0.0.1", port)
    finish(outside(carrier.address, "712000001", port=port), phone, server=office)
    assert ended_calls(office.db_path, count=3)[-1]["disposition"] == "ANSWERED"


def test_a_providers_call_without_sdp_gets_our_offer_and_is_answered(office, carrier):
    # Delayed offer (RFC 3261 §13.2.1) across the trunk: the provider's INVITE has no SDP;
    # the phone gets an offer of the relay's, the provider gets one in the 200 (the
    # scenario checks it) and answers in its ACK.
    phone = callkit.callee(office.address, "1001", "callee_answer.xml")
    port = free_ports()
    carrier.trust("127.0.0.1", port)
    call = outside(carrier.address, "712000001", "outside_delayed_offer.xml", port=port)
    finish(call, phone, server=office)
    invite = [m for m in phone.received() if m.method == "INVITE"][0]
    assert "m=audio" in invite.body, phone.explain()
    sent = [m for m in call.sent() if m.method == "INVITE"][0]
    assert "m=audio" not in sent.body
    row = ended_calls(office.db_path)[-1]
    assert (row["direction"], row["trunk"], row["disposition"]) == (
        "inbound", "acme", "ANSWERED"), row


def test_the_phones_early_media_reaches_the_provider(office, carrier):
    phone = callkit.callee(office.address, "1001", "callee_early_media.xml", ring_ms=300)
    port = free_ports()
    carrier.trust("127.0.0.1", port)
    call = outside(carrier.address, "712000001", port=port)
    finish(call, phone, server=office)
    early = [m for m in call.received() if m.status == 183 and m.cseq_method == "INVITE"]
    assert early and "m=audio" in early[0].body, call.explain()
    assert ended_calls(office.db_path)[-1]["disposition"] == "ANSWERED"
