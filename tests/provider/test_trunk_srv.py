"""A trunk given by name and no port finds its provider by DNS SRV (RFC 3263 §4.2):
the tests' DNS server (tests/dns_server.py) says _sip._udp.carrier.test is Kamailio's
port on edge.carrier.test, and sipd registers there (Kamailio's location table) and
sends its calls there: REGISTER and INVITE take the same path."""

from tests.provider.test_trunk_register import trunk_state
from tests.sip.callkit import SipdServer, wait_for


def test_trunk_found_by_srv_registers_at_the_provider(tmp_path, carrier, pbxctl, dns):
    host, port = carrier.address.rsplit(":", 1)
    dns.add("_sip._udp.carrier.test", "SRV", f"10 60 {port} edge.carrier.test.")
    dns.add("edge.carrier.test", "A", host)
    carrier.add_subscriber("acme1", "s3cret")
    sipd = SipdServer(tmp_path, numbers=("1001",),
                      PBX_DNS_SERVERS="{}:{}".format(*dns.address))
    status, _, err = pbxctl("trunk", "add", "acme", "--host", "carrier.test",
                            "--username", "acme1", "--password", "s3cret", "--register")
    assert status == 0, err
    sipd.start()
    try:
        assert wait_for(lambda: trunk_state(sipd.db_path)[0] == "registered", 10), (
            f"{trunk_state(sipd.db_path)}\n{sipd.log()}\n{dns.asked}")
        assert [r["contact"] for r in carrier.locations("acme1")] == [
            f"sip:acme1@127.0.0.1:{sipd.daemon.port}"]
        assert ("_sip._udp.carrier.test", "SRV") in dns.asked
        assert f"[TRUNK] acme registered at carrier.test = {host}:{port}/udp" in sipd.log()
    finally:
        sipd.stop()
