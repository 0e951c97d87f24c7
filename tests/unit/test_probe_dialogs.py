"""Issue 14, findings 2, 4 and 10, without sockets: the rules as tables, and the
B2BUA (sipd.b2bua) driven in-process through the real Handler, registrar,
SQLite database and call history on a clock the test moves
(tests/unit/b2bua_harness.py).
The media relay is the stand-in that only hands out ports; the phones' messages
are written out here. What sipd does on the wire is in tests/sip/test_probe_dialogs.py.
"""

from __future__ import annotations

import json
import sqlite3
import time

import pytest

from core import accounts
from core.config import ConfigError, load_settings
from core.models import AuditEntry, Extension
from sipd.b2bua import from_peer, held_both_ways
from sipd.control import ControlServer
from sipd.registrar import Destination, Source
from sipd.sip.dialog import Dialog
from tests.unit.b2bua_harness import (
    CALLEE,
    CALLER,
    PASSWORD,
    SDP,
    answer,
    digest,
    last,
    make_pbx,
    register_callee,
    request,
    tag_of,
)

STRANGER = Source("127.0.0.9", 5061, "UDP")

# --- the rules as tables -------------------------------------------------------------------


@pytest.mark.parametrize("peer, source, same", [
    # UDP: the phone's address, any port (a NAT may move the port, RFC 4787 REQ-2)
    (("192.0.2.7", 5060, "UDP"), ("192.0.2.7", 5060, "UDP"), True),
    (("192.0.2.7", 5060, "UDP"), ("192.0.2.7", 40000, "UDP"), True),
    (("192.0.2.7", 5060, "UDP"), ("192.0.2.8", 5060, "UDP"), False),
    (("2001:db8::7", 5060, "UDP"), ("2001:db8::8", 5060, "UDP"), False),
    # TCP/TLS: the very connection
    (("192.0.2.7", 40001, "TCP"), ("192.0.2.7", 40001, "TCP"), True),
    (("192.0.2.7", 40001, "TCP"), ("192.0.2.7", 40002, "TCP"), False),
    (("192.0.2.7", 40001, "TLS"), ("192.0.2.7", 40001, "TLS"), True),
    (("192.0.2.7", 40001, "TLS"), ("192.0.2.7", 40001, "TCP"), False),
    # another transport from the same address
    (("192.0.2.7", 5060, "UDP"), ("192.0.2.7", 5060, "TCP"), False),
    (("192.0.2.7", 40001, "TCP"), ("192.0.2.7", 40001, "UDP"), False),
])
def test_from_peer(peer, source, same):
    assert from_peer(Destination(*peer), Source(*source)) is same


@pytest.mark.parametrize("a, b, held", [
    ("sendrecv", "sendrecv", False),
    ("sendonly", "recvonly", False),  # an ordinary hold: the held side hears its music
    ("recvonly", "sendonly", False),
    ("sendonly", "sendrecv", False),
    ("inactive", "sendrecv", True),  # a=inactive from one phone: nothing flows
    ("sendrecv", "inactive", True),
    ("inactive", "inactive", True),
    ("sendonly", "inactive", True),
    ("sendonly", "sendonly", True),  # each side holding the other
    ("recvonly", "recvonly", True),
])
def test_held_both_ways(a, b, held):
    assert held_both_ways(a, b) is held


@pytest.mark.parametrize("call_id, local, remote, matches", [
    ("c1", "ours", "theirs", True),
    ("c2", "ours", "theirs", False),
    ("c1", "guessed", "theirs", False),
    ("c1", "ours", "stranger", False),
    ("c1", "ours", None, False),
    ("c1", None, "theirs", False),
])
def test_a_request_is_in_a_dialog_by_call_id_and_both_tags(call_id, local, remote, matches):
    """RFC 3261 §12.2.2."""
    dialog = Dialog("c1", "ours", "theirs", "<sip:a@x>", "<sip:b@x>", "sip:b@y", 1)
    assert dialog.matches(call_id, local, remote) is matches


def test_a_missing_remote_tag_is_no_wildcard():
    """A peer that sent no From tag (RFC 2543) matches only requests without one."""
    dialog = Dialog("c1", "ours", None, "<sip:a@x>", "<sip:b@x>", "sip:b@y", 1)
    assert dialog.matches("c1", "ours", None)
    assert not dialog.matches("c1", "ours", "anything")


@pytest.mark.parametrize("value", [
    "<sip:1002@pbx.test>;tag=3f2a9c",
    '"Alice" <sip:1002@pbx.test>;tag=a.b!c%d*e_f+g`h\'i~j-k',
    '"a>b;tag=no" <sip:1002@pbx.test;tag=uri-param>;tag=yes',
    "<sip:1002@pbx.test;tag=uri-param>",
    "<sip:1002@pbx.test>",
    "<sip:1002@pbx.test> ; TAG = spaced ;x=1",
    "sip:1002@pbx.test;tag=bare",
    "sip:1002@pbx.test",
    "<sip:1002@pbx.test>;tagged=no;tag=yes",
])
def test_tag_param_reads_what_name_addr_reads(value):
    from sipd.sip.dialog import tag_param
    from sipd.sip.headers import NameAddr

    assert tag_param(value) == NameAddr.parse(value).tag


@pytest.mark.parametrize("raw, expected", [(None, 3600), ("", 3600), ("0", 0), ("90", 90)])
def test_hold_timeout_setting(raw, expected):
    env = {} if raw is None else {"PBX_CALL_HOLD_TIMEOUT": raw}
    assert load_settings(env).call_hold_timeout == expected


@pytest.mark.parametrize("raw, message", [
    ("-1", "PBX_CALL_HOLD_TIMEOUT: must be at least 0, got -1"),
    ("1h", "PBX_CALL_HOLD_TIMEOUT: expected a whole number, got '1h'"),
])
def test_a_malformed_hold_timeout_is_refused(raw, message):
    with pytest.raises(ConfigError) as error:
        load_settings({"PBX_CALL_HOLD_TIMEOUT": raw})
    assert str(error.value) == message


@pytest.mark.parametrize("value, ok", [
    ("1", True), (" 4 ", True), (1000, True), ("0", False), ("1001", False), ("-1", False),
    ("4.5", False), ("", False), (None, False), ("٣", False),
])
def test_check_max_calls(value, ok):
    if ok:
        assert accounts.check_max_calls(value) == int(str(value).strip())
    else:
        with pytest.raises(accounts.AccountError, match="call limit must be a whole number"):
            accounts.check_max_calls(value)


# --- the B2BUA in-process, on a clock the test moves -----------------------------------------------


@pytest.fixture
def pbx(tmp_path):
    harness = make_pbx(tmp_path, numbers=("1001", "1002", "1003"), hold_timeout=60)
    register_callee(harness.handle, harness.sent)
    yield harness.calls, harness.sent, harness.handle, harness.scheduler, harness
    harness.stack.database.close()


def ended(harness, row_id: int) -> tuple:
    row = harness.row(row_id)
    return row["disposition"], row["hangup_by"], row["reason"]


def call(pbx, call_id="c1@test", branch="x", number="1001", source=CALLER,
         extra_from=""):
    """An answered call from `number`; (the caller's To tag param, the INVITE sent
    to the callee)."""
    calls, sent, handle, _, _ = pbx
    handle(request("INVITE", 1, branch + "1", body=SDP, call_id=call_id, number=number,
                   source=source), source)
    challenge = last(sent, b"SIP/2.0 407")
    handle(request("INVITE", 2, branch + "2", body=SDP, call_id=call_id, number=number,
                   source=source, extra=digest(number, "INVITE", challenge,
                                               "Proxy-Authorization")), source)
    invite = last(sent, b"INVITE ")
    handle(answer(invite, "200 OK", SDP), CALLEE)
    ok = last(sent, b"SIP/2.0 200")
    to_tag = ";tag=" + tag_of(ok, b"To")
    handle(request("ACK", 2, branch + "3", to_tag=to_tag, call_id=call_id, number=number,
                   source=source), source)
    return to_tag, invite


def reinvite(pbx, to_tag, direction, cseq=3, branch="h"):
    """The caller offers `direction`; the callee answers in kind (RFC 3264 §6.1)."""
    calls, sent, handle, _, _ = pbx
    offer = SDP.replace("a=sendrecv", f"a={direction}")
    handle(request("INVITE", cseq, f"{branch}{cseq}", body=offer, to_tag=to_tag))
    relayed = last(sent, b"INVITE ")
    assert f"a={direction}".encode() in relayed
    reply = {"sendonly": "recvonly", "recvonly": "sendonly"}.get(direction, direction)
    handle(answer(relayed, "200 OK", SDP.replace("a=sendrecv", f"a={reply}")), CALLEE)
    handle(request("ACK", cseq, f"{branch}{cseq}a", to_tag=to_tag))


def test_a_call_held_both_ways_ends_after_the_hold_timeout(pbx):
    calls, sent, handle, scheduler, harness = pbx
    to_tag, _ = call(pbx)
    reinvite(pbx, to_tag, "inactive")
    (row_id, live), = calls.calls.items()
    assert calls.held == {row_id: live}
    scheduler.advance(59)
    assert calls.calls, "ended before its time"
    sent.clear()
    scheduler.advance(1)
    assert calls.calls == {} and calls.held == {}
    assert [d.split(b" ")[0] for d in sent].count(b"BYE") == 2
    assert ended(harness, row_id) == ("ANSWERED", "system", "on hold both ways for 60 s")


def test_a_one_way_hold_is_not_ended(pbx):
    """sendonly answered recvonly: the held side still gets the holder's audio
    (music or silence); only the maximum call duration ends it."""
    calls, sent, handle, scheduler, harness = pbx
    to_tag, _ = call(pbx)
    reinvite(pbx, to_tag, "sendonly")
    assert calls.held == {}
    scheduler.advance(4 * 3600 - 1)
    assert len(calls.calls) == 1
    (row_id,) = calls.calls
    scheduler.advance(1)
    assert calls.calls == {}
    assert ended(harness, row_id) == ("ANSWERED", "system", "maximum call duration reached")


def test_taking_the_call_off_hold_stops_the_hold_time(pbx):
    calls, sent, handle, scheduler, _ = pbx
    to_tag, _ = call(pbx)
    reinvite(pbx, to_tag, "inactive", cseq=3)
    scheduler.advance(50)
    reinvite(pbx, to_tag, "sendrecv", cseq=4)
    assert calls.held == {}
    scheduler.advance(50)
    assert len(calls.calls) == 1
    # Held again: the time counts from the new hold.
    reinvite(pbx, to_tag, "inactive", cseq=5)
    scheduler.advance(59)
    assert len(calls.calls) == 1
    scheduler.advance(1)
    assert calls.calls == {}


def test_a_hold_timeout_of_0_never_ends_a_held_call(pbx):
    calls, sent, handle, scheduler, _ = pbx
    calls.hold_timeout = 0
    to_tag, _ = call(pbx)
    reinvite(pbx, to_tag, "inactive")
    scheduler.advance(4 * 3600 - 1)  # the maximum call duration (4 h) still ends it
    assert len(calls.calls) == 1


def test_a_strangers_cseq_does_not_move_the_dialog(pbx):
    """Matched first, counted after: a stranger's BYE with the right tags and a
    huge CSeq gets 481 and leaves the dialog's CSeq alone, so the phone's own
    next request is still in order (§12.2.2)."""
    calls, sent, handle, _, _ = pbx
    to_tag, _ = call(pbx)
    handle(request("BYE", 2**31 - 1, "s1", to_tag=to_tag, source=STRANGER), STRANGER)
    assert last(sent, b"SIP/2.0 481").count(b"CSeq: 2147483647 BYE")
    assert len(calls.calls) == 1
    handle(request("BYE", 3, "s2", to_tag=to_tag))
    assert last(sent, b"SIP/2.0 200").count(b"CSeq: 3 BYE")
    assert calls.calls == {}


def test_the_phones_bye_from_a_new_port_still_counts(pbx):
    """UDP: a NAT that gave the caller's requests a new port (same address)."""
    calls, sent, handle, _, _ = pbx
    to_tag, _ = call(pbx)
    moved = Source(CALLER.host, CALLER.port + 1000, "UDP")
    handle(request("BYE", 3, "m1", to_tag=to_tag, source=moved), moved)
    assert last(sent, b"SIP/2.0 200").count(b"CSeq: 3 BYE")
    assert calls.calls == {}


def test_an_ack_from_a_stranger_does_not_stop_the_2xx(pbx):
    """The ACK of a 2xx is a request in the dialog (§13.2.2.4): from anyone but
    the caller it is ignored, and our 2xx stays pending until the caller's."""
    calls, sent, handle, _, _ = pbx
    handle(request("INVITE", 1, "a1", body=SDP))
    challenge = last(sent, b"SIP/2.0 407")
    handle(request("INVITE", 2, "a2", body=SDP,
                   extra=digest("1001", "INVITE", challenge, "Proxy-Authorization")))
    handle(answer(last(sent, b"INVITE "), "200 OK", SDP), CALLEE)
    to_tag = ";tag=" + tag_of(last(sent, b"SIP/2.0 200"), b"To")
    (live,) = calls.calls.values()
    handle(request("ACK", 2, "a3", to_tag=to_tag, source=STRANGER), STRANGER)
    assert live.caller.pending_2xx is not None
    handle(request("ACK", 2, "a4", to_tag=to_tag))
    assert live.caller.pending_2xx is None


def test_per_extension_counts_follow_the_calls(pbx):
    """A call counts once against each of its extensions while it rings or
    talks, and gives its place back when it ends, however it ends."""
    calls, sent, handle, _, harness = pbx
    first, _ = call(pbx, call_id="one@test", branch="o")
    call(pbx, call_id="two@test", branch="t", number="1003",
         source=Source("127.0.0.1", 5063, "UDP"))
    assert calls.per_extension == {"1001": 1, "1002": 2, "1003": 1}
    handle(request("BYE", 3, "ob", to_tag=first, call_id="one@test"))
    assert calls.per_extension == {"1002": 1, "1003": 1}
    (row_id,) = calls.calls
    assert calls.hangup_by_id(row_id)
    assert calls.per_extension == {} and calls.calls == {}


def test_a_refused_caller_is_recorded_with_the_cause(pbx, caplog):
    calls, sent, handle, _, harness = pbx
    Extension.update(max_calls=1).where(Extension.number == "1001").execute()
    call(pbx, call_id="one@test", branch="o")
    with caplog.at_level("INFO", logger="sipd"):
        handle(request("INVITE", 1, "p1", body=SDP, call_id="two@test"))
        challenge = last(sent, b"SIP/2.0 407")
        handle(request("INVITE", 2, "p2", body=SDP, call_id="two@test",
                       extra=digest("1001", "INVITE", challenge, "Proxy-Authorization")))
    assert last(sent, b"SIP/2.0 4").startswith(b"SIP/2.0 403 Forbidden: call limit of 1001")
    refused = harness.rows()[-1]
    assert refused["sip_status"] == 403
    assert ended(harness, refused["id"]) == (
        "FAILED", "system", "caller 1001 is in 1 calls, its limit")
    assert "Call 1001 -> 1002 refused: 403 caller 1001 is in 1 calls, its limit" in caplog.text


def test_the_callee_is_shown_the_configured_name(pbx):
    calls, sent, handle, _, harness = pbx
    accounts.update_extension("1001", name='Front "desk"')
    extra = 'X-Nothing: 1\r\n'
    text = request("INVITE", 1, "d1", body=SDP, extra=extra).replace(
        "From: <sip:1001@", 'From: "The CEO" <sip:1001@')
    handle(text)
    challenge = last(sent, b"SIP/2.0 407")
    text = request("INVITE", 2, "d2", body=SDP, extra=digest(
        "1001", "INVITE", challenge, "Proxy-Authorization")).replace(
        "From: <sip:1001@", 'From: "The CEO" <sip:1001@')
    handle(text)
    invite = last(sent, b"INVITE ")
    assert b'From: "Front \\"desk\\"" <sip:1001@pbx.test>;tag=' in invite, invite
    (row,) = harness.rows()
    assert (row["caller_name"], row["caller_claimed"]) == ('Front "desk"', "The CEO")


def test_control_hangup_is_by_row_id(pbx, tmp_path):
    calls, sent, handle, _, harness = pbx
    call(pbx)
    (row_id,) = calls.calls
    server = ControlServer(str(tmp_path / "sipd.sock"), calls)
    try:
        assert server.execute(json.dumps({"command": "hangup", "call_id": "c1@test"}).encode()) \
            == {"ok": False, "error": "hangup needs the call's id (a whole number)"}
        assert server.execute(json.dumps({"command": "hangup", "id": str(row_id)}).encode()) \
            == {"ok": False, "error": "hangup needs the call's id (a whole number)"}
        assert server.execute(json.dumps({"command": "hangup", "id": row_id + 1}).encode()) \
            == {"ok": False, "error": "no such call (it may have ended)"}
        assert len(calls.calls) == 1
        assert server.execute(json.dumps({"command": "hangup", "id": row_id}).encode()) \
            == {"ok": True}
        assert calls.calls == {}
        assert ended(harness, row_id) == ("ANSWERED", "system", "hung up by an admin")
    finally:
        server.close()


# --- the schema and pbxctl ------------------------------------------------------------------------


def test_migration_0005_on_a_database_with_calls(tmp_path):
    """From 0004: call_id no longer unique, the claimed name kept, limit 4."""
    from core import migrations
    from core.database import connect

    path = tmp_path / "old.db"
    database = connect(load_settings({"PBX_DB": str(path)}), migrate=False)
    database.create_tables([migrations.SchemaVersion])
    for number, name in migrations.available():
        if number < 5:
            __import__(f"core.migrations.{name}", fromlist=["up"]).up(None, database)
            migrations.SchemaVersion.create(version=number)
    database.execute_sql(
        "INSERT INTO extension (number, name, enabled, realm, ha1_md5, ha1_sha256, created_at,"
        " updated_at) VALUES ('1001', '', 1, 'r', 'x', 'y', 0, 0)")
    database.execute_sql(
        "INSERT INTO call (call_id, caller, caller_name, callee, caller_source, callee_contact,"
        " state, started_at, reason, caller_media, callee_media, codec) VALUES"
        " ('same@x', '1001', 'Claimed', '1002', '', '', 'ended', 0, '', '', '', '')")
    with pytest.raises(Exception, match="UNIQUE"):
        database.execute_sql("INSERT INTO call (call_id, caller, caller_name, callee,"
                             " caller_source, callee_contact, state, started_at, reason,"
                             " caller_media, callee_media, codec) SELECT call_id, caller,"
                             " caller_name, callee, caller_source, callee_contact, state,"
                             " started_at, reason, caller_media, callee_media, codec FROM call")
    assert 5 in migrations.migrate(database)
    database.close()
    with sqlite3.connect(path) as connection:
        connection.execute("INSERT INTO call (call_id, caller, caller_name, callee,"
                           " caller_source, callee_contact, state, started_at, reason,"
                           " caller_media, callee_media, codec) VALUES ('same@x', '1001', '',"
                           " '1002', '', '', 'ringing', 1, '', '', '', '')")
        assert connection.execute("SELECT caller_name, caller_claimed FROM call ORDER BY id"
                                  ).fetchall() == [("Claimed", "Claimed"), ("", "")]
        assert connection.execute("SELECT max_calls FROM extension").fetchall() == [(4,)]


@pytest.fixture
def cli(pbxctl):
    return pbxctl


def test_pbxctl_sets_the_call_limit(cli):
    assert cli("ext", "add", "1001", "--password", PASSWORD, "--max-calls", "2")[0] == 0
    assert Extension.by_number("1001").max_calls == 2
    assert cli("ext", "add", "1002", "--password", PASSWORD)[0] == 0
    assert Extension.by_number("1002").max_calls == 4
    assert cli("ext", "set", "1002", "--max-calls", "7") == (
        0, "Extension 1002: at most 7 calls at once\n", "")
    assert Extension.by_number("1002").max_calls == 7
    entries = [(e.action, e.target, e.detail) for e in AuditEntry.select().order_by(AuditEntry.id)]
    assert entries[0] == ("extension.create", "1001", "password set, call limit 2")
    assert entries[-1] == ("extension.edit", "1002", "call limit 4 -> 7")


@pytest.mark.parametrize("argv, message", [
    (("ext", "set", "1002", "--max-calls", "0"),
     "pbxctl: call limit must be a whole number from 1 to 1000, got '0'\n"),
    (("ext", "set", "1002", "--max-calls", "many"),
     "pbxctl: call limit must be a whole number from 1 to 1000, got 'many'\n"),
    (("ext", "set", "1009", "--max-calls", "3"), "pbxctl: no extension 1009\n"),
    (("ext", "add", "1003", "--password", PASSWORD, "--max-calls", "5000"),
     "pbxctl: call limit must be a whole number from 1 to 1000, got '5000'\n"),
    (("calls", "--hangup", "41"), "pbxctl: no live call 41 (pbxctl calls --active lists them)\n"),
])
def test_pbxctl_refuses_bad_limits_with_one_line(cli, argv, message):
    assert cli("ext", "add", "1002", "--password", PASSWORD)[0] == 0
    assert cli(*argv) == (1, "", message)
    assert Extension.by_number("1002").max_calls == 4
    assert Extension.by_number("1003") is None


def test_pbxctl_hangup_with_sipd_down_says_why(cli):
    from core.models import Call

    cli("init")
    live = Call.create(call_id="x@y", caller="1001", callee="1002", state="answered",
                       started_at=time.time())
    status, out, err = cli("calls", "--hangup", str(live.id))
    assert status == 1 and out == ""
    assert err.startswith(f"pbxctl: could not hang up call {live.id}: sipd is not running")
