"""Carrying out an `Outside` step (sipd/routing/plan.py): the call's B leg is an
INVITE to a trunk, one trunk after another (issue 12 item 3).

Before the first attempt the toll-fraud limits are checked (sipd/trunks/fraud.py):
a call over one is refused, FraudEvent and log line, and an hourly limit
blocks the extension. Then each `TrunkAttempt` in turn:
- skipped when its trunk is gone or disabled, marked down by its keep-alive
  (TrunkState.reachable), at its call limit (Trunk.max_calls, else the
  policy's), or its address cannot be resolved;
- the INVITE goes along the trunk's one path (sipd/trunks/path.py, the same as
  its REGISTER and OPTIONS): Request-URI and To the number as the route
  rewrote it, at the trunk's domain; the caller ID in From, or in
  P-Asserted-Identity (RFC 3325 §9.1) with From left as the trunk's from-user,
  as the trunk says (Trunk.caller_id_header);
- a 401/407 is answered once per challenge with the trunk's credentials
  (RFC 3261 §22.2: the same Call-ID and From tag, CSeq one higher;
  sipd/sip/digest_client.py), a refused password is that trunk failing;
- the next trunk is tried on 5xx, 408, any other 4xx that says nothing about
  the number (403 from a provider is its refusal of us, not of the number),
  Timer B, or no response at all within NO_RESPONSE seconds;
- 404, 484, 486, 487 and 6xx say the number is wrong or busy everywhere
  (RFC 3261 §21.6 for 6xx): the caller gets them and no other trunk is tried.
When no trunk is left the caller gets 480 Temporarily Unavailable with why in
the history and the log (a provider's 503 is never passed on: RFC 3261 §16.7).

The history row says direction "outbound", the trunk tried (the last one, so the
one that answered) and the number as sent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sipd.b2bua import session_timer
from sipd.b2bua.call import Phase
from sipd.b2bua.forking import Fork
from sipd.b2bua.legs import CalleeLeg, LegState
from sipd.b2bua.stack import ALLOW, SERVER, contact_uri
from sipd.sip.dialog import new_call_id, new_tag
from sipd.sip.digest_client import ClientCredentials
from sipd.sip.extensions import DEFAULT_SE, MIN_SE, min_se
from sipd.sip.headers import CSeq
from sipd.sip.message import Headers, Request, Response
from sipd.trunks import fraud
from sipd.trunks.path import PathError, path_for

log = logging.getLogger("sipd")

# An attempt that has had no response at all (not even 100 Trying) this long
# goes on to the next trunk: a provider that is up answers within a few
# retransmissions (T1 = 0.5 s), and Timer B (32 s) is too long for a caller.
NO_RESPONSE = 5.0
# How long an outside number may ring before the caller is told 480.
RING_LIMIT = 180.0
# The number's own answers: passed to the caller, no other trunk tried.
TO_CALLER = (404, 484, 486, 487)


@dataclass
class Prepared:
    """What one outside call needs, read before anything is sent."""

    extension: str  # whose call it is (limits, FraudEvent)
    trunks: dict  # name -> Trunk row (enabled ones of the route)
    down: set  # names of trunks marked down
    trunk_max_calls: int  # the policy's default for trunks without their own
    span: object = None  # the fraud.Guard's record of the call


@dataclass(frozen=True)
class TrunkRow:
    """The columns of a Trunk row an outside call uses (sipd/trunks/path.py reads
    the same names)."""

    name: str
    host: str
    port: int | None
    transport: str
    username: str
    auth_user: str
    password: str
    outbound_proxy: str
    from_user: str
    from_domain: str
    caller_id_header: str
    max_calls: int


@dataclass(frozen=True)
class Policy:
    """OutboundPolicy's limits (its defaults when the row is missing)."""

    max_calls: int = 2
    calls_per_hour: int = 30
    minutes_per_hour: int = 120
    trunk_max_calls: int = 10


_TRUNK_COLUMNS = ("t.name, t.host, t.port, t.transport, t.username, t.auth_user, t.password,"
                  " t.outbound_proxy, t.from_user, t.from_domain, t.caller_id_header,"
                  " t.max_calls")


def _connection():
    from core.models import db  # noqa: PLC0415

    return db.connection()


# Each call is on sipd's hot path: two plain statements on the shared connection
# (peewee's query building cost more than the rest of the call: bench/outbound.py).
def read(names: list[str]):
    """The enabled trunks of `names` (name -> TrunkRow) and the names of those
    marked down by their keep-alive."""
    rows = _connection().execute(
        f"SELECT {_TRUNK_COLUMNS}, s.reachable FROM trunk t"
        " LEFT JOIN trunk_state s ON s.trunk_id = t.id"
        f" WHERE t.enabled AND t.name IN ({', '.join('?' * len(names))})", tuple(names),
    ).fetchall() if names else []
    trunks = {row[0]: TrunkRow(*row[:12]) for row in rows}
    down = {row[0] for row in rows if row[12] is not None and not row[12]}
    return trunks, down


def extension_limits(number: str) -> tuple[fraud.Limits, Policy]:
    """The extension's limits (its own, else the policy's) and the policy: one statement."""
    row = _connection().execute(
        "SELECT p.max_calls, p.calls_per_hour, p.minutes_per_hour, p.trunk_max_calls,"
        " e.outbound_max_calls, e.outbound_calls_per_hour, e.outbound_minutes_per_hour,"
        " e.outbound_blocked_at, e.outbound_blocked_reason"
        " FROM (SELECT 1) one LEFT JOIN outbound_policy p ON p.id = 1"
        " LEFT JOIN extension e ON e.number = ?", (number,),
    ).fetchone()
    policy = Policy(*row[:4]) if row[0] is not None else Policy()
    own = row[4:7]
    limits = fraud.Limits(*(policy_value if value is None else int(value) for value, policy_value
                            in zip(own, (policy.max_calls, policy.calls_per_hour,
                                         policy.minutes_per_hour), strict=True)),
                          row[7], row[8] or "")
    return limits, policy


class Outbound:
    """The B2BUA's outside calls: `prepare` before the call is set up (the fraud
    check: a Refusal to answer with, or what `start` needs), `start` once it is."""

    def __init__(self, owner, clock, read=read, limits=extension_limits):
        self.owner = owner
        self.guard = fraud.Guard(clock)
        self._read = read
        self._limits = limits
        self._inbound: dict[int, str] = {}  # a provider's call (its row id) -> its trunk

    def inbound_full(self, trunk: str, max_calls: int) -> int:
        """A provider's call: its trunk's limit (Trunk.max_calls, else the policy's)
        when the trunk is in that many calls already, in and out together (they share
        the provider's channels), else 0."""
        limit = max_calls or self._limits("")[1].trunk_max_calls
        return limit if self.guard.trunk_full(trunk, limit) else 0

    def inbound_begin(self, record_id: int, trunk: str) -> None:
        self._inbound[record_id] = trunk
        self.guard.trunk_begin(trunk)

    def inbound_ended(self, record_id: int) -> None:
        trunk = self._inbound.pop(record_id, None)
        if trunk is not None:
            self.guard.trunk_end(trunk)

    def prepare(self, step, now: float, source: str = ""):
        """(status, phrase, reason) when the call is refused, else a Prepared."""
        names = [attempt.trunk for attempt in step.attempts]
        trunks, down = self._read(names)
        by = step.caller
        limits, policy = self._limits(by)
        if not step.emergency:
            verdict = self.guard.check(by, limits)
            usable = [n for n in names if n in trunks and n not in down]
            if verdict is None and usable and all(
                    self.guard.trunk_full(n, trunks[n].max_calls or policy.trunk_max_calls)
                    for n in usable):
                verdict = fraud.Verdict(fraud.TRUNK_MAX_CALLS, f"every trunk of route"
                                        f" {step.route} is at its call limit")
            if verdict is not None:
                if verdict.block:
                    self.guard.blocking(by)
                fraud.record(now, by, step.dialled, verdict.rule, verdict.detail,
                             source=source, block=verdict.block)
                status = 403 if verdict.rule != fraud.TRUNK_MAX_CALLS else 503
                word = "Forbidden" if status == 403 else "Service Unavailable"
                return status, f"{word}: {verdict.detail}"[:120], verdict.detail
        return Prepared(by, trunks, down, policy.trunk_max_calls)

    def start(self, call, step, prepared: Prepared) -> None:
        prepared.span = self.guard.begin(prepared.extension, step.emergency)
        call.outside = prepared
        if step.record:
            call.recorded_by = f"outbound route {step.route}"
        fork = TrunkFork(self.owner, call, step, prepared, self)
        call.fork = fork
        call.steps += 1
        fork.start(())
        call.ring_timer = self.owner.stack.scheduler.call_later(RING_LIMIT, fork.ring_over)

    def ended(self, call) -> None:
        """The call is over (Calls.end): it counts no more."""
        prepared = call.outside
        call.outside = None
        if prepared is None:
            return
        self.guard.end(prepared.extension, prepared.span)
        fork = call.fork if isinstance(call.fork, TrunkFork) else None
        for leg in call.branches:
            if getattr(leg, "trunk", None) and leg.counted:
                leg.counted = False
                self.guard.trunk_end(leg.trunk)
        if fork is not None and fork.timer is not None:
            fork.timer.cancel()

    def answered(self, call) -> None:
        if call.outside is not None:
            self.guard.answered(call.outside.span)


class TrunkLeg(CalleeLeg):
    """Our INVITE to one trunk, answering its challenges."""

    __slots__ = ("trunk", "credentials", "sent", "challenges", "counted")

    def __init__(self, *args, trunk: str, credentials: ClientCredentials):
        super().__init__(*args)
        self.trunk = trunk
        self.credentials = credentials
        self.sent = None  # the Authorization the INVITE now in flight carries
        self.challenges = 0
        self.counted = False  # counts against the trunk's call limit


class TrunkFork(Fork):
    """The trunks of an Outside step, one at a time (a Fork of one branch at a time,
    so that the executor, the bridge and the end of a call treat it as any other)."""

    __slots__ = ("prepared", "outbound", "index", "failures", "timer", "last")

    def __init__(self, owner, call, step, prepared: Prepared, outbound: Outbound):
        super().__init__(owner, call, step)
        self.prepared = prepared
        self.outbound = outbound
        self.index = 0
        self.failures: list[str] = []
        self.timer = None  # NO_RESPONSE of the attempt under way
        self.last: TrunkLeg | None = None

    @property
    def extensions(self) -> list[str]:
        return []  # a trunk leg counts against no extension

    def start(self, bindings) -> None:
        self.next()

    def next(self) -> None:
        """The next usable attempt, or the caller told no trunk could take the call."""
        prepared, guard = self.prepared, self.outbound.guard
        while self.index < len(self.step.attempts):
            attempt = self.step.attempts[self.index]
            self.index += 1
            trunk = prepared.trunks.get(attempt.trunk)
            if trunk is None:
                self.failures.append(f"{attempt.trunk}: no such enabled trunk")
                continue
            if attempt.trunk in prepared.down:
                self.failures.append(f"{attempt.trunk}: marked down")
                continue
            limit = trunk.max_calls or prepared.trunk_max_calls
            if not self.step.emergency and guard.trunk_full(trunk.name, limit):
                self.failures.append(f"{trunk.name}: at its limit of {limit} calls")
                continue
            try:
                path = path_for(trunk)
            except PathError as error:
                self.failures.append(f"{trunk.name}: {error}")
                continue
            self.invite(attempt, trunk, path)
            return
        reason = "no trunk took the call: " + "; ".join(self.failures or ["no trunks"])
        self.finish(480, "Temporarily Unavailable", "FAILED", reason)

    def ring_over(self) -> None:
        self.call.ring_timer = None
        if not self.active or not self.call.rings:
            return
        self.cancel()
        for leg in self.legs:
            self._release(leg)
        self.finish(480, "Temporarily Unavailable", "NO ANSWER",
                    f"no answer within {RING_LIMIT:g} s")

    def finish(self, status: int, phrase: str | None, disposition: str, reason: str) -> None:
        self.active = False
        call = self.call
        if not call.rings:
            return
        if call.ring_timer is not None:
            call.ring_timer.cancel()
            call.ring_timer = None
        log.info("Call %s -> %s through route %s: %s", call.caller_number, call.callee,
                 self.step.route, reason)
        self.owner.executor.tell_caller(call, status, phrase)
        self.owner.end(call, disposition, "callee" if status in TO_CALLER else "system",
                       status, reason)

    # -- one attempt ----------------------------------------------------------------------

    def invite(self, attempt, trunk, path) -> None:
        owner, call = self.owner, self.call
        stack = owner.stack
        transport = path.transport
        caller_id = attempt.caller_id or path.from_user or call.caller_number
        if trunk.caller_id_header == "pai":
            # RFC 3325 §9.1: the identity asserted to a trusted provider; From as it wants.
            from_user, asserted = path.from_user or caller_id, caller_id
        else:
            from_user, asserted = caller_id, ""
        tag = new_tag()
        call_id = new_call_id(stack.local_host)
        local_uri = f"<sip:{from_user}@{path.domain}>"
        remote_uri = f"<sip:{attempt.number}@{path.domain}>"
        uri = path.uri(attempt.number)
        leg = TrunkLeg(owner, call, self, "", uri, path.destination(), call_id, tag, local_uri,
                       remote_uri, trunk=trunk.name,
                       credentials=ClientCredentials(trunk.auth_user or trunk.username,
                                                     trunk.password))
        headers = [
            ("Max-Forwards", "70"),
            ("From", f"{local_uri};tag={tag}"),
            ("To", remote_uri),
            ("Call-ID", call_id),
            ("CSeq", "1 INVITE"),
            ("Contact", stack.contact(from_user, transport)),
            ("Allow", ALLOW),
            # RFC 3262 §4: a provider that sends its 18x reliably gets our PRACK;
            # RFC 4028 §7.1: the session timer offered (b2bua/session_timer.py).
            ("Supported", session_timer.SUPPORTED),
            *session_timer.OFFER,
            ("User-Agent", SERVER),
        ]
        if path.route:
            headers.insert(0, ("Route", path.route))
        if asserted:
            headers.append(("P-Asserted-Identity", f"<sip:{asserted}@{path.domain}>"))
        leg.invite = Request(headers=Headers(headers), method="INVITE", uri=uri,
                             body=owner.media.offer_b(call))
        self.legs = [leg]
        self.last = leg
        call.branches.append(leg)
        owner.dialogs[(call_id, tag)] = leg
        if not self.step.emergency:
            self.outbound.guard.trunk_begin(trunk.name)
            leg.counted = True
        owner.history.outside(call.record_id, trunk.name, attempt.number)
        log.info("Call %s -> %s via trunk %s to %s as %s (caller ID %s%s)", call.caller_number,
                 call.callee, trunk.name, path.address, attempt.number, caller_id,
                 ", in P-Asserted-Identity" if asserted else "")
        self.send(leg, 1)

    def send(self, leg: TrunkLeg, cseq: int) -> None:
        """Our INVITE with CSeq `cseq`, with credentials once a challenge is known."""
        stack = self.owner.stack
        invite = leg.invite
        headers = [(name, value) for name, value in invite.headers.items
                   if name.lower() not in ("via", "cseq", "authorization", "proxy-authorization",
                                           "content-type")]
        authorization = leg.credentials.authorize("INVITE", invite.uri)
        leg.sent = authorization
        headers = [("Via", stack.via(leg.destination.transport)), *headers,
                   ("CSeq", f"{cseq} INVITE"), *authorization.headers]
        if invite.body:
            headers.append(("Content-Type", "application/sdp"))
        leg.invite = Request(headers=Headers(headers), method="INVITE", uri=invite.uri,
                             body=invite.body)
        leg.transaction = stack.start(leg.invite, leg.destination, leg)
        self._watch(leg)

    def _watch(self, leg: TrunkLeg) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.owner.stack.scheduler.call_later(NO_RESPONSE, self._silent, leg)

    def _silent(self, leg: TrunkLeg) -> None:
        self.timer = None
        if leg is self.last and leg.final is None and not leg.transaction.got_provisional:
            self._failed(leg, 408, f"{leg.trunk}: no response within {NO_RESPONSE:g} s")

    # -- what the trunk answers ------------------------------------------------------------

    def on_response(self, leg: TrunkLeg, response: Response) -> None:
        status = response.status
        if leg is not self.last or leg.final is not None:
            if 200 <= status < 300:
                leg.ack_and_bye(response, contact_uri(response))  # too late: given up
            return
        if self.timer is not None and status >= 100:
            self.timer.cancel()
            self.timer = None
        if status in (401, 407) and self.call.rings:
            why = leg.credentials.challenged(response, leg.sent)
            leg.challenges += 1
            if why is None and leg.challenges <= 3:
                cseq = CSeq.parse(response.headers.get("CSeq")).number + 1
                self.send(leg, cseq)  # §22.2: the same Call-ID and From tag, CSeq + 1
                return
            self._failed(leg, status, f"{leg.trunk}: {why or 'challenged again and again'}")
            return
        if status == 422 and self.call.rings and self._longer_session(leg, response):
            cseq = CSeq.parse(response.headers.get("CSeq")).number + 1
            self.send(leg, cseq)  # RFC 4028 §7.1: again, with the provider's Min-SE
            return
        if status < 200 or 200 <= status < 300:
            super().on_response(leg, response)
            return
        reason = f"{leg.trunk} answered {status} {response.reason}"
        if status in TO_CALLER or status >= 600:
            self._release(leg)
            leg.final = status
            leg.state = LegState.FAILED
            disposition = "BUSY" if status in (486, 600) else "FAILED"
            self.finish(status, response.reason or None, disposition, reason)
            return
        self._failed(leg, status, reason)

    def _longer_session(self, leg: TrunkLeg, response: Response) -> bool:
        """422 Session Interval Too Small (RFC 4028 §6): our INVITE's Session-Expires
        and Min-SE raised to the provider's Min-SE, once; False: nothing to retry."""
        try:
            floor = min_se(response.headers.get("Min-SE"))
        except ValueError:
            floor = None
        invite = leg.invite
        asked = int(invite.headers.get("Min-SE") or MIN_SE)
        if floor is None or floor <= asked:
            return False
        invite.headers.set("Session-Expires", str(max(floor, DEFAULT_SE)))
        invite.headers.set("Min-SE", str(floor))
        return True

    def on_timeout(self, leg: TrunkLeg) -> None:
        if leg is self.last and leg.final is None:
            self._failed(leg, 408, f"{leg.trunk}: no final response (Timer B)")

    def _release(self, leg: TrunkLeg) -> None:
        if leg.counted:
            leg.counted = False
            self.outbound.guard.trunk_end(leg.trunk)

    def _failed(self, leg: TrunkLeg, status: int, reason: str) -> None:
        """This trunk did not take the call: the next one."""
        leg.final = status
        leg.state = LegState.FAILED
        self._release(leg)
        if leg.transaction is not None and leg.transaction.got_provisional:
            leg.cancel()
        self.failures.append(reason)
        if not self.active or not self.call.rings:
            return
        if self.index < len(self.step.attempts):
            log.info("Call %s -> %s: %s; trying the next trunk", self.call.caller_number,
                     self.call.callee, reason)
        self.next()

    def _answered(self, leg: TrunkLeg, response: Response) -> None:
        call = self.call
        if not self.active or not call.rings or call.callee_leg is not None:
            super()._answered(leg, response)
            return
        self.active = False
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        leg.state = LegState.ANSWERED
        leg.dialog = leg.dialog_for(response, contact_uri(response))
        cseq = CSeq.parse(response.headers.get("CSeq")).number
        # After a challenge the INVITE was not CSeq 1; after a PRACK (RFC 3262 §4)
        # the early dialog's CSeq goes on (dialog_for).
        leg.dialog.local_seq = max(cseq, leg.dialog.local_seq)
        leg.ack(cseq)
        self.outbound.answered(call)
        self.owner.executor.answered(call, self, leg, response)
        if call.phase is Phase.ANSWERED and call.callee_leg is leg:
            session_timer.begin(self.owner, call, leg, response)

    def cancel(self) -> None:
        self.active = False
        for leg in self.legs:
            if leg.final is None:
                leg.cancel()
