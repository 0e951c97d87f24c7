"""What a phone must be told to reach this PBX: address, ports, transports, realm.

sipd decides these when it starts (its listening port may differ from the
settings of the process asking, and the kernel picks it for port 0) and
records them in its `service` row (core/services.py); the panel and pbxctl
read that row, so they describe the PBX that runs, not their own environment.
Before sipd has ever run they fall back to the settings, and say so.

The address is PBX_PUBLIC_ADDRESS; else sipd's listening address if it is a
specific one; else the address of the interface the default route leaves from
(found without sending anything); else 127.0.0.1. sipd's media relay writes
the same address into SDP (sipd/media advertised_address uses detect()).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from pathlib import Path

from core.config import Settings
from core.text import N_, Text

WILDCARDS = ("", "0.0.0.0", "::")
# RFC 5737 TEST-NET-1: connect() on a UDP socket only chooses the route and the
# source address; no packet is sent to it (or anywhere).
_ROUTE_PROBE = ("192.0.2.1", 9)



# How the address was found, in the words the panel shows (sipd records one of these).
FROM_SETTING = "PBX_PUBLIC_ADDRESS"
FROM_LISTEN = N_("PBX_SIP_LISTEN (sipd listens on this address only)")
FROM_ROUTE = N_("detected: the address of the interface the default route leaves from")
FROM_FALLBACK = N_("detected: no default route, so the loopback address")


def detect(settings: Settings, listen_host: str | None = None) -> tuple[str, str]:
    """(address, how it was found) for phones and SDP."""
    host = settings.sip_host if listen_host is None else listen_host
    if settings.public_address:
        return settings.public_address, FROM_SETTING
    if host not in WILDCARDS:
        return host, FROM_LISTEN
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(_ROUTE_PROBE)
            address = probe.getsockname()[0]
    except OSError:
        address = ""
    if address in WILDCARDS:
        return "127.0.0.1", FROM_FALLBACK
    return address, FROM_ROUTE


def warnings_for(address: str, hosts_file: str = "/etc/hosts", dns_reminder: bool = True
                 ) -> list[str]:
    """Why phones on other machines may fail to reach `address`; `dns_reminder`: also
    remind that a DNS name must resolve for every phone."""
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        found = _name_warnings(address, hosts_file)
        return found if dns_reminder or not found[0].endswith(DNS_REMINDER) else []
    if ip.is_loopback:
        return [Text(N_("%(address)s is a loopback address: only programs on the PBX's own"
                        " machine can reach it. Set PBX_PUBLIC_ADDRESS to an address the phones"
                        " can reach."), address=address)]
    if ip.is_unspecified:
        return [Text(N_("%(address)s is not an address a phone can send to."
                        " Set PBX_PUBLIC_ADDRESS."), address=address)]
    if ip.is_link_local:
        return [Text(N_("%(address)s is a link-local address: it changes and is reachable from"
                        " the same network segment only. Set PBX_PUBLIC_ADDRESS."),
                     address=address)]
    return []


DNS_REMINDER = "every phone must be able to resolve it in DNS."


def _name_warnings(name: str, hosts_file: str) -> list[str]:
    if name.lower() == "localhost" or name.lower().endswith(".localhost"):
        return [Text(N_("%(name)s names the PBX's own machine only: phones elsewhere cannot"
                        " reach it. Set PBX_PUBLIC_ADDRESS to an address the phones can reach."),
                     name=name)]
    if name.lower() in _names_in(hosts_file):
        return [Text(N_("%(name)s is a name from this machine's %(file)s: other machines may"
                        " not resolve it. Set PBX_PUBLIC_ADDRESS to an IP address or a name in"
                        " DNS."), name=name, file=hosts_file)]
    if "." not in name:
        return [Text(N_("%(name)s is a bare host name: only machines whose hosts file or local"
                        " DNS know it can resolve it. Set PBX_PUBLIC_ADDRESS to an IP address or"
                        " a name in DNS."), name=name)]
    return [Text(N_("%(name)s is a name: every phone must be able to resolve it in DNS."),
                 name=name)]


def _names_in(hosts_file: str) -> set[str]:
    try:
        text = Path(hosts_file).read_text(errors="replace")
    except OSError:
        return set()
    names = set()
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        names.update(name.lower() for name in fields[1:])
    return names


@dataclass(frozen=True)
class PhoneSettings:
    """What the panel's settings box, the provisioning files and pbxctl tell phones."""

    address: str
    source: str  # how the address was found (FROM_*)
    port: int  # UDP and TCP
    tls_port: int | None
    realm: str
    # None when read from the running sipd's record; else why it is a guess.
    note: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def transports(self) -> str:
        return Text(N_("UDP, TCP or TLS")) if self.tls_port else Text(N_("UDP or TCP"))

    @property
    def host(self) -> str:
        """The address as it goes into a URI (RFC 3261 §25.1: an IPv6 reference in brackets)."""
        return f"[{self.address}]" if ":" in self.address else self.address

    @property
    def server(self) -> str:
        return f"{self.host}:{self.port}"


NEVER_RAN = Text(N_("sipd has not recorded itself in the database yet (it has never run with"
                    " this database): these come from the settings of this process, not from"
                    " the running PBX."))


NOT_RUNNING = N_("sipd is not running now (%(state)s): these are what it used when it last ran,"
                 " and what it uses again if started with the same settings.")


def current(settings: Settings) -> PhoneSettings:
    """From sipd's record on this host, else the most recent one, else the settings."""
    from core.services import state_of

    state = state_of("sipd")
    record = state.record
    if record is not None and record.sip_port:
        address = record.sip_address
        note = None if state.ok else Text(NOT_RUNNING, state=state.state)
        return PhoneSettings(address, record.address_source, record.sip_port, record.tls_port,
                             record.realm or settings.realm, note, warnings_for(address))
    address, source = detect(settings)
    return PhoneSettings(address, source, settings.sip_port, settings.sip_tls_port,
                         settings.realm, NEVER_RAN, warnings_for(address))
