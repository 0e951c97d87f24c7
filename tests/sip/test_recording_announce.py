"""PBX_RECORDING_ANNOUNCE end to end: a call from 1001, whose calls are recorded
(`pbxctl ext record 1001 on`), to 1002 through a real sipd. Both phones (sockets
of the test, each saying its own tone) first hear "This call is recorded" (an
upload of the prompt call-recorded, a tone of its own, so that Goertzel tells
it), then each other; the call is recorded as without the announcement. A
call nobody records is not announced."""

from __future__ import annotations

import pytest

from sipd.media import wav
from tests.sip import callkit as ck
from tests.sip.test_voicemail_phone import Phone, tone, ulaw_tone

TONES = {"announce": 700.0, "caller": 1200.0, "callee": 1700.0}


@pytest.fixture(autouse=True)
def _logs_in_tmp_path(tmp_path, monkeypatch):
    monkeypatch.setattr(ck, "WORK_ROOT", tmp_path)


@pytest.fixture
def server(tmp_path, pbxctl):
    sounds = tmp_path / "sounds"
    (sounds / "en").mkdir(parents=True)
    wav.write(sounds / "en" / "call-recorded.wav", ulaw_tone(TONES["announce"], 1.0), "ulaw")
    server = ck.SipdServer(
        tmp_path,
        PBX_RECORDING_DIR=str(tmp_path / "recordings"),
        PBX_RECORDING_ANNOUNCE="en",
        PBX_SOUNDS_DIR=str(sounds),
        PBX_PROMPTS_DIR=str(tmp_path / "prompts"),
    )
    assert pbxctl("ext", "record", "1001", "on")[0] == 0
    server.start()
    yield server
    server.stop()


def talk(server, caller_number: str, callee_number: str) -> tuple[Phone, Phone]:
    """`caller_number` calls `callee_number`, which answers; both say their tone."""
    caller_phone = Phone(TONES, ssrc=1)
    callee_phone = Phone(TONES, ssrc=2).start()  # sends once the PBX's packets come
    try:
        callee = ck.callee(
            server.address,
            callee_number,
            "callee_answer_sdp.xml",
            rtp_echo=False,
            sets={"sdp_port": callee_phone.port},
        )
        caller = ck.caller(
            server.address,
            caller_number,
            callee_number,
            "caller_sdp.xml",
            duration_ms=4000,
            sets={"sdp_host": ck.LOOPBACK, "sdp_port": caller_phone.port},
        )
        caller_phone.start(ck.sdp_media(ck.wait_answer_sdp(caller)))
        caller_phone.say(tone(TONES["caller"], 3.0))
        assert ck.wait_for(lambda: callee_phone.target is not None, timeout=5)
        callee_phone.say(tone(TONES["callee"], 3.0))
        caller_phone.wait_heard("callee", server=server)
        callee_phone.wait_heard("caller", server=server)
        ck.finish(caller, callee, server=server)
    finally:
        caller_phone.close()
        callee_phone.close()
    return caller_phone, callee_phone


def test_both_phones_hear_that_the_call_is_recorded_then_each_other(server, tmp_path):
    caller_phone, callee_phone = talk(server, "1001", "1002")
    assert caller_phone.heard() == ["announce", "callee"], caller_phone.heard()
    assert callee_phone.heard() == ["announce", "caller"], callee_phone.heard()
    # About the prompt's second each, not more (the endpoints went once it had played).
    for phone in (caller_phone, callee_phone):
        assert 40 <= phone.labels.count("announce") <= 70, phone.labels.count("announce")
    assert '"this call is recorded" played to leg A and B' in server.log()
    (row,) = server.calls()
    assert (tmp_path / "recordings" / row["recording"]).is_file(), row


def test_a_call_nobody_records_is_not_announced(server):
    caller_phone, callee_phone = talk(server, "1002", "1003")
    assert "announce" not in caller_phone.heard() + callee_phone.heard()
    assert "is recorded" not in server.log()
