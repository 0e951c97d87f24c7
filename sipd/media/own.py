"""The PBX's own endpoints: addresses the relay never sends to, nor latches onto.

An SDP is written by whoever sends it. Without this, a caller could name
sipd's SIP port (`c=IN IP4 127.0.0.1`, `m=audio 5060`) and have whatever the
other side sends to its relay port delivered to sipd from the relay's own
address, answers and all; or name another relay port and make the relay feed
itself (docs/security.md, probe finding 1).

"Own" is a port the PBX listens on, on any address of this host, because a
daemon listening on 0.0.0.0 answers on every one of them (127.0.0.0/8,
0.0.0.0, every interface address) and because another loopback address
(127.0.0.9) reaches a loopback listener too:
- sipd's SIP ports (UDP and TCP share the number; TLS), the panel's port;
- the ports the relay holds right now (RelayServer keeps `relay_ports`
  current as it binds and closes). Not the whole PBX_RTP_PORTS range: its
  unused ports have no listener of ours, and a phone on the PBX's own host (a
  softphone there, every test) may well have an ephemeral port inside it.
  A route computed before a port was bound cannot make a loop either: the leg
  that owns the port refuses to latch onto the relay's own source;
- every privileged port (below 1024): DNS (a resolver on 127.0.0.53:53 answers
  a query that is also a valid RTP header), NTP, syslog, SNMP. No phone sends
  RTP from one.
Also never sent to: multicast and broadcast addresses (an SDP of a trunk could
name one; a phone's SDP is only used when it names the phone's own address).

"This host" is asked of the kernel: a UDP socket connect()ed to a local
address gets that address as its source (no packet is sent). That is current
(addresses added later count), needs no parsing of /proc, and does not depend
on net.ipv4.ip_nonlocal_bind. PBX_PUBLIC_ADDRESS counts as this host too: a
router's port forward sends what reaches it back to sipd.

The relay asks only when it computes where a leg sends (its SDP changed or it
latched), never per packet, and only for a protected port.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

PRIVILEGED = 1024
_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")  # Linux delivers 0.x.x.x locally


class OwnEndpoints:
    def __init__(self, ports: Iterable[int] = (), hosts: Iterable[str] = ()):
        self.ports = frozenset(ports)
        self.hosts = frozenset(hosts)
        self.relay_ports: set[int] = set()

    def protects(self, port: int) -> bool:
        return port < PRIVILEGED or port in self.ports or port in self.relay_ports

    def forbids(self, address: tuple[str, int]) -> bool:
        """True if the relay must not send to (or latch onto) `address`."""
        host, port = address
        try:
            ip = ipaddress.IPv4Address(host)
        except ValueError:
            return True  # not a dotted quad: nothing the relay sends to
        if ip.is_multicast or ip == ipaddress.IPv4Address("255.255.255.255"):
            return True
        return self.protects(port) and (host in self.hosts or is_local(ip))


def is_local(ip: ipaddress.IPv4Address) -> bool:
    """Does a packet to `ip` stay on this host?"""
    if ip.is_loopback or ip in _THIS_NETWORK:
        return True
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((str(ip), 9))  # chooses the route, sends nothing
        except OSError:
            return False  # no route: nothing would be delivered here either
        return probe.getsockname()[0] == str(ip)
