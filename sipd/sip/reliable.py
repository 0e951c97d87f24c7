"""Reliable provisional responses: 100rel and PRACK (RFC 3262). Sans-IO: no
networking code, no clock of its own; the caller passes `now` and sends what
it is handed.

- `Provisionals`: the UAS side of one INVITE (§3). A 1xx other than 100 it is
  given goes out with Require: 100rel and an RSeq one higher than the last; it
  is retransmitted with T1 doubling (no T2 cap, unlike a 2xx) until the PRACK
  whose RAck names it; one reliable 1xx at a time, the next waiting for the
  PRACK of the one before; a 2xx waits for every PRACK; after 64*T1 without one
  the INVITE is to be refused with a 5xx.
- `Acknowledger`: the UAC side (§4): which reliable 1xx get a PRACK (the
  first of a dialog, then each RSeq one higher), and the RAck they carry.
- `rseq(value)`, `rack(value)`: the two headers (§7.1, §7.2).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sipd.sip.abnf import RACK_RE, RSEQ_RE
from sipd.sip.extensions import options
from sipd.sip.headers import CSeq
from sipd.sip.message import Response
from sipd.sip.transaction import T1

TAG = "100rel"
MAX_RSEQ = 2**32 - 1  # §7.1: response-num is a 32-bit unsigned integer, never 0


@dataclass(frozen=True)
class RAck:
    """§7.2: which reliable provisional response a PRACK acknowledges."""

    rseq: int
    cseq: int
    method: str

    def __str__(self) -> str:
        return f"{self.rseq} {self.cseq} {self.method}"


def rseq(value: str | None) -> int | None:
    """§7.1 `RSeq: response-num`; None when absent; ValueError when malformed."""
    if value is None:
        return None
    found = RSEQ_RE.match(value)
    number = int(found.group(1)) if found else 0
    if not 1 <= number <= MAX_RSEQ:
        raise ValueError(f"RSeq {value.strip()!r} is not a number from 1 to {MAX_RSEQ}")
    return number


def rack(value: str | None) -> RAck:
    """§7.2 `RAck: response-num CSeq-num Method`; ValueError when absent or malformed."""
    found = RACK_RE.match(value or "")
    if found is None:
        raise ValueError(f"RAck {(value or '').strip()!r} is not 'RSeq CSeq method'")
    return RAck(int(found.group(1)), int(found.group(2)), found.group(3))


def reliable(response: Response) -> bool:
    """§4: a 1xx (other than 100) with Require: 100rel is sent reliably."""
    return 100 < response.status < 200 and TAG in options(response, "Require")


# -- the UAS (§3) -----------------------------------------------------------------------


def wanted(invite) -> str | None:
    """How the caller of `invite` takes 100rel: "require" (all our 1xx must be
    reliable, §3), "supported" (we may choose, §3: we do for an 18x with SDP,
    whose early media must not be lost), None (never: §3, a UAS MUST NOT send a
    reliable 1xx to a request that neither Supports nor Requires it)."""
    if TAG in options(invite, "Require"):
        return "require"
    if TAG in options(invite, "Supported"):
        return "supported"
    return None


class _Outstanding:
    __slots__ = ("rseq", "data", "sdp", "interval", "resend_at", "give_up_at")

    def __init__(self, number: int, data: bytes, now: float, sdp: bool):
        self.rseq = number
        self.data = data
        self.sdp = sdp  # it carries a session description (an offer or an answer)
        self.interval = T1
        self.resend_at = now + T1
        self.give_up_at = now + 64 * T1


class Provisionals:
    """The reliable 1xx to one INVITE (§3), as the UAS sends them.

    `send(response, now)` -> the response to send now (stamped), or None while
    an earlier one waits for its PRACK (it is sent when that PRACK comes);
    `prack(rack, now)` -> (matched, response to send now or None);
    `hold(final)` -> whether a 2xx must wait (then `released()` gives it back
    once the last PRACK came); `due(now)` -> bytes to retransmit;
    `expired(now)`: 64*T1 without a PRACK; `deadline`: when to call `due` next.
    `sdp_sent`: a reliable 1xx with SDP went; `sdp_acked`: and its PRACK came
    (RFC 3311 §5.1 lets an UPDATE with an offer follow only then).
    """

    __slots__ = (
        "mode",
        "cseq",
        "retransmit",
        "next_rseq",
        "outstanding",
        "waiting",
        "held",
        "over",
        "sdp_sent",
        "sdp_acked",
    )

    def __init__(
        self, mode: str, cseq: int, retransmit: bool = True, first_rseq: int | None = None
    ):
        self.mode = mode  # "require" or "supported" (wanted)
        self.cseq = cseq  # the INVITE's: a PRACK's RAck names it (§7.2)
        # §3 has the UAS retransmit; over TCP/TLS the transport does (we keep the
        # 64*T1 limit), as legs.py does for a 2xx (RFC 3261 §13.3.1.4).
        self.retransmit = retransmit
        # §3: the first RSeq is chosen at random, below 2**31 so that it can grow.
        self.next_rseq = first_rseq if first_rseq is not None else secrets.randbelow(2**31 - 1) + 1
        self.outstanding: _Outstanding | None = None
        self.waiting: Response | None = None  # the next reliable 1xx, for after this PRACK
        self.held: Response | None = None  # a 2xx waiting for the PRACKs
        self.over = False  # a final response went: nothing more to acknowledge
        self.sdp_sent = False
        self.sdp_acked = False

    def wants(self, response: Response) -> bool:
        """Whether `response` (a 1xx) goes reliably: all of them when the caller
        Requires 100rel, else the 18x that carry SDP."""
        if self.over or not 100 < response.status < 200:
            return False
        return self.mode == "require" or bool(response.body)

    def send(self, response: Response, now: float) -> Response | None:
        if self.outstanding is None:
            return self._stamp(response, now)
        # §3: not a second reliable 1xx before the first is PRACKed. The newest
        # waits, except that one without SDP never takes the place of one with.
        if self.waiting is None or response.body or not self.waiting.body:
            self.waiting = response
        return None

    def _stamp(self, response: Response, now: float) -> Response:
        number = self.next_rseq
        self.next_rseq = number + 1  # §3: each next one is one higher
        response.headers.add("Require", TAG)
        response.headers.add("RSeq", str(number))
        self.outstanding = _Outstanding(number, bytes(response), now, bool(response.body))
        self.sdp_sent = self.sdp_sent or bool(response.body)
        return response

    def prack(self, ack: RAck, now: float) -> tuple[bool, Response | None]:
        """§3: a PRACK whose RAck matches the outstanding response (its RSeq,
        the INVITE's CSeq and method) stops its retransmissions; any other is
        for no response of ours (the caller answers it 481)."""
        outstanding = self.outstanding
        if (
            outstanding is None
            or ack.rseq != outstanding.rseq
            or ack.cseq != self.cseq
            or ack.method.upper() != "INVITE"
        ):
            return False, None
        self.outstanding = None
        self.sdp_acked = self.sdp_acked or outstanding.sdp
        waiting, self.waiting = self.waiting, None
        if waiting is not None and not self.over:
            return True, self._stamp(waiting, now)
        return True, None

    @property
    def pending(self) -> bool:
        return self.outstanding is not None or self.waiting is not None

    def hold(self, final: Response) -> bool:
        """A final response is to go: a 2xx waits while a reliable 1xx is not
        PRACKed (§3: MUST NOT when one carried SDP; we wait for all alike, so
        that the caller sees the 1xx before the answer); a non-2xx goes at
        once and ends the retransmissions (§3 allows it)."""
        if 200 <= final.status < 300 and self.pending:
            self.held = final
            self.waiting = None  # an 18x after the answer would say nothing
            return True
        self.finish()
        return False

    def released(self) -> Response | None:
        """The held 2xx, once no reliable 1xx is outstanding any more."""
        if self.held is None or self.outstanding is not None:
            return None
        held, self.held = self.held, None
        self.finish()
        return held

    def finish(self) -> None:
        self.over = True
        self.outstanding = None
        self.waiting = None

    @property
    def deadline(self) -> float | None:
        outstanding = self.outstanding
        if outstanding is None:
            return None
        if not self.retransmit:
            return outstanding.give_up_at
        return min(outstanding.resend_at, outstanding.give_up_at)

    def due(self, now: float) -> bytes | None:
        """§3: the outstanding 1xx to send again, its interval doubled."""
        outstanding = self.outstanding
        if outstanding is None or not self.retransmit or now < outstanding.resend_at:
            return None
        outstanding.interval *= 2
        outstanding.resend_at = now + outstanding.interval
        return outstanding.data

    def expired(self, now: float) -> bool:
        """§3: retransmitted for 64*T1 without its PRACK: the UAS SHOULD refuse
        the INVITE with a 5xx."""
        outstanding = self.outstanding
        return outstanding is not None and now >= outstanding.give_up_at


# -- the UAC (§4) -----------------------------------------------------------------------


class Acknowledger:
    """The reliable 1xx to one of our INVITEs, by early dialog (the To tag: §4,
    "in order within a transaction, but not across dialogs" when forked)."""

    __slots__ = ("last",)

    def __init__(self):
        self.last: dict[str | None, int] = {}  # To tag -> the last RSeq PRACKed

    def accept(self, response: Response, to_tag: str | None) -> RAck | None:
        """The RAck to PRACK a reliable 1xx (`reliable(response)`) with, or
        None: a retransmission (its PRACK went already: our PRACK's own
        transaction retransmits it, RFC 3261 §17.1.2) or out of order (§4:
        MUST NOT be PRACKed nor processed further). ValueError: no readable RSeq."""
        number = rseq(response.headers.get("RSeq"))
        if number is None:
            raise ValueError("reliable provisional response without RSeq")
        last = self.last.get(to_tag)
        if last is not None and number != last + 1:
            return None
        self.last[to_tag] = number
        cseq = CSeq.parse(response.headers.get("CSeq"))
        return RAck(number, cseq.number, cseq.method)
