"""sipd.history: call rows in group commits, on a real SQLite file.

The writes are scheduled through spawn functions the tests hold, so each test
decides when the queued statements are written.
"""

from __future__ import annotations

import logging
import sqlite3

import pytest

from core.config import load_settings
from core.database import connect
from sipd.history import RETRY_AFTER, WRITE_DELAY, History

RECORD = {"caller": "1001", "caller_name": "Alice", "callee": "1002",
          "caller_source": "192.0.2.10:5060/UDP"}


@pytest.fixture
def database(tmp_path):
    database = connect(load_settings({"PBX_DB": str(tmp_path / "pbx.db")}), shared=True)
    yield tmp_path / "pbx.db"
    database.close()


class Scheduled:
    """Stands for gevent.spawn_later: remembers, runs on demand."""

    def __init__(self):
        self.waiting = []

    def __call__(self, seconds, function, *args):
        self.waiting.append((seconds, function, args))

    def run(self) -> list[float]:
        """Run what waits; the delays it was scheduled with."""
        waiting, self.waiting = self.waiting, []
        for _, function, args in waiting:
            function(*args)
        return [seconds for seconds, _, _ in waiting]


def rows(path) -> list[tuple]:
    with sqlite3.connect(path) as connection:
        return connection.execute(
            "SELECT id, call_id, state, disposition, hangup_by, sip_status, caller_media,"
            " callee_media, codec FROM call ORDER BY id").fetchall()


def test_a_calls_writes_wait_for_one_commit_and_its_id_is_known_before(database):
    scheduled = Scheduled()
    history = History(scheduled)
    first = history.opened(100.0, "a@x", RECORD)
    second = history.opened(100.5, "b@x", RECORD)
    history.answered(first, 101.0, "sip:1002@192.0.2.20", "PCMU/8000")
    history.media(first, "192.0.2.10:4000", "192.0.2.20:4002")
    history.refused(102.0, "c@x", RECORD, 486, "BUSY", "callee busy")
    assert second == first + 1 and rows(database) == []  # queued, one write scheduled
    assert [s for s, _, _ in scheduled.waiting] == [WRITE_DELAY] and history.pending == 5
    history.ended(first, 103.0, "ANSWERED", "caller", None, "caller hung up")
    assert scheduled.run() == [WRITE_DELAY]
    assert history.pending == 0
    assert rows(database) == [
        (first, "a@x", "ended", "ANSWERED", "caller", 200, "192.0.2.10:4000",
         "192.0.2.20:4002", "PCMU/8000"),
        (second, "b@x", "ringing", None, None, None, "", "", ""),
        (second + 1, "c@x", "ended", "BUSY", "system", 486, "", "", ""),
    ]
    # The next rows continue after the largest id, across a new History (a restart).
    assert History(scheduled).opened(104.0, "d@x", RECORD) == second + 2


def test_one_transaction_carries_every_queued_write(database):
    scheduled = Scheduled()
    history = History(scheduled)
    watcher = sqlite3.connect(database)
    watcher.execute("SELECT 1").fetchall()
    before = watcher.execute("PRAGMA data_version").fetchone()[0]
    for n in range(20):
        row = history.opened(float(n), f"{n}@x", RECORD)
        history.ended(row, n + 1.0, "CANCELLED", "caller", 487, "caller hung up before answer")
    scheduled.run()
    # data_version moves once per commit seen by another connection.
    assert watcher.execute("PRAGMA data_version").fetchone()[0] == before + 1
    assert len(rows(database)) == 20


def test_a_locked_database_keeps_the_writes_and_retries(database, caplog):
    scheduled = Scheduled()
    history = History(scheduled)
    from core.models import db
    db.connection().execute("PRAGMA busy_timeout = 50")
    row = history.opened(100.0, "a@x", RECORD)
    blocker = sqlite3.connect(database)
    blocker.execute("BEGIN IMMEDIATE")
    with caplog.at_level(logging.ERROR, logger="sipd"):
        scheduled.run()
    assert history.pending == 1 and [s for s, _, _ in scheduled.waiting] == [RETRY_AFTER]
    assert "could not write 1 change(s), retrying" in caplog.text
    # More calls meanwhile join the same queue; no second write is scheduled.
    history.ended(row, 101.0, "FAILED", "system", 480, "callee not registered")
    assert history.pending == 2 and len(scheduled.waiting) == 1
    blocker.rollback()
    scheduled.run()
    assert history.pending == 0 and rows(database)[0][2:4] == ("ended", "FAILED")


def test_a_reused_call_id_is_a_call_of_its_own(database, caplog):
    """Two INVITEs with one Call-ID and different From tags are two calls (RFC
    3261 §12): each has its own row, named by its id (issue 14, finding 10)."""
    scheduled = Scheduled()
    history = History(scheduled)
    first = history.opened(100.0, "same@x", RECORD)
    scheduled.run()
    with caplog.at_level(logging.WARNING, logger="sipd"):
        again = history.opened(200.0, "same@x", RECORD)
        history.ended(again, 201.0, "ANSWERED", "caller", None, "x")
        scheduled.run()
    assert caplog.text == ""
    assert [r[:3] for r in rows(database)] == [(first, "same@x", "ringing"),
                                                (again, "same@x", "ended")]


def test_close_stale_writes_what_is_queued_first(database):
    scheduled = Scheduled()
    history = History(scheduled)
    history.opened(100.0, "a@x", RECORD)
    assert history.close_stale(200.0) == 1
    assert rows(database)[0][2:5] == ("ended", "FAILED", "system")
