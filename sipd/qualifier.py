"""Qualify: probe every binding with OPTIONS (RFC 3261 §11), in the main sipd only.

The decisions are sipd/sip/qualify.py's; this carries them out. The bindings
are read from the database now and then (the registration workers write them
too, so the table, not this process's REGISTERs, says which exist). Each probe
is a client transaction of our own (Timer E retransmits it over UDP), sent the
way a call reaches the phone: over UDP to the address its REGISTER came from,
over TCP/TLS on its connection, and a connection that is gone is a failure at
once. The handler gives every response to `response` first; the ones that
match a probe end here, the rest go on to the B2BUA.

What changes is written only when it changes: unreachable_since set at the
first silence and cleared at the first answer, the binding deleted after
DROP_AFTER silences in a row, or at the first if it is superseded_at (the
registrar saw the same phone register again from a new port). Each write
names the binding's updated_at too, so a REGISTER that refreshed it meanwhile
(in any process) wins.
"""

from __future__ import annotations

import logging
import sqlite3
import time

import peewee

from core.models import Binding, db
from sipd import dblock
from sipd.registrar import Destination, Source
from sipd.sip.dialog import new_branch, new_call_id, new_tag
from sipd.sip.message import Response
from sipd.sip.qualify import Change, Schedule, Target, options_request
from sipd.sip.transaction import ClientTransactions, Event

log = logging.getLogger("sipd")

# How often the bindings are read again at most: new ones are probed within an
# interval anyway, and one SELECT of every live binding every few seconds is
# cheap next to the REGISTERs that wrote them.
SYNC_EVERY = 5.0


class Qualifier:
    def __init__(self, send, local_host: str, local_port: int, realm: str, interval: float,
                 clock=time.time, schedule: Schedule | None = None):
        self.send = send  # the transports' send(data, Destination) -> bool
        self.local_host, self.local_port, self.realm = local_host, local_port, realm
        self.clock = clock
        self.schedule = schedule or Schedule(interval)
        self.client = ClientTransactions()
        self.probes: dict[int, object] = {}  # binding id -> its probe's transaction
        self.sync_every = min(SYNC_EVERY, interval / 4)
        self._next_sync = 0.0

    def tick(self) -> None:
        """Run often (every 0.1 s): read the bindings when due, retransmit, time out, probe."""
        now = self.clock()
        if now >= self._next_sync:
            self._next_sync = now + self.sync_every
            for binding_id in self.schedule.sync(self._targets(now), now):
                self._forget(binding_id)
        resend, _ = self.client.tick(now)  # Timer F (32 s) never comes before our deadline
        for transaction in resend:
            self.send(transaction.data, transaction.destination)
        ids, changes = self.schedule.expired(now)
        for binding_id in ids:
            self._forget(binding_id)
        for change in changes:
            self._apply(change, now, "no answer to OPTIONS")
        for target in self.schedule.due(now):
            self._probe(target, now)

    def response(self, response: Response, source: Source) -> bool:
        """Whether `response` answers one of our probes (then it ends here)."""
        transaction = self.client.match(response)
        if transaction is None:
            return False
        now = self.clock()
        event, _ = self.client.receive(transaction, response, now)
        binding_id = transaction.context
        if event is Event.DELIVER and self.probes.get(binding_id) is transaction:
            # Any response, even 404 or 405: the phone is there (§11.2).
            self._forget(binding_id)
            change = self.schedule.answered(binding_id, now)
            if change is not None:
                self._apply(change, now, f"answered OPTIONS with {response.status}")
        return True

    def _targets(self, now: float) -> list[Target]:
        rows = (
            Binding.select(
                Binding.id, Binding.aor, Binding.contact, Binding.source_host,
                Binding.source_port, Binding.transport, Binding.updated_at,
                Binding.unreachable_since, Binding.superseded_at,
            )
            .where(Binding.expires_at > now)
            .tuples()
        )
        return [Target(*row[:7], row[7] is not None, row[8] is not None) for row in rows]

    def _probe(self, target: Target, now: float) -> None:
        destination = Destination(target.host, target.port, target.transport)
        via = (f"SIP/2.0/{target.transport} {self.local_host}:{self.local_port}"
               f";branch={new_branch()};rport")
        request = options_request(target, via, self.realm, new_tag(), new_call_id(self.local_host))
        transaction = self.client.start(request, destination.reliable, now,
                                        destination=destination, context=target.id)
        self.probes[target.id] = transaction
        if not self.send(transaction.data, destination):
            # No connection to send it on (TCP/TLS closed): unreachable now.
            self._forget(target.id)
            change = self.schedule.failed(target.id, now)
            if change is not None:
                self._apply(change, now, f"no {target.transport} connection")

    def _forget(self, binding_id: int) -> None:
        transaction = self.probes.pop(binding_id, None)
        if transaction is not None:
            self.client.forget(transaction)

    def _apply(self, change: Change, now: float, why: str) -> None:
        target = change.target
        unchanged = (Binding.id == target.id) & (Binding.updated_at == target.updated_at)
        where = f"{target.contact} from {target.host}:{target.port}/{target.transport}"
        try:
            # Waits for the write lock on the loop, like every sipd write (sipd/dblock.py).
            with dblock.transaction(db.connection()):
                if change.kind == "drop":
                    done = Binding.delete().where(unchanged).execute()
                elif change.kind == "unreachable":
                    done = Binding.update(unreachable_since=now).where(unchanged).execute()
                else:
                    done = (Binding.update(unreachable_since=None, superseded_at=None)
                            .where(unchanged).execute())
        except (dblock.Unavailable, peewee.DatabaseError, sqlite3.DatabaseError) as error:
            log.warning("Could not record that %s's registration is %s: %s",
                        target.aor, change.kind, error)
            return  # the next sync reads the binding as it is
        if not done:
            return  # refreshed or removed meanwhile: the next sync sees it as it is now
        if change.kind == "drop" and target.superseded:
            log.warning("Registration of %s dropped: replaced by the same phone's new one,"
                        " %s (%s)", target.aor, why, where)
        elif change.kind == "drop":
            log.warning("Registration of %s dropped: %s %d times in a row (%s)",
                        target.aor, why, change.failures, where)
        elif target.superseded:
            log.info("Registration of %s kept beside the new one from the same address: %s (%s)",
                     target.aor, why, where)
        elif change.kind == "unreachable":
            log.warning("Registration of %s unreachable: %s (%s)", target.aor, why, where)
        else:
            log.info("Registration of %s reachable again: %s (%s)", target.aor, why, where)
