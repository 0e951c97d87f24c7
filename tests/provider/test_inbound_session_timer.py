"""The session timer (RFC 4028) on calls from the carrier (Kamailio), where sipd is the
UAS: the provider's caller (a sipp behind the carrier, tests/provider/scenarios)
times the session and says who refreshes it, and sipd's 200 must copy that (§9).

- refresher=uas: sipd refreshes toward the provider, with UPDATE (the caller's Allow
  lists it) half way through the interval (§10), through the carrier's Record-Route;
  the call outlives its first interval and more.
- refresher=uac: the provider refreshes; this one never does, and sipd ends the call
  at 90 s less a third (§10) on both legs.

sipd's clock cannot be moved from outside its process, so these take the 95 s and the
60 s they are about; the cases around them (a re-INVITE refresh, 481 and 422 answers,
a refresh handing the refreshing over) run on a moved clock in
tests/unit/test_b2bua_session_caller.py."""

from __future__ import annotations

import pytest

from tests.provider.test_inbound import OUTSIDE, invite_from
from tests.provider.test_trunk_register import trunk_state
from tests.sip import callkit
from tests.sip.callkit import SipdServer, Sipp, ended_calls, finish, free_ports, wait_for

DID = "712000001"


@pytest.fixture(autouse=True)
def _logs_in_tmp_path(tmp_path, monkeypatch):
    monkeypatch.setattr(callkit, "WORK_ROOT", tmp_path)


@pytest.fixture
def office(tmp_path, carrier, pbxctl):
    """sipd registered to the carrier as trunk acme, the DID routed to 1001. No RTP
    flows in these calls: the relay's media timeout is put beyond them."""
    carrier.add_subscriber("acme1", "s3cret")
    sipd = SipdServer(tmp_path, numbers=("1001",), PBX_MEDIA_TIMEOUT="600")
    for argv in (
        ("trunk", "add", "acme", "--host", carrier.address, "--username", "acme1",
         "--password", "s3cret", "--register", "--keepalive", "0"),
        ("inbound", "add", DID, "--to", "1001"),
    ):
        status, out, err = pbxctl(*argv)
        assert status == 0, f"{argv}: {out}{err}"
    carrier.did(DID, "acme1")
    sipd.start()
    assert wait_for(lambda: trunk_state(sipd.db_path)[0] == "registered", 10), sipd.log()
    yield sipd
    sipd.stop()


def outside(carrier, scenario: str, duration_ms: int, timeout: float) -> Sipp:
    port = free_ports()
    carrier.trust("127.0.0.1", port)  # the outside world's caller needs no account
    return Sipp(f"outside-{DID}", str(callkit.ROOT / "tests/provider/scenarios" / scenario),
                carrier.address, inject=[[OUTSIDE, DID]], duration_ms=duration_ms,
                timeout=timeout, local_port=port).start()


def test_a_provider_that_asks_us_to_refresh_gets_our_updates_and_the_call_goes_on(
        office, carrier):
    phone = callkit.callee(office.address, "1001", "callee_answer.xml", rtp_echo=False,
                           timeout=150)
    # The scenario checks our 200 (90;refresher=uas, Require: timer) and both UPDATEs
    # (90;refresher=uac); it hangs up 5 s after the second, at about 95 s.
    call = outside(carrier, "outside_session_refreshed.xml", 5000, 150)
    finish(call, phone, timeout=160, server=office)

    assert f"<sip:{OUTSIDE}@" in invite_from(phone), phone.explain()
    assert call.requests() == ["UPDATE", "UPDATE"], call.flow()
    assert phone.requests() == ["INVITE", "ACK", "BYE"], phone.flow()  # ours, not its
    # Through the carrier, as its Record-Route asked (RFC 3261 §12.2.1.1).
    assert len(carrier.requests("UPDATE")) == 2, carrier.log()
    (row,) = ended_calls(office.db_path)
    assert (row["direction"], row["trunk"], row["disposition"], row["hangup_by"]) == (
        "inbound", "acme", "ANSWERED", "caller"), row
    assert row["ended_at"] - row["answered_at"] > 90, row  # beyond the first interval
    log = office.log()
    assert "session timer 90 s on trunk acme, refreshed by us" in log
    assert log.count("session refresh (UPDATE) to trunk acme") == 2, log[-3000:]


def test_a_provider_that_refreshes_itself_and_stops_has_the_call_ended(office, carrier):
    phone = callkit.callee(office.address, "1001", "callee_answer.xml", rtp_echo=False,
                           timeout=100)
    call = outside(carrier, "outside_session_lapses.xml", 0, 100)
    finish(call, phone, timeout=110, server=office)

    # sipd sent no refresh and ended the call on both legs at 60 s (§10).
    assert call.requests() == ["BYE"], call.flow()
    assert phone.requests() == ["INVITE", "ACK", "BYE"], phone.flow()
    (row,) = ended_calls(office.db_path)
    assert (row["disposition"], row["hangup_by"], row["reason"]) == (
        "ANSWERED", "system", "session timer expired (90 s) on trunk acme"), row
    assert 55 <= row["ended_at"] - row["answered_at"] <= 65, row
    assert "no session refresh from trunk acme within 90 s; hanging up" in office.log()
