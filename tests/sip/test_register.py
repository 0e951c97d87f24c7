"""REGISTER against a real sipd process on loopback, driven by sipp (RFC 3261 §10)."""

import re
import sqlite3
import time

import pytest

from core import accounts
from core.config import load_settings
from core.database import connect
from tests.support import Sipd, database_with, free_port, inject_row, run_sipp, sip_exchange

PASSWORD = "correct-horse-9"


def row(number, password=PASSWORD, *extra):
    return inject_row(number, password, *extra)


@pytest.fixture
def db_path(tmp_path):
    return database_with(tmp_path / "pbx.db", ["1001", "1002"], PASSWORD)


@pytest.fixture
def sipd(db_path):
    with Sipd(db_path) as daemon:
        yield daemon


def bindings(db_path):
    with sqlite3.connect(db_path) as conn:
        return conn.execute(
            "SELECT e.number, b.contact, b.source_host, b.source_port, b.transport, b.user_agent,"
            " b.expires_at FROM binding b JOIN extension e ON e.id = b.extension_id"
            " WHERE b.expires_at > ? ORDER BY e.number, b.contact",
            (time.time(),),
        ).fetchall()


def attempts(db_path):
    with sqlite3.connect(db_path) as conn:
        return conn.execute(
            "SELECT number, result, reason FROM auth_attempt ORDER BY id"
        ).fetchall()


def test_register_with_digest_and_binding_stored(sipd, db_path):
    port = free_port()
    result = run_sipp("register_auth.xml", sipd.address, inject=[row("1002")], local_port=port)
    assert result.returncode == 0, result.explain()
    assert "401 Unauthorized" in result.messages() and "200 OK" in result.messages()
    [(number, contact, host, src_port, transport, agent, _)] = bindings(db_path)
    assert (number, contact, host, src_port, transport) == (
        "1002",
        f"sip:1002@127.0.0.1:{port}",
        "127.0.0.1",
        port,
        "UDP",
    )
    assert agent.startswith("sipp")
    assert f"Extension 1002 registered from 127.0.0.1:{port}" in sipd.log()


def test_register_over_tcp(sipd, db_path):
    result = run_sipp("register_auth.xml", sipd.address, inject=[row("1001")], transport="t1")
    assert result.returncode == 0, result.explain()
    assert bindings(db_path)[0][4] == "TCP"


def test_refresh_keeps_one_binding(sipd, db_path):
    result = run_sipp(
        "register_refresh.xml", sipd.address, inject=[row("1002")], extra=["-d", "200"]
    )
    assert result.returncode == 0, result.explain()
    assert len(bindings(db_path)) == 1


def test_unregister_removes_the_binding(sipd, db_path):
    port = free_port()
    assert (
        run_sipp(
            "register_auth.xml", sipd.address, inject=[row("1002")], local_port=port
        ).returncode
        == 0
    )
    assert len(bindings(db_path)) == 1
    result = run_sipp("unregister.xml", sipd.address, inject=[row("1002")], local_port=port)
    assert result.returncode == 0, result.explain()
    assert bindings(db_path) == []
    assert "Extension 1002 unregistered" in sipd.log()


def test_wrong_password_gets_403_and_the_reason_is_recorded(sipd, db_path):
    result = run_sipp(
        "register_wrong_password.xml", sipd.address, inject=[row("1002", "not-the-password")]
    )
    assert result.returncode == 0, result.explain()
    assert "403 Forbidden" in result.messages()
    assert attempts(db_path) == [("1002", "failure", "wrong password")]
    assert "Authentication failed for 1002 from 127.0.0.1" in sipd.log()
    assert bindings(db_path) == []


def _answers(result):
    """The responses sipp received, with what differs per request masked."""
    received = re.findall(r"message received \[\d+\] bytes :\n\n(.*?)\n\n", result.messages(), re.S)
    masked = []
    for message in received:
        message = re.sub(r"nonce=\"[^\"]+\"", "nonce=N", message)
        message = re.sub(r"(branch|tag|rport)=[^;\s,]+", r"\1=X", message)
        message = re.sub(r"(Call-ID|Date): .*", r"\1: X", message)
        message = re.sub(r"sip:\d+@", "sip:USER@", message)
        message = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", message)
        masked.append(message)
    return masked


def test_unknown_extension_is_indistinguishable(sipd, db_path):
    known = run_sipp(
        "register_wrong_password.xml", sipd.address, inject=[row("1002", "not-the-password")]
    )
    unknown = run_sipp(
        "register_wrong_password.xml", sipd.address, inject=[row("9999", "not-the-password")]
    )
    assert known.returncode == unknown.returncode == 0
    assert _answers(known) == _answers(unknown)
    assert len(_answers(known)) == 2  # the 401 and the 403
    assert attempts(db_path)[-1] == ("9999", "failure", "unknown extension")


def test_interval_too_brief(sipd, db_path):
    result = run_sipp(
        "register_interval_too_brief.xml", sipd.address, inject=[row("1002", PASSWORD, "10")]
    )
    assert result.returncode == 0, result.explain()
    assert "423 Interval Too Brief" in result.messages()
    assert "Min-Expires: 60" in result.messages()


def test_changed_password_applies_without_restart(sipd, db_path):
    settings = load_settings({"PBX_DB": str(db_path), "PBX_REALM": "pbx.test"})
    database = connect(settings)
    accounts.set_password("1002", "pbx.test", password="brand-new-secret-1")
    database.close()
    old = run_sipp("register_wrong_password.xml", sipd.address, inject=[row("1002")])
    assert old.returncode == 0 and "403 Forbidden" in old.messages()
    new = run_sipp("register_auth.xml", sipd.address, inject=[row("1002", "brand-new-secret-1")])
    assert new.returncode == 0, new.explain()


def test_kill9_then_restart_keeps_password_and_bindings(db_path):
    port = free_port()
    daemon = Sipd(db_path, port=port).start()
    try:
        result = run_sipp("register_auth.xml", daemon.address, inject=[row("1002")])
        assert result.returncode == 0, result.explain()
        before = bindings(db_path)
        assert len(before) == 1
        daemon.kill9()
        restarted = Sipd(db_path, port=port).start()
        try:
            # The binding made before the crash is still there...
            assert bindings(db_path) == before
            assert "1 live bindings" in restarted.log()
            # ...and the same password registers again, no cache to lose.
            again = run_sipp("register_auth.xml", restarted.address, inject=[row("1002")])
            assert again.returncode == 0, again.explain()
        finally:
            restarted.stop()
    finally:
        daemon.stop()


def test_malformed_input_does_not_stop_the_daemon(sipd):
    garbage = [
        b"\x00" * 100,
        b"REGISTER sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKq;rport\r\n"
        b"From: <sip:1@x>;tag=1\r\nTo: <sip:1@x>\r\nCall-ID: q\r\nCSeq: 1 REGISTER\r\n"
        b"Content-Length: 500\r\n\r\n",
        b"INVITE sip:1002@x SIP/2.0\r\nContent-Length: 99999999999\r\n\r\n",
    ]
    for data in garbage:
        sip_exchange(sipd.port, data, timeout=0.3)
        sip_exchange(sipd.port, data, timeout=0.3, transport="TCP")
    replies = sip_exchange(sipd.port, garbage[1], timeout=1)
    assert replies and replies[0].startswith(b"SIP/2.0 400 Bad Request: body shorter")
    result = run_sipp("options.xml", sipd.address)
    assert result.returncode == 0, result.explain()
    assert sipd.process.poll() is None


def test_tcp_keepalive_ping_gets_pong(sipd):
    replies = sip_exchange(sipd.port, b"\r\n\r\n", timeout=1, transport="TCP")
    assert replies == [b"\r\n"]


def test_large_udp_datagram_is_read_whole(sipd):
    # gevent's DatagramServer reads 8192 bytes by default; SIP allows up to 65535.
    big = (
        "OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKbig;rport\r\n"
        "From: <sip:a@x>;tag=1\r\nTo: <sip:x>\r\nCall-ID: big\r\nCSeq: 1 OPTIONS\r\n"
        f"X-Pad: {'a' * 20000}\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    replies = sip_exchange(sipd.port, big, timeout=2)
    assert replies and replies[0].startswith(b"SIP/2.0 200 OK")
