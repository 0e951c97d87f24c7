"""Probe finding 9: a large `pbxctl ext import` stalled sipd (docs/security.md).

The probe imported 100,000 extensions: the import held SQLite's write lock for
87 s, 22 of 23 REGISTERs sent meanwhile got no answer ("database is locked"),
and sipd's event loop stood still for up to 5 s at a time, because SQLite's
busy wait sleeps inside the library call.

Here: a real sipd on loopback, a real `pbxctl ext import` subprocess, phones
(tests/deploy/sipclient.py: digest written apart from sipd's) registering from
127.0.0.1 (steered to a registration worker) and 127.0.0.2 (the main process)
the whole time; and the write lock held by the test itself, to show what
waits for it (the REGISTER) and what does not (everything else).
"""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from tests.deploy.sipclient import Phone, parse_challenge, parse_response
from tests.support import LOOPBACK, ROOT, Sipd, database_with, options_ping

PASSWORD = "correct-horse-9"
REALM = "pbx.test"
# A phone retransmits a REGISTER for up to 32 s (RFC 3261 timer F); the test
# gives each one 8 s (timer E: sent at 0, 0.5, 1.5, 3.5 and 7.5 s).
GIVE_UP = 8.0


class RegisteringPhone(Phone):
    """A phone that registers again and again: REGISTER, 401, REGISTER with
    credentials; each exchange's final status kept (None: no answer)."""

    def __init__(self, port: int, number: str, local: str):
        super().__init__(LOOPBACK, number, PASSWORD, local, port=port, domain=REALM)
        self.exchanges: list[tuple[float, int | None]] = []  # (begun, final status)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def send(self, message: bytes, give_up: float = GIVE_UP, retransmit: bool = True):
        """The final response to `message` (matched by CSeq), or None."""
        cseq = f"{self.cseq} REGISTER"
        deadline = time.monotonic() + give_up
        interval = 0.5
        while time.monotonic() < deadline:
            self.sock.sendto(message, self.server)
            until = min(deadline, time.monotonic() + interval) if retransmit else deadline
            while (left := until - time.monotonic()) > 0:
                self.sock.settimeout(left)
                try:
                    data = self.sock.recv(65535)
                except TimeoutError:
                    break
                if not data.startswith(b"SIP/2.0 "):
                    continue  # a request to the phone (sipd's qualify OPTIONS): not ours
                response = parse_response(data)
                if response.status >= 200 and response.first("CSeq") == cseq:
                    return response
            interval = min(interval * 2, 4.0)
        return None

    def challenged(self) -> str:
        """Authorization for the next REGISTER, from a fresh 401."""
        response = self.send(self._request(300, True, None))
        assert response is not None and response.status == 401, response
        challenge = parse_challenge(response.first("WWW-Authenticate"))
        return self.authorization(challenge, f"sip:{REALM}")

    def register_once(self) -> int | None:
        first = self.send(self._request(300, True, None))
        if first is None or first.status != 401:
            return None if first is None else first.status
        challenge = parse_challenge(first.first("WWW-Authenticate"))
        final = self.send(self._request(300, True, self.authorization(challenge,
                                                                       f"sip:{REALM}")))
        return None if final is None else final.status

    def _run(self) -> None:
        while not self.stopping.is_set():
            begun = time.monotonic()
            self.exchanges.append((begun, self.register_once()))

    def start(self) -> RegisteringPhone:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(GIVE_UP * 2 + 5)


def write_csv(path, rows: int):
    with open(path, "w") as out:
        out.write("number,name,password\n")
        for i in range(rows):
            out.write(f"{200000 + i},Imported {i},Pw-{i:06d}-import\n")
    return path


def bindings(db_path) -> list[tuple[str, str]]:
    with sqlite3.connect(db_path) as conn:
        return conn.execute(
            "SELECT e.number, b.source_host FROM binding b JOIN extension e"
            " ON e.id = b.extension_id WHERE b.expires_at > ? ORDER BY e.number", (time.time(),)
        ).fetchall()


@pytest.fixture
def db_path(tmp_path):
    return database_with(tmp_path / "pbx.db", ["1001", "1002"], PASSWORD, REALM)


class WriteLock:
    """SQLite's write lock, held by the test as another process's import would."""

    def __init__(self, db_path):
        self.conn = sqlite3.connect(db_path, isolation_level=None, timeout=10)

    def __enter__(self) -> WriteLock:
        self.conn.execute("BEGIN IMMEDIATE")
        return self

    def release(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def __exit__(self, *exc) -> None:
        self.release()
        self.conn.close()


def wait_for(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.02)
    return predicate()


def tcp_options(port: int, timeout: float) -> bytes | None:
    """An OPTIONS over TCP (no database): its answer, or None within `timeout`."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
            local = sock.getsockname()[1]
            sock.sendall((
                f"OPTIONS sip:{LOOPBACK}:{port} SIP/2.0\r\n"
                f"Via: SIP/2.0/TCP {LOOPBACK}:{local};branch=z9hG4bK-tcp{time.monotonic_ns()}\r\n"
                f"From: <sip:probe@{LOOPBACK}>;tag=t\r\nTo: <sip:{LOOPBACK}>\r\n"
                f"Call-ID: tcp-{time.monotonic_ns()}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                "Content-Length: 0\r\n\r\n"
            ).encode())
            data = b""
            while not data.endswith(b"\r\n\r\n"):
                chunk = sock.recv(65535)
                if not chunk:
                    break
                data += chunk
            return data or None
    except OSError:
        return None


def test_every_register_is_answered_during_a_large_import(db_path, tmp_path):
    rows = 50_000
    data = write_csv(tmp_path / "big.csv", rows)
    with Sipd(db_path, PBX_SIP_WORKERS="1") as sipd:
        phones = [RegisteringPhone(sipd.port, "1001", "127.0.0.1").start(),
                  RegisteringPhone(sipd.port, "1002", "127.0.0.2").start()]
        try:
            assert wait_for(lambda: all(p.exchanges for p in phones)), "no phone registered"
            started = time.monotonic()
            result = subprocess.run(
                [str(ROOT / "pbxctl"), "ext", "import", str(data)],
                env=dict(sipd.env, PBX_PYTHON=sys.executable), cwd=ROOT,
                capture_output=True, text=True, timeout=300,
            )
            ended = time.monotonic()
        finally:
            for phone in phones:
                phone.stop()
        log = sipd.log()
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"Imported {rows} extensions\n"
    for phone in phones:
        during = [status for begun, status in phone.exchanges if started <= begun <= ended]
        assert len(during) >= 3, f"{phone.user}: too few registrations during the import"
        answers = {status: during.count(status) for status in set(during)}
        assert answers == {200: len(during)}, (
            f"{phone.user} from {phone.local[0]}: final answers {answers} (None: no answer "
            f"within {GIVE_UP:g} s)\n" + "\n".join(
                line for line in log.splitlines() if "Could not" in line or "locked" in line))
    assert "database is locked" not in log and "Could not store" not in log
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM extension").fetchone()[0] == rows + 2


def test_a_locked_database_holds_up_only_the_register(db_path):
    """While another connection holds the write lock, an authenticated REGISTER waits
    for it; sipd goes on answering everything else (its loop is not blocked), and
    the REGISTER is answered as soon as the lock is free."""
    with Sipd(db_path, PBX_SIP_WORKERS="0") as sipd, WriteLock(db_path) as lock:
        phone = RegisteringPhone(sipd.port, "1002", "127.0.0.2")
        authorization = phone.challenged()  # a 401 needs no database
        registered = phone._request(300, True, authorization)
        cseq = f"{phone.cseq} REGISTER"
        phone.sock.sendto(registered, phone.server)
        assert wait_for(lambda: sipd.log().count("Received REGISTER from 127.0.0.2") >= 2)

        # The REGISTER is waiting for the lock; the rest is answered meanwhile.
        udp = options_ping(sipd.port, timeout=2.0)
        tcp = tcp_options(sipd.port, timeout=2.0)
        assert udp, "no UDP OPTIONS answer while a REGISTER waited for the lock"
        assert tcp and tcp.startswith(b"SIP/2.0 200"), tcp
        phone.sock.settimeout(0.2)
        with pytest.raises(TimeoutError):
            phone.sock.recv(65535)  # nothing answered that is not stored yet
        assert bindings(db_path) == []

        lock.release()
        phone.sock.settimeout(5)
        response = parse_response(phone.sock.recv(65535))
        assert (response.status, response.first("CSeq")) == (200, cseq)
    assert bindings(db_path) == [("1002", "127.0.0.2")]


def test_a_database_locked_too_long_gets_503_with_retry_after(db_path):
    """Past PBX_DB_LOCK_WAIT, a REGISTER that cannot be stored is told to come back
    (RFC 3261 §21.5.4), over UDP and over TCP; once the lock is gone it registers."""
    with Sipd(db_path, PBX_SIP_WORKERS="0", PBX_DB_LOCK_WAIT="1") as sipd:
        phone = RegisteringPhone(sipd.port, "1002", "127.0.0.2")
        with WriteLock(db_path):
            authorization = phone.challenged()
            response = phone.send(phone._request(300, True, authorization), give_up=4.0,
                                  retransmit=False)
            assert response is not None, "no answer while the database was locked"
            assert response.status == 503 and response.first("Retry-After") == "5"

            answer = tcp_register(sipd.port, "1001")
            assert answer.startswith(b"SIP/2.0 503 "), answer
            assert b"\r\nRetry-After: 5\r\n" in answer
        assert bindings(db_path) == []
        assert phone.register_once() == 200
        log = sipd.log()
    assert bindings(db_path) == [("1002", "127.0.0.2")]
    assert ("Could not store 1 request(s): database locked by another process for 1 s; "
            "answering 503") in log
    assert "Could not store a request from 127.0.0.1:" in log  # the TCP one


def tcp_register(port: int, number: str) -> bytes:
    """REGISTER, 401, REGISTER with credentials over one TCP connection: the last answer."""
    phone = Phone(LOOPBACK, number, PASSWORD, LOOPBACK, port=port, domain=REALM)
    try:
        with socket.create_connection((LOOPBACK, port), timeout=6) as sock:
            def exchange(message: bytes) -> bytes:
                sock.sendall(message.replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP"))
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = sock.recv(65535)
                    if not chunk:
                        break
                    data += chunk
                return data

            first = parse_response(exchange(phone._request(300, True, None)))
            assert first.status == 401
            challenge = parse_challenge(first.first("WWW-Authenticate"))
            return exchange(phone._request(300, True, phone.authorization(
                challenge, f"sip:{REALM}")))
    finally:
        phone.close()
