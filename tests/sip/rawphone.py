"""A scripted SIP phone on a raw socket, for the tests that need to say exactly
what a phone (or a stranger) sends: the tags, the Call-ID, the From display
name, the SDP direction, the transport and the address it sends from.

Written independently of sipd (it must not share sipd's bugs), like
tests/deploy/sipclient.py: just enough of RFC 3261 (§8.1 requests, §13 INVITE
with a 407 answered, §17.1.1.3 ACK of a failure, §13.2.2.4 ACK of a 2xx,
§12.2.1.1 requests within a dialog, §18.3 Content-Length framing on TCP) and
RFC 7616 digest (MD5, qop=auth). Every socket is on 127.0.0.0/8 and talks only
to the sipd it is given; every wait has a deadline.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import socket
import time
from dataclasses import dataclass, field

COMPACT = {"i": "call-id", "f": "from", "t": "to", "v": "via", "m": "contact",
           "l": "content-length", "c": "content-type"}
T1 = 0.5


@dataclass
class Message:
    start: str
    headers: list[tuple[str, str]]
    body: str = ""

    @property
    def status(self) -> int | None:
        match = re.match(r"SIP/2\.0 (\d{3})", self.start)
        return int(match.group(1)) if match else None

    @property
    def reason(self) -> str:
        return self.start.split(" ", 2)[2] if self.status else ""

    @property
    def method(self) -> str | None:
        return None if self.status else self.start.split(" ", 1)[0]

    def all(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self.headers if COMPACT.get(k.lower(), k.lower()) == name]

    def get(self, name: str) -> str:
        values = self.all(name)
        return values[0] if values else ""

    @property
    def cseq(self) -> tuple[int, str]:
        number, method = self.get("CSeq").split()
        return int(number), method.upper()

    def tag(self, name: str) -> str | None:
        """The tag parameter of From or To (outside the <URI>)."""
        value = self.get(name)
        rest = value[value.index(">") + 1:] if ">" in value else value
        match = re.search(r";\s*tag=([^;\s]+)", rest)
        return match.group(1) if match else None

    def display(self, name: str) -> str | None:
        """The display name of From or To, without quotes (None: none)."""
        value = self.get(name)
        if "<" not in value:
            return None
        display = value[: value.index("<")].strip()
        return display.strip('"') or None

    def contact_uri(self) -> str:
        value = self.get("Contact")
        match = re.search(r"<([^>]+)>", value)
        return match.group(1) if match else value.split(";")[0].strip()


def parse(data: bytes) -> Message:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("utf-8", "replace").split("\r\n")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, value + " " + line.strip())
        elif ":" in line:
            name, value = line.split(":", 1)
            headers.append((name.strip(), value.strip()))
    return Message(lines[0], headers, body.decode("utf-8", "replace"))


def sdp(host: str, port: int, direction: str = "sendrecv") -> str:
    return (f"v=0\r\no=- {port} 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na={direction}\r\n")


@dataclass
class Dialog:
    """One side's view of a dialog (§12): ours is the local tag."""

    call_id: str
    local_tag: str
    remote_tag: str | None
    local_uri: str
    remote_uri: str
    remote_target: str
    local_seq: int
    local_display: str | None = None
    responses: list[Message] = field(default_factory=list)


class RawPhone:
    """Extension `number` (or nobody: a stranger) on `host`, talking to sipd at
    `server` over UDP or TCP."""

    def __init__(self, server: tuple[str, int], number: str = "", password: str = "",
                 host: str = "127.0.0.1", transport: str = "UDP", realm: str = "pbx.test"):
        self.server = server
        self.number = number
        self.password = password
        self.realm = realm
        self.transport = transport
        if transport == "UDP":
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind((host, 0))
        else:
            self.sock = socket.create_connection(server, timeout=5, source_address=(host, 0))
        self.local = self.sock.getsockname()
        self.media_port = 40000 + self.local[1] % 20000
        self._pending: list[Message] = []
        self._stream = b""
        self.seen: list[Message] = []  # everything received, in order

    def close(self) -> None:
        self.sock.close()

    # -- the wire -----------------------------------------------------------------

    def send(self, data: str | bytes) -> None:
        data = data.encode() if isinstance(data, str) else data
        if self.transport == "UDP":
            self.sock.sendto(data, self.server)
        else:
            self.sock.sendall(data)

    def _read(self, timeout: float) -> list[Message]:
        self.sock.settimeout(max(0.001, timeout))
        try:
            if self.transport == "UDP":
                data, _ = self.sock.recvfrom(65535)
                return [parse(data)]
            chunk = self.sock.recv(65535)
        except (TimeoutError, BlockingIOError):
            return []
        if not chunk:
            raise AssertionError(f"sipd closed the {self.transport} connection of {self.local}")
        self._stream += chunk
        messages = []
        while b"\r\n\r\n" in self._stream:
            head, _, rest = self._stream.partition(b"\r\n\r\n")
            length = re.search(rb"(?im)^(?:content-length|l)\s*:\s*(\d+)", head)
            size = int(length.group(1)) if length else 0
            if len(rest) < size:
                break
            messages.append(parse(head + b"\r\n\r\n" + rest[:size]))
            self._stream = rest[size:]
        return messages

    def receive(self, predicate, timeout: float = 5.0) -> Message | None:
        """The first message (kept ones first) for which predicate(message) holds."""
        for message in self._pending:
            if predicate(message):
                self._pending.remove(message)
                return message
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            for message in self._read(remaining):
                self.seen.append(message)
                if predicate(message):
                    return message
                self._pending.append(message)

    def request_received(self, method: str, timeout: float = 5.0) -> Message | None:
        return self.receive(lambda m: m.method == method, timeout)

    def _final(self, call_id: str, cseq: int, method: str, data: bytes,
               timeout: float) -> Message:
        """The final response to a request we sent, retransmitted as Timer E/A would."""
        deadline = time.monotonic() + timeout
        interval = T1
        while True:
            wait = min(interval, deadline - time.monotonic())
            answer = self.receive(
                lambda m: m.status is not None and m.status >= 200
                and m.get("Call-ID") == call_id and m.cseq == (cseq, method), wait)
            if answer is not None:
                return answer
            if time.monotonic() >= deadline:
                raise AssertionError(f"no final answer to {method} {call_id} within {timeout} s;"
                                     f" seen: {[m.start for m in self.seen]}")
            if self.transport == "UDP":
                self.send(data)
            interval = min(2 * interval, 4.0)

    # -- building requests ------------------------------------------------------------

    def via(self) -> str:
        return (f"SIP/2.0/{self.transport} {self.local[0]}:{self.local[1]};"
                f"branch=z9hG4bK{secrets.token_hex(8)};rport")

    def contact(self) -> str:
        suffix = "" if self.transport == "UDP" else f";transport={self.transport.lower()}"
        return f"<sip:{self.number or 'x'}@{self.local[0]}:{self.local[1]}{suffix}>"

    def build(self, method: str, uri: str, from_: str, to: str, call_id: str, cseq: int,
              via: str | None = None, extra: list[str] | None = None, body: str = "") -> str:
        contact = self.contact() if method not in ("ACK", "CANCEL", "BYE") else None
        return build_request(method, uri, from_, to, call_id, cseq, via or self.via(),
                             contact, extra, body)

    def digest(self, challenge: str, method: str, uri: str) -> str:
        params = dict(re.findall(r'(\w+)="?([^",]+)"?', challenge))

        def h(text: str) -> str:
            return hashlib.md5(text.encode()).hexdigest()

        cnonce, nc = secrets.token_hex(8), "00000001"
        ha1 = h(f"{self.number}:{params['realm']}:{self.password}")
        response = h(f"{ha1}:{params['nonce']}:{nc}:{cnonce}:auth:{h(f'{method}:{uri}')}")
        opaque = f', opaque="{params["opaque"]}"' if "opaque" in params else ""
        return (f'Digest username="{self.number}", realm="{params["realm"]}", '
                f'nonce="{params["nonce"]}", uri="{uri}", response="{response}", '
                f'algorithm=MD5, cnonce="{cnonce}", qop=auth, nc={nc}{opaque}')

    @staticmethod
    def md5_challenge(response: Message, header: str) -> str:
        for value in response.all(header):
            if "algorithm=MD5" in value.replace(" ", "") or "algorithm" not in value:
                return value
        raise AssertionError(f"no MD5 challenge in {response.headers}")

    # -- what a phone does ------------------------------------------------------------------

    def register(self, expires: int = 300) -> Message:
        call_id, tag, uri = f"reg-{secrets.token_hex(6)}", secrets.token_hex(4), "sip:pbx.test"
        aor = f"<sip:{self.number}@{self.realm}>"
        extra = [f"Expires: {expires}"]
        data = self.build("REGISTER", uri, f"{aor};tag={tag}", aor, call_id, 1, extra=extra)
        self.send(data)
        first = self._final(call_id, 1, "REGISTER", data.encode(), 5)
        if first.status != 401:
            return first
        authorization = self.digest(self.md5_challenge(first, "WWW-Authenticate"),
                                    "REGISTER", uri)
        data = self.build("REGISTER", uri, f"{aor};tag={tag}", aor, call_id, 2,
                          extra=extra + [f"Authorization: {authorization}"])
        self.send(data)
        final = self._final(call_id, 2, "REGISTER", data.encode(), 5)
        assert final.status == 200, final.start
        return final

    def call(self, callee: str, direction: str = "sendrecv", display: str | None = None,
             call_id: str | None = None, tag: str | None = None,
             timeout: float = 10) -> tuple[Message, Dialog]:
        """INVITE `callee` (answering the 407), ACK the final answer; the final
        answer and the dialog (remote_tag None unless it was a 2xx)."""
        call_id = call_id or f"{secrets.token_hex(8)}@{self.local[0]}"
        tag = tag or secrets.token_hex(4)
        uri = f"sip:{callee}@{self.server[0]}:{self.server[1]}"
        name = f'"{display}" ' if display else ""
        from_ = f"{name}<sip:{self.number}@{self.realm}>;tag={tag}"
        to = f"<sip:{callee}@{self.realm}>"
        body = sdp(self.local[0], self.media_port, direction)
        cseq, extra = 1, []
        while True:
            via = self.via()
            data = self.build("INVITE", uri, from_, to, call_id, cseq, via=via, extra=extra,
                              body=body)
            self.send(data)
            final = self._final(call_id, cseq, "INVITE", data.encode(), timeout)
            if final.status >= 300:
                # §17.1.1.3: the ACK of a failure is in the INVITE's transaction.
                self.send(self.build("ACK", uri, from_, final.get("To"), call_id, cseq, via=via))
            if final.status == 407 and cseq == 1:
                authorization = self.digest(
                    self.md5_challenge(final, "Proxy-Authenticate"), "INVITE", uri)
                cseq, extra = 2, [f"Proxy-Authorization: {authorization}"]
                continue
            break
        dialog = Dialog(call_id, tag, final.tag("To"), from_.split(";tag=")[0], to,
                        final.contact_uri() if final.status < 300 else uri, cseq,
                        local_display=display)
        if 200 <= final.status < 300:
            self.ack(dialog, cseq)
        return final, dialog

    def ack(self, dialog: Dialog, cseq: int) -> None:
        """§13.2.2.4: the ACK of a 2xx, a request of its own in the dialog."""
        self.send(self.build("ACK", dialog.remote_target, self._from(dialog), self._to(dialog),
                             dialog.call_id, cseq))

    def _from(self, dialog: Dialog) -> str:
        return f"{dialog.local_uri};tag={dialog.local_tag}"

    def _to(self, dialog: Dialog) -> str:
        return dialog.remote_uri + (f";tag={dialog.remote_tag}" if dialog.remote_tag else "")

    def in_dialog(self, dialog: Dialog, method: str, body: str = "",
                  timeout: float = 5) -> Message:
        """A request within `dialog` (§12.2.1.1); its final answer (a 2xx to an
        INVITE is ACKed)."""
        dialog.local_seq += 1
        cseq = dialog.local_seq
        data = self.build(method, dialog.remote_target, self._from(dialog), self._to(dialog),
                          dialog.call_id, cseq, body=body)
        self.send(data)
        final = self._final(dialog.call_id, cseq, method, data.encode(), timeout)
        if method == "INVITE" and 200 <= final.status < 300:
            self.ack(dialog, cseq)
        return final

    def answer(self, invite: Message, status: int = 200, direction: str = "sendrecv",
               tag: str | None = None) -> Dialog:
        """Answer an INVITE received (as the callee, or to a re-INVITE with `tag`
        our existing one): 180 then `status`, with our SDP on a 2xx."""
        tag = tag or secrets.token_hex(4)
        if invite.tag("To") is None:
            self.respond(invite, 180, tag=tag)
        body = sdp(self.local[0], self.media_port, direction) if status < 300 else ""
        self.respond(invite, status, tag=tag, body=body)
        number, _ = invite.cseq
        return Dialog(invite.get("Call-ID"), tag, invite.tag("From"),
                      invite.get("To").split(";tag=")[0], invite.get("From").split(";tag=")[0],
                      invite.contact_uri(), 0)

    def respond(self, request: Message, status: int, tag: str | None = None,
                body: str = "") -> None:
        to = request.get("To")
        if tag and request.tag("To") is None:
            to += f";tag={tag}"
        reasons = {100: "Trying", 180: "Ringing", 200: "OK", 481: "No Such Call",
                   486: "Busy Here"}
        lines = [f"SIP/2.0 {status} {reasons.get(status, 'Whatever')}"]
        lines += [f"Via: {via}" for via in request.all("Via")]
        lines += [f"From: {request.get('From')}", f"To: {to}",
                  f"Call-ID: {request.get('Call-ID')}", f"CSeq: {request.get('CSeq')}"]
        if request.method == "INVITE" and status < 300:
            lines.append(f"Contact: {self.contact()}")
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body.encode())}")
        self.send("\r\n".join(lines) + "\r\n\r\n" + body)


def build_request(method: str, uri: str, from_: str, to: str, call_id: str, cseq: int,
                  via: str, contact: str | None = None, extra: list[str] | None = None,
                  body: str = "") -> str:
    lines = [f"{method} {uri} SIP/2.0", f"Via: {via}", "Max-Forwards: 70", f"From: {from_}",
             f"To: {to}", f"Call-ID: {call_id}", f"CSeq: {cseq} {method}",
             "User-Agent: rawphone-test"]
    if contact:
        lines.append(f"Contact: {contact}")
    lines += extra or []
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body.encode())}")
    return "\r\n".join(lines) + "\r\n\r\n" + body


def ask(host: str, server: tuple[str, int], data: str, timeout: float = 3.0) -> Message | None:
    """Send one request from a fresh UDP socket on `host`; its final answer, or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        sock.sendto(data.encode(), server)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                message = parse(sock.recvfrom(65535)[0])
            except TimeoutError:
                return None
            if message.status is not None and message.status >= 200:
                return message
    return None
