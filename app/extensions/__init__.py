"""Extensions: the list with live status, one extension's page, and changes to them."""

from flask import Blueprint

bp = Blueprint("extensions", __name__, url_prefix="/extensions")

from app.extensions import forwarding, phone_setup, routes  # noqa: E402, F401  (register the views on bp)
