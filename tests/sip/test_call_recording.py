"""Call recording end to end: `pbxctl ext record 1001 on`, a call from 1001 to
1002 through a real sipd, each phone's audio a socket of the test sending its
own tone; the media process writes one stereo WAV (caller left, callee right)
named on the call's row, each tone on its own channel (Goertzel)."""

from __future__ import annotations

import itertools
import socket
import struct
import threading
from pathlib import Path

from sipd.media import g711, wav
from tests.sip import callkit as ck
from tests.sip.softphone import stereo_tones


def _send_tone(sock, hz: float, stop: threading.Event, ssrc: int, first: dict) -> None:
    """Until stopped: a tone, one packet per 20 ms, to wherever the PBX's
    packets come from (its SDP port, learnt from the first one)."""
    import math

    linear = struct.pack("<8000h", *(int(9000 * math.sin(2 * math.pi * hz * n / 8000))
                                     for n in range(8000)))
    tone = g711.encode(linear, g711.PCMU)
    sock.setblocking(False)
    peer: dict = {}

    def where():  # latching: the PBX's address is where its packets come from
        try:
            peer["pbx"] = sock.recvfrom(2048)[1]
        except BlockingIOError:
            pass
        return peer.get("pbx") or first.get("pbx")

    chunks = (tone[(n * 160) % 8000:(n * 160) % 8000 + 160] for n in itertools.count())
    ck.send_paced(sock, where, chunks, ssrc, until=stop.is_set)


def test_a_recorded_call_holds_each_phones_tone_on_its_own_channel(tmp_path, pbxctl):
    recordings = tmp_path / "recordings"
    server = ck.SipdServer(tmp_path, PBX_RECORDING_DIR=str(recordings))
    assert pbxctl("ext", "record", "1001", "on")[0] == 0
    server.start()
    caller_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    callee_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for sock in (caller_sock, callee_sock):
        sock.bind((ck.LOOPBACK, 0))
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        callee = ck.callee(server.address, "1002", "callee_answer_sdp.xml", rtp_echo=False,
                           sets={"sdp_port": callee_sock.getsockname()[1]})
        caller = ck.caller(server.address, "1001", "1002", "caller_sdp.xml", duration_ms=3000,
                           sets={"sdp_host": ck.LOOPBACK,
                                 "sdp_port": caller_sock.getsockname()[1]})
        answer = ck.wait_answer_sdp(caller)
        first = {"pbx": ck.sdp_media(answer)}  # the caller speaks first
        threads += [threading.Thread(target=_send_tone, args=(caller_sock, 400, stop, 1, first)),
                   threading.Thread(target=_send_tone, args=(callee_sock, 1200, stop, 2, {}))]
        for thread in threads:
            thread.start()
        ck.finish(caller, callee, server=server)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=2)
        caller_sock.close()
        callee_sock.close()
        server.stop()
    (row,) = server.calls()
    assert row["recording"].endswith("-1001-1002.wav"), row
    path = recordings / row["recording"]
    assert path.is_file(), sorted(Path(recordings).rglob("*"))
    assert 2.0 <= wav.read(path).seconds <= 4.0, wav.read(path).seconds
    stereo_tones(path, 400, 1200)
    assert "is recorded" in server.log()


PROVIDER = "127.0.0.3"  # the IP trunk's provider: sipp and the test's sockets on it


def _talk(caller, caller_sock, callee_sock, callee, server) -> None:
    """Each side's tone (caller 400 Hz, callee 1200 Hz) until the caller's sipp ends."""
    stop = threading.Event()
    first = {"pbx": ck.sdp_media(ck.wait_answer_sdp(caller))}  # the caller speaks first
    threads = [threading.Thread(target=_send_tone, args=(caller_sock, 400, stop, 1, first)),
               threading.Thread(target=_send_tone, args=(callee_sock, 1200, stop, 2, {}))]
    try:
        for thread in threads:
            thread.start()
        ck.finish(caller, callee, server=server)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=2)


def _socket(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    return sock


def test_an_inbound_route_with_record_records_its_calls(tmp_path, pbxctl):
    """1001 records nothing of its own; the DID's route records every call to it."""
    recordings = tmp_path / "recordings"
    server = ck.SipdServer(tmp_path, PBX_RECORDING_DIR=str(recordings))
    for argv in (("trunk", "add", "voip", "--host", PROVIDER, "--match", f"{PROVIDER}/32",
                  "--keepalive", "0"),
                 ("inbound", "add", "712000005", "--to", "1001", "--record")):
        status, out, err = pbxctl(*argv)
        assert status == 0, out + err
    assert "712000005 on any trunk -> 1001, recorded" in out
    status, out, _ = pbxctl("inbound", "list")
    assert status == 0 and out.splitlines()[1].split()[-1] == "yes", out
    server.start()
    outside_sock, phone_sock = _socket(PROVIDER), _socket(ck.LOOPBACK)
    try:
        phone = ck.callee(server.address, "1001", "callee_answer_sdp.xml", rtp_echo=False,
                          sets={"sdp_port": phone_sock.getsockname()[1]})
        outside = ck.Sipp("outside-712000005",
                          str(ck.ROOT / "tests/provider/scenarios/outside_call.xml"),
                          server.address, inject=[["712555000", "712000005"]],
                          duration_ms=3000, timeout=30, local_ip=PROVIDER).start()
        _talk(outside, outside_sock, phone_sock, phone, server)
    finally:
        outside_sock.close()
        phone_sock.close()
        server.stop()
    (row,) = server.calls()
    assert (row["direction"], row["trunk"]) == ("inbound", "voip"), row
    assert row["recording"].endswith("-712555000-1001.wav"), row
    stereo_tones(recordings / row["recording"], 400, 1200)
    assert "by its inbound route 712000005" in server.log()


def test_an_outbound_route_with_record_records_its_calls(tmp_path, pbxctl):
    """1001 records nothing of its own; the route its call goes out by records it."""
    recordings = tmp_path / "recordings"
    server = ck.SipdServer(tmp_path, PBX_RECORDING_DIR=str(recordings))
    far_sock, phone_sock = _socket(PROVIDER), _socket(ck.LOOPBACK)
    far = ck.callee(f"{PROVIDER}:5060", "far", "callee_answer_sdp.xml", rtp_echo=False,
                    register_first=False, local_ip=PROVIDER,
                    sets={"sdp_port": far_sock.getsockname()[1]})
    for argv in (("trunk", "add", "voip", "--host", f"{PROVIDER}:{far.local_port}",
                  "--match", f"{PROVIDER}/32", "--keepalive", "0"),
                 ("outbound", "add", "mobile", "--trunks", "voip",
                  "--pattern", "998+9|9XXXXXXXX", "--record"),
                 ("policy", "set", "--home-country", "998")):
        status, out, err = pbxctl(*argv)
        assert status == 0, out + err
    status, out, _ = pbxctl("outbound", "list")
    assert status == 0 and out.splitlines()[1].split()[-1] == "yes", out
    server.start()
    try:
        caller = ck.caller(server.address, "1001", "9901234567", "caller_sdp.xml",
                           duration_ms=3000, sets={"sdp_host": ck.LOOPBACK,
                                                   "sdp_port": phone_sock.getsockname()[1]})
        _talk(caller, phone_sock, far_sock, far, server)
    finally:
        far_sock.close()
        phone_sock.close()
        server.stop()
    (row,) = server.calls()
    assert (row["direction"], row["trunk"]) == ("outbound", "voip"), row
    assert row["recording"].endswith("-1001-9901234567.wav"), row
    stereo_tones(recordings / row["recording"], 400, 1200)
    assert "by its outbound route mobile" in server.log()
