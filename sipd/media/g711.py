"""G.711 µ-law and A-law (ITU-T G.711) to and from 16-bit linear PCM.

Pure: bytes in, bytes out. The conversions are the standard library's
`audioop` (C code, a few microseconds for a 20 ms packet). audioop is
deprecated since Python 3.11 and removed in 3.13 (PEP 594): this module is the
only place that imports it, so moving to tables (or the `audioop-lts` package)
later touches nothing else. The deprecation warning is silenced here on
purpose, once.

RTP payload types (RFC 3551 §6): PCMU 0, PCMA 8; both 8000 Hz, one byte per
sample, 160 bytes per 20 ms packet.
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

RATE = 8000
PCMU = 0
PCMA = 8
ENCODINGS = {PCMU: "PCMU", PCMA: "PCMA"}
PAYLOAD_TYPES = {"PCMU": PCMU, "PCMA": PCMA}
# The byte a silent sample encodes to (RFC 3551 §4.5.14: 0xFF for µ-law, 0xD5 for A-law).
SILENCE = {PCMU: 0xFF, PCMA: 0xD5}


def encode(linear: bytes, payload_type: int) -> bytes:
    """16-bit signed little-endian PCM to µ-law (PCMU) or A-law (PCMA)."""
    if payload_type == PCMU:
        return audioop.lin2ulaw(linear, 2)
    if payload_type == PCMA:
        return audioop.lin2alaw(linear, 2)
    raise ValueError(f"not a G.711 payload type: {payload_type!r}")


def decode(data: bytes, payload_type: int) -> bytes:
    """µ-law (PCMU) or A-law (PCMA) to 16-bit signed little-endian PCM."""
    if payload_type == PCMU:
        return audioop.ulaw2lin(data, 2)
    if payload_type == PCMA:
        return audioop.alaw2lin(data, 2)
    raise ValueError(f"not a G.711 payload type: {payload_type!r}")


def transcode(data: bytes, source: int, target: int) -> bytes:
    return data if source == target else encode(decode(data, source), target)


def stereo(left: bytes, right: bytes) -> bytes:
    """Two 16-bit mono tracks of equal length interleaved: left, right."""
    return audioop.add(audioop.tostereo(left, 2, 1, 0), audioop.tostereo(right, 2, 0, 1), 2)


def to_mono(linear: bytes, channels: int) -> bytes:
    if channels == 1:
        return linear
    if channels == 2:
        return audioop.tomono(linear, 2, 0.5, 0.5)
    raise ValueError(f"{channels} channels: only mono and stereo are read")


def resample(linear: bytes, rate: int) -> bytes:
    """16-bit mono at `rate` Hz to 8000 Hz (audioop's linear interpolation)."""
    if rate == RATE:
        return linear
    converted, _ = audioop.ratecv(linear, 2, 1, rate, RATE, None)
    return converted


def rms(linear: bytes) -> int:
    return audioop.rms(linear, 2)


def width_to_16(linear: bytes, width: int) -> bytes:
    if width == 2:
        return linear
    if width == 1:  # WAV's 8-bit PCM is unsigned
        return audioop.lin2lin(audioop.bias(linear, 1, -128), 1, 2)
    return audioop.lin2lin(linear, width, 2)
