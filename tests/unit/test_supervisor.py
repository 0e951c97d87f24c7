"""The decisions of `pbxctl run`'s supervisor (core/supervisor.py), on a moved clock.

The processes themselves: tests/sip/test_run_supervision.py.
"""

import pytest

from core.supervisor import Backoff, Restart, Schedule, describe_exit, exit_line


def test_a_child_that_keeps_dying_waits_1_s_doubling_to_30_s():
    backoff = Backoff()
    assert [backoff.delay(uptime=0.5) for _ in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]


def test_a_minute_up_counts_as_healthy_and_the_wait_starts_again_at_1_s():
    backoff = Backoff()
    for _ in range(5):
        backoff.delay(uptime=2)
    assert backoff.delay(uptime=59.9) == 30  # not yet healthy
    assert backoff.delay(uptime=60) == 1
    assert backoff.delay(uptime=3) == 2


def test_it_is_never_given_up_on():
    backoff = Backoff()
    delays = [backoff.delay(uptime=0) for _ in range(1000)]
    assert all(0 < delay <= 30 for delay in delays) and delays[-1] == 30


def test_schedule_starts_a_dead_child_again_when_its_wait_is_over():
    schedule = Schedule(["sipd", "panel"])
    schedule.started("sipd", now=100)
    schedule.started("panel", now=100)
    assert schedule.due(now=1000) == []  # both running: nothing to start
    assert schedule.wait(now=1000, longest=0.2) == 0.2
    restart = schedule.exited("sipd", now=112)
    assert restart == Restart("sipd", delay=1, uptime=12)
    assert schedule.due(now=112.5) == []
    assert schedule.wait(now=112.5, longest=5) == 0.5  # woken for the start, not later
    assert schedule.due(now=113) == ["sipd"]
    schedule.started("sipd", now=113)
    assert schedule.due(now=200) == []


def test_schedule_backs_off_each_child_on_its_own():
    schedule = Schedule(["sipd", "panel"])
    schedule.started("sipd", now=0)
    schedule.started("panel", now=0)
    now = 0.0
    delays = []
    for _ in range(4):  # sipd dies at once each time it is started
        now += 0.3
        delays.append(schedule.exited("sipd", now).delay)
        now += delays[-1]
        assert schedule.due(now) == ["sipd"]
        schedule.started("sipd", now)
    assert delays == [1, 2, 4, 8]
    assert schedule.exited("panel", now).delay == 1  # the panel's first crash
    # sipd then stays up past a minute: its next crash waits 1 s again.
    assert schedule.exited("sipd", now + 61) == Restart("sipd", delay=1, uptime=61)


@pytest.mark.parametrize(
    "returncode, words",
    [
        (-9, "was killed by signal 9 (SIGKILL)"),
        (-11, "was killed by signal 11 (SIGSEGV)"),
        (-15, "was killed by signal 15 (SIGTERM)"),
        (-77, "was killed by signal 77"),
        (1, "exited with status 1"),
        (0, "exited with status 0"),
    ],
)
def test_the_exit_is_named(returncode, words):
    assert describe_exit(returncode) == words


@pytest.mark.parametrize(
    "uptime, delay, shown",
    [
        (0.42, 1, "after 0.4 s; starting it again in 1 s"),
        (12.3, 2, "after 12 s; starting it again in 2 s"),
        (754, 30, "after 12 min 34 s; starting it again in 30 s"),
        (7300, 1, "after 2 h 1 min; starting it again in 1 s"),
    ],
)
def test_the_exit_line_says_what_happened_and_what_follows(uptime, delay, shown):
    line = exit_line(Restart("sipd", delay, uptime), pid=4242, returncode=-9)
    assert line == f"sipd (pid 4242) was killed by signal 9 (SIGKILL) {shown}"
