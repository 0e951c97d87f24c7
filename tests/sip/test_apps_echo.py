"""*43, the echo test, end to end: a real sipd answers the call itself with its
media endpoint (sipd/b2bua/application.py, sipd/media/endpoint.py), plays the
prompt, echoes the caller's audio, hears keys by RFC 4733 and SIP INFO, and
hangs up. sipp does the signalling; the phone's audio is a socket of the test
(what it hears is measured packet by packet) or sipp's own rtp_stream."""

from __future__ import annotations

import math
import socket
import struct
import time

import pytest

from sipd.media import g711, wav
from tests.sip import callkit as ck

SSRC = 0x0CA11E12


def _ulaw_tone(hz: float, seconds: float) -> bytes:
    count = int(seconds * 8000)
    linear = struct.pack(f"<{count}h", *(int(9000 * math.sin(2 * math.pi * hz * n / 8000))
                                         for n in range(count)))
    return g711.encode(linear, g711.PCMU)


@pytest.fixture
def sounds(tmp_path):
    """Short uploads in place of the built echo prompts (Asterisk's says 22 s):
    PBX_SOUNDS_DIR's own WAVs win over the built ones (core/prompts.path)."""
    directory = tmp_path / "sounds"
    (directory / "en").mkdir(parents=True)
    intro, done = _ulaw_tone(440, 1.0), _ulaw_tone(600, 0.4)
    wav.write(directory / "en" / "demo-echotest.wav", intro, "ulaw")
    wav.write(directory / "en" / "demo-echodone.wav", done, "ulaw")
    return directory, intro, done


@pytest.fixture
def server(tmp_path, built_prompts, sounds):
    server = ck.SipdServer(tmp_path, PBX_PROMPTS_DIR=str(built_prompts),
                           PBX_SOUNDS_DIR=str(sounds[0]))
    server.start()
    yield server
    server.stop()


def _receive(sock, until: float, packets: list) -> None:
    while time.monotonic() < until:
        sock.settimeout(max(0.001, until - time.monotonic()))
        try:
            packets.append(sock.recv(2048))
        except TimeoutError:
            return


def test_echo_test_plays_the_prompt_echoes_and_ends_on_pound(server, sounds):
    _, intro, done = sounds
    phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    phone.bind((ck.LOOPBACK, 0))
    run = ck.Sipp("echo", "caller_app.xml", server.address, timeout=60,
                  inject=[ck.user_row("1001", ck.PASSWORD, "*43", str(phone.getsockname()[1]))])
    run.start()
    try:
        answer = ck.wait_answer_sdp(run)
        assert "a=rtpmap:0 PCMU/8000" in answer and "telephone-event/8000" in answer
        pbx = ck.sdp_media(answer)
        # The prompt: 50 packets of it, sent before the phone has said a word
        # (its SDP names the address its signalling comes from).
        heard: list[bytes] = []
        deadline = time.monotonic() + 5
        while len(heard) < 50 and time.monotonic() < deadline:
            _receive(phone, min(deadline, time.monotonic() + 0.1), heard)
        headers = [struct.unpack_from("!BBHII", packet) for packet in heard[:50]]
        assert b"".join(packet[12:] for packet in heard[:50]) == intro
        assert headers[0][1] == 0x80 and all(h[1] == 0 for h in headers[1:])
        assert [(h[2] - headers[0][2]) & 0xFFFF for h in headers] == list(range(50))
        # Then the phone speaks: what it says comes back, packet for packet.
        sent = {}
        echoed = set()
        start = time.monotonic()
        for seq in range(50):
            payload = bytes((seq * 11 + i) % 256 for i in range(160))
            sent[payload] = seq
            phone.sendto(ck.rtp_packet(seq, seq * 160, SSRC, payload), pbx)
            back: list[bytes] = []
            _receive(phone, start + (seq + 1) * 0.02, back)
            echoed.update(sent[p[12:]] for p in back if p[12:] in sent)
        back = []
        _receive(phone, time.monotonic() + 0.3, back)
        echoed.update(sent[p[12:]] for p in back if p[12:] in sent)
        assert len(echoed) >= 45, f"{len(echoed)} of 50 packets echoed"
        # # as an RFC 4733 telephone-event (§2.5.1.4: its end three times): the
        # echo ends, the closing prompt plays, the PBX hangs up.
        ck.send_paced(phone, pbx, (struct.pack("!BBH", 11, flags, duration) for flags, duration
                                   in ((10, 160), (10, 320), (0x8A, 640), (0x8A, 640),
                                       (0x8A, 640))),
                      SSRC, pt=101, first_seq=50, event_timestamp=50 * 160)
        after: list[bytes] = []
        _receive(phone, time.monotonic() + 2.0, after)
        ck.finish(run, server=server)
    finally:
        phone.close()
        run.stop()
    assert done in b"".join(packet[12:] for packet in after)
    assert [m.method for m in run.received() if m.method] == ["BYE"]
    rows = ck.ended_calls(server.db_path)
    (row,) = rows
    assert (row["callee"], row["disposition"]) == ("*43", "ANSWERED")
    assert "application echo hung up" in row["reason"]
    assert "answered by application echo" in server.log()


def test_echo_test_with_sipps_rtp_stream_ends_on_sip_info(server):
    """RFC 4733 is the test above's (sipp 3.6.1's telephone-event captures go
    out from source port 0 on loopback: refused by the relay's latching)."""
    media_port = ck.free_ports(2, 2)
    run = ck.Sipp("echo-media", "caller_app_media.xml", server.address, timeout=60,
                  media_port=media_port,
                  inject=[ck.user_row("1001", ck.PASSWORD, "*43", str(media_port))])
    wav.write(run.workdir / "caller-tone.wav", _ulaw_tone(1000, 2.0), "ulaw")
    run.start()
    try:
        ck.finish(run, timeout=60, server=server)
    finally:
        run.stop()
    log = server.log()
    assert "key # by SIP INFO" in log
    assert "RTP latched to" in log  # sipp's own stream was the caller's audio
    info = [m for m in run.sent() if m.method == "INFO"]
    assert len(info) == 1
    (row,) = ck.ended_calls(server.db_path)
    assert "application echo hung up" in row["reason"]
