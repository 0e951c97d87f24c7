"""A trunk disabled (`pbxctl trunk set NAME --disable`, the panel's toggle) while sipd runs:
its registration at Kamailio is removed, outbound routes skip it (the call goes out
through the next trunk of the route), and its provider's calls are no longer taken
(challenged like a stranger's); enabled again, it registers and takes calls again."""

import pytest

from tests.provider.test_inbound import outside
from tests.provider.test_trunk_register import trunk_state
from tests.sip import callkit as ck

FAR = "998901234567"
DIALLED = "9901234567"


@pytest.fixture(autouse=True)
def _logs_in_tmp_path(tmp_path, monkeypatch):
    monkeypatch.setattr(ck, "WORK_ROOT", tmp_path)


def run(pbxctl, *argv):
    status, out, err = pbxctl(*argv)
    assert status == 0, f"{argv}: {out}{err}"
    return out


def test_a_disabled_register_trunk_unregisters_and_routes_skip_it(tmp_path, make_carrier,
                                                                  pbxctl):
    first, second = make_carrier(), make_carrier()
    first.add_subscriber("acme1", "s3cret")
    sipd = ck.SipdServer(tmp_path, numbers=("1001",))
    run(pbxctl, "trunk", "add", "acme", "--host", first.address, "--username", "acme1",
        "--password", "s3cret", "--register", "--keepalive", "0")
    run(pbxctl, "trunk", "add", "backup", "--host", second.address, "--match", "127.0.0.9",
        "--keepalive", "0")
    run(pbxctl, "outbound", "add", "mobile", "--trunks", "acme,backup", "--pattern",
        "998+9|9XXXXXXXX")
    run(pbxctl, "policy", "set", "--home-country", "998")
    sipd.start()
    try:
        assert ck.wait_for(lambda: first.locations("acme1"), 10), sipd.log() + first.log()
        out = run(pbxctl, "trunk", "set", "acme", "--disable")
        assert "enabled no" in out, out
        assert ck.wait_for(lambda: first.locations("acme1") == [], 5), first.log()
        assert ck.wait_for(lambda: trunk_state(sipd.db_path)[0] == "disabled", 5), sipd.log()
        assert "[TRUNK] acme unregistered from" in sipd.log()

        far = ck.callee(second.address, FAR, "callee_answer.xml", ring_ms=300,
                        register_first=False)
        second.route_to(FAR, f"{ck.LOOPBACK}:{far.local_port}")
        second.trust(ck.LOOPBACK)
        caller = ck.caller(sipd.address, "1001", DIALLED, "caller_call.xml", duration_ms=500)
        ck.finish(caller, far, server=sipd)
        assert first.requests("INVITE") == [], first.log()
        row = ck.ended_calls(sipd.db_path)[-1]
        assert (row["trunk"], row["disposition"]) == ("backup", "ANSWERED"), row

        run(pbxctl, "trunk", "set", "acme", "--enable")
        assert ck.wait_for(lambda: first.locations("acme1"), 10), sipd.log()
        assert ck.wait_for(lambda: trunk_state(sipd.db_path)[0] == "registered", 5)
    finally:
        sipd.stop()


def test_a_disabled_ip_trunks_calls_are_challenged_until_it_is_enabled(tmp_path, pbxctl):
    sipd = ck.SipdServer(tmp_path, numbers=("1001",))
    run(pbxctl, "trunk", "add", "voip", "--host", "127.0.0.3", "--match", "127.0.0.3/32",
        "--keepalive", "0")
    run(pbxctl, "inbound", "add", "712000005", "--to", "1001", "--trunk", "voip")
    run(pbxctl, "trunk", "set", "voip", "--disable")
    sipd.start()
    try:
        phone = ck.callee(sipd.address, "1001", "callee_answer.xml")
        refused = outside(sipd.address, "712000005", "outside_refused_407.xml",
                          local_ip="127.0.0.3")
        ck.finish(refused, server=sipd)
        assert "[TRUNK] voip is disabled: a call from 127.0.0.3:" in sipd.log()
        assert not [m for m in phone.received() if m.method == "INVITE"]

        run(pbxctl, "trunk", "set", "voip", "--enable")
        assert ck.wait_for(lambda: "Trunks reloaded" in sipd.log(), 5), sipd.log()
        call = outside(sipd.address, "712000005", local_ip="127.0.0.3")
        ck.finish(call, phone, server=sipd)
        row = ck.ended_calls(sipd.db_path)[-1]
        assert (row["trunk"], row["direction"], row["disposition"]) == (
            "voip", "inbound", "ANSWERED"), row
    finally:
        sipd.stop()
