"""Reliable provisional responses in the B2BUA (RFC 3262), both ways; the rules
are sipd/sip/reliable.py's, the timers the scheduler's.

- The caller's leg (we are its UAS, §3): a caller whose INVITE Requires 100rel
  gets every 18x reliably; one that only Supports it gets its 183 with early
  media so (`CallerProvisionals`). Each is retransmitted until its PRACK, the
  next waits for it, our 2xx waits for the last; 64*T1 without a PRACK and the
  INVITE gets 500 and the call ends. The caller's PRACK is answered here
  (`answer`): 200, or 481 for a response we never sent reliably.
- The legs we ring (we are their UAC, §4): a reliable 18x from a phone or a
  trunk gets our PRACK with its RAck, a request on the early dialog the 18x
  made (`acknowledge`); that dialog's CSeq carries on into the confirmed one.
- The offer/answer a PRACK carries (§5) and UPDATEs on these early dialogs
  (RFC 3311): early.py.
"""

from __future__ import annotations

import logging

from sipd.b2bua import early
from sipd.b2bua.call import Phase
from sipd.b2bua.stack import contact_uri
from sipd.sip.dialog import Dialog, tag_param
from sipd.sip.extensions import options
from sipd.sip.headers import CSeq
from sipd.sip.message import Request, Response
from sipd.sip.reliable import Acknowledger, Provisionals, rack
from sipd.sip.transaction import ServerTransaction

log = logging.getLogger("sipd")


class CallerProvisionals:
    """The reliable 1xx of one caller leg, and the 2xx they hold back."""

    __slots__ = ("leg", "core", "timer", "held_2xx", "following", "acked_sdp")

    def __init__(self, leg, mode: str):
        self.leg = leg  # the CallerLeg
        self.core = Provisionals(mode, leg.cseq(), retransmit=not leg.destination.reliable)
        self.timer = None
        self.held_2xx: tuple[bytes, int] | None = None  # retransmit_2xx's, once it goes
        self.following: Response | None = None  # the next reliable 1xx, for go_on
        self.acked_sdp = False  # the 1xx the last PRACK acknowledged carried SDP

    # -- what CallerLeg.respond hands over -------------------------------------------------

    def provisional(self, response: Response) -> bool:
        """Whether this 1xx is ours to send (now, or after the PRACK before it)."""
        core = self.core
        if not core.wants(response):
            return False
        leg = self.leg
        if leg.call.delayed and not core.sdp_sent and core.outstanding is None:
            # The INVITE had no offer: ours goes in the first reliable 1xx, its
            # answer comes in the PRACK (RFC 3261 §13.2.1, RFC 3262 §5).
            self._offer(response)
        stamped = core.send(response, leg.owner.clock())
        if stamped is not None:
            leg.owner.stack.respond(leg.txn, stamped)
            self._arm()
        return True

    def _offer(self, response: Response) -> None:
        leg = self.leg
        call = leg.call
        if not response.body:
            response.body = leg.owner.media.offer_for(call, leg.name)
            response.headers.add("Content-Type", "application/sdp")
        leg.early_offer = "sent"
        log.info("Call %s -> %s: our offer to the caller in its first reliable %d",
                 call.caller_number, call.callee, response.status)

    def final(self, response: Response) -> bool:
        """Whether this final response waits (a 2xx while a 1xx is not PRACKed)."""
        if self.core.hold(response):
            return True
        self._disarm()
        return False

    def holding(self, data: bytes, cseq: int) -> bool:
        """A 2xx held back: its retransmissions begin once it is sent."""
        if self.core.held is None:
            return False
        self.held_2xx = (data, cseq)
        return True

    # -- the caller's PRACK ----------------------------------------------------------------

    def prack(self, request: Request) -> bool:
        """Whether the PRACK's RAck names our outstanding 1xx (ValueError:
        unreadable). What waited for it goes once the PRACK is answered (`go_on`)."""
        ack = rack(request.headers.get("RAck"))
        outstanding = self.core.outstanding
        matched, self.following = self.core.prack(ack, self.leg.owner.clock())
        self.acked_sdp = matched and outstanding.sdp
        return matched

    def go_on(self) -> None:
        """After our 200 to the PRACK: the next reliable 1xx, or the held 2xx."""
        leg = self.leg
        stack = leg.owner.stack
        following, self.following = self.following, None
        if following is not None:
            stack.respond(leg.txn, following)
        self._arm()
        final = self.core.released()
        if final is not None:
            stack.respond(leg.txn, final)
            held, self.held_2xx = self.held_2xx, None
            if held is not None:
                leg.retransmit_2xx(*held)  # not held any more: from T1 (§13.3.1.4)

    # -- the timer: retransmissions (§3), then giving up -----------------------------------

    def _arm(self) -> None:
        self._disarm()
        deadline = self.core.deadline
        if deadline is not None:
            owner = self.leg.owner
            self.timer = owner.stack.scheduler.call_later(
                max(0.0, deadline - owner.clock()), self._fired
            )

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _fired(self) -> None:
        self.timer = None
        leg = self.leg
        owner = leg.owner
        now = owner.clock()
        if self.core.expired(now):
            self._gave_up()
            return
        data = self.core.due(now)
        if data is not None:
            owner.stack.send(data, leg.destination)
        self._arm()

    def _gave_up(self) -> None:
        """§3: 64*T1 without a PRACK: the INVITE gets a 5xx; the call ends, the
        phone that answered meanwhile (its 2xx held for the PRACK) gets our BYE."""
        leg = self.leg
        call, owner = leg.call, leg.owner
        self.core.held = None
        self.held_2xx = None
        self.core.finish()
        if call is None or call.phase is Phase.ENDED:
            return
        log.warning(
            "Call %s -> %s: the caller did not PRACK our reliable %s; hanging up",
            call.caller_number,
            call.callee,
            "answer" if call.answered_at else "18x",
        )
        leg.respond(500, "Server Internal Error: no PRACK")
        if call.callee_leg is not None:
            call.callee_leg.bye()
        for branch in call.branches:
            branch.cancel()
        owner.end(call, "FAILED", "system", 500, "no PRACK for our reliable provisional response")


def answer(leg, request: Request, txn: ServerTransaction) -> None:
    """A PRACK within the caller's early dialog (§3): 200 when its RAck is our
    outstanding 1xx's, 481 when it names none (§3: "the UAS... MUST respond
    481"), 400 when unreadable. Its SDP (§5): the answer to the offer our 1xx
    carried (a caller without an offer), or a new offer after our answer,
    answered in the 200 (early.py)."""
    stack = leg.owner.stack
    provisionals = getattr(leg, "provisionals", None)
    try:
        matched = provisionals is not None and provisionals.prack(request)
    except ValueError as error:
        stack.reply(txn, request, 400, f"Bad Request: {error}")
        return
    if not matched:
        call = leg.call
        log.info(
            "[SIP] PRACK for call %s -> %s acknowledges no response of ours (481)",
            call.caller_number,
            call.callee,
        )
        stack.reply(txn, request, 481, "Call/Transaction Does Not Exist")
        return
    body = early.prack_sdp(leg, request, provisionals.acked_sdp)
    stack.reply(txn, request, 200, None, None, body)
    provisionals.go_on()


def acknowledge(leg, response: Response) -> bool:
    """A reliable 18x to our INVITE (§4): PRACK it on its early dialog.
    Whether the B2BUA goes on with it: not a retransmission nor out of order."""
    if leg.acknowledger is None:
        leg.acknowledger = Acknowledger()
    to_tag = tag_param(response.headers.get("To"))
    try:
        ack = leg.acknowledger.accept(response, to_tag)
    except ValueError as error:
        log.info("[SIP] %d from %s: %s; not PRACKed", response.status, leg.destination, error)
        return True
    if ack is None:
        return False
    dialog = early_dialog(leg, response, to_tag)
    if response.body and to_tag not in leg.early_answers:
        # The answer to our INVITE's offer, reliably: the early dialog may take an
        # UPDATE with an offer now (RFC 3311 §5.1), relayed there if it allows UPDATE.
        leg.early_answers[to_tag] = "update" in options(response, "Allow")
        leg.early_tag = to_tag
    stack = leg.owner.stack
    transport = leg.destination.transport
    prack = dialog.request(
        "PRACK", stack.via(transport), stack.contact(leg.us, transport), extra=[("RAck", str(ack))]
    )
    stack.start(prack, leg.destination, None)
    log.info("[SIP] PRACK for %d (RSeq %d) to %s", response.status, ack.rseq, leg.destination)
    return True


def early_dialog(leg, response: Response, to_tag: str | None) -> Dialog:
    """The early dialog a reliable 18x makes (RFC 3261 §12.1.2), kept per To
    tag: the confirmed dialog takes over its CSeq (legs.CalleeLeg.dialog_for)."""
    early = leg.early.get(to_tag)
    if early is None:
        early = leg.dialog_for(response, contact_uri(response))
        early.local_seq = CSeq.parse(response.headers.get("CSeq")).number
        leg.early[to_tag] = early
    return early
