"""The dashboard: the panel's first page, how the PBX is right now and lately."""

import time

from flask import Blueprint

bp = Blueprint("dashboard", __name__)

# When this panel process started (the blueprint is imported by create_app).
STARTED_AT = time.time()

from app.dashboard import routes  # noqa: E402, F401  (registers the views on bp)
