"""Calls from the providers (issue 12 item 2): whose trunk an INVITE is, and where its DID goes.

An INVITE belongs to a trunk when it comes from that trunk's provider:
- an IP trunk: its source address is in one of the trunk's --match networks;
- a register trunk: its source address is the one we register to (the
  provider's, or the outbound proxy's, as resolved for the last REGISTER) or
  in its --match networks (providers that send calls from other servers), and
  the trunk is registered. Over TCP or TLS the address is the connection we
  registered on (host, port and transport): the provider sends its calls back
  on it (RFC 3261 §18.2.2; our Contact's port does not speak TLS), and a phone
  on the provider's host (or on loopback) is not taken for the provider.
A disabled trunk is no trunk's: its provider's calls are challenged like a
stranger's (`disabled_match` names it, for the log).
Several trunks at one provider: the one whose registered user the Request-URI
names wins (the provider sends calls to the Contact we registered). Anything
else is no trunk's, and is challenged like any phone's call: an address
outside the trunk's networks gets nothing unauthenticated.

The DID is the Request-URI's user (providers put the dialled number there),
else the To user; a Request-URI that is only our registered Contact (its user
the trunk's username) names no DID, and then To does. Its InboundRoute is the
one for this trunk, else the one for any trunk; a DID written with or without
a leading "+" finds the route written the other way too.

Pure but `route_for`, which reads the InboundRoute table.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import NamedTuple

from core.models import InboundRoute
from sipd.sip.headers import NameAddr
from sipd.sip.message import ParseError, Request


class Caller(NamedTuple):
    """The caller of a provider's call, as the B2BUA reads an extension: the number
    as the provider sent it (what the phone shows and the history keeps)."""

    number: str
    name: str = ""
    # Not this caller's limit: an outside number may call in on several lines.
    max_calls: int = 1_000_000


def networks(cidrs: list[str]) -> list:
    found = []
    for cidr in cidrs:
        try:
            found.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError:
            continue  # core/trunks.py refuses these on write
    return found


@functools.lru_cache(maxsize=4096)  # every INVITE asks, twice; parsing is ~5 us
def _address(host: str):
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _uri_user(request: Request) -> str:
    try:
        return NameAddr.parse(f"<{request.uri}>").uri.user or ""
    except ParseError:
        return ""


def _to_user(request: Request) -> str:
    try:
        return NameAddr.parse(request.headers.get("To", "")).uri.user or ""
    except ParseError:
        return ""


def _from_path(path, source) -> bool:
    """Whether `source` is where we register to (see the module's docstring)."""
    if path is None or path.host != source.host:
        return False
    if path.transport == "UDP":
        return True
    return (source.transport, source.port) == (path.transport, path.port)


def match(trunks, request: Request, source) -> object | None:
    """The trunk (a LiveTrunk of sipd/trunks/manager.py) `request` comes from, or None."""
    address = _address(source.host)
    if address is None:
        return None
    candidates = []
    for trunk in trunks:
        if not trunk.row.enabled:
            continue
        inside = any(address in network for network in trunk.networks)
        if trunk.row.kind == "ip":
            if inside:
                candidates.append(trunk)
        elif trunk.registers and trunk.status == "registered" and (
                inside or _from_path(trunk.path, source)):
            candidates.append(trunk)
    if len(candidates) > 1:
        user = _uri_user(request)
        named = [t for t in candidates if t.row.username and t.row.username == user]
        if named:
            return named[0]
    return candidates[0] if candidates else None


def disabled_match(trunks, source) -> object | None:
    """The disabled trunk whose --match networks `source` is in, or None: a call
    `match` turned away because its trunk is disabled (worth a log line)."""
    address = _address(source.host)
    if address is None:
        return None
    for trunk in trunks:
        if not trunk.row.enabled and any(address in network for network in trunk.networks):
            return trunk
    return None


def did(request: Request, trunk) -> str:
    user = _uri_user(request)
    if user and not (trunk.row.kind == "register" and user == trunk.row.username):
        return user
    return _to_user(request) or user


def route_for(number: str, trunk_id: int) -> str | None:
    """The destination of DID `number` on trunk `trunk_id`, or None."""
    route = inbound_route(number, trunk_id)
    return route.destination if route is not None else None


def inbound_route(number: str, trunk_id: int) -> InboundRoute | None:
    """The InboundRoute of DID `number` on trunk `trunk_id` (the trunk's own route
    first, then the any-trunk one), or None."""
    spellings = {number, number[1:] if number.startswith("+") else "+" + number}
    best = None
    for route in InboundRoute.select().where(InboundRoute.did.in_(list(spellings))):
        if route.trunk_id == trunk_id:
            return route
        if route.trunk_id is None:
            best = best or route
    return best
