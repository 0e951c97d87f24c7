"""INVITE and client transactions with a moved clock (RFC 3261 §17, RFC 6026), and dialogs (§12)."""

import pytest

from sipd.sip.dialog import Dialog
from sipd.sip.headers import CSeq, NameAddr, Via
from sipd.sip.message import Headers, Request, Response, parse
from sipd.sip.transaction import (
    T1,
    T2,
    T4,
    ClientTransactions,
    Event,
    Received,
    ServerTransactions,
    State,
    build_cancel,
)


def invite(branch="z9hG4bKinv1", method="INVITE"):
    headers = Headers()
    headers.add("Via", f"SIP/2.0/UDP 192.0.2.1:5060;branch={branch}")
    headers.add("From", "<sip:1001@pbx.test>;tag=f1")
    headers.add("To", "<sip:1002@pbx.test>")
    headers.add("Call-ID", "call-1")
    headers.add("CSeq", f"1 {method}")
    headers.add("Max-Forwards", "70")
    return Request(headers=headers, method=method, uri="sip:1002@192.0.2.2:5062")


def response(request, status, to_tag="t2"):
    headers = Headers()
    for name in ("Via", "From", "Call-ID", "CSeq"):
        headers.add(name, request.headers.get(name))
    headers.add("To", request.headers.get("To") + (f";tag={to_tag}" if status > 100 else ""))
    return Response(headers=headers, status=status, reason="X")


# -- client INVITE (§17.1.1) ----------------------------------------------------------


def test_timer_a_doubles_and_timer_b_times_out():
    table = ClientTransactions()
    txn = table.start(invite(), reliable=False, now=0)
    sent = []
    for now in [x / 10 for x in range(0, 330)]:
        resend, timed_out = table.tick(now)
        sent += [now for _ in resend]
        if timed_out:
            break
    # Timer A: T1, then 2T1, 4T1, ... ; Timer B: 64*T1 = 32 s.
    assert sent == pytest.approx([0.5, 1.5, 3.5, 7.5, 15.5, 31.5])
    assert timed_out == [txn] and now == pytest.approx(32.0)


def test_provisional_stops_retransmissions_and_timer_b():
    table = ClientTransactions()
    request = invite()
    txn = table.start(request, reliable=False, now=0)
    event, to_send = table.receive(txn, response(request, 180), now=0.1)
    assert (event, to_send, txn.state) == (Event.DELIVER, None, State.PROCEEDING)
    assert table.tick(100) == ([], [])  # ringing for minutes is the TU's business


def test_non_2xx_final_is_acked_by_the_transaction_and_absorbed_after():
    table = ClientTransactions()
    request = invite()
    txn = table.start(request, reliable=False, now=0)
    event, ack = table.receive(txn, response(request, 486), now=1)
    assert event is Event.DELIVER and txn.state is State.COMPLETED
    ack_request = parse(ack)
    # §17.1.1.3: same branch, CSeq number, To with the response's tag.
    assert ack_request.method == "ACK"
    assert Via.parse(ack_request.headers.get("Via")).branch == "z9hG4bKinv1"
    assert CSeq.parse(ack_request.headers.get("CSeq")) == CSeq(1, "ACK")
    assert NameAddr.parse(ack_request.headers.get("To")).tag == "t2"
    # A retransmitted 486 gets the same ACK again and is not delivered twice.
    assert table.receive(txn, response(request, 486), now=2) == (Event.ABSORB, ack)
    # Timer D (32 s over UDP) ends it.
    table.tick(32.5)
    assert len(table) == 1
    table.tick(33.1)
    assert len(table) == 0


def test_2xx_goes_to_accepted_and_retransmitted_2xx_reach_the_tu():
    table = ClientTransactions()
    request = invite()
    txn = table.start(request, reliable=False, now=0)
    assert table.receive(txn, response(request, 200), now=1) == (Event.DELIVER, None)
    assert txn.state is State.ACCEPTED  # RFC 6026 §7.2
    # What is left for Timer M's 32 s holds neither the request nor the response:
    # a repeat is still matched by the key alone and reaches the TU.
    assert txn.request is None and txn.last_response is None
    again = response(request, 200)
    assert table.match(again) is txn and txn.method == "INVITE"
    assert table.receive(txn, again, now=2) == (Event.DELIVER, None)
    table.tick(1 + 64 * T1 + 0.1)  # Timer M
    assert len(table) == 0


def test_match_by_branch_and_method():
    table = ClientTransactions()
    request = invite()
    txn = table.start(request, reliable=False, now=0)
    assert table.match(response(request, 180)) is txn
    cancel = build_cancel(request)
    assert table.match(response(cancel, 200)) is None
    other = table.start(cancel, reliable=False, now=0)
    assert table.match(response(cancel, 200)) is other


def test_cancel_copies_the_invite():
    request = invite()
    request.headers.add("Route", "<sip:proxy.test;lr>")
    cancel = build_cancel(request)
    # §9.1: same Request-URI, Call-ID, To, From, CSeq number, one Via (same branch), Route.
    assert cancel.uri == request.uri
    for name in ("Call-ID", "To", "From", "Via", "Route"):
        assert cancel.headers.get(name) == request.headers.get(name)
    assert cancel.headers.get("CSeq") == "1 CANCEL"


# -- client non-INVITE (§17.1.2) ------------------------------------------------------


def test_timer_e_caps_at_t2_and_timer_f_times_out():
    table = ClientTransactions()
    txn = table.start(invite(method="BYE"), reliable=False, now=0)
    sent = []
    for now in [x / 10 for x in range(0, 330)]:
        resend, timed_out = table.tick(now)
        sent += [now for _ in resend]
        if timed_out:
            break
    assert sent[:5] == pytest.approx([0.5, 1.5, 3.5, 7.5, 11.5])  # 0.5, 1, 2, 4, then T2
    assert timed_out == [txn]


def test_non_invite_completed_waits_timer_k():
    table = ClientTransactions()
    request = invite(method="BYE")
    txn = table.start(request, reliable=False, now=0)
    assert table.receive(txn, response(request, 200), now=1)[0] is Event.DELIVER
    assert table.receive(txn, response(request, 200), now=2)[0] is Event.ABSORB
    table.tick(1 + T4 + 0.1)
    assert len(table) == 0


def test_reliable_transport_never_retransmits():
    table = ClientTransactions()
    table.start(invite(), reliable=True, now=0)
    assert table.tick(10) == ([], [])


# -- server INVITE (§17.2.1) ----------------------------------------------------------


def test_timer_g_until_ack_then_confirmed_and_timer_i():
    table = ServerTransactions()
    request = invite()
    via = Via.parse(request.headers.get("Via"))
    kind, txn = table.receive(request, via, reliable=False, now=0)
    assert kind is Received.NEW
    table.respond(txn, 486, b"486", now=0)
    resent = []
    for now in [x / 10 for x in range(1, 80)]:
        resent += [now for _ in table.tick(now)]
    # Timer G: T1, doubling, capped at T2.
    assert resent == pytest.approx([0.5, 1.5, 3.5, 7.5])
    ack = invite(method="ACK")
    assert table.find(ack, Via.parse(ack.headers.get("Via")), "INVITE") is txn
    table.ack(txn, now=8)
    assert txn.state is State.CONFIRMED
    assert table.tick(20) == []
    assert table.expire(8 + T4 + 0.1) == 1


def test_timer_h_gives_up_without_ack():
    table = ServerTransactions()
    request = invite()
    kind, txn = table.receive(request, Via.parse(request.headers.get("Via")), False, 0)
    table.respond(txn, 480, b"480", now=0)
    table.tick(64 * T1 + 0.1)
    assert len(table) == 0


def test_2xx_is_accepted_and_invite_retransmissions_absorbed():
    table = ServerTransactions()
    request = invite()
    via = Via.parse(request.headers.get("Via"))
    kind, txn = table.receive(request, via, False, 0)
    table.respond(txn, 200, b"200", now=1)
    assert txn.state is State.ACCEPTED
    assert table.tick(5) == []  # the TU retransmits 2xx, not the transaction
    assert table.receive(request, via, False, 2) == (Received.RETRANSMISSION, txn)
    assert T2 == 4.0


# -- dialogs (§12) --------------------------------------------------------------------


def test_in_dialog_request_and_cseq_order():
    dialog = Dialog(
        call_id="c1",
        local_tag="lt",
        remote_tag="rt",
        local_uri="<sip:1001@pbx.test>",
        remote_uri="<sip:1002@pbx.test>",
        remote_target="sip:1002@192.0.2.2:5062;ob",
        local_seq=1,
        route_set=["<sip:p1.test;lr>", "<sip:p2.test;lr>"],
    )
    bye = dialog.request("BYE", "SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKx", "<sip:pbx@h>")
    assert bye.uri == "sip:1002@192.0.2.2:5062;ob"
    assert bye.headers.get_all("Route") == ["<sip:p1.test;lr>", "<sip:p2.test;lr>"]
    assert NameAddr.parse(bye.headers.get("From")).tag == "lt"
    assert NameAddr.parse(bye.headers.get("To")).tag == "rt"
    assert bye.headers.get("CSeq") == "2 BYE"
    reinvite = dialog.request("INVITE", "SIP/2.0/UDP h;branch=z9hG4bKy", "<sip:pbx@h>", b"v=0")
    assert reinvite.headers.get("CSeq") == "3 INVITE"
    assert reinvite.headers.get("Content-Type") == "application/sdp"
    ack = dialog.request("ACK", "SIP/2.0/UDP h;branch=z9hG4bKz", "", cseq=3)
    assert ack.headers.get("CSeq") == "3 ACK"
    assert dialog.accept_remote_cseq(5, "BYE")
    assert not dialog.accept_remote_cseq(5, "INFO")  # §12.2.2: not higher -> 500
    assert dialog.accept_remote_cseq(5, "ACK")
