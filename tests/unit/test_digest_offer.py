"""Which digest challenges a phone is offered, and the challenges it never answers.

The default (MD5 alone) is the one every common phone registers with; SHA-256
goes first to the extensions that chose it (`pbxctl ext digest`), the PBX's
PBX_DIGEST_ALGORITHMS to every other. A phone challenged and never answering
is recorded after sipd.unanswered.WAIT seconds, moved on the clock.
Through the handler on a real SQLite database, as tests/unit/test_registrar.py.
"""

from __future__ import annotations

import logging

import pytest

from core import accounts
from core.accounts import AccountError
from core.config import ConfigError, load_settings
from core.credentials import offered_algorithms, parse_algorithms
from core.models import AuthAttempt, Binding, Extension
from sipd import unanswered
from sipd.handler import Handler
from sipd.registrar import Registrar
from sipd.sip.digest import NonceMinter
from sipd.sip.registration import Policy
from tests.unit.test_registrar import PASSWORD, REALM, Clock, Phone


def algorithms_of(response) -> list[str]:
    return [v.split("algorithm=")[1].split(",")[0]
            for v in response.headers.get_all("WWW-Authenticate")]


@pytest.fixture
def clock():
    return Clock()


def make_handler(clock, algorithms=None):
    minter = NonceMinter("k" * 40, REALM, 300)
    extra = {} if algorithms is None else {"algorithms": algorithms}
    registrar = Registrar(REALM, minter, Policy(max_contacts=3), clock=clock, **extra)
    return Handler(registrar, clock=clock)


@pytest.fixture
def handler(database, clock):
    for number in ("1002", "1003"):
        accounts.create_extension(number, REALM, password=PASSWORD)
    return make_handler(clock)


# -- the choice -------------------------------------------------------------------------

def test_the_default_is_md5_alone_which_every_common_phone_answers():
    assert load_settings({}).digest_algorithms == ("MD5",)
    assert Registrar(REALM, NonceMinter("k" * 40, REALM, 300), Policy()).algorithms == ("MD5",)


@pytest.mark.parametrize("value, expected", [
    ("MD5", ("MD5",)), ("sha-256", ("SHA-256",)), ("SHA-256, MD5", ("SHA-256", "MD5")),
    ("MD5,SHA-256", ("MD5", "SHA-256")),
])
def test_algorithm_lists_are_read_in_order(value, expected):
    assert parse_algorithms(value) == expected
    assert load_settings({"PBX_DIGEST_ALGORITHMS": value}).digest_algorithms == expected


@pytest.mark.parametrize("value, message", [
    ("", "expected MD5 and/or SHA-256"), ("SHA-1", "expected MD5 and/or SHA-256"),
    ("MD5,MD5", "each algorithm once"), (" , ", "expected MD5 and/or SHA-256"),
])
def test_bad_algorithm_lists_are_refused_with_one_line(value, message):
    with pytest.raises(ValueError, match=message):
        parse_algorithms(value)
    with pytest.raises(ConfigError, match=f"PBX_DIGEST_ALGORITHMS: {message}"):
        load_settings({"PBX_DIGEST_ALGORITHMS": value})


def test_an_extension_without_its_own_choice_gets_the_pbxs():
    assert offered_algorithms("", ("MD5",)) == ("MD5",)
    assert offered_algorithms("SHA-256,MD5", ("MD5",)) == ("SHA-256", "MD5")
    assert offered_algorithms("nonsense", ("MD5",)) == ("MD5",)  # not ours: the safe one


def test_a_phone_is_challenged_with_md5_alone_by_default(handler):
    assert algorithms_of(Phone(handler).send()) == ["MD5"]
    assert Phone(handler).register().status == 200


def test_sha256_goes_first_to_the_extension_that_chose_it_only(handler):
    accounts.set_digest_algorithms("1002", "sha-256,md5")
    assert Extension.by_number("1002").digest_algorithms == "SHA-256,MD5"
    chosen = Phone(handler, number="1002", port=6001)
    challenge = chosen.send(expires=300)
    assert algorithms_of(challenge) == ["SHA-256", "MD5"]
    # a phone that takes the topmost challenge it supports (RFC 8760 §2.4) uses SHA-256
    assert chosen.send(expires=300, auth=chosen.authorization(challenge, "SHA-256")).status == 200
    # one that knows only MD5 and reads every challenge still registers
    assert Phone(handler, number="1002", port=6002).register(algorithm="MD5").status == 200
    # the others, and a number that is no extension, get the PBX's choice
    assert algorithms_of(Phone(handler, number="1003", port=6003).send()) == ["MD5"]
    assert algorithms_of(Phone(handler, number="7777", port=6004).send()) == ["MD5"]


def test_sha256_alone_refuses_an_md5_answer(handler):
    accounts.set_digest_algorithms("1002", "SHA-256")
    phone = Phone(handler)
    challenge = phone.send(expires=300)
    assert algorithms_of(challenge) == ["SHA-256"]
    # an MD5 response to an MD5 challenge this phone was never sent: a downgrade
    forged = phone.authorization(Phone(handler, number="1003", port=7000).send(), "MD5")
    assert phone.send(expires=300, auth=forged).status == 403
    assert AuthAttempt.get(AuthAttempt.number == "1002").reason == (
        "digest algorithm MD5 is not offered")
    assert phone.register(algorithm="SHA-256").status == 200


def test_a_change_applies_to_the_next_challenge(handler):
    phone = Phone(handler)
    assert algorithms_of(phone.send()) == ["MD5"]
    accounts.set_digest_algorithms("1002", "SHA-256,MD5")
    assert algorithms_of(phone.send()) == ["SHA-256", "MD5"]
    accounts.set_digest_algorithms("1002", "default")
    assert Extension.by_number("1002").digest_algorithms == ""
    assert algorithms_of(phone.send()) == ["MD5"]


def test_the_pbx_wide_setting_still_applies(database, clock):
    accounts.create_extension("1002", REALM, password=PASSWORD)
    handler = make_handler(clock, algorithms=("SHA-256", "MD5"))
    phone = Phone(handler)
    assert algorithms_of(phone.send()) == ["SHA-256", "MD5"]
    assert phone.register(algorithm="SHA-256").status == 200


@pytest.mark.parametrize("value", ["SHA-1", "MD5,MD5", ","])
def test_a_bad_choice_for_an_extension_is_refused_and_changes_nothing(handler, value):
    with pytest.raises(AccountError, match="digest algorithms: "):
        accounts.set_digest_algorithms("1002", value)
    assert Extension.by_number("1002").digest_algorithms == ""
    with pytest.raises(AccountError, match="no extension 7777"):
        accounts.set_digest_algorithms("7777", "MD5")


def test_the_challenge_for_a_call_follows_the_callers_choice(handler):
    # The 407 of an INVITE is made by the same registrar (sipd/calls.py).
    accounts.set_digest_algorithms("1002", "SHA-256,MD5")
    registrar = handler.registrar
    phone = Phone(handler)
    offered = registrar.offer("1002")
    response = registrar.challenge(_request(phone), phone.source, proxy=True, algorithms=offered)
    assert response.status == 407
    values = response.headers.get_all("Proxy-Authenticate")
    assert [v.split("algorithm=")[1].split(",")[0] for v in values] == ["SHA-256", "MD5"]


def _request(phone):
    from sipd.sip.message import parse

    return parse(
        f"INVITE sip:1003@{REALM} SIP/2.0\r\nVia: SIP/2.0/UDP {phone.source.host}:5062;branch=z9hG4bKx\r\n"
        f"From: <sip:1002@{REALM}>;tag=a\r\nTo: <sip:1003@{REALM}>\r\nCall-ID: c\r\n"
        "CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n".encode()
    )


# -- challenges never answered ----------------------------------------------------------

def challenge_rows(number="1002"):
    return list(AuthAttempt.select().where(AuthAttempt.number == number,
                                           AuthAttempt.result == "challenge"))


def test_a_phone_that_never_answers_is_recorded_once_with_its_count(handler, clock, caplog):
    accounts.set_digest_algorithms("1002", "SHA-256")
    phone = Phone(handler)
    for _ in range(3):  # a phone that cannot answer and tries again
        assert phone.send(expires=300).status == 401
        clock.now += 2
    registrar = handler.registrar
    registrar.flush_unanswered()
    assert challenge_rows() == []  # 6 s: an answer could still come
    clock.now += unanswered.WAIT
    with caplog.at_level(logging.WARNING, logger="sipd"):
        registrar.flush_unanswered()
    [row] = challenge_rows()
    assert (row.times, row.reason, row.source_host, row.source_port, row.user_agent) == (
        3, "never answered the challenge", "192.0.2.7", 5062, "TestPhone/1.0")
    assert row.created_at == clock.now - unanswered.WAIT - 2  # the last challenge
    assert ("192.0.2.7:5062 (TestPhone/1.0) never answered the challenge for 1002"
            " (3 times, offered SHA-256): the phone may not support that algorithm"
            ", or has no password for 1002") in caplog.text
    # recorded once; the next episode starts afresh
    registrar.flush_unanswered()
    assert len(challenge_rows()) == 1
    assert len(registrar.unanswered) == 0
    # and none of it is a failed login (the dashboard, bans)
    assert AuthAttempt.select().where(AuthAttempt.result == "failure").count() == 0


def test_an_answered_challenge_leaves_nothing(handler, clock):
    phone = Phone(handler)
    assert phone.register().status == 200
    wrong = Phone(handler, number="1003", port=6010)
    assert wrong.register(password="wrong-password").status == 403  # recorded as such
    clock.now += unanswered.WAIT + 1
    handler.registrar.flush_unanswered()
    assert challenge_rows("1002") == challenge_rows("1003") == []
    assert Binding.select().count() == 1


def test_numbers_that_are_no_extension_leave_nothing(handler, clock):
    for number in ("7777", "100", "2000"):  # a scanner walking numbers
        Phone(handler, number=number).send()
    clock.now += unanswered.WAIT
    assert handler.registrar.unanswered.flush(clock.now) == []
    assert AuthAttempt.select().count() == 0


def test_the_memory_of_pending_challenges_is_bounded(clock):
    written = []
    pending = unanswered.Unanswered(lambda *row: written.append(row), lambda number: True,
                                    limit=3)

    class Source:
        def __init__(self, host):
            self.host, self.port, self.transport = host, 5060, "UDP"

    for i in range(5):
        pending.challenged("1002", Source(f"192.0.2.{i}"), "", ("MD5",), clock.now + i)
    assert len(pending) == 3
    rows = pending.flush(clock.now + 100)
    assert [entry.host for entry in rows] == ["192.0.2.2", "192.0.2.3", "192.0.2.4"]
    assert [row[3] for row in written] == ["192.0.2.2", "192.0.2.3", "192.0.2.4"]
