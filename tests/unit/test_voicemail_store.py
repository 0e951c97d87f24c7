"""Mailboxes and messages (core/voicemail.py) and pbxctl's voicemail commands
(pbxcli_voicemail.py): the command lines of issue 13, what they print, their audit
rows, files kept and removed with their rows, and bad input as one line on stderr
with exit status 1 and nothing changed."""

from __future__ import annotations

import os
import sqlite3
import wave

import pytest

import pbxcli
from core import voicemail
from core.config import load_settings
from core.models import Mailbox, VoicemailMessage, db

REALM = "pbx.test"
NOW = 1_790_000_000.0


@pytest.fixture
def pbx(tmp_path, monkeypatch, capsys):
    for name in list(os.environ):
        if name.startswith("PBX_") or name in ("SSH_CLIENT", "SUDO_USER"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PBX_DB", str(tmp_path / "pbx.db"))
    monkeypatch.setenv("PBX_REALM", REALM)
    monkeypatch.setenv("PBX_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("PBX_VOICEMAIL_DIR", str(tmp_path / "vm"))

    def run(*argv):
        status = pbxcli.main(list(argv))
        out, err = capsys.readouterr()
        return status, out, err

    run.db_path = tmp_path / "pbx.db"
    run.settings = lambda: load_settings()
    assert run("init")[0] == 0
    for number in ("1001", "1002"):
        status, out, _ = run("ext", "add", number, "--name", f"Desk {number}", "--generate")
        assert status == 0
        pin = out.split("Voicemail PIN (shown once): ")[1].split()[0]
        run.__dict__[f"pin{number}"] = pin
    yield run
    if not db.is_closed():
        db.close()


def rows(pbx, sql: str) -> list[tuple]:
    with sqlite3.connect(pbx.db_path) as conn:
        return conn.execute(sql).fetchall()


def recording(path, seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x00\x10" * int(8000 * seconds))


def leave(pbx, number: str, seconds: float, caller="1002", name="Desk 1002", at=NOW):
    settings = pbx.settings()
    from core.database import connect

    connect(settings)
    path = voicemail.new_recording_path(number, settings, at)
    recording(path, seconds)
    return voicemail.add_message(number, path, seconds, settings, caller, name, at), path


def test_a_new_extension_has_a_mailbox_on_with_a_pin_shown_once(pbx):
    boxes = rows(pbx, "SELECT e.number, m.enabled, m.pin_hash FROM mailbox m"
                      " JOIN extension e ON e.id = m.extension_id ORDER BY e.number")
    assert [(n, on) for n, on, _ in boxes] == [("1001", 1), ("1002", 1)]
    assert all(h.startswith("pbkdf2:sha256:") for _, _, h in boxes)
    assert pbx.pin1001 not in boxes[0][2]  # only its hash is stored
    from core.database import connect

    connect(pbx.settings())
    assert voicemail.pin_matches(voicemail.mailbox_of("1001"), pbx.pin1001)
    assert not voicemail.pin_matches(voicemail.mailbox_of("1001"), "0000")


def test_ext_voicemail_off_then_on_with_pin_and_email(pbx):
    status, out, _ = pbx("ext", "voicemail", "1001", "off")
    assert (status, out) == (0, "Extension 1001: voicemail off (its messages are kept)\n")
    assert rows(pbx, "SELECT enabled FROM mailbox WHERE extension_id = 1") == [(0,)]
    status, out, _ = pbx("ext", "voicemail", "1001", "on", "--pin", "2468",
                         "--email", "desk@example.com")
    assert status == 0
    assert out == "Extension 1001: voicemail on, messages e-mailed to desk@example.com\n"
    assert rows(pbx, "SELECT enabled, email FROM mailbox WHERE extension_id = 1") == [
        (1, "desk@example.com")]
    from core.database import connect

    connect(pbx.settings())
    assert voicemail.pin_matches(voicemail.mailbox_of("1001"), "2468")
    audit = rows(pbx, "SELECT action, target, detail FROM audit_log"
                      " WHERE action = 'extension.voicemail' ORDER BY id")
    assert audit == [("extension.voicemail", "1001", "off"),
                     ("extension.voicemail", "1001", "on, PIN set, e-mail desk@example.com")]


def test_an_extension_without_mailbox_gets_one_with_a_generated_pin(pbx):
    with sqlite3.connect(pbx.db_path) as conn:
        conn.execute("DELETE FROM mailbox WHERE extension_id = 2")
    status, out, _ = pbx("ext", "voicemail", "1002", "on")
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == "Extension 1002: voicemail on"
    assert lines[1].startswith("Voicemail PIN (shown once): ")
    pin = lines[1].rsplit(" ", 1)[1]
    assert len(pin) == voicemail.PIN_DIGITS and pin.isdigit()


@pytest.mark.parametrize(("argv", "message"), [
    (("ext", "voicemail", "1001", "on", "--pin", "12"), "a voicemail PIN is 4 to 10 digits"),
    (("ext", "voicemail", "1001", "on", "--pin", "12a4"), "a voicemail PIN is 4 to 10 digits"),
    (("ext", "voicemail", "1001", "on", "--pin", "1111"),
     "a voicemail PIN must not be one digit repeated"),
    (("ext", "voicemail", "1001", "on", "--email", "x@y.z\r\nBcc: a@b.c"),
     "is not an e-mail address"),
    (("ext", "voicemail", "1001", "on", "--language", "de"),
     "prompt language must be one of en, uz, ru"),
    (("ext", "voicemail", "1999", "on"), "no extension 1999"),
    (("vm", "list", "1999"), "extension 1999 has no mailbox"),
    (("vm", "export", "77", "/tmp/x.wav"), "no voicemail message 77"),
    (("vm", "rm", "abc"), "no voicemail message abc"),
])
def test_bad_input_is_one_line_and_changes_nothing(pbx, argv, message):
    before = rows(pbx, "SELECT * FROM mailbox ORDER BY id"), rows(
        pbx, "SELECT count(*) FROM audit_log")
    status, out, err = pbx(*argv)
    assert status == 1 and out == ""
    assert err.count("\n") == 1 and message in err, err
    after = rows(pbx, "SELECT * FROM mailbox ORDER BY id"), rows(
        pbx, "SELECT count(*) FROM audit_log")
    assert after == before


def test_messages_listed_exported_and_deleted_with_their_files(pbx, tmp_path):
    first, first_path = leave(pbx, "1001", 4.2, at=NOW)
    second, _ = leave(pbx, "1001", 12.0, caller="0991234567", name="", at=NOW + 60)
    assert first.path.startswith("1001/") and first_path.is_file()
    voicemail.mark_heard(first.id, now=NOW + 120)
    status, out, _ = pbx("vm", "list")
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "MAILBOX", "CALLER", "TIME", "DURATION", "STATE"]
    assert lines[1].split()[:3] == [str(second.id), "1001", "0991234567"]
    assert lines[1].split()[-2:] == ["0:12", "new"]
    assert lines[2].split()[-2:] == ["0:04", "old"]
    assert "1002 (Desk 1002)" in lines[2]
    assert pbx("vm", "list", "1002")[1] == "No voicemail messages\n"

    target = tmp_path / "one.wav"
    status, out, _ = pbx("vm", "export", str(first.id), str(target))
    assert (status, out) == (0, f"Message {first.id} written to {target}\n")
    assert target.read_bytes() == first_path.read_bytes()
    status, out, _ = pbx("vm", "export", "1001", str(tmp_path / "all"))
    assert status == 0 and out.startswith("2 messages of mailbox 1001 written to ")
    exported = sorted(p.name for p in (tmp_path / "all").iterdir())
    assert len(exported) == 2 and all(n.startswith("1001-") for n in exported)

    status, out, _ = pbx("vm", "rm", str(first.id))
    assert (status, out) == (0, f"Message {first.id} of mailbox 1001 deleted\n")
    assert not first_path.exists()
    assert rows(pbx, "SELECT id FROM voicemail_message") == [(second.id,)]
    assert rows(pbx, "SELECT action, target FROM audit_log WHERE action = 'voicemail.delete'") == [
        ("voicemail.delete", "1001")]


def test_a_recording_under_a_second_is_not_kept(pbx):
    message, path = leave(pbx, "1001", 0.6)
    assert message is None and not path.exists()
    assert VoicemailMessage.select().count() == 0


def test_counts_and_listening_order_new_first(pbx):
    old, _ = leave(pbx, "1001", 3, at=NOW)
    new1, _ = leave(pbx, "1001", 3, at=NOW + 10)
    new2, _ = leave(pbx, "1001", 3, at=NOW + 20)
    voicemail.mark_heard(old.id)
    assert voicemail.counts("1001") == (2, 1)
    assert voicemail.counts("1002") == (0, 0)
    assert [m.id for m in voicemail.for_listening("1001")] == [new1.id, new2.id, old.id]


def test_deleting_the_extension_takes_its_mailbox_and_files(pbx, tmp_path):
    _, path = leave(pbx, "1001", 3)
    status, _, _ = pbx("ext", "rm", "1001")
    assert status == 0
    assert not path.exists() and not (tmp_path / "vm" / "1001").exists()
    assert rows(pbx, "SELECT count(*) FROM voicemail_message") == [(0,)]
    assert Mailbox.select().count() == 1


def test_settings_refused_with_one_line():
    from core.config import ConfigError

    base = {"PBX_DB": "/tmp/x.db"}
    assert load_settings(base).voicemail_dir.endswith("var/voicemail")
    for env, message in [({"PBX_VOICEMAIL_MAX_SECONDS": "2"}, "PBX_VOICEMAIL_MAX_SECONDS"),
                         ({"PBX_VOICEMAIL_MAX_SECONDS": "7200"}, "at most 3600"),
                         ({"PBX_SMTP_PORT": "70000"}, "PBX_SMTP_PORT"),
                         ({"PBX_SMTP_STARTTLS": "maybe"}, "PBX_SMTP_STARTTLS"),
                         ({"PBX_SMTP_FROM": "pbx at office"}, "PBX_SMTP_FROM")]:
        with pytest.raises(ConfigError, match=message):
            load_settings({**base, **env})
