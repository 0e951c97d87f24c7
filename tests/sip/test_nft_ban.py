"""sipd's bans reaching the kernel: the pbx role's helper against the firewall role's rules.

The rules are the firewall role's own template (rendered here with its
defaults) loaded into a network namespace this test creates, so the helper
is checked against the very sets a server has (table inet pbx, sets
pbx_banned_v4 and pbx_banned_v6). sipd runs the helper in that namespace
through PBX_NFT_BAN_COMMAND ("ip netns exec NS helper"); the SIP traffic
itself stays on the host's loopback.
"""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jinja2
import pytest
import yaml

from core import accounts
from core.config import load_settings
from core.database import connect
from tests.sip.attack import options_from, wait_until
from tests.support import ROOT, Sipd, base_env, require_tool, run_sipp

HELPER = ROOT / "ansible" / "roles" / "pbx" / "files" / "pbx-nft-ban"
FIREWALL = ROOT / "ansible" / "roles" / "firewall"
ATTACKER = "127.0.0.2"
PASSWORD = "correct-horse-9"


def render_firewall_rules() -> str:
    """etc/nftables.conf.j2 with the role's defaults (SSH from anywhere, no controller)."""
    defaults = yaml.safe_load((FIREWALL / "defaults" / "main.yml").read_text())
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(FIREWALL / "templates")),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    environment.filters["bool"] = lambda value: str(value).lower() in ("1", "true", "yes", "on")
    template = environment.get_template("etc/nftables.conf.j2")
    return template.render(ansible_managed="rendered by tests/sip/test_nft_ban.py", **defaults)


@pytest.fixture
def netns(tmp_path):
    ip = require_tool("ip")
    require_tool("nft")
    name = f"pbxtest-nft-{os.getpid()}"
    subprocess.run([ip, "netns", "add", name], check=True)
    try:
        rules = tmp_path / "nftables.conf"
        rules.write_text(render_firewall_rules())
        subprocess.run(
            [ip, "netns", "exec", name, "nft", "-f", str(rules)], check=True, capture_output=True
        )
        yield name
    finally:
        subprocess.run([ip, "netns", "delete", name], check=False)


def elements(netns: str, family: str = "v4") -> dict[str, int]:
    """{address: timeout in seconds} of the set in the namespace."""
    listed = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            netns,
            "nft",
            "-j",
            "list",
            "set",
            "inet",
            "pbx",
            f"pbx_banned_{family}",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    found = {}
    for item in json.loads(listed.stdout)["nftables"]:
        for element in item.get("set", {}).get("elem", []):
            element = element["elem"]
            found[element["val"]] = element.get("timeout")
    return found


def helper(netns, *args, env=None):
    return subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, str(HELPER), *args],
        capture_output=True,
        text=True,
        env=env,
    )


def test_helper_adds_replaces_and_removes_elements(netns):
    assert helper(netns, "add", "203.0.113.7", "3600").returncode == 0
    assert helper(netns, "add", "2001:db8::7", "60").returncode == 0
    assert elements(netns) == {"203.0.113.7": 3600}
    assert elements(netns, "v6") == {"2001:db8::7": 60}
    # A repeat offence: the element gets the new, longer timeout.
    assert helper(netns, "add", "203.0.113.7", "7200").returncode == 0
    assert elements(netns) == {"203.0.113.7": 7200}
    assert helper(netns, "add", "::ffff:198.51.100.1", "5").returncode == 0  # as IPv4
    assert "198.51.100.1" in elements(netns)
    assert helper(netns, "del", "203.0.113.7").returncode == 0
    assert helper(netns, "del", "203.0.113.7").returncode == 0  # not there: fine
    assert "203.0.113.7" not in elements(netns)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", "203.0.113.7; flush ruleset", "60"], "is not an IP address"),
        (["add", "203.0.113.7", "-1"], "is not a number of seconds"),
        (["add", "203.0.113.7", "99999999999"], "is not a number of seconds"),
        (["del"], "wrong number of arguments"),
        (["flush"], "usage:"),
    ],
)
def test_helper_refuses_what_is_not_a_ban(netns, args, message):
    result = helper(netns, *args)
    assert result.returncode == 1
    assert result.stderr.startswith("pbx-nft-ban: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.fixture
def spool():
    """A spool directory owned by nobody (as /run/pbx/nft-ban is by pbx), reachable by it."""
    parent = Path(tempfile.mkdtemp(prefix="pbx-nft-"))
    parent.chmod(0o711)
    spool = parent / "spool"
    spool.mkdir()
    os.chown(spool, 65534, 65534)
    yield spool
    shutil.rmtree(parent)


def test_unprivileged_requests_are_queued_and_drained_by_root(netns, spool):
    env = dict(os.environ, PBX_NFT_SPOOL=str(spool))
    queued = subprocess.run(
        [
            require_tool("setpriv"),
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            str(HELPER),  # its own #!/usr/bin/python3, as on a server
            "add",
            "203.0.113.9",
            "600",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert queued.returncode == 0, queued.stderr
    assert len(list(spool.glob("*.req"))) == 1
    assert elements(netns) == {}  # nothing applied without root
    # What pbx can write is never trusted: a forged request is refused and removed.
    (spool / "0-forged.req").write_text("add 203.0.113.10 60 ; flush ruleset\n")
    drained = helper(netns, "drain", env=env)
    assert drained.returncode == 1 and "0-forged.req" in drained.stderr
    assert elements(netns) == {"203.0.113.9": 600}
    assert list(spool.iterdir()) == []


def test_sipd_bans_lifts_and_restores_through_the_helper(netns, tmp_path):
    path = tmp_path / "pbx.db"
    database = connect(load_settings({"PBX_DB": str(path), "PBX_REALM": "pbx.test"}))
    accounts.create_extension("1002", "pbx.test", password=PASSWORD)
    database.close()
    command = f"ip netns exec {netns} {sys.executable} {HELPER}"
    wrong = ["1002", "wrong", "[authentication username=1002 password=wrong]"]
    with Sipd(path, PBX_NFT_BAN_COMMAND=command) as daemon:
        guesses = run_sipp(
            "register_wrong_password.xml",
            daemon.address,
            calls=5,
            inject=[wrong] * 5,
            local_ip=ATTACKER,
        )
        assert guesses.returncode == 0, guesses.explain()
        assert wait_until(lambda: ATTACKER in elements(netns), 5) is not None, daemon.log()
        assert 3590 <= elements(netns)[ATTACKER] <= 3600
        # A reboot empties the kernel's set; sipd puts back what the database holds.
        subprocess.run(
            ["ip", "netns", "exec", netns, "nft", "flush", "set", "inet", "pbx", "pbx_banned_v4"],
            check=True,
        )
    with Sipd(path, PBX_NFT_BAN_COMMAND=command) as daemon:
        assert wait_until(lambda: ATTACKER in elements(netns), 5) is not None, daemon.log()
        assert options_from(ATTACKER, daemon.port) is None
        lifted = subprocess.run(
            [sys.executable, str(ROOT / "pbxcli.py"), "ban", "rm", ATTACKER],
            env=base_env(str(path)),
            capture_output=True,
            text=True,
        )
        assert lifted.returncode == 0, lifted.stderr
        started = time.monotonic()
        assert wait_until(lambda: ATTACKER not in elements(netns), 5) is not None, daemon.log()
        assert time.monotonic() - started < 3
        assert options_from(ATTACKER, daemon.port).startswith(b"SIP/2.0 200")
        assert "Ban command" not in daemon.log()  # no failure logged
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM ban WHERE lifted_at IS NULL").fetchone() == (0,)
