"""The branches of one Ring step: our INVITE to every reachable binding of the
extensions rung, at once (parallel forking, RFC 3261 §16.7 as a B2BUA does it).

The first 2xx wins: it is ACKed, the other branches are CANCELled (§9.1: only
once they sent a provisional response; a CANCEL wanted earlier waits for it),
and the call is bridged (bridge.py). A 2xx that comes later (another phone
answered too, or it crossed our CANCEL) is ACKed and then BYEd (§13.2.2.4,
§15). The caller hears what the phones say while they ring: 180, or 183 with
their early media through the relay.

When every branch has answered with a final non-2xx, the step's outcome follows
from their statuses (`outcome`): busy, no answer or unavailable; what the call
does then is the plan's (executor.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from sipd.b2bua.legs import CalleeLeg, LegState
from sipd.b2bua.media import parsed
from sipd.b2bua.stack import ALLOW, SERVER, contact_uri
from sipd.registrar import Destination
from sipd.sip.dialog import new_call_id, new_tag
from sipd.sip.headers import CSeq, NameAddr
from sipd.sip.message import Headers, Request, Response

BUSY = "busy"
NO_ANSWER = "no answer"
UNAVAILABLE = "unavailable"

# A phone that answers one of these has its user busy (RFC 3261 §21.4.24, §21.6).
BUSY_STATUSES = (486, 600, 603)
# Rang without an answer: timed out, temporarily unavailable, CANCELled.
NO_ANSWER_STATUSES = (408, 480, 487)


@dataclass(frozen=True)
class Outcome:
    """How a ring step ended without an answer, and what the caller is told when
    no step follows (the history's disposition, who ended it, why)."""

    kind: str  # BUSY | NO_ANSWER | UNAVAILABLE
    status: int
    disposition: str
    by: str
    reason: str
    phrase: str | None = None


def outcome(statuses: list[int]) -> Outcome:
    """The outcome of a step every branch of which had a final non-2xx."""
    busy = [s for s in statuses if s in BUSY_STATUSES]
    if busy:
        return Outcome(BUSY, busy[0], "BUSY", "callee", "callee busy")
    if all(s in NO_ANSWER_STATUSES for s in statuses):
        return Outcome(NO_ANSWER, 480, "NO ANSWER", "callee", "callee did not answer")
    usable = [s for s in statuses if s not in (401, 407)]
    status = min(usable) if usable else 480
    if status in (401, 407, 503):
        status = 480  # §16.7: never pass on a challenge or 503 meant for us
    return Outcome(UNAVAILABLE, status, "FAILED", "callee", f"callee answered {min(statuses)}")


class Fork:
    __slots__ = ("owner", "call", "step", "legs", "active")

    def __init__(self, owner, call, step):
        self.owner = owner  # the B2BUA
        self.call = call
        self.step = step  # the routing plan's Ring
        self.legs: list[CalleeLeg] = []
        self.active = True  # neither answered, nor over (all failed, its time up)

    @property
    def extensions(self) -> list[str]:
        """The extensions rung (those with a binding), in the step's order."""
        seen: list[str] = []
        for leg in self.legs:
            if leg.extension not in seen:
                seen.append(leg.extension)
        return seen

    # -- starting -------------------------------------------------------------------------

    def start(self, bindings: list) -> None:
        """INVITE each (extension, binding): all offer the relay's B leg."""
        owner, call, step = self.owner, self.call, self.step
        stack = owner.stack
        body = owner.media.offer_b(call)
        max_forwards = str(
            max(1, int(call.caller.invite.headers.get("Max-Forwards", "70").strip() or 70) - 1)
        )
        # The callee is shown who really calls: the number the caller
        # authenticated as and the name the panel gives it, never the display
        # name its phone put in From; and the group the call came through.
        display = call.caller_name or None
        if step.via:
            display = f"{call.caller_name or call.caller_number} via {step.via}"
        local_uri = f"<sip:{call.caller_number}@{stack.realm}>"
        sender = NameAddr.parse(local_uri).uri
        for extension, binding in bindings:
            destination = Destination(binding.source_host, binding.source_port, binding.transport)
            tag = new_tag()
            call_id = new_call_id(stack.local_host)
            remote_uri = f"<sip:{step.dialled or extension}@{stack.realm}>"
            headers = [
                ("Via", stack.via(destination.transport)),
                ("Max-Forwards", max_forwards),
                ("From", str(NameAddr(uri=sender, display_name=display, params={"tag": tag}))),
                ("To", remote_uri),
                ("Call-ID", call_id),
                ("CSeq", "1 INVITE"),
                ("Contact", stack.contact(call.caller_number, destination.transport)),
                ("Allow", ALLOW),
                ("User-Agent", SERVER),
                ("Content-Type", "application/sdp"),
            ]
            leg = CalleeLeg(owner, call, self, extension, binding.contact, destination,
                            call_id, tag, local_uri, remote_uri)
            leg.invite = Request(headers=Headers(headers), method="INVITE", uri=binding.contact,
                                 body=body)
            leg.transaction = stack.start(leg.invite, destination, leg)
            self.legs.append(leg)
            call.branches.append(leg)
            owner.dialogs[(call_id, tag)] = leg

    # -- what the branches answer ---------------------------------------------------------

    def on_response(self, leg: CalleeLeg, response: Response) -> None:
        status = response.status
        if status < 200:
            if leg.cancelled and leg.transaction.got_provisional:
                leg.send_cancel()  # the CANCEL we wanted, now that it may go (§9.1)
                return
            if status > 100 and self.active and self.call.rings:
                leg.state = LegState.RINGING
                self._ringing(leg, response)
            return
        if status < 300:
            self._answered(leg, response)
            return
        leg.final = status
        leg.state = LegState.FAILED
        self._check_over()

    def on_timeout(self, leg: CalleeLeg) -> None:
        """Timer B: no final response to our INVITE, as if a 408 came (§17.1.1.2)."""
        leg.final = 408
        leg.state = LegState.FAILED
        self._check_over()

    def _check_over(self) -> None:
        if (
            self.active
            and self.call.rings
            and all(leg.final for leg in self.legs)
        ):
            self.active = False
            statuses = [leg.final for leg in self.legs]
            self.owner.executor.step_failed(self.call, self, outcome(statuses))

    def _ringing(self, leg: CalleeLeg, response: Response) -> None:
        call = self.call
        owner = self.owner
        if call.handover is not None:
            # The caller, answered already, hears our ringback, or this early media
            # (handover.py); no 18x can follow our 200.
            if response.status == 183 and response.body:
                owner.handovers.early_media(call, leg, response)
            return
        body = b""
        # A caller that sent no offer may get none in an unreliable 18x (RFC
        # 3261 §13.2.1: the offer goes in the first reliable response): 180.
        if response.body and response.status == 183 and not call.delayed:
            # Early media (ringback from the phone): the relay carries it too.
            answer = parsed(response.body)
            if answer is not None:
                stream = owner.media.apply(call, leg, answer)
                if stream is not None:
                    owner.bridge.declared(call, leg, stream)
                body = owner.media.sdp_for(call, answer, "A")
                call.caller.early_from = leg  # the caller's early session (early.py)
        caller = call.caller
        caller.respond(
            183 if body else 180,
            None,
            [("Contact", owner.stack.contact(caller.us, caller.destination.transport))],
            body,
        )

    def _answered(self, leg: CalleeLeg, response: Response) -> None:
        call = self.call
        if not self.active or not call.rings or call.callee_leg is not None:
            if call.callee_leg is leg and leg.dialog is not None:
                # A retransmitted 2xx: our ACK was lost, send it again (§13.2.2.4).
                leg.ack(CSeq.parse(response.headers.get("CSeq")).number)
            else:
                # Another phone answered first, or it crossed our CANCEL: ACK then BYE.
                leg.ack_and_bye(response, contact_uri(response))
            return
        self.active = False
        leg.state = LegState.ANSWERED
        leg.dialog = leg.dialog_for(response, contact_uri(response))
        leg.ack(1)
        for other in self.legs:
            if other is not leg and other.final is None:
                other.cancel()
        self.owner.executor.answered(call, self, leg, response)

    def cancel(self) -> None:
        """CANCEL every branch still ringing (the step is over)."""
        self.active = False
        for leg in self.legs:
            leg.cancel()
