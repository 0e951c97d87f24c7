"""pbxctl's ring group, forwarding and DND commands (pbxcli_routing.py): the command
lines of issue 11 exactly, what they print, their audit rows, and bad input as one
line on stderr with exit status 1 and nothing changed."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys

import pytest

from tests.support import ROOT

REALM = "pbx.test"
PBXCTL = str(ROOT / "pbxctl")


@pytest.fixture
def pbx(pbxctl):
    assert pbxctl("init")[0] == 0
    for number in ("1001", "1002", "1003", "1004"):
        assert pbxctl("ext", "add", number, "--name", f"Desk {number}", "--generate")[0] == 0
    return pbxctl


def rows(pbx, sql: str) -> list[tuple]:
    with sqlite3.connect(pbx.db_path) as conn:
        return conn.execute(sql).fetchall()


def state(pbx) -> tuple:
    return (
        rows(pbx, "SELECT * FROM ring_group ORDER BY id"),
        rows(pbx, "SELECT * FROM ring_group_member ORDER BY id"),
        rows(pbx, "SELECT number, dnd, forward_always, forward_busy, forward_no_answer,"
                  " forward_no_answer_after, forward_unavailable FROM extension ORDER BY id"),
        rows(pbx, "SELECT count(*) FROM audit_log"),
    )


def audits(pbx, prefix: str) -> list[tuple]:
    return rows(pbx, "SELECT actor LIKE 'cli:%', action, target, detail FROM audit_log"
                     f" WHERE action LIKE '{prefix}%' ORDER BY id")


def test_group_add_list_show_set_rm(pbx):
    status, out, err = pbx("group", "add", "600", "--name", "Sales", "--members",
                           "1001,1002,1003", "--strategy", "hunt", "--ring-time", "40",
                           "--member-time", "10", "--fallback", "1004")
    assert (status, err) == (0, "")
    assert out == ("Ring group 600 (Sales) created: hunt 1001, 1002, 1003, 10 s each, 40 s in"
                   " all, then 1004\n")
    assert pbx("group", "add", "601", "--name", "Support", "--members", "1004")[1] == (
        "Ring group 601 (Support) created: ringall 1004 for 30 s\n")
    status, out, _ = pbx("group", "list")
    assert out.splitlines() == [
        "NUMBER  NAME     STRATEGY  RING TIME  MEMBER TIME  MEMBERS         FALLBACK",
        "600     Sales    hunt      40 s       10 s         1001,1002,1003  1004",
        "601     Support  ringall   30 s       -            1004            -",
    ]
    assert pbx("group", "show", "600")[1].splitlines() == [
        "Ring group 600: Sales",
        "Strategy: hunt, 10 s per member, 40 s in all",
        "Members: 1001 (Desk 1001), 1002 (Desk 1002), 1003 (Desk 1003)",
        "Fallback: 1004",
    ]
    assert pbx("group", "set", "600", "--members", "1003,1001", "--strategy", "ringall",
               "--fallback", "")[1] == "Ring group 600 (Sales): ringall 1003, 1001 for 40 s\n"
    assert rows(pbx, "SELECT e.number FROM ring_group_member m JOIN extension e"
                     " ON e.id = m.extension_id JOIN ring_group g ON g.id = m.group_id"
                     " WHERE g.number = '600' ORDER BY m.position") == [("1003",), ("1001",)]
    pbx("ext", "forward", "1004", "--busy", "600")
    status, out, _ = pbx("group", "rm", "600")
    assert out.splitlines() == ["Ring group 600 (Sales) deleted",
                                "Cleared: forward on busy of 1004"]
    assert rows(pbx, "SELECT number FROM ring_group") == [("601",)]
    assert audits(pbx, "group.") == [
        (1, "group.create", "600", "name 'Sales', hunt, members 1001,1002,1003, ring time 40 s,"
                                   " member time 10 s, fallback 1004"),
        (1, "group.create", "601", "name 'Support', ringall, members 1004, ring time 30 s,"
                                   " member time 15 s, fallback none"),
        (1, "group.edit", "600", "name 'Sales', hunt, members 1001,1002,1003, ring time 40 s,"
                                 " member time 10 s, fallback 1004 -> name 'Sales', ringall,"
                                 " members 1003,1001, ring time 40 s, member time 10 s,"
                                 " fallback none"),
        (1, "group.delete", "600", "name 'Sales'; cleared forward on busy of 1004"),
    ]


@pytest.mark.parametrize(("argv", "says"), [
    (("group", "add", "1001", "--name", "Sales", "--members", "1002"),
     "pbxctl: 1001 is an extension; a ring group needs a number of its own"),
    (("group", "add", "600", "--name", "Sales", "--members", "1002,1009"),
     "pbxctl: member 1009 is not an extension"),
    (("group", "add", "600", "--name", "Sales", "--members", "1002,1002"),
     "pbxctl: 1002 is a member twice"),
    (("group", "add", "600", "--name", "Sales", "--members", ","),
     "pbxctl: a ring group needs at least one member"),
    (("group", "add", "600", "--name", "Sales", "--members", "1002", "--ring-time", "3"),
     "pbxctl: ring time must be 5 to 300 seconds, got '3'"),
    (("group", "add", "600", "--name", "Sales", "--members", "1002", "--fallback", "600"),
     "pbxctl: ring group 600 cannot fall back to itself"),
    (("group", "add", "600", "--name", "Sales", "--members", "1002", "--fallback", "1999"),
     "pbxctl: 1999 is no extension or ring group, and no outbound route takes it"),
    (("group", "show", "699"), "pbxctl: no ring group 699"),
    (("group", "rm", "699"), "pbxctl: no ring group 699"),
    (("group", "set", "699", "--name", "X"), "pbxctl: no ring group 699"),
    (("group", "set", "610"), "pbxctl: nothing to change: give --name, --members, --strategy,"
                              " --ring-time, --member-time or --fallback"),
    (("group", "set", "610", "--members", "1009"), "pbxctl: member 1009 is not an extension"),
    (("ext", "forward", "1001", "--always", "1001"), "pbxctl: 1001 cannot forward to itself"),
    (("ext", "forward", "1001", "--busy", "1999"),
     "pbxctl: 1999 is no extension or ring group, and no outbound route takes it"),
    (("ext", "forward", "1001", "--busy", "mobile"),
     "pbxctl: 'mobile' is not a destination: give an extension or ring group number, an outside number, voicemail:NUMBER, ivr:NAME, hours:NAME or hangup"),
    (("ext", "forward", "1001", "--no-answer", "1002", "--after", "200"),
     "pbxctl: no-answer time must be 5 to 120 seconds, got '200'"),
    (("ext", "forward", "1001", "--busy", "1002", "--after", "20"),
     "pbxctl: --after goes with --no-answer"),
    (("ext", "forward", "1009", "--busy", "1002"), "pbxctl: no extension 1009"),
    (("ext", "dnd", "1009", "on"), "pbxctl: no extension 1009"),
    (("ext", "add", "610", "--generate"), "pbxctl: 610 is a ring group's number"),
    (("ext", "rm", "1004"), "pbxctl: extension 1004 is the only member of ring group 610"
                            " (Night): add another member or delete the group first"),
])
def test_bad_input_is_one_line_and_changes_nothing(pbx, argv, says):
    assert pbx("group", "add", "610", "--name", "Night", "--members", "1004")[0] == 0
    before = state(pbx)
    status, out, err = pbx(*argv)
    assert (status, out, err) == (1, "", says + "\n")
    assert state(pbx) == before


@pytest.mark.parametrize(("argv", "says"), [
    (("group", "add", "600", "--members", "1001"),
     "pbxctl group add: the following arguments are required: --name"),
    (("group", "add", "600", "--name", "Sales", "--members", "1001", "--strategy", "random"),
     "pbxctl group add: argument --strategy: invalid choice: 'random'"),
    (("ext", "forward", "1001"), "pbxctl ext forward: one of the arguments --always --busy"),
    (("ext", "forward", "1001", "--always", "1002", "--busy", "1003"),
     "pbxctl ext forward: argument --busy: not allowed with argument --always"),
    (("ext", "forward", "1001", "--off", "sometimes"),
     "pbxctl ext forward: argument --off: invalid choice: 'sometimes'"),
    (("ext", "dnd", "1001", "maybe"), "pbxctl ext dnd: argument state: invalid choice: 'maybe'"),
])
def test_a_command_line_it_cannot_read_is_exit_2(pbx, argv, says):
    before = state(pbx)
    with pytest.raises(SystemExit) as exited:
        pbx(*argv)
    assert exited.value.code == 2
    assert state(pbx) == before


def test_forwards_and_dnd(pbx):
    assert pbx("ext", "forward", "1001", "--always", "1002")[1].splitlines() == [
        "Extension 1001: always -> 1002", "Now: always -> 1002"]
    assert pbx("ext", "forward", "1001", "--no-answer", "1003", "--after", "25")[1] == (
        "Extension 1001: no-answer -> 1003 after 25 s\n"
        "Now: always -> 1002; no answer (25 s) -> 1003\n")
    pbx("ext", "forward", "1001", "--busy", "hangup")
    pbx("ext", "forward", "1001", "--unavailable", "1004")
    assert pbx("ext", "dnd", "1001", "on")[1] == (
        "Extension 1001: do not disturb on (callers go to hangup, its busy forward)\n")
    assert pbx("ext", "dnd", "1002", "on")[1] == (
        "Extension 1002: do not disturb on (callers get busy)\n")
    assert rows(pbx, "SELECT dnd, forward_always, forward_busy, forward_no_answer,"
                     " forward_no_answer_after, forward_unavailable FROM extension"
                     " WHERE number = '1001'") == [(1, "1002", "hangup", "1003", 25, "1004")]
    out = pbx("ext", "show", "1001")[1]
    assert out.splitlines()[:9] == [
        "Extension 1001: Desk 1001",
        "State: unregistered",
        "Call limit: 4 calls at once",
        "Do not disturb: on",
        "Forward always: 1002",
        "Forward on busy: hangup",
        "Forward on no answer: 1003 after 25 s",
        "Forward when unavailable: 1004",
        "Ring groups: -",
    ]
    listed = pbx("ext", "list")[1].splitlines()
    assert re.split(r"  +", listed[0])[:4] == ["NUMBER", "NAME", "STATE", "DND / FORWARDS"]
    assert ("DND; always -> 1002; busy -> hangup; no answer (25 s) -> 1003;"
            " unavailable -> 1004") in listed[1]
    assert listed[2].rstrip().endswith("DND")
    assert pbx("ext", "forward", "1001", "--off", "no-answer")[1].splitlines()[0] == (
        "Extension 1001: no-answer off")
    assert pbx("ext", "forward", "1001", "--off")[1] == (
        "Extension 1001: all forwards off\nNow: DND\n")
    assert pbx("ext", "dnd", "1001", "off")[1] == "Extension 1001: do not disturb off\n"
    assert audits(pbx, "extension.")[-9:] == [
        (1, "extension.forward", "1001", "always -> 1002"),
        (1, "extension.forward", "1001", "no-answer -> 1003 after 25 s"),
        (1, "extension.forward", "1001", "busy -> hangup"),
        (1, "extension.forward", "1001", "unavailable -> 1004"),
        (1, "extension.dnd", "1001", "on"),
        (1, "extension.dnd", "1002", "on"),
        (1, "extension.forward", "1001", "no-answer off"),
        (1, "extension.forward", "1001", "all forwards off"),
        (1, "extension.dnd", "1001", "off"),
    ]


def test_ext_rm_says_what_else_changed(pbx):
    pbx("group", "add", "600", "--name", "Sales", "--members", "1001,1002")
    pbx("ext", "forward", "1003", "--no-answer", "1002")
    status, out, err = pbx("ext", "rm", "1002")
    assert (status, err) == (0, "")
    assert out.splitlines() == ["Extension 1002 deleted", "Also: left ring group 600 (Sales)",
                                "Also: forward on no answer of 1003"]
    assert audits(pbx, "extension.delete") == [
        (1, "extension.delete", "1002",
         "name 'Desk 1002'; left ring group 600 (Sales), forward on no answer of 1003")]


def test_show_names_the_groups_and_contacts(pbx):
    pbx("group", "add", "600", "--name", "Sales", "--members", "1001,1002")
    pbx("group", "add", "601", "--name", "Support", "--members", "1001")
    with sqlite3.connect(pbx.db_path) as conn:
        conn.execute("INSERT INTO binding (extension_id, aor, contact, source_host, source_port,"
                     " transport, expires_at, call_id, cseq, user_agent, instance,"
                     " registered_at, updated_at) SELECT id, 'sip:1001@pbx.test',"
                     " 'sip:1001@127.0.0.1:5070', '127.0.0.1', 5070, 'UDP', 4e9, 'c', 1,"
                     " 'baresip', '', 0, 0 FROM extension WHERE number = '1001'")
    out = pbx("ext", "show", "1001")[1].splitlines()
    assert out[1] == "State: registered (1 contact)"
    assert out[8] == "Ring groups: 600 (Sales), 601 (Support)"
    assert out[9].startswith("Outside calls: permission national, caller ID default,")
    assert out[10] == "  sip:1001@127.0.0.1:5070 from 127.0.0.1:5070/UDP (baresip)"


def test_the_real_pbxctl(tmp_path):
    """As an admin runs it (./pbxctl in a subprocess, `python -m pbxcli`): a refusal
    from pbxcli_routing is one line and exit 1, like every other command's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PBX_")}
    env.update(PBX_DB=str(tmp_path / "pbx.db"), PBX_REALM=REALM, PBX_PYTHON=sys.executable,
               PBX_RUN_DIR=str(tmp_path / "run"))

    def run(*argv):
        return subprocess.run([PBXCTL, *argv], env=env, capture_output=True, text=True,
                              timeout=60)

    assert run("ext", "add", "1001", "--generate").returncode == 0
    refused = run("group", "set", "600")
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr == ("pbxctl: nothing to change: give --name, --members, --strategy,"
                              " --ring-time, --member-time or --fallback\n")
    refused = run("group", "add", "600", "--name", "Sales", "--members", "1001,1002")
    assert (refused.returncode, refused.stderr) == (1, "pbxctl: member 1002 is not an extension\n")
    done = run("group", "add", "600", "--name", "Sales", "--members", "1001")
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    assert run("ext", "dnd", "1001", "on").stdout == (
        "Extension 1001: do not disturb on (callers get busy)\n")
