"""What the panel tests share besides fixtures: the test app and rows as other writers make them.

Rows that sipd would write (bindings, authentication attempts) are inserted
directly in the shape sipd writes them, so the panel is tested on that shape.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from werkzeug.security import generate_password_hash

from app import create_app
from core.accounts import create_extension
from core.models import Admin, AuthAttempt, Binding, db

ROOT = Path(__file__).resolve().parents[2]
REALM = "pbx.test"
SECRET = "test-secret-key-" + "x" * 32
ADMIN = ("admin", "admin-password-1")
VIEWER = ("viewer", "viewer-password-1")


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
        for (username, password), role in ((ADMIN, "admin"), (VIEWER, "viewer")):
            # A cheap hash keeps a test fast; verify_admin checks any werkzeug hash.
            Admin.create(username=username, role=role, password_hash=generate_password_hash(
                password, method="pbkdf2:sha256:1000"))
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
