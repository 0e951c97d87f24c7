"""An application hands the call it answered on to a number, end to end
(sipd/b2bua/handover.py): a real sipd whose *43 is a one-key menu of the
test's own (tests/sip/menu_sipd.py: the hand-over alone, whatever the IVR
does), and the real IVR made with `pbxctl ivr add`; the caller (sipp's signalling, the test's socket as its audio) presses 1 as an
RFC 4733 telephone-event, hears the ringback tone while 1001 (sipp) rings,
and once 1001 answers, audio flows both ways through the relay: what the
caller sends, 1001's sipp echoes back (rtp_echo). 1001 hangs up: both legs
end. 1001 busy: its voicemail takes the call on the same endpoint."""

from __future__ import annotations

import math
import socket
import sqlite3
import struct
import sys
import time

import pytest

from sipd.media import g711, wav
from tests.sip import callkit as ck
from tests.support import ROOT, Sipd

SSRC = 0x0CA11E14


@pytest.fixture(autouse=True)
def _logs_in_tmp_path(tmp_path, monkeypatch):
    monkeypatch.setattr(ck, "WORK_ROOT", tmp_path)


class MenuSipd(Sipd):
    def start(self, timeout: float = 15) -> MenuSipd:
        self.spawn([sys.executable, "-m", "tests.sip.menu_sipd"], timeout=timeout, mode="ab",
                   env=self.env, cwd=ROOT)
        return self


class MenuServer(ck.SipdServer):
    def _daemon(self, port=None):
        return MenuSipd(self.db_path, port=port, **self.env)


def _server(tmp_path, built_prompts, voicemail=()):
    server = MenuServer(tmp_path, voicemail=voicemail, TEST_MENU_1="1001",
                        PBX_PROMPTS_DIR=str(built_prompts),
                        PBX_SOUNDS_DIR=str(tmp_path / "sounds"),
                        PBX_VOICEMAIL_DIR=str(tmp_path / "vm"), PBX_RING_TIMEOUT="10")
    return server.start()


@pytest.fixture
def server(tmp_path, built_prompts):
    """No mailboxes: a mailbox's unsolicited NOTIFY (RFC 3842) on 1001's registration
    can reach the callee sipp before its INVITE, which sipp takes for a failure."""
    server = _server(tmp_path, built_prompts)
    yield server
    server.stop()


@pytest.fixture
def voicemail_server(tmp_path, built_prompts):
    server = _server(tmp_path, built_prompts, voicemail=("1001",))
    yield server
    server.stop()


def press(phone, pbx, key: int, first_seq: int = 0) -> None:
    """`key` as an RFC 4733 telephone-event (§2.5.1.4: its end three times)."""
    ck.send_paced(phone, pbx, (struct.pack("!BBH", key, flags, duration) for flags, duration
                               in ((10, 160), (10, 320), (0x8A, 640), (0x8A, 640),
                                   (0x8A, 640))),
                  SSRC, pt=101, first_seq=first_seq, event_timestamp=first_seq * 160)


def power(payload: bytes, hz: float) -> float:
    """The share of `payload`'s (PCMU) energy at `hz` (one DFT bin)."""
    samples = struct.unpack(f"<{len(payload)}h", g711.decode(payload, g711.PCMU))
    re = sum(s * math.cos(2 * math.pi * hz * n / 8000) for n, s in enumerate(samples))
    im = sum(s * math.sin(2 * math.pi * hz * n / 8000) for n, s in enumerate(samples))
    total = sum(s * s for s in samples) or 1
    return 2 * (re * re + im * im) / len(samples) / total


def echoed(phone, pbx, packets: int, first_seq: int, step: int, enough: int = 0) -> set[int]:
    """Send `packets` PCMU packets, each payload its own, from `phone` to `pbx` on the
    phone's 20 ms clock (callkit.send_paced), and return the indexes of those whose
    payload came back (an echo at the far end); `enough` of them stop it early."""
    sent, back = {}, set()
    phone.setblocking(False)

    def audio():
        for index in range(packets):
            payload = bytes((index * step + i) % 256 for i in range(160))
            sent[payload] = index
            yield payload

    def heard_enough() -> bool:  # asked before each packet: what came back so far
        while True:
            try:
                packet = phone.recv(2048)
            except BlockingIOError:
                return bool(enough) and len(back) >= enough
            if packet[12:] in sent:
                back.add(sent[packet[12:]])

    # send_paced asks once more a slot after the last packet: its echo has had 20 ms.
    ck.send_paced(phone, pbx, audio(), SSRC, first_seq=first_seq, until=heard_enough)
    return back


def test_press_1_rings_1001_bridges_both_ways_and_its_bye_ends_both(server):
    run = _press_1_and_talk(server, "*43")
    (row,) = ck.ended_calls(server.db_path)
    assert (row["callee"], row["disposition"], row["answered_by"], row["hangup_by"]) == (
        "*43", "ANSWERED", "1001", "callee")
    assert "hands the call on to 1001" in server.log()
    with sqlite3.connect(f"file:{server.db_path}?mode=ro", uri=True, timeout=5) as connection:
        events = connection.execute("SELECT kind, target, detail FROM call_event").fetchall()
    assert ("handover", "1001", "application echo") in events
    assert run


def test_the_ivrs_option_1_made_with_pbxctl_rings_group_600(tmp_path, built_prompts, pbxctl,
                                                        monkeypatch):
    """The same through the real IVR (sipd/apps/ivr.py): `pbxctl ivr add sales
    --option 1=600 --number 700`, 600 a ring group of 1001; the caller dials 700
    and presses 1 during the menu's prompt."""
    sounds = tmp_path / "sounds"
    monkeypatch.setenv("PBX_SOUNDS_DIR", str(sounds))
    prompt = tmp_path / "sales.wav"
    wav.write(prompt, _tone(500, 3.0), "ulaw")
    server = ck.SipdServer(tmp_path, PBX_PROMPTS_DIR=str(built_prompts),
                           PBX_SOUNDS_DIR=str(sounds), PBX_RING_TIMEOUT="10")
    assert pbxctl("group", "add", "600", "--name", "Sales", "--members", "1001")[0] == 0
    status, out, err = pbxctl("ivr", "add", "sales", "--prompt", str(prompt), "--option",
                              "1=600", "--number", "700")
    assert status == 0, err
    server.start()
    try:
        _press_1_and_talk(server, "700")
        (row,) = ck.ended_calls(server.db_path)
        assert (row["callee"], row["answered_by"], row["hangup_by"], row["via_group"]) == (
            "700", "1001", "callee", "600")
        assert "application ivr hands the call on to 600" in server.log()
    finally:
        server.stop()


def _tone(hz: float, seconds: float) -> bytes:
    count = int(seconds * 8000)
    linear = struct.pack(f"<{count}h", *(int(9000 * math.sin(2 * math.pi * hz * n / 8000))
                                         for n in range(count)))
    return g711.encode(linear, g711.PCMU)


def app_caller(server, name: str, dialled: str, timeout: float = 60):
    """1003 calling `dialled` with caller_app.xml (it waits for the PBX's BYE), its
    audio the test's own socket: (that socket, the started sipp run)."""
    phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    phone.bind((ck.LOOPBACK, 0))
    run = ck.Sipp(name, "caller_app.xml", server.address, timeout=timeout,
                  inject=[ck.user_row("1003", ck.PASSWORD, dialled, str(phone.getsockname()[1]))])
    return phone, run.start()


def _press_1_and_talk(server, dialled: str):
    """The caller dials `dialled`, presses 1, hears ringback, 1001 answers, RTP
    goes both ways, 1001 hangs up. The caller's sipp run."""
    callee = ck.callee(server.address, "1001", "callee_hangs_up.xml", ring_ms=1500,
                       duration_ms=3000, timeout=30)
    phone, run = app_caller(server, "menu", dialled, timeout=30)
    try:
        pbx = ck.sdp_media(ck.wait_answer_sdp(run))
        press(phone, pbx, 1)
        # While 1001 rings: the ringback tone (425 Hz) from the endpoint.
        heard = b""
        deadline = time.monotonic() + 3
        phone.settimeout(0.1)
        while len(heard) < 12000 and time.monotonic() < deadline:
            try:
                packet = phone.recv(2048)
            except TimeoutError:
                continue
            if packet[1] & 0x7F == 0:
                heard += packet[12:]
        loud = [heard[n:n + 800] for n in range(0, len(heard) - 799, 800)
                if max(abs(s) for s in struct.unpack(
                    "<800h", g711.decode(heard[n:n + 800], g711.PCMU))) > 2000]
        # (the menu's prompt may still be in flight when the key is heard)
        assert any(power(chunk, 425) > 0.8 for chunk in loud), \
            f"no 425 Hz ringback ({len(heard)} bytes)"
        assert ck.wait_for(lambda: "answered by sip:1001" in server.log(), timeout=10), \
            server.log()[-3000:]
        # Bridged: what the caller sends comes back from 1001's echo through the relay.
        back = echoed(phone, pbx, 50, first_seq=100, step=13)
        assert len(back) >= 40, f"{len(back)} of 50 packets came back"
        ck.finish(run, callee, server=server)  # 1001's BYE: the caller gets ours
    finally:
        phone.close()
        run.stop()
        callee.stop()
    # One 200 to the caller (no second one for 1001's answer), our BYE to it.
    oks = [m for m in run.received() if m.status == 200 and m.cseq_method == "INVITE"]
    assert len({m.body for m in oks}) == 1
    assert [m.method for m in run.received() if m.method] == ["BYE"]
    return run


def test_press_1_with_1001_busy_goes_to_its_voicemail(voicemail_server):
    server = voicemail_server
    callee = ck.callee(server.address, "1001", "callee_busy.xml", timeout=30)
    phone, run = app_caller(server, "menu-busy", "*43")
    try:
        pbx = ck.sdp_media(ck.wait_answer_sdp(run))
        press(phone, pbx, 1)
        assert ck.wait_for(lambda: "application voicemail" in server.log(),
                           timeout=10), server.log()[-3000:]
        # The greeting, then silence: voicemail hangs up (nothing worth keeping).
        silence = b"\xff" * 160
        ck.send_paced(phone, pbx, (silence for _ in range(60 * 50)), SSRC, first_seq=10,
                      until=lambda: run.process.poll() is not None)
        ck.finish(run, callee, server=server)
    finally:
        phone.close()
        run.stop()
        callee.stop()
    assert [m.method for m in run.received() if m.method] == ["BYE"]
    (row,) = ck.ended_calls(server.db_path)
    assert (row["disposition"], row["reason"]) == ("ANSWERED", "application voicemail hung up")
    assert "goes on to application voicemail (1001)" in server.log()


def test_the_caller_hanging_up_while_1001_rings_cancels_it(server):
    callee = ck.callee(server.address, "1001", "callee_no_answer.xml", timeout=30)
    phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    phone.bind((ck.LOOPBACK, 0))
    # caller_call.xml: BYE 4 s after our 200 (-d), while 1001 still rings (10 s).
    run = ck.caller(server.address, "1003", "*43", "caller_call.xml", duration_ms=4000)
    try:
        pbx = ck.sdp_media(ck.wait_answer_sdp(run))
        press(phone, pbx, 1)
        ck.finish(run, callee, server=server)  # 1001 got the CANCEL, 487, ACK
    finally:
        phone.close()
        run.stop()
        callee.stop()
    assert [m.method for m in callee.received() if m.method not in ("", None)] == [
        "INVITE", "CANCEL", "ACK"]
    (row,) = ck.ended_calls(server.db_path)
    assert (row["disposition"], row["hangup_by"], row["answered_by"]) == (
        "ANSWERED", "caller", "")
    assert "hands the call on to 1001" in server.log()


@pytest.fixture
def menu_server(tmp_path, built_prompts):
    """menu_server(ring=3, forward="") -> a started MenuServer (no mailboxes: their
    unsolicited NOTIFY would meet a callee sipp waiting for its INVITE) whose phones
    ring `ring` seconds; 1001's no-answer forward `forward`, after those seconds."""
    started = []

    def make(ring=3, forward=""):
        server = MenuServer(tmp_path, TEST_MENU_1="1001", PBX_PROMPTS_DIR=str(built_prompts),
                            PBX_SOUNDS_DIR=str(tmp_path / "sounds"),
                            PBX_VOICEMAIL_DIR=str(tmp_path / "vm"), PBX_RING_TIMEOUT=str(ring))
        with sqlite3.connect(server.db_path) as connection:
            connection.execute("UPDATE extension SET forward_no_answer = ?,"
                               " forward_no_answer_after = ? WHERE number = '1001'",
                               (forward, ring))
        started.append(server.start())
        return server

    yield make
    for server in started:
        server.stop()


@pytest.mark.parametrize("forward", ["", "1002"])
def test_nobody_answers_the_plans_next_step_or_our_bye(menu_server, forward):
    """1001 rings its 3 s and nobody answers: the plan's next step (its no-answer
    forward: 1002 rings, answers, talks and hangs up), or, with none, the caller gets
    our BYE (never a 480 after our 200)."""
    server = menu_server(forward=forward)
    callee = ck.callee(server.address, "1001", "callee_no_answer.xml", timeout=30)
    other = (ck.callee(server.address, "1002", "callee_hangs_up.xml", ring_ms=500,
                       duration_ms=1000, timeout=30) if forward else None)
    phone, run = app_caller(server, "menu-no-answer", "*43")
    try:
        pbx = ck.sdp_media(ck.wait_answer_sdp(run))
        press(phone, pbx, 1)
        ck.finish(run, callee, *([other] if other else []), server=server)
    finally:
        phone.close()
        run.stop()
        callee.stop()
        if other:
            other.stop()
    finals = [s for s in run.statuses("INVITE") if s >= 200 and s != 407]  # past the digest
    assert finals == [200], run.flow()  # never a final response after our 200
    assert [m.method for m in run.received() if m.method] == ["BYE"]
    assert [m.method for m in callee.received() if m.method] == ["INVITE", "CANCEL", "ACK"]
    (row,) = ck.ended_calls(server.db_path)
    if forward:
        assert (row["disposition"], row["answered_by"], row["hangup_by"]) == (
            "ANSWERED", "1002", "callee"), row
        assert [m.method for m in other.received() if m.method] == ["INVITE", "ACK"]
    else:
        assert (row["disposition"], row["reason"], row["hangup_by"]) == (
            "NO ANSWER", "no answer within 3 s", "system"), row


def test_the_callees_early_media_reaches_the_caller_while_it_rings(menu_server):
    """1001 answers the hand-over's INVITE with a 183 and SDP and rings 4 s: the caller
    hears 1001 (its echo of what the caller sends, through the relay) before the answer,
    instead of our ringback; then 1001 answers, and the caller's BYE ends both legs."""
    server = menu_server(ring=15)
    callee = ck.callee(server.address, "1001", "callee_early_media.xml", ring_ms=4000,
                       timeout=40)
    phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    phone.bind((ck.LOOPBACK, 0))
    # caller_call.xml: its BYE 9 s after our 200 (-d), 1001 answered by then.
    run = ck.caller(server.address, "1003", "*43", "caller_call.xml", duration_ms=9000,
                    timeout=40)
    try:
        pbx = ck.sdp_media(ck.wait_answer_sdp(run))
        press(phone, pbx, 1)
        assert ck.wait_for(lambda: "early media from" in server.log(), timeout=5), (
            server.log()[-3000:])
        back = echoed(phone, pbx, 100, first_seq=20, step=11, enough=20)  # up to 2 s
        assert "answered by sip:1001" not in server.log()  # still ringing: early media
        assert len(back) >= 20, f"{len(back)} packets came back during early media"
        ck.finish(run, callee, server=server)
    finally:
        phone.close()
        run.stop()
        callee.stop()
    assert "answered by sip:1001" in server.log()
    finals = [s for s in run.statuses("INVITE") if s >= 200 and s != 407]  # past the digest
    assert finals == [200], run.flow()  # never a final response after our 200
    assert [m.method for m in callee.received() if m.method not in ("", None, "NOTIFY")] == [
        "INVITE", "ACK", "BYE"]
    (row,) = ck.ended_calls(server.db_path)
    assert (row["disposition"], row["answered_by"], row["hangup_by"]) == (
        "ANSWERED", "1001", "caller"), row
