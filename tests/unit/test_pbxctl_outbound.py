"""pbxctl's commands for outside calls (pbxcli_outbound.py, core/outbound.py): inbound and
outbound routes, extension permissions and limits, the toll-fraud policy, fraud events
and unblocking; each change audited, bad input one line on stderr, exit 1, nothing written."""

from __future__ import annotations

import re
import sqlite3
import time

import pytest


@pytest.fixture
def pbx(pbxctl):
    assert pbxctl("init")[0] == 0
    assert pbxctl("ext", "add", "1001", "--password", "Long-enough-pw-1")[0] == 0
    assert pbxctl("ext", "add", "1002", "--password", "Long-enough-pw-2")[0] == 0
    assert pbxctl("group", "add", "600", "--name", "Sales", "--members", "1001,1002")[0] == 0
    assert pbxctl("trunk", "add", "acme", "--host", "127.0.0.1:5080", "--username", "u",
                  "--password", "pw", "--register")[0] == 0
    assert pbxctl("trunk", "add", "backup", "--host", "127.0.0.2",
                  "--match", "127.0.0.2")[0] == 0
    return pbxctl


def rows(pbx, sql: str, *params) -> list[tuple]:
    with sqlite3.connect(pbx.db_path) as conn:
        return conn.execute(sql, params).fetchall()


def audit(pbx, prefix: str) -> list[tuple]:
    return rows(pbx, "SELECT action, target, detail FROM audit_log WHERE action LIKE ?"
                     " ORDER BY id", prefix + "%")


def refused(pbx, *argv) -> str:
    status, out, err = pbx(*argv)
    assert status != 0, out
    assert err.count("\n") == 1 and err.startswith("pbxctl"), err
    return err


# -- inbound --------------------------------------------------------------------------------


def test_inbound_add_list_rm(pbx):
    status, out, err = pbx("inbound", "add", "998712001122", "--to", "600")
    assert (status, err) == (0, "") and "998712001122 on any trunk -> 600" in out
    assert pbx("inbound", "add", "998712001122", "--to", "1001", "--trunk", "acme")[0] == 0
    assert pbx("inbound", "add", "+998712009999", "--to", "hangup")[0] == 0
    assert sorted(rows(pbx, "SELECT did, trunk_id IS NULL, destination FROM inbound_route")) == [
        ("+998712009999", 1, "hangup"), ("998712001122", 0, "1001"),
        ("998712001122", 1, "600")]
    status, out, _ = pbx("inbound", "list")
    assert status == 0 and "(any)" in out and "acme" in out and "600" in out
    assert [a[:2] for a in audit(pbx, "inbound.")] == [
        ("inbound.create", "998712001122"), ("inbound.create", "998712001122"),
        ("inbound.create", "+998712009999")]
    # --trunk takes only that trunk's route; without it every route of the DID goes.
    assert pbx("inbound", "rm", "998712001122", "--trunk", "acme")[0] == 0
    assert rows(pbx, "SELECT destination FROM inbound_route WHERE did='998712001122'") == [
        ("600",)]
    status, out, _ = pbx("inbound", "rm", "+998712009999")
    assert status == 0 and "deleted" in out
    assert audit(pbx, "inbound.delete")[-1][:2] == ("inbound.delete", "+998712009999")


@pytest.mark.parametrize(("argv", "words"), [
    (("inbound", "add", "12ab", "--to", "1001"), "DID '12ab' must be 1 to 31 digits"),
    (("inbound", "add", "5551234", "--to", "1999"), "no extension or ring group, and no outbound route takes it"),
    (("inbound", "add", "5551234", "--to", "voicemail:"), "is not a destination"),
    (("inbound", "add", "5551234", "--to", "1001", "--trunk", "nope"), "no trunk nope"),
    (("inbound", "rm", "5550000"), "no inbound route for DID 5550000"),
])
def test_inbound_refusals_write_nothing(pbx, argv, words):
    assert words in refused(pbx, *argv)
    assert rows(pbx, "SELECT count(*) FROM inbound_route") == [(0,)]
    assert audit(pbx, "inbound.") == []


def test_inbound_same_did_twice_refused_also_for_any_trunk(pbx):
    assert pbx("inbound", "add", "5551234", "--to", "1001")[0] == 0
    assert "already has a route" in refused(pbx, "inbound", "add", "5551234", "--to", "1002")
    assert pbx("inbound", "add", "5551234", "--to", "1002", "--trunk", "acme")[0] == 0
    assert "on trunk acme" in refused(pbx, "inbound", "add", "5551234", "--to", "600",
                                      "--trunk", "acme")


def test_deleting_the_destination_removes_its_inbound_route(pbx):
    assert pbx("inbound", "add", "5551234", "--to", "600")[0] == 0
    status, out, _ = pbx("group", "rm", "600")
    assert status == 0 and "inbound route of DID 5551234" in out
    assert rows(pbx, "SELECT count(*) FROM inbound_route") == [(0,)]


def test_deleting_a_trunk_deletes_its_inbound_routes(pbx):
    assert pbx("inbound", "add", "5551234", "--to", "1001", "--trunk", "backup")[0] == 0
    assert pbx("trunk", "rm", "backup")[0] == 0
    assert rows(pbx, "SELECT count(*) FROM inbound_route") == [(0,)]


# -- outbound -------------------------------------------------------------------------------


def test_outbound_add_list_set_rm(pbx):
    status, out, err = pbx("outbound", "add", "national", "--trunks", "acme,backup",
                           "--pattern", "9|0XXXXXXXX", "--pattern", "998+|XXXXXXXXX",
                           "--caller-id", "+998712001122")
    assert (status, err) == (0, "") and "trunks acme,backup" in out
    assert rows(pbx, "SELECT name, position, patterns, caller_id, emergency FROM outbound_route"
                ) == [("national", 0, "9|0XXXXXXXX\n998+|XXXXXXXXX", "+998712001122", 0)]
    assert rows(pbx, "SELECT t.name, r.position FROM outbound_route_trunk r JOIN trunk t"
                     " ON t.id = r.trunk_id ORDER BY r.position") == [("acme", 0), ("backup", 1)]
    # An emergency route goes before the others, so no broad pattern takes 112 first.
    assert pbx("outbound", "add", "emergency", "--trunks", "backup", "--pattern", "112",
               "--pattern", "103", "--emergency")[0] == 0
    assert pbx("outbound", "add", "intl", "--trunks", "acme", "--pattern", "00.")[0] == 0
    order = rows(pbx, "SELECT name FROM outbound_route ORDER BY position")
    assert order == [("emergency",), ("national",), ("intl",)]
    status, out, _ = pbx("outbound", "list")
    lines = out.splitlines()
    assert status == 0 and "emergency" in lines[1] and "yes" in lines[1]
    assert "9|0XXXXXXXX 998+|XXXXXXXXX" in lines[2] and "acme,backup" in lines[2]
    status, out, _ = pbx("outbound", "set", "intl", "--position", "1", "--trunks", "backup,acme")
    assert status == 0
    assert rows(pbx, "SELECT name, position FROM outbound_route ORDER BY position") == [
        ("intl", 0), ("emergency", 1), ("national", 2)]
    assert pbx("outbound", "set", "intl", "--name", "world", "--pattern", "810.")[0] == 0
    assert rows(pbx, "SELECT patterns FROM outbound_route WHERE name='world'") == [("810.",)]
    assert pbx("outbound", "rm", "emergency")[0] == 0
    assert rows(pbx, "SELECT name, position FROM outbound_route ORDER BY position") == [
        ("world", 0), ("national", 1)]
    assert rows(pbx, "SELECT count(*) FROM outbound_route_trunk") == [(4,)]
    assert [a[:2] for a in audit(pbx, "outbound.")] == [
        ("outbound.create", "national"), ("outbound.create", "emergency"),
        ("outbound.create", "intl"), ("outbound.edit", "intl"), ("outbound.edit", "world"),
        ("outbound.delete", "emergency")]


@pytest.mark.parametrize(("argv", "words"), [
    (("--trunks", "acme", "--pattern", "9|0XX[X"), "9|0XX[X"),
    (("--trunks", "acme", "--pattern", "1.2"), "1.2"),
    (("--trunks", "nope", "--pattern", "0X."), "no trunk nope"),
    (("--trunks", "acme,acme", "--pattern", "0X."), "trunk acme is given twice"),
    (("--trunks", "", "--pattern", "0X."), "needs at least one trunk"),
    (("--trunks", "acme", "--pattern", "0X.", "--pattern", "0X."), "given twice"),
    (("--trunks", "acme", "--pattern", " "), "at least one dial pattern"),
    (("--trunks", "acme", "--pattern", "0X.", "--caller-id", "12a"), "caller ID must be digits"),
    (("--trunks", "acme", "--pattern", "0X.", "--position", "0"), "position must be 1 or more"),
])
def test_outbound_refusals_write_nothing(pbx, argv, words):
    assert words in refused(pbx, "outbound", "add", "r1", *argv)
    assert rows(pbx, "SELECT count(*) FROM outbound_route") == [(0,)]
    assert rows(pbx, "SELECT count(*) FROM outbound_route_trunk") == [(0,)]
    assert audit(pbx, "outbound.") == []


def test_outbound_name_taken_and_missing(pbx):
    assert pbx("outbound", "add", "r1", "--trunks", "acme", "--pattern", "0X.")[0] == 0
    assert "already exists" in refused(pbx, "outbound", "add", "r1", "--trunks", "acme",
                                       "--pattern", "1X.")
    assert "route name 'bad name' must be" in refused(pbx, "outbound", "add", "bad name", "--trunks", "acme",
                                     "--pattern", "1X.")
    assert "no outbound route r2" in refused(pbx, "outbound", "rm", "r2")
    assert "nothing to change" in refused(pbx, "outbound", "set", "r1")
    assert "no trunk zz" in refused(pbx, "outbound", "set", "r1", "--trunks", "zz")
    assert rows(pbx, "SELECT count(*) FROM outbound_route_trunk") == [(1,)]


def test_a_route_whose_only_trunk_is_deleted_is_listed_as_taking_no_call(pbx):
    assert pbx("outbound", "add", "r1", "--trunks", "backup", "--pattern", "0X.")[0] == 0
    status, out, _ = pbx("trunk", "rm", "backup")
    assert status == 0 and "Outbound route r1 has no trunk left" in out
    status, out, _ = pbx("outbound", "list")
    assert status == 0 and "(none: takes no call)" in out


# -- extensions -----------------------------------------------------------------------------


def test_new_extensions_are_national_and_permit_changes_it(pbx):
    assert rows(pbx, "SELECT outbound_permission FROM extension WHERE number='1001'") == [
        ("national",)]
    for permission in ("international", "internal"):
        status, out, err = pbx("ext", "permit", "1001", permission)
        assert (status, err) == (0, "") and permission in out
        assert rows(pbx, "SELECT outbound_permission FROM extension WHERE number='1001'") == [
            (permission,)]
    assert audit(pbx, "extension.permit") == [
        ("extension.permit", "1001", "international"), ("extension.permit", "1001", "internal")]
    assert "permission must be internal, national or international" in refused(
        pbx, "ext", "permit", "1001", "everything")
    assert "no extension 1999" in refused(pbx, "ext", "permit", "1999", "national")


def test_ext_outbound_limits_and_caller_id(pbx):
    status, out, _ = pbx("ext", "outbound", "1001", "--max-calls", "1",
                         "--calls-per-hour", "5", "--caller-id", "+998712001122")
    assert status == 0 and "max calls 1," in out and "minutes per hour 120 (policy)" in out
    assert rows(pbx, "SELECT outbound_max_calls, outbound_calls_per_hour,"
                     " outbound_minutes_per_hour, outbound_caller_id FROM extension"
                     " WHERE number='1001'") == [(1, 5, None, "+998712001122")]
    assert pbx("ext", "outbound", "1001", "--max-calls", "default")[0] == 0
    assert rows(pbx, "SELECT outbound_max_calls FROM extension WHERE number='1001'") == [
        (None,)]
    assert len(audit(pbx, "extension.outbound")) == 2
    status, out, _ = pbx("ext", "show", "1001")
    assert status == 0 and "Outside calls: permission national, caller ID +998712001122," in out
    assert "max calls 2 (policy), calls per hour 5," in out
    assert "must be 1 to 1000" in refused(pbx, "ext", "outbound", "1001", "--max-calls", "0")
    assert "must be 1 to 10000" in refused(pbx, "ext", "outbound", "1001",
                                           "--calls-per-hour", "x")
    assert len(audit(pbx, "extension.outbound")) == 2


def test_unblock_lifts_the_block_and_fraud_list_shows_events(pbx):
    now = time.time()
    with sqlite3.connect(pbx.db_path) as conn:
        conn.execute("UPDATE extension SET outbound_blocked_at=?, outbound_blocked_reason=?"
                     " WHERE number='1001'", (now, "31 calls in an hour (limit 30)"))
        conn.execute("INSERT INTO fraud_event (created_at, extension, number, rule, detail,"
                     " trunk, source) VALUES (?, '1001', '00441234567', 'calls_per_hour',"
                     " '31 calls in an hour (limit 30)', 'acme', '127.0.0.1')", (now,))
        conn.execute("INSERT INTO fraud_event (created_at, extension, number, rule, detail,"
                     " trunk, source) VALUES (?, '1002', '0037112345', 'permission',"
                     " 'international calls not allowed for 1002', '', '127.0.0.1')",
                     (now - 60,))
    status, out, _ = pbx("fraud", "list")
    lines = out.splitlines()
    assert status == 0 and "calls_per_hour" in lines[1] and "00441234567" in lines[1]
    assert "permission" in lines[2] and "1002" in lines[2]
    assert "Blocked: 1001" in out and "pbxctl ext unblock 1001" in out
    status, out, _ = pbx("fraud", "list", "--ext", "1002")
    assert status == 0 and "00441234567" not in out and "0037112345" in out
    status, out, _ = pbx("ext", "unblock", "1001")
    assert status == 0 and "may call out again" in out
    assert rows(pbx, "SELECT outbound_blocked_at, outbound_blocked_reason FROM extension"
                     " WHERE number='1001'") == [(None, "")]
    assert audit(pbx, "extension.unblock") == [
        ("extension.unblock", "1001", "was: 31 calls in an hour (limit 30)")]
    assert "is not blocked" in refused(pbx, "ext", "unblock", "1001")
    assert "Blocked" not in pbx("fraud", "list")[1]
    assert "-n must be" in refused(pbx, "fraud", "list", "-n", "0")


# -- policy ---------------------------------------------------------------------------------


def test_policy_defaults_and_set(pbx):
    status, out, _ = pbx("policy", "show")
    assert status == 0 and "none (no international call is allowed until it is set)" in out
    assert re.search(r"outside calls at once per extension +2\n", out)
    status, out, err = pbx("policy", "set", "--home-country", "+998", "--allow", "7, 44,+7",
                           "--calls-per-hour", "10", "--trunk-max-calls", "3")
    assert (status, err) == (0, "")
    assert rows(pbx, "SELECT home_country, allowed_countries, max_calls, calls_per_hour,"
                     " minutes_per_hour, trunk_max_calls FROM outbound_policy") == [
        ("998", "7,44", 2, 10, 120, 3)]
    status, out, _ = pbx("policy", "show")
    assert "+998" in out and "+7,+44" in out
    (entry,) = audit(pbx, "policy.edit")
    assert "home country none" in entry[2] and "-> home country +998" in entry[2]
    assert pbx("policy", "set", "--allow", "")[0] == 0
    assert rows(pbx, "SELECT allowed_countries FROM outbound_policy") == [("",)]


@pytest.mark.parametrize(("argv", "words"), [
    (("--home-country", "99"), "'99' is not a country code"),
    (("--home-country", "9981"), "is not a country code"),
    (("--allow", "7,abc"), "'abc' is not a country code"),
    (("--max-calls", "0"), "outside calls at once per extension must be 1 to 1000"),
    (("--minutes-per-hour", "-5"), "must be 1 to 60000"),
    ((), "nothing to change"),
])
def test_policy_refusals_write_nothing(pbx, argv, words):
    assert words in refused(pbx, "policy", "set", *argv)
    assert rows(pbx, "SELECT home_country, allowed_countries, max_calls, minutes_per_hour"
                     " FROM outbound_policy") == [("", "", 2, 120)]
    assert audit(pbx, "policy.") == []


# -- recording per route (migration 0018) ---------------------------------------------------


def test_routes_record_their_calls_only_when_told(pbx):
    assert pbx("inbound", "add", "998712001122", "--to", "600")[0] == 0
    status, out, _ = pbx("inbound", "add", "998712003344", "--to", "1001", "--record")
    assert status == 0 and out.rstrip().endswith("-> 1001, recorded"), out
    assert sorted(rows(pbx, "SELECT did, record FROM inbound_route")) == [
        ("998712001122", 0), ("998712003344", 1)]
    status, out, _ = pbx("inbound", "list")
    assert [line.split()[-1] for line in out.splitlines()[1:]] == ["no", "yes"], out

    assert pbx("outbound", "add", "local", "--trunks", "acme", "--pattern", "9|.")[0] == 0
    assert rows(pbx, "SELECT record FROM outbound_route") == [(0,)]
    status, out, _ = pbx("outbound", "set", "local", "--record")
    assert status == 0 and "recorded" in out, out
    assert rows(pbx, "SELECT record FROM outbound_route") == [(1,)]
    assert audit(pbx, "outbound.edit")[-1][2].endswith(", recorded")
    status, out, _ = pbx("outbound", "list")
    assert out.splitlines()[1].split()[-1] == "yes", out
    assert pbx("outbound", "set", "local", "--no-record")[0] == 0
    assert rows(pbx, "SELECT record FROM outbound_route") == [(0,)]
    assert "--record" in refused(pbx, "outbound", "set", "local")
