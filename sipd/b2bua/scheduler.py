"""The B2BUA's timers: `call_later(seconds, function, *args)` on a clock passed in.

A call sets several timers (the 100 Trying after 200 ms, its ring time, its
maximum duration, its 2xx's retransmissions until the ACK, a hold timeout) and
nearly all of them are cancelled unfired. So a timer is an entry in one heap,
and cancelling it only marks it; the heap is rebuilt without the cancelled
entries once they are the larger part of it (asyncio's rule), which keeps it
bounded however long the cancelled timers would have run (4 h for the
maximum duration).

A timer calls back into a call object, which decides what to send: nothing here
knows about sockets or SIP.

`Scheduler` runs what is due when asked (`run_due()`, or `advance(seconds)` on
a clock whose `now` the test sets): tests move time, nothing sleeps.
`LoopScheduler` is the daemon's: one gevent loop timer armed for the earliest
deadline, and the timers that are due run in one greenlet (they may wait on
the media relay), not a greenlet each, nor a loop watcher each (a watcher and
greenlet per timer were measurable in a call's cost: docs/benchmarks.md,
fourth session).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import time

log = logging.getLogger("sipd")

# Rebuild the heap when more than this share of it is cancelled (and it is not tiny).
_CANCELLED_SHARE = 0.5
_CANCELLED_MIN = 64


class Handle:
    """One timer; `cancel()` before it fires and it never will."""

    __slots__ = ("when", "function", "args", "_scheduler")

    def __init__(self, when: float, function, args: tuple, scheduler: Scheduler):
        self.when = when
        self.function = function
        self.args = args
        self._scheduler = scheduler

    @property
    def cancelled(self) -> bool:
        return self.function is None

    def cancel(self) -> None:
        if self.function is None:
            return
        # What the timer would have called is let go of now (its call, its
        # legs): freed by reference counting when the call ends.
        self.function = None
        self.args = ()
        self._scheduler._cancelled_one()


class Scheduler:
    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self._heap: list[tuple[float, int, Handle]] = []
        self._order = itertools.count()
        self._cancelled = 0

    def __len__(self) -> int:
        """Timers waiting (not cancelled, not run)."""
        return len(self._heap) - self._cancelled

    def call_later(self, seconds: float, function, *args) -> Handle:
        when = self.clock() + seconds
        handle = Handle(when, function, args, self)
        heapq.heappush(self._heap, (when, next(self._order), handle))
        self._added(when)
        return handle

    def next_due(self) -> float | None:
        """When the earliest timer waiting is due (None: none waits)."""
        self._drop_cancelled_head()
        return self._heap[0][0] if self._heap else None

    def run_due(self) -> int:
        """Run every timer due by now, earliest first (one a timer sets that is
        already due runs too). Returns how many ran."""
        heap = self._heap
        ran = 0
        while heap:
            when, _, handle = heap[0]
            if handle.function is None:
                heapq.heappop(heap)
                self._cancelled -= 1
                continue
            if when > self.clock():
                break
            heapq.heappop(heap)
            function, args = handle.function, handle.args
            handle.function, handle.args = None, ()
            ran += 1
            try:
                function(*args)
            except Exception:  # one call's bug must not stop everyone's timers
                log.exception("[SIP] A call timer failed")
        return ran

    def advance(self, seconds: float) -> int:
        """Tests: move the clock (an object with a settable `now`) and run what is due."""
        self.clock.now += seconds
        return self.run_due()

    # -- bookkeeping ----------------------------------------------------------------------

    def _added(self, when: float) -> None:
        """A timer was added (the loop scheduler arms its watcher here)."""

    def _cancelled_one(self) -> None:
        self._cancelled += 1
        if self._cancelled > _CANCELLED_MIN and self._cancelled > _CANCELLED_SHARE * len(
            self._heap
        ):
            self._heap = [entry for entry in self._heap if entry[2].function is not None]
            heapq.heapify(self._heap)
            self._cancelled = 0

    def _drop_cancelled_head(self) -> None:
        heap = self._heap
        while heap and heap[0][2].function is None:
            heapq.heappop(heap)
            self._cancelled -= 1


class LoopScheduler(Scheduler):
    """Driven by one timer watcher on gevent's loop, armed for the earliest deadline."""

    def __init__(self, clock=time.monotonic, loop=None, spawn=None):
        super().__init__(clock)
        import gevent

        self._spawn = spawn or gevent.spawn
        self._loop = loop or gevent.get_hub().loop
        self._watcher = None
        self._armed_for: float | None = None
        self._running = False

    def _added(self, when: float) -> None:
        if self._running:
            return  # armed once the due timers have run
        if self._armed_for is None or when < self._armed_for:
            self._arm(when)

    def _arm(self, when: float) -> None:
        if self._watcher is not None:
            self._watcher.close()
        self._armed_for = when
        self._watcher = self._loop.timer(max(0.0, when - self.clock()))
        self._watcher.start(self._fired)

    def _disarm(self) -> None:
        if self._watcher is not None:
            self._watcher.close()
        self._watcher = None
        self._armed_for = None

    def _fired(self) -> None:
        # In the hub, where nothing may wait: the timers run in a greenlet.
        self._disarm()
        self._drop_cancelled_head()
        if not self._heap:
            return
        if self._heap[0][0] <= self.clock():
            self._running = True
            self._spawn(self._run)
        else:
            self._arm(self._heap[0][0])

    def _run(self) -> None:
        try:
            self.run_due()
        finally:
            self._running = False
            self._drop_cancelled_head()
            if self._heap:
                self._arm(self._heap[0][0])
