"""The dashboard's figures: each an aggregate computed in SQL at a given `now`.

Every function takes `now` (UNIX seconds) so that a test puts rows at known
times and gets exact counts. The database may hold 100,000 calls, 10,000
extensions and millions of authentication attempts: each query here is a
COUNT or GROUP BY over an indexed range (bench/dashboard.py measures them),
never rows brought into Python to be counted.

"Today" and the hours of the charts are the server's local calendar, like
every time the panel shows (app/filters.py).
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from peewee import SQL, fn

from core import samples
from core.models import AuditEntry, AuthAttempt, Ban, Call, Extension, SchemaVersion

DAY = 86400
HOUR = 3600
WEEK_HOURS = 7 * 24


def _count():
    return fn.COUNT(SQL("*"))


def local_midnight(now: float) -> float:
    """The start of `now`'s calendar day in the server's zone."""
    day = time.localtime(now)
    return time.mktime((day.tm_year, day.tm_mon, day.tm_mday, 0, 0, 0, 0, 0, -1))


def local_hour_start(now: float) -> float:
    """The start of `now`'s hour on the local clock (a zone may be off by 30 or 45 min)."""
    moment = time.localtime(now)
    return float(int(now) - moment.tm_min * 60 - moment.tm_sec)


# -- the tiles ------------------------------------------------------------------------


@dataclass(frozen=True)
class Extensions:
    total: int
    disabled: int
    registered: int  # extensions with at least one live binding
    bindings: int


def extensions(now: float) -> Extensions:
    registered, bindings = samples.live_counts(now)
    total, disabled = (
        Extension.select(_count(), fn.COUNT(Extension.id).filter(~Extension.enabled))
        .tuples()
        .get()
    )
    return Extensions(total, disabled or 0, registered, bindings)


@dataclass(frozen=True)
class LiveCalls:
    total: int
    talking: int

    @property
    def ringing(self) -> int:
        return self.total - self.talking


def live_calls() -> LiveCalls:
    """Calls whose row has no end yet (sipd closes those of a crash when it starts)."""
    total, talking = (
        Call.select(_count(), fn.COUNT(Call.answered_at)).where(Call.ended_at.is_null())
        .tuples()
        .get()
    )
    return LiveCalls(total, talking)


@dataclass(frozen=True)
class CallsToday:
    since: float  # local midnight
    total: int
    answered: int

    @property
    def unanswered(self) -> int:
        return self.total - self.answered


def calls_today(now: float) -> CallsToday:
    since = local_midnight(now)
    total, answered = (
        Call.select(_count(), fn.COUNT(Call.answered_at))
        .where(Call.started_at >= since, Call.started_at <= now)
        .tuples()
        .get()
    )
    return CallsToday(since, total, answered)


@dataclass(frozen=True)
class Security:
    sip_failures: int  # failed SIP authentications in the last 24 h
    panel_failures: int  # failed panel logins in the last 24 h
    bans: int  # bans made in the last 24 h
    bans_in_force: int

    @property
    def failures(self) -> int:
        return self.sip_failures + self.panel_failures


def security(now: float) -> Security:
    since = now - DAY
    sip = (AuthAttempt.select(_count())
           .where(AuthAttempt.result == "failure", AuthAttempt.created_at > since,
                  AuthAttempt.created_at <= now)
           .scalar())
    panel = (AuditEntry.select(_count())
             .where(AuditEntry.created_at > since, AuditEntry.created_at <= now,
                    AuditEntry.action == "login_failed")
             .scalar())
    made = (Ban.select(_count())
            .where(Ban.created_at > since, Ban.created_at <= now)
            .scalar())
    in_force = (Ban.select(fn.COUNT(Ban.address.distinct()))
                .where(Ban.lifted_at.is_null(), Ban.expires_at > now)
                .scalar())
    return Security(sip, panel, made, in_force)


# -- the charts' data -----------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    start: float  # UNIX seconds
    value: int | None  # None: nothing is known of this slot


def calls_per_hour(now: float, hours: int = WEEK_HOURS) -> list[Slot]:
    """Calls started in each of the last `hours` local hours, this one last."""
    first = local_hour_start(now) - (hours - 1) * HOUR
    bucket = fn.FLOOR((Call.started_at - first) / HOUR)
    counts = dict(
        Call.select(bucket, _count())
        .where(Call.started_at >= first, Call.started_at <= now)
        .group_by(bucket)
        .tuples()
    )
    found = {int(index): count for index, count in counts.items()}
    return [Slot(first + index * HOUR, found.get(index, 0)) for index in range(hours)]


def registrations_per_slot(now: float, seconds: int = DAY,
                           every: int = samples.SAMPLE_EVERY) -> list[Slot]:
    """Registered extensions per sampling slot over the last `seconds`, from sipd's
    samples; a slot without one (sipd was not running) has the value None. The
    last slot is the latest whose sample is due (it may come samples.LATE s late)."""
    current = int((now - samples.LATE) // every) * every
    first = current - (seconds // every - 1) * every
    values: dict[int, int] = {}
    for taken_at, registered, _bindings in samples.between(first, now + 1):
        values[int((taken_at - first) // every)] = registered  # the last one of a slot
    return [Slot(first + index * every, values.get(index))
            for index in range(seconds // every)]


# -- storage --------------------------------------------------------------------------


@dataclass(frozen=True)
class Storage:
    path: str
    database_bytes: int  # the file and its WAL and shared-memory files
    disk_total: int
    disk_free: int

    @property
    def disk_used_share(self) -> float:
        return 1 - self.disk_free / self.disk_total if self.disk_total else 0.0


def schema_version() -> int:
    """The newest migration applied (the runner made the table at start)."""
    return SchemaVersion.select(fn.MAX(SchemaVersion.version)).scalar() or 0


def storage(db_path: str) -> Storage:
    size = 0
    for suffix in ("", "-wal", "-shm"):
        try:
            size += os.stat(db_path + suffix).st_size
        except OSError:
            pass
    try:
        usage = shutil.disk_usage(Path(db_path).parent)
        total, free = usage.total, usage.free
    except OSError:
        total = free = 0
    return Storage(db_path, size, total, free)


def trunks() -> list[tuple]:
    """[(trunk, its TrunkState or None)] by name: each trunk's state at a glance (issue 12)."""
    from core.models import Trunk, TrunkState

    states = {s.trunk_id: s for s in TrunkState.select()}
    return [(t, states.get(t.id)) for t in Trunk.select().order_by(Trunk.name)]


def blocked_extensions() -> int:
    """Extensions an hourly toll-fraud limit blocked, waiting for an admin."""
    from core.models import Extension

    return Extension.select().where(Extension.outbound_blocked_at.is_null(False)).count()
