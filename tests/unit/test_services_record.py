"""core/services.py as a daemon writes it: one row per name and host, touched only by its own pid."""

import os
import socket

from core import services
from core.models import Service
from core.version import code_version


def test_started_seen_stopped(database):
    services.started("sipd", "UDP/TCP 0.0.0.0:5060", now=100.0)
    services.seen("sipd", now=130.0)
    row = Service.get()
    assert (row.host, row.pid, row.version) == (socket.gethostname(), os.getpid(), code_version())
    assert (row.started_at, row.seen_at, row.stopped_at) == (100.0, 130.0, None)
    services.stopped("sipd", now=140.0)
    assert Service.get().stopped_at == 140.0
    # A start replaces the row (no second one) and clears the stop.
    services.started("sipd", "UDP/TCP 0.0.0.0:5070", now=200.0)
    [row] = Service.select()
    assert (row.started_at, row.stopped_at, row.detail) == (200.0, None, "UDP/TCP 0.0.0.0:5070")


def test_a_process_being_replaced_leaves_its_successors_row_alone(database):
    services.started("sipd", "", now=100.0)
    Service.update(pid=os.getpid() + 1).execute()  # the row is now another process's
    services.seen("sipd", now=130.0)
    services.stopped("sipd", now=140.0)
    row = Service.get()
    assert (row.seen_at, row.stopped_at) == (100.0, None)
