"""Trunks and outside calls: trunks, inbound routes, outbound routes, the toll-fraud
page (refused calls, blocked extensions, the policy) and an extension's outside calls."""

from flask import Blueprint

bp = Blueprint("trunks", __name__, url_prefix="/trunks")

from app.trunks import routes  # noqa: E402, F401  (registers the views on bp)
