"""sipd/trunks/inbound.py: whose trunk an INVITE is, its DID, and the DID's inbound route."""


import pytest

from core import outbound, trunks
from sipd.registrar import Source
from sipd.sip.message import parse
from sipd.trunks import inbound
from sipd.trunks.manager import LiveTrunk
from sipd.trunks.path import path_for


def invite(uri, to=None):
    to = to or uri
    return parse((
        f"INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKx\r\n"
        f"From: <sip:998901234567@carrier.test>;tag=a\r\nTo: <{to}>\r\nCall-ID: c\r\n"
        "CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n").encode())


@pytest.fixture
def live(database):
    rows = {
        "ip": trunks.create_trunk("ip", "198.51.100.7", match="198.51.100.0/28,203.0.113.9"),
        "acme": trunks.create_trunk("acme", "127.0.0.1:5070", username="acme1", password="p",
                                    register=True),
        "beta": trunks.create_trunk("beta", "127.0.0.1:5070", username="beta1", password="p",
                                    register=True),
    }
    found = {}
    for name, row in rows.items():
        trunk = LiveTrunk(row)
        trunk.path = path_for(row)
        trunk.status = "registered" if row.register else "unregistered"
        found[name] = trunk
    return found


def source(host, port=5060):
    return Source(host, port, "UDP")


def test_ip_trunk_by_its_networks_only(live):
    request = invite("sip:712000001@pbx.example")
    assert inbound.match(live.values(), request, source("198.51.100.3")) is live["ip"]
    assert inbound.match(live.values(), request, source("203.0.113.9")) is live["ip"]
    assert inbound.match(live.values(), request, source("198.51.100.16")) is None
    assert inbound.match(live.values(), request, source("not-an-address")) is None


def test_register_trunk_by_its_address_and_the_user_it_registered(live):
    to_beta = invite("sip:beta1@127.0.0.1:5060", to="sip:712000002@carrier.test")
    assert inbound.match(live.values(), to_beta, source("127.0.0.1", 5070)) is live["beta"]
    to_did = invite("sip:712000001@127.0.0.1:5060")
    assert inbound.match(live.values(), to_did, source("127.0.0.1")) is live["acme"]
    assert inbound.did(to_beta, live["beta"]) == "712000002"  # R-URI is only our Contact
    assert inbound.did(to_did, live["acme"]) == "712000001"
    live["acme"].status = live["beta"].status = "failed"  # not registered: not trusted
    assert inbound.match(live.values(), to_did, source("127.0.0.1")) is None


def test_a_stream_trunk_by_the_connection_it_registered_on(database):
    row = trunks.create_trunk("secure", "127.0.0.1:5071", transport="tls", username="s1",
                              password="p", register=True)
    trunk = LiveTrunk(row)
    trunk.path, trunk.status = path_for(row), "registered"
    request = invite("sip:712000001@127.0.0.1:5060")
    assert inbound.match([trunk], request, Source("127.0.0.1", 5071, "TLS")) is trunk
    # A phone on the same host (over UDP, or its own TLS connection) is not the provider.
    for other in (Source("127.0.0.1", 5071, "UDP"), Source("127.0.0.1", 40123, "TLS")):
        assert inbound.match([trunk], request, other) is None, other


def test_a_disabled_trunk_takes_no_call_and_is_named_for_the_log(live):
    request = invite("sip:712000001@pbx.example")
    live["ip"].row.enabled = False
    assert inbound.match(live.values(), request, source("198.51.100.3")) is None
    assert inbound.disabled_match(live.values(), source("198.51.100.3")) is live["ip"]
    assert inbound.disabled_match(live.values(), source("198.51.100.16")) is None
    live["acme"].row.enabled = False  # registered a moment ago: no longer trusted
    assert inbound.match(live.values(), invite("sip:712000001@127.0.0.1:5060"),
                         source("127.0.0.1", 5070)) is live["beta"]


def test_route_for_prefers_the_trunks_own_route_and_ignores_the_plus(live, database):
    from core import accounts

    accounts.create_extension("1001", "pbx.test", password="Vq7-tr!unk-Kx92")
    accounts.create_extension("1002", "pbx.test", password="Vq7-tr!unk-Kx92")
    outbound.create_inbound("712000001", "1001", None)
    outbound.create_inbound("712000001", "1002", "acme")
    outbound.create_inbound("+712000003", "1001", None)
    acme, beta = live["acme"].row.id, live["beta"].row.id
    assert inbound.route_for("712000001", acme) == "1002"
    assert inbound.route_for("712000001", beta) == "1001"
    assert inbound.route_for("712000003", beta) == "1001"
    assert inbound.route_for("712000009", acme) is None


def test_caller_has_no_call_limit_of_its_own():
    assert inbound.Caller("998901234567").max_calls > 1000


@pytest.mark.parametrize("destination, kind, status", [
    ("1001", "Ring", None),
    ("600", "Ring", None),
    ("hangup", "Refuse", 480),
    ("voicemail:1001", "Application", None),
    ("1999", "Refuse", 404),
])
def test_an_inbound_destination_is_reached_as_a_forward_there_would_be(destination, kind,
                                                                        status):
    from sipd.routing.decide import decide
    from sipd.routing.directory import TableDirectory

    directory = TableDirectory({"1001": {"voicemail": True}, "1002": {}},
                               {"600": {"name": "Sales", "members": ["1001", "1002"]}})
    step = decide("998901234567", destination, directory, 0.0, inbound=True)
    assert type(step).__name__ == kind
    assert getattr(step, "status", None) == status
    assert not [e for e in step.events if e.kind == "forwarded" and not e.by]
