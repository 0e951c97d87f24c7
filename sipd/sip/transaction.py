"""Server transactions for non-INVITE requests (RFC 3261 §17.2.2, matching §17.2.3).

A table of transactions keyed as §17.2.3 says; states are named as in the
RFC. The caller passes `now`; `expire(now)` runs Timer J. Nothing here sends:
`receive` tells the caller whether the request is new or a retransmission and
what (if anything) to send again.

INVITEs that we refuse (405 until the calls issue) go through the same table
so that a retransmitted INVITE gets the same final response again; their
ACKs are absorbed by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from sipd.sip.headers import CSeq, NameAddr, Via
from sipd.sip.message import Request

T1 = 0.5  # §17.1.1.1 RTT estimate, seconds
MAGIC_COOKIE = "z9hG4bK"  # §8.1.1.7


class State(Enum):
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    TERMINATED = "Terminated"


@dataclass
class ServerTransaction:
    key: tuple
    method: str
    reliable: bool
    created: float
    state: State = State.TRYING
    last_response: bytes | None = None
    timer_j: float | None = None  # when Completed ends


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
        "2543",
        request.uri,
        to.tag,
        sender.tag,
        request.headers.get("Call-ID"),
        cseq.number,
        str(top_via),
        method,
    )


class Received(Enum):
    NEW = "new"  # a new transaction: the TU must handle the request
    RETRANSMISSION = "retransmission"  # absorbed; resend `response` if not None


class ServerTransactions:
    def __init__(self) -> None:
        self._table: dict[tuple, ServerTransaction] = {}

    def __len__(self) -> int:
        return len(self._table)

    def receive(
        self, request: Request, top_via: Via, reliable: bool, now: float
    ) -> tuple[Received, ServerTransaction]:
        key = transaction_key(request, top_via)
        existing = self._table.get(key)
        if existing is not None and existing.state is not State.TERMINATED:
            # §17.2.2: in Trying a retransmission is discarded; in Proceeding
            # and Completed the last response is passed to the transport again.
            return Received.RETRANSMISSION, existing
        transaction = ServerTransaction(
            key=key, method=request.method, reliable=reliable, created=now
        )
        self._table[key] = transaction
        return Received.NEW, transaction

    def respond(self, transaction: ServerTransaction, status: int, data: bytes, now: float) -> None:
        """Record the response the TU sent through this transaction."""
        transaction.last_response = data
        if status < 200:
            transaction.state = State.PROCEEDING
            return
        transaction.state = State.COMPLETED
        # Timer J: 64*T1 for unreliable transports, zero for reliable ones.
        transaction.timer_j = now + (0 if transaction.reliable else 64 * T1)

    def expire(self, now: float, trying_limit: float = 64 * T1) -> int:
        """Fire Timer J; drop transactions left in Trying by a TU that never answered."""
        removed = 0
        for key, transaction in list(self._table.items()):
            done = transaction.timer_j is not None and transaction.timer_j <= now
            abandoned = (
                transaction.state is State.TRYING and now - transaction.created > trying_limit
            )
            if done or abandoned:
                transaction.state = State.TERMINATED
                del self._table[key]
                removed += 1
        return removed

    def forget(self, transaction: ServerTransaction) -> None:
        self._table.pop(transaction.key, None)
