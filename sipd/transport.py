"""gevent UDP and TCP listeners: they carry bytes to the handler and its answers back.

UDP: one datagram is one message (RFC 3261 §18.3); keep-alive datagrams (CRLF,
STUN: RFC 5626 §3.5) are answered or ignored here (sipd.sip.keepalive) and never
reach the SIP parser. TCP: a stream framed by Content-Length, CRLF keep-alives
answered (RFC 5626 §3.5.1), idle connections closed. A connection's failure
never reaches another peer or the daemon.
"""

from __future__ import annotations

import logging
import os
import time

import gevent
from gevent import socket
from gevent.queue import Queue
from gevent.server import StreamServer

from sipd import dblock
from sipd.handler import Handler
from sipd.registrar import Source
from sipd.sip import keepalive
from sipd.sip.framing import PONG, Ping, StreamFramer
from sipd.sip.message import ParseError

log = logging.getLogger("sipd")

# Idle TCP connections are closed after this long. A registered phone refreshes
# (or sends keep-alives) well within it; anything quieter is a leaked socket.
TCP_IDLE_TIMEOUT = 900
TCP_READ = 65536
# A message begun on a stream (and a connection's first one) must be complete
# within this long, so slow senders cannot hold connections (slowloris).
TCP_READ_TIMEOUT = 10
# How long opening a connection to a provider may take (sipd's own, for trunks).
CONNECT_TIMEOUT = 5


def _host(address) -> str:
    host = address[0]
    return host[7:] if host.startswith("::ffff:") else host  # IPv4-mapped IPv6


# Datagrams handled at once. Past this the server stops reading its socket, so an
# overload waits (and, past the socket buffer, is dropped) in the kernel instead
# of piling up as greenlets that answer requests their senders gave up on long ago
# (docs/benchmarks.md: unbounded, goodput fell below the clean rate and RSS grew).
UDP_CONCURRENCY = 256
# Datagrams read from the socket in one go. Their REGISTERs share one database
# commit (group commit): under load the commit, not SQLite's work, was the
# largest single cost of a registration.
UDP_BATCH = 64
# REGISTERs go, a read's worth at a time, to one registration greenlet, which
# handles them and commits their writes together. It is the one greenlet that
# may wait for the database's write lock (sipd/dblock.py: while pbxctl or the
# panel writes): meanwhile the reader goes on, answers OPTIONS at once (they
# touch nothing) and hands the rest (the B2BUA waits on the media relay) to
# UDP_CONCURRENCY handler greenlets that live as long as the transport (a
# greenlet started per datagram cost some 12 microseconds, nine times per call).
REGISTER = b"REGISTER "
OPTIONS = b"OPTIONS "
# Reads waiting for the registration greenlet; past this the reader waits too,
# and an overload queues in the kernel, as when the reader handled REGISTERs
# itself (a deeper queue here only added latency under overload). What queued
# meanwhile is handled and committed together.
REGISTER_BACKLOG = 2
REGISTER_MERGE = (REGISTER_BACKLOG + 1) * UDP_BATCH


class UdpTransport:
    """One greenlet reads the socket; a datagram is one message (RFC 3261 §18.3)."""

    def __init__(self, listener, handler: Handler, guard=None, concurrency=UDP_CONCURRENCY,
                 batch=UDP_BATCH):
        self.socket = listener  # also sends: the B2BUA's requests leave from 5060
        # A second socket object on the same file, never waiting: it drains what the
        # kernel holds (gevent sockets are non-blocking; timeout 0 makes an empty
        # queue raise instead of switching to the hub).
        self._reader = socket.socket(listener.family, listener.type, fileno=os.dup(
            listener.fileno()))
        self._reader.settimeout(0)
        self.handler = handler
        self.guard = guard  # sipd.security.Guard: bans, rate limit, scanners
        self.concurrency = concurrency
        # Datagrams read and waiting for a handler: when it is full the reader
        # waits, and an overload queues in the kernel (see UDP_CONCURRENCY).
        self._queue = Queue(maxsize=batch)
        self._registers = Queue(maxsize=REGISTER_BACKLOG)
        self._handlers: list = []
        self.batch = batch
        self._greenlet = None

    def start(self) -> None:
        self._handlers = [gevent.spawn(self._handle_queued) for _ in range(self.concurrency)]
        self._handlers.append(gevent.spawn(self._register_queued))
        self._greenlet = gevent.spawn(self._serve)

    def stop(self, timeout=None) -> None:
        if self._greenlet is not None:
            self._greenlet.kill()
        gevent.killall(self._handlers, timeout=timeout)
        self._reader.close()
        self.socket.close()

    def _serve(self) -> None:
        fileno = self._reader.fileno()
        while True:
            socket.wait_read(fileno)
            try:
                self._read_batch()
            except Exception:  # a bug must not stop the listener
                log.exception("[SIP] Internal error in the UDP reader")

    def _read_batch(self) -> None:
        registers = []
        recvfrom = self._reader.recvfrom
        for _ in range(self.batch):
            try:
                # gevent's DatagramServer read 8192 bytes at most; a SIP datagram may
                # be up to 65535 (RFC 3261 §18.1.1 only asks for TCP above the MTU).
                data, address = recvfrom(65535)
            except BlockingIOError:
                break
            except OSError as error:  # e.g. an ICMP error queued on the socket
                log.debug("[SIP] UDP receive failed: %s", error)
                break
            source = Source(_host(address), address[1], "UDP")
            if self.guard is not None and not self.guard.admit(data, source):
                continue  # no answer at all
            if data.startswith(REGISTER):
                registers.append((data, address, source))
            elif data.startswith(OPTIONS):
                self._send(self.handler.handle(data, source), address)
            elif keepalive.is_keepalive(data):
                # A phone keeping its NAT binding open, every 30 s or so: a STUN
                # Binding request is answered, CRLFs are not (sipd.sip.keepalive).
                reply = keepalive.answer(data, source.host, source.port)
                if reply is not None:
                    self._sendto(reply, address)
            else:
                self._queue.put((data, address, source))
        if registers:
            self._registers.put(registers)

    def _register_queued(self) -> None:
        get, queued = self._registers.get, self._registers
        while True:
            registers = get()
            while len(registers) < REGISTER_MERGE and not queued.empty():
                registers += queued.get_nowait()
            try:
                self._register_batch(registers)
            except Exception:  # a bug must not stop the registrations
                log.exception("[SIP] Internal error in the UDP registrations")

    def _register_batch(self, registers) -> None:
        answers = []
        try:
            with self.handler.batch():
                for data, address, source in registers:
                    answers.append((address, self.handler.handle(data, source)))
        except dblock.Unavailable as error:
            # Another process held the database all this time: come back later
            # (Retry-After) rather than retransmit into the same wait.
            log.error("[SIP] Could not store %d request(s): %s; answering 503",
                      len(registers), error)
            for data, address, source in registers:
                self._send(self.handler.unavailable(data, source), address)
            return
        except Exception as error:
            # Nothing is answered that is not on disk: the phones retransmit.
            log.error("[SIP] Could not store %d request(s): %s", len(registers), error)
            return
        for address, outgoing in answers:
            self._send(outgoing, address)

    def _handle_queued(self) -> None:
        get = self._queue.get
        while True:
            data, address, source = get()
            try:
                self._send(self.handler.handle(data, source), address)
            except Exception:  # handle() answers its own errors; this is a last resort
                log.exception("[SIP] Internal error handling a datagram from %s", source)

    def _send(self, outgoing, address) -> None:
        for out in outgoing:
            self._sendto(out.data, out.destination or address)

    def _sendto(self, data: bytes, address) -> None:
        try:
            self.socket.sendto(data, address)
        except OSError as error:
            log.info("[SIP] Could not send to %s:%s: %s", *address[:2], error)


class StreamConnections:
    """The connections of one stream transport (TCP, or TLS inside it), by peer address,
    each read by `serve`: those accepted by a listener and those sipd opens itself to a
    provider (`connect`). A phone registered over a stream is reached on the very
    connection it registered on (it may be behind NAT)."""

    transport = "TCP"

    def __init__(self, handler: Handler, idle_timeout: float = TCP_IDLE_TIMEOUT, guard=None,
                 read_timeout: float = TCP_READ_TIMEOUT):
        self.handler = handler
        self.idle_timeout = idle_timeout
        self.guard = guard
        self.read_timeout = read_timeout
        self.connections: dict[tuple[str, int], object] = {}
        # Why the last connection we tried to open to an address could not be had
        # (a provider's certificate that failed verification...), until one opens:
        # the trunk's status says it (sipd/trunks/manager.py, through `sender`).
        self.failures: dict[tuple[str, int], str] = {}

    def secure(self, sock, name: str):
        """The stream to speak SIP on over a connection we opened (TLS: the client's
        handshake, sipd/tls.py); raises OSError if it cannot be had."""
        return sock

    def connect(self, host: str, port: int, name: str = "", timeout: float = CONNECT_TIMEOUT):
        """A connection of our own to a provider (RFC 3261 §18.1.1: a client opens one
        when it has none to the destination); read like an accepted one, so the
        responses reach the handler. `name`: what the provider was called (a TLS
        certificate must be for it). None when it cannot be opened (logged, and why
        kept in `failures`)."""
        key = (host, port)
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as error:
            log.info("[SIP] Could not connect to %s:%s over %s: %s", host, port,
                     self.transport, error)
            self.failures[key] = (f"could not connect to {host}:{port} over {self.transport}:"
                                  f" {error.strerror or error}")
            return None
        try:
            sock = self.secure(sock, name or host)
        except (OSError, ValueError) as error:
            sock.close()
            why = str(error)
            if self.failures.get(key) != why:  # once per change, not at every attempt
                log.warning("[SIP] Could not open %s to %s:%s (%s): %s", self.transport, host,
                            port, name or host, why)
            self.failures[key] = why
            return None
        if self.failures.pop(key, None) is not None:
            log.info("[SIP] Opened %s to %s:%s (%s) again", self.transport, host, port,
                     name or host)
        source = Source(host, port, self.transport)
        self.connections[(host, port)] = sock
        # Ours is never closed for being idle: a registered trunk's provider sends its
        # calls on it (the binding's refresh may be further apart than the idle limit).
        gevent.spawn(self.serve, sock, source, True)
        return sock

    def serve(self, sock, source, own: bool = False):
        """Read `sock` until it closes (`own`: one we opened, see connect)."""
        idle = None if own else self.idle_timeout
        framer = StreamFramer()
        self.connections[(source.host, source.port)] = sock
        begun = time.monotonic()  # of the message being read; None between messages
        try:
            while True:
                if begun is None:
                    sock.settimeout(idle)
                else:
                    sock.settimeout(max(0.01, begun + self.read_timeout - time.monotonic()))
                try:
                    data = sock.recv(TCP_READ)
                except TimeoutError:
                    if begun is None:
                        log.debug("[SIP] Closing idle connection from %s", source)
                    elif self.guard is not None:
                        self.guard.dropped(
                            source, f"no complete message in {self.read_timeout} s", "connection"
                        )
                    return
                if not data:
                    return
                if begun is None:
                    begun = time.monotonic()
                try:
                    items = framer.feed(data)
                except ParseError as error:
                    # A stream we cannot frame cannot be resynchronised: close it.
                    log.warning("[SIP] Closing %s connection from %s: %s", self.transport,
                                source, error)
                    return
                for item in items:
                    if isinstance(item, Ping):
                        sock.sendall(PONG)
                        continue
                    if self.guard is not None and not self.guard.admit(item, source):
                        return  # banned, over its rate or a scanner: close, unanswered
                    for out in self.handler.handle(item, source, stream=True):
                        sock.sendall(out.data)
                if framer.between_messages:
                    # Nothing begun, or a lone CRLF keep-alive (RFC 5626 §3.5.1, RFC 3261
                    # §7.5): the connection is idle, not a slow sender to cut off at the
                    # read timeout. No looser than a CRLFCRLF ping, which has always
                    # made it idle.
                    begun = None
                elif items:
                    begun = time.monotonic()
        except OSError as error:
            log.debug("[SIP] %s connection from %s ended: %s", self.transport, source, error)
        finally:
            if self.connections.get((source.host, source.port)) is sock:
                del self.connections[(source.host, source.port)]
            try:
                sock.close()
            except OSError:
                pass




class TcpTransport(StreamConnections, StreamServer):
    """Accepts TCP connections on the SIP port (and opens them to providers)."""

    transport = "TCP"

    def __init__(
        self,
        listener,
        handler: Handler,
        idle_timeout: float = TCP_IDLE_TIMEOUT,
        guard=None,
        read_timeout: float = TCP_READ_TIMEOUT,
    ):
        StreamServer.__init__(self, listener)
        StreamConnections.__init__(self, handler, idle_timeout, guard, read_timeout)

    def handle(self, sock, address):
        source = Source(_host(address), address[1], self.transport)
        guard = self.guard
        if guard is not None and not guard.tcp_opened(source):
            sock.close()
            return
        try:
            sock = self.wrap(sock, source)
            if sock is not None:
                self.serve(sock, source)
        finally:
            if guard is not None:
                guard.tcp_closed(source)

    def wrap(self, sock, source):
        """The stream to speak SIP on over an accepted connection (TLS wraps it here),
        or None to close."""
        return sock


def sender(udp: UdpTransport, streams: dict[str, StreamConnections]):
    """send(data, destination) for what is not an immediate answer (the B2BUA's requests)."""

    def send(data: bytes, destination) -> bool:
        try:
            if destination.transport == "UDP":
                udp.socket.sendto(data, (destination.host, destination.port))
                return True
            server = streams.get(destination.transport)
            sock = server.connections.get((destination.host, destination.port)) if server else None
            if sock is None and server is not None and getattr(destination, "connect", False):
                sock = server.connect(destination.host, destination.port,
                                      getattr(destination, "name", ""))
            if sock is None:
                log.info("[SIP] No %s connection to %s:%s; the phone must register again",
                         destination.transport, destination.host, destination.port)
                return False
            sock.sendall(data)
            return True
        except OSError as error:
            log.info("[SIP] Could not send to %s:%s: %s", destination.host, destination.port,
                     error)
            return False

    def failure(destination) -> str | None:
        """Why a connection of ours to `destination` could not be opened (send
        returned False for it), or None."""
        server = streams.get(destination.transport)
        return server.failures.get((destination.host, destination.port)) if server else None

    send.failure = failure
    return send


def bind_udp(host: str, port: int, reuseport: bool = False, first: bool = True):
    """The SIP UDP socket; `reuseport`: one of a group sharing the port (sipd/workers.py).

    The first of a group (the main sipd) makes sure nobody holds the port: with
    SO_REUSEPORT a second sipd, or a worker of a sipd just killed, would silently
    share it. It waits a few seconds for a killed sipd's workers to go.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if reuseport and first and port:
        deadline = time.monotonic() + 5
        while True:
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                try:
                    probe.bind((host, port))
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
            gevent.sleep(0.1)
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuseport:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    # Bursts of REGISTERs (every phone of an office after a power cut) queue
    # in the kernel rather than being dropped.
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    except OSError:
        pass
    sock.bind((host, port))
    return sock


def bind_tcp(host: str, port: int):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    return sock


def periodic(interval: float, function, name: str):
    """Run `function` every `interval` seconds on the hub; log and go on if it fails."""

    def loop():
        while True:
            gevent.sleep(interval)
            try:
                function()
            except Exception:
                log.exception("%s failed", name)

    return gevent.spawn(loop)
