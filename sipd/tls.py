"""SIP over TLS on PBX_SIP_TLS_LISTEN (RFC 3261 §26.2.1, RFC 5630 §3): TLS 1.2 or later.

Inside the TLS session the stream is framed exactly like TCP (the same
transport class, `wrap` differs), and Source.transport is "TLS", so a binding
records how the phone is reached. Phones do not present client certificates;
they authenticate with digest like everyone else. The certificate is the
same one nginx serves on a deployed server (PBX_TLS_CERT, PBX_TLS_KEY).

TLS to a provider (a trunk with transport tls): sipd opens the connection
itself (sipd/transport.py StreamConnections.connect), also when it does not
listen on TLS, and verifies the provider's certificate (RFC 5922 §7.3, RFC 3261
§26.3.1): a chain to a CA the system trusts, or to those in PBX_TRUNK_TLS_CA (a
provider's own CA, or its self-signed certificate), for the name the trunk
connects to (its host, or its outbound proxy) in the certificate's
subjectAltName (DNS name or IP address). There is no setting to skip the check:
an unverified TLS connection would send the trunk's digest exchange and the
call's signalling to whoever answers.
"""

from __future__ import annotations

import logging
import os

from gevent import ssl

from core.config import ConfigError
from sipd.transport import StreamConnections, TcpTransport, bind_tcp

log = logging.getLogger("sipd")


def server_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # No TLS compression (CRIME); the server's cipher order; no session tickets
    # keyed by a process-lifetime key that could be stolen from memory.
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.options |= ssl.OP_NO_TICKET
    for name, path in (("PBX_TLS_CERT", cert), ("PBX_TLS_KEY", key)):
        if not os.path.isfile(path):
            raise ConfigError(f"{name}: {path} does not exist")
        if not os.access(path, os.R_OK):
            raise ConfigError(f"{name}: {path} is not readable by this user")
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as error:
        raise ConfigError(
            f"PBX_TLS_CERT/PBX_TLS_KEY: not a usable certificate and key: {error}"
        ) from None
    return context


def client_context(cafile: str = "") -> ssl.SSLContext:
    """Verifies providers' certificates: the system's CAs, and those of `cafile`."""
    context = ssl.create_default_context()  # CERT_REQUIRED, check_hostname
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION
    if cafile:
        if not os.path.isfile(cafile) or not os.access(cafile, os.R_OK):
            raise ConfigError(f"PBX_TRUNK_TLS_CA: {cafile} is not a readable file")
        try:
            context.load_verify_locations(cafile=cafile)
        except (ssl.SSLError, OSError) as error:
            raise ConfigError(
                f"PBX_TRUNK_TLS_CA: {cafile} holds no usable PEM certificate: {error}"
            ) from None
    return context


class _Client:
    """The client's side of TLS, on a connection sipd opened to a provider."""

    client: ssl.SSLContext

    def secure(self, sock, name: str):
        sock.settimeout(self.read_timeout)  # the handshake's deadline
        return self.client.wrap_socket(sock, server_hostname=name)


class TlsTransport(_Client, TcpTransport):
    transport = "TLS"

    def __init__(
        self, listener, handler, context: ssl.SSLContext, client: ssl.SSLContext, **options
    ):
        super().__init__(listener, handler, **options)
        self.context = context
        self.client = client

    def wrap(self, sock, source):
        # The handshake is held to the same deadline as a message (slowloris).
        sock.settimeout(self.read_timeout)
        try:
            return self.context.wrap_socket(sock, server_side=True)
        except (ssl.SSLError, OSError) as error:
            cause = f"TLS handshake failed ({getattr(error, 'reason', None) or error})"
            if self.guard is not None:
                self.guard.dropped(source, cause, "connection")
            else:
                log.info("[SIP] Closing connection from %s: %s", source, cause)
            sock.close()
            return None


class TlsConnector(_Client, StreamConnections):
    """TLS to providers without a TLS listener of our own."""

    transport = "TLS"

    def __init__(self, handler, client: ssl.SSLContext, **options):
        super().__init__(handler, **options)
        self.client = client


def listener(settings, handler, guard=None) -> TlsTransport:
    """The TLS transport on PBX_SIP_TLS_LISTEN (not yet started)."""
    context = server_context(settings.tls_cert, settings.tls_key)
    client = client_context(settings.trunk_tls_ca)
    sock = bind_tcp(settings.sip_tls_host, settings.sip_tls_port)
    return TlsTransport(
        sock, handler, context, client, guard=guard, read_timeout=settings.tcp_read_timeout
    )


def connector(settings, handler, guard=None) -> TlsConnector:
    """TLS to providers when sipd does not listen on TLS itself."""
    return TlsConnector(
        handler,
        client_context(settings.trunk_tls_ca),
        guard=guard,
        read_timeout=settings.tcp_read_timeout,
    )
