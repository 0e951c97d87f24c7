"""Keep-alives on the SIP UDP port, told apart from SIP messages (RFC 5626 §3.5, §8).

Like all of `sipd.sip` this contains no networking code at all: bytes in,
the bytes to answer out. Phones keep their NAT binding open by sending, every
few tens of seconds, datagrams that are not SIP messages:

- CRLF (pjsip-based phones such as MicroSIP, Zoiper) or CRLFCRLF (Linphone,
  every 30 s): ignored without an answer. The CRLFCRLF ping and CRLF pong of
  RFC 5626 §3.5.1 are for connection-oriented transports (sipd.sip.framing
  answers them on TCP and TLS); on UDP the phone expects nothing back, and a
  stray CRLF datagram would reach its own SIP parser.
- a STUN Binding request (RFC 5626 §3.5.2, §4.4.2, with the STUN of RFC 5389):
  answered with a Binding success response holding XOR-MAPPED-ADDRESS, the
  address the request came from. The phone compares it with the last one to
  notice a NAT that changed its mapping; without an answer it would take the
  flow for dead and register again (§4.4.2).
- any other STUN message (an indication, a response, one we cannot check):
  ignored without an answer (RFC 5389 §7.3: silently discarded).

A STUN message starts with two zero bits and carries the magic cookie at
bytes 4-7 (RFC 5389 §6); a SIP message starts with a letter (its method or
"SIP/2.0"), so the two never collide (RFC 5626 §8).
"""

from __future__ import annotations

import ipaddress
import struct
import zlib

# RFC 5389 §6: the header, and the cookie that tells STUN from other protocols.
HEADER = 20
MAGIC_COOKIE = 0x2112A442
_COOKIE_BYTES = struct.pack("!I", MAGIC_COOKIE)
# §6 and §18.1: message types (method Binding, classes request / success / error).
BINDING_REQUEST = 0x0001
BINDING_SUCCESS = 0x0101
BINDING_ERROR = 0x0111
# §15 and §18.2: the attributes written or checked here.
XOR_MAPPED_ADDRESS = 0x0020
ERROR_CODE = 0x0009
UNKNOWN_ATTRIBUTES = 0x000A
FINGERPRINT = 0x8028
# §15.5: the FINGERPRINT CRC-32 is XORed with this ("STUN").
FINGERPRINT_XOR = 0x5354554E
# §15: types below 0x8000 are comprehension-required.
_OPTIONAL = 0x8000


def is_keepalive(data: bytes) -> bool:
    """True if this datagram is a keep-alive (CRLFs, or STUN), not a SIP message."""
    if not data or data[0] in b"\r\n":
        # CRLFs only, or the empty datagram: nothing a SIP parser could read. (A
        # SIP message starts with a letter, so it is told apart by its first byte
        # without copying it.)
        return not data.strip(b"\r\n")
    return is_stun(data)


def is_stun(data: bytes) -> bool:
    """RFC 5389 §6: the first two bits zero and the magic cookie in place."""
    return len(data) >= HEADER and data[0] < 0x40 and data[4:8] == _COOKIE_BYTES


def answer(data: bytes, host: str, port: int) -> bytes | None:
    """What to send back for a keep-alive datagram from (host, port); None: nothing."""
    if not is_stun(data):
        return None  # CRLF keep-alives on UDP get no answer (see the module docstring)
    request = _binding_request(data)
    if request is None:
        return None
    transaction, unknown = request
    if unknown:
        # RFC 5389 §7.3.1: a comprehension-required attribute we do not know
        # (a keep-alive has none; USERNAME, MESSAGE-INTEGRITY... are for other
        # usages such as ICE) is refused with 420, naming them.
        listed = struct.pack(f"!{len(unknown)}H", *unknown)
        reason = b"Unknown Attribute"
        error = struct.pack("!HBB", 0, 4, 20) + reason  # class 4, number 20 (§15.6)
        return _message(
            BINDING_ERROR, transaction, [(ERROR_CODE, error), (UNKNOWN_ATTRIBUTES, listed)]
        )
    mapped = xor_mapped_address(host, port, transaction)
    return _message(BINDING_SUCCESS, transaction, [(XOR_MAPPED_ADDRESS, mapped)])


def _binding_request(data: bytes) -> tuple[bytes, list[int]] | None:
    """(transaction id, unknown comprehension-required attribute types) of a
    well-formed Binding request; None for anything to discard (RFC 5389 §7.3)."""
    kind, length = struct.unpack_from("!HH", data)
    if kind != BINDING_REQUEST or length % 4 or HEADER + length != len(data):
        return None  # indications and responses get no answer; §6: lengths are 4-aligned
    transaction = data[8:HEADER]
    unknown: list[int] = []
    at = HEADER
    while at < len(data):
        if at + 4 > len(data):
            return None
        attribute, size = struct.unpack_from("!HH", data, at)
        end = at + 4 + size
        if end > len(data):
            return None
        if attribute == FINGERPRINT:
            # §15.5: the last attribute, over everything before it.
            if end != len(data) or size != 4 or data[at + 4 : end] != fingerprint(data[:at]):
                return None
        elif attribute < _OPTIONAL:
            unknown.append(attribute)
        at = end + (-size % 4)  # §15: values are padded to 4 bytes
    return transaction, unknown


def xor_mapped_address(host: str, port: int, transaction: bytes) -> bytes:
    """The XOR-MAPPED-ADDRESS value for (host, port) (RFC 5389 §15.2)."""
    address = ipaddress.ip_address(host)
    family = 0x01 if address.version == 4 else 0x02
    x_port = port ^ (MAGIC_COOKIE >> 16)
    # IPv4 is XORed with the cookie; IPv6 with the cookie and the transaction id.
    mask = _COOKIE_BYTES if address.version == 4 else _COOKIE_BYTES + transaction
    x_address = bytes(a ^ b for a, b in zip(address.packed, mask, strict=True))
    return struct.pack("!BBH", 0, family, x_port) + x_address


def fingerprint(before: bytes) -> bytes:
    """The FINGERPRINT value for a message whose bytes before the attribute are
    `before`, their header's length already counting the attribute (§15.5)."""
    return struct.pack("!I", (zlib.crc32(before) ^ FINGERPRINT_XOR) & 0xFFFFFFFF)


def _message(kind: int, transaction: bytes, attributes: list[tuple[int, bytes]]) -> bytes:
    """A STUN message with these attributes and a FINGERPRINT, which lets the
    phone tell it from SIP on the same socket (§7.1, §15.5)."""
    body = b"".join(
        struct.pack("!HH", attribute, len(value)) + value + b"\0" * (-len(value) % 4)
        for attribute, value in attributes
    )
    head = struct.pack("!HHI", kind, len(body) + 8, MAGIC_COOKIE) + transaction
    return head + body + struct.pack("!HH", FINGERPRINT, 4) + fingerprint(head + body)
