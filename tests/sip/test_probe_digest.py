"""Issue 14, findings 5, 6 and 10 (nc): digest nonces against a real sipd, from raw sockets.

The phone is 127.0.0.3, the stranger 127.0.0.9 (all loopback). The digest
(RFC 7616 §3.4.1, MD5, qop=auth) is computed here, not by sipd's code. A
"spoofed" request is one sent from a socket bound to the victim's address:
sipd sees exactly what a forged UDP source would give it, and the test can
read what sipd sends back there.
"""

import hashlib
import re
import socket
import sqlite3
import time

import pytest

from tests.sip.attack import options_from, request, udp_ask
from tests.sip.test_workers import address_for
from tests.support import Sipd, database_with, free_port, inject_row, run_sipp

PASSWORD = "correct-horse-9"
REALM = "pbx.test"
PHONE = "127.0.0.3"
STRANGER = "127.0.0.9"


@pytest.fixture
def db_path(tmp_path):
    return database_with(tmp_path / "pbx.db", ["1001", "1002"], PASSWORD, REALM)


@pytest.fixture
def sipd(db_path):
    with Sipd(db_path) as daemon:
        yield daemon


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def nonce_of(answer: bytes) -> str:
    return re.search(rb'nonce="([^"]+)"', answer).group(1).decode()


def credentials(method, number, uri, nonce, nc="00000001", password=PASSWORD, proxy=False):
    """An Authorization (or Proxy-Authorization) line answering `nonce`."""
    ha1 = md5(f"{number}:{REALM}:{password}")
    response = md5(f"{ha1}:{nonce}:{nc}:c0ffee:auth:{md5(f'{method}:{uri}')}")
    name = "Proxy-Authorization" if proxy else "Authorization"
    return (
        f'{name}: Digest username="{number}", realm="{REALM}", nonce="{nonce}", uri="{uri}", '
        f'response="{response}", algorithm=MD5, cnonce="c0ffee", nc={nc}, qop=auth'
    )


class Peer:
    """A UDP socket on one loopback address that sends REGISTERs and INVITEs to sipd."""

    def __init__(self, host: str, port: int):
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))

    def close(self):
        self.sock.close()

    def send(self, method, user, extra="", caller=None):
        data = request(
            method, user, self.port, self.sock.getsockname(), extra=extra, caller=caller or user
        )
        answer = udp_ask(data, self.port, sock=self.sock, timeout=3)
        assert answer is not None, f"no answer to {method} from {self.sock.getsockname()}"
        return answer

    def register(self, extra=""):
        return self.send("REGISTER", "1001", extra)

    def uri(self, user="1001"):
        return f"sip:{user}@127.0.0.1:{self.port}"


def contacts(db_path):
    with sqlite3.connect(db_path) as conn:
        return sorted(
            row[0]
            for row in conn.execute(
                "SELECT b.contact FROM binding b JOIN extension e ON e.id = b.extension_id"
                " WHERE e.number = '1001' AND b.expires_at > ?",
                (time.time(),),
            )
        )


def offences(db_path):
    with sqlite3.connect(db_path) as conn:
        return conn.execute("SELECT address FROM ban").fetchall()


def status(answer: bytes) -> str:
    return answer.split(b"\r\n", 1)[0].decode()


def assert_stale_challenge(answer: bytes, code: int = 401) -> None:
    assert status(answer).startswith(f"SIP/2.0 {code} "), answer
    header = b"Proxy-Authenticate" if code == 407 else b"WWW-Authenticate"
    values = re.findall(rb"^" + header + rb": ([^\r\n]*)", answer, re.M)
    assert values and all(b"stale=true" in v for v in values), answer


# -- finding 5: replay after a restart ------------------------------------------------------


@pytest.mark.parametrize("replayer", [PHONE, STRANGER], ids=["same-address", "stranger"])
def test_a_register_captured_before_a_restart_is_challenged_after_it(db_path, replayer):
    """The probe: REGISTER 1001 captured (nonce, nc=00000001, response), sipd restarted,
    the same Authorization sent with a new Call-ID and Contact. The counts of the
    nonces the old process issued died with it; its nonces must die too."""
    port = free_port()
    daemon = Sipd(db_path, port=port).start()
    phone = Peer(PHONE, port)
    try:
        nonce = nonce_of(phone.register())
        captured = credentials("REGISTER", "1001", phone.uri(), nonce)
        assert status(phone.register(captured)) == "SIP/2.0 200 OK"
        # Within the same run the nonce count already refuses the replay.
        again = Peer(replayer, port)
        try:
            assert_stale_challenge(again.register(captured))
        finally:
            again.close()
        before = contacts(db_path)
    finally:
        phone.close()
        daemon.stop()
    restarted = Sipd(db_path, port=port).start()
    replay = Peer(replayer, port)  # a new source port, so a new Contact
    try:
        answer = replay.register(captured)  # a new Call-ID, too (attack.request)
        assert_stale_challenge(answer)
        assert contacts(db_path) == before  # bound nothing
        # stale=true: a phone that knows the password answers at once, unasked.
        fresh = credentials("REGISTER", "1001", replay.uri(), nonce_of(answer))
        assert status(replay.register(fresh)) == "SIP/2.0 200 OK"
        assert len(contacts(db_path)) == len(before) + 1
        assert offences(db_path) == []
    finally:
        replay.close()
        restarted.stop()


def test_a_workers_nonce_is_still_stale_in_the_main_process(db_path):
    """Not a finding: what the epoch must keep working. With registration workers a
    phone's REGISTER is answered by a worker (by its address) and its INVITE by the
    main process; the worker's nonce, from the same address, is stale there."""
    with Sipd(db_path, PBX_SIP_WORKERS="2") as daemon:
        phone = Peer(address_for(1), daemon.port)
        try:
            nonce = nonce_of(phone.register())
            auth = credentials("INVITE", "1001", phone.uri("1002"), nonce, proxy=True)
            answer = phone.send("INVITE", "1002", extra=auth, caller="1001")
            assert_stale_challenge(answer, 407)
            auth = credentials("INVITE", "1001", phone.uri("1002"), nonce_of(answer), proxy=True)
            answer = phone.send("INVITE", "1002", extra=auth, caller="1001")
            assert status(answer).startswith("SIP/2.0 480 "), answer
        finally:
            phone.close()


# -- finding 6: a nonce answered from another address -----------------------------------


def test_a_nonce_fetched_elsewhere_does_not_bind_the_victims_address(sipd, db_path):
    """The reflection: with 1001's password the stranger fetches a nonce at its own
    address and sends the REGISTER with the victim's source (and Contact)."""
    stranger, victim = Peer(STRANGER, sipd.port), Peer(PHONE, sipd.port)
    try:
        nonce = nonce_of(stranger.register())
        answer = victim.register(credentials("REGISTER", "1001", victim.uri(), nonce))
        assert_stale_challenge(answer)  # sent to the victim, who never asked: harmless
        assert nonce_of(answer) != nonce
        assert contacts(db_path) == []
        assert "nonce was issued to 127.0.0.9" in sipd.log()
        # At its own address the stranger's nonce is good (1001's password is right).
        assert status(stranger.register(credentials("REGISTER", "1001", stranger.uri(), nonce)))\
            == "SIP/2.0 200 OK"
        assert contacts(db_path) == [f"sip:1001@{STRANGER}:{stranger.sock.getsockname()[1]}"]
    finally:
        stranger.close()
        victim.close()


def test_a_nonce_fetched_elsewhere_cannot_get_the_victim_banned(sipd, db_path):
    """Wrong passwords with the victim's source address are no offence of the victim's:
    without a nonce sent to that address, nothing proves the request came from there."""
    stranger, victim = Peer(STRANGER, sipd.port), Peer(PHONE, sipd.port)
    try:
        for _ in range(8):  # PBX_BAN_THRESHOLD is 5
            nonce = nonce_of(stranger.register())
            guess = credentials("REGISTER", "1001", victim.uri(), nonce, password="guess")
            assert_stale_challenge(victim.register(guess))
        assert offences(db_path) == []
        assert options_from(PHONE, sipd.port) is not None
        result = run_sipp("register_auth.xml", sipd.address, inject=[inject_row("1001", PASSWORD)],
                          local_ip=PHONE)
        assert result.returncode == 0, result.explain()
    finally:
        stranger.close()
        victim.close()


def test_a_407_nonce_answered_from_another_address_places_no_call(sipd):
    """The INVITE path (RFC 3261 §22.3, the B2BUA's 407) uses the same nonces."""
    stranger, victim = Peer(STRANGER, sipd.port), Peer(PHONE, sipd.port)
    try:
        challenge = stranger.send("INVITE", "1002", caller="1001")
        assert status(challenge).startswith("SIP/2.0 407 "), challenge
        auth = credentials(
            "INVITE", "1001", victim.uri("1002"), nonce_of(challenge), proxy=True
        )
        assert_stale_challenge(victim.send("INVITE", "1002", extra=auth, caller="1001"), 407)
        assert "Call 1001 -> 1002" not in sipd.log()
        # From where it was sent, the same nonce gets past authentication (1002 is
        # not registered, so the call itself fails: 480).
        auth = credentials(
            "INVITE", "1001", stranger.uri("1002"), nonce_of(challenge), proxy=True
        )
        answer = stranger.send("INVITE", "1002", extra=auth, caller="1001")
        assert status(answer).startswith("SIP/2.0 480 "), answer
    finally:
        stranger.close()
        victim.close()


# -- finding 10: nc is 8 hex digits, from 00000001 (RFC 7616 §3.4) -----------------------


@pytest.mark.parametrize(
    "nc",
    ["00000000", "0" * 4992 + "00000001", "0x000001", "0000_001", "+0000001", "0000001"],
    ids=["zero", "5000-digits", "0x", "underscore", "plus", "7-digits"],
)
def test_a_malformed_nonce_count_is_refused(sipd, db_path, nc):
    phone = Peer(PHONE, sipd.port)
    try:
        nonce = nonce_of(phone.register())
        answer = phone.register(credentials("REGISTER", "1001", phone.uri(), nonce, nc=nc))
        assert status(answer).startswith("SIP/2.0 400 Bad Request: nc "), answer[:200]
        assert contacts(db_path) == []
        assert offences(db_path) == []
        # The same nonce with a proper count is fine: the refusal spent nothing.
        good = credentials("REGISTER", "1001", phone.uri(), nonce, nc="00000001")
        assert status(phone.register(good)) == "SIP/2.0 200 OK"
    finally:
        phone.close()
