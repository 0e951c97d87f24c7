"""WAV files of prompts, music and recordings: 16-bit PCM, µ-law and A-law.

PCM goes through the standard library's `wave` module. `wave` refuses
anything but PCM (WAVE_FORMAT_PCM, 1), and a telephony WAV is often G.711
(Asterisk's and sox's `-e u-law` output: WAVE_FORMAT_MULAW 7, WAVE_FORMAT_ALAW
6), so those are read and written here, by the RIFF layout `wave` also
follows (Microsoft's "Multimedia Programming Interface and Data
Specifications 1.0", 1991): a "fmt " chunk of 18 bytes (cbSize 0) and, as
every non-PCM format must have, a "fact" chunk with the sample count.

`read(path)` gives a `Sound`; `Sound.linear()` its samples as 16-bit mono at
8000 Hz (what the endpoint encodes per call, sipd/media/endpoint.py). WAVs at
other rates or in stereo are converted (8 kHz mono is what core/sounds.py
makes of an upload; anything else still plays). `WavError` says in one line
why a file cannot be read.
"""

from __future__ import annotations

import struct
import wave
from dataclasses import dataclass
from pathlib import Path

from sipd.media import g711

PCM, ALAW, MULAW = 1, 6, 7
FORMATS = {"pcm16": PCM, "alaw": ALAW, "ulaw": MULAW}
_G711 = {ALAW: g711.PCMA, MULAW: g711.PCMU}


class WavError(Exception):
    """Not a WAV file this module reads; the message says why."""


@dataclass(frozen=True)
class Sound:
    format: str  # "pcm16" | "ulaw" | "alaw"
    rate: int
    channels: int
    data: bytes  # the frames as stored (PCM: 16-bit little-endian)

    @property
    def seconds(self) -> float:
        size = 2 if self.format == "pcm16" else 1
        return len(self.data) / (size * self.channels * self.rate)

    def linear(self) -> bytes:
        """16-bit mono PCM at 8000 Hz."""
        data = self.data
        if self.format != "pcm16":
            data = g711.decode(data, _G711[FORMATS[self.format]])
        return g711.resample(g711.to_mono(data, self.channels), self.rate)


def read(path) -> Sound:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise WavError(f"{path}: {error.strerror or error}") from None
    if len(raw) < 12 or raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        raise WavError(f"{path}: not a WAV file (no RIFF/WAVE header)")
    fmt, data = None, None
    offset = 12
    while offset + 8 <= len(raw):
        name, size = struct.unpack_from("<4sI", raw, offset)
        body = raw[offset + 8: offset + 8 + size]
        if name == b"fmt ":
            fmt = body
        elif name == b"data":
            data = body
        offset += 8 + size + (size & 1)  # chunks are padded to even sizes
    if fmt is None or len(fmt) < 16 or data is None:
        raise WavError(f"{path}: a WAV file without a fmt or data chunk")
    tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == 0xFFFE and len(fmt) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the subformat's tag
        tag = struct.unpack_from("<H", fmt, 24)[0]
    if not rate or channels not in (1, 2):
        raise WavError(f"{path}: {channels} channels at {rate} Hz (mono or stereo only)")
    if tag in _G711 and bits == 8:
        return Sound("ulaw" if tag == MULAW else "alaw", rate, channels, data)
    if tag == PCM:
        try:
            with wave.open(str(path), "rb") as handle:
                width = handle.getsampwidth()
                frames = handle.readframes(handle.getnframes())
        except (wave.Error, EOFError) as error:
            raise WavError(f"{path}: {error}") from None
        return Sound("pcm16", rate, channels, g711.width_to_16(frames, width))
    raise WavError(f"{path}: WAV format {tag} at {bits} bits is not PCM, µ-law or A-law")


def write(path, data: bytes, format: str = "pcm16", channels: int = 1,
          rate: int = g711.RATE) -> None:
    """Write `data` (frames in `format`) as a WAV file, whole: to a temporary
    name first, then renamed, so a reader never sees half a file."""
    path = Path(path)
    if format not in FORMATS:
        raise ValueError(f"unknown WAV format {format!r}")
    temporary = path.with_name(f".{path.name}.part")
    if format == "pcm16":
        with wave.open(str(temporary), "wb") as handle:
            handle.setnchannels(channels)
            handle.setsampwidth(2)
            handle.setframerate(rate)
            handle.writeframes(data)
    else:
        frames = len(data) // channels
        fmt = struct.pack("<HHIIHHH", FORMATS[format], channels, rate, rate * channels,
                          channels, 8, 0)
        chunks = (_chunk(b"fmt ", fmt) + _chunk(b"fact", struct.pack("<I", frames))
                  + _chunk(b"data", data))
        temporary.write_bytes(b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks)
    temporary.replace(path)


def _chunk(name: bytes, body: bytes) -> bytes:
    return name + struct.pack("<I", len(body)) + body + (b"\0" if len(body) & 1 else b"")


def write_pcm_chunks(path, chunks, channels: int = 1, rate: int = g711.RATE) -> int:
    """Write 16-bit PCM frames given piece by piece (a long recording never sits
    in memory whole), through a temporary name; returns the frames written."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.part")
    with wave.open(str(temporary), "wb") as handle:
        handle.setnchannels(channels)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        for chunk in chunks:
            handle.writeframes(chunk)
        frames = handle.getnframes()
    temporary.replace(path)
    return frames
