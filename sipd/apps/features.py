"""Feature codes dialled from a phone: *78 / *79 DND on / off, *72NUMBER / *73 forward
always on / off (the codes FreePBX and FusionPBX users know).

The routing step turns the dialled code into a `Feature` step (sipd/routing/
decide.py); this writes the change, as the panel or pbxctl would (the same
checks, core/forwarding.py, and an audit row naming the phone), and says how
it went: (200, "OK") or a status and reason phrase for the caller's phone
(403 with why, 503 if the database stayed locked). Until the PBX can play a
prompt, the B2BUA answers a success and hangs up, and sends a failure as the
final response.
"""

from __future__ import annotations

import logging
import sqlite3

import peewee

from core import audit, forwarding
from core.accounts import AccountError
from core.models import Extension, db
from sipd import dblock
from sipd.routing.plan import Feature

log = logging.getLogger("sipd")

# What each code does, as the audit log and sipd's log say it.
DONE = {
    "dnd_on": "do not disturb on",
    "dnd_off": "do not disturb off",
    "forward_on": "forward always to {argument}",
    "forward_off": "forward always off",
}


def carry_out(step: Feature) -> tuple[int, str]:
    what = DONE[step.code].format(argument=step.argument)
    try:
        # The write lock is taken on the event loop (sipd/dblock.py), and the
        # change and its audit row are one transaction.
        with dblock.transaction(db.connection()):
            extension = Extension.by_number(step.caller)
            if extension is None:
                return 403, "Forbidden: feature codes are for extensions"
            fields = _fields(extension, step)
            before = forwarding.describe(extension) or "none"
            Extension.update(**fields).where(Extension.id == extension.id).execute()
            after = forwarding.describe(Extension.by_number(step.caller)) or "none"
            action = "extension.dnd" if step.code.startswith("dnd") else "extension.forward"
            audit.record(f"phone:{step.caller}", action, step.caller, "feature code",
                         f"{before} -> {after}")
    except AccountError as error:
        reason = str(error)
        log.info("Feature code from %s refused: %s", step.caller, reason)
        return 403, f"Forbidden: {reason}"[:120]
    except (dblock.Unavailable, peewee.DatabaseError, sqlite3.DatabaseError) as error:
        log.warning("Feature code from %s not stored: %s", step.caller, error)
        return 503, "Service Unavailable: the database is busy, try again"
    log.info("Extension %s: %s (feature code)", step.caller, what)
    return 200, "OK"


def _fields(extension: Extension, step: Feature) -> dict:
    if step.code == "dnd_on":
        return {"dnd": True}
    if step.code == "dnd_off":
        return {"dnd": False}
    if step.code == "forward_on":
        return forwarding.forward_fields(extension, "always", step.argument)
    return {"forward_always": ""}
