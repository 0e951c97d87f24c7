"""SIP messages as values: `parse(data)` and `bytes(message)` (RFC 3261 §7).

This module, like all of `sipd.sip`, contains no networking code at all and
never reads the clock: bytes in, values out. Every way a message can be
malformed raises `ParseError`, which carries the status to answer with and,
when enough was understood to answer at all, the partial message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sipd.sip import abnf

# RFC 3261 §7.3.3 compact forms (plus the ones later RFCs registered).
COMPACT = {
    "i": "Call-ID",
    "m": "Contact",
    "e": "Content-Encoding",
    "l": "Content-Length",
    "c": "Content-Type",
    "f": "From",
    "s": "Subject",
    "k": "Supported",
    "t": "To",
    "v": "Via",
    "o": "Event",
    "r": "Refer-To",
    "b": "Referred-By",
    "u": "Allow-Events",
    "x": "Session-Expires",
    "y": "Identity",
    "a": "Accept-Contact",
    "j": "Reject-Contact",
    "d": "Request-Disposition",
}
# Canonical spelling for the names we write and compare (names are case-insensitive,
# RFC 3261 §7.3.1; we keep the peer's spelling for the others).
CANONICAL = {
    name.lower(): name
    for name in (
        "Via",
        "From",
        "To",
        "Call-ID",
        "CSeq",
        "Contact",
        "Max-Forwards",
        "Expires",
        "Min-Expires",
        "Content-Length",
        "Content-Type",
        "User-Agent",
        "Server",
        "Allow",
        "Accept",
        "Supported",
        "Require",
        "Unsupported",
        "Authorization",
        "WWW-Authenticate",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Date",
        "Record-Route",
        "Route",
        "Path",
        "Warning",
        "Retry-After",
        "Authentication-Info",
        "Event",
        "Subject",
        "Allow-Events",
        "Accept-Encoding",
        "Accept-Language",
    )
}
CANONICAL["cseq"] = "CSeq"
CANONICAL["call-id"] = "Call-ID"
CANONICAL["www-authenticate"] = "WWW-Authenticate"

# Headers whose value is a comma-separated list, so that "Via: a, b" and two Via
# lines mean the same (RFC 3261 §7.3.1). Auth headers are not lists: their
# commas separate parameters of one challenge or credential.
LIST_HEADERS = frozenset(
    name.lower()
    for name in (
        "Via",
        "Contact",
        "Route",
        "Record-Route",
        "Path",
        "Allow",
        "Supported",
        "Require",
        "Proxy-Require",
        "Unsupported",
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Allow-Events",
        "Content-Encoding",
    )
)

MAX_MESSAGE = 65535
REASONS = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}


class ParseError(Exception):
    """The one error the parser raises. `status` is what to answer (RFC 3261 §8.2)."""

    def __init__(self, message: str, status: int = 400, partial: Message | None = None):
        super().__init__(message)
        self.status = status
        self.partial = partial


_CANONICAL_CACHE: dict[str, str] = {}


def canonical_name(name: str) -> str:
    cached = _CANONICAL_CACHE.get(name)
    if cached is not None:
        return cached
    lowered = name.lower()
    result = COMPACT[lowered] if lowered in COMPACT else CANONICAL.get(lowered, name)
    if len(_CANONICAL_CACHE) < 4096:  # bounded: names come from peers
        _CANONICAL_CACHE[name] = result
    return result


_KEY_CACHE: dict[str, str] = {}


def _key(name: str) -> str:
    """canonical_name(name).lower(), what Headers compares; cached like canonical_name."""
    key = _KEY_CACHE.get(name)
    if key is None:
        key = canonical_name(name).lower()
        if len(_KEY_CACHE) < 4096:  # bounded: names come from peers
            _KEY_CACHE[name] = key
    return key


def key(name: str) -> str:
    """The name as Headers.index() holds it ("v" and "VIA" are "via")."""
    return _KEY_CACHE.get(name) or _key(name)


def split_list(value: str) -> list[str]:
    """Split a list header at commas outside quotes and angle brackets."""
    if "," not in value and '"' not in value:
        stripped = value.strip()
        return [stripped] if stripped else []
    items, current, quoted, angle, escaped = [], [], False, False, False
    for char in value:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif not quoted and char == "<":
            angle = True
        elif not quoted and char == ">":
            angle = False
        elif char == "," and not quoted and not angle:
            items.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    if quoted:
        raise ParseError("unterminated quoted string")
    items.append("".join(current).strip())
    return [item for item in items if item]


class Headers:
    """Ordered (name, value) pairs; names canonical, list headers one item per pair.

    Beside the pairs, an index from lower-cased name to that header's values in
    order: a message is read many more times than it is changed, and every
    request is read by the transaction layer, the handler and the registrar.
    """

    __slots__ = ("_items", "_index")

    def __init__(self, items: list[tuple[str, str]] | None = None):
        self.items = list(items or [])

    @property
    def items(self) -> list[tuple[str, str]]:
        return self._items

    @items.setter
    def items(self, items: list[tuple[str, str]]) -> None:
        self._items = items
        # Built on the first lookup: most responses are only ever serialized.
        self._index: dict[str, list[str]] | None = None if items else {}

    def _indexed(self) -> dict[str, list[str]]:
        index = self._index
        if index is None:
            index = {}
            for name, value in self._items:
                index.setdefault(_key(name), []).append(value)
            self._index = index
        return index

    def __eq__(self, other) -> bool:
        return isinstance(other, Headers) and self._items == other._items

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"

    def get(self, name: str, default: str | None = None) -> str | None:
        # The cache lookup inlined: this runs some twenty times per message.
        index = self._index
        if index is None:
            index = self._indexed()
        values = index.get(_KEY_CACHE.get(name) or _key(name))
        return values[0] if values else default

    def index(self) -> dict[str, list[str]]:
        """The values by lower-cased canonical name (see `key`); read only."""
        index = self._index
        return index if index is not None else self._indexed()

    def get_all(self, name: str) -> list[str]:
        values = self._indexed().get(_KEY_CACHE.get(name) or _key(name))
        return list(values) if values else []

    def count(self, name: str) -> int:
        values = self._indexed().get(_key(name))
        return len(values) if values else 0

    def first_repeated(self, names: tuple[str, ...]) -> str | None:
        """The first of `names` that appears more than once, if any."""
        index = self._indexed()
        for name in names:
            values = index.get(_key(name))
            if values is not None and len(values) > 1:
                return name
        return None

    def add(self, name: str, value: str) -> None:
        self._items.append((canonical_name(name), value))
        index = self._index
        if index is not None:  # else the lookup that builds it will see this pair
            index.setdefault(_key(name), []).append(value)

    def set(self, name: str, value: str) -> None:
        self.remove(name)
        self.add(name, value)

    def replace_first(self, name: str, value: str) -> None:
        """Change the value of the first `name` header where it stands (a Via stamped
        with received/rport, §18.2.1); add it if there is none."""
        key = _key(name)
        values = self._indexed().get(key)
        if not values:
            self.add(name, value)
            return
        values[0] = value
        items = self._items
        for position, (item_name, _) in enumerate(items):
            if _key(item_name) == key:
                items[position] = (item_name, value)
                return

    def remove(self, name: str) -> None:
        key = _key(name)
        if self._indexed().pop(key, None) is not None:
            self._items = [item for item in self._items if _key(item[0]) != key]

    def __contains__(self, name: str) -> bool:
        return bool(self._indexed().get(_key(name)))

    def copy(self) -> Headers:
        return Headers(list(self._items))


@dataclass
class Message:
    headers: Headers
    body: bytes = b""

    def __bytes__(self) -> bytes:
        lines = [self._start_line()]
        for name, value in self.headers.items:
            if name == "Content-Length":
                continue
            lines.append(f"{name}: {value}")
        # RFC 3261 §18.3: Content-Length is always written, so framing over
        # streams never depends on the peer guessing.
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body

    def _start_line(self) -> str:
        raise NotImplementedError


@dataclass
class Request(Message):
    method: str = ""
    uri: str = ""

    def _start_line(self) -> str:
        return f"{self.method} {self.uri} SIP/2.0"


@dataclass
class Response(Message):
    status: int = 200
    reason: str = "OK"

    def _start_line(self) -> str:
        return f"SIP/2.0 {self.status} {self.reason}"


def _decode(head: bytes) -> str:
    # RFC 3261 §7.3.1 says UTF-8; phones that send Latin-1 display names still
    # deserve an answer, so fall back rather than refuse.
    try:
        return head.decode("utf-8")
    except UnicodeDecodeError:
        return head.decode("latin-1")


_LINE_END = re.compile(r"\r?\n")


def split_head(data: bytes) -> tuple[bytes, bytes] | None:
    """(head, rest) at the blank line ending the headers, or None if absent.

    Bare LF line ends are accepted as well as CRLF (RFC 3261 §7 asks for CRLF,
    but robust receivers, RFC 4475 §3.1.1.1, tolerate LF).
    """
    for separator in (b"\r\n\r\n", b"\n\n", b"\r\n\n", b"\n\r\n"):
        index = data.find(separator)
        if index >= 0:
            candidates = [(index, separator)]
            for other in (b"\r\n\r\n", b"\n\n", b"\r\n\n", b"\n\r\n"):
                position = data.find(other)
                if 0 <= position < index:
                    candidates.append((position, other))
            position, found = min(candidates)
            return data[:position], data[position + len(found) :]
    return None


def parse(data: bytes, stream: bool = False) -> Request | Response:
    """Parse one whole message. With `stream`, `data` is exactly one framed message."""
    if len(data) > MAX_MESSAGE:
        raise ParseError("message too large", status=513)
    data = data.lstrip(b"\r\n")  # RFC 3261 §7.5: CRLFs before a start line are ignored
    parts = split_head(data)
    if parts is None:
        raise ParseError("no blank line after the headers")
    head, body = parts
    text = _decode(head)
    lines = text.split("\r\n")
    if text.count("\n") != len(lines) - 1:
        # Bare LF line ends too: the regex split, which is far slower (it was a
        # tenth of a registration's instructions under callgrind).
        lines = _LINE_END.split(text)
    start, header_lines = lines[0], lines[1:]
    message: Request | Response
    request_match = abnf.REQUEST_LINE_RE.match(start)
    if request_match:
        message = Request(
            headers=Headers(), method=request_match.group(1), uri=request_match.group(2)
        )
    else:
        status_match = abnf.STATUS_LINE_RE.match(start)
        if not status_match:
            if start.split(" ")[-1].startswith("SIP/") and not start.endswith("SIP/2.0"):
                raise ParseError("SIP version not supported", status=505)
            raise ParseError("malformed start line")
        message = Response(
            headers=Headers(), status=int(status_match.group(2)), reason=status_match.group(3)
        )
    errors = []
    items, index = message.headers._items, message.headers._index
    if head.find(b"\n ") >= 0 or head.find(b"\n\t") >= 0:
        header_lines = _unfold(header_lines)
    for line in header_lines:
        if not line:
            continue
        name, colon, raw = line.partition(":")
        known = _NAMES.get(name)
        if known is None:
            known = _header_name(name) if colon else False
        if not known:
            errors.append("malformed header line")
            continue
        header, key, is_list = known
        raw = raw.strip()
        if is_list and ("," in raw or '"' in raw or not raw):
            try:
                values = split_list(raw)
            except ParseError as error:
                errors.append(f"{header}: {error}")
                continue
            for value in values:
                items.append((header, value))
                index.setdefault(key, []).append(value)
            continue
        # One value (most lines): no list to split, no loop.
        items.append((header, raw))
        same = index.get(key)
        if same is None:
            index[key] = [raw]
        else:
            same.append(raw)
    message.body = body
    _check_length(message, stream, errors)
    if errors:
        raise ParseError(errors[0], partial=message)
    return message


# What a header name as received stands for: (canonical name, its Headers key,
# is a list header), or False when it is not a token. Cached, bounded: names come from peers.
_NAMES: dict[str, tuple[str, str, bool] | bool] = {}


def _header_name(name: str) -> tuple[str, str, bool] | bool:
    """§7.3.1: header-name HCOLON, where HCOLON = *( SP / HTAB ) ":" SWS."""
    bare = name.rstrip(" \t")
    if abnf.TOKEN_RE.match(bare):
        canonical = canonical_name(bare)
        key = canonical.lower()
        known: tuple[str, str, bool] | bool = (canonical, key, key in LIST_HEADERS)
    else:
        known = False
    if len(_NAMES) < 4096:
        _NAMES[name] = known
    return known


def _unfold(lines: list[str]):
    """Yield header lines with RFC 3261 §7.3.1 folding (leading SP/HT) joined."""
    current: str | None = None
    for line in lines:
        if line[:1] in (" ", "\t") and current is not None:
            current += " " + line.strip()
            continue
        if current is not None:
            yield current
        current = line
    if current is not None:
        yield current


def _check_length(message: Message, stream: bool, errors: list[str]) -> None:
    raw = message.headers.get("Content-Length")
    if raw is None:
        return
    # ASCII digits only: str.isdigit() also accepts "²", which int() refuses;
    # and int() refuses thousands of digits, which are anyway more than we hold.
    if not (raw.isascii() and raw.isdigit()):
        errors.append("Content-Length is not a number")
        return
    digits = raw.lstrip("0") or "0"
    length = int(digits) if len(digits) <= 10 else MAX_MESSAGE + 1
    if length > len(message.body):
        # RFC 3261 §18.3: over a datagram, a body shorter than Content-Length
        # is an error (400); over a stream the framer never hands us one.
        errors.append("body shorter than Content-Length")
        return
    # Extra bytes after the body over UDP are discarded (§18.3).
    message.body = message.body[:length]


def header_or_error(message: Message, name: str) -> str:
    value = message.headers.get(name)
    if value is None:
        raise ParseError(f"missing {name} header", partial=message)
    return value
