"""sipd/trunks/registration.py and manager.py: a register trunk registers as a client,
refreshes before expiry, backs off after failures (30/60/120/300, then 600 s forever;
1800 s after 403) and writes TrunkState. The clock is moved, never waited for."""

import pytest

from core import trunks
from core.models import TrunkState
from sipd.sip.message import parse
from sipd.sip.responses import make_response
from sipd.trunks.manager import TrunkManager
from sipd.trunks.registration import BACKOFF, refresh_after, retry_wait

CHALLENGE = ('Digest realm="carrier.test", nonce="n{}", qop="auth", algorithm=MD5')


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now


class Wire:
    """What sipd sent, parsed; send() answers True (or what `up` says)."""

    def __init__(self):
        self.sent = []
        self.up = True

    def __call__(self, data, destination):
        self.sent.append((parse(data), destination))
        return self.up

    def last(self, method="REGISTER"):
        """The last request of `method` sent (the keep-alive's OPTIONS go too)."""
        return [request for request, _ in self.sent if request.method == method][-1]

    def count(self, method="REGISTER"):
        return sum(1 for request, _ in self.sent if request.method == method)


@pytest.fixture
def rig(database):
    clock, wire = Clock(), Wire()
    trunks.create_trunk("acme", "127.0.0.1:5070", username="acme1", password="s3cret",
                        register=True)
    manager = TrunkManager(wire, "127.0.0.1", 5060, clock=clock)
    manager.load()
    return manager, clock, wire


def answer(manager, request, status, headers=None, reason=None):
    response = make_response(request, status, reason, headers)
    assert manager.response(parse(bytes(response)), None)


def state():
    row = TrunkState.get()
    return row.status, row.last_code, row.reason


def register_ok(manager, clock, wire, expires=60):
    manager.tick()
    first = wire.last()
    answer(manager, first, 401, [("WWW-Authenticate", CHALLENGE.format(1))])
    second = wire.last()
    assert second.headers.get("Authorization")
    answer(manager, second, 200, [("Contact", f"<sip:acme1@127.0.0.1:5060>;expires={expires}")])
    return first, second


def test_registers_with_digest_and_refreshes_before_expiry(rig):
    manager, clock, wire = rig
    first, second = register_ok(manager, clock, wire)
    assert first.uri == "sip:127.0.0.1:5070"
    assert first.headers.get("To") == "<sip:acme1@127.0.0.1:5070>"
    assert first.headers.get("Contact") == "<sip:acme1@127.0.0.1:5060>"
    assert "s3cret" not in bytes(second).decode()
    destination = [d for r, d in wire.sent if r.method == "REGISTER"][-1]
    assert (destination.host, destination.port, destination.transport) == (
        "127.0.0.1", 5070, "UDP")
    status, code, _ = state()
    assert (status, code) == ("registered", 200)
    row = TrunkState.get()
    assert row.expires_at == clock.now + 60 and row.contact == "sip:acme1@127.0.0.1:5060"
    assert row.address == "127.0.0.1:5070/udp"
    # Nothing more until the refresh is due (half of 60 s) ...
    count = wire.count()
    clock.now += 29
    manager.tick()
    assert wire.count() == count
    clock.now += 1
    manager.tick()
    refresh = wire.last()
    assert wire.count() == count + 1
    # ... with the same Call-ID, the next CSeq and the cached nonce (no new 401 round).
    assert refresh.headers.get("Call-ID") == second.headers.get("Call-ID")
    assert refresh.headers.get("CSeq") == "3 REGISTER"
    assert 'nc=00000002' in refresh.headers.get("Authorization")


def test_wrong_password_fails_with_the_reason_and_backs_off_forever(rig, caplog):
    manager, clock, wire = rig
    waits = []
    for attempt in range(7):
        manager.tick()
        answer(manager, wire.last(), 401, [("WWW-Authenticate", CHALLENGE.format(attempt))])
        answer(manager, wire.last(), 401, [("WWW-Authenticate", CHALLENGE.format(attempt))])
        status, code, reason = state()
        assert (status, code) == ("failed", 401)
        assert "refused the password for user acme1 at realm carrier.test" in reason
        waits.append(TrunkState.get().next_attempt_at - clock.now)
        count = wire.count()
        clock.now += waits[-1] - 1
        manager.tick()
        assert wire.count() == count  # not before its time
        clock.now += 1
    assert waits == [30, 60, 120, 300, 600, 600, 600]
    assert TrunkState.get().failures == 7
    assert "[TRUNK] acme registration at 127.0.0.1:5070 failed: 401" in caplog.text
    assert "s3cret" not in caplog.text


def test_403_waits_longer_and_a_timeout_names_the_address(rig):
    manager, clock, wire = rig
    manager.tick()
    answer(manager, wire.last(), 403, reason="Forbidden")
    assert state()[:2] == ("failed", 403)
    assert TrunkState.get().next_attempt_at == clock.now + 1800
    clock.now += 1800
    manager.tick()
    for _ in range(400):  # Timer E retransmits, Timer F gives up after 32 s
        clock.now += 0.1
        manager.tick()
    assert wire.count() > 2
    status, code, reason = state()
    assert (status, code, reason) == ("failed", None, "no response from 127.0.0.1:5070/udp")


def test_reload_reads_a_new_password_and_registers_again(rig):
    manager, clock, wire = rig
    manager.tick()
    answer(manager, wire.last(), 401, [("WWW-Authenticate", CHALLENGE.format(1))])
    answer(manager, wire.last(), 401, [("WWW-Authenticate", CHALLENGE.format(1))])
    assert state()[0] == "failed"
    trunks.update_trunk("acme", password="right")
    manager.reload()
    manager.tick()  # at once, not after the back-off
    register_ok(manager, clock, wire)
    assert state()[0] == "registered"
    assert manager.register("acme") and not manager.register("nope")
    manager.tick()
    assert wire.last().headers.get("CSeq").endswith("REGISTER")


def test_423_asks_again_with_min_expires_and_503_honours_retry_after(rig):
    manager, clock, wire = rig
    manager.tick()
    answer(manager, wire.last(), 423, [("Min-Expires", "7200")])
    assert wire.last().headers.get("Expires") == "7200"
    answer(manager, wire.last(), 503, [("Retry-After", "900")])
    assert TrunkState.get().next_attempt_at == clock.now + 900


def test_unresolvable_host_is_a_failure_with_the_reason(database):
    trunks.create_trunk("far", "nowhere.invalid", username="u", password="p", register=True)
    wire = Wire()

    def getaddrinfo(*args):
        raise OSError("Name or service not known")

    manager = TrunkManager(wire, "127.0.0.1", 5060, clock=Clock(), getaddrinfo=getaddrinfo)
    manager.load()
    manager.tick()
    assert wire.count() == 0
    assert state() == ("failed", None, "cannot resolve nowhere.invalid: Name or service not known")


def test_an_ip_trunk_is_not_registered(database):
    trunks.create_trunk("carrier", "127.0.0.1", match="127.0.0.1/32", keepalive_interval=0)
    wire = Wire()
    manager = TrunkManager(wire, "127.0.0.1", 5060, clock=Clock())
    manager.load()
    manager.tick()
    assert wire.sent == [] and state()[0] == "unregistered"


def test_keepalive_marks_a_trunk_down_and_up_and_usable_follows(database, caplog):
    trunks.create_trunk("carrier", "127.0.0.1:5070", match="127.0.0.1/32",
                        keepalive_interval=10)
    clock, wire = Clock(), Wire()
    manager = TrunkManager(wire, "127.0.0.1", 5060, clock=clock)
    manager.load()
    manager.tick()
    probe = wire.last("OPTIONS")
    assert probe.uri == "sip:127.0.0.1:5070" and wire.count("REGISTER") == 0
    answer(manager, probe, 200)
    assert manager.usable("carrier") and TrunkState.get().reachable
    clock.now += 10
    manager.tick()
    assert wire.count("OPTIONS") == 2
    for _ in range(49):  # Timer E resends it; 5 s without an answer is down
        clock.now += 0.1
        manager.tick()
    assert manager.usable("carrier")
    clock.now += 0.2
    manager.tick()
    assert not manager.usable("carrier")
    row = TrunkState.get()
    assert (row.status, row.reachable) == ("down", False)
    assert row.reason == "no answer to OPTIONS from 127.0.0.1:5070/udp"
    assert "[TRUNK] carrier is down: no answer to OPTIONS from 127.0.0.1:5070/udp" in caplog.text
    clock.now += 5
    manager.tick()
    answer(manager, wire.last("OPTIONS"), 404)  # any answer: it is there (§11.2)
    assert manager.usable("carrier") and TrunkState.get().status == "up"
    assert not manager.usable("nope")


def test_a_failed_registration_is_not_usable(rig):
    manager, clock, wire = rig
    assert manager.usable("acme")  # registering
    manager.tick()
    answer(manager, wire.last(), 403, reason="Forbidden")
    assert not manager.usable("acme")


def test_policy_figures():
    assert [retry_wait(n) for n in range(1, 8)] == [*BACKOFF, 600, 600, 600]
    assert retry_wait(1, 403) == 1800
    assert refresh_after(3600) == 3000 and refresh_after(60) == 30


def test_control_commands(rig, tmp_path):
    from sipd.control import ControlServer

    manager, clock, wire = rig
    server = ControlServer(str(tmp_path / "ctl.sock"), None, manager)
    try:
        assert server.execute(b'{"command": "trunk reload"}') == {"ok": True, "registering": 1}
        assert server.execute(b'{"command": "trunk register", "name": "acme"}') == {"ok": True}
        refused = server.execute(b'{"command": "trunk register", "name": "nope"}')
        assert not refused["ok"] and "no register trunk named 'nope'" in refused["error"]
    finally:
        server.close()
