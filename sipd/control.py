"""sipd's local control socket: what the panel and pbxctl ask of the running daemon.

A Unix stream socket (mode 0660, owned by the daemon's user), one JSON object
per line each way; the protocol is described in core/control.py. Only
commands that need the live process are here (hang up a call, re-read the
trunks, register a trunk again); everything
shown comes from the database.
"""

from __future__ import annotations

import json
import logging
import os

from gevent import socket
from gevent.server import StreamServer

log = logging.getLogger("sipd")
MAX_LINE = 4096


class ControlServer(StreamServer):
    def __init__(self, path: str, calls, trunks=None):
        self.path = path
        self.calls = calls
        self.trunks = trunks  # sipd/trunks/manager.py's TrunkManager
        try:
            os.unlink(path)  # a socket left by a crashed sipd
        except FileNotFoundError:
            pass
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        os.chmod(path, 0o660)
        listener.listen(16)
        super().__init__(listener)

    def handle(self, sock, address):
        sock.settimeout(5)
        try:
            data = b""
            while b"\n" not in data and len(data) < MAX_LINE:
                chunk = sock.recv(MAX_LINE)
                if not chunk:
                    break
                data += chunk
            reply = self.execute(data.split(b"\n", 1)[0])
            sock.sendall(json.dumps(reply).encode() + b"\n")
        except OSError:
            pass
        finally:
            sock.close()

    def execute(self, line: bytes) -> dict:
        try:
            command = json.loads(line)
            name = command["command"]
        except (ValueError, KeyError, TypeError):
            return {"ok": False, "error": "unreadable command"}
        if name == "ping":
            return {"ok": True, "calls": len(self.calls.calls) if self.calls else 0}
        if name == "hangup":
            if self.calls is None:
                return {"ok": False, "error": "calls are not enabled"}
            # A call is named by its row id: a Call-ID can be reused (RFC 3261 §12).
            row_id = command.get("id")
            if not isinstance(row_id, int) or isinstance(row_id, bool):
                return {"ok": False, "error": "hangup needs the call's id (a whole number)"}
            if self.calls.hangup_by_id(row_id, "hung up by an admin"):
                log.info("Call %d hung up by an admin", row_id)
                return {"ok": True}
            return {"ok": False, "error": "no such call (it may have ended)"}
        if name == "trunk reload":
            if self.trunks is None:
                return {"ok": False, "error": "trunks are not enabled"}
            return {"ok": True, "registering": self.trunks.reload()}
        if name == "trunk register":
            if self.trunks is None:
                return {"ok": False, "error": "trunks are not enabled"}
            trunk = command.get("name")
            if not isinstance(trunk, str) or not self.trunks.register(trunk):
                return {"ok": False, "error": f"no register trunk named {str(trunk)[:64]!r}"
                                              " (run trunk reload after adding one)"}
            log.info("[TRUNK] %s: registering again, asked by an admin", trunk)
            return {"ok": True}
        return {"ok": False, "error": f"unknown command {name!r}"}

    def close(self):
        super().close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
