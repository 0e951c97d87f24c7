"""Kamailio from Debian as the phone company of the provider tests.

`Carrier(workdir)` runs tests/provider/carrier.cfg (read its header for the
routing) on a free loopback port, as the test's user: its runtime directory,
pid file, control socket and SQLite database are all under `workdir`.

    carrier = Carrier(tmp_path / "carrier", algorithm="MD5", max_expires=3600).start()
    carrier.address / .host / .port / .realm    "127.0.0.1:PORT", "carrier.test"
    carrier.add_subscriber("acme1", "secret")   a digest account (a trunk's, or a far
                                                phone's); set_password(), remove_subscriber()
    carrier.locations(user=None) -> [dict]      its location table (usrloc write-through):
                                                username, contact, expires (epoch s),
                                                callid, cseq, received, user_agent
    carrier.answer("998901112233", 503, "Busy Here")   INVITEs to that number get it
    carrier.clear_answer(number)
    carrier.route_to("998901112233", "127.0.0.1:6000") INVITEs to it forwarded there
    carrier.did("712000001", "acme1")           a call to the office's DID: to where
                                                subscriber acme1 registered (the DID
                                                stays the Request-URI user)
    carrier.did("712000002", "sip:127.0.0.1:5060")   ... or to that address (IP trunk)
    carrier.trust("127.0.0.1", 5099)            INVITEs from there (or from the whole
                                                address without a port) are not challenged
    carrier.mute(True)                          answers nothing (keep-alive goes down)
    carrier.forbid_wrong_password(True)         403 instead of a new challenge
    carrier.requests(method=None) -> [dict]     what it received, from its log:
                                                method, uri, source, proto, from, to, pai
    carrier.rpc("ul.dump") -> str               any kamcmd command (prefix "s:" to pass
                                                digits as a string)
    carrier.log() / .stop()

    Carrier(workdir, tls=(cert_pem, key_pem))   also SIP over TLS on carrier.tls_port
                                                (carrier.tls_address), that certificate
"""

from __future__ import annotations

import calendar
import re
import sqlite3
import subprocess
import time
from pathlib import Path

from tests.sip.callkit import free_ports
from tests.support import LOOPBACK, ROOT, ServerProcess, require_tool

CONFIG = ROOT / "tests" / "provider" / "carrier.cfg"
SCHEMA_DIR = Path("/usr/share/kamailio/db_sqlite")
SCHEMA_FILES = ("standard-create.sql", "auth_db-create.sql", "usrloc-create.sql")
REQUEST_LINE = re.compile(
    r"CARRIER (?P<method>\S+) (?P<uri>\S+) from (?P<source>\S+) proto=(?P<proto>\S+)"
    r" From=(?P<from>\S*) To=(?P<to>\S*) PAI=(?P<pai>.*?) Call-ID=(?P<call_id>\S*)$"
)


# The tls module's profiles: the carrier's certificate; no client certificate asked.
TLS_CONFIG = """\
[server:default]
method = TLSv1.2+
verify_certificate = no
require_certificate = no
private_key = {key}
certificate = {cert}

[client:default]
method = TLSv1.2+
verify_certificate = no
require_certificate = no
"""


class Carrier(ServerProcess):
    process_name = "kamailio"

    def __init__(self, workdir: Path, *, realm: str = "carrier.test", algorithm: str = "MD5",
                 min_expires: int = 1, max_expires: int = 3600, ring_timeout_s: float = 30,
                 tls: tuple[Path, Path] | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.realm = realm
        self.host = LOOPBACK
        self.port = free_ports()
        self.db_path = self.workdir / "carrier.db"
        self.ctl = self.workdir / "ctl"
        self.log_path = self.workdir / "kamailio.log"
        self._make_db()
        self.command = [
            require_tool("kamailio"), "-DD", "-E", "-f", str(CONFIG),
            "-l", f"udp:{self.host}:{self.port}", "-l", f"tcp:{self.host}:{self.port}",
            "-Y", str(self.workdir), "-P", str(self.workdir / "kamailio.pid"),
            "-w", str(self.workdir), "-m", "32", "-M", "8",
            "-A", f'DBURL="sqlite:///{self.db_path}"', "-A", f'REALM="{realm}"',
            "-A", f'CTL="unix:{self.ctl}"', "-A", f'ALGORITHM="{algorithm}"',
            "-A", f"MIN_EXPIRES={min_expires}", "-A", f"MAX_EXPIRES={max_expires}",
            "-A", f"RING_TIMEOUT={int(ring_timeout_s * 1000)}",
        ]
        self.tls_port = None
        if tls is not None:
            self.tls_port = free_ports()
            config = self.workdir / "tls.cfg"
            config.write_text(TLS_CONFIG.format(cert=tls[0], key=tls[1]))
            self.command += ["-l", f"tls:{self.host}:{self.tls_port}", "-A", "WITH_TLS",
                             "-A", f'TLS_CONFIG="{config}"']
        self.process: subprocess.Popen | None = None

    # --- life ---------------------------------------------------------------------

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def tls_address(self) -> str:
        return f"{self.host}:{self.tls_port}"

    def start(self, timeout: float = 15) -> Carrier:
        require_tool("kamcmd")
        self.spawn(self.command, timeout=timeout, cwd=self.workdir)
        return self

    def stop(self) -> None:
        self.terminate()

    def __enter__(self) -> Carrier:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- accounts and the location table --------------------------------------------

    def _make_db(self) -> None:
        missing = [n for n in SCHEMA_FILES if not (SCHEMA_DIR / n).exists()]
        if missing:
            raise AssertionError(f"{SCHEMA_DIR}: missing {', '.join(missing)} "
                                 "(install the Debian package kamailio-sqlite-modules)")
        with self._db() as connection:
            for name in SCHEMA_FILES:
                connection.executescript((SCHEMA_DIR / name).read_text())

    def _db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.db_path, timeout=10, isolation_level=None)

    def add_subscriber(self, username: str, password: str) -> None:
        connection = self._db()
        try:
            connection.execute(
                "INSERT INTO subscriber (username, domain, password, ha1, ha1b)"
                " VALUES (?, ?, ?, '', '')", (username, self.realm, password))
        finally:
            connection.close()

    def set_password(self, username: str, password: str) -> None:
        connection = self._db()
        try:
            connection.execute("UPDATE subscriber SET password = ? WHERE username = ?",
                               (password, username))
        finally:
            connection.close()

    def remove_subscriber(self, username: str) -> None:
        connection = self._db()
        try:
            connection.execute("DELETE FROM subscriber WHERE username = ?", (username,))
        finally:
            connection.close()

    def locations(self, user: str | None = None) -> list[dict]:
        """The bindings Kamailio holds, as its location table has them."""
        connection = self._db()
        connection.row_factory = sqlite3.Row
        try:
            query = ("SELECT username, contact, expires, callid, cseq, received, user_agent"
                     " FROM location")
            rows = [dict(r) for r in (
                connection.execute(query + " WHERE username = ?", (user,)) if user
                else connection.execute(query))]
        finally:
            connection.close()
        for row in rows:
            row["expires"] = _epoch(row["expires"])
        return rows

    # --- behaviour the test sets (htables over the control socket) ---------------------

    def rpc(self, *args: str) -> str:
        result = subprocess.run(
            [require_tool("kamcmd"), "-s", f"unix:{self.ctl}", *args],
            capture_output=True, text=True, timeout=10)
        if result.returncode != 0 or result.stdout.startswith("error:"):
            raise AssertionError(f"kamcmd {' '.join(args)}: {result.stderr or result.stdout}")
        return result.stdout

    def _set(self, table: str, key: str, value) -> None:
        # kamcmd reads "555" as a number: "s:" keeps a key or value a string.
        if isinstance(value, int):
            self.rpc("htable.seti", table, f"s:{key}", str(value))
        else:
            self.rpc("htable.sets", table, f"s:{key}", f"s:{value}")

    def _delete(self, table: str, key: str) -> None:
        self.rpc("htable.delete", table, f"s:{key}")

    def answer(self, number: str, status: int, reason: str = "") -> None:
        self._set("answers", number, int(status))
        self._set("reasons", number, reason or "Carrier Says So")

    def clear_answer(self, number: str) -> None:
        self._delete("answers", number)
        self._delete("reasons", number)

    def route_to(self, number: str, hostport: str) -> None:
        self._set("routes", number, hostport)

    def did(self, number: str, to: str) -> None:
        self._set("dids", number, to)

    def trust(self, host: str, port: int | None = None) -> None:
        self._set("trusted", f"{host}:{port}" if port else host, 1)

    def mute(self, on: bool = True) -> None:
        self._set("flags", "mute", 1 if on else 0)

    def forbid_wrong_password(self, on: bool = True) -> None:
        self._set("flags", "forbid", 1 if on else 0)

    def requests(self, method: str | None = None) -> list[dict]:
        found = []
        for line in self.log().splitlines():
            match = REQUEST_LINE.search(line)
            if match and (method is None or match["method"] == method):
                found.append(match.groupdict())
        return found


def _epoch(value) -> float | None:
    """db_sqlite writes usrloc's DATETIME as a Julian day number (or text); epoch seconds."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return (float(value) - 2440587.5) * 86400  # the Unix epoch's Julian day
    try:
        return float(calendar.timegm(time.strptime(value[:19], "%Y-%m-%d %H:%M:%S")))
    except ValueError:
        return None
