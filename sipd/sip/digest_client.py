"""HTTP Digest as a client: answering a provider's 401/407 (RFC 3261 §22.2-22.4,
RFC 7616 with the SIP rules of RFC 8760), for the trunks that register to a
phone provider and send calls through it.

No I/O: no sockets, no clock, no database. The response and the request's
method and URI come in, header values go out; the cnonce comes from a function
given (random unless a test gives one). The server side, whose parsing and H()
this reuses, is sipd/sip/digest.py.

Not supported, deliberately: the `-sess` algorithms (their HA1 is bound to the
first cnonce of a nonce, RFC 7616 §3.4.2, and providers do not ask for them),
qop=auth-int (a hash of the body, RFC 7616 §3.4.3), `userhash` (RFC 7616
§3.4.4: the server MAY refuse a plain username; we send the plain one) and
SHA-512-256. A challenge that asks only for those is skipped, and a response
with nothing else left says so (`ClientCredentials.challenged`).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

from sipd.sip.digest import H, expected_response, normalize_algorithm
from sipd.sip.headers import Credentials, quote_string
from sipd.sip.message import ParseError, Response

# RFC 3261 §22.2, §22.3: a 401 carries WWW-Authenticate, answered in
# Authorization; a 407 Proxy-Authenticate, answered in Proxy-Authorization.
# A forking proxy puts both kinds in the one response it forwards (§16.7
# step 6), so both are read from either status.
ANSWER_HEADER = {"WWW-Authenticate": "Authorization", "Proxy-Authenticate": "Proxy-Authorization"}

# How many times in a row a provider may answer a fresh nonce with stale=true
# before that is taken as a refusal rather than a nonce that aged in flight.
MAX_STALE_IN_A_ROW = 2


class ChallengeError(ValueError):
    """A challenge we cannot answer, and why (a phrase for the log and the panel)."""


@dataclass(frozen=True)
class Challenge:
    """One Digest challenge (RFC 7616 §3.3) we are able to answer."""

    header: str  # "WWW-Authenticate" or "Proxy-Authenticate"
    realm: str
    nonce: str
    algorithm: str  # "MD5" or "SHA-256" (digest.HASHES)
    algorithm_given: bool  # False: absent, which means MD5 (RFC 7616 §3.3)
    opaque: str | None
    qop: str | None  # "auth", or None for the RFC 2069 form
    stale: bool

    @property
    def answer_header(self) -> str:
        return ANSWER_HEADER[self.header]

    @classmethod
    def parse(cls, header: str, value: str) -> Challenge:
        """The challenge in one header value; ChallengeError if we cannot answer it."""
        try:
            parsed = Credentials.parse(value)  # challenge = auth-scheme 1*SP auth-param list
        except ParseError as error:
            raise ChallengeError(f"malformed challenge: {error}") from None
        if parsed.scheme.lower() != "digest":
            raise ChallengeError(f"authentication scheme {parsed.scheme[:32]!r} is not Digest")
        realm, nonce = parsed.get("realm"), parsed.get("nonce")
        if realm is None or not nonce:
            raise ChallengeError("challenge without a realm or a nonce")
        given = parsed.get("algorithm")
        # RFC 7616 §3.3: absent means MD5. normalize_algorithm knows MD5 and
        # SHA-256 only, so "MD5-sess", "SHA-256-sess" and "SHA-512-256" are None.
        algorithm = normalize_algorithm(given)
        if algorithm is None:
            raise ChallengeError(f"digest algorithm {given[:32]!r} is not supported")
        return cls(
            header=header,
            realm=realm,
            nonce=nonce,
            algorithm=algorithm,
            algorithm_given=given is not None,
            opaque=parsed.get("opaque"),
            qop=_qop(parsed.get("qop")),
            # RFC 7616 §3.3: stale is "true" or "false", case-insensitive.
            stale=(parsed.get("stale") or "").strip().lower() == "true",
        )


def _qop(offered: str | None) -> str | None:
    """The qop we answer with: RFC 7616 §3.3 qop-options is a quoted list
    ("auth,auth-int"); absent means the RFC 2069 form (RFC 2617 §3.2.2.1)."""
    if offered is None:
        return None
    options = {option.strip().lower() for option in offered.split(",")}
    if "auth" in options:
        return "auth"
    raise ChallengeError(f"qop {offered[:32]!r} offered without auth (auth-int is not supported)")


def choose(response: Response) -> tuple[list[Challenge], list[str]]:
    """The challenges to answer in `response`, one per realm, and why the others were skipped.

    RFC 8760 §2.4: of the challenges for one realm, the UAC uses the topmost it
    supports; the server lists them most preferred first (RFC 8760 §2.3, RFC
    7616 §3.7), so SHA-256 wins over MD5 only when the server put it first.
    RFC 3261 §22.3: a request forked to several proxies may be challenged for
    several realms, and credentials go for each; the realms keep the order of
    their first challenge.
    """
    chosen: dict[tuple[str, str], Challenge] = {}
    skipped: list[str] = []
    for header in ANSWER_HEADER:
        for value in response.headers.get_all(header):
            try:
                challenge = Challenge.parse(header, value)
            except ChallengeError as error:
                skipped.append(str(error))
                continue
            chosen.setdefault((header, challenge.realm), challenge)
    return list(chosen.values()), skipped


def authorization(
    challenge: Challenge,
    method: str,
    uri: str,
    username: str,
    password: str,
    nc: int = 1,
    cnonce: str | None = None,
) -> str:
    """The Authorization / Proxy-Authorization value answering `challenge`.

    RFC 7616 §3.4.1: response = KD(HA1, nonce:nc:cnonce:qop:HA2) with
    HA1 = H(username:realm:password) and HA2 = H(method:digest-uri); without
    qop, the RFC 2069 form KD(HA1, nonce:HA2) and no cnonce or nc (RFC 2617
    §3.2.2.1). RFC 3261 §22.4: the digest-uri is the Request-URI as sent, and
    the method the request's.
    """
    key = H(challenge.algorithm, f"{username}:{challenge.realm}:{password}")
    parts = [
        f"username={quote_string(username)}",
        f"realm={quote_string(challenge.realm)}",
        f"nonce={quote_string(challenge.nonce)}",
        f"uri={quote_string(uri)}",
    ]
    if challenge.qop is None:
        response = expected_response(challenge.algorithm, key, challenge.nonce, method, uri)
        parts.append(f"response={quote_string(response)}")
    else:
        if not cnonce:
            raise ValueError("qop=auth needs a cnonce")
        # RFC 7616 §3.4: nc-value = 8LHEX, the count of requests sent with this nonce.
        if not 0 < nc <= 0xFFFFFFFF:
            raise ValueError("nc must be 1 to ffffffff")
        count = f"{nc:08x}"
        response = expected_response(
            challenge.algorithm, key, challenge.nonce, method, uri, challenge.qop, count, cnonce
        )
        parts.append(f"response={quote_string(response)}")
    if challenge.algorithm_given:
        parts.append(f"algorithm={challenge.algorithm}")
    if challenge.qop is not None:
        parts += [f"cnonce={quote_string(cnonce)}", f"qop={challenge.qop}", f"nc={count}"]
    if challenge.opaque is not None:
        # RFC 7616 §3.4: opaque is returned unchanged.
        parts.append(f"opaque={quote_string(challenge.opaque)}")
    return "Digest " + ", ".join(parts)


@dataclass(frozen=True)
class Answered:
    """One set of credentials a request carried, to judge the response to it."""

    header: str  # the challenge header it answered
    realm: str
    nonce: str
    first: bool  # the first answer to a challenge just received, not a pre-emptive reuse
    stale_in_a_row: int  # stale=true challenges answered just before this one


@dataclass(frozen=True)
class Authorization:
    """What `ClientCredentials.authorize` gives a request: its headers, and what
    they answered (hand it back to `challenged` with the response)."""

    headers: tuple[tuple[str, str], ...]
    answered: tuple[Answered, ...]


@dataclass
class _Cached:
    challenge: Challenge
    used: int = 0  # requests sent with this nonce: the last nc
    stale_in_a_row: int = 0
    # Challenged and not answered yet: the next request is the answer. Not
    # "used == 0": a provider may challenge again with the same nonce, whose
    # count goes on, and a wrong password must still be told from a forgotten nonce.
    fresh: bool = True


class ClientCredentials:
    """A trunk's username and password, and the last challenge of each realm.

    Use: `authorize(method, uri)` for every request (no headers until a
    challenge is known; then the cached nonce, pre-emptively, nc counting up,
    RFC 7616 §3.4 / RFC 3261 §22.3 "a UA MAY cache credentials"); on a 401 or
    407, `challenged(response, sent)` with what authorize gave that request,
    then either resend (with a new CSeq, §22.3) calling authorize again, or
    give up with the reason it returned.
    """

    def __init__(
        self, username: str, password: str, cnonce: Callable[[], str] | None = None
    ) -> None:
        self.username = username
        self._password = password  # never in repr, logs or reasons
        self._cnonce = cnonce or (lambda: secrets.token_hex(16))
        self._cache: dict[tuple[str, str], _Cached] = {}

    def __repr__(self) -> str:
        return f"ClientCredentials(username={self.username!r}, realms={len(self._cache)})"

    def challenged(self, response: Response, sent: Authorization | None = None) -> str | None:
        """Take the challenges of a 401/407; None to resend, else why not to.

        RFC 7616 §3.3 stale=true: the nonce was old but the password right, so
        the new nonce is answered without counting a failure. A challenge that
        is not stale, in answer to the first use of a nonce just challenged,
        means the provider refused the password (stale "FALSE or absent: the
        username and/or password are invalid"). A pre-emptive reuse of a cached
        nonce refused without stale=true is only a nonce the provider forgot:
        answered again.
        """
        challenges, skipped = choose(response)
        if not challenges:
            why = "; ".join(skipped) or "no challenge"
            return f"provider sent {response.status} with nothing sipd can answer ({why})"
        previous = {(a.header, a.realm): a for a in (sent.answered if sent else ())}
        for challenge in challenges:
            key = (challenge.header, challenge.realm)
            before = previous.get(key)
            stale_in_a_row = 0
            if before is not None and before.first:
                if not challenge.stale:
                    return (
                        f"provider refused the password for user {self.username}"
                        f" at realm {challenge.realm}"
                    )
                stale_in_a_row = before.stale_in_a_row + 1
                if stale_in_a_row > MAX_STALE_IN_A_ROW:
                    return (
                        f"provider answered {stale_in_a_row} fresh nonces in a row with"
                        f" stale=true for user {self.username} at realm {challenge.realm}"
                    )
            cached = self._cache.get(key)
            if cached is not None and cached.challenge.nonce == challenge.nonce:
                # The same nonce again: its count goes on (the server's replay check).
                cached.challenge = challenge
                cached.stale_in_a_row = stale_in_a_row
                cached.fresh = True
            else:
                self._cache[key] = _Cached(challenge, stale_in_a_row=stale_in_a_row)
        return None

    def authorize(self, method: str, uri: str) -> Authorization:
        """The credential headers for a request, one per realm known."""
        headers, answered = [], []
        for (header, realm), cached in self._cache.items():
            cached.used += 1
            challenge = cached.challenge
            cnonce = self._cnonce() if challenge.qop else None
            value = authorization(
                challenge, method, uri, self.username, self._password, cached.used, cnonce
            )
            headers.append((challenge.answer_header, value))
            answered.append(
                Answered(header, realm, challenge.nonce, cached.fresh, cached.stale_in_a_row)
            )
            cached.fresh = False
        return Authorization(tuple(headers), tuple(answered))

    def forget(self) -> None:
        """Drop the cached challenges (a new provider address, new credentials)."""
        self._cache.clear()
