"""Login throttling with backoff, per user name and per client address.

Counters live in the database (LoginThrottle), so several panel workers share
them and a restart forgets nothing. After FREE_FAILURES consecutive failures a
key is locked for FIRST_LOCK seconds, doubling with each further failure up to
MAX_LOCK. While locked, a login is refused without checking the password (no
oracle, no extra work), and the refusal does not count. A success clears both
keys; a key with no failure for FORGET_AFTER seconds starts again from zero.
"""

from __future__ import annotations

import math
import time

from core.models import LoginThrottle, db

FREE_FAILURES = 5
FIRST_LOCK = 30
MAX_LOCK = 15 * 60
FORGET_AFTER = 60 * 60

# The clock, replaceable by tests.
clock = time.time


def backoff(failures: int) -> int:
    """Seconds locked after `failures` consecutive failures: 0, then 30, 60, ... 900."""
    if failures < FREE_FAILURES:
        return 0
    return min(MAX_LOCK, FIRST_LOCK * 2 ** min(failures - FREE_FAILURES, 16))


def keys(username: str, address: str | None) -> list[str]:
    # Case-folded: "Admin" and "admin" share a counter, whichever one exists.
    return [f"user:{(username or '').strip().casefold()[:64]}", f"addr:{address or '?'}"]


def wait_seconds(username: str, address: str | None) -> int:
    """Whole seconds until a login for this user from this address may be tried (0: now)."""
    now = clock()
    rows = LoginThrottle.select().where(LoginThrottle.key.in_(keys(username, address)))
    until = max((row.locked_until for row in rows), default=0)
    return math.ceil(until - now) if until > now else 0


def failed(username: str, address: str | None) -> int:
    """Count a failure against both keys; return the seconds now locked (0: not locked)."""
    now = clock()
    locked = 0
    # IMMEDIATE takes the write lock before reading, so two workers counting
    # at once cannot both read the same value.
    with db.atomic(lock_type="IMMEDIATE"):
        for key in keys(username, address):
            row = LoginThrottle.get_or_none(LoginThrottle.key == key)
            failures = 1
            if row is not None and now - row.last_failure_at < FORGET_AFTER:
                failures = row.failures + 1
            seconds = backoff(failures)
            (LoginThrottle
             .insert(key=key, failures=failures, last_failure_at=now,
                     locked_until=now + seconds if seconds else 0)
             .on_conflict_replace()
             .execute())
            locked = max(locked, seconds)
    return locked


def succeeded(username: str, address: str | None) -> None:
    LoginThrottle.delete().where(LoginThrottle.key.in_(keys(username, address))).execute()
