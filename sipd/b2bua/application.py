"""Carrying out an `Application` step (sipd/routing/plan.py): the PBX answers
the call itself and an application (sipd/apps/: voicemail, IVR, the echo
test) runs on it.

1. `answer`: the caller gets our 200 with the SDP answer of the PBX's own
   endpoint on the call's relay leg A (one G.711 law and telephone-event,
   Media.endpoint_answer); an INVITE without SDP gets our offer and its answer
   comes in the ACK (RFC 3261 §13.2.1, as bridge.py does for a callee).
2. `acked`: once the caller ACKs, the endpoint is attached to leg A in the
   media process and `APPS[app](call)` runs in a greenlet of its own with an
   `AppCall` (sipd/apps/call.py).
3. The caller hangs up: the B2BUA ends the call as always (calls.py `end`),
   which tells the app (`AppCall.caller_gone`: its next wait raises
   CallerGone, a recording under way ends "hangup") and leaves the media
   session to the app's greenlet, which closes it once the app has returned
   (a recording is written before its session goes). The app returns first:
   our BYE, the call ends "ANSWERED" by "system".
4. Within the call: INFO with a key (application/dtmf-relay, application/dtmf)
   goes to the app; a re-INVITE or UPDATE (hold, a session refresh) is
   answered here by the endpoint.
5. `continue_to` a number: handover.py rings it and bridges the phone that
   answers to the caller.
"""

from __future__ import annotations

import logging

from sipd.apps.call import AppCall, CallerGone
from sipd.b2bua import session_timer
from sipd.b2bua.call import Phase
from sipd.b2bua.media import audio, codec, parsed
from sipd.b2bua.stack import ALLOW
from sipd.sip.extensions import SUPPORTED_HEADER
from sipd.sip.headers import CSeq

log = logging.getLogger("sipd")

DTMF_TYPES = ("application/dtmf-relay", "application/dtmf")
# application/dtmf-relay's Signal= values beyond the digits (as Cisco and most
# phones send them).
_SIGNALS = {"10": "*", "11": "#", "*": "*", "#": "#", "A": "A", "B": "B", "C": "C", "D": "D"}


class Applications:
    __slots__ = ("owner", "spawn", "apps")

    def __init__(self, owner, spawn=None, apps=None):
        self.owner = owner  # the B2BUA
        self.spawn = spawn  # None: gevent.spawn
        self.apps = apps  # None: sipd.apps.APPS

    def _registry(self) -> dict:
        if self.apps is not None:
            return self.apps
        from sipd.apps import APPS

        return APPS

    # -- answering ------------------------------------------------------------------------

    def answer(self, call, step) -> None:
        owner = self.owner
        caller = call.caller
        if step.app not in self._registry():
            caller.respond(503, "Service Unavailable")
            owner.end(call, "FAILED", "system", 503, f"application {step.app} not available")
            return
        payload_type = event_type = None
        if call.delayed:
            body = owner.media.offer_for(call, "A")
            caller.awaiting_answer = caller.cseq()
        else:
            answer = owner.media.endpoint_answer(call, call.offer)
            if answer is None:
                caller.respond(488, "Not Acceptable Here")
                owner.end(call, "FAILED", "system", 488,
                          f"application {step.app}: the caller offers no PCMU or PCMA")
                return
            body, payload_type, event_type = answer
        call.phase = Phase.ANSWERED
        call.answered_at = owner.clock()
        self._app_call(call, step, payload_type if payload_type is not None else 0, event_type)
        headers = [("Contact", owner.stack.contact(caller.us, caller.destination.transport)),
                   ("Allow", ALLOW), ("Supported", SUPPORTED_HEADER)]
        headers += session_timer.caller_answered(call)  # RFC 4028 §9
        ok = caller.respond(200, "OK", headers, body)
        caller.retransmit_2xx(bytes(ok), caller.cseq())
        owner.history.answered(call.record_id, call.answered_at, "",
                               codec(call.offer) if not call.delayed else "", "")
        call.max_timer = owner.stack.scheduler.call_later(
            owner.max_duration, owner.hangup, call, "maximum call duration reached")
        log.info("Call %s -> %s answered by application %s%s", call.caller_number, call.callee,
                 step.app, f" ({step.target})" if step.target else "")

    def _app_call(self, call, step, payload_type: int, event_type: int | None) -> AppCall:
        app = AppCall(self, self.owner.relay, call.media, caller=call.caller_number,
                      caller_name=call.caller_name, dialled=call.callee, target=step.target,
                      reason=step.reason, source=call.caller.destination.host,
                      payload_type=payload_type)
        app.call = call
        app.app = step.app
        app.event_type = event_type
        app.running = False
        call.app = app
        return app

    def resume(self, call, step, payload_type: int, event_type: int | None) -> bool:
        """A call answered already (handed on by an app, handover.py) goes to
        the application of `step` on the endpoint still attached to leg A.
        False when there is no such application."""
        if step.app not in self._registry():
            return False
        app = self._app_call(call, step, payload_type, event_type)
        log.info("Call %s -> %s goes on to application %s%s", call.caller_number, call.callee,
                 step.app, f" ({step.target})" if step.target else "")
        self._spawn(call, app)
        return True

    def _spawn(self, call, app) -> None:
        app.running = True
        spawn = self.spawn
        if spawn is None:
            import gevent

            spawn = gevent.spawn
        spawn(self._run, call, app)

    def acked(self, call) -> None:
        """The caller ACKed our 2xx: attach the endpoint, start the app."""
        app = call.app
        if app.running or app.gone or call.phase is not Phase.ANSWERED:
            return
        owner = self.owner
        if call.delayed:
            # The answer came in this ACK (bridge.answer_in_ack applied it to leg A).
            answer = call.caller.sdp
            chosen = audio(answer) if answer is not None else None
            if chosen is None:
                return  # answer_in_ack ended the call
            laws = [int(f) for f in chosen.formats if f in ("0", "8")]
            app.payload_type = laws[0] if laws else 0
            events = [pt for pt, m in chosen.rtpmap.items()
                      if m.encoding.lower() == "telephone-event"]
            app.event_type = events[0] if events else 101
        try:
            owner.relay.endpoint(call.media, "endpoint", leg="A", payload_type=app.payload_type,
                                 event_type=app.event_type)
        except Exception as error:
            log.warning("Call %s -> %s: media endpoint not attached: %s",
                        call.caller_number, call.callee, error)
            owner.hangup(call, f"media endpoint: {error}")
            return
        self._spawn(call, app)

    def _run(self, call, app) -> None:
        run = self._registry().get(app.app)
        try:
            run(app)
        except CallerGone:
            pass
        except Exception:  # a bug in an app ends its call, not sipd
            log.exception("Application %s on call %s -> %s failed", app.app,
                          call.caller_number, call.callee)
        finally:
            app.running = False
            app.gone = True
            owner = self.owner
            if call.phase is not Phase.ENDED and call.app is app:
                call.caller.bye()
                owner.end(call, "ANSWERED", "system", None, f"application {app.app} ended")
            elif call.app is app:
                owner.media.close(call)  # end() left it to us (ended)

    def ended(self, call) -> bool:
        """The call ends (calls.py `end`): tell the app. True when the app's
        greenlet will close the media session itself (once it has returned)."""
        app = call.app
        app.caller_gone()
        return app.running

    # -- what the app asks of the call ---------------------------------------------------

    def clock(self) -> float:
        return self.owner.clock()

    def hangup_app(self, app) -> None:
        call = app.call
        if call.phase is not Phase.ENDED:
            call.caller.bye()
            self.owner.end(call, "ANSWERED", "system", None, f"application {app.app} hung up")

    def continue_to(self, app, destination: str) -> None:
        """Leave the app for `destination`, routed as if the caller had dialled
        it. Another application runs on in the same call and endpoint; a number
        (an extension, a group, an outside number) is rung and the answering
        phone bridged to the caller (handover.py). Always raises CallerGone:
        the app that asked must not go on."""
        owner = self.owner
        call = app.call
        if call.phase is not Phase.ANSWERED or call.app is not app:
            raise CallerGone()
        routed = owner.route(call.caller_number, destination, owner.clock(), owner.in_calls)
        step, _, _ = owner.executor.resolve(routed, owner.clock(), [], call.steps)
        from sipd.routing.plan import Application

        if isinstance(step, Application) and step.app in self._registry():
            log.info("Call %s -> %s: application %s goes on to %s", call.caller_number,
                     call.callee, app.app, destination)
            app.app, app.target, app.reason = step.app, step.target, step.reason
            self._registry()[step.app](app)
            raise CallerGone()  # the next app has run: this one must not go on
        owner.handovers.start(app, destination, routed)
        raise CallerGone()

    # -- requests within the call ----------------------------------------------------------

    def request(self, call, leg, request, txn) -> None:
        """INFO, re-INVITE or UPDATE from the caller while an app has it (or
        while the number an app handed it on to rings: a session refresh)."""
        stack = self.owner.stack
        if request.method == "INFO":
            self.info(call, request, txn)
            return
        offer = parsed(request.body)
        # While an app has the call, or while the number it handed the call on
        # to rings (handover.py): the endpoint on leg A speaks this law.
        law = call.app.payload_type if call.app is not None else call.handover.payload_type
        headers = [("Contact", stack.contact(leg.us, leg.destination.transport))]
        session = call.caller_session
        if session is not None:
            session.peer_refreshed(request)  # RFC 4028 §10, and §9 for our 2xx
            headers += session.response_headers()
        if request.body and offer is None:
            stack.reply(txn, request, 488, "Not Acceptable Here: unreadable SDP")
            return
        if offer is None:
            if request.method == "UPDATE":  # a refresh (RFC 3311 §5.2)
                stack.reply(txn, request, 200, None, headers)
                return
            body = self.owner.media.offer_for(call, "A", 2)
            leg.awaiting_answer = CSeq.parse(request.headers.get("CSeq")).number
        else:
            answer = self.owner.media.endpoint_answer(call, offer, law)
            if answer is None or answer[1] != law:
                stack.reply(txn, request, 488, "Not Acceptable Here")
                return
            stream = self.owner.media.apply(call, leg, offer)
            if stream is not None:
                leg.direction = stream.relay_direction if stream.port else "inactive"
            body = answer[0]
        ok = stack.reply(txn, request, 200, None, headers + [("Allow", ALLOW)], body)
        if request.method == "INVITE":
            leg.retransmit_2xx(bytes(ok), CSeq.parse(request.headers.get("CSeq")).number)

    def info(self, call, request, txn) -> None:
        stack = self.owner.stack
        content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type not in DTMF_TYPES:
            stack.reply(txn, request, 415, None, [("Accept", ", ".join(DTMF_TYPES))])
            return
        key = dtmf_key(request.body.decode("utf-8", "replace"), content_type)
        stack.reply(txn, request, 200)
        if key and call.app is not None:  # no app while a hand-over rings: nobody asks
            call.app.key(key)
            log.info("Call %s -> %s: key %s by SIP INFO", call.caller_number, call.callee, key)


def dtmf_key(body: str, content_type: str) -> str:
    """The key of a SIP INFO body: application/dtmf-relay's "Signal=5" line,
    or application/dtmf's bare key; "" when there is none."""
    value = body.strip()
    if content_type == "application/dtmf-relay":
        value = ""
        for line in body.splitlines():
            name, _, rest = line.partition("=")
            if name.strip().lower() == "signal":
                value = rest.strip()
                break
    value = value.upper()
    if value.isdigit() and len(value) == 1:
        return value
    return _SIGNALS.get(value, "")
