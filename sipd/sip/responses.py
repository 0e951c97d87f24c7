"""Building responses and routing them back (RFC 3261 §8.2.6, §18.2.1-2, RFC 3581)."""

from __future__ import annotations

import hashlib
import re

from sipd.sip.headers import Via
from sipd.sip.message import REASONS, Headers, Request, Response


def stamp_via(via: Via, source: tuple[str, int]) -> Via:
    """§18.2.1: add received= when sent-by is not the source address; RFC 3581 §4
    fills an empty rport with the source port (and then received= always)."""
    host, port = source
    params = dict(via.params)
    if "rport" in params:
        params["rport"] = str(port)
        params["received"] = host
    elif via.host.strip("[]").lower() != host.lower():
        params["received"] = host
    return Via(transport=via.transport, host=via.host, port=via.port, params=params)


def stamped_text(text: str, via: Via, source: tuple[str, int]) -> str:
    """The top Via value `text` (parsed: `via`) as stamp_via would leave it, as text.

    Where the stamp only appends (no received= yet, and rport, if asked for, is
    the last parameter) the peer's own text gets the parameters appended, the
    usual case; otherwise the stamped Via is written out again.
    """
    params = via.params
    if "received" not in params:
        host, port = source
        if "rport" not in params:
            if via.host.strip("[]").lower() == host.lower():
                return text
            return f"{text};received={host}"
        if params["rport"] is None and text.endswith(";rport"):
            return f"{text}={port};received={host}"
    return str(stamp_via(via, source))


def to_tag_for(request: Request) -> str:
    """A To tag stable for one request, so retransmitted answers match (§8.2.6.2)."""
    index = request.headers.index()
    return _to_tag(*(index.get(key) for key in ("via", "call-id", "cseq", "from")))


def _to_tag(via, call_id, cseq, sender) -> str:
    # The first value of each (or nothing), as to_tag_for always hashed them.
    seed = (
        f"{via[0] if via else ''}|{call_id[0] if call_id else ''}|"
        f"{cseq[0] if cseq else ''}|{sender[0] if sender else ''}"
    )
    return hashlib.blake2s(seed.encode(), digest_size=6).hexdigest()


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    to_tag: str | None = None,
) -> Response:
    """§8.2.6.2: copy Via (all, in order), From, Call-ID, CSeq; To gets a tag."""
    index = request.headers.index()
    vias, sender, to, call_id, cseq = (
        index.get(key) for key in ("via", "from", "to", "call-id", "cseq")
    )
    items = [("Via", value) for value in vias] if vias else []
    if sender:
        items.append(("From", sender[0]))
    if to:
        value = to[0]
        if status > 100:
            value = _tagged(value, to_tag or _to_tag(vias, call_id, cseq, sender))
        items.append(("To", value))
    if call_id:
        items.append(("Call-ID", call_id[0]))
    if cseq:
        items.append(("CSeq", cseq[0]))
    if status == 100:
        timestamp = index.get("timestamp")
        if timestamp:
            items.append(("Timestamp", timestamp[0]))  # §8.2.6.1
    if headers:
        items.extend(headers)
    return Response(
        headers=Headers(items), status=status, reason=reason or REASONS.get(status, ""), body=body
    )


# A tag parameter of a To/From value: after the closing ">" of a name-addr (a
# display name may hold anything), or anywhere in an addr-spec, whose parameters
# are all header parameters (§20.10).
_TAG_RE = re.compile(r";\s*tag\s*=", re.I)


def _tagged(to_value: str, tag: str) -> str:
    """The To value with our tag added unless it has one (§8.2.6.2). Appending to
    the text keeps the peer's spelling; "<uri>;tag=x" and "uri;tag=x" both put the
    tag among the header parameters."""
    params = to_value[to_value.rfind(">") + 1 :] if "<" in to_value else to_value
    if _TAG_RE.search(params):
        return to_value
    return f"{to_value};tag={tag}"


def response_destination(top_via: Via, source: tuple[str, int], reliable: bool):
    """Where a response to a request goes (§18.2.2, RFC 3581 §4).

    Over a stream: back on the connection it came on (None here). Over UDP:
    to received (the source address) at rport if the client asked for it,
    else at the sent-by port. maddr is deliberately not honoured: it would
    let anyone make us send responses to a third party.
    """
    if reliable:
        return None
    host, port = source
    if "rport" in top_via.params:
        return host, port
    return host, top_via.sent_by[1]
