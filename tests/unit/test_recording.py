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
