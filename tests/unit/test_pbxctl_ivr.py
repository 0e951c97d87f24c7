"""pbxctl's ivr and hours commands (pbxcli_ivr.py): the command lines of issue 13
item 7 exactly, what they print, their audit rows, an inbound route to them, and
bad input as one line on stderr with exit status 1 and nothing written."""

from __future__ import annotations

import sqlite3

import pytest

from tests.unit.test_prompts_sounds import write_tone


@pytest.fixture
def pbx(pbxctl, tmp_path, monkeypatch):
    monkeypatch.setenv("PBX_SOUNDS_DIR", str(tmp_path / "sounds"))
    monkeypatch.setenv("PBX_TIMEZONE", "Asia/Tashkent")
    assert pbxctl("init")[0] == 0
    for number in ("1001", "1002"):
        assert pbxctl("ext", "add", number, "--name", f"Desk {number}", "--generate")[0] == 0
    write_tone(tmp_path / "menu.wav", seconds=0.3)
    (tmp_path / "notes.wav").write_text("not audio\n")
    pbxctl.tmp = tmp_path
    return pbxctl


def rows(pbx, sql: str) -> list[tuple]:
    with sqlite3.connect(pbx.db_path) as conn:
        return conn.execute(sql).fetchall()


def written(pbx) -> tuple:
    return tuple(rows(pbx, f"SELECT * FROM {t} ORDER BY id") for t in (
        "ivr", "ivr_option", "schedule", "schedule_rule", "schedule_holiday", "audit_log"))


def test_ivr_add_list_inbound_rm(pbx):
    menu = str(pbx.tmp / "menu.wav")
    status, out, err = pbx("ivr", "add", "main", "--prompt", menu, "--option", "1=1001",
                           "--option", "2=voicemail:1002", "--direct-dial", "--timeout", "4",
                           "--on-timeout", "1001", "--on-invalid", "voicemail:1002",
                           "--number", "700", "--language", "uz")
    assert (status, err) == (0, "")
    assert out == ("IVR menu main created (destination ivr:main, dial 700): keys 1=1001,"
                   " 2=voicemail:1002; number 700; language uz; timeout 4 s, 2 repeats,"
                   " then 1001; wrong key then voicemail:1002; direct dial\n")
    assert (pbx.tmp / "sounds" / "ivr" / "main.wav").read_bytes()[:4] == b"RIFF"
    status, out, _ = pbx("ivr", "list")
    assert out.splitlines()[1].split() == ["main", "700", "uz", "1=1001", "2=voicemail:1002",
                                           "4", "s", "x3", "1001", "voicemail:1002", "yes"]
    assert pbx("inbound", "add", "712000000", "--to", "ivr:main")[0] == 0
    status, _, err = pbx("ivr", "rm", "main")
    assert (status, err) == (1, "pbxctl: IVR menu main is in use (inbound route of DID"
                                " 712000000): point those elsewhere first\n")
    assert pbx("inbound", "rm", "712000000")[0] == 0
    assert pbx("ivr", "rm", "main") == (0, "IVR menu main deleted\n", "")
    assert not (pbx.tmp / "sounds" / "ivr" / "main.wav").exists()
    assert [r[0] for r in rows(pbx, "SELECT action FROM audit_log WHERE action LIKE 'ivr.%'"
                                    " ORDER BY id")] == ["ivr.create", "ivr.delete"]


def test_hours_add_list_rm(pbx):
    status, out, err = pbx("hours", "add", "day", "--open", "mon-fri 09:00-18:00",
                           "--open", "sat 10:00-14:00", "--holiday", "2026-12-31",
                           "2027-01-01", "--in", "1001", "--out", "voicemail:1002",
                           "--number", "701")
    assert (status, err) == (0, "")
    assert out.startswith("Business hours day created (destination hours:day), ")
    assert out.endswith(": open mon-fri 09:00-18:00; sat 10:00-14:00 (Asia/Tashkent);"
                        " holidays 2026-12-31, 2027-01-01; in 1001, out voicemail:1002;"
                        " number 701\n")
    lines = pbx("hours", "list")[1].splitlines()
    assert lines[0].split() == ["NAME", "NUMBER", "OPEN", "HOLIDAYS", "TIMEZONE", "IN", "OUT",
                                "NOW"]
    assert lines[1].startswith("day   701")
    assert pbx("inbound", "add", "712000001", "--to", "hours:day")[0] == 0
    assert pbx("hours", "rm", "day")[0] == 1
    assert pbx("inbound", "rm", "712000001")[0] == 0
    assert pbx("hours", "rm", "day") == (0, "Business hours day deleted\n", "")


@pytest.mark.parametrize(("argv", "says"), [
    (["ivr", "add", "main", "--prompt", "{tmp}/notes.wav", "--option", "1=1001"],
     "pbxctl: the menu prompt is refused: notes.wav: not an audio file sox can read"),
    (["ivr", "add", "main", "--prompt", "{tmp}/none.wav", "--option", "1=1001"],
     "pbxctl: {tmp}/none.wav: No such file or directory"),
    (["ivr", "add", "main", "--prompt", "{tmp}/menu.wav", "--option", "1:1001"],
     "pbxctl: a menu option is KEY=DESTINATION (e.g. 1=1001), got '1:1001'"),
    (["ivr", "add", "main", "--prompt", "{tmp}/menu.wav", "--option", "1=1009"],
     "pbxctl: 1009 is no extension or ring group, and no outbound route takes it"),
    (["ivr", "add", "main", "--prompt", "{tmp}/menu.wav", "--option", "1=1001",
      "--number", "1002"], "pbxctl: 1002 is an extension"),
    (["ivr", "rm", "nope"], "pbxctl: no IVR menu nope"),
    (["hours", "add", "day", "--open", "mon-fri 9-18", "--in", "1001", "--out", "1002"],
     "pbxctl: 'mon-fri 9-18': '9' is not a time HH:MM"),
    (["hours", "add", "day", "--open", "daily 00:00-24:00", "--holiday", "31.12.2026",
      "--in", "1001", "--out", "1002"], "pbxctl: '31.12.2026': a holiday is a date YYYY-MM-DD"),
    (["hours", "add", "day", "--open", "daily 00:00-24:00", "--in", "ivr:main",
      "--out", "1002"], "pbxctl: there is no IVR menu main"),
    (["hours", "rm", "nope"], "pbxctl: no business hours nope"),
])
def test_bad_input_is_one_line_and_changes_nothing(pbx, argv, says):
    before = written(pbx)
    status, out, err = pbx(*[a.replace("{tmp}", str(pbx.tmp)) for a in argv])
    assert status == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith(says.replace("{tmp}", str(pbx.tmp)))
    assert written(pbx) == before
    assert not (pbx.tmp / "sounds" / "ivr" / "main.wav").exists()
