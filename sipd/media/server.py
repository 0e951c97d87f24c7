"""The relay process: `python -m sipd.media`, started by sipd (see __init__.py).

One thread, one `select.epoll` loop, no gevent: every packet costs one
`recvfrom_into` and one `sendto`, and nothing else in the process competes for
the loop. sipd's signaling lives in another process, so a burst of media
never delays a SIP response, and a slow database write in sipd never delays
media.

Control: a Unix stream socket inherited from sipd (a socketpair), one JSON
object per line each way, each request answered in order, except that a
request with "reply": false gets no reply when it succeeds (sipd does not wait
for it; an error is still answered, and logged by sipd when it reads it):

    -> {"op": "open", "call_id": "...", "apply": {...}}   (apply, optional: leg A's
                                            "remote", "direction" and "source" as in
                                            op "apply")
    <- {"ok": true, "session": 7, "legs": {"A": [10000, 10001], "B": [10002, 10003]}}
    -> {"op": "remote", "session": 7, "leg": "A", "host": "...", "rtp": 4000, "rtcp": 4001,
        "source": "203.0.113.7"}            (source, optional: the IP address the
                                            phone's signalling comes from; the leg
                                            latches to it or to the SDP host, see
                                            session.py; without it, to the SDP host)
    -> {"op": "direction", "session": 7, "leg": "A", "direction": "sendonly"}
    -> {"op": "apply", "session": 7, "leg": "A", "direction": "sendrecv",
        "remote": {"host": "...", "rtp": 4000, "rtcp": null}, "source": "..."}
                                            (remote may be null, source absent:
                                            the above in one round trip)
    -> {"op": "stats", "session": 7}        <- {"ok": true, "stats": {...}}
    -> {"op": "close", "session": 7}        <- {"ok": true, "stats": {...}}  (final figures)
    -> {"op": "dead", "timeout": 60, "hold_timeout": null}
    <- {"ok": true, "sessions": [7, 9], "latched": [[8, ["198.51.100.7", 4000], [...]]],
        "closed": [[6, ["198.51.100.7", 4000], null]]}
                                            (latched: sessions whose two legs both
                                            latched since the last "dead", each once;
                                            closed: sessions closed since then with
                                            "reply": false, with their legs' sources)
    -> {"op": "info"}                       <- {"ok": true, "pid": ..., "sessions": 2, ...}
    an error:                               <- {"ok": false, "error": "...", "code": "..."}

The PBX's own endpoint on a leg (endpoint.py: the leg's phone hears it, and
what that phone sends goes to it; "leg" defaults to "A", the caller's):

    -> {"op": "endpoint", "session": 7, "leg": "A", "payload_type": 0, "event_type": 101}
                                            (attach; event_type: the caller's
                                            telephone-event payload type, or null)
    -> {"op": "detach", "session": 7, "leg": "B"}   (relayed again: music on hold over)
    -> {"op": "play", "session": 7, "files": ["/x.wav", ...], "tag": 3, "loop": false}
                                            (queued after what plays; "played" event
                                            with the tag once the last file is sent)
    -> {"op": "tone", "session": 7, "hz": 1000, "ms": 250, "tag": 4}
    -> {"op": "tone", "session": 7, "hz": 425, "ms": 1000, "every": 5000}
                                            (over and over, silence between, until a
                                            stop: a ringback tone, ITU-T E.180)
    -> {"op": "stop", "session": 7}         <- {"ok": true, "stopped": [3]}
    -> {"op": "echo", "session": 7, "on": true}
    -> {"op": "record", "session": 7, "path": "/x.wav", "max": 120, "silence": 5,
        "end_keys": "#"}                    (a "recorded" event when it ends)
    -> {"op": "record_stop", "session": 7}  <- {"ok": true, "recorded": {...} or null}

Recording a relayed call (endpoint.Tap: what each phone sent, one channel
each, a stereo WAV written when it stops or the session closes):

    -> {"op": "tap", "session": 7, "path": "/var/lib/pbx/recordings/x.wav"}
    -> {"op": "untap", "session": 7}        <- {"ok": true, "tapped": {"path":, "seconds":}}

Events are written unasked, one JSON object per line like the replies but
with "event" instead of "ok" (and no "id"), as they happen:

    <- {"event": "key", "session": 7, "leg": "A", "key": "5"}
    <- {"event": "played", "session": 7, "leg": "A", "tag": 3}
    <- {"event": "recorded", "session": 7, "leg": "A", "path": "/x.wav", "seconds": 4.98,
        "ended_by": "key"|"hangup"|"silence"|"max", "key": "#"}  (+ "error" if unwritten)
    <- {"event": "closed", "session": 7, "leg": "A"}   (the endpoint is gone)

When that socket reaches end-of-file (sipd exited, crashed or was killed),
the relay exits: its ports are free again for the sipd that comes next.
"""

from __future__ import annotations

import errno
import heapq
import ipaddress
import json
import logging
import os
import resource
import select
import signal
import socket
import time

from sipd.media import g711, wav
from sipd.media.endpoint import Endpoint, Sounds, Tap, tone
from sipd.media.own import OwnEndpoints
from sipd.media.pacer import Lateness
from sipd.media.pool import PoolExhausted, PortPool
from sipd.media.rtp import is_media
from sipd.media.session import KINDS, RTCP, RTP, Session

log = logging.getLogger("sipd.media")

# DSCP EF (RFC 3246), as phones mark their own RTP: routers that honour it
# queue voice ahead of bulk traffic.
TOS_EF = 0xB8
# The relay asks to run ahead of sipd, the panel and the rest of the machine:
# a media packet held up by the scheduler is heard as a gap, a SIP response a
# few ms late is not. First choice: SCHED_RR at the lowest real-time priority
# (what Asterisk's -p and FreeSWITCH's -rp do), so a busy machine cannot keep
# the relay off the CPU for more than a moment: on a loaded 2-core machine
# (docs/benchmarks.md) 300 calls at nice -10 lost 11-51 % of their packets
# with a p99 of seconds; at SCHED_RR 1 none, with a p99 of 1.1 ms. The
# kernel's real-time throttling (sched_rt_runtime_us, 95% by default) leaves
# every other process some CPU whatever the relay does, and the relay uses a
# third of one core at 300 calls. Second choice: nice -10. Only a process that
# is allowed (root, CAP_SYS_NICE, or systemd's LimitRTPRIO=1 / LimitNICE=-10)
# gets either; otherwise the relay runs at normal priority.
RELAY_RT_PRIORITY = 1
RELAY_NICE = -10
# Closed sessions kept for the next op "dead" at most (sipd asks every 2 s).
MAX_UNREPORTED = 100_000
# After each batch of packets the loop sleeps this long before polling again,
# so the packets of many calls are handled per wake-up instead of one wake-up
# (two context switches) per packet. Measured at 300 calls (bench/media.py,
# docs/benchmarks.md): 0 -> 23.6 us CPU per packet, p99 0.07 ms; 0.1 ms ->
# 17.8 us, p99 0.45 ms; 0.5 ms -> 12.4 us, p99 1.1 ms; 1 ms -> 13.3 us, p99
# 2.5 ms. Half a millisecond halves the CPU for a delay no jitter buffer
# (20-60 ms) notices.
COALESCE = 0.0005
# A gap this long between polls means the relay was kept waiting; it then reads
# up to DRAIN packets per socket per poll (see run()).
BEHIND = COALESCE + 0.004
DRAIN = 16
# Bind attempts for one leg before giving up (ports held by other programs).
BIND_ATTEMPTS = 256
MAX_LINE = 65536
# Endpoints' packet grids start at one of STAGGER offsets, GRID_STEP apart, so
# that the packets of many endpoints do not all fall due at the same instant
# (each wake-up sends a tenth of them) nor each at its own (one wake-up each).
STAGGER = 10
GRID_STEP = 0.002


class ControlError(Exception):
    def __init__(self, message: str, code: str = "bad_request"):
        super().__init__(message)
        self.code = code


class RelayServer:
    def __init__(self, control: socket.socket, bind_host: str, low: int, high: int,
                 own: OwnEndpoints | None = None, clock=time.monotonic):
        self.control = control
        self.clock = clock  # passed in: a test sets the relay's time instead of waiting
        self.bind_host = bind_host
        self.pool = PortPool(low, high)
        # Never sent to nor latched onto; the relay's own ports join while bound.
        self.own = own if own is not None else OwnEndpoints()
        self.epoll = select.epoll()
        # fd -> (socket, leg, kind, the other leg's socket of that kind)
        self.endpoints: dict[int, tuple] = {}
        self.sockets: dict[int, list[socket.socket]] = {}  # session id -> its 4 sockets
        self.sessions: dict[int, Session] = {}
        self.next_id = 1
        self.notes: list = []
        self.buffer = bytearray(65536)
        self.view = memoryview(self.buffer)
        self.pending = b""
        self.running = True
        self.coalesce = COALESCE
        # Counters of sessions already closed, so info() gives totals since start.
        self.closed_totals = {"packets_in": 0, "packets_out": 0, "bytes_in": 0, "bytes_out": 0}
        # Sessions closed without a reply ("reply": false), with the sources their
        # legs had latched to: told to sipd with the next op "dead".
        self.closed_unreported: list[list] = []
        # The PBX's own endpoints (endpoint.py): by (session id, leg name), and
        # the times they must be woken, a heap of (time, count, endpoint).
        self.own_endpoints: dict[tuple[int, str], tuple[Endpoint, socket.socket]] = {}
        self.timers: list = []
        self.timer_count = 0
        self.epoch = clock()
        self.sounds = Sounds()
        self.lateness = Lateness()  # of every endpoint's packets (the benchmark's p99)
        self.epoll.register(control.fileno(), select.EPOLLIN)

    # --- the loop ---------------------------------------------------------------

    def run(self) -> None:
        control_fd = self.control.fileno()
        endpoints = self.endpoints
        view = self.view
        buffer = self.buffer
        poll = self.epoll.poll
        clock = self.clock
        sleep = time.sleep
        coalesce = self.coalesce
        last = clock()
        timers = self.timers
        while self.running:
            timeout = 1.0
            if timers:
                timeout = min(1.0, max(0.0, timers[0][0] - clock()))
            try:
                events = poll(timeout)
            except InterruptedError:
                continue
            now = clock()
            # Normally one packet per ready socket per poll: at 50 packets a
            # second a socket rarely holds two. After the relay has been kept
            # off the CPU (BEHIND), sockets hold a backlog: read up to DRAIN
            # packets from each so it catches up instead of falling further
            # behind at one packet per socket per poll.
            reads = DRAIN if now - last > BEHIND else 1
            last = now
            for fd, _mask in events:
                endpoint = endpoints.get(fd)
                if endpoint is None:
                    if fd == control_fd:
                        self._control_readable(now)
                    continue
                sock, leg, kind, out = endpoint
                for _ in range(reads):
                    try:
                        size, source = sock.recvfrom_into(buffer)
                    except OSError:
                        break  # BlockingIOError (drained), ICMP errors
                    if not is_media(buffer, size, kind):  # RTP and RTCP only (rtp.py)
                        leg.not_media += 1
                        if leg.not_media == 1:
                            self.notes.append(("not_media", leg, kind, source))
                        continue
                    if leg.endpoint is not None:  # the PBX itself answers this leg
                        if leg.accept(kind, source, size, now) and kind == RTP:
                            self._to_endpoint(leg.endpoint, size, now)
                        continue
                    destination = leg.receive(kind, source, size, now)
                    if destination is not None and leg.tap is not None and kind == RTP:
                        leg.tap.receive(leg.name, view, size, now)  # the call is recorded
                    if destination is not None:
                        try:
                            out.sendto(view[:size], destination)
                        except OSError:
                            leg.peer.send_failed()
            if timers and timers[0][0] <= now:
                self._wake_endpoints(now)
            if self.notes:
                self._log_notes()
            if coalesce and events:
                sleep(coalesce)

    # --- the PBX's own endpoints (endpoint.py) ---------------------------------------

    def _to_endpoint(self, endpoint: Endpoint, size: int, now: float) -> None:
        endpoint.receive(self.view, size, now)
        self._after(endpoint)

    def _after(self, endpoint: Endpoint) -> None:
        """Write its events; wake it sooner if it now needs to be."""
        if endpoint.events:
            for event in endpoint.events:
                self._reply({**event, "session": endpoint.session, "leg": endpoint.leg})
            endpoint.events.clear()
        when = endpoint.next_wake()
        if when is not None and (endpoint.scheduled is None or when < endpoint.scheduled):
            endpoint.scheduled = when
            self.timer_count += 1
            heapq.heappush(self.timers, (when, self.timer_count, endpoint))

    def _wake_endpoints(self, now: float) -> None:
        timers = self.timers
        # Each wake-up sends all that is due, so an endpoint comes back later than
        # now; the bound only keeps a bug from spinning the loop forever.
        for _ in range(len(timers) * 2 + 16):
            if not timers or timers[0][0] > now:
                break
            when, _, endpoint = heapq.heappop(timers)
            if endpoint.closed or endpoint.scheduled != when:
                continue  # a wake-up superseded by an earlier one, or gone
            endpoint.scheduled = None
            packets = endpoint.wake(now)
            if packets:
                self._send_endpoint(endpoint, packets)
            self._after(endpoint)

    def _send_endpoint(self, endpoint: Endpoint, packets: list[bytes]) -> None:
        entry = self.own_endpoints.get((endpoint.session, endpoint.leg))
        if entry is None:
            return
        sock = entry[1]
        leg = self.sessions[endpoint.session].legs[endpoint.leg]
        destination = leg.route[RTP]
        if destination is None or leg.direction not in ("sendrecv", "recvonly"):
            leg.unroutable += len(packets)  # not latched yet, or the phone holds us
            return
        for packet in packets:
            try:
                sock.sendto(packet, destination)
                leg.packets_out += 1
                leg.bytes_out += len(packet)
            except OSError:
                leg.send_errors += 1

    def _log_notes(self) -> None:
        for event, leg, kind, source, *rest in self.notes:
            what = f"Call {leg.call_id} leg {leg.name} {KINDS[kind].upper()}"
            if event == "not_media":
                log.warning("[RTP] %s: dropped a packet from %s:%d that is not RTP or RTCP "
                            "(further ones are counted, not logged)", what, *source)
            elif event == "stranger":
                log.warning("[RTP] %s: dropped packets from %s:%d, not the phone's address "
                            "(signalling %s, SDP %s) (further ones are counted, not logged)",
                            what, *source, leg.source_host or "not known",
                            _address(leg.remote[kind]))
            elif rest[0] is None:
                log.info("[RTP] %s latched to %s:%d (SDP said %s)", what, *source,
                         _address(leg.remote[kind]))
            else:
                log.info("[RTP] %s re-latched from %s:%d to %s:%d after %.1f s of silence",
                         what, *rest[0], *source, rest[1])
        self.notes.clear()

    # --- control ----------------------------------------------------------------

    def _control_readable(self, now: float) -> None:
        try:
            data = self.control.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            log.info("[RTP] sipd has gone (control socket closed): relay exiting")
            self.running = False
            return
        self.pending += data
        if len(self.pending) > MAX_LINE and b"\n" not in self.pending:
            self.pending = b""
            self._reply({"ok": False, "error": "control line too long", "code": "bad_request"})
            return
        while b"\n" in self.pending:
            line, self.pending = self.pending.split(b"\n", 1)
            if line.strip():
                reply = self._handle(line, now)
                if reply is not None:
                    self._reply(reply)

    def _reply(self, reply: dict) -> None:
        data = json.dumps(reply, separators=(",", ":")).encode() + b"\n"
        self.control.setblocking(True)
        try:
            self.control.sendall(data)
        except OSError:
            self.running = False
        finally:
            self.control.setblocking(False)

    def _handle(self, line: bytes, now: float) -> dict | None:
        request = None
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ControlError("a request is a JSON object")
            op = request.get("op")
            handler = getattr(self, f"op_{op}", None) if isinstance(op, str) else None
            if handler is None:
                raise ControlError(f"unknown op {op!r}")
            reply = handler(request, now)
            reply["ok"] = True
        except ControlError as error:
            reply = {"ok": False, "error": str(error), "code": error.code}
        except (ValueError, TypeError, KeyError) as error:
            reply = {"ok": False, "error": f"bad request: {error}", "code": "bad_request"}
        if reply["ok"] and request.get("reply") is False:
            return None  # sipd does not wait for this one (Relay.apply_stream)
        # The id lets the client skip a late reply to a request it gave up on.
        reply["id"] = request.get("id") if isinstance(request, dict) else None
        return reply

    def _session(self, request: dict) -> Session:
        session = self.sessions.get(request.get("session"))
        if session is None:
            raise ControlError(f"no session {request.get('session')!r}", "no_session")
        return session

    def op_open(self, request: dict, now: float) -> dict:
        call_id = str(request.get("call_id", ""))
        sockets: list[socket.socket] = []
        ports = []
        try:
            for _ in range(2):
                port, pair = self._bind_pair()
                ports.append(port)
                sockets.extend(pair)
        except (PoolExhausted, ControlError) as error:
            for sock in sockets:
                sock.close()
            for port in ports:
                self.pool.release(port)
            if isinstance(error, ControlError):
                raise
            raise ControlError(str(error), "exhausted") from None
        session = Session(self.next_id, call_id, (ports[0], ports[0] + 1),
                          (ports[1], ports[1] + 1), now, self.notes, self.own)
        self.next_id += 1
        self.sessions[session.id] = session
        self.sockets[session.id] = sockets
        a, b = session.legs["A"], session.legs["B"]
        a_rtp, a_rtcp, b_rtp, b_rtcp = sockets
        for sock, leg, kind, out in ((a_rtp, a, RTP, b_rtp), (a_rtcp, a, RTCP, b_rtcp),
                                     (b_rtp, b, RTP, a_rtp), (b_rtcp, b, RTCP, a_rtcp)):
            self.endpoints[sock.fileno()] = (sock, leg, kind, out)
            self.epoll.register(sock.fileno(), select.EPOLLIN)
        apply = request.get("apply")
        if apply is not None:
            # The caller's offer with the open: one round trip per call saved.
            try:
                if not isinstance(apply, dict):
                    raise ControlError("apply is a JSON object")
                self.op_apply({**apply, "session": session.id, "leg": "A"}, now)
            except (ControlError, ValueError, TypeError, KeyError):
                self.op_close({"session": session.id}, now)
                raise
        return {"session": session.id,
                "legs": {name: list(leg.ports) for name, leg in session.legs.items()}}

    def _bind_pair(self) -> tuple[int, list[socket.socket]]:
        for _ in range(min(BIND_ATTEMPTS, max(1, self.pool.available))):
            port = self.pool.allocate()
            pair = []
            try:
                for number in (port, port + 1):
                    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    pair.append(sock)
                    sock.setblocking(False)
                    try:
                        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, TOS_EF)
                    except OSError:
                        pass
                    sock.bind((self.bind_host, number))
                self.own.relay_ports.update((port, port + 1))
                return port, pair
            except OSError as error:
                for sock in pair:
                    sock.close()
                self.pool.set_aside(port)
                if error.errno not in (errno.EADDRINUSE, errno.EACCES):
                    raise ControlError(f"cannot bind media ports on {self.bind_host}: "
                                       f"{error.strerror or error}", "bind") from None
                log.warning("[RTP] Port %d or %d is taken by another program; skipped",
                            port, port + 1)
        raise PoolExhausted("no free media port pair could be bound (PBX_RTP_PORTS is in use)")

    def op_remote(self, request: dict, now: float) -> dict:
        session = self._session(request)
        leg = session.leg(request.get("leg"))
        host = str(request["host"])
        rtp = int(request["rtp"])
        rtcp = request.get("rtcp")
        if not 0 <= rtp <= 65535 or (rtcp is not None and not 0 < int(rtcp) <= 65535):
            raise ControlError("port out of range")
        if host not in ("", "0.0.0.0"):
            host = _ipv4(host)
        self._set_source(leg, request)
        leg.set_remote(host, rtp, int(rtcp) if rtcp is not None else None)
        remote = leg.remote[RTP]
        if remote is not None and self.own.forbids(remote):
            log.warning("[RTP] Call %s leg %s: the SDP names %s:%d, one of the PBX's own "
                        "endpoints (or not unicast): nothing is sent there",
                        session.call_id, leg.name, *remote)
        return {}

    def _set_source(self, leg, request: dict) -> None:
        """"source" (optional): the IP address the leg's phone signals from. An
        IPv6 one (sipd on [::]) never matches an IPv4 packet's source: the leg
        then latches to its SDP address only, and is sent nothing before."""
        if "source" in request:
            try:
                source = str(ipaddress.ip_address(str(request["source"])))
            except ValueError:
                raise ControlError(f"not an IP address: {request['source']!r}") from None
            leg.set_source(source)

    def op_direction(self, request: dict, now: float) -> dict:
        leg = self._session(request).leg(request.get("leg"))
        leg.set_direction(request.get("direction"))
        return {}

    def op_apply(self, request: dict, now: float) -> dict:
        """source and remote (when the request has them), then direction, in one
        round trip: what the B2BUA sends for each SDP a phone sends
        (Relay.apply_stream)."""
        self._set_source(self._session(request).leg(request.get("leg")), request)
        remote = request.get("remote")
        if remote is not None:
            self.op_remote({**remote, "session": request.get("session"),
                            "leg": request.get("leg")}, now)
        return self.op_direction(request, now)

    def op_stats(self, request: dict, now: float) -> dict:
        return {"stats": self._session(request).stats(now)}

    def op_close(self, request: dict, now: float) -> dict:
        session = self._session(request)
        self._untap(session)
        for name in session.legs:
            if (session.id, name) in self.own_endpoints:
                self._detach(session, name)
        stats = session.stats(now)
        for sock in self.sockets.pop(session.id):
            fd = sock.fileno()
            self.own.relay_ports.discard(sock.getsockname()[1])
            self.endpoints.pop(fd, None)
            try:
                self.epoll.unregister(fd)
            except OSError:
                pass
            sock.close()
        for leg in session.legs.values():
            self.pool.release(leg.ports[RTP])
            for name in self.closed_totals:
                self.closed_totals[name] += getattr(leg, name)
        del self.sessions[session.id]
        if request.get("reply") is False:
            a, b = session.legs["A"].latched[RTP], session.legs["B"].latched[RTP]
            self.closed_unreported.append([session.id, a and list(a), b and list(b)])
            if len(self.closed_unreported) > MAX_UNREPORTED:  # nobody asks: keep the newest
                del self.closed_unreported[:-MAX_UNREPORTED]
        return {"stats": stats}

    def op_dead(self, request: dict, now: float) -> dict:
        timeout = float(request["timeout"])
        hold = request.get("hold_timeout")
        hold_timeout = float(hold) if hold is not None else None
        dead, latched = [], []
        for session in self.sessions.values():
            if session.dead(now, timeout, hold_timeout):
                dead.append(session.id)
            sources = session.newly_latched()
            if sources is not None:
                latched.append([session.id, *sources])
        closed, self.closed_unreported = self.closed_unreported, []
        return {"sessions": dead, "latched": latched, "closed": closed}

    # --- endpoint ops --------------------------------------------------------------

    def _endpoint(self, request: dict) -> Endpoint:
        session = self._session(request)
        name = request.get("leg", "A")
        session.leg(name)
        entry = self.own_endpoints.get((session.id, name))
        if entry is None:
            raise ControlError(f"no endpoint on leg {name} of session {session.id}",
                               "no_endpoint")
        return entry[0]

    def op_endpoint(self, request: dict, now: float) -> dict:
        session = self._session(request)
        name = request.get("leg", "A")
        leg = session.leg(name)
        payload_type = int(request.get("payload_type", g711.PCMU))
        if payload_type not in g711.ENCODINGS:
            raise ControlError(f"payload type {payload_type}: the endpoint speaks PCMU and PCMA")
        event_type = request.get("event_type", 101)
        if (session.id, name) in self.own_endpoints:
            self._detach(session, name)
        start = self.epoch + (session.id % STAGGER) * GRID_STEP
        rng = int.from_bytes(os.urandom(10), "big")  # RFC 3550 §5.1: random seq, ts, SSRC
        endpoint = Endpoint(session.id, name, now, start, rng & 0xFFFFFFFF, payload_type,
                            int(event_type) if event_type is not None else None,
                            seq=(rng >> 32) & 0xFFFF, timestamp=(rng >> 48) & 0xFFFFFFFF,
                            lateness=self.lateness)
        index = list(session.legs).index(name) * 2  # its RTP socket (open() order)
        self.own_endpoints[(session.id, name)] = (endpoint, self.sockets[session.id][index])
        leg.attach(endpoint)
        return {}

    def _detach(self, session: Session, name: str) -> None:
        endpoint, _ = self.own_endpoints.pop((session.id, name))
        endpoint.close()
        endpoint.events.append({"event": "closed"})
        self._after(endpoint)
        session.legs[name].attach(None)

    def op_detach(self, request: dict, now: float) -> dict:
        endpoint = self._endpoint(request)
        self._detach(self.sessions[endpoint.session], endpoint.leg)
        return {}

    def op_play(self, request: dict, now: float) -> dict:
        endpoint = self._endpoint(request)
        files = request.get("files")
        if not isinstance(files, list) or not files:
            raise ControlError("files: a list of WAV paths")
        try:
            sounds = [self.sounds.encoded(str(path), endpoint.payload_type) for path in files]
        except (wav.WavError, ValueError) as error:  # and what audioop refuses
            raise ControlError(str(error), "sound") from None
        tag = request.get("tag")
        loop = bool(request.get("loop", False))
        for index, data in enumerate(sounds):
            last = index == len(sounds) - 1
            endpoint.play(data, now, tag if last else None, loop and last)
        self._after(endpoint)
        return {}

    def op_tone(self, request: dict, now: float) -> dict:
        endpoint = self._endpoint(request)
        hz, ms = float(request["hz"]), int(request["ms"])
        if not 0 < hz < 4000 or not 0 < ms <= 60000:
            raise ControlError("a tone is 1-3999 Hz for 1-60000 ms")
        data = tone(hz, ms, endpoint.payload_type)
        every = request.get("every")
        if every is not None:
            # A cadence (ringback: 1 s of 425 Hz every 5 s), looped until a stop.
            every = int(every)
            if not ms <= every <= 60000:
                raise ControlError("every: at least the tone's ms, at most 60000")
            pad = every * 8 - len(data)  # 8 samples (bytes of G.711) a millisecond
            data += bytes([g711.SILENCE[endpoint.payload_type]]) * max(0, pad - pad % 160)
        endpoint.play(data, now, request.get("tag"), every is not None)
        self._after(endpoint)
        return {}

    def op_stop(self, request: dict, now: float) -> dict:
        return {"stopped": self._endpoint(request).stop()}

    def op_echo(self, request: dict, now: float) -> dict:
        self._endpoint(request).echo = bool(request.get("on", True))
        return {}

    def op_record(self, request: dict, now: float) -> dict:
        endpoint = self._endpoint(request)
        path = str(request["path"])
        if not os.path.isabs(path):
            raise ControlError(f"not an absolute path: {path!r}")
        maximum, silence = float(request["max"]), float(request.get("silence") or 0)
        if not 0 < maximum <= 24 * 3600 or silence < 0:
            raise ControlError("max: 0-86400 s, silence: 0 or more")
        try:
            endpoint.record(path, now, maximum, silence, str(request.get("end_keys", "")))
        except OSError as error:
            raise ControlError(f"cannot record to {path}: {error.strerror or error}",
                               "record") from None
        self._after(endpoint)
        return {}

    def op_record_stop(self, request: dict, now: float) -> dict:
        endpoint = self._endpoint(request)
        return {"recorded": endpoint.stop_recording(request.get("ended_by", "hangup"))}

    def op_tap(self, request: dict, now: float) -> dict:
        """Record the relayed call into `path` (a stereo WAV when it ends)."""
        session = self._session(request)
        path = str(request["path"])
        if not os.path.isabs(path):
            raise ControlError(f"not an absolute path: {path!r}")
        self._untap(session)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tap = Tap(path, now)
        except OSError as error:
            raise ControlError(f"cannot record to {path}: {error.strerror or error}",
                               "record") from None
        for leg in session.legs.values():
            leg.tap = tap
        return {}

    def op_untap(self, request: dict, now: float) -> dict:
        return {"tapped": self._untap(self._session(request))}

    def _untap(self, session: Session) -> dict | None:
        tap = session.legs["A"].tap
        if tap is None:
            return None
        for leg in session.legs.values():
            leg.tap = None
        done = tap.finish()
        if done.get("error"):
            log.error("[RTP] Call %s: recording not written: %s", session.call_id, done["error"])
        return done

    def op_endpoint_stats(self, request: dict, now: float) -> dict:
        stats = self._endpoint(request).stats()
        return {"stats": stats, "lateness_p99": self.lateness.quantile(0.99),
                "lateness_count": self.lateness.count}

    def op_info(self, request: dict, now: float) -> dict:
        totals = dict(self.closed_totals)
        for session in self.sessions.values():
            for leg in session.legs.values():
                totals["packets_in"] += leg.packets_in
                totals["packets_out"] += leg.packets_out
                totals["bytes_in"] += leg.bytes_in
                totals["bytes_out"] += leg.bytes_out
        return {"pid": os.getpid(), "sessions": len(self.sessions),
                "endpoints": len(self.own_endpoints),
                "endpoint_late_p99": self.lateness.quantile(0.99),
                "endpoint_late_over_2ms": self.lateness.share_over(0.002),
                "endpoint_packets": self.lateness.count,
                "ports_free": self.pool.available * 2, "ports_total": self.pool.size * 2,
                "bind": self.bind_host, **totals}

    def close(self) -> None:
        for sockets in self.sockets.values():
            for sock in sockets:
                sock.close()
        self.sockets.clear()
        self.epoll.close()


def _ipv4(host: str) -> str:
    """A dotted-quad IPv4 address, as the kernel writes it: the forms inet_aton()
    would also take ("127.1", "2130706433") are refused, since the relay
    compares addresses as text (own.py, session.py)."""
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        raise ControlError(f"not an IPv4 address: {host!r}") from None


def _address(value) -> str:
    return f"{value[0]}:{value[1]}" if value else "nothing yet"


def raise_file_limit() -> None:
    """Four sockets per call: lift the soft descriptor limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


def die_with_parent(parent: int) -> None:
    """Ask Linux for SIGKILL when the parent goes (PR_SET_PDEATHSIG), in case the
    loop is ever stuck and does not see the control socket close; then check the
    parent did not already go before we asked."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        raise SystemExit(0)


def raise_priority(realtime: bool) -> str:
    """Ask for real-time scheduling, else a lower nice value (see RELAY_NICE)."""
    try:
        if realtime:
            os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(RELAY_RT_PRIORITY))
            return f"real-time (SCHED_RR {RELAY_RT_PRIORITY})"
        # Not inherited either, if whoever started us runs real-time.
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    except (OSError, AttributeError):
        pass
    try:
        os.setpriority(os.PRIO_PROCESS, 0, RELAY_NICE)
    except OSError:
        pass
    return f"nice {os.getpriority(os.PRIO_PROCESS, 0)}"


def serve(control_fd: int, bind_host: str, low: int, high: int, parent: int,
          pidfile: str | None = None, realtime: bool = True,
          coalesce: float = COALESCE, own: OwnEndpoints | None = None) -> int:
    # Ctrl-C in a terminal reaches the whole process group; sipd decides when
    # the relay stops (by closing the control socket), so SIGINT is ignored.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop = []

    def on_term(signum, frame):
        stop.append(signum)
        server.running = False

    die_with_parent(parent)
    raise_file_limit()
    scheduling = raise_priority(realtime)
    control = socket.socket(fileno=control_fd)
    control.setblocking(False)
    server = RelayServer(control, bind_host, low, high, own)
    server.coalesce = coalesce
    signal.signal(signal.SIGTERM, on_term)
    if pidfile:
        with open(pidfile, "w") as handle:
            handle.write(f"{os.getpid()} {parent}\n")
    server._reply({"ok": True, "ready": True, "pid": os.getpid(),
                   "ports_total": server.pool.size * 2})
    log.info("[RTP] Media relay ready (pid %d) on %s, ports %d-%d, scheduling %s; never "
             "sends to ports %s or below 1024 of this host", os.getpid(), bind_host, low, high,
             scheduling, ",".join(map(str, sorted(server.own.ports))) or "-")
    try:
        server.run()
    finally:
        server.close()
        if pidfile:
            try:
                with open(pidfile) as handle:
                    mine = handle.read().split()[:1] == [str(os.getpid())]
                if mine:
                    os.unlink(pidfile)
            except OSError:
                pass
    return 0
