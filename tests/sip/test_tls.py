"""SIP over TLS on a real sipd: REGISTER with digest over TLS 1.2+, binding recorded as TLS.

The certificate is made in the test with the openssl CLI. The client is
Python's ssl module: Debian's sipp 3.6.1 is built without TLS ("To use a TLS
transport you must compile SIPp with OpenSSL").
"""

import re
import socket
import sqlite3
import ssl
import subprocess
import sys
import time

import pytest

from core.config import load_settings
from core.credentials import ha1
from sipd.sip.digest import expected_response
from tests.support import (
    LOOPBACK,
    ROOT,
    Sipd,
    base_env,
    database_with,
    free_port,
    self_signed,
)

PASSWORD = "correct-horse-9"
REALM = "pbx.test"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tls")
    cert, key = self_signed(directory, f"/CN={REALM}", f"subjectAltName=DNS:{REALM},IP:127.0.0.1")
    return cert, key


@pytest.fixture
def db_path(tmp_path):
    return database_with(tmp_path / "pbx.db", ["1002"], PASSWORD, REALM)


@pytest.fixture
def sipd(db_path, certificate):
    cert, key = certificate
    tls_port = free_port(socket.SOCK_STREAM)
    daemon = Sipd(
        db_path,
        PBX_SIP_TLS_LISTEN=f"{LOOPBACK}:{tls_port}",
        PBX_TLS_CERT=str(cert),
        PBX_TLS_KEY=str(key),
        PBX_TCP_READ_TIMEOUT="2",
    )
    daemon.tls_port = tls_port
    with daemon:
        yield daemon


def client_context(cert, **versions):
    context = ssl.create_default_context(cafile=str(cert))
    for name, value in versions.items():
        setattr(context, name, value)
    return context


class TlsPhone:
    """A phone registering over TLS: just enough SIP to answer a challenge."""

    def __init__(self, port, context, number="1002", password=PASSWORD):
        raw = socket.create_connection((LOOPBACK, port), timeout=5)
        self.sock = context.wrap_socket(raw, server_hostname=REALM)
        self.local = self.sock.getsockname()
        self.number, self.password, self.cseq = number, password, 0
        self.buffer = b""

    def send(self, authorization=None):
        self.cseq += 1
        host, port = self.local
        lines = [
            f"REGISTER sip:{REALM} SIP/2.0",
            f"Via: SIP/2.0/TLS {host}:{port};branch=z9hG4bK-tls{self.cseq}-{time.monotonic_ns()};rport",
            f"From: <sip:{self.number}@{REALM}>;tag=tls",
            f"To: <sip:{self.number}@{REALM}>",
            "Call-ID: tls-call@127.0.0.1",
            f"CSeq: {self.cseq} REGISTER",
            f"Contact: <sip:{self.number}@{host}:{port};transport=tls>",
            "Expires: 300",
            "Max-Forwards: 70",
            "User-Agent: TlsPhone/1.0",
        ]
        if authorization:
            lines.append(f"Authorization: {authorization}")
        self.sock.sendall(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())
        return self.receive()

    def receive(self) -> str:
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(65535)
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        return head.decode()

    def register(self):
        challenge = self.send()
        assert challenge.startswith("SIP/2.0 401"), challenge
        nonce = re.search(r'nonce="([^"]+)"', challenge).group(1)
        key = ha1(self.number, REALM, self.password, "MD5")
        uri = f"sip:{REALM}"
        response = expected_response("MD5", key, nonce, "REGISTER", uri, "auth", "00000001", "c")
        return self.send(
            f'Digest username="{self.number}", realm="{REALM}", nonce="{nonce}", uri="{uri}", '
            f'response="{response}", algorithm=MD5, cnonce="c", nc=00000001, qop=auth'
        )

    def close(self):
        self.sock.close()


def test_register_over_tls_records_a_tls_binding(sipd, db_path, certificate):
    phone = TlsPhone(sipd.tls_port, client_context(certificate[0]))
    try:
        assert phone.sock.version() in ("TLSv1.2", "TLSv1.3")
        ok = phone.register()
        assert ok.startswith("SIP/2.0 200 OK"), ok
    finally:
        phone.close()
    with sqlite3.connect(db_path) as conn:
        [(transport, host)] = conn.execute("SELECT transport, source_host FROM binding").fetchall()
    assert (transport, host) == ("TLS", "127.0.0.1")
    assert "Extension 1002 registered from 127.0.0.1" in sipd.log()


def test_tls_1_2_is_accepted(sipd, certificate):
    context = client_context(certificate[0], maximum_version=ssl.TLSVersion.TLSv1_2)
    phone = TlsPhone(sipd.tls_port, context)
    try:
        assert phone.sock.version() == "TLSv1.2"
        assert phone.register().startswith("SIP/2.0 200 OK")
    finally:
        phone.close()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_tls_1_1_is_refused_by_the_server(sipd, certificate):
    context = client_context(
        certificate[0],
        minimum_version=ssl.TLSVersion.TLSv1,
        maximum_version=ssl.TLSVersion.TLSv1_1,
    )
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client offer TLS 1.1 at all
    with pytest.raises(ssl.SSLError) as refused:
        TlsPhone(sipd.tls_port, context)
    # The server's alert, not a local refusal to offer 1.1.
    assert "ALERT_PROTOCOL_VERSION" in str(refused.value) or "PROTOCOL_VERSION" in (
        refused.value.reason or ""
    ), refused.value
    deadline = time.monotonic() + 5  # sipd logs it after the client saw the alert
    while "TLS handshake failed" not in sipd.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "TLS handshake failed" in sipd.log()


def test_plain_text_and_silent_connections_on_the_tls_port_are_closed(sipd, certificate):
    with socket.create_connection((LOOPBACK, sipd.tls_port), timeout=5) as plain:
        plain.sendall(b"OPTIONS sip:pbx.test SIP/2.0\r\n\r\n")
        received = b""
        try:
            while chunk := plain.recv(100):  # perhaps a TLS alert, then the close
                received += chunk
        except ConnectionResetError:
            pass  # closed with data unread: a reset
        assert b"SIP/2.0" not in received
    silent = socket.create_connection((LOOPBACK, sipd.tls_port), timeout=5)
    try:
        started = time.monotonic()
        assert silent.recv(100) == b""  # no handshake within PBX_TCP_READ_TIMEOUT=2
        assert time.monotonic() - started < 4.5
    finally:
        silent.close()
    phone = TlsPhone(sipd.tls_port, client_context(certificate[0]))
    try:
        assert phone.register().startswith("SIP/2.0 200 OK")
    finally:
        phone.close()


def test_a_missing_certificate_is_one_line_and_exit(db_path, tmp_path):
    env = base_env(
        str(db_path),
        PBX_SIP_LISTEN=f"{LOOPBACK}:{free_port()}",
        PBX_SIP_TLS_LISTEN=f"{LOOPBACK}:{free_port(socket.SOCK_STREAM)}",
        PBX_TLS_CERT=str(tmp_path / "none.pem"),
        PBX_TLS_KEY=str(tmp_path / "none.key"),
        PBX_RUN_DIR=str(tmp_path),
    )
    result = subprocess.run(
        [sys.executable, "-m", "sipd"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    expected = f"sipd: PBX_TLS_CERT: {tmp_path / 'none.pem'} does not exist"
    assert expected in result.stderr, result.stderr


def test_tls_listen_needs_a_certificate():
    from core.config import ConfigError

    with pytest.raises(ConfigError, match="PBX_SIP_TLS_LISTEN needs PBX_TLS_CERT and PBX_TLS_KEY"):
        load_settings({"PBX_SIP_TLS_LISTEN": ":5061", "PBX_DB": ":memory:"})
    settings = load_settings(
        {"PBX_SIP_TLS_LISTEN": ":5061", "PBX_TLS_CERT": "c", "PBX_TLS_KEY": "k", "PBX_DB": "x"}
    )
    assert (settings.sip_tls_host, settings.sip_tls_port) == ("0.0.0.0", 5061)
