"""Session expiry: an idle timeout and an absolute lifetime, checked on every request.

The cookie's own expiry (PERMANENT_SESSION_LIFETIME) is only advice to the
browser; the times kept inside the signed session are what the panel enforces,
so a copied cookie stops working too. Background requests (the live-calls
poll) do not count as activity: a page left open does not keep a session alive.
"""

from __future__ import annotations

import time

from flask import current_app, flash, jsonify, redirect, request, session, url_for
from flask_login import current_user, logout_user

# Endpoints that a page calls by itself, not a person.
BACKGROUND_ENDPOINTS = {"calls.active_json"}
# Writing the cookie on every request is needless; a minute is precise enough.
SEEN_GRANULARITY = 60


def start() -> None:
    """After login_user(): stamp the new session."""
    now = time.time()
    session.permanent = True
    session["login_at"] = now
    session["seen_at"] = now


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
    """before_request: end an expired session; otherwise note the activity."""
    if not current_user.is_authenticated:
        return None
    now = time.time()
    reason = expired(now)
    if reason is None:
        if (request.endpoint not in BACKGROUND_ENDPOINTS
                and now - session["seen_at"] >= SEEN_GRANULARITY):
            session["seen_at"] = now
        return None
    logout_user()
    session.clear()
    if request.endpoint in BACKGROUND_ENDPOINTS:
        return jsonify(error=reason), 401
    flash(reason, "info")
    target = request.full_path if request.method == "GET" else None
    return redirect(url_for("auth.login", next=target.rstrip("?") if target else None))
