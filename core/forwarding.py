"""Call forwarding and do-not-disturb of an extension (issue 11, item 4).

Shared by pbxctl, the panel and sipd's feature codes (*72, *73, *78, *79:
sipd/apps/features.py). A forward is a destination (core/destinations.py):
*always* (every call goes there, the phone does not ring), *busy* (the
extension is at its call limit, its phones answered busy, or DND is on),
*no answer* after `forward_no_answer_after` seconds of ringing, *unavailable*
(nothing registered, or no phone answers at all).
"""

from __future__ import annotations

import re
import time

from core import destinations
from core.accounts import AccountError, get_extension
from core.models import Extension, db
from core.text import N_, Text

KINDS = ("always", "busy", "no_answer", "unavailable")
AFTER = (5, 120)


def check_kind(kind: str) -> str:
    kind = (kind or "").strip().lower().replace("-", "_")
    if kind not in KINDS:
        raise AccountError(Text(N_("forward kind must be always, busy, no-answer or "
                                   "unavailable, got %(text)r"), text=kind))
    return kind


def check_after(value) -> int:
    text = str(value).strip() if value is not None else ""
    low, high = AFTER
    if not re.fullmatch(r"[0-9]{1,4}", text) or not low <= int(text) <= high:
        raise AccountError(Text(N_("no-answer time must be a whole number of seconds from "
                                   "%(low)s to %(high)s, got %(text)r"),
                                low=low, high=high, text=text))
    return int(text)


def set_forward(number: str, kind: str, destination: str, after: int | None = None) -> Extension:
    """Forward `number`'s calls of `kind` to `destination` ("" or "off": no forward)."""
    with db.atomic():
        extension = get_extension(number)
        fields = forward_fields(extension, kind, destination, after)
        Extension.update(**fields).where(Extension.id == extension.id).execute()
    return get_extension(number)


def forward_fields(extension: Extension, kind: str, destination: str,
                   after: int | None = None) -> dict:
    """The columns that set one forward of `extension`, checked (AccountError if not).
    Reads only: the caller writes them in its own transaction (sipd's feature codes
    take the write lock on their event loop, sipd/dblock.py)."""
    kind = check_kind(kind)
    text = (destination or "").strip()
    if text.lower() == "off":
        text = ""
    try:
        value = destinations.check(text, not_to=extension.number)
    except destinations.DestinationError as error:
        raise AccountError(Text(N_("forward: %(error)s"), error=error.args[0])) from None
    fields = {f"forward_{kind}": value, "updated_at": time.time()}
    if after is not None:
        if kind != "no_answer":
            raise AccountError(Text(N_("a time applies to the no-answer forward only")))
        fields["forward_no_answer_after"] = check_after(after)
    return fields


def clear_forward(number: str, kind: str | None = None) -> Extension:
    """Turn off one forward, or all of them (kind None)."""
    kinds = KINDS if kind is None else (check_kind(kind),)
    with db.atomic():
        extension = get_extension(number)
        fields = {f"forward_{k}": "" for k in kinds}
        Extension.update(updated_at=time.time(), **fields).where(
            Extension.id == extension.id
        ).execute()
    return get_extension(number)


def set_dnd(number: str, on: bool) -> Extension:
    with db.atomic():
        extension = get_extension(number)
        Extension.update(dnd=bool(on), updated_at=time.time()).where(
            Extension.id == extension.id
        ).execute()
    return get_extension(number)


def forwards(extension: Extension) -> dict[str, str]:
    """The forwards that are on, by kind ({"busy": "1002", ...})."""
    return {k: getattr(extension, f"forward_{k}") for k in KINDS
            if getattr(extension, f"forward_{k}")}


def describe(extension: Extension) -> str:
    """One line for lists: "DND, always -> 1002, no answer (20 s) -> 600", or ""."""
    parts = ["DND"] if extension.dnd else []
    for kind, target in forwards(extension).items():
        label = kind.replace("_", " ")
        if kind == "no_answer":
            label += f" ({extension.forward_no_answer_after} s)"
        parts.append(f"{label} -> {target}")
    return ", ".join(parts)
