"""DNS SRV for a trunk's provider (RFC 3263 §4.2, RFC 2782), with dnspython.

A provider given by name and no port (`--host sip.example.uz`) may publish
where its SIP service is: _sip._udp / _sip._tcp / _sips._tcp records, each a
priority, a weight, a port and a target name. path.py asks `Lookup.service`
first and falls back to the system resolver on the transport's default port
when the name has none, which is what RFC 3263 §4.2 says a client does (and
what a provider without SRV records needs). A port in the trunk's host, or an
address literal, skips SRV (§4.2: "If the TARGET was not a numeric IP address,
and no port was present in the URI").

One choice differs from RFC 2782's "weighted random": of the records with the
lowest priority, the one with the highest weight is used (ties: by name). The
issue asks that REGISTER and INVITE to one trunk always take the same path, so
the choice must be the same each time it is made; a provider's registrar and
its proxy are usually one service anyway, and a provider that moves (new
records) is followed at the next lookup. The next priority's records are a
failover RFC 3263 §4.3 leaves to the client: sipd fails over between trunks
(outbound routes), not between one trunk's servers.

Answers are kept for their TTL (no SRV records: a minute), so a call costs no
lookup while the records stand. PBX_DNS_SERVERS names the servers to ask (a
test's own server on loopback); empty, dnspython reads /etc/resolv.conf, as
the system resolver does. Under gevent its sockets are cooperative.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import dns.exception
import dns.nameserver
import dns.resolver

log = logging.getLogger("sipd")

# RFC 3263 §4.1 / RFC 5630: SIP over TLS is the "sips" service over TCP.
SERVICES = {"udp": "_sip._udp", "tcp": "_sip._tcp", "tls": "_sips._tcp"}
NEGATIVE_TTL = 60.0  # how long "this name has no SRV records" is believed


@dataclass(frozen=True)
class Server:
    host: str  # the SRV target, a name to resolve to an address
    port: int
    priority: int
    weight: int


class Lookup:
    def __init__(self, servers: list[tuple[str, int]] | None = None, timeout: float = 2.0,
                 clock=time.time):
        try:
            self.resolver = dns.resolver.Resolver(configure=not servers)
        except dns.exception.DNSException as error:  # no /etc/resolv.conf: SRV never found
            log.warning("[TRUNK] no DNS servers for SRV lookups: %s", error)
            self.resolver = dns.resolver.Resolver(configure=False)
        if servers:
            self.resolver.nameservers = [dns.nameserver.Do53Nameserver(host, port)
                                         for host, port in servers]
        self.resolver.lifetime = timeout
        self.clock = clock
        self._cache: dict[tuple[str, str], tuple[float, Server | None]] = {}

    def service(self, name: str, transport: str) -> Server | None:
        """The server of `name`'s SIP service over `transport`, or None when it has none
        (or DNS could not say: the caller then resolves the name itself)."""
        key = (name.lower().rstrip("."), transport)
        now = self.clock()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        qname = f"{SERVICES[transport]}.{key[0]}"
        try:
            answer = self.resolver.resolve(qname, "SRV", raise_on_no_answer=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            answer = None
        except dns.exception.DNSException as error:
            # Not cached: the next attempt asks again.
            log.warning("[TRUNK] SRV lookup of %s failed: %s", qname, error)
            return None
        found = _choose(answer.rrset if answer is not None else None)
        expires = now + (answer.rrset.ttl if found else NEGATIVE_TTL)
        self._cache[key] = (expires, found)
        return found

    def address(self, host: str, family_v6: bool = False) -> str | None:
        """The first address of an SRV target, asked of the same servers (a target
        need not be in /etc/hosts or the system's DNS: it is the provider's name)."""
        try:
            answer = self.resolver.resolve(host, "AAAA" if family_v6 else "A")
        except dns.exception.DNSException:
            return None
        return next((rdata.address for rdata in answer), None)


def _choose(rrset) -> Server | None:
    records = [Server(r.target.to_text(omit_final_dot=True), r.port, r.priority, r.weight)
               for r in (rrset or ())]
    # RFC 2782: a target of "." means the service is decidedly not available there.
    records = [r for r in records if r.host not in ("", ".")]
    if not records:
        return None
    return min(records, key=lambda r: (r.priority, -r.weight, r.host, r.port))


_default: Lookup | None = None


def configure(servers: list[tuple[str, int]] | None) -> None:
    """Called once by sipd at start (daemon.py) with PBX_DNS_SERVERS."""
    global _default
    _default = Lookup(servers)


def default() -> Lookup:
    global _default
    if _default is None:
        _default = Lookup()
    return _default
