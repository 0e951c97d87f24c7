"""Keep-alives told apart from SIP and answered (sipd.sip.keepalive, RFC 5626 §3.5, RFC 5389).

STUN vectors: RFC 5769 §2.1-2.3, verbatim.
"""

import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipd.sip import keepalive
from sipd.sip.framing import Ping, StreamFramer
from tests.fuzz.corpus import FUZZ


def hexbytes(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


TRANSACTION = hexbytes("b7 e7 a7 01 bc 34 d6 86 fa 87 df ae")
# RFC 5769 §2.1 Sample Request: SOFTWARE, PRIORITY, ICE-CONTROLLED, USERNAME,
# MESSAGE-INTEGRITY, FINGERPRINT.
RFC5769_REQUEST = hexbytes("""
    00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
    00 24 00 04 6e 00 01 ff
    80 29 00 08 93 2f f9 b1 51 26 3b 36
    00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
    00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
    80 28 00 04 e5 7a 3b cf
""")
# §2.2 Sample IPv4 Response: XOR-MAPPED-ADDRESS 192.0.2.1:32853.
RFC5769_IPV4_RESPONSE = hexbytes("""
    01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
    00 20 00 08 00 01 a1 47 e1 12 a6 43
    00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
    80 28 00 04 c0 7d 4c 96
""")
# §2.3 Sample IPv6 Response: [2001:db8:1234:5678:11:2233:4455:6677]:32853.
RFC5769_IPV6_RESPONSE = hexbytes("""
    01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
    00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9
    00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41
    80 28 00 04 c8 fb 0b 4c
""")
OPTIONS = b"OPTIONS sip:pbx.test SIP/2.0\r\nContent-Length: 0\r\n\r\n"


def attributes(message: bytes) -> list[tuple[int, bytes]]:
    found, at = [], 20
    while at < len(message):
        kind, size = struct.unpack_from("!HH", message, at)
        found.append((kind, message[at + 4 : at + 4 + size]))
        at += 4 + size + (-size % 4)
    return found


def binding_request(*extra: bytes) -> bytes:
    body = b"".join(extra)
    return struct.pack("!HHI", 0x0001, len(body), 0x2112A442) + TRANSACTION + body


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"\r\n\r\n", True),  # Linphone
        (b"\r\n", True),  # pjsip (MicroSIP)
        (b"", True),
        (binding_request(), True),
        (RFC5769_REQUEST, True),
        (OPTIONS, False),
        (b"SIP/2.0 200 OK\r\n\r\n", False),
        (b"\r\n" + OPTIONS, False),
        (b"\x00" * 20, False),  # two zero bits but no magic cookie: not STUN
    ],
)
def test_keepalives_are_told_from_sip(data, expected):
    assert keepalive.is_keepalive(data) is expected


@pytest.mark.parametrize("data", [b"\r\n\r\n", b"\r\n", b""])
def test_crlf_keepalives_on_udp_get_no_answer(data):
    assert keepalive.answer(data, "192.0.2.1", 32853) is None


def test_xor_mapped_address_matches_rfc5769():
    assert ((0x0020, keepalive.xor_mapped_address("192.0.2.1", 32853, TRANSACTION))
            in attributes(RFC5769_IPV4_RESPONSE))
    v6 = keepalive.xor_mapped_address("2001:db8:1234:5678:11:2233:4455:6677", 32853, TRANSACTION)
    assert (0x0020, v6) in attributes(RFC5769_IPV6_RESPONSE)


@pytest.mark.parametrize("vector", [RFC5769_REQUEST, RFC5769_IPV4_RESPONSE, RFC5769_IPV6_RESPONSE])
def test_fingerprint_matches_rfc5769(vector):
    assert vector[-4:] == keepalive.fingerprint(vector[:-8])


def test_binding_request_gets_the_source_address_back():
    reply = keepalive.answer(binding_request(), "192.0.2.1", 32853)
    kind, length, cookie = struct.unpack_from("!HHI", reply)
    assert (kind, length, cookie, reply[8:20]) == (0x0101, len(reply) - 20, 0x2112A442, TRANSACTION)
    assert attributes(reply) == [
        (0x0020, hexbytes("00 01 a1 47 e1 12 a6 43")),  # RFC 5769 §2.2's value
        (0x8028, struct.pack("!I", (zlib.crc32(reply[:-8]) ^ 0x5354554E) & 0xFFFFFFFF)),
    ]


def test_binding_request_with_its_fingerprint_is_answered():
    head = struct.pack("!HHI", 0x0001, 8, 0x2112A442) + TRANSACTION
    request = head + struct.pack("!HH", 0x8028, 4) + keepalive.fingerprint(head)
    reply = keepalive.answer(request, "2001:db8:1234:5678:11:2233:4455:6677", 32853)
    assert reply[:2] == b"\x01\x01"
    assert attributes(reply)[0] == (0x0020, attributes(RFC5769_IPV6_RESPONSE)[1][1])


def test_unknown_comprehension_required_attributes_get_420():
    # The RFC 5769 request is an ICE check: PRIORITY, USERNAME and MESSAGE-INTEGRITY
    # are not for a keep-alive (RFC 5389 §7.3.1: 420 listing them).
    reply = keepalive.answer(RFC5769_REQUEST, "192.0.2.1", 32853)
    assert reply[:2] == b"\x01\x11" and reply[8:20] == TRANSACTION  # Binding error response
    found = dict(attributes(reply))
    assert found[0x0009] == b"\x00\x00\x04\x14Unknown Attribute"  # 420
    assert found[0x000A] == struct.pack("!3H", 0x0024, 0x0006, 0x0008)


@pytest.mark.parametrize(
    "data",
    [
        RFC5769_IPV4_RESPONSE,  # a response: nothing to answer
        struct.pack("!HHI", 0x0011, 0, 0x2112A442) + TRANSACTION,  # an indication
        binding_request(struct.pack("!HHI", 0x8028, 4, 0)),  # a wrong FINGERPRINT
        binding_request(struct.pack("!HH", 0x8022, 40) + b"x" * 4),  # value past the end
        binding_request(b"\x80\x22"),  # half an attribute header (length not 4-aligned)
        binding_request(struct.pack("!HH", 0x8022, 0))[:-1],  # length field disagrees
    ],
    ids=["response", "indication", "bad-fingerprint", "overrun", "half-attribute", "short"],
)
def test_other_stun_is_dropped_without_an_answer(data):
    assert keepalive.answer(data, "192.0.2.1", 32853) is None


def test_stream_framer_knows_a_lone_crlf_begins_no_message():
    framer = StreamFramer()
    assert framer.between_messages  # nothing yet
    assert framer.feed(b"\r\n") == [] and framer.between_messages
    assert framer.feed(b"OPT") == [] and not framer.between_messages
    assert framer.feed(OPTIONS[3:]) == [OPTIONS] and framer.between_messages
    assert framer.feed(b"\r\n\r") == [] and framer.between_messages
    assert [type(item) for item in framer.feed(b"\n")] == [Ping]


@FUZZ
@given(st.binary(max_size=200), st.integers(0, 0xFFFF))
def test_any_stun_like_datagram_is_answered_or_dropped_never_raises(body, kind):
    """The fuzz contract of the parsers (tests/fuzz): an answer or None, nothing else."""
    for length in (len(body), len(body) // 4 * 4):
        data = struct.pack("!HHI", kind & 0x3FFF, length, 0x2112A442) + TRANSACTION + body
        reply = keepalive.answer(data, "192.0.2.1", 32853)
        assert reply is None or reply[8:20] == TRANSACTION
