"""Security: failed SIP logins, the audit log (and bans, when sipd writes them)."""

from flask import Blueprint

bp = Blueprint("security", __name__, url_prefix="/security")

from app.security import routes  # noqa: E402, F401  (registers the views on bp)
