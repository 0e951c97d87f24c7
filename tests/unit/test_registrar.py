"""REGISTER end to end through the handler, on a real SQLite database, with a moved clock.

No sockets: bytes in, responses out, as the transports would see them.
"""

import itertools
import re
import sqlite3

import pytest

from core import accounts
from core.credentials import ha1
from core.models import AuthAttempt, Binding
from sipd import dblock
from sipd.handler import Handler
from sipd.registrar import Registrar, Source
from sipd.sip.digest import NonceMinter, expected_response
from sipd.sip.message import parse
from sipd.sip.registration import Policy

REALM = "pbx.test"
PASSWORD = "right-password1"


class Clock:
    def __init__(self):
        self.now = 1_800_000_000.0

    def __call__(self):
        return self.now


class Phone:
    """Just enough of a UA to drive the registrar: it signs what it sends."""

    branches = itertools.count(1)

    def __init__(
        self, handler, number="1002", password=PASSWORD, port=5062, call_id=None, host="192.0.2.7"
    ):
        self.handler, self.number, self.password = handler, number, password
        self.source = Source(host, port, "UDP")
        self.call_id = call_id or f"cid-{number}-{port}"
        self.cseq = 0
        self.nc = 0

    def send(self, contact=None, expires=None, auth=None, extra="", uri=None):
        self.cseq += 1
        lines = [
            f"REGISTER {uri or 'sip:' + REALM} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.source.host}:{self.source.port};"
            f"branch=z9hG4bK{next(self.branches)};rport",
            f"From: <sip:{self.number}@{REALM}>;tag=t{self.cseq}",
            f"To: <sip:{self.number}@{REALM}>",
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.cseq} REGISTER",
            "Max-Forwards: 70",
            "User-Agent: TestPhone/1.0",
        ]
        if contact is not False:
            lines.append(
                f"Contact: {contact or f'<sip:{self.number}@{self.source.host}:{self.source.port}>'}"
            )
        if expires is not None:
            lines.append(f"Expires: {expires}")
        if auth:
            lines.append(f"Authorization: {auth}")
        if extra:
            lines.append(extra)
        data = ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()
        out = self.handler.handle(data, self.source)
        assert len(out) == 1
        return parse(out[0].data)

    def authorization(self, challenge_response, algorithm="MD5", password=None, nc=None, uri=None):
        header = next(
            v
            for v in challenge_response.headers.get_all("WWW-Authenticate")
            if f"algorithm={algorithm}" in v
        )
        nonce = re.search(r'nonce="([^"]+)"', header).group(1)
        self.nc += 1
        count = nc or f"{self.nc:08x}"
        uri = uri or f"sip:{REALM}"
        key = ha1(self.number, REALM, password or self.password, algorithm)
        response = expected_response(algorithm, key, nonce, "REGISTER", uri, "auth", count, "cn")
        return (
            f'Digest username="{self.number}", realm="{REALM}", nonce="{nonce}", '
            f'uri="{uri}", response="{response}", algorithm={algorithm}, cnonce="cn", '
            f"nc={count}, qop=auth"
        )

    def register(self, expires=300, contact=None, algorithm="MD5", password=None):
        challenge = self.send(contact=contact, expires=expires)
        assert challenge.status == 401
        auth = self.authorization(challenge, algorithm, password)
        return self.send(contact=contact, expires=expires, auth=auth)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def handler(database, clock):
    accounts.create_extension("1002", REALM, password=PASSWORD)
    accounts.create_extension("1003", REALM, password=PASSWORD)
    minter = NonceMinter("k" * 40, REALM, 300)
    registrar = Registrar(REALM, minter, Policy(max_contacts=3), clock=clock)
    return Handler(registrar, clock=clock)


def live_contacts(number="1002"):
    return sorted(
        b.contact
        for b in Binding.select()
        .join_from(Binding, Binding.extension.rel_model)
        .where(Binding.extension.rel_model.number == number)
    )


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_register_with_digest(handler, algorithm):
    if algorithm != "MD5":  # offered to an extension that chose it (tests/unit/test_digest_offer.py)
        accounts.set_digest_algorithms("1002", f"{algorithm},MD5")
    phone = Phone(handler)
    ok = phone.register(algorithm=algorithm)
    assert ok.status == 200
    assert ok.headers.get_all("Contact") == ["<sip:1002@192.0.2.7:5062>;expires=300"]
    assert ok.headers.get("Date")
    binding = Binding.get()
    assert (binding.source_host, binding.source_port, binding.transport) == (
        "192.0.2.7",
        5062,
        "UDP",
    )
    assert binding.user_agent == "TestPhone/1.0"
    assert binding.aor == "sip:1002@pbx.test"
    attempt = AuthAttempt.get()
    assert (attempt.number, attempt.result, attempt.reason) == ("1002", "success", "registered")


def test_wrong_password_is_403_and_recorded(handler):
    phone = Phone(handler)
    assert phone.register(password="wrong-password").status == 403
    attempt = AuthAttempt.get()
    assert (attempt.result, attempt.reason) == ("failure", "wrong password")
    assert Binding.select().count() == 0


def _shape(response):
    """What an observer sees of a 401: status, header names, challenge without nonce."""
    names = [name for name, _ in response.headers.items if name not in ("Via",)]
    challenges = [
        re.sub(r'nonce="[^"]+"', "nonce", v) for v in response.headers.get_all("WWW-Authenticate")
    ]
    return response.status, response.reason, names, challenges


def test_unknown_extension_looks_like_a_known_one(handler):
    known = Phone(handler, number="1002", port=6001)
    unknown = Phone(handler, number="7777", port=6002)
    assert _shape(known.send()) == _shape(unknown.send())
    # With credentials: the same 403 for an unknown number and a wrong password.
    wrong = known.register(password="wrong-password")
    nobody = unknown.register()
    assert (wrong.status, wrong.reason) == (nobody.status, nobody.reason) == (403, "Forbidden")
    reasons = {a.number: a.reason for a in AuthAttempt.select()}
    assert reasons == {"1002": "wrong password", "7777": "unknown extension"}


def test_disabled_extension_is_refused_with_its_reason(handler):
    accounts.update_extension("1002", enabled=False)
    assert Phone(handler).register().status == 403
    assert AuthAttempt.get().reason == "extension disabled"


def test_password_change_applies_to_the_next_request(handler):
    phone = Phone(handler)
    assert phone.register().status == 200
    accounts.set_password("1002", REALM, password="a-new-password2")
    assert phone.register().status == 403
    assert phone.register(password="a-new-password2").status == 200


def test_stale_nonce_gets_stale_true_then_registers(handler, clock):
    phone = Phone(handler)
    challenge = phone.send(expires=300)
    clock.now += 301
    stale = phone.send(expires=300, auth=phone.authorization(challenge))
    assert stale.status == 401
    assert all("stale=true" in v for v in stale.headers.get_all("WWW-Authenticate"))
    assert phone.send(expires=300, auth=phone.authorization(stale)).status == 200


def test_nonce_count_replay_is_refused(handler):
    phone = Phone(handler)
    challenge = phone.send(expires=300)
    auth = phone.authorization(challenge, nc="00000001")
    assert phone.send(expires=300, auth=auth).status == 200
    replay = phone.send(expires=300, auth=auth)
    assert replay.status == 401
    assert AuthAttempt.select().where(AuthAttempt.result == "failure").get().reason == (
        "nonce count reused"
    )
    # The next count on the same nonce is fine (RFC 7616 §3.4: nc increments).
    assert phone.send(expires=300, auth=phone.authorization(challenge, nc="00000002")).status == 200


def test_auth_user_must_match_the_aor(handler):
    phone = Phone(handler, number="1002")
    challenge = phone.send()
    other = Phone(handler, number="1003")
    auth = other.authorization(challenge)  # 1003's valid credentials...
    response = phone.send(auth=auth)  # ...for 1002's AOR
    assert response.status == 403
    assert "does not match extension 1002" in AuthAttempt.get().reason


def test_digest_uri_must_be_the_request_uri(handler):
    phone = Phone(handler)
    challenge = phone.send()
    response = phone.send(auth=phone.authorization(challenge, uri="sip:elsewhere.test"))
    assert response.status == 400


def test_interval_too_brief(handler):
    phone = Phone(handler)
    response = phone.register(expires=10)
    assert (response.status, response.headers.get("Min-Expires")) == (423, "60")
    assert Binding.select().count() == 0


def test_expires_is_capped_and_contact_param_wins(handler):
    phone = Phone(handler)
    response = phone.register(expires=99999)
    assert response.headers.get("Contact").endswith(";expires=3600")
    response = phone.register(expires=600, contact="<sip:1002@192.0.2.7:5062>;expires=120")
    assert response.headers.get("Contact").endswith(";expires=120")


def test_refresh_unregister_and_query(handler, clock):
    phone = Phone(handler)
    phone.register()
    clock.now += 100
    refreshed = phone.register(expires=300)
    assert refreshed.headers.get_all("Contact") == ["<sip:1002@192.0.2.7:5062>;expires=300"]
    assert Binding.select().count() == 1
    query = phone.send(contact=False, auth=phone.authorization(phone.send(contact=False)))
    assert query.status == 200 and len(query.headers.get_all("Contact")) == 1
    gone = phone.register(expires=0)
    assert gone.status == 200 and gone.headers.get_all("Contact") == []
    assert Binding.select().count() == 0


def test_wildcard_removes_all(handler):
    first = Phone(handler, port=6001, call_id="a")
    second = Phone(handler, port=6002, call_id="b")
    first.register()
    second.register()
    assert Binding.select().count() == 2
    assert first.register(expires=0, contact="*").status == 200
    assert Binding.select().count() == 0


def test_wildcard_needs_expires_zero(handler):
    assert Phone(handler).register(expires=300, contact="*").status == 400


def test_several_contacts_up_to_the_maximum_oldest_replaced(handler, clock):
    for port in (6001, 6002, 6003, 6004):
        clock.now += 1
        assert Phone(handler, port=port, call_id=f"c{port}").register().status == 200
    assert live_contacts() == [f"sip:1002@192.0.2.7:{p}" for p in (6002, 6003, 6004)]


def test_out_of_order_cseq_on_the_same_call_id(handler):
    phone = Phone(handler)
    phone.register()
    phone.cseq = 0  # a retransmission-looking request with a lower CSeq
    challenge = phone.send()
    phone.cseq = 1
    response = phone.send(auth=phone.authorization(challenge))
    assert response.status == 500


def test_same_instance_replaces_its_old_contact(handler):
    instance = '+sip.instance="<urn:uuid:11111111-2222-3333-4444-555555555555>"'
    Phone(handler, port=6001, call_id="x").register(contact=f"<sip:1002@192.0.2.7:6001>;{instance}")
    Phone(handler, port=6009, call_id="y").register(contact=f"<sip:1002@192.0.2.7:6009>;{instance}")
    assert live_contacts() == ["sip:1002@192.0.2.7:6009"]


def test_unsupported_require_is_420(handler):
    response = Phone(handler).send(extra="Require: foo")
    assert (response.status, response.headers.get("Unsupported")) == (420, "foo")


def test_retransmitted_register_gets_the_same_answer(handler):
    """With credentials: a transaction, and its answer again (§17.2.2)."""
    phone = Phone(handler)
    challenge = phone.send()
    auth = phone.authorization(challenge)
    data = (
        b"REGISTER sip:pbx.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bKsame\r\n"
        b"From: <sip:1002@pbx.test>;tag=1\r\nTo: <sip:1002@pbx.test>\r\nCall-ID: r\r\n"
        b"CSeq: 1 REGISTER\r\nContact: <sip:1002@192.0.2.7:5062>\r\n"
        + f"Authorization: {auth}\r\nContent-Length: 0\r\n\r\n".encode()
    )
    first = handler.handle(data, phone.source)[0].data
    again = handler.handle(data, phone.source)[0].data
    assert first.startswith(b"SIP/2.0 200 ")
    # Answered from the transaction: a second handling would have failed on the
    # nonce count (a replay) or the CSeq (§10.3 step 7) instead.
    assert first == again
    assert len(handler.transactions) == 1


def test_a_register_without_credentials_is_challenged_statelessly(handler):
    """§8.2.7: no transaction for what only gets a challenge; a retransmission
    gets a fresh challenge with the same To tag, and both nonces are good."""
    phone = Phone(handler)
    data = (
        b"REGISTER sip:pbx.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bKsame\r\n"
        b"From: <sip:1002@pbx.test>;tag=1\r\nTo: <sip:1002@pbx.test>\r\nCall-ID: r\r\n"
        b"CSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"
    )
    first, again = (parse(handler.handle(data, phone.source)[0].data) for _ in range(2))
    assert first.status == again.status == 401
    assert first.headers.get("To") == again.headers.get("To")
    assert first.headers.get("WWW-Authenticate") != again.headers.get("WWW-Authenticate")
    assert len(handler.transactions) == 0
    for challenge in (first, again):
        assert phone.send(auth=phone.authorization(challenge)).status == 200


@pytest.mark.parametrize(
    ("data", "status", "reason"),
    [
        (
            b"REGISTER sip:pbx.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7;branch=z9hG4bKa\r\n"
            b"From: <sip:1@p>;tag=1\r\nTo: <sip:1@p>\r\nCSeq: 1 REGISTER\r\n\r\n",
            400,
            "Bad Request: missing Call-ID header",
        ),
        (
            b"REGISTER sip:pbx.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7;branch=z9hG4bKb\r\n"
            b"From: <sip:1@p>;tag=1\r\nTo: <sip:1@p>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\r\n",
            400,
            "Bad Request: CSeq method does not match the request method",
        ),
        # RFC 4475 §3.3.8 (multi01): two Call-IDs
        (
            b"REGISTER sip:pbx.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7;branch=z9hG4bKc\r\n"
            b"From: <sip:1@p>;tag=1\r\nTo: <sip:1@p>\r\nCall-ID: x\r\nCall-ID: y\r\n"
            b"CSeq: 1 REGISTER\r\n\r\n",
            400,
            "Bad Request: more than one Call-ID header",
        ),
        # RFC 4475 §3.3.2 (unkscm): unknown Request-URI scheme
        (
            b"OPTIONS nobodyknowsthisscheme:totallyopaquecontent SIP/2.0\r\n"
            b"Via: SIP/2.0/UDP 192.0.2.7;branch=z9hG4bKd\r\nFrom: <sip:1@p>;tag=1\r\n"
            b"To: <sip:1@p>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n",
            416,
            "Unsupported URI Scheme",
        ),
        (
            b"INVITE sip:1003@pbx.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7;branch=z9hG4bKe\r\n"
            b"From: <sip:1@p>;tag=1\r\nTo: <sip:1@p>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\r\n",
            405,
            "Method Not Allowed",
        ),
        (
            b"FOO sip:pbx.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7;branch=z9hG4bKf\r\n"
            b"From: <sip:1@p>;tag=1\r\nTo: <sip:1@p>\r\nCall-ID: x\r\nCSeq: 1 FOO\r\n\r\n",
            501,
            "Not Implemented",
        ),
        (
            b"OPTIONS sip:pbx.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7;branch=z9hG4bKg\r\n"
            b"From: <sip:1@p>;tag=1\r\nTo: <sip:1@p>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n",
            200,
            "OK",
        ),
    ],
)
def test_bad_and_other_requests(handler, data, status, reason):
    out = handler.handle(data, Source("192.0.2.7", 5062, "UDP"))
    response = parse(out[0].data)
    assert (response.status, response.reason) == (status, reason)
    # §18.2.2: no rport in the request, so the answer goes to the sent-by port.
    assert out[0].destination == ("192.0.2.7", 5060)


def test_rport_and_received(handler):
    # RFC 3581 §4: rport filled with the source port, received with the source address,
    # and the response goes back where the request came from (the NAT mapping).
    phone = Phone(handler, host="198.51.100.9", port=40123)
    data = (
        b"OPTIONS sip:pbx.test SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKn;rport\r\n"
        b"From: <sip:1@p>;tag=1\r\nTo: <sip:1@p>\r\nCall-ID: n\r\nCSeq: 1 OPTIONS\r\n\r\n"
    )
    out = handler.handle(data, phone.source)[0]
    assert out.destination == ("198.51.100.9", 40123)
    via = parse(out.data).headers.get("Via")
    assert "rport=40123" in via and "received=198.51.100.9" in via


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\r\n\r\n",
        b"\xff" * 100,
        b"SIP/2.0 200 OK\r\n\r\n",
        b"REGISTER sip:x SIP/2.0\r\n\r\n",
        b"REGISTER sip:x SIP/2.0\r\nVia: garbage\r\nFrom: a\r\nTo: b\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n\r\n",
    ],
)
def test_garbage_is_dropped_without_an_answer(handler, data):
    assert handler.handle(data, Source("192.0.2.7", 5062, "UDP")) == []


def test_a_batch_whose_commit_fails_answers_nothing_and_forgets_its_transactions(
    handler, database, settings, monkeypatch
):
    """Group commit (sipd/store.py): a 200 leaves only once its binding is on disk.

    Another connection holds SQLite's write lock, so the batch cannot commit: the
    batch raises (the UDP listener then sends none of its answers), and the same
    REGISTER sent again (a retransmission, same branch) is handled afresh rather
    than answered from the transaction's memory with a 200 for a binding that is
    not there. Its nonce count was spent, so it is challenged again (stale=true,
    which phones answer at once), and that answer registers.
    """
    phone = Phone(handler)
    challenge = phone.send(expires=300)
    auth = phone.authorization(challenge)
    phone.cseq += 1
    data = (
        f"REGISTER sip:{REALM} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {phone.source.host}:{phone.source.port};branch=z9hG4bKbatch;rport\r\n"
        f"From: <sip:1002@{REALM}>;tag=t\r\nTo: <sip:1002@{REALM}>\r\n"
        f"Call-ID: {phone.call_id}\r\nCSeq: {phone.cseq} REGISTER\r\nMax-Forwards: 70\r\n"
        f"Contact: <sip:1002@{phone.source.host}:{phone.source.port}>\r\nExpires: 300\r\n"
        f"Authorization: {auth}\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    # As sipd: no wait inside SQLite, and a short one on the loop (sipd/dblock.py).
    database.execute_sql("PRAGMA busy_timeout = 0")
    monkeypatch.setattr(dblock, "_wait", 0.1)
    blocker = sqlite3.connect(settings.db_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    answers = []
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            with handler.batch():
                answers.append(handler.handle(data, phone.source))
        assert answers and parse(answers[0][0].data).status == 200  # built, never sent
        assert live_contacts() == []
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    with handler.batch():
        again = parse(handler.handle(data, phone.source)[0].data)
    assert again.status == 401
    assert "stale=true" in again.headers.get("WWW-Authenticate")
    assert live_contacts() == []
    with handler.batch():
        assert phone.send(expires=300, auth=phone.authorization(again)).status == 200
    assert live_contacts() == [f"sip:1002@{phone.source.host}:{phone.source.port}"]


def test_each_numbers_history_is_bounded_as_it_is_written(database, monkeypatch):
    from sipd import store

    monkeypatch.setattr(store, "TRIM_EVERY", 1)  # trim at every write, to count exactly
    monkeypatch.setattr(store, "AUTH_HISTORY_PER_NUMBER", 20)
    for i in range(30):
        store.record_attempt(1000.0 + i, "1002", "REGISTER", "192.0.2.7", 5060, "UDP", "ua",
                             "failure", f"try {i}")
    store.record_attempt(1000.0, "1003", "REGISTER", "192.0.2.7", 5060, "UDP", "ua",
                         "success", "registered")
    kept = [a.reason for a in AuthAttempt.select().where(AuthAttempt.number == "1002")
            .order_by(AuthAttempt.id)]
    assert kept == [f"try {i}" for i in range(10, 30)]  # the newest 20
    assert AuthAttempt.select().where(AuthAttempt.number == "1003").count() == 1
