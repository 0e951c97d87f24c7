"""The endpoint's sans-IO parts: RFC 4733 telephone-events, packet pacing on a
moved clock, and the G.711 WAV writer and reader."""

import math
import struct

import pytest

from sipd.media import dtmf, g711, pacer, wav
from sipd.media.dtmf import Event, Receiver


def _event(code, end, duration):
    return bytes(Event(code, end, 10, duration))


# --- RFC 4733 ---------------------------------------------------------------------------

def test_a_key_with_three_end_packets_is_one_key():
    receiver = Receiver()
    keys = []
    now = 0.0
    for duration in (400, 800, 1200):  # §2.5.1.2: updates every 50 ms
        keys += receiver.feed(8000, _event(5, False, duration), now)
        now += 0.05
    for _ in range(3):  # §2.5.1.4: the end sent three times
        keys += receiver.feed(8000, _event(5, True, 1600), now)
    keys += receiver.expire(now + 5)
    assert keys == [dtmf.Key("5", 1600, True)]
    assert keys[0].ms() == 200


def test_keys_in_a_row_and_star_hash():
    receiver = Receiver()
    keys = []
    for index, code in enumerate((1, 10, 11, 1)):
        timestamp = 1000 + index * 4000
        keys += receiver.feed(timestamp, _event(code, False, 160), index)
        for _ in range(3):
            keys += receiver.feed(timestamp, _event(code, True, 800), index)
    assert [key.key for key in keys] == ["1", "*", "#", "1"]  # the same key twice is two


def test_lost_end_reported_by_the_next_event_or_by_silence():
    receiver = Receiver()
    assert receiver.feed(100, _event(2, False, 160), 0.0) == []
    assert receiver.feed(5000, _event(3, False, 160), 0.1) == [dtmf.Key("2", 160, False)]
    assert receiver.expire(0.5) == []
    assert receiver.expire(1.2) == [dtmf.Key("3", 160, False)]
    assert receiver.expire(3.0) == []


def test_late_packet_of_an_earlier_event_is_ignored():
    receiver = Receiver()
    receiver.feed(5000, _event(4, True, 800), 0.0)
    assert receiver.feed(1000, _event(9, True, 800), 0.1) == []


def test_a_key_held_long_is_one_key_over_segments():
    """§2.5.1.3: past 0xFFFF the event goes on with a new timestamp."""
    receiver = Receiver()
    keys = receiver.feed(0, _event(0, False, 0xFFFF), 0.0)
    keys += receiver.feed(0xFFFF, _event(0, False, 8000), 8.2)
    for _ in range(3):
        keys += receiver.feed(0xFFFF, _event(0, True, 16000), 10.0)
    assert keys == [dtmf.Key("0", 0xFFFF + 16000, True)]
    assert keys[0].ms() == (0xFFFF + 16000) // 8


def test_not_a_key_and_short_payload():
    receiver = Receiver()
    assert receiver.feed(0, _event(16, True, 800), 0) == []  # flash
    assert receiver.feed(800, b"\x01", 0) == []


def test_event_round_trip():
    assert Event.parse(bytes(Event(11, True, 7, 1234))) == Event(11, True, 7, 1234)


# --- pacing -----------------------------------------------------------------------------

def _headers(packets):
    return [pacer.parse_header(packet) for packet in packets]


def test_pacing_timestamps_sequence_and_marker_per_prompt():
    clock = 100.0
    p = pacer.Pacer(clock, ssrc=0x1234, payload_type=0, seq=65534, timestamp=0xFFFFFF00)
    p.play(b"\x01" * 400, clock, "first")  # 2.5 packets
    p.play(b"\x02" * 160, clock, "second")
    sent, done = [], []
    for step in range(10):
        packets, finished = p.due(clock + step * 0.02)
        sent += packets
        done += finished
    assert done == ["first", "second"]
    headers = _headers(sent)
    assert [h[2] for h in headers] == [65534, 65535, 0, 1]  # seq wraps, continuous
    assert [h[3] for h in headers] == [(0xFFFFFF00 + 160 * n) & 0xFFFFFFFF for n in range(4)]
    assert [h[0] for h in headers] == [1, 0, 0, 1]  # marker at each new prompt
    assert sent[2][12:][-80:] == b"\xff" * 80  # the last packet padded with silence
    # Silence, then a prompt: timestamps tell the time that passed, seq goes on.
    later = clock + 1.0
    p.play(b"\x03" * 160, later, "third")
    packets, done = p.due(later + 0.001)
    header = pacer.parse_header(packets[0])
    assert (header[0], header[2]) == (1, 2)
    assert header[3] == (0xFFFFFF00 + 160 * 50) & 0xFFFFFFFF
    assert done == ["third"]


def test_no_drift_when_the_loop_wakes_late():
    """Packets are due on the grid, whenever the loop happens to wake: after
    ten minutes the schedule is where it started plus 30000 packets."""
    start = 0.0
    p = pacer.Pacer(start, 1, 8, lateness=pacer.Lateness())
    p.play(b"\x55" * 160 * 30000, start, "long")
    now, sent = start, 0
    while p.playing:
        now += 0.0137  # an odd wake-up interval, never a multiple of 20 ms
        sent += len(p.due(now)[0])
    assert sent == 30000
    assert p.next_due() is None
    assert p.slot == 30000  # slot n went out at start + n * 20 ms, never later
    assert p.lateness.quantile(0.99) <= 0.0137 + 0.0001


def test_a_long_stall_skips_slots_instead_of_bursting():
    p = pacer.Pacer(0.0, 1, 0)
    p.play(b"\x01" * 160 * 100, 0.0)
    assert len(p.due(0.0)[0]) == 1
    packets, _ = p.due(1.0)  # stalled for a second
    assert len(packets) <= int(pacer.CATCH_UP / pacer.PTIME) + 1
    assert p.skipped > 0
    first = pacer.parse_header(packets[0])[3]
    assert first >= 160 * 40  # the timestamp jumped with the time


def test_loop_and_stop():
    p = pacer.Pacer(0.0, 1, 0)
    p.play(b"\x01" * 160, 0.0, "moh", loop=True)
    packets = []
    for n in range(5):
        packets += p.due(n * 0.02)[0]
    assert len(packets) == 5 and p.playing
    assert p.stop() == ["moh"]
    assert p.next_due() is None


def test_pushed_audio_keeps_its_own_timing():
    p = pacer.Pacer(0.0, 9, 0)
    p.push(b"\x10" * 160, 0.0)
    p.push(b"\x11" * 160, 0.001)
    packets, _ = p.due(0.025)
    assert [pkt[12:13] for pkt in packets] == [b"\x10", b"\x11"]
    for n in range(2, 2 + pacer.STARVED + 1):
        p.due(n * 0.02)
    assert not p.playing  # nothing more came: idle


def test_parse_header_skips_csrc_extension_and_padding():
    header = struct.pack("!BBHII", 0x80 | 0x20 | 0x10 | 1, 0x80 | 101, 7, 8, 9)
    packet = header + b"CSRC" + struct.pack("!HH", 0xBEDE, 1) + b"EXTN" + b"PAYL" + b"\0\0\x03"
    assert pacer.parse_header(packet) == (1, 101, 7, 8, 9, 24, 28)
    parsed = pacer.parse_header(b"\x80\x65\x00\x07" + b"\0" * 8 + b"abcd")
    assert parsed[:2] == (0, 101) and parsed[5:] == (12, 16)
    assert pacer.parse_header(b"\x40" + b"\0" * 20) is None


# --- WAV --------------------------------------------------------------------------------

def _tone(hz, seconds, rate=8000):
    return b"".join(struct.pack("<h", int(12000 * math.sin(2 * math.pi * hz * n / rate)))
                    for n in range(int(seconds * rate)))


@pytest.mark.parametrize("format, payload_type", [("ulaw", g711.PCMU), ("alaw", g711.PCMA)])
def test_g711_wav_round_trip(tmp_path, format, payload_type):
    linear = _tone(440, 0.5)
    encoded = g711.encode(linear, payload_type)
    path = tmp_path / f"tone-{format}.wav"
    wav.write(path, encoded, format)
    sound = wav.read(path)
    assert (sound.format, sound.rate, sound.channels) == (format, 8000, 1)
    assert sound.data == encoded
    assert sound.seconds == pytest.approx(0.5)
    decoded = sound.linear()
    assert len(decoded) == len(linear)
    error = max(abs(a - b) for a, b in zip(struct.iter_unpack("<h", decoded),
                                           struct.iter_unpack("<h", linear), strict=True)
                for a, b in [(a[0], b[0])])
    assert error < 400  # G.711's quantisation step at this level
    raw = path.read_bytes()
    assert struct.unpack_from("<H", raw, 20)[0] == wav.FORMATS[format]
    assert b"fact" in raw  # non-PCM WAVs carry one


def test_pcm_wav_and_stereo_and_other_rates(tmp_path):
    path = tmp_path / "stereo16k.wav"
    left, right = _tone(500, 0.2, 16000), _tone(1000, 0.2, 16000)
    wav.write(path, g711.stereo(left, right), "pcm16", channels=2, rate=16000)
    sound = wav.read(path)
    assert (sound.format, sound.rate, sound.channels) == ("pcm16", 16000, 2)
    assert len(sound.linear()) == pytest.approx(0.2 * 8000 * 2, abs=4)


def test_not_a_wav(tmp_path):
    path = tmp_path / "x.wav"
    path.write_bytes(b"ID3 not a wave at all")
    with pytest.raises(wav.WavError, match="not a WAV"):
        wav.read(path)
    with pytest.raises(wav.WavError):
        wav.read(tmp_path / "missing.wav")


# --- the endpoint (endpoint.py) on a moved clock ------------------------------------------

from sipd.media import endpoint as endpoint_module  # noqa: E402
from sipd.media.endpoint import Endpoint  # noqa: E402


def _rtp(seq, timestamp, payload, pt=0, ssrc=77, marker=0):
    return struct.pack("!BBHII", 0x80, (marker << 7) | pt, seq, timestamp, ssrc) + payload


def _feed(ep, packet, now):
    ep.receive(packet, len(packet), now)


def test_endpoint_records_each_packet_at_its_timestamps_offset(tmp_path):
    ep = Endpoint(1, "A", 0.0, 0.0, 5, g711.PCMU)
    path = tmp_path / "rec.wav"
    ep.record(str(path), 0.0, max_seconds=10, silence_seconds=0, end_keys="#")
    loud = g711.encode(_tone(1000, 0.02), g711.PCMU)
    # Packets 0, 2, 1 (reordered), then 5 (3 and 4 lost): 6 packets' worth of file.
    for seq, now in ((0, 0.0), (2, 0.04), (1, 0.045), (5, 0.1)):
        _feed(ep, _rtp(seq, 1000 + seq * 160, loud), now)
    done = ep.stop_recording("hangup")
    assert done["seconds"] == pytest.approx(6 * 160 / 8000)
    assert done["ended_by"] == "hangup"
    sound = wav.read(path)
    assert sound.format == "pcm16" and sound.seconds == pytest.approx(0.12)
    samples = sound.linear()
    packet_rms = [g711.rms(samples[n * 320:(n + 1) * 320]) for n in range(6)]
    assert all(r > 3000 for r in packet_rms[:3] + packet_rms[5:])
    assert packet_rms[3] == packet_rms[4] == 0  # the lost ones are silence, not noise
    assert not (tmp_path / ".rec.wav.raw").exists()


def test_endpoint_keys_end_a_recording_and_silence_ends_one_too(tmp_path):
    ep = Endpoint(1, "A", 0.0, 0.0, 5, g711.PCMU, event_type=101)
    ep.record(str(tmp_path / "a.wav"), 0.0, max_seconds=60, silence_seconds=2, end_keys="#")
    for duration in (160, 320):
        _feed(ep, _rtp(1, 8000, _event(1, False, duration), pt=101), 0.1)
    for _ in range(3):
        _feed(ep, _rtp(1, 8000, _event(1, True, 480), pt=101), 0.15)
    assert ep.events == [{"event": "key", "key": "1"}]  # not an end key: reported
    ep.events.clear()
    for _ in range(3):
        _feed(ep, _rtp(2, 16000, _event(11, True, 480), pt=101), 0.5)
    assert [e["event"] for e in ep.events] == ["recorded"]
    assert (ep.events[0]["ended_by"], ep.events[0]["key"]) == ("key", "#")
    ep.events.clear()
    # Silence: the phone sends only silence; the deadline is 2 s after the last voice.
    ep.record(str(tmp_path / "b.wav"), 1.0, max_seconds=60, silence_seconds=2, end_keys="")
    loud = g711.encode(_tone(500, 0.02), g711.PCMU)
    quiet = b"\xff" * 160
    _feed(ep, _rtp(10, 0, loud), 1.0)
    for n in range(1, 150):
        _feed(ep, _rtp(10 + n, n * 160, quiet), 1.0 + n * 0.02)
        ep.wake(1.0 + n * 0.02)
    assert ep.next_wake() is None or ep.recorder is None
    (done,) = ep.events
    assert done["ended_by"] == "silence"
    assert done["seconds"] == pytest.approx(0.02)  # the silence after the voice is cut


def test_endpoint_plays_prompts_in_turn_and_echoes(tmp_path):
    ep = Endpoint(3, "A", 0.0, 0.0, 9, g711.PCMA, event_type=None)
    ep.play(b"\x01" * 320, 0.0, tag=7)
    sent = []
    now = 0.0
    while ep.next_wake() is not None:
        now = ep.next_wake()
        sent += ep.wake(now)
    assert len(sent) == 2 and ep.events == [{"event": "played", "tag": 7}]
    assert pacer.parse_header(sent[0])[1] == g711.PCMA
    ep.events.clear()
    ep.echo = True
    frame = g711.encode(_tone(700, 0.02), g711.PCMU)
    _feed(ep, _rtp(1, 0, frame, pt=g711.PCMU), now + 0.1)  # the caller speaks µ-law
    echoed = ep.wake(ep.next_wake())
    assert echoed[0][12:] == g711.transcode(frame, g711.PCMU, g711.PCMA)


def test_tone_is_whole_packets():
    data = endpoint_module.tone(1000, 250, g711.PCMU)
    assert len(data) == 13 * 160  # 250 ms rounded up to whole packets
    assert g711.rms(g711.decode(data, g711.PCMU)) > 4000


def test_a_tapped_call_is_one_stereo_wav_each_phone_on_its_channel(tmp_path):
    tap = endpoint_module.Tap(str(tmp_path / "call.wav"), 0.0)
    caller = g711.encode(_tone(400, 0.02), g711.PCMU)
    callee = g711.encode(_tone(1200, 0.02), g711.PCMA)  # the other law: transcoded
    for n in range(50):
        packet = _rtp(n, 5000 + n * 160, caller)
        tap.receive("A", packet, len(packet), n * 0.02)
        if n >= 10:  # the callee starts 200 ms later
            packet = _rtp(n, 90000 + n * 160, callee, pt=g711.PCMA, ssrc=88)
            tap.receive("B", packet, len(packet), n * 0.02)
    done = tap.finish()
    assert done["seconds"] == pytest.approx(1.0, abs=0.03)
    sound = wav.read(tmp_path / "call.wav")
    assert (sound.channels, sound.format) == (2, "pcm16")
    frames = struct.unpack(f"<{len(sound.data) // 2}h", sound.data)
    left, right = frames[0::2], frames[1::2]

    def rms(samples):
        return math.sqrt(sum(x * x for x in samples) / len(samples))

    assert rms(left[:1600]) > 3000 and rms(right[:1600]) < 100  # callee not yet there
    assert rms(right[4000:8000]) > 3000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["call.wav"]
