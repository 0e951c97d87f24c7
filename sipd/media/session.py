"""What the relay decides about each packet, with no sockets and no clock.

A `Session` is one relayed stream of one call: leg A faces the caller, leg B
the callee. Each leg owns two local ports (RTP, RTCP). A packet that arrives
on leg A's port is sent out of leg B's port of the same kind to B's phone, and
the other way round. `Leg.receive(kind, source, size, now)` is the whole
per-packet decision: it returns the address to send to, or None to drop the
packet. The relay process (sipd/media/server.py) does the I/O around it and
passes the time in, so tests move time without sleeping.

Symmetric RTP (RFC 4961; the "latching" of RFC 7362 §4): a phone behind NAT
writes its private address into SDP, but its packets arrive from the NAT's
public address and port, and only packets sent back to that address and port
get through the NAT. So each leg sends to the real source of the packets it
receives, whatever the SDP said; before the first packet, to the SDP address.

Latching policy (RFC 7362 §4.2 leaves it to the relay):
- The first packet on a port latches that port (RTP and RTCP separately; a
  NAT maps them to unrelated ports). Audio must flow from the first packet,
  so there is no probation period.
- While the latched source keeps sending, packets from any other source are
  dropped and counted (`foreign`): a third party who learns the port cannot
  take over a live stream or inject audio into it.
- Once the latched source has been silent for RELATCH_AFTER seconds, the next
  packet from a new source latches again: the phone changed networks, or its
  NAT mapping expired and was re-created on another port. 2 s is long against
  the 20 ms packet interval (100 packets missed), and short enough that a
  phone that moves gets its audio back within a couple of seconds.
- When the SDP address of a leg changes (a re-INVITE saying the phone moved),
  that leg's latches are dropped at once.
What this does not stop: a third party that sends first, before the phone
(the "RTP bleed" race), wins the latch until the phone's packets have been
the only ones for RELATCH_AFTER seconds... which never happens while the
attacker keeps sending. Checking the source against the SDP or signaling
address would break the NAT case this exists for; the ports are unguessable
only in that they rotate through a large range (see pool.py).

Direction (RFC 3264 §6.1): each leg carries the direction its phone declared
in its own SDP ("sendonly" = the phone only sends). RTP from A to B flows only
if A may send and B may receive. RTCP always flows: RFC 3264 §5.1 keeps RTCP
going on sendonly, recvonly and inactive streams (and it is what keeps a held
call from looking dead).

Telephone-events (RFC 4733) are RTP packets like any other: payloads are
never read.
"""

from __future__ import annotations

RTP = 0
RTCP = 1
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
        "latched",
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
        "direction_drops",
        "unroutable",
        "send_errors",
        "latches",
        "notes",
        "call_id",
    )

    def __init__(self, name: str, rtp_port: int, rtcp_port: int, notes: list | None = None,
                 call_id: str = ""):
        self.name = name
        self.call_id = call_id
        self.ports = (rtp_port, rtcp_port)
        self.peer: Leg = self
        # Per kind (RTP, RTCP): the address the SDP gave, the latched source,
        # and when that source was last heard.
        self.remote: list[Address | None] = [None, None]
        self.latched: list[Address | None] = [None, None]
        self.heard = [0.0, 0.0]
        self.direction = "sendrecv"
        self.sends = True
        self.receives = True
        self.packets_in = 0
        self.bytes_in = 0
        self.packets_out = 0
        self.bytes_out = 0
        self.last_in: float | None = None
        self.foreign = 0  # dropped: from a source other than the live latched one
        self.direction_drops = 0  # dropped: RTP this direction does not allow
        self.unroutable = 0  # dropped: the other phone's address is not known yet
        self.send_errors = 0  # sendto failed towards this leg's phone
        self.latches = 0
        # Where latch events go, for the relay to log:
        # (leg, kind, source, previous source, seconds the previous one was silent).
        self.notes = notes if notes is not None else []

    # --- the per-packet decision -------------------------------------------------

    def receive(self, kind: int, source: Address, size: int, now: float) -> Address | None:
        """A packet of `size` bytes came from `source` to this leg's `kind` port.

        Returns where the other leg's port of the same kind must send it, or
        None to drop it.
        """
        latched = self.latched[kind]
        if source != latched:
            if latched is not None and now - self.heard[kind] < RELATCH_AFTER:
                self.foreign += 1
                return None
            self.latched[kind] = source
            self.latches += 1
            self.notes.append((self, kind, source, latched, now - self.heard[kind]))
        self.heard[kind] = now
        self.packets_in += 1
        self.bytes_in += size
        self.last_in = now
        peer = self.peer
        if kind == RTP and not (self.sends and peer.receives):
            self.direction_drops += 1
            return None
        destination = peer.latched[kind] or peer.destination(kind)
        if destination is None:
            self.unroutable += 1
            return None
        peer.packets_out += 1
        peer.bytes_out += size
        return destination

    def destination(self, kind: int) -> Address | None:
        """Where to send this leg's phone packets of `kind`, going by the latch if
        there is one, else by its SDP."""
        latched = self.latched[kind]
        if latched is not None:
            return latched
        remote = self.remote[kind]
        if kind == RTCP and remote is not None and self.latched[RTP] is not None:
            # RTP is latched but RTCP not yet: the SDP host is likely a private
            # address behind NAT; the latched RTP host is the NAT's, and NATs
            # that preserve ports (Linux masquerading does) keep RTCP's too.
            return (self.latched[RTP][0], remote[1])
        return remote

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

    def set_direction(self, direction: str) -> None:
        if direction not in DIRECTIONS:
            raise ValueError(f"unknown direction {direction!r}")
        self.direction = direction
        self.sends = direction in ("sendrecv", "sendonly")
        self.receives = direction in ("sendrecv", "recvonly")

    def stats(self, now: float) -> dict:
        def address(value: Address | None) -> list | None:
            return list(value) if value else None

        return {
            "rtp_port": self.ports[RTP],
            "rtcp_port": self.ports[RTCP],
            "remote": address(self.remote[RTP]),
            "remote_rtcp": address(self.remote[RTCP]),
            "latched": address(self.latched[RTP]),
            "latched_rtcp": address(self.latched[RTCP]),
            "direction": self.direction,
            "packets_in": self.packets_in,
            "bytes_in": self.bytes_in,
            "packets_out": self.packets_out,
            "bytes_out": self.bytes_out,
            "idle": None if self.last_in is None else round(now - self.last_in, 3),
            "dropped_foreign": self.foreign,
            "dropped_direction": self.direction_drops,
            "dropped_unroutable": self.unroutable,
            "send_errors": self.send_errors,
            "latches": self.latches,
        }


class Session:
    """One relayed stream of a call: legs A (caller side) and B (callee side)."""

    __slots__ = ("id", "call_id", "opened", "legs", "latch_reported")

    def __init__(self, session_id: int, call_id: str, ports_a: tuple[int, int],
                 ports_b: tuple[int, int], now: float, notes: list | None = None):
        self.id = session_id
        self.call_id = call_id
        self.opened = now
        a = Leg("A", *ports_a, notes=notes, call_id=call_id)
        b = Leg("B", *ports_b, notes=notes, call_id=call_id)
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
