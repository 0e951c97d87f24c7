"""The RTP media relay: sipd's side of it.

The relay itself is a separate process (`python -m sipd.media`, see server.py
for why and how): sipd starts it, talks to it over an inherited Unix socket,
and the relay exits when sipd does, so after a crash or restart the port pool
starts clean. This module is the client sipd uses. It does blocking socket I/O
through the standard library, which gevent's monkey-patching (sipd/__main__.py)
makes cooperative: a request waits for the relay's reply without holding the
hub (replies take well under a millisecond). The requests of many calls are in
flight at once, each reply matched to its request by id.

API for the B2BUA:

    relay = Relay(settings).start()     # once, in Sipd.start(); relay.stop() in Sipd.stop()
    relay.address                        # the address to write into SDP (PBX_PUBLIC_ADDRESS,
                                         # else detected: see advertised_address())

    session = relay.open_session(call_id, stream=None, source=None)
                                                 # raises PortsExhausted -> 503 +
                                                 # Retry-After; with the caller's offer's
                                                 # Stream, leg A is applied in the same trip
    session.leg("A").local_rtp_port              # A faces the caller, B the callee;
    session.leg("A").local_rtcp_port             # RTCP is always RTP + 1

    # The caller's offer: tell leg A where the caller wants media, and forward
    # the offer to the callee with *leg B's* ports (the callee sends to leg B):
    offer = SessionDescription.parse(body)       # sipd.sip.sdp; SdpError -> 400
    stream = offer.streams()[0]                  # one session per relayed m= line
    relay.apply_stream(session, "A", stream, source=caller_ip)
                                                 # = set_remote + set_direction below,
                                                 # sent without waiting for a reply
    body_to_callee = bytes(rewrite(offer, relay.address, {0: session.leg("B").local_rtp_port}))
    # ... and the callee's answer the other way round: apply_stream(session, "B", ...)
    # and rewrite(answer, relay.address, {0: session.leg("A").local_rtp_port}).

    relay.set_remote(session, "A", host, rtp_port, rtcp_port=None, source=None)
                                  # from SDP c=/m=/a=rtcp

    source: the IP address a phone's signalling comes from (the caller's INVITE
    source, the callee's registered source). The leg then latches only to
    packets from that address or its SDP address (any port), and sends to its
    SDP address before it latched only if that is the signalling address. Leave
    it out for a trunk's leg: it latches to its SDP address only, and is sent to
    there from the start (carriers are not behind NAT). See session.py.
    relay.set_direction(session, "A", "sendonly")  # the direction in A's own SDP (hold)
    relay.stats(session)          # dict: per leg packets/bytes in/out, idle s, latched source
    relay.close_session(session)  # ports released; returns the final stats; idempotent
    relay.close_session(session, wait=False)  # the same, not waited for (the B2BUA's way):
                                             # returns None; last sources come with check()
    relay.dead_sessions(timeout=60, hold_timeout=None)
        # sessions whose media (RTP or RTCP) has been dead on both legs for `timeout`
        # seconds (calls on hold: hold_timeout, None = never), plus every session the
        # relay lost by crashing: the B2BUA hangs these calls up (BYE both sides) and
        # closes them. Poll it every few seconds, e.g. periodic(5.0, ...).
    relay.check(timeout=60, hold_timeout=None)
        # MediaCheck(dead=dead_sessions(...), latched={session: ("host:port", "host:port")},
        # closed={...}): also, once per session, the sources legs A and B latched to (for
        # the live calls page), and those of sessions closed with wait=False (the history)
    relay.info()                  # pid, sessions, ports free/total, packet totals

The PBX's own endpoint on a leg (sipd/media/endpoint.py; ops in server.py):

    relay.endpoint(session, "endpoint", leg="A", payload_type=0, event_type=101)
    relay.endpoint(session, "play", files=[...], tag=1)   # and tone, stop, echo,
                                  # record, record_stop, detach: the reply as a dict
    relay.events(session, timeout) -> list[dict]   # what happened on its endpoints
                                  # ("key", "played", "recorded", "closed"), waited for
                                  # up to `timeout` seconds ([] when nothing came)

Call start() from the main thread (any greenlet of sipd's hub is): the relay
is also told to die with the thread that started it (PR_SET_PDEATHSIG).

The relay forwards RTP and RTCP only (rtp.py), and never to the PBX's own
endpoints (own.py): sipd's SIP ports (settings, plus own_ports=(the port bound
when PBX_SIP_LISTEN says 0,)), the panel's port, the relay's bound ports and
every privileged port, on any address of this host or PBX_PUBLIC_ADDRESS.

Options: Relay(settings, realtime=False) keeps the relay off real-time
scheduling (default: it asks for SCHED_RR 1, else nice -10, see server.py and
docs/benchmarks.md; under systemd it needs LimitRTPRIO=1 to get it);
coalesce_ms sets its pause per batch of packets (default 0.5 ms); bind= and
address= override where it binds and what goes into SDP.

Every method raises MediaError (a subclass for exhaustion) with a message fit
for the log; none blocks the hub for longer than one round trip to the relay,
bounded by REPLY_TIMEOUT. If the relay process dies, the next call restarts it
and the sessions it had are reported by dead_sessions().
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from core import phone_settings
from core.config import ROOT, Settings

log = logging.getLogger("sipd.media")

REPLY_TIMEOUT = 5.0
START_TIMEOUT = 10.0
RETRY_AFTER = 10  # seconds, for the 503 when the ports run out
WILDCARDS = ("", "0.0.0.0", "::")


class MediaError(Exception):
    """The relay could not do what was asked; the message says why."""


class PortsExhausted(MediaError):
    """No media port pair is free: answer 503 with Retry-After: RETRY_AFTER."""

    retry_after = RETRY_AFTER


@dataclass(frozen=True)
class LegPorts:
    name: str
    local_rtp_port: int
    local_rtcp_port: int


@dataclass(frozen=True)
class MediaSession:
    id: int
    call_id: str
    legs: dict[str, LegPorts] = field(hash=False, compare=False)
    generation: int = 0  # which relay process holds it

    def leg(self, name: str) -> LegPorts:
        try:
            return self.legs[name]
        except KeyError:
            raise MediaError(f"no leg {name!r} (legs are A and B)") from None


def bind_address(settings: Settings) -> str:
    """Where the relay binds: sipd's own listening address if it is a specific
    one (a test on 127.0.0.1 keeps media on loopback), else every interface."""
    return settings.sip_host if settings.sip_host not in WILDCARDS else "0.0.0.0"


def advertised_address(settings: Settings) -> str:
    """The address written into SDP: the one phones are told too (core/phone_settings.py)."""
    address, source = phone_settings.detect(settings)
    if source == phone_settings.FROM_FALLBACK:
        log.warning("[RTP] No default route to detect the public address from; advertising "
                    "127.0.0.1 (set PBX_PUBLIC_ADDRESS)")
    return address


class Relay:
    def __init__(self, settings: Settings, *, bind: str | None = None,
                 address: str | None = None, python: str = sys.executable,
                 coalesce_ms: float | None = None, realtime: bool | None = None,
                 own_ports=()):
        self.settings = settings
        self.bind = bind or bind_address(settings)
        self.address = address or advertised_address(settings)
        self.ports = settings.rtp_ports
        self.own_ports = sorted(
            {settings.sip_port, settings.sip_tls_port, settings.panel_port, *own_ports}
            - {0, None})
        self.python = python
        self.coalesce_ms = coalesce_ms  # None: the relay's default (server.COALESCE)
        # PBX_MEDIA_REALTIME (proposed setting, default on): see server.RELAY_RT_PRIORITY.
        self.realtime = (realtime if realtime is not None
                         else getattr(settings, "media_realtime", True))
        self.pidfile = (str(Path(settings.run_dir) / "media-relay.pid")
                        if settings.run_dir else None)
        self.process: subprocess.Popen | None = None
        self.generation = 0
        self._sock: socket.socket | None = None
        self._buffer = b""
        # _lock: starting, stopping and restarting the relay, and sending to it.
        # Replies are awaited outside it, so requests of many calls are in flight
        # at once (the relay answers a batch of them per loop); _reading lets one
        # waiter at a time read the socket and file every reply it finds.
        self._lock = threading.Lock()
        self._reading = threading.Lock()
        self._waiting: set[int] = set()
        self._replies: dict[int, dict] = {}
        self._next_request = 1
        self._sessions: dict[int, MediaSession] = {}
        # Closed without waiting (close_session(wait=False)), by id, until the relay
        # reports them; and those it never will (already lost, or the relay died
        # first): every such session comes out of check() once.
        self._closing: dict[int, MediaSession] = {}
        self._unreported: list[MediaSession] = []
        # Sessions a relay process had when it died, by (generation, id).
        self._lost: dict[tuple[int, int], MediaSession] = {}
        # Endpoint events the relay wrote, by (generation, session id), until asked.
        self._events: dict[tuple[int, int], list[dict]] = {}

    # --- process --------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> Relay:
        with self._lock:
            self._start()
        return self

    def _start(self) -> None:
        self._kill_orphan()
        if self.pidfile:
            os.makedirs(os.path.dirname(self.pidfile), exist_ok=True)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        command = [
            self.python, "-m", "sipd.media",
            "--control-fd", str(theirs.fileno()),
            "--parent", str(os.getpid()),
            "--bind", self.bind,
            "--ports", f"{self.ports[0]}-{self.ports[1]}",
            "--log-level", self.settings.log_level,
        ]
        if self.pidfile:
            command += ["--pidfile", self.pidfile]
        if self.settings.log_file:
            command += ["--log-file", self.settings.log_file]
        if not self.realtime:
            command.append("--no-realtime")
        if self.coalesce_ms is not None:
            command += ["--coalesce-ms", str(self.coalesce_ms)]
        command += ["--own-ports", ",".join(map(str, self.own_ports))]
        for host in {self.address, self.settings.public_address} - {None, ""}:
            command += ["--own-address", host]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        try:
            self.process = subprocess.Popen(
                command, pass_fds=(theirs.fileno(),), env=env, cwd=str(ROOT),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            )
        finally:
            # Only the relay may hold its end: when sipd goes, the relay sees EOF.
            theirs.close()
        self._sock = ours
        self._buffer = b""
        self.generation += 1
        try:
            hello = self._read_hello(START_TIMEOUT)
        except MediaError:
            self._terminate()
            raise
        if not hello.get("ready"):
            self._terminate()
            raise MediaError(f"media relay failed to start: {hello.get('error')}")

    def stop(self) -> None:
        with self._lock:
            self._terminate()
            self._sessions.clear()
            self._lost.clear()

    def _terminate(self) -> None:
        if self._sock is not None:
            self._sock.close()  # the relay exits on EOF
            self._sock = None
        process, self.process = self.process, None
        if process is None:
            return
        try:
            process.wait(timeout=3)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=3)

    def _kill_orphan(self) -> None:
        """A relay left by a sipd that is gone (and somehow did not exit with it)
        still holds its ports: kill it. A relay whose sipd is alive belongs to
        another sipd sharing this run directory, and is left alone."""
        if not self.pidfile:
            return
        try:
            relay_pid, parent_pid = (int(x) for x in Path(self.pidfile).read_text().split()[:2])
        except (OSError, ValueError):
            return
        if not _is_relay(relay_pid):
            return
        if parent_pid != os.getpid() and _alive(parent_pid):
            log.warning("[RTP] Another sipd (pid %d) runs a media relay with this run "
                        "directory; not touching it", parent_pid)
            return
        log.warning("[RTP] Killing orphan media relay pid %d (its sipd %d is gone)",
                    relay_pid, parent_pid)
        try:
            os.kill(relay_pid, signal.SIGKILL)
        except OSError:
            pass
        for _ in range(100):
            if not _is_relay(relay_pid):
                break
            time.sleep(0.02)

    # --- requests ---------------------------------------------------------------

    def _call(self, request: dict, wait: bool = True) -> dict | None:
        """Send a request and return its reply; with wait=False, send it and go on
        (the relay answers only if it fails, and _read_replies logs that)."""
        with self._lock:
            if self.process is None or self.process.poll() is not None:
                self._restart()
            request_id = self._next_request
            self._next_request += 1
            generation = self.generation
            if not wait:
                request = {**request, "reply": False}
            data = json.dumps({**request, "id": request_id}, separators=(",", ":")).encode()
            if wait:
                self._waiting.add(request_id)
            try:
                self._sock.sendall(data + b"\n")
            except OSError as error:
                self._waiting.discard(request_id)
                self._failed(generation, error)
        if not wait:
            return None
        try:
            reply = self._await(request_id, REPLY_TIMEOUT)
        except (MediaError, OSError) as error:
            with self._lock:
                self._failed(generation, error)
        finally:
            self._waiting.discard(request_id)
            self._replies.pop(request_id, None)
        if not reply.get("ok"):
            if reply.get("code") == "exhausted":
                raise PortsExhausted(reply.get("error", "out of media ports"))
            raise MediaError(reply.get("error", "media relay refused the request"))
        return reply

    def _failed(self, generation: int, error: Exception) -> None:
        """With _lock held: restart the relay (unless a failure seen by another
        request of the same relay did already) and raise MediaError."""
        if generation == self.generation:
            log.error("[RTP] Media relay failed (%s); restarting it", error)
            self._restart()
        raise MediaError(f"media relay failed: {error}") from None

    def _await(self, request_id: int, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            reply = self._replies.pop(request_id, None)
            if reply is not None:
                return reply
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise MediaError(f"no reply from the media relay within {timeout:g} s")
            if not self._reading.acquire(timeout=remaining):
                continue
            try:
                if request_id not in self._replies:
                    self._read_replies(remaining)
            finally:
                self._reading.release()

    def _read_replies(self, timeout: float) -> None:
        """One read from the relay; file the replies that someone waits for (a reply
        to a request that timed out is dropped)."""
        sock = self._sock
        if sock is None:
            raise MediaError("the media relay is not running")
        sock.settimeout(timeout)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return
        if sock is not self._sock:
            raise MediaError("the media relay was restarted")
        if not chunk:
            raise MediaError("the media relay closed its control socket")
        self._buffer += chunk
        for reply in self._complete_replies():
            if "event" in reply:
                # Kept for live sessions only: a closed one's last events (its
                # endpoint "closed") have nobody to read them.
                if reply.get("session") in self._sessions:
                    self._events.setdefault((self.generation, reply["session"]), []).append(reply)
            elif reply.get("id") in self._waiting:
                self._replies[reply["id"]] = reply
            elif not reply.get("ok"):
                # A request nobody waits for (wait=False) failed.
                log.warning("[RTP] Media relay refused a request: %s", reply.get("error"))

    def _complete_replies(self):
        """The replies whole in the buffer, taken out of it in order."""
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            try:
                yield json.loads(line)
            except ValueError:
                raise MediaError("unreadable reply from the media relay") from None

    def _restart(self) -> None:
        was_running = self.process is not None
        status = self.process.poll() if self.process else None
        if self._sessions:
            log.error("[RTP] Media relay %s; %d calls lose their media",
                      f"exited with status {status}" if status is not None else "is stuck",
                      len(self._sessions))
        for session in self._sessions.values():
            self._lost[(session.generation, session.id)] = session
        self._sessions.clear()
        self._unreported.extend(self._closing.values())  # their reports died with it
        self._closing.clear()
        self._terminate()
        if was_running:
            self._start()
        else:
            raise MediaError("media relay is not running (Relay.start() was not called)")

    def _read_hello(self, timeout: float) -> dict:
        """The relay's first line, read as it starts (nothing else is sent before)."""
        deadline = time.monotonic() + timeout
        while True:
            reply = next(self._complete_replies(), None)
            if reply is not None:
                return reply
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise MediaError(f"no reply from the media relay within {timeout:g} s")
            self._sock.settimeout(remaining)
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                raise MediaError("the media relay closed its control socket")
            self._buffer += chunk

    def _live(self, session: MediaSession) -> MediaSession:
        if session.generation != self.generation or session.id not in self._sessions:
            raise MediaError(f"media session of call {session.call_id} is gone "
                             "(closed, or lost when the relay restarted)")
        return session

    # --- the API ------------------------------------------------------------------

    def open_session(self, call_id: str, stream=None, source: str | None = None
                     ) -> MediaSession:
        """A session for a call; with `stream` (the caller's offer, a Stream) leg
        A is set from it in the same round trip (as apply_stream would), with
        `source` the caller's signalling address."""
        request = {"op": "open", "call_id": call_id}
        if stream is not None:
            request["apply"] = _apply(stream, source)
        reply = self._call(request)
        legs = {name: LegPorts(name, ports[0], ports[1]) for name, ports in reply["legs"].items()}
        session = MediaSession(reply["session"], call_id, legs, self.generation)
        self._sessions[session.id] = session
        return session

    def set_remote(self, session: MediaSession, leg: str, host: str, rtp_port: int,
                   rtcp_port: int | None = None, source: str | None = None) -> None:
        self._live(session)
        request = {"op": "remote", "session": session.id, "leg": leg, "host": host,
                   "rtp": rtp_port, "rtcp": rtcp_port}
        if source is not None:
            request["source"] = source
        self._call(request)

    def set_direction(self, session: MediaSession, leg: str, direction: str) -> None:
        self._live(session)
        self._call({"op": "direction", "session": session.id, "leg": leg,
                    "direction": direction})

    def apply_stream(self, session: MediaSession, leg: str, stream,
                     source: str | None = None) -> None:
        """set_remote and set_direction from a sipd.sip.sdp.Stream (one m= line
        of the SDP that phone sent), with `source` (see the module's docstring).
        A c= that is not an IPv4 address (a host name, IPv6) sets no address:
        latching finds the phone from its packets.

        Sent without waiting for the relay: it applies requests in order, so
        whatever is asked next sees this done, and what could fail (an address
        it refuses) leaves the leg to latching, which finds the phone anyway.
        That spares the B2BUA a round trip on every answer and re-INVITE."""
        self._live(session)
        self._call({"op": "apply", "session": session.id, "leg": leg,
                    **_apply(stream, source)}, wait=False)

    def stats(self, session: MediaSession) -> dict:
        self._live(session)
        return self._call({"op": "stats", "session": session.id})["stats"]

    def close_session(self, session: MediaSession, wait: bool = True) -> dict | None:
        """Release the session's ports. Returns the final stats, or None when the
        session was already closed or lost with a relay that died. With
        wait=False it does not wait for the relay (None): the sources the legs
        had latched to come with the next check(), as MediaCheck.closed."""
        self._events.pop((session.generation, session.id), None)
        lost = self._lost.pop((session.generation, session.id), None) is not None
        if lost or session.generation != self.generation or session.id not in self._sessions:
            if not wait:
                self._unreported.append(session)  # reported by check() all the same
            return None
        del self._sessions[session.id]
        if not wait:
            self._closing[session.id] = session
        try:
            reply = self._call({"op": "close", "session": session.id}, wait=wait)
        except MediaError:  # on a restart, _restart moved it to _unreported
            return None
        return reply["stats"] if reply is not None else None

    def check(self, timeout: float, hold_timeout: float | None = None) -> MediaCheck:
        """The dead sessions (see dead_sessions) and, once each, the sessions whose
        two legs have both latched since the last check, with their sources."""
        reply = self._call({"op": "dead", "timeout": timeout, "hold_timeout": hold_timeout})
        dead = [self._sessions[i] for i in reply["sessions"] if i in self._sessions]
        latched = {
            self._sessions[i]: (_source(a), _source(b))
            for i, a, b in reply.get("latched", ()) if i in self._sessions
        }
        closed = {session: ("", "") for session in self._unreported}
        self._unreported.clear()
        closed.update(
            (self._closing.pop(i), (_source(a), _source(b)))
            for i, a, b in reply.get("closed", ()) if i in self._closing
        )
        return MediaCheck(list(self._lost.values()) + dead, latched, closed)

    def dead_sessions(self, timeout: float, hold_timeout: float | None = None
                      ) -> list[MediaSession]:
        return self.check(timeout, hold_timeout).dead

    def info(self) -> dict:
        return self._call({"op": "info"})

    # --- the PBX's own endpoint ----------------------------------------------------

    def endpoint(self, session: MediaSession, op: str, wait: bool = True, **fields) -> dict:
        """An endpoint op on `session` (server.py lists them); its reply."""
        self._live(session)
        return self._call({"op": op, "session": session.id, **fields}, wait=wait) or {}

    def events(self, session: MediaSession, timeout: float) -> list[dict]:
        """The events of `session`'s endpoints since the last call, waiting up to
        `timeout` seconds for the first. [] also when the session is gone."""
        key = (session.generation, session.id)
        deadline = time.monotonic() + timeout
        while True:
            found = self._events.pop(key, None)
            if found:
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0 or session.generation != self.generation or self._sock is None:
                return []
            if not self._reading.acquire(timeout=remaining):
                continue
            try:
                if key not in self._events:
                    self._read_replies(remaining)
            except (MediaError, OSError):
                return []
            finally:
                self._reading.release()

    def forget_events(self, session: MediaSession) -> None:
        self._events.pop((session.generation, session.id), None)


@dataclass(frozen=True)
class MediaCheck:
    dead: list[MediaSession]
    latched: dict[MediaSession, tuple[str, str]]  # "host:port" of legs A and B
    # Closed with wait=False since the last check: their legs' last sources
    # ("" for a leg that never latched).
    closed: dict[MediaSession, tuple[str, str]] = field(default_factory=dict)


def _source(address: list | None) -> str:
    return f"{address[0]}:{address[1]}" if address else ""


def _apply(stream, source: str | None = None) -> dict:
    """What op "apply" (and "open" for leg A) needs from a Stream, and the
    phone's signalling address (absent for a trunk's leg)."""
    remote = None
    if _ipv4(stream.host) and not stream.hold_address and stream.port:
        remote = {"host": stream.host, "rtp": stream.port, "rtcp": stream.rtcp_port or None}
    request = {"remote": remote,
               "direction": stream.relay_direction if stream.port else "inactive"}
    if source is not None:
        request["source"] = source
    return request


def _ipv4(host: str | None) -> bool:
    try:
        socket.inet_pton(socket.AF_INET, host or "")
    except OSError:
        return False
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_relay(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z" and b"sipd.media" in cmdline
