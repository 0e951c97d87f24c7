"""The client side of Digest (sipd/sip/digest_client.py): RFC test vectors verbatim,
the choice among challenges, nonce counts, stale and refused passwords, and a round
trip against our own server side (sipd/sip/digest.py)."""

import itertools

import pytest

from core.credentials import ha1
from sipd.sip import digest
from sipd.sip.digest_client import (
    Challenge,
    ChallengeError,
    ClientCredentials,
    authorization,
    choose,
)
from sipd.sip.headers import Credentials
from sipd.sip.message import Headers, Response, parse


def response(*headers, status=401):
    return Response(headers=Headers(list(headers)), status=status, reason="Unauthorized")


def fields(value):
    parsed = Credentials.parse(value)
    assert parsed.scheme == "Digest"
    return parsed.params


def counter(prefix="cn"):
    numbers = itertools.count(1)
    return lambda: f"{prefix}{next(numbers)}"


# RFC 7616 §3.9.1, verbatim: one nonce offered with SHA-256 first, then MD5.
USER, REALM, PASSWORD = "Mufasa", "http-auth@example.org", "Circle of Life"
NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
RFC7616_CHALLENGE = (
    'Digest\r\n    realm="http-auth@example.org",\r\n    qop="auth, auth-int",\r\n'
    "    algorithm={algorithm},\r\n"
    '    nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",\r\n'
    '    opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
)


def rfc7616_401(*algorithms):
    """The §3.9.1 response as SIP bytes, folded lines and all, through our parser."""
    lines = [
        "SIP/2.0 401 Unauthorized",
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1",
        "Call-ID: a@127.0.0.1",
        "CSeq: 1 REGISTER",
    ] + [f"WWW-Authenticate: {RFC7616_CHALLENGE.format(algorithm=a)}" for a in algorithms]
    return parse(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())


@pytest.mark.parametrize(
    ("order", "algorithm", "expected"),
    [
        (("SHA-256", "MD5"), "SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
        (("MD5", "SHA-256"), "MD5", "8ca523f5e9506fed4657c9700eebdbec"),
    ],
)
def test_rfc7616_example_topmost_supported_challenge(order, algorithm, expected):
    challenges, skipped = choose(rfc7616_401(*order))
    assert skipped == []
    [challenge] = challenges  # one realm: one answer, the topmost (RFC 8760 §2.4)
    assert challenge.algorithm == algorithm
    assert challenge.qop == "auth"  # "auth, auth-int" offered: auth taken
    value = authorization(challenge, "GET", "/dir/index.html", USER, PASSWORD, 1, CNONCE)
    assert fields(value) == {
        "username": USER,
        "realm": REALM,
        "nonce": NONCE,
        "uri": "/dir/index.html",
        "response": expected,
        "algorithm": algorithm,
        "cnonce": CNONCE,
        "qop": "auth",
        "nc": "00000001",
        "opaque": OPAQUE,
    }
    # Unquoted where RFC 7616 §3.4 has tokens (RFC 3261 §25.1 too).
    assert f"algorithm={algorithm}," in value and "qop=auth," in value and "nc=00000001" in value


def test_rfc2617_example_without_an_algorithm_is_md5():
    # RFC 2617 §3.5, verbatim (no algorithm: MD5, and none is sent back).
    challenge = Challenge.parse(
        "WWW-Authenticate",
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"',
    )
    assert challenge.algorithm == "MD5" and not challenge.algorithm_given
    value = authorization(
        challenge, "GET", "/dir/index.html", "Mufasa", "Circle Of Life", 1, "0a4f113b"
    )
    params = fields(value)
    assert params["response"] == "6629fae49393a05397450978507c4ef1"
    assert params["opaque"] == "5ccc069c403ebaf9f0171e9517f40e41"
    assert params["nc"] == "00000001" and params["cnonce"] == "0a4f113b"
    assert "algorithm" not in params


def test_rfc2069_form_when_no_qop_is_offered():
    challenge = Challenge.parse("WWW-Authenticate", 'Digest realm="r", nonce="n1"')
    assert challenge.qop is None
    value = authorization(challenge, "REGISTER", "sip:prov.test", "alice", "pw")
    params = fields(value)
    key = ha1("alice", "r", "pw", "MD5")
    assert params["response"] == digest.expected_response("MD5", key, "n1", "REGISTER", "sip:prov.test")
    assert params.keys() == {"username", "realm", "nonce", "uri", "response"}


def test_unknown_and_sess_algorithms_are_skipped_for_the_next_one():
    offered = [
        ("WWW-Authenticate", 'Digest realm="r", nonce="a", algorithm=SHA-512-256, qop="auth"'),
        ("WWW-Authenticate", 'Digest realm="r", nonce="b", algorithm=MD5-sess, qop="auth"'),
        ("WWW-Authenticate", 'Digest realm="r", nonce="c", algorithm=SHA-256-sess, qop="auth"'),
        ("WWW-Authenticate", 'Basic realm="r"'),
        ("WWW-Authenticate", 'Digest realm="r", nonce="d", algorithm=md5, qop="auth"'),
        ("WWW-Authenticate", 'Digest realm="r", nonce="e", algorithm=SHA-256, qop="auth"'),
    ]
    [challenge], skipped = choose(response(*offered))
    assert (challenge.nonce, challenge.algorithm) == ("d", "MD5")
    assert skipped == [
        "digest algorithm 'SHA-512-256' is not supported",
        "digest algorithm 'MD5-sess' is not supported",
        "digest algorithm 'SHA-256-sess' is not supported",
        "authentication scheme 'Basic' is not Digest",
    ]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ('Digest realm="r", nonce="n", qop="auth-int"', "qop 'auth-int' offered without auth (auth-int is not supported)"),
        ('Digest realm="r", nonce="n", algorithm=SHA-512-256', "digest algorithm 'SHA-512-256' is not supported"),
        ('Digest nonce="n"', "challenge without a realm or a nonce"),
        ('Digest realm="r", nonce="n", qop="auth', "malformed challenge: malformed Authorization header"),
    ],
)
def test_nothing_to_answer_gives_a_clear_reason(value, reason):
    with pytest.raises(ChallengeError, match="^" + reason.replace("(", r"\(").replace(")", r"\)")):
        Challenge.parse("WWW-Authenticate", value)
    credentials = ClientCredentials("alice", "pw", counter())
    got = credentials.challenged(response(("WWW-Authenticate", value)))
    assert got == f"provider sent 401 with nothing sipd can answer ({reason})"
    assert credentials.authorize("REGISTER", "sip:prov.test").headers == ()


def test_a_401_without_any_challenge():
    got = ClientCredentials("alice", "pw").challenged(response())
    assert got == "provider sent 401 with nothing sipd can answer (no challenge)"


def test_no_credentials_before_a_challenge_then_preemptive_with_nc_counting():
    credentials = ClientCredentials("alice", "pw", counter())
    assert credentials.authorize("REGISTER", "sip:prov.test").headers == ()
    challenge = 'Digest realm="prov", nonce="n1", algorithm=SHA-256, qop="auth", opaque="o"'
    assert credentials.challenged(response(("WWW-Authenticate", challenge))) is None
    sent = [credentials.authorize("REGISTER", "sip:prov.test") for _ in range(3)]
    assert [a.answered[0].first for a in sent] == [True, False, False]
    for number, authorization_ in enumerate(sent, 1):
        [(name, value)] = authorization_.headers
        params = fields(value)
        assert name == "Authorization"
        assert (params["nc"], params["cnonce"], params["opaque"]) == (f"{number:08x}", f"cn{number}", "o")
    # A new nonce counts from 1 again (RFC 7616 §3.4: nc counts per nonce).
    other = 'Digest realm="prov", nonce="n2", algorithm=SHA-256, qop="auth"'
    assert credentials.challenged(response(("WWW-Authenticate", other)), sent[-1]) is None
    params = fields(credentials.authorize("INVITE", "sip:5551234@prov.test").headers[0][1])
    assert (params["nonce"], params["nc"], params["uri"]) == ("n2", "00000001", "sip:5551234@prov.test")
    assert "opaque" not in params


def test_stale_is_retried_and_a_fresh_refusal_is_a_wrong_password():
    credentials = ClientCredentials("alice", "pw", counter())
    first = 'Digest realm="prov", nonce="n1", qop="auth"'
    assert credentials.challenged(response(("WWW-Authenticate", first))) is None
    answer = credentials.authorize("REGISTER", "sip:prov.test")
    stale = 'Digest realm="prov", nonce="n2", qop="auth", stale=TRUE'
    assert credentials.challenged(response(("WWW-Authenticate", stale)), answer) is None
    answer = credentials.authorize("REGISTER", "sip:prov.test")
    assert fields(answer.headers[0][1])["nonce"] == "n2"
    refused = 'Digest realm="prov", nonce="n3", qop="auth", stale=false'
    got = credentials.challenged(response(("WWW-Authenticate", refused)), answer)
    assert got == "provider refused the password for user alice at realm prov"


def test_stale_again_and_again_is_a_refusal():
    credentials = ClientCredentials("alice", "pw", counter())
    credentials.challenged(response(("WWW-Authenticate", 'Digest realm="p", nonce="n0"')))
    answer = credentials.authorize("REGISTER", "sip:prov.test")
    for number in (1, 2):
        stale = f'Digest realm="p", nonce="n{number}", stale=true'
        assert credentials.challenged(response(("WWW-Authenticate", stale)), answer) is None
        answer = credentials.authorize("REGISTER", "sip:prov.test")
    got = credentials.challenged(response(("WWW-Authenticate", 'Digest realm="p", nonce="n3", stale=true')), answer)
    assert got == "provider answered 3 fresh nonces in a row with stale=true for user alice at realm p"


def test_a_preemptive_nonce_refused_is_answered_again_not_a_wrong_password():
    credentials = ClientCredentials("alice", "pw", counter())
    challenge = 'Digest realm="prov", nonce="n1", qop="auth"'
    credentials.challenged(response(("WWW-Authenticate", challenge)))
    credentials.authorize("REGISTER", "sip:prov.test")  # the answer, accepted
    later = credentials.authorize("REGISTER", "sip:prov.test")  # an hour on, pre-emptive
    # The provider forgot n1 and challenges without stale: not a refusal...
    assert credentials.challenged(response(("WWW-Authenticate", challenge)), later) is None
    again = credentials.authorize("REGISTER", "sip:prov.test")
    # ...the same nonce again: its count goes on, and this one is the answer.
    assert fields(again.headers[0][1])["nc"] == "00000003"
    assert again.answered[0].first
    got = credentials.challenged(response(("WWW-Authenticate", challenge)), again)
    assert got == "provider refused the password for user alice at realm prov"


def test_proxy_challenges_and_one_answer_per_realm():
    credentials = ClientCredentials("alice", "pw", counter())
    got = credentials.challenged(
        response(
            ("Proxy-Authenticate", 'Digest realm="edge", nonce="e1", algorithm=SHA-256, qop="auth"'),
            ("Proxy-Authenticate", 'Digest realm="edge", nonce="e1", algorithm=MD5, qop="auth"'),
            ("Proxy-Authenticate", 'Digest realm="core", nonce="c1", qop="auth"'),
            ("WWW-Authenticate", 'Digest realm="uas", nonce="u1", qop="auth"'),
            status=407,
        )
    )
    assert got is None
    sent = credentials.authorize("INVITE", "sip:5551234@prov.test")
    assert [(name, fields(value)["realm"], fields(value)["nonce"]) for name, value in sent.headers] == [
        ("Authorization", "uas", "u1"),
        ("Proxy-Authorization", "edge", "e1"),
        ("Proxy-Authorization", "core", "c1"),
    ]
    assert fields(sent.headers[1][1])["algorithm"] == "SHA-256"
    # One realm refusing is enough to stop.
    refused = response(("Proxy-Authenticate", 'Digest realm="core", nonce="c2"'), status=407)
    got = credentials.challenged(refused, sent)
    assert got == "provider refused the password for user alice at realm core"


def test_the_password_is_never_in_repr():
    credentials = ClientCredentials("alice", "s3cret-pw")
    assert "s3cret" not in repr(credentials)


def test_default_cnonce_is_random():
    credentials = ClientCredentials("alice", "pw")
    credentials.challenged(response(("WWW-Authenticate", 'Digest realm="p", nonce="n", qop="auth"')))
    one, two = (fields(credentials.authorize("OPTIONS", "sip:p").headers[0][1])["cnonce"] for _ in "ab")
    assert one != two and len(one) == 32


# Round trip: our own server side verifies our client's answers.
SECRET, PROVIDER_REALM, TRUNK = "s" * 40, "pbx.test", "192.0.2.9"


@pytest.mark.parametrize("algorithms", [("SHA-256", "MD5"), ("MD5", "SHA-256")])
def test_round_trip_against_our_server(algorithms):
    minter = digest.NonceMinter(SECRET, PROVIDER_REALM, lifetime=300, epoch=b"e" * 6)
    counts = digest.NonceCounts(lifetime=300)
    nonce = minter.mint(1000.0, TRUNK)
    offered = response(
        *[("WWW-Authenticate", v) for v in digest.challenges(PROVIDER_REALM, nonce, "op", False, algorithms)]
    )
    credentials = ClientCredentials("trunk1", "provider-pw", counter())
    assert credentials.challenged(offered) is None
    for number in range(1, 4):  # the answer, then two pre-emptive requests
        sent = credentials.authorize("REGISTER", "sip:pbx.test")
        [(name, value)] = sent.headers
        assert name == "Authorization"
        checked = digest.CheckedCredentials.from_credentials(Credentials.parse(value))
        assert checked.algorithm == algorithms[0] and checked.nc == f"{number:08x}"
        key = ha1("trunk1", PROVIDER_REALM, "provider-pw", checked.algorithm)
        state = minter.check(checked.nonce, 1000.0 + number, TRUNK)
        assert digest.verify(checked, key, "REGISTER", state) is digest.Verdict.OK
        assert counts.accept(checked.nonce, checked.nc, 1000.0 + number)
    # The server with another password for the trunk: WRONG, and its next
    # (non-stale) challenge makes the client give up with the reason.
    wrong = ClientCredentials("trunk1", "not-the-pw", counter())
    wrong.challenged(offered)
    sent = wrong.authorize("REGISTER", "sip:pbx.test")
    checked = digest.CheckedCredentials.from_credentials(Credentials.parse(sent.headers[0][1]))
    key = ha1("trunk1", PROVIDER_REALM, "provider-pw", checked.algorithm)
    verdict = digest.verify(checked, key, "REGISTER", minter.check(checked.nonce, 1001.0, TRUNK))
    assert verdict is digest.Verdict.WRONG
    again = response(
        *[("WWW-Authenticate", v) for v in digest.challenges(PROVIDER_REALM, minter.mint(1001.0, TRUNK), "op", False, algorithms)]
    )
    assert wrong.challenged(again, sent) == "provider refused the password for user trunk1 at realm pbx.test"


def test_round_trip_stale_nonce_from_our_server():
    minter = digest.NonceMinter(SECRET, PROVIDER_REALM, lifetime=300, epoch=b"e" * 6)
    credentials = ClientCredentials("trunk1", "provider-pw", counter())
    old = minter.mint(1000.0, TRUNK)
    credentials.challenged(response(*[("WWW-Authenticate", v) for v in digest.challenges(PROVIDER_REALM, old, "op", False, ("MD5",))]))
    sent = credentials.authorize("REGISTER", "sip:pbx.test")
    checked = digest.CheckedCredentials.from_credentials(Credentials.parse(sent.headers[0][1]))
    key = ha1("trunk1", PROVIDER_REALM, "provider-pw", "MD5")
    state = minter.check(checked.nonce, 2000.0, TRUNK)  # past its lifetime
    assert digest.verify(checked, key, "REGISTER", state) is digest.Verdict.STALE
    fresh = minter.mint(2000.0, TRUNK)
    stale = response(*[("WWW-Authenticate", v) for v in digest.challenges(PROVIDER_REALM, fresh, "op", True, ("MD5",))])
    assert credentials.challenged(stale, sent) is None
    retry = credentials.authorize("REGISTER", "sip:pbx.test")
    checked = digest.CheckedCredentials.from_credentials(Credentials.parse(retry.headers[0][1]))
    assert checked.nonce == fresh and checked.nc == "00000001"
    state = minter.check(checked.nonce, 2000.5, TRUNK)
    assert digest.verify(checked, key, "REGISTER", state) is digest.Verdict.OK
