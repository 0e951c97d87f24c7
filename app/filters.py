"""Jinja filters and template globals: times, durations, who may change things.

Times in the database are UNIX seconds (UTC); pages show them in the server's
local zone (TZ, /etc/localtime) with that zone named, e.g. "2026-12-02 13:28:06
UTC+05" (an office in Tashkent whose server was left on UTC would otherwise read
times five hours off and not know it), and UTC in the title for whoever compares
them with a log. Units and words are in the admin's language (app/i18n.py).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from flask_babel import gettext as _
from flask_login import current_user


def format_time(timestamp: float | None) -> str:
    if timestamp is None:
        return _("never")
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def zone_label(timestamp: float) -> str:
    """The server's zone at that moment: "UTC", "UTC+05", "UTC-03:30", or "CET (UTC+01)"."""
    moment = time.localtime(timestamp)
    offset = moment.tm_gmtoff or 0
    sign = "+" if offset >= 0 else "-"
    hours, minutes = divmod(abs(offset) // 60, 60)
    numeric = "UTC" if offset == 0 else f"UTC{sign}{hours:02d}"
    if minutes:
        numeric += f":{minutes:02d}"
    name = moment.tm_zone or ""
    # Zones without a common abbreviation (Asia/Tashkent) name themselves "+05": the offset says it.
    if not name.isalpha() or name in {"UTC", "GMT"}:
        return numeric
    return f"{name} ({numeric})"


def format_time_zoned(timestamp: float | None) -> str:
    if timestamp is None:
        return _("never")
    return f"{format_time(timestamp)} {zone_label(timestamp)}"


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
    d, h, m, s = _("%(n)s d"), _("%(n)s h"), _("%(n)s min"), _("%(n)s s")
    if days:
        return f"{d % {'n': days}} {h % {'n': hours}}" if hours else d % {"n": days}
    if hours:
        return f"{h % {'n': hours}} {m % {'n': minutes}}" if minutes else h % {"n": hours}
    if minutes:
        return f"{m % {'n': minutes}} {s % {'n': secs}}" if secs else m % {"n": minutes}
    return s % {"n": secs}


def remaining(expires_at: float, now: float | None = None) -> str:
    now = time.time() if now is None else now
    return format_duration(expires_at - now)


def ago(timestamp: float | None, now: float | None = None) -> str:
    if timestamp is None:
        return _("never")
    now = time.time() if now is None else now
    return _("%(duration)s ago", duration=format_duration(now - timestamp))


def translated(text: str | None) -> str:
    """Text from core (phone settings' notes and warnings) in the admin's language:
    a core.phone_settings.Text by its message and values, a plain string as a msgid
    (sipd records how it found its address in the catalogue's words)."""
    if not text:
        return ""
    message = getattr(text, "message", None)
    if message is None:
        return _(text) if "%" not in text else text
    if not text.values:
        return _(message)
    return _(message) % {name: translated(value) if hasattr(value, "message") else value
                         for name, value in text.values.items()}


def sentence(text: str) -> str:
    """A core phrase ("password must ...") as a sentence: capital first, full stop last."""
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def can_change() -> bool:
    """Viewers see the same pages without the buttons that would 403."""
    return bool(current_user.is_authenticated and current_user.role == "admin")


def init_app(app) -> None:
    app.add_template_filter(format_time_zoned, "time")
    app.add_template_filter(format_utc, "utc")
    app.add_template_filter(remaining, "remaining")
    app.add_template_filter(ago, "ago")
    app.add_template_filter(format_duration, "duration")
    app.add_template_filter(translated, "translated")
    app.add_template_global(can_change)
