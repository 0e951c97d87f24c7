"""What the PBX is configured with (read-only: settings live in PBX_* variables)."""

from flask import Blueprint

bp = Blueprint("settings", __name__, url_prefix="/settings")

from app.settings import routes  # noqa: E402, F401  (registers the views on bp)
