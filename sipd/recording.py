"""Recording calls of the extensions that have it on (core/recording.py), and
of the routes that do (migration 0018: an inbound route's calls, an outbound
route's; `call.recorded_by` names the route): when a call is answered
(bridge.py `connect`) and its route, its caller or the extension that answered
records its calls, the media process is told to tap the
call's relay session (op "tap", sipd/media/endpoint.py Tap): what each phone
sends, caller left, the other right, one stereo WAV written when the call
ends, under PBX_RECORDING_DIR as YYYY/MM/DD/ROWID-CALLER-CALLEE.wav, named
on the call's row. `cleanup` removes the recordings older than
PBX_RECORDING_DAYS (sipd runs it hourly)."""

from __future__ import annotations

import logging
import os
import re
import time

import peewee

from core import recording
from core.models import db
from sipd import dblock

log = logging.getLogger("sipd")
_UNSAFE = re.compile(r"[^0-9A-Za-z+*#_-]")


class Recorder:
    __slots__ = ("owner", "directory")

    def __init__(self, owner, directory: str | None):
        self.owner = owner  # the B2BUA
        self.directory = directory  # None: calls are never recorded

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
