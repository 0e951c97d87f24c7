"""sipd/trunks/path.py: the one path REGISTER, OPTIONS and INVITE take to a trunk."""

import socket
from types import SimpleNamespace

import pytest

from sipd.trunks.path import PathError, path_for, resolve, target


def trunk(**fields):
    row = dict(host="sip.example.net", port=None, transport="udp", username="acme1",
               from_user="", from_domain="", outbound_proxy="")
    row.update(fields)
    return SimpleNamespace(**row)


def resolver(table):
    """getaddrinfo over a dict name -> address, recording what it was asked."""
    asked = []

    def getaddrinfo(name, port, family, kind):
        asked.append((name, port, family, kind))
        if name not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(family, kind, 0, "", (table[name], port))]

    getaddrinfo.asked = asked
    return getaddrinfo


NAMES = {"sip.example.net": "198.51.100.7", "proxy.example.net": "198.51.100.9"}


@pytest.mark.parametrize(
    "fields, address, domain, uri, route",
    [
        ({}, "198.51.100.7:5060/udp", "sip.example.net", "sip:sip.example.net", None),
        ({"port": 5070}, "198.51.100.7:5070/udp", "sip.example.net:5070",
         "sip:sip.example.net:5070", None),
        ({"transport": "tcp"}, "198.51.100.7:5060/tcp", "sip.example.net",
         "sip:sip.example.net;transport=tcp", None),
        ({"transport": "tls"}, "198.51.100.7:5061/tls", "sip.example.net",
         "sip:sip.example.net;transport=tls", None),
        ({"host": "127.0.0.1", "port": 5999}, "127.0.0.1:5999/udp", "127.0.0.1:5999",
         "sip:127.0.0.1:5999", None),
        ({"from_domain": "voip.example.com", "port": 5070}, "198.51.100.7:5070/udp",
         "voip.example.com", "sip:voip.example.com", None),
        # The outbound proxy is where everything goes; the names stay the trunk's.
        ({"outbound_proxy": "proxy.example.net:5080"}, "198.51.100.9:5080/udp",
         "sip.example.net", "sip:sip.example.net", "<sip:proxy.example.net:5080;lr>"),
        ({"outbound_proxy": "sip:proxy.example.net;lr", "transport": "tcp"},
         "198.51.100.9:5060/tcp", "sip.example.net", "sip:sip.example.net;transport=tcp",
         "<sip:proxy.example.net:5060;transport=tcp;lr>"),
        ({"host": "2001:db8::7", "port": 5062}, "[2001:db8::7]:5062/udp", "[2001:db8::7]:5062",
         "sip:[2001:db8::7]:5062", None),
    ],
)
def test_path(fields, address, domain, uri, route):
    path = path_for(trunk(**fields), resolver(NAMES))
    assert path.address == address
    assert path.domain == domain
    assert path.uri() == uri
    assert path.route == route
    destination = path.destination()
    assert (destination.host, destination.port, destination.transport) == (
        path.host, path.port, path.transport)


def test_register_and_invite_share_the_path():
    row = trunk(outbound_proxy="proxy.example.net", transport="tcp")
    first, second = path_for(row, resolver(NAMES)), path_for(row, resolver(NAMES))
    assert first == second
    assert first.uri("998901112233") == "sip:998901112233@sip.example.net;transport=tcp"


def test_from_user_defaults_to_username():
    assert path_for(trunk(), resolver(NAMES)).from_user == "acme1"
    assert path_for(trunk(from_user="7123"), resolver(NAMES)).from_user == "7123"


def test_name_resolved_with_the_transport_socket_type_and_default_port():
    lookup = resolver(NAMES)
    path_for(trunk(transport="tls"), lookup)
    assert lookup.asked == [("sip.example.net", 5061, socket.AF_INET, socket.SOCK_STREAM)]
    lookup = resolver(NAMES)
    path_for(trunk(host="127.0.0.1"), lookup)
    assert lookup.asked == []  # a literal is not looked up


def test_unknown_name_is_a_path_error_naming_it():
    with pytest.raises(PathError, match="cannot resolve nowhere.invalid"):
        path_for(trunk(host="nowhere.invalid"), resolver(NAMES))
    with pytest.raises(PathError, match="unknown transport"):
        target(trunk(transport="sctp"))


def test_system_resolver_resolves_localhost():
    path = resolve(target(trunk(host="localhost", port=5999)))
    assert path.host == "127.0.0.1" and path.port == 5999
