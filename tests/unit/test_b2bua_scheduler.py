"""sipd/b2bua/scheduler.py: the B2BUA's timers on a clock the test moves, and the
daemon's scheduler driven by one loop timer (a stand-in loop here, fired by hand)."""

from __future__ import annotations

import pytest

from sipd.b2bua.scheduler import LoopScheduler, Scheduler


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def scheduler():
    return Scheduler(Clock())


def test_timers_run_when_their_time_comes_earliest_first(scheduler):
    ran = []
    scheduler.call_later(2, ran.append, "two")
    scheduler.call_later(1, ran.append, "one")
    scheduler.call_later(1, ran.append, "one again")  # same time: in the order set
    assert scheduler.advance(0.999) == 0 and ran == []
    assert scheduler.advance(0.001) == 2 and ran == ["one", "one again"]
    assert scheduler.next_due() == 1002.0
    assert scheduler.advance(5) == 1 and ran == ["one", "one again", "two"]
    assert scheduler.next_due() is None and len(scheduler) == 0


def test_a_cancelled_timer_never_runs_and_lets_go_of_its_arguments(scheduler):
    ran = []
    handle = scheduler.call_later(1, ran.append, "cancelled")
    scheduler.call_later(1, ran.append, "kept")
    handle.cancel()
    handle.cancel()  # twice is harmless
    assert handle.cancelled and handle.args == () and len(scheduler) == 1
    scheduler.advance(1)
    assert ran == ["kept"]


def test_a_timer_set_by_a_timer_runs_in_the_same_pass_when_already_due(scheduler):
    ran = []

    def first():
        ran.append("first")
        scheduler.call_later(0, ran.append, "set by first")
        scheduler.call_later(1, ran.append, "later")

    scheduler.call_later(1, first)
    scheduler.advance(1)
    assert ran == ["first", "set by first"]


def test_one_failing_timer_does_not_stop_the_others(scheduler, caplog):
    ran = []
    scheduler.call_later(1, lambda: 1 / 0)
    scheduler.call_later(1, ran.append, "after")
    assert scheduler.advance(1) == 2
    assert ran == ["after"] and "A call timer failed" in caplog.text


def test_cancelled_timers_do_not_pile_up(scheduler):
    """Calls cancel nearly every timer they set (4 h maximum durations among
    them): the heap is rebuilt once most of it is cancelled."""
    kept = scheduler.call_later(4 * 3600, lambda: None)
    for _ in range(10_000):
        scheduler.call_later(4 * 3600, lambda: None).cancel()
    assert len(scheduler) == 1
    assert len(scheduler._heap) <= 200
    assert not kept.cancelled


class Loop:
    """gevent's loop as the LoopScheduler uses it: timer watchers, fired by the test."""

    def __init__(self):
        self.watchers = []

    def timer(self, delay):
        watcher = Watcher(delay)
        self.watchers.append(watcher)
        return watcher

    @property
    def armed(self):
        return [w for w in self.watchers if w.callback is not None and not w.closed]


class Watcher:
    def __init__(self, delay):
        self.delay, self.callback, self.closed = delay, None, False

    def start(self, callback):
        self.callback = callback

    def close(self):
        self.closed = True

    def fire(self):
        self.callback()


def test_the_loop_scheduler_keeps_one_watcher_for_the_earliest_timer():
    clock, loop, spawned = Clock(), Loop(), []
    scheduler = LoopScheduler(clock, loop=loop, spawn=spawned.append)
    ran = []
    scheduler.call_later(30, ran.append, "ring time")
    scheduler.call_later(0.2, ran.append, "trying")
    scheduler.call_later(0.5, ran.append, "2xx again")
    (watcher,) = loop.armed
    assert watcher.delay == pytest.approx(0.2)
    # Fired with nothing due (the trying timer cancelled): no greenlet, re-armed.
    scheduler._heap[0][2].cancel()
    clock.now += 0.2
    watcher.fire()
    assert spawned == []
    (watcher,) = loop.armed
    assert watcher.delay == pytest.approx(0.3)
    # Fired with a timer due: the due timers run in one greenlet, then re-armed.
    clock.now += 0.3
    watcher.fire()
    assert loop.armed == [] and len(spawned) == 1
    spawned[0]()
    assert ran == ["2xx again"]
    (watcher,) = loop.armed
    assert watcher.delay == pytest.approx(29.5)
