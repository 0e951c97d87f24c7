"""DTMF as RFC 4733 telephone-events: packets in, keys out. No I/O, no clock
of its own (the time is passed in).

The payload (RFC 4733 §2.3):

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    |     event     |E|R| volume    |          duration             |

One key press is one event: every packet of it carries the RTP timestamp of
its start (§2.3.1), a growing duration, and the last ones the E (end) bit,
sent three times (§2.5.1.4) for reliability. So an event is known by its
timestamp, and a key is reported once, on the first end packet; the
retransmitted ends (same timestamp) are ignored. A key whose end packets were
all lost is reported when the next event begins or when nothing of it has
arrived for END_SILENCE seconds (§2.5.2.2 leaves that to the receiver).

A key held longer than the 16-bit duration (65535 samples, 8.2 s at 8 kHz)
goes on in segments (§2.5.1.3): a new timestamp, the previous one plus the
duration reached, same event, no end bit in between. That is one key, not two.

Events 0-9 are the digits, 10 `*`, 11 `#`, 12-15 A-D (§3.2); the rest (flash,
fax tones) are not keys and are ignored.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

KEYS = "0123456789*#ABCD"
END_SILENCE = 1.0  # seconds without a packet of an unended event
MAX_DURATION = 0xFFFF


@dataclass(frozen=True)
class Key:
    key: str
    duration: int  # in timestamp units (samples: 8 per ms at 8 kHz)
    ended: bool  # False: reported without its end packet (lost, or timed out)

    def ms(self, rate: int = 8000) -> int:
        return self.duration * 1000 // rate


@dataclass(frozen=True)
class Event:
    code: int
    end: bool
    volume: int
    duration: int

    @classmethod
    def parse(cls, payload: bytes) -> Event:
        if len(payload) < 4:
            raise ValueError("a telephone-event payload is 4 bytes (RFC 4733 §2.3)")
        code, flags, duration = struct.unpack_from("!BBH", payload)
        return cls(code, bool(flags & 0x80), flags & 0x3F, duration)

    def __bytes__(self) -> bytes:
        return struct.pack("!BBH", self.code, (0x80 if self.end else 0) | (self.volume & 0x3F),
                           self.duration)


class Receiver:
    """The telephone-events of one stream, turned into keys."""

    __slots__ = ("timestamp", "code", "base", "duration", "reported", "last", "ended")

    def __init__(self):
        self.timestamp: int | None = None  # the current event's (segment's) timestamp
        self.code: int | None = None
        self.base = 0  # durations of earlier segments of a long event
        self.duration = 0
        self.reported = True  # nothing pending
        self.ended = True
        self.last = 0.0

    def feed(self, timestamp: int, payload: bytes, now: float) -> list[Key]:
        """One telephone-event packet (its RTP timestamp and payload); the keys it
        completes (none, one, or two when it shows a previous one lost its end)."""
        try:
            event = Event.parse(payload)
        except ValueError:
            return []
        keys: list[Key] = []
        if timestamp != self.timestamp:
            if self._continues(timestamp, event):
                # §2.5.1.3: the next segment of a long event.
                self.base += self.duration
            else:
                if self.timestamp is not None and timestamp_before(timestamp, self.timestamp):
                    return []  # a late packet of an event before the current one
                keys += self._flush()
                self.code = event.code
                self.base = 0
                self.reported = event.code >= len(KEYS)  # not a key: nothing to report
                self.ended = False
            self.timestamp = timestamp
            self.duration = 0
        elif self.ended:
            return keys  # a retransmitted end (§2.5.1.4)
        self.last = now
        self.duration = max(self.duration, event.duration)
        if event.end:
            self.ended = True
            keys += self._flush(ended=True)
        return keys

    def expire(self, now: float) -> list[Key]:
        """The key whose end never came, once END_SILENCE has passed."""
        if not self.reported and now - self.last >= END_SILENCE:
            self.ended = True
            return self._flush()
        return []

    def _continues(self, timestamp: int, event: Event) -> bool:
        return (self.timestamp is not None and not self.ended and event.code == self.code
                and self.duration >= MAX_DURATION - 160  # the segment had run full
                and (timestamp - self.timestamp) & 0xFFFFFFFF == self.duration)

    def _flush(self, ended: bool = False) -> list[Key]:
        if self.reported or self.code is None:
            return []
        self.reported = True
        return [Key(KEYS[self.code], self.base + self.duration, ended)]


def timestamp_before(a: int, b: int) -> bool:
    """a is earlier than b in 32-bit RTP timestamp arithmetic (RFC 3550 §5.1)."""
    return a != b and (b - a) & 0xFFFFFFFF < 0x80000000
