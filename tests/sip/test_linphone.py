"""Linphone (Debian's linphone-cli 5.1, driven by tests/sip/linphone.py) as a real
phone beside baresip 1.0, against a real sipd with its default settings.

- Both register with the defaults (MD5 alone: baresip 1.0 fails on any SHA-256
  challenge), and linphone answers SHA-256 where its extension offers it first
  (RFC 8760 §2.4: it takes the topmost challenge it supports).
- A call each way between linphone and baresip, the audio checked by tones both
  ways through sipd's relay (the caller's microphone 440 Hz, the callee's
  1000 Hz; each phone records what it hears), with hold and resume on the
  linphone side and the call history.
- Linphone's keep-alives (issue 15, item 3): with [sip] keepalive_period at
  500 ms, the CRLFCRLF datagrams reaching sipd are counted on the loopback
  interface (tshark); sipd logs no "Dropped malformed message" for any of them
  and the binding stays registered.
"""

from __future__ import annotations

import re
import subprocess
import time

import pytest

from tests.sip import callkit as ck
from tests.sip.linphone import TALKING, Linphone
from tests.sip.softphone import Baresip, block_tone_report
from tests.sip.test_baresip_audio import binding_of, wait_registered
from tests.support import LOOPBACK, options_ping, require_tool

CALLER_HZ, CALLEE_HZ = 440.0, 1000.0
TALK_SECONDS = 4
KEEPALIVES = 12  # counted reaching sipd, at one every 500 ms


@pytest.fixture(autouse=True)
def _logs_in_tmp_path(tmp_path, monkeypatch):
    monkeypatch.setattr(ck, "WORK_ROOT", tmp_path)


@pytest.fixture
def phones():
    started: list = []
    yield started
    for phone in reversed(started):
        phone.stop()


@pytest.fixture
def server(tmp_path):
    # The defaults: no PBX_DIGEST_ALGORITHMS, nothing about phones.
    sipd = ck.SipdServer(tmp_path, numbers=("1001", "1002", "1003"))
    assert not any(name.startswith("PBX_DIGEST") for name in sipd.env)
    sipd.start()
    yield sipd
    sipd.stop()


def linphone(phones, server, number="1001", tone=CALLER_HZ, **options) -> Linphone:
    phone = Linphone(f"linphone-{number}", number, ck.PASSWORD, server.address, tone, **options)
    phones.append(phone.start())
    return phone


def baresip(phones, server, number="1002", tone=CALLEE_HZ, **options) -> Baresip:
    phone = Baresip(f"baresip-{number}", number, ck.PASSWORD, server.address,
                    f"{LOOPBACK}:{ck.free_ports()}", tone, **options)
    phones.append(phone.start())
    return phone


def registrations(log: str) -> list[tuple[list[str], str]]:
    """From linphone's SIP trace: for each 401 it got, the algorithms challenged, and
    the algorithm its next REGISTER answered with."""
    found = []
    for challenge in re.finditer(r"SIP/2\.0 401 Unauthorized(.*?)\r?\n\r?\n", log, re.S):
        offered = re.findall(r"WWW-Authenticate: Digest .*?algorithm=([\w-]+)", challenge.group(1))
        answer = re.search(r"^Authorization: .*?algorithm=([\w-]+)", log[challenge.end():], re.M)
        found.append((offered, answer.group(1) if answer else ""))
    return found


def the_call(server) -> dict:
    rows = ck.wait_for(lambda: [r for r in server.calls() if r["ended_at"]], timeout=10)
    assert len(rows) == 1, server.calls()
    return rows[0]


def check_heard(name: str, report: dict, tone: float, other: float, story: str) -> None:
    assert report["seconds"] >= TALK_SECONDS - 1.5, (name, report, story)
    assert report[tone] > 0.6 and report[other] < 0.05, (name, report, story)


# -- registration -------------------------------------------------------------------------------

def test_linphone_and_baresip_register_with_the_defaults(server, phones):
    lin = linphone(phones, server)
    lin.wait_registered()
    bare = baresip(phones, server)
    wait_registered(server, bare)
    assert binding_of(server.db_path, "1001"), server.log()[-2000:]
    # Challenged with MD5 alone, answered with MD5.
    assert registrations(lin.log())[:1] == [(["MD5"], "MD5")], lin.story()
    assert "Function not implemented" not in bare.log()
    assert "registered from" in server.log() and "Linphonec/5.1" in server.log()


def test_linphone_answers_sha256_where_its_extension_offers_it(server, phones, tmp_path):
    from core import accounts
    from core.config import load_settings
    from core.database import connect

    database = connect(load_settings({"PBX_DB": str(server.db_path), "PBX_REALM": ck.REALM}))
    accounts.set_digest_algorithms("1001", "SHA-256,MD5")
    database.close()
    lin = linphone(phones, server)
    lin.wait_registered()
    assert registrations(lin.log())[:1] == [(["SHA-256", "MD5"], "SHA-256")], lin.story()
    # baresip 1.0 on an extension with the default beside it: MD5 alone, registered
    bare = baresip(phones, server)
    wait_registered(server, bare)
    # A call's 407 follows the caller's extension too, and is answered with SHA-256.
    call = lin.call("1002")
    lin.wait_state(call, TALKING)
    invites = lin.sent("INVITE")
    assert len(invites) == 2 and "Proxy-Authorization:" not in invites[0], invites
    assert re.search(r"^Proxy-Authorization:\s*Digest .*algorithm=SHA-256", invites[1], re.M), (
        invites[1])
    lin.hangup(call)
    lin.wait_state(call, None)


# -- calls with audio ----------------------------------------------------------------------------

def test_linphone_calls_baresip_and_both_hear_each_other(server, phones):
    callee = baresip(phones, server, "1002", CALLEE_HZ)  # answers at once
    wait_registered(server, callee)
    caller = linphone(phones, server, "1001", CALLER_HZ)
    caller.wait_registered()
    call = caller.call("1002")
    caller.wait_state(call, TALKING)
    # Talk until baresip has heard TALK_SECONDS of the call (linphone writes its own
    # recording only when the stream stops, so the baresip side is what can be watched).
    callee.wait_heard(TALK_SECONDS, TALK_SECONDS + 10)
    caller.hangup(call)
    caller.wait_state(call, None)
    row = the_call(server)
    assert (row["caller"], row["callee"], row["disposition"], row["hangup_by"]) == (
        "1001", "1002", "ANSWERED", "caller"), row
    story = f"{caller.story()}\n--- baresip\n{callee.log()[-3000:]}\n--- sipd\n{server.log()[-3000:]}"
    recordings = ck.wait_for(lambda: callee.recordings("dec"), 5)
    assert recordings, story
    check_heard("linphone", block_tone_report(caller.recording, (CALLER_HZ, CALLEE_HZ)),
                CALLEE_HZ, CALLER_HZ, story)
    check_heard("baresip", block_tone_report(recordings[-1], (CALLER_HZ, CALLEE_HZ)),
                CALLER_HZ, CALLEE_HZ, story)


def test_baresip_calls_linphone_which_answers_holds_resumes_and_hangs_up(server, phones, tmp_path):
    callee = linphone(phones, server, "1001", CALLEE_HZ)
    callee.wait_registered()
    caller = baresip(phones, server, "1002", CALLER_HZ, ctrl_port=ck.free_ports(),
                     auto_answer=False)
    wait_registered(server, caller)
    before_hold = callee.record_to(tmp_path / "before-hold.wav")
    caller.command("dial", f"sip:1001@{server.address}")
    call = callee.wait_incoming()
    [ringing] = callee.calls()
    assert (ringing.id, ringing.state) == (call, "IncomingReceived"), ringing
    assert ringing.peer.startswith("sip:1002@"), ringing  # who calls: the extension number
    callee.answer(call)
    callee.wait_state(call, TALKING)
    caller.wait_event("CALL_ESTABLISHED", timeout=15)
    caller.wait_heard(TALK_SECONDS, TALK_SECONDS + 10)

    # Hold (a re-INVITE with a=sendonly through sipd) and back: the call stays up,
    # the audio after it is checked too (a new recording: linphone restarts its stream).
    after_hold = callee.record_to(tmp_path / "after-hold.wav")
    callee.hold(call)
    assert callee.wait_state(call, "Paused") == "Paused"
    assert [c.state for c in callee.calls()] == ["Paused"]
    callee.resume(call)
    callee.wait_state(call, TALKING)
    # A talk time, not a wait for an event: after the hold re-INVITE baresip 1.0 records
    # nothing it hears, and linphone writes its recording only when the stream stops,
    # so neither phone shows the audio's progress until the call ends.
    time.sleep(TALK_SECONDS)
    callee.hangup(call)
    callee.wait_state(call, None)
    caller.wait_event("CALL_CLOSED", timeout=10)
    row = the_call(server)
    assert (row["caller"], row["callee"], row["disposition"], row["hangup_by"]) == (
        "1002", "1001", "ANSWERED", "callee"), row
    story = f"{callee.story()}\n--- baresip\n{caller.log()[-3000:]}\n--- sipd\n{server.log()[-3000:]}"
    for name, path in (("before hold", before_hold), ("after hold", after_hold)):
        check_heard(f"linphone {name}", block_tone_report(path, (CALLER_HZ, CALLEE_HZ)),
                    CALLER_HZ, CALLEE_HZ, story)
    recordings = ck.wait_for(lambda: caller.recordings("dec"), 5)
    assert recordings, story
    check_heard("baresip", block_tone_report(recordings[-1], (CALLER_HZ, CALLEE_HZ)),
                CALLEE_HZ, CALLER_HZ, story)


# -- what the transfer work will drive ------------------------------------------------------------

def test_the_harness_transfers_send_refer(server, phones):
    """Blind and attended transfer as tests/sip/linphone.py sends them: REFER with
    Refer-To (RFC 3515), with Replaces naming the other call's dialog (RFC 3891).
    What the PBX does with them is the transfer work's to test."""
    transferor = linphone(phones, server, "1001")
    transferor.wait_registered()
    for number, tone in (("1002", CALLEE_HZ), ("1003", 700.0)):
        wait_registered(server, baresip(phones, server, number, tone))  # answer at once

    def hang_up_all():
        for call in transferor.calls():
            transferor.hangup(call.id)
        transferor.until(lambda: not transferor.calls(), "without calls", 15)

    first = transferor.call("1002")
    transferor.wait_state(first, TALKING)
    transferor.transfer(first, "1003")
    [blind] = ck.wait_for(lambda: transferor.sent("REFER"), 10)
    assert re.search(rf"^Refer-To: <?sip:1003@{re.escape(server.address)}>?\s*$", blind, re.M), (
        blind)
    hang_up_all()

    held = transferor.call("1002")
    transferor.wait_state(held, TALKING)
    transferor.hold(held)
    transferor.wait_state(held, "Paused")
    consulted = transferor.call("1003")
    transferor.wait_state(consulted, TALKING)
    assert [(c.id, c.state) for c in transferor.calls()] == [
        (held, "Paused"), (consulted, TALKING)]
    transferor.transfer_to_call(held, consulted)
    refers = ck.wait_for(lambda: transferor.sent("REFER")[1:], 10)
    assert refers, transferor.story()
    refer_to = re.search(r"^Refer-To: (.*)$", refers[0], re.M).group(1)
    assert "sip:1003@" in refer_to and "?Replaces=" in refer_to, refer_to
    assert "from-tag%3d" in refer_to and "to-tag%3d" in refer_to, refer_to
    hang_up_all()


# -- keep-alives (issue 15, item 3) --------------------------------------------------------------

class KeepaliveCounter:
    """tshark on the loopback interface, counting the 4-byte UDP datagrams (CRLFCRLF,
    RFC 5626 §4.4.1) from `source_port` to `port`. Ours: stopped by its pid."""

    def __init__(self, source_port: int, port: int, directory):
        self.file = directory / "keepalives.txt"
        self.out = open(self.file, "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [require_tool("tshark"), "-i", "lo", "-l", "-n", "-T", "fields", "-e", "udp.payload",
             "-f", f"udp and src port {source_port} and dst port {port} and udp[4:2] = 12"],
            stdout=self.out, stderr=subprocess.PIPE)
        # It captures once it says so on stderr.
        line = b""
        deadline = time.monotonic() + 20
        while b"Capturing on" not in line:
            line = self.process.stderr.readline()
            assert line or self.process.poll() is None, "tshark exited"
            assert time.monotonic() < deadline, "tshark did not start capturing"

    def payloads(self) -> list[str]:
        return [p for p in self.file.read_text().split() if p]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.out.close()


def test_linphone_keepalives_are_never_malformed_and_keep_it_registered(server, phones,
                                                                        tmp_path):
    port = int(server.address.rsplit(":", 1)[1])
    phone = Linphone("keepalive", "1001", ck.PASSWORD, server.address, CALLER_HZ,
                     keepalive_ms=500)
    counter = KeepaliveCounter(phone.sip_port, port, tmp_path)
    try:
        phones.append(phone.start())
        phone.wait_registered()
        seen = ck.wait_for(lambda: len(counter.payloads()) >= KEEPALIVES, 30, interval=0.5)
        payloads = counter.payloads()
    finally:
        counter.stop()
    assert seen, (payloads, phone.story())
    assert set(payloads) == {"0d0a0d0a"}, payloads  # what linphone sends: CRLFCRLF
    # sipd reads its socket in order: once this OPTIONS is answered, every
    # keep-alive counted above has been dealt with, and its log can be read.
    assert options_ping(port)
    log = server.log()
    assert "Dropped malformed message" not in log, log[-3000:]
    assert binding_of(server.db_path, "1001"), log[-3000:]
    assert phone.registered()
    assert "unregistered" not in log and "failed" not in log, log[-3000:]
    assert len(re.findall(rf"keep alive sent to \[UDP://{LOOPBACK}:{port}\]", phone.log())) >= (
        KEEPALIVES)
