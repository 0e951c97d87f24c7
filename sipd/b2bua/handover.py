"""An application hands the call it answered on to a number (`AppCall.continue_to`
with an extension, a ring group or an outside number: the IVR's "press 1 for
sales"). The caller has our 200 already, so nothing that follows may be a
final response to its INVITE (RFC 3261 §13.3.1.4, §15): what PBXs do, and
what this does:

1. `start` (from the app's greenlet): the destination is routed as if the
   caller had dialled it; the app's prompts stop and the PBX's endpoint, still
   on leg A, plays a ringback tone (ITU-T E.180: 425 Hz, 1 s every 5 s), since
   no 180 can follow our 200 (a callee's 183 with SDP: its early media
   instead, `early_media`). The plan's Ring or Outside step is carried out
   as for any call (executor.py, forking.py, trunks/outbound.py: `Call.rings`
   is true meanwhile), each callee offered on leg B only the G.711 law the
   caller agreed on with the endpoint and telephone-event (`Media.offer_b`),
   so that the callee's answer fits the caller as it is: no re-INVITE of the
   caller is needed. The app's greenlet ends (continue_to raises CallerGone).
2. `connected`: a callee's 2xx (ACKed by the fork): the endpoint leaves leg
   A, the relay bridges A to B, the callee's answer sets leg B; the caller
   keeps its RTP address and gets no second 200. From then on the call is a
   bridged call like any other (bridge.py: hold and music on hold, re-INVITEs,
   transfer, recording).
3. Busy, no answer, unavailable: the plan's failure steps (executor.go_on),
   an Application again (voicemail) running on the endpoint still on leg A
   (`to_application`); nothing left: our BYE to the caller (`tell_caller`),
   the reason in the log line and the history.
4. The caller hangs up while the callees ring: calls.py ends the call and
   `ended` CANCELs what still rings.

History: a `handover` CallEvent (to the destination, the app in its detail), then the row's
answered_by is the phone that answered (its answered_at stays the app's).
"""

from __future__ import annotations

import logging

from sipd.b2bua.call import Phase
from sipd.b2bua.forking import UNAVAILABLE, Outcome
from sipd.b2bua.media import parsed
from sipd.routing.plan import Event

log = logging.getLogger("sipd")

# ITU-T E.180 ringing tone (and Uzbekistan's, Russia's): 425 Hz, 1 s on, 4 s off.
RINGBACK_HZ = 425
RINGBACK_ON_MS = 1000
RINGBACK_EVERY_MS = 5000


class Handover:
    """A call an application handed on, while the destination's phones ring."""

    __slots__ = ("app", "destination", "payload_type", "event_type", "early")

    def __init__(self, app: str, destination: str, payload_type: int, event_type: int | None):
        self.app = app  # the application that handed it on
        self.destination = destination
        self.payload_type = payload_type  # the law the caller agreed on (0 or 8)
        self.event_type = event_type  # the caller's telephone-event type, or None
        self.early = None  # the leg whose early media the caller hears instead of ringback


class Handovers:
    __slots__ = ("owner",)

    def __init__(self, owner):
        self.owner = owner  # the B2BUA

    def start(self, app, destination: str, step) -> None:
        """Hand the call of `app` on to the routing plan `step` (not yet resolved)."""
        owner = self.owner
        call = app.call
        relay = owner.relay
        call.handover = Handover(app.app, destination, app.payload_type, app.event_type)
        call.app = None  # the app's greenlet ends without touching the call
        app.caller_gone()
        try:
            relay.endpoint(call.media, "stop")
            relay.endpoint(call.media, "tone", hz=RINGBACK_HZ, ms=RINGBACK_ON_MS,
                           every=RINGBACK_EVERY_MS)
        except Exception as error:  # the caller hears silence; the call goes on
            log.warning("Call %s -> %s: no ringback tone: %s", call.caller_number, call.callee,
                        error)
        now = owner.clock()
        owner.history.events(call.record_id, now, [
            Event("handover", target=destination, detail=f"application {app.app}")])
        log.info("Call %s -> %s: application %s hands the call on to %s", call.caller_number,
                 call.callee, app.app, destination)
        try:
            owner.executor.go_on(call, step, Outcome(
                UNAVAILABLE, 480, "FAILED", "system", f"{destination} cannot be reached"))
        except Exception:  # the app's greenlet no longer owns the call: end it here
            log.exception("Call %s -> %s: handing on to %s failed", call.caller_number,
                          call.callee, destination)
            owner.hangup(call, f"handing on to {destination} failed")

    def connected(self, call, leg, response) -> None:
        """`leg` answered (its 2xx ACKed already): bridge it to the caller."""
        owner = self.owner
        handover, call.handover = call.handover, None
        if handover.early is None:  # else the endpoint left leg A at the 183
            self._detach(call)
        answer = owner.bridge.join(call, leg, response)
        if answer is None:
            owner.hangup(call, "callee answered without SDP")
            return
        owner.bridge.answered(call, leg, answer, " (handed on by an application)")

    def early_media(self, call, leg, response) -> None:
        """A callee's 183 with SDP while it rings (a provider's ring-back or
        announcement, RFC 3960 §3): the caller, answered already, hears it
        instead of our ringback. The endpoint leaves leg A and the relay
        bridges A to `leg`; nothing is sent to the caller, whose session (the
        relay's ports, the law `Media.offer_b` offered the callee) stays as it is."""
        answer = parsed(response.body)
        if answer is None:
            return
        handover = call.handover
        if handover.early is None:
            if not self._detach(call):
                return  # the caller keeps our ringback
            log.info("Call %s -> %s: early media from %s instead of our ringback",
                     call.caller_number, call.callee, leg.contact)
        handover.early = leg
        stream = self.owner.media.apply(call, leg, answer)
        if stream is not None:
            self.owner.bridge.declared(call, leg, stream)

    def ringback_again(self, call) -> None:
        """The destination whose early media the caller heard did not answer: the
        endpoint is back on leg A with our ringback (for the plan's next step, an
        application's or another ring's)."""
        handover = call.handover
        if handover is None or handover.early is None:
            return
        handover.early = None
        try:
            self.owner.relay.endpoint(call.media, "endpoint", leg="A",
                                      payload_type=handover.payload_type,
                                      event_type=handover.event_type)
            self.owner.relay.endpoint(call.media, "tone", hz=RINGBACK_HZ, ms=RINGBACK_ON_MS,
                                      every=RINGBACK_EVERY_MS)
        except Exception as error:  # the caller hears silence; the plan goes on
            log.warning("Call %s -> %s: no ringback tone again: %s", call.caller_number,
                        call.callee, error)

    def _detach(self, call) -> bool:
        """The endpoint off leg A (the relay bridges A to B again); False if it failed."""
        try:
            self.owner.relay.endpoint(call.media, "detach", leg="A")
            self.owner.relay.forget_events(call.media)
        except Exception as error:
            log.warning("Call %s -> %s: media endpoint not detached: %s",
                        call.caller_number, call.callee, error)
            return False
        return True

    def to_application(self, call, step) -> None:
        """The plan's failure step is an application (voicemail): it runs on the
        endpoint still on leg A, once the ringback stops."""
        owner = self.owner
        handover = call.handover
        call.handover = None
        try:
            owner.relay.endpoint(call.media, "stop")
            owner.relay.forget_events(call.media)  # keys pressed while it rang
        except Exception as error:
            log.warning("Call %s -> %s: media endpoint: %s", call.caller_number, call.callee,
                        error)
            owner.hangup(call, f"media endpoint: {error}")
            return
        if not owner.applications.resume(call, step, handover.payload_type,
                                         handover.event_type):
            call.caller.bye()
            owner.end(call, "FAILED", "system", 503, f"application {step.app} not available")

    def ended(self, call) -> None:
        """The call ends while its destination rings (the caller hung up, an
        admin): CANCEL what still rings (RFC 3261 §9.1)."""
        call.handover = None
        fork = call.fork
        if fork is not None and fork.active and call.phase is Phase.ENDED:
            fork.cancel()
