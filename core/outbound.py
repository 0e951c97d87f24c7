"""Calls to and from the outside world (issue 12, items 3, 4 and 6): the validated
writes of inbound routes, outbound routes, extension permissions and limits, and the
toll-fraud policy, shared by pbxctl (pbxcli_outbound.py) and the panel (app/trunks/).

Like core/trunks.py, each operation checks everything first and writes in one
transaction; errors are `AccountError` with a message fit to show a person. The
caller writes the audit row in the same transaction. sipd reads these tables when a
call is routed (sipd/routing/directory.py), so a change applies to the next call.

Meaning of the rows (core/models.py, migration 0013):
- InboundRoute: a DID (the Request-URI user of a provider's INVITE, as the provider
  writes it) -> a destination (core/destinations.py); trunk None: on any trunk.
- OutboundRoute: ordered by `position` (0 first, first match wins), its dial patterns
  one per line (core/dial_patterns.py), its trunks tried in order. An emergency
  route is always allowed; a new one goes before the others unless told where.
- OutboundPolicy (one row): the home country, the other allowed country codes
  (digits, comma-separated) and the default limits.
- Extension.outbound_*: the permission, a caller ID, the limits (None = the
  policy's), and the block an hourly limit sets (cleared by `unblock`).
"""

from __future__ import annotations

import re
import time

from peewee import JOIN

from core import destinations, dial_patterns
from core.accounts import AccountError, get_extension
from core.database import atomic
from core.models import (
    OUTBOUND_PERMISSIONS,
    Extension,
    FraudEvent,
    InboundRoute,
    OutboundPolicy,
    OutboundRoute,
    OutboundRouteTrunk,
    Trunk,
)
from core.text import N_, Text
from core.tolls import country_code
from core.trunks import check_caller_id, get_trunk

PERMISSIONS = OUTBOUND_PERMISSIONS
DID_RE = re.compile(r"^\+?[0-9]{1,31}$")
ROUTE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_PATTERNS = 100
MAX_TRUNKS = 20
# Limits: (lowest, highest). A limit of 0 would stop every outside call, which
# is the permission's job ("internal"), so the lowest is 1. The highest are far
# above what an office dials and still stop a runaway extension.
LIMITS = {
    "max_calls": (1, 1000),
    "calls_per_hour": (1, 10000),
    "minutes_per_hour": (1, 60000),
    "trunk_max_calls": (1, 1000),
}
LIMIT_LABELS = {
    "max_calls": N_("outside calls at once per extension"),
    "calls_per_hour": N_("outside calls per extension per hour"),
    "minutes_per_hour": N_("outside minutes per extension per hour"),
    "trunk_max_calls": N_("calls at once per trunk"),
}


# -- checks ---------------------------------------------------------------------------------


def check_did(value) -> str:
    did = (value or "").strip()
    if not DID_RE.match(did):
        raise AccountError(Text(N_("DID %(text)r must be 1 to 31 digits, a leading + allowed"),
                                text=did))
    return did


def check_destination(value) -> str:
    try:
        destination = destinations.check(value)
    except destinations.DestinationError as error:
        raise AccountError(error.args[0]) from None
    if not destination:
        raise AccountError(Text(N_("an inbound route needs a destination")))
    return destination


def check_route_name(value) -> str:
    name = (value or "").strip()
    if not ROUTE_NAME_RE.match(name):
        raise AccountError(Text(N_("route name %(text)r must be 1 to 64 letters, digits,"
                                   " '.', '_' or '-'"), text=name))
    return name


def check_patterns(values) -> list[str]:
    """The dial patterns as written (outer spaces removed), at least one, none twice."""

    found: list[str] = []
    if isinstance(values, str):  # a form's text area: one per line
        values = [values]
    for value in values or []:
        for text in str(value).splitlines():
            text = text.strip()
            if not text:
                continue
            try:
                dial_patterns.parse(text)
            except dial_patterns.PatternError as error:
                raise AccountError(error.args[0]) from None
            if text in found:
                raise AccountError(Text(N_("dial pattern %(text)r is given twice"), text=text))
            found.append(text)
    if not found:
        raise AccountError(Text(N_("an outbound route needs at least one dial pattern")))
    if len(found) > MAX_PATTERNS:
        raise AccountError(Text(N_("an outbound route has at most %(limit)s dial patterns"),
                                limit=MAX_PATTERNS))
    return found


def check_trunks(names) -> list[Trunk]:
    """The trunks in the order they are tried: at least one, each existing, none twice."""
    wanted = [str(n).strip() for n in names or [] if str(n).strip()]
    if not wanted:
        raise AccountError(Text(N_("an outbound route needs at least one trunk")))
    if len(wanted) > MAX_TRUNKS:
        raise AccountError(Text(N_("an outbound route has at most %(limit)s trunks"),
                                limit=MAX_TRUNKS))
    result: list[Trunk] = []
    for name in wanted:
        trunk = get_trunk(name)
        if trunk in result:
            raise AccountError(Text(N_("trunk %(name)s is given twice"), name=name))
        result.append(trunk)
    return result


def check_permission(value) -> str:
    permission = (value or "").strip().lower()
    if permission not in PERMISSIONS:
        raise AccountError(Text(N_("permission must be internal, national or international,"
                                   " got %(text)r"), text=value or ""))
    return permission


def check_country(value) -> str:
    """An E.164 country code ("998", "+998" given) as digits; "" stays ""."""

    code = (value or "").strip().removeprefix("+")
    if not code:
        return ""
    # E.164 codes are prefix-free: a real code is what a number beginning with it starts with.
    if (not code.isascii() or not code.isdigit() or len(code) > 3
            or country_code(code + "0000000") != code):
        raise AccountError(Text(N_("%(text)r is not a country code (E.164: 1 to 3 digits,"
                                   " e.g. 998 or 7)"), text=(value or "").strip()))
    return code


def check_countries(value) -> str:
    """Country codes ("7, +44" or a list) -> "7,44": each checked, none twice."""
    parts = value.split(",") if isinstance(value, str) else list(value or [])
    codes: list[str] = []
    for part in parts:
        code = check_country(part)
        if code and code not in codes:
            codes.append(code)
    return ",".join(codes)


def check_limit(key: str, value) -> int:
    low, high = LIMITS[key]
    text = str(value).strip()
    if not text.isascii() or not text.isdigit() or not low <= int(text) <= high:
        raise AccountError(Text(N_("%(what)s must be %(low)s to %(high)s, got %(text)r"),
                                what=Text(LIMIT_LABELS[key]), low=low, high=high, text=text))
    return int(text)


# -- inbound routes -------------------------------------------------------------------------


def _trunk_or_none(name) -> Trunk | None:
    return get_trunk(name) if (name or "").strip() else None


def _same_route(did: str, trunk: Trunk | None):
    query = InboundRoute.select().where(InboundRoute.did == did)
    # NULL never equals NULL in the unique index, so "any trunk" is checked here.
    if trunk is None:
        return query.where(InboundRoute.trunk.is_null())
    return query.where(InboundRoute.trunk == trunk.id)


def create_inbound(did: str, destination: str, trunk: str | None = None,
                   record: bool = False) -> InboundRoute:
    did = check_did(did)
    with atomic():
        destination = check_destination(destination)
        found = _trunk_or_none(trunk)
        if _same_route(did, found).exists():
            if found is None:
                raise AccountError(Text(N_("DID %(did)s already has a route"), did=did))
            raise AccountError(Text(N_("DID %(did)s already has a route on trunk %(trunk)s"),
                                    did=did, trunk=found.name))
        route = InboundRoute.create(did=did, destination=destination, trunk=found,
                                    record=bool(record))
    return route


def update_inbound(route_id: int, did: str, destination: str,
                   trunk: str | None = None, record: bool | None = None) -> InboundRoute:
    """`record` None: unchanged."""
    did = check_did(did)
    with atomic():
        route = get_inbound_by_id(route_id)
        destination = check_destination(destination)
        found = _trunk_or_none(trunk)
        if _same_route(did, found).where(InboundRoute.id != route.id).exists():
            raise AccountError(Text(N_("DID %(did)s already has a route"), did=did))
        fields = {"did": did, "destination": destination, "trunk": found}
        if record is not None:
            fields["record"] = bool(record)
        InboundRoute.update(**fields).where(InboundRoute.id == route.id).execute()
    return get_inbound_by_id(route.id)


def get_inbound_by_id(route_id) -> InboundRoute:
    route = InboundRoute.get_or_none(InboundRoute.id == route_id)
    if route is None:
        raise AccountError(Text(N_("no such inbound route")))
    return route


def inbound_for(did: str, trunk: str | None = None) -> list[InboundRoute]:
    """The routes of `did`: all of them, or the one on `trunk` ("" : the any-trunk one)."""
    did = (did or "").strip()
    query = InboundRoute.select().where(InboundRoute.did == did)
    if trunk is not None:
        query = _same_route(did, _trunk_or_none(trunk))
    routes = list(query.order_by(InboundRoute.id))
    if not routes:
        if trunk:
            raise AccountError(Text(N_("no inbound route for DID %(did)s on trunk %(trunk)s"),
                                    did=did, trunk=trunk.strip()))
        raise AccountError(Text(N_("no inbound route for DID %(did)s"), did=did))
    return routes


def delete_inbound(route_id) -> InboundRoute:
    with atomic():
        route = get_inbound_by_id(route_id)
        route.delete_instance()
    return route


def list_inbound() -> list[InboundRoute]:
    return list(InboundRoute.select(InboundRoute, Trunk)
                .join(Trunk, JOIN.LEFT_OUTER).switch(InboundRoute)
                .order_by(InboundRoute.did, Trunk.name))


def describe_inbound(route: InboundRoute) -> str:
    on = f" on trunk {route.trunk.name}" if route.trunk_id else " on any trunk"
    return f"{route.did}{on} -> {route.destination}" + (", recorded" if route.record else "")


# -- outbound routes ------------------------------------------------------------------------


def _write_trunks(route: OutboundRoute, trunks: list[Trunk]) -> None:
    OutboundRouteTrunk.delete().where(OutboundRouteTrunk.route == route.id).execute()
    OutboundRouteTrunk.insert_many(
        [{"route": route.id, "trunk": t.id, "position": i} for i, t in enumerate(trunks)]
    ).execute()


def _ordered() -> list[OutboundRoute]:
    return list(OutboundRoute.select().order_by(OutboundRoute.position, OutboundRoute.id))


def _place(route: OutboundRoute, position: int | None) -> None:
    """Put `route` at `position` (0 first; None or past the end: last) and number the
    routes 0, 1, 2... again, so positions stay the order an admin sees."""
    others = [r for r in _ordered() if r.id != route.id]
    at = len(others) if position is None else max(0, min(int(position), len(others)))
    others.insert(at, route)
    for index, each in enumerate(others):
        if each.position != index or each.id == route.id:
            OutboundRoute.update(position=index).where(OutboundRoute.id == each.id).execute()


def check_position(value) -> int | None:
    if value is None or str(value).strip() == "":
        return None
    text = str(value).strip()
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise AccountError(Text(N_("position must be 1 or more, got %(text)r"), text=text))
    return int(text) - 1  # people count from 1


def create_outbound(name: str, trunks, patterns, caller_id: str = "",
                    emergency: bool = False, position=None,
                    record: bool = False) -> OutboundRoute:
    """`position`: 1 = first; None = last, or for an emergency route before every
    route that is not one (so a broad national pattern cannot take 112 first)."""
    name = check_route_name(name)
    patterns = check_patterns(patterns)
    caller_id = check_caller_id(caller_id)
    at = check_position(position)
    with atomic():
        found = check_trunks(trunks)
        if OutboundRoute.get_or_none(OutboundRoute.name == name) is not None:
            raise AccountError(Text(N_("outbound route %(name)s already exists"), name=name))
        if at is None and emergency:
            at = sum(1 for r in _ordered() if r.emergency)
        route = OutboundRoute.create(name=name, patterns="\n".join(patterns),
                                     caller_id=caller_id, emergency=bool(emergency),
                                     record=bool(record), position=10**6)
        _write_trunks(route, found)
        _place(route, at)
    return get_outbound(name)


def update_outbound(name: str, *, new_name: str | None = None, trunks=None, patterns=None,
                    caller_id: str | None = None, emergency: bool | None = None,
                    position=None, record: bool | None = None) -> OutboundRoute:
    """Change what is given (None: unchanged); `trunks` and `patterns` replace the lists."""
    fields: dict = {"updated_at": time.time()}
    if new_name is not None:
        fields["name"] = check_route_name(new_name)
    if patterns is not None:
        fields["patterns"] = "\n".join(check_patterns(patterns))
    if caller_id is not None:
        fields["caller_id"] = check_caller_id(caller_id)
    if emergency is not None:
        fields["emergency"] = bool(emergency)
    if record is not None:
        fields["record"] = bool(record)
    at = check_position(position)
    with atomic():
        route = get_outbound(name)
        found = check_trunks(trunks) if trunks is not None else None
        if (fields.get("name", route.name) != route.name
                and OutboundRoute.get_or_none(OutboundRoute.name == fields["name"]) is not None):
            raise AccountError(Text(N_("outbound route %(name)s already exists"),
                                    name=fields["name"]))
        OutboundRoute.update(**fields).where(OutboundRoute.id == route.id).execute()
        if found is not None:
            _write_trunks(route, found)
        if at is not None:
            _place(route, at)
    return get_outbound(fields.get("name", route.name))


def delete_outbound(name: str) -> OutboundRoute:
    with atomic():
        route = get_outbound(name)
        route.delete_instance(recursive=True)
        for index, each in enumerate(_ordered()):
            OutboundRoute.update(position=index).where(OutboundRoute.id == each.id).execute()
    return route


def get_outbound(name: str) -> OutboundRoute:
    route = OutboundRoute.get_or_none(OutboundRoute.name == (name or "").strip())
    if route is None:
        raise AccountError(Text(N_("no outbound route %(name)s"), name=(name or "").strip()))
    return route


def list_outbound() -> list[OutboundRoute]:
    return _ordered()


def describe_outbound(route: OutboundRoute) -> str:
    """The audit row's detail and what pbxctl prints after a change."""
    words = [f"position {route.position + 1}", "trunks " + ",".join(route.trunk_names()),
             "patterns " + " ".join(route.pattern_list())]
    if route.caller_id:
        words.append(f"caller ID {route.caller_id}")
    if route.emergency:
        words.append("emergency")
    if route.record:
        words.append("recorded")
    return ", ".join(words)


def routes_without_trunks() -> list[str]:
    """Outbound routes left with no trunk (after a trunk was deleted): they take no call."""
    return [r.name for r in _ordered() if not r.trunk_names()]


# -- extensions -----------------------------------------------------------------------------


def set_permission(number: str, permission: str) -> Extension:
    permission = check_permission(permission)
    with atomic():
        extension = get_extension(number)
        Extension.update(outbound_permission=permission, updated_at=time.time()).where(
            Extension.id == extension.id).execute()
    return get_extension(extension.number)


EXTENSION_LIMITS = {
    "max_calls": "outbound_max_calls",
    "calls_per_hour": "outbound_calls_per_hour",
    "minutes_per_hour": "outbound_minutes_per_hour",
}


def set_extension_outbound(number: str, *, caller_id: str | None = None,
                           **limits) -> Extension:
    """The extension's own caller ID ("" : the route's or the trunk's) and limits
    (max_calls, calls_per_hour, minutes_per_hour; "" or "default": the policy's);
    None leaves a value unchanged."""
    fields: dict = {}
    if caller_id is not None:
        fields["outbound_caller_id"] = check_caller_id(caller_id)
    for key, value in limits.items():
        if key not in EXTENSION_LIMITS:
            raise TypeError(f"unknown extension limit {key}")
        if value is None:
            continue
        text = str(value).strip().lower()
        fields[EXTENSION_LIMITS[key]] = (None if text in ("", "default")
                                         else check_limit(key, text))
    with atomic():
        extension = get_extension(number)
        if fields:
            fields["updated_at"] = time.time()
            Extension.update(**fields).where(Extension.id == extension.id).execute()
    return get_extension(extension.number)


def effective_limits(extension: Extension, policy: OutboundPolicy | None = None) -> dict:
    """key -> (value in force, True when it is the extension's own)."""
    policy = policy or OutboundPolicy.current()
    result = {}
    for key, column in EXTENSION_LIMITS.items():
        own = getattr(extension, column)
        result[key] = (own, True) if own is not None else (getattr(policy, key), False)
    return result


def describe_extension(extension: Extension) -> str:
    limits = effective_limits(extension)
    words = [f"permission {extension.outbound_permission}",
             f"caller ID {extension.outbound_caller_id or 'default'}"]
    for key, (value, own) in limits.items():
        words.append(f"{key.replace('_', ' ')} {value}{'' if own else ' (policy)'}")
    if extension.outbound_blocked_at is not None:
        words.append(f"BLOCKED: {extension.outbound_blocked_reason or 'hourly limit'}")
    return ", ".join(words)


def unblock(number: str) -> tuple[Extension, str]:
    """Lift the block an hourly limit set; returns the extension and the reason it had."""
    with atomic():
        extension = get_extension(number)
        if extension.outbound_blocked_at is None:
            raise AccountError(Text(N_("extension %(number)s is not blocked"),
                                    number=extension.number))
        reason = extension.outbound_blocked_reason
        Extension.update(outbound_blocked_at=None, outbound_blocked_reason="",
                         updated_at=time.time()).where(Extension.id == extension.id).execute()
    return get_extension(extension.number), reason


def blocked_extensions() -> list[Extension]:
    return list(Extension.select().where(Extension.outbound_blocked_at.is_null(False))
                .order_by(Extension.outbound_blocked_at.desc()))


def fraud_events(limit: int = 200, extension: str = "") -> list[FraudEvent]:
    query = FraudEvent.select()
    if extension:
        query = query.where(FraudEvent.extension == extension)
    return list(query.order_by(FraudEvent.created_at.desc(), FraudEvent.id.desc()).limit(limit))


# -- the policy -----------------------------------------------------------------------------


def get_policy() -> OutboundPolicy:
    return OutboundPolicy.current()


def set_policy(*, home_country: str | None = None, allowed_countries=None,
               **limits) -> OutboundPolicy:
    """Change what is given (None: unchanged): the home country ("" : none, and then no
    international call is allowed), the allowed country codes (replacing the list),
    and the limits of LIMITS."""
    fields: dict = {}
    if home_country is not None:
        fields["home_country"] = check_country(home_country)
    if allowed_countries is not None:
        fields["allowed_countries"] = check_countries(allowed_countries)
    for key, value in limits.items():
        if key not in LIMITS:
            raise TypeError(f"unknown policy limit {key}")
        if value is not None:
            fields[key] = check_limit(key, value)
    with atomic():
        policy = OutboundPolicy.get_or_none(OutboundPolicy.id == 1)
        if policy is None:  # migration 0013 makes it; a database restored without it
            OutboundPolicy.create(id=1)
        if fields:
            fields["updated_at"] = time.time()
            OutboundPolicy.update(**fields).where(OutboundPolicy.id == 1).execute()
    return OutboundPolicy.current()


def describe_policy(policy: OutboundPolicy) -> str:
    words = [f"home country {('+' + policy.home_country) if policy.home_country else 'none'}",
             "allowed countries " + (",".join("+" + c for c in
                                              policy.allowed_countries.split(",") if c)
                                     or "none")]
    words += [f"{key.replace('_', ' ')} {getattr(policy, key)}" for key in LIMITS]
    return ", ".join(words)
