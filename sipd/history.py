"""Call history: the rows of the `call` table (core.models.Call), written in
group commits.

A call writes its row three or four times (opened, answered, where its media
comes from, ended), and more only when its plan has more steps (what rings now,
a `call_event` row for each forward or group step). Each of those as its own
transaction was a WAL commit of several pages: a fifth of the CPU sipd spent
on a call. Here the statements are queued and written together, WRITE_DELAY
after the first of them: the history and the live calls page are that much
behind the calls, and under load one transaction carries the writes of every
call of those milliseconds.

The ids of new rows are given here (the largest id + 1 at start, then
counting), so that a call knows its row's id before the row is written; sipd
is the only writer of this table. What is queued but not yet written when the
process is killed is lost: at most the writes of one turn of the loop, a few
milliseconds of call events, whose calls are then closed as stale at the next
start anyway. A write that fails for a passing reason (the database locked
beyond PBX_DB_LOCK_WAIT, a full disk) stays queued and is retried every second.
"""

from __future__ import annotations

import logging
import sqlite3

import gevent

from core.models import db
from sipd import dblock

log = logging.getLogger("sipd")

# Long enough to gather the events of several calls under load (at 500 calls/s,
# some twenty statements per commit), short against anything a person sees.
WRITE_DELAY = 0.02
RETRY_AFTER = 1.0
# Beyond this many unwritten statements (a database that has been failing for a
# long time) the oldest are dropped, so that memory stays bounded.
MAX_QUEUED = 100_000

# A row is the call: its id is unique, its Call-ID need not be (a phone may
# reuse one with another From tag: another call, RFC 3261 §12).
_OPEN = (
    "INSERT OR IGNORE INTO call (id, call_id, caller, caller_name, caller_claimed, callee,"
    " caller_source, callee_contact, state, started_at, reason, caller_media, callee_media,"
    " codec, ringing, via_group)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, '', 'ringing', ?, '', '', '', '', ?, ?)"
)
_REFUSED = (
    "INSERT OR IGNORE INTO call (id, call_id, caller, caller_name, caller_claimed, callee,"
    " caller_source, callee_contact, state, started_at, ended_at, disposition, hangup_by,"
    " sip_status, reason, caller_media, callee_media, codec)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, '', 'ended', ?, ?, ?, 'system', ?, ?, '', '', '')"
)
_ANSWERED = (
    "UPDATE call SET state = 'answered', answered_at = ?, callee_contact = ?, codec = ?,"
    " answered_by = ?, ringing = '', sip_status = 200 WHERE id = ?"
)
# A ring step of the plan begins: what rings now; the group it rings, if any.
_OUTSIDE = "UPDATE call SET direction = 'outbound', trunk = ?, number_sent = ? WHERE id = ?"
_RINGING = (
    "UPDATE call SET ringing = ?, via_group = CASE WHEN ? = '' THEN via_group ELSE ? END"
    " WHERE id = ?"
)
_EVENT = (
    'INSERT INTO call_event (call, at, kind, "by", target, detail) VALUES (?, ?, ?, ?, ?, ?)'
)
_MEDIA = "UPDATE call SET caller_media = ?, callee_media = ? WHERE id = ?"
_RECORDING = "UPDATE call SET recording = ? WHERE id = ?"
_ENDED = (
    "UPDATE call SET state = 'ended', ended_at = ?, disposition = ?, hangup_by = ?,"
    " sip_status = COALESCE(?, sip_status), reason = ?, ringing = '' WHERE id = ?"
    " AND ended_at IS NULL"
)


class History:
    """The call rows of one sipd. `spawn_later` is gevent's (tests pass their
    own to decide when the writes happen)."""

    def __init__(self, spawn_later=gevent.spawn_later):
        self._spawn_later = spawn_later
        self._queue: list[tuple[str, tuple, str | None]] = []
        self._next_id: int | None = None
        self._scheduled = False
        self._failing = False

    # -- what the B2BUA records ------------------------------------------------------

    def opened(self, now: float, call_id: str, record: dict, ringing: str = "",
               via_group: str = "") -> int:
        """A call starts ringing: its row, state ringing, with the extensions rung
        (comma-separated) and the group they are rung for. Returns the row's id."""
        row_id = self._new_id()
        self._queue_write(_OPEN, (row_id, call_id[:255], *_caller(record), now,
                                  ringing[:255], via_group[:32]), row_id)
        return row_id

    def refused(self, now: float, call_id: str | None, record: dict, status: int,
                disposition: str, reason: str) -> int:
        """A call refused before ringing (404, 480, 503...) belongs in the history
        too. Returns the row's id."""
        call_id = call_id or ""
        row_id = self._new_id()
        self._queue_write(_REFUSED, (row_id, call_id[:255], *_caller(record), now, now,
                                     disposition, status, reason[:255]), row_id)
        return row_id

    def answered(self, row_id: int, now: float, contact: str, codec: str,
                 answered_by: str = "") -> None:
        """Answered, by the phone at `contact` of extension `answered_by`."""
        self._queue_write(_ANSWERED, (now, contact, codec[:32], answered_by[:64], row_id))

    def ringing(self, row_id: int, numbers: str, via_group: str = "") -> None:
        """The plan goes on to ring `numbers` (comma-separated), for `via_group` if
        that is a group ("" keeps the group the row has)."""
        self._queue_write(_RINGING, (numbers[:255], via_group[:32], via_group[:32], row_id))

    def outside(self, row_id: int, trunk: str, number_sent: str) -> None:
        """An outside call (issue 12) tried through `trunk`, `number_sent` as sent to it."""
        self._queue_write(_OUTSIDE, (trunk[:64], number_sent[:64], row_id))

    def events(self, row_id: int, now: float, events) -> None:
        """What the routing plan's steps record (core.models.CallEvent): a row each."""
        for event in events:
            self._queue_write(_EVENT, (row_id, now, event.kind[:32], event.by[:64],
                                       event.target[:64], event.detail[:255]))

    def media(self, row_id: int, caller_media: str, callee_media: str) -> None:
        """Where each leg's media really comes from (latched): while the call
        lasts (the live calls page), and the last sources once it has ended."""
        self._queue_write(_MEDIA, (caller_media[:80], callee_media[:80], row_id))

    def recording(self, row_id: int, name: str) -> None:
        """The call is recorded into `name` (relative to PBX_RECORDING_DIR)."""
        self._queue_write(_RECORDING, (name[:255], row_id))

    def ended(self, row_id: int, now: float, disposition: str, by: str, status: int | None,
              reason: str) -> None:
        self._queue_write(_ENDED, (now, disposition, by, status, reason[:255], row_id))

    def close_stale(self, now: float) -> int:
        """At start, before any call: no call may stay "active" after a crash or
        restart (the calls issue). Written at once; returns how many."""
        self.flush()
        with dblock.transaction(db.connection()) as conn:
            cursor = conn.execute(
                "UPDATE call SET state = 'ended', ended_at = ?, hangup_by = 'system',"
                " disposition = CASE WHEN answered_at IS NULL THEN 'FAILED' ELSE 'ANSWERED' END,"
                " reason = 'sipd restarted during the call' WHERE ended_at IS NULL",
                (now,),
            )
            return cursor.rowcount

    # -- writing -------------------------------------------------------------------

    @property
    def pending(self) -> int:
        return len(self._queue)

    def _new_id(self) -> int:
        if self._next_id is None:
            row = db.connection().execute("SELECT COALESCE(MAX(id), 0) FROM call").fetchone()
            # Rows this process queued but has not written yet are above it too.
            self._next_id = row[0] + 1
        row_id = self._next_id
        self._next_id += 1
        return row_id

    def _queue_write(self, sql: str, params: tuple, new_row: int | None = None) -> None:
        self._queue.append((sql, params, new_row))
        if len(self._queue) > MAX_QUEUED:
            dropped = len(self._queue) - MAX_QUEUED
            del self._queue[:dropped]
            log.error("Call history: %d unwritten change(s) dropped (the database has been "
                      "failing for a long time)", dropped)
        if not self._scheduled:
            self._scheduled = True
            self._spawn_later(WRITE_DELAY, self._write_scheduled)

    def _write_scheduled(self) -> None:
        self._scheduled = False
        if not self.flush() and not self._scheduled:
            self._scheduled = True
            self._spawn_later(RETRY_AFTER, self._write_scheduled)

    def flush(self) -> bool:
        """Write what is queued in one transaction. False (and kept for a retry)
        when the database refuses the transaction."""
        if not self._queue:
            return True
        statements, self._queue = self._queue, []
        conn = db.connection()
        try:
            # IMMEDIATE: wait for the write lock (on the loop: sipd/dblock.py) before
            # reading anything, as the registrar's group commit does (sipd/store.py).
            dblock.begin(conn)
            try:
                for sql, params, new_row in statements:
                    cursor = conn.execute(sql, params)
                    if new_row is not None and cursor.rowcount == 0:
                        # INSERT OR IGNORE: the id was taken (a row written behind
                        # sipd's back, the only writer); the call goes on unrecorded.
                        log.warning("Call history: row %d exists already; this call "
                                    "has no row of its own", new_row)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as error:
            self._queue[:0] = statements
            if not self._failing:
                log.error("Call history: could not write %d change(s), retrying: %s",
                          len(statements), error)
            self._failing = True
            return False
        if self._failing:
            log.info("Call history: written again")
            self._failing = False
        return True


def _caller(record: dict) -> tuple:
    """caller, caller_name (what the callee was shown), caller_claimed (the display
    name the caller's phone sent), callee, caller_source."""
    return (record["caller"], record["caller_name"][:100],
            record.get("caller_claimed", "")[:100], record["callee"][:64],
            record["caller_source"][:80])
