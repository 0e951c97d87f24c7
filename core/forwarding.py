"""Call forwarding and do-not-disturb per extension (issue 11, item 4): the
operations pbxctl, the panel and the phone's feature codes (sipd/apps/features.py)
share.

Kinds of forward: always (the phone never rings), busy (also where DND sends
callers), no_answer (after `forward_no_answer_after` seconds of ringing) and
unavailable (nothing registered). Each leads to a destination as
core/destinations.py names them; "" is none. Every operation checks first and
writes in one transaction (core/database.py `atomic`, which joins sipd's);
errors are `AccountError` with a message fit to show a person.
"""

from __future__ import annotations

import time

from core import destinations
from core.accounts import AccountError, get_extension
from core.database import atomic
from core.models import Extension
from core.text import N_, Text

KINDS = ("always", "busy", "no_answer", "unavailable")
FIELDS = {kind: f"forward_{kind}" for kind in KINDS}
# Seconds a phone rings before a no-answer forward: less than 5 s is not enough to
# reach the phone, and after two minutes the caller has given up.
AFTER = (5, 120)


def check_kind(kind: str) -> str:
    value = (kind or "").strip().lower().replace("-", "_")
    if value not in KINDS:
        raise AccountError(Text(
            N_("kind of forward must be always, busy, no-answer or unavailable, got %(text)r"),
            text=kind or ""))
    return value


def check_after(value) -> int:
    text = str(value).strip() if value is not None else ""
    low, high = AFTER
    if not text.isascii() or not text.isdigit() or not low <= int(text) <= high:
        raise AccountError(Text(
            N_("no-answer time must be %(low)s to %(high)s seconds, got %(text)r"),
            low=low, high=high, text=text))
    return int(text)


def check_destination(number: str, destination: str) -> str:
    """`destination` as stored, if it exists and does not lead straight back to `number`."""
    if not (destination or "").strip():
        raise AccountError(Text(N_("give the destination to forward to")))
    try:
        return destinations.check(destination, not_to=number)
    except destinations.DestinationError as error:
        raise AccountError(error.args[0]) from None


def set_forward(number: str, kind: str, destination: str, after=None) -> Extension:
    """Forward `number`'s calls of `kind` to `destination`; `after`: with no_answer,
    the seconds of ringing first (None: unchanged)."""
    kind = check_kind(kind)
    if after is not None and kind != "no_answer":
        raise AccountError(Text(N_("a ring time applies only to the no-answer forward")))
    fields = {"updated_at": time.time()}
    if after is not None:
        fields["forward_no_answer_after"] = check_after(after)
    with atomic():
        extension = get_extension(number)
        fields[FIELDS[kind]] = check_destination(extension.number, destination)
        Extension.update(**fields).where(Extension.id == extension.id).execute()
    return get_extension(extension.number)


def clear_forward(number: str, kind: str | None = None) -> Extension:
    """Turn off `number`'s forward of `kind`; None: all of them."""
    kinds = KINDS if kind is None else (check_kind(kind),)
    with atomic():
        extension = get_extension(number)
        (Extension.update(updated_at=time.time(), **{FIELDS[k]: "" for k in kinds})
         .where(Extension.id == extension.id).execute())
    return get_extension(extension.number)


def set_dnd(number: str, on: bool) -> Extension:
    with atomic():
        extension = get_extension(number)
        (Extension.update(dnd=bool(on), updated_at=time.time())
         .where(Extension.id == extension.id).execute())
    return get_extension(extension.number)


def forwards(extension: Extension) -> dict[str, str]:
    """The forwards that are on, by kind, in KINDS order."""
    return {kind: getattr(extension, FIELDS[kind]) for kind in KINDS
            if getattr(extension, FIELDS[kind])}


def describe(extension: Extension) -> str:
    """One line for pbxctl and the logs: "DND; always -> 1002; no answer (20 s) -> 600"."""
    parts = ["DND"] if extension.dnd else []
    for kind, destination in forwards(extension).items():
        label = kind.replace("_", " ")
        if kind == "no_answer":
            label += f" ({extension.forward_no_answer_after} s)"
        parts.append(f"{label} -> {destination}")
    return "; ".join(parts)
