"""What the panel tests share besides fixtures: the test app and rows as other writers make them.

Rows that sipd would write (bindings, authentication attempts) are inserted
directly in the shape sipd writes them, so the panel is tested on that shape.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from werkzeug.security import generate_password_hash

from app import create_app
from core.accounts import create_extension
from core.models import Admin, AuthAttempt, Binding, Call, db

ROOT = Path(__file__).resolve().parents[2]
REALM = "pbx.test"
SECRET = "test-secret-key-" + "x" * 32
ADMIN = ("admin", "brass-kettle-window-8")
VIEWER = ("viewer", "quiet-harbor-lantern-3")


def make_app(tmp_path, **config):
    """A panel on a fresh SQLite file in tmp_path, with one admin and one viewer."""
    app = create_app({
        "TESTING": True,
        "DB_PATH": str(tmp_path / "pbx.db"),
        "REALM": REALM,
        "SECRET_KEY": SECRET,
        "WTF_CSRF_ENABLED": False,
        **config,
    })
    with db.connection_context():
        Rows().admin(*ADMIN)
        Rows().admin(*VIEWER, role="viewer")
    return app


def shown_password(html: str) -> str:
    """The one-time password on the page shown after creating or changing it."""
    match = re.search(r'<code class="secret" id="shown-password">([^<]+)</code>', html)
    assert match, "no password on the page"
    return match.group(1)


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


class Rows:
    """Rows as the other writers make them: core.accounts for extensions, sipd's
    shape for bindings and authentication attempts."""

    def admin(self, username, password, role="admin"):
        # A cheap hash keeps a test fast; verify_admin checks any werkzeug hash.
        return Admin.create(username=username, role=role, password_hash=generate_password_hash(
            password, method="pbkdf2:sha256:1000"))

    def extension(self, number="1002", name="", password="correct-horse-1", enabled=True):
        extension, _, _ = create_extension(
            number, REALM, name=name, password=password, enabled=enabled
        )
        return extension

    def binding(self, extension, **fields):
        now = time.time()
        values = {
            "extension": extension,
            "aor": f"sip:{extension.number}@{REALM}",
            "contact": f"sip:{extension.number}@192.0.2.10:5062;transport=udp",
            "source_host": "192.0.2.10",
            "source_port": 5062,
            "transport": "UDP",
            "expires_at": now + 300,
            "call_id": "call-1@192.0.2.10",
            "cseq": 2,
            "user_agent": "MicroSIP/3.21.3",
            "registered_at": now - 10,
            "updated_at": now - 10,
        }
        values.update(fields)
        return Binding.create(**values)

    def attempt(self, number="1002", **fields):
        values = {
            "number": number,
            "source_host": "203.0.113.7",
            "source_port": 48355,
            "transport": "UDP",
            "user_agent": "MicroSIP/3.21.3",
            "result": "failure",
            "reason": "wrong password",
        }
        values.update(fields)
        return AuthAttempt.create(**values)

    def call(self, caller="1002", callee="1003", live=False, **fields):
        """A call as sipd's B2BUA records it: ended and answered unless told otherwise."""
        now = time.time()
        values = {
            "call_id": f"{caller}-{callee}-{time.monotonic_ns()}@192.0.2.10",
            "caller": caller,
            "callee": callee,
            "caller_source": "192.0.2.10:5062/UDP",
            "callee_contact": f"sip:{callee}@192.0.2.20:5060",
            "state": "answered",
            "started_at": now - 70,
            "answered_at": now - 65,
            "ended_at": None if live else now - 5,
            "disposition": None if live else "ANSWERED",
            "hangup_by": None if live else "caller",
            "sip_status": None if live else 200,
            "caller_media": "192.0.2.10:40000",
            "callee_media": "192.0.2.20:41000",
            "codec": "PCMU/8000",
        }
        values.update(fields)
        return Call.create(**values)


class FakeControl:
    """sipd's control socket as core.control speaks to it: one JSON object per line.

    `reply` answers each command (default: ok); `commands` keeps what was received.
    The socket lives in a short temporary directory (a Unix socket path has ~100 bytes).
    """

    def __init__(self, reply=None):
        self.reply = reply or (lambda command: {"ok": True})
        self.commands: list[dict] = []
        self.directory = tempfile.mkdtemp(prefix="pbx-ctl-")
        self.path = os.path.join(self.directory, "sipd.sock")
        fake = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                for line in self.rfile:
                    command = json.loads(line)
                    fake.commands.append(command)
                    self.wfile.write(json.dumps(fake.reply(command)).encode() + b"\n")

        self.server = socketserver.ThreadingUnixStreamServer(self.path, Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeControl:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        for name in os.listdir(self.directory):
            os.unlink(os.path.join(self.directory, name))
        os.rmdir(self.directory)


class PanelProcess:
    """The panel as it runs for real: app.server.serve() in its own process, on loopback."""

    def __init__(self, db_path, workdir, port: int, **env: str):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = workdir / "panel.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PBX_")}
        self.env.update(
            PBX_DB=str(db_path), PBX_REALM=REALM, PBX_PANEL_LISTEN=f"127.0.0.1:{port}",
            PBX_RUN_DIR=str(workdir), PYTHONPATH=str(ROOT), **env,
        )
        self.process = None

    def start(self, timeout: float = 15) -> PanelProcess:
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-c",
             "from core.config import load_settings; from app.server import serve;"
             " serve(load_settings())"],
            env=self.env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the panel exited at start:\n{self.log()}")
            if "Panel listening on" in self.log():
                return self
            time.sleep(0.05)
        raise AssertionError(f"the panel did not start within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        """Signal the panel and return its exit status (killed if it does not stop)."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"the panel ignored signal {sig}:\n{self.log()}") from None
        self._log.close()
        return self.process.returncode


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
