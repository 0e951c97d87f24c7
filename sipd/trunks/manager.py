"""sipd's trunks at run time: registrations to the providers, and their state.

The decisions are sipd/trunks/registration.py's and the path
sipd/trunks/path.py's; this carries them out, in the main sipd only (the
responses come to its port). `tick()` runs often (every 0.1 s, from the
daemon) with the clock given, so tests move time instead of waiting:

    manager = TrunkManager(send, local_host, local_port, clock=time.time)
    manager.load()            # read the Trunk table; every register trunk due now
    manager.reload()          # "trunk reload": read it again, register every one again
    manager.register(name)    # "trunk register NAME": that one again now; False if unknown
    manager.unregister_all() -> int   # stopping: Expires: 0 for every registered trunk
    manager.unregistering() -> bool   # some of those not answered yet (sipd waits <= 2 s)
    manager.tick()            # timers: retransmissions, timeouts, attempts and refreshes due
    manager.response(response, source) -> bool   # ours (then it ends here) or not
    manager.usable(name) -> bool   # may a call go out through it now (routing skips it if not)
    manager.inbound(request, source) -> LiveTrunk | None   # whose trunk an INVITE is
    manager.trunks[name]      # a LiveTrunk: .row (the Trunk), .path, .status, .up ...

Every enabled trunk with a keepalive_interval is probed with OPTIONS on the
same path (sipd/trunks/keepalive.py); no answer marks it down (TrunkState
reachable false, and an IP trunk's status "down") until one is answered.

What sipd knows of each trunk is written to TrunkState whenever it changes,
for `pbxctl trunk list` and the panel. The password is never logged: reasons
come from the digest client, which names the user and the realm only.
"""

from __future__ import annotations

import logging
import socket
import sqlite3
import time

import peewee

from core.models import Trunk, TrunkState, db
from sipd import dblock
from sipd.sip.dialog import new_branch, new_call_id, new_tag
from sipd.sip.message import Response
from sipd.sip.transaction import ClientTransactions, Event
from sipd.trunks import inbound
from sipd.trunks.keepalive import KeepAlive, options_request
from sipd.trunks.path import Path, PathError, path_for
from sipd.trunks.registration import ClientRegistration, Outcome, refresh_after

log = logging.getLogger("sipd")


class LiveTrunk:
    """A Trunk row and what this sipd is doing with it."""

    def __init__(self, row: Trunk):
        self.row = row
        self.name = row.name
        self.path: Path | None = None
        self.registration: ClientRegistration | None = None
        self.status = "unregistered"
        self.next_at: float | None = None  # the next REGISTER (first, retry or refresh)
        self.transaction = None  # the REGISTER in flight
        self.contact = ""
        self.expires_at: float | None = None
        self.networks = inbound.networks(row.match_cidrs())  # --match: its calls' sources
        self.keepalive = KeepAlive(row.keepalive_interval if row.enabled else 0)
        self.probe = None  # the OPTIONS in flight

    @property
    def up(self) -> bool:
        return self.keepalive.up

    @property
    def registers(self) -> bool:
        return self.row.kind == "register" and self.row.register and self.row.enabled

    def where(self) -> str:
        """The provider as the admin wrote it, for log lines."""
        return f"{self.row.host}:{self.row.port}" if self.row.port else self.row.host


class _Probe:
    """The context of a keep-alive's transaction (a REGISTER's is the LiveTrunk)."""

    __slots__ = ("trunk",)

    def __init__(self, trunk: LiveTrunk):
        self.trunk = trunk


class _Leaving:
    """The context of an Expires: 0 REGISTER (§10.2.2): answered once more if the
    provider challenges it (a stale nonce), then forgotten."""

    __slots__ = ("trunk", "challenged")

    def __init__(self, trunk: LiveTrunk):
        self.trunk = trunk
        self.challenged = False


class TrunkManager:
    def __init__(self, send, local_host: str, local_port: int, clock=time.time,
                 getaddrinfo=socket.getaddrinfo):
        self.send = send  # the transports' send(data, Destination) -> bool
        self.local_host, self.local_port = local_host, local_port
        self.clock = clock
        self.getaddrinfo = getaddrinfo
        self.client = ClientTransactions()
        self.trunks: dict[str, LiveTrunk] = {}
        self._call_ids: dict[str, tuple[str, int]] = {}  # name -> (Call-ID, last CSeq)
        self._leaving: dict[int, object] = {}  # id -> an Expires: 0 transaction unanswered

    # --- the table -----------------------------------------------------------------

    def load(self) -> None:
        """Read the trunks; every register trunk is registered (again) at once."""
        now = self.clock()
        rows = {row.name: row for row in Trunk.select()}
        for name in list(self.trunks):
            if name not in rows:
                self._drop(self.trunks.pop(name), now)
        for name, row in rows.items():
            previous = self.trunks.get(name)
            if previous is not None:
                self._forget(previous)
                self._forget_probe(previous)
                if previous.registers and not (row.kind == "register" and row.register
                                               and row.enabled):
                    self._unregister(previous, now)
            trunk = LiveTrunk(row)
            if previous is not None:
                trunk.keepalive.up = previous.keepalive.up
            trunk.keepalive.start(now)
            self.trunks[name] = trunk
            if trunk.registers:
                call_id, cseq = self._call_ids.get(name) or (new_call_id(self.local_host), 0)
                trunk.registration = ClientRegistration(
                    name, row.username, row.auth_user, row.password, row.register_expires,
                    call_id)
                trunk.registration.cseq = cseq
                if previous is not None and previous.status == "registered":
                    trunk.status = "registered"  # until the new REGISTER says otherwise
                trunk.next_at = now
            else:
                status = "disabled" if not row.enabled else (
                    ("up" if trunk.up else "down") if row.keepalive_interval else "unregistered")
                trunk.status = status
                self._record(trunk, status=status, reason="", next_attempt_at=None,
                             expires_at=None, reachable=trunk.up)

    def reload(self) -> int:
        self.load()
        count = sum(1 for trunk in self.trunks.values() if trunk.registers)
        log.info("[TRUNK] Trunks reloaded: %d trunk(s), %d to register",
                 len(self.trunks), count)
        return count

    def usable(self, name: str) -> bool:
        """Whether a call may go out through trunk `name` now: it exists and is
        enabled, its keep-alive has not marked it down, and it is not a register
        trunk whose registration failed (the provider refused it: its INVITEs
        would be refused too). A trunk still registering is usable."""
        trunk = self.trunks.get(name)
        return bool(trunk is not None and trunk.row.enabled and trunk.up
                    and not (trunk.registers and trunk.status == "failed"))

    def inbound(self, request, source) -> LiveTrunk | None:
        """The trunk an INVITE comes from (sipd/trunks/inbound.py), None if no trunk's."""
        if not self.trunks:
            return None
        found = inbound.match(self.trunks.values(), request, source)
        if found is None:
            disabled = inbound.disabled_match(self.trunks.values(), source)
            if disabled is not None:
                log.info("[TRUNK] %s is disabled: a call from %s is challenged like a"
                         " stranger's", disabled.name, source)
        return found

    def register(self, name: str) -> bool:
        trunk = self.trunks.get(name)
        if trunk is None or not trunk.registers:
            return False
        self._forget(trunk)
        trunk.next_at = self.clock()
        return True

    def unregister_all(self) -> int:
        """sipd is stopping: every registered trunk removes its binding (§10.2.2), so
        the provider stops sending calls to an address nobody answers. Best effort:
        the caller waits a bounded time on unregistering()."""
        now = self.clock()
        count = 0
        for trunk in self.trunks.values():
            self._forget(trunk)
            trunk.next_at = None  # no refresh after this
            if trunk.registers and trunk.status == "registered" and trunk.path is not None:
                self._unregister(trunk, now)
                count += 1
            if trunk.registers:
                trunk.status = "unregistered"
                self._record(trunk, status="unregistered", reason="sipd stopped",
                             expires_at=None, next_attempt_at=None)
        return count

    def unregistering(self) -> bool:
        return bool(self._leaving)

    # --- the loop --------------------------------------------------------------------

    def tick(self) -> None:
        now = self.clock()
        resend, timed_out = self.client.tick(now)
        for transaction in resend:
            self.send(transaction.data, transaction.destination)
        for transaction in timed_out:
            trunk = transaction.context
            if isinstance(trunk, LiveTrunk) and trunk.transaction is transaction:
                trunk.transaction = None
                address = trunk.path.address if trunk.path else trunk.where()
                self._apply(trunk, trunk.registration.timeout(address), now)
        for transaction in timed_out:
            trunk = transaction.context
            if isinstance(trunk, _Probe) and trunk.trunk.probe is transaction:
                trunk.trunk.probe = None  # the keep-alive's own deadline decides
            self._leaving.pop(id(transaction), None)
        for trunk in self.trunks.values():
            if (trunk.registers and trunk.transaction is None and trunk.next_at is not None
                    and trunk.next_at <= now):
                self._attempt(trunk, now)
            change = trunk.keepalive.expired(now)
            if change:
                self._forget_probe(trunk)
                where = trunk.path.address if trunk.path else trunk.where()
                self._reachable(trunk, change, f"no answer to OPTIONS from {where}")
            if trunk.keepalive.due(now):
                self._probe(trunk, now)

    def response(self, response: Response, source) -> bool:
        transaction = self.client.match(response)
        if transaction is None:
            return False
        now = self.clock()
        event, _ = self.client.receive(transaction, response, now)
        trunk = transaction.context
        if event is not Event.DELIVER or response.status < 200:
            return True
        if isinstance(trunk, _Leaving):
            self._left(transaction, trunk, response, now)
            return True
        if isinstance(trunk, LiveTrunk) and trunk.transaction is transaction:
            trunk.transaction = None
            self._apply(trunk, trunk.registration.response(response), now)
        elif isinstance(trunk, _Probe) and trunk.trunk.probe is transaction:
            live = trunk.trunk
            live.probe = None
            change = live.keepalive.answered(now)
            if change:
                self._reachable(live, change, f"answered OPTIONS with {response.status}")
        return True

    # --- keep-alive ------------------------------------------------------------------

    def _probe(self, trunk: LiveTrunk, now: float) -> None:
        trunk.keepalive.sent(now)
        try:
            path = path_for(trunk.row, self.getaddrinfo)
        except PathError as error:
            change = trunk.keepalive.failed(now)
            if change:
                self._reachable(trunk, change, str(error))
            return
        if trunk.path is None:
            trunk.path = path
        request = options_request(path, self._via(path), new_tag(),
                                  new_call_id(self.local_host), path.from_user)
        destination = path.destination()
        transaction = self.client.start(request, destination.reliable, now,
                                        destination=destination, context=_Probe(trunk))
        trunk.probe = transaction
        if not self.send(transaction.data, destination):
            self._forget_probe(trunk)
            change = trunk.keepalive.failed(now)
            if change:
                self._reachable(trunk, change, self._unsent(path, destination))

    def _unsent(self, path: Path, destination) -> str:
        """Why a message to the provider could not be sent: the transport's reason
        where it has one (a TLS certificate that failed verification, sipd/tls.py),
        else the address."""
        failure = getattr(self.send, "failure", None)
        why = failure(destination) if failure is not None else None
        return why or f"could not send to {path.address}"

    def _forget_probe(self, trunk: LiveTrunk) -> None:
        if trunk.probe is not None:
            self.client.forget(trunk.probe)
            trunk.probe = None

    def _reachable(self, trunk: LiveTrunk, change: str, why: str) -> None:
        fields = {"reachable": change == "up"}
        if not trunk.registers:
            trunk.status = change
            fields.update(status=change, reason=why[:255])
        self._record(trunk, **fields)
        if change == "down":
            log.warning("[TRUNK] %s is down: %s; calls skip it until it answers", trunk.name,
                        why)
        else:
            log.info("[TRUNK] %s is up again: %s", trunk.name, why)

    # --- registering -----------------------------------------------------------------

    def _attempt(self, trunk: LiveTrunk, now: float) -> None:
        """A new REGISTER: the path found again (a name may point elsewhere by now)."""
        trunk.next_at = None
        try:
            trunk.path = path_for(trunk.row, self.getaddrinfo)
        except PathError as error:
            self._apply(trunk, trunk.registration.error(str(error)), now)
            return
        if trunk.status not in ("registered", "registering"):
            self._record(trunk, status="registering", address=trunk.path.address)
            trunk.status = "registering"
        self._send_register(trunk, now)

    def _contact(self, path: Path, user: str) -> str:
        host = f"[{self.local_host}]" if ":" in self.local_host else self.local_host
        params = "" if path.transport == "UDP" else f";transport={path.transport.lower()}"
        return f"sip:{user}@{host}:{self.local_port}{params}"

    def _via(self, path: Path) -> str:
        host = f"[{self.local_host}]" if ":" in self.local_host else self.local_host
        return f"SIP/2.0/{path.transport} {host}:{self.local_port};branch={new_branch()};rport"

    def _send_register(self, trunk: LiveTrunk, now: float, expires: int | None = None):
        """Send trunk's next REGISTER; the transaction, or None if it could not be sent."""
        path, registration = trunk.path, trunk.registration
        trunk.contact = self._contact(path, trunk.row.username or "pbx")
        request = registration.request(path, trunk.contact, self._via(path), new_tag(), expires)
        self._call_ids[trunk.name] = (registration.call_id, registration.cseq)
        destination = path.destination()
        transaction = self.client.start(request, destination.reliable, now,
                                        destination=destination,
                                        context=trunk if expires is None else _Leaving(trunk))
        if expires is None:
            trunk.transaction = transaction
        else:
            self._leaving[id(transaction)] = transaction
        if not self.send(transaction.data, destination):
            self.client.forget(transaction)
            self._leaving.pop(id(transaction), None)
            if expires is None:
                trunk.transaction = None
                self._apply(trunk, registration.error(self._unsent(path, destination)), now)
            return None
        return transaction

    def _apply(self, trunk: LiveTrunk, outcome: Outcome, now: float) -> None:
        if outcome.kind == "resend":
            self._send_register(trunk, now)
            return
        if outcome.kind == "registered":
            if outcome.expires == 0:
                outcome = trunk.registration.error(
                    f"provider granted 0 s to {trunk.contact} ({outcome.reason})")
            else:
                before = trunk.status
                trunk.status = "registered"
                trunk.expires_at = now + outcome.expires
                trunk.next_at = now + refresh_after(outcome.expires)
                self._record(trunk, status="registered", last_code=outcome.code,
                             reason=outcome.reason, registered_at=now,
                             expires_at=trunk.expires_at, next_attempt_at=trunk.next_at,
                             failures=0, contact=trunk.contact, address=trunk.path.address)
                if before != "registered":
                    where = trunk.where()
                    if trunk.path.host not in where:  # a name: say where it led (SRV, DNS)
                        where += f" = {trunk.path.address}"
                    log.info("[TRUNK] %s registered at %s (expires %d s)", trunk.name,
                             where, outcome.expires)
                else:
                    log.debug("[TRUNK] %s registration refreshed (expires %d s)", trunk.name,
                              outcome.expires)
                return
        trunk.status = "failed"
        trunk.expires_at = None
        trunk.next_at = now + outcome.retry_in
        self._record(trunk, status="failed", last_code=outcome.code, reason=outcome.reason[:255],
                     expires_at=None, next_attempt_at=trunk.next_at,
                     failures=trunk.registration.failures,
                     address=trunk.path.address if trunk.path else "")
        log.warning("[TRUNK] %s registration at %s failed: %s; next attempt in %d s",
                    trunk.name, trunk.where(), outcome.reason, outcome.retry_in)

    def _unregister(self, trunk: LiveTrunk, now: float) -> None:
        """Best effort Expires: 0 (§10.2.2) for a trunk that stops registering."""
        if trunk.status != "registered" or trunk.path is None or trunk.registration is None:
            return
        self._send_register(trunk, now, expires=0)
        log.info("[TRUNK] %s unregistered from %s", trunk.name, trunk.where())

    def _left(self, transaction, leaving: _Leaving, response: Response, now: float) -> None:
        self._leaving.pop(id(transaction), None)
        trunk = leaving.trunk
        outcome = trunk.registration.response(response)
        if outcome.kind == "resend" and not leaving.challenged:
            again = self._send_register(trunk, now, expires=0)
            if again is not None:
                again.context.challenged = True  # answered a challenge once: not twice
            return
        if response.status >= 300:
            log.warning("[TRUNK] %s: the provider refused to remove the binding: %d %s",
                        trunk.name, response.status, response.reason)

    def _drop(self, trunk: LiveTrunk, now: float) -> None:
        self._forget(trunk)
        self._forget_probe(trunk)
        self._unregister(trunk, now)
        self._call_ids.pop(trunk.name, None)

    def _forget(self, trunk: LiveTrunk) -> None:
        if trunk.transaction is not None:
            self.client.forget(trunk.transaction)
            trunk.transaction = None

    # --- TrunkState ------------------------------------------------------------------

    def _record(self, trunk: LiveTrunk, **fields) -> None:
        fields["updated_at"] = self.clock()
        try:
            # Waits for the write lock on the loop, like every sipd write (sipd/dblock.py).
            with dblock.transaction(db.connection()):
                (TrunkState.insert(trunk=trunk.row.id, **fields)
                 .on_conflict(conflict_target=[TrunkState.trunk], update=fields)
                 .execute())
        except (dblock.Unavailable, peewee.DatabaseError, sqlite3.DatabaseError) as error:
            log.warning("Could not record trunk %s's state (%s): %s", trunk.name,
                        fields.get("status", "?"), error)
