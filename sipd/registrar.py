"""The registrar: digest authentication and bindings, on the database (RFC 3261 §10.3).

Every REGISTER reads the extension from the database, so a password set or an
extension disabled in the panel applies to the very next request; there is no
cache to go stale. Every outcome that is not a plain challenge is recorded as
an AuthAttempt with its cause, which is what the panel shows.
"""

from __future__ import annotations

import email.utils
import functools
import logging
import sqlite3
import time

from core.credentials import DEFAULT_ALGORITHMS, offered_algorithms
from core.credentials import ha1 as make_ha1
from sipd import store
from sipd.sip import digest
from sipd.sip.headers import URI, Credentials, CSeq, shared_name_addr
from sipd.sip.message import ParseError, Request, Response
from sipd.sip.registration import Policy, Refusal, plan, wanted_contacts
from sipd.sip.responses import make_response
from sipd.unanswered import Unanswered

log = logging.getLogger("sipd")

SUPPORTED = ("path", "outbound", "gruu")  # option tags we tolerate in Require (§8.2.2.3)
MAX_UA = 255


class Source:
    """Where a request really came from."""

    __slots__ = ("host", "port", "transport")

    def __init__(self, host: str, port: int, transport: str):
        self.host, self.port, self.transport = host, port, transport

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


class Destination:
    """Where we send: an address and the transport (a TCP/TLS peer is its connection)."""

    __slots__ = ("host", "port", "transport")

    def __init__(self, host: str, port: int, transport: str):
        self.host, self.port, self.transport = host, port, transport

    @property
    def reliable(self) -> bool:
        return self.transport != "UDP"

    def __repr__(self) -> str:
        return f"Destination({self.host!r}, {self.port}, {self.transport!r})"


class ProviderDestination(Destination):
    """A trunk's provider (sipd/trunks/path.py): over TCP, sipd opens the connection
    itself when it has none (a phone's connection is the phone's to open)."""

    __slots__ = ("name",)
    connect = True

    def __init__(self, host: str, port: int, transport: str, name: str = ""):
        super().__init__(host, port, transport)
        self.name = name  # as the trunk names it: what a TLS certificate must be for


def clean_text(value: str | None, limit: int = MAX_UA) -> str:
    """A peer-supplied string made safe to store and log: printable, bounded."""
    if not value:
        return ""
    if value.isprintable():
        return value[:limit]
    return "".join(c if c.isprintable() else "?" for c in value)[:limit]


class Registrar:
    def __init__(
        self,
        realm: str,
        minter: digest.NonceMinter,
        policy: Policy,
        clock=time.time,
        algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS,
    ):
        self.realm = realm
        # Offered to an extension without its own choice, and to unknown numbers.
        self.algorithms = algorithms
        self.minter = minter
        self.policy = policy
        self.nonce_counts = digest.NonceCounts(minter.lifetime)
        self.clock = clock
        # Told of failures that could tell a password guesser something
        # (sipd.security.Guard.auth_failed, set by the daemon).
        self.on_failure = None
        # Opaque is echoed by clients; it carries nothing, but some phones
        # refuse challenges without one.
        self.opaque = digest.H("MD5", f"opaque:{realm}")[:16]
        # Work done for an unknown extension, so that it costs what a known one costs.
        self._dummy = {
            "MD5": make_ha1("unknown", realm, "unknown", "MD5"),
            "SHA-256": make_ha1("unknown", realm, "unknown", "SHA-256"),
        }
        # REGISTER challenges not answered, for the panel (sipd/unanswered.py);
        # flush_unanswered() is run every few seconds by the daemon.
        self.unanswered = Unanswered(store.record_attempt, store.extension_exists)

    def flush_unanswered(self) -> None:
        try:
            self.unanswered.flush(self.clock())
        except sqlite3.Error as error:  # dblock.Unavailable too: the panel loses a row
            log.warning("Could not record unanswered challenges: %s", error)

    def offer(self, number: str, extension=None) -> tuple[str, ...]:
        """The challenges for `number`, most preferred first (RFC 8760 §2.3): the
        extension's own choice (`pbxctl ext digest`) or the PBX's.

        Read from the database at each challenge, as the rest of the extension is
        at each REGISTER, so a change applies to the next one. An unknown number
        gets the PBX's choice, as does every extension without its own: only an
        extension given its own choice is challenged differently from a number
        that does not exist (docs/security.md).
        """
        own = extension.digest_algorithms if extension is not None else store.digest_algorithms(
            number)
        return _offered(own, self.algorithms)

    # -- the entry point ------------------------------------------------------

    def register(self, request: Request, source: Source) -> Response:
        # A request that fails half-way leaves nothing queued (in a batch, the
        # savepoint of a transaction of its own is this mark).
        position = store.mark()
        try:
            return self._register(request, source)
        except BaseException:
            store.undo(position)
            raise

    def _register(self, request: Request, source: Source) -> Response:
        now = self.clock()
        user_agent = clean_text(request.headers.get("User-Agent"))
        try:
            to, _ = shared_name_addr(request.headers.get("To", ""))  # read only
            if not to.uri.is_sip:
                raise Refusal(416, "Unsupported URI Scheme")
            if not to.uri.user:
                raise Refusal(400, "Bad Request: To has no user part")
            self._check_require(request)
            number = to.uri.user
            extension = self._authenticate(request, number, source, user_agent, now)
            if isinstance(extension, Response):
                return extension
            return self._bind(request, extension, to, source, user_agent, now)
        except Refusal as refusal:
            return make_response(request, refusal.status, refusal.reason, refusal.headers)
        except ParseError as error:
            return make_response(request, 400, f"Bad Request: {error}")

    def _check_require(self, request: Request) -> None:
        required = [t.strip() for t in request.headers.get_all("Require")]
        unsupported = [t for t in required if t.lower() not in SUPPORTED]
        if unsupported:
            raise Refusal(420, "Bad Extension", [("Unsupported", ", ".join(unsupported))])

    # -- authentication (RFC 7616, RFC 8760, RFC 3261 §22) ------------------------

    def challenge(
        self, request: Request, source: Source, stale: bool = False, proxy: bool = False,
        algorithms: tuple[str, ...] | None = None,
    ) -> Response:
        """401 with WWW-Authenticate, or for calls 407 with Proxy-Authenticate (§22.3),
        one per algorithm, most preferred first (RFC 8760 §2.3; the PBX's choice
        when `algorithms` is None).

        The nonce is bound to the address the challenge goes to (§18.2.2: the
        source's), so that only who receives there can answer it.
        """
        nonce = self.minter.mint(self.clock(), source.host)
        header = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        offered = self.algorithms if algorithms is None else algorithms
        headers = [
            (header, value)
            for value in digest.challenges(self.realm, nonce, self.opaque, stale, offered)
        ]
        if proxy:
            return make_response(request, 407, "Proxy Authentication Required", headers)
        return make_response(request, 401, "Unauthorized", headers)

    def _credentials(self, request: Request, proxy: bool = False):
        """The Digest credentials for our realm; others are for someone else (§22.4).

        For calls, Proxy-Authorization answers our 407; Authorization is accepted
        too, since some phones answer a 407 with it.
        """
        found = None
        values = request.headers.get_all("Authorization")
        if proxy:
            values = request.headers.get_all("Proxy-Authorization") + values
        for value in values:
            credentials = Credentials.parse(value)
            checked = digest.CheckedCredentials.from_credentials(credentials)
            if checked is None:
                if credentials.get("realm") == self.realm:
                    raise Refusal(400, "Bad Request: incomplete Digest credentials")
                continue
            if checked.realm == self.realm:
                found = checked
        return found

    def _authenticate(self, request, number, source, user_agent, now, proxy=False):
        """The extension that proved its password, or the Response to send instead."""
        credentials = self._credentials(request, proxy)
        if credentials is None:
            log.info(
                "[SIP] Sending %s challenge for %s to %s", 407 if proxy else 401, number, source
            )
            offered = self.offer(number)
            if not proxy:
                self.unanswered.challenged(number, source, user_agent, offered, now)
            return self.challenge(request, source, proxy=proxy, algorithms=offered)
        if not proxy:
            self.unanswered.answered(number, source.host)

        def fail(reason, status=403, stale=False, fresh=False, guess=False):
            self._record(number, source, user_agent, "failure", reason, request.method)
            log.warning("[SIP] Authentication failed for %s from %s: %s", number, source, reason)
            if guess and self.on_failure is not None:
                self.on_failure(number, source, reason)
            if fresh or stale:
                return self.challenge(request, source, stale=stale, proxy=proxy,
                                      algorithms=self.offer(number))
            if status == 400:
                return make_response(request, 400, f"Bad Request: {reason}")
            return make_response(request, status, "Forbidden")

        # The nonce first: whether it is ours, and was sent to this address, says
        # nothing about a password or an extension. A request whose nonce was sent
        # elsewhere may come from a forged source (UDP), so it gets a fresh
        # challenge (stale=true, which phones answer unasked; RFC 7616 §3.3 sets it
        # only for a right response, but a right/wrong difference here would be a
        # password oracle that no ban counts) and is never an offence: only a
        # source that received our nonce can be blamed for what it sends.
        state = self.minter.check(credentials.nonce, now, source.host)
        if state is digest.NonceState.INVALID:
            return fail(digest.Verdict.INVALID_NONCE.value, fresh=True)
        if state is digest.NonceState.ELSEWHERE:
            issued_to = self.minter.issued_to(credentials.nonce)
            if issued_to is None:
                return fail("nonce was issued before sipd was upgraded", stale=True)
            return fail(f"nonce was issued to {issued_to}", stale=True)
        if credentials.username != number:
            return fail(
                f"authentication user {clean_text(credentials.username, 64)} "
                f"does not match extension {number}",
                guess=True,
            )
        if credentials.uri != request.uri and not _same_uri(credentials.uri, request.uri):
            # RFC 7616 §3.4.6: the digest uri should be the Request-URI, else 400.
            return fail("digest uri does not match the Request-URI", status=400)

        # A REGISTER reads the bindings with the extension (one statement).
        extension = store.extension(number, bindings=not proxy)
        algorithm = credentials.algorithm or "MD5"
        if extension is None or extension.realm != self.realm:
            ha1 = self._dummy.get(algorithm, self._dummy["MD5"])
        else:
            ha1 = extension.ha1_sha256 if algorithm == "SHA-256" else extension.ha1_md5
        verdict = digest.verify(credentials, ha1, request.method, state)

        # Verdicts that do not depend on the password come first, so that an
        # unknown extension gets exactly what a known one would (no enumeration).
        if verdict is digest.Verdict.MALFORMED or verdict is digest.Verdict.BAD_NC:
            return fail(verdict.value, status=400)
        if extension is None:
            return fail("unknown extension", guess=True)
        if extension.realm != self.realm:
            return fail(
                f"password was set for realm {extension.realm!r}, not {self.realm!r}; set it again"
            )
        if verdict is not digest.Verdict.OK and verdict is not digest.Verdict.STALE:
            return fail(verdict.value, guess=verdict is digest.Verdict.WRONG)
        offered = self.offer(number, extension)
        if algorithm not in offered:
            # Not what this extension is challenged with (the admin chose SHA-256
            # alone for it, say): refused, as a downgrade would be (RFC 8760 §3).
            return fail(f"digest algorithm {algorithm} is not offered")
        if not extension.enabled:
            return fail("extension disabled")
        if verdict is digest.Verdict.STALE:
            # RFC 7616 §3.3: right password, old nonce: challenge again with stale=true,
            # which phones answer without asking the user.
            log.info("[SIP] Stale nonce from %s for %s, sending a fresh challenge", source, number)
            return self.challenge(request, source, stale=True, proxy=proxy, algorithms=offered)
        if not self.nonce_counts.accept(credentials.nonce, credentials.nc or "", now):
            return fail(digest.Verdict.REPLAY.value, stale=True)
        return extension

    authenticate = _authenticate

    def _record(self, number, source, user_agent, result, reason, method="REGISTER"):
        store.record_attempt(
            self.clock(),
            clean_text(number, 64),
            method,
            source.host,
            source.port,
            source.transport,
            user_agent,
            result,
            reason[:255],
        )

    # -- bindings (RFC 3261 §10.3 steps 6-8) --------------------------------------

    def _bind(self, request, extension, to, source, user_agent, now) -> Response:
        wanted = wanted_contacts(request, self.policy)
        call_id = request.headers.get("Call-ID") or ""
        cseq = CSeq.parse(request.headers.get("CSeq") or "")
        aor = to.uri.address_of_record()
        # In a batch the writes are queued and committed together (sipd/store.py),
        # and the bindings were read with the extension; alone (TCP, TLS), they are
        # read again inside one (immediate) transaction with the writes.
        with store.transaction():
            found = extension.bindings if store.batching() else store.bindings(extension.id)
            # Expired bindings are gone (§10.3): deleted with this request's removals
            # and left out of what the plan and the 200 see. The 200's list is
            # worked out here instead of read back.
            rows, expired = [], []
            for row in found:
                (rows if row.expires_at > now else expired).append(row)
            changes = plan(rows, wanted, call_id, cseq.number, self.policy, source.host,
                           user_agent)
            common = {
                "source_host": source.host,
                "source_port": source.port,
                "transport": source.transport,
                "call_id": call_id[:255],
                "cseq": cseq.number,
                "user_agent": user_agent,
                "updated_at": now,
                "aor": aor[:255],
            }
            store.delete_bindings([b.id for b in expired] + [b.id for b in changes.remove])
            refreshed = {}
            for binding, contact in changes.refresh:
                store.refresh_binding(binding.id, _binding_values(common, contact, now))
                refreshed[binding.id] = (contact.uri, now + contact.expires)
            for contact in changes.add:
                store.add_binding(extension.id, _binding_values(common, contact, now), now)
            store.supersede_bindings([b.id for b in changes.superseded], now)
            if not changes.query_only:
                self._record(
                    extension.number,
                    source,
                    user_agent,
                    "success",
                    _summary(changes),
                    request.method,
                )
        removed = {b.id for b in changes.remove}
        current = [
            refreshed.get(b.id, (b.contact, b.expires_at)) for b in rows if b.id not in removed
        ] + [(contact.uri, now + contact.expires) for contact in changes.add]
        self._log_changes(extension.number, source, user_agent, changes)
        headers = [
            ("Contact", f"<{contact}>;expires={max(0, int(round(expires_at - now)))}")
            for contact, expires_at in current
        ]
        # §10.3 step 8: the 200 lists all current bindings and SHOULD carry a Date.
        headers.append(("Date", _http_date(now)))
        return make_response(request, 200, "OK", headers)

    def _log_changes(self, number, source, user_agent, changes) -> None:
        agent = f" ({user_agent})" if user_agent else ""
        for contact in changes.add:
            log.info(
                "Extension %s registered from %s%s, expires %d s",
                number,
                source,
                agent,
                contact.expires,
            )
        for binding in changes.superseded:
            log.info(
                "Extension %s: %s looks like an earlier registration of the phone at %s%s;"
                " probing it, dropped unless it answers",
                number, binding.contact, source, agent,
            )
        for binding, contact in changes.refresh:
            if binding.contact != contact.uri:
                # The same phone (+sip.instance) back from a new port (registration.py).
                log.info(
                    "Extension %s registered again from %s%s as %s, replaced %s",
                    number, source, agent, contact.uri, binding.contact,
                )
                continue
            log.debug(
                "Extension %s refreshed from %s%s, expires %d s",
                number,
                source,
                agent,
                contact.expires,
            )
        for binding in changes.remove:
            log.info("Extension %s unregistered %s from %s", number, binding.contact, source)


_offered = functools.lru_cache(maxsize=64)(offered_algorithms)

_DATE = [0, ""]


def _http_date(now: float) -> str:
    """The Date header (§20.17), formatted once a second rather than once a request."""
    second = int(now)
    if _DATE[0] != second:
        _DATE[:] = [second, email.utils.formatdate(second, usegmt=True)]
    return _DATE[1]


def _binding_values(common: dict, contact, now: float) -> dict:
    return dict(common, contact=contact.uri, expires_at=now + contact.expires,
                instance=contact.instance, q=contact.q)


def _summary(changes) -> str:
    if changes.add:
        return "registered"
    if changes.refresh:
        return "refreshed"
    if changes.remove:
        return "unregistered"
    return "queried"


def _same_uri(digest_uri: str, request_uri: str) -> bool:
    """The digest uri names the Request-URI, or at least the same server.

    A deliberate leniency: some clients (sipp 3.6) sign sip:HOST:PORT of the
    server instead of the full Request-URI of an INVITE (sip:1002@HOST:PORT).
    The response still binds method, nonce and server; what is refused is a
    credential made for another server.
    """
    try:
        signed, requested = URI.parse(digest_uri), URI.parse(request_uri)
    except ParseError:
        return False
    if str(signed).lower() == str(requested).lower():
        return True
    return (
        signed.user is None and signed.host == requested.host
        and (signed.port or 5060) == (requested.port or 5060)
    )
