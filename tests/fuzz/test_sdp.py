"""The SDP parser's contract: parse or raise SdpError, never anything else; bytes round-trip.

SDP bodies come from peers in INVITEs and their answers; the B2BUA reads them.
"""

from hypothesis import example, given
from hypothesis import strategies as st

from sipd.sip.sdp import SdpError, SessionDescription
from tests.fuzz.corpus import FUZZ, SEEDS, TOKENS

BODIES = [seed.split(b"\r\n\r\n", 1)[1] for seed in SEEDS if b"\r\n\r\nv=0" in seed]
SDP_TOKENS = [
    b"m=audio ",
    b"m=video 0 RTP/AVP 31",
    b"c=IN IP4 ",
    b"c=IN IP6 ::1",
    b"a=rtpmap:",
    b"a=rtcp:",
    b"a=sendonly",
    b"a=candidate:1 1 UDP 1 192.0.2.1 9 typ host",
    b"o=- 1 1 IN IP4 ",
    b"65536",
    b"99999999999999999999999",
    b"/",
    b" ",
]


@st.composite
def bodies(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(BODIES)))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.integers(0, 3))
        if kind == 0:
            data[at:at] = draw(st.sampled_from(SDP_TOKENS + TOKENS))
        elif kind == 1:
            del data[at : at + draw(st.integers(1, 20))]
        elif kind == 2 and at < len(data):
            data[at] = draw(st.integers(0, 255))
        else:
            data[at:at] = draw(st.binary(max_size=12))
    return bytes(data)


def test_there_are_seeds():
    assert BODIES


@FUZZ
@given(st.one_of(bodies(), st.binary(max_size=300)))
@example(
    b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio \xc2\xb2 RTP/AVP 0\r\n"
)
def test_sdp_parse_or_sdp_error(body):
    try:
        sdp = SessionDescription.parse(body)
    except SdpError:
        return
    assert bytes(sdp) == body
    try:
        sdp.streams()
    except SdpError:
        pass
