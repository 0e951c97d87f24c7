"""`pbxctl ext add` and `status` tell what the running sipd uses, not their own environment.

A real sipd listens on a free loopback port; pbxctl runs as an admin would run
it, with the defaults (PBX_SIP_LISTEN unset, so its own settings say 5060), on
the same database. It must print the port sipd really uses, read from the
service row sipd writes (core/phone_settings.py).
"""

from __future__ import annotations

import socket
import subprocess
import sys

from tests.support import ROOT, Sipd, base_env, database_with, free_port, require_tool


def pbxctl(db_path, *argv: str) -> subprocess.CompletedProcess:
    env = base_env(str(db_path))  # no PBX_SIP_LISTEN: pbxctl's own settings say 5060
    return subprocess.run([sys.executable, "-m", "pbxcli", *argv], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=30)


def test_ext_add_prints_the_running_sipds_port(tmp_path):
    db_path = database_with(tmp_path / "pbx.db", ["1001"], "correct-horse-9")
    with Sipd(db_path) as sipd:
        assert sipd.port != 5060
        result = pbxctl(db_path, "ext", "add", "1005", "--generate")
        status = pbxctl(db_path, "status")
    assert status.returncode == 0, status.stderr
    assert f"Phones use: 127.0.0.1:{sipd.port} (UDP or TCP)" in status.stdout, status.stdout
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


def test_ext_add_prints_the_tls_port_sipd_listens_on(tmp_path):
    openssl = require_tool("openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=pbx.test", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    db_path = database_with(tmp_path / "pbx.db", [], "correct-horse-9")
    tls_port = free_port(socket.SOCK_STREAM)
    with Sipd(db_path, PBX_SIP_TLS_LISTEN=f"127.0.0.1:{tls_port}", PBX_TLS_CERT=str(cert),
              PBX_TLS_KEY=str(key)) as sipd:
        result = pbxctl(db_path, "ext", "add", "1005", "--generate")
    assert result.returncode == 0, result.stderr
    assert (f"server 127.0.0.1, port {sipd.port}, TLS port {tls_port}, transport UDP, TCP or TLS,"
            in result.stdout), result.stdout
