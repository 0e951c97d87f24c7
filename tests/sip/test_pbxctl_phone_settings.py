"""`pbxctl ext add` tells the phone settings of the running sipd, not of its own environment.

A real sipd listens on a free loopback port; pbxctl runs as an admin would run
it, with the defaults (PBX_SIP_LISTEN unset, so its own settings say 5060), on
the same database. It must print the port sipd really uses, read from the
service row sipd writes (core/phone_settings.py).
"""

from __future__ import annotations

import subprocess
import sys

from tests.support import ROOT, Sipd, base_env, database_with


def pbxctl(db_path, *argv: str) -> subprocess.CompletedProcess:
    env = base_env(str(db_path))  # no PBX_SIP_LISTEN: pbxctl's own settings say 5060
    return subprocess.run([sys.executable, "-m", "pbxcli", *argv], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=30)


def test_ext_add_prints_the_running_sipds_port(tmp_path):
    db_path = database_with(tmp_path / "pbx.db", ["1001"], "correct-horse-9")
    with Sipd(db_path) as sipd:
        assert sipd.port != 5060
        result = pbxctl(db_path, "ext", "add", "1005", "--generate")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"Phone settings: server 127.0.0.1, port {sipd.port}," in out, out
    assert "port 5060" not in out
    assert "transport UDP or TCP" in out and "domain 127.0.0.1" in out
    assert "Address from: PBX_SIP_LISTEN" in out
    # The address is loopback: phones elsewhere cannot use it, and pbxctl says so.
    assert "Note: 127.0.0.1 is a loopback address" in out
    assert "has not recorded itself" not in out


def test_ext_add_before_sipd_ever_ran_says_it_shows_the_settings(tmp_path):
    db_path = database_with(tmp_path / "pbx.db", [], "correct-horse-9")
    result = pbxctl(db_path, "ext", "add", "1005", "--generate")
    assert result.returncode == 0, result.stderr
    assert "port 5060," in result.stdout
    assert "Note: sipd has not recorded itself in the database yet" in result.stdout
