"""Nonces bound to a process's start and to an address, and nc's syntax (issue 14: 5, 6, 10).

The nonce logic alone (sipd.sip.digest), then the registrar through the handler
with a moved clock on a real SQLite database, as in test_registrar.py.
"""

import base64
import hashlib
import hmac
import re
import struct

import pytest

from core import accounts
from core.models import AuthAttempt, Binding
from sipd.handler import Handler
from sipd.registrar import Registrar
from sipd.sip.digest import (
    NonceCounts,
    NonceMinter,
    NonceState,
    Verdict,
    valid_nc,
    verify,
)
from sipd.sip.registration import Policy
from tests.unit.test_digest import SECRET, credentials_for
from tests.unit.test_registrar import PASSWORD, REALM, Clock, Phone

PHONE, STRANGER = "192.0.2.7", "203.0.113.9"
PHONE6, STRANGER6 = "2001:db8::7", "2001:db8::9"


@pytest.fixture
def minter():
    return NonceMinter(SECRET, "pbx.test", lifetime=300)


# -- the nonce: its address (finding 6) ----------------------------------------------------


@pytest.mark.parametrize(("ours", "theirs"), [(PHONE, STRANGER), (PHONE6, STRANGER6)])
def test_a_nonce_is_valid_only_at_the_address_it_was_sent_to(minter, ours, theirs):
    nonce = minter.mint(1000.0, ours)
    assert minter.check(nonce, 1000.0, ours) is NonceState.VALID
    assert minter.check(nonce, 1000.0, theirs) is NonceState.ELSEWHERE
    assert minter.issued_to(nonce) == ours


def test_the_address_is_the_ip_alone(minter):
    """check() takes no port: a NAT's new port for the same phone is the same address.
    An IPv4 address and its IPv4-mapped IPv6 form are different sources to sipd."""
    nonce = minter.mint(1000.0, PHONE)
    assert minter.check(nonce, 1000.0, "::ffff:192.0.2.7") is NonceState.ELSEWHERE
    assert minter.check(nonce, 1000.0, "192.0.2.70") is NonceState.ELSEWHERE


def test_elsewhere_comes_before_stale(minter):
    """From another address the answer never depends on age, process or password."""
    nonce = minter.mint(1000.0, PHONE)
    assert minter.check(nonce, 5000.0, STRANGER) is NonceState.ELSEWHERE
    worker = NonceMinter(SECRET, "pbx.test", lifetime=300, origin=1)
    assert worker.check(nonce, 1000.0, STRANGER) is NonceState.ELSEWHERE


def _rewrite_address(nonce: str, address: bytes) -> str:
    raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
    forged = raw[:16] + address + raw[-16:]
    return base64.urlsafe_b64encode(forged).decode().rstrip("=")


def test_the_address_is_under_the_mac(minter):
    """Writing the victim's address into a nonce fetched elsewhere makes it a forgery."""
    nonce = minter.mint(1000.0, STRANGER)
    forged = _rewrite_address(nonce, bytes([192, 0, 2, 7]))
    assert forged != nonce
    assert minter.check(forged, 1000.0, PHONE) is NonceState.INVALID


@pytest.mark.parametrize("nonce", ["", "A" * 48, "A" * 64, "A" * 5000, "é" * 48])
def test_nonces_of_no_layout_are_invalid(minter, nonce):
    assert minter.check(nonce, 1000.0, PHONE) is NonceState.INVALID


# -- the nonce: its process and start (finding 5) -------------------------------------------


def test_a_restarted_process_finds_its_old_nonces_stale(minter):
    nonce = minter.mint(1000.0, PHONE)
    restarted = NonceMinter(SECRET, "pbx.test", lifetime=300)  # same secret, same origin
    assert restarted.epoch != minter.epoch
    assert restarted.check(nonce, 1001.0, PHONE) is NonceState.STALE
    # It is the epoch that decides: the same start (a test's fixed epoch) accepts it.
    same_start = NonceMinter(SECRET, "pbx.test", lifetime=300, epoch=minter.epoch)
    assert same_start.check(nonce, 1001.0, PHONE) is NonceState.VALID
    # A worker restarted under its old number is a new start too.
    worker = NonceMinter(SECRET, "pbx.test", 300, origin=2)
    again = NonceMinter(SECRET, "pbx.test", 300, origin=2)
    assert again.check(worker.mint(1000.0, PHONE), 1000.0, PHONE) is NonceState.STALE


def test_a_bad_epoch_is_refused():
    with pytest.raises(ValueError, match="6 bytes"):
        NonceMinter(SECRET, "pbx.test", 300, epoch=b"short")


def _legacy_nonce(secret: str, realm: str, now: float, origin: int = 0) -> str:
    """A nonce as sipd minted them before this change, built here from that layout."""
    key = hashlib.sha256(b"sipd-nonce:" + secret.encode()).digest()
    stamp = struct.pack(">Q", int(now * 1000)) + bytes([origin]) + (12345).to_bytes(7, "big")
    mac = hmac.digest(key, stamp + realm.encode(), "sha256")[:16]
    return base64.urlsafe_b64encode(stamp + mac).decode().rstrip("=")


def test_a_nonce_from_before_the_upgrade_gets_a_stale_challenge(minter):
    """Phones holding one when sipd is upgraded are asked again with stale=true
    (ELSEWHERE: it names no address, so it proves nothing about the sender)."""
    legacy = _legacy_nonce(SECRET, "pbx.test", 1000.0)
    assert minter.check(legacy, 1000.0, PHONE) is NonceState.ELSEWHERE
    assert minter.issued_to(legacy) is None  # the registrar says so in its own words
    assert minter.check(_legacy_nonce("x" * 40, "pbx.test", 1000.0), 1000.0, PHONE) is (
        NonceState.INVALID
    )
    assert minter.check(_legacy_nonce(SECRET, "other", 1000.0), 1000.0, PHONE) is (
        NonceState.INVALID
    )


def test_every_challenge_gets_its_own_nonce(minter):
    nonces = {minter.mint(1000.0, PHONE) for _ in range(10_000)}
    assert len(nonces) == 10_000
    assert all(len(n) == 48 for n in nonces)  # 36 bytes, no padding
    assert len(minter.mint(1000.0, PHONE6)) == 64


# -- nc (finding 10, RFC 7616 §3.4: 8LHEX, from 00000001) -----------------------------------


@pytest.mark.parametrize("nc", ["00000001", "0000000a", "0000000A", "7fffffff", "ffffffff"])
def test_good_nonce_counts(nc):
    assert valid_nc(nc)


@pytest.mark.parametrize(
    "nc",
    ["00000000", "", "1", "0000001", "000000001", "0" * 4992 + "00000001", "0x000001",
     "+0000001", "-0000001", "0000_001", " 0000001", "0000001 ", "0000000g", "٠٠٠٠٠٠٠١"],
)
def test_bad_nonce_counts(nc):
    assert not valid_nc(nc)


def test_verify_refuses_a_bad_nc_before_the_nonce_and_the_password(minter):
    nonce = minter.mint(1000.0, PHONE)
    right = "0" * 32
    creds = credentials_for(minter, nonce, nc="00000000")
    for state in NonceState:
        assert verify(creds, right, "REGISTER", state) is Verdict.BAD_NC


def test_verify_elsewhere_whatever_the_password(minter):
    nonce = minter.mint(1000.0, STRANGER)
    from core.credentials import ha1

    right = ha1("1002", "pbx.test", "right-password1")
    state = minter.check(nonce, 1000.0, PHONE)
    for password in ("right-password1", "wrong-password"):
        creds = credentials_for(minter, nonce, password=password)
        assert verify(creds, right, "REGISTER", state) is Verdict.ELSEWHERE


def test_nonce_counts_take_only_well_formed_counts():
    counts = NonceCounts(lifetime=300)
    for bad in ("00000000", "0x000001", "0" * 5000 + "1", "+0000001"):
        assert not counts.accept("n", bad, 0)
    assert len(counts) == 0
    assert counts.accept("n", "00000001", 0)
    assert not counts.accept("n", "00000001", 0)  # the replay check, as before
    assert not counts.accept("n", "00000000", 0)


# -- through the registrar ----------------------------------------------------------------


class Offences(list):
    def __call__(self, number, source, reason):
        self.append((number, source.host, reason))


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def offences():
    return Offences()


def _registrar(clock, offences, epoch=None):
    minter = NonceMinter("k" * 40, REALM, 300, epoch=epoch)
    registrar = Registrar(REALM, minter, Policy(max_contacts=3), clock=clock)
    registrar.on_failure = offences
    return registrar


@pytest.fixture
def registrar(database, clock, offences):
    accounts.create_extension("1002", REALM, password=PASSWORD)
    return _registrar(clock, offences)


@pytest.fixture
def handler(registrar, clock):
    return Handler(registrar, clock=clock)


def _stale(response, header="WWW-Authenticate"):
    values = response.headers.get_all(header)
    return response.status in (401, 407) and values and all("stale=true" in v for v in values)


def _nonce(response):
    return re.search(r'nonce="([^"]+)"', response.headers.get("WWW-Authenticate")).group(1)


@pytest.mark.parametrize("password", [PASSWORD, "wrong-password"])
def test_a_nonce_answered_from_another_address_gets_a_stale_challenge(handler, offences, password):
    stranger = Phone(handler, host=STRANGER, port=5070)
    victim = Phone(handler, host=PHONE, port=5062)
    challenge = stranger.send()
    answer = victim.send(auth=victim.authorization(challenge, password=password))
    assert _stale(answer)
    assert _nonce(answer) != _nonce(challenge)
    assert Binding.select().count() == 0
    assert offences == []  # not a guess: the source may be forged
    attempt = AuthAttempt.get()
    assert (attempt.source_host, attempt.result, attempt.reason) == (
        PHONE, "failure", f"nonce was issued to {STRANGER}"
    )
    # The fresh nonce is the victim's own: a real phone there registers with it.
    assert victim.send(auth=victim.authorization(answer, password=password)).status == (
        200 if password == PASSWORD else 403
    )


def test_a_new_port_at_the_same_address_keeps_the_nonce(handler):
    """A NAT that gives the phone a new port between challenge and answer."""
    before = Phone(handler, host=PHONE, port=5062)
    after = Phone(handler, host=PHONE, port=40001, call_id=before.call_id)
    assert after.send(auth=after.authorization(before.send())).status == 200


def test_a_nonce_from_elsewhere_is_no_offence_whatever_else_is_wrong(handler, offences):
    """Even a mismatched authentication user (an offence with a nonce of one's own)."""
    stranger = Phone(handler, number="1003", host=STRANGER)
    victim = Phone(handler, number="1002", host=PHONE)
    challenge = stranger.send()
    for _ in range(10):
        assert _stale(victim.send(auth=stranger.authorization(challenge)))
    assert offences == []
    # With a nonce sent to it, the same mismatch is an offence of that source.
    own = stranger.authorization(victim.send())
    assert victim.send(auth=own).status == 403
    assert [(number, host) for number, host, _ in offences] == [("1002", PHONE)]


def test_a_known_and_an_unknown_extension_get_the_same_answer_from_elsewhere(handler):
    stranger = Phone(handler, number="1002", host=STRANGER)
    answers = []
    for number in ("1002", "7777"):
        victim = Phone(handler, number=number, host=PHONE)
        theirs = Phone(handler, number=number, host=STRANGER)
        answer = victim.send(auth=theirs.authorization(stranger.send()))
        answers.append((answer.status, answer.reason, _stale(answer)))
    assert answers[0] == answers[1] == (401, "Unauthorized", True)


def test_after_a_restart_the_old_nonce_gets_a_stale_challenge(database, clock, offences):
    accounts.create_extension("1002", REALM, password=PASSWORD)
    first = Handler(_registrar(clock, offences), clock=clock)
    phone = Phone(first)
    challenge = phone.send()
    captured = phone.authorization(challenge)
    assert phone.send(auth=captured).status == 200
    clock.now += 10
    restarted = Handler(_registrar(clock, offences), clock=clock)  # same secret, new start
    replay = Phone(restarted, port=40002, call_id="replay")
    answer = replay.send(auth=captured, contact="<sip:1002@192.0.2.7:40002>")
    assert _stale(answer)
    assert [b.contact for b in Binding.select()] == ["sip:1002@192.0.2.7:5062"]
    assert offences == []
    assert replay.send(auth=replay.authorization(answer)).status == 200


@pytest.mark.parametrize("number", ["1002", "7777"])
@pytest.mark.parametrize("nc", ["00000000", "0" * 4992 + "00000001", "0x000001"])
def test_a_bad_nc_is_400_for_known_and_unknown_and_no_offence(handler, offences, number, nc):
    phone = Phone(handler, number=number)
    answer = phone.send(auth=phone.authorization(phone.send(), nc=nc))
    assert (answer.status, answer.reason) == (
        400, "Bad Request: nc must be 8 hex digits from 00000001"
    )
    assert offences == []
    assert AuthAttempt.get().reason == "nc must be 8 hex digits from 00000001"


def test_an_authenticated_register_checks_its_nonce_once(handler, registrar, monkeypatch):
    """The hot path's cost: one HMAC per nonce checked (the address is one more input)."""
    calls = []
    check = registrar.minter.check
    monkeypatch.setattr(
        registrar.minter, "check", lambda *a: calls.append(a) or check(*a)
    )
    assert Phone(handler).register().status == 200
    assert len(calls) == 1
