"""site.yml on a booted Debian 12, checked from outside (issue 4, "Show").

The tests run in file order on one deployment: the later ones (kill -9,
reboot, second run) change the machine, so they come last. Each test sets up
what it uses (the extension, its registration, the second run: fixtures that
make them when missing), so any one of them also runs alone (`-k`). Every
address used is one the fixture created: the container's end of the veth, and
the host's.
"""

from __future__ import annotations

import re
import shutil
import socket
import ssl
import time
import uuid
from http.client import HTTPConnection, HTTPSConnection
from pathlib import Path
from urllib.parse import urlencode

import pytest

from core.credentials import GENERATED_LENGTH
from tests.deploy.conftest import REALM, SOURCE
from tests.deploy.sipclient import Phone

pytestmark = [pytest.mark.deploy, pytest.mark.timeout(1800)]

NUMBER = "1001"
PASSWORD = "Deploy-test-" + uuid.uuid4().hex[:12]
SERVICES = ("pbx-sipd", "pbx-panel")
# What pbxctl init --first-admin prints (pbxcli.py), as the playbook's debug task shows it.
FIRST_ADMIN = re.compile(r"First admin: user (\S+), password (\S+?)\"")
# core.credentials.generate_password's alphabet: no look-alikes (0/O, 1/l/I).
GENERATED = re.compile(rf"[A-HJ-NP-Za-km-z2-9]{{{GENERATED_LENGTH}}}")


@pytest.fixture
def extension(deployment) -> str:
    """NUMBER with PASSWORD on the machine: made with pbxctl when it is not there yet."""
    listed = deployment.pbxctl("ext list").stdout
    if not re.search(rf"^{NUMBER}\s", listed, re.M):
        deployment.pbxctl(f"ext add {NUMBER} --name 'Deploy test' --password {PASSWORD}")
    return NUMBER


@pytest.fixture
def registered(deployment, extension) -> str:
    """NUMBER registered from the host (a binding for an hour); returns its contact."""
    (_, final), contact = register(deployment)
    assert final.status == 200, final
    return contact


@pytest.fixture(scope="module")
def second_run(deployment):
    """site.yml applied a second time to the deployed machine (once per module)."""
    return deployment.playbook("second")


def phone(deployment, **kwargs) -> Phone:
    machine = deployment.machine
    return Phone(
        machine.address, NUMBER, PASSWORD, local=machine.host_address, domain=REALM, **kwargs
    )


def register(
    deployment, expires: int | None = 3600, with_contact: bool = True, timeout: float = 2.0
):
    client = phone(deployment, timeout=timeout)
    try:
        return client.register(expires=expires, with_contact=with_contact), client.contact
    finally:
        client.close()


def main_pid(deployment, unit: str) -> int:
    result = deployment.machine.ssh(f"systemctl show -p MainPID --value {unit}")
    return int(result.stdout.strip() or 0)


def tcp_reachable(address: str, port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def test_services_are_active(deployment):
    result = deployment.machine.ssh(f"systemctl is-active {' '.join(SERVICES)}", check=False)
    assert result.stdout.split() == ["active", "active"], result.stdout + result.stderr
    for unit in SERVICES:
        shown = deployment.machine.ssh(
            f"systemctl show -p Type -p Restart -p User -p WatchdogUSec {unit}"
        ).stdout
        assert "Type=notify" in shown and "Restart=always" in shown, shown
        assert "User=pbx" in shown and "WatchdogUSec=0" not in shown, shown


def test_sipd_bans_reach_the_firewall_set(deployment):
    """A ban queued the way sipd queues it (as pbx, unprivileged) lands in the nft set.

    192.0.2.77 is a documentation address: it only becomes a set element here,
    no packet is sent to it.
    """
    env = "$(grep '^PBX_NFT' /etc/pbx/pbx.env | xargs)"
    queued = deployment.machine.ssh(
        f"runuser -u pbx -- env {env} /usr/local/sbin/pbx-nft-ban add 192.0.2.77 600",
        check=False,
    )
    assert queued.returncode == 0, queued.stdout + queued.stderr
    listing = ""
    for _ in range(50):
        listing = deployment.machine.ssh(
            "nft list set inet pbx pbx_banned_v4", check=False
        ).stdout
        if "192.0.2.77" in listing:
            break
        time.sleep(0.2)
    assert "192.0.2.77" in listing, listing
    lifted = deployment.machine.ssh(
        f"runuser -u pbx -- env {env} /usr/local/sbin/pbx-nft-ban del 192.0.2.77", check=False
    )
    assert lifted.returncode == 0, lifted.stderr
    for _ in range(50):
        listing = deployment.machine.ssh("nft list set inet pbx pbx_banned_v4").stdout
        if "192.0.2.77" not in listing:
            break
        time.sleep(0.2)
    assert "192.0.2.77" not in listing, listing


def test_services_are_sandboxed(deployment):
    for unit in SERVICES:
        rating = deployment.machine.ssh(
            f"systemd-analyze security --no-pager {unit}.service | tail -n 1"
        ).stdout
        # "→ Overall exposure level for pbx-sipd.service: 2.1 OK 🙂"
        exposure = float(rating.split(":")[1].split()[0])
        deployment.timings[f"{unit}_exposure"] = exposure
        assert exposure <= 4.0, rating


def test_settings_file_is_private_and_secret_generated(deployment):
    shown = deployment.machine.ssh(
        "stat -c '%a %U' /etc/pbx/pbx.env; grep -c '^PBX_SECRET_KEY=.\\{32,\\}' /etc/pbx/pbx.env"
    ).stdout
    assert shown.split() == ["600", "root", "1"], shown


def test_extension_registers_from_the_host(deployment):
    # Made here with `ext add` (its output is checked), also when a fixture made it before.
    deployment.pbxctl(f"ext rm {NUMBER}", check=False)
    added = deployment.pbxctl(f"ext add {NUMBER} --name 'Deploy test' --password {PASSWORD}")
    assert f"Extension {NUMBER} " in added.stdout, added.stdout
    (challenge, final), contact = register(deployment)
    assert challenge.status == 401, challenge
    assert final.status == 200, final
    assert any(contact.strip("<>").split(";")[0] in c for c in final.all("Contact")), final


def test_pbxctl_status_and_logs(deployment, registered):
    status = deployment.pbxctl("status", check=False)
    assert status.returncode == 0, status.stdout + status.stderr
    for unit in SERVICES:
        assert f"{unit}" in status.stdout and "active" in status.stdout, status.stdout
    # The binding the fixture registered: "sip:1001@pbx.test -> <contact> from ...".
    contact = registered.strip("<>").split(";")[0]
    assert f"sip:{NUMBER}@{REALM} -> {contact}" in status.stdout, status.stdout

    logs = deployment.pbxctl("logs -n 20", check=False)
    assert logs.returncode == 0, logs.stderr
    lines = [line for line in logs.stdout.splitlines() if line.strip()]
    assert 0 < len(lines) <= 21, logs.stdout  # journalctl may add a "-- Boot" line
    sipd_only = deployment.pbxctl("logs -n 5 sipd", check=False)
    assert sipd_only.returncode == 0 and "pbx-sipd" in sipd_only.stdout, sipd_only.stdout

    bad = deployment.pbxctl("logs -n lots", check=False)
    assert bad.returncode != 0 and "pbxctl:" in bad.stderr


def test_panel_answers_through_nginx_only(deployment):
    address = deployment.machine.address
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the default self-signed certificate
    https = HTTPSConnection(address, 443, timeout=10, context=context)
    https.request("GET", "/", headers={"Host": REALM})
    answer = https.getresponse()
    answer.read()
    assert answer.status < 500, f"nginx answered {answer.status}: is the panel up?"
    assert answer.getheader("Strict-Transport-Security", "").startswith("max-age=")
    assert answer.getheader("X-Content-Type-Options") == "nosniff"
    assert answer.getheader("X-Frame-Options") == "DENY"
    assert "nginx/" not in (answer.getheader("Server") or "")  # server_tokens off
    https.close()

    http = HTTPConnection(address, 80, timeout=10)
    http.request("GET", "/extensions?x=1", headers={"Host": REALM})
    redirect = http.getresponse()
    redirect.read()
    assert redirect.status == 301
    assert redirect.getheader("Location") == f"https://{REALM}/extensions?x=1"
    http.close()

    # The panel itself is up on loopback inside, and unreachable from outside.
    inside = deployment.machine.ssh(
        'python3 -c "import urllib.request as u, urllib.error as e\n'
        "try: print(u.urlopen('http://127.0.0.1:8080/', timeout=5).status)\n"
        'except e.HTTPError as x: print(x.code)"',
        check=False,
    )
    assert inside.stdout.strip() and int(inside.stdout.strip()) < 500, inside
    assert not tcp_reachable(address, 8080)


def test_firewall_keeps_unopened_ports_closed(deployment):
    machine = deployment.machine
    port = 7070
    machine.ssh(
        f"systemd-run --unit=pbx-test-listener --quiet python3 -m http.server {port} --bind 0.0.0.0"
    )
    try:
        for _ in range(50):
            listening = machine.ssh(f"ss -Hltn 'sport = :{port}'").stdout
            if listening.strip():
                break
            time.sleep(0.1)
        assert listening.strip(), "the test listener did not start"
        inside = machine.ssh(
            f"python3 -c \"import socket; socket.create_connection(('{machine.address}', {port}), 3)\"",
            check=False,
        )
        assert inside.returncode == 0, "the listener is not reachable even from inside"
        assert not tcp_reachable(machine.address, port, timeout=3)
        assert tcp_reachable(machine.address, 443)
        rules = machine.ssh("nft list table inet pbx").stdout
        assert "policy drop" in rules
        assert "pbx_banned_v4" in rules and "pbx_banned_v6" in rules
    finally:
        machine.ssh("systemctl stop pbx-test-listener", check=False)


def test_backup_and_restore(deployment, extension):
    machine = deployment.machine
    backup = deployment.pbxctl("backup", check=False)
    assert backup.returncode == 0, backup.stdout + backup.stderr
    newest = machine.ssh("ls -1 /var/backups/pbx/pbx-*.db.gz | sort | tail -n 1").stdout.strip()
    assert newest, "no backup written"
    count = machine.ssh(
        f"gzip -dc {newest} > /tmp/check.db && "
        f"sqlite3 /tmp/check.db \"SELECT count(*) FROM extension WHERE number='{NUMBER}'\"; "
        "rm -f /tmp/check.db"
    ).stdout.strip()
    assert count == "1"
    assert machine.ssh("systemctl is-enabled pbx-backup.timer").stdout.strip() == "enabled"

    # An extension made after the backup is gone once the backup is restored.
    deployment.pbxctl("ext add 1999 --generate")
    restored = deployment.pbxctl(f"restore {newest}", check=False)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    listed = deployment.pbxctl("ext list").stdout
    assert NUMBER in listed and "1999" not in listed, listed
    active = machine.ssh(f"systemctl is-active {' '.join(SERVICES)}", check=False).stdout.split()
    assert active == ["active", "active"]


def newer_checkout(destination: Path) -> Path:
    """The deployed checkout plus one migration: "newer code" for an upgrade."""
    ignore = shutil.ignore_patterns(".git", ".venv", "build", "var", "__pycache__", ".vagrant")
    shutil.copytree(SOURCE, destination, ignore=ignore)
    (destination / "core" / "migrations" / "9000_deploy_upgrade_test.py").write_text(
        '"""Added by tests/deploy to see an upgrade migrate the database."""\n\n\n'
        "def up(migrator, db):\n"
        '    db.execute_sql("CREATE TABLE deploy_upgrade_marker (id INTEGER PRIMARY KEY)")\n'
    )
    return destination


def test_upgrade_migrates_and_rollback_is_one_command(deployment, extension, tmp_path):
    machine = deployment.machine

    def link(name: str) -> str:
        return machine.ssh(f"readlink /opt/pbx/{name} || true").stdout.strip()

    old = link("current")
    sipd_before = main_pid(deployment, "pbx-sipd")
    (_, final), contact = register(deployment)
    assert final.status == 200

    newer = newer_checkout(tmp_path / "newer")
    # The same requirements: the wheelhouse built for the first run serves.
    upgrade = deployment.playbook(
        "upgrade", {"pbx_source_dir": str(newer), "pbx_build_dir": str(SOURCE / "build")}
    )
    assert upgrade.returncode == 0, upgrade.tail(80)
    new = link("current")
    assert new != old and link("previous") == old
    assert main_pid(deployment, "pbx-sipd") not in (0, sipd_before)  # restarted
    tables = machine.ssh(
        "runuser -u pbx -- sqlite3 /var/lib/pbx/pbx.db "
        "\"SELECT name FROM sqlite_master WHERE name='deploy_upgrade_marker'\""
    ).stdout
    assert "deploy_upgrade_marker" in tables, "the upgrade did not migrate the database"
    assert machine.ssh("ls /var/backups/pbx/ | grep -c '^pre-upgrade-'").stdout.strip() != "0"
    assert NUMBER in deployment.pbxctl("ext list").stdout
    (_, query), _ = register(deployment, expires=None, with_contact=False)
    assert query.status == 200
    assert any(contact.strip("<>").split(";")[0] in c for c in query.all("Contact")), query

    rolled = deployment.pbxctl("rollback", check=False)
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert link("current") == old and link("previous") == new
    active = machine.ssh(f"systemctl is-active {' '.join(SERVICES)}", check=False).stdout.split()
    assert active == ["active", "active"]
    (_, final), _ = register(deployment)
    assert final.status == 200


def test_sipd_comes_back_after_kill_9(deployment, extension):
    before = main_pid(deployment, "pbx-sipd")
    assert before > 0
    deployment.machine.ssh(f"kill -9 {before}")
    killed = time.monotonic()
    final = None
    while time.monotonic() - killed < 5.0:
        try:
            (_, final), _ = register(deployment, timeout=0.4)
        except (TimeoutError, OSError):
            final = None
        # The killed sipd's registration worker can still answer for the
        # moment before the kernel kills it too (PR_SET_PDEATHSIG): a 200 counts
        # once a new main process runs.
        if final is not None and final.status == 200 and main_pid(
                deployment, "pbx-sipd") not in (0, before):
            break
        time.sleep(0.2)
    back_after = time.monotonic() - killed
    deployment.timings["sipd_back_after_kill9_s"] = round(back_after, 2)
    assert final is not None and final.status == 200, f"no 200 within 5 s ({final})"
    after = main_pid(deployment, "pbx-sipd")
    assert after not in (0, before)


def test_reboot_keeps_extensions_and_bindings(deployment, extension):
    machine = deployment.machine
    (_, final), contact = register(deployment, expires=3600)
    assert final.status == 200
    deployment.timings["reboot_s"] = round(machine.reboot(), 1)

    active = machine.ssh(f"systemctl is-active {' '.join(SERVICES)}", check=False).stdout.split()
    assert active == ["active", "active"]
    assert NUMBER in deployment.pbxctl("ext list").stdout
    # A REGISTER without Contact lists the bindings (RFC 3261 §10.2.3).
    (challenge, query), _ = register(deployment, expires=None, with_contact=False)
    assert challenge.status == 401 and query.status == 200, query
    assert any(contact.strip("<>").split(";")[0] in c for c in query.all("Contact")), query


def test_second_run_changes_nothing(second_run):
    assert second_run.returncode == 0, second_run.tail(80)
    assert second_run.recap.get("changed") == 0, second_run.tail(80)
    assert second_run.recap.get("failed") == 0 and second_run.recap.get("unreachable") == 0


def panel_login(deployment, username: str, password: str) -> tuple[int, str]:
    """Log in to the panel through nginx as a browser does: (status of the POST, where it
    sends us). The login form's CSRF token and session cookie come from a GET first."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the default self-signed certificate
    https = HTTPSConnection(deployment.machine.address, 443, timeout=10, context=context)
    try:
        https.request("GET", "/login", headers={"Host": REALM})
        page = https.getresponse()
        html = page.read().decode()
        assert page.status == 200, (page.status, html[:500])
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html)
        assert token, html[:2000]
        cookies = "; ".join(c.split(";", 1)[0] for c in page.headers.get_all("Set-Cookie") or [])
        form = urlencode({"csrf_token": token.group(1), "username": username,
                          "password": password, "next": ""})
        https.request("POST", "/login", body=form, headers={
            "Host": REALM, "Cookie": cookies, "Referer": f"https://{REALM}/login",
            "Content-Type": "application/x-www-form-urlencoded"})
        answer = https.getresponse()
        answer.read()
        return answer.status, answer.getheader("Location") or ""
    finally:
        https.close()


def test_first_admin_password_printed_once(deployment, second_run):
    """The first run shows the generated password once; it logs in; the second run is silent.

    Last in the file: the second run it reads is the one test_second_run_changes_nothing
    made (or, alone, the one its fixture makes now).
    """
    first = deployment.runs[0].output
    shown = FIRST_ADMIN.findall(first)
    assert len(shown) == 1, f"the first admin's password shown {len(shown)} times:\n" + (
        deployment.runs[0].tail())
    username, password = shown[0]
    assert username == "admin", shown
    assert GENERATED.fullmatch(password), f"{password!r} is not a generated password"

    # It is the password: the panel lets the admin in with it, and not with another.
    status, target = panel_login(deployment, username, password[::-1])
    assert status == 200 and not target, (status, target)
    status, target = panel_login(deployment, username, password)
    assert status == 302 and target in ("/", f"https://{REALM}/"), (status, target)

    # Shown this once: the PBX keeps only its hash, and the second run prints nothing of it.
    assert second_run.returncode == 0, second_run.tail(80)
    assert password not in second_run.output
    assert "First admin" not in second_run.output, second_run.tail(80)
    kept = deployment.machine.ssh(
        "runuser -u pbx -- sqlite3 /var/lib/pbx/pbx.db "
        "\"SELECT password_hash FROM admin WHERE username='admin'\"").stdout.strip()
    assert kept and password not in kept, kept
