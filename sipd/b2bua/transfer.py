"""Transfer, done by the PBX itself: a phone's REFER is consumed here, never passed
on (RFC 3515; RFC 5589 for the call flows). Asterisk and FreeSWITCH do the same:
a B2BUA passing a REFER through would hand the far phone a Replaces naming a
dialog it does not have (the PBX's), and a Refer-To it cannot reach.

Names: the transferor sent the REFER on its leg; the remaining party is the one
it was talking to there (the transferee); the target is who they are to talk to.

Blind (a Refer-To without Replaces): 202 Accepted and NOTIFY "SIP/2.0 100
Trying" (§2.4.2, §2.4.4); the target's number goes through the routing step like
a number dialled (`route`, the executor's `resolve` and `ring`: a group, a
forward, busy all apply) in a call of its own, whose caller is the remaining
party and whose relay session is new. Its progress goes to the transferor as
sipfrag NOTIFYs: 180 once, then the final status (§2.4.5-§2.4.7). Answered: the
remaining party moves to that call and is re-INVITEd with the relay's SDP for
it (RFC 3261 §14.1), the target's identity in From's display name and in
P-Asserted-Identity (RFC 3325 §9.1: the PBX is the phones' trust domain);
the transferor gets "SIP/2.0 200 OK" and, TRANSFEROR_GRACE after it answered that
NOTIFY, our BYE unless it hung up meanwhile (phones do, on the 200). Failed (busy, no answer,
unreachable, no such number): the NOTIFY carries the status (e.g. "SIP/2.0 486
Busy Here"), the attempt's call and relay session are ended, and the
transferor's call is as it was, to be resumed.

Attended (Replaces in the Refer-To, RFC 3891 §6.1): the Replaces names the
transferor's dialog with the PBX in its second call (to-tag the PBX's tag,
from-tag the phone's, §3). Refused: 481 when it names no dialog of the PBX (or
only an early one the phone began, §3), 486 for early-only and a confirmed
dialog (§3), 403 when that dialog is not the transferor's own (§7: only the
dialog's party may have it replaced) or is the REFER's own call. Else 202 and
100 Trying, a relay session for the new pair, and the target re-INVITEd with
the remaining party's description and identity; its 2xx makes the new call
(both parties moved to it), the remaining party is re-INVITEd as for a blind
transfer, the transferor's NOTIFY says 200 and both its legs are BYEd (unless
it hung them up). A target refusing the re-INVITE leaves both calls as they
were; the NOTIFY carries its status.

While a transfer is under way a BYE from the transferor ends its own leg only
(phones hang up at once after the 202 or the 200): the remaining party is
hung up only if the transfer then fails with nobody to go back to. A second
REFER in the call meanwhile is answered 491.

History: the new pair is a call row of its own (caller the remaining party,
answered by the target): the rows say who talked to whom and when. A
`call_event` row of kind "transferred" (by the transferor's extension, target
the target's number, detail "blind" or "attended") on the call(s) transferred,
and on the new call ("blind from call N", "attended from calls N and M"). A
failed blind transfer's attempt is a row too (e.g. BUSY), with its event.
"""

from __future__ import annotations

import logging
import weakref

from sipd import store
from sipd.b2bua import session_timer
from sipd.b2bua.call import Call, Phase
from sipd.b2bua.legs import CallerLeg, LegState
from sipd.b2bua.media import audio, codec
from sipd.b2bua.reoffer import Reoffer
from sipd.routing.plan import Event, Feature, Refuse
from sipd.sip import refer as referlib
from sipd.sip.headers import CSeq, NameAddr
from sipd.sip.message import ParseError, Request, Response
from sipd.sip.sdp import SessionDescription, with_direction

log = logging.getLogger("sipd")

# What the refer subscription's NOTIFYs say it has left (RFC 3515 §2.4.7): long
# enough for a plan's ringing, so that no phone refreshes it meanwhile.
SUBSCRIPTION_EXPIRES = 300
# How long a transferor has, once its final NOTIFY is answered, to hang up itself
# (phones do, on the "200 OK") before we BYE it: two BYEs crossing would have
# one of them answered 481.
TRANSFEROR_GRACE = 2.0


def identity(leg) -> tuple[str, str]:
    """(extension number, the panel's name for it) of a leg's phone. A caller's
    number is its INVITE's From user (what it authenticated as, calls.py); a
    callee leg's, the extension rung; a trunk's leg rings none: the number it
    was sent (its To), so that an outside party transferred on is shown by it."""
    if isinstance(leg, CallerLeg):
        number = NameAddr.parse(leg.invite.headers.get("From")).uri.user or ""
    else:
        number = leg.extension or NameAddr.parse(leg.remote_uri).uri.user or ""
    extension = store.extension(number) if number else None
    return number, (extension.name if extension else "")


def asserted(number: str, name: str, realm: str) -> str:
    """P-Asserted-Identity (RFC 3325 §9.1) for an extension."""
    address = NameAddr.parse(f"<sip:{number}@{realm}>")
    address.display_name = name or None
    return str(address)


class Transfers:
    """The B2BUA's part for REFER: `refer` from calls.py's in_dialog, and two hooks
    while a transfer is under way (`left`: a BYE; `call_ended`)."""

    __slots__ = ("owner", "refers")

    def __init__(self, owner):
        self.owner = owner  # the B2BUA
        # How many REFERs each leg's phone has sent: the second and later ones'
        # NOTIFYs carry id= (RFC 3515 §2.4.6).
        self.refers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def refer(self, call: Call, leg, request: Request, txn) -> None:
        """A REFER within an answered call, from `leg`'s phone."""
        stack = self.owner.stack
        try:
            refer = referlib.Refer.from_request(request)
        except ParseError as error:
            log.info("[SIP] REFER from %s refused: %s", leg.destination, error)
            stack.reply(txn, request, 400, f"Bad Request: {error}")
            return
        target = refer.refer_to
        refusal = None
        if not target.is_sip:
            # §2.4.2 leaves it to the recipient whether it follows a reference; the
            # PBX connects calls to what it can dial, and that is a SIP URI.
            refusal = 403, "Forbidden: Refer-To is not a SIP URI"
        elif target.method != "INVITE":
            refusal = 403, f"Forbidden: the PBX transfers calls, not {target.method[:20]}"
        elif call.transfer is not None:
            refusal = 491, "Request Pending: a transfer of this call is under way"
        elif leg.other is None or leg.other.sdp is None:
            refusal = 403, "Forbidden: nobody to transfer"
        replaced = None
        if refusal is None and target.replaces is not None:
            replaced, refusal = self._replaced(call, leg, target.replaces)
        if refusal is not None:
            status, phrase = refusal
            log.info("Call %s -> %s: REFER from %s refused: %d %s", call.caller_number,
                     call.callee, leg.role, status, phrase)
            stack.reply(txn, request, status, phrase)
            return
        count = self.refers.get(leg, 0) + 1
        self.refers[leg] = count
        headers = [] if refer.subscription else [("Refer-Sub", "false")]  # RFC 4488 §4
        stack.reply(txn, request, 202, "Accepted", headers)
        kind = AttendedTransfer if replaced is not None else BlindTransfer
        transfer = kind(self, call, leg, request, refer, count)
        transfer.notify(100)
        if replaced is not None:
            transfer.start(replaced)
        else:
            transfer.start()

    def _replaced(self, call: Call, leg, replaces: referlib.Replaces):
        """The PBX's leg the Replaces names (RFC 3891 §3), or why not: (leg, refusal)."""
        owner = self.owner
        found = owner.dialogs.get((replaces.call_id, replaces.to_tag))
        if (
            found is None
            or found.call is None
            or found.dialog is None
            or not replaces.names(found.dialog)
            or found.call.phase is Phase.ENDED
            or found.state is LegState.ENDED
        ):
            return None, (481, "Call/Transaction Does Not Exist: Replaces names no dialog")
        other_call = found.call
        if other_call.phase is not Phase.ANSWERED:
            # §3: an early dialog that this UA did not initiate (the transferor's own
            # INVITE, still ringing its target) is not replaced.
            return None, (481, "Call/Transaction Does Not Exist: that call is not answered")
        if replaces.early_only:
            return None, (486, "Busy Here: the call named is confirmed (early-only)")
        if other_call is call:
            return None, (403, "Forbidden: Replaces names the call being transferred")
        if identity(found)[0] != identity(leg)[0]:
            # §7: a Replaces may only take over a dialog of the one asking.
            return None, (403, "Forbidden: Replaces names a call of another extension")
        if other_call.transfer is not None or found.other is None or found.other.sdp is None:
            return None, (491, "Request Pending: that call is being transferred")
        return found, None

    # -- hooks from calls.py ---------------------------------------------------------

    def left(self, call: Call, leg) -> bool:
        """`leg`'s phone hung up during a transfer of `call`. True: handled here
        (it was the transferor), the call is not to be ended as usual."""
        transfer = call.transfer
        if transfer is None or leg not in transfer.transferor_legs:
            return False
        transfer.transferor_left(call, leg)
        return True

    def call_ended(self, call: Call) -> None:
        transfer = call.transfer
        if transfer is not None:
            call.transfer = None
            transfer.call_ended(call)
            if transfer.joined and all(c.phase is Phase.ENDED for _, c in transfer.sides):
                transfer.forget()


class Transfer:
    """One REFER being carried out (see BlindTransfer, AttendedTransfer)."""

    kind = ""

    def __init__(self, transfers: Transfers, call: Call, leg, request: Request,
                 refer: referlib.Refer, count: int):
        self.transfers = transfers
        self.owner = transfers.owner
        self.call = call  # where the REFER came
        self.request = request
        self.transferor = leg
        self.remaining = leg.other
        self.refer = refer
        self.refer_cseq = refer.cseq if count > 1 else None  # RFC 3515 §2.4.6
        self.by = identity(leg)[0]
        self.target = refer.refer_to.user or ""
        self.notified = 0  # the last status the transferor was told
        self.joined = False  # the remaining party is with the target
        self.over = False  # nothing more to do but the transferor's legs
        call.transfer = self

    @property
    def transferor_legs(self) -> tuple:
        return (self.transferor,)

    @property
    def sides(self) -> list:
        """(the transferor's leg, the call it is in) for each call it transfers."""
        return [(self.transferor, self.call)]

    # -- telling the transferor (RFC 3515 §2.4.4-§2.4.7) ------------------------------

    def notify(self, status: int, reason: str | None = None) -> None:
        """NOTIFY the transferor of the new call's progress: each provisional once,
        the final one ending the subscription. No NOTIFYs when it asked for none
        (RFC 4488) or has hung up."""
        if self.transferor is None or self.notified >= 200 or (
                status < 200 and status <= self.notified):
            return
        self.notified = status
        final = status >= 200
        leg = self.transferor
        if not self.refer.subscription or leg.state is LegState.ENDED or leg.dialog is None:
            if final:
                self.final_notified()
            return
        stack = self.owner.stack
        transport = leg.destination.transport
        request = referlib.notify(
            leg.dialog, stack.via(transport), stack.contact(leg.us, transport), status, reason,
            refer_cseq=self.refer_cseq, expires=SUBSCRIPTION_EXPIRES,
        )
        stack.start(request, leg.destination, Notified(self) if final else None)

    def final_notified(self) -> None:
        """The final NOTIFY was answered (or timed out, or not sent): after a transfer
        that succeeded the transferor's legs are ended, ours to BYE if it has not."""
        if not self.joined or self.call is None:
            return
        gone = all(leg.state is LegState.ENDED for leg in self.transferor_legs)
        if self.refer.subscription and not gone:
            self.owner.stack.scheduler.call_later(TRANSFEROR_GRACE, self.end_transferor)
        else:
            self.end_transferor()  # gone, or told nothing it could hang up on

    def end_transferor(self) -> None:
        if self.call is None:
            return  # its legs are gone already
        reason = f"transferred to {self.target} by {self.by}"
        for leg in self.transferor_legs:
            call = leg.call
            leg.bye()
            if call is not None and call.phase is not Phase.ENDED:
                self.owner.end(call, "ANSWERED", "system", None, reason)

    # -- what calls.py tells us ----------------------------------------------------------

    def transferor_left(self, call: Call, leg) -> None:
        """The transferor hung up (BYEd, answered already) while the transfer goes on."""
        leg.state = LegState.ENDED
        if self.joined:
            self.owner.end(call, "ANSWERED", leg.role, None,
                           f"transferred to {self.target} by {self.by}")
            return
        log.info("Call %s -> %s: the transferor hung up; the transfer to %s goes on",
                 call.caller_number, call.callee, self.target)
        # Nothing may reach it any more: the remaining party's re-INVITEs wait (491).
        if leg.other is not None and leg.other.other is leg:
            leg.other.other = None
        leg.other = None

    def call_ended(self, call: Call) -> None:
        """A call the transfer is about ended (hung up, timed out, an admin)."""

    # -- ending -------------------------------------------------------------------------

    def failed(self, status: int, reason: str | None = None) -> None:
        """The target cannot be reached: the transferor is told; its call stays, or,
        if the transferor has gone meanwhile, ends (nobody to go back to)."""
        if self.joined or self.over:
            return
        self.over = True
        self.release()
        log.info("Call %s -> %s: transfer to %s by %s failed: %d %s", self.call.caller_number,
                 self.call.callee, self.target, self.by, status, reason or "")
        self.notify(status, reason)
        for leg, call in self.sides:
            if leg.state is LegState.ENDED and call.phase is not Phase.ENDED:
                self.owner.hangup(call, f"transfer to {self.target} failed ({status}) "
                                        "after the transferor hung up")
        self.forget()

    def forget(self) -> None:
        """Done: what is left of this transfer (the context of a transaction that
        lives on for Timer K's 32 s) holds no call, so that ended calls are freed at
        once, by reference counting (calls.py `_release`)."""
        self.over = True
        self.call = self.request = self.transferor = self.remaining = None

    def release(self) -> None:
        """The calls this transfer was about are free of it."""
        for call in self.calls:
            if call.transfer is self:
                call.transfer = None

    @property
    def calls(self) -> tuple:
        return (self.call,)

    def record(self, new_call: Call, detail_new: str) -> None:
        now = self.owner.clock()
        for call in self.calls:
            self.owner.history.events(call.record_id, now, [
                Event("transferred", by=self.by, target=self.target, detail=self.kind)])
        self.owner.history.events(new_call.record_id, now, [
            Event("transferred", by=self.by, target=self.target, detail=detail_new)])

    def detach(self, leg, new_call: Call, name: str, partner) -> None:
        """`leg` (the remaining party, or an attended transfer's target) moves to
        `new_call`, on the relay's side `name` of its session, facing `partner`."""
        old = leg.call
        leg.call = new_call
        leg.name = name
        leg.other = partner
        if getattr(leg, "fork", None) is not None:
            leg.fork = Moved()  # its ring step was the old call's
        session = session_timer.of(old, leg) if old is not None else None
        if session is not None:
            session.moved(old, new_call)  # RFC 4028: the leg's refreshes go on
        if old is not None and old.phase is not Phase.ENDED:
            # The old call's timers are the transferor's now, and no hold of it counts.
            for timer in (old.max_timer, old.hold_timer):
                if timer is not None:
                    timer.cancel()
            old.max_timer = old.hold_timer = None
            old.held_since = None
            self.owner.held.pop(old.record_id, None)

    def reoffer(self, call: Call, leg, description: SessionDescription, number: str,
                name: str, done, failed) -> None:
        """Re-INVITE `leg`'s phone with the relay's side of `call` for `description`,
        telling it who it now talks to."""
        owner = self.owner
        leg.us = number or leg.us
        leg.dialog.local_display = name or None
        body = owner.media.sdp_for(call, description, leg.name)
        extra = [("P-Asserted-Identity", asserted(number, name, owner.stack.realm))]
        Reoffer(owner, call, leg, body, extra, done, failed).send()


class Moved:
    """The fork of a callee leg a transfer moved to another call: its INVITE was
    answered long ago, and a retransmission of that 2xx (our ACK lost) is ACKed
    again (RFC 3261 §13.2.2.4); nothing else of the old ring step is its."""

    def __init__(self):
        self.legs: list = []
        self.active = False

    def on_response(self, leg, response: Response) -> None:
        if 200 <= response.status < 300 and leg.dialog is not None:
            leg.ack(CSeq.parse(response.headers.get("CSeq")).number)

    def on_timeout(self, leg) -> None:
        pass


class Notified:
    """The context of the final NOTIFY: its answer (or its timeout) ends the
    transferor's part."""

    __slots__ = ("transfer",)

    def __init__(self, transfer: Transfer):
        self.transfer = transfer

    def on_response(self, response: Response) -> None:
        if response.status >= 200:
            self.done()

    def on_timeout(self) -> None:
        self.done()

    def done(self) -> None:
        transfer, self.transfer = self.transfer, None
        if transfer is not None:
            transfer.final_notified()


# -- blind -------------------------------------------------------------------------------


class Waiting:
    """The remaining party as the caller of a blind transfer's call while the target
    rings: what forking.py and the executor send the caller (`respond`) becomes the
    transferor's NOTIFYs, and the target's 2xx the join (`BlindTransfer.join`)."""

    __slots__ = ("transfer", "leg", "call", "name", "role", "us", "destination", "dialog",
                 "invite", "direction", "other", "state", "sdp")

    def __init__(self, transfer: BlindTransfer, call: Call, refer_request: Request):
        leg = transfer.remaining
        self.transfer = transfer
        self.leg = leg
        self.call = call
        self.name = "A"
        self.role = "caller"
        self.us = leg.us
        self.destination = leg.destination
        self.dialog = leg.dialog
        self.invite = refer_request  # its Max-Forwards, for the new INVITEs
        self.direction = "sendrecv"
        self.other = None
        self.state = LegState.RINGING
        self.sdp = leg.sdp

    def respond(self, status: int, reason: str | None = None, headers=None, body: bytes = b"",
                tagged: bool = True) -> bytes:
        if status < 200:
            self.transfer.notify(status, reason)
        elif status < 300:
            self.transfer.join(body)
        else:
            self.transfer.failed(status, reason)
        return b""

    def retransmit_2xx(self, data: bytes, cseq: int) -> None:
        pass

    def stop_2xx(self) -> None:
        pass

    def cseq(self) -> int:
        return 0

    def bye(self) -> None:
        pass

    def acked(self, cseq: int) -> bool:
        return False


class BlindTransfer(Transfer):
    kind = "blind"

    def __init__(self, *args):
        super().__init__(*args)
        self.ringing: Call | None = None  # the call to the target (the attempt)

    @property
    def calls(self) -> tuple:
        return (self.call,) if self.ringing is None else (self.call, self.ringing)

    def forget(self) -> None:
        super().forget()
        self.ringing = None

    def start(self) -> None:
        owner = self.owner
        now = owner.clock()
        remaining = self.remaining
        number, name = identity(remaining)
        events = [Event("transferred", by=self.by, target=self.target,
                        detail=f"blind from call {self.call.record_id}")]
        step, bindings, skipped = owner.executor.resolve(
            owner.route(number, self.target, now, owner.in_calls), now, events)
        record = dict(caller=number, caller_name=name, caller_claimed="", callee=self.target,
                      caller_source=f"{remaining.destination}/{remaining.destination.transport}")
        call_id = remaining.dialog.call_id
        if bindings is None:
            if isinstance(step, Refuse):
                status, phrase, disposition, why = (step.status, step.phrase or None,
                                                    step.disposition, step.reason)
            elif isinstance(step, Feature) or skipped is None:
                status, phrase, disposition, why = (403, "Forbidden", "FAILED",
                                                    "a transfer cannot reach a feature code")
            else:
                status, phrase, disposition, why = (skipped.status, skipped.phrase,
                                                    skipped.disposition, skipped.reason)
            row_id = owner.history.refused(now, call_id, record, status, disposition, why)
            owner.history.events(row_id, now, events)
            self.failed(status, phrase)
            return
        offer = with_direction(remaining.sdp, "sendrecv")
        try:
            media = owner.relay.open_session(call_id, audio(offer),
                                             source=remaining.destination.host)
        except Exception as error:  # the relay says why: no ports, or it is down
            row_id = owner.history.refused(now, call_id, record, 503, "FAILED",
                                           f"media relay: {error}")
            owner.history.events(row_id, now, events)
            self.failed(503, "Service Unavailable")
            return
        rung = ",".join(dict.fromkeys(n for n, _ in bindings))
        record_id = owner.history.opened(now, call_id, record, rung, step.group)
        owner.history.events(record_id, now, events)
        ringing = Call(record_id, number, name, self.target, None, media, offer, now)
        ringing.caller = Waiting(self, ringing, self.request)
        ringing.caller.direction = remaining.direction
        self.ringing = ringing
        owner.calls[record_id] = ringing
        log.info("Call %s -> %s: transfer of %s to %s by %s, ringing %d contact(s)",
                 self.call.caller_number, self.call.callee, number, self.target, self.by,
                 len(bindings))
        owner.executor.ring(ringing, step, bindings, first=True)

    def join(self, body: bytes) -> None:
        """The target answered (its 2xx ACKed, bridge.connect): the remaining party
        leaves the transferor for it."""
        ringing, remaining = self.ringing, self.remaining
        target_leg = ringing.callee_leg
        if target_leg is None or not body:
            # A feature step answered (no leg), or an answer without SDP, which
            # bridge.connect hangs up.
            self.failed(488 if target_leg is not None else 403, None)
            if target_leg is None:
                self.owner.stack.scheduler.call_later(0, self.owner.end, ringing, "FAILED",
                                                      "system", 403, "not a transfer target")
            return
        if self.call.phase is Phase.ENDED or remaining.state is LegState.ENDED:
            self.failed(487, "Request Terminated")
            self.owner.stack.scheduler.call_later(0, self.owner.hangup, ringing,
                                                  "the party to transfer hung up")
            return
        # From here on the transfer stays on the call only for its transferor's leg
        # (transferor_left), until that is gone too.
        self.joined = True
        number, name = identity(target_leg)
        ringing.caller = remaining
        self.detach(remaining, ringing, "A", target_leg)
        target_leg.other = remaining
        if self.transferor.other is remaining:
            self.transferor.other = None
        self.owner.count(ringing, identity(remaining)[0])
        self.record(ringing, "")
        answer = target_leg.sdp
        log.info("Call %s -> %s: transferred by %s to %s", ringing.caller_number,
                 self.target, self.by, target_leg.contact)
        owner = self.owner
        self.reoffer(ringing, remaining, answer, number, name,
                     lambda answer: _reoffered(owner, ringing, remaining, answer),
                     lambda status, reason: _refused(owner, ringing, status, reason))
        self.notify(200)

    def record(self, new_call: Call, detail_new: str) -> None:
        # The new call's event was written when it began ringing.
        now = self.owner.clock()
        self.owner.history.events(self.call.record_id, now, [
            Event("transferred", by=self.by, target=self.target, detail=self.kind)])

    def call_ended(self, call: Call) -> None:
        if call is self.call and not self.joined and not self.over:
            # The call being transferred ended (the remaining party hung up, an
            # admin, a timeout): the attempt goes too.
            self.over = True
            ringing = self.ringing
            self.notify(487, "Request Terminated")
            self.release()
            if ringing is not None and ringing.phase is not Phase.ENDED:
                self.owner.hangup(ringing, "the call being transferred ended")
            self.forget()


def _reoffered(owner, call: Call, leg, answer) -> None:
    """The phone answered our re-INVITE: the relay learns where it wants its audio."""
    if call.phase is Phase.ENDED:
        return
    stream = owner.media.apply(call, leg, answer)
    if stream is not None:
        owner.bridge.declared(call, leg, stream)


def _refused(owner, call: Call, status: int, reason: str | None) -> None:
    """The remaining party refused the media of its new call: it cannot hear the
    target, so the call is over."""
    if call.phase is Phase.ENDED:
        return
    log.warning("Call %s -> %s: the transferred party refused the new media (%d %s); "
                "hanging up", call.caller_number, call.callee, status, reason or "")
    owner.hangup(call, f"transferred party refused the new media ({status})")


# -- attended ----------------------------------------------------------------------------


class AttendedTransfer(Transfer):
    kind = "attended"

    def __init__(self, *args):
        super().__init__(*args)
        self.replaced = None  # the transferor's leg in the other call (the Replaces')
        self.target_leg = None  # the party it talks to there
        self.other_call: Call | None = None
        self.joined_call: Call | None = None
        self.media = None

    @property
    def transferor_legs(self) -> tuple:
        return (self.transferor,) if self.replaced is None else (self.transferor,
                                                                 self.replaced)

    @property
    def calls(self) -> tuple:
        return (self.call,) if self.other_call is None else (self.call, self.other_call)

    @property
    def sides(self) -> list:
        sides = [(self.transferor, self.call)]
        if self.replaced is not None:
            sides.append((self.replaced, self.other_call))
        return sides

    def forget(self) -> None:
        super().forget()
        self.replaced = self.target_leg = self.other_call = self.joined_call = None

    def start(self, replaced) -> None:
        owner = self.owner
        self.replaced = replaced
        self.other_call = replaced.call
        self.other_call.transfer = self
        self.target_leg = target_leg = replaced.other
        self.target = identity(target_leg)[0]
        remaining = self.remaining
        offer = with_direction(remaining.sdp, "sendrecv")
        try:
            self.media = owner.relay.open_session(remaining.dialog.call_id, audio(offer),
                                                  source=remaining.destination.host)
        except Exception as error:  # the relay says why: no ports, or it is down
            log.warning("Call %s -> %s: attended transfer: media relay: %s",
                        self.call.caller_number, self.call.callee, error)
            self.failed(503, "Service Unavailable")
            return
        # A call of its own for the pair from now: the target first, on the relay's
        # side B, offered the remaining party's description and told who it is.
        now = owner.clock()
        number, name = identity(remaining)
        joined = Call(0, number, name, self.target, remaining, self.media, offer, now)
        self.joined_call = joined
        log.info("Call %s -> %s: attended transfer by %s: %s to %s", self.call.caller_number,
                 self.call.callee, self.by, number, self.target)
        body = owner.media.sdp_for(joined, offer, "B")
        target_leg.us = number or target_leg.us
        target_leg.dialog.local_display = name or None
        extra = [("P-Asserted-Identity", asserted(number, name, owner.stack.realm))]
        Reoffer(owner, self.other_call, target_leg, body, extra, self.target_answered,
                self.target_refused).send()

    def target_answered(self, answer) -> None:
        """The target took the new session: the new call is made."""
        owner = self.owner
        if self.over or answer is None or self.call.phase is Phase.ENDED or (
                self.other_call.phase is Phase.ENDED):
            self.target_refused(488 if answer is None else 487, None)
            return
        joined, remaining, target_leg = self.joined_call, self.remaining, self.target_leg
        if remaining.state is LegState.ENDED or target_leg.state is LegState.ENDED:
            self.target_refused(487, "Request Terminated")
            return
        now = owner.clock()
        self.joined = True  # on both calls until the transferor's legs are gone
        record = dict(caller=joined.caller_number, caller_name=joined.caller_name,
                      caller_claimed="", callee=self.target,
                      caller_source=f"{remaining.destination}/{remaining.destination.transport}")
        joined.record_id = owner.history.opened(now, remaining.dialog.call_id, record)
        joined.phase = Phase.ANSWERED
        joined.answered_at = now
        joined.caller = remaining
        joined.callee_leg = target_leg
        self.detach(remaining, joined, "A", target_leg)
        self.detach(target_leg, joined, "B", remaining)
        for leg in self.transferor_legs:
            leg.other = None
        owner.calls[joined.record_id] = joined
        owner.count(joined, joined.caller_number)
        owner.count(joined, self.target)
        stream = owner.media.apply(joined, target_leg, answer)
        if stream is not None:
            owner.bridge.declared(joined, target_leg, stream)
        owner.history.answered(joined.record_id, now, getattr(target_leg, "contact", ""),
                               codec(answer), self.target)
        self.record(joined, "attended from calls "
                            f"{self.call.record_id} and {self.other_call.record_id}")
        joined.max_timer = owner.stack.scheduler.call_later(
            owner.max_duration, owner.hangup, joined, "maximum call duration reached")
        number, name = self.target, identity(target_leg)[1]
        self.reoffer(joined, remaining, answer, number, name,
                     lambda answer: _reoffered(owner, joined, remaining, answer),
                     lambda status, reason: _refused(owner, joined, status, reason))
        self.notify(200)

    def target_refused(self, status: int, reason: str | None) -> None:
        """The target did not take the new session: both calls stay as they were."""
        if self.media is not None:
            try:
                self.owner.relay.close_session(self.media, wait=False)
            except Exception as error:
                log.warning("Media relay did not release a transfer's session: %s", error)
            self.media = None
        self.failed(status, reason)

    def call_ended(self, call: Call) -> None:
        if not self.joined and not self.over:
            # One of the two calls ended before the target took the new session:
            # what it answers is dropped (target_answered sees it is over).
            self.notify(487, "Request Terminated")
            self.release()
            self.forget()
