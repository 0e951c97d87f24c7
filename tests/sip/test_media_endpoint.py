"""The PBX's own endpoint in the real media process (`python -m sipd.media`),
driven through the Relay client as sipd's AppCall drives it, with a UDP
socket playing the caller's phone on 127.0.0.1."""

from __future__ import annotations

import math
import socket
import struct
import time

import pytest

from sipd.media import g711, wav
from tests.sip.test_media_relay import make_relay


def _tone(hz: float, samples: int) -> bytes:
    return struct.pack(f"<{samples}h",
                       *(int(8000 * math.sin(2 * math.pi * hz * n / 8000)) for n in range(samples)))


@pytest.fixture
def relay(tmp_path):
    relay = make_relay(tmp_path).start()
    yield relay
    relay.stop()


def test_endpoint_plays_records_and_hears_keys(relay, tmp_path):
    session = relay.open_session("endpoint-1")
    phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    phone.bind(("127.0.0.1", 0))
    try:
        relay.set_remote(session, "A", "127.0.0.1", phone.getsockname()[1], source="127.0.0.1")
        relay.endpoint(session, "endpoint", payload_type=g711.PCMU, event_type=101)
        prompt = g711.encode(_tone(440, 1600), g711.PCMU)  # 10 packets
        wav.write(tmp_path / "prompt.wav", prompt, "ulaw")
        relay.endpoint(session, "play", files=[str(tmp_path / "prompt.wav")], tag=1)
        recording = tmp_path / "rec.wav"
        relay.endpoint(session, "record", path=str(recording), max=5, silence=0, end_keys="#")
        to_relay = ("127.0.0.1", session.leg("A").local_rtp_port)
        voice = g711.encode(_tone(1000, 160), g711.PCMU)
        heard = []
        phone.settimeout(0.02)
        for seq in range(25):  # half a second of the caller's voice, paced
            phone.sendto(struct.pack("!BBHII", 0x80, 0, seq, seq * 160, 99) + voice, to_relay)
            deadline = time.monotonic() + 0.02
            while time.monotonic() < deadline:
                try:
                    heard.append(phone.recv(2000))
                except TimeoutError:
                    break
        assert relay.events(session, 2.0) == [
            {"event": "played", "tag": 1, "session": session.id, "leg": "A"}]
        event = struct.pack("!BBHII", 0x80, 101, 30, 25 * 160, 99)
        for flags, duration in ((10, 160), (10, 320), (0x8A, 480), (0x8A, 480), (0x8A, 480)):
            phone.sendto(event + struct.pack("!BBH", 11, flags, duration), to_relay)
        (done,) = relay.events(session, 2.0)
        assert (done["event"], done["ended_by"], done["key"]) == ("recorded", "key", "#")
        assert done["seconds"] == pytest.approx(0.5, abs=0.01)
        # What the phone heard: the prompt, 10 packets in sequence, marker on the first.
        headers = [struct.unpack_from("!BBHII", packet) for packet in heard]
        assert b"".join(packet[12:] for packet in heard) == prompt
        assert [h[1] for h in headers] == [0x80] + [0] * 9
        assert [(h[2] - headers[0][2]) & 0xFFFF for h in headers] == list(range(10))
        assert [(h[3] - headers[0][3]) & 0xFFFFFFFF for h in headers] == [n * 160 for n in
                                                                          range(10)]
        sound = wav.read(recording)
        assert sound.seconds == pytest.approx(0.5, abs=0.01)
        assert g711.rms(sound.linear()) > 3000
        assert relay.info()["endpoints"] == 1
    finally:
        phone.close()
        relay.close_session(session)
    assert relay.info()["endpoints"] == 0
    assert relay._events == {}  # the closed session's "closed" event is not kept


def test_endpoint_refuses_what_it_cannot_do(relay, tmp_path):
    from sipd.media import MediaError

    session = relay.open_session("endpoint-2")
    with pytest.raises(MediaError, match="no endpoint"):
        relay.endpoint(session, "play", files=["/nonexistent.wav"])
    relay.endpoint(session, "endpoint", payload_type=8)
    with pytest.raises(MediaError, match="nonexistent"):
        relay.endpoint(session, "play", files=["/nonexistent.wav"])
    (tmp_path / "bad.wav").write_bytes(b"not a wav")
    with pytest.raises(MediaError, match="not a WAV"):
        relay.endpoint(session, "play", files=[str(tmp_path / "bad.wav")])
    with pytest.raises(MediaError, match="absolute"):
        relay.endpoint(session, "record", path="x.wav", max=5)
    with pytest.raises(MediaError, match="PCMU and PCMA"):
        relay.endpoint(session, "endpoint", payload_type=18)
    relay.close_session(session)
