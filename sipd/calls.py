"""Calls between extensions: a back-to-back user agent (RFC 3261 §12-§17).

The caller's INVITE ends here (we are its UAS, after a 407 digest challenge,
§22.3); for each registered contact of the callee we start our own INVITE (we
are their UAC), forking in parallel. The first 2xx wins: the other branches are
CANCELled (§9.1), the winner is ACKed, and the two dialogs are bridged. From
then on BYE, re-INVITE, UPDATE and INFO from either side are carried across,
each side keeping its own dialog, CSeq and transactions.

Media never flows phone to phone: both SDPs are rewritten to the relay
(sipd.media), which latches onto where packets really come from (RFC 4961
symmetric RTP), so phones behind NAT get two-way audio.

Every call is a row in the `call` table from its first authenticated INVITE to
its end; nothing about a call lives only here once it has ended. The row's id
names the call (live calls page, hang-up): a Call-ID alone does not, since two
INVITEs with one Call-ID and different From tags are two calls (§12).

A request within a call belongs to a leg by its dialog (§12.2.2: Call-ID, our
tag in To, the phone's in From), found with one dict lookup, and only if it
comes from that leg's phone (`from_peer`); anything else gets 481. Limits: a
call counts against its caller's and its callee's extension (`max_calls`), and
a call held both ways ends after `hold_timeout` seconds.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from enum import Enum

import gevent

from sipd import store
from sipd.history import History
from sipd.registrar import Destination, Registrar, Source, clean_text
from sipd.sip.dialog import Dialog, new_branch, new_call_id, new_tag, tag_param
from sipd.sip.headers import CSeq, NameAddr, Via
from sipd.sip.message import Headers, ParseError, Request, Response
from sipd.sip.responses import make_response
from sipd.sip.sdp import SdpError, SessionDescription, rewrite
from sipd.sip.transaction import (
    T1,
    T2,
    ClientTransaction,
    ClientTransactions,
    Event,
    ServerTransaction,
    State,
    build_cancel,
)

log = logging.getLogger("sipd")

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, REGISTER"
# RFC 3261 §17.2.1: a 100 Trying within 200 ms unless the TU answers first.
TRYING_AFTER = 0.2
# Client INVITE transactions that have had their final response.
_FINAL_STATES = (State.ACCEPTED, State.COMPLETED, State.TERMINATED)
SERVER = "pbx-sipd"


class Phase(Enum):
    RINGING = "ringing"
    ANSWERED = "answered"
    ENDED = "ended"


@dataclass
class Branch:
    """One of our INVITEs to one contact of the callee (a fork)."""

    call: Call
    contact: str
    destination: Destination
    request: Request
    transaction: ClientTransaction
    final: int | None = None
    to_tag: str | None = None
    cancelled: bool = False  # we want it cancelled (CANCEL waits for a 1xx, §9.1)
    cancel_sent: bool = False


@dataclass
class Relayed:
    """A request one phone sent that we passed on to the other (re-INVITE, UPDATE, INFO)."""

    call: Call
    origin: str  # "A" or "B": who sent it
    txn: ServerTransaction  # where the answer goes back
    request: Request


class Timer:
    """Run function(*args) in a greenlet of its own after `seconds`, unless killed.

    A timer watcher on gevent's loop, not a greenlet waiting: a call sets three
    of these (ring timeout, maximum duration, its 2xx's retransmissions) and
    nearly all are killed unfired, and a greenlet per timer, each with its own
    frame stack mapped and unmapped, was a measurable part of a call's cost. The
    function gets a greenlet when it fires, since it may wait (on the relay)."""

    __slots__ = ("_watcher",)

    def __init__(self, seconds: float, function, *args):
        self._watcher = gevent.get_hub().loop.timer(seconds)
        self._watcher.start(gevent.spawn, function, *args)

    def kill(self, block: bool = False) -> None:
        self._watcher.close()


@dataclass
class Pending2xx:
    """A 2xx to an INVITE that we retransmit until its ACK (§13.3.1.4)."""

    data: bytes
    destination: Destination
    cseq: int
    timer: Timer | None = None
    interval: float = T1
    waited: float = 0.0


@dataclass
class Call:
    a_call_id: str
    record_id: int
    caller: str
    callee: str
    a_request: Request
    a_txn: ServerTransaction
    a_dest: Destination
    a_dialog: Dialog
    media: object
    started: float
    phase: Phase = Phase.RINGING
    branches: list[Branch] = field(default_factory=list)
    winner: Branch | None = None
    b_dialog: Dialog | None = None
    b_dest: Destination | None = None
    pending_2xx: dict[str, Pending2xx] = field(default_factory=dict)  # by leg
    relayed: dict = field(default_factory=dict)  # our client txn key -> (origin leg, txn)
    timers: list = field(default_factory=list)
    answered_at: float | None = None
    trying: Timer | None = None  # the 100 Trying not sent yet (Calls._trying)
    parties: tuple[str, ...] = ()  # the extensions whose call limit it counts against
    # The direction each leg's phone last declared for its audio (what the relay
    # was told, RFC 3264 §6.1), and since when neither direction may carry RTP.
    directions: dict[str, str] = field(default_factory=lambda: dict(A="sendrecv", B="sendrecv"))
    held_since: float | None = None


class Calls:
    """The B2BUA. `send(data, Destination)` is the transport's; `respond` is the handler's."""

    def __init__(
        self,
        registrar: Registrar,
        relay,
        send,
        respond,
        local_host: str,
        local_port: int,
        realm: str,
        ring_timeout: float = 30,
        max_duration: float = 4 * 3600,
        media_timeout: float = 60,
        max_calls: int = 500,
        clock=time.time,
        history: History | None = None,
        hold_timeout: float = 3600,
    ):
        self.registrar = registrar
        self.relay = relay
        self.send = send
        self.respond = respond
        self.local_host = local_host
        self.local_port = local_port
        self.realm = realm
        self.ring_timeout = ring_timeout
        self.max_duration = max_duration
        self.media_timeout = media_timeout
        self.max_calls = max_calls
        self.hold_timeout = hold_timeout  # 0: calls held both ways never end for it
        self.clock = clock
        self.history = history or History()
        self.client = ClientTransactions()
        # (Call-ID, our tag) -> (call, leg): a leg's dialog as §12.2.2 finds it
        # (the phone's tag is checked on the dialog itself). One per fork.
        self.dialogs: dict[tuple[str, str | None], tuple[Call, str]] = {}
        self.calls: dict[int, Call] = {}  # by row id
        self.per_extension: dict[str, int] = {}  # live calls each extension is in
        self.held: dict[int, Call] = {}  # calls held both ways, by row id
        # Ended calls' media sessions -> their rows, until Relay.check() reports
        # the sessions (each once, whatever became of the relay meanwhile).
        self._closed_media: dict[object, int] = {}

    # -- helpers -------------------------------------------------------------------

    def via(self, transport: str) -> str:
        return (
            f"SIP/2.0/{transport} {self.local_host}:{self.local_port};branch={new_branch()};rport"
        )

    def contact(self, user: str, transport: str) -> str:
        suffix = "" if transport == "UDP" else f";transport={transport.lower()}"
        return f"<sip:{user}@{self.local_host}:{self.local_port}{suffix}>"

    def _start(self, request: Request, destination: Destination, context) -> ClientTransaction:
        transaction = self.client.start(
            request, destination.reliable, self.clock(), destination=destination, context=context
        )
        self.send(transaction.data, destination)
        return transaction

    def _reply(
        self,
        txn: ServerTransaction,
        request: Request,
        status: int,
        reason: str | None = None,
        headers=None,
        body: bytes = b"",
        to_tag: str | None = None,
    ) -> Response:
        call = txn.context
        if isinstance(call, Call) and call.trying is not None:
            call.trying.kill()  # the caller hears from us: no 100 Trying needed
            call.trying = None
        extra = list(headers or [])
        if body:
            extra.append(("Content-Type", "application/sdp"))
        response = make_response(request, status, reason, extra, body=body, to_tag=to_tag)
        response.headers.add("Server", SERVER)
        self.respond(txn, response)
        return response

    # -- a new call ---------------------------------------------------------------------

    def invite(self, request: Request, via: Via, source: Source, txn: ServerTransaction) -> None:
        now = self.clock()
        user_agent = clean_text(request.headers.get("User-Agent"))
        try:
            caller_addr = NameAddr.parse(request.headers.get("From"))
            target = NameAddr.parse(f"<{request.uri}>").uri
        except ParseError as error:
            self._reply(txn, request, 400, f"Bad Request: {error}")
            return
        caller_number = caller_addr.uri.user or ""
        # §22.3: a call is authenticated by the PBX acting as a proxy: 407.
        result = self.registrar.authenticate(
            request, caller_number, source, user_agent, now, proxy=True
        )
        if isinstance(result, Response):
            result.headers.add("Server", SERVER)
            self.respond(txn, result)
            return
        caller = result
        callee_number = target.user or ""
        a_dest = Destination(source.host, source.port, source.transport)
        parties = store.call_parties(caller.number, callee_number)
        # The callee is shown who really calls: the number the caller
        # authenticated as and the name the panel gives it, never the display
        # name its phone put in From (which is kept, as claimed, in the history).
        caller_party = parties.get(caller.number)
        caller_name = caller_party.name if caller_party is not None else ""
        record = dict(
            caller=caller.number,
            caller_name=caller_name,
            caller_claimed=clean_text(caller_addr.display_name or "", 100),
            callee=callee_number,
            caller_source=f"{source}/{source.transport}",
        )

        def refuse(status: int, reason: str, disposition: str, headers=None, phrase=None):
            self._reply(txn, request, status, phrase, headers)
            self.history.refused(
                now, request.headers.get("Call-ID"), record, status, disposition, reason
            )
            log.info("Call %s -> %s refused: %d %s", caller.number, callee_number, status, reason)

        if request.headers.get("Max-Forwards", "70").strip() == "0":
            return refuse(483, "too many hops", "FAILED")
        if len(self.calls) >= self.max_calls:
            return refuse(503, "too many calls", "FAILED", [("Retry-After", "10")])
        if caller_party is not None and self._at_limit(caller_party):
            # 403, not 486: it is the caller that may not make another call.
            return refuse(
                403,
                f"caller {caller.number} is in {caller_party.max_calls} calls, its limit",
                "FAILED",
                phrase=f"Forbidden: call limit of {caller.number} reached",
            )
        callee = parties.get(callee_number) if callee_number else None
        if callee is None:
            return refuse(404, "no such number", "FAILED")
        if not callee.enabled:
            return refuse(
                403, "callee extension disabled", "FAILED", phrase="Forbidden: extension disabled"
            )
        if self._at_limit(callee):
            # What the callee's phone would answer with all its lines in use.
            return refuse(
                486,
                f"callee {callee_number} is in {callee.max_calls} calls, its limit",
                "BUSY",
                phrase="Busy Here: call limit reached",
            )
        registered = store.live_bindings(callee.id, now)
        # Contacts that did not answer the qualifier's OPTIONS are not rung (sipd/qualifier.py).
        bindings = [b for b in registered if not b.unreachable]
        if not bindings:
            reason = "callee's phones do not answer" if registered else "callee not registered"
            return refuse(480, reason, "FAILED")
        offer = None
        if request.body:
            try:
                offer = SessionDescription.parse(request.body)
            except SdpError as error:
                return refuse(
                    488, f"unreadable SDP offer: {error}", "FAILED", phrase="Not Acceptable Here"
                )
        else:
            return refuse(
                488,
                "INVITE without an SDP offer is not supported",
                "FAILED",
                phrase="Not Acceptable Here",
            )
        try:
            # Leg A is set from the caller's offer in the same round trip.
            media = self.relay.open_session(
                request.headers.get("Call-ID"), _audio(offer), source=source.host
            )
        except Exception as error:  # the relay says why: no ports, or it is down
            return refuse(503, f"media relay: {error}", "FAILED", [("Retry-After", "5")])

        a_tag = new_tag()
        a_dialog = Dialog(
            call_id=request.headers.get("Call-ID"),
            local_tag=a_tag,
            remote_tag=caller_addr.tag,
            local_uri=request.headers.get("To"),
            remote_uri=f"<{caller_addr.uri}>",
            remote_target=self._contact_uri(request) or str(caller_addr.uri),
            local_seq=0,
            remote_seq=CSeq.parse(request.headers.get("CSeq")).number,
            route_set=request.headers.get_all("Record-Route"),
            remote_display=caller_addr.display_name,
        )
        a_dialog.local_uri = _strip_tag(request.headers.get("To"))
        record_id = self.history.opened(now, a_dialog.call_id, record)
        call = Call(
            a_call_id=a_dialog.call_id,
            record_id=record_id,
            caller=caller.number,
            callee=callee_number,
            a_request=request,
            a_txn=txn,
            a_dest=a_dest,
            a_dialog=a_dialog,
            media=media,
            started=now,
            parties=tuple({caller.number, callee_number}),
        )
        stream = _audio(offer)
        if stream is not None:
            call.directions["A"] = _direction(stream)
        txn.context = call
        self.calls[record_id] = call
        self.dialogs[(call.a_call_id, a_tag)] = (call, "A")
        for number in call.parties:
            self.per_extension[number] = self.per_extension.get(number, 0) + 1
        # §17.2.1: 100 Trying only if nothing else is sent within 200 ms; a
        # phone that rings at once (180) has quenched the caller's retransmissions
        # already, and most calls then cost one message less.
        call.trying = Timer(TRYING_AFTER, self._trying, call)
        log.info(
            "Call %s -> %s from %s, ringing %d contact(s)",
            caller.number,
            callee_number,
            source,
            len(bindings),
        )
        for binding in bindings:
            self._fork(call, binding, caller_name, offer, request)
        call.timers.append(Timer(self.ring_timeout, self._ring_timeout, call))

    def _at_limit(self, party: store.Party) -> bool:
        """Whether an extension is in as many calls as it may be, counting every
        live call (ringing or answered) it is the caller or the callee of, once
        per call (sipd's own count: no database read)."""
        return self.per_extension.get(party.number, 0) >= party.max_calls

    def _trying(self, call: Call) -> None:
        if call.trying is not None and call.phase is Phase.RINGING:
            call.trying = None
            self._reply(call.a_txn, call.a_request, 100, to_tag=None)

    def _contact_uri(self, message) -> str | None:
        value = message.headers.get("Contact")
        if not value:
            return None
        try:
            return str(NameAddr.parse(value).uri)
        except ParseError:
            return None

    def _fork(self, call: Call, binding, caller_name: str, offer, a_request: Request) -> None:
        destination = Destination(binding.source_host, binding.source_port, binding.transport)
        body = self._sdp_for(call, offer, "B")
        our_tag = new_tag()
        call_id = new_call_id(self.local_host)
        headers = [
            ("Via", self.via(destination.transport)),
            (
                "Max-Forwards",
                str(max(1, int(a_request.headers.get("Max-Forwards", "70").strip() or 70) - 1)),
            ),
            (
                "From",
                str(
                    NameAddr(
                        uri=NameAddr.parse(f"<sip:{call.caller}@{self.realm}>").uri,
                        display_name=caller_name or None,
                        params={"tag": our_tag},
                    )
                ),
            ),
            ("To", f"<sip:{call.callee}@{self.realm}>"),
            ("Call-ID", call_id),
            ("CSeq", "1 INVITE"),
            ("Contact", self.contact(call.caller, destination.transport)),
            ("Allow", ALLOW),
            ("User-Agent", SERVER),
            ("Content-Type", "application/sdp"),
        ]
        request = _request("INVITE", binding.contact, headers, body)
        branch = Branch(
            call=call,
            contact=binding.contact,
            destination=destination,
            request=request,
            transaction=None,
        )  # type: ignore[arg-type]
        branch.transaction = self._start(request, destination, branch)
        call.branches.append(branch)
        self.dialogs[(call_id, our_tag)] = (call, "B")

    # -- responses from the callee's phones (and to what we relayed) ----------------------

    def response(self, response: Response, source: Source) -> None:
        transaction = self.client.match(response)
        if transaction is None:
            log.debug("[SIP] Response %d from %s matches no transaction", response.status, source)
            return
        event, to_send = self.client.receive(transaction, response, self.clock())
        if to_send:
            self.send(to_send, transaction.destination)
        if event is not Event.DELIVER:
            return
        context = transaction.context
        if isinstance(context, Branch):
            self._branch_response(context, response)
        elif isinstance(context, Relayed):
            self._relayed_response(context, transaction, response)

    def _branch_response(self, branch: Branch, response: Response) -> None:
        call = branch.call
        status = response.status
        to = NameAddr.parse(response.headers.get("To"))
        branch.to_tag = to.tag or branch.to_tag
        if status < 200:
            if branch.cancelled and branch.transaction.got_provisional:
                self._send_cancel(branch)
                return
            if status > 100 and call.phase is Phase.RINGING:
                self._ringing(call, branch, response)
            return
        if status < 300:
            self._answered(call, branch, response)
            return
        branch.final = status
        if call.phase is Phase.RINGING and all(b.final for b in call.branches):
            self._all_failed(call)

    def _ringing(self, call: Call, branch: Branch, response: Response) -> None:
        body = b""
        if response.body and response.status == 183:
            # Early media (ringback from the phone): the relay carries it too.
            try:
                answer = SessionDescription.parse(response.body)
                self._set_media("B", call, answer, branch)
                body = self._sdp_for(call, answer, "A")
            except SdpError:
                body = b""
        status = 183 if body else 180
        self._reply(
            call.a_txn,
            call.a_request,
            status,
            None,
            [("Contact", self.contact(call.callee, call.a_dest.transport))],
            body,
            to_tag=call.a_dialog.local_tag,
        )

    def _answered(self, call: Call, branch: Branch, response: Response) -> None:
        if call.winner is not None or call.phase is not Phase.RINGING:
            if call.winner is branch and call.b_dialog is not None:
                # A retransmitted 2xx: our ACK was lost, send it again (§13.2.2.4).
                self._ack_b(call, CSeq.parse(response.headers.get("CSeq")).number)
            else:
                # A second phone answered too late: ACK then BYE it (§13.2.2.4).
                self._ack_and_bye(branch, response)
            return
        call.winner = branch
        call.phase = Phase.ANSWERED
        call.answered_at = self.clock()
        call.b_dialog = self._branch_dialog(branch, response)
        call.b_dest = branch.destination
        self._ack_b(call, 1)
        for other in call.branches:
            if other is not branch and other.final is None:
                self._cancel_branch(other)
        answer = None
        if response.body:
            try:
                answer = SessionDescription.parse(response.body)
            except SdpError:
                answer = None
        if answer is None:
            log.warning(
                "Call %s -> %s: answer without usable SDP; hanging up", call.caller, call.callee
            )
        self._set_media("B", call, answer, None)
        body = self._sdp_for(call, answer, "A") if answer else b""
        ok = self._reply(
            call.a_txn,
            call.a_request,
            200,
            "OK",
            [("Contact", self.contact(call.callee, call.a_dest.transport)), ("Allow", ALLOW)],
            body,
            to_tag=call.a_dialog.local_tag,
        )
        self._retransmit_2xx(
            call, "A", bytes(ok), call.a_dest, CSeq.parse(call.a_request.headers.get("CSeq")).number
        )
        self.history.answered(
            call.record_id,
            call.answered_at,
            branch.contact,
            _codec(answer) if answer else "",
        )
        log.info("Call %s -> %s answered by %s", call.caller, call.callee, branch.contact)
        for timer in call.timers:
            timer.kill(block=False)
        call.timers = [Timer(self.max_duration, self.hangup, call, "maximum call duration reached")]
        if answer is None:
            self.hangup(call, "callee answered without SDP")

    def _ack_b(self, call: Call, cseq: int) -> None:
        ack = call.b_dialog.request(
            "ACK",
            self.via(call.b_dest.transport),
            self.contact(call.caller, call.b_dest.transport),
            cseq=cseq,
        )
        self.send(bytes(ack), call.b_dest)

    def _branch_dialog(self, branch: Branch, response: Response) -> Dialog:
        """The dialog a 2xx to one of our INVITEs makes (§12.1.2): we are its UAC."""
        ours = NameAddr.parse(branch.request.headers.get("From"))
        return Dialog(
            call_id=branch.request.headers.get("Call-ID"),
            local_tag=ours.tag,
            remote_tag=NameAddr.parse(response.headers.get("To")).tag,
            local_uri=f"<sip:{branch.call.caller}@{self.realm}>",
            remote_uri=f"<sip:{branch.call.callee}@{self.realm}>",
            remote_target=self._contact_uri(response) or branch.contact,
            local_seq=1,
            route_set=list(reversed(response.headers.get_all("Record-Route"))),
            local_display=ours.display_name,
        )

    def _ack_and_bye(self, branch: Branch, response: Response) -> None:
        dialog = self._branch_dialog(branch, response)
        transport = branch.destination.transport
        self.send(bytes(dialog.request("ACK", self.via(transport), "", cseq=1)), branch.destination)
        bye = dialog.request("BYE", self.via(transport), "")
        self._start(bye, branch.destination, None)

    def _cancel_branch(self, branch: Branch) -> None:
        if branch.cancelled or branch.final is not None:
            return
        branch.cancelled = True
        # §9.1: CANCEL only once a provisional response has arrived.
        if branch.transaction.got_provisional:
            self._send_cancel(branch)

    def _send_cancel(self, branch: Branch) -> None:
        if branch.cancel_sent:
            return
        branch.cancel_sent = True
        self._start(build_cancel(branch.request), branch.destination, None)

    def _all_failed(self, call: Call) -> None:
        statuses = [b.final for b in call.branches]
        busy = [s for s in statuses if s in (486, 600, 603)]
        if busy:
            status, disposition, reason = busy[0], "BUSY", "callee busy"
        elif all(s in (408, 480, 487) for s in statuses):
            status, disposition, reason = 480, "NO ANSWER", "callee did not answer"
        else:
            status = (
                min(s for s in statuses if s not in (401, 407))
                if any(s not in (401, 407) for s in statuses)
                else 480
            )
            if status in (401, 407, 503):
                status = 480  # §16.7: never pass on a challenge or 503 meant for us
            disposition, reason = "FAILED", f"callee answered {min(statuses)}"
        self._reply(call.a_txn, call.a_request, status, to_tag=call.a_dialog.local_tag)
        self._end(call, disposition, "callee", status, reason)

    def _ring_timeout(self, call: Call) -> None:
        if call.phase is not Phase.RINGING:
            return
        self._give_up_ringing(call, f"no answer within {self.ring_timeout:g} s")

    def _give_up_ringing(self, call: Call, reason: str) -> None:
        """CANCEL every branch and tell the caller 480: no answer (ring timeout, admin)."""
        for branch in call.branches:
            self._cancel_branch(branch)
        self._reply(
            call.a_txn,
            call.a_request,
            480,
            "Temporarily Unavailable",
            to_tag=call.a_dialog.local_tag,
        )
        self._end(call, "NO ANSWER", "system", 480, reason)

    # -- requests within a call -----------------------------------------------------------

    def find(self, request: Request) -> tuple[Call, str, Dialog] | None:
        """The call and leg whose dialog `request` is in (§12.2.2): its Call-ID,
        our tag in its To and the phone's tag in its From must all match. A
        leg still ringing has no dialog yet (None: 481)."""
        call_id = request.headers.get("Call-ID")
        to_tag = tag_param(request.headers.get("To"))
        found = self.dialogs.get((call_id, to_tag))
        if found is None:
            return None
        call, leg = found
        dialog = call.a_dialog if leg == "A" else call.b_dialog
        if dialog is None or not dialog.matches(
            call_id, to_tag, tag_param(request.headers.get("From"))
        ):
            return None
        return call, leg, dialog

    def _from_leg(self, call: Call, leg: str, request: Request, source: Source) -> bool:
        """Whether `request` comes from the phone of `leg`; logs why not."""
        peer = call.a_dest if leg == "A" else call.b_dest
        if peer is None or from_peer(peer, source):
            return True
        log.warning(
            "[SIP] %s for call %s -> %s from %s/%s refused (481): not from the %s's %s %s/%s",
            request.method,
            call.caller,
            call.callee,
            source,
            source.transport,
            "caller" if leg == "A" else "callee",
            "connection" if peer.reliable else "address",
            peer.host if not peer.reliable else f"{peer.host}:{peer.port}",
            peer.transport,
        )
        return False

    def cancel(
        self, request: Request, txn: ServerTransaction, invite_txn, source: Source | None = None
    ) -> bool:
        """CANCEL from the caller (§9.2): 200 to the CANCEL, 487 to the INVITE.
        It matches the INVITE's transaction (branch and sent-by, §17.2.3) and
        must come from where the INVITE came from: False (after a 481) when it
        does not, so that the handler drops the transaction it made, which
        would otherwise absorb the caller's own CANCEL (the same branch)."""
        call = invite_txn.context if invite_txn is not None else None
        if (
            isinstance(call, Call)
            and source is not None
            and not self._from_leg(call, "A", request, source)
        ):
            self._reply(txn, request, 481)
            return False
        if invite_txn is None:
            self._reply(txn, request, 481)
            return True
        self._reply(txn, request, 200)
        # call: None once the call has ended (_end)
        if not isinstance(call, Call) or call.phase is not Phase.RINGING:
            return True
        for branch in call.branches:
            self._cancel_branch(branch)
        self._reply(call.a_txn, call.a_request, 487, to_tag=call.a_dialog.local_tag)
        self._end(call, "CANCELLED", "caller", 487, "caller hung up before answer")
        return True

    def ack(self, request: Request, source: Source | None = None) -> None:
        """The ACK for a 2xx (§13.2.2.4): a request within the dialog (no answer)."""
        found = self.find(request)
        if found is None:
            return
        call, leg, _ = found
        if source is not None and not self._from_leg(call, leg, request, source):
            return
        cseq = CSeq.parse(request.headers.get("CSeq")).number
        pending = call.pending_2xx.get(leg)
        if pending is not None and pending.cseq == cseq:
            pending.timer.kill()
            del call.pending_2xx[leg]

    def in_dialog(self, request: Request, source: Source, txn: ServerTransaction) -> None:
        found = self.find(request)
        method = request.method
        if found is None:
            log.info("[SIP] %s from %s matches no dialog (481)", method, source)
            self._reply(txn, request, 481)
            return
        call, leg, dialog = found
        # The phone's own address (connection) before anything else: a stranger
        # must not even move the dialog's CSeq.
        if call.phase is Phase.ENDED or not self._from_leg(call, leg, request, source):
            self._reply(txn, request, 481)
            return
        cseq = CSeq.parse(request.headers.get("CSeq")).number
        if not dialog.accept_remote_cseq(cseq, method):
            self._reply(
                txn,
                request,
                500,
                "Server Internal Error: CSeq out of order",
                [("Retry-After", "1")],
            )
            return
        if method == "BYE":
            self._reply(txn, request, 200)
            self._bye_other(call, leg)
            answered = call.phase is Phase.ANSWERED
            self._end(
                call,
                "ANSWERED" if answered else "CANCELLED",
                "caller" if leg == "A" else "callee",
                None,
                f"{'caller' if leg == 'A' else 'callee'} hung up",
            )
            return
        if method == "OPTIONS":
            self._reply(txn, request, 200, None, [("Allow", ALLOW)])
            return
        if call.phase is not Phase.ANSWERED:
            self._reply(
                txn,
                request,
                405 if method not in ("INVITE", "UPDATE", "INFO") else 491,
                None,
                [("Allow", ALLOW)],
            )
            return
        if method in ("INVITE", "UPDATE", "INFO"):
            self._relay_request(call, leg, request, txn, source)
            return
        self._reply(txn, request, 405, None, [("Allow", ALLOW)])

    def _relay_request(
        self, call: Call, leg: str, request: Request, txn: ServerTransaction, source: Source
    ) -> None:
        other = "B" if leg == "A" else "A"
        if method_is_offer(request) and any(
            pending.method in ("INVITE", "UPDATE") for _, pending in call.relayed.values()
        ):
            # §14.1: one offer at a time; the sender retries after a random wait.
            self._reply(txn, request, 491, "Request Pending")
            return
        body = request.body
        if request.body and request.method in ("INVITE", "UPDATE"):
            try:
                offer = SessionDescription.parse(request.body)
                self._set_media(leg, call, offer)
                body = self._sdp_for(call, offer, other)
            except SdpError as error:
                self._reply(txn, request, 488, f"Not Acceptable Here: {error}")
                return
        if request.method == "INVITE":
            self._reply(txn, request, 100)
        dialog = call.b_dialog if other == "B" else call.a_dialog
        dest = call.b_dest if other == "B" else call.a_dest
        extra = []
        if request.method == "INFO" and request.headers.get("Content-Type") and body:
            extra.append(("Content-Type", request.headers.get("Content-Type")))
        out = dialog.request(
            request.method,
            self.via(dest.transport),
            self.contact(call.caller if other == "B" else call.callee, dest.transport),
            body=body,
            extra=extra,
            content_type=request.headers.get("Content-Type"),
        )
        if request.method == "INFO" and body:
            out.headers.remove("Content-Type")
            out.headers.add("Content-Type", request.headers.get("Content-Type"))
        transaction = self._start(out, dest, Relayed(call, leg, txn, request))
        call.relayed[transaction.key] = (leg, transaction)
        log.info(
            "Call %s -> %s: %s from %s relayed",
            call.caller,
            call.callee,
            request.method,
            "caller" if leg == "A" else "callee",
        )

    def _relayed_response(
        self, relayed: Relayed, transaction: ClientTransaction, response: Response
    ) -> None:
        call, origin, origin_txn = relayed.call, relayed.origin, relayed.txn
        origin_request = relayed.request
        status = response.status
        if status < 200 and status != 100 and transaction.method == "INVITE":
            return  # 18x to a re-INVITE: nothing the other phone needs
        if status == 100:
            return
        call.relayed.pop(transaction.key, None)
        other = "B" if origin == "A" else "A"
        dest = call.b_dest if other == "B" else call.a_dest
        dialog = call.b_dialog if other == "B" else call.a_dialog
        if transaction.method == "INVITE" and 200 <= status < 300:
            # We ACK the phone's 2xx ourselves; the originator ACKs ours.
            self.send(
                bytes(
                    dialog.request(
                        "ACK",
                        self.via(dest.transport),
                        "",
                        cseq=CSeq.parse(response.headers.get("CSeq")).number,
                    )
                ),
                dest,
            )
        body = b""
        if response.body and 200 <= status < 300 and transaction.method in ("INVITE", "UPDATE"):
            try:
                answer = SessionDescription.parse(response.body)
                self._set_media(other, call, answer, None)
                body = self._sdp_for(call, answer, origin)
            except SdpError:
                body = b""
        origin_dest = call.a_dest if origin == "A" else call.b_dest
        headers = [
            (
                "Contact",
                self.contact(call.callee if origin == "A" else call.caller, origin_dest.transport),
            )
        ]
        out = self._reply(origin_txn, origin_request, status, response.reason, headers, body)
        if transaction.method == "INVITE" and 200 <= status < 300:
            self._retransmit_2xx(
                call,
                origin,
                bytes(out),
                origin_dest,
                CSeq.parse(origin_request.headers.get("CSeq")).number,
            )

    # -- ending ------------------------------------------------------------------------

    def _bye_other(self, call: Call, leg: str) -> None:
        other = "B" if leg == "A" else "A"
        dialog = call.b_dialog if other == "B" else call.a_dialog
        dest = call.b_dest if other == "B" else call.a_dest
        if dialog is None or dest is None:
            return
        bye = dialog.request("BYE", self.via(dest.transport), "")
        self._start(bye, dest, None)

    def hangup(self, call: Call, reason: str) -> None:
        """End a call from our side: BYE both legs, or CANCEL/480 while ringing."""
        if call.phase is Phase.ENDED:
            return
        if call.phase is Phase.RINGING:
            self._give_up_ringing(call, reason)
            return
        self._bye_other(call, "A")
        self._bye_other(call, "B")
        self._end(call, "ANSWERED", "system", None, reason)

    def _end(self, call: Call, disposition: str, by: str, status: int | None, reason: str) -> None:
        if call.phase is Phase.ENDED:
            return
        call.phase = Phase.ENDED
        now = self.clock()
        # The call's timers stop (one that fired runs in a greenlet of its own,
        # which this does not kill: it may be what is ending the call).
        for timer in call.timers + [p.timer for p in call.pending_2xx.values()] + [call.trying]:
            if timer is not None:
                timer.kill()
        call.trying = None
        try:
            # Not waited for: where the legs' media last came from is reported by
            # the next check_media() and written to the call's row then.
            self.relay.close_session(call.media, wait=False)
            self._closed_media[call.media] = call.record_id
        except Exception as error:  # the call ends whatever the relay says
            log.warning("Media relay did not release call %s: %s", call.a_call_id, error)
        self.history.ended(call.record_id, now, disposition, by, status, reason)
        self.calls.pop(call.record_id, None)
        self.held.pop(call.record_id, None)
        for number in call.parties:
            left = self.per_extension.get(number, 0) - 1
            if left > 0:
                self.per_extension[number] = left
            else:
                self.per_extension.pop(number, None)
        # Only this call's own dialogs (its A leg and one per fork) map to it.
        keys = [(call.a_call_id, call.a_dialog.local_tag)] + [
            (b.request.headers.get("Call-ID"), tag_param(b.request.headers.get("From")))
            for b in call.branches
        ]
        for key in keys:
            found = self.dialogs.get(key)
            if found is not None and found[0] is call:
                del self.dialogs[key]
        talk = f", talked {now - call.answered_at:.0f} s" if call.answered_at else ""
        log.info(
            "Call %s -> %s ended: %s, hung up by %s (%s)%s",
            call.caller,
            call.callee,
            disposition,
            by,
            reason,
            talk,
        )
        # The transactions outlive the call (RFC 6026's Accepted state, 32 s) and
        # need nothing more of it: unhooked, what the call built is freed now
        # rather than 32 s later (at 500 calls/s, 16,000 calls' objects alive
        # for the cyclic collector to walk). A branch still waiting for its final
        # response keeps its call: a 2xx crossing our CANCEL is ACKed and BYEd.
        call.a_txn.context = None
        for branch in call.branches:
            if branch.transaction.state in _FINAL_STATES:
                branch.transaction.context = None
        # And the call lets go of what points back at it (branches, timers,
        # relayed requests): freed by reference counting, not by the collector.
        call.branches = [b for b in call.branches if b.transaction.context is b]
        call.winner = None
        call.timers = []
        call.pending_2xx.clear()
        call.relayed.clear()

    # -- media and timers ------------------------------------------------------------------

    def _set_media(self, leg: str, call: Call, description, branch: Branch | None = None) -> None:
        """Tell the relay where this leg's phone wants its audio, in which direction,
        and the address its signalling uses (the caller's source; the callee's
        registered one, `branch`'s before the answer): the relay latches the leg
        only to packets from there or from the SDP's address (sipd/media/session.py)."""
        if description is None:
            return
        stream = _audio(description)
        if stream is None:
            return
        self._note_direction(call, leg, stream)
        peer = call.a_dest if leg == "A" else (branch.destination if branch else call.b_dest)
        try:
            self.relay.apply_stream(call.media, leg, stream, source=peer.host)
        except Exception as error:  # the relay restarted: the call has lost its media
            log.warning("Call %s -> %s: media relay: %s", call.caller, call.callee, error)

    def _note_direction(self, call: Call, leg: str, stream) -> None:
        """Keep what this leg's phone declared; a call whose two directions now
        both stand still (held both ways) starts its hold time (see tick)."""
        call.directions[leg] = _direction(stream)
        held = call.phase is Phase.ANSWERED and held_both_ways(
            call.directions["A"], call.directions["B"]
        )
        if held and call.held_since is None:
            call.held_since = self.clock()
            self.held[call.record_id] = call
            log.info("Call %s -> %s is on hold both ways", call.caller, call.callee)
        elif not held and call.held_since is not None:
            call.held_since = None
            self.held.pop(call.record_id, None)

    def _end_long_holds(self) -> None:
        """Hang up the calls held both ways for hold_timeout (an abandoned or
        abusive call: a=inactive from one phone would otherwise keep its slot
        for the maximum call duration)."""
        if not self.held or not self.hold_timeout:
            return
        now = self.clock()
        for call in list(self.held.values()):
            if call.held_since is not None and now - call.held_since >= self.hold_timeout:
                log.warning(
                    "Call %s -> %s: on hold both ways for %g s; hanging up",
                    call.caller,
                    call.callee,
                    self.hold_timeout,
                )
                self.hangup(call, f"on hold both ways for {self.hold_timeout:g} s")

    def _sdp_for(self, call: Call, description: SessionDescription, leg: str) -> bytes:
        """`description` as the phone on `leg` must see it: the relay's address and
        that leg's ports for the audio stream; anything else goes out disabled."""
        stream = _audio(description)
        ports = {}
        if stream is not None:
            ports[stream.index] = call.media.leg(leg).local_rtp_port
        return bytes(rewrite(description, self.relay.address, ports))

    def _retransmit_2xx(
        self, call: Call, leg: str, data: bytes, dest: Destination, cseq: int
    ) -> None:
        """§13.3.1.4: resend the 2xx from T1 doubling to T2 until the ACK, for 64*T1."""
        previous = call.pending_2xx.pop(leg, None)
        if previous is not None and previous.timer is not None:
            previous.timer.kill()
        if dest.reliable:
            return  # the transport is reliable: sent once is enough (§13.3.1.4)
        pending = Pending2xx(data=data, destination=dest, cseq=cseq)
        pending.timer = Timer(T1, self._resend_2xx, call, leg, pending)
        call.pending_2xx[leg] = pending

    def _resend_2xx(self, call: Call, leg: str, pending: Pending2xx) -> None:
        if call.pending_2xx.get(leg) is not pending:
            return  # its ACK came (or a newer 2xx took over) as the timer fired
        pending.waited += pending.interval
        self.send(pending.data, pending.destination)
        if pending.waited >= 64 * T1:
            log.warning("Call %s -> %s: no ACK for our 2xx; hanging up", call.caller, call.callee)
            call.pending_2xx.pop(leg, None)
            self.hangup(call, "no ACK received")
            return
        pending.interval = min(2 * pending.interval, T2)
        pending.timer = Timer(pending.interval, self._resend_2xx, call, leg, pending)

    def tick(self) -> None:
        """Client transaction timers: retransmissions and timeouts (Timer A/B/E/F),
        and calls held both ways for too long."""
        self._end_long_holds()
        resend, timed_out = self.client.tick(self.clock())
        for transaction in resend:
            self.send(transaction.data, transaction.destination)
        for transaction in timed_out:
            context = transaction.context
            if isinstance(context, Branch):
                context.final = 408
                call = context.call
                if call.phase is Phase.RINGING and all(b.final for b in call.branches):
                    self._all_failed(call)
            elif isinstance(context, Relayed):
                context.call.relayed.pop(transaction.key, None)
                self._reply(context.txn, context.request, 408)

    def check_media(self) -> None:
        """Hang up calls whose media has been dead on both legs too long (or lost),
        and write where each leg's media comes from once both legs latched, so
        that the live calls page shows it during the call (one relay round trip
        for all calls, every few seconds)."""
        try:
            check = self.relay.check(self.media_timeout)
        except Exception as error:
            log.warning("Media relay did not answer the dead-media check: %s", error)
            return
        ids = {(session.generation, session.id) for session in check.dead}
        for session, sources in check.closed.items():
            row_id = self._closed_media.pop(session, None)
            if row_id is not None and any(sources):
                self.history.media(row_id, *sources)
        for call in list(self.calls.values()):
            media = call.media
            latched = check.latched.get(media)
            if latched is not None:
                self.history.media(call.record_id, *latched)
            if (media.generation, media.id) in ids and call.phase is Phase.ANSWERED:
                log.warning(
                    "Call %s -> %s: no media for %g s on both legs; hanging up",
                    call.caller,
                    call.callee,
                    self.media_timeout,
                )
                self.hangup(call, f"no media for {self.media_timeout:g} s")

    def hangup_by_id(self, row_id: int, reason: str = "hung up by an admin") -> bool:
        """Hang up the live call whose history row is `row_id` (the panel's and
        pbxctl's name for it: unique, where a Call-ID need not be)."""
        call = self.calls.get(row_id)
        if call is None:
            return False
        self.hangup(call, reason)
        return True


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


def _direction(stream) -> str:
    """The direction the relay is given for this stream (RFC 3264 §6.1, §8.4):
    a disabled stream (port 0) carries nothing."""
    return stream.relay_direction if stream.port else "inactive"


def held_both_ways(a: str, b: str) -> bool:
    """No RTP may flow in either direction (RFC 3264 §6.1): A to B needs A to
    send and B to receive, and the other way round. A one-way hold (sendonly
    answered with recvonly) still carries the held party's music or silence."""
    sends = ("sendrecv", "sendonly")
    receives = ("sendrecv", "recvonly")
    a_to_b = a in sends and b in receives
    b_to_a = b in sends and a in receives
    return not a_to_b and not b_to_a


def _audio(description: SessionDescription):
    for stream in description.streams():
        if stream.media == "audio":
            return stream
    return None


def _codec(description: SessionDescription) -> str:
    stream = _audio(description)
    if stream is None or not stream.formats:
        return ""
    first = stream.formats[0]
    if first.isdigit() and int(first) in stream.rtpmap:
        mapping = stream.rtpmap[int(first)]
        return f"{mapping.encoding}/{mapping.clock_rate}"
    return {"0": "PCMU/8000", "8": "PCMA/8000", "9": "G722/8000", "18": "G729/8000"}.get(
        first, first
    )


def method_is_offer(request: Request) -> bool:
    return request.method in ("INVITE", "UPDATE") and bool(request.body)


def _strip_tag(value: str) -> str:
    try:
        address = NameAddr.parse(value)
    except ParseError:
        return value
    address.params.pop("tag", None)
    return str(address)


def _request(method: str, uri: str, headers: list[tuple[str, str]], body: bytes) -> Request:
    return Request(headers=Headers(list(headers)), method=method, uri=uri, body=body)
