"""The routing step: where a call goes (plan.py: the kinds of plan; decide.py: the
rules; directory.py: what the rules may know of the PBX)."""

from __future__ import annotations


def route_with(ring_timeout: float, applications: bool = False):
    """route(caller, dialled, now, in_calls) -> Step, as sipd.b2bua.Calls takes it:
    the rules of decide.py on the database as it is now. `applications`: the B2BUA
    carries out Application steps (voicemail as the fallback, *97/*98); off, none
    is planned."""
    from sipd.routing.decide import decide
    from sipd.routing.directory import StoreDirectory

    def route(caller: str, dialled: str, now: float, in_calls):
        directory = StoreDirectory(now, in_calls, applications=applications)
        directory.preload(caller, dialled)  # one statement for both
        return decide(caller, dialled, directory, now, ring_timeout)

    return route
