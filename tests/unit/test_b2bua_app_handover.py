"""An application handing the call it answered on to a number
(sipd/b2bua/handover.py), at the B2BUA level: the real Handler, registrar,
database and history (tests/unit/b2bua_harness.py), the phones' messages
written out here, the media relay a stand-in that records the endpoint ops it
is asked for. The application is the test's own (a "menu" that goes on to
group 600 as an IVR's "press 1" does), given to the B2BUA's Applications.
"""

from __future__ import annotations

import pytest

from core.models import OutboundPolicy, OutboundRoute, OutboundRouteTrunk, Trunk
from sipd.b2bua.handover import RINGBACK_EVERY_MS, RINGBACK_HZ
from sipd.registrar import Source
from sipd.routing import route_with
from sipd.routing.plan import Application, Refuse, Ring
from tests.unit.b2bua_harness import (
    PortsOnly,
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
# The caller offers both laws and telephone-event 96; the endpoint takes PCMA.
OFFER = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
         "m=audio 6000 RTP/AVP 8 0 96\r\na=rtpmap:96 telephone-event/8000\r\na=sendrecv\r\n")
CALLEE_SDP = ("v=0\r\no=- 2 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
              "m=audio 7000 RTP/AVP 8 96\r\na=rtpmap:96 telephone-event/8000\r\n"
              "a=sendrecv\r\n")


class EndpointRelay(PortsOnly):
    """PortsOnly, plus the endpoint ops the B2BUA asks for, in order."""

    def __init__(self):
        super().__init__()
        self.ops: list[tuple[str, dict]] = []
        self.streams: list[tuple[str, int]] = []

    def endpoint(self, session, op, wait=True, **fields):
        self.ops.append((op, fields))
        return {}

    def apply_stream(self, session, leg, stream, source=None):
        self.streams.append((leg, stream.port))

    def forget_events(self, session):
        pass

    def events(self, session, timeout):
        return []


def plan(steps: dict):
    """The test's steps by number dialled; any other number the real routing step's."""
    real = route_with(30, applications=True)

    def route(caller, dialled, now, in_calls, **options):
        if dialled in steps:
            return steps[dialled]
        return real(caller, dialled, now, in_calls, **options)
    return route


@pytest.fixture
def make(tmp_path):
    made = []

    def make(steps, register_phones=("1001", "1002")):
        relay = EndpointRelay()
        ran: list[str] = []
        pbx = make_pbx(tmp_path, numbers=("1001", "1002", "1003"), route=plan(steps),
                       relay=relay, spawn=lambda function, *args: function(*args))

        def menu(call):
            ran.append("menu")
            call.continue_to(call.target or "600")

        def voicemail(call):
            ran.append(f"voicemail {call.target} {call.reason}")

        pbx.calls.applications.apps = {"menu": menu, "voicemail": voicemail}
        for number in register_phones:
            register(pbx, pbx.sent, number, PHONES[number])
        pbx.sent.clear()
        made.append(pbx)
        return pbx, relay, ran

    yield make
    for pbx in made:
        pbx.stack.database.close()


def sent_to(pbx, number: str, method: str) -> list[bytes]:
    phone = PHONES[number]
    start = f"{method} sip:{number}@{phone.host}:{phone.port}".encode()
    return [data for data in pbx.sent if data.startswith(start)]


def to_caller(pbx) -> list[int]:
    return [int(data.split(b" ")[1]) for data in pbx.sent
            if data.startswith(b"SIP/2.0 ") and b"CSeq: 2 INVITE" in data]


def respond(pbx, number: str, status: str, body: str = "") -> None:
    invite_sent = sent_to(pbx, number, "INVITE")[0]
    pbx.handle(answer(invite_sent, status, body, tag=f"phone-{number}",
                      contact=PHONES[number], user=number), PHONES[number])


def dial_menu(pbx) -> str:
    """1003 dials 500 (the menu), gets our 200 and ACKs it: the menu runs and
    goes on to 600. Our tag in the caller's dialog."""
    invite(pbx, number="1003", source=CALLER, target="500", body=OFFER)
    ok = last(pbx.sent, b"SIP/2.0 200")
    tag = tag_of(ok, b"To")
    pbx.handle(request("ACK", 2, "ack", to_tag=f";tag={tag}", number="1003", source=CALLER,
                       target="500"), CALLER)
    return tag


GROUP = Ring(("1001", "1002"), 20, group="600",
             on_busy=Application("voicemail", "1001", "busy"))


def test_the_group_rings_with_the_callers_law_and_the_answer_is_bridged(make):
    pbx, relay, ran = make({"500": Application("menu", ""), "600": GROUP})
    tag = dial_menu(pbx)
    assert ran == ["menu"]
    # The endpoint stays on leg A: the menu's prompts stop and ringback plays.
    assert relay.ops[0] == ("endpoint", {"leg": "A", "payload_type": 8, "event_type": 96})
    assert relay.ops[1:] == [("stop", {}), ("tone", {"hz": RINGBACK_HZ, "ms": 1000,
                                                     "every": RINGBACK_EVERY_MS})]
    invites = sent_to(pbx, "1001", "INVITE") + sent_to(pbx, "1002", "INVITE")
    assert len(invites) == 2
    for sent in invites:
        body = sent.split(b"\r\n\r\n", 1)[1]
        assert b"m=audio 10002 RTP/AVP 8 96\r\n" in body  # leg B, PCMA only
        assert b"a=rtpmap:96 telephone-event/8000" in body and b"PCMU" not in body
    respond(pbx, "1001", "180 Ringing")
    respond(pbx, "1002", "180 Ringing")
    assert to_caller(pbx) == [200]  # no 180 after our 200
    respond(pbx, "1001", "200 OK", CALLEE_SDP)
    assert to_caller(pbx) == [200]  # and no second 200
    assert len([d for d in pbx.sent if d.startswith(b"ACK sip:1001@")]) == 1
    assert len(sent_to(pbx, "1002", "CANCEL")) == 1
    assert relay.ops[-1] == ("detach", {"leg": "A"})
    assert ("B", 7000) in relay.streams
    (row,) = pbx.rows()
    assert (row["state"], row["answered_by"], row["callee_contact"]) == (
        "answered", "1001", "sip:1001@127.0.0.1:5071")
    events = [(e["kind"], e["target"], e["detail"]) for e in pbx.rows("call_event")]
    assert ("handover", "600", "application menu") in events
    # A bridged call as any other: the caller's hold (re-INVITE) goes on to 1001.
    held = OFFER.replace("a=sendrecv", "a=sendonly")
    pbx.handle(request("INVITE", 3, "hold", body=held, to_tag=f";tag={tag}", number="1003",
                       source=CALLER, target="500"), CALLER)
    (invite_sent, reinvite) = sent_to(pbx, "1001", "INVITE")
    assert b"a=sendonly" in reinvite and b"CSeq: 2 INVITE" in reinvite
    # The callee hangs up: the caller gets our BYE, the call ends.
    call_id = invite_sent.split(b"Call-ID: ")[1].split(b"\r\n")[0].decode()
    our_tag = tag_of(invite_sent, b"From")
    pbx.handle(f"BYE sip:1003@127.0.0.1:5060 SIP/2.0\r\n"
               f"Via: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bKbye1\r\nMax-Forwards: 70\r\n"
               f"From: <sip:600@pbx.test>;tag=phone-1001\r\n"
               f"To: <sip:1003@pbx.test>;tag={our_tag}\r\nCall-ID: {call_id}\r\n"
               f"CSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n", PHONES["1001"])
    assert [d for d in pbx.sent if d.startswith(b"BYE sip:1003@")]
    assert pbx.calls.calls == {}
    (row,) = pbx.rows()
    assert (row["disposition"], row["hangup_by"]) == ("ANSWERED", "callee")


RINGBACK = ("tone", {"hz": RINGBACK_HZ, "ms": 1000, "every": RINGBACK_EVERY_MS})


def test_a_callees_early_media_replaces_our_ringback_until_it_answers(make):
    pbx, relay, ran = make({"500": Application("menu", ""), "600": Ring(("1001",), 20)})
    dial_menu(pbx)
    assert relay.ops[-1] == RINGBACK
    respond(pbx, "1001", "183 Session Progress", CALLEE_SDP)
    # The caller hears the callee's early media through the relay: the endpoint is off
    # leg A, leg B points at the callee; the caller, answered already, is sent nothing.
    assert relay.ops[-1] == ("detach", {"leg": "A"}) and ("B", 7000) in relay.streams
    assert to_caller(pbx) == [200]
    respond(pbx, "1001", "183 Session Progress", CALLEE_SDP)  # again: nothing more to do
    respond(pbx, "1001", "200 OK", CALLEE_SDP)
    assert [op for op, _ in relay.ops].count("detach") == 1
    assert to_caller(pbx) == [200]
    (row,) = pbx.rows()
    assert (row["state"], row["answered_by"]) == ("answered", "1001")


def test_after_early_media_a_busy_callee_brings_our_ringback_back(make):
    pbx, relay, ran = make({"500": Application("menu", ""), "600": GROUP})
    dial_menu(pbx)
    respond(pbx, "1001", "183 Session Progress", CALLEE_SDP)
    respond(pbx, "1001", "486 Busy Here")
    assert relay.ops[-1] == ("detach", {"leg": "A"})  # 1002 still rings
    respond(pbx, "1002", "486 Busy Here")
    # Voicemail runs on the endpoint, attached to leg A again in the caller's law.
    assert relay.ops[-3:] == [("endpoint", {"leg": "A", "payload_type": 8, "event_type": 96}),
                              RINGBACK, ("stop", {})]
    assert ran == ["menu", "voicemail 1001 busy"]
    assert to_caller(pbx) == [200]


def test_busy_goes_on_to_voicemail_on_the_same_endpoint(make):
    pbx, relay, ran = make({"500": Application("menu", ""), "600": GROUP})
    dial_menu(pbx)
    respond(pbx, "1001", "486 Busy Here")
    respond(pbx, "1002", "486 Busy Here")
    assert ran == ["menu", "voicemail 1001 busy"]
    assert relay.ops[-1] == ("stop", {})  # the ringback; no second attach
    assert [op for op, _ in relay.ops].count("endpoint") == 1
    assert to_caller(pbx) == [200]
    # The voicemail app returned: our BYE, the call ends answered by the system.
    assert [d for d in pbx.sent if d.startswith(b"BYE sip:1003@")]
    (row,) = pbx.rows()
    assert (row["disposition"], row["reason"]) == ("ANSWERED", "application voicemail ended")


def test_nothing_left_is_our_bye_with_the_reason(make):
    pbx, relay, ran = make({"500": Application("menu", ""), "600": Ring(("1001",), 20)})
    dial_menu(pbx)
    respond(pbx, "1001", "180 Ringing")
    pbx.advance(19.9)
    assert sent_to(pbx, "1001", "CANCEL") == []
    pbx.advance(0.1)
    assert len(sent_to(pbx, "1001", "CANCEL")) == 1
    assert to_caller(pbx) == [200]  # never a 480 after our 200
    assert [d for d in pbx.sent if d.startswith(b"BYE sip:1003@")]
    assert pbx.calls.calls == {}
    (row,) = pbx.rows()
    assert (row["disposition"], row["reason"]) == ("NO ANSWER", "no answer within 20 s")


def test_a_refused_destination_is_our_bye(make):
    pbx, relay, ran = make({"500": Application("menu", ""),
                            "600": Refuse(404, "Not Found", "FAILED", "no such number")})
    dial_menu(pbx)
    assert to_caller(pbx) == [200]
    assert [d for d in pbx.sent if d.startswith(b"BYE sip:1003@")]
    (row,) = pbx.rows()
    assert (row["disposition"], row["reason"]) == ("FAILED", "no such number")


def test_the_caller_hanging_up_while_it_rings_cancels_the_phones(make):
    pbx, relay, ran = make({"500": Application("menu", ""), "600": GROUP})
    tag = dial_menu(pbx)
    respond(pbx, "1001", "180 Ringing")
    respond(pbx, "1002", "180 Ringing")
    pbx.handle(request("BYE", 3, "bye", to_tag=f";tag={tag}", number="1003", source=CALLER,
                       target="500"), CALLER)
    assert len(sent_to(pbx, "1001", "CANCEL")) == 1
    assert len(sent_to(pbx, "1002", "CANCEL")) == 1
    assert pbx.calls.calls == {} and pbx.calls.per_extension == {}
    (row,) = pbx.rows()
    assert (row["disposition"], row["hangup_by"]) == ("ANSWERED", "caller")


ACME = Source("127.0.0.1", 5090, "UDP")


def outside_route():
    acme = Trunk.create(name="acme", host="127.0.0.1", port=5090)
    route = OutboundRoute.create(name="mobile", position=1, patterns="998+9|9XXXXXXXX")
    OutboundRouteTrunk.create(route=route, trunk=acme, position=1)
    OutboundPolicy.insert(id=1, home_country="998").on_conflict_replace().execute()


def trunk_invite(pbx) -> bytes:
    (sent,) = [m for m in pbx.sent if m.startswith(b"INVITE sip:998901234567@127.0.0.1:5090")]
    return sent


def test_an_outside_number_through_its_route_is_bridged_without_a_second_200(make):
    pbx, relay, ran = make({"500": Application("menu", "9901234567")})
    outside_route()
    dial_menu(pbx)
    sent = trunk_invite(pbx)
    assert b"m=audio 10002 RTP/AVP 8 96\r\n" in sent and b"PCMU" not in sent
    pbx.handle(answer(sent, "183 Session Progress", CALLEE_SDP, contact=ACME,
                      user="998901234567"), ACME)
    pbx.handle(answer(sent, "200 OK", CALLEE_SDP, contact=ACME, user="998901234567"), ACME)
    assert to_caller(pbx) == [200]
    assert relay.ops[-1] == ("detach", {"leg": "A"})
    (row,) = pbx.rows()
    assert (row["trunk"], row["number_sent"], row["state"]) == ("acme", "998901234567",
                                                                 "answered")


def test_an_outside_number_busy_is_our_bye_with_the_reason(make):
    pbx, relay, ran = make({"500": Application("menu", "9901234567")})
    outside_route()
    dial_menu(pbx)
    pbx.handle(answer(trunk_invite(pbx), "486 Busy Here", contact=ACME), ACME)
    assert to_caller(pbx) == [200]
    assert [d for d in pbx.sent if d.startswith(b"BYE sip:1003@")]
    assert pbx.calls.calls == {} and pbx.calls.outbound.guard.calls == {}
    (row,) = pbx.rows()
    assert (row["disposition"], row["trunk"]) == ("BUSY", "acme")


def test_the_callers_refresh_and_keys_while_it_rings_are_answered_here(make):
    pbx, relay, ran = make({"500": Application("menu", ""), "600": GROUP})
    tag = dial_menu(pbx)
    respond(pbx, "1001", "180 Ringing")
    # RFC 4028 / RFC 3311 §5.2: an UPDATE without SDP refreshes; a re-INVITE with
    # the caller's offer gets the endpoint's answer (PCMA, as before).
    pbx.handle(request("UPDATE", 3, "upd", to_tag=f";tag={tag}", number="1003",
                       source=CALLER, target="500"), CALLER)
    assert last(pbx.sent, b"SIP/2.0").startswith(b"SIP/2.0 200")
    pbx.handle(request("INVITE", 4, "re", body=OFFER, to_tag=f";tag={tag}", number="1003",
                       source=CALLER, target="500"), CALLER)
    ok = last(pbx.sent, b"SIP/2.0")
    assert ok.startswith(b"SIP/2.0 200") and b"m=audio 10000 RTP/AVP 8 96" in ok
    pbx.handle(request("INFO", 5, "info", body="", to_tag=f";tag={tag}", number="1003",
                       source=CALLER, target="500",
                       extra="Content-Type: application/dtmf\r\n").replace(
                           "Content-Length: 0\r\n\r\n", "Content-Length: 1\r\n\r\n5"), CALLER)
    assert last(pbx.sent, b"SIP/2.0").startswith(b"SIP/2.0 200")
    assert len(sent_to(pbx, "1001", "INVITE")) == 1 and to_caller(pbx) == [200]
