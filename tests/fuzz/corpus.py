"""Seeds and mutations for the fuzz tests: real messages, then broken on purpose.

Seeds are the captured messages of real phones in tests/data and the RFC 4475
vectors of tests/unit; mutations are what hostile or broken peers send:
flipped and dropped bytes, cut messages, repeated parts, absurd numbers,
characters outside ASCII where digits are expected, stray separators.
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests.unit import test_framing_transactions as framing_vectors
from tests.unit import test_message as message_vectors

DATA = Path(__file__).resolve().parent.parent / "data"

# `make test` runs a bounded, fixed set of examples (derandomized, so a run is
# repeatable). To fuzz for longer, with fresh random examples, no overall time
# limit, a 2 s limit per example (slow inputs fail) and a stack dump of any
# test stuck for 10 minutes (an input that never returns, as a regex can):
#   PBX_FUZZ_EXAMPLES=200000 PBX_FUZZ_RANDOM=1 PBX_FUZZ_DEADLINE_MS=2000 \
#   .venv/bin/python -m pytest -q -p no:cacheprovider --timeout=0 \
#       -o faulthandler_timeout=600 \
#       tests/fuzz/test_parser.py tests/fuzz/test_framing.py tests/fuzz/test_sdp.py
EXAMPLES = int(os.environ.get("PBX_FUZZ_EXAMPLES", "400"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=int(os.environ["PBX_FUZZ_DEADLINE_MS"])
    if os.environ.get("PBX_FUZZ_DEADLINE_MS")
    else None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=os.environ.get("PBX_FUZZ_RANDOM", "") == "",
    database=None,
)


def seeds() -> list[bytes]:
    found = [p.read_bytes() for p in sorted(DATA.glob("*.sip"))]
    found += [
        message_vectors.WSINV,
        message_vectors.LWSDISP,
        message_vectors.NOREASON,
        message_vectors.crlf(message_vectors.REGISTER.format(extra="")),
        framing_vectors.MESSAGE,
    ]
    return found


SEEDS = seeds()

# Fragments that reach the corners of the grammar.
TOKENS = [
    b"\r\n",
    b"\n",
    b"\r\n\r\n",
    b"\r\n ",
    b"\t",
    b":",
    b";",
    b",",
    b"=",
    b'"',
    b"\\",
    b"<",
    b">",
    b"@",
    b"%",
    b"%0",
    b"[",
    b"]",
    b"\x00",
    b"\xff",
    b"\xc3",
    "²".encode(),
    "١٢".encode(),
    b"0",
    b"-1",
    b"99999999999999999999",
    b"9" * 5000,
    b"SIP/2.0",
    b"SIP/3.0",
    b"sip:",
    b"sips:",
    b"tel:",
    b"Content-Length: ",
    b"l: ",
    b"Via: SIP/2.0/UDP ",
    b"v: ",
    b"CSeq: ",
    b"Call-ID: ",
    b"Contact: *",
    b"Expires: ",
    b"Authorization: Digest ",
    b"WWW-Authenticate: Digest realm=",
    b";branch=z9hG4bK",
    b";rport",
    b";received=",
    b";tag=",
    b"nonce=",
    b"nc=",
    b"qop=auth",
    b"algorithm=SHA-256",
    b"username=",
]


@st.composite
def mutated(draw) -> bytes:
    """A seed with a few edits."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        if not data:
            data += draw(st.sampled_from(TOKENS))
            continue
        at = draw(st.integers(0, len(data)))
        kind = draw(st.integers(0, 6))
        if kind == 0:  # insert a token
            data[at:at] = draw(st.sampled_from(TOKENS))
        elif kind == 1:  # insert random bytes
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == 2:  # delete a range
            data[at : at + draw(st.integers(1, 40))] = b""
        elif kind == 3 and at < len(data):  # change one byte
            data[at] = draw(st.integers(0, 255))
        elif kind == 4:  # repeat a range
            piece = data[at : at + draw(st.integers(1, 80))]
            data[at:at] = piece * draw(st.integers(1, 30))
        elif kind == 5:  # cut
            del data[at:]
        else:  # swap line ends
            data = bytearray(bytes(data).replace(b"\r\n", draw(st.sampled_from([b"\n", b"\r"])), 1))
    return bytes(data)


@st.composite
def assembled(draw) -> bytes:
    """A message made of a start line and header lines from the fragments."""
    method = draw(st.sampled_from([b"REGISTER", b"INVITE", b"OPTIONS", b"ACK", b"X", b""]))
    start = (
        method
        + b" "
        + draw(st.sampled_from([b"sip:pbx.test", b"sip:1002@pbx.test", b"<sip:a>", b"x"]))
        + b" SIP/2.0"
    )
    if draw(st.booleans()):
        start = b"SIP/2.0 " + draw(
            st.sampled_from([b"200 OK", b"401 ", b"99 x", b"1000 x", b"abc"])
        )
    names = [
        b"Via",
        b"v",
        b"From",
        b"f",
        b"To",
        b"t",
        b"Call-ID",
        b"i",
        b"CSeq",
        b"Contact",
        b"m",
        b"Content-Length",
        b"l",
        b"Expires",
        b"Authorization",
        b"Max-Forwards",
        b"Require",
        b"User-Agent",
        b"X-Custom",
        b"",
    ]
    lines = [start]
    for _ in range(draw(st.integers(0, 12))):
        value = b"".join(
            draw(st.lists(st.sampled_from(TOKENS) | st.binary(max_size=8), max_size=6))
        )
        lines.append(
            draw(st.sampled_from(names)) + draw(st.sampled_from([b": ", b":", b" : ", b""])) + value
        )
    body = draw(st.binary(max_size=64))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


messages = st.one_of(mutated(), assembled(), st.binary(max_size=512))
