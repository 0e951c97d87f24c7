"""Toll-fraud limits on calls to the outside world, checked before the first
trunk is tried (issue 12 item 4).

The routing step has already refused what an extension may never dial
(permission, country: sipd/routing/decide.py); what needs live state is here:
- blocked: an extension that tripped an hourly limit stays blocked
  (Extension.outbound_blocked_at) until an admin lifts the block;
- max_calls: outside calls at once per extension (Extension.outbound_max_calls,
  else OutboundPolicy.max_calls);
- trunk_max_calls: calls at once per trunk (Trunk.max_calls, else the policy's);
  a full trunk is skipped for the next, and only when every trunk of the route
  is full is the call refused;
- calls_per_hour, minutes_per_hour: outside calls begun, and minutes talked
  (calls still going counted up to now), in the last hour; tripping one blocks
  the extension.
Emergency calls are never refused here nor counted.

`Guard` keeps the counts in memory on the clock it is given (tests move it);
they are derived from the calls this sipd carries, and a restart starts the
hour afresh (the block itself is in the database and survives). `record`
writes a FraudEvent row (the panel's toll-fraud page) and logs the line.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

log = logging.getLogger("sipd")

HOUR = 3600.0

BLOCKED = "blocked"
MAX_CALLS = "max_calls"
TRUNK_MAX_CALLS = "trunk_max_calls"
CALLS_PER_HOUR = "calls_per_hour"
MINUTES_PER_HOUR = "minutes_per_hour"
HOURLY = (CALLS_PER_HOUR, MINUTES_PER_HOUR)


@dataclass(frozen=True)
class Limits:
    """One extension's limits (its own columns, else the policy's) and its block."""

    max_calls: int
    calls_per_hour: int
    minutes_per_hour: int
    blocked_at: float | None = None
    blocked_reason: str = ""


@dataclass(frozen=True)
class Verdict:
    """Why a call is refused: FraudEvent.rule, the words of the reason phrase and
    the log, and whether the extension is to be blocked for it."""

    rule: str
    detail: str
    block: bool = False


class Span:
    """One outside call of an extension, for the hourly counts."""

    __slots__ = ("started", "answered", "ended")

    def __init__(self, started: float):
        self.started = started
        self.answered: float | None = None
        self.ended: float | None = None

    def talked(self, since: float, now: float) -> float:
        if self.answered is None:
            return 0.0
        end = self.ended if self.ended is not None else now
        return max(0.0, end - max(self.answered, since))


class Guard:
    """The live counts: outside calls at once per extension and per trunk, and each
    extension's calls of the last hour."""

    def __init__(self, clock):
        self.clock = clock
        self.calls: dict[str, int] = {}  # extension -> outside calls now
        self.trunk_calls: dict[str, int] = {}  # trunk -> calls now
        self.hour: dict[str, deque[Span]] = {}  # extension -> its calls of the last hour
        self.blocked: set[str] = set()  # blocked by this Guard, not yet seen lifted

    def check(self, extension: str, limits: Limits, emergency: bool = False) -> Verdict | None:
        """None when `extension` may begin another outside call now."""
        if emergency:
            return None
        if limits.blocked_at is not None:
            why = limits.blocked_reason or "blocked by a toll-fraud limit"
            return Verdict(BLOCKED, f"{extension} is blocked until an admin lifts it ({why})")
        if extension in self.blocked:
            # An admin lifted our block: its hour starts afresh, or the next call
            # would block it again at once.
            self.blocked.discard(extension)
            self.hour.pop(extension, None)
        now = self.clock()
        if self.calls.get(extension, 0) >= limits.max_calls:
            return Verdict(MAX_CALLS, f"{extension} is in {limits.max_calls} outside calls,"
                                      " its limit")
        spans = self._hour(extension, now)
        if len(spans) >= limits.calls_per_hour:
            return Verdict(CALLS_PER_HOUR, f"{extension} made {limits.calls_per_hour} outside"
                                           " calls in the last hour, its limit", block=True)
        since = now - HOUR
        minutes = sum(span.talked(since, now) for span in spans) / 60
        if minutes >= limits.minutes_per_hour:
            return Verdict(MINUTES_PER_HOUR, f"{extension} talked {limits.minutes_per_hour}"
                                             " minutes outside in the last hour, its limit",
                           block=True)
        return None

    def trunk_full(self, trunk: str, max_calls: int) -> bool:
        return max_calls > 0 and self.trunk_calls.get(trunk, 0) >= max_calls

    def blocking(self, extension: str) -> None:
        """The extension is being blocked for an hourly limit (see check)."""
        self.blocked.add(extension)

    def _hour(self, extension: str, now: float) -> deque[Span]:
        spans = self.hour.setdefault(extension, deque())
        # Calls that ended over an hour ago count for nothing any more.
        while spans and spans[0].ended is not None and spans[0].ended <= now - HOUR:
            spans.popleft()
        return spans

    # -- a call's life ---------------------------------------------------------------------

    def begin(self, extension: str, emergency: bool = False) -> Span | None:
        """An outside call of `extension` begins (checked already); None for emergency."""
        if emergency:
            return None
        self.calls[extension] = self.calls.get(extension, 0) + 1
        span = Span(self.clock())
        self._hour(extension, span.started).append(span)
        return span

    def answered(self, span: Span | None) -> None:
        if span is not None and span.answered is None:
            span.answered = self.clock()

    def end(self, extension: str, span: Span | None) -> None:
        if span is None or span.ended is not None:
            return
        span.ended = self.clock()
        left = self.calls.get(extension, 0) - 1
        if left > 0:
            self.calls[extension] = left
        else:
            self.calls.pop(extension, None)

    def trunk_begin(self, trunk: str) -> None:
        self.trunk_calls[trunk] = self.trunk_calls.get(trunk, 0) + 1

    def trunk_end(self, trunk: str) -> None:
        left = self.trunk_calls.get(trunk, 0) - 1
        if left > 0:
            self.trunk_calls[trunk] = left
        else:
            self.trunk_calls.pop(trunk, None)


# -- the record ----------------------------------------------------------------------------


def record(now: float, extension: str, number: str, rule: str, detail: str, trunk: str = "",
           source: str = "", block: bool = False) -> None:
    """A FraudEvent row for the panel and the log line (DESIGN.md, Logs); with
    `block`, the extension is blocked for it. A database that stays locked costs
    the row, never the refusal: the log line is written first."""
    via = f" via trunk {trunk}" if trunk else ""
    log.warning("Call %s -> %s%s refused: %s", extension, number, via, detail)
    if block:
        log.warning("Extension %s blocked for outside calls: %s", extension, detail)
    from core.models import Extension, FraudEvent, db  # noqa: PLC0415 - the Guard needs none
    from sipd import dblock  # noqa: PLC0415

    try:
        with dblock.transaction(db.connection()):
            FraudEvent.insert(created_at=now, extension=extension[:64], number=number[:64],
                              rule=rule, detail=detail[:255], trunk=trunk,
                              source=source[:80]).execute()
            if block:
                (Extension.update(outbound_blocked_at=now, outbound_blocked_reason=detail[:255])
                 .where(Extension.number == extension, Extension.outbound_blocked_at.is_null())
                 .execute())
    except Exception as error:  # the call is refused whatever the database says
        log.warning("Toll-fraud event for %s -> %s not stored: %s", extension, number, error)
