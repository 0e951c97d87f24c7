"""Issue 14, findings 2, 4 and 10 (a, b), shown the way the probe found them:
a real sipd, real phones (sipp, and tests/sip/rawphone.py where a test must say
exactly what a phone sends), and a stranger socket on 127.0.0.9.

- Finding 2: a request within a call belongs to a leg only by its dialog
  (RFC 3261 §12.2.2: Call-ID, To tag and From tag) and only from that leg's
  phone (its address over UDP, its very connection over TCP); else 481, and
  the call goes on untouched. A CANCEL must come from where its INVITE did.
- Finding 4: an extension is in at most `max_calls` calls at once (as caller:
  403, as callee: 486), set with `pbxctl ext set`; a call held both ways ends
  after PBX_CALL_HOLD_TIMEOUT.
- Finding 10a: a reused Call-ID is another call, with a row (and a place on the
  live calls page) of its own, hung up by its id.
- Finding 10b: the callee is shown the caller's number and the name the panel
  gives it, never the display name the caller's phone claims.

Every socket is on 127.0.0.0/8; every wait has a deadline.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import threading
import time

import pytest

from tests.sip import callkit as ck
from tests.sip.rawphone import RawPhone, ask, build_request, sdp
from tests.support import LOOPBACK, ROOT, base_env

STRANGER = "127.0.0.9"


@pytest.fixture(autouse=True)
def _logs_in_tmp_path(tmp_path, monkeypatch):
    monkeypatch.setattr(ck, "WORK_ROOT", tmp_path)


@pytest.fixture
def make_server(tmp_path):
    servers = []

    def make(**env):
        server = ck.SipdServer(tmp_path, numbers=("1001", "1002", "1003"), **env).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def server(make_server):
    return make_server()


@pytest.fixture
def phones():
    made = []

    def phone(server, number="", transport="UDP", host=LOOPBACK, register=True):
        host_, port = server.address.split(":")
        made.append(RawPhone((host_, int(port)), number, ck.PASSWORD, host=host,
                             transport=transport))
        if register:
            made[-1].register()
        return made[-1]

    yield phone
    for phone_ in made:
        phone_.close()


def pbxctl(server, *args: str) -> subprocess.CompletedProcess:
    env = base_env(server.db_path, PBX_RUN_DIR=server.env["PBX_RUN_DIR"])
    return subprocess.run([sys.executable, "-m", "pbxcli", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=30)


def target(server) -> tuple[str, int]:
    host, port = server.address.split(":")
    return host, int(port)


def live_rows(server, count: int, state: str = "answered") -> list[dict]:
    def live():  # history rows are written in group commits: wait for all `count`
        rows = [r for r in server.calls() if r["state"] == state and r["ended_at"] is None]
        return rows if len(rows) >= count else None

    rows = ck.wait_for(live, timeout=5)
    assert rows and len(rows) == count, f"{server.calls()}\n{server.log()[-3000:]}"
    return rows


def forged(method: str, call_id: str, from_: str, to: str, cseq: int = 99,
           body: str = "", host: str = STRANGER, uri: str = "sip:1002@127.0.0.1") -> str:
    """A request as a stranger on `host` writes it, with what it knows of a call."""
    via = f"SIP/2.0/UDP {host}:5060;branch=z9hG4bK{secrets.token_hex(8)};rport"
    contact = f"<sip:666@{host}:5060>" if method == "INVITE" else None
    return build_request(method, uri, from_, to, call_id, cseq, via, contact, body=body)


def answer_call(callee: RawPhone, direction: str = "sendrecv"):
    invite = callee.request_received("INVITE", timeout=5)
    assert invite is not None, [m.start for m in callee.seen]
    dialog = callee.answer(invite, 200, direction)
    return invite, dialog


def in_background(function, *args, **kwargs) -> dict:
    """function(*args) on a thread (a phone waiting for its answer while the
    test plays the other phone); join() it for the result."""
    box: dict = {}
    thread = threading.Thread(target=lambda: box.update(result=function(*args, **kwargs)))
    thread.start()

    def join(timeout: float = 15):
        thread.join(timeout)
        assert "result" in box, f"{function.__name__} did not finish"
        return box["result"]

    box["join"] = join
    return box


def answered(caller: RawPhone, callee: RawPhone, number: str, **kwargs):
    """A call from `caller` to `number`, answered by `callee`: (caller's dialog,
    callee's dialog, the INVITE the callee got)."""
    pending = in_background(caller.call, number, **kwargs)
    invite, callee_dialog = answer_call(callee)
    final, dialog = pending["join"]()
    assert final.status == 200, final.start
    return dialog, callee_dialog, invite


# --- finding 2: dialogs, not Call-IDs --------------------------------------------------------

def test_a_stranger_with_only_the_call_id_gets_481_and_the_call_goes_on(server):
    """The probe: from 127.0.0.9, with wrong tags and a call's Call-ID, a BYE got
    200 and hung the callee up, and a re-INVITE got 200 and moved the media."""
    callee = ck.callee(server.address, "1002", "callee_answer.xml", ring_ms=200)
    caller = ck.caller(server.address, "1001", "1002", "caller_call.xml", duration_ms=4000)
    ck.wait_answer_sdp(caller)
    row = live_rows(server, 1)[0]
    b_call_id = next(m for m in callee.received() if m.method == "INVITE").header("Call-ID")
    answers = {}
    for leg, call_id in (("A", row["call_id"]), ("B", b_call_id)):
        for method, body in (("BYE", ""), ("INVITE", sdp(STRANGER, 7777))):
            request = forged(method, call_id, "<sip:1001@pbx.test>;tag=stranger",
                             "<sip:1002@pbx.test>;tag=guessed", body=body)
            answer = ask(STRANGER, target(server), request)
            answers[leg, method] = answer.status if answer else None
    assert answers == {("A", "BYE"): 481, ("A", "INVITE"): 481,
                       ("B", "BYE"): 481, ("B", "INVITE"): 481}, server.log()[-3000:]
    ck.finish(caller, callee, server=server)
    # Nobody was hung up or sent a re-INVITE: the caller's own BYE ended the call.
    assert callee.requests() == ["INVITE", "ACK", "BYE"], callee.flow()
    assert caller.requests() == [], caller.flow()
    ended = ck.ended_calls(server.db_path)
    assert ended[0]["hangup_by"] == "caller", ended
    assert ended[0]["ended_at"] - ended[0]["answered_at"] >= 3.5, ended
    assert "BYE from 127.0.0.9" in server.log() and "matches no dialog (481)" in server.log()


def test_the_right_tags_from_another_address_get_481(server):
    """Tags learned (sniffed, or leaked) are not enough: a request within a call
    must come from the address of that leg's phone (UDP: any port)."""
    callee = ck.callee(server.address, "1002", "callee_answer.xml", ring_ms=200)
    caller = ck.caller(server.address, "1001", "1002", "caller_call.xml", duration_ms=4000)
    ck.wait_answer_sdp(caller)
    ok = next(m for m in caller.received() if m.status == 200 and m.cseq_method == "INVITE")
    sent_ok = ck.wait_for(lambda: [m for m in callee.sent() if m.status == 200], timeout=3)
    assert sent_ok, callee.flow()
    legs = {
        # what the caller's phone sends: its From, sipd's tag in To
        "caller": (ok.header("Call-ID"), ok.header("From"), ok.header("To")),
        # what the callee's phone sends: From and To swapped
        "callee": (sent_ok[0].header("Call-ID"), sent_ok[0].header("To"),
                   sent_ok[0].header("From")),
    }
    for leg, (call_id, from_, to) in legs.items():
        for method, body in (("BYE", ""), ("INVITE", sdp(STRANGER, 7777))):
            answer = ask(STRANGER, target(server), forged(method, call_id, from_, to, body=body))
            assert answer is not None and answer.status == 481, (leg, method, answer)
    ck.finish(caller, callee, server=server)
    assert callee.requests() == ["INVITE", "ACK", "BYE"], callee.flow()
    assert caller.requests() == [], caller.flow()
    log = server.log()
    assert "BYE for call 1001 -> 1002 from 127.0.0.9:" in log
    assert "refused (481): not from the caller's address 127.0.0.1/UDP" in log
    assert "refused (481): not from the callee's address 127.0.0.1/UDP" in log


def test_over_tcp_only_the_dialogs_own_connection_counts(server, phones):
    """Where the transport tells who is speaking (TCP/TLS), a request within a
    call counts only on the connection that leg's phone uses: another
    connection from the very same address, or UDP from it, gets 481."""
    callee = phones(server, "1002")
    caller = phones(server, "1001", transport="TCP")
    dialog, callee_dialog, _ = answered(caller, callee, "1002")
    bye = forged("BYE", dialog.call_id, f"{dialog.local_uri};tag={dialog.local_tag}",
                 f"{dialog.remote_uri};tag={dialog.remote_tag}", host=LOOPBACK)
    intruder = RawPhone(target(server), "1001", transport="TCP")  # same address, new connection
    try:
        intruder.send(bye)
        answer = intruder.receive(lambda m: m.status is not None and m.status >= 200, 3)
    finally:
        intruder.close()
    assert answer is not None and answer.status == 481, answer
    answer = ask(LOOPBACK, target(server), bye)  # the same address over UDP
    assert answer is not None and answer.status == 481, answer
    assert callee.request_received("BYE", timeout=0.5) is None
    # The caller's own BYE on its own connection ends the call.
    assert caller.in_dialog(dialog, "BYE").status == 200
    bye = callee.request_received("BYE")
    assert bye is not None and bye.get("Call-ID") == callee_dialog.call_id
    callee.respond(bye, 200)
    assert "not from the caller's connection 127.0.0.1:" in server.log()


def test_a_strangers_cancel_with_the_invites_branch_gets_481(server, phones):
    """CANCEL matches the INVITE's transaction (branch and sent-by, §9.2,
    §17.2.3), which a stranger can copy: it must also come from the caller."""
    callee = phones(server, "1002")
    caller = phones(server, "1001")
    host, port = target(server)
    uri, call_id, tag = f"sip:1002@{host}:{port}", "ringing@test", "caller-tag"
    from_, to = f"<sip:1001@pbx.test>;tag={tag}", "<sip:1002@pbx.test>"
    via = caller.via()
    caller.send(caller.build("INVITE", uri, from_, to, call_id, 1, via=via,
                             body=sdp(LOOPBACK, caller.media_port)))
    challenge = caller.receive(lambda m: m.status == 407)
    caller.send(caller.build("ACK", uri, from_, challenge.get("To"), call_id, 1, via=via))
    via = caller.via()
    authorization = caller.digest(caller.md5_challenge(challenge, "Proxy-Authenticate"),
                                  "INVITE", uri)
    caller.send(caller.build("INVITE", uri, from_, to, call_id, 2, via=via,
                             extra=[f"Proxy-Authorization: {authorization}"],
                             body=sdp(LOOPBACK, caller.media_port)))
    ringing = callee.request_received("INVITE")
    callee.respond(ringing, 180, tag="callee-tag")
    assert caller.receive(lambda m: m.status == 180) is not None
    cancel = caller.build("CANCEL", uri, from_, to, call_id, 2, via=via)
    answer = ask(STRANGER, (host, port), cancel)
    assert answer is not None and answer.status == 481, answer
    assert callee.request_received("CANCEL", timeout=0.5) is None
    assert live_rows(server, 1, state="ringing")
    caller.send(cancel)
    assert caller.receive(lambda m: m.status == 200 and m.cseq == (2, "CANCEL")) is not None
    assert caller.receive(lambda m: m.status == 487) is not None
    assert callee.request_received("CANCEL") is not None


# --- finding 10a: a reused Call-ID is another call ----------------------------------------------

def test_a_reused_call_id_is_two_calls_each_hung_up_by_its_id(server, phones):
    """Two INVITEs with one Call-ID and different From tags are two calls (RFC
    3261 §12): both are on the live calls page (rows of their own), hung up
    by id (`pbxctl calls --hangup ID`), and one's end leaves the other up."""
    callee = phones(server, "1003")
    first, second = phones(server, "1001"), phones(server, "1002")
    answered(first, callee, "1003", call_id="same@test", tag="one")
    second_dialog, _, _ = answered(second, callee, "1003", call_id="same@test", tag="two")
    rows = live_rows(server, 2)
    assert {r["call_id"] for r in rows} == {"same@test"}
    listed = pbxctl(server, "calls", "--active")
    assert listed.returncode == 0, listed.stderr
    ids = [line.split()[0] for line in listed.stdout.splitlines()[1:]]
    assert ids == [str(r["id"]) for r in rows], listed.stdout
    by_caller = {r["caller"]: r["id"] for r in rows}
    done = pbxctl(server, "calls", "--hangup", str(by_caller["1001"]))
    assert done.returncode == 0, done.stderr + server.log()[-2000:]
    bye = first.request_received("BYE")
    assert bye is not None and bye.tag("To") == "one", bye
    first.respond(bye, 200)
    callee_bye = callee.request_received("BYE")
    assert callee_bye is not None
    callee.respond(callee_bye, 200)
    # The other call with the same Call-ID is still up, and still answers.
    assert second.request_received("BYE", timeout=0.5) is None
    still = ck.wait_for(lambda: [r["id"] for r in server.calls() if r["ended_at"] is None]
                        == [by_caller["1002"]], timeout=3)
    assert still, server.calls()
    assert second.in_dialog(second_dialog, "BYE").status == 200
    callee_bye = callee.request_received("BYE")
    assert callee_bye is not None
    callee.respond(callee_bye, 200)
    ended = ck.wait_for(lambda: all(r["ended_at"] for r in server.calls()), timeout=5)
    assert ended, server.calls()
    by_id = {r["id"]: r for r in server.calls()}
    assert by_id[by_caller["1001"]]["reason"] == "hung up by an admin"
    assert by_id[by_caller["1002"]]["hangup_by"] == "caller"


# --- finding 4: call limits and held calls ----------------------------------------------------------

def test_an_extension_over_its_call_limit_is_refused(server, phones):
    """1001 may be in 2 calls, 1002 in 3: a third call from 1001 gets 403, a
    fourth call to 1002 gets 486 Busy Here, each with a log line naming why,
    and an ended call gives its place back (no restart needed)."""
    for number, limit in (("1001", "2"), ("1002", "3")):
        changed = pbxctl(server, "ext", "set", number, "--max-calls", limit)
        assert changed.returncode == 0, changed.stderr
    callee = phones(server, "1002")
    caller = phones(server, "1001")
    other = phones(server, "1003")
    first, _, _ = answered(caller, callee, "1002")
    answered(caller, callee, "1002")
    refused, _ = caller.call("1002")
    assert (refused.status, refused.reason) == (403, "Forbidden: call limit of 1001 reached")
    answered(other, callee, "1002")  # 1002's third call: from 1003
    busy, _ = other.call("1002")
    assert (busy.status, busy.reason) == (486, "Busy Here: call limit reached")
    assert callee.request_received("INVITE", timeout=0.5) is None  # neither rang
    log = server.log()
    assert "Call 1001 -> 1002 refused: 403 caller 1001 is in 2 calls, its limit" in log
    assert "Call 1003 -> 1002 refused: 486 callee 1002 is in 3 calls, its limit" in log
    assert caller.in_dialog(first, "BYE").status == 200
    callee.respond(callee.request_received("BYE"), 200)
    answered(caller, callee, "1002")  # its place is free again
    dispositions = ck.wait_for(lambda: sorted(
        r["disposition"] for r in server.calls() if r["ended_at"]) == ["ANSWERED", "BUSY",
                                                                       "FAILED"], timeout=5)
    assert dispositions, server.calls()


def test_a_call_held_both_ways_is_ended_after_the_hold_timeout(make_server, phones):
    """a=inactive from the caller, answered a=inactive: no audio may flow either
    way, and after PBX_CALL_HOLD_TIMEOUT (2 s here) sipd hangs up both legs."""
    server = make_server(PBX_CALL_HOLD_TIMEOUT="2")
    callee = phones(server, "1002")
    caller = phones(server, "1001")
    dialog, callee_dialog, _ = answered(caller, callee, "1002")
    held_at = time.time()
    hold = in_background(caller.in_dialog, dialog, "INVITE",
                         sdp(LOOPBACK, caller.media_port, "inactive"))
    reinvite = callee.request_received("INVITE")
    assert reinvite is not None and "a=inactive" in reinvite.body, reinvite
    callee.answer(reinvite, 200, "inactive", tag=callee_dialog.local_tag)
    assert hold["join"]().status == 200
    for phone in (caller, callee):
        bye = phone.request_received("BYE", timeout=10)
        assert bye is not None, f"no BYE for {phone.number}\n{server.log()[-3000:]}"
        phone.respond(bye, 200)
    row = ck.ended_calls(server.db_path)[0]
    assert (row["hangup_by"], row["reason"]) == ("system", "on hold both ways for 2 s"), row
    assert row["ended_at"] - held_at >= 2, row
    assert "Call 1001 -> 1002: on hold both ways for 2 s; hanging up" in server.log()


# --- finding 10b: who the callee is shown -------------------------------------------------------------

def test_the_callee_sees_the_extensions_number_and_name_not_the_claim(server, phones):
    """The caller's phone says "The CEO"; the callee sees 1005 and the name the
    panel gives 1005 ("Reception"), and a caller whose extension has no name is
    shown by number alone. The history keeps both: shown and claimed."""
    added = pbxctl(server, "ext", "add", "1005", "--name", "Reception",
                   "--password", ck.PASSWORD)
    assert added.returncode == 0, added.stderr
    callee = phones(server, "1002")
    for number, claimed, shown in (("1005", "The CEO", "Reception"), ("1001", "Boss", None)):
        caller = phones(server, number)
        dialog, _, invite = answered(caller, callee, "1002", display=claimed)
        assert invite.display("From") == shown, invite.get("From")
        assert f"<sip:{number}@" in invite.get("From"), invite.get("From")
        assert caller.in_dialog(dialog, "BYE").status == 200
        callee.respond(callee.request_received("BYE"), 200)

    def ended():
        rows = [r for r in server.calls() if r["ended_at"]]
        return rows if len(rows) == 2 else []

    rows = ck.wait_for(ended, timeout=5)
    assert [(r["caller"], r["caller_name"], r["caller_claimed"]) for r in rows] == [
        ("1005", "Reception", "The CEO"), ("1001", "", "Boss")], rows
