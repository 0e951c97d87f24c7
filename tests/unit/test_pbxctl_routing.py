"""pbxctl's ring group, forwarding and DND commands, run as an admin runs them (the
real ./pbxctl in a subprocess): what they print, what they store, and bad input as
one line on stderr with a non-zero exit and nothing changed (issue 11, item 8)."""

from __future__ import annotations

import pytest

from tests.unit.test_pbxctl_smalls import one_line, pbxctl, rows  # noqa: F401 - fixture

MEMBERS = "SELECT e.number FROM ring_group_member m JOIN extension e ON e.id = m.extension_id" \
          " JOIN ring_group g ON g.id = m.group_id WHERE g.number = '{}' ORDER BY m.position"


@pytest.fixture
def office(pbxctl):  # noqa: F811
    assert pbxctl("init").returncode == 0
    for number in ("1001", "1002", "1003"):
        assert pbxctl("ext", "add", number, "--generate").returncode == 0
    return pbxctl


def snapshot(run) -> list:
    return [rows(run.db_path, sql) for sql in (
        "SELECT * FROM ring_group ORDER BY id",
        "SELECT group_id, extension_id, position FROM ring_group_member ORDER BY id",
        "SELECT number, dnd, forward_always, forward_busy, forward_no_answer,"
        " forward_no_answer_after, forward_unavailable FROM extension ORDER BY number")]


def test_a_group_is_created_listed_shown_changed_and_removed(office):
    made = office("group", "add", "600", "--name", "Sales", "--members", "1003,1001",
                  "--strategy", "hunt", "--ring-time", "40", "--member-time", "10",
                  "--fallback", "1002")
    assert made.returncode == 0, made.stderr
    assert made.stdout == ("Ring group 600 created: 'Sales', hunt (10 s each), 40 s, "
                           "members 1003,1001, fallback 1002\n")
    assert rows(office.db_path, MEMBERS.format("600")) == [("1003",), ("1001",)]
    listed = office("group", "list").stdout.splitlines()
    assert listed[1].split() == ["600", "Sales", "hunt", "(10", "s", "each)", "40", "s",
                                 "1003,1001", "1002"]
    changed = office("group", "set", "600", "--members", "1001,1002,1003", "--strategy",
                     "ringall")
    assert changed.returncode == 0, changed.stderr
    assert rows(office.db_path, MEMBERS.format("600")) == [("1001",), ("1002",), ("1003",)]
    shown = office("group", "show", "600").stdout
    assert "Strategy: ringall" in shown and "  2. 1002" in shown, shown
    audit = rows(office.db_path, "SELECT action, target FROM audit_log WHERE action LIKE"
                 " 'group.%' ORDER BY id")
    assert audit == [("group.create", "600"), ("group.edit", "600")]
    assert office("group", "rm", "600").returncode == 0
    assert rows(office.db_path, "SELECT COUNT(*) FROM ring_group_member") == [(0,)]
    assert one_line(office("group", "show", "600")) == "pbxctl: no ring group 600"


@pytest.mark.parametrize("argv, message", [
    (["group", "add", "600", "--members", "1001,1999"], "member 1999 is not an extension"),
    (["group", "add", "1001", "--members", "1002"], "1001 is an extension's number"),
    (["group", "add", "600", "--members", "1001,1001"], "member 1001 is listed twice"),
    (["group", "add", "600", "--members", ""], "a ring group needs at least one member: --members 1001,1002,..."),
    (["group", "add", "600", "--members", "1001", "--ring-time", "2"],
     "ring time must be a whole number of seconds from 5 to 300, got '2'"),
    (["group", "add", "600", "--members", "1001", "--fallback", "600"],
     "fallback: 600 cannot forward to itself"),
    (["group", "add", "600", "--members", "1001", "--fallback", "voicemail"],
     "fallback: 'voicemail' is not a destination: give a number to dial or 'hangup'"),
    (["group", "add", "6a", "--members", "1001"], "group number '6a' must be 2 to 15 digits"),
    (["ext", "forward", "1001", "--always", "1001"], "forward: 1001 cannot forward to itself"),
    (["ext", "forward", "1001", "--busy", "1999"],
     "forward: 1999 is neither an extension nor a ring group"),
    (["ext", "forward", "1001", "--no-answer", "1002", "--after", "500"],
     "no-answer time must be a whole number of seconds from 5 to 120, got '500'"),
    (["ext", "forward", "1001", "--busy", "1002", "--after", "10"],
     "--after goes with --no-answer"),
    (["ext", "forward", "1999", "--busy", "1002"], "no extension 1999"),
    (["ext", "dnd", "1999", "on"], "no extension 1999"),
])
def test_bad_input_is_one_line_and_changes_nothing(office, argv, message):
    before = snapshot(office)
    result = office(*argv)
    assert result.returncode != 0
    assert one_line(result) == f"pbxctl: {message}"
    assert snapshot(office) == before


def test_a_group_number_is_not_free_for_an_extension(office):
    assert office("group", "add", "600", "--members", "1001").returncode == 0
    assert one_line(office("ext", "add", "600", "--generate")) == \
        "pbxctl: 600 is a ring group's number"


def test_forwards_and_dnd_are_stored_listed_and_turned_off(office):
    assert office("group", "add", "600", "--members", "1002,1003").returncode == 0
    for argv in (["--always", "600"], ["--busy", "1003"], ["--no-answer", "hangup", "--after",
                                                             "15"], ["--unavailable", "1002"]):
        result = office("ext", "forward", "1001", *argv)
        assert result.returncode == 0, result.stderr
    assert office("ext", "dnd", "1001", "on").stdout == "Extension 1001: do not disturb on\n"
    assert rows(office.db_path, "SELECT dnd, forward_always, forward_busy, forward_no_answer,"
                " forward_no_answer_after, forward_unavailable FROM extension"
                " WHERE number = '1001'") == [(1, "600", "1003", "hangup", 15, "1002")]
    listed = next(line for line in office("ext", "list").stdout.splitlines()
                  if line.startswith("1001"))
    assert listed.endswith("DND, always -> 600, busy -> 1003, no answer (15 s) -> hangup, "
                           "unavailable -> 1002"), listed
    assert office("ext", "forward", "1001", "--off", "busy").returncode == 0
    assert rows(office.db_path, "SELECT forward_busy, forward_always FROM extension"
                " WHERE number = '1001'") == [("", "600")]
    assert office("ext", "forward", "1001", "--off").stdout == \
        "Extension 1001: forwarding DND\n"
    assert office("ext", "dnd", "1001", "off").returncode == 0
    actions = rows(office.db_path, "SELECT action FROM audit_log WHERE target = '1001' AND"
                   " action IN ('extension.forward', 'extension.dnd')")
    assert len(actions) == 8


def test_deleting_an_extension_clears_what_leads_to_it(office):
    assert office("group", "add", "600", "--members", "1002,1003", "--fallback",
                  "1003").returncode == 0
    assert office("ext", "forward", "1001", "--busy", "1003").returncode == 0
    assert office("ext", "rm", "1003").returncode == 0
    assert rows(office.db_path, MEMBERS.format("600")) == [("1002",)]
    assert rows(office.db_path, "SELECT fallback FROM ring_group") == [("",)]
    assert rows(office.db_path, "SELECT forward_busy FROM extension"
                " WHERE number = '1001'") == [("",)]
