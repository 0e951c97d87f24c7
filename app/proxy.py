"""The client's address behind nginx, believed only when nginx is who connected.

On a server nginx proxies from loopback and appends the client's address to
X-Forwarded-For; the panel takes the last entry (the one nginx wrote) as
REMOTE_ADDR, so throttling and the audit log see the real client. A request
that does not come from loopback keeps its own address: anyone can send the
header, only the local nginx is trusted to.
"""

from __future__ import annotations

import ipaddress


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


class LoopbackProxyFix:
    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        forwarded = environ.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded and _is_loopback(environ.get("REMOTE_ADDR", "")):
            last = forwarded.split(",")[-1].strip()
            try:
                environ["REMOTE_ADDR"] = str(ipaddress.ip_address(last))
            except ValueError:
                pass  # not an address: keep the proxy's
        return self.wsgi_app(environ, start_response)
