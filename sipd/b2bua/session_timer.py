"""The session timer on the trunk's leg of an outside call (RFC 4028), the PBX
being the provider's UAC. (The caller's leg, where we are the UAS, is bridge.py's.)

- Our INVITE to a trunk offers the timer (`OFFER`, §7.1): Supported: timer,
  Session-Expires: 1800 s (§7.1's recommendation), Min-SE: 90 s. A 422 (§7.1,
  interval too small) is answered with the provider's Min-SE (trunks/outbound.py).
- The provider's 2xx settles it (§7.2, `begin`): refresher=uac, we refresh half
  way through the interval (§10), with UPDATE where the provider allows it (RFC
  3311: no offer needed) and else a re-INVITE with the session as it stands; each
  refresh's 2xx may move the interval again. A refresh answered 481 or 408 ends
  the call (RFC 3261 §12.2.1.2); 491 (glare, §14.1) and other failures are tried
  again shortly, so that no call is lost to a refresh that failed once.
  refresher=uas, the provider refreshes: each re-INVITE or UPDATE of its restarts
  our watch (`peer_refreshed`); none by the interval less §10's margin, and both
  legs get our BYE.
- No Session-Expires in the 2xx: no session timer (§7.2).
"""

from __future__ import annotations

import logging
import random

from sipd.b2bua.call import Phase
from sipd.b2bua.media import parsed
from sipd.sip.extensions import (
    DEFAULT_SE,
    MIN_SE,
    SessionExpires,
    expiry,
    min_se,
    negotiated,
    refresh_after,
    session_expires,
)
from sipd.sip.headers import CSeq
from sipd.sip.message import Request, Response, split_list

log = logging.getLogger("sipd")

# §7.1: what our INVITE to a trunk says (with Supported: 100rel, prack.py).
SUPPORTED = "100rel, timer"
OFFER = [("Session-Expires", str(DEFAULT_SE)), ("Min-SE", str(MIN_SE))]
# A refresh that failed (not 481/408) is sent again this much later, this many times.
RETRY_AFTER = 5.0
RETRIES = 3


def begin(owner, call, leg, response: Response) -> None:
    """The trunk's 2xx to our INVITE: the session timer it settles, if any (§7.2)."""
    settled = negotiated(response)
    if settled is None:
        return
    allow = {
        method.strip().upper()
        for value in response.headers.get_all("Allow")
        for method in split_list(value)
    }
    call.trunk_session = TrunkSession(owner, call, leg, settled, "UPDATE" in allow)
    call.trunk_session.start()


class TrunkSession:
    __slots__ = (
        "owner",
        "call",
        "leg",
        "interval",
        "we_refresh",
        "update",
        "timer",
        "retries",
        "pending",
    )

    def __init__(self, owner, call, leg, settled: SessionExpires, update: bool):
        self.owner = owner
        self.call = call
        self.leg = leg  # the TrunkLeg that answered
        self.interval = settled.interval
        self.we_refresh = settled.refresher == "uac"
        self.update = update  # the provider allows UPDATE: our refreshes need no offer
        self.timer = None
        self.retries = 0
        self.pending = None  # our Refresh in flight

    def start(self) -> None:
        """(Again) from now: our refresh half way, or the provider's awaited."""
        self.stop()
        call = self.call
        scheduler = self.owner.stack.scheduler
        if self.we_refresh:
            self.timer = scheduler.call_later(refresh_after(self.interval), self.refresh)
            log.info(
                "Call %s -> %s: session timer %d s on trunk %s, refreshed by us",
                call.caller_number,
                call.callee,
                self.interval,
                self.leg.trunk,
            )
        else:
            self.timer = scheduler.call_later(expiry(self.interval), self.expired)
            log.info(
                "Call %s -> %s: session timer %d s on trunk %s, refreshed by the provider",
                call.caller_number,
                call.callee,
                self.interval,
                self.leg.trunk,
            )

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    @property
    def live(self) -> bool:
        """Its call goes on (answered, or a transfer's new call still ringing for
        the other party: the trunk's dialog stands all the same)."""
        return self.call.phase is not Phase.ENDED and self.call.trunk_session is self

    def moved(self, old, new) -> None:
        """A transfer moved the trunk's leg from call `old` to `new` (transfer.py):
        its session goes with it."""
        old.trunk_session = None
        self.call = new
        new.trunk_session = self

    # -- what our 2xx to the provider's re-INVITE or UPDATE says (§9) ----------------------

    def response_headers(self) -> list:
        """Session-Expires in our 2xx to a refresh of the provider's: the refresher
        named from its side as UAC of that request."""
        return [
            ("Session-Expires", f"{self.interval};refresher={'uas' if self.we_refresh else 'uac'}"),
            ("Require", "timer"),
        ]

    def peer_refreshed(self, request: Request) -> None:
        """A re-INVITE or UPDATE from the provider refreshes the session (§10); its
        Session-Expires may move the interval and who refreshes next (§9)."""
        try:
            asked = session_expires(request.headers.get("Session-Expires"))
        except ValueError:
            asked = None
        if asked is not None:
            self.interval = max(asked.interval, MIN_SE)
            if asked.refresher is not None:
                self.we_refresh = asked.refresher == "uas"  # "uas" of its request: us
        if self.pending is None:
            self.start()

    # -- our refresh (§10) -----------------------------------------------------------------

    def refresh(self) -> None:
        self.timer = None
        if not self.live:
            return
        call, leg, owner = self.call, self.leg, self.owner
        method = "UPDATE" if self.update else "INVITE"
        if method == "INVITE" and any(
            p.method in ("INVITE", "UPDATE") for p in call.relayed.values()
        ):
            # An offer of a phone's is under way: a re-INVITE now would cross it (§14.1).
            self.timer = owner.stack.scheduler.call_later(RETRY_AFTER, self.refresh)
            return
        extra = [
            ("Session-Expires", f"{self.interval};refresher=uac"),
            ("Supported", "timer"),
            ("Min-SE", str(MIN_SE)),
        ]
        body = b""
        if method == "INVITE":
            other = leg.other
            # The session as it stands (RFC 3264 §8: the same version, no change).
            body = (
                owner.media.sdp_for(call, other.sdp, leg.name)
                if other is not None and other.sdp is not None
                else owner.media.offer_for(call, leg.name)
            )
        out = leg.request(method, body, extra, "application/sdp" if body else None)
        refresh = Refresh(self, method)
        transaction = owner.stack.start(out, leg.destination, refresh)
        refresh.key = transaction.key
        self.pending = refresh
        if method == "INVITE":
            call.relayed[transaction.key] = refresh  # phones' offers meanwhile: 491
        log.info(
            "Call %s -> %s: session refresh (%s) to trunk %s",
            call.caller_number,
            call.callee,
            method,
            leg.trunk,
        )

    def answered(self, refresh, status: int, response: Response | None) -> None:
        self.pending = None
        self.call.relayed.pop(refresh.key, None)
        if not self.live:
            return
        call, owner = self.call, self.owner
        if 200 <= status < 300:
            self.retries = 0
            answer = parsed(response.body) if refresh.method == "INVITE" else None
            if answer is not None:
                stream = owner.media.apply(call, self.leg, answer)
                if stream is not None:
                    owner.bridge.declared(call, self.leg, stream)
            settled = negotiated(response, SessionExpires(self.interval, "uac"))
            self.interval = settled.interval
            self.we_refresh = settled.refresher == "uac"
            self.start()
            return
        if status in (408, 481):
            # RFC 3261 §12.2.1.2: the dialog is gone at the provider's end.
            log.warning(
                "Call %s -> %s: trunk %s answered our session refresh %d; hanging up",
                call.caller_number,
                call.callee,
                self.leg.trunk,
                status,
            )
            owner.hangup(call, f"session refresh answered {status} by trunk {self.leg.trunk}")
            return
        if status == 422 and response is not None:
            # §7.4/§8.1: our interval is below the provider's minimum now: its Min-SE.
            try:
                floor = min_se(response.headers.get("Min-SE"))
            except ValueError:
                floor = None
            if floor is not None and floor > self.interval:
                self.interval = floor
                self.refresh()
                return
        self.retries += 1
        if self.retries > RETRIES:
            log.warning(
                "Call %s -> %s: trunk %s refused %d session refreshes (last %d)",
                call.caller_number,
                call.callee,
                self.leg.trunk,
                RETRIES + 1,
                status,
            )
            self.retries = 0
            self.start()  # the next at the usual time: the provider decides
            return
        # 491: §14.1, we own the Call-ID: 2.1 to 4 s; anything else: soon.
        wait = random.uniform(2.1, 4.0) if status == 491 else RETRY_AFTER
        self.timer = owner.stack.scheduler.call_later(wait, self.refresh)

    # -- the provider's refresh that never came --------------------------------------------

    def expired(self) -> None:
        self.timer = None
        if not self.live:
            return
        call = self.call
        log.warning(
            "Call %s -> %s: no session refresh from trunk %s within %d s; hanging up",
            call.caller_number,
            call.callee,
            self.leg.trunk,
            self.interval,
        )
        self.owner.hangup(
            call, f"session timer expired ({self.interval} s) on trunk {self.leg.trunk}"
        )


class Refresh:
    """Our refresh's client transaction's context (an UPDATE or a re-INVITE)."""

    __slots__ = ("session", "method", "key", "done")

    def __init__(self, session: TrunkSession, method: str):
        self.session = session
        self.method = method
        self.key = None
        self.done = False

    def on_response(self, response: Response) -> None:
        status = response.status
        if status < 200:
            return
        session = self.session
        if self.method == "INVITE" and status < 300:
            # RFC 3261 §13.2.2.4: our ACK, for a retransmitted 2xx too.
            leg = session.leg
            stack = session.owner.stack
            cseq = CSeq.parse(response.headers.get("CSeq")).number
            ack = leg.dialog.request("ACK", stack.via(leg.destination.transport), "", cseq=cseq)
            stack.send(bytes(ack), leg.destination)
        if self.done:
            return
        self.done = True
        session.answered(self, status, response)

    def on_timeout(self) -> None:
        if not self.done:
            self.done = True
            self.session.answered(self, 408, None)
