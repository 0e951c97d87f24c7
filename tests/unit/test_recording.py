"""Call recording's settings and retention (core/recording.py, sipd/recording.py)
and `pbxctl ext record NUMBER on|off`."""

import os
import sqlite3
import time

from core import recording


def _rows(db_path, sql):
    with sqlite3.connect(db_path) as conn:
        return conn.execute(sql).fetchall()


def test_pbxctl_ext_record_on_off_audited_and_refused(pbxctl):
    assert pbxctl("ext", "add", "1001", "--password", "secret-pass-1")[0] == 0
    status, out, err = pbxctl("ext", "record", "1001", "on")
    assert (status, err) == (0, "")
    assert "calls are recorded" in out
    assert _rows(pbxctl.db_path, "SELECT record_calls FROM extension") == [(1,)]
    assert recording.recorded(["1001", "1002"])
    assert not recording.recorded(["1002", ""])
    assert pbxctl("ext", "record", "1001", "off")[0] == 0
    assert _rows(pbxctl.db_path, "SELECT record_calls FROM extension") == [(0,)]
    actions = _rows(pbxctl.db_path, "SELECT action, detail FROM audit_log ORDER BY id")
    assert actions[-2:] == [("extension.record", "on"), ("extension.record", "off")]
    status, _, err = pbxctl("ext", "record", "1999", "on")
    assert status != 0 and err.count("\n") == 1 and "1999" in err
    try:
        status = pbxctl("ext", "record", "1001", "maybe")[0]
    except SystemExit as exit_:  # argparse's own, as every pbxctl usage error
        status = exit_.code
    assert status == 2


def test_recordings_older_than_the_days_are_removed_and_forgotten(pbxctl, tmp_path):
    from core.models import Call, db
    from sipd.recording import cleanup

    assert pbxctl("init")[0] == 0
    directory = tmp_path / "rec"
    now = time.time()
    for name, age_days in (("2026/01/01/1-1001-1002.wav", 100), ("2026/03/01/2-1001-1003.wav", 5)):
        path = directory / name
        path.parent.mkdir(parents=True)
        path.write_bytes(b"RIFF")
        os.utime(path, (now - age_days * 86400, now - age_days * 86400))
    from core.config import load_settings
    from core.database import connect

    connect(load_settings())
    for number, name in ((1, "2026/01/01/1-1001-1002.wav"), (2, "2026/03/01/2-1001-1003.wav")):
        Call.create(call_id=f"c{number}", caller="1001", callee="1002", recording=name)
    assert cleanup(str(directory), 90, now) == 1
    assert not (directory / "2026/01/01/1-1001-1002.wav").exists()
    assert (directory / "2026/03/01/2-1001-1003.wav").exists()
    assert [c.recording for c in Call.select().order_by(Call.id)] == [
        "", "2026/03/01/2-1001-1003.wav"]
    assert cleanup(str(directory), 0, now) == 0  # 0 days: kept for ever
    db.close()


def test_recording_announce_is_a_prompt_language_or_nothing():
    import pytest

    from core.config import ConfigError, load_settings

    assert load_settings({}).recording_announce == ""
    assert load_settings({"PBX_RECORDING_ANNOUNCE": " UZ "}).recording_announce == "uz"
    assert load_settings({"PBX_RECORDING_ANNOUNCE": "off"}).recording_announce == ""
    with pytest.raises(ConfigError, match=r"^PBX_RECORDING_ANNOUNCE: expected en, uz, ru"):
        load_settings({"PBX_RECORDING_ANNOUNCE": "yes"})


class _Relay:
    def __init__(self, fail=()):
        self.ops, self.fail = [], set(fail)

    def endpoint(self, media, op, **fields):
        if (op, fields.get("leg")) in self.fail:
            raise RuntimeError(f"{op} refused")
        self.ops.append((op, fields.get("leg"), fields.get("payload_type")))
        return {}


class _Scheduler:
    def __init__(self):
        self.later = []

    def call_later(self, delay, function, *args):
        self.later.append((delay, function, args))


def _announcing(tmp_path, caller_formats="0 8", callee_formats="8", relay=None):
    """A Recorder of a call 1001 -> 1002 whose relay and scheduler are the test's."""
    from types import SimpleNamespace

    from sipd.media import wav
    from sipd.recording import Recorder
    from sipd.sip.sdp import SessionDescription

    def sdp(formats):
        return SessionDescription.parse(
            f"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio 4000 RTP/AVP {formats}\r\n")

    prompt = tmp_path / "call-recorded.wav"
    wav.write(prompt, b"\xff" * 8000, "ulaw")  # one second
    owner = SimpleNamespace(relay=relay or _Relay(), scheduler=_Scheduler())
    caller = SimpleNamespace(name="A", sdp=sdp(caller_formats), other=None)
    callee = SimpleNamespace(name="B", sdp=sdp(callee_formats), other=caller)
    call = SimpleNamespace(caller_number="1001", callee="1002", media="session", music=None)
    recorder = Recorder(owner, str(tmp_path), announce=lambda: str(prompt))
    return recorder, owner, call, callee


def test_the_announcement_plays_on_both_legs_in_their_codec_then_goes(tmp_path):
    recorder, owner, call, callee = _announcing(tmp_path)
    recorder._announce(call, callee)
    assert owner.relay.ops == [("endpoint", "A", 0), ("play", "A", None),
                               ("endpoint", "B", 8), ("play", "B", None)]
    ((delay, function, args),) = owner.scheduler.later
    assert delay == 1.0 + 0.2
    call.music = {"B"}  # B was put on hold meanwhile: its music stays
    function(*args)
    assert owner.relay.ops[4:] == [("detach", "A", None)]


def test_an_announcement_the_relay_refuses_or_a_phone_without_g711_leaves_the_call(tmp_path):
    relay = _Relay(fail={("endpoint", "A")})
    recorder, owner, call, callee = _announcing(tmp_path, callee_formats="9", relay=relay)
    recorder._announce(call, callee)  # no exception: the call goes on, recorded
    assert relay.ops == [] and owner.scheduler.later == []
