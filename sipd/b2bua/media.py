"""A call's audio through the media relay (sipd.media), as the B2BUA sees it.

Media never flows phone to phone: every SDP is rewritten to the relay, which
latches onto where packets really come from (RFC 4961 symmetric RTP), so
phones behind NAT get two-way audio. The relay's session has two legs, named
"A" (the caller's side) and "B" (the callee's: every branch of every ring step
offers the same B ports, whichever phone answers).
"""

from __future__ import annotations

import logging

from sipd.sip.sdp import SdpError, SessionDescription, rewrite

log = logging.getLogger("sipd")


class Media:
    """The relay calls of the B2BUA: apply a leg's SDP, rewrite one for a leg."""

    __slots__ = ("relay",)

    def __init__(self, relay):
        self.relay = relay

    def apply(self, call, leg, description: SessionDescription | None):
        """Tell the relay where `leg`'s phone wants its audio, in which direction,
        and the address its signalling uses (`leg.destination`): the relay
        latches the leg only to packets from there or from the SDP's address
        (sipd/media/session.py). Returns the audio stream (None: none)."""
        if description is None:
            return None
        leg.sdp = description
        stream = audio(description)
        if stream is None:
            return None
        try:
            self.relay.apply_stream(call.media, leg.name, stream, source=leg.destination.host)
        except Exception as error:  # the relay restarted: the call has lost its media
            log.warning("Call %s -> %s: media relay: %s", call.caller_number, call.callee, error)
        return stream

    def sdp_for(self, call, description: SessionDescription, name: str) -> bytes:
        """`description` as the phone on relay leg `name` must see it: the relay's
        address and that leg's ports for the audio stream; anything else goes
        out disabled."""
        stream = audio(description)
        ports = {}
        if stream is not None:
            ports[stream.index] = call.media.leg(name).local_rtp_port
        return bytes(rewrite(description, self.relay.address, ports))

    def offer_b(self, call) -> bytes:
        """What every callee is offered on leg B: the caller's offer, or, for a
        call an application handed on (handover.py), only the law the caller
        agreed on with the PBX's endpoint and telephone-event, so that the
        callee's answer fits the caller as it is (no re-INVITE)."""
        handover = call.handover
        if handover is None:
            return self.sdp_for(call, call.offer, "B")
        port = call.media.leg("B").local_rtp_port
        law, event = handover.payload_type, handover.event_type
        lines = [*self._session_lines(call, 1),
                 f"m=audio {port} RTP/AVP {law}" + (f" {event}" if event is not None else ""),
                 f"a=rtpmap:{law} {'PCMU' if law == 0 else 'PCMA'}/8000"]
        if event is not None:  # only if the caller has it (RFC 4733 §7.1.1)
            lines += [f"a=rtpmap:{event} telephone-event/8000", f"a=fmtp:{event} 0-16"]
        return _body([*lines, "a=ptime:20", "a=sendrecv"])

    def answer_for(self, call, offer: SessionDescription, name: str = "A",
                   formats: list[str] | None = None) -> bytes:
        """An answer of our own to an offer (RFC 3264 §6), with the relay's leg
        `name` ports: for a call the PBX answers itself (a feature code), or an
        early offer answered with the `formats` (of the offer's) both phones use
        already (early.py). The audio stream keeps the offer's formats (or
        those) and answers its direction; any other stream is rejected (port 0),
        the audio too when none of `formats` is left."""
        lines = self._session_lines(call, 1)
        chosen = audio(offer)
        for stream in offer.streams():
            offered = " ".join(stream.formats)
            kept = stream.formats if formats is None or stream is not chosen else formats
            if stream is not chosen or not stream.port or not kept:
                lines.append(f"m={stream.media} 0 {stream.proto} {offered}")
                continue
            port = call.media.leg(name).local_rtp_port
            lines.append(f"m=audio {port} {stream.proto} {' '.join(kept)}")
            for payload_type in sorted(stream.rtpmap):
                if str(payload_type) not in kept:
                    continue
                mapping = stream.rtpmap[payload_type]
                channels = f"/{mapping.parameters}" if mapping.parameters else ""
                lines.append(
                    f"a=rtpmap:{payload_type} {mapping.encoding}/{mapping.clock_rate}{channels}"
                )
            lines.append("a=" + _ANSWER_DIRECTION.get(stream.direction, "sendrecv"))
        return _body(lines)

    def offer_for(self, call, name: str, version: int = 1) -> bytes:
        """An offer of our own on relay leg `name` (RFC 3264 §5), for a phone
        that sent no offer: an INVITE without SDP (delayed offer, RFC 3261
        §13.2.1), whose callees are offered this on leg B, or a re-INVITE
        without SDP answered with it on that phone's leg. G.711 both laws and
        RFC 4733 telephone-event, which the relay carries without reading."""
        port = call.media.leg(name).local_rtp_port
        return _body([
            *self._session_lines(call, version), f"m=audio {port} RTP/AVP 0 8 101",
            "a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000", "a=rtpmap:101 telephone-event/8000",
            "a=fmtp:101 0-16", "a=ptime:20", "a=sendrecv",
        ])

    def _session_lines(self, call, version: int) -> list[str]:
        """The session-level lines of an SDP of ours (RFC 4566 §5): the relay's
        address as origin and connection, one session per call."""
        address = self.relay.address
        family = "IP6" if ":" in address else "IP4"
        return ["v=0", f"o=pbx-sipd {call.record_id} {version} IN {family} {address}",
                "s=pbx-sipd", f"c=IN {family} {address}", "t=0 0"]

    def endpoint_answer(self, call, offer: SessionDescription,
                        prefer: int | None = None) -> tuple[bytes, int, int | None] | None:
        """The answer of the PBX's own endpoint (sipd/media/endpoint.py) on leg A
        to the caller's offer (RFC 3264 §6.1): one of G.711's laws (`prefer`
        if offered, else the caller's first), and telephone-event (RFC 4733
        §7.1.1) if offered. (body, payload type, event type); None when the
        offer has no audio in PCMU or PCMA."""
        chosen = audio(offer)
        if chosen is None or not chosen.port:
            return None
        laws = [int(f) for f in chosen.formats if f.isdigit() and _g711(chosen, int(f))]
        if not laws:
            return None
        payload_type = prefer if prefer in laws else laws[0]
        events = [pt for pt, mapping in chosen.rtpmap.items()
                  if mapping.encoding.lower() == "telephone-event" and mapping.clock_rate == 8000]
        event_type = events[0] if events else None
        lines = self._session_lines(call, 1)
        for stream in offer.streams():
            if stream is not chosen:
                lines.append(f"m={stream.media} 0 {stream.proto} {' '.join(stream.formats)}")
                continue
            port = call.media.leg("A").local_rtp_port
            formats = f"{payload_type}" + (f" {event_type}" if event_type is not None else "")
            lines += [f"m=audio {port} {stream.proto} {formats}",
                      f"a=rtpmap:{payload_type} {'PCMU' if payload_type == 0 else 'PCMA'}/8000"]
            if event_type is not None:
                lines += [f"a=rtpmap:{event_type} telephone-event/8000",
                          f"a=fmtp:{event_type} 0-15"]
            lines += ["a=ptime:20", "a=" + _ANSWER_DIRECTION.get(stream.direction, "sendrecv")]
        return _body(lines), payload_type, event_type

    def close(self, call) -> None:
        self.relay.close_session(call.media, wait=False)


def _g711(stream, payload_type: int) -> bool:
    """PCMU (0) or PCMA (8): by their static numbers (RFC 3551 §6), unless an
    rtpmap gives the number another codec."""
    mapping = stream.rtpmap.get(payload_type)
    if mapping is not None:
        return mapping.encoding.upper() in ("PCMU", "PCMA") and payload_type in (0, 8)
    return payload_type in (0, 8)


def _body(lines: list[str]) -> bytes:
    return ("\r\n".join(lines) + "\r\n").encode()


def parsed(body: bytes) -> SessionDescription | None:
    """The SDP a message carries; None when it has none or it cannot be read
    (the caller then acts as for a missing one)."""
    if not body:
        return None
    try:
        return SessionDescription.parse(body)
    except SdpError:
        return None


# RFC 3264 §6.1: the answer's direction for each direction offered.
_ANSWER_DIRECTION = {"sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}


def audio(description: SessionDescription):
    for stream in description.streams():
        if stream.media == "audio":
            return stream
    return None


def direction(stream) -> str:
    """The direction the relay is given for this stream (RFC 3264 §6.1, §8.4):
    a disabled stream (port 0) carries nothing."""
    return stream.relay_direction if stream.port else "inactive"


def held_both_ways(a: str, b: str) -> bool:
    """No RTP may flow in either direction (RFC 3264 §6.1): A to B needs A to
    send and B to receive, and the other way round. A one-way hold (sendonly
    answered with recvonly) still carries the held party's music or silence."""
    sends = ("sendrecv", "sendonly")
    receives = ("sendrecv", "recvonly")
    a_to_b = a in sends and b in receives
    b_to_a = b in sends and a in receives
    return not a_to_b and not b_to_a


def codec(description: SessionDescription) -> str:
    stream = audio(description)
    if stream is None or not stream.formats:
        return ""
    first = stream.formats[0]
    if first.isdigit() and int(first) in stream.rtpmap:
        mapping = stream.rtpmap[int(first)]
        return f"{mapping.encoding}/{mapping.clock_rate}"
    return {"0": "PCMU/8000", "8": "PCMA/8000", "9": "G722/8000", "18": "G729/8000"}.get(
        first, first
    )
