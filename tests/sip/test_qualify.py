"""Dead registrations (issue 15, item 3) against a real sipd and real phones.

Two phones register as 1001, each a process of its own (a raw-socket phone,
tests/sip/rawphone.py, that answers OPTIONS and INVITE). One is killed with
SIGKILL, without unregistering: sipd's OPTIONS probes (PBX_QUALIFY_INTERVAL,
short here) find it unreachable (database and panel), a call to 1001 rings
only the live phone and is answered, and after three silences the binding is
gone. A silent socket takes the dead phone's port, so that what sipd still
sends there is seen: OPTIONS, never the INVITE.

And a phone that comes back from a new port, with the same +sip.instance or
from the same address with the same User-Agent, replaces its old binding.
"""

from __future__ import annotations

import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time

from tests.sip.rawphone import RawPhone, parse
from tests.support import ROOT, Sipd
from tests.web.panel_testing import ADMIN, Rows, make_app

PASSWORD = "qualify-secret-1"
INTERVAL = 3  # s; probes time out after 1.5 s, a dead phone is dropped some 6-9 s after its death


# -- a phone in a process of its own --------------------------------------------------------


def run_phone(port: str, number: str, password: str, user_agent: str) -> None:
    """Register, then answer what comes (OPTIONS 200, INVITE 180/200, BYE 200), printing
    each request's method; runs until killed."""
    phone = Phone(("127.0.0.1", int(port)), number, password, user_agent=user_agent)
    phone.register(expires=300)
    print(f"registered {phone.local[1]}", flush=True)
    while True:
        message = phone.receive(lambda m: m.method is not None, timeout=30)
        if message is None:
            continue
        print(message.method, flush=True)
        if message.method == "INVITE":
            phone.answer(message)
        elif message.method in ("OPTIONS", "BYE"):
            phone.respond(message, 200)


class PhoneProcess:
    def __init__(self, sipd_port: int, user_agent: str, number: str = "1001"):
        code = "import sys; from tests.sip.test_qualify import run_phone; run_phone(*sys.argv[1:])"
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, str(sipd_port), number, PASSWORD, user_agent],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )
        line = self.process.stdout.readline()
        assert line.startswith("registered "), f"phone did not register: {line!r}"
        self.port = int(line.split()[1])

    def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=5)

    def methods(self) -> list[str]:
        """What it received so far (it is stopped first, so the pipe has everything)."""
        self.process.terminate()
        out, _ = self.process.communicate(timeout=5)
        return out.split()


# -- reading sipd's database ------------------------------------------------------------------


def bindings(db_path) -> dict[int, tuple]:
    """source_port -> (contact, unreachable_since, user_agent) of 1001's bindings."""
    with sqlite3.connect(db_path) as conn:
        rows = conn.execute(
            "SELECT b.source_port, b.contact, b.unreachable_since, b.user_agent FROM binding b"
            " JOIN extension e ON e.id = b.extension_id WHERE e.number = '1001'"
        ).fetchall()
    return {row[0]: row[1:] for row in rows}


def wait_for(condition, timeout: float, what: str, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"not within {timeout} s: {what}")


def silent_socket(port: int) -> socket.socket:
    """A socket on the dead phone's port that answers nothing (what sipd sends is seen)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


def received_methods(sock: socket.socket) -> list[str]:
    methods = []
    while True:
        try:
            data = sock.recv(65535)
        except BlockingIOError:
            return methods
        message = parse(data)
        methods.append(message.method or f"response {message.status}")


# -- the tests -----------------------------------------------------------------------------------


def test_a_killed_phone_is_shown_unreachable_not_rung_and_dropped(tmp_path):
    app = make_app(tmp_path)  # the panel, on the database sipd uses
    db_path = tmp_path / "pbx.db"
    from core.models import db

    with db.connection_context():
        Rows().extension("1001", password=PASSWORD)
        Rows().extension("1002", password=PASSWORD)
    with Sipd(db_path, PBX_QUALIFY_INTERVAL=str(INTERVAL), PBX_SIP_WORKERS="1") as sipd:
        # Two programs (two User-Agents: one program twice from one address on a new
        # port would be one phone restarted, which replaces its binding).
        live = PhoneProcess(sipd.port, "Desk phone/1.0")
        dead = PhoneProcess(sipd.port, "Softphone/2.0")
        try:
            assert set(bindings(db_path)) == {live.port, dead.port}
            dead.kill9()
            corpse = silent_socket(dead.port)

            # Within the interval (and the probe's timeout) it is unreachable.
            wait_for(lambda: bindings(db_path)[dead.port][1] is not None, 3 * INTERVAL,
                     "the dead phone's binding marked unreachable")
            assert bindings(db_path)[live.port][1] is None
            client = app.test_client()
            client.post("/login", data={"username": ADMIN[0], "password": ADMIN[1]})
            page = client.get("/registrations/").get_data(as_text=True)
            row = next(r for r in page.split("<tr") if f":{dead.port}<" in r)
            assert "unreachable" in row
            live_row = next(r for r in page.split("<tr") if f":{live.port}<" in r)
            assert "unreachable" not in live_row
            extension_page = client.get("/extensions/1001").get_data(as_text=True)
            assert extension_page.count("unreachable") >= 1

            # A call to 1001 rings only the live phone, which answers.
            caller = RawPhone(("127.0.0.1", sipd.port), "1002", PASSWORD)
            final, dialog = caller.call("1001")
            assert final.status == 200, final.start
            assert caller.in_dialog(dialog, "BYE").status == 200
            caller.close()

            # After three silences in a row the binding is gone, with a log line.
            wait_for(lambda: dead.port not in bindings(db_path), 4 * INTERVAL,
                     "the dead phone's binding dropped")
            assert live.port in bindings(db_path)
            assert bindings(db_path)[live.port][1] is None
            wait_for(lambda: "dropped: no answer to OPTIONS 3 times" in sipd.log(), 5,
                     "the drop logged")
            seen = received_methods(corpse)
            corpse.close()
            assert "OPTIONS" in seen and "INVITE" not in seen, seen
        finally:
            dead.kill9() if dead.process.poll() is None else None
            methods = live.methods()
    assert "INVITE" in methods and "OPTIONS" in methods, methods


class Phone(RawPhone):
    """A RawPhone with a User-Agent of its own and, if given, a +sip.instance."""

    def __init__(self, *args, user_agent: str, instance: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.user_agent, self.instance = user_agent, instance

    def contact(self) -> str:
        contact = super().contact()
        return contact + (f';+sip.instance="<{self.instance}>"' if self.instance else "")

    def build(self, *args, **kwargs) -> str:
        return super().build(*args, **kwargs).replace(
            "User-Agent: rawphone-test", f"User-Agent: {self.user_agent}")


def test_a_phone_back_from_a_new_port_replaces_its_binding(tmp_path):
    db_path = tmp_path / "pbx.db"
    from tests.support import database_with

    database_with(db_path, ["1001"], PASSWORD)
    # Long enough that no binding here is dropped by the regular probes (3 silences).
    with Sipd(db_path, PBX_QUALIFY_INTERVAL="8", PBX_SIP_WORKERS="1") as sipd:
        server = ("127.0.0.1", sipd.port)

        def restart(**kwargs) -> Phone:
            phone = Phone(server, "1001", PASSWORD, **kwargs)
            phone.register()
            phone.close()  # "crashed": no unregistration
            return phone

        # The same +sip.instance (RFC 5626 §4.2, RFC 5627 §3.2), whatever its User-Agent:
        # replaced by the REGISTER itself.
        instance = f"urn:uuid:{secrets.token_hex(16)}"
        first = restart(user_agent="Linphone/5.2", instance=instance)
        second = restart(user_agent="Linphone/5.2.1", instance=instance)
        assert set(bindings(db_path)) == {second.local[1]}
        assert first.local[1] != second.local[1]

        # No instance, the same address and User-Agent, a new boot (Call-ID): the earlier
        # binding is probed at once and, silent, dropped within seconds (not minutes).
        third = restart(user_agent="MicroSIP/3.21.3")
        fourth = restart(user_agent="MicroSIP/3.21.3")
        assert third.local[1] != fourth.local[1]
        wait_for(lambda: set(bindings(db_path)) == {second.local[1], fourth.local[1]}, 12,
                 "the restarted phone's earlier binding dropped")
        assert "dropped: replaced by the same phone's new one" in sipd.log()

        # Two live phones of one program on one address look the same: the earlier
        # answers its probe and both stay.
        twin = PhoneProcess(sipd.port, "Twin/1.0")
        other_twin = PhoneProcess(sipd.port, "Twin/1.0")
        try:
            wait_for(lambda: "kept beside the new one" in sipd.log(), 12,
                     "the live twin's binding kept")
            assert {twin.port, other_twin.port} <= set(bindings(db_path))
        finally:
            twin.methods(), other_twin.methods()

        # Another program on the same address is another phone: not even suspected.
        fifth = restart(user_agent="Zoiper rv2.10")
        assert fifth.local[1] in bindings(db_path)
        assert f"of the phone at 127.0.0.1:{fifth.local[1]} " not in sipd.log()
        assert f"of the phone at 127.0.0.1:{fourth.local[1]} (MicroSIP/3.21.3)" in sipd.log()


def test_any_answer_even_405_keeps_a_binding_reachable(tmp_path):
    db_path = tmp_path / "pbx.db"
    from tests.support import database_with

    database_with(db_path, ["1001"], PASSWORD)
    with Sipd(db_path, PBX_QUALIFY_INTERVAL="1", PBX_SIP_WORKERS="0") as sipd:
        phone = RawPhone(("127.0.0.1", sipd.port), "1001", PASSWORD)
        phone.register()
        # More probes than it takes to drop a silent phone (3), each refused.
        for _ in range(4):
            options = phone.request_received("OPTIONS", timeout=5)
            assert options is not None, "no OPTIONS probe within 5 s"
            assert options.get("CSeq") == "1 OPTIONS"
            phone.respond(options, 405)
        assert bindings(db_path)[phone.local[1]][1] is None
        phone.close()
    assert "unreachable" not in sipd.log()


def test_pbxctl_drops_a_registration_of_a_running_sipd(tmp_path):
    db_path = tmp_path / "pbx.db"
    from tests.support import base_env, database_with

    database_with(db_path, ["1001", "1002"], PASSWORD)
    with Sipd(db_path, PBX_QUALIFY_INTERVAL="0", PBX_SIP_WORKERS="0") as sipd:
        phone = RawPhone(("127.0.0.1", sipd.port), "1001", PASSWORD)
        phone.register()
        contact = bindings(db_path)[phone.local[1]][0]
        done = subprocess.run([sys.executable, str(ROOT / "pbxcli.py"), "reg", "rm", "1001",
                               "--contact", contact],
                              env=base_env(str(db_path)), capture_output=True, text=True,
                              timeout=30)
        assert done.returncode == 0, done.stderr
        assert f"Registration of 1001 dropped: {contact}" in done.stdout
        assert bindings(db_path) == {}
        # sipd reads the bindings for every call: nothing rings any more.
        caller = RawPhone(("127.0.0.1", sipd.port), "1002", PASSWORD)
        final, _ = caller.call("1001")
        assert final.status == 480
        assert phone.request_received("INVITE", timeout=0.5) is None
        caller.close()
        phone.close()


def test_tcp_probes_go_on_the_phones_connection_and_fail_once_it_closed(tmp_path):
    db_path = tmp_path / "pbx.db"
    from tests.support import database_with

    database_with(db_path, ["1001"], PASSWORD)
    with Sipd(db_path, PBX_QUALIFY_INTERVAL="1", PBX_SIP_WORKERS="0") as sipd:
        phone = RawPhone(("127.0.0.1", sipd.port), "1001", PASSWORD, transport="TCP")
        phone.register()
        port = phone.local[1]
        # On the connection it registered on, answered: reachable.
        for _ in range(2):
            options = phone.request_received("OPTIONS", timeout=5)
            assert options is not None, "no OPTIONS on the phone's TCP connection"
            assert options.get("Via").startswith("SIP/2.0/TCP ")
            phone.respond(options, 200)
        assert bindings(db_path)[port][1] is None
        phone.close()  # gone without unregistering: no connection to send the next probe on
        wait_for(lambda: bindings(db_path).get(port, (None, None))[1] is not None
                 or port not in bindings(db_path), 5, "the closed TCP phone marked unreachable")
        wait_for(lambda: port not in bindings(db_path), 10, "the closed TCP phone dropped")
        assert "no TCP connection" in sipd.log()
