"""DNS SRV for a trunk's provider (sipd/trunks/srv.py, RFC 3263 §4.2, RFC 2782), against
the tests' DNS server on loopback (tests/dns_server.py, the `dns` fixture)."""

import logging
import socket

import pytest

from sipd.trunks import srv
from sipd.trunks.path import PathError, path_for
from tests.unit.test_trunk_path import NAMES, resolver, trunk


def test_a_name_without_a_port_goes_where_its_srv_record_says(dns):
    dns.add("_sip._udp.sip.example.net", "SRV", "10 60 5070 edge1.example.net.")
    dns.add("edge1.example.net", "A", "127.0.0.7")
    system = resolver(NAMES)
    path = path_for(trunk(), system)
    assert (path.host, path.port, path.transport) == ("127.0.0.7", 5070, "UDP")
    # The names stay the trunk's: only where the request is sent changes.
    assert path.domain == "sip.example.net" and path.uri() == "sip:sip.example.net"
    assert system.asked == []  # the system resolver is not asked for an SRV target
    assert dns.asked == [("_sip._udp.sip.example.net", "SRV"), ("edge1.example.net", "A")]


@pytest.mark.parametrize("transport, service, port", [
    ("tcp", "_sip._tcp", 5080),
    ("tls", "_sips._tcp", 5081),
])
def test_the_service_follows_the_transport(dns, transport, service, port):
    dns.add(f"{service}.sip.example.net", "SRV", f"0 0 {port} edge.example.net.")
    dns.add("edge.example.net", "A", "127.0.0.8")
    path = path_for(trunk(transport=transport), resolver(NAMES))
    assert (path.host, path.port, path.transport) == ("127.0.0.8", port, transport.upper())


def test_lowest_priority_then_highest_weight_every_time(dns):
    dns.add("_sip._udp.sip.example.net", "SRV",
            "20 100 5090 backup.example.net.", "10 10 5071 light.example.net.",
            "10 50 5072 heavy.example.net.")
    for name, address in (("backup", "127.0.0.9"), ("light", "127.0.0.10"),
                          ("heavy", "127.0.0.11")):
        dns.add(f"{name}.example.net", "A", address)
    # REGISTER and INVITE take the same path: the choice is the same each time.
    paths = {path_for(trunk(), resolver(NAMES)) for _ in range(5)}
    assert [(p.host, p.port) for p in paths] == [("127.0.0.11", 5072)]


def test_a_port_or_an_address_skips_srv(dns):
    dns.add("_sip._udp.sip.example.net", "SRV", "10 60 5070 edge1.example.net.")
    assert path_for(trunk(port=5060), resolver(NAMES)).address == "198.51.100.7:5060/udp"
    assert path_for(trunk(host="127.0.0.1"), resolver(NAMES)).address == "127.0.0.1:5060/udp"
    assert dns.asked == []


def test_no_srv_records_fall_back_to_the_system_resolver_on_the_default_port(dns):
    system = resolver(NAMES)
    path = path_for(trunk(transport="tls"), system)
    assert path.address == "198.51.100.7:5061/tls"
    assert system.asked == [("sip.example.net", 5061, socket.AF_INET, socket.SOCK_STREAM)]
    assert dns.asked == [("_sips._tcp.sip.example.net", "SRV")]


def test_a_dot_target_means_no_service_there(dns):
    dns.add("_sip._udp.sip.example.net", "SRV", "0 0 0 .")
    assert path_for(trunk(), resolver(NAMES)).address == "198.51.100.7:5060/udp"


def test_an_srv_target_without_an_address_is_a_path_error(dns):
    dns.add("_sip._udp.sip.example.net", "SRV", "10 60 5070 gone.example.net.")
    with pytest.raises(PathError, match="cannot resolve gone.example.net"):
        path_for(trunk(), resolver(NAMES))


def test_an_outbound_proxy_found_by_srv_is_routed_to_by_name(dns):
    dns.add("_sip._udp.proxy.example.net", "SRV", "10 60 5099 p1.example.net.")
    dns.add("p1.example.net", "A", "127.0.0.12")
    path = path_for(trunk(outbound_proxy="proxy.example.net"), resolver(NAMES))
    assert path.address == "127.0.0.12:5099/udp"
    assert path.route == "<sip:proxy.example.net;lr>"


def test_answers_are_kept_for_their_ttl_and_absence_for_a_minute(dns):
    now = [1000.0]
    lookup = srv.Lookup([dns.address], clock=lambda: now[0])
    dns.add("_sip._udp.sip.example.net", "SRV", "10 60 5070 edge1.example.net.")
    assert lookup.service("sip.example.net", "udp").port == 5070
    assert lookup.service("none.example.net", "udp") is None
    asked = len(dns.asked)
    now[0] += 30
    assert lookup.service("sip.example.net", "udp").port == 5070
    assert lookup.service("none.example.net", "udp") is None
    assert len(dns.asked) == asked  # nothing asked again within the TTL
    now[0] += 31  # past the records' TTL (60 s, tests/dns_server.py) and the minute
    lookup.service("sip.example.net", "udp")
    lookup.service("none.example.net", "udp")
    assert len(dns.asked) == asked + 2


def test_a_dns_server_that_does_not_answer_falls_back_and_says_so(caplog):
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.bind(("127.0.0.1", 0))
    address = closed.getsockname()
    closed.close()  # nothing listens there: the query is refused at once
    lookup = srv.Lookup([address], timeout=1.0)
    with caplog.at_level(logging.WARNING, logger="sipd"):
        assert lookup.service("sip.example.net", "udp") is None
    assert "SRV lookup of _sip._udp.sip.example.net failed" in caplog.text
