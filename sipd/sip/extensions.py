"""SIP extensions named by option tags (RFC 3261 §19.2, §20.32, §20.37) and the
session timer's headers (RFC 4028 §4-§5). Sans-IO: header values in, values out.

- `options(message, "Require")`: the option tags a header lists.
- `unsupported(message)`: what a request Requires that we do not support: the
  request gets 420 Bad Extension with these in Unsupported (§8.2.2.3).
- `session_expires(value)`, `min_se(value)`: RFC 4028's two headers.
- `negotiated(response, ours)`: what a 2xx to our INVITE or refresh settles
  (§7.2): the interval and whether we (its UAC) refresh.
- `answering(request)`: what our 2xx to an INVITE we are the UAS of settles
  (§9): the interval and who refreshes, as the 2xx names it.
- `refresh_after(interval)`, `expiry(interval)`: when the refresher refreshes,
  when the other side gives up (§10).
"""

from __future__ import annotations

from dataclasses import dataclass

from sipd.sip.message import split_list

# The extensions we implement: the session timer (RFC 4028) and reliable
# provisional responses (RFC 3262, sipd/sip/reliable.py).
SUPPORTED = ("timer", "100rel")
SUPPORTED_HEADER = ", ".join(SUPPORTED)

# RFC 4028 §4: no interval below 90 s is ever allowed; ours is the minimum too.
MIN_SE = 90
# The interval we give a call that asked for none but supports the timer
# (RFC 4028 §7.1 recommends 1800 s).
DEFAULT_SE = 1800


def options(message, header: str) -> list[str]:
    """The option tags of every `header` line (lower case: tags compare
    case-insensitively... RFC 3261 §19.2 says they are tokens compared exactly,
    but no two registered tags differ in case only)."""
    tags = []
    for value in message.headers.get_all(header):
        tags.extend(tag.strip().lower() for tag in split_list(value) if tag.strip())
    return tags


def unsupported(message) -> list[str]:
    """The option tags `message` Requires that we do not support (§8.2.2.3)."""
    return [tag for tag in options(message, "Require") if tag not in SUPPORTED]


def supports(message, tag: str) -> bool:
    """Whether the sender of `message` supports extension `tag` (Supported or Require)."""
    return tag in options(message, "Supported") or tag in options(message, "Require")


@dataclass(frozen=True)
class SessionExpires:
    interval: int  # delta-seconds
    refresher: str | None  # "uac", "uas" or None (not said)

    def __str__(self) -> str:
        return f"{self.interval};refresher={self.refresher}" if self.refresher else str(
            self.interval)


def session_expires(value: str | None) -> SessionExpires | None:
    """RFC 4028 §4: `Session-Expires: delta-seconds *(;se-params)`; None when
    absent; ValueError when malformed."""
    if value is None or not value.strip():
        return None
    delta, *params = value.split(";")
    delta = delta.strip()
    if not delta.isdigit():
        raise ValueError(f"Session-Expires {value.strip()!r} is not delta-seconds")
    refresher = None
    for param in params:
        name, _, found = param.partition("=")
        if name.strip().lower() == "refresher":
            refresher = found.strip().lower()
            if refresher not in ("uac", "uas"):
                raise ValueError(f"refresher={found.strip()!r} is neither uac nor uas")
    return SessionExpires(int(delta), refresher)


def min_se(value: str | None) -> int | None:
    """RFC 4028 §5: `Min-SE: delta-seconds *(;generic-param)`; ValueError when malformed."""
    if value is None or not value.strip():
        return None
    delta = value.split(";")[0].strip()
    if not delta.isdigit():
        raise ValueError(f"Min-SE {value.strip()!r} is not delta-seconds")
    return int(delta)


def expiry(interval: float) -> float:
    """RFC 4028 §10: when a session without a refresh ends: before the interval
    runs out by a third of it or 32 s, whichever is less."""
    return interval - min(32.0, interval / 3)


def refresh_after(interval: float) -> float:
    """RFC 4028 §10: the refresher sends its refresh half way through the interval."""
    return interval / 2


def negotiated(response, current: SessionExpires | None = None) -> SessionExpires | None:
    """§7.2: the session timer a 2xx to our INVITE (or to our refresh) settles,
    seen from our side as its UAC: `refresher` "uac" is us. No Session-Expires in
    the 2xx of an INVITE: no session timer. In the 2xx of a refresh (`current`
    given) we keep the one we have: a provider whose UPDATE answer forgets the
    header may still time the session, and a refresh too many costs nothing
    where a missed one drops the call. An unreadable header counts as absent."""
    try:
        found = session_expires(response.headers.get("Session-Expires"))
    except ValueError:
        found = None
    if found is None:
        return current
    # §9: the UAS always names the refresher in its 2xx; one that does not
    # leaves it to us, the side that can be sure the refresh is sent.
    return SessionExpires(max(found.interval, MIN_SE), found.refresher or "uac")


def answering(request) -> SessionExpires | None:
    """§9: the session timer our 2xx to `request` (an INVITE; we are its UAS)
    settles, its refresher named as the 2xx names it ("uac": the request's sender).
    No Session-Expires in the request: none (§9 lets a UAS add one; we do not
    time a session nobody asked to time). Otherwise §9's table 2:
    - the UAC supports the timer and names the refresher: that one, copied;
    - it supports the timer and names none: the UAS chooses; we leave it to the
      UAC, whose refreshes show that its end of the call is still there;
    - it does not support the timer (a proxy put Session-Expires in): it would
      never refresh, so only the UAS can: "uas", whatever the proxy wrote.
    The interval is the request's (a brief one is refused with 422 before this:
    §8.1, sipd/b2bua/calls.py)."""
    asked = session_expires(request.headers.get("Session-Expires"))
    if asked is None:
        return None
    if not supports(request, "timer"):
        return SessionExpires(asked.interval, "uas")
    return SessionExpires(asked.interval, asked.refresher or "uac")
