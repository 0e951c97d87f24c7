"""Where a call can go, named the same way in the routing step, the panel and pbxctl.

A destination is text: a number to dial (an extension, a ring group, or an
outside number that an outbound route takes) or `hangup`; the media
applications add `voicemail:NUMBER`, `ivr:NAME` and `hours:NAME`. "" means
none (a forward that is off, a group without a fallback). `parse` says what a
text names without the database; `check` also says whether it exists. A text
that names nothing gets an error listing every form (FORMS), in the words
pbxctl prints and the panel translates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.text import N_, Text

HANGUP = "hangup"
# What a phone can dial: the numbers of extensions and groups (2 to 15 digits,
# core.accounts.NUMBER_RE); the kinds that later issues add go in KINDS.
NUMBER_RE = re.compile(r"^[0-9]{2,15}$")
KINDS = ("number", "hangup", "voicemail", "ivr", "hours")
VOICEMAIL = "voicemail:"  # voicemail:NUMBER, the mailbox of extension NUMBER (issue 13)
IVR = "ivr:"  # ivr:NAME, a menu (core/ivr.py)
HOURS = "hours:"  # hours:NAME, business hours: its open or closed destination, by the time
# The name of a menu or a schedule: lower case, as it is typed after ivr: or hours:.
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


# Every form a destination takes, as the error for a text that is none of them says.
FORMS = N_("an extension or ring group number, an outside number, voicemail:NUMBER,"
           " ivr:NAME, hours:NAME or hangup")


# A number that names nothing: the panel's and pbxctl's error, and sipd's *72 refusal.
NOT_A_TARGET = N_("%(number)s is no extension or ring group, and no outbound route takes it")


class DestinationError(ValueError):
    pass


@dataclass(frozen=True)
class Destination:
    kind: str  # one of KINDS
    value: str = ""  # the number, for kind "number"

    def __str__(self) -> str:
        if self.kind == "voicemail":
            return VOICEMAIL + self.value
        if self.kind in ("ivr", "hours"):
            return f"{self.kind}:{self.value}"
        return self.value if self.kind == "number" else self.kind


def parse(text: str) -> Destination | None:
    """The destination `text` names, None for "" (none); DestinationError if it names nothing."""
    text = (text or "").strip()
    if not text:
        return None
    if text.lower() == HANGUP:
        return Destination("hangup")
    if NUMBER_RE.match(text):
        return Destination("number", text)
    if text.lower().startswith(VOICEMAIL):
        number = text[len(VOICEMAIL):].strip()
        if not NUMBER_RE.match(number):
            raise DestinationError(Text(
                N_("%(text)r is not a destination: a mailbox is voicemail:NUMBER,"
                   " the number of an extension"), text=text))
        return Destination("voicemail", number)
    for kind, prefix in (("ivr", IVR), ("hours", HOURS)):
        if text.lower().startswith(prefix):
            name = text[len(prefix):].strip().lower()
            if not NAME_RE.match(name):
                raise DestinationError(Text(
                    N_("%(text)r is not a destination: a name is 1 to 32 letters, digits,"
                       " - or _ (e.g. %(kind)s:main)"), text=text, kind=kind))
            return Destination(kind, name)
    raise DestinationError(
        Text(N_("%(text)r is not a destination: give %(forms)s"), text=text, forms=Text(FORMS))
    )


def check(text: str, *, not_to: str | None = None) -> str:
    """`text` as stored ("" for none) if it names something that exists; `not_to`: the
    number it belongs to, which it must not lead straight back to."""
    from core.models import Extension, RingGroup  # noqa: PLC0415 - parse needs no database

    destination = parse(text)
    if destination is None:
        return ""
    if destination.kind == "number":
        number = destination.value
        if not_to is not None and number == not_to:
            raise DestinationError(Text(N_("%(number)s cannot forward to itself"), number=number))
        if (Extension.by_number(number) is None and RingGroup.by_number(number) is None
                and not _routed_out(number)):
            raise DestinationError(Text(NOT_A_TARGET, number=number))
    if destination.kind == "voicemail":
        from core.voicemail import mailbox_of  # noqa: PLC0415 - it needs the database

        if mailbox_of(destination.value) is None:
            raise DestinationError(Text(N_("extension %(number)s has no mailbox"),
                                        number=destination.value))
    if destination.kind == "ivr":
        from core.models import Ivr  # noqa: PLC0415 - it needs the database

        if Ivr.get_or_none(Ivr.name == destination.value) is None:
            raise DestinationError(Text(N_("there is no IVR menu %(name)s"),
                                        name=destination.value))
    if destination.kind == "hours":
        from core.models import Schedule  # noqa: PLC0415 - it needs the database

        if Schedule.get_or_none(Schedule.name == destination.value) is None:
            raise DestinationError(Text(N_("there are no business hours %(name)s"),
                                        name=destination.value))
    return str(destination)


def routed_out(number: str, route_patterns) -> bool:
    """Whether an outbound route takes `number` (an outside number), given each route's
    dial patterns: the routing step sends a call to it through that route's trunks,
    permissions checked then. The one rule for a forward or any destination (check,
    from the database) and a phone's *72 (sipd/routing/decide.py, from its cache)."""
    from core import dial_patterns  # noqa: PLC0415 - parse needs no database

    for patterns in route_patterns:
        try:
            if dial_patterns.first_match(patterns, number) is not None:
                return True
        except dial_patterns.PatternError:
            continue  # refused on write (core/outbound.py); the other routes still count
    return False


def _routed_out(number: str) -> bool:
    from core.models import OutboundRoute  # noqa: PLC0415 - parse needs no database

    return routed_out(number, (route.pattern_list() for route in OutboundRoute.select()))
