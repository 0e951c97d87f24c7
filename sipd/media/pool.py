"""The relay's port pool over PBX_RTP_PORTS: one even RTP port and the odd port
after it for RTCP (RFC 3550 §11) per leg.

No sockets here: the relay binds what the pool hands out and gives back what
it could not bind. Free pairs are reused first-in, first-out, so a released
port rests as long as the range allows before another call gets it, and
stray packets from the call that had it (a phone still sending after BYE)
have stopped by then instead of latching onto the new call.
"""

from __future__ import annotations

from collections import deque


class PoolExhausted(Exception):
    """Every port pair of the range is in use (the B2BUA answers 503, Retry-After)."""


class PortPool:
    def __init__(self, low: int, high: int):
        first = low + (low % 2)
        # A pair needs its odd port inside the range too: p + 1 <= high.
        self._free: deque[int] = deque(range(first, high, 2))
        self._in_use: set[int] = set()
        self.size = len(self._free)
        if not self.size:
            raise ValueError(f"the range {low}-{high} holds no even/odd port pair")

    @property
    def available(self) -> int:
        return len(self._free)

    @property
    def in_use(self) -> int:
        return len(self._in_use)

    def allocate(self) -> int:
        """The RTP port of a free pair (RTCP is the port + 1)."""
        if not self._free:
            raise PoolExhausted(
                f"all {self.size} media port pairs are in use (PBX_RTP_PORTS is too small "
                "for this many calls)"
            )
        port = self._free.popleft()
        self._in_use.add(port)
        return port

    def release(self, port: int) -> None:
        """Give a pair back; it goes to the end of the queue. Releasing twice is harmless."""
        if port in self._in_use:
            self._in_use.remove(port)
            self._free.append(port)

    def set_aside(self, port: int) -> None:
        """A pair the relay could not bind (another program holds one of its ports):
        back to the end of the queue, to be tried again after all the others."""
        self.release(port)
