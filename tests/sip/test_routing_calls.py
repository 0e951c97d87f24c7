"""Ring groups, forwarding, DND and feature codes end to end: a real sipd, each phone
a sipp of its own (issue 11, "Show"). The rules themselves are tables in
tests/unit/test_routing.py; here the B2BUA carries the plans out on the wire: who
gets an INVITE and when, who is CANCELled, what the callee is shown, what the
caller finally hears, and what the history keeps.
"""

from __future__ import annotations

import sqlite3
import sys

import pytest

from tests.sip import callkit as ck
from tests.support import ROOT

NUMBERS = ("1001", "1002", "1003", "1004", "1005")


@pytest.fixture
def server(tmp_path):
    server = ck.SipdServer(tmp_path, numbers=NUMBERS, PBX_RING_TIMEOUT="6")
    server.start()
    yield server
    server.stop()


def configure(server, change) -> None:
    """Change the PBX as the panel or pbxctl would, while sipd runs (it reads the
    database for every call: nothing to reload)."""
    from core.config import load_settings
    from core.database import connect

    database = connect(load_settings({"PBX_DB": str(server.db_path)}))
    try:
        with database.atomic():
            change()
    finally:
        database.close()


def rows(server, sql: str, *params) -> list[tuple]:
    with sqlite3.connect(server.db_path) as conn:
        return conn.execute(sql, params).fetchall()


def ended_call(server) -> dict:
    found = ck.wait_for(lambda: [r for r in server.calls() if r["ended_at"] is not None],
                        timeout=10)
    assert found and len(found) == 1, f"{server.calls()}\n{server.log()[-3000:]}"
    return found[0]


def events(server, call_id: int) -> list[tuple]:
    return ck.wait_for(lambda: rows(server, "SELECT kind, by, target, detail FROM call_event"
                                    " WHERE call = ? ORDER BY id", call_id), timeout=5) or []


def from_header(run) -> str:
    invite = next(m for m in run.received() if m.method == "INVITE")
    return invite.header("From")


def test_ringall_answered_by_the_second_member_while_the_first_is_cancelled(server):
    from core.groups import create_group

    configure(server, lambda: create_group("600", "Sales", ["1002", "1003"]))
    ringing = ck.callee(server.address, "1002", "callee_no_answer.xml")
    answering = ck.callee(server.address, "1003", "callee_answer.xml", ring_ms=800)
    caller = ck.caller(server.address, "1001", "600", "caller_call.xml", duration_ms=500)
    ck.finish(caller, ringing, answering, server=server)
    assert ringing.requests() == ["INVITE", "CANCEL", "ACK"], ringing.flow()
    assert answering.requests() == ["INVITE", "ACK", "BYE"], answering.flow()
    # both rang at once, and the callee is shown who calls through which group
    assert abs(ringing.received()[0].at - answering.received()[0].at) < 0.5
    assert '"1001 via Sales"' in from_header(answering), from_header(answering)
    row = ended_call(server)
    assert (row["callee"], row["via_group"], row["answered_by"], row["disposition"]) == (
        "600", "600", "1003", "ANSWERED"), row
    assert ("group", "600", "1002,1003", "ringall 1002, 1003") in events(server, row["id"])


def test_hunt_moves_on_after_the_member_time(server):
    from core.groups import create_group

    configure(server, lambda: create_group("601", "Support", ["1002", "1003"],
                                           strategy="hunt", ring_time=20, member_time=5))
    first = ck.callee(server.address, "1002", "callee_no_answer.xml")
    second = ck.callee(server.address, "1003", "callee_answer.xml", ring_ms=300)
    caller = ck.caller(server.address, "1001", "601", "caller_call.xml", duration_ms=500,
                       timeout=40)
    ck.finish(caller, first, second, server=server, timeout=50)
    assert first.requests() == ["INVITE", "CANCEL", "ACK"], first.flow()
    assert second.requests() == ["INVITE", "ACK", "BYE"], second.flow()
    waited = second.received()[0].at - first.received()[0].at
    assert 4.7 <= waited <= 6.5, (first.flow(), second.flow())
    # the caller heard ringing all along: one final answer, the 200
    assert [s for s in caller.statuses("INVITE") if s >= 200] == [407, 200], caller.flow()
    row = ended_call(server)
    assert (row["answered_by"], row["via_group"]) == ("1003", "601"), row
    kinds = [(kind, target, detail) for kind, _, target, detail in events(server, row["id"])]
    assert ("group", "1002", "hunt member 1 of 2") in kinds, kinds
    assert ("group", "1003", "hunt member 2 of 2") in kinds, kinds


def test_dnd_and_unregistered_members_are_skipped(server):
    from core.forwarding import set_dnd
    from core.groups import create_group

    def change():
        create_group("600", "Sales", ["1002", "1003", "1004"])
        set_dnd("1002", True)

    configure(server, change)
    ck.register(server.address, "1002", ck.free_ports())  # registered, but on DND
    answering = ck.callee(server.address, "1004", "callee_answer.xml", ring_ms=200)
    caller = ck.caller(server.address, "1001", "600", "caller_call.xml", duration_ms=300)
    ck.finish(caller, answering, server=server)
    row = ended_call(server)
    assert row["answered_by"] == "1004", row
    assert events(server, row["id"]) == [
        ("group", "1002", "600", "skipped: dnd"),
        ("group", "1003", "600", "skipped: not registered"),
        ("group", "600", "1004", "ringall 1004"),
    ]


def test_a_member_in_a_call_is_skipped(server):
    from core.groups import create_group

    configure(server, lambda: create_group("600", "Sales", ["1002", "1004"]))
    # 1002 talks to 1005 first ...
    busy = ck.callee(server.address, "1002", "callee_answer.xml", ring_ms=100)
    talking = ck.caller(server.address, "1005", "1002", "caller_call.xml", duration_ms=6000)
    assert ck.wait_for(lambda: [r for r in server.calls() if r["state"] == "answered"],
                       timeout=10), server.calls()
    # ... so a call to the group rings only 1004
    answering = ck.callee(server.address, "1004", "callee_answer.xml", ring_ms=200)
    caller = ck.caller(server.address, "1001", "600", "caller_call.xml", duration_ms=300)
    ck.finish(caller, answering, talking, busy, server=server)
    assert busy.requests() == ["INVITE", "ACK", "BYE"], busy.flow()  # its one call only
    group_call = ck.wait_for(lambda: [r for r in server.calls() if r["callee"] == "600"
                                      and r["ended_at"] is not None], timeout=10)[0]
    assert group_call["answered_by"] == "1004", group_call
    assert events(server, group_call["id"]) == [
        ("group", "1002", "600", "skipped: in a call"),
        ("group", "600", "1004", "ringall 1004"),
    ]


@pytest.mark.parametrize("kind", ["always", "busy", "no_answer", "unavailable"])
def test_each_kind_of_forward(server, kind):
    from core.forwarding import set_forward

    configure(server, lambda: set_forward("1002", kind, "1003",
                                          after=5 if kind == "no_answer" else None))
    first = {
        "busy": lambda: ck.callee(server.address, "1002", "callee_busy.xml"),
        "no_answer": lambda: ck.callee(server.address, "1002", "callee_no_answer.xml"),
        # always: 1002 is registered but never rung; unavailable: not registered at all
        "always": lambda: ck.register(server.address, "1002", ck.free_ports()) and None,
        "unavailable": lambda: None,
    }[kind]()
    target = ck.callee(server.address, "1003", "callee_answer.xml", ring_ms=200)
    caller = ck.caller(server.address, "1001", "1002", "caller_call.xml", duration_ms=300,
                       timeout=30)
    runs = [caller, target] + ([first] if first is not None else [])
    ck.finish(*runs, server=server, timeout=40)
    assert target.requests() == ["INVITE", "ACK", "BYE"], target.flow()
    if kind == "busy":
        assert first.requests() == ["INVITE", "ACK"], first.flow()
    if kind == "no_answer":
        assert first.requests() == ["INVITE", "CANCEL", "ACK"], first.flow()
        assert 4.7 <= target.received()[0].at - first.received()[0].at <= 6.5
    row = ended_call(server)
    assert (row["callee"], row["answered_by"], row["disposition"]) == (
        "1002", "1003", "ANSWERED"), row
    detail = {"no_answer": "no answer after 5 s"}.get(kind, kind)
    assert ("forwarded", "1002", "1003", detail) in events(server, row["id"])


def test_a_forward_loop_is_refused(server):
    from core.forwarding import set_forward

    def change():
        set_forward("1002", "always", "1003")
        set_forward("1003", "always", "1002")

    configure(server, change)
    caller = ck.caller(server.address, "1001", "1002", "caller_rejected.xml",
                       sets={"expect": "482"})
    ck.finish(caller, server=server)
    final = next(m for m in caller.received() if m.status == 482)
    assert final.first_line == "SIP/2.0 482 Loop Detected: 1002 -> 1003 -> 1002"
    row = ended_call(server)
    assert (row["disposition"], row["sip_status"]) == ("FAILED", 482), row
    assert row["reason"] == "forwarding loop: 1002 -> 1003 -> 1002", row


def test_feature_codes_change_what_the_panel_shows(server, tmp_path):
    sys.path.insert(0, str(ROOT / "tests" / "web"))
    from panel_testing import ADMIN, make_app

    def dial(code, scenario="caller_feature.xml", **sets):
        run = ck.caller(server.address, "1001", code, scenario, sets=sets or None)
        ck.finish(run, server=server)
        return run

    # The panel on sipd's database (make_app adds its admins to the file at tmp_path).
    assert server.db_path == tmp_path / "pbx.db"
    client = make_app(tmp_path).test_client()
    client.post("/login", data={"username": ADMIN[0], "password": ADMIN[1]})

    def extension_page() -> str:
        page = client.get("/extensions/1001")
        assert page.status_code == 200
        return page.data.decode()

    dial("*78")
    assert rows(server, "SELECT dnd FROM extension WHERE number = '1001'") == [(1,)]
    assert '<dd id="dnd"><span class="badge warn">on</span>' in extension_page()
    dial("*721003")
    assert rows(server, "SELECT forward_always FROM extension WHERE number = '1001'") == [
        ("1003",)]
    assert "1003" in extension_page()
    # a forward to nothing that exists: refused with why, nothing changed
    refused = dial("*721999", "caller_rejected.xml", expect="403")
    final = next(m for m in refused.received() if m.status == 403)
    assert "1999 is no extension or ring group, and no outbound route takes it" in final.first_line
    dial("*73")
    dial("*79")
    assert rows(server, "SELECT dnd, forward_always FROM extension WHERE number = '1001'") \
        == [(0, "")]
    dial("*55", "caller_rejected.xml", expect="484")
    actions = rows(server, "SELECT action, detail FROM audit_log WHERE actor = 'phone:1001'"
                   " ORDER BY id")
    assert [a for a, _ in actions] == ["extension.dnd", "extension.forward",
                                       "extension.forward", "extension.dnd"], actions
