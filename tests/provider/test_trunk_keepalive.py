"""The OPTIONS keep-alive against Kamailio: a carrier that stops answering marks the
trunk down (pbxctl trunk list, TrunkState), and it comes back up when it answers again."""

from tests.provider.test_trunk_register import trunk_state
from tests.sip.callkit import SipdServer, wait_for


def test_keepalive_marks_the_trunk_down_and_up(tmp_path, carrier, pbxctl):
    sipd = SipdServer(tmp_path, numbers=("1001",))
    status, _, err = pbxctl("trunk", "add", "acme", "--host", carrier.address,
                            "--match", "127.0.0.1/32", "--keepalive", "1")
    assert status == 0, err
    sipd.start()
    try:
        assert wait_for(lambda: trunk_state(sipd.db_path)[0] == "up", 5), sipd.log()
        carrier.mute()
        assert wait_for(lambda: trunk_state(sipd.db_path)[0] == "down", 10), sipd.log()
        _, _, reason, _ = trunk_state(sipd.db_path)
        assert reason == f"no answer to OPTIONS from {carrier.address}/udp"
        assert f"[TRUNK] acme is down: no answer to OPTIONS from {carrier.address}/udp" in (
            sipd.log())
        status, out, _ = pbxctl("trunk", "list")
        assert "down" in out
        carrier.mute(False)
        assert wait_for(lambda: trunk_state(sipd.db_path)[0] == "up", 5), sipd.log()
        assert "[TRUNK] acme is up again: answered OPTIONS with 200" in sipd.log()
        assert len(carrier.requests("OPTIONS")) >= 3
    finally:
        sipd.stop()
