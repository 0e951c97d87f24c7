"""Which sessions are still good: ended server-side, an idle timeout, an absolute lifetime.

The session is a signed cookie, so whoever holds a copy holds the session;
what ends it must therefore live on the server. Each session carries its
admin's session_epoch from the moment it began (core/models.py Admin); logging
out, a new password (panel or pbxctl) and disabling the account add one to it,
and `load` (Flask-Login's user loader) then refuses every older cookie, copies
included. The cookie's own expiry (PERMANENT_SESSION_LIFETIME) is only advice
to the browser; the times kept inside the signed session are what the panel
enforces. Background requests (the live-calls poll) do not count as activity:
a page left open does not keep a session alive.
"""

from __future__ import annotations

import time

from flask import current_app, flash, jsonify, redirect, request, session, url_for
from flask_login import current_user, logout_user

from core.models import Admin

# Endpoints that a page calls by itself, not a person.
BACKGROUND_ENDPOINTS = {"calls.active_json"}
# Endpoints where a session that has ended is simply dropped (no redirect to themselves).
LOGIN_ENDPOINTS = {"auth.login", "static"}
# Writing the cookie on every request is needless; a minute is precise enough.
SEEN_GRANULARITY = 60
ENDED = ("Your session has ended (logged out, a new password or the account disabled)."
         " Please log in again.")


def start(admin: Admin) -> None:
    """After login_user(admin): stamp the new session."""
    now = time.time()
    session.permanent = True
    session["epoch"] = admin.session_epoch
    session["login_at"] = now
    session["seen_at"] = now


def load(admin_id: str) -> Admin | None:
    """Flask-Login's user loader: the session's admin, if the session is still theirs."""
    try:
        admin = Admin.get_or_none(Admin.id == int(admin_id))
    except (ValueError, OverflowError):
        return None
    if admin is None or not admin.enabled:
        return None
    # A session from before migration 0006 has no epoch: it ends too.
    if session.get("epoch") != admin.session_epoch:
        return None
    return admin


def expired(now: float) -> str | None:
    """Why this session is over, or None."""
    login_at, seen_at = session.get("login_at"), session.get("seen_at")
    if login_at is None or seen_at is None:
        return "Your session has expired. Please log in again."
    lifetime = current_app.permanent_session_lifetime.total_seconds()
    if now - login_at > lifetime:
        return "Your session has expired. Please log in again."
    if now - seen_at > current_app.config["PANEL_IDLE_TIMEOUT"]:
        return "You were logged out after a period of inactivity. Please log in again."
    return None


def check():
    """before_request: drop a session ended elsewhere, end an expired one, note activity."""
    if not current_user.is_authenticated:
        if session.get("_user_id") is None:
            return None
        # Logged in once, refused by `load` now: ended server-side.
        session.clear()
        if request.endpoint in LOGIN_ENDPOINTS:
            return None
        return _ended(ENDED)
    now = time.time()
    reason = expired(now)
    if reason is None:
        if (request.endpoint not in BACKGROUND_ENDPOINTS
                and now - session["seen_at"] >= SEEN_GRANULARITY):
            session["seen_at"] = now
        return None
    logout_user()
    session.clear()
    return _ended(reason)


def _ended(reason: str):
    """The answer to a request whose session just ended: the login page, told why."""
    if request.endpoint in BACKGROUND_ENDPOINTS:
        return jsonify(error=reason), 401
    flash(reason, "info")
    target = request.full_path if request.method == "GET" else None
    return redirect(url_for("auth.login", next=target.rstrip("?") if target else None))
