"""Jinja filters and template globals: times, durations, who may change things.

Times in the database are UNIX seconds (UTC); they are shown in the server's
local zone, with UTC in the title for whoever compares them with a log.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from flask_login import current_user


def format_time(timestamp: float | None) -> str:
    if timestamp is None:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def format_utc(timestamp: float | None) -> str:
    if timestamp is None:
        return ""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def format_duration(seconds: float) -> str:
    """A short human duration: '45 s', '4 min 12 s', '2 h 5 min', '3 d 4 h'."""
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    return f"{secs} s"


def remaining(expires_at: float, now: float | None = None) -> str:
    now = time.time() if now is None else now
    return format_duration(expires_at - now)


def ago(timestamp: float | None, now: float | None = None) -> str:
    if timestamp is None:
        return "never"
    now = time.time() if now is None else now
    return f"{format_duration(now - timestamp)} ago"


def can_change() -> bool:
    """Viewers see the same pages without the buttons that would 403."""
    return bool(current_user.is_authenticated and current_user.role == "admin")


def init_app(app) -> None:
    app.add_template_filter(format_time, "time")
    app.add_template_filter(format_utc, "utc")
    app.add_template_filter(remaining, "remaining")
    app.add_template_filter(ago, "ago")
    app.add_template_filter(format_duration, "duration")
    app.add_template_global(can_change)
