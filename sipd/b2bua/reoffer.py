"""Our own re-INVITE to a phone in an answered call: a new offer of the relay's
(RFC 3261 §14.1), not one relayed from the other phone (bridge.py). A transfer
sends these to move a phone's audio to its new call and tell it who it now talks
to (transfer.py).
"""

from __future__ import annotations

import random

from sipd.b2bua.call import Call, Phase
from sipd.b2bua.legs import CallerLeg, LegState
from sipd.b2bua.media import parsed
from sipd.sip.headers import CSeq
from sipd.sip.message import Response

# Our re-INVITE crossing one of the phone's (491, RFC 3261 §14.1): tried again.
GLARE_RETRIES = 3


class Reoffer:
    """Our own re-INVITE to a leg's phone: a new offer (RFC 3261 §14.1) with the
    relay's SDP, the ACK for its 2xx, and again after a 491 (glare) within the
    random wait §14.1 gives the Call-ID's owner (2.1-4 s) or the other side (0-2 s).

    It stands in the call's `relayed` while pending: an offer from either phone
    meanwhile is answered 491 (bridge.py)."""

    __slots__ = ("owner", "call", "leg", "body", "extra", "done", "failed", "key", "tries",
                 "answered", "method", "dialog", "destination")

    def __init__(self, owner, call: Call, leg, body: bytes, extra, done, failed):
        self.owner = owner
        self.call = call
        self.leg = leg
        self.body = body
        self.extra = extra
        self.done = done  # done(answer SessionDescription | None)
        self.failed = failed  # failed(status, reason)
        self.key = None
        self.tries = 0
        self.answered = False
        self.method = "INVITE"
        self.dialog = leg.dialog  # for the ACK of a retransmitted 2xx
        self.destination = leg.destination

    def send(self) -> None:
        if self.call.phase is Phase.ENDED or self.leg.state is LegState.ENDED:
            return
        self.tries += 1
        out = self.leg.request("INVITE", self.body, self.extra, "application/sdp")
        transaction = self.owner.stack.start(out, self.leg.destination, self)
        self.key = transaction.key
        self.call.relayed[transaction.key] = self

    def on_response(self, response: Response) -> None:
        status = response.status
        if status < 200:
            return
        if status < 300:
            stack = self.owner.stack
            cseq = CSeq.parse(response.headers.get("CSeq")).number
            ack = self.dialog.request("ACK", stack.via(self.destination.transport), "",
                                      cseq=cseq)
            stack.send(bytes(ack), self.destination)
            if self.answered:
                return  # a retransmitted 2xx: our ACK again, nothing more
            self.answered = True
            answer = parsed(response.body)
            done, _ = self._finish()
            done(answer)
            return
        if self.answered:
            return
        if status == 491 and self.tries < GLARE_RETRIES:
            self.call.relayed.pop(self.key, None)
            owner_of_call_id = not isinstance(self.leg, CallerLeg)  # we began its dialog
            wait = random.uniform(2.1, 4.0) if owner_of_call_id else random.uniform(0, 2.0)
            self.owner.stack.scheduler.call_later(wait, self.send)
            return
        self.answered = True
        _, failed = self._finish()
        failed(status, response.reason)

    def on_timeout(self) -> None:
        if not self.answered:
            self.answered = True
            _, failed = self._finish()
            failed(408, "Request Timeout")

    def _finish(self) -> tuple:
        """Out of the call's pending requests, and holding none of its objects (the
        transaction lives on, Timer K): (done, failed), to call once."""
        self.call.relayed.pop(self.key, None)
        callbacks = self.done, self.failed
        self.call = self.leg = self.done = self.failed = None
        return callbacks
