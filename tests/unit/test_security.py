"""sipd's Guard with a moved clock on a real SQLite database: bans, limits, scanners.

No sockets: the Guard is asked what the transports ask, and the registrar is
driven through the handler as in test_registrar.py.
"""

import ipaddress
import logging
import sqlite3
import sys
from pathlib import Path

import pytest

from core import accounts, bans
from core.config import SCANNER_AGENTS, load_settings
from sipd import security
from sipd.handler import Handler
from sipd.registrar import Registrar, Source
from sipd.sip.digest import NonceMinter
from sipd.sip.registration import Policy
from tests.unit.test_registrar import PASSWORD, REALM, Clock, Phone, _shape

GUESSER = "203.0.113.9"


def src(host=GUESSER, port=5060):
    return Source(host, port, "UDP")


def request(agent="MicroSIP/3.21.3", method="OPTIONS"):
    return (
        f"{method} sip:pbx.test SIP/2.0\r\nVia: SIP/2.0/UDP 203.0.113.9:5060;branch=z9hG4bK1\r\n"
        "From: <sip:100@pbx.test>;tag=1\r\nTo: <sip:100@pbx.test>\r\nCall-ID: c\r\n"
        f"CSeq: 1 {method}\r\nUser-Agent: {agent}\r\nContent-Length: 0\r\n\r\n"
    ).encode()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def guard_for(database, settings, clock):
    made = []

    def make(**policy):
        banlist = security.BanList.open(settings.db_path, clock)
        guard = security.Guard(security.Policy(**policy), banlist, clock)
        made.append(banlist)
        return guard

    yield make
    for banlist in made:
        banlist.close()


@pytest.fixture
def guard(guard_for):
    return guard_for(scanner_agents=SCANNER_AGENTS, rate=0)


def ban_rows(settings):
    with sqlite3.connect(settings.db_path) as conn:
        return bans.history(conn)


def fail(guard, times, host=GUESSER, number="1002"):
    for _ in range(times):
        guard.auth_failed(number, src(host), "wrong password")


def test_five_failures_in_the_window_ban_the_source(guard, settings, clock, caplog):
    caplog.set_level(logging.INFO, "sipd")
    fail(guard, 4)
    assert guard.admit(request(), src())
    fail(guard, 1)
    assert not guard.admit(request(), src())
    assert guard.admit(request(), src("203.0.113.10"))  # only that address
    [row] = ban_rows(settings)
    assert (row.address, row.reason, row.failures, row.offences) == (
        GUESSER,
        "5 failed authentications in 600 s",
        5,
        1,
    )
    assert row.expires_at == clock.now + 3600 and row.lifted_at is None
    assert f"[SIP] Banned {GUESSER} for 3600 s: 5 failed authentications in 600 s" in caplog.text
    assert f"[SIP] Dropped request from {GUESSER}:5060: banned" in caplog.text


def test_failures_spread_beyond_the_window_do_not_ban(guard, settings, clock):
    for _ in range(12):
        fail(guard, 1)
        clock.now += 150  # 4 per 600 s at most
    assert guard.admit(request(), src())
    assert ban_rows(settings) == []


def test_the_ban_ends_and_a_repeat_offence_doubles_it(guard, settings, clock):
    fail(guard, 5)
    clock.now += 3601
    assert guard.admit(request(), src())
    fail(guard, 5)
    assert not guard.admit(request(), src())
    latest = ban_rows(settings)[0]
    assert (latest.offences, latest.expires_at - latest.created_at) == (2, 7200)
    assert bans.duration(3600, 20) == bans.MAX_TIME


def test_trusted_networks_are_never_banned_or_limited(guard_for, settings):
    guard = guard_for(trusted=(ipaddress.ip_network("203.0.113.0/24"),), rate=1, burst=1)
    fail(guard, 50)
    assert all(guard.admit(request(), src()) for _ in range(20))
    assert ban_rows(settings) == []
    assert all(guard.tcp_opened(src()) for _ in range(500))


def test_a_lift_written_by_another_process_applies_at_once(guard, settings, clock, caplog):
    caplog.set_level(logging.INFO, "sipd")
    lifted = []
    guard.on_lift = lifted.append
    fail(guard, 5)
    assert not guard.admit(request(), src())
    with sqlite3.connect(settings.db_path) as other:  # pbxctl ban rm, the panel
        assert bans.lift(other, GUESSER, "pbxctl", clock.now) == 1
    clock.now += security.CHECK_INTERVAL
    assert guard.admit(request(), src())
    assert lifted == [GUESSER]
    assert f"[SIP] Ban of {GUESSER} lifted" in caplog.text
    # A clean slate: the old failures do not count again...
    fail(guard, 4)
    assert guard.admit(request(), src())
    # ...and a lifted ban is no offence: the next one is a first one again.
    fail(guard, 1)
    assert not guard.admit(request(), src())
    assert ban_rows(settings)[0].offences == 1


def test_bans_come_from_the_database(guard, guard_for, settings, clock):
    fail(guard, 5)
    restarted = guard_for()
    assert not restarted.admit(request(), src())
    clock.now += 3600
    assert restarted.admit(request(), src())


def test_a_ban_added_by_another_process_applies(guard, settings, clock):
    with sqlite3.connect(settings.db_path) as other:
        bans.add(other, "::ffff:198.51.100.1", "by hand", 0, 1, clock.now, clock.now + 60)
    clock.now += security.CHECK_INTERVAL
    assert not guard.admit(request(), src("198.51.100.1"))


@pytest.mark.parametrize(
    "agent",
    [
        "friendly-scanner",
        "sipvicious",
        "SIPVicious/0.3.3",
        "sipcli/v1.8",
        "VaxSIPUserAgent/3.1",
        "sundayddr",
        "iWar",
        "SIVuS",
        "Gulp/1.0",
        "sipv",
        "smap 0.6",
        "pplsip",
    ],
)
def test_scanner_user_agents_are_dropped(guard, agent, caplog):
    caplog.set_level(logging.INFO, "sipd")
    assert not guard.admit(request(agent), src())
    assert f"[SIP] Dropped request from {GUESSER}:5060: scanner User-Agent '{agent}'" in caplog.text


@pytest.mark.parametrize(
    "agent",
    [
        "MicroSIP/3.21.3",
        "Zoiper rv2.10.19.6",
        "Linphone/5.2.0 (belle-sip/5.2.0)",
        "baresip v1.0.0 (x86_64/linux)",
        "SIPVoice 2.0",
        "Gulpin",
        "Yealink SIP-T46S 66.86.0.15",
        "sipsak 0.9.8",
    ],
)
def test_phones_are_not_scanners(guard, agent):
    assert guard.admit(request(agent), src())


def test_a_scanner_is_banned_after_the_threshold(guard, settings, caplog):
    caplog.set_level(logging.INFO, "sipd")
    for _ in range(5):
        assert not guard.admit(request("friendly-scanner"), src())
    [row] = ban_rows(settings)
    assert row.reason == "5 requests with scanner User-Agent 'friendly-scanner' in 600 s"
    # One line per cause per minute, however many requests are dropped.
    assert caplog.text.count("scanner User-Agent 'friendly-scanner'\n") == 1


def test_the_scanner_list_is_configurable():
    settings = load_settings({"PBX_SCANNER_AGENTS": "evil-scan, other", "PBX_DB": ":memory:"})
    assert settings.scanner_agents == ("evil-scan", "other")
    pattern = security.scanner_pattern(settings.scanner_agents)
    assert pattern.search("Evil-Scan/2") and not pattern.search("friendly-scanner")
    assert security.scanner_pattern(()) is None


def test_rate_limit_is_a_token_bucket_per_source(guard_for, clock, caplog):
    caplog.set_level(logging.INFO, "sipd")
    guard = guard_for(rate=50, burst=200)
    assert all(guard.admit(request(), src()) for _ in range(200))
    assert not guard.admit(request(), src())
    assert guard.admit(request(), src("203.0.113.10"))  # others are not affected
    clock.now += 0.1001  # five tokens back
    assert [guard.admit(request(), src()) for _ in range(6)] == [True] * 5 + [False]
    assert f"[SIP] Dropped request from {GUESSER}:5060: rate limited" in caplog.text


def test_an_office_behind_one_address_fits_the_default_rate(guard_for, clock):
    """50 phones re-registering at once (REGISTER, 401, REGISTER) and an OPTIONS keep-alive each."""
    guard = guard_for(rate=100, burst=400)
    assert all(guard.admit(request(), src()) for _ in range(50 * 3))
    clock.now += 1
    assert all(guard.admit(request(), src()) for _ in range(50))


def test_tcp_connections_per_source(guard_for, caplog):
    caplog.set_level(logging.INFO, "sipd")
    guard = guard_for(max_tcp_per_source=3)
    assert [guard.tcp_opened(src()) for _ in range(4)] == [True, True, True, False]
    assert "more than 3 connections from one address" in caplog.text
    guard.tcp_closed(src())
    assert guard.tcp_opened(src())
    assert guard.tcp_opened(src("203.0.113.10"))


def test_tcp_connections_in_all(guard_for, caplog):
    caplog.set_level(logging.INFO, "sipd")
    guard = guard_for(max_tcp_total=4)
    assert [guard.tcp_opened(src(f"198.51.100.{n}")) for n in range(5)] == [True] * 4 + [False]
    assert "more than 4 connections in all" in caplog.text
    guard.tcp_closed(src("198.51.100.0"))
    assert guard.tcp_opened(src("198.51.100.9"))


def test_the_file_limit_is_raised_and_half_of_it_is_for_connections(database, settings):
    import resource

    soft = security.raise_fd_limit()
    assert soft == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    guard = security.build(settings)
    try:
        assert guard.policy.max_tcp_total == soft // 2
    finally:
        guard.bans.close()


def test_a_banned_source_cannot_connect(guard):
    fail(guard, 5)
    assert not guard.tcp_opened(src())


def test_failures_against_one_extension_from_many_addresses_never_lock_it(guard, settings, caplog):
    caplog.set_level(logging.INFO, "sipd")
    for index in range(20):
        fail(guard, 2, host=f"198.51.100.{index}")
    assert ban_rows(settings) == []
    assert "[SIP] Extension 1002: 20 failed authentications in 600 s from 10 address(es)" in (
        caplog.text
    )


def test_a_source_with_live_registrations_gets_a_higher_threshold(guard, settings, clock, caplog):
    caplog.set_level(logging.INFO, "sipd")
    extension, _, _ = accounts.create_extension("1005", REALM, password=PASSWORD)
    with sqlite3.connect(settings.db_path) as conn:
        conn.execute(
            "INSERT INTO binding (extension_id, aor, contact, source_host, source_port, transport,"
            " expires_at, call_id, cseq, user_agent, instance, registered_at, updated_at)"
            " VALUES (?, 'sip:1005@pbx.test', 'sip:1005@x', ?, 5060, 'UDP', ?, 'c', 1, '', '', ?, ?)",
            (extension.id, GUESSER, clock.now + 300, clock.now, clock.now),
        )
    fail(guard, 19)
    for _ in range(30):  # scanner requests from there do not count (easily spoofed over UDP)
        guard.admit(request("friendly-scanner"), src())
    assert guard.admit(request(), src())
    assert "not banned yet: 1 registration(s) are live from there (banned at 20)" in caplog.text
    fail(guard, 1)
    assert not guard.admit(request(), src())


def test_prune_forgets_what_no_longer_matters(guard_for, clock):
    guard = guard_for(rate=10, burst=10)
    guard.admit(request(), src())
    fail(guard, 2)
    clock.now += 700
    guard.prune()
    assert not guard._buckets and not guard._offences and not guard._per_number


def test_tracked_addresses_are_bounded(guard_for):
    guard = guard_for(rate=10, burst=10)
    guard._buckets.limit = 100
    for index in range(1000):
        guard.admit(request(), src(f"10.0.{index // 256}.{index % 256}"))
    assert len(guard._buckets) <= 100


# -- the nftables hook -----------------------------------------------------------


@pytest.fixture
def recorder(tmp_path):
    log = tmp_path / "calls.txt"
    script = tmp_path / "record"
    script.write_text(
        f"#!{sys.executable}\nimport sys\nopen({str(log)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
    )
    script.chmod(0o755)
    return script, log


def test_ban_command_gets_the_address_and_timeout(database, settings, clock, recorder):
    script, calls = recorder
    settings = load_settings(
        {"PBX_DB": settings.db_path, "PBX_REALM": REALM, "PBX_NFT_BAN_COMMAND": f"{script} --x"}
    )
    guard = security.build(settings, clock=clock)
    fail(guard, 5)
    with sqlite3.connect(settings.db_path) as other:
        bans.lift(other, GUESSER, "admin", clock.now)
    clock.now += 1
    guard.admit(request(), src())
    fail(guard, 5, host="2001:db8::1")
    guard.bans.close()
    # At start, the bans in force are pushed again (the kernel set is empty after a reboot).
    clock.now += 100
    again = security.build(settings, clock=clock)
    again.bans.close()
    assert Path(calls).read_text().splitlines() == [
        f"--x add {GUESSER} 3600",
        f"--x del {GUESSER}",
        "--x add 2001:db8::1 3600",
        "--x add 2001:db8::1 3500",
    ]


def test_a_failing_ban_command_is_logged_and_the_ban_holds(guard, tmp_path, caplog):
    command = security.BanCommand(f"{tmp_path}/missing-helper")
    guard.on_ban = command.add
    fail(guard, 5)
    assert not guard.admit(request(), src())
    assert "[SIP] Ban command failed" in caplog.text
    assert not security.BanCommand("false").run(["add", GUESSER, "1"])


# -- what the registrar reports ---------------------------------------------------


@pytest.fixture
def handler(database, clock, guard):
    accounts.create_extension("1002", REALM, password=PASSWORD)
    minter = NonceMinter("k" * 40, REALM, 300)
    registrar = Registrar(REALM, minter, Policy(), clock=clock)
    registrar.on_failure = guard.auth_failed
    return Handler(registrar, clock=clock)


def test_wrong_passwords_through_the_registrar_ban(handler, guard, settings):
    phone = Phone(handler, host=GUESSER)
    for _ in range(4):
        assert phone.register(password="guess-guess").status == 403
    assert guard.admit(request(), src())
    assert phone.register(password="guess-guess").status == 403
    assert not guard.admit(request(), src())
    assert ban_rows(settings)[0].reason == "5 failed authentications in 600 s"


def test_what_reveals_nothing_does_not_count(handler, guard, settings, clock):
    """Stale or foreign nonces and a disabled extension are not guesses."""
    phone = Phone(handler, host=GUESSER)
    forged = phone.authorization(phone.send()).replace('nonce="', 'nonce="x')
    for _ in range(10):
        assert phone.send(auth=forged).status == 401  # fresh challenge
    assert guard.admit(request(), src())
    assert ban_rows(settings) == []


def test_a_forged_nonce_does_not_tell_known_from_unknown(handler):
    """An unknown extension must get what a known one gets, whatever the credentials."""
    known = Phone(handler, number="1002", port=6001)
    unknown = Phone(handler, number="7777", port=6002)
    answers = []
    for phone in (known, unknown):
        auth = phone.authorization(phone.send())
        forged = auth.replace('nonce="', 'nonce="x')
        incomplete = auth.replace(", nc=", ", nc_=")
        answers.append([_shape(phone.send(auth=a)) for a in (forged, incomplete)])
    assert answers[0] == answers[1]
    assert answers[0][0][0] == 401


def test_a_known_and_an_unknown_extension_cost_the_same_work(handler, monkeypatch):
    """The timing class: one database read and one digest computation for both."""
    from sipd import registrar as registrar_module

    work = []
    lookup, verify = registrar_module.store.extension, registrar_module.digest.verify
    monkeypatch.setattr(
        registrar_module.store, "extension", lambda *a, **k: work.append("read") or lookup(*a, **k)
    )
    monkeypatch.setattr(
        registrar_module.digest, "verify", lambda *a: work.append("digest") or verify(*a)
    )
    done = {}
    for number in ("1002", "7777"):
        work.clear()
        answer = Phone(handler, number=number).register(password="guess-guess")
        done[number] = (answer.status, list(work))
    assert done["1002"] == done["7777"] == (403, ["read", "digest"])
