"""sipd waits for SQLite's write lock on its event loop, not inside SQLite
(sipd/dblock.py; probe finding 9, docs/security.md). Real SQLite files, a real
second connection holding the lock; the waits are gevent's, the clock is moved."""

from __future__ import annotations

import sqlite3

import gevent
import pytest

from core import accounts
from core.models import AuthAttempt, Binding
from sipd import dblock, store

REALM = "pbx.test"


@pytest.fixture
def path(tmp_path):
    path = str(tmp_path / "lock.db")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=wal")
    conn.execute("CREATE TABLE t (v)")
    conn.close()
    return path


def connect(path, busy_ms=0):
    conn = sqlite3.connect(path, isolation_level=None, timeout=busy_ms / 1000)
    conn.execute(f"PRAGMA busy_timeout = {busy_ms}")
    return conn


class Clock:
    """A moved clock; each sleep moves it and may run something (a lock released)."""

    def __init__(self, on_sleep=None):
        self.now, self.sleeps, self.on_sleep = 100.0, [], on_sleep

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds
        if self.on_sleep:
            self.on_sleep(len(self.sleeps))


def test_an_unlocked_database_is_begun_at_once(path):
    conn, clock = connect(path), Clock()
    dblock.begin(conn, 5, sleep=clock.sleep, clock=clock)
    assert conn.in_transaction and clock.sleeps == []
    conn.execute("ROLLBACK")


def test_a_locked_database_is_waited_for_in_growing_steps(path):
    holder, conn = connect(path), connect(path)
    holder.execute("BEGIN IMMEDIATE")

    def release(count):
        if count == 8:
            holder.execute("ROLLBACK")

    clock = Clock(release)
    dblock.begin(conn, 5, sleep=clock.sleep, clock=clock)
    assert conn.in_transaction
    assert clock.sleeps == [0.001, 0.002, 0.004, 0.008, 0.016, 0.02, 0.02, 0.02]
    conn.execute("ROLLBACK")


def test_a_lock_held_past_the_wait_is_unavailable(path):
    holder, conn = connect(path), connect(path)
    holder.execute("BEGIN IMMEDIATE")
    clock = Clock()
    with pytest.raises(dblock.Unavailable, match="locked by another process for 1 s"):
        dblock.begin(conn, 1, sleep=clock.sleep, clock=clock)
    assert not conn.in_transaction
    assert 1.0 <= clock.now - 100.0 <= 1.0 + dblock.MAX_RETRY
    # A kind of OperationalError: code that handles a failing database handles it.
    assert issubclass(dblock.Unavailable, sqlite3.OperationalError)


def test_other_errors_are_not_waited_for(path):
    conn, clock = connect(path), Clock()
    conn.execute("BEGIN")
    with pytest.raises(sqlite3.OperationalError, match="within a transaction"):
        dblock.begin(conn, 5, sleep=clock.sleep, clock=clock)
    assert clock.sleeps == []


def test_the_wait_does_not_stop_other_greenlets(path):
    """With real gevent sleeps: while one greenlet waits for the lock, another runs
    and reads; SQLite's own wait would have held the whole process."""
    holder, conn = connect(path), connect(path)
    holder.execute("INSERT INTO t VALUES (1)")
    holder.execute("BEGIN IMMEDIATE")
    ticks = []

    def other():
        for _ in range(5):
            ticks.append(conn.execute("SELECT COUNT(*) FROM t").fetchone()[0])
            gevent.sleep(0.005)
        holder.execute("ROLLBACK")

    # The hub's clock is cached and stood still while earlier tests ran without it:
    # without a fresh one, joinall's 5 s timeout could fire at the first turn of the loop.
    gevent.get_hub().loop.update_now()
    waiting = gevent.spawn(dblock.begin, conn, 5)
    reader = gevent.spawn(other)
    gevent.joinall([waiting, reader], timeout=5, raise_error=True)
    assert waiting.successful() and conn.in_transaction and ticks == [1] * 5, (waiting.exception, waiting.dead, ticks)
    conn.execute("ROLLBACK")


def test_transaction_commits_rolls_back_and_joins(path):
    conn = connect(path)
    with dblock.transaction(conn, 1):
        conn.execute("INSERT INTO t VALUES ('kept')")
        with dblock.transaction(conn, 1):  # joins the open one
            conn.execute("INSERT INTO t VALUES ('kept too')")
    with pytest.raises(RuntimeError), dblock.transaction(conn, 1):
        conn.execute("INSERT INTO t VALUES ('gone')")
        raise RuntimeError("the request failed half-way")
    assert not conn.in_transaction
    assert [v for (v,) in conn.execute("SELECT v FROM t")] == ["kept", "kept too"]


# The registrar's store: a batch belongs to its greenlet


def test_while_a_batch_waits_for_the_lock_other_greenlets_work_on_their_own(
    database, settings, monkeypatch
):
    """The batch's greenlet waits for the lock in commit_batch; an INVITE's greenlet
    meanwhile reads the callee and records a failed authentication. Neither sees
    the batch: the read is plain, the write waits for the lock on its own and is
    not committed (or dropped) with the batch."""
    database.execute_sql("PRAGMA busy_timeout = 0")
    monkeypatch.setattr(dblock, "_wait", 5.0)
    extension, _, _ = accounts.create_extension("1002", REALM, password="correct-horse-9")
    holder = connect(settings.db_path)
    holder.execute("BEGIN IMMEDIATE")
    seen = {}

    def batch():
        store.begin_batch()
        try:
            store.extension("1002", bindings=True)
            store.add_binding(extension.id, binding_values(), 1000.0)
            seen["queued"] = store.mark()
            store.commit_batch()  # waits for the holder
        finally:
            store.end_batch()

    def invite():
        seen["batch waiting"] = not batcher.dead
        seen["batching"] = store.batching()
        seen["callee"] = store.extension("1002").number
        seen["mark"] = store.mark()
        holder.execute("ROLLBACK")  # the other process is done
        store.record_attempt(1000.0, "1002", "INVITE", "192.0.2.9", 5060, "UDP", "", "failure",
                             "wrong password")

    # Greenlets start in order: the batch runs until it waits for the lock.
    batcher = gevent.spawn(batch)
    other = gevent.spawn(invite)
    gevent.joinall([batcher, other], timeout=10, raise_error=True)
    assert seen == {"queued": 1, "batch waiting": True, "batching": False, "callee": "1002",
                    "mark": 0}
    assert Binding.select().count() == 1
    assert [a.method for a in AuthAttempt.select()] == ["INVITE"]


def binding_values() -> dict:
    return {"aor": "sip:1002@pbx.test", "contact": "sip:1002@192.0.2.7:5062",
            "source_host": "192.0.2.7", "source_port": 5062, "transport": "UDP",
            "expires_at": 1300.0, "call_id": "c", "cseq": 1, "user_agent": "", "instance": "",
            "q": None, "updated_at": 1000.0}


@pytest.mark.parametrize("value", ["soon", "0", "61", "nan", "-1"])
def test_a_malformed_lock_wait_is_refused_in_one_line(value):
    from core.config import ConfigError, load_settings

    with pytest.raises(ConfigError) as error:
        load_settings({"PBX_DB_LOCK_WAIT": value})
    assert str(error.value) == (f"PBX_DB_LOCK_WAIT: expected seconds from 0.1 to 60, "
                                f"got {value!r}")


def test_the_lock_wait_setting():
    from core.config import load_settings

    assert load_settings({}).db_lock_wait == 5.0
    assert load_settings({"PBX_DB_LOCK_WAIT": ""}).db_lock_wait == 5.0
    assert load_settings({"PBX_DB_LOCK_WAIT": "0.5"}).db_lock_wait == 0.5
