"""The relay's port pool over PBX_RTP_PORTS: one even RTP port and the odd port
after it for RTCP (RFC 3550 §11) per leg.

No sockets here: the relay binds what the pool hands out and gives back what
it could not bind.

Which free pair a call gets is drawn at random (the `secrets` module's
generator, from the operating system): handed out in sequence, the next
call's ports were predictable to anyone who made a call, ready to be sent to
before its phones do (docs/security.md, probe finding 3). A released pair
first rests: it goes back into the draw only after half the pool's worth of
later releases, or when nothing else is free. So stray packets from the call
that had it (a phone still sending after BYE) have stopped before another
call gets it, as with the first-in, first-out queue this replaces.
"""

from __future__ import annotations

import secrets
from collections import deque


class PoolExhausted(Exception):
    """Every port pair of the range is in use (the B2BUA answers 503, Retry-After)."""


class PortPool:
    def __init__(self, low: int, high: int, randbelow=secrets.randbelow):
        first = low + (low % 2)
        # A pair needs its odd port inside the range too: p + 1 <= high.
        self._free: list[int] = list(range(first, high, 2))
        self._resting: deque[int] = deque()
        self._in_use: set[int] = set()
        self.size = len(self._free)
        self._rest = self.size // 2
        self._randbelow = randbelow
        if not self.size:
            raise ValueError(f"the range {low}-{high} holds no even/odd port pair")

    @property
    def available(self) -> int:
        return len(self._free) + len(self._resting)

    @property
    def in_use(self) -> int:
        return len(self._in_use)

    def allocate(self) -> int:
        """The RTP port of a free pair (RTCP is the port + 1), drawn at random."""
        free = self._free
        if free:
            index = self._randbelow(len(free))
            free[index], free[-1] = free[-1], free[index]
            port = free.pop()
        elif self._resting:
            port = self._resting.popleft()  # only resting pairs are left: the oldest
        else:
            raise PoolExhausted(
                f"all {self.size} media port pairs are in use (PBX_RTP_PORTS is too small "
                "for this many calls)"
            )
        self._in_use.add(port)
        return port

    def release(self, port: int) -> None:
        """Give a pair back: it rests (see above). Releasing twice is harmless."""
        if port in self._in_use:
            self._in_use.remove(port)
            self._resting.append(port)
            while len(self._resting) > self._rest:
                self._free.append(self._resting.popleft())

    def set_aside(self, port: int) -> None:
        """A pair the relay could not bind (another program holds one of its ports):
        it rests like a released one, to be tried again after the others."""
        self.release(port)
