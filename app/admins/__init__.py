"""Panel users (admins and viewers): list, add, change role, disable and enable. Admins only."""

from flask import Blueprint

bp = Blueprint("admins", __name__, url_prefix="/admins")

from app.admins import routes  # noqa: E402, F401  (registers the views on bp)
