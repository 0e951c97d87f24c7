"""From received bytes to the responses to send: validation, transactions, methods.

The transports call `handle` with what arrived and where from, and send what
it returns. Nothing a peer sends may raise out of here: a bug answers 500 and
is logged, and the daemon goes on serving everyone else.
"""

from __future__ import annotations

import functools
import logging
import time
from contextlib import contextmanager

from gevent import getcurrent

from sipd import dblock, store
from sipd.registrar import Destination, Registrar, Source
from sipd.sip.headers import URI, CSeq, Via
from sipd.sip.message import ParseError, Request, Response, parse
from sipd.sip.message import key as header_key
from sipd.sip.responses import make_response, response_destination, stamp_via, stamped_text
from sipd.sip.transaction import Received, ServerTransaction, ServerTransactions

log = logging.getLogger("sipd")

ALLOW = "REGISTER, OPTIONS"
# Methods we know but do not handle yet: 405 with Allow (RFC 3261 §21.4.6);
# anything else is 501 (§8.2.1).
KNOWN_METHODS = frozenset(
    {
        "INVITE",
        "ACK",
        "BYE",
        "CANCEL",
        "REGISTER",
        "OPTIONS",
        "PRACK",
        "SUBSCRIBE",
        "NOTIFY",
        "PUBLISH",
        "INFO",
        "REFER",
        "MESSAGE",
        "UPDATE",
    }
)
SERVER = "pbx-sipd"
REQUIRED = ("Via", "From", "To", "Call-ID", "CSeq")
# Headers that may appear once only (RFC 3261 §7.3.1, RFC 4475 §3.3.8-9).
SINGULAR = ("From", "To", "Call-ID", "CSeq", "Max-Forwards", "Content-Length", "Expires")
# With the keys Headers.index() uses, looked up once here rather than per request.
_REQUIRED_KEYS = tuple((name, header_key(name)) for name in REQUIRED)
_SINGULAR_KEYS = tuple((name, header_key(name)) for name in SINGULAR)


class Outgoing:
    """Bytes to send; `destination` None means back on the connection it came on."""

    __slots__ = ("data", "destination")

    def __init__(self, data: bytes, destination: tuple[str, int] | None):
        self.data, self.destination = data, destination


class Handler:
    def __init__(self, registrar: Registrar, clock=time.time):
        self.registrar = registrar
        self.transactions = ServerTransactions()
        self.clock = clock
        # Set by the daemon when calls are enabled: the B2BUA and the transports'
        # send(data, Destination) for what is not an immediate answer.
        self.calls = None
        self.send = None
        # The qualifier's OPTIONS probes (sipd/qualifier.py), in the main sipd when enabled.
        self.qualifier = None
        # Message waiting (sipd/mwi.py): SUBSCRIBE message-summary and our NOTIFYs'
        # responses, in the main sipd when calls are enabled.
        self.mwi = None
        # Inside batch(): the transactions begun and the work to run after the commit,
        # and the greenlet of the batch (others handle requests while it waits for
        # the database's write lock: theirs are not part of it).
        self._begun: list | None = None
        self._after: list | None = None
        self._batcher = None

    @contextmanager
    def batch(self):
        """Handle several requests with one database commit (group commit).

        The registrar's writes are queued and committed together at the end
        (sipd/store.py), so the responses must only be sent after this block,
        once the bindings they report are on disk. Work that writes through
        another connection (a ban) also waits for the end, so it never waits on
        the lock of our own transaction. If the commit fails, the transactions
        begun here are forgotten, so a retransmission is handled afresh instead
        of answered from memory.
        """
        self._begun, self._after, self._batcher = [], [], getcurrent()
        store.begin_batch()
        try:
            yield
            store.commit_batch()
        except Exception:
            for transaction in self._begun:
                self.transactions.forget(transaction)
            raise
        finally:
            store.end_batch()
            after, self._begun, self._after, self._batcher = self._after, None, None, None
            for function, args in after:
                try:
                    function(*args)
                except Exception:
                    log.exception("[SIP] Deferred work failed")

    def _batching(self) -> bool:
        return self._batcher is not None and self._batcher is getcurrent()

    def after_commit(self, function, *args) -> None:
        """Run function(*args) now, or at the end of the current batch()."""
        if self._batching():
            self._after.append((function, args))
        else:
            function(*args)

    def respond(self, transaction, response: Response) -> None:
        """Send a response through its server transaction, now or later (the B2BUA's path)."""
        data = bytes(response)
        if not transaction.stateless:
            self.transactions.respond(transaction, response.status, data, self.clock())
        if self.send is not None and transaction.destination is not None:
            self.send(data, transaction.destination)

    def handle(self, data: bytes, source: Source, stream: bool = False) -> list[Outgoing]:
        try:
            return self._handle(data, source, stream)
        except dblock.Unavailable as error:
            if self._batching():
                raise  # the batch fails as a whole: the transport answers each
            log.error("[SIP] Could not store a request from %s: %s", source, error)
            return self.unavailable(data, source, stream)
        except Exception:
            # Last line of defence: a bug in parsing must not take the daemon down.
            log.exception("[SIP] Internal error on a message from %s", source)
            return []

    def _handle(self, data: bytes, source: Source, stream: bool) -> list[Outgoing]:
        reliable = source.transport != "UDP"
        try:
            message = parse(data, stream=stream)
        except ParseError as error:
            return self._malformed(error, source, reliable)
        if isinstance(message, Response):
            # To the owner of its client transaction: a probe of the qualifier's, or the B2BUA's.
            if self.qualifier is not None and self.qualifier.response(message, source):
                return []
            if self.mwi is not None and self.mwi.response(message, source):
                return []
            if self.calls is not None:
                self.calls.response(message, source)
            return []
        try:
            return self._request(message, source, reliable)
        except dblock.Unavailable:
            raise  # not a bug: handle() answers 503
        except Exception:
            log.exception("[SIP] Internal error handling %s from %s", message.method, source)
            try:
                via = Via.parse(message.headers.get("Via", ""))
                return self._send(make_response(message, 500), via, source, reliable)
            except Exception:
                return []

    def unavailable(self, data: bytes, source: Source, stream: bool = False) -> list[Outgoing]:
        """503 with Retry-After for a request that needed the database while it
        stayed locked (RFC 3261 §21.5.4: "temporarily unable to process the
        request"; the phone comes back after Retry-After seconds). Nothing of
        it was stored, and no transaction keeps it: a retransmission is handled
        afresh."""
        try:
            request = parse(data, stream=stream)
            if not isinstance(request, Request) or request.method == "ACK":
                return []
            top = request.headers.get("Via") or ""
            via = Via.parse(top)
            request.headers.replace_first(
                "Via", stamped_text(top, via, (source.host, source.port))
            )
        except ParseError:
            return []
        response = make_response(request, 503, None, [("Retry-After", str(dblock.RETRY_AFTER))])
        return self._send(response, via, source, source.transport != "UDP")

    def _malformed(self, error: ParseError, source: Source, reliable: bool) -> list[Outgoing]:
        partial = error.partial
        if isinstance(partial, Request) and all(partial.headers.get(n) for n in REQUIRED):
            try:
                via = stamp_via(Via.parse(partial.headers.get("Via")), (source.host, source.port))
                partial.headers.set("Via", str(via))
                log.warning("[SIP] Bad request from %s: %s", source, error)
                reason = f"Bad Request: {error}" if error.status == 400 else None
                response = make_response(partial, error.status, reason)
                return self._send(response, via, source, reliable)
            except ParseError:
                pass
        log.info("[SIP] Dropped malformed message from %s: %s", source, error)
        return []

    def _request(self, request: Request, source: Source, reliable: bool) -> list[Outgoing]:
        index = request.headers.index()
        for name, key in _REQUIRED_KEYS:
            values = index.get(key)
            if not values or not values[0]:
                raise_missing = f"missing {name} header"
                if name == "Via":
                    log.info("[SIP] Dropped %s from %s: %s", request.method, source, raise_missing)
                    return []
                return self._bad(request, source, reliable, raise_missing)
        try:
            top = index["via"][0]
            # The Via as received (what the transaction and the response's
            # destination read), and in the request the stamped one (§18.2.1).
            via = Via.parse(top)
        except ParseError as error:
            log.info("[SIP] Dropped %s from %s: %s", request.method, source, error)
            return []
        for name, key in _SINGULAR_KEYS:
            values = index.get(key)
            if values is not None and len(values) > 1:
                return self._bad(request, source, reliable, f"more than one {name} header", via)
        request.headers.replace_first("Via", stamped_text(top, via, (source.host, source.port)))
        try:
            cseq = CSeq.parse(request.headers.get("CSeq"))
            if cseq.method != request.method:
                # §8.1.1.5: the CSeq method MUST match the request's.
                raise ParseError("CSeq method does not match the request method")
            is_sip = _is_sip_uri(request.uri)
        except ParseError as error:
            return self._bad(request, source, reliable, str(error), via)
        now = self.clock()
        if request.method == "ACK":
            # §17.2.1: the ACK to a final non-2xx belongs to the INVITE's transaction;
            # the ACK to a 2xx is a request of its own within the dialog (§13.2.2.4).
            invite = self.transactions.find(request, via, "INVITE")
            if invite is not None:
                self.transactions.ack(invite, now)
            elif self.calls is not None:
                self.calls.ack(request, source)
            return []
        if self._challenge_only(request, index, is_sip):
            # §8.2.7: a request without credentials, which gets a challenge (401,
            # 407) or an error, is answered statelessly, so that a flood of them
            # leaves no transaction state behind (the 401s were half of what a
            # registration storm held for Timer J's 32 s). A retransmission gets
            # a new challenge, as valid as the first, with the same To tag
            # (to_tag_for); a 407 is never retransmitted (no Timer G), its ACK is
            # ignored, and a lost one is recovered by the caller's retransmission.
            if log.isEnabledFor(logging.INFO):
                log.info("[SIP] Received %s from %s", request.method, source)
            if request.method == "REGISTER":
                response = self._answer(request, source, is_sip)
                destination = response_destination(via, (source.host, source.port), reliable)
                return [Outgoing(bytes(response), destination)]
            transaction = ServerTransaction(
                key=None, method="INVITE", reliable=reliable, created=now, stateless=True,
                destination=_destination(via, source, reliable),
            )
            self.calls.invite(request, via, source, transaction)
            return []
        try:
            received, transaction = self.transactions.receive(request, via, reliable, now)
        except ParseError as error:
            return self._bad(request, source, reliable, str(error), via)
        if received is Received.NEW and self._batching():
            self._begun.append(transaction)
        if received is Received.RETRANSMISSION:
            if transaction.last_response is None:
                return []
            log.debug("[SIP] Retransmission of %s from %s answered again", request.method, source)
            return [
                Outgoing(
                    transaction.last_response,
                    response_destination(via, (source.host, source.port), reliable),
                )
            ]
        if log.isEnabledFor(logging.INFO):
            log.info("[SIP] Received %s from %s", request.method, source)
        if self.calls is not None and is_sip and self._for_calls(request):
            transaction.destination = _destination(via, source, reliable)
            if request.method == "INVITE" and not _has_to_tag(request):
                self.calls.invite(request, via, source, transaction)
            elif request.method == "CANCEL":
                invite = self.transactions.find(request, via, "INVITE")
                if not self.calls.cancel(request, transaction, invite, source):
                    # Refused as not the caller's: a stranger that copied the
                    # INVITE's branch must not take the caller's CANCEL (§9.1).
                    self.transactions.forget(transaction)
            else:
                self.calls.in_dialog(request, source, transaction)
            return []
        response = self._answer(request, source, is_sip)
        data = bytes(response)
        self.transactions.respond(transaction, response.status, data, now)
        return [Outgoing(data, response_destination(via, (source.host, source.port), reliable))]

    def _answer(self, request: Request, source: Source, is_sip: bool) -> Response:
        if is_sip:
            response = self._dispatch(request, source)
        else:
            response = make_response(request, 416)  # §8.2.2.1
        response.headers.add("Server", SERVER)
        return response

    def _challenge_only(self, request: Request, index: dict, is_sip: bool) -> bool:
        """A REGISTER without Authorization, or a new call (the B2BUA's) with
        neither Authorization nor Proxy-Authorization: all it can get is a
        challenge or an error."""
        if request.method == "REGISTER":
            return "authorization" not in index
        return (
            request.method == "INVITE"
            and self.calls is not None
            and is_sip
            and "authorization" not in index
            and "proxy-authorization" not in index
            and not _has_to_tag(request)
        )

    def _for_calls(self, request: Request) -> bool:
        method = request.method
        if method in ("INVITE", "CANCEL", "BYE"):
            return True
        if method == "SUBSCRIBE" and self.mwi is not None:
            return False  # a refresh of a message-summary subscription (sipd/mwi.py)
        # Anything else with a To tag belongs to a dialog (§12.2.2).
        return method != "REGISTER" and _has_to_tag(request)

    def _dispatch(self, request: Request, source: Source) -> Response:
        method = request.method
        if method == "REGISTER":
            return self.registrar.register(request, source)
        if method == "SUBSCRIBE" and self.mwi is not None:
            return self.mwi.subscribe(request, source)
        if method == "OPTIONS":
            # Keep-alives and monitoring (§11.2): what we accept, for anyone.
            return make_response(
                request,
                200,
                "OK",
                [
                    ("Allow", ALLOW),
                    ("Accept", "application/sdp"),
                    ("Accept-Language", "en"),
                    ("Supported", "path"),
                ],
            )
        if method == "CANCEL":
            return make_response(request, 481)  # §9.2: nothing pending to cancel
        if method in KNOWN_METHODS:
            return make_response(request, 405, None, [("Allow", ALLOW)])
        return make_response(request, 501, None, [("Allow", ALLOW)])

    def _bad(self, request, source, reliable, reason, via=None) -> list[Outgoing]:
        if via is None:
            try:
                via = Via.parse(request.headers.get("Via"))
            except ParseError as error:  # nowhere to answer (found by tests/fuzz)
                log.info("[SIP] Dropped %s from %s: %s, %s", request.method, source, reason, error)
                return []
        log.warning("[SIP] Bad request from %s: %s", source, reason)
        return self._send(
            make_response(request, 400, f"Bad Request: {reason}"), via, source, reliable
        )

    def _send(self, response: Response, via: Via, source: Source, reliable: bool):
        response.headers.add("Server", SERVER)
        return [
            Outgoing(
                bytes(response), response_destination(via, (source.host, source.port), reliable)
            )
        ]

    def expire(self) -> None:
        self.transactions.expire(self.clock())

    def tick(self) -> None:
        for transaction in self.transactions.tick(self.clock()):
            # Timer G: the final non-2xx to an INVITE again, until its ACK.
            if self.send is not None and transaction.destination is not None:
                self.send(transaction.last_response, transaction.destination)
        if self.calls is not None:
            self.calls.tick()


@functools.lru_cache(maxsize=1024)
def _is_sip_uri(text: str) -> bool:
    """Whether a Request-URI is sip: or sips: (ParseError if it is no URI at all).

    Kept per distinct text: every phone of a domain registers to the same one."""
    return URI.parse(text).is_sip


def _has_to_tag(request: Request) -> bool:
    value = request.headers.get("To") or ""
    return ";tag=" in value.replace(" ", "").lower()


def _destination(via: Via, source: Source, reliable: bool) -> Destination:
    address = response_destination(via, (source.host, source.port), reliable)
    if address is None:
        return Destination(source.host, source.port, source.transport)
    return Destination(address[0], address[1], "UDP")
