"""A register trunk against Kamailio as the carrier: sipd registers with digest and
refreshes (seen in Kamailio's own location table); a wrong password shows as failed with
the reason in `pbxctl trunk list`, and recovers once corrected (pbxctl trunk set + reload)."""

import time

from tests.sip.callkit import SipdServer, wait_for


def trunk_state(db_path, name="acme"):
    import sqlite3

    connection = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    try:
        row = connection.execute(
            "SELECT s.status, s.last_code, s.reason, s.contact FROM trunk_state s"
            " JOIN trunk t ON t.id = s.trunk_id WHERE t.name = ?", (name,)).fetchone()
    finally:
        connection.close()
    return row or (None, None, None, None)


def test_trunk_registers_refreshes_and_recovers_from_a_wrong_password(
        tmp_path, make_carrier, pbxctl):
    # Kamailio grants at most 6 s: sipd refreshes after 3 s.
    carrier = make_carrier(max_expires=6)
    carrier.add_subscriber("acme1", "s3cret")
    sipd = SipdServer(tmp_path, numbers=("1001",))
    status, out, err = pbxctl("trunk", "add", "acme", "--host", carrier.address,
                              "--username", "acme1", "--password", "s3cret", "--register")
    assert status == 0, err
    sipd.start()
    try:
        assert wait_for(lambda: trunk_state(sipd.db_path)[0] == "registered", 10), (
            f"{trunk_state(sipd.db_path)}\n{sipd.log()}\n{carrier.log()}")
        port = sipd.daemon.port
        rows = carrier.locations("acme1")
        assert [r["contact"] for r in rows] == [f"sip:acme1@127.0.0.1:{port}"], carrier.log()
        assert rows[0]["expires"] - time.time() <= 6.5
        first_cseq = rows[0]["cseq"]
        # Refreshed before it runs out: the binding's CSeq goes up, it never lapses.
        assert wait_for(lambda: (carrier.locations("acme1") or [{"cseq": 0}])[0]["cseq"]
                        > first_cseq, 8), carrier.log()
        # Past the first binding's expiry (Kamailio's clock cannot be moved): a binding
        # is still there only because the refresh renewed it.
        time.sleep(max(0.0, rows[0]["expires"] + 0.5 - time.time()))
        assert carrier.locations("acme1"), "the registration lapsed"
        assert "[TRUNK] acme registered at 127.0.0.1:" in sipd.log()
        status, out, _ = pbxctl("trunk", "list")
        assert status == 0 and "registered" in out

        # A wrong password: failed, with the reason, in pbxctl trunk list.
        status, out, err = pbxctl("trunk", "set", "acme", "--password", "wrong")
        assert status == 0 and "not told" not in out, out + err
        assert wait_for(lambda: trunk_state(sipd.db_path)[0] == "failed", 8), sipd.log()
        _, code, reason, _ = trunk_state(sipd.db_path)
        assert code == 401 and "refused the password for user acme1" in reason
        status, out, _ = pbxctl("trunk", "list")
        assert "failed" in out and "refused the password" in out
        assert "wrong" not in sipd.log()

        # Corrected: registered again at once (the reload), not after the back-off.
        status, out, err = pbxctl("trunk", "set", "acme", "--password", "s3cret")
        assert status == 0, err
        assert wait_for(lambda: trunk_state(sipd.db_path)[0] == "registered", 5), sipd.log()
        assert carrier.locations("acme1")
        assert "s3cret" not in sipd.log()
    finally:
        sipd.stop()


def test_trunk_registers_over_tcp_on_a_connection_of_its_own(tmp_path, carrier, pbxctl):
    carrier.add_subscriber("acme1", "s3cret")
    sipd = SipdServer(tmp_path, numbers=("1001",))
    status, _, err = pbxctl("trunk", "add", "acme", "--host", carrier.address, "--transport",
                            "tcp", "--username", "acme1", "--password", "s3cret", "--register")
    assert status == 0, err
    sipd.start()
    try:
        assert wait_for(lambda: trunk_state(sipd.db_path)[0] == "registered", 10), (
            f"{trunk_state(sipd.db_path)}\n{sipd.log()}\n{carrier.log()}")
        port = sipd.daemon.port
        assert [r["contact"] for r in carrier.locations("acme1")] == [
            f"sip:acme1@127.0.0.1:{port};transport=tcp"]
        assert {r["proto"] for r in carrier.requests("REGISTER")} == {"tcp"}
        assert trunk_state(sipd.db_path)[3] == f"sip:acme1@127.0.0.1:{port};transport=tcp"
    finally:
        sipd.stop()


def test_register_now_and_unregister_when_sipd_stops(tmp_path, make_carrier, pbxctl):
    # Kamailio would keep the binding 60 s: only sipd's Expires: 0 removes it at once.
    carrier = make_carrier(max_expires=60)
    carrier.add_subscriber("acme1", "s3cret")
    sipd = SipdServer(tmp_path, numbers=("1001",))
    status, out, err = pbxctl("trunk", "add", "acme", "--host", carrier.address,
                              "--username", "acme1", "--password", "s3cret", "--register")
    assert status == 0, err
    status, out, err = pbxctl("trunk", "add", "quiet", "--host", carrier.address,
                              "--match", "127.0.0.9/32")
    assert status == 0, err
    status, out, err = pbxctl("trunk", "register", "acme")
    assert status == 1 and "sipd is not running" in err and out == "", (out, err)
    sipd.start()
    stopped = False
    try:
        assert wait_for(lambda: carrier.locations("acme1"), 10), sipd.log() + carrier.log()
        first_cseq = carrier.locations("acme1")[0]["cseq"]
        status, out, err = pbxctl("trunk", "register", "acme")
        assert status == 0 and "registering it again" in out, (out, err)
        assert wait_for(lambda: carrier.locations("acme1")[0]["cseq"] > first_cseq, 5), (
            carrier.log())
        assert "[TRUNK] acme: registering again, asked by an admin" in sipd.log()
        for name, why in (("nosuch", "no trunk nosuch"), ("quiet", "does not register")):
            status, out, err = pbxctl("trunk", "register", name)
            assert status == 1 and why in err and len(err.strip().splitlines()) == 1, err

        started = time.monotonic()
        sipd.stop()
        stopped = True
        assert time.monotonic() - started < 5
        assert carrier.locations("acme1") == [], sipd.log()[-3000:]
        assert "[TRUNK] acme unregistered from 127.0.0.1:" in sipd.log()
        assert trunk_state(sipd.db_path)[0] == "unregistered"
    finally:
        if not stopped:
            sipd.stop()


def test_a_provider_that_does_not_answer_holds_a_stop_at_most_2_s(tmp_path, make_carrier,
                                                                  pbxctl):
    carrier = make_carrier(max_expires=60)
    carrier.add_subscriber("acme1", "s3cret")
    sipd = SipdServer(tmp_path, numbers=("1001",))
    status, out, err = pbxctl("trunk", "add", "acme", "--host", carrier.address,
                              "--username", "acme1", "--password", "s3cret", "--register")
    assert status == 0, err
    sipd.start()
    try:
        assert wait_for(lambda: trunk_state(sipd.db_path)[0] == "registered", 10), sipd.log()
        carrier.stop()  # gone: the Expires: 0 is never answered
    finally:
        started = time.monotonic()
        sipd.stop()
    took = time.monotonic() - started
    assert 1.5 < took < 4.5, took
    assert "Stopping without every provider's answer to Expires: 0" in sipd.log()
