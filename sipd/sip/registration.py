"""What a REGISTER asks for and what it does to the bindings (RFC 3261 §10.3).

Pure decisions: given the request, the bindings the AOR has now and the
clock, `plan` says which bindings to add, refresh and remove, or raises
`Refusal` with the status to answer. The registrar applies the plan to the
database in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from sipd.sip.headers import parse_expires, shared_name_addr
from sipd.sip.message import ParseError, Request


@dataclass(frozen=True)
class Policy:
    min_expires: int = 60
    max_expires: int = 3600
    default_expires: int = 300
    max_contacts: int = 5


class Refusal(Exception):
    """A REGISTER we answer with an error; `headers` go into the response."""

    def __init__(self, status: int, reason: str, headers: list[tuple[str, str]] | None = None):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or []


# Named tuples, not frozen dataclasses: several are built for every REGISTER,
# and a frozen dataclass's __init__ costs several times as much.
class WantedContact(NamedTuple):
    uri: str  # the Contact URI, normalized, as stored and compared
    expires: int
    instance: str = ""
    q: float | None = None


class Existing(NamedTuple):
    """A binding as plan() sees it (the registrar passes its rows, which have these)."""

    id: int
    contact: str
    call_id: str
    cseq: int
    instance: str
    registered_at: float
    source_host: str = ""
    user_agent: str = ""


@dataclass
class Plan:
    add: list[WantedContact] = field(default_factory=list)
    refresh: list[tuple[Existing, WantedContact]] = field(default_factory=list)
    remove: list[Existing] = field(default_factory=list)
    query_only: bool = False
    # Bindings that look like an earlier life of the phone registering now
    # (_same_phone): probed at once by the qualifier, dropped if they do not answer.
    superseded: list[Existing] = field(default_factory=list)


@dataclass(frozen=True)
class Wanted:
    contacts: list[WantedContact]
    remove_all: bool = False

    @property
    def query_only(self) -> bool:
        return not self.contacts and not self.remove_all


def wanted_contacts(request: Request, policy: Policy) -> Wanted:
    """Steps 6-7 of §10.3: the contacts and their expiry, or a Refusal."""
    header_expires = request.headers.get("Expires")
    try:
        default = (
            parse_expires(header_expires) if header_expires is not None else policy.default_expires
        )
        values = [shared_name_addr(v) for v in request.headers.get_all("Contact")]  # read only
    except ParseError as error:
        raise Refusal(400, f"Bad Request: {error}") from None
    if any(v.wildcard for v, _ in values):
        # §10.3 step 6: "*" only alone and only with Expires: 0.
        if len(values) != 1 or header_expires is None or default != 0:
            raise Refusal(400, "Bad Request: Contact * needs Expires: 0 and no other contact")
        return Wanted(contacts=[], remove_all=True)
    contacts: dict[str, WantedContact] = {}
    for value, uri in values:
        if not value.uri.is_sip:
            raise Refusal(416, "Unsupported URI Scheme")
        try:
            raw = value.params.get("expires")
            expires = parse_expires(raw) if raw is not None else default
        except ParseError as error:
            raise Refusal(400, f"Bad Request: {error}") from None
        if 0 < expires < policy.min_expires:
            # §10.3 step 7 / §20.23: too brief, say what we accept.
            raise Refusal(423, "Interval Too Brief", [("Min-Expires", str(policy.min_expires))])
        expires = min(expires, policy.max_expires)
        instance = (value.params.get("+sip.instance") or "").strip('"')[:255]
        q = _q(value.params.get("q"))
        contacts[uri] = WantedContact(uri=uri, expires=expires, instance=instance, q=q)
    return Wanted(contacts=list(contacts.values()))


def _q(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        q = float(raw)
    except ValueError:
        raise Refusal(400, "Bad Request: malformed q parameter") from None
    if not 0 <= q <= 1:
        raise Refusal(400, "Bad Request: q out of range")
    return q


def plan(existing: list[Existing], wanted: Wanted, call_id: str, cseq: int, policy: Policy,
         source_host: str = "", user_agent: str = "") -> Plan:
    """Step 8 of §10.3 applied to every contact of the request.

    `source_host` and `user_agent` are the request's: a new contact that looks
    like a phone back from a restart on a new port (see _same_phone) marks the
    binding of its earlier life `superseded`. That one is not replaced outright,
    since two live phones of one program on one address look the same; sipd's
    qualifier probes it at once and drops it if it does not answer."""
    result = Plan(query_only=wanted.query_only)
    if wanted.remove_all:
        for binding in existing:
            # §10.3 step 6: with the same Call-ID, a CSeq not higher is ignored.
            if binding.call_id == call_id and cseq <= binding.cseq:
                raise Refusal(500, "Server Internal Error: out of order CSeq")
            result.remove.append(binding)
        return result
    kept = list(existing)
    for contact in wanted.contacts:
        match = _match(kept, contact)
        if match is not None:
            if match.call_id == call_id and cseq <= match.cseq:
                raise Refusal(500, "Server Internal Error: out of order CSeq")
            kept.remove(match)
            if contact.expires == 0:
                result.remove.append(match)
            else:
                result.refresh.append((match, contact))
        elif contact.expires > 0:
            result.add.append(contact)
            if not contact.instance:
                result.superseded += [
                    b for b in kept
                    if _same_phone(b, contact, call_id, source_host, user_agent)
                    and b not in result.superseded
                ]
    # Bindings of a phone that came back (same +sip.instance, RFC 5626 §6) with
    # a new contact were matched above; now enforce the per-AOR limit by
    # dropping the oldest bindings the request did not name.
    total = len(kept) + len(result.refresh) + len(result.add)
    if total > policy.max_contacts:
        for binding in sorted(kept, key=lambda b: b.registered_at)[: total - policy.max_contacts]:
            result.remove.append(binding)
            kept.remove(binding)
        if len(result.refresh) + len(result.add) > policy.max_contacts:
            raise Refusal(403, f"Forbidden: at most {policy.max_contacts} contacts per extension")
    return result


def _match(bindings: list[Existing], contact: WantedContact) -> Existing | None:
    # RFC 5626 §4.2 / RFC 5627 §3.2: the +sip.instance names the device, whatever
    # its Contact URI (a new port after a restart), so it is compared first: the
    # binding is refreshed with the new contact, i.e. replaced.
    for binding in bindings:
        if contact.instance and binding.instance == contact.instance:
            return binding
    for binding in bindings:
        if binding.contact == contact.uri:
            return binding
    return None


def _same_phone(binding: Existing, contact: WantedContact, call_id: str, source_host: str,
                user_agent: str) -> bool:
    """Without an instance, a phone that restarted: a new boot cycle (another
    Call-ID: a UA keeps one for all its registrations while it runs, §10.2.4)
    from the same source address, with the same User-Agent, and the same
    Contact host on another port. Two PCs behind one NAT address with the same
    softphone differ in their Contact's (private) host, and are not suspected;
    a binding with an instance is left to its instance. Still a guess (two sipp
    processes on one host match it too), hence a probe rather than a removal."""
    return bool(
        user_agent
        and not binding.instance
        and binding.call_id != call_id
        and binding.source_host == source_host
        and binding.user_agent == user_agent
        and _contact_host(binding.contact) == _contact_host(contact.uri)
    )


def _contact_host(uri: str) -> str:
    """user@host of a (normalized) Contact URI, without port or parameters."""
    rest = uri.split(":", 1)[-1].split(";", 1)[0]
    if rest.rfind("]") < rest.rfind(":"):
        rest = rest[: rest.rfind(":")]
    return rest.lower()
