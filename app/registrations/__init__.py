"""Every live binding (registered contact) of every extension."""

from flask import Blueprint

bp = Blueprint("registrations", __name__, url_prefix="/registrations")

from app.registrations import routes  # noqa: E402, F401  (registers the views on bp)
