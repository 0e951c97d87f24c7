"""Audio files the PBX plays: whatever an admin uploads (a WAV in any common
encoding, FLAC, OGG, MP3 where sox reads it) becomes the one format the media
endpoint plays without work at call time, an 8 kHz mono G.711 µ-law WAV.

sox does the conversion (resampling, downmixing, encoding); a file sox cannot
read as audio is refused with `SoundError`, one line saying so, and nothing is
written at the destination.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

# What the endpoint plays: 8 kHz (G.711's rate, RFC 3551 §4.5.14), one channel, µ-law.
TARGET = ("-r", "8000", "-c", "1", "-e", "mu-law", "-t", "wav")


class SoundError(Exception):
    """An upload that is not audio sox can read, or sox missing (one line).

    `kind` says which, for a caller that words it itself (the panel, in the
    admin's language): "empty", "not_audio", "silent" or "no_sox"."""

    def __init__(self, message: str, kind: str = "not_audio"):
        super().__init__(message)
        self.kind = kind


def _sox() -> str:
    sox = shutil.which("sox")
    if sox is None:
        raise SoundError("sox is not installed (apt-get install sox)", "no_sox")
    return sox


def convert(source: str | os.PathLike, destination: str | os.PathLike) -> Path:
    """Write `source` as an 8 kHz mono µ-law WAV at `destination`, atomically:
    a refused file leaves whatever was at `destination` in place."""
    source, destination = Path(source), Path(destination)
    if not source.is_file() or source.stat().st_size == 0:
        raise SoundError(f"{source.name}: empty or not a file", "empty")
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        prefix=".upload-", suffix=".wav", dir=destination.parent
    )
    os.close(handle)
    try:
        result = subprocess.run(
            # -D: no dither, so the same source converts to the same bytes.
            [_sox(), "-V1", "-D", str(source), *TARGET, temporary],
            capture_output=True, text=True, timeout=120, check=False,
        )
        if result.returncode != 0:
            raise SoundError(f"{source.name}: not an audio file sox can read ({_reason(result)})")
        if duration(temporary) <= 0:
            raise SoundError(f"{source.name}: holds no audio", "silent")
        os.replace(temporary, destination)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return destination


def _reason(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    text = lines[-1] if lines else f"sox exit status {result.returncode}"
    return text.removeprefix("sox FAIL ").strip()


def duration(path: str | os.PathLike) -> float:
    """Seconds of audio in `path` (soxi -D); 0.0 when sox cannot tell."""
    result = subprocess.run(
        [_sox(), "--info", "-D", str(path)], capture_output=True, text=True, check=False
    )
    try:
        return float(result.stdout.strip()) if result.returncode == 0 else 0.0
    except ValueError:
        return 0.0


def convert_upload(data: bytes, destination: str | os.PathLike, filename: str = "upload") -> Path:
    """Convert uploaded bytes (the panel's file field) to `destination`."""
    with tempfile.TemporaryDirectory(prefix="pbx-upload-") as scratch:
        # Keep the extension: sox picks the reader by it when the header is ambiguous.
        name = Path(filename).name or "upload"
        source = Path(scratch) / name
        source.write_bytes(data)
        return convert(source, destination)
