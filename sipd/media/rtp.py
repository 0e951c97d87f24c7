"""Is a datagram RTP or RTCP? The relay's first question about every packet.

Pure: bytes and a size in, True or False out. The relay (server.py) asks it
before anything else and drops what fails, so a relay port carries RTP and
RTCP only: a SIP request, a DNS query or any other protocol sent to it is
never forwarded to the other phone's address (docs/security.md, probe
finding 1). SRTP and SRTCP (RFC 3711) keep these headers in the clear and pass.

The checks (RFC 3550):
- §5.1 and §6.4.1: the first two bits are the version, 2.
- RTCP from RTP on the same port (rtcp-mux, RFC 5761 §4): the second byte of
  RTCP is its packet type (SR 200, RR 201, SDES 202, BYE 203, APP 204, the
  feedback types 205/206 of RFC 4585, XR 207 of RFC 3611...); RTP's is the
  marker bit and the payload type. RFC 5761 §4 keeps payload types 64-95 out
  of muxed streams so that a second byte of 192-223 always means RTCP.
- RTCP (§6.4.1): at least 8 bytes (an RR without report blocks, §6.4.2), and
  the first packet's length field (its 32-bit words minus one) fits in the
  datagram. Accepted on both ports: on the RTP port it is muxed RTCP.
- RTP (§5.1): only on the RTP port; the 12-byte fixed header and the CSRC
  identifiers its CC field counts fit in the datagram.

Deliberately not relayed: STUN, DTLS and ZRTP (RFC 7983 §7 tells them apart by
their first byte): sipd rewrites SDP to the relay and does not negotiate ICE or
DTLS-SRTP end to end, so such packets have no use at the other phone.

Per packet this is a few integer comparisons on bytes already in memory: the
relay's hot path stays a couple of byte tests, a tuple comparison and a set
lookup (docs/benchmarks.md measures it).
"""

from __future__ import annotations

RTP = 0
RTCP = 1

MIN_RTCP = 8  # RFC 3550 §6.4.2: an RR with no report blocks
MIN_RTP = 12  # RFC 3550 §5.1: the fixed header
RTCP_TYPES = (192, 223)  # RFC 5761 §4: second bytes that are RTCP, not RTP


def is_media(data, size: int, kind: int) -> bool:
    """True if the first `size` bytes of `data` are an RTP packet (only when `kind`
    is RTP: it came to an RTP port) or an RTCP packet (either port)."""
    if size < MIN_RTCP or data[0] & 0xC0 != 0x80:
        return False
    if 192 <= data[1] <= 223:
        return ((data[2] << 8 | data[3]) + 1) * 4 <= size
    return kind == RTP and size >= MIN_RTP + 4 * (data[0] & 0x0F)
