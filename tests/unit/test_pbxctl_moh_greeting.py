"""pbxctl's music-on-hold and greeting commands (pbxcli_ivr.py `moh`, pbxcli_voicemail.py
`vm greeting`): the same core functions as the panel's Sounds › Music on hold and mailbox
page (core/music.py, core/voicemail.upload_greeting), the same audit rows; what sipd
then plays (music.playing, the mailbox's greeting file) is what the command said; bad
input one line on stderr, a non-zero exit, nothing changed.

Sound files are real: WAVs written as a recorder writes them, an MP3 and a FLAC made
by sox (a missing sox or MP3 writer is a failure), converted by sox as uploads are.
"""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import pytest

from sipd.media import wav
from tests.unit.test_prompts_sounds import write_tone


@pytest.fixture
def pbx(pbxctl, tmp_path, monkeypatch):
    monkeypatch.setenv("PBX_SOUNDS_DIR", str(tmp_path / "sounds"))
    monkeypatch.setenv("PBX_VOICEMAIL_DIR", str(tmp_path / "vm"))
    assert pbxctl("init")[0] == 0
    assert pbxctl("ext", "add", "1001", "--name", "Desk", "--generate")[0] == 0
    write_tone(tmp_path / "Lobby Jazz.wav", seconds=2.0)
    (tmp_path / "notes.wav").write_text("not audio\n")
    pbxctl.tmp = tmp_path
    return pbxctl


def made_by_sox(tmp_path, name: str, seconds: float = 1.0) -> Path:
    path = tmp_path / name
    made = subprocess.run(["sox", "-n", "-r", "44100", "-c", "2", str(path), "synth",
                           str(seconds), "sine", "660"], capture_output=True, text=True)
    assert made.returncode == 0, f"sox cannot write {path.suffix}: {made.stderr}"
    return path


def rows(pbx, sql: str) -> list[tuple]:
    with sqlite3.connect(pbx.db_path) as conn:
        return conn.execute(sql).fetchall()


def audit(pbx, prefix: str) -> list[tuple]:
    return rows(pbx, "SELECT action, target, detail FROM audit_log"
                     f" WHERE action LIKE '{prefix}%' ORDER BY id")


def playing(pbx) -> str:
    from core import music
    from core.config import load_settings
    from core.database import connect

    settings = load_settings()
    database = connect(settings)
    try:
        return music.playing(settings.sounds_dir, settings.moh_file)[0]
    finally:
        database.close()


def one_line(result, says: str) -> bool:
    """Exit status 1, nothing on stdout, one line on stderr saying `says` (sox's own
    reason may follow it in brackets)."""
    status, out, err = result
    assert (status, out) == (1, ""), result
    assert err.count("\n") == 1 and (err == says + "\n" or err.startswith(says + " (")), err
    return True


def library(pbx) -> list[list[str]]:
    status, out, err = pbx("moh", "list")
    assert (status, err) == (0, "")
    return [line.split() for line in out.splitlines()]


def test_moh_add_list_default_rm(pbx):
    moh = pbx.tmp / "sounds" / "moh"
    jazz = str(pbx.tmp / "Lobby Jazz.wav")
    assert pbx("moh", "add", jazz) == (
        0, "lobby-jazz is in the library (pbxctl moh default lobby-jazz plays it to held"
           " callers)\n", "")
    mp3 = made_by_sox(pbx.tmp, "tune.mp3", seconds=3.0)
    assert pbx("moh", "add", str(mp3), "--name", "front-desk")[0] == 0
    # Converted once to what the endpoint plays: 8 kHz mono, the length kept.
    for name, seconds in (("lobby-jazz", 2.0), ("front-desk", 3.0)):
        sound = wav.read(moh / f"{name}.wav")
        assert (sound.rate, sound.channels) == (8000, 1)
        assert sound.seconds == pytest.approx(seconds, abs=0.1)
    listed = library(pbx)
    assert listed[0] == ["NAME", "LENGTH", "ON", "HOLD", "FILE"]
    assert [row[0] for row in listed[1:]] == ["default", "front-desk", "lobby-jazz"]
    assert listed[1][2] == "plays"  # nothing chosen yet: the shipped tune
    assert listed[2][1:] == ["0:03", str(moh / "front-desk.wav")]

    assert pbx("moh", "default", "lobby-jazz") == (
        0, "Held callers hear lobby-jazz from the next hold on\n", "")
    assert playing(pbx) == str(moh / "lobby-jazz.wav")  # what sipd plays at the next hold
    assert [row for row in library(pbx)[1:] if "plays" in row] == [
        ["lobby-jazz", "0:02", "plays", str(moh / "lobby-jazz.wav")]]

    assert pbx("moh", "rm", "lobby-jazz") == (
        0, "lobby-jazz deleted: it was playing on hold, held callers hear the default music"
           " now\n", "")
    assert not (moh / "lobby-jazz.wav").exists()
    from core.config import load_settings

    assert playing(pbx) == load_settings().moh_file
    assert pbx("moh", "default", "front-desk")[0] == 0
    assert pbx("moh", "default", "default") == (
        0, "Held callers hear the default music from the next hold on\n", "")
    assert pbx("moh", "rm", "front-desk") == (0, "front-desk deleted\n", "")
    assert audit(pbx, "moh.") == [
        ("moh.upload", "lobby-jazz", "Lobby Jazz.wav"),
        ("moh.upload", "front-desk", "tune.mp3"),
        ("moh.choose", "lobby-jazz", ""),
        ("moh.delete", "lobby-jazz", "was playing; the default plays now"),
        ("moh.choose", "front-desk", ""),
        ("moh.choose", "default", ""),
        ("moh.delete", "front-desk", ""),
    ]
    assert rows(pbx, "SELECT actor FROM audit_log WHERE action LIKE 'moh.%'")[0][0].startswith(
        "cli:")


@pytest.mark.parametrize(("argv", "says"), [
    (["moh", "add", "{tmp}/notes.wav"], "pbxctl: notes.wav: not an audio file sox can read"),
    (["moh", "add", "{tmp}/none.wav"], "pbxctl: {tmp}/none.wav: No such file or directory"),
    (["moh", "add", "{tmp}/Lobby Jazz.wav", "--name", "Lobby Jazz"],
     "pbxctl: a music name is lowercase letters, digits and '-' (at most 48, e.g. lobby-jazz),"
     " not 'Lobby Jazz'"),
    (["moh", "add", "{tmp}/Lobby Jazz.wav", "--name", "default"],
     "pbxctl: there is music 'default' in the library already"),
    (["moh", "add", "{tmp}/Lobby Jazz.wav", "--name", "old"],
     "pbxctl: there is music 'old' in the library already"),
    (["moh", "rm", "default"], "pbxctl: the default music cannot be removed"),
    (["moh", "rm", "jazz"], "pbxctl: there is no music 'jazz' in the library"),
    (["moh", "default", "jazz"], "pbxctl: there is no music 'jazz' in the library"),
])
def test_moh_bad_input_is_one_line_and_changes_nothing(pbx, argv, says):
    assert pbx("moh", "add", str(pbx.tmp / "Lobby Jazz.wav"), "--name", "old")[0] == 0
    before = (sorted(p.name for p in (pbx.tmp / "sounds" / "moh").iterdir()),
              rows(pbx, "SELECT * FROM setting ORDER BY key"),
              rows(pbx, "SELECT * FROM audit_log ORDER BY id"))
    argv = [arg.format(tmp=pbx.tmp) for arg in argv]
    assert one_line(pbx(*argv), says.format(tmp=pbx.tmp))
    assert (sorted(p.name for p in (pbx.tmp / "sounds" / "moh").iterdir()),
            rows(pbx, "SELECT * FROM setting ORDER BY key"),
            rows(pbx, "SELECT * FROM audit_log ORDER BY id")) == before


def test_vm_greeting_from_a_file_then_reset(pbx):
    flac = made_by_sox(pbx.tmp, "hello.flac", seconds=1.5)
    assert pbx("vm", "greeting", "1001", str(flac)) == (
        0, "Callers of 1001's mailbox hear the greeting from hello.flac\n", "")
    greeting = pbx.tmp / "vm" / "1001" / "greeting.wav"
    sound = wav.read(greeting)  # what phones play: 8 kHz mono, not the 44.1 kHz stereo given
    assert (sound.rate, sound.channels) == (8000, 1)
    assert sound.seconds == pytest.approx(1.5, abs=0.1)
    assert sorted(p.name for p in greeting.parent.iterdir()) == ["greeting.wav"]  # no scratch
    assert rows(pbx, "SELECT greeting FROM mailbox") == [("1001/greeting.wav",)]
    # Another file replaces it.
    assert pbx("vm", "greeting", " 1001 ", str(pbx.tmp / "Lobby Jazz.wav"))[0] == 0
    assert wav.read(greeting).seconds == pytest.approx(2.0, abs=0.1)

    assert pbx("vm", "greeting", "1001", "--reset") == (
        0, "Callers of 1001's mailbox hear the standard greeting again\n", "")
    assert rows(pbx, "SELECT greeting FROM mailbox") == [("",)] and not greeting.exists()
    assert pbx("vm", "greeting", "1001", "--reset") == (
        0, "Mailbox 1001 has no greeting of its own: callers hear the standard one\n", "")
    assert audit(pbx, "voicemail.greeting") == [
        ("voicemail.greeting", "1001", "uploaded hello.flac"),
        ("voicemail.greeting", "1001", "uploaded Lobby Jazz.wav"),
        ("voicemail.greeting", "1001", "standard greeting"),
    ]


@pytest.mark.parametrize(("argv", "status", "says"), [
    (["vm", "greeting", "1001", "{tmp}/notes.wav"], 1,
     "pbxctl: notes.wav: not an audio file sox can read"),
    (["vm", "greeting", "1001", "{tmp}/none.wav"], 1,
     "pbxctl: {tmp}/none.wav: No such file or directory"),
    (["vm", "greeting", "1999", "{tmp}/Lobby Jazz.wav"], 1,
     "pbxctl: extension 1999 has no mailbox"),
    (["vm", "greeting", "1999", "--reset"], 1, "pbxctl: extension 1999 has no mailbox"),
    (["vm", "greeting", "1001"], 2,
     "pbxctl vm greeting: one of the arguments file --reset is required"
     " (see pbxctl vm greeting --help)"),
    (["vm", "greeting", "1001", "{tmp}/Lobby Jazz.wav", "--reset"], 2,
     "pbxctl vm greeting: argument --reset: not allowed with argument file"
     " (see pbxctl vm greeting --help)"),
])
def test_vm_greeting_bad_input_is_one_line_and_changes_nothing(pbx, capsys, argv, status,
                                                              says):
    assert pbx("vm", "greeting", "1001", str(pbx.tmp / "Lobby Jazz.wav"))[0] == 0
    greeting = pbx.tmp / "vm" / "1001" / "greeting.wav"
    before = (greeting.read_bytes(), rows(pbx, "SELECT * FROM mailbox"),
              rows(pbx, "SELECT * FROM audit_log ORDER BY id"))
    argv = [arg.format(tmp=pbx.tmp) for arg in argv]
    if status == 2:  # a command line pbxctl cannot read
        with pytest.raises(SystemExit) as exited:
            pbx(*argv)
        assert (exited.value.code, capsys.readouterr().err) == (2, says + "\n")
    else:
        assert one_line(pbx(*argv), says.format(tmp=pbx.tmp))
    assert (greeting.read_bytes(), rows(pbx, "SELECT * FROM mailbox"),
            rows(pbx, "SELECT * FROM audit_log ORDER BY id")) == before
    assert sorted(p.name for p in greeting.parent.iterdir()) == ["greeting.wav"]
