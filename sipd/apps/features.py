"""Feature codes dialled from a phone (*78, *79, *72NUMBER, *73), carried out.

The routing step (sipd/routing/decide.py) turns the code into a `Feature` step;
the B2BUA calls `carry_out` and answers the call with the result: 200 (answered,
then ended: the PBX plays no audio yet) or 403 with the reason. The change is
written by core/forwarding.py, the same operations as pbxctl and the panel, in
a transaction that waits for the write lock on the event loop, like every sipd
write (sipd/dblock.py), with its audit row (actor "phone:NUMBER").
"""

from __future__ import annotations

import logging
import sqlite3

import peewee

from core import audit, forwarding
from core.accounts import AccountError
from core.models import db
from sipd import dblock
from sipd.routing.plan import Feature

log = logging.getLogger("sipd")


def _dnd_on(step: Feature) -> str:
    forwarding.set_dnd(step.caller, True)
    return "do not disturb on"


def _dnd_off(step: Feature) -> str:
    forwarding.set_dnd(step.caller, False)
    return "do not disturb off"


def _forward_on(step: Feature) -> str:
    extension = forwarding.set_forward(step.caller, "always", step.argument)
    return f"calls forwarded to {extension.forward_always}"


def _forward_off(step: Feature) -> str:
    forwarding.clear_forward(step.caller, "always")
    return "forward always off"


CODES = {
    "dnd_on": (_dnd_on, "extension.dnd"),
    "dnd_off": (_dnd_off, "extension.dnd"),
    "forward_on": (_forward_on, "extension.forward"),
    "forward_off": (_forward_off, "extension.forward"),
}


def _phrase(text: str) -> str:
    """A reason phrase (RFC 3261 §25.1 Reason-Phrase: no CR or LF), kept short."""
    text = " ".join(str(text).split())
    return text if len(text) <= 120 else text[:117] + "..."


def carry_out(step: Feature, source: str = "") -> tuple[int, str]:
    """Do what `step` asks; (status, reason phrase) to answer the call with.
    `source`: where the phone called from, for the audit log."""
    if step.code not in CODES:
        return 484, "Address Incomplete: unknown feature code"
    action, audited = CODES[step.code]
    try:
        with dblock.transaction(db.connection()):
            done = action(step)
            audit.record(f"phone:{step.caller}", audited, step.caller, source, done)
    except AccountError as error:
        log.info("Feature %s of %s refused: %s", step.code, step.caller, error)
        return 403, _phrase(f"Forbidden: {error}")
    except dblock.Unavailable as error:
        log.warning("Feature %s of %s not carried out: %s", step.code, step.caller, error)
        return 503, "Service Unavailable: database busy, try again"
    except (peewee.DatabaseError, sqlite3.DatabaseError) as error:
        log.error("Feature %s of %s not carried out: %s", step.code, step.caller, error)
        return 503, "Service Unavailable: database error"
    log.info("Extension %s: %s (feature code)", step.caller, done)
    return 200, _phrase(f"OK: {done}")
