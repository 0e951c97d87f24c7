"""Taking SQLite's write lock without stopping the event loop.

sipd shares one SQLite file with its registration workers, the panel and
pbxctl, and only one connection at a time may write. SQLite's own wait for
the lock (busy_timeout) sleeps inside the library call, that is with the
whole gevent process: while `pbxctl ext import` held the lock, sipd's loop
stood still for up to 5 s at a time, every request waiting behind one
REGISTER, and then the REGISTERs were dropped with "database is locked"
(docs/security.md, probe finding 9).

So sipd's connections have busy_timeout 0 and take the lock here: BEGIN
IMMEDIATE, and while another connection holds the lock, a gevent sleep and
another try, for at most PBX_DB_LOCK_WAIT seconds. Only the greenlet that
needs the lock waits; everything else goes on. An uncontended BEGIN costs
what it did. Once the lock is held, the transaction's statements and its
COMMIT run without yielding, as before, so no other greenlet ever uses the
shared connection inside someone else's transaction. Reads need no lock
(WAL) and are not affected.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import contextmanager

import gevent

# How long a write waits for another process's transaction at most; then the
# request gets 503 with Retry-After (core/config.py: PBX_DB_LOCK_WAIT).
LOCK_WAIT = 5.0
RETRY_AFTER = 5  # seconds, in the 503 of a request that could not be stored
# Between tries: from 1 ms, doubling, to 20 ms at most (SQLite's own busy
# handler goes up to 100 ms); a try that fails costs a few microseconds.
FIRST_RETRY = 0.001
MAX_RETRY = 0.02

_wait = LOCK_WAIT


class Unavailable(sqlite3.OperationalError):
    """The database stayed locked by another connection for the whole wait.

    An OperationalError, so code that already handles a failing database
    (the call history's retry, a ban kept in memory) handles this too."""


def configure(wait: float) -> None:
    global _wait
    _wait = wait


def _busy(error: sqlite3.OperationalError) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF == sqlite3.SQLITE_BUSY  # also SQLITE_BUSY_RECOVERY etc.
    return "locked" in str(error)


def begin(conn, wait: float | None = None, sleep=gevent.sleep, clock=time.monotonic) -> None:
    """BEGIN IMMEDIATE on `conn`, waiting (on the loop, not in SQLite) for the lock."""
    try:
        conn.execute("BEGIN IMMEDIATE")
        return
    except sqlite3.OperationalError as error:
        if not _busy(error):
            raise
    wait = _wait if wait is None else wait
    deadline = clock() + wait
    delay = FIRST_RETRY
    while True:
        sleep(delay)
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as error:
            if not _busy(error):
                raise
        if clock() >= deadline:
            raise Unavailable(f"database locked by another process for {wait:g} s")
        delay = min(delay * 2, MAX_RETRY)


@contextmanager
def transaction(conn, wait: float | None = None):
    """A write transaction on `conn`; joins the one already open on it."""
    if conn.in_transaction:
        yield conn
        return
    begin(conn, wait)
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def no_busy_wait(conn) -> None:
    """Make `conn` fail at once on a locked database instead of sleeping in SQLite."""
    conn.execute("PRAGMA busy_timeout = 0")
