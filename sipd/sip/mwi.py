"""Message waiting: the application/simple-message-summary body (RFC 3842).

Sans-IO like the rest of `sipd.sip`: counts in, body text out (and back, for
tests and for a phone's body we might relay). The subscription itself
(SUBSCRIBE/NOTIFY, RFC 6665) and the unsolicited NOTIFY to phones that never
subscribe are the daemon's business, not this module's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

EVENT = "message-summary"  # RFC 3842 §3.1 (the event package name)
CONTENT_TYPE = "application/simple-message-summary"  # RFC 3842 §3.3, §4

# msg-summary-line = message-context-class HCOLON newmsgs SLASH oldmsgs
#                    [ LPAREN new-urgentmsgs SLASH old-urgentmsgs RPAREN ]   (RFC 3842 §5.2)
_SUMMARY_RE = re.compile(r"^(\d+)\s*/\s*(\d+)(?:\s*\(\s*(\d+)\s*/\s*(\d+)\s*\))?$")


class MwiError(ValueError):
    """A message-summary body we cannot read (answer 400 / ignore it)."""


@dataclass(frozen=True)
class Summary:
    """One mailbox's voice-message counts (RFC 3842 §5.2 "Voice-Message")."""

    new: int = 0
    old: int = 0
    new_urgent: int = 0
    old_urgent: int = 0
    account: str = ""  # Message-Account: the mailbox's URI (optional, §5.2)

    @property
    def waiting(self) -> bool:
        # "Messages-Waiting: yes" when there is at least one new message (§5.2).
        return self.new > 0


def body(summary: Summary) -> str:
    """The body of a NOTIFY for `summary`, CRLF-terminated lines (RFC 3842 §5.2)."""
    for value in (summary.new, summary.old, summary.new_urgent, summary.old_urgent):
        if value < 0:
            raise ValueError("message counts are never negative")
    lines = ["Messages-Waiting: " + ("yes" if summary.waiting else "no")]
    if summary.account:
        lines.append("Message-Account: " + summary.account)
    voice = f"{summary.new}/{summary.old}"
    if summary.new_urgent or summary.old_urgent:
        voice += f" ({summary.new_urgent}/{summary.old_urgent})"
    lines.append("Voice-Message: " + voice)
    return "".join(line + "\r\n" for line in lines)


def parse(text: str) -> tuple[bool, Summary]:
    """(Messages-Waiting, the Voice-Message counts) of a message-summary body.

    Header names are case-insensitive (§5.2: SIP header rules); other message
    classes (fax-message, ...) and extension headers are ignored.
    """
    waiting = None
    account = ""
    counts = (0, 0, 0, 0)
    for raw in text.replace("\r\n", "\n").split("\n"):
        line = raw.strip()
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise MwiError(f"not a header line: {line!r}")
        name, value = name.strip().lower(), value.strip()
        if name == "messages-waiting":
            if value.lower() not in ("yes", "no"):
                raise MwiError(f"Messages-Waiting must be yes or no: {value!r}")
            waiting = value.lower() == "yes"
        elif name == "message-account":
            account = value
        elif name == "voice-message":
            match = _SUMMARY_RE.match(value)
            if not match:
                raise MwiError(f"bad Voice-Message counts: {value!r}")
            counts = tuple(int(g) if g is not None else 0 for g in match.groups())
    if waiting is None:
        # msg-status-line is the one mandatory line (§5.2).
        raise MwiError("no Messages-Waiting line")
    return waiting, Summary(*counts, account=account)


# -- the subscription (RFC 6665) and its NOTIFY ------------------------------------------

# RFC 3842 §4.1: a subscription without Expires lasts 3600 s by default; we keep it to at
# least MIN_EXPIRES (shorter is 423 Interval Too Brief, RFC 6665 §4.2.1.1) and shorten
# longer ones to MAX_EXPIRES (the 200's Expires says what was granted, §4.2.1.1).
DEFAULT_EXPIRES = 3600
MIN_EXPIRES = 60
MAX_EXPIRES = 3600


def granted_expires(requested: int | None) -> int:
    """The duration granted for a SUBSCRIBE asking `requested` s (None: no Expires);
    0 stays 0 (an unsubscribe, RFC 6665 §4.1.2.3). Below MIN_EXPIRES: ValueError."""
    if requested is None:
        return DEFAULT_EXPIRES
    if requested == 0:
        return 0
    if requested < MIN_EXPIRES:
        raise ValueError(f"expires {requested} is below {MIN_EXPIRES}")
    return min(requested, MAX_EXPIRES)


def subscription_state(remaining: int) -> str:
    """Subscription-State (RFC 6665 §8.2.3): active with what is left, or terminated."""
    if remaining <= 0:
        return "terminated;reason=timeout"
    return f"active;expires={remaining}"


def notify_headers(*, via: str, from_: str, to: str, call_id: str, cseq: int, contact: str,
                   state: str) -> list[tuple[str, str]]:
    """A message-summary NOTIFY's headers (RFC 6665 §4.2.2, RFC 3842 §3.5): in the
    subscription's dialog (From our side with our tag, To the subscriber), or an
    unsolicited one out of any dialog (Asterisk's "unsolicited MWI"), which phones take
    as the same package's news."""
    return [
        ("Via", via),
        ("Max-Forwards", "70"),
        ("From", from_),
        ("To", to),
        ("Call-ID", call_id),
        ("CSeq", f"{cseq} NOTIFY"),
        ("Contact", contact),
        ("Event", EVENT),
        ("Subscription-State", state),
        ("Content-Type", CONTENT_TYPE),
        ("User-Agent", "pbx-sipd"),
    ]
