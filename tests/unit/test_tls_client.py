"""sipd/tls.py client_context: providers' certificates are verified, PBX_TRUNK_TLS_CA adds CAs,
and a file that is not one is refused with a message naming the setting. A certificate that
fails verification (against a real TLS server on loopback) gives the reason the trunk's status
shows, logged once while it stays the same, gone once a connection opens; a certificate for
other names says which (certificate_names reads them from its DER)."""

import logging
import ssl

import pytest

from core.config import ConfigError
from sipd import tls
from tests.support import self_signed


def test_the_client_verifies_the_chain_and_the_name():
    context = tls.client_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "is not a readable file"),
        ("not a certificate\n", "holds no usable PEM certificate"),
    ],
)
def test_a_ca_file_that_is_not_one_is_refused(tmp_path, content, message):
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=f"PBX_TRUNK_TLS_CA: {path} {message}"):
        tls.client_context(str(path))


# --- a provider's certificate that fails verification: why, in words ----------------------

@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    """Self-signed certificates (openssl CLI): one with subjectAltName, one without."""
    where = tmp_path_factory.mktemp("certs")
    named = self_signed(where, "/CN=carrier.test", "subjectAltName=DNS:carrier.test,"
                        "DNS:sip.carrier.test,IP:127.0.0.1,IP:::1", name="named")
    plain = self_signed(where, "/O=Carrier/CN=old.carrier.test", name="plain")
    return {"named": named, "plain": plain}


def der(path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(path.read_text())


def test_the_names_a_certificate_is_for_are_its_subject_alt_names_else_its_common_name(
        certificates):
    assert tls.certificate_names(der(certificates["named"][0])) == [
        "carrier.test", "sip.carrier.test", "127.0.0.1", "::1"]
    assert tls.certificate_names(der(certificates["plain"][0])) == ["old.carrier.test"]
    whole = der(certificates["named"][0])
    # What cannot be read names nothing (and raises nothing), cut anywhere.
    for cut in range(0, len(whole), 7):
        assert isinstance(tls.certificate_names(whole[:cut]), list)
    assert tls.certificate_names(b"\x30\x82\xff\xff") == []


@pytest.fixture
def provider(certificates):
    """A TLS server on loopback with the `named` certificate: its port. It runs in a
    thread of its own with the standard library's blocking sockets, so that the
    gevent client under test waits on it as on a provider elsewhere."""
    import socket
    import threading

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*map(str, certificates["named"]))
    listener = socket.create_server(("127.0.0.1", 0))

    def handshake(conn):
        try:
            with context.wrap_socket(conn, server_side=True) as tls_conn:
                tls_conn.recv(1)  # until the client goes
        except OSError:
            pass  # a client that refused our certificate
        finally:
            conn.close()

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # closed: the test is over
            threading.Thread(target=handshake, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()


def connector(cafile: str = "") -> tls.TlsConnector:
    return tls.TlsConnector(None, tls.client_context(cafile), read_timeout=5)


def test_an_unknown_ca_is_the_reason_and_is_logged_once(provider, caplog):
    connect = connector()
    port = provider
    for _ in range(3):
        assert connect.connect("127.0.0.1", port) is None
    why = ("TLS: certificate verify failed: self-signed certificate (host 127.0.0.1)")
    assert connect.failures == {("127.0.0.1", port): why}
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [f"[SIP] Could not open TLS to 127.0.0.1:{port} (127.0.0.1): {why}"]


def test_a_certificate_for_other_names_says_which(provider, certificates):
    connect = connector(str(certificates["named"][0]))
    port = provider
    assert connect.connect("127.0.0.1", port, "sip.example") is None
    assert connect.failures[("127.0.0.1", port)] == (
        "TLS: certificate is for carrier.test, sip.carrier.test, 127.0.0.1, ::1, not sip.example")


def test_once_it_opens_the_reason_is_gone(provider, certificates, caplog):
    caplog.set_level(logging.INFO, "sipd")
    connect = connector()
    port = provider
    assert connect.connect("127.0.0.1", port, "carrier.test") is None
    connect.client = tls.client_context(str(certificates["named"][0]))  # the CA is trusted now
    sock = connect.connect("127.0.0.1", port, "carrier.test")
    try:
        assert sock is not None and connect.failures == {}
        assert f"[SIP] Opened TLS to 127.0.0.1:{port} (carrier.test) again" in caplog.text
    finally:
        sock.close()


def test_the_sender_tells_the_trunks_why_it_sent_nothing(provider):
    from sipd.transport import sender
    from sipd.trunks.path import ProviderDestination

    connect = connector()
    send = sender(None, {"TLS": connect})
    destination = ProviderDestination("127.0.0.1", provider, "TLS", "carrier.test")
    assert send(b"OPTIONS", destination) is False
    assert send.failure(destination) == (
        "TLS: certificate verify failed: self-signed certificate (host carrier.test)")
