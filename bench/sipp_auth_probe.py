"""What does the installed sipp do with several WWW-Authenticate headers?

RFC 8760 §2.4: a server offering several digest algorithms sends one
challenge per algorithm, most preferred first (SHA-256 then MD5); a client
answers the first one whose algorithm it supports. This probe runs a tiny
fake registrar on 127.0.0.1 (a thread in this process) that challenges with
a chosen list of WWW-Authenticate headers, drives it with
tests/sip/scenarios/register_auth.xml, and reports which algorithm sipp's
Authorization used and whether its response was correct.

    .venv/bin/python bench/sipp_auth_probe.py

Only loopback traffic; each case is one REGISTER pair with a 10 s bound.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from benchlib import SCENARIOS, free_udp_port, users_csv

SCENARIO = SCENARIOS / "register_auth.xml"
REALM = "probe.test"
USER, PASSWORD = "1002", "Secret-Pass-1002"
HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}

CASES = {
    "SHA-256 then MD5 (RFC 8760 order)": ["SHA-256", "MD5"],
    "MD5 then SHA-256": ["MD5", "SHA-256"],
    "SHA-256 only": ["SHA-256"],
    "MD5 only": ["MD5"],
}


def _params(header: str) -> dict[str, str]:
    return {
        m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
        for m in re.finditer(r'(\w+)\s*=\s*(?:"([^"]*)"|([^\s,]+))', header)
    }


def _expected(params: dict[str, str], algorithm: str) -> str:
    h = HASHES[algorithm]

    def hx(s: str) -> str:
        return h(s.encode()).hexdigest()

    ha1 = hx(f"{params['username']}:{params['realm']}:{PASSWORD}")
    ha2 = hx(f"REGISTER:{params['uri']}")
    if "qop" in params:
        nonce, nc, cnonce, qop = (params[k] for k in ("nonce", "nc", "cnonce", "qop"))
        return hx(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return hx(f"{ha1}:{params['nonce']}:{ha2}")


class FakeRegistrar(threading.Thread):
    def __init__(self, algorithms: list[str]):
        super().__init__(daemon=True)
        self.algorithms = algorithms
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.nonces: dict[str, str] = {}  # nonce -> algorithm it was offered with
        self.authorization: str | None = None
        self.verdict = "no authenticated REGISTER received"
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                data, peer = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            text = data.decode(errors="replace")
            if not text.startswith("REGISTER"):
                continue
            head = text.split("\r\n\r\n", 1)[0].split("\r\n")
            keep = [line for line in head[1:] if line.split(":", 1)[0].strip().lower()
                    in ("via", "from", "to", "call-id", "cseq")]
            auth = next((line.split(":", 1)[1].strip() for line in head
                         if line.lower().startswith("authorization:")), None)
            if auth is None:
                extra = []
                for algorithm in self.algorithms:
                    nonce = secrets.token_hex(16)
                    self.nonces[nonce] = algorithm
                    extra.append(f'WWW-Authenticate: Digest realm="{REALM}", nonce="{nonce}", '
                                 f'algorithm={algorithm}, qop="auth"')
                status = "401 Unauthorized"
            else:
                self.authorization = auth
                params = _params(auth)
                algorithm = params.get("algorithm", "MD5")
                offered = self.nonces.get(params.get("nonce", ""))
                if algorithm not in HASHES:
                    self.verdict = f"unknown algorithm {algorithm!r}"
                elif offered is None:
                    self.verdict = "nonce was never offered"
                elif params.get("response") == _expected(params, algorithm):
                    self.verdict = (f"valid {algorithm} response"
                                    + ("" if offered == algorithm else
                                       f", but to the nonce of the {offered} challenge"))
                else:
                    right = [a for a in HASHES if params.get("response") == _expected(params, a)]
                    self.verdict = (f"WRONG: says algorithm={algorithm} on the {offered} nonce; "
                                    f"response computed with {right or 'no known algorithm'}")
                status = "200 OK" if self.verdict.startswith("valid") else "403 Forbidden"
                extra = []
            reply = "\r\n".join([f"SIP/2.0 {status}", *keep, *extra, "Content-Length: 0", "", ""])
            self.sock.sendto(reply.encode(), peer)


def probe(algorithms: list[str], workdir: Path) -> tuple[FakeRegistrar, int, str]:
    server = FakeRegistrar(algorithms)
    server.start()
    users = users_csv(workdir / "users.csv", [(USER, PASSWORD)])
    try:
        run = subprocess.run(
            ["sipp", "-sf", str(SCENARIO), "-inf", str(users), "-i", "127.0.0.1",
             "-p", str(free_udp_port()), "-m", "1", "-nostdin", "-timeout", "10", "-timeout_error",
             "-recv_timeout", "3000", "-trace_err", "-error_file", str(workdir / "err.log"),
             f"127.0.0.1:{server.port}"],
            cwd=workdir, capture_output=True, text=True, timeout=20,
        )
        errors = (workdir / "err.log").read_text() if (workdir / "err.log").exists() else ""
        return server, run.returncode, errors
    finally:
        server.stop.set()
        server.join(2)
        server.sock.close()


def main() -> int:
    if not shutil.which("sipp"):
        print("sipp is not installed (Debian package sip-tester)", file=sys.stderr)
        return 1
    version = subprocess.run(["sipp", "-v"], capture_output=True, text=True).stdout.strip()
    print(version.splitlines()[0] if version else "sipp (version unknown)")
    for name, algorithms in CASES.items():
        with tempfile.TemporaryDirectory(prefix="sipp-probe-") as tmp:
            server, rc, errors = probe(algorithms, Path(tmp))
        print(f"\n== challenges: {name}")
        print(f"   sipp exit {rc}; registrar's verdict: {server.verdict}")
        if server.authorization:
            print(f"   Authorization: {server.authorization}")
        for line in errors.splitlines():
            if "createAuthHeader" in line or "authentication" in line.lower():
                print(f"   sipp error: {line.strip()[:200]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
