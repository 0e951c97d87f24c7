"""Transfer done by the PBX (sipd/b2bua/transfer.py), without sockets.

Three phones played by the test through the real Handler, registrar, database
and history (tests/unit/b2bua_harness.py): 1001 calls 1002, and 1002 transfers
1001 to 1003, blind (REFER with Refer-To, RFC 3515) or attended (after calling
1003 itself, a Refer-To with Replaces naming that call, RFC 3891). What is
checked: what each phone is sent (202, the NOTIFYs' sipfrags, the re-INVITE
with the new party's identity, the BYEs), the relay sessions opened and
closed, the calls left, and the history's rows and events. Odd REFERs get the
answers RFC 3515 and RFC 3891 give them.
"""

from __future__ import annotations

import gc
import re
import weakref

import pytest

from sipd.b2bua.transfer import TRANSFEROR_GRACE
from sipd.registrar import Source
from sipd.sip.message import parse
from sipd.sip.refer import parse_sipfrag
from tests.unit.b2bua_harness import answer, digest, last, make_pbx, register

PHONES = {n: Source("127.0.0.1", 5070 + int(n[-1]), "UDP") for n in ("1001", "1002", "1003")}


def sdp(number: str, direction: str = "sendrecv") -> str:
    port = 6000 + int(number[-1]) * 2
    return (f"v=0\r\no=phone-{number} 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
            f"t=0 0\r\nm=audio {port} RTP/AVP 0\r\na=tool:phone-{number}\r\na={direction}\r\n")


class Phone:
    """One phone's side: what it sends (in the dialogs it has with the PBX) and
    what the PBX sent it."""

    def __init__(self, pbx, number: str):
        self.pbx, self.number, self.source = pbx, number, PHONES[number]
        self.cseq = 10
        self.dialogs: dict[str, dict] = {}  # Call-ID -> our From, their To, their Contact
        self.branches = 0

    # what the PBX sent this phone

    def got(self, method: str) -> list[bytes]:
        """Our requests of `method` to this phone (by its Request-URI's port), each
        once (not its retransmissions)."""
        return list(dict.fromkeys(
            data for data in self.pbx.sent if data.startswith(f"{method} sip:".encode())
            and f":{self.source.port}".encode() in data.split(b"\r\n", 1)[0]))

    def responses(self, cseq: str) -> list[bytes]:
        """Our responses to this phone's request with CSeq `cseq` ("12 REFER")."""
        return [data for data in self.pbx.sent if data.startswith(b"SIP/2.0 ")
                and f"\r\nCSeq: {cseq}\r\n".encode() in data
                and f":{self.source.port};".encode() in data.split(b"\r\nVia: ", 1)[1][:80]]

    # what it sends

    def _send(self, text: str) -> None:
        self.pbx.handle(text, self.source)

    def call(self, target: str, call_id: str, body: str | None = None) -> None:
        """INVITE `target` (challenged, then with credentials); the dialog is made
        when the PBX answers (`answered`)."""
        body = sdp(self.number) if body is None else body
        via = f"SIP/2.0/UDP 127.0.0.1:{self.source.port};branch=z9hG4bK{call_id}{{n}};rport"
        head = (f"INVITE sip:{target}@127.0.0.1:5060 SIP/2.0\r\nVia: {via}\r\n"
                f"Max-Forwards: 70\r\nFrom: <sip:{self.number}@127.0.0.1>;tag=t-{call_id}\r\n"
                f"To: <sip:{target}@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: {{n}} INVITE\r\n"
                f"Contact: <sip:{self.number}@127.0.0.1:{self.source.port}>\r\n{{auth}}"
                "Content-Type: application/sdp\r\n"
                f"Content-Length: {len(body)}\r\n\r\n{body}")
        self._send(head.format(n=1, auth=""))
        challenge = last(self.pbx.sent, b"SIP/2.0 407")
        self._send(head.format(n=2, auth=digest(self.number, "INVITE", challenge,
                                                "Proxy-Authorization")))
        self.dialogs[call_id] = {"ours": f"<sip:{self.number}@127.0.0.1>;tag=t-{call_id}",
                                 "cseq": 2}

    def answered(self, call_id: str) -> None:
        """The PBX's 200 to our INVITE: the dialog's other half, and our ACK."""
        ok = [d for d in self.pbx.sent if d.startswith(b"SIP/2.0 200")
              and f"Call-ID: {call_id}\r\n".encode() in d and b"INVITE\r\n" in d][-1]
        message = parse(ok)
        dialog = self.dialogs[call_id]
        dialog["theirs"] = message.headers.get("To")
        dialog["uri"] = re.search(r"<([^>]*)>", message.headers.get("Contact")).group(1)
        self.request(call_id, "ACK", cseq=int(message.headers.get("CSeq").split()[0]))

    def answer(self, invite: bytes, status: str, body: str = "") -> None:
        """Answer one of our INVITEs (a new call, or a re-INVITE in a dialog)."""
        message = parse(invite)
        call_id = message.headers.get("Call-ID")
        tag = f"p{self.number}"
        self._send(answer(invite, status, body, tag=tag, contact=self.source, user=self.number))
        if status.startswith("2") and call_id not in self.dialogs:
            ours = message.headers.get("To")
            self.dialogs[call_id] = {
                "ours": ours if ";tag=" in ours else f"{ours};tag={tag}",
                "theirs": message.headers.get("From"),
                "uri": re.search(r"<([^>]*)>", message.headers.get("Contact")).group(1),
                "cseq": 1,
            }

    def request(self, call_id: str, method: str, extra: str = "", body: str = "",
                cseq: int | None = None) -> str:
        """A request of ours in the dialog `call_id`; its CSeq ("3 BYE")."""
        dialog = self.dialogs[call_id]
        if cseq is None:
            dialog["cseq"] += 1
            cseq = dialog["cseq"]
        self.branches += 1
        self._send(
            f"{method} {dialog['uri']} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.source.port};branch=z9hG4bKp{self.number}"
            f"b{self.branches};rport\r\nMax-Forwards: 70\r\nFrom: {dialog['ours']}\r\n"
            f"To: {dialog['theirs']}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n"
            f"Contact: <sip:{self.number}@127.0.0.1:{self.source.port}>\r\n{extra}"
            + ("Content-Type: application/sdp\r\n" if body else "")
            + f"Content-Length: {len(body)}\r\n\r\n{body}")
        return f"{cseq} {method}"

    def refer(self, call_id: str, refer_to: str | None, extra: str = "") -> str:
        head = f"Refer-To: {refer_to}\r\n" if refer_to is not None else ""
        return self.request(call_id, "REFER", head + f"Referred-By: <sip:{self.number}@"
                            f"127.0.0.1>\r\n" + extra)

    def ok(self, request: bytes, body: str = "") -> None:
        """200 to a request of the PBX within a dialog (NOTIFY, BYE, re-INVITE)."""
        self._send(answer(request, "200 OK", body, contact=self.source, user=self.number))

    def call_id_of(self, message: bytes) -> str:
        return parse(message).headers.get("Call-ID")


def notifies(phone: Phone) -> list[tuple[int, str, str, str]]:
    """(status, reason, Event, Subscription-State) of each NOTIFY the phone got."""
    found = []
    for data in phone.got("NOTIFY"):
        message = parse(data)
        status, reason = parse_sipfrag(message.body)
        assert message.headers.get("Content-Type") == "message/sipfrag;version=2.0"
        found.append((status, reason, message.headers.get("Event"),
                      message.headers.get("Subscription-State")))
    return found


@pytest.fixture
def pbx(tmp_path):
    pbx = make_pbx(tmp_path, numbers=("1001", "1002", "1003"))
    for number in ("1001", "1002", "1003"):
        register(pbx, pbx.sent, number, PHONES[number])
    pbx.sent.clear()
    yield pbx
    pbx.stack.database.close()


@pytest.fixture
def phones(pbx):
    return Phone(pbx, "1001"), Phone(pbx, "1002"), Phone(pbx, "1003")


def talking(pbx, caller: Phone, callee: Phone, call_id: str) -> str:
    """`caller` calls `callee`, which answers: the Call-ID of the PBX's leg to `callee`."""
    caller.call(callee.number, call_id)
    invite = callee.got("INVITE")[-1]
    callee.answer(invite, "200 OK", sdp(callee.number))
    caller.answered(call_id)
    return callee.call_id_of(invite)


# -- blind --------------------------------------------------------------------------------------


def test_blind_transfer_connects_the_remaining_party_to_the_target(pbx, phones):
    alice, bob, carol = phones
    relay = pbx.calls.relay
    to_bob = talking(pbx, alice, bob, "x1")
    cseq = bob.refer(to_bob, "<sip:1003@127.0.0.1>")
    (accepted,) = bob.responses(cseq)
    assert accepted.startswith(b"SIP/2.0 202 Accepted")
    assert notifies(bob) == [(100, "Trying", "refer", "active;expires=300")]
    # 1003 is rung as a call from 1001 (who is being transferred), on a relay session
    # of its own, offered 1001's description.
    (invite,) = carol.got("INVITE")
    assert re.search(rb"\r\nFrom: <sip:1001@pbx.test>;tag=", invite)
    assert b"a=tool:phone-1001" in invite and relay.opened == 2
    carol.answer(invite, "180 Ringing")
    assert notifies(bob)[1:] == [(180, "Ringing", "refer", "active;expires=300")]
    live = pbx.rows()
    assert [(r["caller"], r["callee"], r["state"], r["ringing"]) for r in live] == [
        ("1001", "1002", "answered", ""), ("1001", "1003", "ringing", "1003")]
    carol.answer(invite, "200 OK", sdp("1003"))
    assert len(carol.got("ACK")) == 1
    # 1001 is re-INVITEd with 1003's description (the relay's address) and identity.
    (reinvite,) = alice.got("INVITE")
    message = parse(reinvite)
    assert message.headers.get("Call-ID") == "x1"
    assert message.headers.get("P-Asserted-Identity") == "<sip:1003@pbx.test>"
    assert b"a=tool:phone-1003" in message.body and b"a=sendrecv" in message.body
    assert notifies(bob)[2:] == [(200, "OK", "refer", "terminated;reason=noresource")]
    assert bob.got("BYE") == []  # not before the transferor has the 200
    alice.ok(reinvite, sdp("1001"))
    assert len(alice.got("ACK")) == 1
    bob.ok(bob.got("NOTIFY")[-1])
    pbx.advance(TRANSFEROR_GRACE - 0.1)
    assert bob.got("BYE") == []  # its own BYE may come meanwhile
    pbx.advance(0.1)
    (bye,) = bob.got("BYE")
    bob.ok(bye)
    assert relay.closed == 1  # the first call's session
    rows = pbx.rows()
    first, second = rows
    assert (first["state"], first["answered_by"], first["reason"]) == (
        "ended", "1002", "transferred to 1003 by 1002")
    assert (second["caller"], second["callee"], second["state"], second["answered_by"]) == (
        "1001", "1003", "answered", "1003")
    events = [(e["call"], e["kind"], e["by"], e["target"], e["detail"])
              for e in pbx.rows("call_event")]
    assert events == [(second["id"], "transferred", "1002", "1003",
                       f"blind from call {first['id']}"),
                      (first["id"], "transferred", "1002", "1003", "blind")]
    assert pbx.calls.per_extension == {"1001": 1, "1003": 1}
    # The new pair is a call like any other: 1001 hangs up, 1003 gets the BYE.
    alice.request("x1", "BYE")
    (bye,) = carol.got("BYE")
    carol.ok(bye)
    assert pbx.calls.calls == {} and pbx.calls.dialogs == {} and pbx.calls.per_extension == {}
    assert relay.closed == 2
    assert pbx.row(second["id"])["hangup_by"] == "caller"


def test_blind_transfer_to_a_busy_number_leaves_the_call_to_resume(pbx, phones):
    alice, bob, carol = phones
    relay = pbx.calls.relay
    to_bob = talking(pbx, alice, bob, "x1")
    # 1002 holds 1001 first (a re-INVITE, relayed), as phones do before transferring.
    bob.request(to_bob, "INVITE", body=sdp("1002", "sendonly"))
    held = alice.got("INVITE")[-1]
    alice.ok(held, sdp("1001", "recvonly"))
    bob.refer(to_bob, "sip:1003@127.0.0.1")
    (invite,) = carol.got("INVITE")
    assert b"a=sendrecv" in invite and b"recvonly" not in invite  # not offered on hold
    carol.answer(invite, "486 Busy Here")
    assert [n[:2] for n in notifies(bob)] == [(100, "Trying"), (486, "Busy Here")]
    assert notifies(bob)[-1][3] == "terminated;reason=noresource"
    # The attempt's session is gone, the call is as it was: 1002 resumes it.
    assert (relay.opened, relay.closed) == (2, 1)
    assert len(pbx.calls.calls) == 1 and bob.got("BYE") == [] and alice.got("BYE") == []
    bob.request(to_bob, "INVITE", body=sdp("1002"))
    resumed = alice.got("INVITE")[-1]
    assert b"a=sendrecv" in resumed and resumed != held
    attempt = pbx.rows()[1]
    assert (attempt["caller"], attempt["callee"], attempt["disposition"]) == (
        "1001", "1003", "BUSY")
    (event,) = pbx.rows("call_event")
    assert (event["call"], event["kind"], event["target"]) == (attempt["id"], "transferred",
                                                                "1003")


def test_a_second_refer_in_the_dialog_has_its_notifies_named_by_its_cseq(pbx, phones):
    """RFC 3515 §2.4.6: id= the REFER's CSeq for the second and later REFERs."""
    alice, bob, carol = phones
    to_bob = talking(pbx, alice, bob, "x1")
    bob.refer(to_bob, "sip:1003@127.0.0.1")
    carol.answer(carol.got("INVITE")[-1], "486 Busy Here")
    cseq = bob.refer(to_bob, "sip:1003@127.0.0.1")
    number = cseq.split()[0]
    assert [n[2] for n in notifies(bob)] == ["refer", "refer", f"refer;id={number}"]


def test_a_transfer_to_no_such_number_is_reported_at_once(pbx, phones):
    alice, bob, _ = phones
    to_bob = talking(pbx, alice, bob, "x1")
    cseq = bob.refer(to_bob, "<sip:4040@127.0.0.1>")
    assert bob.responses(cseq)[0].startswith(b"SIP/2.0 202")
    assert [n[0] for n in notifies(bob)] == [100, 404]
    assert pbx.calls.relay.opened == 1 and len(pbx.calls.calls) == 1
    refused = pbx.rows()[1]
    assert (refused["caller"], refused["callee"], refused["disposition"]) == (
        "1001", "4040", "FAILED")


def test_the_transferor_hanging_up_at_once_leaves_the_transfer_going(pbx, phones):
    """Phones that hang up right after the 202: the remaining party is not hung up."""
    alice, bob, carol = phones
    to_bob = talking(pbx, alice, bob, "x1")
    bob.refer(to_bob, "sip:1003@127.0.0.1")
    bob.request(to_bob, "BYE")
    assert alice.got("BYE") == []
    invite = carol.got("INVITE")[-1]
    carol.answer(invite, "200 OK", sdp("1003"))
    reinvite = alice.got("INVITE")[-1]
    alice.ok(reinvite, sdp("1001"))
    assert [row["state"] for row in pbx.rows()] == ["ended", "answered"]
    assert len(bob.got("NOTIFY")) == 1  # only the 100: it was gone for the rest
    alice.request("x1", "BYE")
    assert len(carol.got("BYE")) == 1


def test_the_target_failing_after_the_transferor_left_ends_the_call(pbx, phones):
    alice, bob, carol = phones
    to_bob = talking(pbx, alice, bob, "x1")
    bob.refer(to_bob, "sip:1003@127.0.0.1")
    bob.request(to_bob, "BYE")
    carol.answer(carol.got("INVITE")[-1], "486 Busy Here")
    assert len(alice.got("BYE")) == 1  # nobody to go back to
    assert pbx.calls.calls == {} and pbx.calls.per_extension == {}
    assert pbx.calls.relay.closed == 2


def test_the_remaining_party_hanging_up_cancels_the_transfer(pbx, phones):
    alice, bob, carol = phones
    to_bob = talking(pbx, alice, bob, "x1")
    bob.refer(to_bob, "sip:1003@127.0.0.1")
    invite = carol.got("INVITE")[-1]
    carol.answer(invite, "180 Ringing")
    alice.request("x1", "BYE")
    assert len(bob.got("BYE")) == 1 and len(carol.got("CANCEL")) == 1
    carol.answer(invite, "487 Request Terminated")
    assert pbx.calls.calls == {} and pbx.calls.per_extension == {}
    assert pbx.calls.relay.closed == 2


def test_the_target_ringing_too_long_is_a_480(pbx, phones):
    alice, bob, carol = phones
    to_bob = talking(pbx, alice, bob, "x1")
    bob.refer(to_bob, "sip:1003@127.0.0.1")
    carol.answer(carol.got("INVITE")[-1], "180 Ringing")
    pbx.advance(30)
    assert len(carol.got("CANCEL")) == 1
    assert [n[0] for n in notifies(bob)] == [100, 180, 480]
    assert len(pbx.calls.calls) == 1


def test_no_notifies_when_the_transferor_asked_for_none(pbx, phones):
    """RFC 4488 §4: Refer-Sub: false, answered in the 202; our BYE follows the join."""
    alice, bob, carol = phones
    to_bob = talking(pbx, alice, bob, "x1")
    cseq = bob.refer(to_bob, "sip:1003@127.0.0.1", "Refer-Sub: false\r\n")
    assert b"\r\nRefer-Sub: false\r\n" in bob.responses(cseq)[0]
    carol.answer(carol.got("INVITE")[-1], "200 OK", sdp("1003"))
    assert bob.got("NOTIFY") == [] and len(bob.got("BYE")) == 1


# -- attended -----------------------------------------------------------------------------------


def consulting(pbx, phones, hold=True):
    """1001 calls 1002; 1002 holds it and calls 1003, which answers. Returns the
    Call-ID of the PBX's leg to 1002 in the first call."""
    alice, bob, carol = phones
    to_bob = talking(pbx, alice, bob, "x1")
    if hold:
        bob.request(to_bob, "INVITE", body=sdp("1002", "sendonly"))
        alice.ok(alice.got("INVITE")[-1], sdp("1001", "recvonly"))
    talking(pbx, bob, carol, "y1")
    return to_bob


def replaces_of(phone: Phone, call_id: str) -> str:
    """The Replaces a phone writes for its dialog `call_id` with the PBX (RFC 3891
    §3: to-tag the PBX's, from-tag its own), escaped into a URI."""
    dialog = phone.dialogs[call_id]
    ours = re.search(r";tag=([^;>]+)", dialog["ours"]).group(1)
    theirs = re.search(r";tag=([^;>]+)", dialog["theirs"]).group(1)
    return f"{call_id}%3Bto-tag%3D{theirs}%3Bfrom-tag%3D{ours}".replace("@", "%40")


def test_attended_transfer_joins_the_held_party_with_the_target(pbx, phones):
    alice, bob, carol = phones
    relay = pbx.calls.relay
    to_bob = consulting(pbx, phones)
    cseq = bob.refer(to_bob, f"<sip:1003@127.0.0.1?Replaces={replaces_of(bob, 'y1')}>")
    assert bob.responses(cseq)[0].startswith(b"SIP/2.0 202")
    assert relay.opened == 3  # a session for the new pair
    # 1003 first: re-INVITEd with 1001's description (off hold) and identity.
    (to_carol,) = carol.got("INVITE")[1:]
    message = parse(to_carol)
    assert message.headers.get("P-Asserted-Identity") == "<sip:1001@pbx.test>"
    assert b"a=tool:phone-1001" in message.body and b"a=sendrecv" in message.body
    assert alice.got("INVITE")[1:] == []
    carol.ok(to_carol, sdp("1003"))
    # Then 1001, with 1003's, and 1002 is told.
    (to_alice,) = alice.got("INVITE")[1:]
    message = parse(to_alice)
    assert message.headers.get("P-Asserted-Identity") == "<sip:1003@pbx.test>"
    assert b"a=tool:phone-1003" in message.body
    alice.ok(to_alice, sdp("1001"))
    assert [n[0] for n in notifies(bob)] == [100, 200]
    bob.ok(bob.got("NOTIFY")[-1])
    pbx.advance(TRANSFEROR_GRACE)
    byes = bob.got("BYE")
    assert sorted(bob.call_id_of(b) for b in byes) == sorted([to_bob, "y1"])
    for bye in byes:
        bob.ok(bye)
    assert relay.closed == 2  # both calls' sessions
    first, second, joined = pbx.rows()
    assert [(r["caller"], r["callee"], r["answered_by"], r["state"]) for r in (first, second,
                                                                              joined)] == [
        ("1001", "1002", "1002", "ended"), ("1002", "1003", "1003", "ended"),
        ("1001", "1003", "1003", "answered")]
    assert first["reason"] == second["reason"] == "transferred to 1003 by 1002"
    events = sorted((e["call"], e["kind"], e["by"], e["target"], e["detail"])
                    for e in pbx.rows("call_event"))
    assert events == [
        (first["id"], "transferred", "1002", "1003", "attended"),
        (second["id"], "transferred", "1002", "1003", "attended"),
        (joined["id"], "transferred", "1002", "1003",
         f"attended from calls {first['id']} and {second['id']}"),
    ]
    assert pbx.calls.per_extension == {"1001": 1, "1003": 1}
    # 1003 hangs up: 1001 gets the BYE, and nothing is left.
    carol.request(carol.call_id_of(to_carol), "BYE")
    alice.ok(alice.got("BYE")[-1])
    assert pbx.calls.calls == {} and pbx.calls.dialogs == {} and pbx.calls.per_extension == {}
    assert relay.closed == 3


def test_attended_transfer_the_target_refuses_leaves_both_calls(pbx, phones):
    alice, bob, carol = phones
    relay = pbx.calls.relay
    to_bob = consulting(pbx, phones)
    bob.refer(to_bob, f"<sip:1003@127.0.0.1?Replaces={replaces_of(bob, 'y1')}>")
    (to_carol,) = carol.got("INVITE")[1:]
    carol.answer(to_carol, "488 Not Acceptable Here")
    assert [n[:2] for n in notifies(bob)] == [(100, "Trying"), (488, "Not Acceptable Here")]
    assert (relay.opened, relay.closed) == (3, 1)
    assert len(pbx.calls.calls) == 2 and bob.got("BYE") == [] and alice.got("BYE") == []
    # 1002 still talks to 1003, through the second call.
    bob.request("y1", "INFO", body="")
    assert carol.got("INFO")


@pytest.mark.parametrize(("replaces", "status"), [
    ("nosuchcall%40h%3Bto-tag%3Da%3Bfrom-tag%3Db", 481),  # RFC 3891 §3: no match
    ("{call}%3Bto-tag%3D{theirs}%3Bfrom-tag%3Dnot-mine", 481),  # the tags must match
    ("{call}%3Bto-tag%3D{theirs}%3Bfrom-tag%3D{ours}%3Bearly-only", 486),  # §3
    ("{call}%3Bto-tag%3D{theirs}", 400),  # no from-tag (§6.1)
])
def test_a_replaces_naming_no_dialog_of_the_transferor_is_refused(pbx, phones, replaces,
                                                                 status):
    alice, bob, carol = phones
    to_bob = consulting(pbx, phones)
    dialog = bob.dialogs["y1"]
    value = replaces.format(call="y1", theirs=re.search(r";tag=([^;>]+)",
                                                        dialog["theirs"]).group(1),
                            ours=re.search(r";tag=([^;>]+)", dialog["ours"]).group(1))
    cseq = bob.refer(to_bob, f"<sip:1003@127.0.0.1?Replaces={value}>")
    assert int(bob.responses(cseq)[0].split(b" ")[1]) == status
    assert bob.got("NOTIFY") == [] and len(pbx.calls.calls) == 2


def test_a_replaces_naming_another_extensions_call_is_403(pbx, phones):
    """RFC 3891 §7: only a party of the dialog may have it replaced. 1003 names
    the dialog of 1002's call to it (1002's side: to-tag ours, from-tag 1002's)."""
    alice, bob, carol = phones
    to_bob = consulting(pbx, phones)
    cseq = alice.refer("x1", f"<sip:1003@127.0.0.1?Replaces={replaces_of(bob, 'y1')}>")
    assert alice.responses(cseq)[0].startswith(b"SIP/2.0 403")
    # nor the call it is in itself
    cseq = bob.refer(to_bob, f"<sip:1001@127.0.0.1?Replaces={replaces_of(bob, to_bob)}>")
    assert bob.responses(cseq)[0].startswith(b"SIP/2.0 403")
    assert len(pbx.calls.calls) == 2


# -- odd REFERs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("refer_to", "extra", "status"), [
    (None, "", 400),  # RFC 3515 §2.4.1: no Refer-To
    ("sip:1003@127.0.0.1", "Refer-To: sip:1001@127.0.0.1\r\n", 400),  # two
    ("<sip:1003@127.0.0.1", "", 400),  # unreadable
    ("http://www.example.com/", "", 403),  # not a SIP URI
    ("<sip:1003@127.0.0.1;method=SUBSCRIBE>", "", 403),  # not a call
])
def test_an_odd_refer_gets_an_error_and_changes_nothing(pbx, phones, refer_to, extra, status):
    alice, bob, _ = phones
    to_bob = talking(pbx, alice, bob, "x1")
    cseq = bob.refer(to_bob, refer_to, extra)
    (response,) = bob.responses(cseq)
    assert int(response.split(b" ")[1]) == status, response
    assert bob.got("NOTIFY") == [] and pbx.calls.relay.opened == 1
    assert len(pbx.calls.calls) == 1 and pbx.rows("call_event") == []


def test_a_second_refer_while_one_is_under_way_is_491(pbx, phones):
    alice, bob, carol = phones
    to_bob = talking(pbx, alice, bob, "x1")
    bob.refer(to_bob, "sip:1003@127.0.0.1")
    cseq = bob.refer(to_bob, "sip:1003@127.0.0.1")
    assert bob.responses(cseq)[0].startswith(b"SIP/2.0 491")
    assert len(carol.got("INVITE")) == 1


def test_a_refer_before_the_call_is_answered_is_not_allowed(pbx, phones):
    alice, bob, _ = phones
    alice.call("1002", "x1")
    invite = bob.got("INVITE")[-1]
    bob.answer(invite, "180 Ringing")
    bob.dialogs[bob.call_id_of(invite)] = {
        "ours": parse(invite).headers.get("To") + ";tag=p1002",
        "theirs": parse(invite).headers.get("From"),
        "uri": "sip:1001@127.0.0.1:5060", "cseq": 1}
    cseq = bob.refer(bob.call_id_of(invite), "sip:1003@127.0.0.1")
    assert int(bob.responses(cseq)[0].split(b" ")[1]) in (405, 481)


# -- nothing left behind --------------------------------------------------------------------------


def test_transferred_calls_are_freed_without_the_cyclic_collector(pbx, phones):
    """As every call (tests/unit/test_call_lifetime.py): the transactions that live
    on for 32 s hold nothing of the calls a transfer ended or made."""
    alice, bob, carol = phones
    gc.collect()
    gc.disable()
    try:
        # (no hold: a re-INVITE the bridge relayed keeps its call for the 32 s of its
        # transaction, transfer or not)
        to_bob = consulting(pbx, phones, hold=False)
        first, second = (weakref.ref(call) for call in pbx.calls.calls.values())
        bob.refer(to_bob, f"<sip:1003@127.0.0.1?Replaces={replaces_of(bob, 'y1')}>")
        to_carol = carol.got("INVITE")[-1]
        carol.ok(to_carol, sdp("1003"))
        alice.ok(alice.got("INVITE")[-1], sdp("1001"))
        (joined,) = (weakref.ref(c) for c in pbx.calls.calls.values() if c.callee == "1003"
                     and c.caller_number == "1001")
        bob.ok(bob.got("NOTIFY")[-1])
        pbx.advance(TRANSFEROR_GRACE)
        for bye in bob.got("BYE"):
            bob.ok(bye)
        assert first() is None and second() is None
        # the blind way, from the new call: 1003 transfers 1001 to 1002
        carol.refer(carol.call_id_of(to_carol), "sip:1002@127.0.0.1")
        invite = bob.got("INVITE")[-1]
        bob.answer(invite, "200 OK", sdp("1002"))
        alice.ok(alice.got("INVITE")[-1], sdp("1001"))
        (blind,) = (weakref.ref(c) for c in pbx.calls.calls.values() if c.callee == "1002")
        carol.ok(carol.got("NOTIFY")[-1])
        carol.request(carol.call_id_of(to_carol), "BYE")  # as phones do, at once
        assert joined() is None
        alice.request("x1", "BYE")
        bob.ok(bob.got("BYE")[-1])
        assert pbx.calls.calls == {} and pbx.calls.dialogs == {}
        assert blind() is None
    finally:
        gc.enable()


def test_a_blind_transfer_goes_through_the_routing_step(pbx, phones):
    """The Refer-To's number is dialled as any other: here a ring group, whose
    member is shown who calls and through which group."""
    from core import groups

    groups.create_group("600", "Sales", ["1003"])
    alice, bob, carol = phones
    to_bob = talking(pbx, alice, bob, "x1")
    bob.refer(to_bob, "sip:600@127.0.0.1")
    (invite,) = carol.got("INVITE")
    assert re.search(rb'\r\nFrom: "1001 via Sales" <sip:1001@pbx.test>;tag=', invite), invite
    carol.answer(invite, "200 OK", sdp("1003"))
    alice.ok(alice.got("INVITE")[-1], sdp("1001"))
    joined = pbx.rows()[1]
    assert (joined["callee"], joined["via_group"], joined["answered_by"]) == (
        "600", "600", "1003")
    assert [n[0] for n in notifies(bob)] == [100, 200]


def test_our_reinvite_crossing_the_phones_is_sent_again(pbx, phones):
    """RFC 3261 §14.1: a 491 to our re-INVITE, and it goes again after a random wait
    (0-2 s: 1001 began its dialog)."""
    alice, bob, carol = phones
    to_bob = talking(pbx, alice, bob, "x1")
    bob.refer(to_bob, "sip:1003@127.0.0.1")
    carol.answer(carol.got("INVITE")[-1], "200 OK", sdp("1003"))
    (first,) = alice.got("INVITE")
    alice._send(answer(first, "491 Request Pending", contact=alice.source, user="1001"))
    pbx.advance(2.0)
    again = alice.got("INVITE")[1:]
    assert len(again) == 1 and b"a=tool:phone-1003" in again[0]
    alice.ok(again[0], sdp("1001"))
    assert len(pbx.calls.calls) == 2 and alice.got("BYE") == []


def test_the_remaining_party_refusing_the_new_media_ends_the_new_call(pbx, phones):
    alice, bob, carol = phones
    to_bob = talking(pbx, alice, bob, "x1")
    bob.refer(to_bob, "sip:1003@127.0.0.1")
    carol.answer(carol.got("INVITE")[-1], "200 OK", sdp("1003"))
    (reinvite,) = alice.got("INVITE")
    alice._send(answer(reinvite, "488 Not Acceptable Here", contact=alice.source, user="1001"))
    assert len(alice.got("BYE")) == 1 and len(carol.got("BYE")) == 1
    transferred = pbx.rows()[1]
    assert transferred["reason"] == "transferred party refused the new media (488)"
