"""Sounds: the PBX's spoken prompts (play, replace with an upload, revert) and music on hold."""

from flask import Blueprint

bp = Blueprint("sounds", __name__, url_prefix="/sounds")

from app.sounds import routes  # noqa: E402, F401  (registers the views on bp)
