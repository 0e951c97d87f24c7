"""Typed views of the header values the registrar needs (RFC 3261 §19, §20).

Each type has `parse(text)` raising `ParseError` and `__str__` giving wire form.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from urllib.parse import unquote

from sipd.sip import abnf
from sipd.sip.message import ParseError


def unquote_string(value: str) -> str:
    """The content of a quoted-string with its quoted-pairs resolved (§25.1)."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        inner, out, escaped = value[1:-1], [], False
        if "\\" not in inner:
            return inner  # no quoted-pair: nothing to resolve (nonces, digests, URIs)
        for char in inner:
            if escaped:
                out.append(char)
                escaped = False
            elif char == "\\":
                escaped = True
            else:
                out.append(char)
        return "".join(out)
    return value


def quote_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_params(text: str) -> dict[str, str | None]:
    """';name=value;flag' -> {'name': 'value', 'flag': None}; names lower-cased."""
    params: dict[str, str | None] = {}
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = abnf.PARAM_RE.match(text, position)
        if not match or match.end() == position:
            raise ParseError(f"malformed parameter in {text!r}")
        params[match.group(1).lower()] = match.group(2)
        position = match.end()
    return params


def format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


@dataclass
class URI:
    """A SIP or SIPS URI (§19.1); other schemes are kept opaque in `rest`."""

    scheme: str
    user: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: str | None = None
    rest: str | None = None  # for non-SIP schemes

    @classmethod
    def parse(cls, text: str) -> URI:
        text = text.strip()
        match = abnf.SIP_URI_RE.match(text)
        if match:
            scheme, user, password, host, port, params, headers = match.groups()
            if port is not None and not 0 < int(port) <= 65535:
                raise ParseError(f"port out of range in URI {text!r}")
            return cls(
                scheme=scheme.lower(),
                user=unquote(user) if user is not None else None,
                password=password,
                host=host.lower(),
                port=int(port) if port else None,
                params=parse_params(params or ""),
                headers=headers,
            )
        generic = abnf.ABSOLUTE_URI_RE.match(text)
        if generic and generic.group(1).lower() not in ("sip", "sips"):
            return cls(scheme=generic.group(1).lower(), rest=generic.group(2))
        raise ParseError(f"malformed URI {text!r}")

    @property
    def is_sip(self) -> bool:
        return self.scheme in ("sip", "sips")

    def __str__(self) -> str:
        if not self.is_sip:
            return f"{self.scheme}:{self.rest}"
        out = f"{self.scheme}:"
        if self.user is not None:
            out += _escape_user(self.user)
            if self.password is not None:
                out += f":{self.password}"
            out += "@"
        out += self.host
        if self.port is not None:
            out += f":{self.port}"
        out += format_params(self.params)
        if self.headers:
            out += f"?{self.headers}"
        return out

    def address_of_record(self) -> str:
        """sip:user@host with no port or parameters, the AOR form of §10.2.1."""
        return f"{self.scheme}:{_escape_user(self.user or '')}@{self.host}"


# What the user ABNF allows unescaped (§25.1: unreserved / user-unreserved).
_USER_ALLOWED = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.!~*'()&=+$,;?/"
)


def _escape_user(user: str) -> str:
    # Re-escape only what the user ABNF does not allow unescaped.
    if user.isalnum() and user.isascii():
        return user  # extension numbers, nearly always
    return "".join(
        c if c in _USER_ALLOWED else "".join(f"%{b:02X}" for b in c.encode()) for c in user
    )


@dataclass
class NameAddr:
    """From, To and Contact values: [display-name] <uri> *(;param) (§20.10, §20.20)."""

    uri: URI
    display_name: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    wildcard: bool = False  # "Contact: *" (§10.2.2)

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        text = text.strip()
        if text == "*":
            return cls(uri=URI(scheme="*"), wildcard=True)
        match = abnf.NAME_ADDR_RE.match(text)
        if match:
            display, uri_text, rest = match.groups()
            display = display.strip()
            name = unquote_string(display) if display.startswith('"') else (display or None)
            return cls(uri=URI.parse(uri_text), display_name=name, params=parse_params(rest))
        if "<" in text or ">" in text:
            raise ParseError(f"malformed name-addr {text!r}")
        # addr-spec without brackets: everything after the first ';' is a header
        # parameter, not a URI parameter (§20.10), and it may contain no '?' or ','.
        uri_text, semicolon, rest = text.partition(";")
        return cls(uri=URI.parse(uri_text), params=parse_params(semicolon + rest))

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def __str__(self) -> str:
        if self.wildcard:
            return "*"
        display = f"{quote_string(self.display_name)} " if self.display_name else ""
        return f"{display}<{self.uri}>{format_params(self.params)}"


@functools.lru_cache(maxsize=4096)
def shared_name_addr(text: str) -> tuple[NameAddr, str]:
    """NameAddr.parse(text) and its URI as text, for callers that only read them.

    The registrar parses the same To and Contact values on every refresh of every
    phone; these are kept (the most recent 4,096) instead. The objects are shared
    between callers, so they must never be changed: callers that set a tag or a
    parameter parse their own with NameAddr.parse.
    """
    value = NameAddr.parse(text)
    return value, str(value.uri)


@dataclass
class Via:
    """One Via value (§20.42)."""

    transport: str
    host: str
    port: int | None
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Via:
        match = abnf.VIA_RE.match(text)
        if not match:
            raise ParseError(f"malformed Via {text!r}")
        protocol, version, transport, host, port, rest = match.groups()
        if protocol.upper() != "SIP" or version != "2.0":
            raise ParseError(f"unsupported Via protocol {protocol}/{version}")
        if port is not None and not 0 < int(port) <= 65535:
            raise ParseError("Via port out of range")
        return cls(
            transport=transport.upper(),
            host=host,
            port=int(port) if port else None,
            params=parse_params(rest),
        )

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def sent_by(self) -> tuple[str, int]:
        default = 5061 if self.transport == "TLS" else 5060
        return self.host.lower(), self.port or default

    def __str__(self) -> str:
        port = f":{self.port}" if self.port else ""
        return f"SIP/2.0/{self.transport} {self.host}{port}{format_params(self.params)}"


@dataclass
class CSeq:
    number: int
    method: str

    @classmethod
    def parse(cls, text: str) -> CSeq:
        match = abnf.CSEQ_RE.match(text)
        if not match:
            raise ParseError(f"malformed CSeq {text!r}")
        number = int(match.group(1))
        if number >= 2**31:
            # §8.1.1.5: the sequence number MUST be less than 2**31.
            raise ParseError("CSeq number out of range")
        return cls(number, match.group(2))

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


@dataclass
class Credentials:
    """A Digest Authorization value (RFC 7616 §3.4)."""

    scheme: str
    params: dict[str, str]

    @classmethod
    def parse(cls, text: str) -> Credentials:
        scheme, _, rest = text.strip().partition(" ")
        rest = rest.strip()
        # One pass to check the whole list, one to take it apart (both in C).
        if not abnf.AUTH_PARAMS_RE.fullmatch(rest):
            raise ParseError("malformed Authorization header")
        params = {
            name.lower(): unquote_string(value) for name, value in abnf.AUTH_PARAM_RE.findall(rest)
        }
        return cls(scheme=scheme, params=params)

    def get(self, name: str) -> str | None:
        return self.params.get(name)


def parse_expires(text: str) -> int:
    """Expires header or parameter: delta-seconds (§20.19); huge values are capped."""
    text = text.strip()
    if not (text.isascii() and text.isdigit()):  # "²" is a digit to str.isdigit()
        raise ParseError(f"malformed Expires value {text[:32]!r}")
    # §20.19: values over 2**32-1 are treated as 2**32-1 (and int() refuses
    # strings of thousands of digits, so those are capped before it sees them).
    digits = text.lstrip("0") or "0"
    return 2**32 - 1 if len(digits) > 10 else min(int(digits), 2**32 - 1)
