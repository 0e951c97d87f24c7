"""The qualify schedule (sipd/sip/qualify.py): when each binding is probed, how
answers and silences count, when a binding is dropped. The clock is a number
the test moves."""

import pytest

from sipd.sip.message import parse
from sipd.sip.qualify import Change, Schedule, Target, options_request


def target(binding_id=1, updated_at=100.0, unreachable=False, transport="UDP"):
    return Target(binding_id, "sip:1001@pbx.test", f"sip:1001@192.0.2.1:{5000 + binding_id}",
                  "127.0.0.1", 5000 + binding_id, transport, updated_at, unreachable)


def probe_times(schedule, start, end, step=0.05):
    """When each binding's probes go out between start and end, answered at once."""
    times: dict[int, list[float]] = {}
    now = start
    while now < end:
        for t in schedule.due(now):
            times.setdefault(t.id, []).append(round(now, 2))
            schedule.answered(t.id, now)
        now += step
    return times


def test_each_binding_is_probed_once_per_interval_spread_over_it():
    schedule = Schedule(interval=10)
    schedule.sync([target(i) for i in range(1, 11)], now=0.0)
    times = probe_times(schedule, 0.0, 30.0)
    assert sorted(times) == list(range(1, 11))
    for probes in times.values():
        assert len(probes) == 3
        assert probes[1] - probes[0] == pytest.approx(10, abs=0.06)
    # Not all at once: the first probes fall in different seconds of the interval.
    firsts = sorted(probes[0] for probes in times.values())
    assert len({int(first) for first in firsts}) >= 7
    assert firsts[0] < 2 and firsts[-1] > 8


def test_in_flight_probes_are_bounded():
    schedule = Schedule(interval=10, max_in_flight=4)
    schedule.sync([target(i) for i in range(1, 21)], now=0.0)
    assert len(schedule.due(10.0)) == 4
    assert schedule.due(10.1) == []  # nobody answered yet
    assert schedule.in_flight() == 4


def test_silence_marks_unreachable_once_then_drops_after_three():
    schedule = Schedule(interval=10, timeout=2)
    one = target(1)
    schedule.sync([one], now=0.0)
    changes = []
    now = 0.0
    while now < 60 and len(schedule):
        schedule.due(now)
        changes += schedule.expired(now)[1]
        now += 0.5
    assert [c.kind for c in changes] == ["unreachable", "drop"]
    assert changes[0] == Change("unreachable", one, 1)
    assert changes[1].failures == 3
    assert len(schedule) == 0
    # Three probes one interval apart: dropped some 2-3 intervals after the first.
    assert 20 < now <= 32


def test_an_answer_makes_it_reachable_again_and_resets_the_count():
    schedule = Schedule(interval=10, timeout=2)
    schedule.sync([target(1)], now=0.0)
    assert schedule.failed(1, 1.0) == Change("unreachable", target(1), 1)
    assert schedule.failed(1, 2.0) is None  # already unreachable: nothing to write
    assert schedule.answered(1, 3.0) == Change("reachable", target(1), 0)
    assert schedule.answered(1, 4.0) is None  # nothing changed
    assert schedule.failed(1, 5.0).kind == "unreachable"
    assert schedule.failed(1, 6.0) is None
    assert schedule.failed(1, 7.0).kind == "drop"


def test_unreachable_from_the_database_is_not_written_again():
    schedule = Schedule(interval=10)
    schedule.sync([target(1, unreachable=True)], now=0.0)  # e.g. after a restart of sipd
    assert schedule.failed(1, 1.0) is None
    assert schedule.answered(1, 2.0).kind == "reachable"


def test_a_refresh_starts_the_count_again():
    schedule = Schedule(interval=10)
    schedule.sync([target(1)], now=0.0)
    schedule.failed(1, 1.0)
    schedule.failed(1, 2.0)
    # The phone registered again (the registrar cleared unreachable_since).
    schedule.sync([target(1, updated_at=150.0)], now=3.0)
    assert schedule.failed(1, 4.0).kind == "unreachable"
    assert schedule.failed(1, 5.0) is None
    assert schedule.failed(1, 6.0).kind == "drop"


def test_bindings_that_went_are_forgotten():
    schedule = Schedule(interval=10)
    schedule.sync([target(1), target(2)], now=0.0)
    assert schedule.sync([target(2)], now=1.0) == [1]
    assert schedule.answered(1, 2.0) is None and schedule.failed(1, 2.0) is None
    assert len(schedule) == 1


def test_timeout_never_outlasts_half_the_interval():
    assert Schedule(interval=60).timeout == 5.0
    assert Schedule(interval=2).timeout == 1.0
    with pytest.raises(ValueError):
        Schedule(interval=0)


def test_options_request_goes_to_the_contact():
    request = options_request(target(3), "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKabc;rport",
                              "pbx.test", "tag1", "cid@127.0.0.1")
    parsed = parse(bytes(request))
    assert parsed.method == "OPTIONS"
    assert parsed.uri == "sip:1001@192.0.2.1:5003"
    assert parsed.headers.get("To") == "<sip:1001@pbx.test>"
    assert parsed.headers.get("CSeq") == "1 OPTIONS"
    assert parsed.headers.get("Content-Length") == "0"


def test_interval_setting():
    from core.config import ConfigError, load_settings

    assert load_settings({}).qualify_interval == 60
    assert load_settings({"PBX_QUALIFY_INTERVAL": "0"}).qualify_interval == 0
    assert load_settings({"PBX_QUALIFY_INTERVAL": "15"}).qualify_interval == 15
    for bad in ("-1", "soon", "1.5"):
        with pytest.raises(ConfigError, match="PBX_QUALIFY_INTERVAL"):
            load_settings({"PBX_QUALIFY_INTERVAL": bad})


# -- a phone back from a new port replaces its binding (sipd/sip/registration.py plan) -----

from sipd.sip.registration import Existing, Policy, Wanted, WantedContact, plan  # noqa: E402


def existing(contact="sip:1001@10.0.0.5:5060", call_id="boot-1", instance="",
             host="203.0.113.7", agent="MicroSIP/3.21.3", binding_id=1):
    return Existing(binding_id, contact, call_id, 5, instance, 100.0, host, agent)


def register(contact, call_id="boot-2", instance="", host="203.0.113.7",
             agent="MicroSIP/3.21.3", bindings=None):
    wanted = Wanted([WantedContact(contact, 300, instance)])
    return plan(bindings if bindings is not None else [existing()], wanted, call_id, 1,
                Policy(), host, agent)


def test_same_address_and_user_agent_after_a_restart_supersedes():
    changes = register("sip:1001@10.0.0.5:5077")
    # Added, and the earlier binding marked for an immediate probe (not removed: two
    # live phones of one program on one address look just the same).
    assert [c.uri for c in changes.add] == ["sip:1001@10.0.0.5:5077"]
    assert [b.id for b in changes.superseded] == [1]
    assert changes.refresh == [] and changes.remove == []


@pytest.mark.parametrize("why, kwargs", [
    ("the same boot (Call-ID): a second contact of a running phone", {"call_id": "boot-1"}),
    ("another program", {"agent": "Zoiper rv2.10"}),
    ("another address", {"host": "198.51.100.1"}),
    ("another PC behind the same NAT (its own private address)",
     {"contact": "sip:1001@10.0.0.6:5060"}),
    ("no User-Agent to tell", {"agent": ""}),
    ("a device that names itself", {"instance": "urn:uuid:abc"}),
])
def test_otherwise_it_is_another_phone(why, kwargs):
    values = {"contact": "sip:1001@10.0.0.5:5077", **kwargs}
    # Without a User-Agent on either side, nothing says it is the same program.
    bindings = [existing(agent="")] if kwargs.get("agent") == "" else None
    changes = register(**values, bindings=bindings)
    assert [c.uri for c in changes.add] == [values["contact"]], why
    assert changes.refresh == [] and changes.remove == [] and changes.superseded == []


def test_same_instance_replaces_whatever_the_address():
    old = existing(instance="urn:uuid:abc", host="198.51.100.1", agent="Linphone/5.2")
    changes = register("sip:1001@10.9.9.9:6000", instance="urn:uuid:abc", agent="Linphone/5.3",
                       bindings=[old])
    assert [(b.id, c.uri) for b, c in changes.refresh] == [(1, "sip:1001@10.9.9.9:6000")]
    assert changes.add == []


def test_ipv6_contacts_compare_without_the_port():
    old = existing(contact="sip:1001@[2001:db8::5]:5060")
    changes = register("sip:1001@[2001:db8::5]:5099", bindings=[old])
    assert len(changes.superseded) == 1
    changes = register("sip:1001@[2001:db8::6]:5060", bindings=[old])
    assert changes.superseded == []


def test_a_binding_gone_while_probed_is_not_counted_and_an_id_used_again_starts_afresh():
    schedule = Schedule(interval=10, timeout=2)
    schedule.sync([target(1)], now=0.0)
    assert [t.id for t in schedule.due(10.0)] == [1]
    assert schedule.sync([], now=10.5) == [1]
    assert schedule.expired(13.0) == ([], [])
    # SQLite may give a new binding the id of one deleted: it is a new binding.
    schedule.sync([target(1, updated_at=200.0)], now=20.0)
    assert schedule.state(1).failures == 0
    times = probe_times(schedule, 20.0, 40.0)
    assert len(times[1]) == 2


def test_a_superseded_binding_is_probed_at_once_and_dropped_at_its_first_silence():
    schedule = Schedule(interval=60, timeout=2)
    schedule.sync([target(1)], now=0.0)
    assert schedule.due(1.0) == []  # its turn is later in the interval
    schedule.sync([target(1)._replace(superseded=True)], now=1.0)
    assert [t.id for t in schedule.due(1.0)] == [1]
    ids, changes = schedule.expired(3.0)
    assert ids == [1] and [c.kind for c in changes] == ["drop"]
    assert changes[0].target.superseded and len(schedule) == 0


def test_a_superseded_binding_that_answers_is_kept():
    schedule = Schedule(interval=60, timeout=2)
    schedule.sync([target(1)._replace(superseded=True)], now=0.0)
    assert [t.id for t in schedule.due(0.0)] == [1]
    change = schedule.answered(1, 0.5)
    assert change.kind == "reachable"  # written: superseded_at cleared
    schedule.sync([target(1)], now=1.0)
    assert schedule.due(1.5) == [] and len(schedule) == 1
