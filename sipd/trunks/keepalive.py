"""A trunk's OPTIONS keep-alive: is the provider there? (RFC 3261 §11.)

Any response at all, 200 or 404 or 405, shows the provider receives our requests
on the trunk's path and answers them (§11.2), so the trunk is up; a probe that
is not answered within PROBE_TIMEOUT marks it down, and routing skips it
(TrunkManager.usable) until the next probe is answered.

No I/O and no clock: the manager asks `due(now)`, reports `sent(now)`,
`answered(now)` and collects `expired(now)`; each returns the change to
record ("up" / "down") or None. The probe itself is `options_request`.
"""

from __future__ import annotations

from sipd.sip.message import Headers, Request
from sipd.trunks.path import Path

# Unanswered this long, the probe failed: a provider answers OPTIONS within
# milliseconds, and over UDP Timer E has sent it four times by then (0, 0.5,
# 1.5, 3.5 s), so one lost datagram does not take a trunk down.
PROBE_TIMEOUT = 5.0


class KeepAlive:
    def __init__(self, interval: float, timeout: float = PROBE_TIMEOUT, up: bool = True):
        self.interval = interval
        self.timeout = min(timeout, interval) if interval else timeout
        self.up = up
        self.next_at: float | None = None
        self.deadline: float | None = None  # a probe is in flight until then

    def start(self, now: float) -> None:
        self.next_at = now  # the first probe at once: sipd just started or reloaded

    def due(self, now: float) -> bool:
        return (self.interval > 0 and self.deadline is None and self.next_at is not None
                and self.next_at <= now)

    def sent(self, now: float) -> None:
        self.deadline = now + self.timeout
        self.next_at = now + self.interval

    def answered(self, now: float) -> str | None:
        self.deadline = None
        if not self.up:
            self.up = True
            return "up"
        return None

    def expired(self, now: float) -> str | None:
        if self.deadline is None or now < self.deadline:
            return None
        self.deadline = None
        if self.up:
            self.up = False
            return "down"
        return None

    def failed(self, now: float) -> str | None:
        """It could not even be sent (no address, no connection): down now."""
        self.deadline = now
        return self.expired(now)


def options_request(path: Path, via: str, tag: str, call_id: str, user: str) -> Request:
    """The probe (§11.1): to the provider's domain, out of any dialog, no body."""
    headers = Headers([
        ("Via", via),
        ("Max-Forwards", "70"),
        ("From", f"<{path.uri(user or 'pbx')}>;tag={tag}"),
        ("To", f"<{path.uri()}>"),
        ("Call-ID", call_id),
        ("CSeq", "1 OPTIONS"),
        ("Accept", "application/sdp"),
        ("User-Agent", "pbx-sipd"),
    ])
    if path.route:
        headers.add("Route", path.route)
    return Request(headers=headers, method="OPTIONS", uri=path.uri())
