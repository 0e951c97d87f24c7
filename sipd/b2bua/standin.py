"""Today's routing, until the routing step (sipd/routing/decide.py) takes its place:
the number dialled is an extension, rung on all its phones for the ring timeout.

Refusals as sipd has always answered them: 404 for a number that is no
extension, 403 for a disabled one, 486 for one in as many calls as it may be.
An extension with no phone to ring is the plan's `on_unavailable` (480, from
the executor).
"""

from __future__ import annotations

from sipd import store
from sipd.routing.plan import Refuse, Ring, Step


def standin_route(ring_timeout: float):
    """route(caller, dialled, now, in_calls) -> Step, as sipd.b2bua.Calls takes it."""

    def route(caller: str, dialled: str, now: float, in_calls) -> Step:
        callee = store.party(dialled) if dialled else None
        if callee is None:
            return Refuse(404, "", "FAILED", "no such number")
        if not callee.enabled:
            return Refuse(403, "Forbidden: extension disabled", "FAILED",
                          "callee extension disabled")
        if in_calls(dialled) >= callee.max_calls:
            # What the callee's phone would answer with all its lines in use.
            return Refuse(486, "Busy Here: call limit reached", "BUSY",
                          f"callee {dialled} is in {callee.max_calls} calls, its limit")
        return Ring((dialled,), ring_timeout)

    return route
