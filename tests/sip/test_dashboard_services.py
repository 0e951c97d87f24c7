"""What a real sipd records of itself for the dashboard, and what a reader concludes from it.

sipd writes its `service` row once ready (pid, version, listeners), takes a
registration sample at start, and marks the row stopped when it stops cleanly;
a kill -9 leaves the row saying it runs, and the reader (core/services.py, as
the panel uses it) must say it is not running. The media relay is read from
the pid file it writes in sipd's run directory.
"""

from __future__ import annotations

import time

from core import services
from core.config import load_settings
from core.database import connect
from core.models import RegistrationSample, Service, db
from core.version import code_version
from tests.support import Sipd, database_with


def wait_for(predicate, timeout: float = 10.0, what: str = "it"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def read(db_path, function):
    """Run `function` on a connection of our own, closed again (sipd holds the file too)."""
    connect(load_settings({"PBX_DB": str(db_path)}), migrate=False)
    try:
        return function()
    finally:
        db.close()


def record(db_path):
    return read(db_path, lambda: Service.get_or_none(Service.name == "sipd"))


def state(db_path):
    return read(db_path, lambda: services.state_of("sipd"))


def test_sipd_records_itself_and_the_reader_follows(tmp_path):
    db_path = database_with(tmp_path / "pbx.db", ["1001"], "correct-horse-9")
    sipd = Sipd(db_path, PBX_SIP_WORKERS="1").start()
    try:
        row = wait_for(lambda: record(db_path), what="sipd's service row")
        assert row.pid == sipd.process.pid
        assert row.version == code_version()
        assert row.detail == f"UDP/TCP 127.0.0.1:{sipd.port}, 1 registration worker"
        assert row.stopped_at is None and row.seen_at == row.started_at
        current = state(db_path)
        assert current.state == "running" and current.checked_process
        # The first sample is taken at start: nothing registered yet.
        assert read(db_path, lambda: [(s.extensions, s.bindings)
                                      for s in RegistrationSample.select()]) == [(0, 0)]
        relay = wait_for(lambda: services.media_relay(str(sipd.run_dir)), what="the relay")
        assert relay.running and relay.parent == sipd.process.pid
    finally:
        sipd.stop()
    stopped = record(db_path)
    assert stopped.stopped_at is not None, sipd.log()
    assert stopped.stopped_at >= row.started_at
    assert state(db_path).state == "stopped"

    # Started again, the row is its own; killed, the row still says "running" but the
    # process is gone, and the reader says so at once.
    again = Sipd(db_path).start()
    try:
        row = wait_for(lambda: (r := record(db_path)) and r.pid == again.process.pid and r,
                       what="the new sipd's row")
        assert row.stopped_at is None
        assert state(db_path).state == "running"
    finally:
        again.kill9()
    row = record(db_path)
    assert row.stopped_at is None and row.pid == again.process.pid
    assert state(db_path).state == "down"
