"""The carrier harness itself (tests/provider/kamailio.py): digest registration seen in
Kamailio's location table, a status set for a number, trusted sources, the log."""

import socket
import time
import uuid

import pytest

from sipd.sip.digest_client import ClientCredentials
from sipd.sip.message import parse
from tests.support import LOOPBACK


class RawUac:
    """A bare UDP client: one request, the final response (our own digest client answers)."""

    def __init__(self, carrier, port=0):
        self.carrier = carrier
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, port))
        self.sock.settimeout(3)
        self.port = self.sock.getsockname()[1]
        self.cseq = 0
        self.call_id = uuid.uuid4().hex

    def close(self):
        self.sock.close()

    def send(self, method, uri, user, extra=()):
        self.cseq += 1
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {LOOPBACK}:{self.port};branch=z9hG4bK{uuid.uuid4().hex};rport",
            f"From: <sip:{user}@{self.carrier.realm}>;tag=t{self.port}",
            f"To: <sip:{user if method == 'REGISTER' else uri[4:].split('@')[0]}"
            f"@{self.carrier.realm}>",
            f"Call-ID: {self.call_id}", f"CSeq: {self.cseq} {method}", "Max-Forwards: 70",
            f"Contact: <sip:{user}@{LOOPBACK}:{self.port}>", *extra, "Content-Length: 0", "", "",
        ]
        self.sock.sendto("\r\n".join(lines).encode(), (LOOPBACK, self.carrier.port))
        while True:
            response = parse(self.sock.recvfrom(65535)[0])
            if response.status >= 200:
                return response

    def authenticated(self, method, uri, user, password, extra=()):
        credentials = ClientCredentials(user, password)
        response = self.send(method, uri, user, extra)
        if response.status in (401, 407):
            assert credentials.challenged(response) is None
            sent = credentials.authorize(method, uri)
            response = self.send(method, uri, user, (*extra, *(f"{n}: {v}" for n, v in sent.headers)))
            if response.status in (401, 407):
                return response, credentials.challenged(response, sent)
        return response, None


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_digest_registration_lands_in_the_location_table(make_carrier, algorithm):
    carrier = make_carrier(algorithm=algorithm)
    carrier.add_subscriber("acme1", "s3cret")
    uac = RawUac(carrier)
    try:
        response, _ = uac.authenticated("REGISTER", f"sip:{carrier.realm}", "acme1", "s3cret",
                                        ("Expires: 120",))
        assert response.status == 200, carrier.log()
        rows = carrier.locations("acme1")
        assert [r["contact"] for r in rows] == [f"sip:acme1@{LOOPBACK}:{uac.port}"]
        assert rows[0]["expires"] == pytest.approx(time.time() + 120, abs=5)
        carrier.set_password("acme1", "changed")
        response, why = uac.authenticated("REGISTER", f"sip:{carrier.realm}", "acme1", "s3cret")
        assert response.status == 401 and "refused the password" in why
        carrier.forbid_wrong_password()
        response, _ = uac.authenticated("REGISTER", f"sip:{carrier.realm}", "acme1", "s3cret")
        assert response.status == 403
    finally:
        uac.close()


def test_answer_trust_and_log(carrier):
    carrier.add_subscriber("acme1", "s3cret")
    carrier.answer("5550100", 503, "Trunk Full")
    uac = RawUac(carrier)
    try:
        uri = f"sip:5550100@{carrier.realm}"
        assert uac.send("INVITE", uri, "acme1").status == 407  # a stranger is challenged
        response, _ = uac.authenticated("INVITE", uri, "acme1", "s3cret")
        assert (response.status, response.reason) == (503, "Trunk Full")
        carrier.trust(LOOPBACK, uac.port)
        assert uac.send("INVITE", uri, "acme1").status == 503  # trusted: no challenge
        carrier.clear_answer("5550100")
        assert uac.send("INVITE", uri, "acme1").status == 404  # nobody has that number
        invites = carrier.requests("INVITE")
        assert invites[-1]["uri"] == uri and invites[-1]["source"] == f"{LOOPBACK}:{uac.port}"
    finally:
        uac.close()


def test_mute_answers_nothing(carrier):
    uac = RawUac(carrier)
    try:
        carrier.mute()
        uac.sock.settimeout(1)
        with pytest.raises(TimeoutError):
            uac.send("OPTIONS", f"sip:{carrier.address}", "ping")
        carrier.mute(False)
        assert uac.send("OPTIONS", f"sip:{carrier.address}", "ping").status == 200
    finally:
        uac.close()
