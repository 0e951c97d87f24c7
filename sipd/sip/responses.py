"""Building responses and routing them back (RFC 3261 §8.2.6, §18.2.1-2, RFC 3581)."""

from __future__ import annotations

import hashlib

from sipd.sip.headers import NameAddr, Via
from sipd.sip.message import REASONS, Headers, ParseError, Request, Response


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


def to_tag_for(request: Request) -> str:
    """A To tag stable for one request, so retransmitted answers match (§8.2.6.2)."""
    seed = "|".join(request.headers.get(n) or "" for n in ("Via", "Call-ID", "CSeq", "From"))
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
    out = Headers()
    for value in request.headers.get_all("Via"):
        out.add("Via", value)
    for name in ("From", "To", "Call-ID", "CSeq"):
        value = request.headers.get(name)
        if value is not None:
            out.add(name, value)
    to_value = request.headers.get("To")
    if status > 100 and to_value is not None:
        try:
            to = NameAddr.parse(to_value)
            if to.tag is None:
                to.params["tag"] = to_tag or to_tag_for(request)
                out.set("To", str(to))
                # keep the header order: To right after From
                out.items = _reorder(out.items)
        except ParseError:
            pass  # an unparseable To is echoed as it came (only in a 400)
    timestamp = request.headers.get("Timestamp")
    if status == 100 and timestamp is not None:
        out.add("Timestamp", timestamp)  # §8.2.6.1
    for name, value in headers or []:
        out.add(name, value)
    return Response(headers=out, status=status, reason=reason or REASONS.get(status, ""), body=body)


def _reorder(items: list[tuple[str, str]]) -> list[tuple[str, str]]:
    order = {"Via": 0, "From": 1, "To": 2, "Call-ID": 3, "CSeq": 4}
    return sorted(items, key=lambda item: order.get(item[0], 5))


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
