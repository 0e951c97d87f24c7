"""Login throttling with backoff: per source address, and per user name only against many.

Counters live in the database (LoginThrottle), so several panel workers share
them and a restart forgets nothing. Three kinds of row:

- "addr:SOURCE": consecutive failures from one source, whatever user name they
  tried. After FREE_FAILURES the source is locked for FIRST_LOCK seconds,
  doubling with each further failure up to MAX_LOCK. A source is an IPv4
  address, or an IPv6 /64 (one subscriber's network: its addresses are free).
- "fail:NAME|SOURCE": the failures for one user name from one source. A
  success for NAME from SOURCE takes exactly these off the source's count, so
  the real admin's typos are forgiven when they get it right, but logging in
  to one's own (viewer) account does not wipe out guesses at another's.
- "user:NAME": the name's own lock. It applies to everyone, the real user
  included, so it takes failures from USER_SOURCES different sources within
  FORGET_AFTER: what one attacker's address (or a few) can do only locks
  themselves out, never the admin; a guesser spread over many is slowed down.

While locked, a login is refused without checking the password (no oracle, no
extra work), and the refusal does not count. A row with no failure for
FORGET_AFTER seconds is forgotten. User names are compared case-folded; a
name no account could have (core.accounts.USERNAME_RE) counts against its
source only.
"""

from __future__ import annotations

import ipaddress
import math
import time

from core.accounts import USERNAME_RE
from core.models import LoginThrottle, db

FREE_FAILURES = 5
FIRST_LOCK = 30
MAX_LOCK = 15 * 60
FORGET_AFTER = 60 * 60
# Different sources that must fail for one user name within FORGET_AFTER before
# the name itself is locked; from one source, backoff allows about a dozen
# tries an hour, so this is some 200 guesses an hour from 20 places.
USER_SOURCES = 20
IPV6_PREFIX = 64

# The clock, replaceable by tests.
clock = time.time


def backoff(failures: int) -> int:
    """Seconds locked after `failures` consecutive failures: 0, then 30, 60, ... 900."""
    if failures < FREE_FAILURES:
        return 0
    return min(MAX_LOCK, FIRST_LOCK * 2 ** min(failures - FREE_FAILURES, 16))


def user_backoff(sources: int) -> int:
    """Seconds a user name is locked once `sources` sources failed for it: 30 at
    USER_SOURCES, doubling with each further source up to MAX_LOCK."""
    if sources < USER_SOURCES:
        return 0
    return min(MAX_LOCK, FIRST_LOCK * 2 ** min(sources - USER_SOURCES, 16))


def source_of(address: str | None) -> str:
    """What is counted for a client address: itself, or for IPv6 its /64."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return address or "?"
    if ip.version == 6:
        if ip.ipv4_mapped:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/{IPV6_PREFIX}", strict=False))
    return str(ip)


def name_of(username: str | None) -> str | None:
    """The user name as counted (case-folded), or None if no account could have it."""
    name = (username or "").strip()
    return name.casefold() if USERNAME_RE.match(name) else None


def _addr_key(address: str | None) -> str:
    return f"addr:{source_of(address)}"


def _user_key(name: str) -> str:
    return f"user:{name}"


def _pair_key(name: str, address: str | None) -> str:
    # USERNAME_RE has no "|": the name ends at the first one.
    return f"fail:{name}|{source_of(address)}"


def _pairs_of(name: str):
    """Every fail:NAME|... row: keys from "fail:NAME|" up to, not including, "fail:NAME}"."""
    return LoginThrottle.select().where(
        (LoginThrottle.key >= f"fail:{name}|") & (LoginThrottle.key < f"fail:{name}}}"))


def wait_seconds(username: str, address: str | None) -> int:
    """Whole seconds until a login for this user from this address may be tried (0: now)."""
    now = clock()
    keys = [_addr_key(address)]
    name = name_of(username)
    if name is not None:
        keys.append(_user_key(name))
    rows = LoginThrottle.select().where(LoginThrottle.key.in_(keys))
    until = max((row.locked_until for row in rows), default=0)
    return math.ceil(until - now) if until > now else 0


def failed(username: str, address: str | None) -> int:
    """Count a failure; return the seconds this user from this address is now locked (0: not)."""
    now = clock()
    # IMMEDIATE takes the write lock before reading, so two workers counting
    # at once cannot both read the same value.
    with db.atomic(lock_type="IMMEDIATE"):
        _forget(now)
        locked = _count(_addr_key(address), now, backoff)
        name = name_of(username)
        if name is not None:
            _count(_pair_key(name, address), now, lambda failures: 0)
            sources = _pairs_of(name).where(
                LoginThrottle.last_failure_at >= now - FORGET_AFTER).count()
            seconds = user_backoff(sources)
            if seconds:
                _write(_user_key(name), sources, now, now + seconds)
                locked = max(locked, seconds)
    return locked


def succeeded(username: str, address: str | None) -> None:
    """Forgive this user's own failures from this source; nobody else's."""
    name = name_of(username)
    if name is None:
        return
    with db.atomic(lock_type="IMMEDIATE"):
        pair = LoginThrottle.get_or_none(LoginThrottle.key == _pair_key(name, address))
        if pair is None:
            return
        pair.delete_instance()
        source = LoginThrottle.get_or_none(LoginThrottle.key == _addr_key(address))
        if source is None:
            return
        left = source.failures - pair.failures
        if left <= 0:
            source.delete_instance()
        else:
            (LoginThrottle.update(failures=left)
             .where(LoginThrottle.key == source.key)
             .execute())


def _count(key: str, now: float, lock_for) -> int:
    """One more failure on `key` (or the first, after FORGET_AFTER of quiet); the lock it sets."""
    row = LoginThrottle.get_or_none(LoginThrottle.key == key)
    failures = 1
    if row is not None and now - row.last_failure_at < FORGET_AFTER:
        failures = row.failures + 1
    seconds = lock_for(failures)
    _write(key, failures, now, now + seconds if seconds else 0)
    return seconds


def _write(key: str, failures: int, now: float, locked_until: float) -> None:
    (LoginThrottle
     .insert(key=key, failures=failures, last_failure_at=now, locked_until=locked_until)
     .on_conflict_replace()
     .execute())


def _forget(now: float) -> None:
    """Rows quiet for FORGET_AFTER and not locked any more count for nothing: gone."""
    (LoginThrottle.delete()
     .where((LoginThrottle.last_failure_at < now - FORGET_AFTER)
            & (LoginThrottle.locked_until <= now))
     .execute())
