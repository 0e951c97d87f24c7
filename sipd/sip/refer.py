"""Transfer's headers and the refer subscription: REFER (RFC 3515), Replaces
(RFC 3891), Referred-By (RFC 3892), Refer-Sub (RFC 4488), message/sipfrag (RFC 3420).

Like the rest of `sipd.sip` this contains no networking code and never reads the
clock: header text in, values out; a dialog and a status in, the NOTIFY to send
out. Every malformed value raises `ParseError` with the status to answer (400).
What the PBX then does with a REFER (which targets it accepts, which dialog a
Replaces may take over) is the B2BUA's decision, not this module's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from urllib.parse import quote, unquote

from sipd.sip import abnf
from sipd.sip.dialog import Dialog
from sipd.sip.headers import NameAddr, format_params, parse_params
from sipd.sip.message import REASONS, ParseError, Request, canonical_name, split_list

SIPFRAG = "message/sipfrag;version=2.0"  # RFC 3515 §2.4.5, RFC 3420 §2

# callid  =  word [ "@" word ]                                       (RFC 3261 §25.1)
# word    =  1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~" /
#            "(" / ")" / "<" / ">" / ":" / "\" / DQUOTE / "/" / "[" / "]" / "?" / "{" / "}" )
_WORD = r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+"
CALLID_RE = re.compile(rf"^{_WORD}(?:@{_WORD})?$")
_TOKEN_RE = re.compile(rf"^{abnf.TOKEN}$")


@dataclass
class Replaces:
    """The dialog an INVITE (or the INVITE a REFER asks for) takes over (RFC 3891 §6.1).

    Replaces        = "Replaces" HCOLON callid *(SEMI replaces-param)
    replaces-param  = to-tag / from-tag / early-flag / generic-param
    to-tag          = "to-tag" EQUAL token
    from-tag        = "from-tag" EQUAL token
    early-flag      = "early-only"

    The tags are named as the recipient of the INVITE sees the dialog (§3): to-tag
    is its own (local) tag, from-tag its peer's.
    """

    call_id: str
    to_tag: str
    from_tag: str
    early_only: bool = False
    params: dict[str, str | None] = field(default_factory=dict)  # any others, kept

    @classmethod
    def parse(cls, text: str) -> Replaces:
        text = text.strip()
        call_id, semicolon, rest = text.partition(";")
        call_id = call_id.strip()
        if not CALLID_RE.match(call_id):
            raise ParseError(f"malformed Call-ID in Replaces {text[:80]!r}")
        params = parse_params(semicolon + rest)
        # §6.1: "exactly one to-tag and exactly one from-tag"; parse_params keeps the
        # last of a repeated name, so repeats are counted on the text itself.
        for name in ("to-tag", "from-tag"):
            count = len(re.findall(rf";\s*{name}\s*=", semicolon + rest, re.IGNORECASE))
            if count != 1:
                raise ParseError(f"Replaces needs exactly one {name} (has {count})")
            value = params.get(name)
            if value is None or not _TOKEN_RE.match(value):
                raise ParseError(f"malformed {name} in Replaces {text[:80]!r}")
        to_tag = params.pop("to-tag")
        from_tag = params.pop("from-tag")
        early_only = "early-only" in params
        if early_only and params.pop("early-only") is not None:
            raise ParseError("early-only takes no value (RFC 3891 §6.1)")
        assert to_tag is not None and from_tag is not None
        return cls(call_id=call_id, to_tag=to_tag, from_tag=from_tag,
                   early_only=early_only, params=params)

    def __str__(self) -> str:
        text = f"{self.call_id};to-tag={self.to_tag};from-tag={self.from_tag}"
        if self.early_only:
            text += ";early-only"
        return text + format_params(self.params)

    def names(self, dialog: Dialog) -> bool:
        """Whether this names `dialog`, one the recipient holds (§3): the Call-ID, its
        local tag as to-tag and its peer's as from-tag. For RFC 2543 peers that sent
        no tag, a tag of "0" matches a missing one (§6.1)."""

        def same(tag: str, ours: str | None) -> bool:
            return tag == ours or (tag == "0" and not ours)

        return (
            dialog.call_id == self.call_id
            and same(self.to_tag, dialog.local_tag)
            and same(self.from_tag, dialog.remote_tag)
        )

    @classmethod
    def of(cls, dialog: Dialog) -> Replaces:
        """The Replaces the peer of `dialog` would match against its own side of it:
        what a transferor writes into a Refer-To (to-tag: the peer's tag)."""
        return cls(call_id=dialog.call_id, to_tag=dialog.remote_tag or "0",
                   from_tag=dialog.local_tag)


def parse_uri_headers(text: str | None) -> list[tuple[str, str]]:
    """The headers part of a SIP URI as (name, value) pairs, unescaped (RFC 3261 §19.1.1):

    headers  =  "?" header *( "&" header )
    header   =  hname "=" hvalue

    Names come out canonical ("replaces" is "Replaces"). An hname with no "=" (or an
    empty one) is malformed: a REFER carrying it is answered 400.
    """
    if not text:
        return []
    pairs = []
    for item in text.split("&"):
        name, equals, value = item.partition("=")
        name = unquote(name).strip()
        if not equals or not name or not _TOKEN_RE.match(name):
            raise ParseError(f"malformed header {item[:60]!r} in a URI")
        pairs.append((canonical_name(name), unquote(value)))
    return pairs


def format_uri_headers(pairs: list[tuple[str, str]]) -> str:
    """The inverse of parse_uri_headers: "Replaces=a%40b%3Bto-tag%3D1..." (§19.1.1
    escapes everything in hvalue but unreserved and hnv-unreserved characters)."""
    return "&".join(f"{name}={quote(value, safe='[]/?:+$-_.!~*()')}" for name, value in pairs)


@dataclass
class ReferTo:
    """A Refer-To value (RFC 3515 §2.1), with what its URI's headers part carries.

    Refer-To = ("Refer-To" / "r") HCOLON ( name-addr / addr-spec ) *(SEMI generic-param)

    `address.uri` keeps its headers part as received; `embedded` holds those headers
    unescaped, and `replaces` the parsed Replaces among them (RFC 3891 §6.1: an
    attended transfer's Refer-To carries the dialog its INVITE is to replace).
    """

    address: NameAddr
    embedded: list[tuple[str, str]] = field(default_factory=list)
    replaces: Replaces | None = None

    @classmethod
    def parse(cls, text: str) -> ReferTo:
        if not text.strip():
            raise ParseError("empty Refer-To")
        address = NameAddr.parse(text)
        if address.wildcard:
            raise ParseError("Refer-To cannot be *")
        embedded: list[tuple[str, str]] = []
        replaces = None
        if address.uri.is_sip:
            embedded = parse_uri_headers(address.uri.headers)
            found = [value for name, value in embedded if name.lower() == "replaces"]
            if len(found) > 1:
                raise ParseError("more than one Replaces in the Refer-To URI")
            if found:
                replaces = Replaces.parse(found[0])
        return cls(address=address, embedded=embedded, replaces=replaces)

    @property
    def uri(self):
        return self.address.uri

    @property
    def is_sip(self) -> bool:
        return self.address.uri.is_sip

    @property
    def method(self) -> str:
        """What the recipient is asked to send: the URI's method parameter, INVITE
        when absent (RFC 3261 §19.1.1, RFC 3515 §2.1 example with method=SUBSCRIBE)."""
        method = self.address.uri.params.get("method")
        return method.upper() if method else "INVITE"

    @property
    def user(self) -> str | None:
        """The number (user part) asked for, for the PBX's routing."""
        return self.address.uri.user if self.is_sip else None

    def target(self) -> str:
        """The URI to contact without its headers part: where the new request goes."""
        uri = self.address.uri
        if not uri.is_sip:
            return str(uri)
        return str(replace(uri, headers=None))

    def __str__(self) -> str:
        return str(self.address)


@dataclass
class ReferredBy:
    """Referred-By (RFC 3892 §3): who asked for the transfer.

    Referred-By  =  ("Referred-By" / "b") HCOLON referrer-uri
                    *( SEMI (referredby-id-param / generic-param) )
    referrer-uri = ( name-addr / addr-spec )
    referredby-id-param = "cid" EQUAL sip-clean-msg-id
    """

    address: NameAddr

    @classmethod
    def parse(cls, text: str) -> ReferredBy:
        if not text.strip():
            raise ParseError("empty Referred-By")
        address = NameAddr.parse(text)
        if address.wildcard:
            raise ParseError("Referred-By cannot be *")
        return cls(address=address)

    @property
    def cid(self) -> str | None:
        value = self.address.params.get("cid")
        return value.strip('"') if value else None

    def __str__(self) -> str:
        return str(self.address)


@dataclass
class Refer:
    """What a REFER request asks for, checked as RFC 3515 §2.4.2 and RFC 4488 say."""

    refer_to: ReferTo
    referred_by: ReferredBy | None
    cseq: int  # the REFER's CSeq number: the subscription's id (§2.4.6)
    subscription: bool  # False: the referrer asked for no NOTIFYs (RFC 4488 §4)

    @classmethod
    def from_request(cls, request: Request) -> Refer:
        values = request.headers.get_all("Refer-To")
        # §2.4.1: "MUST return a 400 (Bad Request) if the request contained zero or
        # more than one Refer-To header field values". The parser does not split
        # Refer-To at commas (not a list header), so "a, b" is caught here too.
        if not values:
            raise ParseError("REFER without Refer-To", partial=request)
        if len(values) > 1 or len(split_list(values[0])) > 1:
            raise ParseError("REFER with more than one Refer-To", partial=request)
        try:
            refer_to = ReferTo.parse(values[0])
            referred = request.headers.get("Referred-By")
            referred_by = ReferredBy.parse(referred) if referred is not None else None
        except ParseError as error:
            raise ParseError(str(error), partial=request) from None
        cseq_text = request.headers.get("CSeq") or ""
        number = cseq_text.split()[0] if cseq_text.split() else ""
        if not number.isascii() or not number.isdigit():
            raise ParseError("REFER with a malformed CSeq", partial=request)
        refer_sub = (request.headers.get("Refer-Sub") or "").split(";")[0].strip().lower()
        if refer_sub not in ("", "true", "false"):
            raise ParseError(f"malformed Refer-Sub {refer_sub[:20]!r} (RFC 4488 §4)",
                             partial=request)
        return cls(refer_to=refer_to, referred_by=referred_by, cseq=int(number),
                   subscription=refer_sub != "false")


# -- the refer subscription's NOTIFYs (RFC 3515 §2.4.4-§2.4.7) ----------------------------


def sipfrag(status: int, reason: str | None = None) -> bytes:
    """The body of a refer NOTIFY: the status line of the referenced request's
    latest response (RFC 3515 §2.4.5: "MUST begin with a SIP Response Status-Line";
    RFC 3420 §2: a sipfrag is a message that may lack its headers and body).
    The line ends with CRLF: §4.1's NOTIFYs count it (Content-Length 20 for
    "SIP/2.0 100 Trying")."""
    reason = reason if reason is not None else REASONS.get(status, "")
    return f"SIP/2.0 {status} {reason}\r\n".encode()


def parse_sipfrag(body: bytes) -> tuple[int, str]:
    """(status, reason) of a refer NOTIFY's body, its first line."""
    line = body.decode("utf-8", "replace").lstrip("\r\n").split("\n", 1)[0].rstrip("\r")
    match = abnf.STATUS_LINE_RE.match(line)
    if not match:
        raise ParseError(f"sipfrag does not begin with a status line: {line[:60]!r}")
    return int(match.group(2)), match.group(3)


def event_value(refer_cseq: int | None) -> str:
    """Event: refer, with id= the REFER's CSeq for the second and later REFERs of a
    dialog (§2.4.6: "MUST include an id parameter"; MAY for the first)."""
    return "refer" if refer_cseq is None else f"refer;id={refer_cseq}"


def subscription_state(status: int, expires: int | None = None) -> str:
    """§2.4.7: the subscription ends with the NOTIFY of a final response
    (terminated;reason=noresource); until then it is active."""
    if status >= 200:
        return "terminated;reason=noresource"
    return "active" if expires is None else f"active;expires={expires}"


def notify(
    dialog: Dialog, via: str, contact: str, status: int, reason: str | None = None, *,
    refer_cseq: int | None = None, expires: int | None = None,
) -> Request:
    """The NOTIFY telling the referrer the referenced call's progress, in the dialog
    the REFER came in (§2.4.4: "The dialog identifiers (To, From, and Call-ID) of
    each NOTIFY must match those of the REFER"). `refer_cseq`: for a second or later
    REFER in the dialog (see event_value). `status` 100 first (§2.4.4: "SHOULD be
    sent ... 100 Trying"), then provisionals, then the final one, which ends it."""
    return dialog.request(
        "NOTIFY", via, contact,
        body=sipfrag(status, reason),
        content_type=SIPFRAG,
        extra=[
            ("Event", event_value(refer_cseq)),
            ("Subscription-State", subscription_state(status, expires)),
        ],
    )
