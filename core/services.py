"""The daemons' own records of themselves, and what a reader can conclude from them.

sipd writes its row (core/models.py `Service`) when it is ready, touches
`seen_at` on its housekeeping timer and sets `stopped_at` when it stops
cleanly. A reader (the panel's dashboard) never talks to sipd for this: it
reads the row, and on the same host checks that the recorded process still
exists and is sipd (a kill -9 leaves the row saying "running"), and reads the
media relay's pid file in the run directory, which the relay writes itself.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from core.models import Service
from core.phone_settings import PhoneSettings
from core.version import code_version

# sipd touches its row on its 30 s housekeeping timer (sipd/daemon.py): three
# missed beats and it is not answering, whatever its process looks like.
STALE_AFTER = 90.0
RELAY_PIDFILE = "media-relay.pid"  # written by the relay (sipd/media/server.py)


# -- written by the daemon ------------------------------------------------------------


def started(name: str, detail: str, now: float | None = None,
            phones: PhoneSettings | None = None) -> None:
    """This process is `name` and is ready: one row per (name, host), replaced.

    `phones`: what phones must use to reach it (sipd), read by the panel and pbxctl.
    """
    now = time.time() if now is None else now
    values = {"pid": os.getpid(), "version": code_version()[:64], "started_at": now,
              "seen_at": now, "stopped_at": None, "detail": detail[:255]}
    if phones is not None:
        values.update(sip_address=phones.address[:255], address_source=phones.source[:128],
                      sip_port=phones.port, tls_port=phones.tls_port, realm=phones.realm[:255])
    (Service.insert(name=name, host=socket.gethostname(), **values)
     .on_conflict(conflict_target=[Service.name, Service.host], update=values)
     .execute())


def seen(name: str, now: float | None = None) -> None:
    now = time.time() if now is None else now
    Service.update(seen_at=now).where(*_this(name)).execute()


def stopped(name: str, now: float | None = None) -> None:
    now = time.time() if now is None else now
    Service.update(seen_at=now, stopped_at=now).where(*_this(name)).execute()


def _this(name: str):
    # The pid too: a process being replaced must not touch its successor's row.
    return (Service.name == name, Service.host == socket.gethostname(),
            Service.pid == os.getpid())


# -- read by the panel ----------------------------------------------------------------


@dataclass(frozen=True)
class ServiceState:
    """What can honestly be said about one daemon.

    state: running | stopped (cleanly) | down (its process is gone without a
    clean stop: killed or crashed) | silent (not seen for STALE_AFTER s: hung,
    or on a host whose processes we cannot see) | never (no record).
    """

    name: str
    state: str
    record: Service | None = None
    checked_process: bool = False  # the pid was looked up on this host

    @property
    def ok(self) -> bool:
        return self.state == "running"


def describe(name: str, record: Service | None, now: float, here: str | None = None,
             alive=None) -> ServiceState:
    """The state of `name` from its record; `alive(pid, program)` looks the process up
    (process_alive by default) when the record is from this host."""
    if record is None:
        return ServiceState(name, "never")
    if record.stopped_at is not None:
        return ServiceState(name, "stopped", record)
    here = socket.gethostname() if here is None else here
    found = None
    if record.host == here:
        found = (alive or process_alive)(record.pid, name)
    if found is False:
        return ServiceState(name, "down", record, checked_process=True)
    if now - record.seen_at > STALE_AFTER:
        return ServiceState(name, "silent", record, checked_process=found is not None)
    return ServiceState(name, "running", record, checked_process=found is not None)


def state_of(name: str, now: float | None = None) -> ServiceState:
    """`name` on this host, else the most recently seen record of it."""
    now = time.time() if now is None else now
    here = socket.gethostname()
    records = list(Service.select().where(Service.name == name)
                   .order_by(Service.seen_at.desc()))
    record = next((r for r in records if r.host == here), records[0] if records else None)
    return describe(name, record, now, here)


def process_alive(pid: int, program: str) -> bool | None:
    """True if `pid` is a live `python -m <program>`, False if it is gone or is
    something else now (a reused pid), None if it exists but cannot be looked at."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, another user's
    try:
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None
    return status != "Z" and program.encode() in arguments


@dataclass(frozen=True)
class RelayState:
    pid: int
    parent: int
    running: bool


def media_relay(run_dir: str) -> RelayState | None:
    """The media relay of the sipd using `run_dir`, from the pid file it writes
    ("PID PARENT"); None without one (no relay started, or it stopped cleanly)."""
    try:
        pid, parent = (int(x) for x in (Path(run_dir) / RELAY_PIDFILE).read_text().split()[:2])
    except (OSError, ValueError):
        return None
    return RelayState(pid, parent, process_alive(pid, "sipd.media") is True)
