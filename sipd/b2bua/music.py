"""Music on hold: while one phone holds the call (its SDP says sendonly or
inactive, RFC 3264 §8.4), the other phone hears music from the PBX's own
endpoint (sipd/media/endpoint.py) on its relay leg instead of the silence the
holding phone sends, until the call is resumed.

`changed(call, leg)` is called whenever a leg's phone declares a direction
(bridge.py `declared`). The held phone is the other leg's: the endpoint is
attached to that leg in the media process, in the held phone's codec (PCMU or
PCMA, the first of them in what it last sent; another codec hears no music,
and the log says so), and plays on a loop the music the admin chose in the
panel's library (core/music.py: a Setting row read at that moment, so a new
choice needs no restart), else PBX_MOH_FILE (by default the tune shipped in
sipd/media/sounds/, made by tools/make_moh.sh). When the holding
phone resumes (sendrecv or recvonly), the endpoint is detached and the relay
forwards both ways again. Whatever the relay says, the call goes on: music is
a nicety, never a reason to fail a hold.
"""

from __future__ import annotations

import logging

from core import music as library
from sipd.b2bua.media import audio

log = logging.getLogger("sipd")

HOLDING = ("sendonly", "inactive")


class Music:
    __slots__ = ("owner", "file", "sounds_dir")

    def __init__(self, owner, file: str | None, sounds_dir: str | None = None):
        self.owner = owner  # the B2BUA
        self.file = file  # PBX_MOH_FILE; None or "": no music on hold at all
        self.sounds_dir = sounds_dir  # where the admin's library is (core/music.py)

    def changed(self, call, leg) -> None:
        held = leg.other
        if held is None or not self.file or call.app is not None:
            return
        playing = call.music if call.music is not None else set()
        if leg.direction in HOLDING and held.name not in playing:
            self._start(call, leg, held, playing)
        elif leg.direction not in HOLDING and held.name in playing:
            self._stop(call, held, playing)

    def _start(self, call, holder, held, playing: set) -> None:
        relay = self.owner.relay
        stream = audio(held.sdp) if held.sdp is not None else None
        laws = [int(f) for f in (stream.formats if stream else ()) if f in ("0", "8")]
        if not laws:
            log.info("Call %s -> %s: no music on hold for the %s (no PCMU or PCMA)",
                     call.caller_number, call.callee, held.role)
            return
        try:
            relay.endpoint(call.media, "endpoint", leg=held.name, payload_type=laws[0],
                           event_type=None)
            music, why = library.playing(self.sounds_dir, self.file)
            if why:
                log.warning("Call %s -> %s: music on hold: %s; playing %s",
                            call.caller_number, call.callee, why, music)
            relay.endpoint(call.media, "play", leg=held.name, files=[music], loop=True)
        except Exception as error:
            log.warning("Call %s -> %s: no music on hold for the %s: %s",
                        call.caller_number, call.callee, held.role, error)
            try:
                relay.endpoint(call.media, "detach", leg=held.name)
            except Exception:
                pass
            return
        playing.add(held.name)
        call.music = playing
        log.info("Call %s -> %s: the %s holds; the %s hears music on hold",
                 call.caller_number, call.callee, holder.role, held.role)

    def _stop(self, call, held, playing: set) -> None:
        playing.discard(held.name)
        try:
            self.owner.relay.endpoint(call.media, "detach", leg=held.name)
        except Exception as error:
            log.warning("Call %s -> %s: music on hold not stopped: %s",
                        call.caller_number, call.callee, error)
        log.info("Call %s -> %s: resumed; music on hold for the %s ends",
                 call.caller_number, call.callee, held.role)
