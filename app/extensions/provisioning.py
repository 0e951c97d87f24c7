"""What a softphone is given once, beside the password: its settings as fields, a QR
code Linphone scans, and a MicroSIP account file.

The address and ports come from the running sipd's record (core/phone_settings.py).

Linphone: its "Fetch remote configuration" assistant scans a QR code holding a
URL and downloads its XML remote-provisioning file from it (the lpconfig
format: sections proxy_0 and auth_info_0, as liblinphone's linphonerc). The
panel serves that file once, from a random URL that lives PROVISION_TTL
seconds, kept in the panel's memory only (never in the database, which keeps
SIP passwords only as HA1): the first fetch removes it, and a restart of the
panel forgets it, like any password the page showed.

Zoiper's documented QR provisioning goes through Zoiper's own OEM service
(oem.zoiper.com, a provider account on the internet); a PBX of its own cannot
make a code Zoiper accepts, so Zoiper users type the fields (copy buttons).

MicroSIP: microsip.ini's [Account1] section, with the keys MicroSIP itself
writes (label, server, proxy, domain, username, password, authID, displayName,
transport); a plain-text password is accepted, and MicroSIP encrypts it when
it next saves. The file is UTF-16LE with a BOM, as MicroSIP writes it, so
that a name in Cyrillic survives. It is a data: link in the page, so nothing
is kept to serve it.
"""

from __future__ import annotations

import base64
import io
import secrets
import threading
import time
from dataclasses import dataclass
from xml.etree import ElementTree

import segno

from core.phone_settings import PhoneSettings

PROVISION_TTL = 600.0  # seconds a QR code's URL can be fetched
MAX_PENDING = 200  # one-time files kept at most; the oldest goes first
LPCONFIG_NS = "http://www.linphone.org/xsds/lpconfig.xsd"


@dataclass(frozen=True)
class Account:
    """One extension's account as a softphone needs it."""

    number: str
    name: str
    password: str
    phones: PhoneSettings

    @property
    def display_name(self) -> str:
        return " ".join((self.name or self.number).split())  # no line breaks in a file


# -- Linphone -------------------------------------------------------------------------


def linphone_xml(account: Account) -> bytes:
    """Linphone's remote-provisioning XML for this account (UDP to the PBX)."""
    phones = account.phones
    ElementTree.register_namespace("", LPCONFIG_NS)
    config = ElementTree.Element(f"{{{LPCONFIG_NS}}}config")

    def section(name: str, entries: dict[str, str]) -> None:
        element = ElementTree.SubElement(config, f"{{{LPCONFIG_NS}}}section", name=name)
        for key, value in entries.items():
            entry = ElementTree.SubElement(element, f"{{{LPCONFIG_NS}}}entry", name=key,
                                           overwrite="true")
            entry.text = value

    identity = f"sip:{account.number}@{phones.host}"
    name = account.display_name.replace("\\", "\\\\").replace('"', '\\"')
    section("proxy_0", {
        "reg_identity": f'"{name}" <{identity}>',
        "reg_proxy": f"<sip:{phones.server};transport=udp>",
        "reg_sendregister": "1",
        "realm": phones.realm,
    })
    section("auth_info_0", {
        "username": account.number,
        "userid": account.number,
        "passwd": account.password,
        "realm": phones.realm,
        "domain": phones.host,
    })
    body = ElementTree.tostring(config, encoding="unicode")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n").encode()


def qr_svg(payload: str, title: str = "QR code for Linphone") -> str:
    """A QR code of `payload` as inline SVG (no script, no style attribute: the CSP holds)."""
    buffer = io.BytesIO()
    segno.make(payload, error="m").save(
        buffer, kind="svg", scale=5, border=4, xmldecl=False, svgns=True,
        svgclass="qr-code", lineclass=None, title=title, light="#fff",
    )
    return buffer.getvalue().decode()


class OneTimeFiles:
    """Provisioning files served once, each under a random token, for PROVISION_TTL s."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._files: dict[str, tuple[float, str, bytes]] = {}
        self._lock = threading.Lock()

    def put(self, number: str, body: bytes) -> str:
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._expire()
            while len(self._files) >= MAX_PENDING:
                self._files.pop(next(iter(self._files)))
            self._files[token] = (self._clock() + PROVISION_TTL, number, body)
        return token

    def take(self, token: str) -> tuple[str, bytes] | None:
        """(number, file) once; None if unknown, fetched already or expired."""
        with self._lock:
            self._expire()
            found = self._files.pop(token, None)
        return None if found is None else found[1:]

    def _expire(self) -> None:
        now = self._clock()
        for token in [t for t, (expires, _, _) in self._files.items() if expires <= now]:
            del self._files[token]


# -- MicroSIP -------------------------------------------------------------------------


def microsip_ini(account: Account) -> bytes:
    """microsip.ini selecting one account, UTF-16LE with BOM and CRLF as MicroSIP writes it."""
    phones = account.phones
    lines = [
        "[Settings]",
        "accountId=1",
        "[Account1]",
        f"label={account.number} {account.display_name}".rstrip()
        if account.name else f"label={account.number}",
        f"server={phones.server}",
        "proxy=",
        f"domain={phones.host}",
        f"username={account.number}",
        f"password={account.password}",
        f"authID={account.number}",
        f"displayName={account.display_name}",
        "transport=udp",
    ]
    return "\ufeff".encode("utf-16-le") + ("\r\n".join(lines) + "\r\n").encode("utf-16-le")


def data_url(body: bytes, mime: str = "application/octet-stream") -> str:
    return f"data:{mime};base64,{base64.b64encode(body).decode()}"
