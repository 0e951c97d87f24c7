"""The B2BUA (sipd.b2bua) in-process, for the unit tests that drive it: the real
Handler, registrar, SQLite database and call history (sipd.history on the
test's own file), the phones' messages written out here, the media relay
replaced by a stand-in that only hands out ports, and every timer on a
scheduler whose clock the test moves (nothing sleeps).
"""

from __future__ import annotations

import re
import sqlite3
import time
from dataclasses import dataclass, field

from core.config import load_settings
from core.credentials import ha1
from sipd.b2bua import Calls
from sipd.b2bua.scheduler import Scheduler
from sipd.daemon import Registration
from sipd.history import History
from sipd.media import LegPorts, MediaSession
from sipd.registrar import Source
from sipd.sip.digest import expected_response
from tests.support import database_with

REALM = "pbx.test"
PASSWORD = "Correct-Horse-42"
CALLER = Source("127.0.0.1", 5061, "UDP")
CALLEE = Source("127.0.0.1", 5070, "UDP")
SDP = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       "m=audio 6000 RTP/AVP 0\r\na=sendrecv\r\n")


class PortsOnly:
    """The relay's API as the B2BUA uses it, without a relay process."""

    address = "127.0.0.1"

    def __init__(self):
        self.opened = 0
        self.closed = 0

    def open_session(self, call_id, stream=None, source=None):
        self.opened += 1
        return MediaSession(self.opened, call_id, {"A": LegPorts("A", 10000, 10001),
                                                   "B": LegPorts("B", 10002, 10003)})

    def apply_stream(self, session, leg, stream, source=None):
        pass

    def close_session(self, session, wait=True):
        self.closed += 1
        return None


class Clock:
    """The one clock of a test: the B2BUA's, its scheduler's, the transactions'."""

    def __init__(self):
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class Writes:
    """Stands for gevent.spawn_later in the History: the test decides when the
    queued rows are written (`Pbx.rows()` writes them first)."""

    def __init__(self):
        self.waiting = []

    def __call__(self, seconds, function, *args):
        self.waiting.append((function, args))


@dataclass
class Pbx:
    stack: Registration
    calls: Calls
    clock: Clock
    scheduler: Scheduler
    history: History
    db_path: str
    sent: list[bytes] = field(default_factory=list)

    def handle(self, data: str, source: Source = CALLER) -> None:
        for out in self.stack.handler.handle(data.encode(), source):
            self.sent.append(out.data)

    def advance(self, seconds: float) -> None:
        """Time passes: the scheduler's timers, then the transactions' (as the daemon's tick)."""
        self.scheduler.advance(seconds)
        self.stack.handler.tick()

    def rows(self, table: str = "call") -> list[dict]:
        assert self.history.flush()
        with sqlite3.connect(self.db_path) as connection:
            connection.row_factory = sqlite3.Row
            return [dict(r) for r in connection.execute(f"SELECT * FROM {table} ORDER BY id")]

    def row(self, row_id: int) -> dict:
        (found,) = [r for r in self.rows() if r["id"] == row_id]
        return found


def make_pbx(tmp_path, numbers=("1001", "1002"), **options) -> Pbx:
    path = database_with(tmp_path / "pbx.db", list(numbers), PASSWORD, REALM)
    settings = load_settings({"PBX_DB": str(path), "PBX_REALM": REALM,
                              "PBX_SECRET_KEY": "k" * 48, "PBX_DIGEST_ALGORITHMS": "MD5"})
    stack = Registration(settings)
    clock = Clock()
    stack.handler.clock = clock
    scheduler = Scheduler(clock)
    history = History(Writes())
    sent: list[bytes] = []
    stack.handler.send = lambda data, destination: sent.append(data)
    options.setdefault("relay", PortsOnly())
    relay = options.pop("relay")
    calls = Calls(stack.registrar, relay, stack.handler.send, stack.handler.respond,
                  "127.0.0.1", 5060, REALM, history=history, clock=clock, scheduler=scheduler,
                  **options)
    stack.handler.calls = calls
    return Pbx(stack, calls, clock, scheduler, history, str(path), sent)


# --- the phones' messages --------------------------------------------------------------------

def digest(number: str, method: str, challenge: bytes, header: str) -> str:
    nonce = re.search(rb'nonce="([^"]+)"', challenge).group(1).decode()
    key = ha1(number, REALM, PASSWORD, "MD5")
    response = expected_response("MD5", key, nonce, method, "sip:127.0.0.1:5060", "auth",
                                 "00000001", "c0ffee")
    return (f'{header}: Digest username="{number}",realm="{REALM}",nonce="{nonce}",'
            f'uri="sip:127.0.0.1:5060",response="{response}",algorithm=MD5,qop=auth,'
            f'nc=00000001,cnonce="c0ffee"\r\n')


def request(method, cseq, branch, extra="", body="", to_tag="", call_id="c1@test",
            number="1001", source=CALLER, target="1002"):
    return (f"{method} sip:{target}@127.0.0.1:5060 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {source.host}:{source.port};branch=z9hG4bK{branch};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:{number}@127.0.0.1>;tag=from-{number}\r\n"
            f"To: <sip:{target}@127.0.0.1>{to_tag}\r\nCall-ID: {call_id}\r\n"
            f"CSeq: {cseq} {method}\r\nContact: <sip:{number}@{source.host}:{source.port}>\r\n"
            + extra + ("Content-Type: application/sdp\r\n" if body else "")
            + f"Content-Length: {len(body)}\r\n\r\n{body}")


def answer(to: bytes, status: str, body: str = "", tag: str = "callee",
           contact: Source = CALLEE, user: str = "1002") -> str:
    """The callee's response to one of our requests (its Via, From, To, Call-ID, CSeq)."""
    head = to.split(b"\r\n\r\n")[0].decode()

    def value(name):
        return re.search(rf"\r\n{name}: ([^\r]*)", head).group(1)

    vias = "".join(f"Via: {v}\r\n" for v in re.findall(r"\r\nVia: ([^\r]*)", head))
    to_tag = "" if ";tag=" in value("To") else f";tag={tag}"
    return (f"SIP/2.0 {status}\r\n{vias}From: {value('From')}\r\nTo: {value('To')}{to_tag}\r\n"
            f"Call-ID: {value('Call-ID')}\r\nCSeq: {value('CSeq')}\r\n"
            f"Contact: <sip:{user}@{contact.host}:{contact.port}>\r\n"
            + ("Content-Type: application/sdp\r\n" if body else "")
            + f"Content-Length: {len(body)}\r\n\r\n{body}")


def header(message: bytes, name: str) -> str | None:
    """The value of a message's first `name` header (None: none)."""
    found = re.search(rb"\r\n" + name.encode() + rb": ([^\r]*)", message)
    return found.group(1).decode() if found else None


def last(sent: list[bytes], start: bytes) -> bytes:
    return [data for data in sent if data.startswith(start)][-1]


def tag_of(message: bytes, header: bytes) -> str:
    return re.search(rb"\r\n" + header + rb": [^\r]*;tag=([^\r;]*)", message).group(1).decode()


def register(pbx_or_handle, sent, number: str = "1002", phone: Source = CALLEE) -> None:
    """REGISTER `number` from `phone` with digest."""
    handle = pbx_or_handle.handle if isinstance(pbx_or_handle, Pbx) else pbx_or_handle
    register = (f"REGISTER sip:127.0.0.1:5060 SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {phone.host}:{phone.port};branch=z9hG4bKr{number}{{n}};rport\r\n"
                f"Max-Forwards: 70\r\nFrom: <sip:{number}@127.0.0.1>;tag=r\r\n"
                f"To: <sip:{number}@127.0.0.1>\r\nCall-ID: reg-{number}-{phone.port}@test\r\n"
                "CSeq: {n} REGISTER\r\n"
                f"Contact: <sip:{number}@{phone.host}:{phone.port}>\r\n{{auth}}Expires: 3600\r\n"
                "Content-Length: 0\r\n\r\n")
    handle(register.format(n=1, auth=""), phone)
    handle(register.format(n=2, auth=digest(number, "REGISTER", sent[-1], "Authorization")),
           phone)
    assert sent[-1].startswith(b"SIP/2.0 200"), sent[-1]


def register_callee(handle, sent) -> None:
    register(handle, sent)


def invite(pbx: Pbx, call_id="c1@test", branch="x", number="1001", source=CALLER,
           target="1002", body=SDP, extra="") -> None:
    """A caller's INVITE, challenged (407) and sent again with its credentials
    (`extra`: more header lines for both)."""
    pbx.handle(request("INVITE", 1, branch + "1", body=body, call_id=call_id, number=number,
                       source=source, target=target, extra=extra), source)
    challenge = last(pbx.sent, b"SIP/2.0 407")
    pbx.handle(request("INVITE", 2, branch + "2", body=body, call_id=call_id, number=number,
                       source=source, target=target,
                       extra=extra + digest(number, "INVITE", challenge,
                                            "Proxy-Authorization")),
               source)
