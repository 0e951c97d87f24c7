"""Music on hold end to end: a real sipd, sipp phones; the caller holds
(re-INVITE a=sendonly) and the held callee hears PBX_MOH_FILE from the media
endpoint (sipd/b2bua/music.py) until the caller resumes. The callee's SDP
names a socket of the test, which measures what the phone hears."""

from __future__ import annotations

import socket
import time

from core.config import DEFAULT_MOH
from sipd.media import wav
from tests.sip import callkit as ck


def test_the_held_party_hears_the_music_until_resumed(tmp_path):
    server = ck.SipdServer(tmp_path).start()
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
        log = server.log()
    finally:
        phone.close()
        server.stop()
    music = wav.read(DEFAULT_MOH).data
    payloads = b"".join(packet[12:] for _, packet in heard)
    # 1.5 s held: about 75 packets of the tune, from its start, in order.
    assert 60 <= len(heard) <= 90, len(heard)
    assert payloads == music[:len(payloads)]
    assert heard[0][1][1] & 0x80  # the marker bit: a new talkspurt
    # and nothing after the resume: the music played only during the hold
    span = heard[-1][0] - heard[0][0]
    assert 1.2 <= span <= 1.9, span
    assert "the caller holds; the callee hears music on hold" in log
    assert "resumed; music on hold for the callee ends" in log
