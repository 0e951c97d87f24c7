"""Sending audio as RTP, one packet every 20 ms, from a schedule. No I/O, and
the clock is passed in (tests move it).

A `Pacer` is the sending side of one endpoint stream: one SSRC, one payload
type, a sequence number that goes up by one per packet sent and a timestamp
that tells the sampling instant (RFC 3550 §5.1). Each packet has a slot on a
fixed grid, `start + n * PTIME`, and its timestamp is `first + n * 160`: the
time a packet is due, and its timestamp, come from n, never from when the
previous one happened to go out, so the stream cannot drift however late the
loop wakes (the relay's loop sends whatever is due when it wakes, server.py).

Prompts (`play`) are queued and sent back to back. Between them nothing is
sent, but the grid goes on: the next prompt starts on the next free slot,
its timestamp reflecting the silence, and with the marker bit set on its first
packet (RFC 3551 §4.1: the first packet of a talkspurt after silence; we
mark every new prompt, which a jitter buffer may use to resynchronise). The
sequence number stays continuous (no packet was lost).

Late: when the loop was kept off the CPU longer than CATCH_UP, the slots
missed are skipped (their timestamps too, so the phone hears a gap, not audio
played faster); shorter delays are made up by sending what is due at once.
"""

from __future__ import annotations

import struct
from collections import deque

PTIME = 0.02
SAMPLES = 160  # 20 ms at 8000 Hz: one byte per sample for G.711
CATCH_UP = 0.2
_HEADER = struct.Struct("!BBHII")


PUSH = "push"  # the tag of pushed audio (the echo test)
STARVED = 5  # empty slots after which pushed audio counts as ended


class Lateness:
    """How late packets went out, in 0.1 ms buckets up to 100 ms: the p99 the
    benchmark reports, in constant memory however long a stream plays."""

    __slots__ = ("buckets", "count", "worst")

    def __init__(self):
        self.buckets = [0] * 1001
        self.count = 0
        self.worst = 0.0

    def record(self, seconds: float) -> None:
        self.buckets[min(1000, int(seconds * 10000))] += 1
        self.count += 1
        if seconds > self.worst:
            self.worst = seconds

    def share_over(self, seconds: float) -> float:
        """The fraction of packets sent more than `seconds` late (0.1 ms steps)."""
        if not self.count:
            return 0.0
        return sum(self.buckets[int(seconds * 10000) + 1:]) / self.count

    def quantile(self, q: float) -> float:
        """Seconds (an upper bound within 0.1 ms)."""
        wanted = q * self.count
        seen = 0
        for index, number in enumerate(self.buckets):
            seen += number
            if number and seen >= wanted:
                return (index + 1) / 10000
        return 0.0


class Prompt:
    __slots__ = ("data", "offset", "tag", "loop", "starved")

    def __init__(self, data: bytes, tag, loop: bool = False):
        self.data = data  # encoded audio, one byte per sample
        self.offset = 0
        self.tag = tag
        self.loop = loop
        self.starved = 0


class Pacer:
    __slots__ = ("start", "ssrc", "payload_type", "seq", "first_timestamp", "slot",
                 "queue", "silence", "marker", "sent", "lateness", "skipped")

    def __init__(self, start: float, ssrc: int, payload_type: int, seq: int = 0,
                 timestamp: int = 0, silence: int = 0xFF, lateness: Lateness | None = None):
        self.start = start
        self.ssrc = ssrc & 0xFFFFFFFF
        self.payload_type = payload_type
        self.seq = seq & 0xFFFF
        self.first_timestamp = timestamp & 0xFFFFFFFF
        self.slot = 0  # the next packet's slot on the grid
        self.queue: deque[Prompt] = deque()
        self.silence = silence  # pads a prompt's last packet
        self.marker = True
        self.sent = 0
        self.lateness = lateness
        self.skipped = 0

    # --- what is played ------------------------------------------------------------

    def play(self, data: bytes, now: float, tag=None, loop: bool = False) -> None:
        """Queue a prompt (encoded audio). Started now if nothing plays."""
        if not self.queue:
            self._resume(now)
        self.queue.append(Prompt(data, tag, loop))

    def push(self, frame: bytes, now: float, limit: int = 10) -> None:
        """Audio to send as it comes (the echo test): appended to the pushed audio
        queued, keeping at most `limit` packets of it (a phone whose clock runs
        fast must not build up a delay)."""
        if self.queue and self.queue[-1].tag == PUSH:
            prompt = self.queue[-1]
            data = prompt.data[prompt.offset:] + frame
            prompt.data, prompt.offset = data[-limit * SAMPLES:], 0
            return
        self.play(frame, now, PUSH)

    def stop(self) -> list:
        """Stop playing; the tags of the prompts not (fully) played."""
        tags = [prompt.tag for prompt in self.queue if prompt.tag != PUSH]
        self.queue.clear()
        return tags

    @property
    def playing(self) -> bool:
        return bool(self.queue)

    def next_due(self) -> float | None:
        return self.start + self.slot * PTIME if self.queue else None

    def _resume(self, now: float) -> None:
        """A prompt after silence: the next slot not already in the past."""
        slot = int((now - self.start) / PTIME + 0.999999)
        self.slot = max(self.slot, slot)
        self.marker = True

    # --- what is sent --------------------------------------------------------------

    def due(self, now: float) -> tuple[list[bytes], list]:
        """The packets due by `now`, and the tags of the prompts they finished."""
        packets: list[bytes] = []
        done: list = []
        queue = self.queue
        while queue:
            due = self.start + self.slot * PTIME
            if due > now:
                break
            if now - due > CATCH_UP:
                missed = int((now - due) / PTIME)
                self.slot += missed
                self.skipped += missed
                continue
            prompt = queue[0]
            frame = prompt.data[prompt.offset:prompt.offset + SAMPLES]
            if not frame:
                if prompt.tag == PUSH:  # nothing came in time: this slot stays silent
                    prompt.starved += 1
                    self.slot += 1
                    if prompt.starved >= STARVED or len(queue) > 1:
                        queue.popleft()
                    continue
                queue.popleft()  # an empty file
                done.append(prompt.tag)
                continue
            prompt.offset += SAMPLES
            finished = False
            if prompt.tag == PUSH:
                prompt.starved = 0
            elif prompt.offset >= len(prompt.data):
                if prompt.loop:
                    prompt.offset = 0
                else:
                    queue.popleft()
                    done.append(prompt.tag)
                    finished = True
            if self.lateness is not None:
                self.lateness.record(now - due)
            if len(frame) < SAMPLES:
                frame += bytes([self.silence]) * (SAMPLES - len(frame))
            packets.append(self.packet(frame))
            if finished and queue:
                self.marker = True  # the next prompt's first packet
        return packets, done

    def packet(self, frame: bytes) -> bytes:
        marker = 0x80 if self.marker else 0
        self.marker = False
        timestamp = (self.first_timestamp + self.slot * SAMPLES) & 0xFFFFFFFF
        header = _HEADER.pack(0x80, marker | self.payload_type, self.seq, timestamp, self.ssrc)
        self.seq = (self.seq + 1) & 0xFFFF
        self.slot += 1
        self.sent += 1
        return header + frame


def parse_header(packet, size: int | None = None) -> tuple | None:
    """(marker, payload type, seq, timestamp, ssrc, payload start, payload end)
    of an RTP packet (RFC 3550 §5.1: CSRCs and a header extension skipped), or None."""
    end = len(packet) if size is None else size
    if end < 12 or packet[0] & 0xC0 != 0x80:
        return None
    first, second, seq, timestamp, ssrc = _HEADER.unpack_from(packet)
    offset = 12 + 4 * (first & 0x0F)
    if first & 0x10:  # header extension (§5.3.1)
        if end < offset + 4:
            return None
        offset += 4 + 4 * (packet[offset + 2] << 8 | packet[offset + 3])
    if first & 0x20 and end > offset:  # padding (§5.1): its count is the last byte
        end -= packet[end - 1]
    if offset > end:
        return None
    return second >> 7, second & 0x7F, seq, timestamp, ssrc, offset, end
