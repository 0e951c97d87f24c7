"""app.server.serve: a real process on gevent's WSGI server that stops cleanly on a signal."""

import signal
import urllib.request

import pytest
from panel_testing import PanelProcess, free_tcp_port

from core.config import load_settings
from core.database import connect


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_listens_and_stops_on_signal(tmp_path, sig):
    db_path = tmp_path / "pbx.db"
    connect(load_settings({"PBX_DB": str(db_path)})).close()
    panel = PanelProcess(db_path, tmp_path, free_tcp_port(), PBX_SECRET_KEY="k" * 40).start()
    try:
        assert f"Panel listening on {panel.url}" in panel.log()
        with urllib.request.urlopen(panel.url + "/login", timeout=5) as response:
            assert response.status == 200
            assert b"Log in" in response.read()
    finally:
        status = panel.stop(sig)
    assert status == 0, panel.log()
    assert "Traceback" not in panel.log()
    assert "GET /login" not in panel.log()  # no access log at info


def test_requests_are_logged_only_at_debug(tmp_path):
    db_path = tmp_path / "pbx.db"
    panel = PanelProcess(db_path, tmp_path, free_tcp_port(), PBX_SECRET_KEY="k" * 40,
                         PBX_LOG_LEVEL="debug").start()
    try:
        urllib.request.urlopen(panel.url + "/login", timeout=5).close()
    finally:
        assert panel.stop() == 0
    assert '"GET /login HTTP/1.1" 200' in panel.log()


def test_systemd_notify_ready_and_watchdog(tmp_path):
    """Type=notify: READY=1 once listening, then WATCHDOG=1 pings from the event loop."""
    import socket
    import time

    path = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(path)
    listener.settimeout(10)
    db_path = tmp_path / "pbx.db"
    # WATCHDOG_USEC 200 ms: pings every 100 ms; WATCHDOG_PID unset means "this process".
    panel = PanelProcess(db_path, tmp_path, free_tcp_port(), PBX_SECRET_KEY="k" * 40,
                         NOTIFY_SOCKET=path, WATCHDOG_USEC="200000")
    try:
        panel.start()
        received = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and sum("WATCHDOG=1" in m for m in received) < 3:
            received.append(listener.recv(4096).decode())
        assert received[0].startswith("READY=1"), received
        assert sum("WATCHDOG=1" in m for m in received) >= 3, received
    finally:
        assert panel.stop() == 0
        listener.close()
