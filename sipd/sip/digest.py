"""HTTP Digest for SIP: RFC 7616 with the SIP rules of RFC 8760 and RFC 3261 §22.

Stateless nonces: a nonce is its issue time, the number of the sipd process
that issued it, and an HMAC over both and the realm, keyed by the PBX secret. A
nonce issued before a restart stays valid for its lifetime afterwards. The nc
replay check needs the counts the issuing process keeps, so another process (a
registration worker, sipd.workers) treats the nonce as stale and challenges
again. The clock is an argument; nothing here reads it.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import itertools
import os
import struct
from collections import deque
from dataclasses import dataclass
from enum import Enum

from sipd.sip.headers import Credentials, quote_string

HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}
# RFC 8760 §2.4: challenges are listed most preferred first. Our default puts
# MD5 first on purpose: many clients read only the first challenge and know only
# MD5 (sipp 3.6, older desk phones), and they would fail outright, while a client
# that knows both and takes the first still authenticates. PBX_DIGEST_ALGORITHMS
# turns the order round, or offers SHA-256 alone, for a fleet of modern phones.
OFFERED = ("MD5", "SHA-256")


def H(algorithm: str, data: str) -> str:
    return HASHES[algorithm](data.encode()).hexdigest()


class NonceState(Enum):
    VALID = "valid"
    STALE = "stale"  # ours, but older than its lifetime: RFC 7616 §3.3 stale=TRUE
    INVALID = "invalid"  # not ours, or tampered with


_SERIAL_MASK = (1 << 56) - 1


class NonceMinter:
    """Mints and verifies HMAC-keyed nonces (RFC 7616 §3.3 suggests this shape).

    `origin` (0-255) is the process: 0 the main sipd, 1.. its registration workers.
    """

    def __init__(self, secret: str | bytes, realm: str, lifetime: float, origin: int = 0):
        self._key = hashlib.sha256(
            b"sipd-nonce:" + (secret.encode() if isinstance(secret, str) else secret)
        ).digest()
        self.realm = realm
        self._realm = realm.encode()
        self.lifetime = lifetime
        self.origin = origin
        self._origin = bytes([origin])
        self._serial = itertools.count(int.from_bytes(os.urandom(7), "big"))

    def _mac(self, stamp: bytes) -> bytes:
        return hmac.digest(self._key, stamp + self._realm, "sha256")[:16]

    def mint(self, now: float) -> str:
        # Issue time in milliseconds, the origin, a 56-bit serial number (from a
        # random start, so a restart does not repeat them): every challenge gets its
        # own nonce even under load, so the nc replay check (which is per nonce)
        # never confuses two phones challenged in the same millisecond. Nonces are
        # public; the MAC, not the serial, is what cannot be guessed.
        stamp = (
            struct.pack(">Q", int(now * 1000))
            + self._origin
            + (next(self._serial) & _SERIAL_MASK).to_bytes(7, "big")
        )
        return base64.urlsafe_b64encode(stamp + self._mac(stamp)).decode().rstrip("=")

    def check(self, nonce: str, now: float) -> NonceState:
        try:
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except (ValueError, TypeError):
            return NonceState.INVALID
        if len(raw) != 32:
            return NonceState.INVALID
        stamp, mac = raw[:16], raw[16:]
        if not hmac.compare_digest(mac, self._mac(stamp)):
            return NonceState.INVALID
        issued = struct.unpack(">Q", stamp[:8])[0] / 1000
        if issued > now + 5:  # from the future: a clock that jumped back, or a forgery
            return NonceState.INVALID
        if now - issued > self.lifetime or stamp[8:9] != self._origin:
            # Old, or issued by another process, which holds its nonce counts.
            return NonceState.STALE
        return NonceState.VALID


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
    realm: str, nonce: str, opaque: str, stale: bool = False, algorithms=OFFERED
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
    REPLAY = "nonce count reused"
    BAD_ALGORITHM = "unsupported digest algorithm"
    NO_QOP = "client did not use qop=auth"
    MALFORMED = "incomplete credentials"


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


def verify(
    creds: CheckedCredentials, ha1: str, method: str, minter: NonceMinter, now: float
) -> Verdict:
    """Check a credential against the stored HA1 for its algorithm.

    The response is computed and compared in constant time before the nonce
    state is considered, so that every outcome costs the same work.
    """
    if creds.algorithm is None:
        return Verdict.BAD_ALGORITHM
    if creds.qop is not None and creds.qop.lower() != "auth":
        return Verdict.NO_QOP
    if creds.qop is None:
        return Verdict.NO_QOP
    if not creds.nc or not creds.cnonce:
        return Verdict.MALFORMED
    expected = expected_response(
        creds.algorithm, ha1, creds.nonce, method, creds.uri, creds.qop, creds.nc, creds.cnonce
    )
    right = hmac.compare_digest(expected, creds.response)
    state = minter.check(creds.nonce, now)
    if state is NonceState.INVALID:
        return Verdict.INVALID_NONCE
    if not right:
        return Verdict.WRONG
    if state is NonceState.STALE:
        return Verdict.STALE
    return Verdict.OK


class NonceCounts:
    """Highest nc seen per nonce, to refuse replays (RFC 7616 §3.4 "nc").

    Kept in memory only while the nonce lives; it is protection against
    replay, not state anyone needs after a restart.

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
        try:
            count = int(nc, 16)
        except ValueError:
            return False
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
