"""Capture the REFERs real phones send, for tests/data (the unit tests parse them).

    .venv/bin/python -m tests.sip.capture_refer baresip    # blind, ctrl_tcp "transfer"
    .venv/bin/python -m tests.sip.capture_refer linphone   # attended, "transfer ID --to-call ID"

The phone registers with and calls `StandInPbx`, a small UAS on a loopback UDP
port that answers everything a phone sends while it calls (REGISTER, INVITE,
ACK, BYE, NOTIFY...) and, when a REFER comes, keeps its bytes exactly as they
arrived, answers 202 and a final NOTIFY "SIP/2.0 200 OK" (RFC 3515 §2.4.4), so
the phone sees its transfer succeed as a PBX would report it. The REFER is
written to tests/data/refer_<phone>_<version>_<kind>.sip.

Only 127.0.0.1 is used.
"""

from __future__ import annotations

import re
import socket
import sys
import threading
from pathlib import Path

from sipd.sip import refer as referlib
from sipd.sip.dialog import Dialog, new_branch, new_tag
from sipd.sip.headers import NameAddr
from sipd.sip.message import ParseError, Request, parse
from sipd.sip.responses import make_response
from tests.sip import callkit as ck
from tests.support import LOOPBACK

DATA = Path(__file__).resolve().parent.parent / "data"


class StandInPbx:
    """A UAS on 127.0.0.1:port answering a phone the way a PBX would, enough for the
    phone to register, place calls and transfer one of them."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.port = self.sock.getsockname()[1]
        self.address = f"{LOOPBACK}:{self.port}"
        self.refers: list[bytes] = []
        self.registers = 0  # REGISTERs answered
        self.invites: list[Request] = []
        self._tags: dict[str, str] = {}  # Call-ID -> our To tag
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> StandInPbx:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop = True
        self.sock.close()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                data, source = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                message = parse(data)
            except ParseError:
                continue  # keep-alives and the like
            if isinstance(message, Request):
                self._request(message, data, source)

    def _send(self, message, destination) -> None:
        self.sock.sendto(bytes(message), destination)

    def _contact(self) -> str:
        return f"<sip:pbx@{self.address}>"

    def _answer(self, request: Request, source, status: int, headers=None, body=b""):
        call_id = request.headers.get("Call-ID")
        tag = self._tags.setdefault(call_id, new_tag())
        items = list(headers or [])
        if status < 300 and request.method not in ("BYE", "CANCEL", "REGISTER"):
            items.append(("Contact", self._contact()))
        if body:
            items.append(("Content-Type", "application/sdp"))
        self._send(make_response(request, status, headers=items, body=body, to_tag=tag), source)

    def _request(self, request: Request, data: bytes, source) -> None:
        method = request.method
        if method == "ACK":
            return
        if method == "REGISTER":
            contact = request.headers.get("Contact") or ""
            self._answer(request, source, 200, [("Contact", contact), ("Expires", "300")]
                         if contact else [])
            self.registers += 1
            return
        if method == "INVITE":
            self.invites.append(request)
            self._answer(request, source, 200, body=self._sdp())
            return
        if method == "REFER":
            self.refers.append(data)
            self._answer(request, source, 202)
            self._final_notify(request, source)
            return
        self._answer(request, source, 200)

    def _sdp(self) -> bytes:
        port = ck.free_ports(2)
        return (
            "v=0\r\no=pbx 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
        ).encode()

    def _final_notify(self, refer: Request, source) -> None:
        """NOTIFY 200 OK in the REFER's dialog (RFC 3515 §2.4.4), our side of it."""
        sender = NameAddr.parse(refer.headers.get("From"))
        contact = NameAddr.parse(refer.headers.get("Contact") or refer.headers.get("From"))
        dialog = Dialog(
            call_id=refer.headers.get("Call-ID"),
            local_tag=self._tags.setdefault(refer.headers.get("Call-ID"), new_tag()),
            remote_tag=sender.tag, local_uri=str(NameAddr.parse(refer.headers.get("To")).uri),
            remote_uri=str(sender.uri), remote_target=str(contact.uri), local_seq=100,
        )
        via = f"SIP/2.0/UDP {self.address};branch={new_branch()}"
        self._send(referlib.notify(dialog, via, self._contact(), 200), source)

    def wait_refer(self, timeout: float = 15) -> bytes:
        if not ck.wait_for(lambda: self.refers, timeout):
            raise AssertionError("no REFER reached the stand-in PBX")
        return self.refers[0]

    def wait_registered(self, timeout: float = 15) -> None:
        if not ck.wait_for(lambda: self.registers, timeout):
            raise AssertionError("no REGISTER reached the stand-in PBX")


def version_of(refer: bytes) -> str:
    agent = re.search(rb"^User-Agent: (.*)$", refer, re.M)
    return agent.group(1).decode().strip() if agent else "unknown"


def capture_baresip(pbx: StandInPbx) -> tuple[bytes, str]:
    from tests.sip.softphone import Baresip

    phone = Baresip("capture", "1001", ck.PASSWORD, pbx.address,
                    f"{LOOPBACK}:{ck.free_ports()}", 440.0, ctrl_port=ck.free_ports())
    phone.start()
    try:
        pbx.wait_registered()
        phone.command("dial", f"sip:1002@{pbx.address}")
        phone.wait_event("CALL_ESTABLISHED", 15)
        phone.command("transfer", f"sip:1003@{pbx.address}")
        return pbx.wait_refer(), "blind"
    finally:
        phone.stop()


def capture_linphone(pbx: StandInPbx) -> tuple[bytes, str]:
    from tests.sip.linphone import TALKING, Linphone

    phone = Linphone("capture", "1001", ck.PASSWORD, pbx.address, 440.0).start()
    try:
        phone.wait_registered()
        held = phone.call("1002")
        phone.wait_state(held, TALKING)
        phone.hold(held)
        phone.wait_state(held, "Paused")
        consulted = phone.call("1003")
        phone.wait_state(consulted, TALKING)
        phone.transfer_to_call(held, consulted)
        return pbx.wait_refer(), "attended"
    finally:
        phone.stop()


def main(argv: list[str]) -> int:
    which = argv[1] if len(argv) > 1 else ""
    captures = {"baresip": capture_baresip, "linphone": capture_linphone}
    if which not in captures:
        print("usage: python -m tests.sip.capture_refer baresip|linphone", file=sys.stderr)
        return 2
    pbx = StandInPbx().start()
    try:
        refer, kind = captures[which](pbx)
    finally:
        pbx.stop()
    agent = version_of(refer)
    version = re.search(r"(\d+\.\d+\.\d+)", agent)
    name = f"refer_{which}_{version.group(1) if version else 'unknown'}_{kind}.sip"
    (DATA / name).write_bytes(refer)
    print(f"{name}: {len(refer)} bytes from {agent}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
