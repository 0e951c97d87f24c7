"""SDP parse / serialize / rewrite (sipd/sip/sdp.py) on real bodies.

Captured bodies are in tests/data (baresip 1.0.0 with and without ICE, sipp
3.6.1's built-in uac scenario); the RFC examples are RFC 3264 §10.1 / RFC 4317
§2.1 (the same offer and answer) and hold as RFC 3264 §8.4 and RFC 4317 §3.1
describe it.
"""

from pathlib import Path

import pytest

from sipd.sip.sdp import SdpError, SessionDescription, rewrite, with_direction

DATA = Path(__file__).resolve().parent.parent / "data"
RELAY = "203.0.113.10"


def body_of(name: str) -> bytes:
    return (DATA / name).read_bytes().split(b"\r\n\r\n", 1)[1]


def crlf(text: str) -> bytes:
    return text.strip("\n").replace("\n", "\r\n").encode() + b"\r\n"


# RFC 3264 §10.1 (repeated as RFC 4317 §2.1): the offer...
RFC3264_OFFER = crlf("""
v=0
o=alice 2890844526 2890844526 IN IP4 host.atlanta.example.com
s=
c=IN IP4 host.atlanta.example.com
t=0 0
m=audio 49170 RTP/AVP 0 8 97
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:97 iLBC/8000
m=video 51372 RTP/AVP 31 32
a=rtpmap:31 H261/90000
a=rtpmap:32 MPV/90000
""")
# ... and the answer.
RFC3264_ANSWER = crlf("""
v=0
o=bob 2808844564 2808844564 IN IP4 host.biloxi.example.com
s=
c=IN IP4 host.biloxi.example.com
t=0 0
m=audio 49174 RTP/AVP 0
a=rtpmap:0 PCMU/8000
m=video 49170 RTP/AVP 32
a=rtpmap:32 MPV/90000
""")
# RFC 4317 §3.1: Alice puts Bob on hold with a=sendonly (RFC 3264 §8.4), Bob answers recvonly.
HOLD_OFFER = crlf("""
v=0
o=alice 2890844526 2890844527 IN IP4 host.atlanta.example.com
s=
c=IN IP4 host.atlanta.example.com
t=0 0
m=audio 49170 RTP/AVP 0 97
a=rtpmap:0 PCMU/8000
a=rtpmap:97 iLBC/8000
a=sendonly
""")
HOLD_ANSWER = crlf("""
v=0
o=bob 2808844564 2808844565 IN IP4 host.biloxi.example.com
s=
c=IN IP4 host.biloxi.example.com
t=0 0
m=audio 49172 RTP/AVP 0 97
a=rtpmap:0 PCMU/8000
a=rtpmap:97 iLBC/8000
a=recvonly
""")
# RFC 2543 hold, still sent by old phones: c=0.0.0.0 (RFC 3264 §8.4), direction at session level.
LEGACY_HOLD = crlf("""
v=0
o=- 8000 8001 IN IP4 192.168.1.20
s=SIP Call
c=IN IP4 0.0.0.0
t=0 0
a=sendrecv
m=audio 5004 RTP/AVP 8 101
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
""")

ALL_BODIES = {
    "baresip": body_of("invite_baresip_1.0.0.sip"),
    "baresip_ice": body_of("invite_baresip_1.0.0_ice.sip"),
    "sipp": body_of("invite_sipp_3.6_uac.sip"),
    "rfc3264_offer": RFC3264_OFFER,
    "rfc3264_answer": RFC3264_ANSWER,
    "hold_offer": HOLD_OFFER,
    "hold_answer": HOLD_ANSWER,
    "legacy_hold": LEGACY_HOLD,
}


@pytest.mark.parametrize("name", sorted(ALL_BODIES))
def test_round_trip_is_byte_exact(name):
    body = ALL_BODIES[name]
    assert bytes(SessionDescription.parse(body)) == body


@pytest.mark.parametrize("body", [
    b"v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nt=0 0\nm=audio 4000 RTP/AVP 0\n",  # bare LF
    b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0",  # no final CRLF
    b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=\xe9t\xe9\r\nt=0 0\r\n\r\n",  # latin-1 s=, blank line
    b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\nx=unknown type \r\n",  # kept as is
])
def test_round_trip_of_odd_but_acceptable_bodies(body):
    assert bytes(SessionDescription.parse(body)) == body


def test_baresip_offer():
    sdp = SessionDescription.parse(ALL_BODIES["baresip"])
    assert sdp.origin.sess_id == "1266039616" and sdp.origin.address == "192.0.2.2"
    assert sdp.connection.address == "192.0.2.2"
    (stream,) = sdp.streams()
    assert (stream.media, stream.port, stream.proto) == ("audio", 16024, "RTP/AVP")
    assert stream.formats == ("0", "8", "101")
    assert (stream.host, stream.rtcp_host, stream.rtcp_port) == ("192.0.2.2", "192.0.2.2", 16025)
    assert stream.direction == "sendrecv"
    assert {pt: m.encoding for pt, m in stream.rtpmap.items()} == {
        0: "PCMU", 8: "PCMA", 101: "telephone-event"}


def test_baresip_ice_offer_has_media_level_c_and_rtcp_attribute():
    sdp = SessionDescription.parse(ALL_BODIES["baresip_ice"])
    section = sdp.media[0]
    assert section.connection.address == "192.0.2.2"
    assert section.rtcp.port == section.description.port + 1
    assert section.rtcp.connection.address == "192.0.2.2"
    assert section.attribute("ice-ufrag") is None  # ICE credentials are session level here
    assert any(line.attribute and line.attribute[0] == "ice-ufrag" for line in sdp.session)


def test_sipp_offer():
    (stream,) = SessionDescription.parse(ALL_BODIES["sipp"]).streams()
    assert (stream.host, stream.port, stream.rtcp_port) == ("127.0.0.1", 6004, 6005)
    assert stream.rtpmap[0].encoding == "PCMU" and stream.rtpmap[0].clock_rate == 8000


def test_rfc3264_offer_answer_streams():
    offer = SessionDescription.parse(RFC3264_OFFER).streams()
    answer = SessionDescription.parse(RFC3264_ANSWER).streams()
    assert [(s.media, s.port, s.host) for s in offer] == [
        ("audio", 49170, "host.atlanta.example.com"), ("video", 51372, "host.atlanta.example.com")]
    assert [(s.media, s.port, s.formats) for s in answer] == [
        ("audio", 49174, ("0",)), ("video", 49170, ("32",))]
    assert offer[0].rtpmap[97].encoding == "iLBC"


def test_hold_directions():
    (offer,) = SessionDescription.parse(HOLD_OFFER).streams()
    (answer,) = SessionDescription.parse(HOLD_ANSWER).streams()
    assert (offer.direction, offer.relay_direction) == ("sendonly", "sendonly")
    assert (answer.direction, answer.relay_direction) == ("recvonly", "recvonly")


def test_legacy_hold_with_unspecified_address():
    sdp = SessionDescription.parse(LEGACY_HOLD)
    assert sdp.direction == "sendrecv"
    (stream,) = sdp.streams()
    assert stream.hold_address and stream.host == "0.0.0.0"
    # RFC 3264 §8.4: nothing is to be sent to this phone.
    assert stream.relay_direction == "sendonly"


def test_media_level_direction_wins_over_session_level():
    body = RFC3264_OFFER.replace(b"t=0 0\r\n", b"t=0 0\r\na=inactive\r\n").replace(
        b"a=rtpmap:97 iLBC/8000\r\n", b"a=rtpmap:97 iLBC/8000\r\na=recvonly\r\n")
    audio, video = SessionDescription.parse(body).streams()
    assert audio.direction == "recvonly" and video.direction == "inactive"


# --- rewrite ---------------------------------------------------------------------------


def test_rewrite_baresip_only_touches_addresses_and_ports():
    original = SessionDescription.parse(ALL_BODIES["baresip"])
    out = rewrite(original, RELAY, {0: 10000})
    before = str(original).splitlines()
    after = str(out).splitlines()
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert changed == [
        ("o=- 1266039616 708688485 IN IP4 192.0.2.2", f"o=- 1266039616 708688485 IN IP4 {RELAY}"),
        ("c=IN IP4 192.0.2.2", f"c=IN IP4 {RELAY}"),
        ("m=audio 16024 RTP/AVP 0 8 101", "m=audio 10000 RTP/AVP 0 8 101"),
    ]
    # telephone-event (RFC 4733) and its fmtp go through untouched.
    assert "a=rtpmap:101 telephone-event/8000" in after and "a=fmtp:101 0-15" in after
    assert bytes(out).endswith(b"\r\n") and b"\n" not in bytes(out).replace(b"\r\n", b"")


def test_rewrite_strips_ice_and_rewrites_rtcp_attribute():
    original = SessionDescription.parse(ALL_BODIES["baresip_ice"])
    out = str(rewrite(original, RELAY, {0: (10000, 10001)}))
    assert "candidate" not in out and "ice-" not in out
    assert "192.0.2.2" not in out and "10.213." not in out  # no phone address leaks
    assert f"a=rtcp:10001 IN IP4 {RELAY}\r\n" in out
    assert out.count(f"c=IN IP4 {RELAY}") == 2  # session and media level
    (stream,) = SessionDescription.parse(out).streams()
    assert (stream.host, stream.port, stream.rtcp_host, stream.rtcp_port) == (
        RELAY, 10000, RELAY, 10001)


def test_rewrite_adds_rtcp_attribute_when_rtcp_is_not_next_port():
    out = rewrite(SessionDescription.parse(ALL_BODIES["sipp"]), RELAY, {0: (10000, 10011)})
    text = str(out)
    assert "m=audio 10000 RTP/AVP 0\r\na=rtcp:10011\r\na=rtpmap:0 PCMU/8000\r\n" in text
    assert out.streams()[0].rtcp_port == 10011


def test_rewrite_keeps_rejected_streams_rejected_and_disables_unrelayed_ones():
    answer = RFC3264_ANSWER.replace(b"m=video 49170 RTP/AVP 32", b"m=video 0 RTP/AVP 32")
    out = rewrite(SessionDescription.parse(answer), RELAY, {0: 10000, 1: 10002})
    assert [(s.media, s.port) for s in out.streams()] == [("audio", 10000), ("video", 0)]
    # An m= line the relay does not carry is disabled, so no media bypasses it.
    out = rewrite(SessionDescription.parse(RFC3264_OFFER), RELAY, {0: 10000})
    assert [(s.media, s.port) for s in out.streams()] == [("audio", 10000), ("video", 0)]
    assert "host.atlanta" not in str(out)


def test_rewrite_keeps_legacy_hold_address():
    out = rewrite(SessionDescription.parse(LEGACY_HOLD), RELAY, {0: 10000})
    assert "c=IN IP4 0.0.0.0\r\n" in str(out)
    assert f"o=- 8000 8001 IN IP4 {RELAY}\r\n" in str(out)
    assert out.streams()[0].relay_direction == "sendonly"


def test_rewrite_keeps_direction_attributes():
    out = rewrite(SessionDescription.parse(HOLD_OFFER), RELAY, {0: 10000})
    assert out.streams()[0].direction == "sendonly"


def test_rewrite_to_ipv6_address():
    out = str(rewrite(SessionDescription.parse(ALL_BODIES["sipp"]), "2001:db8::5", {0: 10000}))
    assert "c=IN IP6 2001:db8::5\r\n" in out and "IN IP6 2001:db8::5\r\n" in out.split("s=")[0]


def test_rewrite_is_byte_exact_when_nothing_needs_changing():
    once = rewrite(SessionDescription.parse(ALL_BODIES["baresip_ice"]), RELAY, {0: 10000})
    assert bytes(rewrite(once, RELAY, {0: 10000})) == bytes(once)


def test_origin_version_follows_content_changes():
    """RFC 3264 §8: the version rises when, and only when, the description changes."""
    first = rewrite(SessionDescription.parse(ALL_BODIES["baresip"]), RELAY, {0: 10000})
    # The phone refreshes the session with the same description: same o=.
    same = rewrite(SessionDescription.parse(ALL_BODIES["baresip"]), RELAY, {0: 10000},
                   previous=first)
    assert same.origin == first.origin and bytes(same) == bytes(first)
    # The phone puts the call on hold and raises its version: ours rises by one.
    held_body = ALL_BODIES["baresip"].replace(b"a=sendrecv", b"a=sendonly").replace(
        b"708688485", b"708688486")
    held = rewrite(SessionDescription.parse(held_body), RELAY, {0: 10000}, previous=first)
    assert held.origin.sess_version == first.origin.sess_version + 1
    assert held.origin.sess_id == first.origin.sess_id
    # Our side changes (another relay port) while the phone's body does not: still raised.
    moved = rewrite(SessionDescription.parse(held_body), RELAY, {0: 10004}, previous=held)
    assert moved.origin.sess_version == held.origin.sess_version + 1
    # A different phone's description on the same dialog keeps our username and sess-id.
    other = rewrite(SessionDescription.parse(RFC3264_ANSWER), RELAY, {0: 10004, 1: 10006},
                    previous=moved)
    assert (other.origin.username, other.origin.sess_id) == ("-", "1266039616")
    assert other.origin.sess_version > moved.origin.sess_version


# --- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize("body, message", [
    (b"", "must start with v="),
    (b"o=- 1 1 IN IP4 1.2.3.4\r\nv=0\r\n", "must start with v="),
    (b"v=1\r\no=- 1 1 IN IP4 1.2.3.4\r\n", "unsupported SDP version"),
    (b"v=0\r\ns=-\r\n", "no o= line"),
    (b"v=0\r\no=- x 1 IN IP4 1.2.3.4\r\n", "malformed o= line"),
    (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN\r\n", "malformed c= line"),
    (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio port RTP/AVP 0\r\n", "malformed m= line"),
    (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 70000 RTP/AVP 0\r\n", "out of range"),
    (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 0\r\na=rtcp:x\r\n",
     "malformed a=rtcp"),
    (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nhello\r\n", "not an SDP line"),
    # Numbers of thousands of digits are refused, not handed to int().
    (b"v=0\r\no=- 1 " + b"9" * 5000 + b" IN IP4 1.2.3.4\r\n", "malformed o= line"),
    (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio " + b"9" * 5000 + b" RTP/AVP 0\r\n",
     "malformed m= line"),
    (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 4000/" + b"9" * 5000 + b" RTP/AVP 0\r\n",
     "malformed m= line"),
    (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 0\r\na=rtcp:" + b"9" * 5000
     + b"\r\n", "malformed a=rtcp"),
])
def test_malformed_bodies_raise_sdp_error(body, message):
    with pytest.raises(SdpError, match=message) as raised:
        SessionDescription.parse(body)
    assert raised.value.status == 400


def test_fuzz_contract_truncated_and_mutated_bodies():
    """Every prefix and single-byte mutation of a real body parses or raises SdpError."""
    body = ALL_BODIES["baresip_ice"]
    for end in range(len(body) + 1):
        try:
            bytes(SessionDescription.parse(body[:end]))
        except SdpError:
            pass
    for position in range(0, len(body), 3):
        for value in (0x00, 0x20, 0x2F, 0x3D, 0x0A, 0xFF):
            mutated = body[:position] + bytes([value]) + body[position + 1:]
            try:
                sdp = SessionDescription.parse(mutated)
                sdp.streams()
                rewrite(sdp, RELAY, {0: 10000})
            except SdpError:
                pass


def test_huge_rtpmap_numbers_are_left_out_not_an_error():
    body = ALL_BODIES["sipp"].replace(b"a=rtpmap:0 PCMU/8000", b"a=rtpmap:" + b"9" * 5000 + b" X/8000")
    assert SessionDescription.parse(body).streams()[0].rtpmap == {}


def test_unparseable_rtpmap_is_left_out_not_an_error():
    body = crlf("""
v=0
o=- 1 1 IN IP4 10.0.0.1
s=-
c=IN IP4 10.0.0.1
t=0 0
m=audio 4000 RTP/AVP 0 96
a=rtpmap:0 PCMU/8000
a=rtpmap:96 weird
""")
    (stream,) = SessionDescription.parse(body).streams()
    assert set(stream.rtpmap) == {0}


# -- a transfer offers the remaining party's description with a new direction ----------------


@pytest.mark.parametrize("before", ["sendrecv", "recvonly", "inactive", None])
def test_with_direction_makes_every_stream_sendrecv(before):
    body = body_of("invite_baresip_1.0.0.sip").replace(b"a=sendrecv\r\n", b"")
    if before:
        body = body.replace(b"a=label:1", f"a={before}\r\na=label:1".encode())
    sdp = SessionDescription.parse(b"v=0\r\n" + body.split(b"\r\n", 1)[1])
    out = with_direction(sdp, "sendrecv")
    assert [stream.direction for stream in out.streams()] == ["sendrecv"]
    text = bytes(out).decode()
    assert text.count("a=sendrecv") == 1 and "a=recvonly" not in text and "inactive" not in text
    assert text.endswith("a=ptime:20\r\na=sendrecv\r\n")
    # everything else byte for byte
    assert [line for line in bytes(out).split(b"\r\n") if b"a=sendrecv" not in line] == [
        line for line in bytes(sdp).split(b"\r\n")
        if line.strip() not in (f"a={before}".encode(), b"a=sendrecv")]


def test_with_direction_replaces_the_session_level_one_and_keeps_disabled_streams():
    sdp = SessionDescription.parse(crlf("""
v=0
o=- 1 2 IN IP4 192.0.2.1
s=-
c=IN IP4 192.0.2.1
t=0 0
a=sendonly
m=audio 4000 RTP/AVP 0
m=video 0 RTP/AVP 31
a=inactive
""").rstrip(b"\r\n"))  # a body whose last line has no line end
    out = with_direction(sdp, "sendrecv")
    assert [s.direction for s in out.streams()] == ["sendrecv", "inactive"]
    assert "a=sendonly" not in str(out)
    assert "m=audio 4000 RTP/AVP 0\r\na=sendrecv\r\nm=video" in str(out)
    with pytest.raises(ValueError):
        with_direction(sdp, "both")
    last = SessionDescription.parse(b"v=0\r\no=- 1 2 IN IP4 h\r\ns=-\r\nt=0 0\r\n"
                                    b"m=audio 4000 RTP/AVP 0")
    assert str(with_direction(last, "sendrecv")).endswith("RTP/AVP 0\r\na=sendrecv\r\n")
