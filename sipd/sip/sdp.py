"""SDP session descriptions as values, and the rewrite a media relay makes.

RFC 8866 (which obsoletes RFC 4566) for the syntax, RFC 3264 for what the
offer/answer model reads from it. Like all of `sipd.sip`, this module contains
no networking code at all: bytes in, values out, bytes back.

`SessionDescription.parse(body)` keeps every line as it came (its text and its
line ending), so `bytes(sdp)` gives back the input byte for byte; `rewrite()`
returns a new value in which only the lines it had to change differ.
`streams()` gives, per m= line, what the relay needs: where the phone wants
RTP and RTCP, and in which direction media may flow.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cached_property

CRLF = "\r\n"

# RFC 8866 §6.7: the direction attributes (session or media level; the media
# level one wins). Without any, a stream is sendrecv.
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")

# ICE (RFC 8839) attributes. They are removed from what the relay forwards:
# the candidates name the phone's own addresses (host, server-reflexive), and a
# far phone that ran connectivity checks against them would either bypass the
# relay (media straight between the phones, whatever c= says) or fail, since
# the relay does not answer STUN. Without ICE attributes both phones fall back
# to plain c=/m= addressing (RFC 8445 §5.1.1: ICE needs both ends), which is
# the relay; symmetric latching then handles NAT.
ICE_ATTRIBUTES = frozenset(
    {
        "candidate",
        "remote-candidates",
        "end-of-candidates",
        "ice-ufrag",
        "ice-pwd",
        "ice-options",
        "ice-lite",
        "ice-mismatch",
        "ice-pacing",
    }
)

# --- grammar (RFC 8866 §9) ------------------------------------------------------

# <type>=<value>; type is one case-significant character (§5). We accept any
# ASCII letter, so lines of types we do not know are kept and passed on.
LINE_RE = re.compile(r"^([A-Za-z])=(.*)$", re.S)

# proto-version =  %s"v" "=" 1*DIGIT CRLF   (and the only version is 0, §5.1)
VERSION_RE = re.compile(r"^0$")

# origin-field = %s"o" "=" username SP sess-id SP sess-version SP
#                nettype SP addrtype SP unicast-address CRLF
# sess-id = 1*DIGIT; sess-version = 1*DIGIT
# RFC 3264 §5 wants both to fit a 64-bit integer; we allow 64 digits, and refuse
# more rather than hand int() thousands of them.
ORIGIN_RE = re.compile(r"^(\S+) ([0-9]{1,64}) ([0-9]{1,64}) (\S+) (\S+) (\S+)$")

# connection-field = [%s"c" "=" nettype SP addrtype SP connection-address CRLF]
# connection-address = multicast-address / ipv4-address / ipv6-address / FQDN / extn-addr
# (a multicast address carries "/ttl" and "/number of addresses", kept as a suffix)
CONNECTION_RE = re.compile(r"^(\S+) (\S+) ([^\s/]+)(/\S*)?$")

# media-field = %s"m" "=" media SP port ["/" integer] SP proto 1*(SP fmt) CRLF
# port = 1*DIGIT; proto = token *("/" token); fmt = token
MEDIA_RE = re.compile(r"^(\S+) ([0-9]{1,5})(?:/([0-9]{1,5}))? (\S+)((?: \S+)*)$")

# attribute = (attribute-name ":" attribute-value) / attribute-name
ATTRIBUTE_RE = re.compile(r"^([^:\s]+)(?::(.*))?$", re.S)

# RFC 3605 §2.1: rtcp-attribute = "a=rtcp:" port [nettype space addrtype space
#                                  connection-address] CRLF
RTCP_RE = re.compile(r"^([0-9]{1,5})(?: (\S+) (\S+) ([^\s/]+))?$")

# RFC 8866 §6.6: a=rtpmap:<payload type> <encoding name>/<clock rate>[/<encoding parameters>]
RTPMAP_RE = re.compile(r"^([0-9]{1,3}) ([^/\s]+)/([0-9]{1,10})(?:/(\S+))?$")


class SdpError(Exception):
    """The one error the parser raises. `status` is what a SIP server answers
    a request whose body this is (RFC 3261 §21.4.1: 400 for a malformed one)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


# --- values ----------------------------------------------------------------------


_UNSET = object()


class Line:
    """One line as it came: type letter ("" for a blank line), value, line ending.

    Not a dataclass: every line of every SDP is one of these, and a frozen
    dataclass's __init__ (object.__setattr__ per field) was a visible part of an
    outside call's CPU under the outbound bench. Treat it as immutable all the same.
    """

    __slots__ = ("type", "value", "eol", "_attribute")

    def __init__(self, type: str, value: str, eol: str = CRLF):
        self.type = type
        self.value = value
        self.eol = eol
        self._attribute = _UNSET

    def __eq__(self, other) -> bool:
        return (isinstance(other, Line) and self.type == other.type
                and self.value == other.value and self.eol == other.eol)

    def __hash__(self) -> int:
        return hash((self.type, self.value, self.eol))

    def __repr__(self) -> str:
        return f"Line(type={self.type!r}, value={self.value!r}, eol={self.eol!r})"

    def __str__(self) -> str:
        if not self.type:
            return self.value + self.eol
        return f"{self.type}={self.value}{self.eol}"

    def with_value(self, value: str) -> Line:
        return Line(self.type, value, self.eol)

    @property
    def attribute(self) -> tuple[str, str | None] | None:
        """(name, value or None) for an a= line, else None. Worked out once:
        streams() and rewrite() ask many times."""
        found = self._attribute
        if found is _UNSET:
            found = None
            if self.type == "a":
                match = ATTRIBUTE_RE.match(self.value)
                if match is not None:
                    found = match.group(1), match.group(2)
            self._attribute = found
        return found


@dataclass(frozen=True)
class Origin:
    username: str
    sess_id: str
    sess_version: int
    nettype: str
    addrtype: str
    address: str

    @classmethod
    def parse(cls, value: str) -> Origin:
        match = ORIGIN_RE.match(value)
        if match is None:
            raise SdpError(f"malformed o= line: {value!r}")
        user, sess_id, version, nettype, addrtype, address = match.groups()
        return cls(user, sess_id, int(version), nettype, addrtype, address)

    def __str__(self) -> str:
        return (
            f"{self.username} {self.sess_id} {self.sess_version} "
            f"{self.nettype} {self.addrtype} {self.address}"
        )


@dataclass(frozen=True)
class Connection:
    nettype: str
    addrtype: str
    address: str
    suffix: str = ""  # "/ttl[/count]" of a multicast address, kept as written

    @classmethod
    def parse(cls, value: str) -> Connection:
        match = CONNECTION_RE.match(value)
        if match is None:
            raise SdpError(f"malformed c= line: {value!r}")
        nettype, addrtype, address, suffix = match.groups()
        return cls(nettype, addrtype, address, suffix or "")

    @property
    def unspecified(self) -> bool:
        """c=IN IP4 0.0.0.0: RFC 3264 §8.4 (RFC 2543 hold): send neither RTP nor RTCP here."""
        return self.address in ("0.0.0.0", "::")

    def __str__(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}{self.suffix}"


@dataclass(frozen=True)
class MediaDescription:
    """The m= line: media type, port (0 = disabled, RFC 3264 §8.2), proto, formats."""

    media: str
    port: int
    port_count: int | None
    proto: str
    formats: tuple[str, ...]

    @classmethod
    def parse(cls, value: str) -> MediaDescription:
        match = MEDIA_RE.match(value)
        if match is None:
            raise SdpError(f"malformed m= line: {value!r}")
        media, port, count, proto, formats = match.groups()
        if int(port) > 65535:
            raise SdpError(f"m= port out of range: {value!r}")
        return cls(media, int(port), int(count) if count else None, proto,
                   tuple(formats.split()))

    def __str__(self) -> str:
        port = f"{self.port}/{self.port_count}" if self.port_count is not None else str(self.port)
        return " ".join([self.media, port, self.proto, *self.formats])


@dataclass(frozen=True)
class RtpMap:
    payload_type: int
    encoding: str  # as written: "PCMU", "telephone-event", "opus"
    clock_rate: int
    parameters: str | None = None


@dataclass(frozen=True)
class Rtcp:
    """a=rtcp (RFC 3605): the RTCP port, and an address when it is not c='s."""

    port: int
    connection: Connection | None = None

    @classmethod
    def parse(cls, value: str) -> Rtcp:
        match = RTCP_RE.match(value.strip())
        if match is None or int(match.group(1)) > 65535:
            raise SdpError(f"malformed a=rtcp attribute: {value!r}")
        port, nettype, addrtype, address = match.groups()
        connection = Connection(nettype, addrtype, address) if nettype else None
        return cls(int(port), connection)

    def __str__(self) -> str:
        return f"{self.port} {self.connection}" if self.connection else str(self.port)


def _attributes(lines: list[Line]) -> list[tuple[str, str | None]]:
    return [attribute for line in lines if (attribute := line.attribute) is not None]


def _direction(lines: list[Line]) -> str | None:
    found = None
    for name, _ in _attributes(lines):
        if name in DIRECTIONS:
            found = name  # the last one wins if a sender repeats itself
    return found


@dataclass
class MediaSection:
    """An m= line and the lines under it, up to the next m= line."""

    lines: list[Line]  # complete once parsed: what is read from them is worked out once

    @cached_property
    def description(self) -> MediaDescription:
        return MediaDescription.parse(self.lines[0].value)

    @cached_property
    def connection(self) -> Connection | None:
        """The media-level c= (RFC 8866 §5.7), if there is one."""
        for line in self.lines[1:]:
            if line.type == "c":
                return Connection.parse(line.value)
        return None

    @cached_property
    def attributes(self) -> list[tuple[str, str | None]]:
        return _attributes(self.lines)

    def attribute(self, name: str) -> str | None:
        """The value of the first a=name (or "" for a flag), None when absent."""
        for key, value in self.attributes:
            if key == name:
                return value if value is not None else ""
        return None

    @property
    def direction(self) -> str | None:
        """The media-level direction attribute, None when there is none."""
        return _direction(self.lines)

    @cached_property
    def rtcp(self) -> Rtcp | None:
        value = self.attribute("rtcp")
        return Rtcp.parse(value) if value is not None else None

    @cached_property
    def rtpmap(self) -> dict[int, RtpMap]:
        """Payload type -> codec. A line that does not parse is left out: the
        relay never reads payloads, so a codec it cannot name is not an error."""
        maps = {}
        for key, value in self.attributes:
            if key == "rtpmap" and value is not None:
                match = RTPMAP_RE.match(value.strip())
                if match:
                    pt, name, rate, params = match.groups()
                    maps[int(pt)] = RtpMap(int(pt), name, int(rate), params)
        return maps


@dataclass(frozen=True)
class Stream:
    """What one m= line asks of the relay, with session-level defaults applied."""

    index: int
    media: str
    proto: str
    port: int  # 0: the stream is disabled or rejected (RFC 3264 §6, §8.2)
    host: str | None  # from c= (media level, else session level); None if neither
    rtcp_port: int
    rtcp_host: str | None
    direction: str  # the phone's own view (RFC 3264 §6.1): "sendonly" = it only sends
    formats: tuple[str, ...]
    rtpmap: dict[int, RtpMap]

    @property
    def rejected(self) -> bool:
        return self.port == 0

    @property
    def hold_address(self) -> bool:
        """c=0.0.0.0: RFC 3264 §8.4, neither RTP nor RTCP is to be sent to this phone."""
        return self.host in ("0.0.0.0", "::")

    @property
    def relay_direction(self) -> str:
        """The direction to give the relay for this phone's leg: the SDP's, but a
        phone that asked for nothing to be sent to it (c=0.0.0.0) receives nothing."""
        if not self.hold_address:
            return self.direction
        return {"sendrecv": "sendonly", "recvonly": "inactive"}.get(
            self.direction, self.direction
        )


@dataclass
class SessionDescription:
    session: list[Line]  # v= up to the first m=
    media: list[MediaSection]

    @classmethod
    def parse(cls, data: bytes | str) -> SessionDescription:
        """Parse a body, or raise SdpError; never anything else."""
        if isinstance(data, bytes):
            # surrogateescape keeps bytes that are not UTF-8 (RFC 8866 §5.3
            # allows other charsets in s= and i=) so they serialize back unchanged.
            text = data.decode("utf-8", "surrogateescape")
        else:
            text = data
        session: list[Line] = []
        media: list[MediaSection] = []
        for line in _split_lines(text):
            if line.type == "m":
                media.append(MediaSection([line]))
            elif media:
                media[-1].lines.append(line)
            else:
                session.append(line)
        sdp = cls(session, media)
        sdp._validate()
        return sdp

    def _validate(self) -> None:
        typed = [line for line in self.session if line.type]
        if not typed or typed[0].type != "v":
            raise SdpError("SDP must start with v= (RFC 8866 §5)")
        if not VERSION_RE.match(typed[0].value.strip()):
            raise SdpError(f"unsupported SDP version: {typed[0].value!r}")
        if not any(line.type == "o" for line in typed):
            raise SdpError("SDP has no o= line (RFC 8866 §5.2)")
        # Parse every line the relay reads or rewrites, so that a body which
        # parses is one rewrite() and streams() can handle.
        self.origin  # noqa: B018
        self.connection  # noqa: B018
        for section in self.media:
            section.description  # noqa: B018
            section.connection  # noqa: B018
            section.rtcp  # noqa: B018

    def __bytes__(self) -> bytes:
        return str(self).encode("utf-8", "surrogateescape")

    def __str__(self) -> str:
        return "".join(str(line) for line in self.lines())

    def lines(self) -> list[Line]:
        return self.session + [line for section in self.media for line in section.lines]

    @cached_property
    def origin(self) -> Origin:
        for line in self.session:
            if line.type == "o":
                return Origin.parse(line.value)
        raise SdpError("SDP has no o= line (RFC 8866 §5.2)")

    @cached_property
    def connection(self) -> Connection | None:
        """The session-level c=, if there is one."""
        for line in self.session:
            if line.type == "c":
                return Connection.parse(line.value)
        return None

    @property
    def direction(self) -> str | None:
        """The session-level direction attribute, None when there is none."""
        return _direction(self.session)

    def streams(self) -> list[Stream]:
        """One Stream per m= line. Worked out once: a description is not changed
        after parsing (rewrite() makes a new one), and the B2BUA asks for the
        streams of each SDP several times (relay, rewrite, codec, history)."""
        return self._streams

    @cached_property
    def _streams(self) -> list[Stream]:
        session_connection = self.connection
        session_direction = self.direction or "sendrecv"
        streams = []
        for index, section in enumerate(self.media):
            m = section.description
            connection = section.connection or session_connection
            host = connection.address if connection else None
            rtcp = section.rtcp
            # RFC 3605 §2.1: a=rtcp names the RTCP port (and maybe address);
            # without it, RTCP is on the next port up (RFC 3550 §11).
            rtcp_port = rtcp.port if rtcp else (m.port + 1 if m.port else 0)
            rtcp_host = rtcp.connection.address if rtcp and rtcp.connection else host
            streams.append(
                Stream(
                    index=index,
                    media=m.media,
                    proto=m.proto,
                    port=m.port,
                    host=host,
                    rtcp_port=rtcp_port,
                    rtcp_host=rtcp_host,
                    direction=section.direction or session_direction,
                    formats=m.formats,
                    rtpmap=section.rtpmap,
                )
            )
        return streams


def _split_lines(text: str) -> list[Line]:
    """Lines with their own endings. RFC 8866 §5 asks for CRLF and lets a parser
    accept a bare LF; we do, and keep which one each line used."""
    lines = []
    pos = 0
    while pos < len(text):
        end = text.find("\n", pos)
        if end < 0:
            raw, eol, pos = text[pos:], "", len(text)
        else:
            raw, eol, pos = text[pos:end], "\n", end + 1
            if raw.endswith("\r"):
                raw, eol = raw[:-1], CRLF
        if not raw.strip():
            # A blank line (a trailing empty line is common) means nothing;
            # it is kept so the body serializes back as it came.
            lines.append(Line("", raw, eol))
            continue
        match = LINE_RE.match(raw)
        if match is None:
            raise SdpError(f"not an SDP line (type=value): {raw[:60]!r}")
        lines.append(Line(match.group(1), match.group(2), eol))
    return lines


# --- the relay's rewrite ----------------------------------------------------------


def _is_ice(line: Line) -> bool:
    attribute = line.attribute
    return attribute is not None and attribute[0] in ICE_ATTRIBUTES


def _addrtype(address: str) -> str:
    return "IP6" if ":" in address else "IP4"


def _rewrite_connection(line: Line, address: str) -> Line:
    connection = Connection.parse(line.value)
    if connection.unspecified:
        # c=0.0.0.0 (RFC 3264 §8.4) says "send me nothing"; the far phone is
        # told the same rather than the relay's address, and the relay, given
        # Stream.relay_direction, drops what would go to this phone.
        return line
    return line.with_value(f"IN {_addrtype(address)} {address}")


def rewrite(
    sdp: SessionDescription,
    address: str,
    ports_by_media_index: Mapping[int, int | tuple[int, int]],
    previous: SessionDescription | None = None,
) -> SessionDescription:
    """The description to forward to the other phone, with the relay in the path.

    address: the relay's advertised address (written into every c= and o=).
    ports_by_media_index: m= line index -> the relay's RTP port for it, or
        (rtp_port, rtcp_port). An m= line with no entry is not relayed and goes
        out disabled (port 0, RFC 3264 §8.2), so no media can bypass the relay;
        an m= line with port 0 stays 0.
    previous: the description last sent on the same dialog, if any. RFC 3264 §8
        wants o='s version raised exactly when the description changes, and
        username and sess-id kept; with `previous` given, o= continues from it.
        Without it, the phone's own o= (address replaced) is kept: its version
        already changes exactly when the phone's description does, and the
        rewrite is a pure function of that description, the address and the ports.

    Lines not named here are passed byte for byte; a=ice-* and a=candidate are
    removed (see ICE_ATTRIBUTES).
    """
    addrtype = _addrtype(address)
    session = []
    for line in sdp.session:
        if line.type == "c":
            line = _rewrite_connection(line, address)
        elif line.type == "o":
            origin = Origin.parse(line.value)
            line = line.with_value(str(replace(origin, addrtype=addrtype, address=address)))
        elif _is_ice(line):
            continue
        session.append(line)
    media = []
    for index, section in enumerate(sdp.media):
        media.append(_rewrite_section(section, index, address, ports_by_media_index))
    result = SessionDescription(session, media)
    if previous is not None:
        result = _continue_origin(result, previous)
    return result


def _rewrite_section(
    section: MediaSection,
    index: int,
    address: str,
    ports_by_media_index: Mapping[int, int | tuple[int, int]],
) -> MediaSection:
    description = section.description
    ports = ports_by_media_index.get(index) if description.port else None
    if ports is None:
        rtp = rtcp = 0
    elif isinstance(ports, int):
        rtp, rtcp = ports, ports + 1
    else:
        rtp, rtcp = ports
    # The relay gives one port pair per stream, so "port/count" (RFC 8866 §5.14,
    # layered encodings) becomes a single port.
    lines = [section.lines[0].with_value(str(replace(description, port=rtp, port_count=None)))]
    saw_rtcp = False
    for line in section.lines[1:]:
        if line.type == "c":
            line = _rewrite_connection(line, address)
        elif _is_ice(line):
            continue
        elif line.attribute is not None and line.attribute[0] == "rtcp":
            saw_rtcp = True
            if rtp == 0:
                continue  # a disabled stream has no RTCP either
            rtcp_value = Rtcp.parse(line.attribute[1] or "")
            connection = rtcp_value.connection
            if connection is not None and not connection.unspecified:
                connection = Connection("IN", _addrtype(address), address)
            line = line.with_value(f"rtcp:{Rtcp(rtcp, connection)}")
        lines.append(line)
    if rtp and not saw_rtcp and rtcp != rtp + 1:
        # RTCP is not where RFC 3550 §11 would look for it: say where (RFC 3605).
        # Media-level lines go m=, i=, c=, b=, k=, a= (RFC 8866 §5), so the new
        # attribute goes after the last of those that is not an a= line.
        at = max(i for i, line in enumerate(lines) if line.type in ("m", "i", "c", "b", "k")) + 1
        lines.insert(at, Line("a", f"rtcp:{rtcp}", lines[0].eol or CRLF))
    return MediaSection(lines)


def _continue_origin(
    result: SessionDescription, previous: SessionDescription
) -> SessionDescription:
    before = previous.origin
    now = result.origin
    unchanged = _without_origin(result) == _without_origin(previous)
    version = before.sess_version if unchanged else max(now.sess_version,
                                                         before.sess_version + 1)
    origin = replace(before, sess_version=version, addrtype=now.addrtype, address=now.address)
    if origin.address != before.address and unchanged:
        origin = replace(origin, sess_version=before.sess_version + 1)
    session = [line.with_value(str(origin)) if line.type == "o" else line
               for line in result.session]
    return SessionDescription(session, result.media)


def _without_origin(sdp: SessionDescription) -> list[tuple[str, str]]:
    # Compared by meaning, not line endings: a phone switching from LF to CRLF
    # has not changed its session.
    return [(line.type, line.value) for line in sdp.lines() if line.type and line.type != "o"]


def with_direction(sdp: SessionDescription, direction: str) -> SessionDescription:
    """`sdp` with every stream declaring `direction` (RFC 8866 §6.7): the session
    level's direction attribute removed, each enabled m= section's replaced, or
    added where it had none. A transfer offers the remaining party's description
    to the new party, and that description may be the answer to a hold
    (recvonly, inactive) while the new call is to talk both ways."""
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}")

    def kept(lines: list[Line]) -> list[Line]:
        return [line for line in lines
                if line.attribute is None or line.attribute[0] not in DIRECTIONS]

    media = []
    for section in sdp.media:
        if not section.description.port:
            media.append(section)  # a disabled stream stays as it is (RFC 3264 §8.2)
            continue
        lines = kept(section.lines)
        at = len(lines)
        while at > 1 and not lines[at - 1].type:
            at -= 1  # after the section's last line, before any blank ones
        eol = lines[at - 1].eol or CRLF
        if not lines[at - 1].eol:
            lines[at - 1] = Line(lines[at - 1].type, lines[at - 1].value, eol)  # it ended the body
        lines.insert(at, Line("a", direction, eol))
        media.append(MediaSection(lines))
    return SessionDescription(kept(sdp.session), media)
