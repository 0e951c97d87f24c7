"""The registrar's reads and writes, as plain SQL on the shared schema.

Every REGISTER goes to the database (it is the only source of truth), so this
is sipd's hot path. Peewee's query builder cost more than SQLite itself here
(it was 60% of a registration's time in a profile), so these statements are
written out once and reused; the schema is still core/models.py.
"""

from __future__ import annotations

import random
from contextlib import nullcontext
from dataclasses import dataclass
from typing import NamedTuple

from gevent import getcurrent

from core.models import db
from sipd import dblock

# Authentication attempts kept per number (the newest; about TRIM_EVERY more at most).
AUTH_HISTORY_PER_NUMBER = 200
TRIM_EVERY = 16


class BindingRow(NamedTuple):
    id: int
    contact: str
    call_id: str
    cseq: int
    instance: str
    registered_at: float
    expires_at: float
    source_host: str
    user_agent: str


# Rows as named tuples: built for every REGISTER, and a frozen dataclass costs
# several times as much to construct.
class ExtensionRow(NamedTuple):
    id: int
    number: str
    enabled: bool
    realm: str
    ha1_md5: str
    ha1_sha256: str
    digest_algorithms: str  # its own challenges ("SHA-256,MD5"), "" for the PBX's
    # Read with the extension for a REGISTER (extension(number, bindings=True)).
    bindings: list[BindingRow] | None = None
    # What a call from it needs (sipd/b2bua/calls.py): the name the callee is
    # shown, whatever the caller's phone claims, and its call limit.
    name: str = ""
    max_calls: int = 0


def _conn():
    # Within a batch the connection is fixed; peewee's connection() checks each time.
    return _batch_conn if _batch_conn is not None else db.connection()


# -- group commit ---------------------------------------------------------------------
#
# Inside a batch (begin_batch ... end_batch), the registrar's writes are queued
# instead of executed, and run together by commit_batch() in one BEGIN IMMEDIATE
# ... COMMIT. The reads and all the CPU work of a registration (parsing, digest,
# planning) then happen outside the write lock, which sipd's registration
# workers (sipd/workers.py) share through the SQLite file; only the statements
# themselves hold it.
#
# The batch belongs to the greenlet that began it. Waiting for the write lock
# (sipd/dblock.py) lets other greenlets run in the middle of a batch (an INVITE
# reading its callee, a REGISTER over TCP): for them there is no batch, they
# read and write on their own.

_batch: list[tuple[str, tuple]] | None = None
_batch_extensions: set[str] = set()  # numbers
_batch_conn = None
_batch_reading = False
_owner = None  # the greenlet of the batch


def _mine() -> bool:
    return _batch is not None and _owner is getcurrent()


def _reader():
    """The connection for a read; in a batch, inside one read transaction."""
    global _batch_reading
    if not _mine():
        return db.connection()
    if not _batch_reading:
        _batch_conn.execute("BEGIN")
        _batch_reading = True
    return _batch_conn


def _end_read() -> None:
    global _batch_reading
    if _batch_reading:
        _batch_reading = False
        _batch_conn.execute("COMMIT")


def batching() -> bool:
    """Whether the current greenlet is in a batch."""
    return _mine()


def begin_batch() -> None:
    global _batch, _batch_conn, _owner
    if _batch is not None:
        raise RuntimeError("a batch is already open")  # one greenlet batches (transport)
    _batch = []
    _batch_extensions.clear()
    _batch_conn = db.connection()
    _owner = getcurrent()


def end_batch() -> None:
    """Leave batch mode; what was not committed is dropped."""
    global _batch, _batch_conn, _owner
    _end_read()
    _batch = None
    _batch_extensions.clear()
    _batch_conn = None
    _owner = None


def touch(number: str) -> None:
    """About to read an extension's bindings to change them: if this batch already
    queued changes to them, commit those first, so the read sees them."""
    if not _mine():
        return
    if number in _batch_extensions:
        commit_batch()
    _batch_extensions.add(number)


def commit_batch() -> None:
    """Run the queued writes in one transaction; raises (after a rollback) if it
    fails, dblock.Unavailable if the database stayed locked."""
    global _batch
    if not _batch:
        return
    statements, _batch = _batch, []
    _batch_extensions.clear()
    _end_read()
    conn = _conn()
    # IMMEDIATE: take the write lock first. A deferred transaction that read and
    # then wrote could fail at once with SQLITE_BUSY if another process committed
    # in between; this one waits for the lock, on the loop (sipd/dblock.py).
    dblock.begin(conn)
    try:
        for sql, params in statements:
            conn.execute(sql, params)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # some errors (a full disk) end it already
            conn.execute("ROLLBACK")
        raise


def transaction():
    """A write transaction outside a batch (TCP, TLS); inside one, the batch's queue."""
    return nullcontext() if _mine() else dblock.transaction(db.connection())


def mark() -> int:
    """Where the queue stands, to drop what a request queued if it then fails."""
    return len(_batch) if _mine() else 0


def undo(position: int) -> None:
    if _mine():
        del _batch[position:]


def _write(sql: str, params: tuple) -> None:
    if _mine():
        _batch.append((sql, params))
        return
    # Alone, or inside transaction(): in that transaction, else in one of its own.
    with dblock.transaction(db.connection()) as conn:
        conn.execute(sql, params)


def extension(number: str, bindings: bool = False) -> ExtensionRow | None:
    """The extension `number`; with `bindings`, its bindings too, read with it.

    A REGISTER needs both, so they are one statement: each statement is a walk
    down the indexes, and in a batch the first read after another process's
    commit finds SQLite's page cache emptied.
    """
    if not bindings:
        row = (
            _reader()
            .execute(
                "SELECT id, number, enabled, realm, ha1_md5, ha1_sha256, digest_algorithms,"
                " name, max_calls"
                " FROM extension WHERE number = ?",
                (number,),
            )
            .fetchone()
        )
        return _extension_row(row) if row else None
    touch(number)
    rows = (
        _reader()
        .execute(
            "SELECT e.id, e.number, e.enabled, e.realm, e.ha1_md5, e.ha1_sha256,"
            " e.digest_algorithms, e.name, e.max_calls, b.id, b.contact, b.call_id, b.cseq,"
            " b.instance, b.registered_at, b.expires_at, b.source_host, b.user_agent"
            " FROM extension e LEFT JOIN binding b ON b.extension_id = e.id"
            " WHERE e.number = ? ORDER BY b.registered_at, b.id",
            (number,),
        )
        .fetchall()
    )
    if not rows:
        return None
    found = [BindingRow._make(r[9:]) for r in rows] if rows[0][9] is not None else []
    return _extension_row(rows[0], found)


def _extension_row(row: tuple, bindings: list[BindingRow] | None = None) -> ExtensionRow:
    return ExtensionRow(row[0], row[1], bool(row[2]), row[3], row[4], row[5], row[6], bindings,
                        row[7], row[8])


def digest_algorithms(number: str) -> str:
    """The challenges extension `number` has chosen ("SHA-256,MD5"); "" when it has
    none of its own or does not exist (the caller offers the PBX's then)."""
    row = (
        _reader()
        .execute("SELECT digest_algorithms FROM extension WHERE number = ?", (number,))
        .fetchone()
    )
    return row[0] if row else ""


def extension_exists(number: str) -> bool:
    return (
        _reader().execute("SELECT 1 FROM extension WHERE number = ?", (number,)).fetchone()
        is not None
    )


def bindings(extension_id: int) -> list[BindingRow]:
    rows = _reader().execute(
        "SELECT id, contact, call_id, cseq, instance, registered_at, expires_at, source_host,"
        " user_agent FROM binding"
        " WHERE extension_id = ? ORDER BY registered_at, id",
        (extension_id,),
    )
    return list(map(BindingRow._make, rows))


def delete_bindings(ids: list[int]) -> None:
    if ids:
        _write(f"DELETE FROM binding WHERE id IN ({','.join('?' * len(ids))})", tuple(ids))


_COLUMNS = (
    "aor, contact, source_host, source_port, transport, expires_at, call_id, cseq, "
    "user_agent, instance, q, updated_at"
)


def refresh_binding(binding_id: int, values: dict) -> None:
    # A refresh is the phone speaking to us: whatever the qualifier found before
    # (sipd/qualifier.py), it is probed afresh from here.
    _write(
        "UPDATE binding SET aor = ?, contact = ?, source_host = ?, source_port = ?,"
        " transport = ?, expires_at = ?, call_id = ?, cseq = ?, user_agent = ?, instance = ?,"
        " q = ?, updated_at = ?, unreachable_since = NULL, superseded_at = NULL WHERE id = ?",
        (*_values(values), binding_id),
    )


def supersede_bindings(ids: list[int], now: float) -> None:
    """Mark bindings that look like an earlier life of a phone that just registered
    (sipd/sip/registration.py): the qualifier probes them at once."""
    if ids:
        _write(f"UPDATE binding SET superseded_at = ? WHERE id IN ({','.join('?' * len(ids))})",
               (now, *ids))


def add_binding(extension_id: int, values: dict, now: float) -> None:
    # A leftover row for the same contact (unique per extension) is replaced.
    _write(
        f"INSERT OR REPLACE INTO binding (extension_id, {_COLUMNS}, registered_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (extension_id, *_values(values), now),
    )


def _values(values: dict) -> tuple:
    return (
        values["aor"],
        values["contact"],
        values["source_host"],
        values["source_port"],
        values["transport"],
        values["expires_at"],
        values["call_id"],
        values["cseq"],
        values["user_agent"],
        values["instance"],
        values["q"],
        values["updated_at"],
    )


def record_attempt(
    now: float,
    number: str,
    method: str,
    host: str,
    port: int,
    transport: str,
    user_agent: str,
    result: str,
    reason: str,
    times: int = 1,
) -> None:
    _write(
        "INSERT INTO auth_attempt (created_at, number, method, source_host, source_port,"
        " transport, user_agent, result, reason, times) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (now, number, method, host, port, transport, user_agent, result, reason, times),
    )
    # Bound each number's history (a guesser must not fill the disk) a little at a
    # time: now and then, trim the number just written to. A sweep over the whole
    # table (a window function every 30 s) took 0.3 s with 300,000 rows, holding
    # the write lock, and stalled every process of sipd at once.
    if random.random() < 1 / TRIM_EVERY:
        _write(
            "DELETE FROM auth_attempt WHERE number = ? AND id <= (SELECT id FROM auth_attempt"
            " WHERE number = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
            (number, number, AUTH_HISTORY_PER_NUMBER),
        )


def ring_bindings(numbers, now: float) -> dict[str, list]:
    """The live contacts of these extensions by number, in one statement: what a
    ring step rings (sipd/b2bua/executor.py; an unreachable one is not rung)."""
    numbers = tuple(numbers)
    rows = _conn().execute(
        "SELECT e.number, b.contact, b.source_host, b.source_port, b.transport,"
        " b.unreachable_since IS NOT NULL"
        " FROM extension e JOIN binding b ON b.extension_id = e.id"
        f" WHERE e.number IN ({','.join('?' * len(numbers))}) AND b.expires_at > ?"
        " ORDER BY b.registered_at, b.id",
        (*numbers, now),
    )
    found: dict[str, list] = {}
    for row in rows:
        found.setdefault(row[0], []).append(LiveBinding(*row[1:]))
    return found


@dataclass(frozen=True)
class LiveBinding:
    contact: str
    source_host: str
    source_port: int
    transport: str
    unreachable: bool = False  # it did not answer sipd's last OPTIONS (sipd/qualifier.py)
