"""Security: failed SIP logins, bans (lifting them), the audit log."""

from flask import Blueprint

bp = Blueprint("security", __name__, url_prefix="/security")

from app.security import routes  # noqa: E402, F401  (registers the views on bp)
