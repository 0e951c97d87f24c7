"""IVR menus and business hours end to end against a real sipd, made with pbxctl as
an admin would (`pbxctl ivr add`, `pbxctl hours add`): the caller (sipp's
signalling, the test's socket as its audio) dials the menu's number and hears its
recording (a 600 Hz tone here, so that it is told from silence and from the
other prompts by Goertzel), then presses a key as an RFC 4733 telephone-event:
1 rings 1001 (sipp), which answers; 2 goes to 1002's voicemail; nothing goes to
on_timeout, a wrong key to on_invalid. Business hours open now and closed today
(a holiday) lead to two different mailboxes. Voicemail's own prompts are short
uploads (PBX_SOUNDS_DIR/en) so that each call takes seconds."""

from __future__ import annotations

import datetime as dt
import math
import os
import socket
import sqlite3
import struct
import subprocess
import time

import pytest

from sipd.media import g711, wav
from tests.sip import callkit as ck
from tests.sip.test_apps_continue import power, press
from tests.support import ROOT

SSRC = 0x0CA11E14
MENU_HZ = 600.0
SHORT = ("vm-theperson", "vm-isunavail", "vm-intro", "beep", "vm-saved", "vm-goodbye",
         "goodbye", "option-is-invalid")


def _ulaw_tone(hz: float, seconds: float) -> bytes:
    count = int(seconds * 8000)
    linear = struct.pack(f"<{count}h", *(int(9000 * math.sin(2 * math.pi * hz * n / 8000))
                                         for n in range(count)))
    return g711.encode(linear, g711.PCMU)


@pytest.fixture(autouse=True)
def _logs_in_tmp_path(tmp_path, monkeypatch):
    monkeypatch.setattr(ck, "WORK_ROOT", tmp_path)


def pbxctl(env: dict, *argv: str) -> str:
    done = subprocess.run([str(ROOT / "pbxctl"), *argv], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def server(tmp_path, built_prompts):
    sounds = tmp_path / "sounds"
    for index, name in enumerate(SHORT):
        path = sounds / "en" / f"{name}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        wav.write(path, _ulaw_tone(300 + 20 * index, 0.2), "ulaw")
    menu = tmp_path / "menu.wav"
    wav.write(menu, _ulaw_tone(MENU_HZ, 1.5), "ulaw")
    server = ck.SipdServer(tmp_path, voicemail=("1002", "1003"), PBX_SOUNDS_DIR=str(sounds),
                           PBX_PROMPTS_DIR=str(built_prompts), PBX_TIMEZONE="UTC",
                           PBX_VOICEMAIL_DIR=str(tmp_path / "vm"), PBX_RING_TIMEOUT="10")
    env = {"PBX_DB": str(server.db_path), "PBX_SOUNDS_DIR": str(sounds), "PBX_REALM": ck.REALM,
           "PBX_TIMEZONE": "UTC", "PBX_RUN_DIR": str(tmp_path / "run")}
    pbxctl(env, "ivr", "add", "main", "--prompt", str(menu), "--option", "1=1001",
           "--option", "2=voicemail:1002", "--timeout", "2", "--repeats", "0",
           "--on-timeout", "voicemail:1003", "--on-invalid", "voicemail:1002", "--number", "700")
    today = dt.datetime.now(dt.UTC).date().isoformat()
    pbxctl(env, "hours", "add", "day", "--open", "daily 00:00-24:00", "--in", "voicemail:1002",
           "--out", "voicemail:1003", "--number", "701")
    pbxctl(env, "hours", "add", "shut", "--open", "daily 00:00-24:00", "--holiday", today,
           "--in", "voicemail:1002", "--out", "voicemail:1003", "--number", "702")
    server.start()
    yield server
    server.stop()


def events(server) -> list[tuple]:
    with sqlite3.connect(f"file:{server.db_path}?mode=ro", uri=True, timeout=5) as connection:
        return connection.execute("SELECT kind, by, target, detail FROM call_event").fetchall()


def listen(phone, seconds: float) -> bytes:
    """The PCMU the PBX sends for `seconds` (telephone-events left out)."""
    heard = b""
    deadline = time.monotonic() + seconds
    phone.settimeout(0.1)
    while time.monotonic() < deadline:
        try:
            packet = phone.recv(2048)
        except TimeoutError:
            continue
        if packet[1] & 0x7F == 0:
            heard += packet[12:]
    return heard


def loud(heard: bytes) -> list[bytes]:
    """The 100 ms chunks of `heard` that are not silence."""
    return [heard[n:n + 800] for n in range(0, len(heard) - 799, 800)
            if max(abs(s) for s in struct.unpack(
                "<800h", g711.decode(heard[n:n + 800], g711.PCMU))) > 2000]


def call(server, number: str, phone, timeout: float = 60) -> tuple[ck.Sipp, tuple]:
    run = ck.Sipp(f"ivr-{number}", "caller_app.xml", server.address, timeout=timeout,
                  inject=[ck.user_row("1003", ck.PASSWORD, number, str(phone.getsockname()[1]))])
    run.start()
    return run, ck.sdp_media(ck.wait_answer_sdp(run))


def until_hung_up(run, phone, pbx) -> None:
    """Silence from the phone (voicemail measures it) until the PBX hangs up."""
    ck.send_paced(phone, pbx, (b"\xff" * 160 for _ in range(60 * 50)), SSRC, first_seq=10,
                  until=lambda: run.process.poll() is not None)


@pytest.fixture
def phone():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((ck.LOOPBACK, 0))
    yield sock
    sock.close()


def test_the_menu_is_heard_and_key_2_goes_to_voicemail(server, phone):
    run, pbx = call(server, "700", phone)
    try:
        chunks = loud(listen(phone, 1.0))
        assert chunks, "the menu's recording: silence"
        assert power(chunks[0], MENU_HZ) > 0.8, "not the menu's recording"
        press(phone, pbx, 2)
        assert ck.wait_for(lambda: "IVR main: key 2 -> voicemail:1002" in server.log(),
                           timeout=10), server.log()[-3000:]
        until_hung_up(run, phone, pbx)
        ck.finish(run, server=server)
    finally:
        run.stop()
    assert "application ivr goes on to voicemail:1002" in server.log()
    assert "[VM] Message from 1003 to mailbox 1002 not kept" in server.log()
    (row,) = ck.ended_calls(server.db_path)
    assert (row["callee"], row["disposition"]) == ("700", "ANSWERED")


def test_key_1_rings_1001_and_it_answers(server, phone):
    callee = ck.callee(server.address, "1001", "callee_hangs_up.xml", ring_ms=500,
                       duration_ms=2000, timeout=30)
    run, pbx = call(server, "700", phone, timeout=30)
    try:
        press(phone, pbx, 1)
        assert ck.wait_for(lambda: "answered by sip:1001" in server.log(), timeout=10), \
            server.log()[-3000:]
        ck.finish(run, callee, server=server)  # 1001 hangs up: the caller gets our BYE
    finally:
        run.stop()
        callee.stop()
    assert "IVR main: key 1 -> 1001" in server.log()
    (row,) = ck.ended_calls(server.db_path)
    assert (row["callee"], row["disposition"], row["answered_by"]) == ("700", "ANSWERED", "1001")


def test_no_key_goes_to_on_timeout_and_a_wrong_key_to_on_invalid(server, phone):
    run, pbx = call(server, "700", phone)
    try:
        until_hung_up(run, phone, pbx)  # the menu (1.5 s), 2 s without a key, voicemail 1003
        ck.finish(run, server=server)
    finally:
        run.stop()
    assert "IVR main: no key after 1 tries -> voicemail:1003" in server.log()
    assert "[VM] Message from 1003 to mailbox 1003 not kept" in server.log()
    run, pbx = call(server, "700", phone)
    try:
        press(phone, pbx, 5)
        until_hung_up(run, phone, pbx)
        ck.finish(run, server=server)
    finally:
        run.stop()
    assert "IVR main: key 5, no option after 1 tries -> voicemail:1002" in server.log()
    assert "[VM] Message from 1003 to mailbox 1002 not kept" in server.log()


def test_business_hours_open_now_and_closed_on_a_holiday(server, phone):
    for number in ("701", "702"):
        run, pbx = call(server, number, phone)
        try:
            until_hung_up(run, phone, pbx)
            ck.finish(run, server=server)
        finally:
            run.stop()
    found = events(server)
    assert ("hours", "hours:day", "voicemail:1002", "open") in found, found
    assert ("hours", "hours:shut", "voicemail:1003", "closed") in found, found
    log = server.log()
    assert log.index("to mailbox 1002 not kept") < log.index("to mailbox 1003 not kept")
