"""pbxctl's trunk commands (pbxcli_trunks.py, core/trunks.py): the command lines of
issue 12 item 6, their audit rows, bad input as one line on stderr with exit status 1
and nothing written, and a trunk password that is never printed or audited."""

from __future__ import annotations

import io
import re
import sqlite3

import pytest

SECRET = "s3cret-Pa55"


@pytest.fixture
def pbx(pbxctl):
    assert pbxctl("init")[0] == 0
    return pbxctl


def rows(pbx, sql: str) -> list[tuple]:
    with sqlite3.connect(pbx.db_path) as conn:
        return conn.execute(sql).fetchall()


def test_add_register_trunk_stores_password_but_never_prints_it(pbx):
    status, out, err = pbx("trunk", "add", "prov", "--host", "127.0.0.1:5080",
                           "--transport", "tcp", "--username", "user1", "--password", SECRET,
                           "--register", "--caller-id", "+998901234567", "--max-calls", "4")
    assert (status, err) == (0, "")
    assert "Trunk prov created" in out and SECRET not in out
    assert rows(pbx, "SELECT name, kind, host, port, transport, username, password, register,"
                     " max_calls FROM trunk") == [
        ("prov", "register", "127.0.0.1", 5080, "tcp", "user1", SECRET, 1, 4)]
    audit = rows(pbx, "SELECT action, target, detail FROM audit_log WHERE action LIKE 'trunk.%'")
    assert audit[0][:2] == ("trunk.create", "prov")
    assert SECRET not in audit[0][2] and "password set" in audit[0][2]
    status, out, err = pbx("trunk", "show", "prov")
    assert status == 0 and SECRET not in out
    assert "password" in out and "set" in out and "127.0.0.1:5080" in out
    status, out, _ = pbx("trunk", "list")
    assert status == 0 and "prov" in out and "unknown" in out and SECRET not in out


def test_password_from_stdin_and_environment(pbx, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(SECRET + "\n"))
    status, out, _ = pbx("trunk", "add", "a", "--host", "sip.example.com", "--username", "u",
                         "--register", "--password", "-")
    assert status == 0 and SECRET not in out
    monkeypatch.setenv("PBX_TRUNK_PASSWORD", "envpass")
    assert pbx("trunk", "add", "b", "--host", "10.0.0.1", "--match", "10.0.0.0/24")[0] == 0
    assert rows(pbx, "SELECT name, password FROM trunk ORDER BY name") == [
        ("a", SECRET), ("b", "envpass")]


def test_ip_trunk_match_normalised_and_list_shows_state(pbx):
    assert pbx("trunk", "add", "ip1", "--host", "127.0.0.2",
               "--match", "127.0.0.2, 127.0.1.7/24")[0] == 0
    assert rows(pbx, "SELECT kind, match, password FROM trunk") == [
        ("ip", "127.0.0.2/32,127.0.1.0/24", "")]
    trunk_id = rows(pbx, "SELECT id FROM trunk")[0][0]
    with sqlite3.connect(pbx.db_path) as conn:
        conn.execute("INSERT INTO trunk_state (trunk_id, status, last_code, reason, failures,"
                     " reachable, contact, address, updated_at) VALUES (?, 'failed', 403,"
                     " 'Forbidden', 1, 1, '', '', 0)", (trunk_id,))
    status, out, _ = pbx("trunk", "list")
    assert status == 0 and "failed" in out and "403" in out and "Forbidden" in out
    status, out, _ = pbx("trunk", "show", "ip1")
    assert "not set" in out and "403 Forbidden" in out


def test_set_and_rm(pbx):
    assert pbx("trunk", "add", "t", "--host", "127.0.0.1", "--match", "127.0.0.1")[0] == 0
    status, out, _ = pbx("trunk", "set", "t", "--host", "[::1]:5070", "--keepalive", "0",
                         "--password", SECRET)
    assert status == 0 and SECRET not in out and "[::1]:5070" in out
    assert rows(pbx, "SELECT host, port, keepalive_interval, password FROM trunk") == [
        ("::1", 5070, 0, SECRET)]
    status, out, _ = pbx("trunk", "rm", "t")
    assert status == 0 and "deleted" in out
    assert rows(pbx, "SELECT count(*) FROM trunk") == [(0,)]
    actions = [r[0] for r in rows(pbx, "SELECT action FROM audit_log WHERE action LIKE 'trunk.%'"
                                       " ORDER BY id")]
    assert actions == ["trunk.create", "trunk.edit", "trunk.delete"]
    assert all(SECRET not in r[0] for r in rows(pbx, "SELECT detail FROM audit_log"))


def test_disable_and_enable(pbx):
    assert pbx("trunk", "add", "t", "--host", "127.0.0.1", "--match", "127.0.0.1")[0] == 0
    status, out, _ = pbx("trunk", "set", "t", "--disable")
    assert status == 0 and "enabled no" in out, out
    assert rows(pbx, "SELECT enabled FROM trunk") == [(0,)]
    assert re.search(r"enabled +no\n", pbx("trunk", "show", "t")[1])
    status, out, _ = pbx("trunk", "set", "t", "--keepalive", "5")  # stays disabled
    assert rows(pbx, "SELECT enabled, keepalive_interval FROM trunk") == [(0, 5)]
    status, out, _ = pbx("trunk", "set", "t", "--enable")
    assert status == 0 and rows(pbx, "SELECT enabled FROM trunk") == [(1,)]


@pytest.mark.parametrize("argv", [
    ("trunk", "add", "bad name", "--host", "127.0.0.1", "--match", "127.0.0.1"),
    ("trunk", "add", "x", "--host", "bad_host!", "--match", "127.0.0.1"),
    ("trunk", "add", "x", "--host", "127.0.0.1:99999", "--match", "127.0.0.1"),
    ("trunk", "add", "x", "--host", "127.0.0.1", "--match", "300.1.1.1/8"),
    ("trunk", "add", "x", "--host", "127.0.0.1", "--register"),
    ("trunk", "add", "x", "--host", "127.0.0.1"),
    ("trunk", "add", "x", "--host", "127.0.0.1", "--match", "127.0.0.1", "--max-calls", "-1"),
    ("trunk", "add", "x", "--host", "127.0.0.1", "--match", "127.0.0.1", "--caller-id", "abc"),
    ("trunk", "add", "x", "--host", "127.0.0.1", "--match", "127.0.0.1",
     "--caller-id-header", "to"),
    ("trunk", "add", "x", "--host", "127.0.0.1", "--username", "u", "--register",
     "--password", SECRET + "\x07"),
    ("trunk", "show", "nope"),
    ("trunk", "rm", "nope"),
    ("trunk", "set", "nope", "--keepalive", "5"),
])
def test_bad_input_is_one_line_and_writes_nothing(pbx, argv):
    status, out, err = pbx(*argv)
    assert status == 1 and out == ""
    assert err.startswith("pbxctl: ") and err.count("\n") == 1 and SECRET not in err
    assert rows(pbx, "SELECT count(*) FROM trunk") == [(0,)]
    assert rows(pbx, "SELECT count(*) FROM audit_log WHERE action LIKE 'trunk.%'") == [(0,)]


def test_caller_id_header_pai(pbx):
    assert pbx("trunk", "add", "t", "--host", "127.0.0.1", "--match", "127.0.0.1",
               "--caller-id", "712001122", "--caller-id-header", "PAI")[0] == 0
    assert rows(pbx, "SELECT caller_id_header FROM trunk") == [("pai",)]
    assert re.search(r"caller id header +pai\n", pbx("trunk", "show", "t")[1])


def test_duplicate_refused(pbx):
    assert pbx("trunk", "add", "t", "--host", "127.0.0.1", "--match", "127.0.0.1")[0] == 0
    status, _, err = pbx("trunk", "add", "t", "--host", "127.0.0.1", "--match", "127.0.0.1")
    assert status == 1 and "already exists" in err
    assert rows(pbx, "SELECT count(*) FROM trunk") == [(1,)]
