"""Voicemail end to end against a real sipd: 1001 calls 1002, which is not registered
and has its mailbox on, so the routing step sends the call to voicemail (sipd/apps/
voicemail.py on the media endpoint). The caller hears the greeting and the beep (the
prompts are short uploads here, PBX_SOUNDS_DIR, so that the test can tell them apart
by their bytes), then speaks a 1000 Hz tone for 3 s and falls silent: the message
is kept with that tone in its recording, and the PBX hangs up after the silence.
sipp does the signalling; the phone's audio is a socket of the test."""

from __future__ import annotations

import math
import socket
import sqlite3
import struct
import time

import pytest

from sipd.media import g711, wav
from tests.sip import callkit as ck
from tests.sip.softphone import tone_report

SSRC = 0x0CA11E13
TONE_HZ = 1000.0
SPOKEN = 3.0


def _ulaw_tone(hz: float, seconds: float) -> bytes:
    count = int(seconds * 8000)
    linear = struct.pack(f"<{count}h", *(int(9000 * math.sin(2 * math.pi * hz * n / 8000))
                                         for n in range(count)))
    return g711.encode(linear, g711.PCMU)


GREETING = ("vm-theperson", "digits/1", "digits/0", "digits/2", "vm-isunavail", "vm-intro")


@pytest.fixture(autouse=True)
def _logs_in_tmp_path(tmp_path, monkeypatch):
    monkeypatch.setattr(ck, "WORK_ROOT", tmp_path)


@pytest.fixture
def sounds(tmp_path):
    directory = tmp_path / "sounds"
    for index, name in enumerate((*GREETING, "beep", "vm-saved", "vm-goodbye")):
        path = directory / "en" / f"{name}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        wav.write(path, _ulaw_tone(300 + 50 * index, 0.2), "ulaw")
    beep = _ulaw_tone(300 + 50 * len(GREETING), 0.2)
    return directory, beep


@pytest.fixture
def server(tmp_path, sounds):
    server = ck.SipdServer(tmp_path, voicemail=("1002",), PBX_SOUNDS_DIR=str(sounds[0]),
                           PBX_PROMPTS_DIR=str(tmp_path / "prompts"),
                           PBX_VOICEMAIL_DIR=str(tmp_path / "vm"))
    server.start()
    yield server
    server.stop()


def messages(db_path) -> list[dict]:
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5) as connection:
        connection.row_factory = sqlite3.Row
        return [dict(r) for r in connection.execute(
            "SELECT m.*, e.number FROM voicemail_message m JOIN mailbox b ON b.id = m.mailbox_id"
            " JOIN extension e ON e.id = b.extension_id")]


def test_an_unavailable_extension_takes_a_message(server, sounds, tmp_path):
    _, beep = sounds
    phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    phone.bind((ck.LOOPBACK, 0))
    run = ck.Sipp("vm-leave", "caller_app.xml", server.address, timeout=60,
                  inject=[ck.user_row("1001", ck.PASSWORD, "1002", str(phone.getsockname()[1]))])
    run.start()
    try:
        pbx = ck.sdp_media(ck.wait_answer_sdp(run))
        # Until the beep has been heard (its last packet), the phone only listens.
        heard = b""
        deadline = time.monotonic() + 15
        phone.settimeout(0.1)
        while not heard.endswith(beep) and time.monotonic() < deadline:
            try:
                heard += phone.recv(2048)[12:]
            except TimeoutError:
                continue
        assert heard.endswith(beep), f"no beep within 15 s ({len(heard)} bytes heard)"
        speech = _ulaw_tone(TONE_HZ, SPOKEN) + b"\xff" * int(8000 * 7)  # tone, then silence
        ck.send_paced(phone, pbx, (speech[n:n + 160] for n in range(0, len(speech), 160)), SSRC,
                      until=lambda: run.process.poll() is not None)  # hung up after the silence
        ck.finish(run, server=server)
    finally:
        phone.close()
        run.stop()
    found = ck.wait_for(lambda: messages(server.db_path), timeout=5)
    assert len(found) == 1, f"{found}\n--- sipd\n{server.log()[-4000:]}"
    (message,) = found
    assert (message["number"], message["caller"], message["folder"]) == ("1002", "1001", "new")
    recording = tmp_path / "vm" / message["path"]
    report = tone_report(recording, (TONE_HZ, 440.0), skip_s=0.0)
    assert report[TONE_HZ] > 0.2, (report, server.log()[-3000:])
    # Ended by the silence, which the recording leaves out: the 3 s spoken.
    assert SPOKEN - 0.5 <= message["seconds"] <= SPOKEN + 0.5, message
    assert "[VM] New message" in server.log()
