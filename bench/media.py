"""Media relay benchmark: N concurrent G.711 calls through the relay, both directions.

Each call has two "phones" (UDP sockets in this process) that send a 172-byte
RTP packet (12-byte header + 160 bytes of G.711, 20 ms) every 20 ms, each phone
at its own phase, like calls started at random moments. The phones go through
the real relay process, set up with the same Relay API sipd uses (one session
per call, leg addresses as SDP would give them).

Measured:
- loss: packets sent that never arrived (after a 1 s drain);
- latency: the sender's clock just before sendto() against the kernel's receive
  timestamp on the receiving phone's socket (SO_TIMESTAMPNS), so the time this
  process takes to get round to reading a packet is not counted. The same run
  with the phones sending straight to each other ("direct") gives the kernel's
  own loopback path and shows the generator can do the rate by itself; "added"
  is relay minus direct;
- CPU: the relay process's user+system time (/proc/PID/stat) over the run,
  per packet relayed;
- signaling: OPTIONS round trips to a real sipd on the same machine during the
  run (`relay` mode), or to the relaying process itself (`gevent` mode).

`--mode gevent` runs the alternative this design rejected: a relay inside a
gevent process, one greenlet per socket doing recvfrom/sendto with the
simplest latching (a lower bound on what it would cost in sipd), with a
greenlet answering pings as sipd's SIP handling would have to.

Everything talks to 127.0.0.1 only; every loop has a deadline.

    .venv/bin/python bench/media.py                      # 100, 200, 300 calls, 20 s each
    .venv/bin/python bench/media.py --calls 300 --duration 20 --modes direct,relay,gevent
"""

from __future__ import annotations

import argparse
import array
import datetime
import json
import os
import random
import resource
import secrets
import select
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.benchlib import (  # noqa: E402
    LOOPBACK,
    ROOT,
    free_udp_port,
    loadavg,
    machine,
    options_request,
    process_cpu,
    sipd_python,
    stop_process,
    udp_rcvbuf_errors,
)

PERIOD = 0.020
PAYLOAD = 160  # G.711 at 8 kHz, 20 ms
# RTP header (V=2, PT 0, seq, timestamp, SSRC), then our own: send time (ns,
# CLOCK_REALTIME like the kernel's receive timestamp) and the sending phone's index.
HEADER = struct.Struct("!BBHIIqI")
PACKET_SIZE = 12 + PAYLOAD
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
TIMESPEC = struct.Struct("qq")
BENCH_PORTS = (24000, 27999)  # outside Linux's ephemeral range (32768-60999)


@dataclass
class Result:
    mode: str
    calls: int
    duration: float
    sent: int = 0
    received: int = 0
    latencies: array.array = field(default_factory=lambda: array.array("q"))
    send_late_ms_p99: float = 0.0
    skipped: int = 0
    relay_cpu: float = 0.0
    relayed: int = 0
    generator_cpu: float = 0.0
    udp_drops: int = 0
    ping_ms: list[float] = field(default_factory=list)
    ping_lost: int = 0
    note: str = ""
    load: str = ""

    @property
    def loss(self) -> float:
        return 100.0 * (1 - self.received / self.sent) if self.sent else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6

    def ping_percentile(self, q: float) -> float:
        if not self.ping_ms:
            return float("nan")
        ordered = sorted(self.ping_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def summary(self) -> dict:
        return {
            "mode": self.mode, "calls": self.calls, "duration_s": self.duration,
            "packets_per_s": round(self.sent / self.duration) if self.duration else 0,
            "sent": self.sent, "received": self.received, "loss_pct": round(self.loss, 4),
            "latency_ms_p50": round(self.percentile(0.50), 3),
            "latency_ms_p99": round(self.percentile(0.99), 3),
            "latency_ms_max": round(self.percentile(1.0), 3),
            "send_late_ms_p99": round(self.send_late_ms_p99, 3),
            "skipped": self.skipped,
            "load": self.load,
            "relay_cpu_s": round(self.relay_cpu, 2),
            "relay_cpu_pct": round(100 * self.relay_cpu / self.duration, 1)
            if self.duration else 0,
            "relayed": self.relayed,
            "relay_us_per_packet": round(1e6 * self.relay_cpu / self.relayed, 2)
            if self.relayed else None,
            "generator_cpu_pct": round(100 * self.generator_cpu / self.duration, 1)
            if self.duration else 0,
            "udp_rcvbuf_drops": self.udp_drops,
            "sip_ping_ms_p50": round(self.ping_percentile(0.5), 3),
            "sip_ping_ms_p99": round(self.ping_percentile(0.99), 3),
            "sip_ping_ms_max": round(self.ping_percentile(1.0), 3),
            "sip_ping_lost": self.ping_lost,
            "note": self.note,
        }


# --- phones -------------------------------------------------------------------------


def phone_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((LOOPBACK, 0))
    sock.setblocking(False)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    return sock


class Pinger:
    """OPTIONS (or a bare ping) every 50 ms from a socket polled with the phones."""

    def __init__(self, port: int | None, payload: str = "options"):
        self.port = port
        self.payload = payload
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.sock.setblocking(False)
        self.local = self.sock.getsockname()[1]
        self.seq = 0
        self.outstanding: dict[int, float] = {}
        self.next_at = 0.0
        self.rtts: list[float] = []

    def due(self, now: float) -> None:
        if self.port is None or now < self.next_at:
            return
        self.next_at = now + 0.05
        self.seq += 1
        if self.payload == "options":
            data = options_request(self.port, self.local, self.seq)
        else:
            data = f"ping {self.seq}".encode()
        self.outstanding[self.seq] = time.perf_counter()
        try:
            self.sock.sendto(data, (LOOPBACK, self.port))
        except OSError:
            pass

    def readable(self) -> None:
        while True:
            try:
                data = self.sock.recv(65535)
            except OSError:
                return
            now = time.perf_counter()
            seq = None
            if data.startswith(b"SIP/2.0"):
                for line in data.split(b"\r\n"):
                    if line.lower().startswith(b"cseq:"):
                        seq = int(line.split()[1])
            elif data.startswith(b"pong "):
                seq = int(data.split()[1])
            sent = self.outstanding.pop(seq, None)
            if sent is not None:
                self.rtts.append(1000 * (now - sent))

    @property
    def lost(self) -> int:
        return len(self.outstanding)


def generate(pairs: list[tuple[socket.socket, tuple, socket.socket, tuple]], duration: float,
             pinger: Pinger, result: Result) -> None:
    """Send from every phone every 20 ms for `duration` s, receive everything, then drain."""
    phones = []  # (socket, destination, index)
    for a, to_a, b, to_b in pairs:
        phones.append((a, to_a, len(phones)))
        phones.append((b, to_b, len(phones)))
    rng = random.Random(4733)
    phases = sorted((rng.uniform(0, PERIOD), phone) for phone in phones)
    ssrcs = [rng.getrandbits(32) for _ in phones]
    seqs = [rng.getrandbits(16) for _ in phones]
    received = [0] * len(phones)
    latencies = result.latencies
    poller = select.epoll()
    by_fd = {}
    for sock, _, _ in phones:
        poller.register(sock.fileno(), select.EPOLLIN)
        by_fd[sock.fileno()] = sock
    poller.register(pinger.sock.fileno(), select.EPOLLIN)
    ping_fd = pinger.sock.fileno()
    buf = bytearray(PACKET_SIZE)
    pack_into = HEADER.pack_into
    unpack_from = HEADER.unpack_from
    unpack_ts = TIMESPEC.unpack
    time_ns = time.time_ns
    clock = time.monotonic
    late = array.array("d")
    cycles = int(duration / PERIOD)
    start = clock() + 0.2
    sent = skipped = 0

    def receive(events) -> None:
        for fd, _ in events:
            if fd == ping_fd:
                pinger.readable()
                continue
            sock = by_fd[fd]
            while True:
                try:
                    data, ancillary, _, _ = sock.recvmsg(2048, 64)
                except BlockingIOError:
                    break
                if len(data) < HEADER.size:
                    continue
                sent_ns, index = unpack_from(data)[5:7]
                for level, kind, cdata in ancillary:
                    if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS:
                        seconds, nanos = unpack_ts(cdata[:16])
                        latencies.append(seconds * 1_000_000_000 + nanos - sent_ns)
                if index < len(received):
                    received[index] += 1

    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    for cycle in range(cycles):
        base = start + cycle * PERIOD
        for phase, (sock, destination, index) in phases:
            due = base + phase
            now = clock()
            if now < due:
                pinger.due(now)
                # Sleep in the poll when the next send is more than 0.5 ms away
                # (epoll sleeps in whole ms); closer than that, send a little
                # early rather than spin and take CPU from the relay.
                if due - now > 0.0005:
                    receive(poller.poll(due - now))
            else:
                late.append(now - due)
                if now - due > PERIOD:
                    # Starved (the machine is busy): skip this packet rather
                    # than catch up in a burst no phone would send.
                    skipped += 1
                    continue
            seq = (seqs[index] + 1) & 0xFFFF
            seqs[index] = seq
            pack_into(buf, 0, 0x80, 0, seq, (cycle * 160) & 0xFFFFFFFF, ssrcs[index],
                      time_ns(), index)
            try:
                sock.sendto(buf, destination)
                sent += 1
            except OSError:
                pass
        receive(poller.poll(0))
    drain_until = clock() + 1.0
    while clock() < drain_until:
        receive(poller.poll(0.05))
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    poller.close()
    result.sent = sent
    result.skipped = skipped
    result.received = sum(received)
    result.generator_cpu = (cpu_after.ru_utime - cpu_before.ru_utime
                            + cpu_after.ru_stime - cpu_before.ru_stime)
    if late:
        ordered = sorted(late)
        result.send_late_ms_p99 = 1000 * ordered[int(0.99 * (len(ordered) - 1))]
    result.ping_ms = pinger.rtts
    result.ping_lost = pinger.lost


# --- the three set-ups ----------------------------------------------------------------


def run_direct(calls: int, duration: float, workdir: Path) -> Result:
    result = Result("direct", calls, duration)
    pairs = []
    # sipd answers OPTIONS here too: its figures without a relay running are
    # the baseline for the relay run's.
    sipd = start_sipd(workdir)
    try:
        for _ in range(calls):
            a, b = phone_socket(), phone_socket()
            pairs.append((a, b.getsockname(), b, a.getsockname()))
        drops = udp_rcvbuf_errors()
        generate(pairs, duration, Pinger(sipd[1]), result)
        result.udp_drops = udp_rcvbuf_errors() - drops
    finally:
        stop_process(sipd[0])
        close_pairs(pairs)
    return result


def run_relay(calls: int, duration: float, workdir: Path,
              coalesce_ms: float | None = None, realtime: bool = True) -> Result:
    from core.config import load_settings
    from sipd.media import Relay

    result = Result("relay", calls, duration)
    sipd = start_sipd(workdir)
    settings = load_settings({
        "PBX_SIP_LISTEN": f"{LOOPBACK}:0", "PBX_RUN_DIR": str(workdir / "relay"),
        "PBX_RTP_PORTS": f"{BENCH_PORTS[0]}-{BENCH_PORTS[1]}", "PBX_LOG_LEVEL": "warning",
    })
    relay = Relay(settings, coalesce_ms=coalesce_ms, realtime=realtime).start()
    pairs = []
    try:
        for number in range(calls):
            session = relay.open_session(f"bench-{number}")
            a, b = phone_socket(), phone_socket()
            # What the B2BUA does with each phone's SDP, and the address its
            # signalling came from (the relay latches each leg to it).
            relay.set_remote(session, "A", *a.getsockname(), source=LOOPBACK)
            relay.set_remote(session, "B", *b.getsockname(), source=LOOPBACK)
            pairs.append((a, (LOOPBACK, session.leg("A").local_rtp_port),
                          b, (LOOPBACK, session.leg("B").local_rtp_port)))
        before = relay.info()["packets_out"]
        cpu = process_cpu(relay.pid)
        drops = udp_rcvbuf_errors()
        generate(pairs, duration, Pinger(sipd[1]), result)
        result.udp_drops = udp_rcvbuf_errors() - drops
        result.relay_cpu = process_cpu(relay.pid) - cpu
        result.relayed = relay.info()["packets_out"] - before
        result.note = scheduling(relay.pid) + (
            f", coalesce {coalesce_ms:g} ms" if coalesce_ms is not None else "")
    finally:
        relay.stop()
        stop_process(sipd[0])
        close_pairs(pairs)
    return result


def scheduling(pid: int) -> str:
    try:
        policy = os.sched_getscheduler(pid)
    except OSError:
        return "?"
    if policy == os.SCHED_RR:
        return f"SCHED_RR {os.sched_getparam(pid).sched_priority}"
    return f"nice {os.getpriority(os.PRIO_PROCESS, pid)}"


def start_sipd(workdir: Path) -> tuple[subprocess.Popen, int]:
    from bench.benchlib import wait_options_200
    from core.config import load_settings
    from core.database import connect

    port = free_udp_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PBX_")}
    env.update({
        "PBX_DB": str(workdir / "pbx.db"), "PBX_SIP_LISTEN": f"{LOOPBACK}:{port}",
        "PBX_REALM": "bench.test", "PBX_LOG_LEVEL": "warning",
        "PBX_RUN_DIR": str(workdir / "sipd"), "PBX_SECRET_KEY": secrets.token_urlsafe(48),
        "PYTHONPATH": str(ROOT),
    })
    connect(load_settings(env)).close()
    process = subprocess.Popen([sipd_python(), "-m", "sipd"], cwd=ROOT, env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    if wait_options_200(port, 20.0, alive=lambda: process.poll() is None) is None:
        stop_process(process)
        raise RuntimeError("sipd did not answer OPTIONS")
    return process, port


def run_gevent(calls: int, duration: float) -> Result:
    result = Result("gevent", calls, duration)
    pairs = []
    phones = []
    for _ in range(calls):
        phones.append((phone_socket(), phone_socket()))
    process = subprocess.Popen([sys.executable, __file__, "--gevent-server"], cwd=ROOT,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        addresses = [[list(a.getsockname()), list(b.getsockname())] for a, b in phones]
        process.stdin.write(json.dumps(addresses).encode() + b"\n")
        process.stdin.flush()
        reply = json.loads(process.stdout.readline())
        for (a, b), (port_a, port_b) in zip(phones, reply["ports"], strict=True):
            pairs.append((a, (LOOPBACK, port_a), b, (LOOPBACK, port_b)))
        cpu = process_cpu(process.pid)
        drops = udp_rcvbuf_errors()
        generate(pairs, duration, Pinger(reply["ping"], "ping"), result)
        result.udp_drops = udp_rcvbuf_errors() - drops
        result.relay_cpu = process_cpu(process.pid) - cpu
        process.stdin.write(b"count\n")
        process.stdin.flush()
        result.relayed = json.loads(process.stdout.readline())["relayed"]
        result.note = scheduling(process.pid)
    finally:
        process.stdin.close()
        stop_process(process)
        close_pairs(pairs)
    return result


def gevent_server() -> int:
    """The rejected design, for comparison: greenlets relaying inside a gevent hub."""
    from gevent import monkey

    monkey.patch_all()
    import gevent

    from sipd.media.server import raise_priority

    raise_priority(True)  # the same scheduling the relay process asks for, to compare designs

    phones = json.loads(sys.stdin.readline())
    relayed = [0]
    ports = []

    def pump(sock, out, mine, theirs):
        while True:
            data, source = sock.recvfrom(2048)
            mine[0] = source  # latching, at its simplest
            out.sendto(data, theirs[0])
            relayed[0] += 1

    for phone_a, phone_b in phones:
        sa = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sb = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sa.bind((LOOPBACK, 0))
        sb.bind((LOOPBACK, 0))
        la, lb = [tuple(phone_a)], [tuple(phone_b)]
        gevent.spawn(pump, sa, sb, la, lb)
        gevent.spawn(pump, sb, sa, lb, la)
        ports.append([sa.getsockname()[1], sb.getsockname()[1]])
    ping = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ping.bind((LOOPBACK, 0))

    def answer():
        while True:
            data, source = ping.recvfrom(2048)
            ping.sendto(b"pong " + data.split()[1], source)

    gevent.spawn(answer)
    print(json.dumps({"ports": ports, "ping": ping.getsockname()[1]}), flush=True)
    # sys.stdin is not cooperative even after patch_all: read it in gevent's
    # thread pool so the hub keeps relaying meanwhile.
    pool = gevent.get_hub().threadpool
    for _ in range(1000):
        line = pool.spawn(sys.stdin.readline).get()
        if not line:
            break
        if line.strip() == "count":
            print(json.dumps({"relayed": relayed[0]}), flush=True)
    return 0


def close_pairs(pairs) -> None:
    for a, _, b, _ in pairs:
        a.close()
        b.close()


# --- report -----------------------------------------------------------------------


def markdown(results: list[Result], args, command: str) -> str:
    info = machine()
    lines = [
        "",
        "## Media relay",
        "",
        f"{datetime.date.today().isoformat()}, `{command}`",
        "",
        f"Machine: {info['cores']} cores ({info['cpu']}), {info['memory']} RAM, "
        f"Linux {info['kernel']}, Python {info['python']}; sipd on {info['sipd_python']}.",
        "",
        "Each call: two phones sending 172-byte RTP packets (G.711, 20 ms) to each other "
        f"through the relay for {args.duration:g} s, each phone at its own phase; "
        "latency from the sender's clock before sendto() to the kernel's receive timestamp "
        "(SO_TIMESTAMPNS) at the other phone; `direct` is the same load phone to phone "
        "without a relay (the generator's own capacity and the loopback path). "
        "Relay CPU from /proc/PID/stat. SIP ping: OPTIONS to a real sipd (normal priority) "
        "every 50 ms during the run, with (`relay`) and without (`direct`) the relay working "
        "(`gevent`: a ping answered by the relaying gevent process itself, i.e. sipd's hub if "
        "the relay lived in sipd). The generator runs at SCHED_RR 1 when allowed, so other "
        "load on the machine does not bunch its sends; its children start at normal priority.",
        "",
        "| mode | calls | packets/s sent | loss | latency p50 | p99 | max | added p99 | "
        "relay CPU | µs/packet | SIP ping p50 / p99 / max | load avg after | relay scheduling |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    direct = {r.calls: r for r in results if r.mode == "direct"}
    for r in results:
        s = r.summary()
        base = direct.get(r.calls)
        added = (f"{r.percentile(0.99) - base.percentile(0.99):.2f} ms"
                 if base and r.mode != "direct" else "-")
        cpu = f"{s['relay_cpu_pct']}%" if r.mode != "direct" else "-"
        per = f"{s['relay_us_per_packet']}" if s["relay_us_per_packet"] else "-"
        ping = (f"{s['sip_ping_ms_p50']:.2f} / {s['sip_ping_ms_p99']:.2f} / "
                f"{s['sip_ping_ms_max']:.2f} ms" if r.ping_ms else "-")
        if r.ping_lost:
            ping += f" ({r.ping_lost} lost)"
        lines.append(
            f"| {r.mode} | {r.calls} | {s['packets_per_s']} | {s['loss_pct']:.3f}% | "
            f"{s['latency_ms_p50']:.3f} ms | {s['latency_ms_p99']:.3f} ms | "
            f"{s['latency_ms_max']:.2f} ms | {added} | {cpu} | {per} | {ping} | "
            f"{r.load.split()[0] if r.load else '-'} | {r.note or '-'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    if argv is None and sys.argv[1:2] == ["--gevent-server"]:
        return gevent_server()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", default="100,200,300")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--modes", default="direct,relay")
    parser.add_argument("--json", help="write the figures here too")
    parser.add_argument("--no-realtime", action="store_true",
                        help="start the relay without SCHED_RR (it then asks for nice -10)")
    parser.add_argument("--coalesce-ms", type=float,
                        help="the relay's pause after each batch (default: the relay's own)")
    args = parser.parse_args(argv)
    # The phones this process plays would be other machines: ask for the CPU
    # ahead of unrelated work here (SCHED_RR 1 like the relay, else nice -5,
    # when allowed), or a busy machine turns their steady 20 ms into bursts
    # and skipped packets. SCHED_RESET_ON_FORK: sipd and the relay started from
    # here begin at normal priority and get only what they ask for themselves.
    try:
        os.sched_setscheduler(0, os.SCHED_RR | os.SCHED_RESET_ON_FORK, os.sched_param(1))
    except OSError:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, -5)
        except OSError:
            pass
    modes = args.modes.split(",")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-media-") as tmp:
        for calls in (int(c) for c in args.calls.split(",")):
            for mode in modes:
                workdir = Path(tmp) / f"{mode}-{calls}"
                workdir.mkdir()
                if mode == "direct":
                    result = run_direct(calls, args.duration, workdir)
                elif mode == "relay":
                    result = run_relay(calls, args.duration, workdir, args.coalesce_ms,
                                       realtime=not args.no_realtime)
                elif mode == "gevent":
                    result = run_gevent(calls, args.duration)
                else:
                    parser.error(f"unknown mode {mode!r}")
                result.load = loadavg()
                results.append(result)
                print(json.dumps(result.summary()), flush=True)
    command = "bench/media.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(markdown(results, args, command.strip()))
    if args.json:
        Path(args.json).write_text(json.dumps([r.summary() for r in results], indent=1))
    failed = [r for r in results if r.mode == "relay" and r.calls >= 300
              and (r.loss >= 0.5 or r.percentile(0.99) >= 5.0)]
    for r in failed:
        print(f"TARGET MISSED at {r.calls} calls: loss {r.loss:.3f}% (target < 0.5%), "
              f"p99 {r.percentile(0.99):.2f} ms (target < 5 ms), load {r.load}",
              file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
