"""Music on hold end to end: a real sipd, sipp phones; the caller holds
(re-INVITE a=sendonly) and the held callee hears PBX_MOH_FILE from the media
endpoint (sipd/b2bua/music.py) until the caller resumes, or the music an admin
chose from the library (core/music.py), chosen while sipd runs. The callee's SDP
names a socket of the test, which measures what the phone hears."""

from __future__ import annotations

import io
import math
import socket
import struct
import time
import wave

from core import music
from core.config import DEFAULT_MOH, load_settings
from core.database import connect
from sipd.media import g711, wav
from tests.sip import callkit as ck


def hold_and_listen(server) -> tuple[list[tuple[float, bytes]], str]:
    """Call 1001 -> 1002, the caller holds for 1.5 s and resumes: (what the held
    callee's socket received, with when; sipd's log)."""
    phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    phone.bind((ck.LOOPBACK, 0))
    heard: list[tuple[float, bytes]] = []
    try:
        callee = ck.callee(server.address, "1002", "callee_hold_music.xml", rtp_echo=False,
                           sets={"sdp_port": phone.getsockname()[1]})
        caller = ck.caller(server.address, "1001", "1002", "caller_hold.xml",
                           duration_ms=1500)
        deadline = time.monotonic() + 20
        while caller.running() and time.monotonic() < deadline:
            phone.settimeout(0.05)
            try:
                heard.append((time.monotonic(), phone.recv(2048)))
            except TimeoutError:
                pass
        ck.finish(caller, callee, server=server)
        return heard, server.log()
    finally:
        phone.close()


def test_the_held_party_hears_the_music_until_resumed(tmp_path):
    server = ck.SipdServer(tmp_path).start()
    try:
        heard, log = hold_and_listen(server)
    finally:
        server.stop()
    music_data = wav.read(DEFAULT_MOH).data
    payloads = b"".join(packet[12:] for _, packet in heard)
    # 1.5 s held: about 75 packets of the tune, from its start, in order.
    assert 60 <= len(heard) <= 90, len(heard)
    assert payloads == music_data[:len(payloads)]
    assert heard[0][1][1] & 0x80  # the marker bit: a new talkspurt
    # and nothing after the resume: the music played only during the hold
    span = heard[-1][0] - heard[0][0]
    assert 1.2 <= span <= 1.9, span
    assert "the caller holds; the callee hears music on hold" in log
    assert "resumed; music on hold for the callee ends" in log


def tone_wav(hz: float, seconds: float, rate: int = 44100) -> bytes:
    """A 16-bit stereo WAV as an admin would upload it (not the PBX's format)."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"".join(
            struct.pack("<h", int(9000 * math.sin(2 * math.pi * hz * n / rate))) * 2
            for n in range(int(rate * seconds))))
    return buffer.getvalue()


def share(payload: bytes, hz: float) -> float:
    """The share of the energy of µ-law `payload` at `hz` (Goertzel; a pure tone: about 1)."""
    samples = struct.unpack(f"<{len(payload)}h", g711.decode(payload, g711.PCMU))
    energy = sum(x * x for x in samples) / len(samples)
    coefficient = 2 * math.cos(2 * math.pi * hz / 8000)
    s_prev = s_prev2 = 0.0
    for x in samples:
        s_prev2, s_prev = s_prev, x + coefficient * s_prev - s_prev2
    power = s_prev2**2 + s_prev**2 - coefficient * s_prev * s_prev2
    return 2 * power / len(samples) / energy if energy else 0.0


def test_the_held_party_hears_the_music_chosen_in_the_library(tmp_path):
    sounds_dir = tmp_path / "sounds"
    server = ck.SipdServer(tmp_path, PBX_SOUNDS_DIR=str(sounds_dir)).start()
    try:
        # Chosen while sipd runs, as the panel does it: read at the hold, no restart.
        settings = load_settings({"PBX_DB": str(server.db_path), "PBX_REALM": ck.REALM,
                                  "PBX_SOUNDS_DIR": str(sounds_dir)})
        database = connect(settings, migrate=False)
        try:
            name = music.add(tone_wav(1000, 3.0), "Tone 1 kHz.wav", settings)
            music.choose(name, settings)
        finally:
            database.close()
        heard, log = hold_and_listen(server)
    finally:
        server.stop()
    chosen = wav.read(sounds_dir / "moh" / f"{name}.wav").data
    payloads = b"".join(packet[12:] for _, packet in heard)
    assert 60 <= len(heard) <= 90, len(heard)
    assert payloads == chosen[:len(payloads)]  # the upload, from its start, not the tune
    assert share(payloads[1600:9600], 1000) > 0.9  # 1 kHz, as uploaded (resampled by sox)
    assert share(payloads[1600:9600], 440) < 0.01
    assert "the caller holds; the callee hears music on hold" in log
    assert "music on hold:" not in log  # no fallback was needed
