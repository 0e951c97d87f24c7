"""Calls: the history with filters and CSV export, the live calls, hanging one up."""

from flask import Blueprint

bp = Blueprint("calls", __name__, url_prefix="/calls")

from app.calls import routes  # noqa: E402, F401  (registers the views on bp)
from app.names import numbers_in  # noqa: E402

bp.add_app_template_filter(numbers_in, "numbers")
