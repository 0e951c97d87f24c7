"""Recording calls of the extensions that have it on (core/recording.py), and
of the routes that do (migration 0018: an inbound route's calls, an outbound
route's; `call.recorded_by` names the route): when a call is answered
(bridge.py `connect`) and its route, its caller or the extension that answered
records its calls, the media process is told to tap the
call's relay session (op "tap", sipd/media/endpoint.py Tap): what each phone
sends, caller left, the other right, one stereo WAV written when the call
ends, under PBX_RECORDING_DIR as YYYY/MM/DD/ROWID-CALLER-CALLEE.wav, named
on the call's row. `cleanup` removes the recordings older than
PBX_RECORDING_DAYS (sipd runs it hourly).

With PBX_RECORDING_ANNOUNCE (where the law asks for it), both phones then hear
"This call is recorded" (the prompt call-recorded, in that language; an
admin's upload replaces it): the PBX's endpoint is attached to each leg, as for
music on hold, plays the prompt, and is detached once it has played (on the
B2BUA's scheduler); the phones hear each other from then on."""

from __future__ import annotations

import logging
import os
import re
import time

import peewee

from core import prompts, recording
from core.models import db
from sipd import dblock
from sipd.media import wav

log = logging.getLogger("sipd")
_UNSAFE = re.compile(r"[^0-9A-Za-z+*#_-]")


# After the prompt's length, the endpoints stay this much longer: the media
# process paces the prompt from the moment it was asked to.
ANNOUNCE_MARGIN = 0.2


class Recorder:
    __slots__ = ("owner", "directory", "announce")

    def __init__(self, owner, directory: str | None, announce=None):
        self.owner = owner  # the B2BUA
        self.directory = directory  # None: calls are never recorded
        # announce() -> the prompt's path, or None: not announced (PBX_RECORDING_ANNOUNCE)
        self.announce = announce

    def answered(self, call, leg) -> None:
        if not self.directory:
            return
        numbers = (call.caller_number, getattr(leg, "extension", ""))
        if not call.recorded_by:  # else its route records every call it carries
            try:
                if not recording.recorded(numbers):
                    return
            except (peewee.DatabaseError, OSError) as error:
                log.warning("Call %s -> %s: recording setting not read: %s",
                            call.caller_number, call.callee, error)
                return
        day = time.strftime("%Y/%m/%d", time.gmtime(self.owner.clock()))
        name = (f"{day}/{call.record_id}-{_UNSAFE.sub('_', call.caller_number)}"
                f"-{_UNSAFE.sub('_', call.callee)}.wav")
        try:
            self.owner.relay.endpoint(call.media, "tap", path=os.path.join(self.directory, name))
        except Exception as error:
            log.error("Call %s -> %s: not recorded: %s", call.caller_number, call.callee, error)
            return
        self.owner.history.recording(call.record_id, name)
        log.info("Call %s -> %s is recorded (%s%s)", call.caller_number, call.callee, name,
                 f", by its {call.recorded_by}" if call.recorded_by else "")
        self._announce(call, leg)

    def _announce(self, call, leg) -> None:
        """Both phones hear that the call is recorded (PBX_RECORDING_ANNOUNCE). Whatever
        the relay says, the call goes on: it is recorded either way."""
        path = self.announce() if self.announce is not None else None
        if not path:
            return
        try:
            seconds = wav.read(path).seconds
        except (wav.WavError, OSError) as error:
            log.warning(
                "Call %s -> %s: recording not announced: %s", call.caller_number, call.callee, error
            )
            return
        from sipd.b2bua.media import audio  # noqa: PLC0415 - the b2bua imports this module

        relay, attached = self.owner.relay, []
        for each in (leg.other, leg):
            stream = audio(each.sdp) if each is not None and each.sdp is not None else None
            laws = [int(f) for f in (stream.formats if stream else ()) if f in ("0", "8")]
            if not laws:
                continue
            try:
                relay.endpoint(
                    call.media, "endpoint", leg=each.name, payload_type=laws[0], event_type=None
                )
                attached.append(each.name)
                relay.endpoint(call.media, "play", leg=each.name, files=[path])
            except Exception as error:
                log.warning(
                    "Call %s -> %s: recording not announced to leg %s: %s",
                    call.caller_number,
                    call.callee,
                    each.name,
                    error,
                )
        if attached:
            self.owner.scheduler.call_later(
                seconds + ANNOUNCE_MARGIN, self._announced, call, attached
            )
            log.info(
                'Call %s -> %s: "this call is recorded" played to leg %s',
                call.caller_number,
                call.callee,
                " and ".join(attached),
            )

    def _announced(self, call, legs) -> None:
        for name in legs:
            if call.music and name in call.music:  # on hold meanwhile: the music stays
                continue
            try:
                self.owner.relay.endpoint(call.media, "detach", leg=name)
            except Exception as error:  # the call ended meanwhile
                log.debug(
                    "Call %s -> %s: announcement not detached from leg %s: %s",
                    call.caller_number,
                    call.callee,
                    name,
                    error,
                )


def announcer(settings):
    """Recorder's announce for the daemon: the prompt's path, read at each call (an
    upload replaces it at once), or None without PBX_RECORDING_ANNOUNCE."""
    if not settings.recording_announce:
        return None
    return lambda: str(prompts.path("call-recorded", settings.recording_announce, settings))


def cleanup(directory: str, days: int, now: float | None = None) -> int:
    """Remove the recordings older than `days` days; how many went."""
    names = recording.expired(directory, days, now if now is not None else time.time())
    if not names:
        return 0
    try:
        with dblock.transaction(db.connection()):
            removed = recording.remove(directory, names)
    except (dblock.Unavailable, peewee.DatabaseError) as error:
        log.warning("Recordings older than %d days not removed: %s", days, error)
        return 0
    log.info("Removed %d recording(s) older than %d days (PBX_RECORDING_DAYS)", removed, days)
    return removed
