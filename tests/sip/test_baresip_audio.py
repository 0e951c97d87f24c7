"""Two real softphones (baresip 1.0) call each other through sipd, and the
audio is checked end to end, both ways, through sipd's RTP relay.

The caller's microphone is a 440 Hz tone, the callee's a 1000 Hz tone (WAV
files played by baresip's aufile module); each phone records what it hears
(the sndfile module). The callee's recording must hold 440 Hz and not 1000 Hz,
the caller's 1000 Hz and not 440 Hz (Goertzel filter in plain Python).

Then the same with the callee behind a masquerading router built from network
namespaces (tests/sip/softphone.py: NatLab): its SDP names its private address
10.77.1.2, which sipd cannot reach; the audio still flows both ways because the
relay latches onto where the phone's packets really come from (RFC 4961).

sipd runs with its default digest challenges (MD5 alone): Debian's baresip 1.0
gives up on a 401/407 that holds a SHA-256 challenge at all (it does not skip to
the MD5 one), and the default is chosen so that it registers (core/credentials.py).

Needs root for `ip netns` and nftables (CI runs as root); a missing tool fails.
"""

from __future__ import annotations

import sqlite3
import time

import pytest

from tests.sip import callkit as ck
from tests.sip.softphone import Baresip, NatLab, stereo_tones, tone_report
from tests.support import LOOPBACK

CALLER_HZ, CALLEE_HZ = 440.0, 1000.0
TALK_SECONDS = 4


def binding_of(db_path, number: str) -> tuple[str, int] | None:
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5) as connection:
        row = connection.execute(
            "SELECT b.source_host, b.source_port FROM binding b JOIN extension e"
            " ON e.id = b.extension_id WHERE e.number = ? AND b.expires_at > ?",
            (number, time.time()),
        ).fetchone()
    return tuple(row) if row else None


def wait_registered(server, phone: Baresip, timeout: float = 10) -> tuple[str, int]:
    binding = ck.wait_for(lambda: binding_of(server.db_path, phone.number), timeout=timeout)
    assert binding, (f"{phone.name} did not register\n{phone.log()[-3000:]}\n"
                     f"--- sipd\n{server.log()[-3000:]}")
    return binding


def talk(server, caller: Baresip, callee: Baresip) -> None:
    """caller dials callee; they talk TALK_SECONDS; the caller hangs up."""
    host, port = server.address.rsplit(":", 1)
    caller.command("dial", f"sip:{callee.number}@{host}:{port}")
    caller.wait_event("CALL_ESTABLISHED", timeout=15)
    time.sleep(TALK_SECONDS)
    caller.command("hangup")
    caller.wait_event("CALL_CLOSED", timeout=10)
    time.sleep(0.5)


def heard(phone: Baresip) -> dict:
    recordings = phone.recordings("dec")
    assert recordings, f"{phone.name} recorded nothing\n{phone.log()[-3000:]}"
    return tone_report(recordings[-1], (CALLER_HZ, CALLEE_HZ))


def check_two_way_audio(caller: Baresip, callee: Baresip, server) -> None:
    at_callee, at_caller = heard(callee), heard(caller)
    story = (f"callee heard {at_callee}, caller heard {at_caller}\n"
             f"--- caller\n{caller.log()[-2500:]}\n--- callee\n{callee.log()[-2500:]}\n"
             f"--- sipd\n{server.log()[-3000:]}")
    # each side heard most of the call, and it was the other side's tone
    assert at_callee["seconds"] >= TALK_SECONDS - 1.5, story
    assert at_caller["seconds"] >= TALK_SECONDS - 1.5, story
    assert at_callee[CALLER_HZ] > 0.6 and at_callee[CALLEE_HZ] < 0.05, story
    assert at_caller[CALLEE_HZ] > 0.6 and at_caller[CALLER_HZ] < 0.05, story


def the_call(server) -> dict:
    rows = ck.ended_calls(server.db_path)
    assert len(rows) == 1, server.calls()
    return rows[0]


@pytest.fixture(autouse=True)
def _logs_in_tmp_path(tmp_path, monkeypatch):
    monkeypatch.setattr(ck, "WORK_ROOT", tmp_path)


@pytest.fixture
def phones():
    started: list[Baresip] = []
    yield started
    for phone in started:
        phone.stop()


def test_two_baresip_phones_hear_each_other_through_the_relay(tmp_path, phones):
    server = ck.SipdServer(tmp_path, numbers=("1001", "1002"))
    server.start()
    try:
        host, port = server.address.rsplit(":", 1)
        callee = Baresip("callee", "1002", ck.PASSWORD, server.address,
                         f"{LOOPBACK}:{ck.free_ports()}", CALLEE_HZ)
        phones.append(callee.start())
        wait_registered(server, callee)
        caller = Baresip("caller", "1001", ck.PASSWORD, server.address,
                         f"{LOOPBACK}:{ck.free_ports()}", CALLER_HZ,
                         ctrl_port=ck.free_ports(), auto_answer=False)
        phones.append(caller.start())
        wait_registered(server, caller)
        talk(server, caller, callee)
        check_two_way_audio(caller, callee, server)
        row = the_call(server)
        assert (row["caller"], row["callee"], row["disposition"], row["hangup_by"]) == (
            "1001", "1002", "ANSWERED", "caller"), row
        assert row["ended_at"] - row["answered_at"] >= TALK_SECONDS - 0.5, row
    finally:
        server.stop()


def test_phone_behind_nat_gets_two_way_audio(tmp_path, phones):
    with NatLab() as lab:
        # sipd on the host's end of the veth; the relay advertises that address
        server = ck.SipdServer(tmp_path, numbers=("1001", "1002"), host=lab.HOST,
                               PBX_TRUSTED_NETWORKS="127.0.0.0/8")
        server.start()
        try:
            callee = Baresip("callee-nat", "1002", ck.PASSWORD, server.address,
                             f"{lab.PHONE}:5060", CALLEE_HZ, netns=lab.phone_ns)
            phones.append(callee.start())
            # it registered from the router's address, not the one it knows as its own
            source = wait_registered(server, callee)
            assert source[0] == lab.ROUTER_OUT, source
            caller = Baresip("caller", "1001", ck.PASSWORD, server.address,
                             f"{lab.HOST}:{ck.free_ports()}", CALLER_HZ,
                             ctrl_port=ck.free_ports(), auto_answer=False)
            phones.append(caller.start())
            wait_registered(server, caller)
            talk(server, caller, callee)
            # what the NATed phone answered with: its private address (SIP trace)
            assert f"c=IN IP4 {lab.PHONE}" in callee.log(), callee.log()[-3000:]
            check_two_way_audio(caller, callee, server)
            row = the_call(server)
            assert row["disposition"] == "ANSWERED", row
            # the relay latched the callee's leg to the router's public side
            assert row["callee_media"].startswith(f"{lab.ROUTER_OUT}:"), row
        finally:
            server.stop()


def test_a_recorded_call_between_two_baresip_phones_holds_each_tone_on_its_channel(
        tmp_path, phones, pbxctl):
    """Issue 13: 1001 records its calls (`pbxctl ext record`); the media process writes
    one stereo WAV, the caller's 440 Hz on the left, the callee's 1000 Hz on the right."""
    recordings = tmp_path / "recordings"
    server = ck.SipdServer(tmp_path, numbers=("1001", "1002"),
                           PBX_RECORDING_DIR=str(recordings))
    assert pbxctl("ext", "record", "1001", "on")[0] == 0
    server.start()
    try:
        callee = Baresip("callee", "1002", ck.PASSWORD, server.address,
                         f"{LOOPBACK}:{ck.free_ports()}", CALLEE_HZ)
        phones.append(callee.start())
        wait_registered(server, callee)
        caller = Baresip("caller", "1001", ck.PASSWORD, server.address,
                         f"{LOOPBACK}:{ck.free_ports()}", CALLER_HZ,
                         ctrl_port=ck.free_ports(), auto_answer=False)
        phones.append(caller.start())
        wait_registered(server, caller)
        talk(server, caller, callee)
        row = the_call(server)
    finally:
        server.stop()  # the media process writes the file when the call ends
    assert row["recording"].endswith("-1001-1002.wav"), row
    stereo_tones(recordings / row["recording"], CALLER_HZ, CALLEE_HZ)
