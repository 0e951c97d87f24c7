"""Framing SIP messages on a byte stream (RFC 3261 §18.3, RFC 5626 §3.5.1).

Over TCP and TLS a message ends where its Content-Length says. Between
messages a client may send CRLF keep-alives: a double CRLF ("ping") is
answered with a single CRLF ("pong"); a lone CRLF is ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sipd.sip.message import MAX_MESSAGE, ParseError

_CONTENT_LENGTH = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*(\S*)", re.I | re.M)


@dataclass
class Ping:
    """A CRLFCRLF keep-alive; the transport answers with `PONG`."""


PONG = b"\r\n"


class StreamFramer:
    """Feed bytes, get whole messages (bytes) and Pings out."""

    def __init__(self, max_message: int = MAX_MESSAGE):
        self._buffer = bytearray()
        self.max_message = max_message
        # How far the buffer is known to hold no CRLFCRLF, so that a peer
        # dribbling a header byte by byte costs linear time, not quadratic.
        self._scanned = 0

    def feed(self, data: bytes) -> list[bytes | Ping]:
        self._buffer += data
        out: list[bytes | Ping] = []
        while True:
            item = self._next()
            if item is None:
                break
            out.append(item)
        return out

    @property
    def pending(self) -> int:
        return len(self._buffer)

    @property
    def between_messages(self) -> bool:
        """True if what is buffered is no message begun: nothing, or CRLFs that
        may still become a ping (a lone CRLF keep-alive waits here for what follows)."""
        buffer = self._buffer
        return len(buffer) < 4 and b"\r\n\r\n".startswith(bytes(buffer))

    def _next(self) -> bytes | Ping | None:
        buffer = self._buffer
        # Keep-alives between messages (RFC 5626 §3.5.1).
        while buffer.startswith(b"\r\n"):
            if buffer.startswith(b"\r\n\r\n"):
                del buffer[:4]
                self._scanned = 0
                return Ping()
            if len(buffer) < 4 and b"\r\n\r\n".startswith(bytes(buffer)):
                return None  # could still become a ping
            del buffer[:2]
            self._scanned = 0
        end = buffer.find(b"\r\n\r\n", max(0, self._scanned - 3))
        if end < 0:
            if len(buffer) > self.max_message:
                raise ParseError("headers too large", status=513)
            self._scanned = len(buffer)
            return None
        head_end = end + 4
        match = _CONTENT_LENGTH.search(bytes(buffer[:end]))
        # §18.3: Content-Length is mandatory over streams; we read its absence
        # as an empty body rather than waiting for bytes that never come.
        length = 0
        if match:
            raw = match.group(1)
            if not raw.isdigit() or len(raw) > 9:
                raise ParseError("Content-Length is not a number")
            length = int(raw)
        if head_end + length > self.max_message:
            raise ParseError("message too large", status=513)
        if len(buffer) < head_end + length:
            return None
        message = bytes(buffer[: head_end + length])
        del buffer[: head_end + length]
        self._scanned = 0
        return message
