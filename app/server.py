"""Run the panel on gevent's WSGI server: `serve(settings)`, called by `pbxctl panel`.

On a server it listens on 127.0.0.1 behind nginx (PBX_PANEL_LISTEN); SIGTERM
(systemd) and SIGINT (Ctrl-C) stop it after the requests in flight finish.
"""

from __future__ import annotations

import logging
import signal

from core import systemd
from core.config import Settings

log = logging.getLogger("panel")

STOP_TIMEOUT = 5.0


def _watchdog(interval: float) -> None:
    import gevent

    while True:
        systemd.notify("WATCHDOG=1")
        gevent.sleep(interval)


def serve(settings: Settings, app=None) -> None:
    """Serve the panel until SIGTERM or SIGINT; returns after a clean stop."""
    # peewee keeps its connection in a threading.local: with threading patched
    # that becomes one connection per greenlet, so one request closing its
    # connection can never close another's.
    from gevent import monkey

    if not monkey.is_module_patched("threading"):
        monkey.patch_all()

    import gevent
    from gevent.event import Event
    from gevent.pywsgi import LoggingLogAdapter, WSGIServer

    from app import create_app

    if not logging.getLogger().handlers:
        logging.basicConfig(level=settings.log_level.upper(), format="%(message)s")
    app = app or create_app(settings=settings)
    server = WSGIServer(
        (settings.panel_host, settings.panel_port),
        app,
        # One line per request is nginx's job; here only at PBX_LOG_LEVEL=debug.
        log=LoggingLogAdapter(logging.getLogger("panel.access"), logging.DEBUG),
        error_log=LoggingLogAdapter(logging.getLogger("panel.error"), logging.ERROR),
    )
    stopping = Event()
    handlers = [gevent.signal_handler(number, stopping.set)
                for number in (signal.SIGTERM, signal.SIGINT)]
    try:
        server.start()
        host, port = server.address[:2]
        shown = f"[{host}]" if ":" in host else host
        log.info("Panel listening on http://%s:%d", shown, port)
        # Type=notify: ready once the socket is bound; the watchdog is pinged from
        # a greenlet on this hub, so a stuck event loop stops the pings.
        systemd.notify("READY=1\nSTATUS=serving")
        interval = systemd.watchdog_interval()
        if interval:
            watchdog = gevent.spawn(_watchdog, interval)
        stopping.wait()
        log.info("Panel stopping")
        systemd.notify("STOPPING=1")
        if interval:
            watchdog.kill(block=False)
    finally:
        server.stop(timeout=STOP_TIMEOUT)
        for handler in handlers:
            handler.cancel()
