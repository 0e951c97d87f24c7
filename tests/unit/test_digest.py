"""Digest against the RFC 7616 §3.9.1 example, and the nonce rules."""

import pytest

from core.credentials import ha1
from sipd.sip.digest import (
    CheckedCredentials,
    NonceCounts,
    NonceMinter,
    NonceState,
    Verdict,
    challenges,
    expected_response,
    verify,
)
from sipd.sip.headers import Credentials

# RFC 7616 §3.9.1, verbatim.
USER, REALM, PASSWORD = "Mufasa", "http-auth@example.org", "Circle of Life"
NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"


@pytest.mark.parametrize(
    ("algorithm", "response", "cnonce"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec", CNONCE),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1", CNONCE),
    ],
)
def test_rfc7616_example(algorithm, response, cnonce):
    key = ha1(USER, REALM, PASSWORD, algorithm)
    got = expected_response(
        algorithm, key, NONCE, "GET", "/dir/index.html", "auth", "00000001", cnonce
    )
    assert got == response


SECRET = "s" * 40
PHONE = "192.0.2.7"  # where the challenges in these tests are sent, and answered from


def credentials_for(
    minter,
    nonce,
    password="right-password1",
    algorithm="MD5",
    nc="00000001",
    uri="sip:pbx.test",
    user="1002",
    qop="auth",
):
    key = ha1(user, minter.realm, password, algorithm)
    response = expected_response(algorithm, key, nonce, "REGISTER", uri, qop, nc, "abc")
    header = (
        f'Digest username="{user}", realm="{minter.realm}", nonce="{nonce}", '
        f'uri="{uri}", response="{response}", algorithm={algorithm}, cnonce="abc", '
        f"nc={nc}" + (f", qop={qop}" if qop else "")
    )
    return CheckedCredentials.from_credentials(Credentials.parse(header))


@pytest.fixture
def minter():
    return NonceMinter(SECRET, "pbx.test", lifetime=300)


def test_nonce_valid_then_stale(minter):
    nonce = minter.mint(1000.0, PHONE)
    assert minter.check(nonce, 1000.0, PHONE) is NonceState.VALID
    assert minter.check(nonce, 1299.0, PHONE) is NonceState.VALID
    assert minter.check(nonce, 1301.0, PHONE) is NonceState.STALE


def test_nonce_is_stale_after_a_restart(minter):
    # A new minter with the same secret (a restarted sipd) knows the old nonce as
    # its own but holds none of its counts: stale (docs/security.md, finding 5).
    nonce = minter.mint(1000.0, PHONE)
    again = NonceMinter(SECRET, "pbx.test", lifetime=300)
    assert again.check(nonce, 1100.0, PHONE) is NonceState.STALE


def test_a_nonce_is_stale_at_a_process_that_did_not_issue_it(minter):
    # sipd.workers: the issuing process keeps the nonce counts; elsewhere the
    # phone is asked again with stale=true rather than risk a replay.
    worker = NonceMinter(SECRET, "pbx.test", lifetime=300, origin=1)
    ours, theirs = minter.mint(1000.0, PHONE), worker.mint(1000.0, PHONE)
    assert worker.check(theirs, 1000.0, PHONE) is NonceState.VALID
    assert minter.check(theirs, 1000.0, PHONE) is NonceState.STALE
    assert worker.check(ours, 1000.0, PHONE) is NonceState.STALE
    assert minter.check(ours, 1000.0, PHONE) is NonceState.VALID


@pytest.mark.parametrize("tamper", ["other-secret", "other-realm", "flip", "garbage"])
def test_foreign_or_tampered_nonce_is_invalid(minter, tamper):
    nonce = minter.mint(1000.0, PHONE)
    if tamper == "other-secret":
        nonce = NonceMinter("x" * 40, "pbx.test", 300).mint(1000.0, PHONE)
    elif tamper == "other-realm":
        nonce = NonceMinter(SECRET, "other", 300).mint(1000.0, PHONE)
    elif tamper == "flip":
        nonce = nonce[:-2] + ("A" if nonce[-2] != "A" else "B") + nonce[-1]
    else:
        nonce = "!!not base64!!"
    assert minter.check(nonce, 1000.0, PHONE) is NonceState.INVALID


def test_nonce_from_the_future_is_invalid(minter):
    assert minter.check(minter.mint(2000.0, PHONE), 1000.0, PHONE) is NonceState.INVALID


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_verify_outcomes(minter, algorithm):
    nonce = minter.mint(1000.0, PHONE)
    right = ha1("1002", "pbx.test", "right-password1", algorithm)
    good = credentials_for(minter, nonce, algorithm=algorithm)
    assert verify(good, right, "REGISTER", minter.check(nonce, 1001.0, PHONE)) is Verdict.OK
    bad = credentials_for(minter, nonce, password="wrong-password", algorithm=algorithm)
    assert verify(bad, right, "REGISTER", minter.check(nonce, 1001.0, PHONE)) is Verdict.WRONG
    assert verify(good, right, "REGISTER", minter.check(nonce, 1400.0, PHONE)) is Verdict.STALE
    # A wrong password with a stale nonce is wrong, not stale: stale=true is
    # only for a client that knows the password (RFC 7616 §3.3).
    assert verify(bad, right, "REGISTER", minter.check(nonce, 1400.0, PHONE)) is Verdict.WRONG
    # The method is part of HA2.
    assert verify(good, right, "INVITE", minter.check(nonce, 1001.0, PHONE)) is Verdict.WRONG


def test_verify_requires_qop_and_known_algorithm(minter):
    nonce = minter.mint(1000.0, PHONE)
    right = ha1("1002", "pbx.test", "right-password1")
    state = minter.check(nonce, 1000.0, PHONE)
    assert verify(credentials_for(minter, nonce, qop=None), right, "REGISTER", state) is (
        Verdict.NO_QOP
    )
    creds = credentials_for(minter, nonce)
    creds.algorithm = None
    assert verify(creds, right, "REGISTER", state) is Verdict.BAD_ALGORITHM


def test_nonce_counts_refuse_replay():
    counts = NonceCounts(lifetime=300)
    assert counts.accept("n1", "00000001", 0)
    assert not counts.accept("n1", "00000001", 1)
    assert counts.accept("n1", "00000002", 1)
    assert counts.accept("n2", "00000001", 1)
    assert not counts.accept("n3", "zz", 1)
    counts.prune(1000)
    assert len(counts) == 0


def test_challenges_are_offered_in_the_order_given():
    values = challenges("pbx.test", "nonce1", "op", True, ("SHA-256", "MD5"))
    assert [v.split("algorithm=")[1].split(",")[0] for v in values] == ["SHA-256", "MD5"]
    assert all('qop="auth"' in v and "stale=true" in v for v in values)
    only = challenges("pbx.test", "n", "o", False, ("SHA-256",))
    assert len(only) == 1 and only[0].count("SHA-256") == 1 and "stale" not in only[0]


def test_nonce_counts_forget_the_oldest_after_their_lifetime():
    counts = NonceCounts(lifetime=300)
    for second in range(100):
        for n in range(5):
            assert counts.accept(f"n{second}-{n}", "00000001", float(second))
    # A reused nonce keeps its place (the time it was first seen).
    assert counts.accept("n0-0", "00000002", 50.0)
    counts.prune(350.0)  # horizon 40: what was first seen before it is gone
    assert len(counts) < 500
    assert counts.accept("n10-0", "00000001", 350.0)  # forgotten: accepted as new
    assert not counts.accept("n99-0", "00000001", 350.0)  # still known: a replay
    counts.prune(1000.0)
    assert len(counts) <= 1
    # Kept at least its lifetime (this one longer: it came after the last mark).
    counts.prune(1000.5)
    assert not counts.accept("n10-0", "00000001", 1000.5)
