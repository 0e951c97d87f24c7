"""The session timer (RFC 4028) on one leg of a call, whichever side began its
dialog: `LegSession` refreshes the session toward that leg's peer or watches for
the peer's refreshes. A call has up to two: `call.trunk_session`, the trunk's leg
of an outside call (we are the provider's UAC), and `call.caller_session`, the
caller's leg (we are its UAS: a phone, or the provider on an inbound trunk call).

- Our INVITE to a trunk offers the timer (`OFFER`, §7.1): Supported: timer,
  Session-Expires: 1800 s (§7.1's recommendation), Min-SE: 90 s. A 422 (§7.1,
  interval too small) is answered with the provider's Min-SE (trunks/outbound.py).
  The provider's 2xx settles it (§7.2, `begin`). No Session-Expires in the 2xx:
  no session timer (§7.2).
- A caller's INVITE with Session-Expires (`offered`): our 2xx copies its
  refresher, or names the caller if it named none, or us if the caller does not
  support the timer (§9, extensions.answering); `caller_answered` gives the 2xx
  its headers and starts the timer.
- Whoever began the dialog, the refresher refreshes half way through the
  interval (§10). When that is us: UPDATE where the peer allows it (RFC 3311: no
  offer needed) and else a re-INVITE with the session as it stands; each
  refresh's 2xx may move the interval again. A refresh answered 481 or 408 ends
  the call (RFC 3261 §12.2.1.2); 422 raises the interval to the peer's Min-SE
  (§7.4); 491 (glare, §14.1) and other failures are tried again shortly, so that
  no call is lost to a refresh that failed once. When it is the peer: each
  re-INVITE or UPDATE of its restarts our watch (`peer_refreshed`, which also
  takes the refresher it names, §9); none by the interval less §10's margin,
  and both legs get our BYE.
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
    answering,
    expiry,
    min_se,
    negotiated,
    refresh_after,
    session_expires,
    supports,
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
    call.trunk_session = LegSession(
        owner, call, leg, "trunk_session", leg.trunk, settled.interval,
        we_refresh=settled.refresher == "uac", update=allows_update(response),
    )
    call.trunk_session.start()


def offered(owner, call, request: Request, trunk: str | None) -> None:
    """The caller's INVITE (we its UAS; `trunk` the trunk it came by, if any): the
    session timer our 2xx will settle (§9), kept on the call until it is answered."""
    settled = answering(request)
    if settled is None:
        return
    call.caller_session = LegSession(
        owner, call, call.caller, "caller_session", trunk, settled.interval,
        we_refresh=settled.refresher == "uas", update=allows_update(request),
        supported=supports(request, "timer"),
    )


def caller_answered(call) -> list:
    """The caller is answered (by a phone or by the PBX): the session timer's
    headers for our 2xx (§9), and from now on its refresh or its watch (§10)."""
    session = call.caller_session
    if session is None:
        return []
    session.start()
    return session.response_headers()


def of(call, leg):
    """The LegSession serving `leg` of `call`, or None."""
    for session in (call.caller_session, call.trunk_session):
        if session is not None and session.leg is leg:
            return session
    return None


def allows_update(message) -> bool:
    """The sender's Allow lists UPDATE (RFC 3311 §5.1): our refreshes need no offer."""
    return any(
        method.strip().upper() == "UPDATE"
        for value in message.headers.get_all("Allow")
        for method in split_list(value)
    )


class LegSession:
    __slots__ = (
        "owner",
        "call",
        "leg",
        "slot",
        "trunk",
        "interval",
        "we_refresh",
        "update",
        "supported",
        "timer",
        "retries",
        "pending",
    )

    def __init__(self, owner, call, leg, slot: str, trunk: str | None, interval: int, *,
                 we_refresh: bool, update: bool, supported: bool = True):
        self.owner = owner
        self.call = call
        self.leg = leg  # the caller's leg, or the TrunkLeg that answered
        self.slot = slot  # where the call keeps it: "caller_session" or "trunk_session"
        self.trunk = trunk  # the trunk the leg's peer is, or None (a phone)
        self.interval = interval
        self.we_refresh = we_refresh
        self.update = update  # the peer allows UPDATE: our refreshes need no offer
        # The peer supports the timer (§9: Require: timer in our 2xx only then; a
        # caller whose Session-Expires a proxy put in would refuse a Require).
        self.supported = supported
        self.timer = None
        self.retries = 0
        self.pending = None  # our Refresh in flight

    # -- how the logs and the history name the peer -----------------------------------------

    @property
    def peer(self) -> str:
        return f"trunk {self.trunk}" if self.trunk else "the caller"

    @property
    def where(self) -> str:
        return f" on trunk {self.trunk}" if self.trunk else " with the caller"

    def start(self) -> None:
        """(Again) from now: our refresh half way, or the provider's awaited."""
        self.stop()
        call = self.call
        scheduler = self.owner.stack.scheduler
        if self.we_refresh:
            self.timer = scheduler.call_later(refresh_after(self.interval), self.refresh)
            by = "us"
        else:
            self.timer = scheduler.call_later(expiry(self.interval), self.expired)
            by = "the provider" if self.trunk else "the caller"
        log.info(
            "Call %s -> %s: session timer %d s%s, refreshed by %s",
            call.caller_number,
            call.callee,
            self.interval,
            self.where,
            by,
        )

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    @property
    def live(self) -> bool:
        """Its call goes on (answered, or a transfer's new call still ringing for
        the other party: the trunk's dialog stands all the same)."""
        return self.call.phase is not Phase.ENDED and getattr(self.call, self.slot) is self

    def moved(self, old, new) -> None:
        """A transfer moved the leg from call `old` to `new` (transfer.py): its
        session goes with it (unless `new` has one of its own there)."""
        setattr(old, self.slot, None)
        if getattr(new, self.slot) is not None:
            self.stop()
            return
        self.call = new
        setattr(new, self.slot, self)

    # -- what our 2xx to the peer's INVITE, re-INVITE or UPDATE says (§9) --------------------

    def response_headers(self) -> list:
        """Session-Expires in our 2xx to a request of the peer's: the refresher
        named from its side as UAC of that request; Require: timer where it
        supports the timer (§9: it must when the refresher is the UAC)."""
        refresher = "uas" if self.we_refresh else "uac"
        headers = [("Session-Expires", f"{self.interval};refresher={refresher}")]
        if self.supported:
            headers.append(("Require", "timer"))
        return headers

    def request_headers(self) -> list:
        """Session-Expires in a re-INVITE or UPDATE of ours to the peer (§7.4: it
        keeps the timer on), the refresher named from our side as its UAC."""
        return [
            ("Session-Expires", f"{self.interval};refresher={'uac' if self.we_refresh else 'uas'}"),
            ("Supported", "timer"),
        ]

    def peer_refreshed(self, request: Request) -> None:
        """A re-INVITE or UPDATE from the peer refreshes the session (§10); its
        Session-Expires may move the interval and who refreshes next (§9: a
        refresher it names is the one our 2xx copies)."""
        try:
            asked = session_expires(request.headers.get("Session-Expires"))
        except ValueError:
            asked = None
        if asked is not None:
            self.interval = max(asked.interval, MIN_SE)
            # §9's table again, for this request: a peer that does not support the
            # timer leaves the refreshing to us; one that does and names nobody,
            # to whoever refreshed so far.
            self.supported = supports(request, "timer")
            refresher = asked.refresher if self.supported else "uas"
            if refresher is not None:
                self.we_refresh = refresher == "uas"  # "uas" of its request: us
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
            "Call %s -> %s: session refresh (%s) to %s",
            call.caller_number,
            call.callee,
            method,
            self.peer,
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
            # RFC 3261 §12.2.1.2: the dialog is gone at the peer's end.
            log.warning(
                "Call %s -> %s: %s answered our session refresh %d; hanging up",
                call.caller_number,
                call.callee,
                self.peer,
                status,
            )
            owner.hangup(call, f"session refresh answered {status} by {self.peer}")
            return
        if status == 422 and response is not None:
            # §7.4/§8.1: our interval is below the peer's minimum now: its Min-SE.
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
                "Call %s -> %s: %s refused %d session refreshes (last %d)",
                call.caller_number,
                call.callee,
                self.peer,
                RETRIES + 1,
                status,
            )
            self.retries = 0
            self.start()  # the next at the usual time: the peer decides
            return
        # 491: §14.1, we own the Call-ID: 2.1 to 4 s; anything else: soon.
        wait = random.uniform(2.1, 4.0) if status == 491 else RETRY_AFTER
        self.timer = owner.stack.scheduler.call_later(wait, self.refresh)

    # -- the peer's refresh that never came -------------------------------------------------

    def expired(self) -> None:
        self.timer = None
        if not self.live:
            return
        call = self.call
        log.warning(
            "Call %s -> %s: no session refresh from %s within %d s; hanging up",
            call.caller_number,
            call.callee,
            self.peer,
            self.interval,
        )
        on = f" on trunk {self.trunk}" if self.trunk else ""
        self.owner.hangup(call, f"session timer expired ({self.interval} s){on}")


class Refresh:
    """Our refresh's client transaction's context (an UPDATE or a re-INVITE)."""

    __slots__ = ("session", "method", "key", "done")

    def __init__(self, session: LegSession, method: str):
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
