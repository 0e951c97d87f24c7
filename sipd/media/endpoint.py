"""The PBX's own end of a call: a relay leg terminated by the media process
itself (voicemail, IVR, the echo test, music on hold). No sockets and no
clock: the relay (server.py) hands it the packets that arrive on the leg and
the time, and sends what `wake()` returns out of the leg's RTP port.

An `Endpoint` is attached to one leg of a relay session (session.py). While
it is:
- what the leg's phone sends (RTP that passed the leg's latching rule, the
  relay's, session.py) comes here instead of going to the other leg: audio is
  recorded (`Recorder`) and echoed when asked, telephone-events (RFC 4733,
  dtmf.py) become keys;
- the leg's phone hears the endpoint, not the other leg (Leg.receives is
  False for the other leg's packets): prompts and tones queued on a `Pacer`
  (pacer.py), one packet every 20 ms, sequence numbers and timestamps
  continuous, the marker bit on each prompt's first packet.

What sipd must hear of (a key, a prompt played to its end, a recording done)
goes into `events`, dicts the relay writes to the control socket.

Recording (`Recorder`): each packet is written at its place in the file, the
offset its RTP timestamp gives (RFC 3550 §5.1: the sampling instant of its
first sample) from the first one, so a packet reordered or late lands where it
belongs and a gap (lost packets, a phone's silence suppression) is silence of
the right length, not a cut. The raw G.711 goes to a hidden file next to the
WAV as it comes (a long message never sits in memory), turned into a 16-bit
PCM WAV when the recording ends (wav.write_pcm_chunks).
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path

from sipd.media import dtmf, g711, wav
from sipd.media.pacer import SAMPLES, Lateness, Pacer, parse_header

# RMS (16-bit) at or below which a packet counts as silence: Asterisk's
# default silence threshold (dsp.c, 256) on the same scale.
SILENCE_RMS = 256
# A timestamp this far (in samples) from where the recording is: a new stream
# (the phone restarted it), placed by the time that passed instead.
JUMP = 8000 * 10
CHUNK = 8000 * 10  # samples converted at a time when the WAV is written
_CACHE = 256  # decoded prompts kept (most recently used)


class Recorder:
    __slots__ = ("path", "raw", "fd", "payload_type", "started", "max_samples", "silence",
                 "end_keys", "base", "ssrc", "end", "voice_end", "last_voice", "silence_byte")

    def __init__(self, path: str, payload_type: int, now: float, max_seconds: float,
                 silence_seconds: float, end_keys: str):
        self.path = Path(path)
        self.raw = self.path.with_name(f".{self.path.name}.raw")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.raw, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o640)
        self.payload_type = payload_type
        self.silence_byte = bytes([g711.SILENCE[payload_type]])
        self.started = now
        self.max_samples = int(max_seconds * g711.RATE)
        self.silence = silence_seconds
        self.end_keys = end_keys
        self.base: int | None = None  # the RTP timestamp of sample 0
        self.ssrc: int | None = None
        self.end = 0  # samples in the file
        self.voice_end = 0  # the end of the last packet that was not silence
        self.last_voice = now

    def write(self, timestamp: int, ssrc: int, payload: bytes, voice: bool, now: float) -> None:
        if self.base is None or ssrc != self.ssrc:
            # The first packet, or a new stream: placed at the time it came.
            self.ssrc = ssrc
            self.base = (timestamp - int((now - self.started) * g711.RATE)) & 0xFFFFFFFF
        offset = (timestamp - self.base) & 0xFFFFFFFF
        if offset >= 0x80000000 or abs(offset - (now - self.started) * g711.RATE) > JUMP:
            self.base = (timestamp - int((now - self.started) * g711.RATE)) & 0xFFFFFFFF
            offset = (timestamp - self.base) & 0xFFFFFFFF
        if offset >= self.max_samples:
            return
        payload = payload[:self.max_samples - offset]
        if offset > self.end:  # a gap: silence, not zero bytes (loud in G.711)
            os.pwrite(self.fd, self.silence_byte * (offset - self.end), self.end)
        os.pwrite(self.fd, payload, offset)
        self.end = max(self.end, offset + len(payload))
        if voice:
            self.voice_end = max(self.voice_end, offset + len(payload))
            self.last_voice = now

    def deadline(self) -> float:
        end = self.started + self.max_samples / g711.RATE
        return min(end, self.last_voice + self.silence) if self.silence else end

    def due(self, now: float) -> str | None:
        """"max" or "silence" when the recording must end now."""
        if now >= self.started + self.max_samples / g711.RATE or self.end >= self.max_samples:
            return "max"
        if self.silence and now - self.last_voice >= self.silence:
            return "silence"
        return None

    def finish(self, ended_by: str, key: str = "") -> dict:
        """Write the WAV (16-bit PCM, 8 kHz mono); the recording's result.
        Ended by silence: the silence at the end is left out."""
        samples = self.voice_end if ended_by == "silence" else self.end
        try:
            def chunks():
                for offset in range(0, samples, CHUNK):
                    data = os.pread(self.fd, min(CHUNK, samples - offset), offset)
                    yield g711.decode(data, self.payload_type)

            wav.write_pcm_chunks(self.path, chunks())
            error = ""
        except OSError as failure:
            error = f"{self.path}: {failure.strerror or failure}"
        finally:
            os.close(self.fd)
            try:
                os.unlink(self.raw)
            except OSError:
                pass
        result = {"event": "recorded", "path": str(self.path),
                  "seconds": round(samples / g711.RATE, 3), "ended_by": ended_by, "key": key}
        if error:
            result["error"] = error
        return result


class Endpoint:
    __slots__ = ("session", "leg", "pacer", "payload_type", "event_type", "receiver",
                 "recorder", "echo", "events", "scheduled", "closed", "packets_in",
                 "keys_in")

    def __init__(self, session: int, leg: str, now: float, start: float, ssrc: int,
                 payload_type: int, event_type: int | None = 101, seq: int = 0,
                 timestamp: int = 0, lateness: Lateness | None = None):
        if payload_type not in g711.ENCODINGS:
            raise ValueError(f"the endpoint speaks PCMU (0) and PCMA (8), not {payload_type!r}")
        self.session = session
        self.leg = leg
        self.payload_type = payload_type
        self.event_type = event_type
        self.pacer = Pacer(start, ssrc, payload_type, seq, timestamp,
                           g711.SILENCE[payload_type], lateness)
        self.receiver = dtmf.Receiver()
        self.recorder: Recorder | None = None
        self.echo = False
        self.events: list[dict] = []
        self.scheduled: float | None = None  # when the relay will wake it (server.py)
        self.closed = False
        self.packets_in = 0
        self.keys_in = 0

    # --- what the phone sends ------------------------------------------------------

    def receive(self, packet, size: int, now: float) -> None:
        """An RTP packet from the leg's phone (already latched)."""
        header = parse_header(packet, size)
        if header is None:
            return
        _, payload_type, _, timestamp, ssrc, start, end = header
        self.packets_in += 1
        if payload_type == self.event_type:
            for key in self.receiver.feed(timestamp, bytes(packet[start:end]), now):
                self._key(key.key)
            return
        if payload_type not in g711.ENCODINGS:
            return  # comfort noise (13) and the rest: nothing to play or record
        payload = bytes(packet[start:end])
        recorder = self.recorder
        if recorder is not None:
            voice = g711.rms(g711.decode(payload, payload_type)) > SILENCE_RMS
            if payload_type != recorder.payload_type:
                payload = g711.transcode(payload, payload_type, recorder.payload_type)
            recorder.write(timestamp, ssrc, payload, voice, now)
        if self.echo:
            self.pacer.push(g711.transcode(payload, payload_type, self.payload_type)
                            if payload_type != self.payload_type else payload, now)

    def _key(self, key: str) -> None:
        self.keys_in += 1
        recorder = self.recorder
        if recorder is not None and key in recorder.end_keys:
            self.events.append(self.stop_recording("key", key))  # the key ends it, is not kept
            return
        self.events.append({"event": "key", "key": key})

    # --- what it is told to do -----------------------------------------------------

    def play(self, data: bytes, now: float, tag=None, loop: bool = False) -> None:
        """Queue a prompt (encoded in the endpoint's payload type); `tag`, when not
        None, comes back in a "played" event once it has all been sent."""
        self.pacer.play(data, now, tag, loop)

    def stop(self) -> list:
        return [tag for tag in self.pacer.stop() if tag is not None]

    def record(self, path: str, now: float, max_seconds: float, silence_seconds: float,
               end_keys: str) -> None:
        if self.recorder is not None:
            self.stop_recording("replaced")
        self.recorder = Recorder(path, self.payload_type, now, max_seconds, silence_seconds,
                                 end_keys)

    def stop_recording(self, ended_by: str, key: str = "") -> dict | None:
        recorder, self.recorder = self.recorder, None
        return recorder.finish(ended_by, key) if recorder is not None else None

    def close(self) -> None:
        """The leg or session goes: a recording under way is written as it is."""
        self.closed = True
        self.pacer.stop()
        done = self.stop_recording("hangup")
        if done is not None:
            self.events.append(done)

    # --- time ---------------------------------------------------------------------

    def next_wake(self) -> float | None:
        times = []
        due = self.pacer.next_due()
        if due is not None:
            times.append(due)
        receiver = self.receiver
        if not receiver.reported:
            times.append(receiver.last + dtmf.END_SILENCE)
        if self.recorder is not None:
            times.append(self.recorder.deadline())
        return min(times) if times else None

    def wake(self, now: float) -> list[bytes]:
        """The packets due by `now`; events for what ended."""
        packets, done = self.pacer.due(now)
        for tag in done:
            if tag is not None:
                self.events.append({"event": "played", "tag": tag})
        for key in self.receiver.expire(now):
            self._key(key.key)
        recorder = self.recorder
        if recorder is not None:
            ended_by = recorder.due(now)
            if ended_by is not None:
                self.events.append(self.stop_recording(ended_by))
        return packets

    def stats(self) -> dict:
        return {"packets_sent": self.pacer.sent, "packets_in": self.packets_in,
                "keys": self.keys_in, "skipped": self.pacer.skipped,
                "playing": self.pacer.playing, "recording": self.recorder is not None}


# --- call recording ---------------------------------------------------------------

class Tap:
    """A relayed call recorded (issue 13 item 5): what each phone sent that the
    relay passed on, each into its own track (leg A, the caller's: left; leg
    B: right), both placed by time from the same start, written as one stereo
    16-bit WAV when the call ends. The relay goes on as before: a tap only
    reads the packets it forwards."""

    __slots__ = ("path", "tracks", "started")

    def __init__(self, path: str, now: float, max_seconds: float = 4 * 3600):
        self.path = Path(path)
        self.started = now
        # Each track in PCMU whatever the phones speak (the WAV is PCM anyway).
        self.tracks = {name: Recorder(str(self.path.with_name(f"{self.path.name}.{name}")),
                                      g711.PCMU, now, max_seconds, 0, "")
                       for name in ("A", "B")}

    def receive(self, leg: str, packet, size: int, now: float) -> None:
        header = parse_header(packet, size)
        if header is None or header[1] not in g711.ENCODINGS:
            return
        _, payload_type, _, timestamp, ssrc, start, end = header
        payload = bytes(packet[start:end])
        if payload_type != g711.PCMU:
            payload = g711.transcode(payload, payload_type, g711.PCMU)
        self.tracks[leg].write(timestamp, ssrc, payload, True, now)

    def finish(self) -> dict:
        """Write the stereo WAV; {"event": "tapped", path, seconds}."""
        a, b = self.tracks["A"], self.tracks["B"]
        samples = max(a.end, b.end)
        error = ""
        try:
            def chunks():
                for offset in range(0, samples, CHUNK):
                    size = min(CHUNK, samples - offset)
                    left = _track(a, offset, size)
                    right = _track(b, offset, size)
                    yield g711.stereo(left, right)

            wav.write_pcm_chunks(self.path, chunks(), channels=2)
        except OSError as failure:
            error = f"{self.path}: {failure.strerror or failure}"
        finally:
            for track in (a, b):
                os.close(track.fd)
                try:
                    os.unlink(track.raw)
                except OSError:
                    pass
        result = {"event": "tapped", "path": str(self.path),
                  "seconds": round(samples / g711.RATE, 3)}
        if error:
            result["error"] = error
        return result


def _track(recorder: Recorder, offset: int, size: int) -> bytes:
    """`size` samples of a track from `offset`, 16-bit; silence past its end."""
    data = os.pread(recorder.fd, size, offset) if offset < recorder.end else b""
    data += recorder.silence_byte * (size - len(data))
    return g711.decode(data, g711.PCMU)


# --- what is played ---------------------------------------------------------------

class Sounds:
    """Prompts read and encoded once per payload type, kept while their file is
    unchanged (most recently used first out of `_CACHE`)."""

    def __init__(self):
        self.cache: dict[tuple, bytes] = {}

    def encoded(self, path: str, payload_type: int) -> bytes:
        try:
            info = os.stat(path)
        except OSError as error:
            raise wav.WavError(f"{path}: {error.strerror or error}") from None
        key = (path, info.st_mtime_ns, info.st_size, payload_type)
        data = self.cache.pop(key, None)
        if data is None:
            sound = wav.read(path)
            stored = {"ulaw": g711.PCMU, "alaw": g711.PCMA}.get(sound.format)
            if stored == payload_type and sound.rate == g711.RATE and sound.channels == 1:
                data = sound.data
            else:
                data = g711.encode(sound.linear(), payload_type)
            if len(self.cache) >= _CACHE:
                del self.cache[next(iter(self.cache))]
        self.cache[key] = data
        return data


def tone(hz: float, ms: int, payload_type: int, level: int = 8000) -> bytes:
    """A sine of `hz` for `ms` milliseconds, encoded (e.g. the beep before a
    message: 1000 Hz); whole packets, so the next prompt starts on a boundary."""
    count = max(1, math.ceil(ms * g711.RATE / 1000 / SAMPLES)) * SAMPLES
    step = 2 * math.pi * hz / g711.RATE
    linear = struct.pack(f"<{count}h", *(int(level * math.sin(step * n)) for n in range(count)))
    return g711.encode(linear, payload_type)
