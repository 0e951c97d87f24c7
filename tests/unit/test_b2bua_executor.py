"""The B2BUA carrying out routing plans (sipd/b2bua/executor.py), without sockets.

Each test gives the B2BUA a plan of its own (the `route` it is built with),
plays the phones of 1001 and 1002 and the caller 1003 with written-out
messages through the real Handler, registrar, database and history
(tests/unit/b2bua_harness.py), and moves the scheduler's clock.
"""

from __future__ import annotations

import sqlite3

import pytest

from core import accounts
from sipd.registrar import Source
from sipd.routing.plan import Event, Feature, Refuse, Ring
from tests.unit.b2bua_harness import (
    SDP,
    answer,
    invite,
    last,
    make_pbx,
    register,
    request,
    tag_of,
)

CALLER = Source("127.0.0.1", 5063, "UDP")  # 1003's phone
PHONES = {"1001": Source("127.0.0.1", 5071, "UDP"), "1002": Source("127.0.0.1", 5072, "UDP")}


class Plan:
    """The routing step as the test wants it: the plan it returns, and what it was asked."""

    def __init__(self, step):
        self.step = step
        self.asked = []

    def __call__(self, caller, dialled, now, in_calls):
        self.asked.append((caller, dialled, {n: in_calls(n) for n in ("1001", "1002", "1003")}))
        return self.step


@pytest.fixture
def make(tmp_path):
    made = []

    def make(step, register_phones=("1001", "1002"), **options):
        plan = Plan(step)
        pbx = make_pbx(tmp_path, numbers=("1001", "1002", "1003"), route=plan, **options)
        for number in register_phones:
            register(pbx, pbx.sent, number, PHONES[number])
        pbx.sent.clear()
        made.append(pbx)
        return pbx

    yield make
    for pbx in made:
        pbx.stack.database.close()


def call(pbx, target="600"):
    invite(pbx, number="1003", source=CALLER, target=target)


def sent_to(pbx, number: str, method: str) -> list[bytes]:
    """Our requests of `method` to the phone of `number` (by Request-URI)."""
    phone = PHONES[number]
    start = f"{method} sip:{number}@{phone.host}:{phone.port}".encode()
    return [data for data in pbx.sent if data.startswith(start)]


def to_caller(pbx) -> list[int]:
    """The statuses of our responses to the caller's INVITE (after the 407)."""
    return [int(data.split(b" ")[1]) for data in pbx.sent
            if data.startswith(b"SIP/2.0 ") and b"CSeq: 2 INVITE" in data]


def respond(pbx, number: str, status: str, body: str = "", tag: str | None = None) -> None:
    (invite_sent,) = sent_to(pbx, number, "INVITE")
    pbx.handle(answer(invite_sent, status, body, tag=tag or f"phone-{number}",
                      contact=PHONES[number], user=number), PHONES[number])


def test_no_answer_moves_on_to_the_next_step_while_the_caller_waits(make):
    hunt = (Event("group", by="", target="1002", detail="hunt member 2 of 2"),)
    pbx = make(Ring(("1001",), 20, group="600", on_no_answer=Ring(("1002",), 15, group="600",
                                                                  events=hunt)))
    call(pbx)
    assert len(sent_to(pbx, "1001", "INVITE")) == 1 and sent_to(pbx, "1002", "INVITE") == []
    respond(pbx, "1001", "180 Ringing")
    assert to_caller(pbx) == [180]
    (row,) = pbx.rows()
    assert (row["callee"], row["ringing"], row["state"]) == ("600", "1001", "ringing")
    pbx.advance(19.9)
    assert sent_to(pbx, "1001", "CANCEL") == [] and sent_to(pbx, "1002", "INVITE") == []
    pbx.advance(0.1)
    # 1001's branch is CANCELled, 1002 rung; the caller heard nothing final.
    assert len(sent_to(pbx, "1001", "CANCEL")) == 1
    assert len(sent_to(pbx, "1002", "INVITE")) == 1
    assert to_caller(pbx) == [180]
    assert pbx.calls.per_extension == {"1003": 1, "1002": 1}
    assert pbx.row(row["id"])["ringing"] == "1002"
    (event,) = pbx.rows("call_event")
    assert (event["call"], event["kind"], event["detail"]) == (row["id"], "group",
                                                               "hunt member 2 of 2")
    respond(pbx, "1001", "487 Request Terminated")
    respond(pbx, "1002", "180 Ringing")
    respond(pbx, "1002", "200 OK", SDP)
    assert to_caller(pbx) == [180, 180, 200]
    ended = pbx.row(row["id"])
    assert (ended["state"], ended["answered_by"], ended["ringing"]) == ("answered", "1002", "")
    assert ended["callee_contact"] == "sip:1002@127.0.0.1:5072"


def test_the_last_steps_time_running_out_is_480(make):
    pbx = make(Ring(("1001",), 20, on_no_answer=Ring(("1002",), 15)))
    call(pbx)
    respond(pbx, "1001", "180 Ringing")
    pbx.advance(20)
    respond(pbx, "1002", "180 Ringing")
    pbx.advance(14.9)
    assert to_caller(pbx) == [180, 180]
    pbx.advance(0.1)
    assert len(sent_to(pbx, "1002", "CANCEL")) == 1
    assert to_caller(pbx) == [180, 180, 480]
    assert pbx.calls.calls == {} and pbx.calls.per_extension == {}
    (row,) = pbx.rows()
    assert (row["disposition"], row["hangup_by"], row["sip_status"], row["reason"],
            row["ringing"]) == ("NO ANSWER", "system", 480, "no answer within 15 s", "")


def test_a_2xx_crossing_the_cancel_is_acked_and_byed_and_the_call_goes_on(make):
    pbx = make(Ring(("1001",), 20, on_no_answer=Ring(("1002",), 15)))
    call(pbx)
    respond(pbx, "1001", "180 Ringing")
    pbx.advance(20)
    assert len(sent_to(pbx, "1001", "CANCEL")) == 1
    respond(pbx, "1001", "200 OK", SDP)  # it answered as our CANCEL went out
    assert len(sent_to(pbx, "1001", "ACK")) == 1 and len(sent_to(pbx, "1001", "BYE")) == 1
    assert to_caller(pbx) == [180]
    assert len(pbx.calls.calls) == 1
    respond(pbx, "1002", "200 OK", SDP)
    assert to_caller(pbx) == [180, 200]
    (row,) = pbx.rows()
    assert row["answered_by"] == "1002"


def test_busy_goes_on_to_the_busy_step(make):
    pbx = make(Ring(("1001",), 20, on_busy=Ring(("1002",), 15),
                    on_no_answer=Refuse(480, "", "NO ANSWER", "should not happen")))
    call(pbx)
    respond(pbx, "1001", "486 Busy Here")
    assert len(sent_to(pbx, "1001", "ACK")) == 1  # the transaction's ACK of a non-2xx
    assert len(sent_to(pbx, "1002", "INVITE")) == 1
    assert to_caller(pbx) == []
    respond(pbx, "1002", "200 OK", SDP)
    assert to_caller(pbx) == [200]


@pytest.mark.parametrize("status, phrase, disposition, reason", [
    ("486 Busy Here", "Busy Here", "BUSY", "callee busy"),
    ("603 Decline", "Decline", "BUSY", "callee busy"),
    ("480 Temporarily Unavailable", "Temporarily Unavailable", "NO ANSWER",
     "callee did not answer"),
    ("404 Not Found", "Not Found", "FAILED", "callee answered 404"),
    ("503 Service Unavailable", "Temporarily Unavailable", "FAILED", "callee answered 503"),
])
def test_with_no_step_to_follow_the_caller_gets_the_outcome(make, status, phrase,
                                                            disposition, reason):
    pbx = make(Ring(("1001",), 20))
    call(pbx)
    respond(pbx, "1001", status)
    final = last(pbx.sent, b"SIP/2.0 ")
    expected = {"603": 603, "503": 480}.get(status[:3], int(status[:3]))
    assert final.startswith(f"SIP/2.0 {expected} {phrase}".encode()), final
    (row,) = pbx.rows()
    assert (row["disposition"], row["hangup_by"], row["reason"]) == (disposition, "callee",
                                                                     reason)


def test_a_step_with_nothing_reachable_goes_on_at_once(make):
    """1001 has no phone registered: its step is skipped for on_unavailable."""
    events = (Event("forwarded", by="1001", target="1002", detail="unavailable"),)
    pbx = make(Ring(("1001",), 20, on_unavailable=Ring(("1002",), 15, events=events)),
               register_phones=("1002",))
    call(pbx)
    assert len(sent_to(pbx, "1002", "INVITE")) == 1
    (row,) = pbx.rows()
    assert row["ringing"] == "1002"
    (event,) = pbx.rows("call_event")
    assert (event["call"], event["kind"], event["by"], event["target"], event["detail"]) == (
        row["id"], "forwarded", "1001", "1002", "unavailable")


def test_nothing_reachable_at_all_is_480_without_ringing(make):
    pbx = make(Ring(("1001", "1002"), 20), register_phones=())
    call(pbx)
    assert to_caller(pbx) == [480]
    assert pbx.calls.calls == {} and pbx.calls.relay.opened == 0
    (row,) = pbx.rows()
    assert (row["disposition"], row["sip_status"], row["reason"]) == (
        "FAILED", 480, "none of 1001, 1002 is registered")


def test_an_unreachable_binding_is_not_rung(make):
    pbx = make(Ring(("1001", "1002"), 20))
    with sqlite3.connect(pbx.db_path) as connection:
        connection.execute("UPDATE binding SET unreachable_since = 1 WHERE source_port = 5071")
    call(pbx)
    assert sent_to(pbx, "1001", "INVITE") == [] and len(sent_to(pbx, "1002", "INVITE")) == 1


def test_ringall_first_2xx_wins_and_the_others_are_cancelled(make):
    pbx = make(Ring(("1001", "1002"), 20, group="600", via="Sales"))
    accounts.update_extension("1003", name="Alice")
    call(pbx)
    invites = sent_to(pbx, "1001", "INVITE") + sent_to(pbx, "1002", "INVITE")
    assert len(invites) == 2
    # The callee sees the caller's configured name and the group.
    assert all(b'From: "Alice via Sales" <sip:1003@pbx.test>;tag=' in i for i in invites)
    (row,) = pbx.rows()
    assert (row["ringing"], row["via_group"]) == ("1001,1002", "600")
    assert pbx.calls.per_extension == {"1001": 1, "1002": 1, "1003": 1}
    respond(pbx, "1001", "180 Ringing")
    respond(pbx, "1002", "200 OK", SDP)
    assert len(sent_to(pbx, "1002", "ACK")) == 1
    assert len(sent_to(pbx, "1001", "CANCEL")) == 1
    assert to_caller(pbx) == [180, 200]
    assert pbx.calls.per_extension == {"1002": 1, "1003": 1}
    respond(pbx, "1001", "200 OK", SDP)  # too late: ACKed, then BYEd
    assert len(sent_to(pbx, "1001", "ACK")) == 1 and len(sent_to(pbx, "1001", "BYE")) == 1
    row = pbx.row(row["id"])
    assert (row["answered_by"], row["via_group"], row["ringing"]) == ("1002", "600", "")


def test_a_cancel_wanted_before_the_1xx_waits_for_it(make):
    """§9.1: a branch that sent nothing yet is CANCELled once its 1xx comes."""
    pbx = make(Ring(("1001", "1002"), 20))
    call(pbx)
    respond(pbx, "1002", "200 OK", SDP)
    assert sent_to(pbx, "1001", "CANCEL") == []
    respond(pbx, "1001", "100 Trying")
    assert len(sent_to(pbx, "1001", "CANCEL")) == 1


def test_the_callee_is_shown_the_callers_number_with_the_group_when_it_has_no_name(make):
    pbx = make(Ring(("1001",), 20, via="Sales"))
    call(pbx)
    (sent,) = sent_to(pbx, "1001", "INVITE")
    assert b'From: "1003 via Sales" <sip:1003@pbx.test>;tag=' in sent
    assert b"To: <sip:1001@pbx.test>" in sent


def test_the_dialled_number_is_what_the_callee_is_told(make):
    pbx = make(Ring(("1001",), 20, dialled="600"))
    call(pbx)
    (sent,) = sent_to(pbx, "1001", "INVITE")
    assert b"To: <sip:600@pbx.test>" in sent


def test_a_refusal_answers_the_caller_and_records_its_events(make):
    events = (Event("refused_loop", by="1001", target="1002", detail="1001 -> 1002 -> 1001"),)
    pbx = make(Refuse(482, "Loop Detected: 1001 -> 1002 -> 1001", "FAILED", "forward loop",
                      events=events))
    call(pbx)
    assert last(pbx.sent, b"SIP/2.0 482").startswith(
        b"SIP/2.0 482 Loop Detected: 1001 -> 1002 -> 1001\r\n")
    (row,) = pbx.rows()
    assert (row["disposition"], row["sip_status"], row["reason"]) == ("FAILED", 482,
                                                                      "forward loop")
    (event,) = pbx.rows("call_event")
    assert (event["call"], event["kind"], event["detail"]) == (row["id"], "refused_loop",
                                                               "1001 -> 1002 -> 1001")


def test_the_routing_step_is_asked_with_the_callers_number_and_the_counts(make):
    pbx = make(Ring(("1001",), 20))
    call(pbx, target="1001")
    assert pbx.calls.route.asked == [("1003", "1001", {"1001": 0, "1002": 0, "1003": 0})]
    invite(pbx, call_id="c2@test", branch="y", number="1002", source=PHONES["1002"],
           target="1001")
    assert pbx.calls.route.asked[-1] == ("1002", "1001", {"1001": 1, "1002": 0, "1003": 1})


def test_a_feature_code_is_answered_then_ended(make):
    done = []

    def features(step):
        done.append(step)
        return 200, "OK"

    step = Feature("dnd_on", "1003", events=(Event("feature", by="1003", detail="dnd on"),))
    pbx = make(step, features=features)
    call(pbx, target="*78")
    assert done == [step]
    ok = last(pbx.sent, b"SIP/2.0 200")
    assert b"CSeq: 2 INVITE" in ok and b"m=audio 10000 RTP/AVP 0" in ok, ok
    assert b"c=IN IP4 127.0.0.1" in ok and b"a=sendrecv" in ok
    to_tag = ";tag=" + tag_of(ok, b"To")
    pbx.sent.clear()
    pbx.handle(request("ACK", 2, "xa", to_tag=to_tag, number="1003", source=CALLER,
                       target="*78"), CALLER)
    (bye,) = [d for d in pbx.sent if d.startswith(b"BYE ")]
    assert b"sip:1003@127.0.0.1:5063" in bye.split(b"\r\n")[0]
    assert pbx.calls.calls == {} and pbx.calls.relay.closed == 1
    (row,) = pbx.rows()
    assert (row["disposition"], row["hangup_by"], row["reason"]) == (
        "ANSWERED", "system", "feature dnd_on: 200 OK")
    assert [e["kind"] for e in pbx.rows("call_event")] == ["feature"]


def test_a_refused_feature_code_gets_its_refusal(make):
    pbx = make(Feature("forward_on", "1003", "1003"),
               features=lambda step: (403, "Forbidden: cannot forward to itself"))
    call(pbx, target="*721003")
    assert last(pbx.sent, b"SIP/2.0 4").startswith(
        b"SIP/2.0 403 Forbidden: cannot forward to itself\r\n")
    assert pbx.calls.relay.opened == 0
    (row,) = pbx.rows()
    assert (row["disposition"], row["sip_status"]) == ("FAILED", 403)


def test_the_caller_cancelling_cancels_every_branch(make):
    pbx = make(Ring(("1001", "1002"), 20))
    call(pbx)
    respond(pbx, "1001", "180 Ringing")
    respond(pbx, "1002", "180 Ringing")
    pbx.handle(request("CANCEL", 2, "x2", number="1003", source=CALLER, target="600"), CALLER)
    assert len(sent_to(pbx, "1001", "CANCEL")) == 1 and len(sent_to(pbx, "1002", "CANCEL")) == 1
    assert to_caller(pbx)[-1] == 487
    assert pbx.calls.calls == {} and pbx.calls.per_extension == {}
