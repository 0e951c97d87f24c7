"""Transfer done by the PBX, end to end: real phones against a real sipd.

- Blind: baresip 1.0 calls baresip, which transfers the call with its own
  `transfer` command (ctrl_tcp; the menu's /transfer) to a third baresip.
- Attended: linphone (linphonec 5.1, tests/sip/linphone.py) calls linphone, which
  holds it, calls a baresip and joins the two (`transfer ID --to-call ID`: REFER
  with Replaces).
- To a busy number: linphone transfers the call to a number whose phone (sipp)
  answers 486; it is told so (NOTIFY "SIP/2.0 486 Busy Here") and the call goes
  on. (baresip 1.0 as the transferor would drop its own call there: ua.c derefs
  the call on a failed transfer.)

Each phone's microphone is a tone of its own (the remaining party 440 Hz, the
transferor 700 Hz, the target 1000 Hz) and each records what it hears: after
the transfer the remaining party hears the target's tone and the target the
remaining party's, through sipd's relay (checked over the last seconds of each
recording, per block as tests/sip/softphone.py's block_tone_report does). The
history says who talked to whom: a row per pair, the call_event rows of the
transfer. The remaining party's phone is re-INVITEd with the target's identity
(P-Asserted-Identity, From's display name), read from its SIP trace: neither
baresip 1.0 nor linphonec 5.1 shows a new identity in mid-call (baresip keeps
the peer it dialled or was called by, liblinphone its call log's address), so
the test checks what they were sent.
"""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path

import pytest

from tests.sip import callkit as ck
from tests.sip.linphone import TALKING, Linphone
from tests.sip.softphone import Baresip, goertzel_power, mean_square, read_samples
from tests.sip.test_baresip_audio import wait_registered
from tests.support import LOOPBACK

REMAINING_HZ, TRANSFEROR_HZ, TARGET_HZ = 440.0, 700.0, 1000.0
TONES = (REMAINING_HZ, TRANSFEROR_HZ, TARGET_HZ)
TALK_SECONDS = 4
NAMES = {"1001": "Alice", "1002": "Bob", "1003": "Carol"}


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
    sipd = ck.SipdServer(tmp_path, numbers=tuple(NAMES))
    name_extensions(sipd.db_path)
    sipd.start()
    yield sipd
    sipd.stop()


def name_extensions(db_path: Path) -> None:
    with sqlite3.connect(db_path) as connection:
        for number, name in NAMES.items():
            connection.execute("UPDATE extension SET name = ? WHERE number = ?", (name, number))


def baresip(phones, server, number: str, tone: float, **options) -> Baresip:
    phone = Baresip(f"baresip-{number}", number, ck.PASSWORD, server.address,
                    f"{LOOPBACK}:{ck.free_ports()}", tone, ctrl_port=ck.free_ports(), **options)
    phones.append(phone.start())
    wait_registered(server, phone)
    return phone


def wait_events(phone: Baresip, kind: str, count: int, timeout: float = 15) -> list[dict]:
    """Until the phone has reported `count` events of `kind` (ctrl_tcp)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [e for e in phone.events if e.get("type") == kind]
        if len(found) >= count:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"baresip {phone.name}: {len(found)} {kind}, not {count}, "
                                 f"within {timeout} s; events "
                                 f"{[e.get('type') for e in phone.events]}\n"
                                 f"{phone.log()[-4000:]}")
        phone._read_messages(0.3)


def tail_report(path: Path, seconds: float, block_s: float = 0.2) -> dict:
    """What a recording holds over its last `seconds` of sound: for each tone,
    the median of its share of each block's energy (block_tone_report's way)."""
    samples, rate = read_samples(path)
    block = int(block_s * rate)
    loud = [samples[i:i + block] for i in range(0, len(samples) - block + 1, block)
            if mean_square(samples[i:i + block]) > 1e-5]
    loud = loud[-int(seconds / block_s):]
    report: dict = {"seconds": round(len(loud) * block_s, 2)}
    for frequency in TONES:
        shares = sorted(2 * goertzel_power(b, rate, frequency) / mean_square(b) for b in loud)
        report[frequency] = round(shares[len(shares) // 2], 3) if shares else 0.0
    return report


def check_tone(name: str, report: dict, tone: float, story: str) -> None:
    assert report["seconds"] >= TALK_SECONDS - 1.5, (name, report, story)
    assert report[tone] > 0.6, (name, report, story)
    assert all(report[other] < 0.05 for other in TONES if other != tone), (name, report, story)


def recording(phone) -> Path:
    """What the phone heard last: baresip starts a recording per stream (a re-INVITE
    restarts it), linphone writes one per call."""
    if isinstance(phone, Baresip):
        found = ck.wait_for(lambda: phone.recordings("dec"), 5)
        assert found, f"{phone.name} recorded nothing\n{phone.log()[-3000:]}"
        return found[-1]
    return phone.recording


def rows(server, table: str) -> list[dict]:
    with sqlite3.connect(f"file:{server.db_path}?mode=ro", uri=True, timeout=5) as connection:
        connection.row_factory = sqlite3.Row
        return [dict(r) for r in connection.execute(f"SELECT * FROM {table} ORDER BY id")]


def ended_calls(server, count: int) -> list[dict]:
    found = ck.wait_for(lambda: (lambda r: r if len(r) >= count and all(
        c["ended_at"] for c in r) else None)(rows(server, "call")), 10)
    assert found, rows(server, "call")
    return found


def reinvites_received(log: str, call_id: str | None = None) -> list[str]:
    """The INVITEs within a dialog (a To tag) a baresip's SIP trace shows it got."""
    found = []
    for match in re.finditer(r"(INVITE sip:[^\r\n]* SIP/2\.0\r?\n.*?)\r?\n\r?\n", log, re.S):
        head = match.group(1)
        if re.search(r"^To: [^\r\n]*;tag=", head, re.M | re.I) and (
                call_id is None or f"Call-ID: {call_id}" in head):
            found.append(head)
    return found


def notified(log: str) -> list[str]:
    """The sipfrags of the NOTIFYs a baresip's SIP trace shows it got (RFC 3515 §2.4.5)."""
    return re.findall(r"^NOTIFY sip:.*?\n\r?\n(SIP/2\.0 \d+ [^\r\n]*)", log, re.S | re.M)


def story(server, *phones) -> str:
    parts = [f"--- sipd\n{server.log()[-5000:]}"]
    for phone in phones:
        text = phone.story() if isinstance(phone, Linphone) else phone.log()[-3000:]
        parts.append(f"--- {phone.name}\n{text}")
    return "\n".join(parts)


# -- blind ---------------------------------------------------------------------------------------


def test_blind_transfer_with_baresips_transfer_command(server, phones):
    alice = baresip(phones, server, "1001", REMAINING_HZ, auto_answer=False)
    bob = baresip(phones, server, "1002", TRANSFEROR_HZ)
    carol = baresip(phones, server, "1003", TARGET_HZ)
    host, port = server.address.rsplit(":", 1)
    alice.command("dial", f"sip:1002@{host}:{port}")
    wait_events(alice, "CALL_ESTABLISHED", 1)
    wait_events(bob, "CALL_ESTABLISHED", 1)
    alice.wait_heard(2, 15)  # they talk
    bob.command("transfer", "1003")  # baresip completes it: sip:1003@<its registrar>
    wait_events(carol, "CALL_ESTABLISHED", 1)
    # baresip ends its call on the NOTIFY's "SIP/2.0 200 OK" ("Call transfered")
    closed = wait_events(bob, "CALL_CLOSED", 1)
    assert "transfer" in str(closed[0].get("param", "")).lower(), closed
    # The new pair talks until each has heard TALK_SECONDS of the other (carol's call
    # is new; alice's stream, re-INVITEd onto the new pair, restarted its recording).
    carol.wait_heard(TALK_SECONDS, TALK_SECONDS + 10)
    alice.wait_heard(TALK_SECONDS, TALK_SECONDS + 10)
    alice.command("hangup")
    wait_events(alice, "CALL_CLOSED", 1)
    wait_events(carol, "CALL_CLOSED", 1)
    everything = story(server, alice, bob, carol)
    check_tone("1001 after the transfer", tail_report(recording(alice), TALK_SECONDS - 1),
               TARGET_HZ, everything)
    check_tone("1003", tail_report(recording(carol), TALK_SECONDS - 1), REMAINING_HZ,
               everything)
    # 1001 was re-INVITEd with who it talks to now.
    (reinvite,) = reinvites_received(alice.log())
    assert re.search(r'^P-Asserted-Identity: "Carol" <sip:1003@', reinvite, re.M), reinvite
    assert re.search(r'^From: "Carol" <sip:', reinvite, re.M), reinvite
    # What bob was told, as sipfrags: 100, 180 (carol rang before answering), 200.
    assert notified(bob.log()) == ["SIP/2.0 100 Trying", "SIP/2.0 180 Ringing",
                                   "SIP/2.0 200 OK"], bob.log()[-3000:]
    # it hung up itself on the 200, before sipd's BYE would have come
    assert "481 Call/Transaction Does Not Exist" not in bob.log(), everything
    first, second = ended_calls(server, 2)
    assert (first["caller"], first["callee"], first["answered_by"], first["reason"]) == (
        "1001", "1002", "1002", "transferred to 1003 by 1002"), first
    assert (second["caller"], second["callee"], second["answered_by"],
            second["hangup_by"]) == ("1001", "1003", "1003", "caller"), second
    assert second["ended_at"] - second["answered_at"] >= TALK_SECONDS - 0.5, second
    events = [(e["call"], e["kind"], e["by"], e["target"], e["detail"])
              for e in rows(server, "call_event")]
    assert sorted(events) == sorted([
        (first["id"], "transferred", "1002", "1003", "blind"),
        (second["id"], "transferred", "1002", "1003", f"blind from call {first['id']}")]), events


def test_blind_transfer_to_a_busy_number_leaves_the_call_up(tmp_path, phones):
    """The transferor is linphone here: baresip 1.0 drops its own call on a failed
    transfer (ua.c: CALL_EVENT_TRANSFER_FAILED derefs the call), linphone keeps it.

    The relay has ports for two calls' sessions only: the call, and one attempt.
    Transferring twice, each attempt to a busy phone, shows the first attempt's
    session released (the second would be refused, 503, if it were held)."""
    server = ck.SipdServer(tmp_path, numbers=tuple(NAMES))
    low = int(server.env["PBX_RTP_PORTS"].split("-")[0])
    server.env["PBX_RTP_PORTS"] = f"{low}-{low + 7}"  # four RTP/RTCP pairs
    server.daemon = server._daemon()
    name_extensions(server.db_path)
    server.start()
    phones.append(server)
    busy = ck.callee(server.address, "1003", "callee_busy.xml", calls=2)  # 486, twice
    try:
        alice = baresip(phones, server, "1001", REMAINING_HZ, auto_answer=False)
        bob = Linphone("linphone-1002", "1002", ck.PASSWORD, server.address, TRANSFEROR_HZ)
        phones.append(bob.start())
        bob.wait_registered()
        host, port = server.address.rsplit(":", 1)
        alice.command("dial", f"sip:1002@{host}:{port}")
        call = bob.wait_incoming()
        bob.answer(call)
        wait_events(alice, "CALL_ESTABLISHED", 1)
        bob.wait_state(call, TALKING)
        bob.transfer(call, "1003")
        ck.wait_for(lambda: "SIP/2.0 486 Busy Here" in bob.log(), 10)
        bob.transfer(call, "1003")
        ck.finish(busy, server=server)
        ck.wait_for(lambda: bob.log().count("SIP/2.0 486 Busy Here") >= 2, 10)
        # Nothing was hung up: the two go on talking (linphone resumes if it had held).
        if bob.state(call) != TALKING:
            bob.resume(call)
            bob.wait_state(call, TALKING)
        # A talk time, not a wait for an event: after a hold re-INVITE baresip 1.0
        # records nothing it hears and linphone writes its recording at the end.
        time.sleep(TALK_SECONDS)
        assert not [e for e in alice.events if e.get("type") == "CALL_CLOSED"]
        alice.command("hangup")
        wait_events(alice, "CALL_CLOSED", 1)
        bob.wait_state(call, None)
        everything = story(server, alice, bob)
        notifies = re.findall(r"NOTIFY sip:.*?\n\r?\n(SIP/2\.0 \d+ [^\r\n]*)", bob.log(),
                              re.S)
        assert notifies == ["SIP/2.0 100 Trying", "SIP/2.0 486 Busy Here"] * 2, everything
        check_tone("1001", tail_report(recording(alice), TALK_SECONDS - 1), TRANSFEROR_HZ,
                   everything)
        check_tone("1002", tail_report(recording(bob), TALK_SECONDS - 1), REMAINING_HZ,
                   everything)
        call_row, *attempts = ended_calls(server, 3)
        assert (call_row["caller"], call_row["callee"], call_row["disposition"],
                call_row["hangup_by"]) == ("1001", "1002", "ANSWERED", "caller"), call_row
        assert [(a["caller"], a["callee"], a["disposition"]) for a in attempts] == [
            ("1001", "1003", "BUSY")] * 2, attempts
        events = [(e["call"], e["kind"], e["by"], e["target"]) for e in rows(server, "call_event")]
        assert events == [(a["id"], "transferred", "1002", "1003") for a in attempts], events
    finally:
        busy.stop()


# -- attended -------------------------------------------------------------------------------------


def test_attended_transfer_with_linphone(server, phones, tmp_path):
    """linphone 1001 calls linphone 1002, which holds it, calls baresip 1003 and joins
    the two. (The remaining party is a linphone: baresip 1.0 records nothing it
    hears after a hold re-INVITE, so its ears are no witness once held.)"""
    alice = Linphone("linphone-1001", "1001", ck.PASSWORD, server.address, REMAINING_HZ)
    bob = Linphone("linphone-1002", "1002", ck.PASSWORD, server.address, TRANSFEROR_HZ)
    for phone in (alice, bob):
        phones.append(phone.start())
        phone.wait_registered()
    carol = baresip(phones, server, "1003", TARGET_HZ)
    call = alice.call("1002")
    held = bob.wait_incoming()
    bob.answer(held)
    alice.wait_state(call, TALKING)
    bob.wait_state(held, TALKING)
    # they talk: until sipd's relay has latched both phones' audio (the call's row)
    assert ck.wait_for(lambda: [r for r in server.calls() if r["ended_at"] is None
                                and r["caller_media"] and r["callee_media"]], 10), (
        story(server, alice, bob))
    bob.hold(held)
    bob.wait_state(held, "Paused")
    alice.wait_state(call, "PausedByRemote")
    consulted = bob.call("1003")
    bob.wait_state(consulted, TALKING)
    wait_events(carol, "CALL_ESTABLISHED", 1)
    # baresip's sndfile names its recordings by the second: sipd's re-INVITE within
    # the second of the call's start would begin a recording of the same name
    carol.wait_heard(1.5, 15)  # bob and carol talk
    after = alice.record_to(tmp_path / "alice-after-transfer.wav")  # its next stream
    bob.transfer_to_call(held, consulted)
    # linphone ends both its calls once told "200 OK" (or sipd BYEs them)
    bob.until(lambda: not bob.calls(), "without calls", 15)
    alice.wait_state(call, TALKING)
    # carol's stream, re-INVITEd onto alice, restarted its recording: until it has
    # TALK_SECONDS of alice (alice's own recording is written only when it stops).
    ck.wait_for(lambda: len(carol.recordings("dec")) >= 2, 10)
    carol.wait_heard(TALK_SECONDS, TALK_SECONDS + 10)
    alice.hangup(call)
    alice.wait_state(call, None)
    wait_events(carol, "CALL_CLOSED", 1)
    everything = story(server, alice, bob, carol)
    check_tone("1001 after the transfer", tail_report(after, TALK_SECONDS - 1), TARGET_HZ,
               everything)
    check_tone("1003 after the transfer", tail_report(recording(carol), TALK_SECONDS - 1),
               REMAINING_HZ, everything)
    # Both were re-INVITEd by sipd with who they now talk to.
    assert re.search(r'^P-Asserted-Identity: "Carol" <sip:1003@', alice.log(), re.M), (
        everything)
    (to_carol,) = reinvites_received(carol.log())
    assert re.search(r'^P-Asserted-Identity: "Alice" <sip:1001@', to_carol, re.M), to_carol
    [refer] = bob.sent("REFER")
    assert "?Replaces=" in refer, refer
    first, second, joined = ended_calls(server, 3)
    assert [(r["caller"], r["callee"], r["answered_by"]) for r in (first, second, joined)] == [
        ("1001", "1002", "1002"), ("1002", "1003", "1003"), ("1001", "1003", "1003")], (
        first, second, joined)
    assert first["reason"] == second["reason"] == "transferred to 1003 by 1002"
    assert joined["ended_at"] - joined["answered_at"] >= TALK_SECONDS - 0.5, joined
    events = sorted((e["call"], e["kind"], e["by"], e["target"], e["detail"])
                    for e in rows(server, "call_event"))
    assert events == [
        (first["id"], "transferred", "1002", "1003", "attended"),
        (second["id"], "transferred", "1002", "1003", "attended"),
        (joined["id"], "transferred", "1002", "1003",
         f"attended from calls {first['id']} and {second['id']}"),
    ], events
