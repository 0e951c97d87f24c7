"""Carrying out a routing plan (sipd/routing/plan.py): from step to step while
the caller waits.

A `Ring` step looks up the reachable bindings of its extensions when it begins
(an extension with none is skipped; a step with none at all goes on to its
`on_unavailable` at once), rings them all (forking.py) for its `seconds`, and
ends answered, or busy, no answer or unavailable. Then the step that follows
for that outcome begins, without a word to the caller: the 180 it was sent
stands and it keeps hearing ringing. What still rings is CANCELled first. No
step to follow: the caller is answered as the outcome says (486 or the busy
phone's status, 480). A `Refuse` step answers the caller with its response; a
`Feature` step is carried out by the `features` function the B2BUA was given,
and answered 200 then BYE (there is no audio to play yet) or with the refusal
it returns.

The history gets a `call_event` row for each Event of each step begun, the
extensions ringing now (`call.ringing`) and the group rung (`call.via_group`),
all in the history's group commit.
"""

from __future__ import annotations

import logging

from sipd import store
from sipd.b2bua.call import Phase
from sipd.b2bua.forking import BUSY, NO_ANSWER, UNAVAILABLE, Fork, Outcome
from sipd.b2bua.media import codec
from sipd.b2bua.stack import ALLOW
from sipd.routing.plan import Application, Feature, Outside, Refuse, Ring
from sipd.trunks import fraud

log = logging.getLogger("sipd")

# Steps one call may take. A plan is a finite tree, and the routing step
# bounds loops itself; this only keeps a plan gone wrong from ringing forever.
MAX_STEPS = 32


class Executor:
    __slots__ = ("owner", "features")

    def __init__(self, owner, features=None):
        self.owner = owner  # the B2BUA
        # features(step) -> (status, phrase): carries out a Feature step
        # (sipd/apps/features.py); None: feature codes are not available.
        self.features = features

    # -- where a step leads before anything rings -----------------------------------------

    def resolve(self, step, now: float, events: list, steps: int = 0):
        """Follow `step` past the Ring steps that have nothing to ring (to their
        on_unavailable). Returns (step, bindings, outcome): bindings, a list of
        (extension, binding), when `step` is a Ring to ring now; outcome, what
        the last Ring skipped would tell the caller when `step` is None."""
        outcome = None
        while isinstance(step, Ring):
            steps += 1
            events.extend(step.events)
            if steps > MAX_STEPS:
                return Refuse(482, "Loop Detected", "FAILED",
                              f"more than {MAX_STEPS} routing steps"), None, None
            found = store.ring_bindings(step.extensions, now)
            # Bindings that did not answer the qualifier's OPTIONS are not rung
            # (sipd/qualifier.py).
            bindings = [(number, binding) for number in step.extensions
                        for binding in found.get(number, ()) if not binding.unreachable]
            if bindings:
                return step, bindings, None
            outcome = Outcome(UNAVAILABLE, 480, "FAILED", "system",
                              _unavailable(step, found))
            step = step.on_unavailable
        if step is not None:
            events.extend(step.events)
        return step, None, outcome

    def feature(self, step: Feature) -> tuple[int, str]:
        if self.features is None:
            return 501, "Not Implemented: feature codes"
        try:
            return self.features(step)
        except Exception:  # a bug there must not leave the caller without an answer
            log.exception("Feature %s for %s failed", step.code, step.caller)
            return 500, "Server Internal Error"

    # -- ringing --------------------------------------------------------------------------

    def ring(self, call, step: Ring, bindings: list, first: bool = False) -> None:
        owner = self.owner
        fork = Fork(owner, call, step)
        call.fork = fork
        call.steps += 1
        for number, _ in bindings:
            owner.count(call, number)
        rung = ",".join(dict.fromkeys(number for number, _ in bindings))
        if not first:
            owner.history.ringing(call.record_id, rung, step.group)
        fork.start(bindings)
        call.ring_timer = owner.stack.scheduler.call_later(
            step.seconds, self.ring_time_over, call, fork
        )

    def ring_time_over(self, call, fork: Fork) -> None:
        call.ring_timer = None
        if call.fork is not fork or not fork.active or not call.rings:
            return
        fork.cancel()
        self._over(call, fork, Outcome(
            NO_ANSWER, 480, "NO ANSWER", "system",
            f"no answer within {fork.step.seconds:g} s", "Temporarily Unavailable",
        ))

    def step_failed(self, call, fork: Fork, outcome: Outcome) -> None:
        """Every branch of `fork` answered with a final non-2xx."""
        self._over(call, fork, outcome)

    def _over(self, call, fork: Fork, outcome: Outcome) -> None:
        if call.ring_timer is not None:
            call.ring_timer.cancel()
            call.ring_timer = None
        self._unring(call, fork, keep=None)
        step = fork.step
        following = {BUSY: step.on_busy, NO_ANSWER: step.on_no_answer,
                     UNAVAILABLE: step.on_unavailable}[outcome.kind]
        if call.handover is not None:
            self.owner.handovers.ringback_again(call)  # after a callee's early media
        self.go_on(call, following, outcome)

    def _unring(self, call, fork: Fork, keep: str | None) -> None:
        """The extensions `fork` rang no longer count this call (but the caller, and `keep`)."""
        for number in fork.extensions:
            if number != keep and number != call.caller_number:
                self.owner.uncount(call, number)

    def go_on(self, call, step, outcome: Outcome) -> None:
        """The next step of a call already ringing (the caller has its 180), or
        handed on by an application (handover.py: the caller has our 200)."""
        owner = self.owner
        now = owner.clock()
        events: list = []
        step, bindings, skipped = self.resolve(step, now, events, call.steps)
        owner.history.events(call.record_id, now, events)
        if bindings is not None:
            log.info("Call %s -> %s goes on to %s", call.caller_number, call.callee,
                     ", ".join(step.extensions))
            self.ring(call, step, bindings)
        elif isinstance(step, Refuse):
            self.tell_caller(call, step.status, step.phrase or None)
            owner.end(call, step.disposition, "system", step.status, step.reason)
            for event in step.events:
                if event.kind == "toll_fraud":  # a forward to a number it may not call
                    fraud.record(now, event.by, event.target, event.detail, step.reason)
        elif isinstance(step, Outside):  # a forward to an outside number (sipd/trunks/)
            prepared = owner.outbound.prepare(step, now)
            if isinstance(prepared, tuple):
                status, phrase, reason = prepared
                self.tell_caller(call, status, phrase)
                owner.end(call, "FAILED", "system", status, reason)
            else:
                owner.outbound.start(call, step, prepared)
        elif isinstance(step, Feature) and call.handover is not None:
            self.tell_caller(call, 501, None)  # a feature code is dialled, not handed on to
            owner.end(call, "FAILED", "system", 501, f"feature {step.code} after an application")
        elif isinstance(step, Feature):
            status, phrase = self.feature(step)
            self.answer_feature(call, step, status, phrase)
        elif isinstance(step, Application) and call.handover is not None:
            owner.handovers.to_application(call, step)  # answered already (handover.py)
        elif isinstance(step, Application):  # the PBX answers (b2bua/application.py)
            owner.applications.answer(call, step)
        else:
            outcome = skipped or outcome
            self.tell_caller(call, outcome.status, outcome.phrase)
            owner.end(call, outcome.disposition, outcome.by, outcome.status, outcome.reason)

    # -- answered -------------------------------------------------------------------------

    def answered(self, call, fork: Fork, leg, response) -> None:
        if call.ring_timer is not None:
            call.ring_timer.cancel()
            call.ring_timer = None
        self._unring(call, fork, keep=leg.extension)
        if call.handover is not None:  # the caller has our 200 already (handover.py)
            self.owner.handovers.connected(call, leg, response)
        else:
            self.owner.bridge.connect(call, leg, response)

    def tell_caller(self, call, status: int, phrase: str | None) -> None:
        """The plan failed: the caller gets the final response, or, answered
        already by an application that handed it on, our BYE (RFC 3261 §15:
        no final response can follow our 200)."""
        if call.phase is Phase.ANSWERED:
            call.caller.bye()
        else:
            call.caller.respond(status, phrase)

    # -- a feature code -------------------------------------------------------------------

    def answer_feature(self, call, step: Feature, status: int, phrase: str) -> None:
        """Answer the caller with the feature's result: 200 (an SDP answer of
        the relay's, no audio yet) and our BYE once it ACKs, or the refusal."""
        owner = self.owner
        caller = call.caller
        reason = f"feature {step.code}: {status} {phrase}"
        if not 200 <= status < 300:
            caller.respond(status, phrase or None)
            owner.end(call, "FAILED", "system", status, reason)
            return
        call.phase = Phase.ANSWERED
        call.answered_at = owner.clock()
        call.feature = reason
        ok = caller.respond(
            200, phrase or "OK",
            [("Contact", owner.stack.contact(caller.us, caller.destination.transport)),
             ("Allow", ALLOW)],
            owner.media.answer_for(call, call.offer),
        )
        caller.retransmit_2xx(bytes(ok), caller.cseq())
        owner.history.answered(call.record_id, call.answered_at, "", codec(call.offer), "")
        log.info("Call %s -> %s: %s", call.caller_number, call.callee, reason)

    def feature_acked(self, call) -> None:
        """The caller ACKed the 200 of a feature code: the call is done."""
        call.caller.bye()
        self.owner.end(call, "ANSWERED", "system", None, call.feature)


def _unavailable(step: Ring, found: dict) -> str:
    registered = any(found.get(number) for number in step.extensions)
    if len(step.extensions) == 1:
        return "callee's phones do not answer" if registered else "callee not registered"
    names = ", ".join(step.extensions)
    return (f"the phones of {names} do not answer" if registered
            else f"none of {names} is registered")
