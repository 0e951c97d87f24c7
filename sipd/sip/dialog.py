"""Dialogs (RFC 3261 §12): the state two UAs share, and requests built within it.

The B2BUA holds two dialogs per call, one towards each phone. Here they are
values; building an in-dialog request (§12.2.1.1), matching an incoming one to
its dialog and checking its CSeq (§12.2.2) are pure functions of that value.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field

from sipd.sip.headers import NameAddr
from sipd.sip.message import Headers, Request
from sipd.sip.transaction import MAGIC_COOKIE

# §20.10: in a name-addr the header parameters follow the ">" (a ";tag=" inside
# the brackets is a URI parameter); in an addr-spec every ";param" is one.
# tag = "tag" EQUAL token (§25.1), names case-insensitive.
_TAG_RE = re.compile(r";[ \t]*tag[ \t]*=[ \t]*([A-Za-z0-9.!%*_+`'~-]+)", re.IGNORECASE)


def tag_param(value: str) -> str | None:
    """The tag of a From or To value, as NameAddr.parse(value).tag reads it but
    without parsing the rest: matching a request to its dialog reads both tags
    of every in-dialog request, and two full parses cost some 8 µs."""
    end = value.rfind(">")
    match = _TAG_RE.search(value, end + 1 if end >= 0 else 0)
    return match.group(1) if match else None


def new_tag() -> str:
    return secrets.token_hex(6)


def new_branch() -> str:
    return MAGIC_COOKIE + secrets.token_hex(8)


def new_call_id(host: str) -> str:
    return f"{secrets.token_hex(12)}@{host}"


@dataclass
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str | None
    local_uri: str  # the URI of our side (From when we send)
    remote_uri: str  # the peer's (To when we send)
    remote_target: str  # the peer's Contact URI (§12.1.1)
    local_seq: int
    remote_seq: int | None = None
    route_set: list[str] = field(default_factory=list)
    local_display: str | None = None
    remote_display: str | None = None

    def matches(self, call_id: str, local_tag: str | None, remote_tag: str | None) -> bool:
        """§12.2.2: a request is in this dialog when its Call-ID, its To tag (ours)
        and its From tag (the peer's) are this dialog's, all three. A peer that
        sent no tag (RFC 2543) matches only without one: a missing tag is no
        wildcard, or anyone with the Call-ID would be in the dialog."""
        return (
            self.call_id == call_id and self.local_tag == local_tag
            and self.remote_tag == remote_tag
        )

    def request(
        self, method: str, via: str, contact: str, body: bytes = b"",
        content_type: str | None = None, extra: list[tuple[str, str]] | None = None,
        cseq: int | None = None,
    ) -> Request:
        """§12.2.1.1: a request within this dialog. ACK and CANCEL pass `cseq`."""
        if cseq is None:
            self.local_seq += 1
            cseq = self.local_seq
        headers = Headers()
        headers.add("Via", via)
        for route in self.route_set:
            headers.add("Route", route)
        headers.add("Max-Forwards", "70")
        local = NameAddr.parse(self.local_uri)
        local.display_name = self.local_display
        local.params = {"tag": self.local_tag}
        remote = NameAddr.parse(self.remote_uri)
        remote.display_name = self.remote_display
        remote.params = {"tag": self.remote_tag} if self.remote_tag else {}
        headers.add("From", str(local))
        headers.add("To", str(remote))
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{cseq} {method}")
        if method not in ("ACK", "CANCEL", "BYE"):
            headers.add("Contact", contact)
        for name, value in extra or []:
            headers.add(name, value)
        if body:
            headers.add("Content-Type", content_type or "application/sdp")
        return Request(headers=headers, method=method, uri=self.remote_target, body=body)

    def accept_remote_cseq(self, number: int, method: str) -> bool:
        """§12.2.2: a lower CSeq than the last one is out of order (ACK/CANCEL reuse theirs)."""
        if method in ("ACK", "CANCEL"):
            return True
        if self.remote_seq is not None and number <= self.remote_seq:
            return False
        self.remote_seq = number
        return True
