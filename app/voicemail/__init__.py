"""Voicemail: the messages of every mailbox (play, download, delete) and a mailbox's settings."""

from flask import Blueprint

bp = Blueprint("voicemail", __name__, url_prefix="/voicemail")

from app.voicemail import routes  # noqa: E402, F401  (registers the views on bp)
