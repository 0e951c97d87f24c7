"""Client of sipd's local control socket (used by the panel and pbxctl).

Commands that need the running daemon (hang up a live call) go over a Unix
stream socket, one JSON object per line each way:

    -> {"command": "hangup", "id": 42}     (the call's row id: a Call-ID may repeat)
    <- {"ok": true} | {"ok": false, "error": "no such call"}
    -> {"command": "ping"}
    <- {"ok": true, "calls": 2}
    -> {"command": "trunk reload"}                  (re-read the trunks, register each again)
    <- {"ok": true, "registering": 1}
    -> {"command": "trunk register", "name": "acme"}   (that trunk's REGISTER now)
    <- {"ok": true}

What the panel *shows* comes from the database, never from here.
"""

from __future__ import annotations

import json
import socket


class ControlError(Exception):
    """The daemon could not be reached or refused the command; the message says why."""


def send(path: str, command: dict, timeout: float = 3.0) -> dict:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(json.dumps(command).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except FileNotFoundError:
        raise ControlError(f"sipd is not running (no control socket at {path})") from None
    except (ConnectionRefusedError, TimeoutError, OSError) as error:
        raise ControlError(f"cannot reach sipd at {path}: {error}") from None
    try:
        reply = json.loads(data)
    except ValueError:
        raise ControlError("sipd sent an unreadable reply") from None
    if not reply.get("ok"):
        raise ControlError(reply.get("error") or "sipd refused the command")
    return reply


def reload_trunks(settings) -> dict:
    """Ask sipd to re-read the Trunk table (after pbxctl trunk add/set/rm or the panel)."""
    return send(settings.control_socket, {"command": "trunk reload"})


def register_trunk(settings, name: str) -> dict:
    """Ask sipd to register trunk `name` again now."""
    return send(settings.control_socket, {"command": "trunk register", "name": name})
