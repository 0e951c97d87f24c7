"""pbxctl as an admin runs it (the real ./pbxctl, in a subprocess): argument errors
are one line, `ban add` bans by hand (and a running sipd applies it), and the
call history's headings are the panel's words."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.sip.attack import options_from, wait_until
from tests.support import ROOT, Sipd, database_with

PBXCTL = str(ROOT / "pbxctl")
STRANGER = "127.0.0.9"


@pytest.fixture
def pbxctl(tmp_path):
    db_path = tmp_path / "pbx.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PBX_")}
    env.pop("SSH_CLIENT", None)
    env.update(PBX_DB=str(db_path), PBX_REALM="pbx.test", PBX_PYTHON=sys.executable,
               PBX_RUN_DIR=str(tmp_path / "run"))

    def run(*argv, **extra):
        return subprocess.run([PBXCTL, *argv], env=dict(env, **extra), capture_output=True,
                              text=True, timeout=60)

    run.db_path = db_path
    return run


def one_line(result) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert result.stdout == ""
    return lines[0]


def rows(db_path: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db_path) as conn:
        return conn.execute(sql).fetchall()


# -- argument errors ----------------------------------------------------------------


@pytest.mark.parametrize(("argv", "says"), [
    ((), "pbxctl: the following arguments are required: COMMAND (see pbxctl --help)"),
    (("bogus",), "pbxctl: argument COMMAND: invalid choice: 'bogus'"),
    (("ext", "add"), "pbxctl ext add: the following arguments are required: number "
                     "(see pbxctl ext add --help)"),
    (("ext", "add", "1001", "--password", "x", "--generate"),
     "pbxctl ext add: argument --generate: not allowed with argument --password"),
    (("calls", "--last", "many"), "pbxctl calls: argument --last: invalid int value: 'many'"),
    (("ban",), "pbxctl ban: the following arguments are required: ACTION"),
    (("ban", "add", "192.0.2.1", "--time"), "pbxctl ban add: argument --time: expected one argument"),
])
def test_argument_errors_are_one_line_with_exit_2(pbxctl, argv, says):
    result = pbxctl(*argv)
    assert result.returncode == 2
    line = one_line(result)
    assert line.startswith(says), line
    assert "usage:" not in line


def test_help_is_still_argparse_help(pbxctl):
    result = pbxctl("ban", "add", "--help")
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.startswith("usage: pbxctl ban add [-h] [--time SECONDS] [--reason TEXT]")
    assert "address" in result.stdout


# -- ban add ------------------------------------------------------------------------


def test_ban_add_list_rm_round_trip(pbxctl):
    assert pbxctl("init").returncode == 0
    result = pbxctl("ban", "add", "203.0.113.7", "--time", "600", "--reason", "scanner in the log")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ("Banned 203.0.113.7 for 600 s (scanner in the log); "
                             "sipd drops what it sends within a second\n")
    listed = pbxctl("ban", "list").stdout.splitlines()
    assert listed[0].split() == ["ADDRESS", "STATE", "REASON", "OFFENCE", "BANNED", "EXPIRES", "IN"]
    assert re.match(r"203\.0\.113\.7\s+banned\s+scanner in the log\s+1\s+\S+ \S+\s+9 min$",
                    listed[1]), listed
    # An IPv4-mapped IPv6 address is the same address, banned already.
    again = pbxctl("ban", "add", "::ffff:203.0.113.7")
    assert again.returncode == 1
    assert one_line(again).startswith("pbxctl: 203.0.113.7 is banned already (for 9 min more)")

    removed = pbxctl("ban", "rm", "203.0.113.7")
    assert removed.returncode == 0, removed.stderr
    assert pbxctl("ban", "list").stdout == "No address is banned\n"
    assert "lifted by cli:" in pbxctl("ban", "list", "--all").stdout
    audit = rows(pbxctl.db_path, "SELECT actor, action, target, detail FROM audit_log ORDER BY id")
    assert [entry[1:] for entry in audit] == [
        ("ban.add", "203.0.113.7", "600 s: scanner in the log"),
        ("ban.lift", "203.0.113.7", "1 ban"),
    ]
    assert all(entry[0].startswith("cli:") for entry in audit)


def test_ban_add_defaults_to_pbx_ban_time(pbxctl):
    result = pbxctl("ban", "add", "2001:db8::7", PBX_BAN_TIME="120")
    assert result.returncode == 0, result.stderr
    ((address, reason, span),) = rows(
        pbxctl.db_path, "SELECT address, reason, expires_at - created_at FROM ban")
    assert (address, reason, round(span)) == ("2001:db8::7", "banned by hand", 120)


@pytest.mark.parametrize(("argv", "says"), [
    (("not-an-address",), "pbxctl: 'not-an-address' is not an IP address"),
    (("192.0.2.1", "--time", "0"), "pbxctl: --time: expected 1 to 2592000 seconds (30 days), got 0"),
    (("192.0.2.1", "--time", "2592001"), "pbxctl: --time: expected 1 to 2592000 seconds"),
    (("192.0.2.1", "--time", "1h"), "pbxctl: --time: '1h' is not a number of seconds"),
    (("192.0.2.1", "--reason", "  "), "pbxctl: --reason: say why (or leave it out)"),
    (("192.0.2.1", "--reason", "evil\x1b[2J"), "pbxctl: --reason: at most 200 printable"),
    (("192.0.2.1", "--reason", "x" * 201), "pbxctl: --reason: at most 200 printable"),
    (("198.51.100.20",), "pbxctl: 198.51.100.20 is in PBX_TRUSTED_NETWORKS, which are never banned"),
])
def test_ban_add_refuses_bad_input_and_writes_nothing(pbxctl, argv, says):
    assert pbxctl("init").returncode == 0
    result = pbxctl("ban", "add", *argv, PBX_TRUSTED_NETWORKS="198.51.100.0/24")
    assert result.returncode == 1
    assert one_line(result).startswith(says)
    assert rows(pbxctl.db_path, "SELECT COUNT(*) FROM ban") == [(0,)]
    assert rows(pbxctl.db_path, "SELECT COUNT(*) FROM audit_log") == [(0,)]


def test_a_hand_made_ban_applies_in_the_running_sipd(pbxctl, tmp_path):
    """sipd reads the row within a second (the check is every 0.5 s) and hands it to
    the firewall command, as it does for a lift; the lift lets the address in again."""
    database_with(pbxctl.db_path, [], "unused-password-1")
    calls = tmp_path / "nft-calls"
    command = tmp_path / "nft-ban"
    command.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    command.chmod(0o755)
    with Sipd(pbxctl.db_path, PBX_NFT_BAN_COMMAND=str(command)) as sipd:
        assert options_from(STRANGER, sipd.port, timeout=2).startswith(b"SIP/2.0 200")
        result = pbxctl("ban", "add", STRANGER, "--time", "300")
        assert result.returncode == 0, result.stderr
        assert wait_until(lambda: options_from(STRANGER, sipd.port, timeout=0.3) is None,
                          10) is not None, sipd.log()
        assert options_from("127.0.0.1", sipd.port, timeout=2) is not None  # only that address
        assert wait_until(lambda: calls.exists() and "add" in calls.read_text(),
                          10) is not None, sipd.log()
        # Once per sipd process (main and registration workers), as a lift is.
        assert re.fullmatch(rf"(add {re.escape(STRANGER)} 29\d\n)+", calls.read_text())
        assert f"[SIP] Ban of {STRANGER} applied" in sipd.log()

        assert pbxctl("ban", "rm", STRANGER).returncode == 0
        assert wait_until(lambda: options_from(STRANGER, sipd.port, timeout=0.3) is not None,
                          10) is not None, sipd.log()
        assert wait_until(lambda: f"del {STRANGER}" in calls.read_text(), 10) is not None


# -- the panel's words --------------------------------------------------------------


def test_calls_headings_are_the_panels(pbxctl, tmp_path):
    """`pbxctl calls` names its columns as the history page does (Outcome, Hung up by)."""
    from app import create_app
    from core.models import Call, db

    assert pbxctl("init").returncode == 0
    app = create_app({"TESTING": True, "DB_PATH": str(pbxctl.db_path), "REALM": "pbx.test",
                      "SECRET_KEY": "test-secret-key-" + "x" * 32, "LOGIN_DISABLED": True})
    with app.app_context(), db.connection_context():
        Call.create(call_id="c1@192.0.2.10", caller="1002", callee="1003", state="answered",
                    started_at=time.time() - 70, answered_at=time.time() - 65,
                    ended_at=time.time() - 5, disposition="ANSWERED", hangup_by="caller",
                    sip_status=200)
    page = app.test_client().get("/calls/").data.decode()
    if not db.is_closed():
        db.close()
    panel = re.findall(r"<th>([^<]+)</th>", page.split('id="calls"')[1].split("</thead>")[0])
    assert "Outcome" in panel and "Hung up by" in panel
    heading = pbxctl("calls").stdout.splitlines()[0]
    assert re.split(r"\s{2,}", heading) == [name.upper() for name in panel]
