"""Attack tools for the security tests: sipvicious from Debian, and raw SIP from any loopback address.

Everything here talks to 127.0.0.0/8 only.
"""

from __future__ import annotations

import hashlib
import re
import socket
import subprocess
import time
from pathlib import Path

from tests.support import LOOPBACK, require_tool

# sipvicious 0.3.3 has no option for its User-Agent ("friendly-scanner", fixed in
# svhelper.makeRequest), and svwar and svcrack ignore their -b (they bind to
# all addresses, so their packets come from 127.0.0.1). To play a scanner from
# another loopback address, or one that claims to be a phone, the same tools
# are run with those two things patched.
_PATCHED = """
import importlib, socket, sys
sys.path.insert(0, {home!r})
bind, agent = {bind!r}, {agent!r}
if bind:
    class Bound(socket.socket):
        def bind(self, address):
            if address[0] in ("", "0.0.0.0"):
                address = (bind, *address[1:])
            return super().bind(address)
    socket.socket = Bound
if agent:
    from sipvicious.libs import svhelper
    defaults = list(svhelper.makeRequest.__defaults__)
    defaults[defaults.index("friendly-scanner")] = agent
    svhelper.makeRequest.__defaults__ = tuple(defaults)
sys.argv = [{tool!r}] + sys.argv[1:]
sys.exit(importlib.import_module("sipvicious." + {tool!r}).main())
"""


def sipvicious_command(
    tool: str, user_agent: str | None = None, bind: str | None = None
) -> list[str]:
    """The argv of svmap, svwar or svcrack (Debian's names); a missing tool fails the test."""
    script = Path(require_tool(tool)).resolve()  # /usr/share/sipvicious/sipvicious_svwar
    if user_agent is None and bind is None:
        return [str(script)]
    interpreter = script.read_text().splitlines()[0].removeprefix("#!").split()
    code = _PATCHED.format(home=str(script.parent), agent=user_agent, tool=tool, bind=bind)
    return [*interpreter, "-c", code]


def sipvicious(
    tool: str,
    args: list[str],
    user_agent: str | None = None,
    bind: str | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*sipvicious_command(tool, user_agent, bind), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def request(
    method: str,
    user: str,
    port: int,
    local: tuple[str, int],
    agent: str = "Yealink SIP-T46S 66.86.0.15",
    extra: str = "",
    transport: str = "UDP",
    caller: str = "4711",
) -> bytes:
    host, local_port = local
    tag = hashlib.md5(f"{method}{user}{time.monotonic_ns()}".encode()).hexdigest()[:10]
    body = ""
    lines = [
        f"{method} sip:{user}@{LOOPBACK}:{port} SIP/2.0",
        f"Via: SIP/2.0/{transport} {host}:{local_port};branch=z9hG4bK{tag};rport",
        f"From: <sip:{caller}@{LOOPBACK}>;tag={tag}",
        f"To: <sip:{user}@{LOOPBACK}>",
        f"Call-ID: {tag}@{host}",
        f"CSeq: 1 {method}",
        "Max-Forwards: 70",
        f"Contact: <sip:{caller}@{host}:{local_port}>",
        f"User-Agent: {agent}",
    ]
    if extra:
        lines.append(extra)
    if method == "INVITE":
        body = (
            f"v=0\r\no=- 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
            "m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
        )
        lines.append("Content-Type: application/sdp")
    return ("\r\n".join(lines) + f"\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode()


def _header(message: bytes, name: bytes) -> bytes:
    match = re.search(rb"^" + name + rb"[ \t]*:[ \t]*([^\r\n]*)", message, re.I | re.M)
    return match.group(1) if match else b""


def udp_ask(
    data: bytes, port: int, host: str = LOOPBACK, timeout: float = 1.0, sock=None
) -> bytes | None:
    """Send one request from `host`; its final answer (ACKed if it was to an INVITE), or None.

    Answers to earlier requests (an INVITE's retransmitted final response) are skipped.
    """
    own = sock is None
    if own:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((host, 0))
    call_id = _header(data, b"Call-ID")
    deadline = time.monotonic() + timeout
    try:
        sock.sendto(data, (LOOPBACK, port))
        while True:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            answer = sock.recvfrom(65535)[0]
            if _header(answer, b"Call-ID") != call_id or answer.startswith(b"SIP/2.0 1"):
                continue
            if data.startswith(b"INVITE ") and not answer.startswith(b"SIP/2.0 2"):
                sock.sendto(ack(data, answer), (LOOPBACK, port))
            return answer
    except TimeoutError:
        return None
    finally:
        if own:
            sock.close()


def ack(invite: bytes, response: bytes) -> bytes:
    """The ACK for a non-2xx final response to `invite` (RFC 3261 §17.1.1.3)."""
    request_line = invite.split(b"\r\n", 1)[0].replace(b"INVITE ", b"ACK ", 1)
    number = _header(invite, b"CSeq").split()[0]
    lines = [
        request_line,
        b"Via: " + _header(invite, b"Via"),
        b"From: " + _header(invite, b"From"),
        b"To: " + _header(response, b"To"),
        b"Call-ID: " + _header(invite, b"Call-ID"),
        b"CSeq: " + number + b" ACK",
        b"Max-Forwards: 70",
        b"Content-Length: 0",
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def options_from(host: str, port: int, agent: str = "MicroSIP/3.21.3", timeout: float = 1.0):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        data = request("OPTIONS", "1002", port, sock.getsockname(), agent=agent)
        return udp_ask(data, port, sock=sock, timeout=timeout)


def wait_until(predicate, timeout: float, step: float = 0.1) -> float | None:
    """Seconds until `predicate()` held, or None if it did not within `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(step)
    return None


def masked(response: bytes) -> tuple[str, list[str]]:
    """A response as an observer compares them: per-request values masked."""
    text = response.decode("utf-8", "replace")
    head = text.split("\r\n\r\n")[0]
    lines = head.split("\r\n")
    out = []
    for line in lines[1:]:
        line = re.sub(r'nonce="[^"]+"', "nonce=N", line)
        line = re.sub(r"(branch|tag|rport|received)=[^;\s,>]+", r"\1=X", line)
        line = re.sub(r"^(Call-ID|Date|CSeq): .*", r"\1: X", line)
        line = re.sub(r"sip:\d+@", "sip:USER@", line)
        line = re.sub(r"127\.0\.0\.\d+:\d+", "ADDR", line)
        out.append(line)
    return lines[0], out
