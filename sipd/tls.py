"""SIP over TLS on PBX_SIP_TLS_LISTEN (RFC 3261 §26.2.1, RFC 5630 §3): TLS 1.2 or later.

Inside the TLS session the stream is framed exactly like TCP (the same
transport class, `wrap` differs), and Source.transport is "TLS", so a binding
records how the phone is reached. Phones do not present client certificates;
they authenticate with digest like everyone else. The certificate is the
same one nginx serves on a deployed server (PBX_TLS_CERT, PBX_TLS_KEY).
"""

from __future__ import annotations

import logging
import os

from gevent import ssl

from core.config import ConfigError
from sipd.transport import TcpTransport, bind_tcp

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


class TlsTransport(TcpTransport):
    transport = "TLS"

    def __init__(self, listener, handler, context: ssl.SSLContext, **options):
        super().__init__(listener, handler, **options)
        self.context = context

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


def listener(settings, handler, guard=None) -> TlsTransport:
    """The TLS transport on PBX_SIP_TLS_LISTEN (not yet started)."""
    context = server_context(settings.tls_cert, settings.tls_key)
    sock = bind_tcp(settings.sip_tls_host, settings.sip_tls_port)
    return TlsTransport(sock, handler, context, guard=guard, read_timeout=settings.tcp_read_timeout)
