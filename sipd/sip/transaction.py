"""SIP transactions (RFC 3261 §17, with the RFC 6026 fixes for 2xx to INVITE).

Server transactions live in a table keyed as §17.2.3 says; client transactions
in a table keyed by branch and method (§17.1.3). States and timers are named
as in the RFC. The caller passes `now`; nothing here sends or sleeps: the
methods return what to (re)send, and `tick(now)` runs the timers.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass
from enum import Enum
from functools import cached_property

from sipd.sip.headers import CSeq, NameAddr, Via
from sipd.sip.message import Headers, Request, Response

T1 = 0.5  # §17.1.1.1 RTT estimate, seconds
T2 = 4.0  # maximum retransmit interval for non-INVITE requests and INVITE responses
T4 = 5.0  # maximum duration a message remains in the network
MAGIC_COOKIE = "z9hG4bK"  # §8.1.1.7


class State(Enum):
    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    ACCEPTED = "Accepted"  # RFC 6026 §7.1/§7.2
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    TERMINATED = "Terminated"


# -- server side ----------------------------------------------------------------------


@dataclass(slots=True)
class ServerTransaction:
    key: tuple
    method: str
    reliable: bool
    created: float
    state: State = State.TRYING
    last_response: bytes | None = None
    destination: object = None  # where responses go (set by the transport layer)
    timer_j: float | None = None  # end of Completed (non-INVITE), Confirmed/Accepted (INVITE)
    timer_g: float | None = None  # next retransmission of a final non-2xx to INVITE
    g_interval: float = T1
    timer_h: float | None = None  # give up waiting for the ACK
    context: object = None  # the TU's own state (e.g. the call)
    # Not in the table: its response is sent once and forgotten (§8.2.7, a
    # challenge to a request without credentials).
    stateless: bool = False

    @property
    def is_invite(self) -> bool:
        return self.method == "INVITE"


def transaction_key(request: Request, top_via: Via) -> tuple:
    """§17.2.3: branch + sent-by + method for RFC 3261 peers, else the 2543 fields."""
    method = "INVITE" if request.method == "ACK" else request.method
    branch = top_via.branch
    if branch and branch.startswith(MAGIC_COOKIE):
        return ("3261", branch, top_via.sent_by, method)
    # RFC 2543 peers: Request-URI, To tag, From tag, Call-ID, CSeq and top Via.
    to = NameAddr.parse(request.headers.get("To", ""))
    sender = NameAddr.parse(request.headers.get("From", ""))
    cseq = CSeq.parse(request.headers.get("CSeq", ""))
    return (
        "2543", request.uri, None if method == "INVITE" else to.tag, sender.tag,
        request.headers.get("Call-ID"), cseq.number, str(top_via), method,
    )


class Received(Enum):
    NEW = "new"  # a new transaction: the TU must handle the request
    RETRANSMISSION = "retransmission"  # absorbed; resend `last_response` if not None


# A transaction still Trying after this long was abandoned by its TU (non-INVITE:
# its client gave up at Timer F, 64*T1; INVITE: a call rings for minutes at most).
ABANDONED_NON_INVITE = 64 * T1
ABANDONED_INVITE = 300.0


class Deadlines:
    """A heap of (when, key): the moments a table must look at one of its entries.

    Walking a whole table on every tick cost more than the traffic once thousands
    of transactions were alive (Timer J keeps each REGISTER's for 32 s). An entry
    is only a reminder: the caller checks the transaction's own timers when it
    comes due, so a timer that moved leaves a harmless stale entry behind.
    """

    __slots__ = ("_heap", "_order")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, tuple]] = []
        self._order = itertools.count()

    def add(self, when: float | None, key: tuple) -> None:
        if when is not None:
            heapq.heappush(self._heap, (when, next(self._order), key))

    def due(self, now: float) -> list[tuple]:
        """The keys with a reminder at or before `now`, each once, oldest first."""
        heap, keys, seen = self._heap, [], set()
        while heap and heap[0][0] <= now:
            key = heapq.heappop(heap)[2]
            if key not in seen:
                seen.add(key)
                keys.append(key)
        return keys

    def __len__(self) -> int:
        return len(self._heap)


class ServerTransactions:
    def __init__(self) -> None:
        self._table: dict[tuple, ServerTransaction] = {}
        self._deadlines = Deadlines()
        # INVITE transactions waiting for an ACK: the only ones with a timer finer
        # than a second, kept apart so the frequent tick does not walk the table.
        self._waiting_ack: dict[tuple, ServerTransaction] = {}

    def __len__(self) -> int:
        return len(self._table)

    def receive(
        self, request: Request, top_via: Via, reliable: bool, now: float
    ) -> tuple[Received, ServerTransaction]:
        key = transaction_key(request, top_via)
        existing = self._table.get(key)
        if existing is not None and existing.state is not State.TERMINATED:
            # §17.2.1/§17.2.2: a retransmitted request is absorbed; in Proceeding
            # and Completed the last response is passed to the transport again.
            return Received.RETRANSMISSION, existing
        transaction = ServerTransaction(
            key=key, method=request.method, reliable=reliable, created=now
        )
        self._table[key] = transaction
        abandoned = ABANDONED_INVITE if transaction.is_invite else ABANDONED_NON_INVITE
        self._deadlines.add(now + abandoned, key)
        return Received.NEW, transaction

    def find(self, request: Request, top_via: Via, method: str) -> ServerTransaction | None:
        """The transaction a CANCEL or an ACK refers to (§9.2, §17.2.3)."""
        key = transaction_key(request, top_via)
        key = (*key[:-1], method)
        return self._table.get(key)

    def respond(self, transaction: ServerTransaction, status: int, data: bytes, now: float) -> None:
        """Record the response the TU sent through this transaction."""
        transaction.last_response = data
        if status < 200:
            transaction.state = State.PROCEEDING
            return
        if transaction.is_invite and status < 300:
            # RFC 6026 §7.1: Accepted; the TU retransmits the 2xx itself
            # (§13.3.1.4) and INVITE retransmissions are absorbed for Timer L.
            transaction.state = State.ACCEPTED
            transaction.timer_j = now + 64 * T1
            self._deadlines.add(transaction.timer_j, transaction.key)
            return
        transaction.state = State.COMPLETED
        if transaction.is_invite:
            # §17.2.1: Timer G retransmits the final response over UDP until the
            # ACK comes; Timer H (64*T1) gives up.
            if not transaction.reliable:
                transaction.timer_g = now + T1
                transaction.g_interval = T1
            transaction.timer_h = now + 64 * T1
            self._waiting_ack[transaction.key] = transaction
            return
        # Timer J: 64*T1 for unreliable transports, zero for reliable ones.
        if transaction.reliable:
            transaction.timer_j = now
            self._deadlines.add(now, transaction.key)
        else:
            # No reminder of its own: the one receive() left for an abandoned
            # transaction comes due first (created + 64*T1) and expire() then
            # moves it here. One heap entry per REGISTER instead of two.
            transaction.timer_j = now + 64 * T1

    def ack(self, transaction: ServerTransaction, now: float) -> None:
        """The ACK for a final non-2xx arrived (§17.2.1): Confirmed, then Timer I."""
        if transaction.state is State.COMPLETED and transaction.is_invite:
            transaction.state = State.CONFIRMED
            transaction.timer_g = transaction.timer_h = None
            transaction.timer_j = now + (0 if transaction.reliable else T4)  # Timer I
            self._waiting_ack.pop(transaction.key, None)
            self._deadlines.add(transaction.timer_j, transaction.key)

    def tick(self, now: float) -> list[ServerTransaction]:
        """Timers G and H (often): the transactions whose final response must be resent."""
        resend = []
        for key, transaction in list(self._waiting_ack.items()):
            if transaction.timer_h is not None and transaction.timer_h <= now:
                # Timer H: the ACK never came; the transaction ends.
                transaction.state = State.TERMINATED
                self._table.pop(key, None)
                del self._waiting_ack[key]
                continue
            if transaction.timer_g is not None and transaction.timer_g <= now:
                resend.append(transaction)
                transaction.g_interval = min(2 * transaction.g_interval, T2)
                transaction.timer_g = now + transaction.g_interval
        return resend

    def expire(self, now: float) -> int:
        """Timers J, I and L (every second or so): drop the transactions that are over."""
        removed = 0
        for key in self._deadlines.due(now):
            transaction = self._table.get(key)
            if transaction is None:
                continue
            done = transaction.timer_j is not None and transaction.timer_j <= now
            abandoned = transaction.state is State.TRYING and now - transaction.created >= (
                ABANDONED_INVITE if transaction.is_invite else ABANDONED_NON_INVITE
            )
            if done or abandoned:
                transaction.state = State.TERMINATED
                del self._table[key]
                self._waiting_ack.pop(key, None)
                removed += 1
            elif transaction.timer_j is not None:
                self._deadlines.add(transaction.timer_j, key)  # not yet: look again then
        return removed

    def forget(self, transaction: ServerTransaction) -> None:
        self._table.pop(transaction.key, None)
        self._waiting_ack.pop(transaction.key, None)


# -- client side ----------------------------------------------------------------------


@dataclass
class ClientTransaction:
    """One request we send and what came back (§17.1.1 INVITE, §17.1.2 non-INVITE)."""

    request: Request | None  # let go of once a final response came (see _final)
    data: bytes
    reliable: bool
    created: float
    method: str = ""
    destination: object = None
    state: State = State.TRYING
    interval: float = T1
    next_send: float | None = None  # Timer A / E
    timeout: float | None = None  # Timer B / F, then D / K / M as the end of the state
    last_response: Response | None = None
    ack: bytes | None = None  # our ACK to a non-2xx final (§17.1.1.3), resent on repeats
    context: object = None  # the TU's own state
    cancel_pending: bool = False

    @property
    def branch(self) -> str:
        return Via.parse(self.request.headers.get("Via")).branch or ""

    @cached_property
    def key(self) -> tuple[str, str]:
        # Looked up on every response and timer; the request's Via never changes.
        return (self.branch, self.method)

    @property
    def is_invite(self) -> bool:
        return self.method == "INVITE"

    @property
    def got_provisional(self) -> bool:
        return self.state is not State.CALLING and self.state is not State.TRYING


class Event(Enum):
    DELIVER = "deliver"  # hand the response to the TU
    ABSORB = "absorb"  # a retransmission: nothing for the TU
    TIMEOUT = "timeout"  # Timer B or F fired: the TU acts as if a 408 came


def build_ack(request: Request, response: Response) -> Request:
    """§17.1.1.3: the ACK for a non-2xx final response, in the INVITE's transaction."""
    headers = Headers()
    headers.add("Via", request.headers.get_all("Via")[0])
    for name in ("Route",):
        for value in request.headers.get_all(name):
            headers.add(name, value)
    headers.add("From", request.headers.get("From"))
    headers.add("To", response.headers.get("To") or request.headers.get("To"))
    headers.add("Call-ID", request.headers.get("Call-ID"))
    headers.add("CSeq", f"{CSeq.parse(request.headers.get('CSeq')).number} ACK")
    headers.add("Max-Forwards", "70")
    return Request(headers=headers, method="ACK", uri=request.uri)


def build_cancel(request: Request) -> Request:
    """§9.1: CANCEL copies Request-URI, Call-ID, To, From, the CSeq number and the top Via."""
    headers = Headers()
    headers.add("Via", request.headers.get_all("Via")[0])
    for value in request.headers.get_all("Route"):
        headers.add("Route", value)
    headers.add("From", request.headers.get("From"))
    headers.add("To", request.headers.get("To"))
    headers.add("Call-ID", request.headers.get("Call-ID"))
    headers.add("CSeq", f"{CSeq.parse(request.headers.get('CSeq')).number} CANCEL")
    headers.add("Max-Forwards", "70")
    return Request(headers=headers, method="CANCEL", uri=request.uri)


def _final(transaction: ClientTransaction) -> None:
    """A final response came: what is left of the transaction (Timer D, K or M,
    up to 32 s) only absorbs or passes on repeats of it, by key. The request and
    the response objects go (the ACK to a non-2xx is kept as bytes): under call
    load tens of thousands of these were alive, a good part of the objects the
    cyclic collector kept walking."""
    transaction.key  # noqa: B018  (cached: worked out from the request, kept without it)
    transaction.request = None
    transaction.last_response = None


def response_key(response: Response) -> tuple[str, str] | None:
    """§17.1.3: a response's client transaction key (top Via branch, CSeq method),
    or None for a response too broken to match anything. Worked out once and kept
    on the response: sipd offers each response it receives to the client
    transactions of several owners in turn (the qualifier, the trunks, MWI, the
    B2BUA: handler.py), and parsing the Via and CSeq again for each was a good
    part of what a call cost (about 30 µs a parse, four per response)."""
    key = response.__dict__.get("_client_key")
    if key is None:
        try:
            branch = Via.parse(response.headers.get("Via", "")).branch
            key = (branch or "", CSeq.parse(response.headers.get("CSeq", "")).method)
        except Exception:  # an unparseable response matches nothing
            key = ()
        response._client_key = key
    return key or None


class ClientTransactions:
    def __init__(self) -> None:
        self._table: dict[tuple[str, str], ClientTransaction] = {}
        self._deadlines = Deadlines()

    def _remind(self, transaction: ClientTransaction) -> None:
        self._deadlines.add(transaction.next_send, transaction.key)
        self._deadlines.add(transaction.timeout, transaction.key)

    def __len__(self) -> int:
        return len(self._table)

    def start(self, request: Request, reliable: bool, now: float,
              destination=None, context=None) -> ClientTransaction:
        transaction = ClientTransaction(
            request=request, data=bytes(request), reliable=reliable, created=now,
            method=request.method, destination=destination, context=context,
            state=State.CALLING if request.method == "INVITE" else State.TRYING,
        )
        # Timer A / E: retransmit over UDP from T1; Timer B / F: give up at 64*T1.
        transaction.next_send = None if reliable else now + T1
        transaction.timeout = now + 64 * T1
        self._table[transaction.key] = transaction
        self._remind(transaction)
        return transaction

    def match(self, response: Response) -> ClientTransaction | None:
        """§17.1.3: top Via branch and CSeq method."""
        key = response_key(response)
        return self._table.get(key) if key else None

    def receive(self, transaction: ClientTransaction, response: Response,
                now: float) -> tuple[Event, bytes | None]:
        """A response for `transaction`: what the TU gets, and anything to send now."""
        result = self._receive(transaction, response, now)
        self._remind(transaction)
        return result

    def _receive(self, transaction: ClientTransaction, response: Response,
                 now: float) -> tuple[Event, bytes | None]:
        status = response.status
        state = transaction.state
        if transaction.is_invite:
            if state in (State.CALLING, State.PROCEEDING):
                transaction.last_response = response
                transaction.next_send = None  # any response stops Timer A
                if status < 200:
                    transaction.state = State.PROCEEDING
                    transaction.timeout = None  # Timer B stops in Proceeding
                    return Event.DELIVER, None
                if status < 300:
                    # RFC 6026 §7.2: Accepted, Timer M absorbs further 2xx for the TU.
                    transaction.state = State.ACCEPTED
                    transaction.timeout = now + 64 * T1
                    _final(transaction)
                    return Event.DELIVER, None
                transaction.state = State.COMPLETED
                transaction.ack = bytes(build_ack(transaction.request, response))
                transaction.timeout = now + (0 if transaction.reliable else 32)  # Timer D
                _final(transaction)
                return Event.DELIVER, transaction.ack
            if state is State.ACCEPTED and 200 <= status < 300:
                return Event.DELIVER, None  # a 2xx retransmission: the TU ACKs again
            if state is State.COMPLETED and status >= 300:
                return Event.ABSORB, transaction.ack
            return Event.ABSORB, None
        if state in (State.TRYING, State.PROCEEDING):
            transaction.last_response = response
            if status < 200:
                transaction.state = State.PROCEEDING
                return Event.DELIVER, None
            transaction.state = State.COMPLETED
            transaction.next_send = None
            transaction.timeout = now + (0 if transaction.reliable else T4)  # Timer K
            _final(transaction)
            return Event.DELIVER, None
        return Event.ABSORB, None

    def tick(self, now: float) -> tuple[list[ClientTransaction], list[ClientTransaction]]:
        """Run the timers: (transactions to retransmit, transactions that timed out)."""
        resend, timed_out = [], []
        for key in self._deadlines.due(now):
            transaction = self._table.get(key)
            if transaction is None:
                continue
            if transaction.next_send is not None and transaction.next_send <= now:
                resend.append(transaction)
                if transaction.is_invite:
                    transaction.interval *= 2  # Timer A doubles without a cap
                elif transaction.state is State.PROCEEDING:
                    transaction.interval = T2  # §17.1.2.2: T2 once a 1xx came
                else:
                    transaction.interval = min(2 * transaction.interval, T2)
                transaction.next_send = now + transaction.interval
                self._deadlines.add(transaction.next_send, key)
            if transaction.timeout is not None and transaction.timeout <= now:
                if transaction.state in (State.CALLING, State.TRYING, State.PROCEEDING):
                    timed_out.append(transaction)  # Timer B / F
                transaction.state = State.TERMINATED
                del self._table[key]
        return resend, timed_out

    def forget(self, transaction: ClientTransaction) -> None:
        self._table.pop(transaction.key, None)
