"""What the extension's page says about a phone that does not register.

A phone that gets no answer at all never reached the PBX: nothing is recorded.
A phone that reached it, was challenged and never answered with credentials is
recorded by sipd as a "challenge" row (sipd/unanswered.py): the page says so,
with the algorithms the phone is offered, instead of sending its user to check
the server address.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Unanswered:
    """A source whose latest attempts are challenges it never answered."""

    source_host: str
    source_port: int
    transport: str
    user_agent: str
    times: int  # challenges, over its consecutive latest rows


def unanswered(attempts, bindings) -> list[Unanswered]:
    """The sources (newest first) whose latest attempts, in `attempts` (newest
    first), are unanswered challenges and that have no live binding now: a phone
    registered from there since, or a row made by a process that did not see the
    answer, is no phone failing."""
    registered = {binding.source_host for binding in bindings}
    settled: set[str] = set()
    found: dict[str, Unanswered] = {}
    for attempt in attempts:
        host = attempt.source_host
        if host in settled:
            continue
        if attempt.result != "challenge":
            settled.add(host)
            continue
        before = found.get(host)
        found[host] = Unanswered(
            host,
            before.source_port if before else attempt.source_port,
            before.transport if before else attempt.transport,
            before.user_agent if before else attempt.user_agent,
            (before.times if before else 0) + attempt.times,
        )
    return [entry for host, entry in found.items() if host not in registered]
