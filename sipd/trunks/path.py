"""The one path to a trunk's provider, shared by REGISTER, OPTIONS and INVITE.

Issue 12: "REGISTER and INVITE to one trunk always take the same path". Both
ask this module, with the Trunk row, and get the same `Path`:

    target(trunk) -> Target          # pure: what to resolve, and the names to use
    resolve(target, getaddrinfo=socket.getaddrinfo, family=AF_INET) -> Path
                                     # the system resolver; PathError if it fails
    path_for(trunk, ...) -> Path     # both at once

    Path.transport      "UDP" | "TCP" | "TLS" (as sipd.registrar.Destination has it)
    Path.host, .port    the address the request is sent to: the outbound proxy's
                        when the trunk has one, else the trunk's host
    Path.destination()  sipd.registrar.ProviderDestination(host, port, transport): a
                        Destination that send() opens a TCP connection for if none
    Path.address        "198.51.100.7:5060/udp", for TrunkState.address and logs
    Path.domain         the host part of Request-URI, From and To: from_domain,
                        else the trunk's host (with its port when one was given)
    Path.from_user      from_user, else username (what From carries)
    Path.uri(user="")   "sip:user@domain" (+ ";transport=tcp|tls" when not UDP):
                        a Request-URI; uri() alone is REGISTER's (RFC 3261 §10.2)
    Path.route          None, or "<sip:proxy:port;transport=..;lr>" when an outbound
                        proxy is set: the preloaded Route (RFC 3261 §8.1.2)
    Path.via_transport  "UDP" | "TCP" | "TLS" for our Via's sent-protocol

No I/O but `resolve`, whose resolver is a parameter (tests give a dict).
A name without a port is looked up in DNS SRV first (RFC 3263 §4.2,
sipd/trunks/srv.py: _sip._udp / _sip._tcp / _sips._tcp); a name without SRV
records is resolved with getaddrinfo on the transport's default port. Over TCP
and TLS sipd opens the connection itself; TLS verifies the certificate is for
`Path.name` (sipd/tls.py).
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from dataclasses import dataclass

from sipd.registrar import ProviderDestination
from sipd.trunks import srv

# RFC 3261 §19.1.2: 5060 for sip over UDP/TCP, 5061 for TLS.
DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}


class PathError(Exception):
    """The provider's address cannot be found; the message says why (for TrunkState.reason)."""


@dataclass(frozen=True)
class Target:
    """What a trunk's requests go to, before any name is resolved."""

    transport: str  # "udp" | "tcp" | "tls"
    name: str  # a host name or an address literal: the outbound proxy or the trunk's host
    port: int | None  # None: the transport's default (SRV would come first, see above)
    domain: str
    from_user: str
    proxy: bool  # name/port are the outbound proxy's

    @property
    def send_port(self) -> int:
        return self.port or DEFAULT_PORTS[self.transport]


@dataclass(frozen=True)
class Path:
    transport: str  # "UDP" | "TCP" | "TLS"
    host: str
    port: int
    domain: str
    from_user: str
    route: str | None = None
    name: str = ""  # the name resolved (for the log)

    @property
    def via_transport(self) -> str:
        return self.transport

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}/{self.transport.lower()}"

    def destination(self) -> ProviderDestination:
        """Where send() sends; over TCP it opens the connection when there is none."""
        return ProviderDestination(self.host, self.port, self.transport, self.name)

    def uri(self, user: str = "") -> str:
        params = "" if self.transport == "UDP" else f";transport={self.transport.lower()}"
        return f"sip:{user + '@' if user else ''}{self.domain}{params}"


def _split(text: str) -> tuple[str, int | None]:
    """HOST[:PORT] / [V6]:PORT; the outbound proxy may also be written as a sip: URI."""
    text = text.strip()
    if text.lower().startswith(("sip:", "sips:")):
        text = text.split(":", 1)[1].split(";", 1)[0]
    if text.startswith("["):
        inside, _, rest = text[1:].partition("]")
        return inside, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, int(port) if port.isdigit() else None
    return text, None


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def target(trunk) -> Target:
    """The Target of a Trunk row (or anything with its fields). Pure."""
    transport = (trunk.transport or "udp").lower()
    if transport not in DEFAULT_PORTS:
        raise PathError(f"unknown transport {trunk.transport!r}")
    host = trunk.host.strip()
    domain = trunk.from_domain.strip() or (
        f"{_bracket(host)}:{trunk.port}" if trunk.port else _bracket(host)
    )
    from_user = trunk.from_user.strip() or trunk.username.strip()
    if trunk.outbound_proxy.strip():
        name, port = _split(trunk.outbound_proxy)
        return Target(transport, name, port, domain, from_user, proxy=True)
    return Target(transport, host, trunk.port, domain, from_user, proxy=False)


@functools.lru_cache(maxsize=256)  # asked on every outside call, of a few trunk hosts
def _literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def resolve(where: Target, getaddrinfo=socket.getaddrinfo, family=socket.AF_INET,
            lookup=None) -> Path:
    """The Path to `where`: an address literal as it is, a name without a port by its
    SRV records when it has them (`lookup`, a srv.Lookup; None: sipd's, srv.default()),
    else by the system resolver (the first address of `family`; AF_UNSPEC for any)."""
    port = where.send_port
    server = None
    if not _literal(where.name) and where.port is None:
        server = (lookup or srv.default()).service(where.name, where.transport)
    if server is not None:
        port = server.port
        host = (lookup or srv.default()).address(server.host, family == socket.AF_INET6)
        if host is None:
            raise PathError(f"cannot resolve {server.host} (SRV of {where.name}): no address")
    elif _literal(where.name):
        host = where.name
    else:
        kind = socket.SOCK_DGRAM if where.transport == "udp" else socket.SOCK_STREAM
        try:
            found = getaddrinfo(where.name, port, family, kind)
        except (OSError, UnicodeError) as error:
            raise PathError(f"cannot resolve {where.name}: {error}") from None
        if not found:
            raise PathError(f"cannot resolve {where.name}: no address")
        host = found[0][4][0]
    transport = where.transport.upper()
    route = None
    if where.proxy:
        params = "" if transport == "UDP" else f";transport={where.transport}"
        # A proxy found by SRV is routed to by its name alone (RFC 3263 §4.2: a
        # port would tell the next hop not to look up SRV itself).
        hostport = _bracket(where.name) if server is not None else f"{_bracket(where.name)}:{port}"
        route = f"<sip:{hostport}{params};lr>"
    return Path(transport, host, port, where.domain, where.from_user, route, where.name)


def path_for(trunk, getaddrinfo=socket.getaddrinfo, family=socket.AF_INET) -> Path:
    return resolve(target(trunk), getaddrinfo, family)
