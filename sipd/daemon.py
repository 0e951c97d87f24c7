"""Assemble sipd from the settings and run it until SIGTERM or SIGINT."""

from __future__ import annotations

import gc
import logging
import signal
import sqlite3
import time

import gevent
import peewee

from core import phone_settings, samples, services, systemd
from core.config import Settings
from core.database import connect, ensure_private, secret_key
from core.models import AuthAttempt, Binding, db
from core.phone_settings import PhoneSettings
from core.version import code_version
from sipd import dblock, recording, security, tls
from sipd.handler import Handler
from sipd.registrar import Registrar
from sipd.sip.digest import NonceMinter
from sipd.sip.registration import Policy
from sipd.transport import TcpTransport, UdpTransport, bind_tcp, bind_udp, periodic, sender
from sipd.workers import Workers, attach_steering

log = logging.getLogger("sipd")

AUTH_HISTORY_DAYS = 30
# How often the relay is asked for dead media (hung up after PBX_MEDIA_TIMEOUT)
# and for the legs that latched since, written to the live call's row.
MEDIA_CHECK_INTERVAL = 2.0
# How often challenges are checked for an answer that did not come.
UNANSWERED_CHECK = 2.0
# The longest a stop waits for the providers' answers to Expires: 0 (all trunks together).
UNREGISTER_WAIT = 2.0


def _record(what: str, function, *args, **kwargs) -> None:
    """A write for the panel's dashboard and phone settings (core/services.py,
    core/samples.py). It
    waits for the write lock on the loop like every sipd write (sipd/dblock.py):
    peewee alone would fail at once on a locked database (busy_timeout is 0), and
    a database that stays locked may cost the dashboard a record, never sipd its
    start, its housekeeping or its clean stop. `function` must not yield to the
    loop (no subprocess, no network): the connection is shared by every greenlet."""
    try:
        with dblock.transaction(db.connection()):
            function(*args, **kwargs)
    except (dblock.Unavailable, peewee.DatabaseError, sqlite3.DatabaseError) as error:
        log.warning("Could not record %s for the dashboard: %s", what, error)


def reap(now: float | None = None) -> int:
    """Delete expired bindings (§10.3: a binding lives until its expiry) and old history."""
    now = time.time() if now is None else now
    with dblock.transaction(db.connection()):
        expired = list(
            Binding.select(Binding.id, Binding.aor, Binding.contact).where(
                Binding.expires_at <= now
            )
        )
        if expired:
            Binding.delete().where(Binding.id.in_([b.id for b in expired])).execute()
        AuthAttempt.delete().where(
            AuthAttempt.created_at < now - AUTH_HISTORY_DAYS * 86400
        ).execute()
        # Each number's history is bounded as it is written (sipd/store.py).
    for binding in expired:
        log.info("Registration of %s expired (%s)", binding.aor, binding.contact)
    return len(expired)


class Registration:
    """What answers REGISTER in a process: database, registrar, handler, guard.
    The main sipd has one and so does each registration worker (sipd.workers)."""

    def __init__(self, settings: Settings, origin: int = 0):
        # One connection for the process, not one per greenlet. The main process
        # migrates; a worker starts after it has.
        self.database = connect(settings, migrate=origin == 0, shared=True)
        ensure_private(settings.db_path)
        minter = NonceMinter(
            secret_key(settings), settings.realm, settings.nonce_lifetime, origin=origin
        )
        policy = Policy(
            min_expires=settings.min_expires,
            max_expires=settings.max_expires,
            default_expires=settings.default_expires,
            max_contacts=settings.max_contacts,
        )
        self.registrar = Registrar(
            settings.realm, minter, policy, algorithms=settings.digest_algorithms
        )
        self.handler = Handler(self.registrar)
        # Bans, rate and connection limits, scanners (sipd/security.py).
        self.guard = security.build(settings, spawn=gevent.spawn)
        # Through the handler: inside a batch the ban is written after the commit.
        self.registrar.on_failure = lambda *failure: self.handler.after_commit(
            self.guard.auth_failed, *failure
        )
        # Set up (migrations, the secret key): from here on no statement waits
        # inside SQLite for a lock another process holds, which would stop the
        # whole process; writers wait on the loop instead (sipd/dblock.py).
        # Permanent: a connection peewee opens again gets it too.
        self.database.pragma("busy_timeout", 0, permanent=True)
        dblock.configure(settings.db_lock_wait)

    def housekeeping(self) -> None:
        self.registrar.nonce_counts.prune(time.time())
        self.guard.prune()

    def watch_challenges(self) -> None:
        """Challenges never answered become rows for the panel (sipd/unanswered.py)."""
        periodic(UNANSWERED_CHECK, self.registrar.flush_unanswered, "unanswered challenges")


class Sipd:
    def __init__(self, settings: Settings):
        self.settings = settings
        stack = Registration(settings)
        self.stack = stack
        self.database, self.registrar = stack.database, stack.registrar
        self.handler, self.guard = stack.handler, stack.guard
        self.servers = []
        self.workers = None

    def start(self) -> None:
        host, port = self.settings.sip_host, self.settings.sip_port
        count = self.settings.sip_workers
        udp_socket = bind_udp(host, port, reuseport=count > 0)
        # With port 0 the kernel picks; TCP then listens on the same number.
        port = udp_socket.getsockname()[1]
        tcp_socket = bind_tcp(host, port)
        if count:
            # Bound first, so this process is index 0 of the group (sipd/workers.py).
            attach_steering(udp_socket, count + 1)
        self.servers = [
            UdpTransport(udp_socket, self.handler, self.guard),
            TcpTransport(
                tcp_socket,
                self.handler,
                guard=self.guard,
                read_timeout=self.settings.tcp_read_timeout,
            ),
        ]
        if self.settings.sip_tls_port is not None:
            self.servers.append(tls.listener(self.settings, self.handler, self.guard))
        # Calls are wired before any listener starts, so no INVITE meets a half-built daemon.
        self._start_calls(host, port)
        if count:
            self.workers = Workers(count, port).start()
            self.workers.wait_ready()
        for server in self.servers:
            server.start()
        self.port = port
        reaped = reap()
        live = Binding.live().count()
        # Retransmission timers run from T1/2 steps; the table sweep once a second.
        periodic(0.1, self.handler.tick, "transaction timers")
        periodic(1.0, self.handler.expire, "transaction expiry")
        periodic(30.0, self._housekeeping, "housekeeping")
        periodic(0.5, self.guard.refresh, "ban list")
        self.stack.watch_challenges()
        interval = systemd.watchdog_interval()
        if interval:
            periodic(interval, lambda: systemd.notify("WATCHDOG=1"), "watchdog")
        log.info(
            "sipd ready on udp/tcp %s:%d, realm %s, %d live bindings (%d expired removed)",
            host,
            port,
            self.settings.realm,
            live,
            reaped,
        )
        # What the panel's dashboard shows of sipd (core/services.py, core/samples.py).
        self.sampler = samples.Sampler()
        # The version once, before the transaction: from a checkout it runs git, and a
        # subprocess yields to the loop, where the shared connection's open
        # transaction would meet a REGISTER's batch (core/models.py open_database).
        code_version()
        _record("sipd's start", services.started, "sipd", self._describe_listeners(host, port),
                phones=self._phone_settings(host, port))
        _record("a registration sample", self.sampler.tick)
        systemd.notify("READY=1\nSTATUS=serving")

    def _phone_settings(self, host: str, port: int) -> PhoneSettings:
        """What phones must use, as this sipd really listens (the kernel may have chosen
        the port): the panel and pbxctl show it from the service row."""
        address, source = phone_settings.detect(self.settings, host)
        tls_port = None
        for server in self.servers:
            if getattr(server, "transport", None) == "TLS":
                tls_port = server.socket.getsockname()[1]
        return PhoneSettings(address, source, port, tls_port, self.settings.realm)

    def _describe_listeners(self, host: str, port: int) -> str:
        parts = [f"UDP/TCP {host}:{port}"]
        if self.settings.sip_tls_port is not None:
            parts.append(f"TLS {self.settings.sip_tls_host}:{self.settings.sip_tls_port}")
        if self.workers is not None:
            count = self.settings.sip_workers
            parts.append(f"{count} registration worker{'s' if count > 1 else ''}")
        return ", ".join(parts)

    def _start_calls(self, host: str, port: int) -> None:
        """The media relay, the B2BUA and the control socket (the calls issue)."""
        from sipd.b2bua import Calls
        from sipd.control import ControlServer
        from sipd.history import History
        from sipd.media import Relay

        self.history = History()
        closed = self.history.close_stale(time.time())
        if closed:
            log.info("Closed %d call(s) left active by a previous sipd", closed)
        # The relay never sends to sipd's own port, also when the kernel chose it.
        self.relay = Relay(self.settings, own_ports=(port,)).start()
        streams = {
            server.transport: server for server in self.servers if hasattr(server, "connections")
        }
        if "TLS" not in streams:  # TLS trunks still connect out (sipd/tls.py)
            streams["TLS"] = tls.connector(self.settings, self.handler, self.guard)
        send = sender(self.servers[0], streams)
        local = self.settings.public_address or (
            host if host not in ("0.0.0.0", "::", "") else self.relay.address
        )
        self.calls = Calls(
            self.registrar,
            self.relay,
            send,
            self.handler.respond,
            local,
            port,
            self.settings.realm,
            ring_timeout=self.settings.ring_timeout,
            max_duration=self.settings.max_call_duration,
            media_timeout=self.settings.media_timeout,
            max_calls=self.settings.max_calls,
            history=self.history,
            hold_timeout=self.settings.call_hold_timeout,
            moh_file=self.settings.moh_file,
            sounds_dir=self.settings.sounds_dir,
            recording_dir=self.settings.recording_dir,
            recording_announce=recording.announcer(self.settings),
        )
        self.handler.send = send
        self.handler.calls = self.calls
        self._start_qualifier(send, local, port)
        self._start_trunks(send, local, port)
        self._start_voicemail(send, local, port)
        periodic(MEDIA_CHECK_INTERVAL, self.calls.check_media, "media check")
        periodic(3600.0, lambda: recording.cleanup(self.settings.recording_dir,
                                                   self.settings.recording_days),
                 "recordings past PBX_RECORDING_DAYS")
        try:
            self.control = ControlServer(self.settings.control_socket, self.calls, self.trunks)
            self.control.start()
        except OSError as error:
            log.warning("Control socket %s unavailable: %s", self.settings.control_socket, error)
            self.control = None

    def _start_voicemail(self, send, local: str, port: int) -> None:
        """Message waiting (sipd/mwi.py) and what the voicemail application needs of
        this process (sipd/apps/voicemail.py): the ban count, the lamps, e-mail."""
        from sipd import voicemail_mail
        from sipd.apps import voicemail
        from sipd.mwi import Notifier

        self.mwi = Notifier(self.registrar, send, local, port, self.settings.realm)
        self.handler.mwi = self.mwi
        periodic(0.1, self.mwi.tick, "message waiting")
        mailer = voicemail_mail.mailer_for(self.settings, gevent.spawn, gevent.sleep)
        voicemail.install(voicemail.Context(
            settings=self.settings, auth_failed=voicemail.guard_reporter(self.guard),
            changed=self.mwi.changed,
            new_message=voicemail_mail.email_new_message(mailer, self.settings)))
        # What an earlier sipd had still to mail (as the lamps' state is sent again).
        voicemail_mail.resend_pending(mailer, self.settings)

    def _start_qualifier(self, send, local: str, port: int) -> None:
        """OPTIONS probes of every binding (sipd/qualifier.py); here only, never in a
        worker: the responses come to this process (sipd/workers.py steers only REGISTERs)."""
        from sipd.qualifier import Qualifier

        self.qualifier = None
        interval = self.settings.qualify_interval
        if not interval:
            return
        self.qualifier = Qualifier(send, local, port, self.settings.realm, interval)
        self.handler.qualifier = self.qualifier
        periodic(0.1, self.qualifier.tick, "qualify")

    def _start_trunks(self, send, local: str, port: int) -> None:
        """Registrations to the providers (sipd/trunks/manager.py): main sipd only, as
        the qualifier, since the responses come to this process."""
        from sipd.trunks import srv
        from sipd.trunks.manager import TrunkManager

        srv.configure(list(self.settings.dns_servers) or None)
        self.trunks = TrunkManager(send, local, port)
        self.trunks.load()
        self.handler.trunks = self.trunks
        self.calls.trunks = self.trunks  # whose trunk an INVITE is (sipd/trunks/inbound.py)
        periodic(0.1, self.trunks.tick, "trunks")

    def _unregister_trunks(self, within: float = UNREGISTER_WAIT) -> None:
        """Expires: 0 to every provider sipd is registered with (RFC 3261 §10.2.2), while
        the transports still run to hear the answers; at most `within` seconds in all,
        so a provider that does not answer cannot hold up a stop."""
        trunks = getattr(self, "trunks", None)
        if trunks is None or not trunks.unregister_all():
            return
        deadline = time.monotonic() + within
        while trunks.unregistering() and time.monotonic() < deadline:
            gevent.sleep(0.02)  # the trunks' tick and the transports run meanwhile
        if trunks.unregistering():
            log.warning("[TRUNK] Stopping without every provider's answer to Expires: 0"
                        " (waited %.0f s)", within)

    def _housekeeping(self) -> None:
        reap()
        self.stack.housekeeping()
        _record("sipd's heartbeat", services.seen, "sipd")
        _record("a registration sample", self.sampler.tick)

    def stop(self) -> None:
        systemd.notify("STOPPING=1")
        self._unregister_trunks()
        if getattr(self, "control", None) is not None:
            self.control.close()
        if self.workers is not None:
            self.workers.stop()
        if getattr(self, "relay", None) is not None:
            self.relay.stop()
        for server in self.servers:
            server.stop(timeout=1)
        if getattr(self, "history", None) is not None:
            self.history.flush()  # what the last turn of the loop recorded
        if getattr(self, "sampler", None) is not None:
            _record("sipd's stop", services.stopped, "sipd")
        self.database.close()


def run(settings: Settings) -> int:
    # Caught from the start: a SIGTERM that came while sipd started (systemd stopping
    # it at once, a test) stops it cleanly once started, instead of killing it unrecorded.
    stop = _signal_event()
    daemon = Sipd(settings)
    try:
        daemon.start()
    except OSError as error:
        log.error(
            "sipd: cannot listen on %s:%d: %s",
            settings.sip_host,
            settings.sip_port,
            error.strerror or error,
        )
        return 1
    _settle_gc()
    stop.wait()
    log.info("sipd stopping")
    daemon.stop()
    return 0


def _settle_gc() -> None:
    """Once started: what start-up built (modules, settings) leaves the cyclic
    collector's reach (gc.freeze), and its youngest generation is collected
    every 5,000 net allocations instead of 700. Under call load, with Python's
    defaults, sipd made four full collections in a 2,000-call run at 250
    calls/s, 55-75 ms each (a pause in every call's signalling), and the
    collector took 8 % of the CPU (docs/benchmarks.md, fourth session).
    Garbage in cycles is still collected, later."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(5000, 10, 10)


def _signal_event(signals=(signal.SIGTERM, signal.SIGINT)) -> gevent.event.Event:
    stop = gevent.event.Event()
    for number in signals:
        gevent.signal_handler(number, stop.set)
    return stop


def _wait_for_signal(signals=(signal.SIGTERM, signal.SIGINT)) -> None:
    _signal_event(signals).wait()


def run_worker(settings: Settings, index: int, port: int, parent: int) -> int:
    """A registration worker (sipd/workers.py): REGISTERs steered to it on `port`."""
    from sipd.media.server import die_with_parent

    die_with_parent(parent)
    stack = Registration(settings, origin=index)
    udp = UdpTransport(bind_udp(settings.sip_host, port, reuseport=True, first=False),
                       stack.handler, stack.guard)
    udp.start()
    print("ready", flush=True)  # to the main process (Workers.wait_ready)
    periodic(1.0, stack.handler.expire, "transaction expiry")
    periodic(30.0, stack.housekeeping, "housekeeping")
    periodic(0.5, stack.guard.refresh, "ban list")
    stack.watch_challenges()
    log.info("Registration worker %d ready on udp %s:%d", index, settings.sip_host, port)
    # Ctrl-C in a terminal reaches the whole process group: a worker leaves its
    # stopping to the main process (SIGTERM), which would otherwise see it exit
    # first and start it again.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _settle_gc()
    _wait_for_signal((signal.SIGTERM,))
    udp.stop(timeout=1)
    stack.database.close()
    return 0
