"""The B2BUA as the handler and the daemon see it: `Calls`.

The caller's INVITE ends here (we are its UAS, after a 407 digest challenge,
RFC 3261 §22.3). What is about the caller and the PBX is checked here (hops,
the PBX's and the caller's call limits, the SDP offer); where the call goes is
the routing step's (`route`, returning a plan: sipd/routing/plan.py), and the
plan is carried out by executor.py: forking.py rings, bridge.py connects.

A request within a call belongs to a leg by its dialog (§12.2.2: Call-ID, our
tag in To, the phone's in From), found with one dict lookup, and only if it
comes from that leg's phone (`from_peer`); anything else gets 481. A response
goes to the context of its client transaction (`on_response`, `on_timeout`):
a callee leg, a relayed request, or nobody (a BYE, a CANCEL). Limits: a call
counts against its caller's extension and the extensions it rings or that
answered (`max_calls`); a call held both ways ends after `hold_timeout`
seconds.
"""

from __future__ import annotations

import logging
import time

from sipd.apps.features import carry_out
from sipd.b2bua import early, prack, session_timer
from sipd.b2bua.application import Applications
from sipd.b2bua.bridge import Bridge
from sipd.b2bua.call import Call, Phase
from sipd.b2bua.executor import Executor
from sipd.b2bua.handover import Handovers
from sipd.b2bua.legs import CalleeLeg, CallerLeg, Leg, LegState
from sipd.b2bua.media import Media, audio, direction
from sipd.b2bua.music import Music
from sipd.b2bua.prack import CallerProvisionals
from sipd.b2bua.scheduler import LoopScheduler
from sipd.b2bua.stack import ALLOW, SERVER, Stack, contact_uri
from sipd.b2bua.transfer import Transfers
from sipd.history import History
from sipd.recording import Recorder
from sipd.registrar import Destination, Registrar, Source, clean_text
from sipd.routing import route_with
from sipd.routing.plan import Application, Feature, Outside, Refuse
from sipd.sip.dialog import Dialog, new_tag, tag_param
from sipd.sip.extensions import MIN_SE, min_se, session_expires, unsupported
from sipd.sip.headers import CSeq, NameAddr, Via
from sipd.sip.message import ParseError, Request, Response
from sipd.sip.reliable import wanted as reliable_wanted
from sipd.sip.sdp import SdpError, SessionDescription
from sipd.sip.transaction import Event, ServerTransaction
from sipd.trunks import fraud, inbound

log = logging.getLogger("sipd")

# RFC 3261 §17.2.1: a 100 Trying within 200 ms unless the TU answers first.
TRYING_AFTER = 0.2


class Calls:
    """The B2BUA. `send(data, Destination)` is the transport's; `respond` is the handler's.

    `route(caller, dialled, now, in_calls) -> Step` decides where a call goes
    (default: the routing step on the database, sipd/routing/); `features(step)
    -> (status, phrase)` carries out a feature code (default: sipd/apps/features.py);
    `scheduler` runs the timers (default: on gevent's loop; tests pass a Scheduler
    on the clock they move).
    """

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
        route=None,
        features=None,
        scheduler=None,
        spawn=None,
        moh_file: str | None = None,
        sounds_dir: str | None = None,
        recording_dir: str | None = None,
        recording_announce=None,
    ):
        self.registrar = registrar
        self.relay = relay
        self.ring_timeout = ring_timeout
        self.max_duration = max_duration
        self.media_timeout = media_timeout
        self.max_calls = max_calls
        self.hold_timeout = hold_timeout  # 0: calls held both ways never end for it
        self.clock = clock
        self.history = history or History()
        # applications: the B2BUA answers Application steps (b2bua/application.py), so
        # routing plans voicemail as the fallback of an extension whose mailbox is on.
        self.route = route or route_with(ring_timeout, applications=True)
        self.stack = Stack(send, respond, local_host, local_port, realm, clock,
                           scheduler if scheduler is not None else LoopScheduler())
        self.media = Media(relay)
        self.executor = Executor(self, features if features is not None else carry_out)
        self.bridge = Bridge(self)
        self.applications = Applications(self, spawn)  # spawn: None is gevent's
        self.handovers = Handovers(self)  # an application hands its call on to a number
        self.music = Music(self, moh_file, sounds_dir)  # None: no music on hold
        # recording_dir None: nothing is recorded; recording_announce: sipd/recording.py
        self.recorder = Recorder(self, recording_dir, recording_announce)
        self.transfers = Transfers(self)
        # Imported here: sipd/trunks/outbound.py builds on the b2bua's legs and forks.
        from sipd.trunks.outbound import Outbound  # noqa: PLC0415

        self.outbound = Outbound(self, clock)
        # (Call-ID, our tag) -> the leg whose dialog that is, as §12.2.2 finds it
        # (the phone's tag is checked on the dialog itself). One per fork.
        self.dialogs: dict[tuple[str, str | None], Leg] = {}
        self.calls: dict[int, Call] = {}  # by row id
        self.per_extension: dict[str, int] = {}  # live calls each extension is in
        self.held: dict[int, Call] = {}  # calls held both ways, by row id
        self.trunks = None  # sipd/trunks/manager.py: whose trunk an INVITE is (daemon sets it)
        # Ended calls' media sessions -> their rows, until Relay.check() reports
        # the sessions (each once, whatever became of the relay meanwhile).
        self._closed_media: dict[object, int] = {}

    @property
    def client(self):
        """Our client transactions (sipd.sip.transaction.ClientTransactions)."""
        return self.stack.client

    @property
    def scheduler(self):
        return self.stack.scheduler

    # -- a new call ---------------------------------------------------------------------

    def invite(self, request: Request, via: Via, source: Source, txn: ServerTransaction) -> None:
        now = self.clock()
        stack = self.stack
        user_agent = clean_text(request.headers.get("User-Agent"))
        try:
            caller_addr = NameAddr.parse(request.headers.get("From"))
            target = NameAddr.parse(f"<{request.uri}>").uri
        except ParseError as error:
            stack.reply(txn, request, 400, f"Bad Request: {error}")
            return
        caller_number = caller_addr.uri.user or ""
        call_id = request.headers.get("Call-ID")
        trunk = self.trunks.inbound(request, source) if self.trunks is not None else None
        if trunk is not None:
            # Issue 12: a provider's call, known by where it comes from
            # (sipd/trunks/inbound.py): not challenged; its DID's inbound route
            # says where it goes, and the caller is the number as the provider sent it.
            caller = inbound.Caller(caller_number, clean_text(caller_addr.display_name or "", 100))
            did = inbound.did(request, trunk)
            route = inbound.inbound_route(did, trunk.row.id)
            dialled = route.destination if route is not None else None
            recorded_route = f"inbound route {did}" if route is not None and route.record else ""
        else:
            # §22.3: a call is authenticated by the PBX acting as a proxy: 407.
            result = self.registrar.authenticate(
                request, caller_number, source, user_agent, now, proxy=True
            )
            if isinstance(result, Response):
                result.headers.add("Server", SERVER)
                stack.respond(txn, result)
                return
            caller = result  # the extension that proved its password (name, call limit)
            dialled = target.user or ""
            recorded_route = ""
        record = dict(
            caller=caller.number,
            caller_name=caller.name,
            caller_claimed=clean_text(caller_addr.display_name or "", 100),
            callee=dialled or "",
            caller_source=f"{source}/{source.transport}",
        )
        if trunk is not None:
            record.update(direction="inbound", trunk=trunk.name)
            if dialled is None:
                record["callee"] = did[:64]
                stack.reply(txn, request, 404, "Not Found")
                self.history.refused(now, call_id, record, 404, "FAILED",
                                     f"DID {did} has no inbound route")
                log.info("[TRUNK] %s: DID %s has no inbound route (call from %s)",
                         trunk.name, did, caller.number)
                return
            full = self.outbound.inbound_full(trunk.name, trunk.row.max_calls)
            if full:
                # The provider may try another route of its own (RFC 3261 §21.5.4).
                stack.reply(txn, request, 503, f"Service Unavailable: trunk {trunk.name}"
                            f" is in {full} calls, its limit", [("Retry-After", "10")])
                self.history.refused(now, call_id, record, 503, "FAILED",
                                     f"trunk {trunk.name} is in {full} calls, its limit")
                log.info("[TRUNK] %s: call from %s to DID %s refused: %d calls, its limit",
                         trunk.name, caller.number, did, full)
                return
            log.info("[TRUNK] %s: call from %s to DID %s -> %s", trunk.name, caller.number,
                     did, dialled)

        def refuse(status: int, reason: str, disposition: str, headers=None, phrase=None,
                   events=()):
            stack.reply(txn, request, status, phrase, headers)
            row_id = self.history.refused(now, call_id, record, status, disposition, reason)
            self.history.events(row_id, now, events)
            log.info("Call %s -> %s refused: %d %s", caller.number, dialled, status, reason)
            for event in events:
                if event.kind == "toll_fraud":  # the routing step's (permission, country)
                    fraud.record(now, event.by, event.target, event.detail, reason,
                                 source=f"{source}/{source.transport}")

        if request.headers.get("Max-Forwards", "70").strip() == "0":
            return refuse(483, "too many hops", "FAILED")
        if len(self.calls) >= self.max_calls:
            return refuse(503, "too many calls", "FAILED", [("Retry-After", "10")])
        if self.in_calls(caller.number) >= caller.max_calls:
            # 403, not 486: it is the caller that may not make another call.
            return refuse(
                403,
                f"caller {caller.number} is in {caller.max_calls} calls, its limit",
                "FAILED",
                phrase=f"Forbidden: call limit of {caller.number} reached",
            )
        # §8.2.2.3: an extension we do not implement, Required: 420 naming it.
        unknown = unsupported(request)
        if unknown:
            return refuse(420, f"Require {', '.join(unknown)} not supported", "FAILED",
                          [("Unsupported", ", ".join(unknown))], phrase="Bad Extension")
        try:
            asked = session_expires(request.headers.get("Session-Expires"))
            floor = min_se(request.headers.get("Min-SE"))
        except ValueError as error:
            return refuse(400, str(error), "FAILED", phrase=f"Bad Request: {error}")
        if asked is not None and asked.interval < MIN_SE:
            # RFC 4028 §8.1: too brief an interval: 422 with ours (and §5: at least 90 s).
            return refuse(422, f"Session-Expires {asked.interval} s below {MIN_SE} s", "FAILED",
                          [("Min-SE", str(max(MIN_SE, floor or 0)))],
                          phrase="Session Interval Too Small")
        # An INVITE without SDP (delayed offer, RFC 3261 §13.2.1): the callees
        # get an offer of ours (media.offer_for), the caller gets one in our 2xx
        # and its answer comes in its ACK (calls.ack).
        offer = None
        if request.body:
            try:
                offer = SessionDescription.parse(request.body)
            except SdpError as error:
                return refuse(
                    488, f"unreadable SDP offer: {error}", "FAILED", phrase="Not Acceptable Here"
                )

        events: list = []
        outside = None
        step, bindings, outcome = self.executor.resolve(
            self.route(caller.number, dialled, now, self.in_calls,
                       **({"inbound": True} if trunk is not None else {})), now, events
        )
        feature = None
        if bindings is None:
            if isinstance(step, Refuse):
                return refuse(step.status, step.reason, step.disposition,
                              phrase=step.phrase or None, events=events)
            if isinstance(step, Outside):  # sipd/trunks/outbound.py: the limits first
                outside = self.outbound.prepare(step, now, f"{source}/{source.transport}")
                if isinstance(outside, tuple):
                    status, phrase, reason = outside
                    return refuse(status, reason, "FAILED", phrase=phrase, events=events)
            elif isinstance(step, Feature):
                feature = self.executor.feature(step)
            elif not isinstance(step, Application):  # nothing to ring
                return refuse(outcome.status, outcome.reason, outcome.disposition,
                              phrase=outcome.phrase, events=events)
            if feature is not None and not 200 <= feature[0] < 300:
                return refuse(feature[0], f"feature {step.code}: {feature[0]} {feature[1]}",
                              "FAILED", phrase=feature[1] or None, events=events)
        try:
            # The relay's leg A is set from the caller's offer in the same round trip.
            media = self.relay.open_session(call_id, audio(offer) if offer else None,
                                            source=source.host)
        except Exception as error:  # the relay says why: no ports, or it is down
            return refuse(503, f"media relay: {error}", "FAILED", [("Retry-After", "5")],
                          events=events)

        dialog = Dialog(
            call_id=call_id,
            local_tag=new_tag(),
            remote_tag=caller_addr.tag,
            local_uri=_strip_tag(request.headers.get("To")),
            remote_uri=f"<{caller_addr.uri}>",
            remote_target=contact_uri(request) or str(caller_addr.uri),
            local_seq=0,
            remote_seq=CSeq.parse(request.headers.get("CSeq")).number,
            route_set=request.headers.get_all("Record-Route"),
            remote_display=caller_addr.display_name,
        )
        ringing = ",".join(dict.fromkeys(n for n, _ in bindings)) if bindings else ""
        group = step.group if bindings else ""
        record_id = self.history.opened(now, call_id, record, ringing, group)
        self.history.events(record_id, now, events)
        call = Call(record_id, caller.number, caller.name, dialled, None, media, offer, now)
        call.recorded_by = recorded_route
        call.caller = CallerLeg(self, call, dialled, Destination(source.host, source.port,
                                                                  source.transport),
                                request, txn, dialog)
        call.caller.sdp = offer
        mode = reliable_wanted(request)
        if mode is not None:  # RFC 3262 §3: its 18x go reliably (prack.py)
            call.caller.provisionals = CallerProvisionals(call.caller, mode)
        # RFC 4028 §9: the session timer our 2xx will settle (session_timer.py).
        session_timer.offered(self, call, request, trunk.name if trunk is not None else None)
        if offer is None:
            call.delayed = True
            call.offer = SessionDescription.parse(self.media.offer_for(call, "B"))
        stream = audio(offer) if offer is not None else None
        if stream is not None:
            call.caller.direction = direction(stream)
        txn.context = call
        self.calls[record_id] = call
        self.dialogs[(call_id, dialog.local_tag)] = call.caller
        self.count(call, caller.number)
        if trunk is not None:
            self.outbound.inbound_begin(record_id, trunk.name)  # its limit counts it
        if feature is not None:
            self.executor.answer_feature(call, step, *feature)
            return
        if isinstance(step, Application):
            self.applications.answer(call, step)
            return
        # §17.2.1: 100 Trying only if nothing else is sent within 200 ms; a
        # phone that rings at once (180) has quenched the caller's retransmissions
        # already, and most calls then cost one message less.
        call.trying = stack.scheduler.call_later(TRYING_AFTER, self._trying, call)
        if outside is not None:
            log.info("Call %s -> %s from %s, through route %s", caller.number, dialled, source,
                     step.route)
            self.outbound.start(call, step, outside)
            return
        log.info(
            "Call %s -> %s from %s, ringing %d contact(s)",
            caller.number,
            dialled,
            source,
            len(bindings),
        )
        self.executor.ring(call, step, bindings, first=True)

    def in_calls(self, number: str) -> int:
        """The live calls (ringing or answered) an extension is the caller of, or
        rings for, or answered; once per call (sipd's own count: no database read)."""
        return self.per_extension.get(number, 0)

    def count(self, call: Call, number: str) -> None:
        if number not in call.parties:
            call.parties.add(number)
            self.per_extension[number] = self.per_extension.get(number, 0) + 1

    def uncount(self, call: Call, number: str) -> None:
        if number in call.parties:
            call.parties.discard(number)
            left = self.per_extension.get(number, 0) - 1
            if left > 0:
                self.per_extension[number] = left
            else:
                self.per_extension.pop(number, None)

    def _trying(self, call: Call) -> None:
        if call.trying is not None and call.phase is Phase.RINGING:
            call.trying = None
            call.caller.respond(100, tagged=False)

    # -- responses to our requests --------------------------------------------------------

    def response(self, response: Response, source: Source) -> None:
        """To the owner of its client transaction (a callee leg, a relayed request)."""
        client = self.stack.client
        transaction = client.match(response)
        if transaction is None:
            log.debug("[SIP] Response %d from %s matches no transaction", response.status, source)
            return
        event, to_send = client.receive(transaction, response, self.clock())
        if to_send:
            self.stack.send(to_send, transaction.destination)
        if event is Event.DELIVER and transaction.context is not None:
            transaction.context.on_response(response)

    # -- ending ------------------------------------------------------------------------

    def hangup(self, call: Call, reason: str) -> None:
        """End a call from our side: BYE both legs, or CANCEL/480 while ringing."""
        if call.phase is Phase.ENDED:
            return
        if call.phase is Phase.RINGING:
            # CANCEL every branch and tell the caller 480: no answer (admin, shutdown).
            for leg in call.branches:
                leg.cancel()
            call.caller.respond(480, "Temporarily Unavailable")
            self.end(call, "NO ANSWER", "system", 480, reason)
            return
        for leg in (call.caller, call.callee_leg):
            if leg is not None and leg.call is call:  # not one a transfer took on
                leg.bye()
        self.end(call, "ANSWERED", "system", None, reason)

    def end(self, call: Call, disposition: str, by: str, status: int | None, reason: str) -> None:
        if call.phase is Phase.ENDED:
            return
        call.phase = Phase.ENDED
        now = self.clock()
        for timer in call.timers:
            if timer is not None:
                timer.cancel()
        caller, answered = call.caller, call.callee_leg
        for leg in (caller, answered):
            if leg is not None and leg.call is call:  # not one a transfer took on
                leg.stop_2xx()
        if call.transfer is not None:
            self.transfers.call_ended(call)
        if call.handover is not None:
            self.handovers.ended(call)  # CANCEL what rings
        try:
            # Not waited for: where the legs' media last came from is reported by
            # the next check_media() and written to the call's row then.
            if call.app is None or not self.applications.ended(call):
                self.media.close(call)  # else the app's greenlet does, once it returns
            self._closed_media[call.media] = call.record_id
        except Exception as error:  # the call ends whatever the relay says
            log.warning("Media relay did not release call %s: %s",
                        caller.dialog.call_id, error)
        self.history.ended(call.record_id, now, disposition, by, status, reason)
        if call.outside is not None:
            self.outbound.ended(call)
        self.outbound.inbound_ended(call.record_id)
        self.calls.pop(call.record_id, None)
        self.held.pop(call.record_id, None)
        for number in list(call.parties):
            self.uncount(call, number)
        # Only this call's own dialogs (its caller's and one per branch, and after
        # a transfer the leg it was joined with) map to it.
        keys = [(caller.dialog.call_id, caller.dialog.local_tag)]
        keys += [(leg.call_id, leg.tag) for leg in call.branches]
        if answered is not None and answered.dialog is not None:
            keys.append((answered.dialog.call_id, answered.dialog.local_tag))
        for key in keys:
            leg = self.dialogs.get(key)
            if leg is not None and leg.call is call:
                del self.dialogs[key]
        talk = f", talked {now - call.answered_at:.0f} s" if call.answered_at else ""
        log.info(
            "Call %s -> %s ended: %s, hung up by %s (%s)%s",
            call.caller_number,
            call.callee,
            disposition,
            by,
            reason,
            talk,
        )
        self._release(call)

    def _release(self, call: Call) -> None:
        """The transactions outlive the call (RFC 6026's Accepted state, 32 s) and
        need nothing more of it: unhooked, what the call built is freed now, by
        reference counting, rather than 32 s later by the cyclic collector (at
        500 calls/s, 16,000 calls' objects alive for it to walk). A branch still
        waiting for its final response keeps its call: a 2xx crossing our CANCEL
        is ACKed and BYEd."""
        caller = call.caller
        if isinstance(caller, CallerLeg):
            caller.txn.context = None
        if caller.call is call:  # a leg a transfer moved on is the other call's now
            caller.other = None
            caller.call = None
        for leg in call.branches:
            if leg.call is not call:
                continue
            leg.other = None
            if leg.fork is not None:
                leg.fork.legs = []
                leg.fork.active = False
            if not leg.pending:
                leg.transaction.context = None
                leg.fork = None
                leg.call = None
        answered = call.callee_leg
        if answered is not None and answered.call is call and answered not in call.branches:
            answered.other = None  # joined by a transfer (attended, transfer.py)
            answered.call = None
        call.branches = []
        call.fork = None
        call.callee_leg = None
        call.trying = call.ring_timer = call.max_timer = call.hold_timer = None
        call.caller_session = call.trunk_session = None
        call.relayed.clear()

    # -- requests within a call -----------------------------------------------------------

    def find(self, request: Request) -> Leg | None:
        """The leg whose dialog `request` is in (§12.2.2): its Call-ID, our tag in
        its To and the phone's tag in its From must all match. A leg still
        ringing has no dialog yet (None: 481)."""
        call_id = request.headers.get("Call-ID")
        to_tag = tag_param(request.headers.get("To"))
        leg = self.dialogs.get((call_id, to_tag))
        if leg is None or leg.call is None:
            return None
        dialog = leg.dialog
        from_tag = tag_param(request.headers.get("From"))
        if dialog is None and request.method == "UPDATE" and from_tag is not None:
            # RFC 3311: an UPDATE on the early dialog a callee's 18x made (early.py).
            return leg if isinstance(leg, CalleeLeg) and leg.final is None else None
        if dialog is None or not dialog.matches(call_id, to_tag, from_tag):
            return None
        return leg

    def _from_leg(self, leg: Leg, request: Request, source: Source) -> bool:
        """Whether `request` comes from the phone of `leg`; logs why not."""
        peer = leg.destination
        if leg.from_phone(source):
            return True
        call = leg.call
        log.warning(
            "[SIP] %s for call %s -> %s from %s/%s refused (481): not from the %s's %s %s/%s",
            request.method,
            call.caller_number,
            call.callee,
            source,
            source.transport,
            leg.role,
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
        stack = self.stack
        call = invite_txn.context if invite_txn is not None else None
        if (
            isinstance(call, Call)
            and source is not None
            and not self._from_leg(call.caller, request, source)
        ):
            stack.reply(txn, request, 481)
            return False
        if invite_txn is None:
            stack.reply(txn, request, 481)
            return True
        stack.reply(txn, request, 200)
        # call: None once the call has ended (end)
        if not isinstance(call, Call) or call.phase is not Phase.RINGING:
            return True
        for leg in call.branches:
            leg.cancel()
        call.caller.respond(487)
        self.end(call, "CANCELLED", "caller", 487, "caller hung up before answer")
        return True

    def ack(self, request: Request, source: Source | None = None) -> None:
        """The ACK for a 2xx (§13.2.2.4): a request within the dialog (no answer)."""
        leg = self.find(request)
        if leg is None:
            return
        if source is not None and not self._from_leg(leg, request, source):
            return
        call = leg.call
        cseq = CSeq.parse(request.headers.get("CSeq")).number
        acked = leg.acked(cseq)
        # Over TCP/TLS our 2xx is not retransmitted (nothing to stop): the
        # ACK's CSeq alone says it is the one our offer waits for.
        if leg.awaiting_answer == cseq:
            self.bridge.answer_in_ack(call, leg, request)
        if acked and call.feature and call.phase is not Phase.ENDED:
            self.executor.feature_acked(call)
        elif acked and call.app is not None and leg is call.caller:
            self.applications.acked(call)

    def in_dialog(self, request: Request, source: Source, txn: ServerTransaction) -> None:
        stack = self.stack
        leg = self.find(request)
        method = request.method
        if leg is None:
            log.info("[SIP] %s from %s matches no dialog (481)", method, source)
            stack.reply(txn, request, 481)
            return
        call = leg.call
        # The phone's own address (connection) before anything else: a stranger
        # must not even move the dialog's CSeq.
        if call.phase is Phase.ENDED or not self._from_leg(leg, request, source):
            stack.reply(txn, request, 481)
            return
        cseq = CSeq.parse(request.headers.get("CSeq")).number
        dialog = leg.dialog if leg.dialog is not None else early.dialog_of(leg, request)
        if dialog is not None and not dialog.accept_remote_cseq(cseq, method):
            stack.reply(
                txn,
                request,
                500,
                "Server Internal Error: CSeq out of order",
                [("Retry-After", "1")],
            )
            return
        if method == "BYE":
            stack.reply(txn, request, 200)
            self._bye(call, leg)
            return
        if method == "OPTIONS":
            stack.reply(txn, request, 200, None, [("Allow", ALLOW)])
            return
        if method == "PRACK":  # RFC 3262 §3, in the caller's early dialog (prack.py)
            prack.answer(leg, request, txn)
            return
        if method == "UPDATE" and (call.phase is Phase.RINGING or leg.dialog is None):
            early.update(self, call, leg, request, txn)  # RFC 3311 on an early dialog
            return
        if ((call.app is not None or call.handover is not None) and leg is call.caller
                and call.phase is Phase.ANSWERED and method in ("INFO", "INVITE", "UPDATE")):
            self.applications.request(call, leg, request, txn)  # the PBX is the other end
            return
        if call.phase is not Phase.ANSWERED or leg.other is None:
            stack.reply(
                txn,
                request,
                405 if method not in ("INVITE", "UPDATE", "INFO") else 491,
                None,
                [("Allow", ALLOW)],
            )
            return
        if method in ("INVITE", "UPDATE", "INFO"):
            session = session_timer.of(call, leg)
            if method != "INFO" and session is not None:
                session.peer_refreshed(request)  # RFC 4028 §10: the session goes on
            self.bridge.relay_request(call, leg, request, txn)
            return
        if method == "REFER":
            self.transfers.refer(call, leg, request, txn)
            return
        stack.reply(txn, request, 405, None, [("Allow", ALLOW)])

    def _bye(self, call: Call, leg: Leg) -> None:
        """A phone hung up: BYE the other (or CANCEL what still rings) and end."""
        leg.state = LegState.ENDED
        if call.transfer is not None and self.transfers.left(call, leg):
            return  # the transferor: the transfer goes on without it
        answered = call.phase is Phase.ANSWERED
        if leg.other is not None:
            leg.other.bye()
        elif not answered:
            for branch in call.branches:
                branch.cancel()
        self.end(
            call,
            "ANSWERED" if answered else "CANCELLED",
            leg.role,
            None,
            f"{leg.role} hung up",
        )

    # -- timers and media ------------------------------------------------------------------

    def tick(self) -> None:
        """Client transaction timers: retransmissions and timeouts (Timer A/B/E/F)."""
        resend, timed_out = self.stack.client.tick(self.clock())
        send = self.stack.send
        for transaction in resend:
            send(transaction.data, transaction.destination)
        for transaction in timed_out:
            if transaction.context is not None:
                transaction.context.on_timeout()

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
                    call.caller_number,
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


def _strip_tag(value: str) -> str:
    try:
        address = NameAddr.parse(value)
    except ParseError:
        return value
    address.params.pop("tag", None)
    return str(address)
