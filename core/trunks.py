"""Trunks (issue 12, item 6): the validated writes pbxctl and the panel share.

A trunk is a phone provider (core/models.py Trunk). Each operation checks
everything first and writes in one transaction; errors are `AccountError` with
a message fit to show a person. The password is kept as given because it must
be sent (DESIGN.md, Secrets) but is never returned by `describe`, so it is
never printed, logged or exported; callers show only `password_state`.
sipd reads trunks on "trunk reload" (core/control.reload_trunks); `notify_sipd`
asks for it and tolerates a sipd that is not running, because the next start
reads the table anyway.
"""

from __future__ import annotations

import ipaddress
import re
import time

from core.accounts import AccountError
from core.database import atomic
from core.models import Trunk, TrunkState
from core.text import N_, Text

TRANSPORTS = Trunk.TRANSPORTS
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# A host name (RFC 1123 labels) or an IPv4 address; [v6] in brackets.
HOST_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                     r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
USER_RE = re.compile(r"^[A-Za-z0-9_.!~*'()&=+$,;?/%-]{0,128}$")  # RFC 3261 §25.1 user
CALLER_ID_RE = re.compile(r"^\+?[0-9]{0,31}$")
MAX_CALLS = (0, 1000)
KEEPALIVE = (0, 3600)


def check_name(value) -> str:
    name = (value or "").strip()
    if not NAME_RE.match(name):
        raise AccountError(Text(N_("trunk name %(text)r must be 1 to 64 letters, digits,"
                                   " '.', '_' or '-'"), text=name))
    return name


def check_host(value) -> tuple[str, int | None]:
    """HOST[:PORT] -> (host, port or None); [IPv6]:PORT for a v6 address."""
    text = (value or "").strip()
    host, port = text, None
    if text.startswith("["):
        inside, _, rest = text[1:].partition("]")
        host = inside
        if rest:
            if not rest.startswith(":"):
                raise AccountError(Text(N_("bad host %(text)r"), text=text))
            port = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise AccountError(Text(N_("bad host %(text)r"), text=text)) from None
    else:
        if text.count(":") == 1:
            host, port = text.split(":")
        if not HOST_RE.match(host):
            raise AccountError(Text(N_("bad host %(text)r"), text=text))
    if port is not None:
        if not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise AccountError(Text(N_("port must be 1 to 65535, got %(text)r"), text=port))
        port = int(port)
    return host, port


def check_transport(value) -> str:
    transport = (value or "udp").strip().lower()
    if transport not in TRANSPORTS:
        raise AccountError(Text(N_("transport must be udp, tcp or tls, got %(text)r"),
                                text=value or ""))
    return transport


def check_user(value, message: str = N_("bad username %(text)r")) -> str:
    user = (value or "").strip()
    if not USER_RE.match(user):
        raise AccountError(Text(message, text=user))
    return user


def check_match(value) -> str:
    """Comma-separated CIDRs (or single addresses) -> their normal form, comma-joined."""
    networks = []
    for part in (value or "").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            networks.append(str(ipaddress.ip_network(part, strict=False)))
        except ValueError:
            raise AccountError(Text(N_("bad address or network %(text)r"), text=part)) from None
    return ",".join(networks)


def check_domain(value) -> str:
    domain = (value or "").strip()
    if domain and not HOST_RE.match(domain):
        raise AccountError(Text(N_("bad domain %(text)r"), text=domain))
    return domain


def check_caller_id(value) -> str:
    number = (value or "").strip()
    if not CALLER_ID_RE.match(number):
        raise AccountError(Text(N_("caller ID must be digits (a leading + allowed),"
                                   " got %(text)r"), text=number))
    return number


CALLER_ID_HEADERS = ("from", "pai")


def check_caller_id_header(value) -> str:
    """Where the caller ID goes: From, or P-Asserted-Identity (RFC 3325) with From left alone."""
    header = (value or "from").strip().lower()
    if header not in CALLER_ID_HEADERS:
        raise AccountError(Text(N_("caller ID header must be from or pai, got %(text)r"),
                                text=value or ""))
    return header


def _bounded(value, bounds, message) -> int:
    text = str(value).strip()
    low, high = bounds
    if not text.isascii() or not text.isdigit() or not low <= int(text) <= high:
        raise AccountError(Text(message, low=low, high=high, text=text))
    return int(text)


def check_password(value) -> str:
    password = value or ""
    if len(password) > 255 or any(not c.isprintable() for c in password):
        # Never echo it: the message names the problem, not the value.
        raise AccountError(Text(N_("a trunk password is at most 255 printable characters")))
    return password


def _fields(values: dict) -> dict:
    fields: dict = {}
    checks = {
        "transport": check_transport,
        "username": check_user,
        "auth_user": lambda v: check_user(v, N_("bad auth user %(text)r")),
        "from_user": lambda v: check_user(v, N_("bad from user %(text)r")),
        "from_domain": check_domain,
        "caller_id": check_caller_id,
        "caller_id_header": check_caller_id_header,
        "match": check_match,
        "password": check_password,
        "max_calls": lambda v: _bounded(v, MAX_CALLS, N_(
            "max calls must be %(low)s to %(high)s, got %(text)r")),
        "keepalive_interval": lambda v: _bounded(v, KEEPALIVE, N_(
            "keep-alive must be %(low)s to %(high)s seconds, got %(text)r")),
    }
    for key, value in values.items():
        if value is None:
            continue
        if key == "host":
            fields["host"], fields["port"] = check_host(value)
        elif key == "outbound_proxy":
            fields["outbound_proxy"] = "" if not value.strip() else value.strip()
            if fields["outbound_proxy"]:
                check_host(fields["outbound_proxy"])
        elif key in ("register", "enabled"):
            fields[key] = bool(value)
        elif key in checks:
            fields[key] = checks[key](value)
        else:
            raise TypeError(f"unknown trunk field {key}")
    return fields


def _kind(fields: dict) -> str:
    return "register" if fields.get("register") else "ip"


def _check_whole(trunk: dict) -> None:
    if trunk.get("register") and not trunk.get("username"):
        raise AccountError(Text(N_("a trunk that registers needs a username")))
    if not trunk.get("register") and not trunk.get("match") and not trunk.get("username"):
        raise AccountError(Text(N_("a trunk needs --register with a username, or the"
                                   " addresses it calls from (--match)")))


def create_trunk(name: str, host: str, **values) -> Trunk:
    name = check_name(name)
    fields = _fields({"host": host, **values})
    _check_whole(fields)
    with atomic():
        if Trunk.get_or_none(Trunk.name == name) is not None:
            raise AccountError(Text(N_("trunk %(name)s already exists"), name=name))
        trunk = Trunk.create(name=name, kind=_kind(fields), **fields)
    return trunk


def update_trunk(name: str, **values) -> Trunk:
    """Change what is given (None: unchanged). password "" clears it."""
    fields = _fields(values)
    with atomic():
        trunk = get_trunk(name)
        merged = {k: getattr(trunk, k) for k in ("register", "username", "match")}
        merged.update({k: v for k, v in fields.items() if k in merged})
        _check_whole(merged)
        fields["kind"] = _kind(merged)
        fields["updated_at"] = time.time()
        Trunk.update(**fields).where(Trunk.id == trunk.id).execute()
    return get_trunk(name)


def delete_trunk(name: str) -> None:
    from core.models import InboundRoute

    with atomic():
        trunk = get_trunk(name)
        # peewee's recursive delete would set a nullable reference to NULL, turning the
        # trunk's own inbound routes into routes "on any trunk": they go with it.
        InboundRoute.delete().where(InboundRoute.trunk == trunk.id).execute()
        trunk.delete_instance(recursive=True)


def get_trunk(name: str) -> Trunk:
    trunk = Trunk.get_or_none(Trunk.name == (name or "").strip())
    if trunk is None:
        raise AccountError(Text(N_("no trunk %(name)s"), name=(name or "").strip()))
    return trunk


def list_trunks() -> list[Trunk]:
    return list(Trunk.select().order_by(Trunk.name))


def state_of(trunk: Trunk) -> TrunkState | None:
    return TrunkState.get_or_none(TrunkState.trunk == trunk.id)


def password_state(trunk: Trunk) -> str:
    return N_("set") if trunk.password else N_("not set")


def describe(trunk: Trunk) -> dict:
    """What may be shown or audited of a trunk: everything but the password."""
    host = f"[{trunk.host}]" if ":" in trunk.host else trunk.host
    return {
        "name": trunk.name,
        "host": f"{host}:{trunk.port}" if trunk.port else host,
        "transport": trunk.transport,
        "register": "yes" if trunk.register else "no",
        "username": trunk.username,
        "auth_user": trunk.auth_user,
        "password": password_state(trunk),
        "match": trunk.match,
        "from_user": trunk.from_user,
        "from_domain": trunk.from_domain,
        "caller_id": trunk.caller_id,
        "caller_id_header": trunk.caller_id_header,
        "max_calls": str(trunk.max_calls),
        "outbound_proxy": trunk.outbound_proxy,
        "keepalive_interval": str(trunk.keepalive_interval),
        "enabled": "yes" if trunk.enabled else "no",
    }


def detail(trunk: Trunk) -> str:
    """The audit row's detail: no password, only whether one is set."""
    return ", ".join(f"{k} {v}" for k, v in describe(trunk).items() if v and k != "name")


def notify_sipd(settings) -> str:
    """Ask a running sipd to re-read its trunks; "" when done, else why not (not an error:
    a sipd that is not running reads the table when it starts)."""
    from core import control

    try:
        control.reload_trunks(settings)
    except control.ControlError as error:  # sipd down or old: the change is saved anyway
        return f"sipd not told ({error})"
    return ""
