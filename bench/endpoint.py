"""Media endpoint benchmark: how many of the PBX's own media sessions (prompts
played to a phone, the echo test) one media process carries, and what they
do to relayed calls running beside them.

Each endpoint session is what sipd sets up for an application call (Relay
API: a session, leg A at a phone's address, the endpoint attached, a prompt
played on a loop); "echo" sessions also get 50 packets a second from their
phone, which the endpoint plays back. All of them send to one sink socket
that is never read (their packets leave the media process all the same).
Beside them, `--relayed` calls go through the same process both ways as in
bench/media.py, measured the same way (loss, latency by kernel timestamps).

Measured, per number of endpoint sessions:
- late: the share of endpoint packets sent more than 2 ms after their slot
  on the 20 ms grid, and the p99 of that lateness (the media process's own
  measure, sipd/media/pacer.py Lateness; 0.1 ms buckets);
- the relayed calls' loss and latency p99 with the endpoints running, against
  the same calls alone in the same run (the first row, 0 endpoint sessions);
- the media process's CPU over the run.

Everything talks to 127.0.0.1 only.

    .venv/bin/python bench/endpoint.py                          # 0, 100, 300, 500 sessions
    .venv/bin/python bench/endpoint.py --sessions 0,500 --relayed 100 --duration 15
"""

from __future__ import annotations

import argparse
import json
import math
import socket
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.benchlib import LOOPBACK, loadavg, machine, process_cpu  # noqa: E402
from bench.media import (  # noqa: E402
    BENCH_PORTS,
    Pinger,
    Result,
    close_pairs,
    generate,
    phone_socket,
    scheduling,
)


def _prompt(path: Path) -> None:
    from sipd.media import g711, wav

    samples = 8000 * 8
    linear = struct.pack(f"<{samples}h", *(int(8000 * math.sin(2 * math.pi * 440 * n / 8000))
                                           for n in range(samples)))
    wav.write(path, g711.encode(linear, g711.PCMU), "ulaw")


def _echo_sender(targets: list, stop: threading.Event) -> None:
    """50 packets a second to each echo session (one socket each, so each
    session latches its own phone)."""
    payload = b"\x7f" * 160
    seq = 0
    start = time.monotonic()
    while not stop.is_set():
        for sock, destination in targets:
            try:
                sock.sendto(struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, seq * 160, 7) + payload,
                            destination)
            except OSError:
                pass
        seq += 1
        delay = start + seq * 0.02 - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def run(sessions: int, echo_share: float, relayed: int, duration: float, workdir: Path,
        prompt: Path) -> dict:
    from core.config import load_settings
    from sipd.media import Relay

    settings = load_settings({
        "PBX_SIP_LISTEN": f"{LOOPBACK}:0", "PBX_RUN_DIR": str(workdir / "relay"),
        "PBX_RTP_PORTS": f"{BENCH_PORTS[0]}-{BENCH_PORTS[1]}", "PBX_LOG_LEVEL": "warning",
    })
    relay = Relay(settings).start()
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind((LOOPBACK, 0))
    echo_targets, pairs = [], []
    stop = threading.Event()
    result = Result("relay", relayed, duration)
    try:
        echoes = int(sessions * echo_share)
        for number in range(sessions):
            session = relay.open_session(f"endpoint-{number}")
            if number < echoes:
                phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                phone.bind((LOOPBACK, 0))
                relay.set_remote(session, "A", *phone.getsockname(), source=LOOPBACK)
                echo_targets.append((phone, (LOOPBACK, session.leg("A").local_rtp_port)))
            else:
                relay.set_remote(session, "A", *sink.getsockname(), source=LOOPBACK)
            relay.endpoint(session, "endpoint", payload_type=0)
            if number < echoes:
                relay.endpoint(session, "echo", on=True)
            else:
                relay.endpoint(session, "play", files=[str(prompt)], loop=True)
        for number in range(relayed):
            session = relay.open_session(f"relayed-{number}")
            a, b = phone_socket(), phone_socket()
            relay.set_remote(session, "A", *a.getsockname(), source=LOOPBACK)
            relay.set_remote(session, "B", *b.getsockname(), source=LOOPBACK)
            pairs.append((a, (LOOPBACK, session.leg("A").local_rtp_port),
                          b, (LOOPBACK, session.leg("B").local_rtp_port)))
        sender = threading.Thread(target=_echo_sender, args=(echo_targets, stop), daemon=True)
        sender.start()
        time.sleep(1.0)  # every session under way
        before = relay.info()
        began = time.monotonic()
        cpu = process_cpu(relay.pid)
        if pairs:
            generate(pairs, duration, Pinger(None), result)
        else:
            time.sleep(duration)
        cpu = process_cpu(relay.pid) - cpu
        after = relay.info()
        elapsed = time.monotonic() - began  # generate() drains a second past `duration`
        load = loadavg()
        note = scheduling(relay.pid)
    finally:
        stop.set()
        relay.stop()
        sink.close()
        for sock, _ in echo_targets:
            sock.close()
        close_pairs(pairs)
    expected = sessions * elapsed / 0.02
    sent = after["endpoint_packets"] - before["endpoint_packets"]
    return {
        "sessions": sessions, "echo": int(sessions * echo_share), "relayed_calls": relayed,
        "duration_s": duration,
        "endpoint_packets": sent,
        "endpoint_sent_pct": round(100 * sent / expected, 2) if expected else None,
        # since the process started (setup second included): the share late and its p99
        "late_over_2ms_pct": round(100 * after["endpoint_late_over_2ms"], 3),
        "late_p99_ms": round(1000 * after["endpoint_late_p99"], 2),
        "relayed_loss_pct": round(result.loss, 3) if pairs else None,
        "relayed_latency_ms_p99": round(result.percentile(0.99), 3) if pairs else None,
        "media_cpu_pct": round(100 * cpu / elapsed, 1),
        "load": load, "scheduling": note,
    }


def markdown(rows: list[dict], command: str) -> str:
    lines = [f"`{command}` ({machine()})", "",
             "| endpoint sessions (echo) | relayed calls | endpoint packets sent / due | "
             "late > 2 ms | late p99 | relayed loss | relayed latency p99 | media CPU | "
             "load |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['sessions']} ({r['echo']}) | {r['relayed_calls']} | "
            f"{r['endpoint_sent_pct']} % | {r['late_over_2ms_pct']} % | {r['late_p99_ms']} ms | "
            f"{r['relayed_loss_pct']} % | {r['relayed_latency_ms_p99']} ms | "
            f"{r['media_cpu_pct']} % | {r['load']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", default="0,100,300,500")
    parser.add_argument("--echo-share", type=float, default=0.2,
                        help="the share of sessions that are echo tests (default 0.2)")
    parser.add_argument("--relayed", type=int, default=100)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.sessions.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-endpoint-") as work:
        workdir = Path(work)
        prompt = workdir / "prompt.wav"
        _prompt(prompt)
        for count in counts:
            row = run(count, args.echo_share, args.relayed, args.duration, workdir, prompt)
            print(json.dumps(row), flush=True)
            rows.append(row)
    command = "bench/endpoint.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(markdown(rows, command.strip()))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
