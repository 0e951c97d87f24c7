"""Keep-alives against a real sipd (RFC 5626 §3.5): answered or ignored, never "malformed".

Linphone sends CRLFCRLF every 30 s, pjsip-based phones (MicroSIP) a CRLF, both
on UDP as on TCP/TLS; an RFC 5626 phone on UDP sends a STUN Binding request.
Each form is sent as the phone sends it, then requests on the same socket:
the daemon reads a socket in order, so once they are answered the keep-alive
before them has been dealt with, and its log can be read. Over UDP they are an
OPTIONS and a MESSAGE, as sipd answers OPTIONS at once and hands other
datagrams to a queue (sipd/transport.py): both ways are then behind us.
"""

import ipaddress
import os
import socket
import ssl
import struct
import subprocess
import time
import zlib

import pytest

from tests.support import LOOPBACK, Sipd, database_with, free_port, require_tool

REALM = "pbx.test"
READ_TIMEOUT = 1  # PBX_TCP_READ_TIMEOUT: a message begun must be complete within it
COOKIE = 0x2112A442


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [require_tool("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", f"/CN={REALM}", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture(scope="module")
def sipd(tmp_path_factory, certificate):
    db_path = database_with(tmp_path_factory.mktemp("db") / "pbx.db", ["1001"], "correct-horse-9")
    cert, key = certificate
    tls_port = free_port(socket.SOCK_STREAM)
    daemon = Sipd(
        db_path,
        # One registration worker, as on a two-core server: its socket shares the port.
        PBX_SIP_WORKERS="1",
        PBX_SIP_TLS_LISTEN=f"{LOOPBACK}:{tls_port}",
        PBX_TLS_CERT=str(cert),
        PBX_TLS_KEY=str(key),
        PBX_TCP_READ_TIMEOUT=str(READ_TIMEOUT),
    )
    daemon.tls_port = tls_port
    with daemon:
        yield daemon


@pytest.fixture
def log_after(sipd):
    """What sipd logs during the test."""
    start = len(sipd.log())
    return lambda: sipd.log()[start:]


def options(transport: str, local: tuple[str, int], method: str = "OPTIONS") -> bytes:
    host, port = local
    tag = time.monotonic_ns()
    return (
        f"{method} sip:{REALM} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {host}:{port};branch=z9hG4bK-ka{tag};rport\r\n"
        f"From: <sip:ka@{REALM}>;tag={tag}\r\nTo: <sip:{REALM}>\r\n"
        f"Call-ID: ka-{tag}\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def udp_requests_answered(sipd, udp) -> None:
    """An OPTIONS and a MESSAGE from `udp` get their answers, and nothing else comes."""
    for method in ("OPTIONS", "MESSAGE"):
        udp.sendto(options("UDP", udp.getsockname(), method), (LOOPBACK, sipd.port))
    replies = sorted(udp.recvfrom(65535)[0].split(b"\r\n")[0] for _ in range(2))
    assert replies == [b"SIP/2.0 200 OK", b"SIP/2.0 405 Method Not Allowed"], replies


def assert_quiet(log: str) -> None:
    assert "malformed" not in log, log
    assert "Dropped" not in log and "Closing" not in log, log


# -- UDP --------------------------------------------------------------------------------


@pytest.fixture
def udp():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((LOOPBACK, 0))
    sock.settimeout(3)
    yield sock
    sock.close()


@pytest.mark.parametrize(
    "keepalive", [b"\r\n\r\n", b"\r\n", b""], ids=["crlfcrlf-linphone", "crlf-pjsip", "empty"]
)
def test_udp_crlf_keepalive_is_ignored_silently(sipd, udp, log_after, keepalive):
    udp.sendto(keepalive, (LOOPBACK, sipd.port))
    udp_requests_answered(sipd, udp)  # and the keep-alive got no answer
    assert_quiet(log_after())


def stun_request(transaction: bytes, fingerprint: bool) -> bytes:
    """A Binding request as RFC 5626 §4.4.2 phones send it: no attributes, or a FINGERPRINT."""
    if not fingerprint:
        return struct.pack("!HHI", 0x0001, 0, COOKIE) + transaction
    head = struct.pack("!HHI", 0x0001, 8, COOKIE) + transaction
    crc = (zlib.crc32(head) ^ 0x5354554E) & 0xFFFFFFFF
    return head + struct.pack("!HHI", 0x8028, 4, crc)


def attributes(message: bytes) -> dict[int, bytes]:
    found, at = {}, 20
    while at < len(message):
        kind, size = struct.unpack_from("!HH", message, at)
        found[kind] = message[at + 4 : at + 4 + size]
        at += 4 + size + (-size % 4)
    return found


@pytest.mark.parametrize("fingerprint", [False, True], ids=["bare", "with-fingerprint"])
def test_udp_stun_binding_request_gets_the_phones_address_back(
    sipd, udp, log_after, fingerprint
):
    transaction = os.urandom(12)
    udp.sendto(stun_request(transaction, fingerprint), (LOOPBACK, sipd.port))
    reply, _ = udp.recvfrom(65535)
    kind, length, cookie = struct.unpack_from("!HHI", reply)
    assert (kind, cookie, reply[8:20]) == (0x0101, COOKIE, transaction)  # Binding success
    assert length == len(reply) - 20
    found = attributes(reply)
    # RFC 5389 §15.2: the source address and port, XORed with the cookie.
    value = found[0x0020]
    family, x_port = struct.unpack_from("!xBH", value)
    mask = struct.pack("!I", COOKIE)
    host = ipaddress.ip_address(bytes(a ^ b for a, b in zip(value[4:], mask, strict=True)))
    assert (family, str(host), x_port ^ (COOKIE >> 16)) == (1, *udp.getsockname())
    # §15.5: the FINGERPRINT, last, checks out.
    assert list(found)[-1] == 0x8028
    assert found[0x8028] == struct.pack("!I", (zlib.crc32(reply[:-8]) ^ 0x5354554E) & 0xFFFFFFFF)
    udp_requests_answered(sipd, udp)
    assert_quiet(log_after())


def test_udp_stun_indication_is_ignored_silently(sipd, udp, log_after):
    # A Binding indication (RFC 5389 §7.3: no response to indications).
    udp.sendto(struct.pack("!HHI", 0x0011, 0, COOKIE) + os.urandom(12), (LOOPBACK, sipd.port))
    udp_requests_answered(sipd, udp)
    assert_quiet(log_after())


# -- TCP and TLS ------------------------------------------------------------------------


@pytest.fixture(params=["TCP", "TLS"])
def stream(request, sipd, certificate):
    raw = socket.create_connection(
        (LOOPBACK, sipd.tls_port if request.param == "TLS" else sipd.port), timeout=5
    )
    sock = raw
    if request.param == "TLS":
        context = ssl.create_default_context(cafile=str(certificate[0]))
        sock = context.wrap_socket(raw, server_hostname=LOOPBACK)
    yield Stream(sock, request.param)
    sock.close()


class Stream:
    def __init__(self, sock, transport):
        self.sock, self.transport = sock, transport

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def options(self) -> None:
        self.send(options(self.transport, self.sock.getsockname()))


def read_reply(stream) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = stream.sock.recv(65535)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    return data


def test_stream_crlfcrlf_ping_gets_a_crlf_pong(sipd, stream, log_after):
    stream.send(b"\r\n\r\n")
    assert stream.sock.recv(65535) == b"\r\n"  # RFC 5626 §3.5.1: the pong
    stream.options()
    assert read_reply(stream).startswith(b"SIP/2.0 200 OK")
    assert_quiet(log_after())


def test_stream_lone_crlf_keeps_the_connection_open(sipd, stream, log_after):
    stream.options()
    assert read_reply(stream).startswith(b"SIP/2.0 200 OK")
    stream.send(b"\r\n")
    # A lone CRLF is no message begun: the connection outlives the read timeout
    # that cuts off slow senders (here 1 s) and is not answered.
    stream.sock.settimeout(READ_TIMEOUT + 2)
    with pytest.raises(TimeoutError):
        stream.sock.recv(65535)
    stream.sock.settimeout(5)
    stream.options()
    assert read_reply(stream).startswith(b"SIP/2.0 200 OK")
    assert_quiet(log_after())
