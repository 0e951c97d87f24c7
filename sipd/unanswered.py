"""Challenges a phone never answered, recorded for the extension's page.

A plain challenge (401) is not an AuthAttempt: every registration starts with
one, and a row per challenge would double the registrar's writes. But a phone
that is challenged and never answers sends nothing else the registrar would
record: one that cannot compute the algorithm offered (Debian 12's baresip 1.0
gives up on any SHA-256 challenge; PJSIP before 2.11 reads only the first), one
without a password, one waiting for its user to type one. Its extension's page
then said it had "never reached the PBX", which sent a new user the wrong way.

So each sipd process (the main one and every registration worker; a phone's
REGISTERs over UDP all reach the same one, sipd/workers.py) remembers, per
extension number and source address, the REGISTER challenges not yet answered.
A REGISTER from that address with credentials for the number clears the entry,
whatever it proves (right or wrong, that is recorded on its own). An entry
whose first challenge is WAIT seconds old becomes one AuthAttempt row: result
"challenge", reason REASON, the count of challenges in `times`, and a log line
naming the algorithms offered. One row per phone and episode, not per request,
and only for numbers that are extensions: a scanner walking numbers, or a flood
of REGISTERs, costs at most one row per extension and address every WAIT
seconds. The memory is bounded (LIMIT entries, the oldest dropped first).

The clock and the writer are arguments; nothing here reads the time itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger("sipd")

# Phones answer a challenge within milliseconds; over UDP a lost answer is sent
# again within a few seconds (RFC 3261 §17.1.2.2, T1 doubling). Ten seconds
# without one is an answer that is not coming.
WAIT = 10.0
LIMIT = 4096
# The recorded reason, in the panel's catalogue (app/i18n.py SIP_REASONS).
REASON = "never answered the challenge"


@dataclass
class Pending:
    number: str
    host: str
    port: int
    transport: str
    user_agent: str
    algorithms: tuple[str, ...]
    first: float  # the first challenge not answered
    last: float
    times: int = 1


class Unanswered:
    """The challenges of one process not (yet) answered.

    `record(now, number, host, port, transport, user_agent, result, reason, times)`
    writes the AuthAttempt (sipd.store.record_attempt); `exists(number)` says
    whether the number is an extension (sipd.store.extension_exists).
    """

    def __init__(self, record, exists, wait: float = WAIT, limit: int = LIMIT):
        self.record, self.exists = record, exists
        self.wait, self.limit = wait, limit
        self._pending: dict[tuple[str, str], Pending] = {}

    def challenged(self, number: str, source, user_agent: str,
                   algorithms: tuple[str, ...], now: float) -> None:
        key = (number, source.host)
        entry = self._pending.get(key)
        if entry is not None:
            entry.times += 1
            entry.last = now
            entry.port, entry.transport, entry.user_agent = (
                source.port, source.transport, user_agent)
            entry.algorithms = algorithms
            return
        if len(self._pending) >= self.limit:
            del self._pending[next(iter(self._pending))]  # the oldest (dicts keep order)
        self._pending[key] = Pending(number, source.host, source.port, source.transport,
                                     user_agent, algorithms, now, now)

    def answered(self, number: str, host: str) -> None:
        self._pending.pop((number, host), None)

    def __len__(self) -> int:
        return len(self._pending)

    def flush(self, now: float) -> list[Pending]:
        """Record the entries whose first challenge is `wait` seconds old; those."""
        due = [entry for entry in self._pending.values() if now - entry.first >= self.wait]
        recorded = []
        for entry in due:
            del self._pending[(entry.number, entry.host)]
            if not self.exists(entry.number):
                continue
            self.record(entry.last, entry.number, "REGISTER", entry.host, entry.port,
                        entry.transport, entry.user_agent, "challenge", REASON, entry.times)
            recorded.append(entry)
            host = f"[{entry.host}]" if ":" in entry.host else entry.host
            agent = f" ({entry.user_agent})" if entry.user_agent else ""
            log.warning(
                "[SIP] %s:%d%s never answered the challenge for %s (%d time%s, offered %s):"
                " the phone may not support %s, or has no password for %s",
                host, entry.port, agent, entry.number, entry.times,
                "" if entry.times == 1 else "s", ", ".join(entry.algorithms),
                "that algorithm" if len(entry.algorithms) == 1 else "those algorithms",
                entry.number,
            )
        return recorded
