"""The answered call: two dialogs bridged, each side keeping its own dialog,
CSeq and transactions (RFC 3261 §12-§17).

- `connect`: the callee's 2xx becomes our 2xx to the caller, retransmitted
  until its ACK (§13.3.1.4, in legs.py), with the relay's address in its SDP.
- re-INVITE, UPDATE and INFO from either phone are passed on to the other
  (`relay_request`), their answers back (`Relayed`); one offer at a time: an
  offer while another is pending gets 491 (§14.1, glare).
- Hold: each phone's declared direction (RFC 3264 §6.1) is kept on its leg; a
  call held both ways ends after `hold_timeout` seconds (an abandoned or
  abusive call: a=inactive from one phone would otherwise keep its slot for
  the maximum call duration).
- BYE from one phone ends the call and is passed on to the other (in calls.py,
  which ends calls).
"""

from __future__ import annotations

import logging

from sipd.b2bua import early, session_timer
from sipd.b2bua.call import Phase
from sipd.b2bua.legs import Leg
from sipd.b2bua.media import codec, direction, held_both_ways, parsed
from sipd.b2bua.stack import ALLOW
from sipd.sip.extensions import SUPPORTED_HEADER
from sipd.sip.headers import CSeq
from sipd.sip.message import Request, Response
from sipd.sip.sdp import SdpError, SessionDescription
from sipd.sip.transaction import ServerTransaction

log = logging.getLogger("sipd")


class Relayed:
    """A request one phone sent that we passed on to the other (re-INVITE, UPDATE,
    INFO): the context of our client transaction, whose answer goes back."""

    __slots__ = ("bridge", "call", "origin", "target", "txn", "request", "method", "key")

    def __init__(self, bridge, call, origin: Leg, target: Leg, txn: ServerTransaction,
                 request: Request):
        self.bridge = bridge
        self.call = call
        self.origin = origin  # the leg whose phone sent it
        self.target = target  # the leg we sent it on to
        self.txn = txn  # where the answer goes back
        self.request = request
        self.method = request.method
        self.key = None  # our client transaction's

    def on_response(self, response: Response) -> None:
        self.bridge.relayed_response(self, response)

    def on_timeout(self) -> None:
        self.call.relayed.pop(self.key, None)
        self.bridge.owner.stack.reply(self.txn, self.request, 408)


class Bridge:
    __slots__ = ("owner",)

    def __init__(self, owner):
        self.owner = owner  # the B2BUA

    def connect(self, call, leg, response: Response) -> None:
        """`leg` answered (its 2xx ACKed already): answer the caller."""
        owner = self.owner
        caller = call.caller
        call.phase = Phase.ANSWERED
        call.answered_at = owner.clock()
        answer = self.join(call, leg, response)
        body = owner.media.sdp_for(call, answer, "A") if answer else b""
        if early.answered_in_prack(call):
            # Its answer to our offer came in its PRACK (RFC 3262 §5): no offer
            # again in the 2xx (RFC 6337 §3.1.2); the callee fits it, if need be.
            body = b""
            if answer is not None:
                early.fit_callee(owner, call, leg, answer)
        elif call.delayed and body:
            # The caller sent no offer (RFC 3261 §13.2.1): the callee's answer,
            # on leg A, is our offer to it (what the callee chose, so that the
            # caller's answer fits both); its answer comes in the ACK.
            caller.awaiting_answer = caller.cseq()
        headers = [("Contact", owner.stack.contact(caller.us, caller.destination.transport)),
                   ("Allow", ALLOW), ("Supported", SUPPORTED_HEADER)]
        headers += session_timer.caller_answered(call)  # RFC 4028 §9
        ok = caller.respond(200, "OK", headers, body)
        caller.retransmit_2xx(bytes(ok), caller.cseq())
        self.answered(call, leg, answer)
        call.max_timer = owner.stack.scheduler.call_later(
            owner.max_duration, owner.hangup, call, "maximum call duration reached"
        )
        if answer is None:
            owner.hangup(call, "callee answered without SDP")

    def join(self, call, leg, response: Response) -> SessionDescription | None:
        """`leg`, whose phone answered with `response`, becomes the callee's leg,
        bridged to the caller's in the relay (for `connect`, and for a call an
        application handed on: handover.py). Its answer, or None (logged) if
        it brought none."""
        caller = call.caller
        call.callee_leg = leg
        caller.other, leg.other = leg, caller
        answer = parsed(response.body)
        if answer is None and leg.sdp is not None:
            # The answer came in its 183 (early media) and the 2xx did not repeat
            # it (RFC 3264 §5 has the 2xx repeat it; some providers do not).
            answer = leg.sdp
        if answer is None:
            log.warning(
                "Call %s -> %s: answer without usable SDP; hanging up",
                call.caller_number, call.callee,
            )
        stream = self.owner.media.apply(call, leg, answer)
        if stream is not None:
            self.declared(call, leg, stream)
        return answer

    def answered(self, call, leg, answer: SessionDescription | None, how: str = "") -> None:
        """The history, the log line and the recording of a call `leg` answered."""
        owner = self.owner
        owner.history.answered(
            call.record_id, call.answered_at, leg.contact, codec(answer) if answer else "",
            leg.extension,
        )
        log.info("Call %s -> %s answered by %s%s", call.caller_number, call.callee,
                 leg.contact, how)
        owner.recorder.answered(call, leg)  # the extensions that record their calls

    # -- the session timer (RFC 4028, session_timer.py) ---------------------------------------

    def timer_headers(self, call, leg) -> list:
        """§9: Session-Expires in our 2xx to a re-INVITE or UPDATE from `leg`'s
        phone, where that leg times its session."""
        session = session_timer.of(call, leg)
        return session.response_headers() if session is not None else []

    # -- hold ----------------------------------------------------------------------------

    def declared(self, call, leg: Leg, stream) -> None:
        """Keep what this leg's phone declared; a call whose two directions now
        both stand still (held both ways) starts its hold time."""
        leg.direction = direction(stream)
        other = leg.other
        self.owner.music.changed(call, leg)  # music on hold for the other phone
        held = (
            call.phase is Phase.ANSWERED
            and other is not None
            and held_both_ways(leg.direction, other.direction)
        )
        owner = self.owner
        if held and call.held_since is None:
            call.held_since = owner.clock()
            owner.held[call.record_id] = call
            log.info("Call %s -> %s is on hold both ways", call.caller_number, call.callee)
            if owner.hold_timeout:
                call.hold_timer = owner.stack.scheduler.call_later(
                    owner.hold_timeout, self.held_too_long, call
                )
        elif not held and call.held_since is not None:
            call.held_since = None
            owner.held.pop(call.record_id, None)
            if call.hold_timer is not None:
                call.hold_timer.cancel()
                call.hold_timer = None

    def held_too_long(self, call) -> None:
        call.hold_timer = None
        if call.held_since is None or call.phase is not Phase.ANSWERED:
            return
        timeout = self.owner.hold_timeout
        log.warning(
            "Call %s -> %s: on hold both ways for %g s; hanging up",
            call.caller_number, call.callee, timeout,
        )
        self.owner.hangup(call, f"on hold both ways for {timeout:g} s")

    # -- an offer of ours in a 2xx, the answer in the ACK (RFC 3264 §5, RFC 3261 §13.2.1) -------

    def answer_in_ack(self, call, leg: Leg, ack: Request) -> None:
        """The ACK to a 2xx that carried our offer: its SDP is the phone's answer,
        applied to the relay. An ACK without one leaves the phone without audio
        (RFC 3261 §13.2.1 wants the answer there): the call is ended."""
        leg.awaiting_answer = None
        owner = self.owner
        if call.phase is not Phase.ANSWERED:
            return
        answer = parsed(ack.body)
        if answer is None:
            log.warning(
                "Call %s -> %s: the %s's ACK has no usable SDP answer to our offer; hanging up",
                call.caller_number, call.callee, leg.role,
            )
            owner.hangup(call, f"{leg.role} sent no answer in its ACK")
            return
        stream = owner.media.apply(call, leg, answer)
        if stream is not None:
            self.declared(call, leg, stream)
        log.info("Call %s -> %s: the %s's answer came in its ACK (%s)",
                 call.caller_number, call.callee, leg.role, codec(answer) or "no audio")

    def offer_locally(self, call, leg: Leg, request: Request, txn: ServerTransaction) -> None:
        """A re-INVITE without SDP (RFC 3261 §14.1, §13.2.1): answered here, not
        passed on, with an offer of the relay's leg for this phone carrying what
        the other phone last declared (nothing changes for it); the answer
        comes in the ACK. An UPDATE without SDP offers nothing and wants no
        answer (RFC 3311 §5.2: a target or session refresh, RFC 4028): 200."""
        stack = self.owner.stack
        headers = [("Contact", stack.contact(leg.us, leg.destination.transport)),
                   *self.timer_headers(call, leg)]
        if request.method == "UPDATE":
            stack.reply(txn, request, 200, None, headers)
            return
        other = leg.other
        if other.sdp is not None:
            body = self.owner.media.sdp_for(call, other.sdp, leg.name)
        else:
            body = self.owner.media.offer_for(call, leg.name)
        cseq = CSeq.parse(request.headers.get("CSeq")).number
        leg.awaiting_answer = cseq
        headers.append(("Allow", ALLOW))
        ok = stack.reply(txn, request, 200, None, headers, body)
        leg.retransmit_2xx(bytes(ok), cseq)
        log.info("Call %s -> %s: re-INVITE without SDP from the %s answered with our offer",
                 call.caller_number, call.callee, leg.role)

    # -- requests from one phone to the other ------------------------------------------------

    def relay_request(self, call, leg: Leg, request: Request, txn: ServerTransaction,
                      other: Leg | None = None) -> None:
        """To the phone of `leg.other` (or `other`: an UPDATE between early
        dialogs, RFC 3311, early.py)."""
        owner = self.owner
        stack = owner.stack
        other = other or leg.other
        method = request.method
        if method_is_offer(request) and any(
            pending.method in ("INVITE", "UPDATE") for pending in call.relayed.values()
        ):
            # §14.1: one offer at a time; the sender retries after a random wait.
            stack.reply(txn, request, 491, "Request Pending")
            return
        body = request.body
        if not body and method in ("INVITE", "UPDATE"):
            self.offer_locally(call, leg, request, txn)
            return
        if body and method in ("INVITE", "UPDATE"):
            try:
                offer = SessionDescription.parse(body)
                stream = owner.media.apply(call, leg, offer)
                if stream is not None:
                    self.declared(call, leg, stream)
                body = owner.media.sdp_for(call, offer, other.name)
            except SdpError as error:
                stack.reply(txn, request, 488, f"Not Acceptable Here: {error}")
                return
        if method == "INVITE":
            stack.reply(txn, request, 100)
        content_type = request.headers.get("Content-Type")
        extra = []
        session = session_timer.of(call, other)
        if session is not None and method in ("INVITE", "UPDATE"):
            extra += session.request_headers()  # RFC 4028 §7.4: it keeps the timer on
        if method == "INFO" and content_type and body:
            extra.append(("Content-Type", content_type))
        out = other.request(method, body, extra, content_type)
        if method == "INFO" and body:
            out.headers.remove("Content-Type")
            out.headers.add("Content-Type", content_type)
        relayed = Relayed(self, call, leg, other, txn, request)
        transaction = stack.start(out, other.destination, relayed)
        relayed.key = transaction.key
        call.relayed[transaction.key] = relayed
        log.info(
            "Call %s -> %s: %s from %s relayed", call.caller_number, call.callee, method, leg.role
        )

    def relayed_response(self, relayed: Relayed, response: Response) -> None:
        owner = self.owner
        stack = owner.stack
        call, origin, target = relayed.call, relayed.origin, relayed.target
        status = response.status
        method = relayed.method
        if status == 100 or (status < 200 and method == "INVITE"):
            return  # 18x to a re-INVITE: nothing the other phone needs
        call.relayed.pop(relayed.key, None)
        live = call.phase is not Phase.ENDED
        if method == "INVITE" and 200 <= status < 300:
            # We ACK the phone's 2xx ourselves; the originator ACKs ours.
            cseq = CSeq.parse(response.headers.get("CSeq")).number
            ack = target.dialog.request("ACK", stack.via(target.destination.transport), "",
                                        cseq=cseq)
            stack.send(bytes(ack), target.destination)
        body = b""
        answer = None
        if live and 200 <= status < 300 and method in ("INVITE", "UPDATE"):
            answer = parsed(response.body)
        if answer is not None:
            stream = owner.media.apply(call, target, answer)
            if stream is not None:
                self.declared(call, target, stream)
            body = owner.media.sdp_for(call, answer, origin.name)
        headers = [("Contact", stack.contact(origin.us, origin.destination.transport))]
        if 200 <= status < 300 and live:
            headers += self.timer_headers(call, origin)
            session = session_timer.of(call, target)
            if session is not None and method != "INFO":
                session.start()  # RFC 4028 §10: the phone's re-INVITE refreshed it too
        out = stack.reply(relayed.txn, relayed.request, status, response.reason, headers, body)
        if method == "INVITE" and 200 <= status < 300 and live:
            origin.retransmit_2xx(
                bytes(out), CSeq.parse(relayed.request.headers.get("CSeq")).number
            )


def method_is_offer(request: Request) -> bool:
    return request.method in ("INVITE", "UPDATE") and bool(request.body)
