"""The phone settings shown once after creating an extension: an address another machine can
use, the running sipd's real ports, a Linphone QR code, a MicroSIP file.

Where the address comes from: PBX_PUBLIC_ADDRESS, else the running sipd's record
(core/phone_settings.py, written by sipd; here written the way sipd writes it),
else the panel's own detection with a note. The QR code is decoded for real:
the page's SVG is drawn by headless Chromium and read by zbarimg (zbar-tools).
"""

from __future__ import annotations

import base64
import re
import subprocess
from pathlib import Path
from xml.etree import ElementTree

import pytest
from panel_testing import ADMIN, REALM, make_app, shown_password

from app.extensions.provisioning import PROVISION_TTL, OneTimeFiles
from core import phone_settings, services
from core.models import AuditEntry, Service, db
from core.phone_settings import PhoneSettings, warnings_for
from tests.support import require_tool

LPCONFIG = "{http://www.linphone.org/xsds/lpconfig.xsd}"


def create(client, number="1002", name="Reception"):
    response = client.post("/extensions/new", data={
        "number": number, "name": name, "mode": "generate", "password": "", "confirm": "",
        "enabled": "y"})
    assert response.status_code == 200, response.data.decode()[-500:]
    return response.data.decode()


def field(page: str, label: str) -> str:
    match = re.search(rf"<dt>{re.escape(label)}</dt>\s*<dd><code[^>]*>([^<]*)</code>", page)
    assert match, f"no field {label!r}"
    return match.group(1)


def warnings(page: str) -> list[str]:
    return re.findall(r'<div class="flash warn address-warning" role="alert">([^<]*)</div>', page)


@pytest.fixture
def panel(tmp_path):
    """An admin's client on a panel made with these settings (PUBLIC_ADDRESS, ...)."""
    apps = []

    def make(**config):
        directory = tmp_path / f"app{len(apps)}"
        directory.mkdir()
        app = make_app(directory, **config)
        apps.append(app)
        client = app.test_client()
        client.post("/login", data={"username": ADMIN[0], "password": ADMIN[1]})
        return client

    yield make
    if not db.is_closed():
        db.close()


def record_sipd(address="192.0.2.10", source=phone_settings.FROM_ROUTE, port=5070,
                tls_port=None):
    """The service row as sipd writes it when it is ready (sipd/daemon.py)."""
    with db.connection_context():
        services.started("sipd", f"UDP/TCP 0.0.0.0:{port}",
                         phones=PhoneSettings(address, source, port, tls_port, REALM))


# -- the address --------------------------------------------------------------------


def test_public_address_is_what_phones_are_told(panel):
    page = create(panel(PUBLIC_ADDRESS="198.51.100.7"))
    assert field(page, "SIP server") == "198.51.100.7:5060"
    assert field(page, "Domain") == "198.51.100.7"  # never the realm, a name phones cannot look up
    assert "<span class=\"mono\">198.51.100.7</span>: PBX_PUBLIC_ADDRESS." in page
    assert warnings(page) == []


@pytest.mark.parametrize("address, warning", [
    ("127.0.0.1", "127.0.0.1 is a loopback address"),
    ("pbx-nowhere", "pbx-nowhere is a bare host name"),
    ("localhost", "localhost names the PBX&#39;s own machine only"),
])
def test_an_address_other_machines_cannot_use_is_warned_about(panel, address, warning):
    page = create(panel(PUBLIC_ADDRESS=address))
    assert field(page, "SIP server") == f"{address}:5060"
    [shown] = warnings(page)
    assert shown.startswith(warning) and "Set PBX_PUBLIC_ADDRESS" in shown


def test_names_from_the_hosts_file_and_dns_names(tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n10.0.0.5 pbx.office.lan pbx  # the PBX\n")
    [warning] = warnings_for("pbx.office.lan", str(hosts))
    assert f"is a name from this machine's {hosts}" in warning
    [warning] = warnings_for("sip.example.com", str(hosts))
    assert warning == "sip.example.com is a name: every phone must be able to resolve it in DNS."
    assert warnings_for("sip.example.com", str(hosts), dns_reminder=False) == []
    assert warnings_for("192.0.2.10", str(hosts)) == []
    assert "loopback" in warnings_for("::1", str(hosts))[0]


def test_the_running_sipds_record_gives_address_and_real_ports(panel):
    client = panel()
    record_sipd("192.0.2.10", phone_settings.FROM_ROUTE, 5070, 5071)
    page = create(client)
    assert field(page, "SIP server") == "192.0.2.10:5070"
    assert field(page, "Port") == "5070" and field(page, "TLS port") == "5071"
    assert field(page, "Transport") == "UDP, TCP or TLS"
    assert "5060" not in page
    assert "192.0.2.10</span>: detected: the address of the interface the default route" in page
    assert "has not recorded itself" not in page
    # The row is this test's process, not a sipd: said to be what sipd last used.
    assert "sipd is not running now (down)" in page


def test_before_sipd_ever_ran_the_settings_are_shown_with_a_note(panel):
    page = create(panel())
    assert "sipd has not recorded itself in the database yet" in page
    assert field(page, "Port") == "5060"


def test_settings_page_says_what_was_detected(panel):
    client = panel()
    record_sipd("192.0.2.10", phone_settings.FROM_ROUTE, 5070)
    page = client.get("/settings/").data.decode()
    assert "detected automatically" not in page
    assert "192.0.2.10:5070" in page
    assert "the address of the interface the default route leaves from" in page


# -- Linphone's QR code and its one-time file ---------------------------------------


def decode_qr(svg: str, workdir: Path) -> str:
    """Draw the page's SVG in headless Chromium and read it with zbarimg."""
    chromium, zbarimg = require_tool("chromium"), require_tool("zbarimg")
    (workdir / "qr.svg").write_text(svg)
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                    f"--user-data-dir={workdir / 'profile'}", "--window-size=400,400",
                    f"--screenshot={workdir / 'qr.png'}", (workdir / "qr.svg").as_uri()],
                   check=True, capture_output=True, timeout=60)
    result = subprocess.run([zbarimg, "--quiet", "--raw", str(workdir / "qr.png")],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_linphone_qr_code_gives_the_account_once(panel, tmp_path):
    client = panel()
    record_sipd("192.0.2.10", phone_settings.FROM_ROUTE, 5070)
    page = create(client, "1002", "Reception")
    password = shown_password(page)
    svg = re.search(r'<svg xmlns="http://www.w3.org/2000/svg".*?</svg>', page, re.S).group(0)
    url = decode_qr(svg, tmp_path)
    assert re.fullmatch(r"http://localhost/extensions/provision/[A-Za-z0-9_-]{32}", url), url
    assert f'<code class="mono" id="linphone-url">{url}</code>' in page
    # localhost is the test client's host: the page warns that a phone cannot open it.
    assert ('id="link-warning">The phone opens this link itself, at localhost, the address this'
            ' panel was opened with') in page

    phone = client.application.test_client()  # the phone: no login
    response = phone.get(url.removeprefix("http://localhost"))
    assert response.status_code == 200 and response.mimetype == "application/xml"
    assert response.headers["Cache-Control"] == "no-store"
    config = ElementTree.fromstring(response.data)
    entries = {(section.get("name"), entry.get("name")): entry.text
               for section in config.iter(f"{LPCONFIG}section")
               for entry in section.iter(f"{LPCONFIG}entry")}
    assert entries == {
        ("proxy_0", "reg_identity"): '"Reception" <sip:1002@192.0.2.10>',
        ("proxy_0", "reg_proxy"): "<sip:192.0.2.10:5070;transport=udp>",
        ("proxy_0", "reg_sendregister"): "1",
        ("proxy_0", "realm"): REALM,
        ("auth_info_0", "username"): "1002",
        ("auth_info_0", "userid"): "1002",
        ("auth_info_0", "passwd"): password,
        ("auth_info_0", "realm"): REALM,
        ("auth_info_0", "domain"): "192.0.2.10",
    }
    with db.connection_context():
        assert AuditEntry.get(AuditEntry.action == "extension.provisioned").target == "1002"
    # Once: a second fetch (a second phone, someone who saw the screen) gets nothing.
    again = phone.get(url.removeprefix("http://localhost"))
    assert again.status_code == 404 and password not in again.data.decode()


def test_one_time_files_expire():
    now = [1000.0]
    files = OneTimeFiles(clock=lambda: now[0])
    token = files.put("1002", b"<config/>")
    assert files.take("unknown") is None
    now[0] += PROVISION_TTL + 1
    assert files.take(token) is None
    token = files.put("1002", b"<config/>")
    assert files.take(token) == ("1002", b"<config/>") and files.take(token) is None


# -- MicroSIP -----------------------------------------------------------------------


def test_microsip_file(panel):
    client = panel()
    record_sipd("192.0.2.10", phone_settings.FROM_ROUTE, 5070)
    page = create(client, "1002", "Ресепшн")
    password = shown_password(page)
    href = re.search(r'id="microsip-file" download="microsip.ini" href="([^"]+)"', page).group(1)
    prefix = "data:application/octet-stream;base64,"
    assert href.startswith(prefix)
    raw = base64.b64decode(href.removeprefix(prefix))
    assert raw.startswith(b"\xff\xfe")  # UTF-16LE with BOM, as MicroSIP writes its ini
    assert raw[2:].decode("utf-16-le").split("\r\n") == [
        "[Settings]", "accountId=1", "[Account1]", "label=1002 Ресепшн",
        "server=192.0.2.10:5070", "proxy=", "domain=192.0.2.10", "username=1002",
        f"password={password}", "authID=1002", "displayName=Ресепшн", "transport=udp", "",
    ]


# -- shown once ---------------------------------------------------------------------


def test_shown_once(panel):
    client = panel()
    page = create(client, "1002")
    password = shown_password(page)
    url = re.search(r'id="linphone-url">([^<]+)<', page).group(1)
    token = url.rsplit("/", 1)[1]
    for path in ("/extensions/", "/extensions/1002", "/extensions/new", "/settings/"):
        later = client.get(path).data.decode()
        assert password not in later and token not in later
        assert "<svg" not in later and "microsip.ini" not in later
    # Setting a new password makes a new code; the old code's file stays the old one's.
    page = client.post("/extensions/1002/password",
                       data={"mode": "generate", "password": "", "confirm": ""}).data.decode()
    assert shown_password(page) != password and token not in page
    with db.connection_context():
        assert Service.select().count() == 0  # nothing here came from a sipd record
