"""Calls: the history with filters and CSV export, the live calls, hanging one up."""

from flask import Blueprint

bp = Blueprint("calls", __name__, url_prefix="/calls")

from app.calls import routes  # noqa: E402, F401  (registers the views on bp)
