"""pbxctl calls (the last calls, the live ones) and the audit rows pbxctl writes."""

import getpass
import os
import pwd
import time

import pytest

from core.models import AuditEntry, Call, db


@pytest.fixture
def pbx(pbxctl):
    return pbxctl


def call(caller, callee, started, live=False, **fields):
    values = dict(call_id=f"{caller}-{callee}-{started}", caller=caller, callee=callee,
                  state="answered", started_at=started, answered_at=started + 5,
                  ended_at=None if live else started + 65, disposition=None if live else "ANSWERED",
                  hangup_by=None if live else "caller", sip_status=None if live else 200,
                  caller_media="192.0.2.10:40000", callee_media="192.0.2.20:41000",
                  codec="PCMU/8000")
    values.update(fields)
    return Call.create(**values)


def test_calls_when_there_are_none(pbx):
    assert pbx("calls") == (0, "No calls yet\n", "")
    assert pbx("calls", "--active") == (0, "No calls right now\n", "")


def test_calls_lists_the_last_ones_oldest_first(pbx):
    pbx("init")
    now = time.time()
    call("1002", "1003", now - 3000)
    call("1004", "1002", now - 2000, answered_at=None, disposition="BUSY", sip_status=486,
         hangup_by="callee", reason="Busy Here")
    call("1005", "1006", now - 1000, ended_at=now - 1000 + 3725 + 5)
    call("1007", "1008", now - 30, live=True)
    status, out, _ = pbx("calls", "--last", "3")
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split() == ["START", "CALLER", "CALLEE", "TALK", "TIME", "OUTCOME", "HUNG",
                                "UP", "BY", "SIP", "STATUS", "REASON", "RECORDING"]
    assert len(lines) == 4  # the oldest call is not among the last three
    assert "1004" in lines[1] and "BUSY" in lines[1] and "486" in lines[1] and "Busy Here" in lines[1]
    assert "1:02:05" in lines[2] and "ANSWERED" in lines[2]
    assert "1007" in lines[3] and "talking (live)" in lines[3]


def test_calls_active(pbx):
    pbx("init")
    now = time.time()
    call("1002", "1003", now - 500)
    live = call("1004", "1005", now - 95, live=True, answered_at=now - 90, codec="opus/48000")
    ringing = call("1006", "1007", now - 4, live=True, state="ringing", answered_at=None,
         caller_media="", callee_media="", codec="")
    status, out, _ = pbx("calls", "--active")
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split()[:6] == ["ID", "STARTED", "CALLER", "CALLEE", "STATE", "DURATION"]
    assert len(lines) == 3
    assert lines[1].split()[0] == str(live.id) and lines[2].split()[0] == str(ringing.id)
    assert "1004" in lines[1] and "talking" in lines[1] and "1:30" in lines[1]
    assert "192.0.2.10:40000" in lines[1] and "opus/48000" in lines[1]
    assert "1006" in lines[2] and "ringing" in lines[2] and "0:04" in lines[2]


def test_calls_shows_terminal_escapes_inert(pbx):
    pbx("init")
    call("1002", "1003", time.time() - 100, reason="\x1b]0;owned\x07\x1b[2J gone")
    status, out, _ = pbx("calls")
    assert "\x1b" not in out and "\x07" not in out
    assert "\\x1b]0;owned\\x07\\x1b[2J gone" in out


def test_calls_refuses_a_bad_count(pbx):
    status, out, err = pbx("calls", "--last", "0")
    assert status == 1 and err == "pbxctl: --last must be at least 1\n"


# Audit rows from pbxctl

def rows():
    return [(e.actor, e.action, e.target, e.source, e.detail)
            for e in AuditEntry.select().order_by(AuditEntry.id)]


def me():
    return "cli:" + pwd.getpwuid(os.geteuid()).pw_name


def test_pbxctl_changes_are_audited(pbx, tmp_path):
    assert pbx("ext", "add", "1002", "--name", "Alice", "--generate")[0] == 0
    assert pbx("ext", "passwd", "1002", "--password", "another-good-1")[0] == 0
    assert pbx("admin", "add", "boss", "--role", "viewer")[0] == 0
    assert pbx("admin", "passwd", "boss", "--password", "long-enough-1")[0] == 0
    (tmp_path / "ext.csv").write_text("number,name,password\n1003,Bob,\n")
    assert pbx("ext", "import", str(tmp_path / "ext.csv"))[0] == 0
    assert pbx("ext", "rm", "1002")[0] == 0
    assert rows() == [
        (me(), "extension.create", "1002", "local", "name 'Alice', generated password"),
        (me(), "extension.password", "1002", "local", "password set"),
        (me(), "admin.create", "boss", "local", "role viewer"),
        (me(), "admin.password", "boss", "local", "password set"),
        (me(), "extension.create", "1003", "local",
         "name 'Bob', generated password, imported from ext.csv"),
        (me(), "extension.delete", "1002", "local", "name 'Alice'"),
    ]


def test_pbxctl_over_ssh_and_sudo(pbx, monkeypatch):
    monkeypatch.setenv("SSH_CLIENT", "192.0.2.5 50022 22")
    pbx("init", "--first-admin")
    (entry,) = rows()
    assert entry[1:] == ("admin.create", "admin", "ssh 192.0.2.5", "role admin, first admin")
    if os.geteuid() == 0:
        monkeypatch.setenv("SUDO_USER", "alice")
        pbx("ext", "add", "1002")
        assert rows()[-1][0] == "cli:alice"
    else:
        assert entry[0] == f"cli:{getpass.getuser()}"


def test_a_refused_change_writes_no_audit_row(pbx):
    pbx("ext", "add", "1002")
    status, _, err = pbx("ext", "add", "1002")
    assert status == 1 and "already exists" in err
    status, _, err = pbx("ext", "rm", "1009")
    assert status == 1
    assert [row[1] for row in rows()] == ["extension.create"]


def test_pbxctl_ban_rm_is_audited(pbx):
    from core import bans

    pbx("init")
    now = time.time()
    bans.add(db.connection(), "203.0.113.7", "5 failed authentications in 600 s", 5, 1, now,
             now + 3600)
    assert pbx("ban", "rm", "203.0.113.7")[0] == 0
    assert rows() == [(me(), "ban.lift", "203.0.113.7", "local", "1 ban")]
    status, _, err = pbx("ban", "rm", "203.0.113.7")  # not banned any more: nothing written
    assert status == 1 and "is not banned" in err
    assert len(rows()) == 1
