"""A tiny SIP phone for the deployment test: REGISTER over UDP with digest auth.

Written independently of sipd (it must not share sipd's bugs): just enough of
RFC 3261 §10.2 and RFC 7616 (qop=auth, MD5 or SHA-256) to register, refresh,
and query bindings. It sends only to the address it is given, which the test
creates itself (the container's end of a veth pair).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import socket
from dataclasses import dataclass, field

ALGORITHMS = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


@dataclass
class Response:
    status: int
    reason: str
    headers: list[tuple[str, str]] = field(default_factory=list)

    def all(self, name: str) -> list[str]:
        compact = {"contact": "m", "call-id": "i", "via": "v"}.get(name.lower(), "")
        return [v for k, v in self.headers if k.lower() in (name.lower(), compact)]

    def first(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None


def parse_response(data: bytes) -> Response:
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    lines = head.split("\r\n")
    match = re.match(r"SIP/2\.0 (\d{3}) ?(.*)", lines[0])
    if not match:
        raise ValueError(f"not a SIP response: {lines[0]!r}")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:  # folded line
            name, value = headers[-1]
            headers[-1] = (name, value + " " + line.strip())
        elif ":" in line:
            name, value = line.split(":", 1)
            headers.append((name.strip(), value.strip()))
    return Response(int(match.group(1)), match.group(2), headers)


def parse_challenge(value: str) -> dict[str, str]:
    scheme, _, rest = value.partition(" ")
    if scheme.lower() != "digest":
        return {}
    params = {}
    for match in re.finditer(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))', rest):
        params[match.group(1).lower()] = (
            match.group(2) if match.group(2) is not None else match.group(3)
        )
    return params


class Phone:
    def __init__(
        self,
        server: str,
        user: str,
        password: str,
        local: str,
        port: int = 5060,
        domain: str | None = None,
        timeout: float = 2.0,
    ):
        self.server = (server, port)
        self.user = user
        self.password = password
        self.domain = domain or server
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((local, 0))
        self.sock.settimeout(timeout)
        self.local = self.sock.getsockname()
        self.call_id = secrets.token_hex(12) + "@pbx-deploy-test"
        self.tag = secrets.token_hex(6)
        self.cseq = 0
        self.contact = f"<sip:{user}@{self.local[0]}:{self.local[1]};transport=udp>"

    def close(self) -> None:
        self.sock.close()

    def _request(self, expires: int | None, with_contact: bool, authorization: str | None):
        self.cseq += 1
        lines = [
            f"REGISTER sip:{self.domain} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.local[0]}:{self.local[1]};rport;"
            f"branch=z9hG4bK{secrets.token_hex(8)}",
            "Max-Forwards: 70",
            f"From: <sip:{self.user}@{self.domain}>;tag={self.tag}",
            f"To: <sip:{self.user}@{self.domain}>",
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.cseq} REGISTER",
            "User-Agent: pbx-deploy-test/1",
        ]
        if with_contact:
            lines.append(f"Contact: {self.contact}")
        if expires is not None:
            lines.append(f"Expires: {expires}")
        if authorization:
            lines.append(f"Authorization: {authorization}")
        lines += ["Content-Length: 0", "", ""]
        return "\r\n".join(lines).encode()

    def _exchange(self, message: bytes, attempts: int = 3) -> Response:
        """Send, retransmitting like timer E would, until a final response arrives."""
        for _ in range(attempts):
            self.sock.sendto(message, self.server)
            try:
                while True:
                    data, _ = self.sock.recvfrom(65535)
                    response = parse_response(data)
                    if response.status >= 200:
                        return response
            except TimeoutError:
                continue
        raise TimeoutError(f"no final response from {self.server[0]}:{self.server[1]}")

    def authorization(self, challenge: dict[str, str], uri: str) -> str:
        algorithm = challenge.get("algorithm", "MD5").upper()
        digest = ALGORITHMS[algorithm]

        def h(text: str) -> str:
            return digest(text.encode()).hexdigest()

        realm, nonce = challenge["realm"], challenge["nonce"]
        cnonce, nc = secrets.token_hex(8), "00000001"
        ha1 = h(f"{self.user}:{realm}:{self.password}")
        ha2 = h(f"REGISTER:{uri}")
        response = h(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
        parts = [
            f'username="{self.user}"',
            f'realm="{realm}"',
            f'nonce="{nonce}"',
            f'uri="{uri}"',
            f'response="{response}"',
            f"algorithm={algorithm}",
            f'cnonce="{cnonce}"',
            "qop=auth",
            f"nc={nc}",
        ]
        if "opaque" in challenge:
            parts.append(f'opaque="{challenge["opaque"]}"')
        return "Digest " + ", ".join(parts)

    def register(
        self, expires: int | None = 3600, with_contact: bool = True, algorithm: str = "MD5"
    ) -> tuple[Response, Response]:
        """REGISTER, expect a challenge, answer it; returns (challenge, final)."""
        first = self._exchange(self._request(expires, with_contact, None))
        if first.status != 401:
            return first, first
        challenges = [parse_challenge(v) for v in first.all("WWW-Authenticate")]
        chosen = next(
            (c for c in challenges if c.get("algorithm", "MD5").upper() == algorithm),
            challenges[0] if challenges else None,
        )
        if not chosen:
            raise AssertionError(f"401 without a digest challenge: {first.headers}")
        authorization = self.authorization(chosen, f"sip:{self.domain}")
        final = self._exchange(self._request(expires, with_contact, authorization))
        return first, final
