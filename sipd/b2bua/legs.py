"""The legs of a call: the caller's (we are its UAS) and one per branch we ring
(we are their UAC), each with its own dialog, signalling peer, state, the
direction its phone last declared for its audio, and the 2xx we retransmit to
it until its ACK (RFC 3261 §13.3.1.4).

A leg's `other` is the leg it is bridged to once the call is answered: the
caller's is the callee leg that answered, and that one's is the caller's.
`name` is the relay's name for its side of the media session ("A": the caller,
"B": the callee, every branch alike).
"""

from __future__ import annotations

import logging
from enum import Enum

from sipd.b2bua import prack
from sipd.registrar import Destination, Source
from sipd.sip.dialog import Dialog
from sipd.sip.headers import CSeq, NameAddr
from sipd.sip.message import Request, Response
from sipd.sip.reliable import reliable
from sipd.sip.transaction import T1, T2, ClientTransaction, ServerTransaction, State, build_cancel

log = logging.getLogger("sipd")

# Client INVITE transactions that have had their final response.
FINAL_STATES = (State.ACCEPTED, State.COMPLETED, State.TERMINATED)


class LegState(Enum):
    INVITING = "inviting"  # our INVITE sent, nothing back yet (callee legs)
    RINGING = "ringing"  # the INVITE not answered yet (a 1xx came, for a callee leg)
    ANSWERED = "answered"
    FAILED = "failed"  # a final non-2xx (or a timeout) for our INVITE
    ENDED = "ended"


class Pending2xx:
    """A 2xx to an INVITE that we retransmit until its ACK (§13.3.1.4)."""

    __slots__ = ("data", "cseq", "timer", "interval", "waited")

    def __init__(self, data: bytes, cseq: int):
        self.data = data
        self.cseq = cseq
        self.timer = None
        self.interval = T1
        self.waited = 0.0


class Leg:
    __slots__ = ("owner", "call", "name", "role", "us", "dialog", "destination", "state",
                 "direction", "other", "pending_2xx", "sdp", "awaiting_answer", "__weakref__")

    def __init__(self, owner, call, name: str, role: str, us: str, destination: Destination):
        self.owner = owner  # the B2BUA (sipd.b2bua.calls.Calls)
        self.call = call
        self.name = name  # the relay's leg: "A" or "B"
        self.role = role  # "caller" or "callee", for the logs and the history
        self.us = us  # the user of the Contact we give this leg's phone
        self.dialog: Dialog | None = None
        self.destination = destination  # where this leg's phone is: its signalling peer
        self.state = LegState.RINGING
        # What the phone last declared for its audio (what the relay was told,
        # RFC 3264 §6.1).
        self.direction = "sendrecv"
        self.other: Leg | None = None
        self.pending_2xx: Pending2xx | None = None
        # The description this leg's phone last sent (offer or answer): what a
        # transfer offers the party it is connected to next (transfer.py).
        self.sdp = None
        # The CSeq of this phone's INVITE that had no offer and got one of ours
        # in our 2xx (RFC 3264 §5, RFC 3261 §13.2.1): its answer comes in that ACK.
        self.awaiting_answer: int | None = None

    def from_phone(self, source: Source) -> bool:
        return from_peer(self.destination, source)

    def request(self, method: str, body: bytes = b"", extra=None,
                content_type: str | None = None, contact: bool = True) -> Request:
        """A request within this leg's dialog (§12.2.1.1)."""
        stack = self.owner.stack
        transport = self.destination.transport
        return self.current_dialog().request(
            method,
            stack.via(transport),
            stack.contact(self.us, transport) if contact else "",
            body=body,
            extra=extra or [],
            content_type=content_type,
        )

    def current_dialog(self) -> Dialog | None:
        """The dialog this leg's requests go in: the confirmed one (a callee leg
        still ringing: the early one, CalleeLeg)."""
        return self.dialog

    def bye(self) -> None:
        """End this leg's dialog from our side (its response is nobody's concern)."""
        if self.dialog is None or self.state is LegState.ENDED:
            return
        self.state = LegState.ENDED
        self.owner.stack.start(self.request("BYE", contact=False), self.destination, None)

    # -- our 2xx until its ACK (§13.3.1.4) -------------------------------------------------

    def retransmit_2xx(self, data: bytes, cseq: int) -> None:
        """Resend the 2xx from T1 doubling to T2 until the ACK, for 64*T1."""
        self.stop_2xx()
        if self.destination.reliable:
            return  # the transport is reliable: sent once is enough (§13.3.1.4)
        pending = Pending2xx(data, cseq)
        pending.timer = self.owner.stack.scheduler.call_later(T1, self._resend_2xx, pending)
        self.pending_2xx = pending

    def stop_2xx(self) -> None:
        pending, self.pending_2xx = self.pending_2xx, None
        if pending is not None and pending.timer is not None:
            pending.timer.cancel()

    def acked(self, cseq: int) -> bool:
        """The ACK for our 2xx with this CSeq came: no more retransmissions."""
        pending = self.pending_2xx
        if pending is None or pending.cseq != cseq:
            return False
        self.stop_2xx()
        return True

    def _resend_2xx(self, pending: Pending2xx) -> None:
        if self.pending_2xx is not pending:
            return  # its ACK came (or a newer 2xx took over) as the timer fired
        pending.waited += pending.interval
        self.owner.stack.send(pending.data, self.destination)
        call = self.call
        if pending.waited >= 64 * T1:
            log.warning(
                "Call %s -> %s: no ACK for our 2xx; hanging up", call.caller_number, call.callee
            )
            self.pending_2xx = None
            self.owner.hangup(call, "no ACK received")
            return
        pending.interval = min(2 * pending.interval, T2)
        pending.timer = self.owner.stack.scheduler.call_later(
            pending.interval, self._resend_2xx, pending
        )


class CallerLeg(Leg):
    """The caller's INVITE ends here: we are its UAS."""

    __slots__ = ("invite", "txn", "provisionals", "early_from", "early_offer")

    def __init__(self, owner, call, us: str, destination: Destination, invite: Request,
                 txn: ServerTransaction, dialog: Dialog):
        super().__init__(owner, call, "A", "caller", us, destination)
        self.invite = invite
        self.txn = txn
        self.dialog = dialog
        # The caller takes reliable 1xx (RFC 3262): a prack.CallerProvisionals.
        self.provisionals = None
        # The branch whose early answer (its 183's SDP) the caller was sent:
        # what its early dialog's session is (early.py).
        self.early_from: CalleeLeg | None = None
        # A caller without an offer that wants 100rel (RFC 3262 §5): "sent", our
        # offer went in our first reliable 18x; "answered", its PRACK answered it.
        self.early_offer: str | None = None

    def respond(self, status: int, reason: str | None = None, headers=None, body: bytes = b"",
                tagged: bool = True) -> Response:
        """Answer the caller's INVITE (a 1xx, the 2xx, or the final refusal)."""
        call = self.call
        if call.trying is not None:
            call.trying.cancel()  # the caller hears from us: no 100 Trying needed
            call.trying = None
        if status >= 300:
            self.state = LegState.ENDED
        elif status >= 200:
            self.state = LegState.ANSWERED
        if 100 < status < 300 and tagged and self.invite is not None:
            # §12.1.1: a response that makes a dialog (early or confirmed) carries the
            # INVITE's Record-Route, so the caller's in-dialog requests go through the
            # proxies that asked (a provider's Kamailio) instead of around them.
            routes = self.invite.headers.get_all("Record-Route")
            if routes:
                headers = [*(headers or []), *(("Record-Route", value) for value in routes)]
        stack = self.owner.stack
        response = stack.build(self.invite, status, reason, headers, body,
                               to_tag=self.dialog.local_tag if tagged else None)
        provisionals = self.provisionals
        if provisionals is not None:
            # RFC 3262 §3: a reliable 1xx goes (or waits) there; a 2xx waits
            # there for the PRACKs (prack.py).
            if 100 < status < 200 and tagged and provisionals.provisional(response):
                return response
            if status >= 200 and provisionals.final(response):
                return response
        stack.respond(self.txn, response)
        return response

    def retransmit_2xx(self, data: bytes, cseq: int) -> None:
        if self.provisionals is not None and self.provisionals.holding(data, cseq):
            return  # held for a PRACK: retransmitted once it is sent (prack.py)
        super().retransmit_2xx(data, cseq)

    def cseq(self) -> int:
        return CSeq.parse(self.invite.headers.get("CSeq")).number


class CalleeLeg(Leg):
    """One of our INVITEs to one binding of an extension rung (a branch of a fork).

    Its client transaction's context: responses and the timeout come here
    (`on_response`, `on_timeout`) and go on to the fork it belongs to."""

    __slots__ = ("fork", "extension", "contact", "call_id", "tag", "invite", "transaction",
                 "final", "cancelled", "cancel_sent", "local_uri", "remote_uri",
                 "acknowledger", "early", "early_answers", "early_tag")

    def __init__(self, owner, call, fork, extension: str, contact: str,
                 destination: Destination, call_id: str, tag: str, local_uri: str,
                 remote_uri: str):
        super().__init__(owner, call, "B", "callee", call.caller_number, destination)
        self.state = LegState.INVITING
        self.fork = fork
        self.extension = extension  # the extension whose binding this is
        self.contact = contact  # the binding's Contact: our INVITE's Request-URI
        # Our INVITE's Call-ID and From tag: with the phone's tag, this leg's dialog (§12).
        self.call_id = call_id
        self.tag = tag
        self.invite: Request | None = None
        self.transaction: ClientTransaction | None = None
        self.final: int | None = None  # the final non-2xx status (408: timed out)
        self.cancelled = False  # we want it cancelled (CANCEL waits for a 1xx, §9.1)
        self.cancel_sent = False
        self.local_uri = local_uri  # our From, without tag
        self.remote_uri = remote_uri  # our To
        # RFC 3262 §4: the reliable 18x we PRACK (sipd.sip.reliable.Acknowledger)
        # and the early dialogs they made, by To tag (prack.py).
        self.acknowledger = None
        self.early: dict[str | None, Dialog] = {}
        # The early dialogs whose reliable 18x answered our offer (RFC 3311 §5.1:
        # an UPDATE with an offer may follow), To tag -> it allows UPDATE (§4).
        self.early_answers: dict[str | None, bool] = {}
        self.early_tag: str | None = None  # the last of them: where our UPDATE goes

    def current_dialog(self) -> Dialog | None:
        if self.dialog is not None:
            return self.dialog
        return self.early.get(self.early_tag)  # ringing: the early dialog (early.py)

    # -- what the client transaction delivers ----------------------------------------------

    def on_response(self, response: Response) -> None:
        if reliable(response) and not prack.acknowledge(self, response):
            return  # RFC 3262 §4: a retransmission, or out of order: no further
        self.fork.on_response(self, response)

    def on_timeout(self) -> None:
        self.fork.on_timeout(self)

    @property
    def pending(self) -> bool:
        """Still waiting for the final response to our INVITE."""
        return self.transaction is not None and self.transaction.state not in FINAL_STATES

    # -- what we send it -------------------------------------------------------------------

    def cancel(self) -> None:
        """§9.1: CANCEL our INVITE, once a provisional response has arrived."""
        if self.cancelled or self.final is not None or self.dialog is not None:
            return
        self.cancelled = True
        if self.transaction.got_provisional:
            self.send_cancel()

    def send_cancel(self) -> None:
        if self.cancel_sent:
            return
        self.cancel_sent = True
        self.owner.stack.start(build_cancel(self.invite), self.destination, None)

    def dialog_for(self, response: Response, contact_uri: str | None) -> Dialog:
        """The dialog a 2xx to our INVITE makes (§12.1.2): we are its UAC."""
        ours = NameAddr.parse(self.invite.headers.get("From"))
        remote_tag = NameAddr.parse(response.headers.get("To")).tag
        # An early dialog of this tag (a PRACK sent in it, RFC 3262 §4) goes on
        # with its CSeq: our next request must be numbered above the PRACK's.
        early = self.early.get(remote_tag)
        return Dialog(
            call_id=self.call_id,
            local_tag=self.tag,
            remote_tag=remote_tag,
            local_uri=self.local_uri,
            remote_uri=self.remote_uri,
            remote_target=contact_uri or self.contact,
            local_seq=early.local_seq if early is not None else 1,
            remote_seq=early.remote_seq if early is not None else None,  # its UPDATEs'
            route_set=list(reversed(response.headers.get_all("Record-Route"))),
            local_display=ours.display_name,
        )

    def ack(self, cseq: int) -> None:
        """The ACK for its 2xx (§13.2.2.4), a request of its own within the dialog."""
        stack = self.owner.stack
        transport = self.destination.transport
        ack = self.dialog.request(
            "ACK", stack.via(transport), stack.contact(self.us, transport), cseq=cseq
        )
        stack.send(bytes(ack), self.destination)

    def ack_and_bye(self, response: Response, contact_uri: str | None) -> None:
        """A 2xx we no longer want (another phone answered first, or it crossed our
        CANCEL): ACK it, then BYE it (§13.2.2.4, §15)."""
        stack = self.owner.stack
        dialog = self.dialog_for(response, contact_uri)
        transport = self.destination.transport
        stack.send(bytes(dialog.request("ACK", stack.via(transport), "", cseq=1)),
                   self.destination)
        stack.start(dialog.request("BYE", stack.via(transport), ""), self.destination, None)


def from_peer(peer: Destination, source: Source) -> bool:
    """Whether a request from `source` may come from the phone of a leg whose
    signalling peer is `peer` (where we send that leg's requests).

    TCP/TLS: the very connection (host and port) the leg uses, over the same
    transport. UDP: the same address, any port: a NAT may give the phone's
    requests a new port when its mapping expires during a long call, but keeps
    its address (RFC 4787 §4.1, REQ-2: "paired" address pooling), so checking
    the port would break calls for nothing, while the address alone already
    keeps out anyone who cannot send from the phone's address.
    """
    if source.transport != peer.transport:
        return False
    if peer.transport != "UDP":
        return source.host == peer.host and source.port == peer.port
    return source.host == peer.host
