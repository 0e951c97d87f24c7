"""What the relay decides about each packet, with no sockets and no clock.

A `Session` is one relayed stream of one call: leg A faces the caller, leg B
the callee. Each leg owns two local ports (RTP, RTCP). A packet that arrives
on leg A's port is sent out of leg B's port of the same kind to B's phone, and
the other way round. The relay process (sipd/media/server.py) drops what is
not RTP or RTCP first (rtp.py); `Leg.receive(kind, source, size, now)` is the
rest of the per-packet decision: it returns the address to send to, or None
to drop the packet. The relay does the I/O around it and passes the time in,
so tests move time without sleeping.

Symmetric RTP (RFC 4961; the "latching" of RFC 7362 §4): a phone behind NAT
writes its private address into SDP, but its packets arrive from the NAT's
public address and port, and only packets sent back to that address and port
get through the NAT. So each leg sends to the real source of the packets it
receives, whatever the SDP said.

Latching policy (RFC 7362 §4.2 leaves it to the relay), after rtpengine's
"strict source" and Kamailio's nathelper (which trusts the address the
signalling came from, not the SDP's, for a phone behind NAT):
- A phone's leg latches only to packets from the IP address its signalling
  comes from (sipd tells the relay: the caller's INVITE source, the callee's
  registered source), any port, since NATs change ports and rarely addresses;
  or from the IP address its SDP names (a phone that sends media from another
  address than its SIP, and says so). A trunk's leg is given no signalling
  address and latches to its SDP address only (carriers are not behind NAT).
  Packets from anywhere else are dropped and counted (`strangers`): a
  stranger who learns a port cannot take the leg before the phone sends, nor
  after ("RTP bleed"; docs/security.md, probe finding 3). A leg that knows no
  address at all (no SDP address, no signalling address) latches to the
  first packet, as before; sipd always gives a phone's signalling address.
- The first packet from an allowed source on a port latches that port (RTP
  and RTCP separately; a NAT maps them to unrelated ports). Audio must flow
  from the first packet, so there is no probation period.
- While the latched source keeps sending, packets from any other source are
  dropped and counted (`foreign`): not even an allowed address (another phone
  behind the same NAT) can take over a live stream or inject audio into it.
- Once the latched source has been silent for RELATCH_AFTER seconds, the next
  packet from an allowed source latches again: the phone's NAT mapping
  expired and was re-created on another port. 2 s is long against the 20 ms
  packet interval (100 packets missed), and short enough that the audio comes
  back within a couple of seconds.
- When the SDP address of a leg changes (a re-INVITE saying the phone moved),
  that leg's latches are dropped at once; so are latches to an address the
  rule no longer allows.
- Never onto the PBX's own endpoints (own.py): the relay's own sockets, sipd.

Where a leg sends (`route`), computed when its SDP, its signalling address or
its latches change, never per packet:
- to the latched source;
- before that, to the SDP address only when someone has been heard from that
  IP address, i.e. the SDP names the address the phone's signalling comes from
  (a phone not behind NAT), or the leg is a trunk's. A phone behind NAT names
  a private address, which is useless, and a caller could name any host (a
  reflector towards a third party): its leg gets nothing until it sends.
  Phones send as soon as a call is answered, and what a phone behind NAT
  would have missed went to its private address, where it never arrived;
- RTCP, before it latches, goes to the latched RTP host with the SDP's RTCP
  port (NATs that preserve ports, as Linux masquerading does, keep RTCP's);
- never to the PBX's own endpoints (own.py).

Direction (RFC 3264 §6.1): each leg carries the direction its phone declared
in its own SDP ("sendonly" = the phone only sends). RTP from A to B flows only
if A may send and B may receive. RTCP always flows: RFC 3264 §5.1 keeps RTCP
going on sendonly, recvonly and inactive streams (and it is what keeps a held
call from looking dead).

Telephone-events (RFC 4733) are RTP packets like any other: only headers
are read (rtp.py), never payloads. Except on a leg the PBX terminates itself
(`Leg.endpoint`, endpoint.py): its phone's packets, once latched as above, go
to the endpoint, and the other leg's are not sent to it.
"""

from __future__ import annotations

from sipd.media.own import OwnEndpoints
from sipd.media.rtp import RTCP, RTP

KINDS = ("rtp", "rtcp")
RELATCH_AFTER = 2.0
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
UNSPECIFIED = ("0.0.0.0", "::", "")

Address = tuple[str, int]


class Leg:
    __slots__ = (
        "name",
        "ports",
        "peer",
        "remote",
        "source_host",
        "trusted",
        "latched",
        "route",
        "heard",
        "direction",
        "sends",
        "receives",
        "packets_in",
        "bytes_in",
        "packets_out",
        "bytes_out",
        "last_in",
        "foreign",
        "strangers",
        "not_media",
        "direction_drops",
        "unroutable",
        "send_errors",
        "latches",
        "notes",
        "call_id",
        "own",
        "endpoint",
        "tap",
    )

    def __init__(self, name: str, rtp_port: int, rtcp_port: int, notes: list | None = None,
                 call_id: str = "", own: OwnEndpoints | None = None):
        self.name = name
        self.call_id = call_id
        self.ports = (rtp_port, rtcp_port)
        self.peer: Leg = self
        self.own = own if own is not None else OwnEndpoints()
        # Per kind (RTP, RTCP): the address the SDP gave, the latched source,
        # where this leg's phone is sent packets of that kind, and when the
        # latched source was last heard.
        self.remote: list[Address | None] = [None, None]
        self.latched: list[Address | None] = [None, None]
        self.route: list[Address | None] = [None, None]
        self.heard = [0.0, 0.0]
        # The IP address the phone's signalling comes from (None: a trunk's leg,
        # or not told), and the IP addresses its packets may latch from (None:
        # no address known at all, the first packet latches).
        self.source_host: str | None = None
        self.trusted: frozenset[str] | None = None
        self.direction = "sendrecv"
        self.sends = True
        self.receives = True
        self.packets_in = 0
        self.bytes_in = 0
        self.packets_out = 0
        self.bytes_out = 0
        self.last_in: float | None = None
        self.foreign = 0  # dropped: from a source other than the live latched one
        self.strangers = 0  # dropped: from an address the leg may not latch to
        self.not_media = 0  # dropped: not RTP or RTCP (counted by the relay, rtp.py)
        self.direction_drops = 0  # dropped: RTP this direction does not allow
        self.unroutable = 0  # dropped: nowhere to send to the other phone yet
        self.send_errors = 0  # sendto failed towards this leg's phone
        self.latches = 0
        # Events for the relay to log, each a tuple (event, leg, kind, source, ...):
        # ("latch", leg, kind, source, previous source, seconds it was silent),
        # ("stranger", leg, kind, source) for the first stranger of the leg.
        self.notes = notes if notes is not None else []
        # The PBX's own endpoint when it terminates this leg (endpoint.py): what
        # this leg's phone sends goes to it, and it alone is heard by the phone.
        self.endpoint = None
        # The call's recording (endpoint.Tap), shared by both legs: it is given
        # what this leg's phone sent that the relay passed on.
        self.tap = None

    # --- the per-packet decision -------------------------------------------------

    def receive(self, kind: int, source: Address, size: int, now: float) -> Address | None:
        """A packet of `size` bytes came from `source` to this leg's `kind` port
        (already known to be RTP or RTCP).

        Returns where the other leg's port of the same kind must send it, or
        None to drop it.
        """
        if not self.accept(kind, source, size, now):
            return None
        peer = self.peer
        if kind == RTP and not (self.sends and peer.receives):
            self.direction_drops += 1
            return None
        destination = peer.route[kind]
        if destination is None:
            self.unroutable += 1
            return None
        peer.packets_out += 1
        peer.bytes_out += size
        return destination

    def accept(self, kind: int, source: Address, size: int, now: float) -> bool:
        """The latching rule applied to a packet from `source`, counted in when
        it passes (the relay's, and the endpoint's: endpoint.py)."""
        latched = self.latched[kind]
        if source != latched:
            if latched is not None and now - self.heard[kind] < RELATCH_AFTER:
                self.foreign += 1
                return False
            if not self.may_latch(source):
                self.strangers += 1
                if self.strangers == 1:
                    self.notes.append(("stranger", self, kind, source))
                return False
            self.latched[kind] = source
            self.latches += 1
            self.notes.append(("latch", self, kind, source, latched, now - self.heard[kind]))
            self._route()
        self.heard[kind] = now
        self.packets_in += 1
        self.bytes_in += size
        self.last_in = now
        return True

    def may_latch(self, source: Address) -> bool:
        """The latching rule: the phone's signalling or SDP address (a trunk's:
        its SDP address), any port; never one of the PBX's own endpoints."""
        trusted = self.trusted
        if trusted is not None and source[0] not in trusted:
            return False
        return not self.own.forbids(source)

    def destination(self, kind: int) -> Address | None:
        """Where this leg's phone is sent packets of `kind` (see the module's
        docstring: "Where a leg sends")."""
        return self.route[kind]

    def _route(self) -> None:
        self.route = [self._destination(RTP), self._destination(RTCP)]

    def _destination(self, kind: int) -> Address | None:
        latched = self.latched[kind]
        if latched is not None:
            return latched  # may_latch() checked it
        remote = self.remote[kind]
        if remote is None:
            return None
        if kind == RTCP and self.latched[RTP] is not None:
            # RTP is latched but RTCP not yet: the SDP host is likely a private
            # address behind NAT; the latched RTP host is the NAT's.
            candidate = (self.latched[RTP][0], remote[1])
        elif self.source_host is None or remote[0] == self.source_host:
            candidate = remote  # a trunk's SDP, or a phone's own address
        else:
            return None  # nobody has been heard from there: wait for the phone
        return None if self.own.forbids(candidate) else candidate

    def send_failed(self) -> None:
        """sendto towards this leg's phone failed (counted out by receive())."""
        self.packets_out -= 1
        self.send_errors += 1

    # --- what the B2BUA tells us --------------------------------------------------

    def set_remote(self, host: str, rtp_port: int, rtcp_port: int | None = None) -> None:
        """The phone's address from its SDP. An unspecified address (c=0.0.0.0,
        RFC 3264 §8.4) or port 0 changes nothing here: the direction says what
        may be sent, and the phone has not moved."""
        if host in UNSPECIFIED or not rtp_port:
            return
        rtcp = (host, rtcp_port or rtp_port + 1)
        rtp = (host, rtp_port)
        moved = self.remote[RTP] is not None and self.remote[RTP] != rtp
        self.remote = [rtp, rtcp]
        if moved:
            self.latched = [None, None]
        self._trust()

    def set_source(self, host: str | None) -> None:
        """The IP address the phone's signalling comes from (probe finding 3):
        its packets latch from there, and its SDP address is sent to before
        they do only if it is that address. None: a trunk's leg (SDP only)."""
        self.source_host = host or None
        self._trust()

    def _trust(self) -> None:
        hosts = {self.source_host, self.remote[RTP][0] if self.remote[RTP] else None}
        hosts.discard(None)
        self.trusted = frozenset(hosts) if hosts else None
        if self.trusted is not None:
            self.latched = [a if a is None or a[0] in self.trusted else None
                            for a in self.latched]
        self._route()

    def set_direction(self, direction: str) -> None:
        if direction not in DIRECTIONS:
            raise ValueError(f"unknown direction {direction!r}")
        self.direction = direction
        self.sends = direction in ("sendrecv", "sendonly")
        self._receiving()

    def attach(self, endpoint) -> None:
        """Terminate this leg at the PBX's endpoint (None: relay it again)."""
        self.endpoint = endpoint
        self._receiving()

    def _receiving(self) -> None:
        # The other leg's RTP reaches this phone unless the endpoint speaks to it.
        self.receives = self.direction in ("sendrecv", "recvonly") and self.endpoint is None

    def stats(self, now: float) -> dict:
        def address(value: Address | None) -> list | None:
            return list(value) if value else None

        return {
            "rtp_port": self.ports[RTP],
            "rtcp_port": self.ports[RTCP],
            "remote": address(self.remote[RTP]),
            "remote_rtcp": address(self.remote[RTCP]),
            "source": self.source_host,
            "latched": address(self.latched[RTP]),
            "latched_rtcp": address(self.latched[RTCP]),
            "route": address(self.route[RTP]),
            "route_rtcp": address(self.route[RTCP]),
            "direction": self.direction,
            "packets_in": self.packets_in,
            "bytes_in": self.bytes_in,
            "packets_out": self.packets_out,
            "bytes_out": self.bytes_out,
            "idle": None if self.last_in is None else round(now - self.last_in, 3),
            "dropped_foreign": self.foreign,
            "dropped_stranger": self.strangers,
            "dropped_not_media": self.not_media,
            "dropped_direction": self.direction_drops,
            "dropped_unroutable": self.unroutable,
            "send_errors": self.send_errors,
            "latches": self.latches,
        }


class Session:
    """One relayed stream of a call: legs A (caller side) and B (callee side)."""

    __slots__ = ("id", "call_id", "opened", "legs", "latch_reported")

    def __init__(self, session_id: int, call_id: str, ports_a: tuple[int, int],
                 ports_b: tuple[int, int], now: float, notes: list | None = None,
                 own: OwnEndpoints | None = None):
        self.id = session_id
        self.call_id = call_id
        self.opened = now
        a = Leg("A", *ports_a, notes=notes, call_id=call_id, own=own)
        b = Leg("B", *ports_b, notes=notes, call_id=call_id, own=own)
        a.peer, b.peer = b, a
        self.legs = {"A": a, "B": b}
        self.latch_reported = False  # both legs' sources told to sipd (op "check")

    def leg(self, name: str) -> Leg:
        try:
            return self.legs[name]
        except KeyError:
            raise ValueError(f"no leg {name!r} (legs are A and B)") from None

    def idle(self, now: float) -> float:
        """Seconds since a packet (RTP or RTCP, from the latched source) came in
        on either leg, or since the session opened if none has."""
        last = max([self.opened] + [leg.last_in for leg in self.legs.values() if leg.last_in])
        return now - last

    @property
    def on_hold(self) -> bool:
        return any(leg.direction != "sendrecv" for leg in self.legs.values())

    def dead(self, now: float, timeout: float, hold_timeout: float | None = None) -> bool:
        """Media dead on both legs for `timeout` seconds. A call on hold often
        sends no RTP at all, and not every phone sends RTCP, so held calls use
        `hold_timeout` (None: never dead on hold; the maximum call duration
        still ends them)."""
        limit = hold_timeout if self.on_hold else timeout
        return limit is not None and self.idle(now) >= limit

    def newly_latched(self) -> list[list] | None:
        """The RTP source of each leg, the first time both are known (else None)."""
        if self.latch_reported:
            return None
        a, b = self.legs["A"].latched[RTP], self.legs["B"].latched[RTP]
        if a is None or b is None:
            return None
        self.latch_reported = True
        return [list(a), list(b)]

    def stats(self, now: float) -> dict:
        return {
            "session": self.id,
            "call_id": self.call_id,
            "age": round(now - self.opened, 3),
            "idle": round(self.idle(now), 3),
            "on_hold": self.on_hold,
            "legs": {name: leg.stats(now) for name, leg in self.legs.items()},
        }
