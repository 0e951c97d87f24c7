"""Registration samples: how many extensions had a live binding, every five minutes.

Bindings are deleted once expired (sipd/daemon.py reap()), so nothing else in
the database says how many phones were registered an hour ago. sipd takes a
sample on its housekeeping timer when a new five-minute slot has begun, and
deletes those older than KEEP; the dashboard charts the last day of them. A
slot without a sample is a time sipd was not running, and is shown as such.
"""

from __future__ import annotations

import time

from peewee import fn

from core.models import Binding, RegistrationSample

SAMPLE_EVERY = 300  # seconds; the slots start at multiples of it (UTC)
# sipd looks on its 30 s housekeeping timer: a slot's sample may come this late.
LATE = 60
KEEP = 8 * 86400


def live_counts(now: float | None = None) -> tuple[int, int]:
    """(extensions with a live binding, live bindings) at `now`."""
    now = time.time() if now is None else now
    extensions, bindings = (
        Binding.select(fn.COUNT(Binding.extension.distinct()), fn.COUNT(Binding.id))
        .where(Binding.expires_at > now)
        .tuples()
        .get()
    )
    return extensions, bindings


def take(now: float | None = None) -> RegistrationSample:
    """Record the live counts at `now` and forget samples older than KEEP, in the
    caller's transaction (sipd's, which waits for the lock on its loop: sipd/dblock.py)."""
    now = time.time() if now is None else now
    extensions, bindings = live_counts(now)
    sample = RegistrationSample.create(taken_at=now, extensions=extensions, bindings=bindings)
    RegistrationSample.delete().where(RegistrationSample.taken_at < now - KEEP).execute()
    return sample


class Sampler:
    """Called on a periodic timer much shorter than SAMPLE_EVERY: samples once per slot."""

    def __init__(self, every: int = SAMPLE_EVERY):
        self.every = every
        self.slot: int | None = None

    def tick(self, now: float | None = None) -> RegistrationSample | None:
        now = time.time() if now is None else now
        slot = int(now // self.every)
        if slot == self.slot:
            return None
        self.slot = slot
        return take(now)


def between(since: float, until: float) -> list[tuple[float, int, int]]:
    """(taken_at, extensions, bindings) of the samples in [since, until), oldest first."""
    return list(
        RegistrationSample.select(RegistrationSample.taken_at, RegistrationSample.extensions,
                                  RegistrationSample.bindings)
        .where(RegistrationSample.taken_at >= since, RegistrationSample.taken_at < until)
        .order_by(RegistrationSample.taken_at)
        .tuples()
    )


def first_taken() -> float | None:
    """When the oldest sample kept was taken (None before the first)."""
    return RegistrationSample.select(fn.MIN(RegistrationSample.taken_at)).scalar()
