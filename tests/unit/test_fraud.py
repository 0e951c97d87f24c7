"""Toll-fraud limits (sipd/trunks/fraud.py) on a clock the test moves, and the B2BUA
writing a FraudEvent for a number the routing step refused."""

from __future__ import annotations

import pytest

from core.models import OutboundPolicy, OutboundRoute, OutboundRouteTrunk, Trunk
from sipd.trunks.fraud import HOUR, Guard, Limits, Verdict
from tests.unit.b2bua_harness import invite, last, make_pbx


class Clock:
    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


LIMITS = Limits(max_calls=2, calls_per_hour=5, minutes_per_hour=10)


@pytest.fixture
def guard():
    return Guard(Clock())


def test_calls_at_once(guard):
    first = guard.begin("1001")
    guard.begin("1001")
    assert guard.check("1001", LIMITS) == Verdict(
        "max_calls", "1001 is in 2 outside calls, its limit")
    assert guard.check("1002", LIMITS) is None  # the limit is per extension
    guard.end("1001", first)
    guard.end("1001", first)  # ended twice (a BYE crossing ours) counts once
    assert guard.check("1001", LIMITS) is None
    assert guard.calls == {"1001": 1}


def test_calls_per_hour_block(guard):
    for _ in range(5):
        guard.end("1001", guard.begin("1001"))
        guard.clock.now += 60
    verdict = guard.check("1001", LIMITS)
    assert verdict == Verdict("calls_per_hour",
                              "1001 made 5 outside calls in the last hour, its limit", block=True)
    # An hour after the first ended, that one counts no more.
    guard.clock.now += HOUR - 5 * 60 + 1
    assert guard.check("1001", LIMITS) is None


def test_minutes_per_hour_count_calls_still_going(guard):
    span = guard.begin("1001")
    guard.clock.now += 5
    guard.answered(span)
    guard.clock.now += 9 * 60
    assert guard.check("1001", LIMITS) is None  # 9 minutes so far
    guard.clock.now += 60
    assert guard.check("1001", LIMITS) == Verdict(
        "minutes_per_hour", "1001 talked 10 minutes outside in the last hour, its limit",
        block=True)
    guard.end("1001", span)
    # Only the part of a call within the last hour counts.
    guard.clock.now += 55 * 60  # 5 of its 10 minutes are within the hour
    assert guard.check("1001", LIMITS) is None


def test_a_block_stays_until_lifted_and_the_hour_starts_afresh(guard):
    for _ in range(5):
        guard.end("1001", guard.begin("1001"))
    assert guard.check("1001", LIMITS).block
    guard.blocking("1001")
    blocked = Limits(2, 5, 10, blocked_at=guard.clock.now,
                     blocked_reason="1001 made 5 outside calls in the last hour, its limit")
    guard.clock.now += 2 * HOUR  # time alone does not lift it
    assert guard.check("1001", blocked) == Verdict(
        "blocked", "1001 is blocked until an admin lifts it (1001 made 5 outside calls in"
                   " the last hour, its limit)")
    guard.clock.now -= 2 * HOUR  # lifted at once: the calls that tripped it count no more
    assert guard.check("1001", LIMITS) is None


def test_emergency_is_never_refused_nor_counted(guard):
    blocked = Limits(0, 0, 0, blocked_at=1.0, blocked_reason="x")
    assert guard.check("1001", blocked, emergency=True) is None
    assert guard.begin("1001", emergency=True) is None
    assert guard.calls == {} and guard.hour == {}


def test_trunk_calls(guard):
    guard.trunk_begin("acme")
    guard.trunk_begin("acme")
    assert guard.trunk_full("acme", 2) and not guard.trunk_full("acme", 3)
    assert not guard.trunk_full("acme", 0)  # 0: no limit of its own
    guard.trunk_end("acme")
    assert not guard.trunk_full("acme", 2)


def test_a_providers_calls_count_against_its_trunk_in_and_out_together():
    from sipd.trunks.outbound import Outbound, Policy

    outbound = Outbound(None, Clock(), limits=lambda number: (None, Policy(trunk_max_calls=2)))
    assert outbound.inbound_full("acme", 1) == 0
    outbound.inbound_begin(7, "acme")
    assert outbound.inbound_full("acme", 1) == 1  # its own limit
    assert outbound.inbound_full("acme", 0) == 0  # 0: the policy's, 2
    outbound.guard.trunk_begin("acme")  # an outside call through it too
    assert outbound.inbound_full("acme", 0) == 2
    outbound.inbound_ended(7)
    outbound.inbound_ended(7)  # ended twice (and a call not from a trunk): counted once
    outbound.inbound_ended(8)
    assert outbound.guard.trunk_calls == {"acme": 1}


def test_the_policy_read_without_a_row_has_the_models_defaults():
    from sipd.trunks.outbound import Policy

    row = OutboundPolicy()
    assert Policy() == Policy(row.max_calls, row.calls_per_hour, row.minutes_per_hour,
                              row.trunk_max_calls)


# -- the B2BUA: a refused number leaves a FraudEvent ---------------------------------------


def test_a_number_the_extension_may_not_call_is_refused_and_recorded(tmp_path, caplog):
    pbx = make_pbx(tmp_path, numbers=("1001", "1002"))
    trunk = Trunk.create(name="acme", host="127.0.0.1", port=5090)
    route = OutboundRoute.create(name="world", patterns="9|00.")
    OutboundRouteTrunk.create(route=route, trunk=trunk, position=1)
    OutboundPolicy.insert(id=1, home_country="998").on_conflict_replace().execute()
    with caplog.at_level("INFO", logger="sipd"):
        invite(pbx, target="90049301234567")
    refused = last(pbx.sent, b"SIP/2.0 4")
    assert refused.startswith(
        b"SIP/2.0 403 Forbidden: international calls not allowed for 1001\r\n"), refused
    (event,) = pbx.rows("fraud_event")
    assert (event["extension"], event["number"], event["rule"]) == (
        "1001", "90049301234567", "permission")
    assert event["detail"].startswith("international calls not allowed for 1001")
    assert ("Call 1001 -> 90049301234567 refused: international calls not allowed for 1001"
            in caplog.text)
    (call,) = pbx.rows()
    assert (call["sip_status"], call["disposition"]) == (403, "FAILED")
    pbx.stack.database.close()
