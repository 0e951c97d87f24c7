"""Logging set-up shared by sipd, the panel and pbxctl.

Under systemd (JOURNAL_STREAM set) journald stamps each line, so we do not;
in a checkout, lines carry a timestamp and optionally also go to a file.
"""

from __future__ import annotations

import logging
import os
import sys

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def setup(level: str = "info", log_file: str | None = None, name: str = "pbx") -> None:
    root = logging.getLogger()
    root.setLevel(LEVELS.get(level, logging.INFO))
    for handler in list(root.handlers):
        root.removeHandler(handler)
    if os.environ.get("JOURNAL_STREAM"):
        fmt = "%(message)s"
    else:
        fmt = f"%(asctime)s {name} %(message)s"
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(logging.Formatter(fmt))
    root.addHandler(stream)
    # peewee logs every query at debug: far too much even for PBX_LOG_LEVEL=debug.
    logging.getLogger("peewee").setLevel(logging.INFO)
    if log_file:
        os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
        to_file = logging.FileHandler(log_file)
        to_file.setFormatter(logging.Formatter(f"%(asctime)s {name} %(message)s"))
        root.addHandler(to_file)
