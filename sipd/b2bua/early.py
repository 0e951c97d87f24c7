"""Offers before the 2xx, on early dialogs (RFC 3261 §12.1): an UPDATE (RFC
3311) from the callee, on the early dialog of its 18x (we are the UAC of its
INVITE), or from the caller, on the early dialog of our 18x (we are its UAS);
and the offer or answer a caller's PRACK carries (RFC 3262 §5).

- An UPDATE without SDP (a session or target refresh, RFC 4028) gets 200.
- An UPDATE with an offer (§5.2) gets 491 while an offer of ours to that phone
  waits for its answer (our INVITE's, not answered in a reliable 18x yet, or
  an UPDATE we relayed to it), 500 with Retry-After while one of its own waits
  for ours (its INVITE's, not answered reliably yet, or its UPDATE relayed on).
- Otherwise it is relayed to the other phone (bridge.relay_request, as in an
  answered call) when that phone's early dialog takes an UPDATE: it allows
  UPDATE, the INVITE's offer/answer on it is complete (§5.1) and it is the
  dialog whose early media the caller has. Else it is answered here
  (`answer_here`), with the relay's address and only the formats both phones
  already use, so that nothing changes for the other one; when no audio format
  is left, 488 (§5.2).
- A caller whose INVITE had no offer and that wants 100rel gets our offer in
  the first reliable 18x (prack.py); its answer comes in the PRACK (§5), our 2xx
  then carries no offer again (RFC 6337 §3.1.2). When the callee's answer
  shares no codec with the caller's (the relay does not transcode), the callee
  gets a re-INVITE with the caller's (`fit_callee`, reoffer.py).

Our INVITEs always carry an offer, so an 18x to them brings an answer, never an
offer; and our INVITEs to phones do not offer 100rel (only those to trunks do).
"""

from __future__ import annotations

import logging
import random

from sipd.b2bua.call import Phase
from sipd.b2bua.media import audio, codec, parsed
from sipd.sip.dialog import tag_param
from sipd.sip.extensions import options
from sipd.sip.message import Request
from sipd.sip.sdp import SdpError, SessionDescription

log = logging.getLogger("sipd")


def dialog_of(leg, request: Request):
    """The early dialog of a callee leg still ringing that `request` is in (by
    the phone's tag, its From), or None: one made by an unreliable 18x, which
    we keep no state for (RFC 3261 §12.1.2 makes it all the same)."""
    return leg.early.get(tag_param(request.headers.get("From")))


def update(owner, call, leg, request: Request, txn) -> None:
    """An UPDATE on an early dialog (RFC 3311 §5.2)."""
    stack = owner.stack
    contact = [("Contact", stack.contact(leg.us, leg.destination.transport))]
    if not request.body:
        stack.reply(txn, request, 200, None, contact)
        return
    try:
        offer = SessionDescription.parse(request.body)
    except SdpError as error:
        stack.reply(txn, request, 488, f"Not Acceptable Here: {error}")
        return
    if call.phase is not Phase.RINGING or call.handover is not None or call.app is not None:
        # A number an application hands the call on to (handover.py): the other
        # end is the PBX, whose session this offer cannot change.
        _refuse(owner, call, leg, request, txn, "the other end is the PBX")
        return
    pending = _pending(call, leg)
    if pending is not None:
        status, why = pending
        log.info("Call %s -> %s: UPDATE with an offer from the %s refused (%d): %s",
                 call.caller_number, call.callee, leg.role, status, why)
        if status == 500:  # §5.2: "a randomly chosen value between 0 and 10 seconds"
            stack.reply(txn, request, 500, "Server Internal Error: offer pending",
                        [("Retry-After", str(random.randint(0, 10)))])
        else:
            stack.reply(txn, request, 491, "Request Pending")
        return
    target = _relay_target(call, leg)
    if target is not None:
        owner.bridge.relay_request(call, leg, request, txn, other=target)
        return
    body = answer_here(owner, call, leg, offer)
    if body is None:
        _refuse(owner, call, leg, request, txn, "it has no audio format the other phone uses")
        return
    stack.reply(txn, request, 200, None, contact, body)
    log.info("Call %s -> %s: early UPDATE from the %s answered here (%s)",
             call.caller_number, call.callee, leg.role, codec(leg.sdp) or "no audio")


def _refuse(owner, call, leg, request, txn, why: str) -> None:
    log.info("Call %s -> %s: early UPDATE from the %s refused (488): %s",
             call.caller_number, call.callee, leg.role, why)
    owner.stack.reply(txn, request, 488, "Not Acceptable Here")


def _pending(call, leg) -> tuple[int, str] | None:
    """§5.2: (491 or 500, why) when an offer waits for its answer on `leg`'s
    early dialog, one way or the other; None when an offer may come."""
    for relayed in call.relayed.values():
        if relayed.method in ("INVITE", "UPDATE"):
            if getattr(relayed, "origin", None) is leg:
                return 500, "its previous offer waits for the other phone's answer"
            return 491, "an offer of ours to it is pending"
    caller = call.caller
    if leg is caller:
        if call.delayed:
            if caller.early_offer != "answered":
                # §5.1: not before it answered the offer of our reliable 18x.
                return 491, "our offer in the 18x has no answer yet"
            return None
        provisionals = caller.provisionals
        if provisionals is None or not provisionals.core.sdp_sent:
            return 500, "its INVITE's offer is not answered reliably yet"
        return None
    if dialog_tag_answered(leg) is None:
        return 491, "our INVITE's offer is not answered in a reliable 18x"
    return None


def dialog_tag_answered(leg):
    """The early dialog of callee leg `leg` whose reliable 18x answered our
    INVITE (True/False: it allows UPDATE), or None."""
    if leg.early_tag is None:
        return None
    return leg.early_answers.get(leg.early_tag)


def _relay_target(call, leg):
    """The other phone's leg when its early dialog takes an UPDATE now, else None."""
    caller = call.caller
    if leg is caller:
        callee = caller.early_from
        if (callee is not None and callee.final is None and callee.dialog is None
                and dialog_tag_answered(callee)):
            return callee
        return None
    provisionals = caller.provisionals
    if (caller.early_from is leg and provisionals is not None
            and provisionals.core.sdp_acked and "update" in options(caller.invite, "Allow")
            and (not call.delayed or caller.early_offer == "answered")):
        return caller  # §5.1: the PRACK of our reliable 18x with SDP came
    return None


def _in_use(call) -> set[str] | None:
    """The audio formats (payload type numbers: the relay passes them on as they
    are) both phones already use while ringing: the caller's last description
    and the early answer it was sent, if any."""
    caller = call.caller
    mine = caller.sdp if caller.sdp is not None else call.offer
    stream = audio(mine) if mine is not None else None
    if stream is None:
        return None
    allowed = set(stream.formats)
    early = caller.early_from
    if early is not None and early.sdp is not None:
        theirs = audio(early.sdp)
        allowed &= set(theirs.formats) if theirs is not None else set()
    return allowed


def answer_here(owner, call, leg, offer: SessionDescription) -> bytes | None:
    """Our own answer (RFC 3264 §6) to `leg`'s phone's offer, on its relay leg,
    with the formats of the offer the other phone uses already; the offer is
    applied to the relay. None (nothing applied) when no audio codec is left."""
    allowed = _in_use(call)
    stream = audio(offer)
    if allowed is None or stream is None or not stream.port:
        return None
    kept = [f for f in stream.formats if f in allowed]
    if not any(not _event(stream, f) for f in kept):
        return None
    applied = owner.media.apply(call, leg, offer)
    if applied is not None:
        owner.bridge.declared(call, leg, applied)
    return owner.media.answer_for(call, offer, leg.name, kept)


def _event(stream, payload_type: str) -> bool:
    """RFC 4733 telephone-event: no audio codec of its own."""
    mapping = stream.rtpmap.get(int(payload_type)) if payload_type.isdigit() else None
    return mapping is not None and mapping.encoding.lower() == "telephone-event"


# -- the SDP of a caller's PRACK (RFC 3262 §5) -------------------------------------------------


def prack_sdp(leg, request: Request, acked_sdp: bool) -> bytes:
    """The PRACK of the caller's leg `leg` acknowledged a reliable 1xx (with SDP
    if `acked_sdp`): what its SDP means, and the body of our 200 to it."""
    call = leg.call
    owner = leg.owner
    if leg.early_offer == "sent" and acked_sdp:
        answer = parsed(request.body)
        if answer is None:
            # §5 wants the answer here; without it, the offer goes again in our 2xx.
            log.warning("Call %s -> %s: the caller's PRACK has no usable answer to our offer",
                        call.caller_number, call.callee)
            leg.early_offer = None
            return b""
        leg.early_offer = "answered"
        stream = owner.media.apply(call, leg, answer)
        if stream is not None:
            owner.bridge.declared(call, leg, stream)
        log.info("Call %s -> %s: the caller's answer came in its PRACK (%s)",
                 call.caller_number, call.callee, codec(answer) or "no audio")
        return b""
    offer = parsed(request.body)
    if offer is None:
        return b""
    if not leg.provisionals.core.sdp_acked:
        # No offer/answer of the INVITE complete yet (its offer not answered in a
        # reliable 1xx, or our 1xx's offer not answered): not an offer it may make.
        log.info("Call %s -> %s: SDP in the caller's PRACK before any answer; not taken up",
                 call.caller_number, call.callee)
        return b""
    # A new offer, after the answer our 18x carried (§5): the PRACK is answered
    # 200 all the same (§3), with our answer, or one that takes no audio (RFC 3264
    # §6: a stream refused with port 0) when there is none to give.
    body = answer_here(owner, call, leg, offer)
    if body is None:
        log.warning("Call %s -> %s: the offer in the caller's PRACK has no format the"
                    " callee uses; refused in the answer", call.caller_number, call.callee)
        return owner.media.answer_for(call, offer, leg.name, [])
    return body


def answered_in_prack(call) -> bool:
    """The caller (no offer in its INVITE) answered our offer in its PRACK."""
    return call.delayed and call.caller.early_offer == "answered"


def fit_callee(owner, call, leg, answer: SessionDescription | None) -> None:
    """The callee answered (its 2xx) a call whose caller answered our offer in
    its PRACK: if the two answers share no codec, the callee is offered the
    caller's in a re-INVITE (RFC 3261 §14.1; the relay does not transcode)."""
    from sipd.b2bua.reoffer import Reoffer  # noqa: PLC0415 (reoffer imports legs)

    caller_sdp = call.caller.sdp
    ours, theirs = (audio(d) if d is not None else None for d in (caller_sdp, answer))
    if ours is None or theirs is None:
        return
    shared = {f for f in set(ours.formats) & set(theirs.formats) if not _event(ours, f)}
    if shared:
        return
    log.info("Call %s -> %s: the callee answered %s, the caller %s: the callee is offered"
             " the caller's", call.caller_number, call.callee, codec(answer) or "nothing",
             codec(caller_sdp) or "nothing")

    def done(new) -> None:
        if new is None or call.phase is not Phase.ANSWERED:
            return
        stream = owner.media.apply(call, leg, new)
        if stream is not None:
            owner.bridge.declared(call, leg, stream)

    def failed(status: int, reason: str) -> None:
        log.warning("Call %s -> %s: the callee refused the caller's codec (%d %s); hanging up",
                    call.caller_number, call.callee, status, reason)
        owner.hangup(call, "no codec both phones take")

    body = owner.media.sdp_for(call, caller_sdp, leg.name)
    Reoffer(owner, call, leg, body, [], done, failed).send()
