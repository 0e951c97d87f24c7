"""Toll-fraud protection against a real sipd and Kamailio as the phone company
(issue 12 item 4, "Show"): an extension without international permission is
refused an international number (and the refusal is a FraudEvent row, what the
panel's page lists); a runaway extension is stopped by its hourly limit and
stays blocked; an emergency number still goes through, blocked or not."""

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


def refused(sipd, dialled: str, status: int) -> None:
    run = ck.caller(sipd.address, "1001", dialled, "caller_rejected.xml",
                    sets={"expect": str(status)})
    ck.finish(run, server=sipd)


def test_international_without_permission_is_refused_and_recorded(sipd, carrier):
    kit.office(sipd, {"acme": carrier}, policy=["--home-country", "998", "--allow", "49"])
    sipd.start()
    refused(sipd, "9004930123456", 403)  # 1001 is "national", the default
    assert carrier.requests("INVITE") == []  # nothing reached the provider
    (event,) = kit.rows(sipd, "fraud_event")
    assert (event["extension"], event["number"], event["rule"]) == (
        "1001", "9004930123456", "permission"), event
    assert "Call 1001 -> 9004930123456 refused: international calls not allowed for 1001" \
        in sipd.log()
    (row,) = ck.ended_calls(sipd.db_path)
    assert (row["sip_status"], row["disposition"]) == (403, "FAILED"), row
    listed = kit.pbxctl(sipd, "fraud", "list")  # what the toll-fraud page shows
    assert "1001" in listed and "9004930123456" in listed and "permission" in listed, listed


def test_a_runaway_extension_is_stopped_by_the_hourly_limit(sipd, carrier):
    kit.office(sipd, {"acme": carrier}, limits={"1001": ["--calls-per-hour", "2"]})
    carrier.answer(kit.FAR, 486, "Busy Here")
    sipd.start()
    refused(sipd, kit.DIALLED, 486)
    refused(sipd, kit.DIALLED, 486)
    refused(sipd, kit.DIALLED, 403)  # the third in the hour
    refused(sipd, kit.DIALLED, 403)  # and blocked from now on
    assert len(carrier.requests("INVITE")) == 4  # two calls, each challenged once
    rules = [e["rule"] for e in kit.rows(sipd, "fraud_event")]
    assert rules == ["calls_per_hour", "blocked"], rules
    (ext,) = [e for e in kit.rows(sipd, "extension") if e["number"] == "1001"]
    assert ext["outbound_blocked_at"] is not None
    assert "made 2 outside calls in the last hour" in ext["outbound_blocked_reason"]
    assert "Extension 1001 blocked for outside calls" in sipd.log()
    # An admin looks and lifts the block: 1001 calls out again, its hour afresh.
    kit.pbxctl(sipd, "ext", "unblock", "1001")
    refused(sipd, kit.DIALLED, 486)
    assert len(carrier.requests("INVITE")) == 6


def test_an_emergency_number_still_goes_through(sipd, carrier):
    kit.office(sipd, {"acme": carrier}, permissions={"1001": "internal"})
    kit.block(sipd, "1001", "blocked by the test")
    far = kit.far_phone(carrier, number="103")
    sipd.start()
    caller = ck.caller(sipd.address, "1001", "103", "caller_call.xml", duration_ms=1500)
    ck.finish(caller, far, server=sipd)
    assert far.requests() == ["INVITE", "ACK", "BYE"], far.flow()
    assert kit.user(far.received()[0].first_line) == "103"
    assert kit.rows(sipd, "fraud_event") == []
    (row,) = ck.ended_calls(sipd.db_path)
    assert (row["trunk"], row["number_sent"], row["disposition"]) == ("acme", "103",
                                                                      "ANSWERED"), row
