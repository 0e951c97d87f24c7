"""What the outbound and toll-fraud provider tests share: a real sipd whose database
has trunks to Kamailio carriers (tests/provider/kamailio.py), outbound routes and
the toll-fraud policy, set with pbxctl before sipd starts (sipd reads routes,
trunks and limits at each call)."""

from __future__ import annotations

import os
import subprocess
from contextlib import contextmanager

from tests.sip import callkit as ck
from tests.support import ROOT

TRUNK_USER, TRUNK_PASSWORD = "acme1", "trunk-s3cret"
FAR = "998901234567"  # the far phone's number, as the route sends it
DIALLED = "9901234567"  # what the extension dials: 9, then the national number


@contextmanager
def database(server: ck.SipdServer):
    from core.config import load_settings
    from core.database import connect

    db = connect(load_settings({"PBX_DB": str(server.db_path), "PBX_REALM": ck.REALM}))
    try:
        yield db
    finally:
        db.close()


def pbxctl(server: ck.SipdServer, *argv: str, stdin: str = "") -> str:
    """Run ./pbxctl on the server's database; fail the test with its stderr if it fails."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PBX_")}
    env.update(PBX_DB=str(server.db_path), PBX_REALM=ck.REALM,
               PBX_RUN_DIR=server.env["PBX_RUN_DIR"])
    done = subprocess.run([str(ROOT / "pbxctl"), *argv], input=stdin, capture_output=True,
                          text=True, env=env, timeout=60)
    assert done.returncode == 0, f"pbxctl {' '.join(argv)}: {done.stderr}"
    return done.stdout


def office(server: ck.SipdServer, carriers: dict, *, routes=None, policy=None,
           permissions=None, limits=None) -> None:
    """With pbxctl, as an admin would: a trunk named after each of `carriers`
    (name -> Carrier, each given the trunk's digest account), the routes [(name,
    [patterns], emergency, caller_id)] through all of them in order, the policy
    (`policy set` options), extensions' permissions and their `ext outbound` limits."""
    routes = routes if routes is not None else [
        ("emergency", ["10[1-4]"], True, ""),
        ("mobile", ["998+9|9XXXXXXXX"], False, "712223344"),
        ("world", ["9|00."], False, ""),
    ]
    for name, carrier in carriers.items():
        carrier.add_subscriber(TRUNK_USER, TRUNK_PASSWORD)
        pbxctl(server, "trunk", "add", name, "--host", carrier.address, "--username",
               TRUNK_USER, "--password", "-", "--keepalive", "0", stdin=TRUNK_PASSWORD + "\n")
    for name, patterns, emergency, caller_id in routes:
        argv = ["outbound", "add", name, "--trunks", ",".join(carriers)]
        for pattern in patterns:
            argv += ["--pattern", pattern]
        argv += ["--emergency"] if emergency else []
        argv += ["--caller-id", caller_id] if caller_id else []
        pbxctl(server, *argv)
    pbxctl(server, "policy", "set", *(policy or ["--home-country", "998"]))
    for number, permission in (permissions or {}).items():
        pbxctl(server, "ext", "permit", number, permission)
    for number, options in (limits or {}).items():
        pbxctl(server, "ext", "outbound", number, *options)


def block(server: ck.SipdServer, number: str, reason: str) -> None:
    """What sipd writes when an hourly limit trips (there is no command to block)."""
    from core.models import Extension

    with database(server):
        Extension.update(outbound_blocked_at=1.0, outbound_blocked_reason=reason).where(
            Extension.number == number).execute()


def rows(server: ck.SipdServer, table: str) -> list[dict]:
    import sqlite3

    with sqlite3.connect(server.db_path) as connection:
        connection.row_factory = sqlite3.Row
        return [dict(r) for r in connection.execute(f"SELECT * FROM {table} ORDER BY id")]


def far_phone(carrier, number: str = FAR, scenario: str = "callee_answer.xml") -> ck.Sipp:
    """A sipp UAS "in the outside world": the carrier forwards INVITEs for `number` to it."""
    run = ck.callee(carrier.address, number, scenario, ring_ms=300, register_first=False)
    carrier.route_to(number, f"{ck.LOOPBACK}:{run.local_port}")
    return run


def user(uri_or_header: str) -> str:
    """The user part of a SIP URI or a From/To/PAI header value."""
    text = uri_or_header.split("sip:", 1)[1]
    return text.split("@", 1)[0]
