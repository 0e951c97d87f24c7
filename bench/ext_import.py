"""`pbxctl ext import` of a large CSV while phones register: how long the import
takes, and what the REGISTERs sent meanwhile got (security.md, probe finding 9).

A real sipd on a loopback port, a real `pbxctl ext import` subprocess of
--rows rows, and meanwhile:

- a phone (tests/deploy/sipclient.py, digest written apart from sipd's) that
  registers again and again, REGISTER, 401, REGISTER with credentials, final
  answer, retransmitting like RFC 3261 timer E (0.5, 1, 2, 4 s) for up to
  --give-up seconds; every exchange is timed from its first send;
- a TCP OPTIONS every 20 ms, which touches no database: how long its answer
  takes is how long sipd's event loop was held up.

    .venv/bin/python bench/ext_import.py --rows 100000

Traffic goes to 127.0.0.1 only; every wait has a deadline.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from tests.deploy.sipclient import Phone, parse_challenge, parse_response  # noqa: E402
from tests.support import LOOPBACK, Sipd, database_with  # noqa: E402

PASSWORD = "bench-Phone-2024"
REALM = "pbx.test"


def write_csv(path: Path, rows: int, first: int = 200000) -> Path:
    with path.open("w") as out:
        out.write("number,name,password\n")
        for i in range(rows):
            out.write(f"{first + i},Imported {i},Pw{secrets.token_hex(6)}x\n")
    return path


class Exchange:
    __slots__ = ("started", "ended", "status")

    def __init__(self, started: float):
        self.started, self.ended, self.status = started, None, None


class Registering(threading.Thread):
    """Registers one extension from one address over and over; each exchange recorded."""

    def __init__(self, port: int, give_up: float, number: str, local: str):
        super().__init__(daemon=True)
        self.phone = Phone(LOOPBACK, number, PASSWORD, local, port=port, domain=REALM)
        self.give_up = give_up
        self.exchanges: list[Exchange] = []
        self.stopping = threading.Event()

    def _send(self, message: bytes) -> tuple[int | None, object]:
        """Send with timer E's retransmissions; the final response, or None at give_up."""
        deadline = time.monotonic() + self.give_up
        cseq = f"{self.phone.cseq} REGISTER"
        interval = 0.5
        while time.monotonic() < deadline:
            self.phone.sock.sendto(message, self.phone.server)
            until = min(deadline, time.monotonic() + interval)
            while True:
                left = until - time.monotonic()
                if left <= 0:
                    break
                self.phone.sock.settimeout(left)
                try:
                    data = self.phone.sock.recv(65535)
                except TimeoutError:
                    break
                response = parse_response(data)
                # The answer to this request, not a late one to the previous (CSeq).
                if response.status >= 200 and response.first("CSeq") == cseq:
                    return response.status, response
            interval = min(interval * 2, 4.0)
        return None, None

    def register_once(self) -> Exchange:
        exchange = Exchange(time.monotonic())
        status, response = self._send(self.phone._request(300, True, None))
        if status == 401:
            challenge = parse_challenge(response.first("WWW-Authenticate"))
            authorization = self.phone.authorization(challenge, f"sip:{REALM}")
            status, _ = self._send(self.phone._request(300, True, authorization))
        exchange.ended = time.monotonic() if status is not None else None
        exchange.status = status
        return exchange

    def run(self) -> None:
        while not self.stopping.is_set():
            self.exchanges.append(self.register_once())
            self.stopping.wait(0.05)


class LoopProbe(threading.Thread):
    """An OPTIONS over one TCP connection every 20 ms; the answer times."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.port = port
        self.times: list[tuple[float, float]] = []  # (sent, seconds to the answer)
        self.stopping = threading.Event()

    def run(self) -> None:
        with socket.create_connection((LOOPBACK, self.port), timeout=30) as sock:
            local = sock.getsockname()[1]
            seq = 0
            while not self.stopping.is_set():
                seq += 1
                sent = time.monotonic()
                sock.sendall((
                    f"OPTIONS sip:{LOOPBACK}:{self.port} SIP/2.0\r\n"
                    f"Via: SIP/2.0/TCP {LOOPBACK}:{local};branch=z9hG4bK{secrets.token_hex(8)}\r\n"
                    f"From: <sip:probe@{LOOPBACK}>;tag=p\r\nTo: <sip:{LOOPBACK}>\r\n"
                    f"Call-ID: loop-probe\r\nCSeq: {seq} OPTIONS\r\nMax-Forwards: 70\r\n"
                    "Content-Length: 0\r\n\r\n"
                ).encode())
                data = b""
                while not data.endswith(b"\r\n\r\n"):
                    chunk = sock.recv(65535)
                    if not chunk:
                        return
                    data += chunk
                self.times.append((sent, time.monotonic() - sent))
                self.stopping.wait(0.02)


def summary(label: str, values: list[float]) -> str:
    if not values:
        return f"{label}: none"
    values = sorted(values)
    p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
    return (f"{label}: {len(values)}, median {statistics.median(values) * 1000:.1f} ms, "
            f"p99 {p99 * 1000:.1f} ms, max {values[-1] * 1000:.1f} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100000)
    parser.add_argument("--give-up", type=float, default=8.0,
                        help="seconds a REGISTER is retransmitted before it counts as unanswered")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="pbx-bench-import-"))
    try:
        db_path = database_with(workdir / "pbx.db", ["1001", "1002"], PASSWORD, realm=REALM)
        data = write_csv(workdir / "ext.csv", args.rows)
        print(f"{args.rows} rows, {data.stat().st_size / 1e6:.1f} MB; load "
              f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}", flush=True)
        with Sipd(db_path, PBX_LOG_LEVEL="warning") as sipd:
            # With registration workers (PBX_SIP_WORKERS, auto: one here), the REGISTERs
            # of 127.0.0.1 go to a worker and those of 127.0.0.2 to the main process
            # (sipd/workers.py), whose event loop also serves TCP, calls and the rest.
            phones = [Registering(sipd.port, args.give_up, "1001", "127.0.0.1"),
                      Registering(sipd.port, args.give_up, "1002", "127.0.0.2")]
            probe = LoopProbe(sipd.port)
            probe.start()
            for phone in phones:
                phone.start()
            time.sleep(1.0)  # both going before the import starts
            env = dict(sipd.env, PBX_PYTHON=sys.executable)
            started = time.monotonic()
            result = subprocess.run([str(ROOT / "pbxctl"), "ext", "import",
                                     str(data)], env=env, cwd=ROOT, capture_output=True,
                                    text=True, timeout=1800)
            ended = time.monotonic()
            time.sleep(0.5)
            for phone in phones:
                phone.stopping.set()
            probe.stopping.set()
            for phone in phones:
                phone.join(args.give_up * 2 + 5)
            probe.join(10)
        # At PBX_LOG_LEVEL=warning, whatever sipd logged is a warning or an error.
        problems = [line for line in sipd.log().splitlines() if line.strip()]
        for line in problems[:5]:
            print(f"sipd: {line}")
        if len(problems) > 5:
            print(f"sipd: ... {len(problems) - 5} more warnings or errors")
        last = (result.stdout.strip().splitlines() or [""])[0]
        print(f"import: exit {result.returncode}, {ended - started:.1f} s: {last}"
              f"{result.stderr.strip()}")
        clean = result.returncode == 0
        for phone in phones:
            during = [e for e in phone.exchanges if started <= e.started <= ended]
            answered = [e for e in during if e.status is not None]
            statuses: dict[int, int] = {}
            for e in answered:
                statuses[e.status] = statuses.get(e.status, 0) + 1
            print(f"{phone.phone.user} from {phone.phone.local[0]}: registrations begun during "
                  f"the import: {len(during)}, answered {len(answered)} ("
                  f"{', '.join(f'{n} x {s}' for s, n in sorted(statuses.items()))}), "
                  f"unanswered after {args.give_up:g} s: {len(during) - len(answered)}")
            print("  " + summary("answer time", [e.ended - e.started for e in answered]))
            clean = clean and statuses.get(200, 0) == len(during)
        loop = [t for sent, t in probe.times if started <= sent <= ended]
        print(summary("TCP OPTIONS to the main process during the import (its event loop)",
                      loop))
        return 0 if clean else 1
    finally:
        if args.keep:
            print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
