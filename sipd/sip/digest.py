"""HTTP Digest for SIP: RFC 7616 with the SIP rules of RFC 8760 and RFC 3261 §22.

Stateless nonces (RFC 7616 §3.3 suggests the shape): a nonce is its issue time,
the number of the sipd process that issued it, that process's start (a random
epoch drawn when it starts), a serial number and the address it was sent to,
with an HMAC over all of them and the realm, keyed by the PBX secret. Only the
process and start that issued a nonce accept it, because only they hold its
nonce counts (the nc replay check, §3.4): a nonce from a registration worker
(sipd.workers) or from before a restart is stale, and the phone is challenged
again with stale=true, which it answers without asking the user. A nonce
answered from another address than the one it was sent to is refused the same
way, before the password is looked at (docs/security.md, "Probe finding 6").
The clock and the peer's address are arguments; nothing here reads them.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import ipaddress
import itertools
import os
import re
from collections import deque
from dataclasses import dataclass
from enum import Enum

from sipd.sip.headers import Credentials, quote_string

HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}
# Which challenges a phone is offered, and in what order, is the registrar's
# choice (sipd/registrar.py, core/credentials.py DEFAULT_ALGORITHMS): here a
# challenge per algorithm, in the order given, most preferred first (RFC 8760
# §2.3, RFC 7616 §3.7).


def H(algorithm: str, data: str) -> str:
    return HASHES[algorithm](data.encode()).hexdigest()


class NonceState(Enum):
    VALID = "valid"
    # Ours, but older than its lifetime, or issued by another process or an earlier
    # start of this one (which held its nonce counts): RFC 7616 §3.3 stale=TRUE
    # for a client whose response is right.
    STALE = "stale"
    # Ours, but sent to another address than the one answering it (or issued
    # before nonces named an address): a fresh challenge, whatever the response.
    ELSEWHERE = "elsewhere"
    INVALID = "invalid"  # not ours, or tampered with


@functools.lru_cache(maxsize=4096)
def _address(host: str) -> bytes:
    """The address a nonce is bound to, as bytes: 4 for IPv4, 16 for IPv6.

    The IP alone, not the port: a NAT may give a phone a new port between two
    REGISTERs that reuse a nonce (and a UDP answer without rport goes to the
    Via port, not the source port), while a new address is rare; and what the
    binding prevents, making sipd send to a host that never asked, needs the
    address, not the port (docs/security.md, "Probe finding 6").
    """
    try:
        return ipaddress.ip_address(host).packed
    except ValueError:  # not an IP (a test's name): still one fixed value per host
        return hashlib.sha256(host.encode()).digest()[:16]


_TIME, _ORIGIN, _EPOCH, _SERIAL = 6, 1, 6, 3  # bytes; the stamp is their sum, 16
_STAMP = _TIME + _ORIGIN + _EPOCH + _SERIAL
_MAC = 16
# A nonce is 36 bytes for an IPv4 address, 48 for IPv6; the 32-byte nonces of
# earlier versions (no epoch, no address) are still recognised, as ELSEWHERE,
# so that phones holding one when sipd is upgraded get stale=true.
_LENGTHS = (_STAMP + 4 + _MAC, _STAMP + 16 + _MAC)
_LEGACY = 32


class NonceMinter:
    """Mints and verifies HMAC-keyed nonces (RFC 7616 §3.3 suggests this shape).

    `origin` (0-255) is the process: 0 the main sipd, 1.. its registration
    workers. `epoch` tells this start of the process from every other; it is
    random unless a test gives one.
    """

    def __init__(
        self,
        secret: str | bytes,
        realm: str,
        lifetime: float,
        origin: int = 0,
        epoch: bytes | None = None,
    ):
        secret = secret.encode() if isinstance(secret, str) else secret
        self._key = hashlib.sha256(b"sipd-nonce-2:" + secret).digest()
        self._legacy_key = hashlib.sha256(b"sipd-nonce:" + secret).digest()
        self.realm = realm
        self._realm = realm.encode()
        self.lifetime = lifetime
        self.origin = origin
        self.epoch = os.urandom(_EPOCH) if epoch is None else epoch
        if len(self.epoch) != _EPOCH:
            raise ValueError(f"a nonce epoch is {_EPOCH} bytes")
        # What a nonce of this process and start has after its issue time.
        self._issuer = bytes([origin]) + self.epoch
        self._serial = itertools.count(int.from_bytes(os.urandom(_SERIAL), "big"))

    def _mac(self, signed: bytes) -> bytes:
        return hmac.digest(self._key, signed + self._realm, "sha256")[:_MAC]

    def mint(self, now: float, address: str) -> str:
        """A nonce for a challenge sent to `address` (the IP of the request's source)."""
        # Issue time in milliseconds, the issuer, a serial number: every challenge
        # gets its own nonce even under load, so the nc replay check (which is per
        # nonce) never confuses two phones challenged in the same millisecond.
        # Nonces are public; the MAC, not the serial, is what cannot be guessed.
        signed = (
            int(now * 1000).to_bytes(_TIME, "big")
            + self._issuer
            + (next(self._serial) & 0xFFFFFF).to_bytes(_SERIAL, "big")
            + _address(address)
        )
        return base64.urlsafe_b64encode(signed + self._mac(signed)).decode().rstrip("=")

    def check(self, nonce: str, now: float, address: str) -> NonceState:
        """The state of `nonce` answered from `address` at `now`."""
        raw = _decode(nonce)
        if raw is None:
            return NonceState.INVALID
        if len(raw) == _LEGACY:
            return self._check_legacy(raw)
        if len(raw) not in _LENGTHS:
            return NonceState.INVALID
        signed, mac = raw[:-_MAC], raw[-_MAC:]
        if not hmac.compare_digest(mac, self._mac(signed)):
            return NonceState.INVALID
        if signed[_STAMP:] != _address(address):
            return NonceState.ELSEWHERE
        issued = int.from_bytes(signed[:_TIME], "big") / 1000
        if issued > now + 5:  # from the future: a clock that jumped back, or a forgery
            return NonceState.INVALID
        if now - issued > self.lifetime or signed[_TIME : _TIME + _ORIGIN + _EPOCH] != self._issuer:
            # Old, or issued by another process or an earlier start, which held
            # its nonce counts: without them a replay could not be told.
            return NonceState.STALE
        return NonceState.VALID

    def issued_to(self, nonce: str) -> str | None:
        """The address a nonce that check() found ELSEWHERE was sent to, for the
        log line (None for a nonce of the earlier layout, which names none)."""
        raw = _decode(nonce)
        if raw is None or len(raw) not in _LENGTHS:
            return None
        try:
            return str(ipaddress.ip_address(raw[_STAMP:-_MAC]))
        except ValueError:
            return None

    def _check_legacy(self, raw: bytes) -> NonceState:
        """A nonce of the layout before epochs and addresses (time, origin, serial: 16
        bytes, then the MAC). Ours, but bound to no address: ELSEWHERE."""
        stamp, mac = raw[:16], raw[16:]
        expected = hmac.digest(self._legacy_key, stamp + self._realm, "sha256")[:16]
        if not hmac.compare_digest(mac, expected):
            return NonceState.INVALID
        return NonceState.ELSEWHERE


def _decode(nonce: str) -> bytes | None:
    if len(nonce) > 100:  # longer than any nonce we issue: do not decode it
        return None
    try:
        return base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
    except (ValueError, TypeError):
        return None


def challenge(realm: str, nonce: str, algorithm: str, opaque: str, stale: bool = False) -> str:
    """One WWW-Authenticate / Proxy-Authenticate value (RFC 7616 §3.3)."""
    before, after = _challenge_parts(realm, algorithm, opaque, stale)
    return before + quote_string(nonce) + after


@functools.lru_cache(maxsize=64)
def _challenge_parts(realm: str, algorithm: str, opaque: str, stale: bool) -> tuple[str, str]:
    """The text of a challenge around its nonce: the same for every challenge."""
    after = [f"opaque={quote_string(opaque)}", f"algorithm={algorithm}", 'qop="auth"']
    if stale:
        after.append("stale=true")
    return f"Digest realm={quote_string(realm)}, nonce=", ", " + ", ".join(after)


def challenges(
    realm: str, nonce: str, opaque: str, stale: bool, algorithms: tuple[str, ...]
) -> list[str]:
    return [challenge(realm, nonce, algorithm, opaque, stale) for algorithm in algorithms]


def expected_response(
    algorithm: str,
    ha1: str,
    nonce: str,
    method: str,
    uri: str,
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
) -> str:
    """RFC 7616 §3.4.1 response = KD(HA1, nonce:nc:cnonce:qop:HA2); HA2 = H(method:uri)."""
    ha2 = H(algorithm, f"{method}:{uri}")
    if qop:
        return H(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return H(algorithm, f"{ha1}:{nonce}:{ha2}")  # RFC 2069 compatibility form


def normalize_algorithm(value: str | None) -> str | None:
    """The algorithm name we know, or None. Absent means MD5 (RFC 7616 §3.3)."""
    if value is None:
        return "MD5"
    upper = value.strip().upper()
    return upper if upper in HASHES else None


class Verdict(Enum):
    OK = "ok"
    WRONG = "wrong password"
    STALE = "stale nonce"
    INVALID_NONCE = "nonce not issued by this server"
    ELSEWHERE = "nonce was issued to another address"
    REPLAY = "nonce count reused"
    BAD_ALGORITHM = "unsupported digest algorithm"
    NO_QOP = "client did not use qop=auth"
    MALFORMED = "incomplete credentials"
    BAD_NC = "nc must be 8 hex digits from 00000001"


# RFC 7616 §3.4: nc-value = 8LHEX, counting from 00000001 ("the nc value is the
# hexadecimal count of the number of requests (including the current request)
# that the client has sent with the nonce value"). int(x, 16) alone would take
# "0x00001", "+0000001", "0000_001" and 5,000 digits. Upper-case digits are
# let through (LHEX is lower case): the count they give is the same, and the
# response hashes the text as sent.
_NC = re.compile(r"[0-9a-fA-F]{8}")


def valid_nc(nc: str) -> bool:
    return _NC.fullmatch(nc) is not None and nc != "00000000"


@dataclass
class CheckedCredentials:
    username: str
    realm: str
    algorithm: str | None
    nonce: str
    uri: str
    response: str
    qop: str | None
    nc: str | None
    cnonce: str | None

    @classmethod
    def from_credentials(cls, credentials: Credentials) -> CheckedCredentials | None:
        get = credentials.get
        if credentials.scheme.lower() != "digest":
            return None
        required = ("username", "realm", "nonce", "uri", "response")
        if any(get(name) is None for name in required):
            return None
        return cls(
            username=get("username"),
            realm=get("realm"),
            algorithm=normalize_algorithm(get("algorithm")),
            nonce=get("nonce"),
            uri=get("uri"),
            response=get("response").lower(),
            qop=get("qop"),
            nc=get("nc"),
            cnonce=get("cnonce"),
        )


def verify(creds: CheckedCredentials, ha1: str, method: str, state: NonceState) -> Verdict:
    """Check a credential against the stored HA1 for its algorithm.

    `state` is the nonce's, from NonceMinter.check (the registrar needs it
    before it looks the extension up). The response is computed and compared in
    constant time before the nonce state is considered, so that every outcome
    costs the same work.
    """
    if creds.algorithm is None:
        return Verdict.BAD_ALGORITHM
    if creds.qop is not None and creds.qop.lower() != "auth":
        return Verdict.NO_QOP
    if creds.qop is None:
        return Verdict.NO_QOP
    if not creds.nc or not creds.cnonce:
        return Verdict.MALFORMED
    if not valid_nc(creds.nc):
        return Verdict.BAD_NC
    expected = expected_response(
        creds.algorithm, ha1, creds.nonce, method, creds.uri, creds.qop, creds.nc, creds.cnonce
    )
    right = hmac.compare_digest(expected, creds.response)
    if state is NonceState.INVALID:
        return Verdict.INVALID_NONCE
    if state is NonceState.ELSEWHERE:
        return Verdict.ELSEWHERE  # before the password: whatever the response
    if not right:
        return Verdict.WRONG
    if state is NonceState.STALE:
        return Verdict.STALE
    return Verdict.OK


class NonceCounts:
    """Highest nc seen per nonce, to refuse replays (RFC 7616 §3.4 "nc").

    Kept in memory only while the nonce lives; it is protection against
    replay, not state anyone needs after a restart: a restarted process has a
    new epoch, and the nonces it issued before are stale (NonceMinter.check).

    Every accepted nonce is held for its lifetime, so under a registration
    storm this is the largest thing sipd holds (3,000 a second for 300 s is
    900,000 nonces). Hence: keyed by the nonce's hash (an int, not its
    43-character text; a collision can only make a phone answer one more
    challenge), the count alone as the value, and pruned from the oldest end
    (dicts keep insertion order) using a mark of how many nonces had been
    seen by when, taken at most once a second, instead of rebuilding the dict.
    """

    def __init__(self, lifetime: float):
        self.lifetime = lifetime
        self._seen: dict[int, int] = {}
        self._added = 0  # nonces ever added
        self._dropped = 0  # of which pruned (always the oldest)
        self._marks: deque[tuple[float, int]] = deque()  # (time, nonces added by then)
        self._marked = float("-inf")

    def accept(self, nonce: str, nc: str, now: float) -> bool:
        if not valid_nc(nc):
            return False
        count = int(nc, 16)
        key = hash(nonce)
        previous = self._seen.get(key)
        if previous is not None:
            if count <= previous:
                return False
            self._seen[key] = count  # an update keeps the nonce's place in the order
            return True
        self._seen[key] = count
        self._added += 1
        if now - self._marked >= 1.0:
            self._marks.append((now, self._added))
            self._marked = now
        return True

    def prune(self, now: float) -> None:
        """Forget the nonces first seen more than their lifetime (and 10 s) ago."""
        self._marks.append((now, self._added))
        self._marked = now
        horizon = now - self.lifetime - 10
        cut = None
        while self._marks and self._marks[0][0] < horizon:
            cut = self._marks.popleft()[1]
        if cut is None or cut <= self._dropped:
            return
        seen = self._seen
        for key in list(itertools.islice(seen, cut - self._dropped)):
            del seen[key]
        self._dropped = cut

    def __len__(self) -> int:
        return len(self._seen)
