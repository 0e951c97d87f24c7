"""A real sipd against sipvicious from Debian, with a legitimate phone beside the attacker.

The attacker plays from 127.0.0.2 (and scanners from 127.0.0.4), the phone
registers from 127.0.0.3 with sipp; all on loopback.
"""

import re
import socket
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.sip.attack import (
    masked,
    options_from,
    request,
    sipvicious,
    sipvicious_command,
    udp_ask,
    wait_until,
)
from tests.support import ROOT, Sipd, base_env, database_with, free_port, inject_row, run_sipp

PASSWORD = "correct-horse-9"
ATTACKER = "127.0.0.2"
PHONE = "127.0.0.3"
SCANNER = "127.0.0.4"
DISGUISE = "Yealink SIP-T46S 66.86.0.15"


def row(number, password=PASSWORD):
    return inject_row(number, password)


@pytest.fixture
def db_path(tmp_path):
    return database_with(tmp_path / "pbx.db", ["1001", "1002"], PASSWORD)


@pytest.fixture
def sipd(db_path):
    with Sipd(db_path) as daemon:
        yield daemon


def query(db_path, sql, *args):
    with sqlite3.connect(db_path) as conn:
        return conn.execute(sql, args).fetchall()


def pbxctl(db_path, *args):
    return subprocess.run(
        [sys.executable, str(ROOT / "pbxcli.py"), *args],
        env=base_env(str(db_path)),
        capture_output=True,
        text=True,
        timeout=30,
    )


def register_phone(sipd, host=PHONE):
    return run_sipp("register_auth.xml", sipd.address, inject=[row("1001")], local_ip=host)


# -- scanners --------------------------------------------------------------------------


def test_svmap_gets_no_answer(sipd):
    result = sipvicious("svmap", ["-b", SCANNER, "-p", str(sipd.port), "127.0.0.1"])
    output = result.stdout + result.stderr
    assert "found nothing" in output, output
    assert "pbx-sipd" not in output
    assert re.search(
        rf"\[SIP\] Dropped request from {SCANNER}:\d+: scanner User-Agent 'friendly-scanner'",
        sipd.log(),
    )
    # The same request with a phone's User-Agent is answered: the drop is the User-Agent's.
    assert options_from(SCANNER, sipd.port).startswith(b"SIP/2.0 200 OK")


@pytest.mark.parametrize("method", ["REGISTER", "INVITE", "OPTIONS"])
@pytest.mark.parametrize("user_agent", [None, DISGUISE], ids=["stock", "disguised"])
def test_svwar_enumerates_no_extension(sipd, db_path, method, user_agent):
    # 1000-1010 holds the real extensions 1001 and 1002.
    args = ["-m", method, "-e", "1000-1010", "--force", "--maximumtime=2"]
    result = sipvicious(
        "svwar", [*args, "-p", str(sipd.port), "127.0.0.1"], user_agent, bind=SCANNER
    )
    output = result.stdout + result.stderr
    assert "found nothing" in output, output
    assert "exists" not in output, output
    if user_agent is None:
        assert "scanner User-Agent 'friendly-scanner'" in sipd.log()
    else:
        assert f"[SIP] Received {method} from {SCANNER}" in sipd.log()  # answered, uniformly


@pytest.mark.parametrize("method", ["REGISTER", "INVITE", "OPTIONS"])
@pytest.mark.parametrize(
    "credentials",
    [
        "",
        'Authorization: Digest username="{auth}", realm="pbx.test", nonce="forged", '
        'uri="sip:{user}@127.0.0.1:{port}", response="0123456789abcdef0123456789abcdef", '
        'algorithm=MD5, cnonce="c", nc=00000001, qop=auth',
        'Proxy-Authorization: Digest username="{auth}", realm="pbx.test", nonce="forged", '
        'uri="sip:{user}@127.0.0.1:{port}", response="0123456789abcdef0123456789abcdef", '
        'algorithm=MD5, cnonce="c", nc=00000001, qop=auth',
    ],
    ids=["plain", "forged-authorization", "forged-proxy-authorization"],
)
def test_an_unknown_extension_gets_what_a_known_one_gets(sipd, method, credentials):
    """Status and header set. REGISTER authenticates the To user; INVITE (the B2BUA's
    407 path) the caller, here the real 1001 calling known and unknown numbers. The
    timing class, the same database and digest work, is counted in tests/unit."""
    answers = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((PHONE, 0))
        for user in ("1002", "9999", "1001", "7777") * 2:
            caller = "1001" if method == "INVITE" else user
            extra = credentials.format(user=user, auth=caller, port=sipd.port)
            data = request(method, user, sipd.port, sock.getsockname(), extra=extra, caller=caller)
            answer = udp_ask(data, sipd.port, sock=sock, timeout=2)
            assert answer is not None, (method, user)
            answers.setdefault(user, set()).add(str(masked(answer)))
    assert answers["1002"] == answers["9999"] == answers["1001"] == answers["7777"]
    assert len(answers["1002"]) == 1


# -- password guessing -------------------------------------------------------------------


def test_password_guesser_is_cut_off_while_a_phone_keeps_registering(sipd, db_path, tmp_path):
    assert register_phone(sipd).returncode == 0
    # The right password is 20th in the guesser's list: it must never get there.
    words = tmp_path / "passwords.txt"
    words.write_text("".join(f"guess{n}\n" for n in range(19)) + PASSWORD + "\n")
    guesser = subprocess.Popen(
        [
            *sipvicious_command("svcrack", DISGUISE, bind=ATTACKER),
            "-u",
            "1002",
            "-d",
            str(words),
            "--maximumtime=3",
            "-p",
            str(sipd.port),
            "127.0.0.1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        phone_results = []
        while guesser.poll() is None and len(phone_results) < 20:
            phone_results.append(register_phone(sipd).returncode)
        output, _ = guesser.communicate(timeout=60)
    finally:
        if guesser.poll() is None:
            guesser.kill()
            guesser.wait()
    assert PASSWORD not in output, output
    failures = query(
        db_path,
        "SELECT COUNT(*) FROM auth_attempt WHERE source_host = ? AND result = 'failure'",
        ATTACKER,
    )
    assert failures == [(5,)]
    [(reason, offences)] = query(
        db_path, "SELECT reason, offences FROM ban WHERE address = ?", ATTACKER
    )
    assert (reason, offences) == ("5 failed authentications in 600 s", 1)
    assert f"[SIP] Banned {ATTACKER} for 3600 s: 5 failed authentications in 600 s" in sipd.log()
    # The phone kept registering throughout, and still does.
    assert phone_results and set(phone_results) == {0}
    assert register_phone(sipd).returncode == 0
    assert query(db_path, "SELECT DISTINCT source_host FROM binding") == [(PHONE,)]
    # The banned address gets no answer at all, to anything.
    assert options_from(ATTACKER, sipd.port) is None


def test_stock_svcrack_gets_no_answer_and_scanners_are_banned(sipd, db_path):
    args = ["-u", "1002", "-r", "1-50", "--maximumtime=2", "-p", str(sipd.port), "127.0.0.1"]
    result = sipvicious("svcrack", args, bind=ATTACKER)
    assert PASSWORD not in result.stdout
    assert "found nothing" in result.stdout + result.stderr
    assert f"[SIP] Dropped request from {ATTACKER}" in sipd.log()
    assert query(db_path, "SELECT COUNT(*) FROM auth_attempt") == [(0,)]
    # It stalls on the missing 401. Whatever keeps sending with a scanner's
    # User-Agent is banned once it reaches the threshold.
    for _ in range(5):
        assert options_from(ATTACKER, sipd.port, agent="friendly-scanner", timeout=0.2) is None
    [(reason,)] = query(db_path, "SELECT reason FROM ban WHERE address = ?", ATTACKER)
    assert reason == "5 requests with scanner User-Agent 'friendly-scanner' in 600 s"
    assert options_from(ATTACKER, sipd.port) is None  # now even as a phone


def test_ban_survives_a_restart_and_lifting_it_lets_the_address_in(db_path):
    port = free_port()
    daemon = Sipd(db_path, port=port).start()
    try:
        guesses = run_sipp(
            "register_wrong_password.xml",
            daemon.address,
            calls=5,
            inject=[row("1002", "not-the-password")] * 5,
            local_ip=ATTACKER,
        )
        assert guesses.returncode == 0, guesses.explain()
        assert options_from(ATTACKER, port) is None
    finally:
        daemon.stop()
    restarted = Sipd(db_path, port=port).start()
    try:
        assert options_from(ATTACKER, port) is None
        assert options_from(PHONE, port).startswith(b"SIP/2.0 200")
        listed = pbxctl(db_path, "ban", "list")
        assert listed.returncode == 0 and ATTACKER in listed.stdout, listed
        assert "5 failed authentications in 600 s" in listed.stdout
        lifted = pbxctl(db_path, "ban", "rm", ATTACKER)
        assert lifted.returncode == 0, lifted.stderr
        took = wait_until(lambda: options_from(ATTACKER, port, timeout=0.2) is not None, 5)
        assert took is not None and took < 2, took
        again = run_sipp(
            "register_auth.xml", restarted.address, inject=[row("1002")], local_ip=ATTACKER
        )
        assert again.returncode == 0, again.explain()
        assert f"[SIP] Ban of {ATTACKER} lifted" in restarted.log()
        [(lifted_by,)] = query(db_path, "SELECT lifted_by FROM ban WHERE address = ?", ATTACKER)
        assert lifted_by.startswith("cli:")
    finally:
        restarted.stop()


def test_pbxctl_ban_errors_are_one_line(db_path):
    missing = pbxctl(db_path, "ban", "rm", "192.0.2.99")
    assert missing.returncode != 0
    assert missing.stderr.strip() == "pbxctl: 192.0.2.99 is not banned"
    bad = pbxctl(db_path, "ban", "rm", "not-an-address")
    assert bad.returncode != 0
    assert bad.stderr.strip() == "pbxctl: 'not-an-address' is not an IP address"
    empty = pbxctl(db_path, "ban", "list")
    assert empty.returncode == 0 and "No address is banned" in empty.stdout


def test_trusted_networks_are_never_banned(db_path):
    with Sipd(db_path, PBX_TRUSTED_NETWORKS="127.0.0.2/32") as daemon:
        guesses = run_sipp(
            "register_wrong_password.xml",
            daemon.address,
            calls=8,
            inject=[row("1002", "not-the-password")] * 8,
            local_ip=ATTACKER,
        )
        assert guesses.returncode == 0, guesses.explain()
        assert options_from(ATTACKER, daemon.port).startswith(b"SIP/2.0 200")
        assert query(db_path, "SELECT COUNT(*) FROM ban") == [(0,)]


# -- limits ------------------------------------------------------------------------------


def test_rate_limit_drops_a_flood_and_spares_others(db_path):
    with Sipd(db_path, PBX_RATE_LIMIT="20", PBX_RATE_BURST="50") as daemon:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((SCANNER, 0))
            local = sock.getsockname()
            for _ in range(300):
                sock.sendto(
                    request("OPTIONS", "1002", daemon.port, local), ("127.0.0.1", daemon.port)
                )
            sock.settimeout(1.0)
            answered = 0
            try:
                while True:
                    sock.recvfrom(65535)
                    answered += 1
            except TimeoutError:
                pass
        assert 50 <= answered < 120, answered
        assert f"[SIP] Dropped request from {SCANNER}:{local[1]}: rate limited" in daemon.log()
        assert options_from(PHONE, daemon.port).startswith(b"SIP/2.0 200")
        assert query(db_path, "SELECT COUNT(*) FROM ban") == [(0,)]  # a flood is no guess


def test_tcp_connections_per_source_and_slow_senders(db_path):
    with Sipd(db_path, PBX_MAX_TCP_PER_SOURCE="3", PBX_TCP_READ_TIMEOUT="1") as daemon:
        held = []
        try:
            for _ in range(3):
                sock = socket.socket()
                sock.bind((SCANNER, 0))
                sock.connect(("127.0.0.1", daemon.port))
                sock.sendall(b"REGISTER sip:pbx.test SIP/2.0\r\nVia: SIP/2.0/TCP x")  # held open
                held.append(sock)
            extra = socket.socket()
            extra.bind((SCANNER, 0))
            extra.connect(("127.0.0.1", daemon.port))
            extra.settimeout(2)
            assert extra.recv(10) == b""  # closed at once: a fourth connection
            extra.close()
            # Another address is not affected...
            phone = register_phone_tcp(daemon)
            assert phone.returncode == 0, phone.explain()
            # ...and the half messages are cut off after the read timeout.
            for sock in held:
                sock.settimeout(3)
                started = time.monotonic()
                assert sock.recv(10) == b""
                assert time.monotonic() - started < 3
            log = daemon.log()
            assert "more than 3 connections from one address" in log
            assert "no complete message in 1 s" in log
        finally:
            for sock in held:
                sock.close()


def register_phone_tcp(daemon):
    return run_sipp(
        "register_auth.xml", daemon.address, inject=[row("1001")], local_ip=PHONE, transport="t1"
    )


@pytest.mark.parametrize("method", ["REGISTER", "INVITE"])
def test_a_request_without_credentials_gets_one_stateless_challenge(sipd, method):
    """RFC 3261 §8.2.7: the challenge to a request without credentials is sent
    statelessly, so a flood of them leaves no transaction state. Observable: each
    copy of the request gets a challenge of its own (a fresh nonce, the same To
    tag), and a 407 left unACKed is not retransmitted (no Timer G, §17.2.1)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((PHONE, 0))
        data = request(method, "1002", sipd.port, sock.getsockname(), caller="1001")
        for _ in range(2):  # the request and its retransmission (same branch)
            sock.sendto(data, ("127.0.0.1", sipd.port))
        answers = []
        deadline = time.monotonic() + 2.0  # Timer G would resend at 0.5 s and 1.5 s
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                answers.append(sock.recvfrom(65535)[0])
            except TimeoutError:
                break
    status = b"401" if method == "REGISTER" else b"407"
    assert [a.split(b" ")[1] for a in answers] == [status, status], answers
    nonces = {re.search(rb'nonce="([^"]+)"', a).group(1) for a in answers}
    tags = {re.search(rb"\r\nTo: [^\r]*;tag=([^;\r]+)", a).group(1) for a in answers}
    assert len(nonces) == 2 and len(tags) == 1
