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
call's signalling to whoever answers. A check that fails says why in words
(`TlsRefused`), which become the trunk's status in the panel and pbxctl: the
verifier's reason and the name ("TLS: certificate verify failed: unable to get
local issuer certificate (host sip.example)"), or, for a certificate of another
name, the names it is for ("TLS: certificate is for other.example, not
sip.example"), read from a second handshake that sends nothing.
"""

from __future__ import annotations

import ipaddress
import logging
import os

from gevent import socket, ssl

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


# OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH and X509_V_ERR_IP_ADDRESS_MISMATCH.
NAME_MISMATCH = (62, 64)


class TlsRefused(OSError):
    """A TLS connection to a provider that could not be had, and why, in words."""


class _Client:
    """The client's side of TLS, on a connection sipd opened to a provider."""

    client: ssl.SSLContext

    def secure(self, sock, name: str):
        sock.settimeout(self.read_timeout)  # the handshake's deadline
        peer = sock.getpeername()[:2]  # (wrap_socket takes the socket over)
        try:
            return self.client.wrap_socket(sock, server_hostname=name)
        except ssl.SSLCertVerificationError as error:
            if error.verify_code in NAME_MISMATCH:
                names = self.presented(peer, name)
                if names:
                    raise TlsRefused(
                        f"TLS: certificate is for {', '.join(names)}, not {name}") from None
            why = error.verify_message or error.reason or str(error)
            raise TlsRefused(f"TLS: certificate verify failed: {why} (host {name})") from None
        except TimeoutError:
            raise TlsRefused(
                f"TLS: no handshake within {self.read_timeout:g} s (host {name})") from None
        except ssl.SSLError as error:
            raise TlsRefused(
                f"TLS: handshake failed: {error.reason or error} (host {name})") from None

    def presented(self, peer: tuple[str, int], name: str) -> list[str]:
        """The names of the certificate `peer` presents, from a second handshake
        that checks nothing and sends nothing (only to say what the certificate is
        for; the connection that failed the check stays refused)."""
        try:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            with socket.create_connection(peer, timeout=self.read_timeout) as raw, \
                    context.wrap_socket(raw, server_hostname=name) as tls:
                der = tls.getpeercert(binary_form=True)
        except (OSError, ValueError):
            return []
        return certificate_names(der) if der else []


# -- the names a certificate is for (RFC 5280 §4.1, §4.2.1.6), from its DER ------------------
# Only to word a refusal: the verification itself is OpenSSL's. The ssl module
# decodes a certificate only once it is verified, hence this small reader.

SUBJECT_ALT_NAME = b"\x55\x1d\x11"  # 2.5.29.17
COMMON_NAME = b"\x55\x04\x03"  # 2.5.4.3


def _tlv(data: bytes, at: int) -> tuple[int, bytes, int]:
    """One DER element at `at`: its tag, its contents, where the next begins."""
    tag, length = data[at], data[at + 1]
    at += 2
    if length & 0x80:
        size = length & 0x7F
        length = int.from_bytes(data[at:at + size], "big")
        at += size
    if at + length > len(data):
        raise ValueError("DER element runs past its container")
    return tag, data[at:at + length], at + length


def _elements(data: bytes):
    at = 0
    while at < len(data):
        tag, value, at = _tlv(data, at)
        yield tag, value


def certificate_names(der: bytes) -> list[str]:
    """The DNS names and IP addresses of a certificate's subjectAltName, else its
    subject's common names; [] for what cannot be read."""
    try:
        _, certificate, _ = _tlv(der, 0)
        _, tbs = next(_elements(certificate))
        fields = list(_elements(tbs))
        if fields and fields[0][0] == 0xA0:  # [0] version
            fields = fields[1:]
        # serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo, ...
        subject = fields[4][1]
        names = []
        for tag, value in fields[6:]:
            if tag != 0xA3:  # [3] extensions
                continue
            for _, extension in _elements(next(_elements(value))[1]):
                parts = list(_elements(extension))
                if parts[0][1] != SUBJECT_ALT_NAME:
                    continue
                for kind, name in _elements(next(_elements(parts[-1][1]))[1]):
                    if kind == 0x82:  # dNSName
                        names.append(name.decode("ascii", "replace"))
                    elif kind == 0x87 and len(name) in (4, 16):  # iPAddress
                        names.append(str(ipaddress.ip_address(name)))
        if names:
            return names
        return [
            value.decode("utf-8", "replace")
            for _, rdn in _elements(subject)
            for _, attribute in _elements(rdn)
            for (_, oid), (_, value) in [tuple(_elements(attribute))[:2]]
            if oid == COMMON_NAME
        ]
    except (IndexError, ValueError, StopIteration):
        return []


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
