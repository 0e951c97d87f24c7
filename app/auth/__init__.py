"""Logging in and out of the panel."""

from flask import Blueprint

bp = Blueprint("auth", __name__)

from app.auth import routes  # noqa: E402, F401  (registers the views on bp)
